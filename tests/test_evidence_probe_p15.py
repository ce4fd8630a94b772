"""Evidence probe 15 (helper auditsec7): a bundle without values quotes no cached statement.

A bundle for an auditor outside pii-readers (`audit export --withhold-values`, the
console's Export for them) keeps `session.close` records whole, as a kind that holds no
value a client sent. But a close names the statements its proxy answered from its
decision cache after the session's last Decide (`reused`: their text, literals and all),
so a reader's `SELECT ... WHERE ssn = '123-45-6789'` run again from the cache reached
such an auditor in records.jsonl and access.jsonl. A close that names any is now withheld
like a decision (counted, its place pinned by the chain), and the offline verifier takes
it; a close naming none stays whole, and any other kind on the allow-list withheld is
still a changed record.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
from pathlib import Path
from typing import Any

from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from test_evidence_probe_p13 import _resigned, _with_lines
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli

from pdp.evidence.bundle import export_bundle, verify_bundle
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2

SSN = "123-45-6789"
SELECT = f"SELECT name FROM customers WHERE ssn = '{SSN}'"


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


async def _closed(stub: Any, config: Any, reused: bool) -> str:
    opened = await open_session(stub, token(config, "rita@example.com"))
    sid = opened.session_id
    await decide_sql(stub, sid, SELECT)
    close = pdp_pb2.CloseSessionRequest(session_id=sid, reason="client_disconnect")
    if reused:  # (the same SELECT answered from the proxy's cache three more times)
        close.reused.add(raw=SELECT, count=3, first_seconds_ago=2, last_seconds_ago=1)
    await stub.CloseSession(close)
    return sid


async def test_a_close_quoting_cached_statements_is_withheld(tmp_path):
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        quoting = await _closed(stub, config, reused=True)
        plain = await _closed(stub, config, reused=False)
        out = tmp_path / "withheld.tar.gz"
        await export_bundle(app.store, app.signer, out, withhold_values=True)
        public_key, signer = app.signer.public_key, app.signer
    members = _members(out)
    for name, data in members.items():
        assert SSN.encode() not in data, name
    lines = [json.loads(x) for x in members["records.jsonl"].decode().splitlines()]
    closes = {x["session_id"]: x["body"] for x in lines if x["kind"] == "session.close"}
    assert closes[quoting] is None and closes[plain] is not None
    manifest = json.loads(members["manifest.json"])["payload"]
    assert manifest["withheld"]["session.close"] == 1
    report = verify_bundle(out, public_key)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.counted.withheld["session.close"] == 1
    verified = await asyncio.to_thread(_cli, config_path, "audit", "verify", "--bundle", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # the key's holder withholding a kind kept whole (a session.open) is still named
    edited = [dict(x, body=None) if x["kind"] == "session.open" else x for x in lines]
    forged = _resigned(tmp_path / "forged.tar.gz", signer, _with_lines(members, edited))
    said = [p.describe() for p in verify_bundle(forged, public_key).problems]
    assert any("session.open record is never withheld" in p for p in said), said
