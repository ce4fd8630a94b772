"""Evidence probe p10: a hostile bundle costs the verifier bounded work and memory.

Attack (whoever hands an auditor a bundle): `audit verify --bundle` read at most
MAX_BUNDLE_BYTES of members it checks, but
- a member it refused (not listed in the manifest, too large, past the total) was
  skipped by seeking, which in a gzip stream decompresses every byte of it: a few MB of
  gzip holding thousands of 1 GB members of zeros kept the auditor's machine
  decompressing for hours, whatever the bounds said;
- tarfile reads a pax (or GNU long-name) header's data whole into memory before any
  member reaches the checks: a header of gigabytes of zeros, a few MB of gzip, was held
  in memory at once.
The archive is now read through a bound (bundle._BoundedArchive): nothing past
MAX_BUNDLE_BYTES (and a sixteenth for headers) is decompressed, no single read is larger
than MAX_HEADER_BYTES, and verify says so as a problem of the bundle (exit 1).

Bundles written by the real export (a real SQLite audit store); the bounds are made small
here so the test decompresses little either way.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from test_evidence import read_tar

from pdp.evidence import bundle
from pdp.evidence.bundle import export_bundle, verify_bundle
from pdp.evidence.signing import Signer
from pdp.plumbing.keys import load_or_create_ed25519
from pdp.store.sqlite import SQLiteAuditStore

MIB = 1 << 20


async def _genuine(tmp_path: Path) -> tuple[Path, Signer]:
    signer = Signer(load_or_create_ed25519(tmp_path / "signing.key"))
    store = SQLiteAuditStore(tmp_path / "audit.db")
    await store.start()
    try:
        await store.append("decision", {"verdict": "allow", "command": "SELECT 1"}, subject="a")
        out = tmp_path / "evidence.tar.gz"
        await export_bundle(store, signer, out)
    finally:
        await store.close()
    return out, signer


def _write(path: Path, members: list[tarfile.TarInfo], data: list[bytes]) -> None:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, blob in zip(members, data, strict=True):
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


class _Decompressed:
    """How many bytes the gzip reader gave out (what the verifier decompressed)."""

    def __init__(self, monkeypatch) -> None:
        self.bytes = 0
        read = gzip._GzipReader.read  # type: ignore[attr-defined]

        def counted(reader, size=-1):
            out = read(reader, size)
            self.bytes += len(out)
            return out

        monkeypatch.setattr(gzip._GzipReader, "read", counted)  # type: ignore[attr-defined]


async def test_members_the_verifier_skips_are_not_decompressed_without_bound(tmp_path, monkeypatch):
    genuine, signer = await _genuine(tmp_path)
    files = read_tar(genuine)
    names = ["manifest.json", *sorted(n for n in files if n != "manifest.json")]
    names += [f"junk{n}" for n in range(40)]
    blobs = [files.get(n, b"\0" * MIB) for n in names]
    bomb = tmp_path / "bomb.tar.gz"
    _write(bomb, [tarfile.TarInfo(n) for n in names], blobs)
    assert bomb.stat().st_size < 2 * MIB  # 40 MiB of members in a small archive

    monkeypatch.setattr(bundle, "MAX_BUNDLE_BYTES", 4 * MIB)
    seen = _Decompressed(monkeypatch)
    report = verify_bundle(bomb, signer.public_key)
    assert not report.ok
    assert seen.bytes < 8 * MIB, seen.bytes
    said = [p.describe() for p in report.problems]
    assert any("archive: the archive reaches past" in s for s in said), said


async def test_a_huge_pax_header_is_not_read_into_memory(tmp_path, monkeypatch):
    genuine, signer = await _genuine(tmp_path)
    files = read_tar(genuine)
    names = ["manifest.json", *sorted(n for n in files if n != "manifest.json")]
    members = [tarfile.TarInfo(n) for n in names]
    # the record file's header carries 8 MiB of pax comment (a valid pax record)
    at = names.index("records.jsonl")
    members[at].pax_headers = {"comment": "x" * (8 * MIB)}
    hostile = tmp_path / "pax.tar.gz"
    _write(hostile, members, [files[n] for n in names])

    report = verify_bundle(hostile, signer.public_key)
    assert not report.ok
    said = [p.describe() for p in report.problems]
    assert any("archive: an archive header or read past" in s for s in said), said


async def test_the_genuine_bundle_still_verifies(tmp_path):
    genuine, signer = await _genuine(tmp_path)
    report = verify_bundle(genuine, signer.public_key)
    assert report.ok, [p.describe() for p in report.problems]
