"""Attacks on the PDP's evidence and its HTTP status (eighth probe).

Each test drives a real PDP over gRPC (tests/pdp_harness.py) with the embedded OPA
evaluator and its real audit store (SQLite, and PostgreSQL where the store matters), and
the `portcullis` CLI in a subprocess where an auditor would use it. Forged records are
INSERTed with sqlite3 / asyncpg, chained as the PDP chains them (test_evidence_macs.forge).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from pdp_harness import decide_sql, open_session, pdp_raw, pdp_stub, running_pdp, token
from test_evidence_macs import _store as opened_store
from test_evidence_macs import audit, forge
from test_pdp_probe_p5 import _insert_raw
from test_pdp_probe_p7 import ALICE, _store, _written

from pdp.api.http_api import metrics_text
from pdp.evidence.checkpoints import CHECKPOINT_KIND, verify_store
from portcullis.config import load_config

# -- one INSERTed row halts no checkpoint --------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_one_inserted_record_stops_no_checkpoint_of_the_genuine_chain(
    backend, tmp_path, request
):
    """Attack (INSERT access to the audit store, no key): append one well-chained decision
    record. Every later checkpoint was refused until an operator ran `audit acknowledge`:
    one row stopped the signatures over every genuine record the PDP wrote after it (and
    left them cuttable by whoever wrote the row: no anchor moved on). Now the checkpoint is
    signed and its payload names the forged row as not the PDP's; the PDP logs it and
    counts it (portcullis_audit_foreign_records_total); `audit verify` still names it."""
    config_path = _written(tmp_path, store=_store(backend, request, tmp_path))
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        assert await app.checkpoints.checkpoint() is not None
        forged = await forge(
            config.pdp.store,
            "decision",
            {"verdict": "allow", "command": {"raw": "DROP TABLE orders"}},
            session_id=opened.session_id,
            subject=ALICE,
        )
        await decide_sql(stub, opened.session_id, "SELECT id FROM customers")
        signed = await app.checkpoints.checkpoint()
        assert signed is not None  # the genuine chain is signed for
        assert signed.body["payload"]["foreign"] == [[forged, forged]]
        assert app.checkpoints.foreign_ranges == [(forged, forged)]
        assert "portcullis_audit_foreign_records_total 1\n" in metrics_text(app)
        await decide_sql(stub, opened.session_id, "SELECT 2")
        after = await app.checkpoints.checkpoint()
        assert after is not None and "foreign" not in after.body["payload"]
        report = await verify_store(app.store, app.signer.public_key)
        assert [p.seq for p in report.problems] == [forged], report.problems
        assert "no valid record MAC" in report.problems[0].text
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"record {forged} not written" in result.stdout


async def test_a_copied_checkpoint_does_not_hide_the_record_it_named(tmp_path):
    """Attack (INSERT access, no key), on the fix above: a signed checkpoint naming a
    forged record, copied and appended as the newest record (no MAC of its own), lifts the
    floor below which verify takes records as vouched for by a checkpoint of old. What a
    signed checkpoint names as no PDP's stays named, with the record key and without it."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        forged = await forge(config.pdp.store, "decision", {"verdict": "allow"}, subject=ALICE)
        await decide_sql(stub, opened.session_id, "SELECT 2")
        signed = await app.checkpoints.checkpoint()
        assert signed is not None
        await forge(config.pdp.store, CHECKPOINT_KIND, signed.body)  # the copy
        report = await verify_store(app.store, app.signer.public_key)
        assert [p.seq for p in report.problems] == [forged], report.problems
        public_key = app.signer.public_key
    async with opened_store(config.pdp.store) as keyless:  # read without the proxy key
        assert keyless.record_key is None
        report = await verify_store(keyless, public_key)
        assert [p.seq for p in report.problems] == [forged], report.problems


