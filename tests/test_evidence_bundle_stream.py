"""Offline bundle verification in bounded memory, and what a client's text cannot break.

Found by helper evidence (an attacker with an agent token; an auditor handed a bundle):

- `audit verify --bundle` read every listed member whole (up to 1 GiB each, 4 GiB in
  all) before any signature was checked, then decoded and parsed records.jsonl into a
  list of every record: a bundle of a few MB of gzip (a decompression bomb, or a genuine
  large export) took the auditor's memory many times over. The verification now hashes
  every member as it streams by and checks records.jsonl a line at a time: the memory
  it takes is the signed files' and one record's.
- records.jsonl was split with str.splitlines(), which also ends a line at U+2028,
  U+2029, U+0085, U+001C-U+001E: canonical JSON (no ASCII escaping) leaves U+2028 and
  U+0085 as they are inside a record's text. An agent whose statement held one made
  every bundle of its records fail offline verification ('not a record'), genuine
  evidence refused. Lines end at LF only now.
"""

from __future__ import annotations

import io
import tarfile
import tracemalloc
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.evidence.bundle import export_bundle, verify_bundle
from pdp.evidence.signing import Signer
from pdp.store.sqlite import SQLiteAuditStore


async def _exported(tmp_path: Path, raws: list[str]) -> tuple[Path, Signer]:
    store = SQLiteAuditStore(tmp_path / "audit.db")
    signer = Signer(Ed25519PrivateKey.generate())
    await store.start()
    try:
        await store.append("session.open", {"verdict": "allow"}, session_id="s-1", subject="a")
        for raw in raws:
            body = {"verdict": "allow", "raw": raw, "reasons": [raw]}
            await store.append("decision", body, session_id="s-1", subject="a")
        out = tmp_path / "evidence.tar.gz"
        await export_bundle(store, signer, out)
    finally:
        await store.close()
    return out, signer


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def _write(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


async def test_a_statement_holding_a_line_separator_still_verifies(tmp_path):
    """An agent's text with U+2028, U+2029 and U+0085 (its SQL, a path): the genuine
    bundle verifies with the PDP's key, every record counted."""
    raws = ["SELECT 1 -- \u2028", "SELECT '\u2029'", "SELECT '\x85'", "SELECT '\x1c\x1d\x1e'"]
    out, signer = await _exported(tmp_path, raws)
    report = verify_bundle(out, signer.public_key)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.records == 1 + len(raws)


async def test_a_changed_record_is_still_named_when_streamed(tmp_path):
    """The streaming check names the record changed, as the whole-file one did."""
    out, signer = await _exported(tmp_path, ["SELECT 1", "SELECT 2"])
    files = _members(out)
    files["records.jsonl"] = files["records.jsonl"].replace(b"SELECT 2", b"SELECT 3")
    bad = tmp_path / "bad.tar.gz"
    _write(bad, files)
    report = verify_bundle(bad, signer.public_key)
    said = [p.describe() for p in report.problems]
    assert not report.ok
    assert any("record 3 was changed" in s for s in said), said
    assert any("records.jsonl: sha256 does not match" in s for s in said), said


async def test_a_large_member_is_verified_in_bounded_memory(tmp_path):
    """records.jsonl replaced by 256 MiB of junk lines (a few hundred KB of gzip): the
    verification fails naming it, holding a small part of it in memory (before: all of
    it, then its decoded text and lines)."""
    out, signer = await _exported(tmp_path, ["SELECT 1"])
    files = _members(out)
    files["records.jsonl"] = (b"x" * 1023 + b"\n") * (256 * 1024)
    bad = tmp_path / "big.tar.gz"
    _write(bad, files)
    del files
    tracemalloc.start()
    try:
        report = verify_bundle(bad, signer.public_key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    said = [p.describe() for p in report.problems]
    assert not report.ok
    assert any("records.jsonl line 1: not a record" in s for s in said), said
    assert peak < 32 << 20, f"peak {peak} bytes traced"


async def test_a_line_past_the_limit_ends_the_reading(tmp_path, monkeypatch):
    """One line longer than MAX_LINE_BYTES is a problem, not read whole."""
    import pdp.evidence.bundle as bundle

    out, signer = await _exported(tmp_path, ["SELECT 1"])
    monkeypatch.setattr(bundle, "MAX_LINE_BYTES", 4096)
    files = _members(out)
    files["records.jsonl"] = b"y" * 100_000
    bad = tmp_path / "long.tar.gz"
    _write(bad, files)
    report = verify_bundle(bad, signer.public_key)
    said = [p.describe() for p in report.problems]
    assert any("line 1: longer than 4096" in s for s in said), said


async def test_the_records_checked_are_the_member_hashed(tmp_path, monkeypatch):
    """Two records.jsonl members, the first refused unread (past the member limit): the
    chain is checked in the one the first pass hashed, not re-read from the refused one."""
    import pdp.evidence.bundle as bundle

    out, signer = await _exported(tmp_path, ["SELECT 1"])
    files = _members(out)
    monkeypatch.setattr(bundle, "MAX_MEMBER_BYTES", len(files["records.jsonl"]) + 10)
    bad = tmp_path / "two.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in files.items():
            if name == "records.jsonl":  # a larger one first
                junk = b"junk\n" * 10_000
                info = tarfile.TarInfo(name)
                info.size = len(junk)
                tar.addfile(info, io.BytesIO(junk))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = verify_bundle(bad, signer.public_key)
    said = [p.describe() for p in report.problems]
    assert any("records.jsonl: larger than" in s for s in said), said
    assert not any("not a record" in s or "changed while" in s for s in said), said
    assert report.records == 2
