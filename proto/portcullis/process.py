"""What every Portcullis service process does alike: logging, listen checks, signals, uvloop.

Owns the plumbing the PDP's command line and a proxy process share: logging set up (text
or JSON: portcullis.logs), the check that names a listen address another process holds
before anything starts, and running a service on uvloop until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from portcullis.config import ConfigError

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix (a missing file, a port in use): one line, exit 2."""


def exit_status(program: str, run: Callable[[], int]) -> int:
    """Run a command; a user error (configuration, file, port) is one line naming it on
    stderr and exit status 2, never a traceback; Ctrl-C is 130."""
    try:
        return int(run())
    except (ConfigError, UserError) as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


def setup_logging(verbose: bool = False, format: str = "text", level: str = "info") -> None:
    """Log lines on stderr, as text or JSON (`logging.format`, `logging.level`;
    portcullis.logs); verbose: debug whatever the level."""
    from portcullis import logs

    logs.setup(format, logging.DEBUG if verbose else getattr(logging, level.upper()))


def check_listen(key: str, address: str) -> None:
    """A TCP listen address another process holds is a user error, named before start-up."""
    if not address or address.startswith("unix:"):
        return
    host, _, port = address.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise UserError(f"{key} {address}: cannot listen: {reason}") from None


def run_until_signal(start: Callable[[asyncio.Event], Any]) -> None:
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
