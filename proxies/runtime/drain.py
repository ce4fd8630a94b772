"""How a proxy drains on SIGTERM: stop accepting, let in-flight work finish, then end
every session with its protocol's own shutdown message — never a bare close.

Owns the order and the clock of a drain; each protocol owns what ending a connection
means on its wire. A client connection registers an `end(force)` callback while it lives
(`Drain.register`); when the drain begins every callback is called with force=False —
"end as soon as you are between commands" (Postgres: once the running statement has
answered, ErrorResponse FATAL 57P01 admin_shutdown; HTTP: idle keep-alive connections
closed, the request in flight answered, a request arriving meanwhile answered 503 with
Connection: close; SSH: once no channel runs, SSH_MSG_DISCONNECT by application with
the reason). After the grace period (`proxies.drain_seconds`) the ones still open are
called with force=True: they say the same now, stopping what still runs. The listener
then cancels what is left (a connection that ignored both).

A connection registered after the drain began (it was mid-start-up) is told at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import Protocol

log = logging.getLogger("portcullis.drain")

DEFAULT_GRACE = 25.0  # seconds (proxies.drain_seconds); Kubernetes gives 30 by default
FORCE_SECONDS = 5.0  # after the forced end: how long the protocols get to say it
SHUTDOWN_MESSAGE = "terminating connection due to administrator command (proxy shutting down)"

End = Callable[[bool], None]


class Drained(Protocol):
    """A client connection as the drain runs and ends it."""

    async def run(self) -> None: ...

    def drain(self, force: bool) -> None: ...


class Drain:
    """The drain of one connection's proxy (one per ProxyRuntime)."""

    def __init__(self) -> None:
        self.started = False
        self.forced = False
        self._ends: dict[object, End] = {}

    def register(self, owner: object, end: End) -> None:
        """end(force): the protocol's way of ending this client connection."""
        self._ends[owner] = end
        if self.started:
            self._call(end, self.forced)

    def unregister(self, owner: object) -> None:
        self._ends.pop(owner, None)

    async def serving(self, connection: Drained) -> None:
        """Run one client connection (its run()), ended by its drain() while the proxy
        drains: registered for as long as it runs."""
        self.register(connection, connection.drain)
        try:
            await connection.run()
        finally:
            self.unregister(connection)

    def __len__(self) -> int:
        return len(self._ends)

    async def run(self, tasks: Collection[asyncio.Task[None]], grace: float, name: str) -> None:
        """Ask every registered connection to end, wait up to `grace` seconds for `tasks`
        (the listener's client tasks), then force the rest."""
        self.started = True
        began = time.monotonic()
        for end in list(self._ends.values()):
            self._call(end, False)
        pending = {t for t in tasks if not t.done()}
        if pending:
            log.info("%s: draining %d connections (up to %gs)", name, len(pending), grace)
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            self.forced = True
            log.warning(
                "%s: %d connections still busy after %gs: ending them now",
                name,
                len(pending),
                grace,
            )
            for end in list(self._ends.values()):
                self._call(end, True)
            _, pending = await asyncio.wait(pending, timeout=FORCE_SECONDS)
        log.info(
            "%s: drained in %.1fs (%d left to cancel)", name, time.monotonic() - began, len(pending)
        )

    @staticmethod
    def _call(end: End, force: bool) -> None:
        try:
            end(force)
        except Exception:
            log.exception("ending a connection for the drain failed")
