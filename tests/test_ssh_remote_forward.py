"""Remote forwarding (`ssh -R`) through the SSH proxy: decided as ssh.forward (direction
remote); refused to readers (nothing listens on the upstream), relayed for dba (the
upstream listens; a connection there reaches the client's side) — against a real sshd, a
real PDP and real clients (asyncssh, OpenSSH `ssh -R`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
from pdp_harness import free_port
from ssh_harness import askpass, client_options
from test_ssh_proxy import ssh_stack

from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration
DBA = ("dba", "pii-readers")


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP server on the client's side: answers each line with `echo: line`."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(b"echo: " + line)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def through(port: int, line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line)
    answer = await reader.readline()
    writer.close()
    return answer


def listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_remote_forward_relayed_for_dba_refused_to_readers(tmp_path: Path) -> None:
    async with echo_server() as echo_port, ssh_stack(tmp_path) as stack:
        wanted = free_port()
        async with await stack.connect(("readonly",)) as conn:
            with pytest.raises(asyncssh.ChannelListenError):
                await conn.forward_remote_port("127.0.0.1", wanted, "127.0.0.1", echo_port)
        assert not listening(wanted)
        async with await stack.connect(DBA) as conn:
            listener = await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", echo_port)
            bound = listener.get_port()
            assert bound  # the port the upstream listens on
            assert await through(bound, b"first\n") == b"echo: first\n"
            assert await through(bound, b"second\n") == b"echo: second\n"
            listener.close()
            await listener.wait_closed()
        await stack.proxy.settled()
        decisions = await stack.pdp.store.query(kind="decision")
        events = await session_events(stack.pdp.store)
    forwards = [d.body for d in decisions if d.body.get("kind") == "ssh.forward"]
    assert [(f["verdict"], f["attributes"]["direction"]) for f in forwards] == [
        ("deny", "remote"),
        ("allow", "remote"),
    ]
    connections = [
        e for e in events if e.get("details", {}).get("kind") == "ssh.forward.connection"
    ]
    assert len(connections) == 2
    assert {c["details"]["bytes_to_upstream"] for c in connections} == {
        len(b"echo: first\n"),
        len(b"echo: second\n"),
    }


async def test_openssh_remote_forward(tmp_path: Path) -> None:
    async with echo_server() as echo_port, ssh_stack(tmp_path) as stack:
        remote_port = free_port()
        env = askpass(stack.tmp, stack.token(DBA))
        process = await asyncio.create_subprocess_exec(
            "ssh", *client_options(stack.port), "-p", str(stack.port), "-N",
            "-o", "ExitOnForwardFailure=yes",
            "-R", f"127.0.0.1:{remote_port}:127.0.0.1:{echo_port}", "ann@127.0.0.1",
            env=env, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            # the proxy holds the upstream's listener (not a probe connection: one made
            # before the proxy registered the listener would be refused)
            while not any(c.remote_listeners for c in stack.proxy.clients):
                assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
            assert listening(remote_port)
            assert await through(remote_port, b"over ssh -R\n") == b"echo: over ssh -R\n"
        finally:
            process.terminate()
            await process.wait()
