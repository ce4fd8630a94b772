"""SSH probe, part 43: a public-key login's session outliving its key's removal.

A key mapped in the connection's authorized_keys_file logs in as the file's subject and
groups; the PDP maps the key once, when the session opens. A key removed from the file
(someone left, a laptop lost) or mapped anew (`dba` taken away) stopped only the next
login: the session already open — execs on new channels, a dba's shell typed into, a
forward — went on as the old identity for as long as the client kept its connection
(a token's session ends at the token's expiry; a key's had no end). The proxy now checks
the key's line at each channel the client opens and every KEY_RECHECK_SECONDS: a key no
longer mapped by the line it logged in with ends its session, each channel told why,
close reason `key_revoked`.

Real components: OpenSSH's ssh-keygen keys, a PDP, the SSH proxy and sshd; the client is
asyncssh holding the key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from test_ssh_proxy import Stack, ssh_stack
from test_ssh_publickey import mapped

import proxies.ssh.proxy as ssh_proxy

pytestmark = pytest.mark.integration

HANG_GUARD = 60  # a wait's bound: reached only when the session was never ended


async def key_login(stack: Stack, key: Path) -> Any:
    return await asyncssh.connect(
        "127.0.0.1", stack.port, username="anyone", client_keys=[str(key)], known_hosts=None,
        agent_path=None, config=None, preferred_auth="publickey",
    )  # fmt: skip


async def closed_as(stack: Stack, reason: str) -> None:
    await stack.proxy.settled()
    closes = await stack.pdp.store.query(kind="session.close")
    assert [c.body.get("reason") for c in closes] == [reason], closes


@pytest.mark.parametrize("change", ["removed", "commented", "demoted"])
async def test_a_revoked_keys_next_channel_ends_its_session(tmp_path: Path, change: str) -> None:
    kim, _, mapping = mapped(tmp_path)
    async with ssh_stack(tmp_path, authorized_keys_file=str(mapping)) as stack:
        conn = await key_login(stack, kim)
        try:
            first = await conn.run("uptime")
            assert first.exit_status == 0 and "load average" in first.stdout, first.stderr
            key = (tmp_path / "kim_key.pub").read_text()
            changed = {
                "removed": "# nobody\n",
                "commented": f'#subject="kim@x.org",groups="dba,pii-readers" {key}',
                "demoted": f'subject="kim@x.org",groups="readonly" {key}',
            }
            mapping.write_text(changed[change])
            with pytest.raises((asyncssh.Error, OSError)):
                await conn.run("uptime")
            await asyncio.wait_for(conn.wait_closed(), HANG_GUARD)
        finally:
            conn.close()
        await closed_as(stack, "key_revoked")
        assert stack.sshd.sessions_started() == 1  # the first exec's only


async def test_a_revoked_keys_open_shell_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No new channel: the open shell (kim is a dba) ends at the next check."""
    monkeypatch.setattr(ssh_proxy, "KEY_RECHECK_SECONDS", 0.2, raising=False)
    kim, _, mapping = mapped(tmp_path)
    async with ssh_stack(tmp_path, authorized_keys_file=str(mapping)) as stack:
        conn = await key_login(stack, kim)
        try:
            process = await conn.create_process(term_type="xterm", term_size=(80, 24))
            process.stdin.write("echo started-$((40+2))\n")
            await asyncio.wait_for(process.stdout.readuntil("started-42"), HANG_GUARD)
            mapping.write_text("# nobody\n")
            await asyncio.wait_for(process.stdout.read(), HANG_GUARD)
            told = await asyncio.wait_for(process.stderr.read(), HANG_GUARD)
            assert "mapping file" in told, told
            await asyncio.wait_for(conn.wait_closed(), HANG_GUARD)
        finally:
            conn.close()
        await closed_as(stack, "key_revoked")


async def test_a_key_still_mapped_keeps_its_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file rewritten with the same line (and another key added): nothing ends."""
    monkeypatch.setattr(ssh_proxy, "KEY_RECHECK_SECONDS", 0.05)
    kim, _, mapping = mapped(tmp_path)
    eve = (tmp_path / "eve_key.pub").read_text()
    async with ssh_stack(tmp_path, authorized_keys_file=str(mapping)) as stack:
        async with await key_login(stack, kim) as conn:
            assert (await conn.run("uptime")).exit_status == 0
            eve_line = f'subject="eve@x.org",groups="readonly" {eve}'
            mapping.write_text(mapping.read_text() + eve_line)
            for _ in range(3):
                result = await conn.run("uptime")
                assert result.exit_status == 0, result.stderr
        await closed_as(stack, "client_closed")
