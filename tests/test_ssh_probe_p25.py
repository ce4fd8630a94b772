"""SSH probe, part 25: what was left of the root upstream's reaper and the limits (p23).

- An interactive shell had no time limit: a dba's shell with `while :; do :; done` typed
  into it (or a forgotten terminal) held its upstream session and a core for as long as
  the client stayed. Every SSH session now carries ssh_shell_seconds
  (data.portcullis.ssh.shell_seconds, default 28800): past it the shell is closed, the
  client told, exit status 124, the channel's event says why.
- A root upstream's shell left its session running: `nohup free ... &` typed into it ran
  on after `exit`. On such an account the shell is asked of sshd as an exec of the
  account's login shell after the proxy's report line (reaper.py), and its session is
  reaped when the shell ends, as a command's is when the proxy ends it. So on any
  account: sshd kills nothing of a shell that exits (the postgres account's shell left
  its `nohup x &` running too).
- A channel refused by the session's cap (ssh_max_channels) was only logged: it is now a
  denied command in the session's evidence.
- A reap that failed was a warning in the proxy's log: a command the proxy had to end ran
  on, the auditor told nothing. A failed reap is now in the channel's event, an error and
  a metric (upstream_errors{reason="ssh_reap_failed"}), and the session is closed (fail
  closed). And the reap no longer fails because the client holds every session sshd
  allows (MaxSessions): with sshd's MaxSessions 2, two never-ending commands were open and
  the reap's channel was refused, so the first ran on after its channel closed; the proxy
  now holds a channel for its reaps before any command's.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import test_ssh_proxy
from ssh_harness import Sshd
from test_ssh_probe_p18 import ACCOUNT, AccountSshd, needs_account
from test_ssh_probe_p23 import HANG_GUARD, gone, kill_left, up
from test_ssh_proxy import ssh_policy, ssh_stack

from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration

READER = ("readonly",)
DBA = ("dba", "pii-readers")


def marker(i: int) -> str:
    """A count for free(1) no other process's command line holds (p23's are below 7e6)."""
    return str(7_000_000 + (os.getpid() % 10_000) * 100 + i)


@pytest.fixture
def root_only() -> None:
    # the harness's sshd logs in the current user (ssh_harness.Sshd)
    assert getpass.getuser() == "root" or pytest.skip("the upstream account is not root here")


async def test_a_shell_past_its_time_limit_is_closed(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, shell_seconds=2)
    m = marker(1)
    try:
        async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
            async with await stack.connect(DBA) as conn:
                process = await conn.create_process(term_type="xterm", term_size=(80, 24))
                process.stdin.write(f"until false; do :; done; df {m}\n")
                # bounded only so that a proxy without the limit fails instead of hanging
                ended = await asyncio.wait_for(process.wait(), HANG_GUARD)
                assert ended.exit_status == 124, ended
                said = str(ended.stderr)
                assert "shell ran past its time limit of 2 s (ssh_shell_seconds)" in said
                assert await gone(m)
                assert (await conn.run("uptime")).exit_status == 0  # the session goes on
            await stack.proxy.settled()
            events = await session_events(stack.pdp.store)
        (shell,) = [e for e in events if e["type"] == "command" and e["command"] == ""]
        assert shell["details"]["exit_status"] == 124
        assert "ssh_shell_seconds" in shell["details"]["error"]
        # the recording carries what the shell showed up to its end
        casts = [e for e in events if e.get("details", {}).get("kind") == "ssh.asciicast"]
        assert casts
    finally:
        kill_left(m)


async def test_a_root_shells_background_jobs_end_with_it(tmp_path: Path, root_only: None) -> None:
    marks = [marker(2), marker(3), marker(4)]
    try:
        async with ssh_stack(tmp_path) as stack:
            async with await stack.connect(DBA) as conn:
                process = await conn.create_process(term_type="xterm", term_size=(80, 24))
                process.stdin.write(
                    f"nohup free -s 1 -c {marks[0]} >/dev/null 2>&1 &\n"
                    f"(free -s 1 -c {marks[1]} >/dev/null 2>&1 &)\n"
                    f"free -s 1 -c {marks[2]} >/dev/null 2>&1 & disown\n"
                    "echo started-$((40+2))\n"
                )
                await process.stdout.readuntil("started-42")
                assert all([await up(m) for m in marks])
                process.stdin.write("exit\n")
                ended = await asyncio.wait_for(process.wait(), HANG_GUARD)
                assert ended.exit_status == 0, ended
                assert "portcullis-" not in str(ended.stdout)  # the report is not shown
                for m in marks:
                    assert await gone(m), m
            await stack.proxy.settled()
            events = await session_events(stack.pdp.store)
        (shell,) = [e for e in events if e["type"] == "command" and e["command"] == ""]
        assert shell["details"]["reaped"], shell
        assert "login shell" in shell["details"]["wrapper"]
    finally:
        for m in marks:
            kill_left(m)


@needs_account
async def test_an_unprivileged_shells_jobs_end_with_it() -> None:
    # sshd kills nothing of a shell that exits (and its KILL reaches the shell's process
    # group only, where an interactive shell puts each job in one of its own): a shell's
    # `nohup x &` ran on after exit on an account sshd signals too. Without a terminal:
    # sshd run as the account here cannot hand one out
    where = Path(tempfile.mkdtemp(prefix="portcullis-p25-"))
    where.chmod(0o755)
    m = marker(9)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_ssh_proxy, "Sshd", AccountSshd)
            async with ssh_stack(where) as stack, await stack.connect(DBA) as conn:
                assert stack.sshd.user == ACCOUNT
                process = await conn.create_process()
                process.stdin.write(
                    f"nohup free -s 1 -c {m} >/dev/null 2>&1 &\necho started-$((40+2))\n"
                )
                await process.stdout.readuntil("started-42")
                assert await up(m)
                process.stdin.write("exit\n")
                ended = await asyncio.wait_for(process.wait(), HANG_GUARD)
                assert ended.exit_status == 0, ended
                assert await gone(m)
    finally:
        kill_left(m)
        shutil.rmtree(where, ignore_errors=True)


@needs_account
async def test_a_shell_is_asked_as_one_where_the_connection_says_so() -> None:
    # an upstream whose login shell is no POSIX shell (an appliance's CLI): shell_reaped
    # false, the shell asked of sshd as a shell (and nothing reaped at its end)
    where = Path(tempfile.mkdtemp(prefix="portcullis-p25-"))
    where.chmod(0o755)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_ssh_proxy, "Sshd", AccountSshd)
            async with (
                ssh_stack(where, shell_reaped=False) as stack,
                await stack.connect(DBA) as conn,
            ):
                process = await conn.create_process()
                process.stdin.write("echo asked-$((40+2)); exit\n")
                ended = await asyncio.wait_for(process.wait(), HANG_GUARD)
                assert "asked-42" in str(ended.stdout) and ended.exit_status == 0, ended
                assert "Starting session: shell" in stack.sshd.log_text()
    finally:
        shutil.rmtree(where, ignore_errors=True)


async def test_a_shell_is_the_accounts_login_shell(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack, await stack.connect(DBA) as conn:
        process = await conn.create_process(term_type="xterm", term_size=(80, 24))
        process.stdin.write("shopt -q login_shell && echo login-$((1+1)); tty; exit\n")
        out = await process.stdout.readuntil("exit")
        out += str((await asyncio.wait_for(process.wait(), HANG_GUARD)).stdout)
        assert "login-2" in out and "/dev/pts/" in out, out
        assert "portcullis-" not in out


async def test_a_channel_past_the_cap_is_in_the_evidence(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, max_channels=1)
    m = marker(5)
    try:
        async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
            async with await stack.connect(READER) as conn:
                held = await conn.create_process(f"free -s 1 -c {m} >/dev/null")
                assert await up(m)
                with pytest.raises(Exception, match="at most 1 channels at once"):
                    await conn.create_process("uptime")
                held.close()
            await stack.proxy.settled()
            events = await session_events(stack.pdp.store)
        (refused,) = [e for e in events if e.get("details", {}).get("kind") == "ssh.channel"]
        assert refused["type"] == "command" and refused["verdict"] == "deny", refused
        assert "ssh_max_channels" in str(refused["details"]) + str(refused.get("reasons"))
    finally:
        kill_left(m)


class TwoSessionSshd(Sshd):
    """The harness's sshd allowing two sessions per connection (OpenSSH's default is 10)."""

    def config(self) -> str:
        return super().config().replace("MaxSessions 64", "MaxSessions 2")


async def test_a_reap_finds_room_whatever_the_client_holds(tmp_path: Path, root_only: None) -> None:
    policies = ssh_policy(tmp_path, max_channels=0)
    marks = [marker(6), marker(7)]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_ssh_proxy, "Sshd", TwoSessionSshd)
            async with (
                ssh_stack(tmp_path, extra={"policies": policies}) as stack,
                await stack.connect(READER) as conn,
            ):
                first = await conn.create_process(f"free -s 1 -c {marks[0]} >/dev/null")
                assert await up(marks[0])
                # the second runs (before) or is refused: the proxy holds the reap's channel
                second = await conn.create_process(f"free -s 1 -c {marks[1]} >/dev/null")
                refused = await asyncio.wait_for(second.wait(), HANG_GUARD)
                assert refused.exit_status == 1, refused
                assert "channel refused" in str(refused.stderr), refused.stderr
                first.close()
                assert await gone(marks[0])
    finally:
        for m in marks:
            kill_left(m)


async def test_a_failed_reap_is_evidence_and_closes_the_session(
    tmp_path: Path, root_only: None
) -> None:
    m = marker(8)
    try:
        with pytest.MonkeyPatch.context() as patch:
            # the reap's line as it ends when its session's leader is another connection's
            # (a pid taken again): the proxy could not end the command
            patch.setattr("proxies.ssh.proxy.reap_command", lambda sid: "exit 3")
            async with ssh_stack(tmp_path) as stack:
                conn = await stack.connect(READER)
                process = await conn.create_process(f"free -s 1 -c {m} >/dev/null")
                assert await up(m)
                process.close()
                await asyncio.wait_for(conn.wait_closed(), HANG_GUARD)  # the proxy ends it
                await stack.proxy.settled()
                events = await session_events(stack.pdp.store)
                closes = await stack.pdp.store.query(kind="session.close")
                metrics = stack.proxy.runtime.metrics.upstream_errors
        (ended,) = [e for e in events if e["type"] == "command" and m in e["command"]]
        assert "the reap exited 3" in ended["details"]["reap_failed"], ended
        assert "reaped" not in ended["details"]
        assert [c.body["reason"] for c in closes] == ["upstream_reap_failed"]
        assert metrics.get("ssh_reap_failed") == 1, metrics
    finally:
        kill_left(m)
