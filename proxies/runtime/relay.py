"""The two sockets of an open session, relayed in their callbacks: every proxy's hot path.

Owns the flow between a client socket and its upstream socket once a session is open:
both are taken over from their streams (what a stream already read is handed on, a socket
already closed ends the relay), what each side reads goes to the protocol's callback
inside the transport's own callback (no task switch, no await), and reading turns off
and on by reason:

- backpressure: when one side's writes back up (its transport says pause_writing), the
  other side stops being read until they drain — a slow reader never makes the proxy
  hold the fast writer's bytes in memory;
- holds: when a chunk needs async work (a PDP round trip, a catalog lookup), `wait(side,
  work)` pauses reading from that side, the work finishes the chunk in order, chunks
  that arrived before the pause took effect follow in order, and reading resumes. One
  session's wait never holds another's.

And how a session ends: `ended` resolves once with the first reason (a side lost, the
protocol's `end(reason)`, a callback that failed); chunks after that are dropped. The
statement watchdog calls the protocol's `overdue()` when a statement has made no progress
for `statement_limit` seconds.

A protocol subclasses Relay, passes its two callbacks, and answers `busy()` /
`progress()` for the watchdog. No protocol knowledge here: bytes only.

Streams a relay will take over: `server_streams` (a listener's accepted transport) and
`open_stream` (a connection upstream) make asyncio's reader, protocol and writer with a
`RelayWriter`, which a protocol may drop once the relay owns its transport (`adopt`): an
idle session then holds its two transports and the relay, not two sets of stream objects
(about 1.5 KiB each). asyncio's own StreamWriter closes its transport when it is
collected, so one of those is kept by the relay for the session's life instead.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import cast

log = logging.getLogger("portcullis.relay")

CLIENT, SERVER = "client", "server"
_LOST = {CLIENT: "client_disconnect", SERVER: "upstream_closed"}

PEER_FULL = "peer_full"  # a hold: the other side's writes backed up
WAITING = "waiting"  # a hold: a chunk of this side is being finished in a task


_NO_DRAIN_WAITERS = ()  # never appended to: the protocol is never paused again
# no reason to hold a side: one empty frozenset for every side of every session (each
# frozenset() is a new 216-byte object: two per idle session, and one per release)
_READ: frozenset[str] = frozenset()


def _shed_drain_waiters(protocol: asyncio.BaseProtocol) -> None:
    """The stream protocol a relay takes a transport from keeps a deque of drain waiters
    (760 bytes, two per session) that can never be used again: once the transport is the
    relay's, pause_writing reaches the relay, so that protocol is never paused and
    StreamWriter.drain() returns without a waiter. Dropped while empty and unpaused (an
    asyncio that names it otherwise is left alone)."""
    waiters = getattr(protocol, "_drain_waiters", None)
    paused = getattr(protocol, "_paused", True)
    if type(waiters) is collections.deque and not waiters and not paused:
        protocol._drain_waiters = _NO_DRAIN_WAITERS  # type: ignore[attr-defined]


class RelayWriter(asyncio.StreamWriter):
    """asyncio's StreamWriter for a socket a Relay will take over, with two differences:
    collected, it leaves alone a transport that another protocol has taken over (asyncio's
    closes whatever transport it finds open, which would end the relayed session), and it
    is told which side of a TLS upgrade it is (asyncio tells that from a
    client_connected_cb, which a listener that starts its own tasks never gives)."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
        server_side: bool = False,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._server_side = server_side

    def __del__(self) -> None:
        if self.transport.get_protocol() is self._protocol:  # type: ignore[attr-defined]
            super().__del__()

    async def start_tls(
        self,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
    ) -> None:
        """StreamWriter.start_tls, on the side this writer was made for."""
        protocol = self._protocol  # type: ignore[attr-defined]
        await self.drain()
        loop = self._loop  # type: ignore[attr-defined]
        self._transport = await loop.start_tls(
            self.transport, protocol, sslcontext, server_side=self._server_side,
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
        )  # fmt: skip
        protocol._replace_writer(self)


