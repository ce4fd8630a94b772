"""Evidence probe 13 (helper auditsec5): evidence for an auditor outside pii-readers.

Gap: the bundle holds every record as it was hashed (a statement's literals, the values
a proxy recorded, an approval's parameters), so only auditors also in pii-readers could
export one, and every other auditor had no evidence to verify offline at all. A bundle
can now withhold values (`audit export --withhold-values`, the console's Export for such
an auditor): the bodies of records not of an allow-list of kinds that hold no values are
left out (null), the signed manifest says so and counts them, and `audit verify --bundle`
verifies everything else as ever (chain links, signatures, checkpoints, the head) and
says, first, how many records of which kinds it took on the export's signature, never
that it verified them. The rest of the design (only the values withheld, by salted
commitments) is in README.md.

Attacks on the verifier (a bundle edited and signed again: the key's holder; anything
else fails the manifest's digests): a body withheld in a bundle that says it withholds
nothing, a signed record withheld (its signature then goes unchecked), a withheld
record's hash changed. Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store), the
real CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli

from pdp.evidence.bundle import export_bundle, verify_bundle
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2

SSN = "123-45-6789"
SELECT = f"SELECT name FROM customers WHERE ssn = '{SSN}'"
WRITE = f"UPDATE customers SET note = 'x' WHERE ssn = '{SSN}'"


async def _session_quoting_a_value(app: Any, config: Any) -> str:
    """A reader's session whose decision, recording and approval request all quote SSN."""
    async with pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, "rita@example.com"))
        sid = opened.session_id
        decided = await decide_sql(stub, sid, SELECT)
        asked = await decide_sql(stub, sid, WRITE)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        event = {"time": time.time(), "direction": "client", "type": "command",
                 "command": SELECT, "decision_id": decided.decision_id,
                 "verdict": "mask", "cached": False,
                 "details": {"tag": "SELECT 1", "rows": 1, "protocol": "simple"}}  # fmt: skip
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=sid, events_json=json.dumps([event]))
        )
        close = pdp_pb2.CloseSessionRequest(session_id=sid, reason="client_disconnect")
        close.summary.update({"credential_exposed": 0, "bytes_to_client": 10})
        await stub.CloseSession(close)
    return sid


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def _lines(members: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in members["records.jsonl"].decode().splitlines()]


async def test_a_bundle_without_values_holds_none_and_verifies_the_rest(tmp_path):
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app:
        sid = await _session_quoting_a_value(app, config)
        assert (
            await app.checkpoints.checkpoint() is not None
        )  # a signed checkpoint over the withheld records
        out = tmp_path / "withheld.tar.gz"
        summary = await export_bundle(app.store, app.signer, out, withhold_values=True)
        full = tmp_path / "full.tar.gz"
        await export_bundle(app.store, app.signer, full)
        public_key = app.signer.public_key
    members = _members(out)
    for name, data in members.items():
        assert SSN.encode() not in data, name
    assert SSN.encode() in _members(full)["records.jsonl"]  # (the full bundle has it)
    lines = _lines(members)
    assert len(lines) == summary.records
    kinds = {line["kind"]: line["body"] is None for line in lines if line["session_id"] == sid}
    assert kinds["session.open"] is False and kinds["session.close"] is False
    assert kinds["credential.statement"] is False
    assert kinds["decision"] is True and kinds["session.events"] is True
    assert kinds["approval"] is True
    manifest = json.loads(members["manifest.json"])["payload"]
    assert manifest["values"] == "withheld"
    assert manifest["withheld"]["decision"] >= 2

    report = verify_bundle(out, public_key)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.checkpoints >= 1 and report.statements == 1
    said = report.counted.lines()
    assert said[1].startswith("  WITHHELD: ") and "NOT verified" in said[1]
    assert report.counted.withheld == manifest["withheld"]
    assert not verify_bundle(full, public_key).counted.withheld

    # the command line: export for such an auditor, and the offline verify says so
    cli_out = tmp_path / "cli.tar.gz"
    exported = await asyncio.to_thread(
        _cli, config_path, "audit", "export", "--withhold-values", "--out", str(cli_out)
    )
    assert exported.returncode == 0 and "values withheld" in exported.stdout, exported.stderr
    verified = await asyncio.to_thread(
        _cli, config_path, "audit", "verify", "--bundle", str(cli_out)
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "WITHHELD:" in verified.stdout and SSN not in verified.stdout


def _resigned(
    path: Path, signer: Any, members: dict[str, bytes], manifest_edit: Any = None
) -> Path:
    """The bundle with these members, its manifest's digests made again and signed by
    `signer` (what only the key's holder can do)."""
    doc = json.loads(members["manifest.json"])
    payload = doc["payload"]
    for name, data in members.items():
        if name != "manifest.json":
            payload["files"][name] = hashlib.sha256(data).hexdigest()
    if manifest_edit is not None:
        manifest_edit(payload)
    members = {**members, "manifest.json": json.dumps(signer.sign(payload)).encode()}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _with_lines(members: dict[str, bytes], lines: list[dict[str, Any]]) -> dict[str, bytes]:
    text = "".join(
        json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        for x in lines
    )
    return {**members, "records.jsonl": text.encode()}


async def test_the_verifier_takes_a_withheld_body_only_where_the_bundle_may_withhold(tmp_path):
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app:
        await _session_quoting_a_value(app, config)
        assert await app.checkpoints.checkpoint() is not None
        async with pdp_stub(app.address) as stub:  # a record after the checkpoint
            await open_session(stub, token(config, "sam@example.com", ("dba",)))
        full, withheld = tmp_path / "full.tar.gz", tmp_path / "withheld.tar.gz"
        await export_bundle(app.store, app.signer, full)
        await export_bundle(app.store, app.signer, withheld, withhold_values=True)
        signer, key = app.signer, app.signer.public_key

    def problems(path: Path) -> list[str]:
        report = verify_bundle(path, key)
        assert not report.ok
        return [p.describe() for p in report.problems]

    # a body withheld in a bundle that withholds nothing: that record no longer hashes
    members = _members(full)
    lines = _lines(members)
    n = next(i for i, x in enumerate(lines) if x["kind"] == "decision")
    lines[n]["body"] = None
    bad = _resigned(tmp_path / "a.tar.gz", signer, _with_lines(members, lines))
    assert any(f"record {lines[n]['seq']} was changed" in p for p in problems(bad))

    # a signed record withheld: refused, its signature is never taken on trust
    members = _members(withheld)
    lines = _lines(members)
    n = next(i for i, x in enumerate(lines) if x["kind"] == "checkpoint")
    lines[n]["body"] = None
    bad = _resigned(tmp_path / "b.tar.gz", signer, _with_lines(members, lines))
    assert any("a checkpoint record is never withheld" in p for p in problems(bad))

    # a withheld record's hash changed: the record after it no longer links to it
    lines = _lines(members)
    n = next(i for i, x in enumerate(lines) if x["body"] is None and i + 1 < len(lines))
    lines[n]["hash"] = "0" * 64
    bad = _resigned(tmp_path / "c.tar.gz", signer, _with_lines(members, lines))
    assert any(f"does not link to record {lines[n]['seq']}" in p for p in problems(bad))

    # the manifest's count of withheld records is checked against the records
    def fewer(payload: dict[str, Any]) -> None:
        payload["withheld"]["decision"] -= 1

    bad = _resigned(tmp_path / "d.tar.gz", signer, dict(members), fewer)
    assert any("count of withheld records differs" in p for p in problems(bad))
