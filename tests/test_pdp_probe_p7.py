"""Attacks on the PDP's evidence, status and approvals (seventh probe).

Each test drives a real PDP over gRPC (tests/pdp_harness.py) with the embedded OPA
evaluator and its real audit store (SQLite, and PostgreSQL where the store matters), and
the `portcullis` CLI in a subprocess where an auditor would use it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tarfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from audit_tamper import tamper
from pdp_harness import (
    ISSUED,
    decide_sql,
    free_port,
    open_session,
    pdp_raw,
    pdp_stub,
    running_pdp,
    token,
)
from test_evidence import portcullis

from pdp.api.http_api import metrics_text
from pdp.store.chain import record_hash
from portcullis.config import Config, load_config, parse_config
from portcullis.v1 import pdp_pb2
from portcullis.wire import CREDENTIAL_METADATA

ALICE = "alice@example.com"


def _store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if backend == "sqlite":
        return {"type": "sqlite", "path": str(tmp_path / "audit.db")}
    return {"type": "postgres", "dsn": request.getfixturevalue("pg_database")}


def _written(tmp_path: Path, **kwargs: Any) -> Path:
    """A test PDP's configuration written where the CLI reads it."""
    path = tmp_path / "portcullis.yaml"
    path.write_text(yaml.safe_dump(pdp_raw(tmp_path, **kwargs)))
    return path


async def _reads(stub, alice: str, n: int) -> None:
    opened = await open_session(stub, alice)
    for i in range(n):
        await decide_sql(stub, opened.session_id, f"SELECT id FROM orders WHERE id = {i}")


def _configured(tmp_path: Path, **kwargs: Any) -> tuple[Path, Config, str]:
    """(the configuration written where the CLI reads it, as loaded, alice's token)."""
    config_path = _written(tmp_path, **kwargs)
    config = load_config(config_path)
    return config_path, config, token(config, ALICE, ("readonly",))


async def _drop(stub, alice: str) -> str:  # type: ignore[no-untyped-def]
    """alice's DROP TABLE in a session of her own (denied, recorded): its session id."""
    opened = await open_session(stub, alice)
    await decide_sql(stub, opened.session_id, "DROP TABLE orders")
    return str(opened.session_id)


async def _checkpointed_then_drop(pdp, stub, alice: str, reads: int):  # type: ignore[no-untyped-def]
    """alice's `reads` reads, the checkpoint that names them, then her DROP TABLE: that
    checkpoint."""
    await _reads(stub, alice, reads)
    assert pdp.checkpoints is not None
    checkpoint = await pdp.checkpoints.checkpoint()
    assert checkpoint is not None
    await _drop(stub, alice)
    return checkpoint


def _console_config(tmp_path: Path) -> tuple[Config, str, str]:
    """(a configuration serving the console, where it listens, alice's token)."""
    raw = pdp_raw(tmp_path)
    http = f"127.0.0.1:{free_port()}"
    raw["pdp"]["http_listen"] = http
    config = parse_config(raw, base_dir=tmp_path)
    return config, http, token(config, ALICE, ("readonly",))


async def _auditors_page(http: str, path: str) -> str:
    """A console page as ines, an auditor, sees it."""
    from test_console_http import _http, sign_in

    async with _http() as client:
        await sign_in(client, f"http://{http}", "ines@example.com", "auditor")
        async with client.get(f"http://{http}{path}") as response:
            assert response.status == 200
            return await response.text()


