"""SSH probe, part 31: forwarded connections to a client taking packets of a few bytes.

Part 29 refused to relay a session channel whose client takes packets below
MIN_CLIENT_PACKET (a byte a packet: the proxy's event loop, every session's, busy for
seconds per 100 KB). A forward's channels went the same way: a dba's `ssh -L`
(direct-tcpip) opened with a maximum packet of 1 byte had what the far end sent relayed
a byte a packet, and so did a remote forward's (`ssh -R`) forwarded-tcpip channel the
proxy opens to a client that answers with such a size. Now the direct-tcpip open is
refused, saying why, and a remote forward's connection is closed on both sides, nothing
relayed (its event counts no byte); usual sizes are relayed as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
import pytest
from ssh_probe_stack import stack_fixture
from test_ssh_proxy import Stack

from pdp.domain.recordings import session_events
from proxies.ssh.channel import MIN_CLIENT_PACKET

pytestmark = pytest.mark.integration

DBA = ("dba", "pii-readers")
HANG_GUARD = 600.0  # seconds: not a timing assertion, a bound on a test that would hang
LINE = b"x" * 4000 + b"\n"

stack = stack_fixture()


@contextlib.asynccontextmanager
async def line_server() -> AsyncIterator[int]:
    """A TCP server sending LINE to each connection, then closing it."""

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(LINE)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


class Counted(asyncssh.SSHTCPSession[bytes]):
    def __init__(self) -> None:
        self.packets = 0
        self.data = b""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.packets += 1
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def test_a_local_forward_of_small_packets_is_refused(stack: Stack) -> None:
    async with line_server() as port, await stack.connect(DBA) as conn:
        with pytest.raises(asyncssh.ChannelOpenError) as refused:
            await conn.create_connection(Counted, "127.0.0.1", port, max_pktsize=1)
        assert "maximum packet size (1 bytes)" in refused.value.reason
        _, usual = await conn.create_connection(
            Counted, "127.0.0.1", port, max_pktsize=MIN_CLIENT_PACKET
        )
        await asyncio.wait_for(usual.closed, HANG_GUARD)
        assert usual.data == LINE
        assert usual.packets <= len(LINE) // MIN_CLIENT_PACKET + 2


@pytest.mark.parametrize("size", [1, MIN_CLIENT_PACKET])
async def test_a_remote_forward_to_small_packets_relays_nothing(stack: Stack, size: int) -> None:
    sessions: list[Counted] = []

    def made(orig_host: str, orig_port: int) -> Counted:
        sessions.append(Counted())
        return sessions[-1]

    async with await stack.connect(DBA) as conn:
        listener = await conn.create_server(made, "127.0.0.1", 0, max_pktsize=size)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
        writer.write(LINE)
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(reader.read(), HANG_GUARD)  # closed by the far side
        writer.close()
        await asyncio.wait_for(sessions[0].closed, HANG_GUARD)
        listener.close()
    await stack.proxy.settled()
    events = await session_events(stack.pdp.store)
    (connection,) = [
        e["details"] for e in events if e.get("details", {}).get("kind") == "ssh.forward.connection"
    ]
    if size < MIN_CLIENT_PACKET:
        assert sessions[0].data == b"", sessions[0].packets
        assert connection["bytes_to_client"] == 0
    else:
        assert sessions[0].data == LINE
        assert connection["bytes_to_client"] == len(LINE)
