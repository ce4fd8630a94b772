"""How many connections a listener holds of those that need no token to be held.

A port anyone may reach (a proxy's start-up before its token is read, a proxy's health
port, the PDP's HTTP listener) keeps a connection that has sent nothing, or half a
request, until some timeout: without a bound, one client holds as many as it likes, each
a file descriptor the process needs for its sessions, its PDP and its store. A
ConnectionGate counts the connections it holds per peer address and in all and refuses
one past either cap (the caller resets it as it is accepted); each admitted one holds a
Place, given back once. GatedProtocol puts an asyncio server's own protocol (aiohttp's
handlers) behind a gate, and serve_gated an aiohttp runner's. Shared by the proxies and the
PDP.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from aiohttp import web


class ConnectionGate:
    """The connections held, per peer address and in all; past either cap, none more."""

    def __init__(self, per_peer: int, in_all: int) -> None:
        self.per_peer = per_peer
        self.in_all = in_all
        self.held: Counter[str] = Counter()
        self.total = 0
        self.refused = 0

    def admit(self, peer: str) -> Place | None:
        if self.total >= self.in_all or self.held[peer] >= self.per_peer:
            self.refused += 1
            return None
        self.held[peer] += 1
        self.total += 1
        return Place(self, peer)

    def should_log_refusal(self) -> bool:
        """Whether the refusal just counted is one to log (the 1st, 10th, 100th, every
        1,000th): a flood does not flood the log."""
        return self.refused in (1, 10, 100) or self.refused % 1000 == 0

    def _leave(self, peer: str) -> None:
        self.total -= 1
        left = self.held[peer] - 1
        if left:
            self.held[peer] = left
        else:
            del self.held[peer]


class Place:
    """One connection's place in its gate's count, given back once."""

    __slots__ = ("gate", "peer")

    def __init__(self, gate: ConnectionGate | None, peer: str) -> None:
        self.gate = gate
        self.peer = peer

    def leave(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate._leave(self.peer)


def peer_of(transport: asyncio.BaseTransport) -> str:
    """The peer's host ("?" where it has none: a Unix socket's peers are one peer)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "?")


class GatedProtocol(asyncio.Protocol):
    """A connection's protocol: reset at once past the gate (logged as `label` now and
    then), else every event goes to `handler`, the server's own protocol."""

    def __init__(self, gate: ConnectionGate, handler: Any, log: logging.Logger, label: str) -> None:
        self._gate = gate
        self._handler = handler
        self._log = log
        self._label = label
        self._place: Place | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        place = self._gate.admit(peer_of(transport))
        if place is None:
            if self._gate.should_log_refusal():
                self._log.warning(
                    "%s: a connection from %s refused (%d held, at most %d per address and"
                    " %d in all; %d refused so far)",
                    self._label, peer_of(transport), self._gate.total, self._gate.per_peer,
                    self._gate.in_all, self._gate.refused,
                )  # fmt: skip
            cast(asyncio.Transport, transport).abort()
            return
        self._place = place
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        place, self._place = self._place, None
        if place is None:
            return
        place.leave()
        self._handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._place is not None:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._place is None:
            return None
        return bool(self._handler.eof_received())

    def pause_writing(self) -> None:
        if self._place is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._place is not None:
            self._handler.resume_writing()


def gated(
    gate: ConnectionGate, protocol: Callable[[], Any], log: logging.Logger, label: str
) -> Callable[[], GatedProtocol]:
    """A protocol factory for loop.create_server: `protocol()`'s behind `gate`."""
    return lambda: GatedProtocol(gate, protocol(), log, label)


async def serve_gated(
    runner: web.AppRunner,
    gate: ConnectionGate,
    log: logging.Logger,
    label: str,
    listen: str | tuple[str, int],
    reuse_port: bool | None = None,
) -> asyncio.Server:
    """Set `runner` up and serve its handlers behind `gate` (an aiohttp site would take
    every connection) at `listen`: (host, port), or "unix:PATH"."""
    await runner.setup()
    assert runner.server is not None
    factory = gated(gate, runner.server, log, label)
    loop = asyncio.get_running_loop()
    if isinstance(listen, str):
        return await loop.create_unix_server(factory, listen.removeprefix("unix:"))
    host, port = listen
    return await loop.create_server(factory, host, port, reuse_port=reuse_port)
