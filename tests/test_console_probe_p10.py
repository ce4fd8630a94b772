"""Console probe 10 (helper auditsec3): the evidence export and an auditor's values.

Attack (an auditor outside pii-readers, in the console): the session and decision pages
show such an auditor a recorded statement with its literals masked (`WHERE ssn =
[masked]`: pdp/console/literals.py), but the Export button on the Evidence page gave the
same auditor the signed bundle, every record as recorded: the statement's social
security number in records.jsonl. A bundle's records are the chain's, hashed as
recorded, so a copy with values masked would not verify; the export is now for auditors
also in pii-readers. Another auditor is refused (403, naming the group) before anything
is read, and the Evidence page tells them so instead of offering the form; an auditor in
pii-readers exports as before, and the bundle verifies. (auditsec5: such an auditor now
gets a bundle that withholds the records quoting values, which verifies and says what it
withheld: tests/test_evidence_probe_p13.py; still no value in it.)

Real PDP (tests/pdp_harness.py) with its console on the HTTP listener, dev-issuer sign-in.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import replace

import pytest
from pdp_harness import decide_sql, free_port, open_session, pdp_config, pdp_stub, running_pdp
from pdp_harness import token as dev_token
from test_console_probe_p1 import _http, sign_in

from pdp.evidence.bundle import verify_bundle

SSN = "123-45-6789"
SQL = f"SELECT name FROM customers WHERE ssn = '{SSN}'"


@pytest.fixture
async def pdp(tmp_path):
    port = free_port()
    config = pdp_config(tmp_path, session_timeout=600)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    async with running_pdp(config) as app:
        app.base = f"http://127.0.0.1:{port}"
        yield app


async def _asked(pdp) -> str:
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, dev_token(pdp.config, "rita@example.com"))
        await decide_sql(stub, opened.session_id, SQL)
    return opened.session_id


async def test_an_auditor_outside_pii_readers_gets_no_bundle_of_values(pdp, tmp_path):
    sid = await _asked(pdp)
    async with _http() as http:
        csrf = await sign_in(http, pdp.base, "ines@example.com", "auditor")
        async with http.get(f"{pdp.base}/console/sessions/{sid}") as r:
            assert r.status == 200 and SSN not in await r.text()
        async with http.get(f"{pdp.base}/console/evidence/") as r:
            page = await r.text()
            assert r.status == 200 and "OK: the chain verifies" in page
            assert 'action="/console/evidence/export"' in page
            assert "pii-readers" in page and "withholds" in page
        async with http.post(f"{pdp.base}/console/evidence/export", data={"csrf": csrf}) as r:
            withheld = await r.read()
            assert r.status == 200 and r.content_type == "application/gzip", r.status
            assert "-withheld.tar.gz" in r.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(withheld)) as tar:
        for member in tar:
            data = tar.extractfile(member)
            assert data is not None and SSN.encode() not in data.read(), member.name
    (tmp_path / "withheld.tar.gz").write_bytes(withheld)
    report = verify_bundle(tmp_path / "withheld.tar.gz", pdp.signer.public_key)
    assert report.ok and report.counted.withheld.get("decision"), report.counted.lines()
    # an auditor who may read values exports, and the bundle verifies
    async with _http() as http:
        csrf = await sign_in(http, pdp.base, "pia@example.com", "auditor,pii-readers")
        async with http.get(f"{pdp.base}/console/evidence/") as r:
            assert 'action="/console/evidence/export"' in await r.text()
        async with http.post(f"{pdp.base}/console/evidence/export", data={"csrf": csrf}) as r:
            assert r.status == 200 and r.content_type == "application/gzip"
            data = await r.read()
    bundle = tmp_path / "evidence.tar.gz"
    bundle.write_bytes(data)
    report = verify_bundle(bundle, pdp.signer.public_key)
    assert report.ok, [p.describe() for p in report.problems]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("records.jsonl")
        assert member is not None and SSN.encode() in member.read()


async def test_a_person_outside_the_auditors_is_refused_as_before(pdp):
    async with _http() as http:
        csrf = await sign_in(http, pdp.base, "pat@example.com", "readonly,pii-readers")
        async with http.post(f"{pdp.base}/console/evidence/export", data={"csrf": csrf}) as r:
            assert r.status == 403
