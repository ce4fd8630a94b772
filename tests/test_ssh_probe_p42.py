"""SSH probe, part 42: a session outliving its Vault-signed certificate.

The upstream is reached with a fresh key per session, its certificate signed by Vault's SSH
CA for the role's ttl (credentials.certificate_ttl): the validity is how long the CA lets
that login in. sshd reads a certificate only at authentication, so an upstream connection
made with it stays up, and runs every command a client asks, past its `valid_before`: a
certificate signed for 2 s ran `uptime` on its connection long after it had expired, for
as long as the client kept the connection (hours, under the token's expiry). The session
now ends at the certificate's end, as it does when a leased credential is lost: each
channel is told, the connection closes, and the session's close reason is
`credential_expired`.

Real components: OpenBao's SSH CA (tests/openbao.py), sshd trusting it, a PDP and the SSH
proxy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from openbao import OpenBao, ssh_ca_role
from test_ssh_proxy import ssh_stack

from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration

DBA = ("dba", "pii-readers")
SECONDS = 6  # the role's ttl: the certificate's validity (long enough for the first command)


def _signed(bao: OpenBao, tmp_path: Path) -> Any:
    """The SSH proxy stack reaching sshd as root with a certificate valid for SECONDS."""
    ca = ssh_ca_role(bao, "root", ttl=f"{SECONDS}s", default_extensions={"permit-pty": ""})
    credentials = {"provider": "vault", "ref": "ssh/sign/web", "username": "root"}
    return ssh_stack(
        tmp_path, trusted_ca=ca, extra={"vault": bao.vault_config()}, credentials=credentials
    )


async def test_the_session_ends_when_its_certificate_does(bao: OpenBao, tmp_path: Path) -> None:
    async with _signed(bao, tmp_path) as stack:
        conn = await stack.connect()
        try:
            first = await conn.run("uptime")
            assert first.exit_status == 0 and "load average" in first.stdout, first.stderr
            # a command running when the certificate ends is ended with its session
            process = await conn.create_process("free -s 1 >/dev/null")
            told = await asyncio.wait_for(process.stderr.read(), 60)
            assert "certificate" in told, told
            # the connection ends: no later exec reaches sshd on it
            await asyncio.wait_for(conn.wait_closed(), 60)
            with pytest.raises((asyncssh.Error, OSError)):
                await conn.run("uptime")
        finally:
            conn.close()
        await stack.proxy.settled()
        closes = await stack.pdp.store.query(kind="session.close")
    assert [c.body.get("reason") for c in closes] == ["credential_expired"], closes


async def test_a_shell_ends_with_its_certificate(bao: OpenBao, tmp_path: Path) -> None:
    """A dba's shell (allowed for ssh_shell_seconds, 8 hours by default) ends at the
    certificate's end too: it was the longest way past it."""
    async with _signed(bao, tmp_path) as stack:
        conn = await stack.connect(DBA)
        try:
            process = await conn.create_process(term_type="xterm", term_size=(80, 24))
            process.stdin.write("echo started-$((40+2))\n")
            await asyncio.wait_for(process.stdout.readuntil("started-42"), 60)
            await asyncio.wait_for(process.stdout.read(), 60)  # to the shell's end
            told = await asyncio.wait_for(process.stderr.read(), 60)
            assert "certificate" in told, told
            await asyncio.wait_for(conn.wait_closed(), 60)
        finally:
            conn.close()
        await stack.proxy.settled()
        closes = await stack.pdp.store.query(kind="session.close")
        events = await session_events(stack.pdp.store)
    assert [c.body.get("reason") for c in closes] == ["credential_expired"], closes
    # the shell's session was reaped as it ended: nothing it started runs on
    (shell,) = [e for e in events if e["type"] == "command" and e["command"] == ""]
    assert "reaped" in shell["details"], shell
