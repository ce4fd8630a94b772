"""A client connection's bytes in and its pace out, without asyncio streams: the HTTP
proxy's asyncio glue on the client side.

Owns `ClientIO`, the protocol a ClientConnection (proxies/http/proxy.py) reads its client
through, put on the accepted transport by the runtime's listener before any byte is read
(proxies/runtime/listener.py, `take_transport`): what the client sends goes to the reading
task as the bytes objects the transport hands over (no copy into a buffer and out again, no
StreamReader between), reading pauses while more than `LIMIT` bytes wait unread (as the
stream reader paused), and `drain()` waits while the transport's write buffer is over its
high-water mark (as StreamWriter.drain did). Bytes are still written through the transport;
every byte the proxy sends still goes through runtime.exposure.ClientOutput.

Why: the stream reader's layers cost CPU on every request of a kept-alive connection
(bench/http/ab_cpu.py measures it).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

LIMIT = 512 * 1024  # unread bytes from a client before its reading pauses (the stream's 2x256K)


class ClientIO(asyncio.Protocol):
    """The transport's protocol once a ClientConnection reads its client itself."""

    def __init__(self, transport: Any, over_ssl: bool) -> None:
        self.transport = transport
        self._over_ssl = over_ssl
        self._loop = asyncio.get_running_loop()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._unread = 0
        self._eof = False
        self._error: BaseException | None = None
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drainers: collections.deque[asyncio.Future[None]] = collections.deque()

    # -- the transport's calls -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._unread += len(data)
        if self._unread > LIMIT and not self._reading_paused:
            try:
                self.transport.pause_reading()
                self._reading_paused = True
            except NotImplementedError:  # (a transport that cannot: it reads on)
                pass
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # keep the transport open to answer a client that half-closed (not under TLS,
        # which cannot: as StreamReaderProtocol does)
        return not self._over_ssl

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake()
        while self._drainers:
            waiter = self._drainers.popleft()
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        while self._drainers:
            waiter = self._drainers.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the reading task's --------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """What the client sent since the last read (at most n bytes when n > 0); b"" at
        its end; raises what ended the connection when it ended in an error."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if 0 < n < len(data):
            chunks.append(data[n:])
            data = data[:n]
        self._unread -= len(data)
        if self._reading_paused and self._unread <= LIMIT // 2:
            self._reading_paused = False
            if not self._lost:
                self.transport.resume_reading()
        return data

    async def drain(self) -> None:
        """Return once the client took enough of what was written (StreamWriter.drain)."""
        if self._error is not None:
            raise self._error
        if self.transport.is_closing():
            await asyncio.sleep(0)  # connection_lost may follow: let it
        if self._lost:
            raise ConnectionResetError("Connection lost")
        if not self._writing_paused:
            return
        waiter = self._loop.create_future()
        self._drainers.append(waiter)
        await waiter