def _append_chained(
    path: str, id: str, kind: str, session_id: str, subject: str, body: Any
) -> None:
    """INSERT one record at the head of the SQLite store, linked and hashed as the PDP
    would: what INSERT access alone can write (no key, so no record MAC)."""
    db = sqlite3.connect(path)
    try:
        seq, prev = db.execute(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        now = int(time.time() * 1e6)
        digest = record_hash(prev, seq + 1, id, kind, now, session_id, subject, body)
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        db.execute(
            "INSERT INTO audit_records (seq, id, kind, time_us, session_id, subject,"
            " body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq + 1, id, kind, now, session_id, subject, text, prev, digest),
        )
        db.commit()
    finally:
        db.close()


# -- evidence: a tail cut while the PDP runs on is not laundered by its next anchor --------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_tail_cut_is_not_laundered_by_the_next_checkpoint(tmp_path, request, backend):
    """Attack (DELETE on the audit store, or write access to the SQLite file; no key):
    delete the newest records, checkpoints included (alice's DROP TABLE and what followed),
    and let the PDP run on (or restart). `audit verify` caught the cut only until the next
    checkpoint: the PDP chained new records onto the shorter head (both stores read the
    head in each write's transaction), signed it, and replaced the anchor file with it;
    from then on verify and export passed on a store missing the deleted records. Now
    the checkpoint writer keeps an anchor the chain no longer reaches (and says so), so
    verify keeps failing."""
    store = _store(backend, request, tmp_path)
    config_path, config, alice = _configured(tmp_path, store=store)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        first = await _checkpointed_then_drop(pdp, stub, alice, 3)
        await _reads(stub, alice, 3)
        await pdp.checkpoints.checkpoint()
        anchor = json.loads((tmp_path / "checkpoint.json").read_text())
        cut = first.seq + 1  # everything after the first checkpoint
        await tamper(config.pdp.store, ("DELETE FROM audit_records WHERE seq >= ?", (cut,)))
        assert portcullis("-c", str(config_path), "audit", "verify").returncode == 1
        await _reads(stub, alice, 12)  # the PDP writes on, past the anchor's seq
        await pdp.checkpoints.checkpoint()
        assert "no longer reaches" in pdp.checkpoints.anchor_problem
        assert "portcullis_anchor_unreached 1" in metrics_text(pdp)
    kept = json.loads((tmp_path / "checkpoint.json").read_text())
    assert kept["payload"] == anchor["payload"]
    verified = portcullis("-c", str(config_path), "audit", "verify")
    assert verified.returncode == 1, verified.stdout
    assert "rewritten" in verified.stdout or "deleted" in verified.stdout, verified.stdout
    out = tmp_path / "evidence.tar.gz"
    exported = portcullis("-c", str(config_path), "audit", "export", "--out", str(out))
    assert exported.returncode == 1 and not out.exists()


async def test_a_record_the_siem_received_anchors_the_tail_after_the_last_checkpoint(tmp_path):
    """Attack (DELETE on the audit store, no key): cut the records written since the last
    checkpoint (alice's DROP TABLE). Nothing signed names them yet, so `audit verify`
    passes; forwarding had sent them to the SIEM within a second, but `audit verify
    --anchor` took only a signed head and refused the SIEM's copy of the newest record
    ('not a signed document'). It now takes a record as forwarded (record_json) as an
    anchor: unsigned, since it can only fail a verification, never pass one."""
    from pdp.forwarding import record_json

    config_path, config, alice = _configured(tmp_path)
    siem = tmp_path / "siem-newest.json"
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        checkpoint = await _checkpointed_then_drop(pdp, stub, alice, 2)
        newest = (await pdp.store.query(after_seq=(await pdp.store.head())[0] - 1))[-1]
        siem.write_text(record_json(newest) + "\n")
        verify = ("-c", str(config_path), "audit", "verify")
        intact = portcullis(*verify, "--anchor", str(siem))
        assert intact.returncode == 0, intact.stdout + intact.stderr
        assert f"names seq {newest.seq}: reached, unchanged" in intact.stdout
        cut = checkpoint.seq + 1
        await tamper(config.pdp.store, ("DELETE FROM audit_records WHERE seq >= ?", (cut,)))
        # what no signed head names is unseen, once the head file (written every second
        # beside the anchor, which a slow run had brought up to the DROP) goes as well:
        # whoever may write the store's files may delete it
        (tmp_path / "head.json").unlink(missing_ok=True)
        assert portcullis(*verify).returncode == 0
        caught = portcullis(*verify, "--anchor", str(siem))
        assert caught.returncode == 1, caught.stdout
        assert f"records {cut}..{newest.seq} were deleted from the end" in caught.stdout


# -- forwarding: what the PDP writes after a cut tail still reaches the SIEM ---------------


async def test_records_written_after_a_cut_tail_are_still_forwarded(tmp_path):
    """Attack (DELETE on the audit store, or write access to the SQLite file; no key): cut
    the newest records, already forwarded (the SIEM keeps them), then act: the PDP writes
    the next records (alice's DROP TABLE) at seqs the SIEM was sent before. The forwarder
    read on after the seq it delivered last, so it sent none of them, nor anything else
    until the chain grew past that seq again: the attacker's next commands never reached
    the SIEM. Now the spool reads the record it delivered last with each batch; when it
    is gone or changed it resumes after the newest delivered record the store still holds
    (and logs why), so the new records are sent with their own hash and prev_hash."""
    from test_forwarding import HTTPReceiver, append_many, eventually, forwarder, http_settings

    from pdp.store import open_store
    from portcullis.config import StoreSettings

    settings = StoreSettings(type="sqlite", path=tmp_path / "audit.db")
    store = open_store(settings)
    await store.start()
    receiver = HTTPReceiver(free_port())
    await receiver.start()
    sink = forwarder(http_settings(tmp_path, receiver.url, batch_size=4), store)
    await sink.start()
    try:
        await append_many(store, 12)
        await eventually(lambda: receiver.seqs() == list(range(1, 13)))
        await tamper(settings, ("DELETE FROM audit_records WHERE seq >= ?", (7,)))
        await store.append(
            "decision", {"verdict": "deny", "raw": "DROP TABLE orders"}, subject=ALICE
        )
        dropped = (await store.query(after_seq=6))[0]
        assert dropped.seq == 7

        def sent_the_drop() -> bool:
            return any(r["hash"] == dropped.hash for b in receiver.batches for r in b["records"])

        await eventually(sent_the_drop, timeout=5.0)
    finally:
        await sink.stop()
        await receiver.stop()
        await store.close()


# -- metrics: approvers' notices that go nowhere are seen -----------------------------------


async def test_notices_the_webhook_refuses_are_counted_on_metrics(tmp_path):
    """Problem (found by the console probe, a739b3a): a receiver refusing approval notices
    for good (a revoked hook's 404) or unreachable until requests expire left approvers
    unaware of every request, and only the log said so: /metrics, where operators alert,
    had no webhook figure. It now counts notices by outcome, retries and those pending."""
    from aiohttp import web

    async def gone(_: web.Request) -> web.Response:
        return web.Response(status=404)

    hook = web.Application()
    hook.router.add_post("/hook", gone)
    runner = web.AppRunner(hook)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    raw = pdp_raw(tmp_path, approvals={"webhook": f"http://127.0.0.1:{port}/hook"})
    http = f"127.0.0.1:{free_port()}"
    raw["pdp"]["http_listen"] = http
    config = parse_config(raw, base_dir=tmp_path)
    alice = token(config, ALICE, ("readonly",))
    try:
        async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
            opened = await open_session(stub, alice)
            asked = await decide_sql(
                stub, opened.session_id, "UPDATE orders SET a = 1 WHERE id = 7"
            )
            assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL, list(asked.reasons)
            assert pdp.webhook is not None
            for _ in range(400):  # the receiver is asked once (20 s at most)
                if pdp.webhook.refused and not pdp.webhook.pending:
                    break
                await asyncio.sleep(0.05)
            scraper = {"Authorization": f"Bearer {pdp.issue_proxy_credential('prom', [])}"}
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://{http}/metrics", headers=scraper) as r,
            ):
                text = await r.text()
    finally:
        await runner.cleanup()
    assert 'portcullis_webhook_notices_total{outcome="refused"} 1' in text, text
    assert 'portcullis_webhook_notices_total{outcome="delivered"} 0' in text
    assert "portcullis_webhook_notices_pending 0" in text


