"""The SSH proxy's session report (proxies/ssh/reaper.py) starts no program upstream.

Every exec on a root upstream account runs the report line first (reaper.wrapped): written
with `id -u` and up to three `cat`s, each a program started before the client's command,
it made an exec of uptime through the proxy take 23.6 ms instead of 8.5 ms on a loaded
host (bench/ssh/bench_ssh.py's repeated exec: +13.9 ms over sshd directly, nearly all of
it this). Here the line runs as sshd runs it (`$SHELL -c LINE`, bash and dash) with `id`
and `cat` first on PATH as stand-ins that note each start: none may be noted, and the
report still reads (SessionReport) with the shell's pid and the audit session it drew,
the same as the line's own reading of /proc gives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from proxies.ssh.reaper import SessionReport, nonce, wrapped

SHELLS = [s for s in ("bash", "dash") if shutil.which(s)]


def _stand_ins(into: Path, log: Path) -> str:
    """A PATH whose `id` and `cat` note their start in `log`, then run the real ones."""
    into.mkdir()
    for name in ("id", "cat"):
        real = shutil.which(name)
        assert real is not None
        tool = into / name
        tool.write_text(f'#!/bin/sh\necho {name} >>"{log}"\nexec {real} "$@"\n')
        tool.chmod(0o755)
    return f"{into}:{os.environ.get('PATH', '/usr/bin:/bin')}"


@pytest.mark.parametrize("shell", SHELLS)
def test_report_line_starts_no_program(shell: str, tmp_path: Path) -> None:
    log = tmp_path / "started"
    path = _stand_ins(tmp_path / "bin", log)
    tag = nonce()
    line = wrapped('echo "ran $1"; read -r s </proc/self/sessionid; echo "audit ${s:-}"', tag)
    done = subprocess.run(
        [shell, "-c", line],
        env={"PATH": path, "HOME": str(tmp_path)},
        capture_output=True,
        timeout=30,
    )
    assert not log.exists(), f"the report started {log.read_text().split()}"
    report = SessionReport(tag)
    rest = report.feed(done.stderr)
    assert report.sid is not None and not report.failed, done.stderr
    assert rest == b""  # nothing but the report on stderr
    assert report.sid > 1
    # the client's line ran after it, in the same shell, its positional parameters untouched
    out = done.stdout.decode().splitlines()
    assert out[0] == "ran "
    # the audit session the report names is the one the command runs in (drawn, or none)
    audit = out[1].removeprefix("audit ")
    if report.audit is not None:
        assert audit == str(report.audit)
    elif report.shared is not None:
        assert audit == str(report.shared)


def test_report_line_in_bash_forks_once(tmp_path: Path) -> None:
    """In bash (Debian's root shell) the report forks once, for its own command
    substitution: the uid is bash's $EUID, not a subshell reading /proc/self/status."""
    trace = tmp_path / "trace"
    tag = nonce()
    done = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork,execve", "-o", str(trace),
         "bash", "-c", wrapped("echo ran", tag)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    report = SessionReport(tag)
    assert report.feed(done.stderr) == b"" and report.sid is not None, done.stderr
    assert done.stdout == b"ran\n"
    calls = trace.read_text()
    forks = sum(calls.count(f"{name}(") for name in ("clone", "clone3", "fork", "vfork"))
    assert forks == 1, calls
    assert calls.count("execve(") == 1  # bash itself