async def test_a_record_that_cannot_be_read_stops_no_checkpoint(tmp_path):
    """Attack (write access to the SQLite file): INSERT a record whose body is not JSON.
    Reading it raised in the checkpoint writer, so no checkpoint was signed again (the
    timer logged and counted the failure, for ever; moved here from test_evidence_macs,
    which asserted that). Now the unreadable records are named
    as no PDP's in a signed checkpoint, and verify names the broken record."""

    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        assert await app.checkpoints.checkpoint() is not None
        seq = (await app.store.head())[0]
        _insert_raw(config.pdp.store.path, "decision", "not json", "")
        await decide_sql(stub, opened.session_id, "SELECT 2")
        signed = await app.checkpoints.checkpoint()
        assert signed is not None
        assert signed.body["payload"]["foreign"] == [[seq + 1, seq + 1]]
        assert app.checkpoints.refused == 0
        report = await verify_store(app.store, app.signer.public_key)
        assert not report.ok and report.problems[0].seq == seq + 1
        assert "not JSON" in report.problems[0].text
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1
    assert result.stdout.startswith(f"FAIL: record seq={seq + 1} ")


# -- /v1/status: not for anyone who reaches the HTTP port ----------------------------------


async def test_status_is_shown_only_to_a_proxy_or_an_auditor(tmp_path):
    """Attack (anyone who reaches pdp.http_listen, where the console is served; no token):
    GET /v1/status. It answered every connection's name with its open sessions (who works
    on which database right now), the policy revision and the policy server's reload error
    (its host and path). Now it asks for what the rest of /v1 does: a bearer token, of the
    console's auditor groups, or a proxy credential (what `portcullis status` sends, from
    pdp.proxy_credential_file). /healthz and /readyz stay open for probes."""
    import aiohttp
    from pdp_harness import ISSUED, free_port

    from portcullis.wire import CREDENTIAL_METADATA

    raw = pdp_raw(tmp_path)
    http = f"127.0.0.1:{free_port()}"
    raw["pdp"]["http_listen"] = http
    config_path = tmp_path / "portcullis.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        await open_session(stub, token(config))
        credential = ISSUED[app.address]
        asked = {
            "nobody": {},
            "reader": {"Authorization": f"Bearer {token(config)}"},
            "forged credential": {CREDENTIAL_METADATA: credential[:-4] + "0000"},
            "auditor": {
                "Authorization": f"Bearer {token(config, 'sam@example.com', ('security',))}"
            },
            "proxy": {CREDENTIAL_METADATA: credential},
        }
        answers: dict[str, tuple[int, Any]] = {}
        async with aiohttp.ClientSession() as client:
            for who, headers in asked.items():
                async with client.get(f"http://{http}/v1/status", headers=headers) as response:
                    answers[who] = (response.status, await response.json(content_type=None))
            for path in ("/healthz", "/readyz"):
                async with client.get(f"http://{http}{path}") as response:
                    assert response.status == 200, path
        cli = await asyncio.to_thread(_cli, config_path, "status", "--format", "json")
    assert answers["nobody"][0] == 401 and "orders-db" not in str(answers["nobody"][1])
    assert answers["reader"][0] == 403 and "orders-db" not in str(answers["reader"][1])
    assert answers["forged credential"][0] == 401
    for who in ("auditor", "proxy"):
        assert answers[who][0] == 200, answers[who]
        assert answers[who][1]["sessions_by_connection"] == {"orders-db": 1}
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert '"open_sessions": 1' in cli.stdout, cli.stdout


def _cli(config_path: Path, *args: str) -> Any:
    import os
    import subprocess
    import sys

    from pdp_harness import REPO

    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args, "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + str(REPO / "proto")},
    )


# -- reuses after the session's last Decide ------------------------------------------------


