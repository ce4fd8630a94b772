"""The `portcullis` command line: one console script for every part (DESIGN.md "CLI").

Owns argument parsing and turning configuration errors into one clear line and exit
code 2. Each subcommand is a thin call into the module that does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pdp.config import Config, ConfigError, load_config

EXIT_CONFIG = 2


class _LenientEnv(Mapping[str, str]):
    """Environment for commands that only read part of the file (token, policy): a variable
    that is not set stays as its literal `${NAME}` instead of stopping the command."""

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, "${" + name + "}")

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def _config(args: argparse.Namespace, strict: bool = True) -> Config:
    env = None if strict else _LenientEnv()
    return load_config(args.config, env=env)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run_until_signal(start: Callable[[asyncio.Event], Any]) -> None:
    """Run a service on uvloop (the servers' event loop) until SIGINT or SIGTERM."""
    import uvloop

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await start(stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


# -- subcommands ------------------------------------------------------------------


def cmd_pdp(args: argparse.Namespace) -> int:
    from pdp.app import PDPApp

    config = _config(args)
    _setup_logging(args.verbose)
    _run_until_signal(lambda stop: PDPApp(config).run_until(stop))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """The PDP and every configured proxy in one process tree."""
    from pdp.app import PDPApp
    from proxies.launcher import run_with_proxies

    config = _config(args)
    _setup_logging(args.verbose)
    _run_until_signal(lambda stop: run_with_proxies(PDPApp(config), config, stop))
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    """The proxies of one protocol alone (one per network zone), against a running PDP."""
    from proxies.launcher import run_proxies

    config = _config(args)
    _setup_logging(args.verbose)
    connections = [
        c
        for c in config.connections
        if c.type == args.kind and (args.connection is None or c.name == args.connection)
    ]
    if not connections:
        print(
            f"portcullis proxy: no {args.kind} connection configured"
            + (f" named {args.connection!r}" if args.connection else ""),
            file=sys.stderr,
        )
        return EXIT_CONFIG
    address = args.pdp or config.pdp.address or config.pdp.listen
    _run_until_signal(lambda stop: run_proxies(connections, config, address, stop))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from pdp.identity import DevIssuer, parse_ttl

    config = _config(args, strict=False)
    if not config.identity.dev:
        print(
            "portcullis token: identity.dev is not enabled in the configuration; "
            "tokens come from your identity provider",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    groups = [g for g in (args.groups or "").split(",") if g]
    token = DevIssuer(config.identity).issue(args.sub, groups, parse_ttl(args.ttl))
    print(token)
    return 0


def cmd_policy_test(args: argparse.Namespace) -> int:
    from pdp.policytest import run_policy_tests

    return run_policy_tests(
        Path(args.path), threshold=args.threshold, verbose=args.verbose, run=args.run
    )


def cmd_policy_eval(args: argparse.Namespace) -> int:
    from pdp.engine.bundle import BundleError, load_bundle
    from pdp.engine.opa import PolicyLoadError, evaluate, new_engine
    from pdp.policy_input import command_input
    from pdp.verdict import verdict_from_result

    if args.policies:
        policies = Path(args.policies)
    else:
        policies = _config(args, strict=False).pdp.engine.policies
    source = sys.stdin if args.input == "-" else open(args.input)  # noqa: SIM115
    with source:
        try:
            policy_input = json.load(source)
        except json.JSONDecodeError as exc:
            print(f"portcullis policy eval: {args.input}: not valid JSON: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    command = policy_input.get("command") if isinstance(policy_input, dict) else None
    if isinstance(command, dict) and command.get("kind", "").startswith("postgres."):
        details = command.get("postgres") or {}
        if "statements" not in details:
            command.update(command_input(command["kind"], command.get("raw", ""), details))
    try:
        engine = new_engine(load_bundle(policies).without_tests())
    except (BundleError, PolicyLoadError) as exc:
        print(f"portcullis policy eval: policy does not load: {exc}", file=sys.stderr)
        return 1
    result = evaluate(engine, policy_input)
    out = result if args.raw else verdict_from_result(result).to_dict()
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def cmd_policy_reader_functions(args: argparse.Namespace) -> int:
    """Print (or write into a data file) the functions readers may call, from a server."""
    from pdp import reader_functions

    try:
        functions = reader_functions.from_server(args.dsn)
    except Exception as exc:  # the server's own message says what is wrong
        print(f"portcullis policy reader-functions: {exc}", file=sys.stderr)
        return 1
    if args.write:
        reader_functions.write_into(Path(args.write), functions)
        print(f"{len(functions)} reader functions written to {args.write}", file=sys.stderr)
    else:
        print(reader_functions.dump(functions), end="")
    return 0


# -- parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portcullis", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("PORTCULLIS_CONFIG", "portcullis.yaml"),
        help="configuration file (default ./portcullis.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="PDP and every configured proxy in one process tree")
    up.set_defaults(func=cmd_up)
    pdp = sub.add_parser("pdp", help="the Policy Decision Point alone")
    pdp.set_defaults(func=cmd_pdp)

    proxy = sub.add_parser("proxy", help="the proxies of one protocol alone")
    proxy.add_argument("kind", choices=["postgres", "http", "ssh"])
    proxy.add_argument("--connection", default=None, help="only this connection")
    proxy.add_argument("--pdp", default=None, help="PDP address (default: pdp.address/listen)")
    proxy.set_defaults(func=cmd_proxy)

    token = sub.add_parser("token", help="issue a dev token (identity.dev only)")
    token.add_argument("--sub", required=True, help="subject, e.g. alice@example.com")
    token.add_argument("--groups", default="", help="comma-separated groups")
    token.add_argument("--ttl", default="1h", help="lifetime: 3600, 90s, 30m, 1h, 2d")
    token.set_defaults(func=cmd_token)

    policy = sub.add_parser("policy", help="test and evaluate the Rego library")
    psub = policy.add_subparsers(dest="policy_command", required=True)
    ptest = psub.add_parser("test", help="run test_* rules with coverage (opa test semantics)")
    ptest.add_argument("path", nargs="?", default="rego")
    ptest.add_argument("--threshold", type=float, default=0.0, help="minimum coverage %%")
    ptest.add_argument("-v", "--verbose", action="store_true", help="report every test")
    ptest.add_argument("--run", default=None, help="only tests whose name matches this regex")
    ptest.set_defaults(func=cmd_policy_test)
    peval = psub.add_parser("eval", help="evaluate one input, print the decision JSON")
    peval.add_argument("--input", required=True, help="input JSON file, or - for stdin")
    peval.add_argument("--policies", default=None, help="policy directory (default: config)")
    peval.add_argument("--raw", action="store_true", help="print the raw policy result")
    peval.set_defaults(func=cmd_policy_eval)
    preader = psub.add_parser(
        "reader-functions",
        help="the functions readers may call, from a server's pg_proc (pdp/reader_functions.py)",
    )
    preader.add_argument("--dsn", required=True, help="libpq DSN of the server to read")
    preader.add_argument("--write", default=None, help="data file to update (rego/data.json)")
    preader.set_defaults(func=cmd_policy_reader_functions)

    from pdp.sessions_cli import register as register_sessions

    register_sessions(sub)

    from pdp.evidence.cli import register as register_audit

    register_audit(sub)

    from pdp.approvals_cli import register as register_approvals

    register_approvals(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
