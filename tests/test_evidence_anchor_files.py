"""The files kept beside the signing key (the anchor, the head) after a crash, and when
they are gone (helper evidence).

- The anchor (checkpoint.json, the newest signed checkpoint) and the head file
  (head.json, the chain's head each second) are what `audit verify` tells a cut tail by.
  They were written and renamed into place with no fsync: a power loss could leave the
  name pointing at an empty file (the rename on disk, the data not), which verify reads
  as no file at all, a cut tail then unseen. Their bytes now reach the disk before the
  rename, and the rename before the writer goes on (off the PDP's event loop).
- With neither file (deleted together with the tail), `audit verify` said
  'anchor: none checked' of a store holding signed checkpoints, as of a new store's. It
  now says plainly that none was found where the PDP keeps them, and what that leaves
  unseen.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.evidence import checkpoints
from pdp.evidence.checkpoints import CheckpointWriter, verify_store
from pdp.evidence.signing import Signer
from pdp.store.sqlite import SQLiteAuditStore


class Fsyncs:
    """Which descriptors os.fsync was given: files and folders apart."""

    def __init__(self) -> None:
        self.files = 0
        self.folders = 0
        self._fsync = os.fsync

    def __call__(self, fd: int) -> None:
        import stat

        if stat.S_ISDIR(os.fstat(fd).st_mode):
            self.folders += 1
        else:
            self.files += 1
        self._fsync(fd)


async def test_the_anchor_and_head_files_reach_the_disk_before_they_replace_the_old(
    tmp_path: Path, monkeypatch
) -> None:
    store = SQLiteAuditStore(tmp_path / "audit.db")
    signer = Signer(Ed25519PrivateKey.generate())
    anchor = tmp_path / "var" / "checkpoint.json"
    writer = CheckpointWriter(store, signer, anchor_path=anchor)
    await store.start()
    try:
        await store.append("decision", {"verdict": "allow"}, subject="a")
        fsyncs = Fsyncs()
        monkeypatch.setattr(os, "fsync", fsyncs)
        await writer.checkpoint()
        assert anchor.exists()
        assert fsyncs.files >= 1 and fsyncs.folders >= 1, vars(fsyncs)
        fsyncs.files = fsyncs.folders = 0
        await store.append("decision", {"verdict": "allow"}, subject="a")
        await writer.write_head()
        assert checkpoints.head_path_for(anchor).exists()
        assert fsyncs.files >= 1 and fsyncs.folders >= 1, vars(fsyncs)
    finally:
        await store.close()
    assert sorted(p.name for p in anchor.parent.iterdir()) == ["checkpoint.json", "head.json"]


async def test_verify_says_when_no_anchor_is_found_over_signed_checkpoints(
    tmp_path: Path,
) -> None:
    store = SQLiteAuditStore(tmp_path / "audit.db")
    signer = Signer(Ed25519PrivateKey.generate())
    writer = CheckpointWriter(store, signer)
    await store.start()
    try:
        await store.append("decision", {"verdict": "allow"}, subject="a")
        await writer.checkpoint()
        report = await verify_store(store, signer.public_key)
    finally:
        await store.close()
    assert report.ok
    said = "\n".join(report.counted.lines())
    assert "anchor: NONE: no anchor or head file" in said, said
    assert "1 signed checkpoints" in said, said