async def test_commands_answered_from_the_cache_after_the_last_decide_are_counted(tmp_path):
    """Attack (a reader whose policy has a runaway-loop breaker): run a statement once
    (decided at the PDP), then again and again: the proxy answers the repeats from its
    decision cache and reports them with its next Decide, which never comes when the
    client disconnects. They were lost at CloseSession: the close record did not name
    them and the breaker never counted them (a loop split over short sessions runs
    `reuses_left` commands per session unseen). Now the proxy sends them with
    CloseSession (CloseSessionRequest.reused), and the PDP counts them in the breaker and
    records them in the session.close record."""
    import json
    import shutil

    import asyncpg
    from pdp_harness import REGO
    from pg_harness import running_gateway

    from portcullis.verdict import BreakerLimits

    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies)
    data = json.loads((policies / "data.json").read_text())
    limit = 50
    data["portcullis"]["breakers"] = {
        "readonly": {"identical_per_minute": limit, "pause_seconds": 600}
    }
    (policies / "data.json").write_text(json.dumps(data))
    async with running_gateway(tmp_path, policies=policies) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), statement_cache_size=0)
        try:
            for _ in range(5):  # simple Query: one command each, the first decided
                await conn.execute("SELECT id FROM orders WHERE id = 1")
        finally:
            await conn.close()
        closes: list[Any] = []
        for _ in range(200):  # the close reaches the PDP after the client has gone
            closes = await gw.pdp.store.query(kind="session.close")
            if closes:
                break
            await asyncio.sleep(0.05)
        [close] = closes
        hits = close.body["summary"].get("cache_hits", 0)
        assert hits == 4, close.body["summary"]
        reused = close.body.get("reused", [])
        assert sum(entry["count"] for entry in reused) == hits, close.body
        assert all(entry["raw"] == "SELECT id FROM orders WHERE id = 1" for entry in reused)
        breaker = gw.pdp.service.guards.breaker
        left = breaker.reuses_left(ALICE, "orders-db", BreakerLimits(identical_per_minute=limit))
        assert left == limit - 5, left  # the decided one and the four reused


# -- session events: times no clock gives ---------------------------------------------------


