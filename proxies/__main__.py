"""`python -m proxies KIND`: a proxy process, the proxies of one protocol against a PDP.

Owns the proxy process's command line (`portcullis proxy` execs it): it reads the same
portcullis.yaml, serves the connections of one kind (or one connection), proves itself
to the PDP, and runs until SIGINT or SIGTERM. It imports the neutral contract
(`portcullis`) and `proxies` only: a proxy in a network zone carries nothing of the
decision point (tests/test_layering.py checks the modules it loads).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from portcullis.config import load_config
from portcullis.process import (
    UserError,
    check_listen,
    exit_status,
    run_until_signal,
    setup_logging,
)


def build_parser() -> argparse.ArgumentParser:
    from proxies.launcher import proxy_kinds

    parser = argparse.ArgumentParser(
        prog="portcullis proxy", description="The proxies of one protocol alone."
    )
    parser.add_argument("kind", choices=proxy_kinds())
    parser.add_argument("--connection", default=None, help="only this connection")
    parser.add_argument("--pdp", default=None, help="PDP address (default: pdp.address/listen)")
    parser.add_argument("-c", "--config", default=None, help="configuration file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # how a connection's other worker processes are started (proxies.runtime.workers)
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--credential-stdin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--routes-stdin", action="store_true", help=argparse.SUPPRESS)
    return parser


def serve(args: argparse.Namespace) -> int:
    from portcullis.config import resolve_secrets
    from proxies.launcher import run_proxies
    from proxies.runtime.pdp_auth import client_auth, pdp_address, with_credential

    path = args.config or os.environ.get("PORTCULLIS_CONFIG") or "portcullis.yaml"
    config = load_config(path)
    connections = [
        c
        for c in config.connections
        if c.type == args.kind and (args.connection is None or c.name == args.connection)
    ]
    if not connections:
        named = f" named {args.connection!r}" if args.connection else ""
        raise UserError(f"no {args.kind} connection configured{named}")
    resolve_secrets(config, connections)  # an unset ${NAME} stops it here, named
    for connection in connections if not args.worker else ():
        # (a later worker shares the port worker 0 holds)
        check_listen(f"{connection.key or connection.name}.listen", connection.listen)
    started = None
    if args.worker:
        # one worker of one connection, started by the process serving its worker 0
        if args.connection is None or len(connections) != 1:
            raise UserError("--worker serves one connection: name it with --connection")
        connection = replace(connections[0], worker=args.worker)
        if args.credential_stdin:
            config = with_credential(config, sys.stdin.readline().strip())
        if args.routes_stdin:  # (after the credential's line: proxies.runtime.workers)
            connection = replace(connection, cancel_routes=tuple(sys.stdin.readline().split()))
        connections = [connection]
        started = _tell_ready
    address = pdp_address(config, args.pdp or "")
    client_auth(config)  # a proxy that cannot prove itself to the PDP stops here, named
    setup_logging(args.verbose, config.logging.format, config.logging.level)
    try:
        run_until_signal(lambda stop: run_proxies(connections, config, address, stop, started))
    except OSError as exc:
        raise UserError(f"the {args.kind} proxy cannot start: {exc}") from None
    return 0


def _tell_ready() -> None:
    from proxies.runtime.workers import READY

    print(READY, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status("portcullis proxy", lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
