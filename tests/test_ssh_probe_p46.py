"""SSH probe, part 46: a forward's host in a spelling the upstream reads otherwise.

A forward (direct-tcpip, `ssh -L`; tcpip-forward, `ssh -R`) is decided as ssh.forward on
its host and port, and the upstream's sshd hands the host to getaddrinfo(3). The proxy
passed the host as the client wrote it: `0x7f000001`, `127.1`, `2130706433` and
`::ffff:127.0.0.1` were decided and recorded as four hosts, and sshd connected each to
127.0.0.1 — a rule on the destination (data a policy writes: no loopback, no metadata
address) held one spelling of an address among many, and the evidence named a host no
one connected to. A host holding a NUL went to sshd, which refuses the packet
(sshpkt_get_cstring) and drops the upstream connection: every channel of the session
with it.

The proxy now reads a host by an allow-list (proxies/ssh/destinations.py): an IP
literal in its standard form, written canonically and given to the policy as `address`
too, or a DNS name, lower-cased; another spelling of an address, brackets, controls, a
NUL are refused before the policy is asked and never reach the upstream. What is decided
is what the upstream receives.

Real components: sshd (AllowTcpForwarding), a PDP on the shipped policy, the SSH proxy,
asyncssh's client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest
from test_ssh_proxy import ssh_stack

from proxies.ssh.destinations import Refused, destination

pytestmark = pytest.mark.integration

DBA = ("dba", "pii-readers")  # forwarding is theirs (ssh.rego)
SPELLED = ("0x7f000001", "127.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.0.0.1 x",
           "[127.0.0.1]", "127.0.0.1\x00.example.com", "fe80::1%lo", "")  # fmt: skip


def test_one_spelling_of_an_address_or_a_name() -> None:
    for host in SPELLED:
        with pytest.raises(Refused):
            destination(host)
    assert destination("127.0.0.1") == ("127.0.0.1", "127.0.0.1")
    assert destination("::ffff:127.0.0.1") == ("127.0.0.1", "127.0.0.1")
    assert destination("0:0:0:0:0:0:0:1") == ("::1", "::1")
    assert destination("LocalHost.") == ("localhost", "")
    assert destination("1.db.example.com") == ("1.db.example.com", "")
    # a remote forward's "every address" passes; a local forward has none
    assert destination("", remote=True) == ("", "")
    assert destination("*", remote=True) == ("*", "")


async def test_a_spelled_address_never_reaches_the_upstream(tmp_path: Path) -> None:
    reached: list[bool] = []

    async def service(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(True)
        writer.write(b"service\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(service, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ssh_stack(tmp_path) as stack:
            async with await stack.connect(DBA) as conn:
                for host in SPELLED:
                    with pytest.raises(asyncssh.ChannelOpenError, match="portcullis: refused"):
                        await conn.open_connection(host, port)
                with pytest.raises(asyncssh.ChannelListenError):
                    await conn.forward_remote_port("127.1", 0, "127.0.0.1", port)
                assert not reached
                # the session's upstream connection is whole: canonical hosts connect
                for host in ("127.0.0.1", "::ffff:127.0.0.1", "LOCALHOST"):
                    reader, _ = await conn.open_connection(host, port)
                    assert await reader.readline() == b"service\n"
                # a remote forward listens where decided, and its connections come back to
                # the client under the address as the client asked it (its own match)
                listener = await conn.forward_remote_port("LOCALHOST", 0, "127.0.0.1", port)
                reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
                assert await reader.readline() == b"service\n"
                writer.close()
                listener.close()
            await stack.proxy.settled()
            decisions = await stack.pdp.store.query(kind="decision")
    finally:
        server.close()
    decided = [d.body for d in decisions if d.body.get("kind") == "ssh.forward"]
    local = [(d["raw"], d["attributes"].get("address")) for d in decided
             if d["attributes"]["direction"] == "local"]  # fmt: skip
    assert local == [(f"direct-tcpip 127.0.0.1:{port}", "127.0.0.1")] * 2 + [
        (f"direct-tcpip localhost:{port}", None)
    ], local
    assert [d["raw"] for d in decided if d["attributes"]["direction"] == "remote"] == [
        "tcpip-forward localhost:0"
    ]
