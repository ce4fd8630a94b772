"""The runtime's Relay over real sockets (socket pairs): backpressure and holds.

A toy protocol on the Relay passes bytes straight through, except that a client chunk
starting with b"slow" is finished in a task (Relay.wait) that waits for the test. What
these tests try to break: a slow client must stop the proxy reading the server (not pile
its bytes up in memory), and a held side's chunks — the one being finished, those that
arrived before the pause took effect, those still in the socket — reach the peer in the
order they were sent, once, after the hold is released. Each test runs on asyncio's own
loop and on uvloop (the proxy's).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import pytest
import uvloop

from proxies.runtime.relay import CLIENT, PEER_FULL, SERVER, WAITING, Relay

WRITE_HIGH_WATER = 16 * 1024
READ_CHUNK = 256 * 1024  # the most one read of a transport takes at once


LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class PassThrough(Relay):
    """Bytes as they come; a client chunk starting with b"slow" waits for `go`."""

    def __init__(
        self,
        to_client: asyncio.StreamWriter,
        to_server: asyncio.StreamWriter,
        statement_limit: float = 0.0,
    ) -> None:
        super().__init__(self._client_data, self._server_data, statement_limit, "pass-through")
        self.to_client = to_client
        self.to_server = to_server
        self.go = asyncio.Event()

    def _client_data(self, data: bytes) -> None:
        if self.held_back(CLIENT, data):
            return
        if data.startswith(b"slow"):
            self.wait(CLIENT, self._slow(data))
            return
        self.to_server.write(data)

    async def _slow(self, data: bytes) -> None:
        await self.go.wait()
        self.to_server.write(data)

    def _server_data(self, data: bytes) -> None:
        if self.held_back(SERVER, data):
            return
        self.to_client.write(data)


@dataclass
class Wired:
    """The relay, its two proxy-side writers, and the test's ends of both sockets."""

    relay: PassThrough
    proxy_client: asyncio.StreamWriter  # the proxy's end of the client socket
    proxy_server: asyncio.StreamWriter  # the proxy's end of the upstream socket
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter]  # the client
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter]  # the upstream server


async def _pair() -> tuple[
    tuple[asyncio.StreamReader, asyncio.StreamWriter],
    tuple[asyncio.StreamReader, asyncio.StreamWriter],
]:
    proxy_end, far_end = socket.socketpair()
    return await asyncio.open_connection(sock=proxy_end), await asyncio.open_connection(
        sock=far_end
    )


@asynccontextmanager
async def wiring() -> AsyncIterator[Wired]:
    (client_reader, proxy_client), client = await _pair()
    (server_reader, proxy_server), server = await _pair()
    # a small write buffer, so a client that does not read backs the proxy up soon
    proxy_client.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
    relay = PassThrough(proxy_client, proxy_server)
    relay.adopt(proxy_client, proxy_server)
    relay.catch_up(client_reader, server_reader)
    try:
        yield Wired(relay, proxy_client, proxy_server, client, server)
    finally:
        await relay.stop()
        for writer in (proxy_client, proxy_server, client[1], server[1]):
            writer.close()


def on_both_loops(scenario: Callable[[Wired], Awaitable[None]]) -> Callable[[str], None]:
    """A test running the scenario, freshly wired, on asyncio's loop and on uvloop."""

    @pytest.mark.parametrize("loop", LOOPS)
    def test(loop: str) -> None:
        async def wired_run() -> None:
            async with wiring() as wired:
                await scenario(wired)

        with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
            runner.run(wired_run())

    test.__name__, test.__doc__ = scenario.__name__, scenario.__doc__
    return test


def reading(writer: asyncio.StreamWriter) -> bool:
    """Whether the proxy reads this socket now (uvloop's transports are no asyncio.Transport)."""
    return cast(asyncio.Transport, writer.transport).is_reading()


def read_before_the_pause(writer: asyncio.StreamWriter, data: bytes) -> None:
    """A chunk the transport read just before a pause took effect, as it hands it on."""
    cast(asyncio.Protocol, writer.transport.get_protocol()).data_received(data)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (yielding to the loop) until the condition holds; the test fails on timeout."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)


@on_both_loops
async def test_a_client_that_does_not_read_stops_the_proxy_reading_the_server(wired: Wired) -> None:
    relay = wired.relay
    _, server_out = wired.server
    client_in, _ = wired.client
    payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)  # 8 MiB, far past socket buffers

    async def server_sends() -> None:
        server_out.write(payload)
        await server_out.drain()

    sending = asyncio.ensure_future(server_sends())
    await until(lambda: relay.holds(SERVER) == {PEER_FULL})
    # the server's side is not read while the client's writes are backed up ...
    assert not reading(wired.proxy_server)
    # ... so the proxy holds at most its buffer's high water and one read's worth
    assert wired.proxy_client.transport.get_write_buffer_size() <= WRITE_HIGH_WATER + READ_CHUNK
    assert not sending.done()  # the rest waits in the server's own socket, not in the proxy

    received = await client_in.readexactly(len(payload))
    await sending
    assert received == payload  # every byte, once, in order
    await until(lambda: not relay.holds(SERVER))
    assert reading(wired.proxy_server)
    assert relay.holds(CLIENT) == frozenset()  # the other direction was never held


