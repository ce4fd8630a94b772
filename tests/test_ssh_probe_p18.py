"""SSH probe, part 18: the upstream's processes end with the client's channel, and a
command the shell does not wait for is denied.

sshd leaves a command run without a terminal running when its channel or its connection
closes (OpenSSH bug 396): the command ends only when it next writes to the channel it
lost. A reader's allowed line whose output goes nowhere it would write to — `free -s 1
>/dev/null` (free's -s repeats every second, for ever), `journalctl -f >/dev/null`, `nohup`
before either — ran on after the client left, past its session and its token: the process
outlived the connection, and any number of them could be left behind. The proxy now sends
KILL on the upstream channel (sshd's killpg of the session's process group: the shell and
what it runs) before closing it, whenever the client's channel or connection goes before
the upstream said how the command ended (proxies/ssh/channel.py Channel._end_upstream).

sshd takes a signal request only for a login with privilege separation, which it skips for
root ("session signalling requires privilege separation"): the upstream account here is
`postgres`, an sshd run as that account (setpriv) serving it, as a deployment's upstream
account is an unprivileged one.

What the shell does not wait for is out of that signal's reach once the shell has exited
(sshd then has no process of the session to signal): `free -s 1 >/dev/null &`, `nohup ...
&`, a process substitution (`df <(free -s 1 >/dev/null)`: bash does not wait for it), and
setsid's command (a session of its own, outside the line's process group even while the
shell runs) all ran on after the client left. The parser names them in a part's `via`
("&", "<(...)", ">(...)", "setsid"), and the shipped policy denies such a part unless
data.portcullis.ssh.detached is true.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import ssh_harness
import test_ssh_proxy
from policy_harness import REGO
from ssh_harness import Sshd
from ssh_probe_stack import READER, decided_as, stack_fixture
from test_ssh_probe_exec import ALLOWED, engine, reading, verdict  # noqa: F401

from pdp.engine.bundle import PolicyBundle, load_bundle
from pdp.engine.opa import new_engine

pytestmark = pytest.mark.integration

ACCOUNT = "postgres"  # an unprivileged account with a shell (Debian's PostgreSQL package)


def _account() -> bool:
    try:
        return os.geteuid() == 0 and pwd.getpwnam(ACCOUNT).pw_shell.endswith("sh")
    except KeyError:
        return False


needs_account = pytest.mark.skipif(
    not _account() or shutil.which("setpriv") is None,
    reason=f"needs root, setpriv and a {ACCOUNT} account with a shell",
)


class AccountSshd(Sshd):
    """The harness's sshd, run as ACCOUNT (setpriv) and logging in only that account: as
    non-root, sshd reads no shadow entry (the account's `!` password does not lock it)."""

    def __init__(self, root: Path, trusted_ca: str = "") -> None:
        super().__init__(root, trusted_ca)
        self.user = ACCOUNT

    def start(self) -> Sshd:
        wrapper = self.dir / "sshd-as-account"
        wrapper.write_text(
            f"#!/bin/sh\nexec setpriv --reuid={ACCOUNT} --regid={ACCOUNT} --init-groups"
            ' /usr/sbin/sshd "$@"\n'
        )
        wrapper.chmod(0o755)
        (self.dir / "sshd_config").write_text(self.config())
        for path in [self.dir, *self.dir.iterdir()]:
            shutil.chown(path, ACCOUNT, ACCOUNT)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ssh_harness, "SSHD", str(wrapper))
            return super().start()


@contextlib.asynccontextmanager
async def account_stack() -> AsyncIterator[Any]:
    """The probes' stack (sshd, PDP, proxy) with ACCOUNT as the upstream account, under a
    folder ACCOUNT can read (pytest's tmp_path is root's alone)."""
    where = Path(tempfile.mkdtemp(prefix="portcullis-p18-"))
    where.chmod(0o755)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_ssh_proxy, "Sshd", AccountSshd)
            async with test_ssh_proxy.ssh_stack(where) as stack:
                yield stack
    finally:
        shutil.rmtree(where, ignore_errors=True)


