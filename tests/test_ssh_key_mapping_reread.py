"""The PDP re-reads an SSH connection's key mapping file whenever it changed — also when an
edit keeps its size and modification time (`cp -p`, `rsync -t`, `touch -r`), which would
otherwise keep a revoked key's line in force."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ssh_harness import keygen

from pdp.domain.identity import TokenRejected
from pdp.domain.ssh_identity import KeyIdentities


def test_an_edit_keeping_size_and_mtime_is_read(tmp_path: Path) -> None:
    keygen(tmp_path / "kim_key", "kim")
    public = (tmp_path / "kim_key.pub").read_text().strip()
    mapping = tmp_path / "mapped_keys"
    mapping.write_text(f'subject="kim@x.org",groups="dba" {public}\n')
    identities = KeyIdentities()
    assert identities.identify("ssh", str(mapping), public).subject == "kim@x.org"
    before = mapping.stat()
    # the same number of bytes, the line commented out; mtime put back as it was
    mapping.write_text(f'#ubject="kim@x.org",groups="dba" {public}\n')
    os.utime(mapping, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert mapping.stat().st_size == before.st_size
    assert mapping.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(TokenRejected):
        identities.identify("ssh", str(mapping), public)
