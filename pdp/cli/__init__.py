"""The `portcullis` command line: one console script for every part of the gateway.

Owns argument parsing and turning user errors (configuration, files, ports) into one
clear line and exit code 2, never a traceback. Each subcommand is a thin call into the
module that does the work; the larger command groups live beside it (approvals, audit,
sessions and replay, ops: config check and status, certs, policytest).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from portcullis.config import Config, load_config
from portcullis.process import UserError, check_listen, exit_status, run_until_signal, setup_logging

EXIT_CONFIG = 2
DEFAULT_CONFIG = "portcullis.yaml"


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
    return load_config(config_path(args), env=env)


def config_path(args: argparse.Namespace) -> str:
    """-c/--config (before or after the subcommand), else PORTCULLIS_CONFIG, else the default."""
    given = getattr(args, "config", None)
    return str(given or os.environ.get("PORTCULLIS_CONFIG") or DEFAULT_CONFIG)


def _served_secrets(config: Config, connections: Any = None) -> None:
    """Fail before anything starts when a served connection's `${NAME}` is not set."""
    from portcullis.config import resolve_secrets
    from proxies.launcher import served

    resolve_secrets(config, served(config.connections if connections is None else connections))


def _check_ports(config: Config, connections: Any = (), pdp: bool = True) -> None:
    # replicas sharing the ports (pdp.reuse_port) bind them themselves: a holder that is
    # not one of them still makes the bind, and so the start, fail
    if pdp and not config.pdp.reuse_port:
        check_listen("pdp.listen", config.pdp.listen)
        check_listen("pdp.http_listen", config.pdp.http_listen)
    for connection in connections:
        check_listen(f"{connection.key or connection.name}.listen", connection.listen)


def _run_service(what: str, start: Callable[[asyncio.Event], Any]) -> int:
    """Run until a signal; a service that cannot start is one line and exit 2."""
    from pdp.app import SigningKeyMissing
    from pdp.engine.opa import PolicyLoadError
    from pdp.store import StoreUnavailable

    try:
        run_until_signal(start)
    except (OSError, PolicyLoadError, StoreUnavailable, SigningKeyMissing) as exc:
        raise UserError(f"{what} cannot start: {exc}") from None
    return 0


# -- subcommands ------------------------------------------------------------------


def cmd_pdp(args: argparse.Namespace) -> int:
    from pdp.app import PDPApp

    config = _config(args)
    _check_ports(config)
    setup_logging(args.verbose, config.logging.format, config.logging.level)
    return _run_service("the PDP", lambda stop: PDPApp(config).run_until(stop))


def cmd_up(args: argparse.Namespace) -> int:
    """The PDP and every configured proxy in one process tree."""
    from pdp.app import PDPApp
    from proxies.launcher import run_with_proxies, served

    config = _config(args)
    _served_secrets(config)
    _check_ports(config, served(config.connections))
    setup_logging(args.verbose, config.logging.format, config.logging.level)
    return _run_service(
        "portcullis up", lambda stop: run_with_proxies(PDPApp(config), config, stop)
    )


def cmd_proxy(args: argparse.Namespace) -> int:
    """The proxies of one protocol alone (one per network zone), against a running PDP: a
    process of its own (`python -m proxies`) that never loads the PDP's code."""
    argv = [sys.executable, "-m", "proxies", args.kind, "-c", config_path(args)]
    if args.connection:
        argv += ["--connection", args.connection]
    if args.pdp:
        argv += ["--pdp", args.pdp]
    if args.verbose:
        argv.append("-v")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 (the argv is ours, no shell)
    return 0  # not reached


