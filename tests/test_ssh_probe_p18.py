"""SSH probe, part 18: the upstream's processes end with the client's channel.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import ssh_harness
import test_ssh_proxy
from ssh_harness import Sshd
from ssh_probe_stack import READER

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
