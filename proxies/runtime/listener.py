"""The listening half of every proxy: accept, track, drain.

Owns a proxy's TCP (or TLS) listener and the connections it holds: each accepted
connection runs the protocol's handler in its own task; a handler that fails is logged
(never the bytes it carried) and its socket closed, while the proxy stays up; `stop()`
stops accepting, gives the connections `drain_seconds` to end on their own, then cancels
what is left. A protocol supplies only `handle(reader, writer)`, or, to read its clients
through its own asyncio protocol instead of streams (the HTTP proxy does: a stream reader's
layers cost CPU on every request), a `TransportHandler`: given the accepted transport (TLS
already unwrapped), it answers the protocol that receives the bytes from then on and the
coroutine that serves the connection; the listener tracks, drains and closes it as any other.

A connection that has not opened a session yet (its start-up, its token not read or not
judged) costs the proxy a file descriptor and a task for as long as the protocol's start-up
timeout, and anyone who reaches the port may open one: at most STARTING_PER_PEER of them per
peer address and STARTING_IN_ALL in all are held (portcullis.connection_gate); one past
either is closed as it is accepted. A connection leaves that count once a session is
opened or used in it (`in_session`, called by the runtime's session), and from then on is
not limited here.

A listener on a loopback address of one IP version serves the same port on the other's
too (127.0.0.1 and ::1): a client dialling `localhost:PORT` tries ::1 first, and another
local user listening there would be handed its token (Linux refuses a second bind of a
port only on the same address, and SO_REUSEPORT only to the same user). Both are this
host; no one else may listen on either. A twin already held by another process refuses
the start (a squatter, or a misconfiguration a client cannot tell from one); a host
without IPv6 has no twin to hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from portcullis.connection_gate import ConnectionGate, Place, peer_of

log = logging.getLogger("portcullis.listener")

READ_SIZE = 256 * 1024
STARTING_PER_PEER = 256  # connections of one address not in a session yet
STARTING_IN_ALL = 4096  # and of all addresses together
# a TLS listener's handshake happens before the connection reaches the gate (asyncio
# holds the socket until then): one that does not finish this soon is closed (asyncio's
# default holds a connection that sends no ClientHello for 60 s)
TLS_HANDSHAKE_SECONDS = 10.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# the accepted transport -> (the protocol that reads it from now on, the connection's coroutine)
TransportHandler = Callable[
    [asyncio.Transport], tuple[asyncio.BaseProtocol, Coroutine[Any, Any, None]]
]


def split_address(address: str) -> tuple[str, int]:
    """host:port (or [v6]:port) of the configuration as asyncio takes it."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


_T = TypeVar("_T")

# the loopback address of the other IP version, served beside a listener's own
TWINS = {"127.0.0.1": "::1", "::1": "127.0.0.1"}
_NO_SUCH_ADDRESS = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})


async def on_twin(host: str, port: int, serve: Callable[[str], Awaitable[_T]]) -> _T | None:
    """serve(twin): a listener's service on the twin loopback of host:port (a protocol's
    own listening, as the SSH proxy's asyncssh.listen). None where host has no twin or this
    host no such address (no IPv6: nobody can listen there either); someone else holding
    it refuses the start (twin_taken)."""
    twin = TWINS.get(host)
    if twin is None:
        return None
    try:
        return await serve(twin)
    except OSError as exc:
        if exc.errno in _NO_SUCH_ADDRESS or isinstance(exc, socket.gaierror):
            return None
        if exc.errno == errno.EADDRINUSE:
            raise twin_taken(host, port, twin) from None
        raise


def twin_taken(host: str, port: int, twin: str) -> OSError:
    """The error a listener whose twin someone else holds starts with."""
    where = f"[{twin}]:{port}" if ":" in twin else f"{twin}:{port}"
    return OSError(
        errno.EADDRINUSE,
        f"another process holds {where}, the other loopback of {host}:{port}: a client "
        f"dialling localhost:{port} would reach it instead of this proxy",
    )


# the place of the connection whose task (or a task it started) runs now
_starting: contextvars.ContextVar[Place | None] = contextvars.ContextVar(
    "portcullis_starting", default=None
)


def in_session() -> None:
    """The connection being served has opened (or uses) a session: it is no longer one of
    those in start-up its listener limits."""
    starting = _starting.get()
    if starting is not None and starting.gate is not None:
        starting.leave()


