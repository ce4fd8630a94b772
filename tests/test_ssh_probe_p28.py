"""SSH probe, part 28: timeout's signal that does not end its command.

timeout puts itself and its command in a process group of their own (unless
--foreground), out of reach of the KILL sshd sends to the line's group when the proxy
ends it (its client left, ssh_exec_seconds passed): part 18 named that `via` "timeout
past 60 s" for a DURATION past a minute, and let a shorter one through, as timeout ends
its command itself. It does so only with a signal that ends the command: `-s WINCH`
(`CONT`, `URG`, `CHLD`: ignored by default), `-s 0` (no signal at all) or `-s STOP`
(stopped, never ended) is sent at DURATION and timeout then waits for its command without
end. On an unprivileged upstream account (sshd signals its sessions; root's are reaped by
session, reaper.py) a reader's allowed `timeout -s WINCH 10 free -s 1 >/dev/null; uptime`
ran on after its client, its time limit and its session (timeout and free still there,
their parent gone, after the stack stopped). Such a signal now counts as
detached (denied) unless a KILL follows it (`-k` past 0); the signals that end a command
(TERM, the default, INT, KILL, ALRM, by name or number) stay as they were; HUP is not
one of them: `timeout -s HUP 10 nohup free -s 1 >/dev/null` has nohup make free ignore it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import test_ssh_proxy
from test_ssh_probe_exec import ALLOWED, engine, reading, verdict  # noqa: F401
from test_ssh_probe_p18 import ACCOUNT, AccountSshd, kill_left, needs_account, running
from test_ssh_proxy import ssh_policy, ssh_stack

pytestmark = pytest.mark.integration

READER = ("readonly",)
HANG_GUARD = 600.0  # seconds: not a timing assertion, a bound on a test that would hang

NOT_ENDING = [
    "timeout -s WINCH 10 free -s 1 >/dev/null",
    "uptime; timeout -s WINCH 10 free -s 1 >/dev/null",
    "timeout -sCONT 10 free -s 1",
    "timeout --signal=URG 10 free -s 1",
    "timeout --sig CHLD 10 free -s 1",
    "timeout -s 0 10 free -s 1",
    "timeout -s STOP 10 free -s 1",
    "timeout -s sigstop 10 free -s 1",
    "timeout -vs WINCH 10 free -s 1",
    "timeout -s WINCH -k 0 10 free -s 1",
    "timeout -s '$X' 10 free -s 1",
    "uptime | timeout -s 28 10 free -s 1",
    "nice timeout -s WINCH 10 journalctl -f",
    "timeout -s HUP 10 nohup free -s 1 >/dev/null",
    "timeout -sSIGHUP 10 nohup free -s 1 >/dev/null",
    "timeout -s 1 10 free -s 1",
]

ENDING = [
    "timeout 10 free -s 1",
    "timeout -s TERM 10 free -s 1",
    "timeout -s sigterm 10 free -s 1",
    "timeout --signal=KILL 10 free -s 1",
    "timeout --sig INT 10 free -s 1",
    "timeout -sALRM 10 free -s 1",
    "timeout -s 15 10 free -s 1",
    "timeout -s WINCH -k 5 10 free -s 1",
    "timeout -k 5 --signal CONT 10 free -s 1",
    "timeout --foreground -s WINCH 10 free -s 1",
]


@pytest.mark.parametrize("line", NOT_ENDING)
def test_a_signal_that_may_not_end_the_command_is_detached(
    engine: Any,  # noqa: F811 (test_ssh_probe_exec's fixture)
    line: str,
) -> None:
    parts = reading(line)["parts"]
    assert any("timeout past 60 s" in part["via"] for part in parts), parts
    decided = verdict(engine, line)
    assert decided["verdict"] == "deny", decided
    assert "runs detached" in " ".join(decided["reasons"])


@pytest.mark.parametrize("line", ENDING)
def test_a_signal_that_ends_the_command_stays_allowed(
    engine: Any,  # noqa: F811 (test_ssh_probe_exec's fixture)
    line: str,
) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, reading(line)


def test_why_timeout_waits_past_its_duration() -> None:
    # the command outlives DURATION whole (it prints, then timeout says it timed out);
    # with TERM it is ended at DURATION and prints nothing
    script = "sleep 1; echo survived"
    waited = subprocess.run(["timeout", "-s", "WINCH", "0.1", "sh", "-c", script],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert waited.stdout == "survived\n" and waited.returncode == 124, waited
    ended = subprocess.run(["timeout", "0.1", "sh", "-c", script],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert ended.stdout == "" and ended.returncode == 124, ended
    # nohup has its command ignore HUP: timeout's -s HUP does not end it either
    hup = subprocess.run(["timeout", "-s", "HUP", "0.1", "nohup", "sh", "-c", script],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert hup.stdout == "survived\n" and hup.returncode == 124, hup


@needs_account
async def test_the_line_never_reaches_an_unprivileged_upstream() -> None:
    # sshd's KILL at the time limit reaches the line's process group only; before, the
    # line ran (exit 124 at the limit) and free ran on in timeout's group
    where = Path(tempfile.mkdtemp(prefix="portcullis-p28-"))
    where.chmod(0o755)
    marker = f"free -s 1 -c {6_000_000 + os.getpid() % 100_000}"
    line = f"timeout -s WINCH 10 {marker} >/dev/null; uptime"
    try:
        policies = ssh_policy(where, exec_seconds=2)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_ssh_proxy, "Sshd", AccountSshd)
            async with (
                ssh_stack(where, extra={"policies": policies}) as stack,
                await stack.connect(READER) as conn,
            ):
                assert stack.sshd.user == ACCOUNT
                result = await asyncio.wait_for(conn.run(line), HANG_GUARD)
                assert result.exit_status == 1, result
                assert "runs detached" in result.stderr, result.stderr
                assert stack.sshd.sessions_started() == 0
                assert not running(marker)
    finally:
        kill_left(marker)
        shutil.rmtree(where, ignore_errors=True)