def cmd_token(args: argparse.Namespace) -> int:
    from pdp.domain.identity import DevIssuer, parse_ttl

    config = _config(args, strict=False)
    if not config.identity.dev:
        print(
            "portcullis token: identity.dev is not enabled in the configuration; "
            "tokens come from your identity provider",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    groups = [g for g in (args.groups or "").split(",") if g]
    audience = args.audience or config.identity.audience or "portcullis"
    token = DevIssuer(config.identity).issue(args.sub, groups, parse_ttl(args.ttl), audience)
    print(token)
    return 0


def cmd_policy_test(args: argparse.Namespace) -> int:
    from pdp.cli.policytest import run_policy_tests

    return run_policy_tests(
        Path(args.path), threshold=args.threshold, verbose=args.verbose, run=args.run
    )


def cmd_policy_eval(args: argparse.Namespace) -> int:
    from pdp.domain.policy_input import command_input
    from pdp.engine.bundle import BundleError, load_bundle
    from pdp.engine.opa import PolicyLoadError, evaluate, new_engine
    from portcullis.verdict import verdict_from_result

    if args.policies:
        policies = Path(args.policies)
    else:
        policies = _config(args, strict=False).pdp.engine.policies
    try:
        source = sys.stdin if args.input == "-" else open(args.input)  # noqa: SIM115
    except OSError as exc:
        raise UserError(
            f"--input {args.input}: {exc.strerror} (examples: rego/examples/*.json)"
        ) from None
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
    from pdp.sql import reader_functions

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


CONFIG_HELP = "configuration file (default: $PORTCULLIS_CONFIG, else ./portcullis.yaml)"


def _add_config_option(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """-c on this parser and, recursively, on every subcommand under it: `portcullis -c X
    audit verify` and `portcullis audit verify -c X` mean the same. Below the top the
    default is SUPPRESS, so a subcommand never overwrites a -c given before it."""
    parser.add_argument(
        "-c", "--config", default=None if top else argparse.SUPPRESS, help=CONFIG_HELP
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _add_config_option(child)


def _service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )


UP_HELP = """Start the Policy Decision Point and a proxy for every configured connection (postgres,
http, ssh), in one process tree, until SIGINT or SIGTERM. The PDP
listens on pdp.listen (gRPC) and pdp.http_listen (/metrics, /healthz, /readyz); each
proxy on its connection's listen address. A connection's `${NAME}` secrets are read
only here, where its proxy starts. Check a configuration first with
`portcullis config check`."""


# The modules that add the other commands (`policy`: its build, diff and masks), imported
# only for a command line that names one of their commands (or none: then all, for the
# full help): `portcullis audit verify` does not load the approvals and sessions clients
# (~1 s of imports of the ~1.2 s a command took before it ran).
COMMAND_MODULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("policy",), "pdp.cli.policybundle"),  # policy build | policy diff
    (("policy",), "pdp.cli.policymasks"),  # policy masks
    (("sessions", "replay"), "pdp.cli.sessions"),
    (("audit",), "pdp.cli.audit"),
    (("approvals",), "pdp.cli.approvals"),
    (("config", "status", "metrics"), "pdp.cli.ops"),
    (("certs",), "pdp.cli.certs"),
    (("discover",), "pdp.cli.discover"),
)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portcullis", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="PDP and every configured proxy in one process tree",
        description=UP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _service_options(up)
    up.set_defaults(func=cmd_up)
    pdp = sub.add_parser(
        "pdp",
        help="the Policy Decision Point alone",
        description="Start the Policy Decision Point alone (gRPC on pdp.listen, HTTP on "
        "pdp.http_listen); proxies elsewhere reach it at pdp.address.",
    )
    _service_options(pdp)
    pdp.set_defaults(func=cmd_pdp)

    proxy = sub.add_parser("proxy", help="the proxies of one protocol alone")
    proxy.add_argument("kind", help="the protocol: a connection type this build serves")
    proxy.add_argument("--connection", default=None, help="only this connection")
    proxy.add_argument("--pdp", default=None, help="PDP address (default: pdp.address/listen)")
    _service_options(proxy)
    proxy.set_defaults(func=cmd_proxy)

    token = sub.add_parser("token", help="issue a dev token (identity.dev only)")
    token.add_argument("--sub", required=True, help="subject, e.g. alice@example.com")
    token.add_argument("--groups", default="", help="comma-separated groups")
    token.add_argument("--ttl", default="1h", help="lifetime: 3600, 90s, 30m, 1h, 2d")
    token.add_argument(
        "--audience",
        default="",
        help="aud (default: identity.audience; approvers: approvals.audience)",
    )
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
        help="the functions readers may call, from a server's pg_proc",
    )
    preader.add_argument("--dsn", required=True, help="libpq DSN of the server to read")
    preader.add_argument("--write", default=None, help="data file to update (rego/data.json)")
    preader.set_defaults(func=cmd_policy_reader_functions)
    named = set(sys.argv[1:] if argv is None else argv)
    every = not named & {name for names, _ in COMMAND_MODULES for name in names}
    for names, module in COMMAND_MODULES:
        if every or named & set(names):
            importlib.import_module(module).register(psub if "policy" in names else sub)
    _add_config_option(parser, top=True)
    return parser


# the exit status of a filter whose reader went away (128 + SIGPIPE), as a shell shows it
EXIT_READER_GONE = 141


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            args = build_parser(argv).parse_args(argv)
            if not hasattr(args, "verbose"):
                args.verbose = False
            return exit_status("portcullis", lambda: args.func(args))
        finally:
            sys.stdout.flush()  # here, where a reader gone is caught (`--help` too)
    except BrokenPipeError:
        # stdout's reader left (`portcullis approvals list | head -3`): stop quietly, as a
        # Unix filter does, and leave nothing for the interpreter to flush at exit into
        # the closed pipe (another traceback)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_READER_GONE


if __name__ == "__main__":
    sys.exit(main())
