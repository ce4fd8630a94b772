"""What the SSH proxy changes in asyncssh's sending (proxies/ssh/packets.py), and when a
channel is answered: no ignore packet before each packet while the cipher is one that owes
nothing to it (AES-GCM, ChaCha20-Poly1305, AES-CTR) — on the client's side and on the
upstream's — but still with CBC, and still when sent on purpose; a command's client gets
its whole output and exit status as soon as the upstream said both.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String
from test_ssh_proxy import Stack, ssh_stack

from proxies.ssh import packets

pytestmark = pytest.mark.integration


def counting(conn: Any, direction: str) -> Counter[int]:
    """Packet types `conn` sends or receives from now on (asyncssh logs each packet
    through the handler's log_*_packet, the connection's own for connection packets)."""
    seen: Counter[int] = Counter()
    name = f"log_{direction}_packet"
    logged = getattr(conn, name)

    def log(pkttype: int, *args: Any, **kwargs: Any) -> None:
        seen[pkttype] += 1
        logged(pkttype, *args, **kwargs)

    setattr(conn, name, log)
    return seen


@pytest.fixture
async def stack(tmp_path: Path) -> Any:
    async with ssh_stack(tmp_path) as s:
        yield s


def test_the_installed_asyncssh_takes_the_change() -> None:
    # a newer asyncssh whose send_packet changed shape keeps its chaff: say so here
    assert packets.KNOWN


async def test_no_chaff_on_either_side_of_the_proxy(stack: Stack) -> None:
    async with await stack.connect() as conn:
        received = counting(conn, "received")  # connection packets: an ignore is one
        assert (await conn.run("uptime")).exit_status == 0
        (client,) = stack.proxy.clients
        assert client.conn is not None and client.upstream is not None
        sent_up = counting(client.upstream, "sent")
        packets_up, packets_down = client.upstream._send_seq, conn._recv_seq
        for _ in range(3):
            result = await conn.run("uptime")
            assert result.exit_status == 0 and "load average" in result.stdout
        assert received[MSG_IGNORE] == 0 and sent_up[MSG_IGNORE] == 0
        # each exec: open, exec, eof, close upstream; confirmation, success, data, eof,
        # exit status, close (a window adjust at most) to the client — not twice that
        assert 3 * 3 <= client.upstream._send_seq - packets_up <= 3 * 5
        assert 3 * 6 <= conn._recv_seq - packets_down <= 3 * 8
        client.conn.send_packet(MSG_IGNORE, String(b"on purpose"))  # still goes
        assert (await conn.run("uptime")).exit_status == 0
        assert received[MSG_IGNORE] == 1


async def test_chaff_stays_with_cbc_and_when_sent_on_purpose(tmp_path: Path) -> None:
    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return False  # no authentication: the packets of interest come after kex

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    sent: dict[str, Counter[int]] = {}
    chaff: dict[str, int] = {}

    class Client(asyncssh.SSHClient):
        def __init__(self, cipher: str) -> None:
            self.cipher = cipher

        def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
            packets.without_chaff(conn)
            sent[self.cipher] = counting(conn, "sent")

    acceptor = await asyncssh.listen(
        "127.0.0.1", 0, server_factory=Server, server_host_keys=[host_key],
        encryption_algs=["aes128-cbc", "aes128-gcm@openssh.com", "aes128-ctr"],
    )  # fmt: skip
    try:
        for cipher in ("aes128-cbc", "aes128-gcm@openssh.com", "aes128-ctr"):
            async with asyncssh.connect(
                "127.0.0.1", acceptor.get_port(), username="u", known_hosts=None,
                client_keys=None, agent_path=None, config=None, encryption_algs=[cipher],
                client_factory=lambda cipher=cipher: Client(cipher),
            ) as conn:  # fmt: skip
                assert conn.get_extra_info("send_cipher") == cipher
                chaff[cipher] = sent[cipher][MSG_IGNORE]  # before its packets since kex
                conn.send_packet(MSG_IGNORE, String(b"on purpose"))
                assert sent[cipher][MSG_IGNORE] == chaff[cipher] + 1
    finally:
        acceptor.close()
    # CBC keeps asyncssh's ignore packet before each packet; the others send none
    assert chaff == {"aes128-cbc": chaff["aes128-cbc"], "aes128-gcm@openssh.com": 0,
                     "aes128-ctr": 0}  # fmt: skip
    assert chaff["aes128-cbc"] >= 1


async def test_a_commands_whole_output_and_status_arrive(stack: Stack) -> None:
    log = Path("/var/log/dpkg.log")
    if not log.is_file():
        pytest.skip("no /var/log/dpkg.log on this machine")
    whole = log.read_bytes()
    async with await stack.connect() as conn:
        for _ in range(3):
            result = await conn.run(f"cat {log}", encoding=None)
            assert result.exit_status == 0 and result.stdout == whole
            missing = await conn.run("cat /var/log/portcullis-no-such-file")
            assert missing.exit_status == 1 and "No such file" in missing.stderr
