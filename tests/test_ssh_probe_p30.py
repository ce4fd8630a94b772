"""SSH probe, part 30: an SFTP session has a time limit.

An exec runs under ssh_exec_seconds and a shell under ssh_shell_seconds (p23, p25), but
a subsystem had none: a dba's SFTP session (or another subsystem the policy names) held
its upstream channel, and the sftp-server sshd runs for it, for as long as the client
stayed, past the limit a shell of the same session is closed at. A subsystem is as
interactive as a shell: the proxy now holds it to ssh_shell_seconds (the client told,
exit status 124, the channel's event says why), and a shell limit that is no number of
seconds denies it as it denies a shell.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest
from test_ssh_proxy import ssh_policy, ssh_stack

from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration

DBA = ("dba", "pii-readers")
HANG_GUARD = 600.0  # seconds: not a timing assertion, a bound on a test that would hang


async def test_an_sftp_session_past_the_shells_limit_is_closed(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, shell_seconds=2)
    async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
        async with await stack.connect(DBA) as conn:
            chan, _ = await conn.create_session(
                asyncssh.SSHClientSession, subsystem="sftp", encoding=None
            )
            # no SFTP packet is sent: the session only stays (before: for ever)
            await asyncio.wait_for(chan.wait_closed(), HANG_GUARD)
            assert chan.get_exit_status() == 124
            async with conn.start_sftp_client() as sftp:  # the session goes on
                assert (await sftp.realpath(".")).startswith("/")
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    ended = [e for e in events if e["type"] == "command" and e["command"] == "sftp"]
    assert ended and ended[0]["details"]["exit_status"] == 124, ended
    assert "ssh_shell_seconds" in ended[0]["details"]["error"]


async def test_an_unusable_shell_limit_denies_a_subsystem(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, shell_seconds=-1)
    async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
        async with await stack.connect(DBA) as conn:
            process = await conn.create_process(subsystem="sftp")
            refused = await asyncio.wait_for(process.wait(), HANG_GUARD)
            assert refused.exit_status == 1
            assert "is no number of seconds" in str(refused.stderr), refused.stderr
        assert stack.sshd.sessions_started() == 0
