"""SSH probe, part 23: a root upstream account's commands end when the proxy ends them, and
every exec has a wall-clock limit from policy.

sshd takes a signal request only for a login with privilege separation, which it skips for
root (its log: "session signalling requires privilege separation"). The proxy's KILL as a
client leaves (p18) did nothing there: with the harness's own account, root, a reader's
allowed `free -s 1 -c N >/dev/null` ran on after the client closed its channel and after
its connection went, and so did `while :; do :; done` (true and `:` are filters, allowed in
any line: a core held for ever), `exec free ...`, `nohup free ...`, `timeout 50 free ...`
(a process group of its own even for sshd's killpg). For such an account each exec now
runs after one line of the proxy's that reports the shell's pid (its session's id) on
stderr under a nonce, taken off the stream before the client or the mask sees it; to end a
command the proxy runs another exec on the same upstream connection that KILLs every
process of that session (proxies/ssh/reaper.py), and the command's event says so.

A line that loops for ever while its client waits (`while :; do :; done`, `free -s 0.001
>/dev/null`) held an upstream core as long as the client liked. The shipped policy gives
every SSH session a wall-clock limit per exec (data.portcullis.ssh.exec_seconds, default
3600; session setting ssh_exec_seconds): past it the proxy ends the command, says so on
stderr, answers exit status 124 and records why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import test_ssh_proxy
from test_ssh_probe_p18 import ACCOUNT, AccountSshd, needs_account
from test_ssh_proxy import ssh_policy, ssh_stack

from pdp.domain.recordings import session_events
from proxies.ssh.reaper import REPORT_WITHIN, SessionReport, reap_command, wrapped

pytestmark = pytest.mark.integration

READER = ("readonly",)
HANG_GUARD = 600.0  # seconds: not a timing assertion, a bound on a test that would hang


def running(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split() if int(pid) != os.getpid()]


async def up(marker: str) -> bool:
    for _ in range(1200):
        if running(marker):
            return True
        await asyncio.sleep(0.05)
    return False


async def gone(marker: str) -> bool:
    """Whether the marker's processes are gone (asked for up to 60 s: the reap is an exec
    of its own, on a machine that may be loaded)."""
    for _ in range(600):
        if not running(marker):
            return True
        await asyncio.sleep(0.1)
    return False


def kill_left(marker: str) -> None:
    for pid in running(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Any]:
    async with ssh_stack(tmp_path) as s:
        assert s.sshd.user == "root" or pytest.skip("the upstream account is not root here")
        yield s


# reader lines the shipped policy allows (masked) that never end by themselves; {m} is a
# marker no other process's command line holds
NEVER_ENDING = [
    "free -s 1 -c {m} >/dev/null",
    "while :; do :; done; df {m}",
    "exec free -s 1 -c {m} >/dev/null",
    "uptime; nohup free -s 1 -c {m} >/dev/null 2>&1",
    "timeout 50 free -s 1 -c {m} >/dev/null",
    "free -s 1 -c {m} | tail -n 1",
]


def marker_for(i: int) -> str:
    return str(6_000_000 + (os.getpid() % 10_000) * 10 + i)


@pytest.mark.parametrize("line", NEVER_ENDING)
async def test_a_root_accounts_command_ends_when_its_channel_closes(stack: Any, line: str) -> None:
    marker = marker_for(NEVER_ENDING.index(line))
    try:
        async with await stack.connect(READER) as conn:
            process = await conn.create_process(line.format(m=marker))
            assert await up(marker), line
            process.close()
            assert await gone(marker), line
            # the connection goes on, and the next command's report is not shown either
            result = await conn.run("uptime")
            assert result.exit_status == 0 and result.stderr == "", result.stderr
    finally:
        kill_left(marker)
    assert "session signalling requires privilege separation" not in stack.sshd.log_text()
    await stack.proxy.settled()
    events = await session_events(stack.pdp.store)
    (ended,) = [e for e in events if e["type"] == "command" and marker in e["command"]]
    assert ended["details"]["reaped"], ended
    assert "sshd sends no signal" in ended["details"]["wrapper"]
    assert ended["details"]["upstream_session"] > 1


async def test_a_root_accounts_command_ends_when_its_connection_goes(stack: Any) -> None:
    markers = [marker_for(7), marker_for(8)]
    try:
        conn = await stack.connect(READER)
        # two at once on one connection: each its own session, each ended
        await conn.create_process(f"free -s 1 -c {markers[0]} >/dev/null")
        await conn.create_process(f"while :; do :; done # {markers[1]}")
        assert await up(markers[0]) and await up(markers[1])
        conn.abort()  # the client's connection drops
        assert await gone(markers[0]) and await gone(markers[1])
    finally:
        for marker in markers:
            kill_left(marker)


async def test_a_root_accounts_commands_run_as_sent_and_their_report_is_not_shown(
    stack: Any,
) -> None:
    async with await stack.connect(("dba", "pii-readers")) as conn:
        # stderr of the command itself comes through, the report does not
        result = await conn.run("df /nonexistent-p23; echo ok")
        assert result.exit_status == 0 and result.stdout == "ok\n", result
        assert result.stderr.startswith("df: ") and "portcullis-" not in result.stderr
        # the shell's pid is the command's own: the report named the session sshd made
        result = await conn.run('printf \'%s\\n\' "$$" "$0"')
        pid, zero = result.stdout.split()
        assert int(pid) > 1 and zero == "bash", result.stdout
        # with a terminal the report comes on it, and is taken off it too
        result = await conn.run("df -h /", term_type="xterm")
        assert result.exit_status == 0 and "portcullis-" not in result.stdout, result.stdout
        assert "Filesystem" in result.stdout


async def test_an_exec_past_its_time_limit_is_ended(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, exec_seconds=2)
    marker = marker_for(9)
    try:
        async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
            async with await stack.connect(READER) as conn:
                # bounded only so that a proxy without the limit fails instead of hanging
                result = await asyncio.wait_for(
                    conn.run(f"until false; do :; done; df {marker}"), HANG_GUARD
                )
                assert result.exit_status == 124, result
                assert "ran past its time limit of 2 s (ssh_exec_seconds)" in result.stderr
                assert await gone(marker)
                assert (await conn.run("uptime")).exit_status == 0  # the session goes on
            await stack.proxy.settled()
            events = await session_events(stack.pdp.store)
            (ended,) = [e for e in events if e["type"] == "command" and marker in e["command"]]
            assert ended["details"]["exit_status"] == 124
            assert "time limit" in ended["details"]["error"]
    finally:
        kill_left(marker)


@needs_account
async def test_an_unprivileged_accounts_exec_past_its_time_limit_is_ended() -> None:
    # sshd's own KILL (killpg), for an account it signals: the line runs as sent
    where = Path(tempfile.mkdtemp(prefix="portcullis-p23-"))
    where.chmod(0o755)
    marker = marker_for(12)
    try:
        policies = ssh_policy(where, exec_seconds=2)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_ssh_proxy, "Sshd", AccountSshd)
            async with (
                ssh_stack(where, extra={"policies": policies}) as stack,
                await stack.connect(READER) as conn,
            ):
                assert stack.sshd.user == ACCOUNT
                result = await asyncio.wait_for(
                    conn.run(f"free -s 1 -c {marker} >/dev/null"), HANG_GUARD
                )
                assert result.exit_status == 124, result
                assert "ran past its time limit" in result.stderr
                assert await gone(marker)
    finally:
        kill_left(marker)
        shutil.rmtree(where, ignore_errors=True)


async def test_an_unusable_time_limit_denies_every_exec(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, exec_seconds=-1)
    async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
        async with await stack.connect(READER) as conn:
            result = await conn.run("uptime")
            assert result.exit_status == 1
            assert "is no number of seconds" in result.stderr, result.stderr
        assert stack.sshd.sessions_started() == 0


async def test_a_session_holds_at_most_its_policys_channels(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, max_channels=2)
    markers = [marker_for(10), marker_for(11)]
    try:
        async with (
            ssh_stack(tmp_path, extra={"policies": policies}) as stack,
            await stack.connect(READER) as conn,
        ):
            held = [await conn.create_process(f"free -s 1 -c {m} >/dev/null") for m in markers]
            assert await up(markers[0]) and await up(markers[1])
            with pytest.raises(asyncssh.ChannelOpenError) as refused:
                await conn.create_process("uptime")
            assert "at most 2 channels at once" in refused.value.reason
            held[0].close()
            assert await gone(markers[0])
            for _ in range(100):  # once the proxy finished that channel, one more opens
                with contextlib.suppress(asyncssh.ChannelOpenError):
                    assert (await conn.run("uptime")).exit_status == 0
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("no channel opened after one of two closed")
    finally:
        for marker in markers:
            kill_left(marker)


# -- the report, sans IO ---------------------------------------------------------------------


def test_the_report_is_taken_off_the_stream_however_it_is_cut() -> None:
    tag = "portcullis-0123abcd"
    stream = b"from a startup file\n" + f"{tag} 4242\n".encode() + b"df: x: no such file\n"
    for cut in range(1, len(stream)):
        report = SessionReport(tag)
        out = report.feed(stream[:cut]) + report.feed(stream[cut:]) + report.end()
        assert out == b"from a startup file\ndf: x: no such file\n", cut
        assert report.sid == 4242 and not report.failed


def test_a_report_that_never_comes_fails_closed() -> None:
    report = SessionReport("portcullis-0123abcd")
    assert report.feed(b"x" * (REPORT_WITHIN + 64)) and report.failed
    bad = SessionReport("portcullis-0123abcd")
    bad.feed(b"portcullis-0123abcd 12; rm -rf /\n")
    assert bad.failed and bad.sid is None
    cut = SessionReport("portcullis-0123abcd")
    assert cut.feed(b"portcul") == b"" and cut.end() == b"portcul" and cut.failed


def test_the_wrapped_line_runs_the_line_as_sent() -> None:
    line = "printf '%s\\n' \"$(uptime)\" 'it'\"'\"'s'"
    text = wrapped(line, "portcullis-ab")
    assert text.endswith("\n" + line) and text.count("\n") == 1
    run = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True)
    assert run.stderr.startswith("portcullis-ab ") and "it's" in run.stdout
    assert reap_command(123).startswith("s=123;")
