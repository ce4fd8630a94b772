"""SSH probe, part 53: forwards of UNIX sockets and tunnels, refused with no evidence.

A client may ask the proxy to connect to a UNIX socket on the upstream (direct-streamlocal,
OpenSSH's `ssh -L local:/run/docker.sock`: the docker daemon, the database's socket, the
systemd bus), to listen on one there (streamlocal-forward, `ssh -R /path:...`), or for a
layer 3 or 2 tunnel (`ssh -w`). The proxy relays none of them, and asyncssh refused each
for it: the upstream saw nothing, but neither did the audit trail, so a reader trying the
upstream's docker socket left no trace, and the client read `Connection refused`, as if
the socket were not there.

The proxy now refuses each itself, for every group (a dba too), saying why, and records
the attempt as a refused ssh.forward (its path, or the tunnel's mode).

Real components: sshd, a PDP on the shipped policy, the SSH proxy, asyncssh's client and
OpenSSH's (`ssh -R path:host:port`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest
from ssh_harness import askpass, client_options
from test_ssh_proxy import ssh_stack

from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration

READER = ("readonly",)
DBA = ("dba", "pii-readers")  # forwarding is theirs (ssh.rego)
SOCKET = "/run/postgresql/.s.PGSQL.5432"
REFUSED = "portcullis: refused: the proxy does not forward UNIX sockets or tunnels"


async def test_unix_socket_forwards_and_tunnels_are_refused_and_recorded(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        for groups in (READER, DBA):
            async with await stack.connect(groups) as conn:
                with pytest.raises(asyncssh.ChannelOpenError, match=REFUSED):
                    await conn.open_unix_connection(SOCKET)
                with pytest.raises(asyncssh.ChannelListenError):
                    await conn.forward_remote_path(str(tmp_path / "listen.sock"), SOCKET)
                for tunnel in (conn.open_tun, conn.open_tap):
                    with pytest.raises(asyncssh.ChannelOpenError, match=REFUSED):
                        await tunnel()
                assert (await conn.run("uptime")).exit_status == 0  # the session goes on
        # OpenSSH's client: a remote forward of a path
        argv = ["ssh", *client_options(stack.port), "-N", "-o", "ExitOnForwardFailure=yes",
                "-R", f"{tmp_path / 'openssh.sock'}:127.0.0.1:9", "-p", str(stack.port),
                "ann@127.0.0.1"]  # fmt: skip
        client = await asyncio.create_subprocess_exec(
            *argv, env=askpass(stack.tmp, stack.token(READER)),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        _, said = await asyncio.wait_for(client.communicate(), 30)
        assert client.returncode == 255 and b"forwarding failed" in said, said
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
        assert not (tmp_path / "listen.sock").exists()
        assert not (tmp_path / "openssh.sock").exists()
    refused = [
        (e["command"], e["details"].get("path", e["details"].get("mode")))
        for e in events
        if e.get("type") == "command" and e["details"].get("kind") == "ssh.forward"
    ]
    assert all(e["verdict"] == "deny" for e in events if e["details"].get("refused")), events
    attempts = [
        (f"direct-streamlocal {SOCKET!r}", SOCKET),
        (f"streamlocal-forward {str(tmp_path / 'listen.sock')!r}", str(tmp_path / "listen.sock")),
        ("tunnel tun any", "tun"),
        ("tunnel tap any", "tap"),
    ]
    assert refused == attempts * 2 + [
        (f"streamlocal-forward {str(tmp_path / 'openssh.sock')!r}", str(tmp_path / "openssh.sock"))
    ], refused
