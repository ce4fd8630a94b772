"""ClientIO (proxies/http/client_io.py): the HTTP proxy reads its clients through it in
place of asyncio streams; it must hand on every byte in order, what the stream reader held
before it took over, the client's end and errors, and pace both directions as the streams
did (reading paused past LIMIT, drain() waiting while the transport's buffer is full)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxies.http import client_io
from proxies.http.client_io import ClientIO, take_over


class FakeTransport:
    def __init__(self) -> None:
        self.paused = False
        self.closing = False
        self.protocol: Any = None

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closing

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


@given(st.lists(st.binary(min_size=0, max_size=64), max_size=20), st.integers(0, 100))
@settings(max_examples=200, deadline=None)
def test_every_byte_is_read_in_order_whatever_the_reads_sizes(chunks: list[bytes], n: int) -> None:
    async def go() -> bytes:
        io = ClientIO(FakeTransport(), over_ssl=False)
        for chunk in chunks:
            io.data_received(chunk)
        io.eof_received()
        out = b""
        while data := await io.read(n or -1):
            out += data
            assert n == 0 or len(data) <= n
        return out

    assert asyncio.run(go()) == b"".join(chunks)


def test_reading_pauses_past_the_limit_and_resumes_once_read() -> None:
    async def go() -> None:
        transport = FakeTransport()
        io = ClientIO(transport, over_ssl=False)
        io.data_received(b"x" * client_io.LIMIT)
        assert not transport.paused
        io.data_received(b"y")
        assert transport.paused  # a client sending faster than it is read waits
        await io.read()
        assert not transport.paused

    asyncio.run(go())


def test_a_read_waits_for_bytes_and_ends_with_the_client() -> None:
    async def go() -> None:
        io = ClientIO(FakeTransport(), over_ssl=False)
        pending = asyncio.ensure_future(io.read())
        await asyncio.sleep(0)
        assert not pending.done()
        io.data_received(b"GET")
        assert await pending == b"GET"
        assert io.eof_received() is True  # half-closed: the answer can still go
        assert await io.read() == b""
        assert ClientIO(FakeTransport(), over_ssl=True).eof_received() is False

    asyncio.run(go())


def test_a_connection_lost_in_an_error_raises_it_to_the_reader_and_drain() -> None:
    async def go() -> None:
        io = ClientIO(FakeTransport(), over_ssl=False)
        pending = asyncio.ensure_future(io.read())
        await asyncio.sleep(0)
        io.connection_lost(ConnectionResetError("reset"))
        with pytest.raises(ConnectionResetError):
            await pending
        with pytest.raises(ConnectionResetError):
            await io.drain()

    asyncio.run(go())


def test_drain_waits_while_writing_is_paused() -> None:
    async def go() -> None:
        io = ClientIO(FakeTransport(), over_ssl=False)
        await io.drain()  # not paused: at once
        io.pause_writing()
        waiting = asyncio.ensure_future(io.drain())
        await asyncio.sleep(0)
        assert not waiting.done()  # a slow client: the answer's next bytes wait
        io.resume_writing()
        await waiting
        io.connection_lost(None)
        with pytest.raises(ConnectionResetError):
            await io.drain()  # nobody to write to

    asyncio.run(go())


def test_take_over_hands_on_what_the_stream_reader_held() -> None:
    async def go() -> None:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(0.05)  # the client's first bytes reach the stream reader
            io = take_over(reader, writer)
            out = b""
            while data := await io.read():
                out += data
            writer.transport.write(b"done")
            got.set_result(out)
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"first ")
        await asyncio.sleep(0.2)
        writer.write(b"second")
        writer.write_eof()
        assert await asyncio.wait_for(got, 5) == b"first second"
        assert await reader.read() == b"done"
        writer.close()
        server.close()

    asyncio.run(go())