def server_streams(
    transport: asyncio.Transport, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamReaderProtocol, RelayWriter]:
    """A reader and writer over a transport a listener accepted (Listener's
    take_transport), and the protocol that must receive its bytes until a relay adopts it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    return reader, protocol, RelayWriter(transport, protocol, reader, loop, server_side=True)


async def open_stream(
    host: str, port: int, limit: int = 2**16
) -> tuple[asyncio.StreamReader, RelayWriter]:
    """asyncio.open_connection, with a RelayWriter."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, RelayWriter(cast(asyncio.WriteTransport, transport), protocol, reader, loop)


class _Side(asyncio.Protocol):
    """One socket of a relayed session and what the relay knows of it: what it reads goes
    to the protocol's callback, its peer stops being read while its own writes back up,
    and why it is not being read now. Slotted, and nothing made until it is needed (no
    backlog list, no set of reasons): thousands of idle sessions hold two each."""

    __slots__ = ("_backlog", "_held", "_lost", "_relay", "data_received", "kept", "other",
                 "transport", "waiting")  # fmt: skip

    def __init__(self, relay: Relay, received: Callable[[bytes], None], lost: str) -> None:
        self._relay = relay
        # the transport calls data_received per read: it goes straight to the protocol
        self.data_received = received  # type: ignore[method-assign,assignment]
        self._lost = lost  # the relay's reason when this socket goes
        self.other: _Side = self
        self.transport: asyncio.Transport | None = None
        self._held: frozenset[str] = _READ  # reasons this side is not read
        self.waiting: asyncio.Task[None] | None = None  # a chunk being finished in a task
        self._backlog: list[bytes] | None = None  # chunks that came meanwhile, in order
        # the stream writer the socket came in, where dropping it would close the socket
        # (asyncio's own StreamWriter; a RelayWriter is not kept)
        self.kept: asyncio.StreamWriter | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.end(self._lost)

    def pause_writing(self) -> None:
        # this socket's writes backed up: the other side, whose bytes would only pile up
        # in memory, is not read until they drain
        self.other.hold(PEER_FULL)

    def resume_writing(self) -> None:
        self.other.release(PEER_FULL)

    def hold(self, reason: str) -> None:
        if not self._held:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.pause_reading()
        self._held = self._held | {reason}

    def release(self, reason: str) -> None:
        held = self._held - {reason}
        self._held = held or _READ
        if not held:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def queue(self, data: bytes) -> None:
        if self._backlog is None:
            self._backlog = []
        self._backlog.append(data)

    def backlog(self) -> list[bytes]:
        """The chunks that arrived while one was being finished, taken."""
        backlog, self._backlog = self._backlog, None
        return backlog or []