@on_both_loops
async def test_a_slow_server_stops_the_proxy_reading_the_client(wired: Wired) -> None:
    relay = wired.relay
    wired.proxy_server.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
    _, client_out = wired.client
    server_in, _ = wired.server
    payload = b"q" * (8 * 1024 * 1024)

    async def client_sends() -> None:
        client_out.write(payload)
        await client_out.drain()

    sending = asyncio.ensure_future(client_sends())
    await until(lambda: relay.holds(CLIENT) == {PEER_FULL})
    assert not reading(wired.proxy_client)
    assert wired.proxy_server.transport.get_write_buffer_size() <= WRITE_HIGH_WATER + READ_CHUNK
    assert await server_in.readexactly(len(payload)) == payload
    await sending
    await until(lambda: not relay.holds(CLIENT))


@on_both_loops
async def test_a_held_side_keeps_its_order_and_resumes_once_released(wired: Wired) -> None:
    relay = wired.relay
    _, client_out = wired.client
    server_in, _ = wired.server

    client_out.write(b"one.")
    assert await server_in.readexactly(4) == b"one."
    client_out.write(b"slow.")
    await until(lambda: relay.holds(CLIENT) == {WAITING})
    assert not reading(wired.proxy_client)
    # a chunk the transport read before the pause took effect: it waits its turn ...
    read_before_the_pause(wired.proxy_client, b"two.")
    # ... and one still in the socket is not read while the side is held
    client_out.write(b"three.")
    await client_out.drain()
    assert relay.holds(CLIENT) == {WAITING}

    relay.go.set()
    assert await server_in.readexactly(len(b"slow.two.three.")) == b"slow.two.three."
    await until(lambda: not relay.holds(CLIENT))
    assert reading(wired.proxy_client)
    assert not relay.ended.done()


@on_both_loops
async def test_reading_resumes_only_when_every_hold_is_released(wired: Wired) -> None:
    relay = wired.relay
    relay.hold(CLIENT, WAITING)
    relay.hold(CLIENT, PEER_FULL)
    relay.release(CLIENT, WAITING)
    assert relay.holds(CLIENT) == {PEER_FULL} and not reading(wired.proxy_client)
    relay.release(CLIENT, PEER_FULL)
    assert relay.holds(CLIENT) == frozenset() and reading(wired.proxy_client)


@on_both_loops
async def test_a_failed_hold_ends_the_session_and_later_chunks_are_dropped(wired: Wired) -> None:
    relay = wired.relay
    _, client_out = wired.client
    server_in, _ = wired.server

    async def breaks() -> None:
        raise RuntimeError("the work failed")

    relay.wait(CLIENT, breaks())
    assert await relay.ended == "error: RuntimeError"
    # a chunk read after the end is dropped, not sent on
    read_before_the_pause(wired.proxy_client, b"after the end")
    wired.proxy_server.close()
    assert await server_in.read() == b""
    client_out.close()  # a side hanging up later: the first reason stays
    await until(lambda: wired.proxy_client.transport.is_closing())
    assert relay.ended.result() == "error: RuntimeError"


@on_both_loops
async def test_a_side_that_hangs_up_ends_the_relay_with_its_reason(wired: Wired) -> None:
    _, client_out = wired.client
    client_out.close()
    assert await wired.relay.ended == "client_disconnect"


@on_both_loops
async def test_the_watchdog_calls_overdue_only_while_no_progress_is_made(wired: Wired) -> None:
    class Watched(PassThrough):
        def __init__(self, to_client: asyncio.StreamWriter, to_server: asyncio.StreamWriter):
            super().__init__(to_client, to_server, statement_limit=0.05)
            self.steps = 0
            self.overdue_at: list[int] = []
            self.stalled = asyncio.Event()

        def busy(self) -> bool:
            return True

        def progress(self) -> int:
            return self.steps

        def overdue(self) -> None:
            self.overdue_at.append(self.steps)
            self.stalled.set()

    relay = Watched(wired.proxy_client, wired.proxy_server)
    relay.arm_watchdog()
    relay.steps = 1  # progress before the first check: that one lets it run on
    await relay.stalled.wait()
    assert relay.overdue_at == [1]  # the second check, with no progress since the first
    await relay.stop()
