"""How many connections the PDP's HTTP listener (health, metrics, approvals, console) holds.

The listener needs no token to connect, and an HTTP server keeps a connection that has
sent half a request head until its idle timeout. Without a bound, anyone who reaches
`pdp.http_listen` could hold tens of thousands of such connections and spend the file
descriptors the PDP shares with its gRPC listener (every proxy), its audit store and its
JWKS and webhook clients. ConnectionGate caps the connections held at once, in all and
per peer address; a connection past either cap is closed as it is accepted, before a
byte is read. `gated` wraps an aiohttp server's protocol factory; the PDP's HTTP
listener also idles a connection out after IDLE_SECONDS instead of aiohttp's 75.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, cast

from aiohttp import web

log = logging.getLogger("portcullis.http")

MAX_CONNECTIONS = 1024
MAX_CONNECTIONS_PER_PEER = 64
# a connection that has not sent a whole request head this long after it opened, or
# after its last answer, is closed (aiohttp's default keeps one 75 s)
IDLE_SECONDS = 15.0


class ConnectionGate:
    """Connections held, in all and by peer address; says whether one more may be."""

    def __init__(self, total: int = MAX_CONNECTIONS, per_peer: int = MAX_CONNECTIONS_PER_PEER):
        self.total = total
        self.per_peer = per_peer
        self.held = 0
        self.by_peer: collections.Counter[str] = collections.Counter()
        self.refused = 0

    def admit(self, peer: str) -> bool:
        if self.held >= self.total or self.by_peer[peer] >= self.per_peer:
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warning(
                    "HTTP connection from %s refused: %d held (cap %d, %d per peer); %d refused",
                    peer,
                    self.held,
                    self.total,
                    self.per_peer,
                    self.refused,
                )
            return False
        self.held += 1
        self.by_peer[peer] += 1
        return True

    def release(self, peer: str) -> None:
        self.held -= 1
        self.by_peer[peer] -= 1
        if self.by_peer[peer] <= 0:
            del self.by_peer[peer]


def peer_of(transport: asyncio.BaseTransport) -> str:
    """The peer's host (a Unix socket's peers are one peer)."""
    name = transport.get_extra_info("peername")
    if isinstance(name, tuple) and name:
        return str(name[0])
    return "unix"


class _Gated(asyncio.Protocol):
    """A connection's protocol: closes at once past the gate, else hands every event to
    the server's own handler."""

    def __init__(self, gate: ConnectionGate, handler: Any) -> None:
        self._gate = gate
        self._handler = handler
        self._peer: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = peer_of(transport)
        if not self._gate.admit(peer):
            cast(asyncio.Transport, transport).abort()
            return
        self._peer = peer
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._peer is None:
            return
        self._gate.release(self._peer)
        self._peer = None
        self._handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._peer is not None:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._peer is None:
            return None
        return bool(self._handler.eof_received())

    def pause_writing(self) -> None:
        if self._peer is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._peer is not None:
            self._handler.resume_writing()


def gated(gate: ConnectionGate, server: web.Server) -> Any:
    """A protocol factory for loop.create_server: `server`'s handlers behind `gate`."""
    return lambda: _Gated(gate, server())
