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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

log = logging.getLogger("portcullis.listener")

READ_SIZE = 256 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# the accepted transport -> (the protocol that reads it from now on, the connection's coroutine)
TransportHandler = Callable[
    [asyncio.Transport], tuple[asyncio.BaseProtocol, Coroutine[Any, Any, None]]
]


def split_address(address: str) -> tuple[str, int]:
    """host:port (or [v6]:port) of the configuration as asyncio takes it."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


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
        self.clients: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not listening"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.take_transport is not None:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: _Accepted(self),
                self.host,
                self.requested_port,
                ssl=self.tls,
                reuse_port=self.reuse_port or None,
            )
            return
        self._server = await asyncio.start_server(
            self._accept,
            self.host,
            self.requested_port,
            ssl=self.tls,
            limit=READ_SIZE,
            reuse_port=self.reuse_port or None,
        )

    def close(self) -> None:
        """Stop accepting (a drain's first step); the connections held go on."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        """Stop accepting; let connections end within drain_seconds; cancel the rest."""
        if self._server is not None:
            self._server.close()
        if self.clients and self.drain_seconds > 0:
            await asyncio.wait(set(self.clients), timeout=self.drain_seconds)
        for task in list(self.clients):
            task.cancel()
        await asyncio.gather(*self.clients, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.handle is not None
        await self._serve(functools.partial(self.handle, reader, writer), writer.close)

    async def _serve(
        self, serving: Callable[[], Awaitable[None]], close: Callable[[], None]
    ) -> None:
        """One client connection's life: tracked while it runs, its failure logged (never
        its bytes), its socket closed at the end whatever happened."""
        task = asyncio.current_task()
        assert task is not None
        self.clients.add(task)
        try:
            await serving()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: connection failed", self.name)
        finally:
            self.clients.discard(task)
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
        try:
            protocol, serving = self.listener.take_transport(accepted)
        except Exception:
            log.exception("%s: connection failed", self.listener.name)
            accepted.abort()
            return
        accepted.set_protocol(protocol)
        protocol.connection_made(accepted)
        asyncio.get_running_loop().create_task(
            self.listener._serve(lambda: serving, accepted.close)
        )