async def test_an_event_time_out_of_range_does_not_stop_the_replay(tmp_path):
    """Attack (the session's own proxy, compromised or broken): RecordEvents with events
    whose time is 1e300 or -1e300 seconds (any number passes: the time is the proxy's
    word). `portcullis replay` of the session died with OverflowError (rfc3339 of it),
    so none of the session's decisions could be replayed. Now such a time reads as
    `out-of-range time ...` and the replay shows every command. RecordEvents now refuses
    such times (p12); a recording made before that may hold them, and still replays."""
    import grpc

    from pdp.domain.recordings import EVENTS_KIND
    from portcullis.v1 import pdp_pb2

    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        events = [
            pdp_pb2.SessionEvent(time=t, direction="client", type="command", command=text)
            for t, text in ((1e300, "SELECT 'far future'"), (-1e300, "SELECT 'far past'"))
        ]
        recorder = '[{"time":1e300,"direction":"client","type":"command","command":"SELECT 9"}]'
        for request in (
            pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events=events),
            pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events_json=recorder),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordEvents(request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # as an older PDP stored them
        old = [
            {"time": t, "direction": "client", "type": "command", "command": text}
            for t, text in ((1e300, "SELECT 'far future'"), (-1e300, "SELECT 'far past'"))
        ]
        await app.store.append(EVENTS_KIND, {"events": old}, session_id=opened.session_id)
        await app.store.append(
            EVENTS_KIND, {"events_json": recorder, "count": 1}, session_id=opened.session_id
        )
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    for text in ("SELECT 'far future'", "SELECT 'far past'", "SELECT 9"):
        assert text in replay.stdout, replay.stdout


# -- a tail cut while the PDP runs, no forwarding -------------------------------------------


async def _cut_tail(store: Any, after: int) -> None:
    """DELETE every record after seq `after`, as the table's owner (or whoever holds the
    SQLite file) can: the append-only triggers dropped first."""
    import sqlite3

    import asyncpg

    if store.type == "sqlite":
        db = sqlite3.connect(store.path, isolation_level=None)
        try:
            db.execute("DROP TRIGGER audit_records_no_delete")
            db.execute("DELETE FROM audit_records WHERE seq > ?", (after,))
        finally:
            db.close()
        return
    conn = await asyncpg.connect(store.dsn)
    try:
        await conn.execute("ALTER TABLE audit_records DISABLE TRIGGER USER")
        await conn.execute("DELETE FROM audit_records WHERE seq > $1", after)
        await conn.execute("ALTER TABLE audit_records ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def _three_statements_after_a_checkpoint(app: Any, stub: Any, config: Any) -> tuple[int, str]:
    """A checkpoint, then alice's three statements: (the head's seq at the checkpoint, the
    session's id)."""
    opened = await open_session(stub, token(config))
    await decide_sql(stub, opened.session_id, "SELECT 1")
    assert await app.checkpoints.checkpoint() is not None
    kept = (await app.store.head())[0]
    for n in range(3):
        await decide_sql(stub, opened.session_id, f"SELECT id FROM orders WHERE id = {n}")
    return kept, opened.session_id


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_tail_cut_while_the_pdp_runs_is_caught_without_forwarding(
    backend, tmp_path, request
):
    """Attack (DELETE on the audit store, or the SQLite file; no forwarding configured):
    while the PDP runs, delete the records written since its last checkpoint (here
    alice's three statements). The PDP wrote on at the freed seqs, its next checkpoint
    signed the shorter chain, and the anchor (which names only the last checkpoint) was
    still reached: `audit verify` said OK. Now the store sees the head below a record it
    committed itself and writes an audit.tail_cut record (MAC'd, then signed over) that
    verify names; the PDP logs it and counts it (portcullis_audit_tail_cuts_total)."""
    config_path = _written(tmp_path, store=_store(backend, request, tmp_path))
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        kept, session_id = await _three_statements_after_a_checkpoint(app, stub, config)
        await _cut_tail(config.pdp.store, kept)
        await decide_sql(stub, session_id, "SELECT 2")
        for _ in range(100):  # the cut's record is appended beside the next batch
            if await app.store.query(kind="audit.tail_cut"):
                break
            await asyncio.sleep(0.05)
        assert "portcullis_audit_tail_cuts_total 1\n" in metrics_text(app)
        assert await app.checkpoints.checkpoint() is not None
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"records {kept + 1}..{kept + 3} the PDP had committed" in result.stdout


async def _crashed(app: Any) -> None:
    """Leave the PDP as a kill would: no shutdown checkpoint, anchor or head file."""

    async def no_last_checkpoint() -> None:
        return None

    task = app.checkpoints._task
    app.checkpoints.stop = no_last_checkpoint
    if task is not None:
        task.cancel()


async def test_a_tail_cut_after_a_crash_is_caught_by_the_head_file(tmp_path):
    """Attack (DELETE on the audit store, no forwarding): the PDP dies (no shutdown
    checkpoint); delete the records it wrote since its last checkpoint (alice's three
    statements). The chain verified and the anchor (the last checkpoint) was reached:
    `audit verify` said OK, and the restarted PDP wrote on. Now the PDP keeps the head
    as it saw it, every second while it moves, in head.json beside the anchor (unsigned:
    it can only fail a verification), which verify and export check; a PDP starting
    on a chain that no longer reaches it keeps it (portcullis_anchor_unreached 1)."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        kept, _ = await _three_statements_after_a_checkpoint(app, stub, config)
        await app.checkpoints.write_head()  # as its timer does, every second
        await _crashed(app)
    await _cut_tail(config.pdp.store, kept)
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"records {kept + 1}..{kept + 3} were deleted from the end" in result.stdout
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 2")
        await app.checkpoints.write_head()
        assert "portcullis_anchor_unreached 1\n" in metrics_text(app)
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    out = str(tmp_path / "b.tar.gz")
    exported = await asyncio.to_thread(audit, config_path, "export", "--out", out)
    assert exported.returncode == 1, exported.stdout + exported.stderr


# -- verify: which key it trusted ----------------------------------------------------------


async def test_verify_of_the_store_says_which_key_it_trusted(tmp_path):
    """Attack (write access to the store and to the signing key's directory): rewrite the
    records, re-chain them, re-sign every checkpoint, the anchor and the key file with a
    key of one's own: `audit verify` read the key from that directory and said OK with
    no word of which key, so an auditor could not compare it with the one kept elsewhere.
    Now an OK names the key's id and where it came from, NOT PINNED unless --public-key
    gave it (as `audit verify --bundle` does)."""
    from pdp.evidence.signing import key_id_of

    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        key_id = key_id_of(app.signer.public_key)
        pem = tmp_path / "public.pem"
        pem.write_bytes(app.signer.public_pem())
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"key: {key_id}, from {config.pdp.signing_key}: NOT PINNED" in result.stdout
    pinned = await asyncio.to_thread(audit, config_path, "verify", "--public-key", str(pem))
    assert pinned.returncode == 0 and "NOT PINNED" not in pinned.stdout, pinned.stdout


async def test_a_replay_shows_where_the_proxy_claims_less_than_the_pdp_decided(tmp_path):
    """Attack (the session's own proxy, compromised or broken): the PDP denies a reader's
    DROP TABLE, and the proxy records the command with that decision's id as `allow`.
    `portcullis replay` showed `[allow d-…]`, the proxy's word, with nothing to say the
    PDP's record of the same decision is a deny. Now a verdict that lets through more than
    the PDP's recorded one (allow for deny or mask) is shown beside it, and counted; an
    event agreeing with its decision is not."""
    import json

    from portcullis.v1 import pdp_pb2

    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        denied = await decide_sql(stub, opened.session_id, "DROP TABLE orders")
        assert denied.verdict == pdp_pb2.DENY
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        events = [
            {"time": 1.0, "direction": "client", "type": "command", "command": "DROP TABLE orders",
             "decision_id": denied.decision_id, "verdict": "allow"},
            {"time": 2.0, "direction": "client", "type": "command",
             "command": "SELECT id FROM orders", "decision_id": allowed.decision_id,
             "verdict": pdp_pb2.Verdict.Name(allowed.verdict).lower()},
        ]  # fmt: skip
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events)
            )
        )
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    drop = next(line for line in replay.stdout.splitlines() if "DROP TABLE orders" in line)
    assert "the PDP recorded deny" in drop, replay.stdout
    select = next(line for line in replay.stdout.splitlines() if "SELECT id FROM orders" in line)
    assert "the PDP recorded" not in select, replay.stdout
    assert "!! 1 command(s)" in replay.stdout, replay.stdout


async def test_events_with_a_time_that_is_no_number_are_refused_as_invalid(tmp_path):
    """A proxy's RecordEvents (plain events, not events_json) with a NaN or infinite time
    or detail: the store's JSON refused it and the call failed UNKNOWN ('Out of range
    float values are not JSON compliant'), which a proxy takes for a PDP it cannot reach
    (and retries). Now INVALID_ARGUMENT, saying why, and the session's later events
    are kept."""
    import grpc
    from google.protobuf import struct_pb2

    from portcullis.v1 import pdp_pb2

    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        nan_detail = struct_pb2.Struct()
        nan_detail.update({"rows": float("nan")})
        for event in (
            pdp_pb2.SessionEvent(time=float("nan"), direction="client", type="command"),
            pdp_pb2.SessionEvent(time=float("inf"), direction="client", type="command"),
            pdp_pb2.SessionEvent(time=1.0, direction="client", type="command", details=nan_detail),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordEvents(
                    pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events=[event])
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "finite" in refused.value.details()
        kept = pdp_pb2.SessionEvent(time=2.0, direction="client", type="command", command="ok")
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events=[kept])
        )
        assert len(await app.store.query(kind="session.events")) >= 1


async def test_the_consoles_evidence_page_and_export_check_the_head_file(tmp_path):
    """The tail cut after a crash that `audit verify` catches by head.json (85967b1): the
    console's Evidence page (run by the restarted PDP) said "OK: the chain verifies" and
    its Export button signed a bundle of the shorter chain, since both checked the anchor
    only. Now both check the head the PDP keeps beside it, as the CLI does."""
    from dataclasses import replace

    from pdp_harness import free_port
    from test_console_http import _http, sign_in

    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        kept, _ = await _three_statements_after_a_checkpoint(app, stub, config)
        await app.checkpoints.write_head()
        await _crashed(app)
    await _cut_tail(config.pdp.store, kept)
    port = free_port()
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    base = f"http://127.0.0.1:{port}"
    async with running_pdp(config), _http() as http:
        # the export is for auditors who may read values (tests/test_console_probe_p10.py)
        csrf = await sign_in(http, base, "ines@example.com", "auditor,pii-readers")
        async with http.get(f"{base}/console/evidence/") as r:
            page = await r.text()
        assert 'class="chain bad"' in page and "deleted from the end" in page, page[:2000]
        async with http.post(f"{base}/console/evidence/export", data={"csrf": csrf}) as r:
            assert r.status == 409, r.status
