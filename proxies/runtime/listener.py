"""The listening half of every proxy: accept, track, drain.

Owns a proxy's TCP (or TLS) listener and the connections it holds: each accepted
connection runs the protocol's handler in its own task; a handler that fails is logged
(never the bytes it carried) and its socket closed, while the proxy stays up; `stop()`
stops accepting, gives the connections `drain_seconds` to end on their own, then cancels
what is left. A protocol supplies only `handle(reader, writer)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable

log = logging.getLogger("portcullis.listener")

READ_SIZE = 256 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


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
        handle: Handler,
        tls: ssl.SSLContext | None = None,
        drain_seconds: float = 0.0,
        reuse_port: bool = False,
    ) -> None:
        """reuse_port: the connection's other worker processes listen on the same port
        (SO_REUSEPORT: the kernel spreads connections over them; Linux lets only the same
        user's processes join)."""
        self.name = name
        self.host, self.requested_port = split_address(address)
        self.handle = handle
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
        task = asyncio.current_task()
        assert task is not None
        self.clients.add(task)
        try:
            await self.handle(reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: connection failed", self.name)
        finally:
            self.clients.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
