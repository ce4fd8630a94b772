"""SSH probe, part 33: what a dba's shell leaves running is gone when the shell ends, however
it left the shell's session.

The reap at a shell's end (p25, proxies/ssh/reaper.py) killed the processes of the shell's
session (its session id): anything that made a session of its own was out of it and ran
on after the channel closed, the client gone, its token expired. Reproduced through the
proxy and the real sshd, on a root and on an unprivileged (postgres) account: typed into a
dba's shell, `setsid free ... &`, `setsid -f`, perl's fork + setsid + fork (daemon(3)),
python's double fork, start-stop-daemon --background and a tmux server (`tmux new -d`)
all ran on after `exit` and after the client's connection dropped.

The proxy's report line now gives the channel's shell an audit session of its own
(writing the account's uid to /proc/self/loginuid while it is unset gives a fresh
session id that every descendant inherits, through setsid, double forks and a reparent to
init, and that no unprivileged process may change again) and reports it with the pid; the
reap kills every process of that audit session as well as of the session. The channel's
event says which (`reaped`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import test_ssh_proxy
from test_ssh_probe_p18 import AccountSshd, needs_account
from test_ssh_probe_p23 import HANG_GUARD, gone, kill_left, up
from test_ssh_proxy import ssh_stack

from pdp.domain.recordings import session_events
from proxies.ssh.reaper import SessionReport, reap_command, sweep_command, wrapped

pytestmark = pytest.mark.integration

DBA = ("dba", "pii-readers")
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"


def marker(i: int) -> str:
    """A count no other process's command line holds (p23's are below 7e6, p25's 7e6-8e6)."""
    return str(8_000_000 + (os.getpid() % 10_000) * 100 + i)


def detaching(marks: list[str], tmux: str) -> str:
    """Lines typed into the shell: each starts `free -s 1 -c MARK` out of the shell's
    session (and one `sleep MARK` in a subshell's background)."""
    free = "free -s 1 -c {} >/dev/null 2>&1 </dev/null"
    perl = (
        "perl -MPOSIX -e 'fork and exit; POSIX::setsid(); fork and exit;"
        " exec qw(free -s 1 -c {})' >/dev/null 2>&1 </dev/null"
    )
    python = (
        PYTHON + " -c 'import os; os.fork() and os._exit(0); os.setsid();"
        ' os.fork() and os._exit(0); os.execvp("free", "free -s 1 -c {}".split())\''
        " >/dev/null 2>&1 </dev/null"
    )
    lines = [
        "setsid " + free + " &",
        "setsid -f " + free,
        perl,
        python,
        "/usr/sbin/start-stop-daemon --start --background --make-pidfile --pidfile /tmp/p33-{0}.pid"
        " --startas /usr/bin/free -- -s 1 -c {0} >/dev/null 2>&1 </dev/null",
        f"tmux -L {tmux} new-session -d 'free -s 1 -c {{}} >/dev/null' >/dev/null 2>&1 </dev/null",
        "( sleep {} >/dev/null 2>&1 </dev/null & )",
        "nohup " + free + " & disown",
    ]
    assert len(lines) == len(marks)
    return "".join(line.format(m) + "\n" for line, m in zip(lines, marks, strict=True))


def _forget(marks: list[str], tmux: str) -> None:
    for m in marks:
        kill_left(m)
        Path(f"/tmp/p33-{m}.pid").unlink(missing_ok=True)
    subprocess.run(["tmux", "-L", tmux, "kill-server"], capture_output=True, check=False)


MARKS = 8


async def _shell_leaves_nothing(
    stack: test_ssh_proxy.Stack, first: int, drop: bool, terminal: bool = True
) -> None:
    marks = [marker(first + i) for i in range(MARKS)]
    tmux = f"portcullis-p33-{os.getpid()}-{first}"
    try:
        conn = await stack.connect(DBA)
        try:
            if terminal:
                process = await conn.create_process(term_type="xterm", term_size=(80, 24))
            else:  # (sshd run as the account here cannot hand out a terminal)
                process = await conn.create_process()
            process.stdin.write(detaching(marks, tmux) + "echo started-$((40+2))\n")
            try:
                await process.stdout.readuntil("started-42")
            except asyncio.IncompleteReadError as exc:
                raise AssertionError(str(await process.stderr.read())) from exc
            for m in marks:
                assert await up(m), m
            if drop:
                conn.abort()  # the client's connection drops
            else:
                process.stdin.write("exit\n")
                ended = await asyncio.wait_for(process.wait(), HANG_GUARD)
                assert ended.exit_status == 0, ended
            for m in marks:
                assert await gone(m), m
        finally:
            conn.close()
    finally:
        _forget(marks, tmux)


