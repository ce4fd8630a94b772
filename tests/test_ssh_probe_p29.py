"""SSH probe, part 29: a channel whose maximum packet size makes the proxy send a byte a
packet.

A client names, as it opens a channel, the largest packet it takes on it (RFC 4254 5.1);
asyncssh refuses only 0. The proxy relays an allowed command's output in packets of at
most that size, each framed, encrypted and written apart in one run of the event loop
that every other session of the proxy waits on: a reader's channel opened with a maximum
of 1 byte had `cat /var/log/x` (allowed) of 200 KB sent as 200,000 packets, some 20 s of
the loop on this machine (its own `uptime` and everyone else's waited). The proxy now
refuses to relay a channel asking for less than MIN_CLIENT_PACKET (1 KiB; OpenSSH,
PuTTY, libssh, Paramiko and Go ask 16-32 KiB): its request is denied, the reason on
stderr and exit status 1, nothing reaches sshd.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from ssh_probe_stack import READER, stack_fixture
from test_ssh_proxy import Stack

from pdp.domain.recordings import session_events
from proxies.ssh.channel import MIN_CLIENT_PACKET

pytestmark = pytest.mark.integration

stack = stack_fixture()


class Counted(asyncssh.SSHClientSession[bytes]):
    """A client session counting what it receives: bytes and packets, stdout and stderr."""

    def __init__(self) -> None:
        self.packets = 0
        self.out = b""
        self.err = b""
        self.status: int | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.packets += 1
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.err += data
        else:
            self.out += data

    def exit_status_received(self, status: int) -> None:
        self.status = status

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = Path("/var/log") / f"portcullis-p29-{os.getpid()}-{tmp_path.name}.log"
    path.write_text(("x" * 79 + "\n") * 640)  # 50 KiB
    yield path
    path.unlink()


async def run_with_packets(conn: Any, line: str, size: int) -> Counted:
    _, session = await conn.create_session(Counted, line, encoding=None, max_pktsize=size)
    await asyncio.wait_for(session.closed, 600)  # a bound on a hang, not a timing
    return session


@pytest.mark.parametrize("size", [1, 64, MIN_CLIENT_PACKET - 1])
async def test_a_channel_of_small_packets_is_not_relayed(
    stack: Stack, log_file: Path, size: int
) -> None:
    async with await stack.connect(READER) as conn:
        session = await run_with_packets(conn, f"cat {log_file}", size)
        assert session.status == 1, (session.status, session.packets)
        assert session.out == b""
        said = session.err.decode()
        assert f"maximum packet size ({size} bytes)" in said, said
        assert (await conn.run("uptime")).exit_status == 0  # the session goes on
    assert stack.sshd.sessions_started() == 1  # the uptime alone
    await stack.proxy.settled()
    events = await session_events(stack.pdp.store)
    (refused,) = [e for e in events if e["type"] == "command" and "cat " in e["command"]]
    assert refused["verdict"] == "deny", refused


async def test_a_channel_of_usual_packets_is_relayed(stack: Stack, log_file: Path) -> None:
    async with await stack.connect(READER) as conn:
        for size in (MIN_CLIENT_PACKET, 32768):
            session = await run_with_packets(conn, f"cat {log_file}", size)
            assert session.status == 0, session.err
            assert session.out == log_file.read_bytes()
            assert session.packets <= len(session.out) // MIN_CLIENT_PACKET + 2
