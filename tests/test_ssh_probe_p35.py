"""SSH probe, part 35: an SFTP write to the upstream account's own login files.

sshd and the account's shell read files of the account's home before every line the proxy
sends upstream, any session's: `~/.ssh/rc` (run by sshd for every channel),
`~/.ssh/authorized_keys` (a key there logs in past the proxy), and the shell's startup
files (bash, run by sshd for an exec, reads `~/.bashrc`; a login shell, as the proxy asks
for a dba's shell, `~/.profile` and what it puts on PATH: Debian's `~/bin`). A function or
a DEBUG trap defined there runs before and in place of every command the policy decided,
for readers too, and can forge what the proxy reads back (reaper.py).

A dba in pii-readers wrote them through SFTP without approval whenever the account's home
was outside data.portcullis.ssh.sftp.approval_paths (an account under /home: the shipped
paths cover /root and /var/lib only): `put x .bashrc`, `mkdir .ssh`, a rename onto
`.bash_login`, a symlink as `.bash_profile`, `mkdir bin`, a chmod of the home itself, a
rename of the directory above it (`/home`: its `.bashrc` then written elsewhere) — each
allowed and done, the next reader's `df` then running whatever the file says. The relay
now tells the policy the account's home (attribute `homes`: the SFTP server's start
directory and the account's home as the server names it, OpenSSH's `home-directory`
extension), and ssh.rego holds a write to the home itself or a directory above it, to a
dot entry in it (and anything under one) or to `~/bin` for approval whatever the groups
and the approval paths; and a write to any account's `.ssh`, wherever its home (a key
there logs in past the proxy). A request that does not name the homes needs approval.

Real components: sshd (its internal-sftp starting in a test directory standing for an
account's home outside the approval paths), a PDP on the shipped policy, the SSH proxy,
asyncssh's SFTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import pwd
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import test_ssh_proxy
from ssh_harness import Sshd
from test_ssh_proxy import Stack
from test_ssh_sftp import APPROVER, sftp_decisions

pytestmark = pytest.mark.integration
DBA = ("dba", "pii-readers")


def _home_of(root: Path) -> Path:
    return root.parent / "accounts" / "home"


class HomeSshd(Sshd):
    """The harness's sshd, its internal-sftp starting in a directory of the test: the
    account's home as its SFTP session sees it (as /home/deploy would be)."""

    def config(self) -> str:
        home = _home_of(self.dir)
        home.mkdir(parents=True, exist_ok=True)
        start = f"Subsystem sftp internal-sftp -d {home}"
        return super().config().replace("Subsystem sftp internal-sftp", start)


@contextlib.asynccontextmanager
async def home_stack(tmp: Path) -> AsyncIterator[tuple[Stack, Path]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(test_ssh_proxy, "Sshd", HomeSshd)
        async with test_ssh_proxy.ssh_stack(tmp) as stack:
            yield stack, _home_of(tmp / "sshd")


async def refused_after_asking(stack: Stack, attempt: Awaitable[Any], client: bool = False) -> Any:
    """`attempt` waits for approval (failing the test if it ends without asking), is
    denied by a security approver and fails with permission denied (`client`: an OpenSSH
    client's run, its result returned)."""
    running = asyncio.ensure_future(attempt)
    asked = 0
    while not running.done():
        for request in list(stack.pdp.approvals.requests.values()):
            if request.state == "pending":
                await stack.pdp.approvals.decide(request.id, APPROVER, False, "not today")
                asked += 1
        await asyncio.sleep(0.05)
    if not asked:
        raise AssertionError(f"done without asking for approval: {running.result()!r}")
    if client:
        return running.result()
    with pytest.raises(asyncssh.SFTPPermissionDenied, match="not today"):
        await running


async def test_writes_to_the_accounts_login_files_need_approval(tmp_path: Path) -> None:
    async with home_stack(tmp_path) as (stack, home):
        (home / ".ssh").mkdir()
        (home / "upload.sh").write_text("echo planted\n")
        (home / ".profile").write_text("kept\n")
        async with await stack.connect(DBA) as conn, conn.start_sftp_client() as sftp:
            assert await sftp.realpath(".") == str(home)

            async def put(path: str) -> None:
                async with sftp.open(path, "w") as f:
                    await f.write("df() { id; }\n")

            attempts = [
                lambda: put(".bashrc"),  # relative to the home
                lambda: put(str(home / ".profile")),
                lambda: put(".ssh/authorized_keys"),
                lambda: put(".ssh/rc"),
                lambda: sftp.mkdir(".config"),
                lambda: sftp.mkdir("bin"),
                lambda: sftp.rename("upload.sh", ".bash_login"),
                lambda: sftp.symlink(str(home / "upload.sh"), ".bash_profile"),
                lambda: sftp.remove(".profile"),
                lambda: sftp.chmod(str(home), 0o777),
                lambda: sftp.rename(str(home), str(tmp_path / "moved")),
                # the directory above it: renamed away, its .bashrc written, renamed back
                lambda: sftp.rename(str(home.parent), str(tmp_path / "moved")),
            ]
            for attempt in attempts:
                await refused_after_asking(stack, attempt())
            # what is not read at login is written as before
            await put("report.txt")
            await sftp.mkdir("dumps")
        decisions = await sftp_decisions(stack)
    assert sorted(p.name for p in home.iterdir()) == [".profile", ".ssh", "dumps", "report.txt",
                                                      "upload.sh"]  # fmt: skip
    assert (home / ".profile").read_text() == "kept\n"
    assert list((home / ".ssh").iterdir()) == []
    assert (home.stat().st_mode & 0o777) != 0o777
    held = [d for d in decisions if d["verdict"] == "require_approval"]
    assert len(held) == 12
    assert home.is_dir()
    assert all("login files" in " ".join(d["reasons"]) for d in held), held
    allowed = {d["attributes"]["path"] for d in decisions if d["verdict"] == "allow"}
    assert {str(home / "report.txt"), str(home / "dumps")} <= allowed
    # the account's home as the server names it, beside where its SFTP session starts
    account_home = pwd.getpwnam(stack.sshd.user).pw_dir
    assert all(d["attributes"]["homes"] == sorted({str(home), account_home}) for d in decisions)
