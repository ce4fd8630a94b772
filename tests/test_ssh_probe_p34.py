"""SSH probe, part 34: what a dba's shell leaves running ends with it on an account whose
login uid PAM set (pam_loginuid), as on any other.

p33 gave the channel's shell an audit session of its own (its login uid written, a fresh
session id every descendant keeps through setsid and double forks) and the reap swept it.
An unprivileged account logged in by an sshd with `UsePAM yes` and Debian's
/etc/pam.d/sshd (`session required pam_loginuid.so`) already has its login uid: the write
fails (EPERM), every channel shares the connection's audit session with sshd, the report
said `-`, and only the channel's session was reaped. Reproduced through the proxy and the
real sshd (run as root, PAM on, logging in postgres): typed into a dba's shell,
`setsid free ... &`, `setsid -f`, perl's and python's double fork with setsid,
start-stop-daemon --background and a tmux server all ran on after `exit`.

The connection's audit session is this upstream connection's alone (the proxy opens one per
client connection; PAM draws a fresh id per login). The report now names it (`=ID`), and
the reap sweeps it but for what is still the connection's: sshd's two processes and every
session whose leader is a child of that sshd (a live channel's shell, the reap's own),
other than the channel reaped. So what left the shell's session ends with the shell, and
another live channel of the same connection, its command and sshd go on. (cgroups would
mark a channel as well, but only sshd or a PAM module, as root, can place one in a cgroup:
that is the upstream host's configuration, not the proxy's reach.)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import test_ssh_proxy
from ssh_harness import Sshd
from test_ssh_probe_p18 import ACCOUNT, needs_account
from test_ssh_probe_p23 import HANG_GUARD, gone, kill_left, up
from test_ssh_probe_p33 import DBA, _shell_leaves_nothing, marker

from pdp.domain.recordings import session_events
from proxies.ssh.reaper import SessionReport, sweep_command, wrapped

pytestmark = pytest.mark.integration


class PamSshd(Sshd):
    """The harness's sshd as a host runs it: as root, `UsePAM yes` (Debian's
    /etc/pam.d/sshd, pam_loginuid included), logging in ACCOUNT by its key."""

    def __init__(self, root: Path, trusted_ca: str = "") -> None:
        super().__init__(root, trusted_ca)
        self.user = ACCOUNT
        (self.dir / "authorized_keys").chmod(0o644)  # (read as the account)

    def config(self) -> str:
        return super().config().replace("UsePAM no", "UsePAM yes")


@asynccontextmanager
async def pam_stack() -> AsyncIterator[Any]:
    where = Path(tempfile.mkdtemp(prefix="portcullis-p34-"))
    where.chmod(0o755)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_ssh_proxy, "Sshd", PamSshd)
            async with test_ssh_proxy.ssh_stack(where) as stack:
                assert "UsePAM yes" in (stack.sshd.dir / "sshd_config").read_text()
                yield stack
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _pam_loginuid() -> bool:
    try:
        return "pam_loginuid" in Path("/etc/pam.d/sshd").read_text()
    except OSError:
        return False


needs_pam = pytest.mark.skipif(
    not _pam_loginuid(), reason="needs /etc/pam.d/sshd with pam_loginuid"
)


@needs_account
@needs_pam
async def test_a_pam_accounts_detached_processes_end_with_its_shell() -> None:
    async with pam_stack() as stack:
        await _shell_leaves_nothing(stack, 30, drop=False)
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    (shell,) = [e for e in events if e["type"] == "command" and e["command"] == ""]
    assert "the connection's audit session" in shell["details"]["reaped"], shell


@needs_account
@needs_pam
async def test_a_pam_accounts_detached_processes_end_when_its_client_drops() -> None:
    async with pam_stack() as stack:
        await _shell_leaves_nothing(stack, 40, drop=True)


@needs_account
@needs_pam
async def test_the_sweep_spares_the_connections_live_channels() -> None:
    # one connection, two shells: the first leaves a daemon (setsid -f) and ends; the
    # second, with a command in its foreground and one it sent to the background, goes on
    marks = [marker(50 + i) for i in range(3)]
    try:
        async with pam_stack() as stack:
            conn = await stack.connect(DBA)
            try:
                other = await conn.create_process(term_type="xterm", term_size=(80, 24))
                other.stdin.write(
                    f"sleep {marks[1]} >/dev/null 2>&1 </dev/null &\n"
                    f"echo other-$((40+2)); sleep {marks[2]}\n"
                )
                await other.stdout.readuntil("other-42")
                first = await conn.create_process(term_type="xterm", term_size=(80, 24))
                first.stdin.write(
                    f"setsid -f free -s 1 -c {marks[0]} >/dev/null 2>&1 </dev/null\n"
                    "echo first-$((40+2))\n"
                )
                await first.stdout.readuntil("first-42")
                for m in marks:
                    assert await up(m), m
                first.stdin.write("exit\n")
                ended = await asyncio.wait_for(first.wait(), HANG_GUARD)
                assert ended.exit_status == 0, ended
                assert await gone(marks[0])
                # the other shell, its jobs and the connection are untouched
                assert [m for m in marks[1:] if not await up(m)] == []
                other.stdin.write("\x03echo still-$((40+2))\n")
                await other.stdout.readuntil("still-42")
                assert (await conn.run("uptime")).exit_status == 0
            finally:
                conn.close()
    finally:
        for m in marks:
            kill_left(m)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the line as the postgres account")
def test_the_report_names_the_connections_audit_session_when_the_shell_cannot_draw_one() -> None:
    line = wrapped(":", "portcullis-ab").replace("'", "'\\''")
    run = subprocess.run(
        ["setpriv", f"--reuid={ACCOUNT}", f"--regid={ACCOUNT}", "--clear-groups", "sh", "-c",
         f"printf 101 >/proc/self/loginuid; cat /proc/self/sessionid; sh -c '{line}'; :"],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    report = SessionReport("portcullis-ab")
    report.feed(run.stderr.encode())
    assert report.sid is not None and report.audit is None, run
    assert report.shared == int(run.stdout), run
    for bad in (
        b"portcullis-ab 9 =0\n",
        b"portcullis-ab 9 =4294967295\n",
        b"portcullis-ab 9 ==1\n",
    ):
        broken = SessionReport("portcullis-ab")
        broken.feed(bad)
        assert broken.failed and broken.sid is None, bad
    assert "$m" in sweep_command(7, shared_by=9) and "$m" not in sweep_command(7)


def _reported_under(monitor_draws: bool, where: Path) -> tuple[SessionReport, str]:
    """The wrapped line run as ACCOUNT by a shell whose parent (sshd's child, P) and its
    parent (the monitor, M) are as sshd's, under a listener (L) holding an audit session of
    its own: M draws another (pam_loginuid) or not (sshd started from a login, no PAM)."""
    (where / "line.sh").write_text(wrapped(":", "portcullis-ab") + "\n")
    draw = "printf 0 >/proc/self/loginuid; "
    (where / "m.sh").write_text(
        (draw if monitor_draws else "")
        + f"setpriv --reuid={ACCOUNT} --regid={ACCOUNT} --clear-groups"
        f" sh -c 'sh {where}/line.sh; :'; :\n"
    )
    for name in ("line.sh", "m.sh"):
        (where / name).chmod(0o644)
    run = subprocess.run(
        ["sh", "-c", f"{draw}cat /proc/self/sessionid; sh {where}/m.sh; :"],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    report = SessionReport("portcullis-ab")
    report.feed(run.stderr.encode())
    assert report.sid is not None and report.audit is None, run
    return report, run.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the line as the postgres account")
def test_an_audit_session_sshds_listener_holds_is_never_the_connections() -> None:
    # sshd started from an administrator's login without pam_loginuid: every connection
    # and whatever else that login started (a server of the same account) share the
    # listener's audit session; the sweep of `=ID` would have killed them: `-`
    where = Path(tempfile.mkdtemp(prefix="portcullis-p34-"))
    where.chmod(0o755)
    try:
        shared, listeners = _reported_under(monitor_draws=False, where=where)
        assert shared.shared is None, (shared.shared, listeners)
        drawn, listeners = _reported_under(monitor_draws=True, where=where)
        assert drawn.shared is not None and drawn.shared != int(listeners)
    finally:
        shutil.rmtree(where, ignore_errors=True)
