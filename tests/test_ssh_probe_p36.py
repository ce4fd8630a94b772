"""SSH probe, part 36: a set-user-ID file made through SFTP.

A dba outside pii-readers (masked, no shell) may write by SFTP without approval under
data.portcullis.ssh.sftp.write_paths (/tmp, /var/tmp): anywhere else a write may be a
program the server runs. The policy saw a request's operation and paths, never the mode
bits or owner its ATTRS set: `put x /tmp/x` then `chmod 4755 /tmp/x` (SETSTAT), an upload
opened with mode 06755, an FSETSTAT on its handle, were each allowed, and the upstream
account (root: the proxy's full-power credential) left `/tmp/x` owned by root and
set-user-ID — a root shell for every local user of the server, made by a member the
policy had refused a shell. A chown (SETSTAT's uid and gid) gave a file to any account.

The relay now reads what a request's ATTRS set and gives it to the policy (`mode`,
`owner`; the approver's line says `mode=4755`, `owner=UID:GID`), and ssh.rego holds a
set-user-ID or set-group-ID bit, or a change of owner, for approval whatever the groups.
OpenSSH's sftp and scp send permissions masked with 0777 on their own (`put -p`): their
uploads are decided as before.

Real components: sshd (root account), a PDP on the shipped policy, the SSH proxy,
asyncssh's SFTP client and OpenSSH's sftp.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from ssh_harness import run_client
from test_ssh_probe_p35 import refused_after_asking
from test_ssh_proxy import ssh_stack
from test_ssh_sftp import openssh_sftp, sftp_decisions

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("groups", [("dba",), ("dba", "pii-readers")])
async def test_set_user_id_bits_and_owners_need_approval(
    tmp_path: Path, groups: tuple[str, ...]
) -> None:
    # under /tmp (pytest's folder): where a masked dba writes without approval
    up, made = tmp_path / "up.sh", tmp_path / "made.sh"
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(groups) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open(str(up), "w") as f:
                await f.write("#!/bin/sh\nid\n")

            async def created() -> None:
                attrs = asyncssh.SFTPAttrs(permissions=0o6755)
                async with sftp.open(str(made), "w", attrs) as f:
                    await f.write("x")

            async def fsetstat() -> None:
                async with sftp.open(str(up), "a") as f:
                    await f.chmod(0o4755)

            attempts: list[Callable[[], Awaitable[Any]]] = [
                lambda: sftp.chmod(str(up), 0o4755),
                lambda: sftp.chmod(str(up), 0o2755),
                created,
                fsetstat,
                lambda: sftp.chown(str(up), 65534, 65534),
                lambda: sftp.mkdir(str(tmp_path / "d"), asyncssh.SFTPAttrs(permissions=0o4777)),
            ]
            for attempt in attempts:
                await refused_after_asking(stack, attempt())
            await sftp.chmod(str(up), 0o755)  # ordinary bits, as before
        # OpenSSH's sftp: its chmod sends the mode as given
        argv, env = openssh_sftp(stack, tmp_path, groups)
        client = asyncio.ensure_future(run_client(argv, env, f"chmod 4755 {up}\n".encode()))
        refused, _, said = await refused_after_asking(stack, client, client=True)
        assert refused != 0 and b"Permission denied" in said, said
        # and its upload with -p sends the permissions masked with 0777
        local = tmp_path / "local.sh"
        local.write_text("x\n")
        local.chmod(0o4755)
        code, _, err = await run_client(argv, env, f"put -p {local} {tmp_path / 'p.sh'}\n".encode())
        decisions = await sftp_decisions(stack)
    assert code == 0, err
    assert (tmp_path / "p.sh").stat().st_mode & 0o7777 == 0o755
    assert up.stat().st_mode & 0o7777 == 0o755
    assert up.stat().st_uid == os.getuid()
    assert not made.exists() and not (tmp_path / "d").exists()
    held = [d["raw"] for d in decisions if d["verdict"] == "require_approval"]
    assert len(held) == 7, held
    assert f"setstat {up} mode=4755" in held
    assert f"setstat {up} owner=65534:65534" in held
    assert f"write {made} mode=6755" in held