# -- status: what anyone reaching http_listen reads ---------------------------------------


async def test_unauthenticated_status_shows_no_credential_of_the_policy_bundle_url(tmp_path):
    """Attack (anyone who reaches pdp.http_listen, where the console and the approval API
    are served to approvers; no token): GET /readyz or /v1/status while the policy bundle
    server fails. Both showed the reload error whole: 'http://ci:pass-s3cret@.../bundle
    .tar.gz?X-Amz-Signature=tok-s3cret answered HTTP 503', the credential of the bundle
    URL (its user information, a presigned URL's signature), with which the whole policy
    (sensitive columns, approver groups, breaker thresholds) could be fetched. Now those
    endpoints show URLs without user information, query or fragment; the log keeps all."""
    from aiohttp import web
    from test_bundle import _policy_dir

    from pdp.engine import opa_bundle

    bundle, _ = opa_bundle.build(_policy_dir(tmp_path, "policy"))
    failing: list[bool] = []

    async def serve(_: web.Request) -> web.Response:
        if failing:
            return web.Response(status=503)
        return web.Response(body=bundle, headers={"ETag": '"one"'})

    app = web.Application()
    app.router.add_get("/bundles/portcullis.tar.gz", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://ci:pass-s3cret@127.0.0.1:{port}/bundles/portcullis.tar.gz?sig=tok-s3cret"
    raw = pdp_raw(
        tmp_path,
        engine={"type": "embedded", "bundle": url, "poll_seconds": 0.1, "workers": 1},
    )
    http = f"127.0.0.1:{free_port()}"
    raw["pdp"]["http_listen"] = http
    config = parse_config(raw, base_dir=tmp_path)
    try:
        async with running_pdp(config) as pdp:
            failing.append(True)
            for _ in range(400):  # the next poll fails (20 s at most)
                if getattr(pdp.engine, "last_reload_error", ""):
                    break
                await asyncio.sleep(0.05)
            shown = []
            async with aiohttp.ClientSession() as client:
                # /v1/status to a proxy (test_pdp_probe_p8: it shows itself to no one else)
                proxy = {CREDENTIAL_METADATA: ISSUED[pdp.address]}
                for path, headers in (("/readyz", {}), ("/v1/status", proxy)):
                    async with client.get(f"http://{http}{path}", headers=headers) as response:
                        shown.append(await response.json())
    finally:
        await runner.cleanup()
    for body in shown:
        assert "503" in body["policy_reload_error"], body
        assert "s3cret" not in json.dumps(body), body
        assert f"127.0.0.1:{port}/bundles/portcullis.tar.gz" in body["policy_reload_error"]


# -- export: a bundle holds only the records its export verified --------------------------


async def test_a_record_inserted_while_an_export_verifies_is_not_bundled_as_the_pdps(tmp_path):
    """Attack (INSERT access to the audit store, no key): append a well-chained decision
    record (alice's 'SELECT 1' standing for her DROP TABLE) while `audit export` (a
    scheduled compliance export, or the console's button: its queries show in
    pg_stat_activity) verifies the store. The export verified the chain and the record
    MACs up to the head it read first, then bundled every record up to the head it read
    later: the forged record went into the bundle, signed, with a manifest saying the
    MACs were checked and naming no record as someone else's; `audit verify --bundle`
    passed with the PDP's pinned key. A bundle now ends at the head its export verified."""
    from pdp.evidence.bundle import export_bundle, verify_bundle
    from pdp.evidence.checkpoints import anchor_path_for
    from pdp.evidence.signing import Signer
    from pdp.plumbing.keys import load_or_create_ed25519
    from pdp.store.sqlite import SQLiteAuditStore

    config = load_config(_written(tmp_path))
    alice = token(config, ALICE, ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        await _reads(stub, alice, 3)
        record_key = pdp.record_key
    path = config.pdp.store.path
    forged = {"verdict": "allow", "raw": "SELECT 1", "reasons": ["forged"]}

    class InsertedDuringVerify(SQLiteAuditStore):
        """The real store, with someone's INSERT landing while the chain is verified."""

        async def verify(self):  # type: ignore[no-untyped-def]
            _append_chained(path, "x-forged", "decision", "", ALICE, forged)
            return await super().verify()

    store = InsertedDuringVerify(path)
    store.record_key = record_key
    signer = Signer(load_or_create_ed25519(config.pdp.signing_key))
    anchor = json.loads(anchor_path_for(config.pdp.signing_key).read_text())
    out = tmp_path / "evidence.tar.gz"
    await store.start()
    try:
        await export_bundle(store, signer, out, anchor=anchor)
    finally:
        await store.close()
    report = verify_bundle(out, signer.public_key)
    with tarfile.open(out) as tar:
        member = tar.extractfile("records.jsonl")
        assert member is not None
        ids = [json.loads(line)["id"] for line in member.read().splitlines()]
    assert report.ok, [p.describe() for p in report.problems]
    assert "x-forged" not in ids


# -- console: the auditors' decisions page draws only the PDP's decisions ------------------


async def test_the_decisions_page_counts_no_decision_someone_else_inserted(tmp_path):
    """Attack (INSERT access to the audit store, no key): append well-chained decision
    records: a denied 'DROP TABLE payroll_x' alice never sent, under a policy revision
    'rev-forged' that was never in force. The console's Decisions page (auditors: verdicts
    over time, top denied commands, the policy revision history) counted every decision
    record the store held and drew them as the PDP's. Now records no valid record MAC
    covers are left out, and the page says how many."""
    config, http, alice = _console_config(tmp_path)
    forged = {
        "verdict": "deny",
        "raw": "DROP TABLE payroll_x",
        "reasons": ["no rule allows drop"],
        "policy_revision": "rev-forged",
    }
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        await _drop(stub, alice)
        _append_chained(config.pdp.store.path, "x-dec", "decision", "", ALICE, forged)
        page = await _auditors_page(http, "/console/decisions/")
    assert "DROP TABLE orders" in page  # the PDP's own denial is drawn
    assert "payroll_x" not in page and "rev-forged" not in page
    assert "1 records of this window have no valid record MAC" in page


async def test_the_console_session_list_marks_a_session_someone_else_inserted(tmp_path):
    """Attack (INSERT access to the audit store, no key): append a well-chained
    session.open record saying bob@example.com opened a session to orders-db. `portcullis
    sessions list` and the replay page say such a record is not the PDP's, but the
    console's session list (an auditor's first view) drew it as any other. Its row is now
    marked NOT WRITTEN BY THE PDP and the page says how many are."""
    config, http, alice = _console_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        real = (await pdp.store.query(kind="session.open", session_id=opened.session_id))[0]
        body = json.loads(json.dumps(real.body).replace(ALICE, "bob@example.com"))
        sid, bob = "s-forged-bob", "bob@example.com"
        _append_chained(config.pdp.store.path, "x-open", "session.open", sid, bob, body)
        page = await _auditors_page(http, "/console/sessions/")
    rows = {row.split("</tr>")[0] for row in page.split("<tr")[1:]}
    forged = [r for r in rows if "s-forged-bob" in r]
    genuine = [r for r in rows if opened.session_id in r]
    assert forged and genuine, page
    assert "NOT WRITTEN BY THE PDP" in forged[0]
    assert "NOT WRITTEN BY THE PDP" not in genuine[0]
    assert "1 sessions listed here have a session.open record with no valid" in page


async def test_a_copied_checkpoint_at_the_head_does_not_stop_the_last_checkpoint(tmp_path):
    """Attack (INSERT access to the audit store, no key): after alice's DROP TABLE, append
    a copy of an earlier signed checkpoint record as the newest record. The checkpoint
    writer took a head that is a signed checkpoint for 'nothing happened since the last
    checkpoint', at every tick and at shutdown: no checkpoint, and no anchor, ever named
    the DROP, which could then be cut from the store's end with verify passing. A head
    checkpoint now counts only when it names the record just before it."""
    config_path, config, alice = _configured(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        earlier = await _checkpointed_then_drop(pdp, stub, alice, 2)
        drop = (await pdp.store.head())[0]
        _append_chained(config.pdp.store.path, "x-cp", "checkpoint", "", "", earlier.body)
    anchor = json.loads((tmp_path / "checkpoint.json").read_text())
    assert anchor["payload"]["seq"] >= drop, anchor["payload"]
    await tamper(config.pdp.store, ("DELETE FROM audit_records WHERE seq >= ?", (drop,)))
    verified = portcullis("-c", str(config_path), "audit", "verify")
    assert verified.returncode == 1, verified.stdout


async def test_an_anchor_given_is_checked_besides_the_pdps_own(tmp_path):
    """Attack (DELETE on the audit store, no key): the auditor verifies with the newest
    record their SIEM holds (`--anchor`), but forwarding lags (a sink that was down):
    the SIEM's record is older than the PDP's newest checkpoint. Cut the records after the
    SIEM's record (alice's DROP TABLE and the checkpoint that names it): `audit verify
    --anchor` checked the anchor given instead of the PDP's checkpoint.json, found the
    SIEM's record reached and passed. The PDP's own anchor is now checked as well."""
    from pdp.forwarding import record_json

    config_path, config, alice = _configured(tmp_path)
    siem = tmp_path / "siem-newest.json"
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        await _reads(stub, alice, 2)
        head = (await pdp.store.head())[0]
        siem.write_text(record_json((await pdp.store.query(after_seq=head - 1))[0]) + "\n")
        await _drop(stub, alice)
    verify = ("-c", str(config_path), "audit", "verify", "--anchor", str(siem))
    intact = portcullis(*verify)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "checkpoint.json names seq" in intact.stdout
    await tamper(config.pdp.store, ("DELETE FROM audit_records WHERE seq > ?", (head,)))
    caught = portcullis(*verify)
    assert caught.returncode == 1, caught.stdout
    assert "deleted from the end" in caught.stdout


# -- sessions: a close the store cannot write does not end the session unrecorded -----------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
async def test_a_close_summary_holding_no_json_number_still_leaves_a_close_record(tmp_path, bad):
    """Attack (a compromised proxy credential): CloseSession with a summary number that
    JSON cannot hold (NaN, Infinity: a protobuf Struct's double may be either), as
    egress_rows or anywhere. The PDP removed the session from its book, then failed on the
    summary (int(NaN) in the egress count, or the store's JSON refusing it): the call
    failed, no session.close record and no credential statement were written, and as the
    session was no longer open, neither the reaper nor a second CloseSession ever wrote
    them: the session's end and its summary were gone from the evidence. Such numbers
    are now recorded as null, and the close is written."""
    from google.protobuf import struct_pb2

    config = load_config(_written(tmp_path))
    alice = token(config, ALICE, ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        summary = struct_pb2.Struct()
        summary.update({"credential_exposed": 0, "egress_rows": bad, "commands": 1})
        summary["nested"] = {"bytes": bad}
        closed = await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=opened.session_id, summary=summary)
        )
        records = await pdp.store.query(kind="session.close", session_id=opened.session_id)
    assert closed.decision_id and len(records) == 1
    assert records[0].body["summary"]["egress_rows"] is None
    assert records[0].body["summary"]["nested"] == {"bytes": None}