def running(marker: str) -> list[int]:
    """The pids of ACCOUNT's processes whose command line holds marker."""
    found = subprocess.run(
        ["pgrep", "-u", ACCOUNT, "-f", marker], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


async def gone(marker: str) -> bool:
    """Whether the marker's processes are gone (they are asked after for up to 10 s: a
    KILL sshd sends is done when sshd has read it)."""
    for _ in range(100):
        if not running(marker):
            return True
        await asyncio.sleep(0.1)
    return False


def kill_left(*markers: str) -> None:
    for marker in markers:
        for pid in running(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# free -s 1 -c COUNT: free every second, COUNT times (a count none else runs: the marker)
FOREGROUND = [
    "free -s 1 -c {count} >/dev/null",
    "uptime; nohup free -s 1 -c {count} >/dev/null",
    "(free -s 1 -c {count} >/dev/null); uptime",
    "uptime; timeout --foreground 1000d free -s 1 -c {count} >/dev/null",
]


@needs_account
@pytest.mark.parametrize("line", FOREGROUND)
async def test_a_command_ends_when_its_channel_closes(line: str) -> None:
    marker = f"free -s 1 -c {7_000_000 + os.getpid() % 100_000}"
    async with account_stack() as stack:
        try:
            async with await stack.connect(READER) as conn:
                process = await conn.create_process(line.format(count=marker.split()[-1]))
                for _ in range(100):  # up and running upstream
                    if running(marker):
                        break
                    await asyncio.sleep(0.1)
                assert running(marker), line
                process.close()
                assert await gone(marker), line
                # the connection goes on: the next exec runs
                assert (await conn.run("uptime")).exit_status == 0
        finally:
            kill_left(marker)


@needs_account
async def test_a_command_ends_when_its_connection_goes() -> None:
    marker = f"free -s 1 -c {8_000_000 + os.getpid() % 100_000}"
    async with account_stack() as stack:
        try:
            conn = await stack.connect(READER)
            await conn.create_process(f"uptime; {marker} >/dev/null")
            for _ in range(100):
                if running(marker):
                    break
                await asyncio.sleep(0.1)
            assert running(marker)
            conn.abort()  # the client's connection drops
            assert await gone(marker)
        finally:
            kill_left(marker)


# lines a reader's policy allowed (masked) before, each leaving a free that never ends
DETACHED = [
    ("free -s 1 >/dev/null &", "&"),
    ("nohup free -s 1 >/dev/null 2>&1 &", "&"),
    ("uptime && free -s 1 >/dev/null & df", "&"),  # `&` ends the whole and-or list
    ("(free -s 1 >/dev/null) & uptime", "&"),
    ("{ uptime; free -s 1 >/dev/null; } &", "&"),
    ("uptime | free -s 1 >/dev/null &", "&"),
    ("if uptime; then free -s 1 >/dev/null & fi", "&"),
    ("for x in 1; do free -s 1 >/dev/null & done", "&"),
    ("sh -c 'free -s 1 >/dev/null &'", "&"),
    ("df <(free -s 1 >/dev/null)", "<(...)"),
    ("df >(free -s 1 >/dev/null)", ">(...)"),
    ("setsid free -s 1 >/dev/null", "setsid"),
    ("uptime; setsid -w free -s 1 >/dev/null", "setsid"),
    ("timeout 5 setsid -f free -s 1", "setsid"),
    # timeout runs its command in a process group of its own (not --foreground): the
    # proxy's KILL misses it, and it lives on for its DURATION (with -k's)
    ("uptime; timeout 1000d free -s 1 >/dev/null", "timeout past 60 s"),
    ("timeout 0 free -s 1 >/dev/null", "timeout past 60 s"),  # 0: no timeout
    ("timeout -k 50 20 free -s 1", "timeout past 60 s"),
    ("timeout --kill-after=1m 5 free -s 1", "timeout past 60 s"),
    ("timeout -sKILL 1e9 free -s 1", "timeout past 60 s"),
    ("timeout 1.5m free -s 1", "timeout past 60 s"),
]


DETACHED_VIA = {how for _, how in DETACHED}


@pytest.mark.parametrize(("line", "how"), DETACHED)
def test_a_command_the_shell_does_not_wait_for_is_denied(
    engine: Any,  # noqa: F811 (test_ssh_probe_exec's fixture)
    line: str,
    how: str,
) -> None:
    free = [p for p in reading(line)["parts"] if p["argv"][:1] == ["free"]]
    assert free and all(how in p["via"] for p in free), reading(line)
    for groups in (READER, ("pii-readers",), ("dba", "pii-readers")):
        decided = decided_as(engine, line, "deny") if groups == READER else None
        decided = decided or verdict(engine, line, groups)
        assert decided["verdict"] == "deny", (line, groups)
        assert any(f"runs detached ({how})" in r for r in decided["reasons"]), decided


@pytest.mark.parametrize(
    "line",
    [
        "uptime && df",
        "df |& uptime",  # a pipe of both streams, not a background
        "nohup free -s 1 -c 2",  # waited for; ended by the proxy if the client goes
        "uptime; free -s 1 -c 2 >/dev/null",
        "df 2>&1 >/dev/null",
        "timeout 5 df -h",
        "timeout -k 10 50 free -s 1",
        "timeout -s KILL 1m df",
        "timeout --foreground 1000d free -s 1",
        "timeout -vsKILL 5 df --total",
    ],
)
def test_what_the_shell_waits_for_stays_allowed(
    engine: Any,  # noqa: F811
    line: str,
) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))
    assert not any(set(p["via"]) & DETACHED_VIA for p in reading(line)["parts"]), reading(line)


