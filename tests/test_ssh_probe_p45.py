"""SSH probe, part 45: an SFTP open decided as a write that the server opens for reading.

A dba outside pii-readers may write by SFTP under data.portcullis.ssh.sftp.write_paths
(/tmp, /var/tmp) without approval, but may not read a file's contents: a read is masked,
and the proxy refuses it (clients read at offsets). The relay called an open a write when
any of WRITE, APPEND, CREAT, TRUNC or EXCL was set, and took READ requests on any handle.
OpenSSH's sftp-server takes the access mode from READ and WRITE alone (flags_from_portable):
an open with CREAT, APPEND or EXCL and neither of them is O_RDONLY. `open(/tmp/dump, CREAT)`
was allowed as a write, and READ on its handle gave the file's contents unmasked — a card
in another user's dump under /tmp read whole by a member whose answers are masked.

The relay now gives such an open `read` among its flags (sftp_codec.open_access: the
server's access, not the bits' names), so the policy masks it and the proxy refuses it as
any read; ssh.rego reads a write whose flags lack `write` as a read too. A handle takes
READ only when the server opened it for reading and WRITE only when for writing.

Real components: sshd (its sftp-server), a PDP on the shipped policy, the SSH proxy,
asyncssh's SFTP client.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest
from test_ssh_proxy import ssh_stack
from test_ssh_sftp import sftp_decisions

from proxies.ssh import sftp_codec as codec

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"
REFUSED = "file contents cannot be masked through SFTP"


def test_the_servers_access_is_read_without_the_write_bit() -> None:
    # OpenSSH's flags_from_portable: O_RDONLY unless WRITE is given
    for pflags in (0, codec.FXF_READ, 0x04, 0x08, 0x20, 0x08 | 0x10, 0x04 | 0x08 | 0x20):
        assert codec.open_access(pflags)[0], hex(pflags)
    assert codec.open_access(0x02 | 0x08 | 0x10) == (False, True)
    assert codec.open_access(0x01 | 0x02) == (True, True)
    assert codec.open_access(0x08) == (True, False)


async def test_an_open_without_the_write_bit_is_a_read_of_a_masked_dba(tmp_path: Path) -> None:
    # under /tmp (pytest's folder): where a masked dba writes without approval
    dump = tmp_path / "dump.txt"
    dump.write_text(f"card {CARD}\n")
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(("dba",)) as conn, conn.start_sftp_client() as sftp:
            for pflags in (asyncssh.FXF_CREAT, asyncssh.FXF_APPEND, asyncssh.FXF_EXCL,
                           asyncssh.FXF_CREAT | asyncssh.FXF_APPEND):  # fmt: skip
                with pytest.raises(asyncssh.SFTPPermissionDenied, match=REFUSED):
                    async with sftp.open(str(dump), pflags) as f:
                        assert CARD not in await f.read(4096, 0)
            # an upload goes on as before
            async with sftp.open(str(tmp_path / "up.txt"), "w") as f:
                await f.write("uploaded\n")
        decisions = await sftp_decisions(stack)
    assert (tmp_path / "up.txt").read_text() == "uploaded\n"
    assert dump.read_text() == f"card {CARD}\n"
    opens = [d for d in decisions if d["raw"] == f"write {dump}"]
    assert len(opens) == 4
    assert all(d["verdict"] == "mask" for d in opens)
    assert all("read" in d["attributes"]["flags"] for d in opens), opens


async def test_a_handle_reads_and_writes_only_as_the_server_opened_it(tmp_path: Path) -> None:
    dump = tmp_path / "dump.txt"
    dump.write_text(f"card {CARD}\n")
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(("dba", "pii-readers")) as conn, \
                conn.start_sftp_client() as sftp:  # fmt: skip
            # a pii-reader's open with CREAT alone reads, decided so
            async with sftp.open(str(dump), asyncssh.FXF_CREAT) as f:
                assert await f.read(4096, 0) == f"card {CARD}\n"
                with pytest.raises(asyncssh.SFTPPermissionDenied, match="not opened for writing"):
                    await f.write("x", 0)
            # WRITE alone: O_WRONLY, and a READ on it is the proxy's refusal
            async with sftp.open(str(dump), asyncssh.FXF_WRITE) as f:
                with pytest.raises(asyncssh.SFTPPermissionDenied, match="not opened for reading"):
                    await f.read(4096, 0)
        decisions = await sftp_decisions(stack)
    created = [d for d in decisions if d["raw"] == f"write {dump}"]
    assert created[0]["attributes"]["flags"] == ["read", "create"]
    assert created[1]["attributes"]["flags"] == ["write"]
