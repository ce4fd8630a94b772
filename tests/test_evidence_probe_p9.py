"""Evidence probe p9: a signed file of a bundle has one reading.

Attack (whoever hands an auditor a bundle, no key): a signature covers a signed
document's payload as parsed, not the file's bytes. Put a second "payload" member before
the signed one in manifest.json (saying, say, that the export never checked record MACs
and listing other files) or in chain_head.json (naming another head): `audit verify
--bundle --public-key` parsed the last member, found the PDP's signature valid and said
OK, while a reader where the first member counts (SQLite's json_extract, streaming
parsers, an auditor's own tooling) reads the forged one — one signed file, two contents.
A key named twice anywhere in a bundle's JSON is now refused (bundle.strict_json).

The bundle is written by the real export (a real SQLite audit store), checked by the
`portcullis` CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_evidence import read_tar, write_tar
from test_evidence_macs import audit

from pdp.evidence.bundle import export_bundle
from pdp.evidence.signing import Signer
from pdp.plumbing.keys import load_or_create_ed25519
from pdp.store.sqlite import SQLiteAuditStore


async def _bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A genuine bundle of a few decisions, and the PEM of the key that signed it."""
    signer = Signer(load_or_create_ed25519(tmp_path / "signing.key"))
    store = SQLiteAuditStore(tmp_path / "audit.db")
    await store.start()
    try:
        for n in range(3):
            await store.append(
                "decision", {"verdict": "deny", "command": f"DROP TABLE t{n}"}, subject="bob"
            )
        out = tmp_path / "evidence.tar.gz"
        await export_bundle(store, signer, out)
    finally:
        await store.close()
    pem = tmp_path / "pdp.pem"
    pem.write_bytes(signer.public_pem())
    return out, pem


def _twice(text: bytes, member: str, first: object) -> bytes:
    """The signed document with `member` named twice: `first` before the genuine one."""
    assert text.startswith(b"{")
    named = json.dumps(member).encode() + b": " + json.dumps(first).encode()
    return b"{" + named + b", " + text[1:]


@pytest.mark.parametrize("name", ["manifest.json", "chain_head.json"])
async def test_a_signed_file_with_a_member_named_twice_is_refused(tmp_path, name):
    genuine, pem = await _bundle(tmp_path)
    ok = await asyncio.to_thread(
        audit, tmp_path / "none.yaml", "verify", "--bundle", str(genuine), "--public-key", str(pem)
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr

    files = read_tar(genuine)
    payload = json.loads(files[name])["payload"]
    forged = dict(payload)
    if name == "manifest.json":
        forged["record_macs"] = {"checked": False, "not_written_by_the_pdp": []}
        forged["records"] = {**payload["records"], "count": 0}
    else:
        forged["seq"], forged["records"] = 1, 1
    files[name] = _twice(files[name], "payload", forged)
    assert json.loads(files[name])["payload"] == payload  # the last one is the signed one
    bad = tmp_path / "twice.tar.gz"
    write_tar(bad, {"manifest.json": files.pop("manifest.json"), **files})
    result = await asyncio.to_thread(
        audit, tmp_path / "none.yaml", "verify", "--bundle", str(bad), "--public-key", str(pem)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{name}: missing, not JSON, or a key named twice" in result.stdout