class Relay:
    """A client socket and an upstream socket, relayed through a protocol's callbacks.

    `client_data` / `server_data` receive each side's chunks; they may call `held_back`
    first (True: the session ended, or an earlier chunk of that side is still being
    finished and this one waits its turn), `wait` to finish a chunk in a task, `end` and
    `failed`. `arm_watchdog` starts the statement watchdog when `busy()`.
    """

    __slots__ = ("_client", "_idle_waiters", "_server", "_statement_limit", "_watchdog",
                 "ended", "name")  # fmt: skip

    def __init__(
        self,
        client_data: Callable[[bytes], None],
        server_data: Callable[[bytes], None],
        statement_limit: float = 0.0,
        name: str = "proxy",
    ) -> None:
        self.name = name
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # waiters woken when the protocol says its session went idle, or when it ends
        self._idle_waiters: list[asyncio.Future[None]] = []
        # the statement watchdog: a statement still running this long after the last sign
        # of progress is overdue (a protocol's server-side timeout is the first line; this
        # one holds when a client turned that off)
        self._statement_limit = statement_limit
        self._watchdog: asyncio.TimerHandle | None = None
        self._client = _Side(self, client_data, _LOST[CLIENT])
        self._server = _Side(self, server_data, _LOST[SERVER])
        self._client.other, self._server.other = self._server, self._client

    def _side(self, side: str) -> _Side:
        return self._client if side == CLIENT else self._server

    # -- taking the sockets over -----------------------------------------------------------

    def adopt(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        """Take both sockets' transports over from their streams. Writes still go through
        the StreamWriters (they write to the same transports)."""
        self._adopt(self._client, client)
        self._adopt(self._server, server)

    def catch_up(self, client: asyncio.StreamReader, server: asyncio.StreamReader) -> None:
        """Hand on what the streams read ahead while the session opened; a socket that
        closed (or was reset) meanwhile has already told its stream, and will tell nobody
        else: the relay ends."""
        sides = ((self._client, client), (self._server, server))
        for side, reader in sides:
            data = self._take(reader)
            if data:
                side.data_received(data)
        for side, reader in sides:
            transport = side.transport
            if reader.at_eof() or reader.exception() or transport is None or transport.is_closing():
                self.end(side._lost)

    @staticmethod
    def _take(reader: asyncio.StreamReader) -> bytes:
        # StreamReader has no public way to take its buffer without awaiting
        buffered = reader._buffer  # type: ignore[attr-defined]
        data = bytes(buffered)
        buffered.clear()
        return data

    @staticmethod
    def _adopt(side: _Side, writer: asyncio.StreamWriter) -> None:
        # not isinstance(asyncio.ReadTransport): uvloop's transports (the proxy's) are no
        # subclass of asyncio's, and a check that way never paused anything there
        transport = cast(asyncio.Transport, writer.transport)
        _shed_drain_waiters(transport.get_protocol())
        transport.set_protocol(side)
        side.transport = transport
        if not isinstance(writer, RelayWriter):
            side.kept = writer
        if not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()  # the stream may have paused it

    # -- reading on and off ----------------------------------------------------------------

    def holds(self, side: str) -> frozenset[str]:
        """Why this side is not being read now (empty: it is)."""
        return self._side(side)._held

    def hold(self, side: str, reason: str) -> None:
        self._side(side).hold(reason)

    def release(self, side: str, reason: str) -> None:
        self._side(side).release(reason)

    def waiting(self, side: str) -> bool:
        """A chunk of this side is being finished in a task (`wait`)."""
        return self._side(side).waiting is not None

    def wait(self, side: str, work: Awaitable[None]) -> None:
        """Finish a chunk in a task; reading from this side pauses until it is done."""
        held = self._side(side)
        held.hold(WAITING)
        held.waiting = asyncio.ensure_future(self._finish(held, work))

    async def _finish(self, side: _Side, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:
            self.failed(exc)
        finally:
            side.waiting = None
        for data in side.backlog():  # arrived before the pause took effect
            side.data_received(data)
        if side.waiting is None:
            side.release(WAITING)

    def held_back(self, side: str, data: bytes) -> bool:
        """True when a chunk cannot be handled now: the session has ended (it is dropped),
        or an earlier chunk of this side is still being finished (it waits its turn)."""
        if self.ended.done():
            return True
        held = self._client if side == CLIENT else self._server
        if held.waiting is not None:
            held.queue(data)
            return True
        return False

    # -- idle, overdue, ended --------------------------------------------------------------

    async def until_idle(self, idle: Callable[[], bool]) -> None:
        """Wait until `idle()` holds when the protocol calls `wake_idle()`, or the relay ends."""
        loop = asyncio.get_running_loop()
        while not idle() and not self.ended.done():
            waiter: asyncio.Future[None] = loop.create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def busy(self) -> bool:
        """A statement is running upstream (the watchdog watches only then)."""
        return False

    def progress(self) -> int:
        """A count that moves whenever the running statement makes progress."""
        return 0

    def overdue(self) -> None:
        """A statement made no progress for statement_limit seconds."""

    def arm_watchdog(self) -> None:
        if self._statement_limit and self._watchdog is None and self.busy():
            self._watchdog = asyncio.get_running_loop().call_later(
                self._statement_limit, self._overdue, self.progress()
            )

    def _overdue(self, progress: int) -> None:
        self._watchdog = None
        if not self.busy() or self.ended.done():
            return
        if self.progress() == progress:
            self.overdue()
        self.arm_watchdog()

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)
        self.wake_idle()

    def close(self, side: str) -> bool:
        """Close one side's socket, once adopted (what was written to it goes first; its
        stream may be gone by now). False when the relay never took it."""
        transport = self._side(side).transport
        if transport is None:
            return False
        if not transport.is_closing():
            transport.close()
        return True

    def failed(self, exc: BaseException) -> None:
        log.error("%s: session failed", self.name, exc_info=exc)
        self.end(f"error: {type(exc).__name__}")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.wake_idle()
        waits = [t for t in (self._client.waiting, self._server.waiting) if t is not None]
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