async def test_a_root_shells_detached_processes_end_with_it(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        assert stack.sshd.user == "root" or pytest.skip("the upstream account is not root here")
        await _shell_leaves_nothing(stack, 0, drop=False)
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    (shell,) = [e for e in events if e["type"] == "command" and e["command"] == ""]
    assert "audit session" in shell["details"]["reaped"], shell


async def test_a_root_shells_detached_processes_end_when_its_client_drops(
    tmp_path: Path,
) -> None:
    async with ssh_stack(tmp_path) as stack:
        assert stack.sshd.user == "root" or pytest.skip("the upstream account is not root here")
        await _shell_leaves_nothing(stack, 10, drop=True)


@needs_account
async def test_an_unprivileged_shells_detached_processes_end_with_it() -> None:
    where = Path(tempfile.mkdtemp(prefix="portcullis-p33-"))
    where.chmod(0o755)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_ssh_proxy, "Sshd", AccountSshd)
            async with ssh_stack(where) as stack:
                await _shell_leaves_nothing(stack, 20, drop=False, terminal=False)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_the_report_names_the_audit_session() -> None:
    report = SessionReport("portcullis-ab")
    assert report.feed(b"x\nportcullis-ab 123 45\ny") == b"x\ny"
    assert (report.sid, report.audit) == (123, 45)
    unmarked = SessionReport("portcullis-ab")
    assert unmarked.feed(b"portcullis-ab 123 -\n") == b""
    assert (unmarked.sid, unmarked.audit) == (123, None)
    for bad in (b"portcullis-ab 123 4294967295\n", b"portcullis-ab 123 0\n",
                b"portcullis-ab 123 4x\n", b"portcullis-ab 123  45\n"):  # fmt: skip
        broken = SessionReport("portcullis-ab")
        broken.feed(bad)
        assert broken.failed and broken.sid is None, bad
    assert "sessionid" in sweep_command(45) and sweep_command(None) == ""
    assert reap_command(123).startswith("s=123;")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the line as the postgres account")
def test_the_wrapped_line_gives_the_shell_an_audit_session_its_children_keep() -> None:
    # a child of the wrapped line, out of its session, keeps the audit session it reports;
    # and the line runs as sent in the same shell ($$ is the reported pid)
    line = "setsid sh -c 'cat /proc/self/sessionid; echo; echo 1 >/proc/self/loginuid'; echo \"$$\""
    for shell in ("bash", "dash"):
        run = subprocess.run(
            ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups",
             shell, "-c", wrapped(line, "portcullis-ab")],
            capture_output=True, text=True, check=False, cwd="/",
        )  # fmt: skip
        report = SessionReport("portcullis-ab")
        report.feed(run.stderr.encode())
        child, pid = run.stdout.split()
        assert report.sid == int(pid) and report.audit == int(child), (shell, run)


def _reported(script: str) -> SessionReport:
    run = subprocess.run(
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "sh", "-c", script],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    report = SessionReport("portcullis-ab")
    report.feed(run.stderr.encode())
    assert report.sid is not None, run
    return report


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the line as the postgres account")
def test_an_audit_session_the_shell_drew_before_the_line_is_still_its_own() -> None:
    # the account's startup file (~/.bashrc, which a dba with a shell may write) draws the
    # audit session before the proxy's line: the line's write then fails, and it reported
    # `-` (session only: setsid escaped again). The shell's own id (not its parent's) is
    # its channel's alone, and is reported
    drawn = _reported("printf 101 >/proc/self/loginuid; " + wrapped(":", "portcullis-ab"))
    assert drawn.audit is not None
    # one its parent holds too (PAM's pam_loginuid: the connection's, sshd's and every
    # channel's) is not the channel's: `-`
    line = wrapped(":", "portcullis-ab").replace("'", "'\\''")
    shared = _reported(f"printf 101 >/proc/self/loginuid; sh -c '{line}'; :")
    assert shared.audit is None
