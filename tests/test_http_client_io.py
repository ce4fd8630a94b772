"""ClientIO (proxies/http/client_io.py): the HTTP proxy reads its clients through it in
place of asyncio streams, put on the transport by the runtime's listener before any byte is
read; it must hand on every byte in order, the client's end and errors, and pace both
directions as the streams did (reading paused past LIMIT, drain() waiting while the
transport's buffer is full)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from proxies.http import client_io
from proxies.http.client_io import ClientIO
from proxies.runtime.listener import Listener


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


LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}  # the proxies'


def run_on(loop: str, main: Any) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main)


async def _served(listener: Listener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    await listener.start()
    return await asyncio.open_connection("127.0.0.1", listener.port)


@pytest.mark.parametrize("loop", LOOPS)
def test_the_listener_hands_the_transport_over_before_any_byte_is_read(loop: str) -> None:
    """Every byte the client sent, also before the connection's task first ran, reaches the
    ClientIO in order; the listener closes the connection when its coroutine ends."""

    async def go() -> None:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def serve(io: ClientIO, transport: asyncio.Transport) -> None:
            await asyncio.sleep(0.05)  # the client's first bytes arrive before any read
            out = b""
            while data := await io.read():
                out += data
            transport.write(b"done")
            got.set_result(out)

        def take(transport: asyncio.Transport) -> tuple[ClientIO, Any]:
            io = ClientIO(transport, over_ssl=False)
            return io, serve(io, transport)

        listener = Listener("test", "127.0.0.1:0", take_transport=take)
        reader, writer = await _served(listener)
        writer.write(b"first ")
        await asyncio.sleep(0.2)
        writer.write(b"second")
        writer.write_eof()
        assert await asyncio.wait_for(got, 5) == b"first second"
        assert await asyncio.wait_for(reader.read(), 5) == b"done"  # then closed by the listener
        assert not listener.clients
        writer.close()
        await listener.stop()

    run_on(loop, go())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_failing_connection_is_logged_and_closed_and_the_listener_serves_on(
    caplog: pytest.LogCaptureFixture, loop: str
) -> None:
    async def go() -> None:
        calls = 0

        async def serve(io: ClientIO) -> None:
            if await io.read() == b"boom":
                raise RuntimeError("handler failed")

        def take(transport: asyncio.Transport) -> tuple[ClientIO, Any]:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise ValueError("could not build the connection")
            io = ClientIO(transport, over_ssl=False)
            return io, serve(io)

        listener = Listener("toy", "127.0.0.1:0", take_transport=take)
        for _ in range(3):  # fails in its coroutine, fails being built, then one more
            reader, writer = await _served(listener)
            writer.write(b"boom")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
            writer.close()
        assert calls == 3
        assert caplog.text.count("toy: connection failed") == 3
        await listener.stop()

    run_on(loop, go())


@pytest.mark.parametrize("loop", LOOPS)
def test_stop_cancels_connections_that_outlive_the_drain(loop: str) -> None:
    async def go() -> None:
        ended: list[str] = []

        async def serve(io: ClientIO) -> None:
            try:
                await io.read()
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise

        def take(transport: asyncio.Transport) -> tuple[ClientIO, Any]:
            io = ClientIO(transport, over_ssl=False)
            return io, serve(io)

        listener = Listener("toy", "127.0.0.1:0", take_transport=take, drain_seconds=0.1)
        reader, writer = await _served(listener)
        writer.write(b"x")
        for _ in range(50):
            if listener.clients:
                break
            await asyncio.sleep(0.01)
        await listener.stop()
        assert ended == ["cancelled"]
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    run_on(loop, go())


def test_a_listener_takes_one_way_of_serving() -> None:
    with pytest.raises(ValueError):
        Listener("toy", "127.0.0.1:0")
    with pytest.raises(ValueError):
        Listener("toy", "127.0.0.1:0", handle=lambda r, w: asyncio.sleep(0),
                 take_transport=lambda t: (ClientIO(t, False), asyncio.sleep(0)))  # fmt: skip
