"""Probes of the PDP's evidence and API surfaces, ninth round (helper E): approvals decided
by a namesake, decisions answered just before a kill -9, /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import pytest
import yaml
from pdp_harness import (
    ISSUED,
    REGO,
    connection,
    decide_sql,
    free_port,
    open_session,
    pdp_config,
    pdp_raw,
    pdp_stub,
    running_pdp,
    token,
)
from test_evidence_macs import audit
from test_pdp_kill_under_load import start_pdp
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli, _crashed, _cut_tail, _three_statements_after_a_checkpoint

from pdp.api.proxy_auth import ProxyKey
from pdp.store import open_store
from portcullis.config import StoreSettings, load_config, parse_config
from portcullis.v1 import pdp_pb2
from portcullis.wire import CREDENTIAL_METADATA
from proxies.runtime.pdp_client import PDPClient

# -- approvals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "namesake",
    [
        "\uff41lice@example.com",  # fullwidth a: NFKC makes it alice
        "ali\u200bce@example.com",  # a zero-width space inside
        "alice@example.com\u00a0",  # a no-break space after
        "ALICE@EXAMPLE.COM",  # case (refused before: the control)
    ],
    ids=["fullwidth", "zero-width", "no-break-space", "case"],
)
async def test_nobody_approves_their_own_request_under_a_variant_of_their_name(tmp_path, namesake):
    """Attack (a requester who can get a token whose subject is their own written
    otherwise, e.g. an IdP that keeps a username as typed): the self-approval check
    compared subjects lowered only, so alice's request was approved by
    '\\uff41lice@example.com' (a fullwidth a), 'ali\\u200bce@...' (an invisible character) or
    'alice@example.com\\u00a0'. Subjects are now compared as one reads them (NFKC,
    case folded, format characters and surrounding spaces dropped)."""
    config = pdp_config(tmp_path)
    alice = token(config, "alice@example.com", ("readonly",))
    twin = token(config, namesake, ("security",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        asked = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (1)")
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ResolveApproval(
                pdp_pb2.ResolveApprovalRequest(
                    token=twin, approval_id=asked.approval_id, approve=True, reason="me"
                )
            )
        if "\u200b" in namesake:
            # a format character in a subject: the token itself is refused (93c2e77)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "control character" in str(refused.value.details())
        elif namesake != namesake.strip():
            # blanks at either end of a subject: the token itself is refused (identity p5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "blanks" in str(refused.value.details())
        else:
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "own request" in str(refused.value.details())
        assert pdp.approvals.requests[asked.approval_id].state == "pending"


# -- a kill -9 under load ----------------------------------------------------------------

# what a decision the store did not take in time is answered (pdp.domain.decisions): a deny
UNRECORDED = "decision log unavailable"


async def test_every_decision_answered_before_a_kill_9_is_in_the_chain(tmp_path):
    """Attack on "every decision is written before it answers" (DESIGN.md): the PDP as its
    own process, 16 sessions deciding SELECTs (distinct, so none is reused) over the
    proxies' DecideStream, killed -9 mid-load. Every decision a proxy was told — its id
    and verdict — is in the chain read after the kill, and so is every session open it
    was answered; the chain verifies. (Found to hold: the store commits, and with
    synchronous: full fdatasyncs, before a decision is answered.)"""
    raw = pdp_raw(tmp_path, engine={"type": "embedded", "policies": str(REGO), "workers": 1})
    path = tmp_path / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    pdp = start_pdp(path, config.pdp.listen)
    credential = ProxyKey.load_or_create(config.pdp.proxy_key).issue("probe", ["*"])
    client = PDPClient(config.pdp.listen, metadata=((CREDENTIAL_METADATA, credential),))
    await client.start()
    reader = token(config, "alice@example.com", ("readonly",))
    told: dict[str, str] = {}  # decision id -> the verdict the proxy was told
    opened: list[str] = []
    stop = asyncio.Event()

    async def session(n: int) -> None:
        grant = await client.open_session(reader, connection(), f"127.0.0.1:{n}", "probe")
        opened.append(grant.session_id)
        i = 0
        while not stop.is_set():
            i += 1
            ruling = await client.decide(grant.session_id, "postgres.query", f"SELECT {n}, {i}")
            unrecorded = any(UNRECORDED in r for r in ruling.verdict.reasons)
            if ruling.decision_id and not unrecorded:  # (a store too slow: denied, fail closed)
                told[ruling.decision_id] = ruling.kind.wire

    sessions = [asyncio.create_task(session(n)) for n in range(16)]
    try:
        deadline = time.monotonic() + 60
        while len(told) < 300:  # under load: a bound on a hung run, not a timing assertion
            assert time.monotonic() < deadline and pdp.poll() is None
            await asyncio.sleep(0.02)
        os.kill(pdp.pid, signal.SIGKILL)
        pdp.wait()
    finally:
        stop.set()
        await asyncio.gather(*sessions, return_exceptions=True)
        await client.close()
        if pdp.poll() is None:
            pdp.kill()
            pdp.wait()
    store = open_store(StoreSettings(type="sqlite", path=tmp_path / "audit.db"))
    await store.start()
    try:
        recorded = {r.id: r.body.get("verdict") for r in await store.query(kind="decision")}
        opens = {r.session_id for r in await store.query(kind="session.open")}
        assert (await store.verify()).ok
    finally:
        await store.close()
    assert len(told) >= 300 and len(opened) == 16
    missing = {i: v for i, v in told.items() if i not in recorded}
    assert not missing, f"{len(missing)} decisions answered and not in the chain"
    assert {i: recorded[i] for i in told} == told
    assert set(opened) <= opens


# -- /metrics ----------------------------------------------------------------------------


async def test_metrics_are_shown_only_to_a_scraper_with_a_credential_or_an_auditor(tmp_path):
    """Attack (anyone who reaches pdp.http_listen, where the console is served to every
    person: a reader, or nobody at all): GET /metrics answered decisions by verdict and
    the sessions open (who is at work, and when a deny happens), and the audit figures
    (portcullis_audit_tail_cuts_total, _foreign_records_total, portcullis_anchor_unreached)
    that tell whoever cut or wrote into the store whether the PDP noticed. Now /metrics
    asks what /v1/status does: a proxy credential (in its header, or as the bearer token
    Prometheus sends; one naming no connection serves a scraper and no session) or an
    auditor's bearer token. /healthz and /readyz stay open for probes."""
    import aiohttp

    raw = pdp_raw(tmp_path)
    http = f"127.0.0.1:{free_port()}"
    raw["pdp"]["http_listen"] = http
    config = parse_config(raw, base_dir=tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        await open_session(stub, token(config))
        scraper = app.issue_proxy_credential("prometheus", [])
        asked = {
            "nobody": {},
            "reader": {"Authorization": f"Bearer {token(config)}"},
            "forged credential": {"Authorization": f"Bearer {scraper[:-4]}0000"},
            "forged header": {CREDENTIAL_METADATA: scraper[:-4] + "0000"},
            "scraper": {"Authorization": f"Bearer {scraper}"},
            "proxy": {CREDENTIAL_METADATA: ISSUED[app.address]},
            "auditor": {
                "Authorization": f"Bearer {token(config, 'sam@example.com', ('security',))}"
            },
        }
        answers: dict[str, tuple[int, str]] = {}
        async with aiohttp.ClientSession() as client:
            for who, headers in asked.items():
                async with client.get(f"http://{http}/metrics", headers=headers) as response:
                    answers[who] = (response.status, await response.text())
            for path in ("/healthz", "/readyz"):
                async with client.get(f"http://{http}{path}") as response:
                    assert response.status == 200, path
    for who, status in [("nobody", 401), ("reader", 403), ("forged credential", 401),
                        ("forged header", 401)]:  # fmt: skip
        assert answers[who][0] == status, (who, answers[who])
        assert "portcullis_" not in answers[who][1]
    for who in ("scraper", "proxy", "auditor"):
        assert answers[who][0] == 200, (who, answers[who])
        assert "portcullis_open_sessions 1\n" in answers[who][1]


# -- the head file: a cut while the PDP runs is not written over ---------------------------


async def test_a_tail_cut_while_the_pdp_runs_is_not_written_into_the_head_file(tmp_path):
    """Attack (DELETE on the audit store, no key, no forwarding): while the PDP runs, delete
    the records it wrote since its last checkpoint (alice's three statements), then wait
    for the PDP to die (a crash, an OOM kill) before it appends again (its next append
    would write an audit.tail_cut record). The head file, which catches such a cut, was
    rewritten within a second with the shorter chain's head (write_head checked the file
    against the chain only once per run), so after the crash `audit verify` said OK. Now
    a head file the chain no longer reaches is kept, while the PDP runs as at its start."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        kept, _ = await _three_statements_after_a_checkpoint(app, stub, config)
        assert app.checkpoints is not None
        await app.checkpoints.write_head()  # as its timer does, every second
        await _cut_tail(config.pdp.store, kept)
        await app.checkpoints.write_head()  # the timer's next tick, on the shorter chain
        assert app.checkpoints.head_problem
        await _crashed(app)
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"records {kept + 1}..{kept + 3} were deleted from the end" in result.stdout


# -- replay: an event no decision of the PDP backs ---------------------------------------


async def test_a_replay_marks_a_command_let_through_under_no_decision_of_the_session(tmp_path):
    """Attack (a proxy credential, compromised: its own session): record commands as
    allowed without asking the PDP, under a made-up decision id, none, or the id of a
    decision the PDP made in another session of the same proxy. `portcullis replay`
    showed `[allow d-…]` as for any command the PDP allowed, nothing to say no decision of
    the PDP backs it (a6ecc3d marks only a verdict weaker than the one recorded under that
    id in the session). Now such an event is marked and counted; one agreeing with a
    decision of its session is not, nor a denial."""
    import json

    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        other = await open_session(stub, token(config))
        elsewhere = await decide_sql(stub, other.session_id, "SELECT id FROM orders")
        own = await decide_sql(stub, opened.session_id, "SELECT id FROM customers")
        assert elsewhere.verdict == own.verdict == pdp_pb2.MASK  # a reader's: masked
        lines = [
            ("DELETE FROM orders", "d-" + "0" * 32, "allow"),
            ("TRUNCATE orders", "", "allow"),
            ("UPDATE orders SET total = 0", elsewhere.decision_id, "mask"),
            ("SELECT id FROM customers", own.decision_id, "mask"),
            ("DROP TABLE orders", "", "deny"),
        ]
        events = [
            {"time": float(n), "direction": "client", "type": "command", "command": raw,
             "decision_id": decision_id, "verdict": verdict}
            for n, (raw, decision_id, verdict) in enumerate(lines, start=1)
        ]  # fmt: skip
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events)
            )
        )
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    shown = replay.stdout.splitlines()
    for raw, _, _ in lines[:3]:
        line = next(line for line in shown if raw in line)
        assert "the PDP recorded no such decision" in line, replay.stdout
    for raw, _, _ in lines[3:]:
        line = next(line for line in shown if raw in line)
        assert "the PDP recorded" not in line, replay.stdout
    assert "!! 3 command(s)" in replay.stdout, replay.stdout


# -- the PostgreSQL store: a commit is durable before it is answered -----------------------


async def test_the_postgres_store_commits_durably_whatever_the_database_says(pg_database):
    """Attack on "every decision is written before it answers" with the postgres store: a
    database (or the PDP's role) set to synchronous_commit = off, a common tuning (or the
    doing of whoever may ALTER it), makes COMMIT return before its WAL reaches the disk,
    so a server crash loses the last decisions the PDP had answered (Postgres says up to
    three times wal_writer_delay). The store's connections ran with that setting. Now a
    connection that finds it off commits with `local` (the WAL flushed on this server);
    a stronger setting (on, remote_apply) is left as it is."""
    import psycopg

    name = pg_database.rsplit("/", 1)[1]
    with psycopg.connect(pg_database.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    store = open_store(StoreSettings(type="postgres", dsn=pg_database))
    await store.start()
    try:
        await store.append("probe", {"n": 1})
        pool = store._pool  # type: ignore[attr-defined]
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "local"
    finally:
        await store.close()