@pytest.fixture(scope="module")
def detaching_engine() -> Iterator[Any]:
    """The shipped policy with data.portcullis.ssh.detached: true."""
    shipped = load_bundle(REGO).without_tests()
    data = copy.deepcopy(shipped.data)
    data["portcullis"]["ssh"]["detached"] = True
    eng = new_engine(PolicyBundle(shipped.modules, data, shipped.revision, shipped.root))
    yield eng
    eng.close()


@pytest.mark.parametrize(("line", "how"), DETACHED)
def test_the_policy_may_allow_detached_commands(detaching_engine: Any, line: str, how: str) -> None:
    assert verdict(detaching_engine, line)["verdict"] in ALLOWED, (line, reading(line))


stack = stack_fixture()


async def test_a_root_upstream_account_is_warned_of(stack: Any, caplog: Any) -> None:
    # this stack's upstream account is root (the harness's user): sshd refuses its signals
    assert stack.sshd.user == "root" or pytest.skip("the tests do not run as root")
    words = "the upstream account is root, to which sshd sends no signal"
    assert any(words in r.getMessage() for r in caplog.get_records("setup")), caplog.text
    async with await stack.connect(READER) as conn:
        assert (await conn.run("uptime")).exit_status == 0
    assert "session signalling requires privilege separation" not in stack.sshd.log_text()


async def test_a_detached_command_never_reaches_the_upstream(stack: Any) -> None:
    marker = f"free -s 1 -c {9_000_000 + os.getpid() % 100_000}"
    try:
        async with await stack.connect(READER) as conn:
            for line in (f"nohup {marker} >/dev/null 2>&1 &", f"df <({marker} >/dev/null)"):
                result = await conn.run(line)
                assert result.exit_status == 1, line
                assert "runs detached" in result.stderr, result.stderr
        assert stack.sshd.sessions_started() == 0
        assert not running_anywhere(marker)
    finally:
        kill_anywhere(marker)


def running_anywhere(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def kill_anywhere(marker: str) -> None:
    for pid in running_anywhere(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