class Listener:
    """One listening socket and the client connections it accepted."""

    def __init__(
        self,
        name: str,
        address: str,
        handle: Handler | None = None,
        tls: ssl.SSLContext | None = None,
        drain_seconds: float = 0.0,
        reuse_port: bool = False,
        *,
        take_transport: TransportHandler | None = None,
    ) -> None:
        """Exactly one of `handle` (streams) and `take_transport` (the protocol's own reader).
        reuse_port: the connection's other worker processes listen on the same port
        (SO_REUSEPORT: the kernel spreads connections over them; Linux lets only the same
        user's processes join)."""
        if (handle is None) == (take_transport is None):
            raise ValueError("a listener serves with handle or take_transport, one of them")
        self.name = name
        self.host, self.requested_port = split_address(address)
        self.handle = handle
        self.take_transport = take_transport
        self.tls = tls
        self.drain_seconds = drain_seconds
        self.reuse_port = reuse_port
        self.gate = ConnectionGate(STARTING_PER_PEER, STARTING_IN_ALL)
        self.clients: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._twin: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not listening"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        handshake = TLS_HANDSHAKE_SECONDS if self.tls else None
        if self.take_transport is not None:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: _Accepted(self),
                self.host,
                self.requested_port,
                ssl=self.tls,
                reuse_port=self.reuse_port or None,
                ssl_handshake_timeout=handshake,
            )
        else:
            self._server = await asyncio.start_server(
                self._accept,
                self.host,
                self.requested_port,
                ssl=self.tls,
                limit=READ_SIZE,
                reuse_port=self.reuse_port or None,
                ssl_handshake_timeout=handshake,
            )
        try:
            self._twin = await self._serve_twin(handshake)
        except OSError:
            self._server.close()
            self._server = None
            raise

    async def _serve_twin(self, handshake: float | None) -> asyncio.Server | None:
        """The same service on the twin loopback address and port (None: no twin, or no
        such address on this host)."""

        async def serve(twin: str) -> asyncio.Server:
            if self.take_transport is not None:
                return await asyncio.get_running_loop().create_server(
                    lambda: _Accepted(self),
                    twin,
                    self.port,
                    ssl=self.tls,
                    reuse_port=self.reuse_port or None,
                    ssl_handshake_timeout=handshake,
                )
            return await asyncio.start_server(
                self._accept,
                twin,
                self.port,
                ssl=self.tls,
                limit=READ_SIZE,
                reuse_port=self.reuse_port or None,
                ssl_handshake_timeout=handshake,
            )

        return await on_twin(self.host, self.port, serve)

    def _let_go_of_twin(self) -> None:
        if self._twin is not None:
            self._twin.close()
            self._twin = None

    def close(self) -> None:
        """Stop accepting (a drain's first step); the connections held go on."""
        if self._server is not None:
            self._server.close()
        self._let_go_of_twin()

    async def stop(self) -> None:
        """Stop accepting; let connections end within drain_seconds; cancel the rest."""
        if self._server is not None:
            self._server.close()
        self._let_go_of_twin()
        if self.clients and self.drain_seconds > 0:
            await asyncio.wait(set(self.clients), timeout=self.drain_seconds)
        for task in list(self.clients):
            task.cancel()
        await asyncio.gather(*self.clients, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.handle is not None
        starting = self._admit(writer.transport)
        if starting is None:
            return
        await self._serve(functools.partial(self.handle, reader, writer), writer.close, starting)

    def _admit(self, transport: asyncio.BaseTransport) -> Place | None:
        """The connection's place among those in start-up, or None: past the gate's caps
        it is reset at once (before any byte of it is read)."""
        peer = peer_of(transport)
        starting = self.gate.admit(peer)
        if starting is None:
            if self.gate.should_log_refusal():
                log.warning(
                    "%s: a connection from %s refused: %d connections not in a session are "
                    "held (at most %d per address, %d in all); %d refused so far",
                    self.name, peer, self.gate.total, self.gate.per_peer, self.gate.in_all,
                    self.gate.refused,
                )  # fmt: skip
            with contextlib.suppress(Exception):
                cast(asyncio.WriteTransport, transport).abort()
        return starting

    async def _serve(
        self,
        serving: Callable[[], Awaitable[None]],
        close: Callable[[], None],
        starting: Place,
    ) -> None:
        """One client connection's life: tracked while it runs, its failure logged (never
        its bytes), its socket closed at the end whatever happened (and its place in the
        start-up gate given back, if it still holds one)."""
        task = asyncio.current_task()
        assert task is not None
        _starting.set(starting)  # (this task's context, and the tasks it starts)
        self.clients.add(task)
        try:
            await serving()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: connection failed", self.name)
        finally:
            self.clients.discard(task)
            starting.leave()
            with contextlib.suppress(Exception):
                close()


class _Accepted(asyncio.Protocol):
    """The first protocol of a connection a `take_transport` listener accepted: it hands
    the transport to the protocol package's own protocol before any byte is read (asyncio
    delivers data only after connection_made) and starts the connection's task."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert self.listener.take_transport is not None
        # (a read-write transport, asyncio's or uvloop's, which does not subclass it)
        accepted = cast(asyncio.Transport, transport)
        starting = self.listener._admit(accepted)
        if starting is None:
            return
        try:
            protocol, serving = self.listener.take_transport(accepted)
        except Exception:
            starting.leave()
            log.exception("%s: connection failed", self.listener.name)
            accepted.abort()
            return
        accepted.set_protocol(protocol)
        protocol.connection_made(accepted)
        asyncio.get_running_loop().create_task(
            self.listener._serve(lambda: serving, accepted.close, starting)
        )
