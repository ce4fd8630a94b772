"""Attacks on the PDP's identity, approvals and evidence (fifth probe).

Each test drives real components: the PDP over gRPC (tests/pdp_harness.py) with the
embedded OPA evaluator and its real audit store (sqlite), and the `portcullis` CLI in a
subprocess where an auditor would use it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import asyncpg
import grpc
import jwt
import pytest
import yaml
from pdp_harness import (
    decide_sql,
    free_port,
    open_session,
    pdp_config,
    pdp_raw,
    pdp_stub,
    running_pdp,
    token,
)
from test_evidence import portcullis
from test_evidence_macs import audit, forge, store_of, write_config
from test_forwarding import HTTPReceiver, eventually
from test_pdp_probe_p2 import SAM
from test_pdp_probe_p4 import IDP, IDP_SECRET

from portcullis.v1 import pdp_pb2


def _idp_config(tmp_path):
    """A PDP trusting the corporate IdP (HS256, shared secret), with the stock policy."""
    identity = {"issuer": IDP, "shared_secret": IDP_SECRET, "algorithms": ["HS256"]}
    return pdp_config(tmp_path, identity=identity)


def _idp_token(sub: str, groups: object) -> str:
    now = int(time.time())
    claims = {"iss": IDP, "sub": sub, "aud": "portcullis", "iat": now, "exp": now + 3600}
    return jwt.encode({**claims, "groups": groups}, IDP_SECRET, algorithm="HS256")


def _cli(config, tmp_path, *args: str):
    """`portcullis -c <config> args...` in a subprocess, as an operator runs it."""
    path = tmp_path / "cli.yaml"
    if not path.exists():
        path.write_text(yaml.safe_dump(pdp_raw(tmp_path)))
    return portcullis("-c", str(path), *args)


def _forwarded(receiver: HTTPReceiver) -> list[dict]:
    return [r for b in receiver.batches for r in b["records"]]


# -- identity: a groups claim is never split into groups ---------------------------------


@pytest.mark.parametrize("groups", ["readonly,dba", "readonly dba", "dba\treadonly", ["x", " dba"]])
async def test_a_groups_string_is_not_split_into_dba(tmp_path, groups):
    """Attack (a reader whose IdP lets people name groups): a token whose groups claim is
    the string "readonly,dba" (or "readonly dba") was split on commas and blanks, and its
    holder was in dba: DELETE without approval, reads unmasked. A group is now taken as
    the provider wrote it; a string naming several groups (or an entry with surrounding
    blanks) rejects the token instead of guessing at membership."""
    config = _idp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, _idp_token("eve@example.com", groups))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "groups claim" in (refused.value.details() or "")
        # one group in a string is that group
        one = await open_session(stub, _idp_token("eve@example.com", "readonly"))
        assert one.session_id


# -- the audit store: a body someone else INSERTed stops no reader -----------------------

UPDATE = "UPDATE customers SET note = 'VIP' WHERE id = 7"


def _insert_raw(path, kind: str, body_text: str, session_id: str) -> None:
    """INSERT one row at the head of the SQLite store, as anyone who may write the file."""
    db = sqlite3.connect(path)
    try:
        seq, prev = db.execute(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        db.execute(
            "INSERT INTO audit_records (seq, id, kind, time_us, session_id, subject, body,"
            " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq + 1, f"x-{seq}", kind, int(time.time() * 1e6), session_id, "eve",
             body_text, prev, "0" * 64),
        )  # fmt: skip
        db.commit()
    finally:
        db.close()


@pytest.mark.parametrize("body_text", ["not json", "[1, 2]", "7"])
async def test_a_record_whose_body_is_no_json_object_stops_no_approval(tmp_path, body_text):
    """Attack (INSERT access to the audit store, no key): one `approval` row whose body is
    not a JSON object. Every query whose range held it raised (the store decoded bodies
    with json.loads and gave back what it read): the approvals book's refresh failed, so
    no approver could decide any request and every Decide that asked for approval failed
    with UNKNOWN, for everyone, for as long as the row stayed (it cannot be deleted). Now
    such a body reads as {} (what anyone who may INSERT could write anyway): the book
    ignores it (no MAC) and `audit verify` still names it."""
    config = pdp_config(tmp_path)
    reader = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        asked = await decide_sql(stub, opened.session_id, UPDATE)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        _insert_raw(config.pdp.store.path, "approval", body_text, opened.session_id)
        await pdp.approvals.refresh()
        decided = await pdp.approvals.decide(asked.approval_id, SAM, True, "ticket 9")
        assert decided.state == "approved"
        other = await open_session(stub, token(config, "bob@example.com", ("readonly",)))
        again = await decide_sql(stub, other.session_id, UPDATE.replace("7", "8"))
        assert again.verdict == pdp_pb2.REQUIRE_APPROVAL
    # the sessions CLI reads past it too
    listed = _cli(config, tmp_path, "sessions", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    replayed = _cli(config, tmp_path, "sessions", "replay", opened.session_id)
    assert replayed.returncode == 0, replayed.stderr


# -- replays show only approvals the PDP wrote ----------------------------------------------


async def test_a_replay_does_not_present_an_inserted_approval_as_fact(tmp_path):
    """Attack (INSERT access to the store, no key): the reader's UPDATE waited for
    approval and nobody approved it; an `approval` record `approved` by
    mallory@example.com is INSERTed. The approvals book ignores it (no MAC), but the
    replay (`portcullis sessions replay`, the console's session page) read every approval
    record as fact and showed the request approved by mallory. Now a replay keeps only
    approval records whose MAC checks and says which seqs it left out."""
    config = pdp_config(tmp_path)
    reader = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        asked = await decide_sql(stub, opened.session_id, UPDATE)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        forged = {
            "approval_id": asked.approval_id,
            "event": "approved",
            "time": time.time(),
            "approver": "mallory@example.com",
            "reason": "forged",
            "approver_groups": ["security"],
            "session_id": opened.session_id,
            "mac": "0" * 64,
        }
        _insert_raw(config.pdp.store.path, "approval", json.dumps(forged), opened.session_id)
        await pdp.approvals.refresh()
        assert pdp.approvals.requests[asked.approval_id].state == "pending"
        # the proxy records that the command was refused (nobody approved it)
        refused = pdp_pb2.SessionEvent(
            time=time.time() + 0.5, direction="client", type="command", command=UPDATE,
            decision_id=asked.decision_id, verdict="deny",
        )  # fmt: skip
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events=[refused])
        )
    for fmt in ("text", "json"):
        replayed = _cli(config, tmp_path, "sessions", "replay", opened.session_id, "--format", fmt)
        assert replayed.returncode == 0, replayed.stderr
        assert "mallory" not in replayed.stdout
        assert "left out" in replayed.stderr


# -- forwarding: a SIEM is told which records no PDP wrote -------------------------------


async def test_a_record_inserted_into_the_store_is_forwarded_as_unverified(tmp_path):
    """Attack (INSERT access to the store, no key): a well-formed `decision` record
    (bob's DROP TABLE allowed) INSERTed at the head. The forwarder sent every record of
    the store to the SIEM alike, so the forged one reached it indistinguishable from the
    PDP's own (its chain hash is unkeyed). Now a forwarded record no record MAC vouches
    for carries `unverified`; the PDP's own records carry nothing new."""
    receiver = HTTPReceiver(free_port())
    await receiver.start()
    config = pdp_config(tmp_path, forwarding=[{"type": "http", "url": receiver.url}])
    try:
        async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
            opened = await open_session(stub, token(config))
            await eventually(lambda: any(r["kind"] == "session.open" for r in _forwarded(receiver)))
            forged = {"verdict": "allow", "command": "DROP TABLE customers", "forged": True}
            _insert_raw(config.pdp.store.path, "decision", json.dumps(forged), opened.session_id)
            pdp.forwarders[0].notify()
            await eventually(lambda: any(r["body"].get("forged") for r in _forwarded(receiver)))
            await decide_sql(stub, opened.session_id, "SELECT 1")
            await eventually(lambda: any(r["kind"] == "decision" and not r["body"].get("forged")
                                         for r in _forwarded(receiver)))  # fmt: skip
    finally:
        await receiver.stop()
    for record in _forwarded(receiver):
        assert ("unverified" in record) == bool(record["body"].get("forged")), record


# -- evidence bundles: an auditor is told which records no PDP wrote ---------------------


async def test_a_bundle_says_which_records_the_pdp_did_not_write(tmp_path):
    """Attack (INSERT access to the store; an auditor holding only the bundle): a forged
    `approval` record (request approved by mallory) INSERTed, then acknowledged by an
    operator (`audit acknowledge`: reviewed, checkpoints go on). The store verifies (its
    acknowledgement is the PDP's) and `audit export` signed a bundle holding the forgery;
    `audit verify --bundle` said OK with nothing to tell it from the PDP's records, so
    the auditor took 'approved by mallory' as evidence. Now the signed manifest states
    whether record MACs were checked at export and which bundled seqs no PDP wrote, and
    the offline report names them."""
    config_path, config = write_config(tmp_path, store_of("sqlite", tmp_path, None))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        forged = await forge(
            config.pdp.store,
            "approval",
            {"approval_id": "a-1", "event": "approved", "approver": "mallory@example.com"},
            session_id=opened.session_id,
        )
        acked = await asyncio.to_thread(
            audit, config_path, "acknowledge", "--through", str(forged), "--reason", "INC-7"
        )
        assert acked.returncode == 0, acked.stdout + acked.stderr
        await decide_sql(stub, opened.session_id, "SELECT 2")
    out = tmp_path / "evidence.tar.gz"
    exported = await asyncio.to_thread(audit, config_path, "export", "--out", str(out))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    checked = await asyncio.to_thread(audit, config_path, "verify", "--bundle", str(out))
    assert checked.returncode == 0, checked.stdout
    assert f"records {forged} were NOT written by the PDP" in checked.stdout


async def test_sessions_and_replays_say_which_records_the_pdp_did_not_write(tmp_path):
    """Attack (INSERT access to the store, no key): a whole session of bob's made up —
    session.open, a decision allowing DROP TABLE, a recorded command — INSERTed. `sessions
    list` showed it among the PDP's, and `sessions replay` told it as fact, nothing to
    tell it apart (only `audit verify` named the records). Now both name the records no
    record MAC vouches for, in the output and on stderr."""
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
    sid = "s-" + "b0b" * 10
    connection = {"name": "orders-db", "type": "postgres", "zone": "eu-prod"}
    identity = {"subject": "bob@example.com", "groups": ["dba"], "issuer": "portcullis-dev"}
    path = config.pdp.store.path
    _insert_raw(path, "session.open", json.dumps({"connection": connection,
                "identity": identity, "verdict": "allow"}), sid)  # fmt: skip
    forged_open = _head_seq(path)
    _insert_raw(path, "decision", json.dumps({"verdict": "allow",
                "command": {"raw": "DROP TABLE customers"}}), sid)  # fmt: skip
    listed = _cli(config, tmp_path, "sessions", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"NOTE: sessions {sid}: their session.open records have no valid record MAC" in (
        listed.stdout
    )
    assert opened.session_id not in listed.stdout.split("NOTE:")[1]
    replayed = _cli(config, tmp_path, "sessions", "replay", sid)
    assert replayed.returncode == 0, replayed.stderr
    assert f"NOTE: records seq {forged_open}, {forged_open + 1} of this session" in replayed.stdout
    genuine = _cli(config, tmp_path, "sessions", "replay", opened.session_id)
    assert "NOTE" not in genuine.stdout and "note:" not in genuine.stderr


def _head_seq(path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT max(seq) FROM audit_records").fetchone()[0])
    finally:
        db.close()


async def test_the_console_replay_says_which_records_the_pdp_did_not_write(tmp_path):
    """The console's session page, as `sessions replay`: a made-up session INSERTed into
    the store is shown with a notice naming its records (none on a genuine session)."""
    from dataclasses import replace

    from test_console_http import _http, sign_in

    port = free_port()
    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    base = f"http://127.0.0.1:{port}"
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        sid = "s-" + "b0b" * 10
        identity = {"subject": "bob@example.com", "groups": ["dba"], "issuer": "portcullis-dev"}
        body = {"connection": {"name": "orders-db"}, "identity": identity, "verdict": "allow"}
        _insert_raw(config.pdp.store.path, "session.open", json.dumps(body), sid)
        async with _http() as http:
            await sign_in(http, base, "ines@example.com", "auditor")
            async with http.get(f"{base}/console/sessions/{sid}") as r:
                assert r.status == 200
                assert "no valid record MAC" in await r.text()
            async with http.get(f"{base}/console/sessions/{opened.session_id}") as r:
                assert r.status == 200
                assert "no valid record MAC" not in await r.text()


# -- guards: a record someone else INSERTed stops no budget read ----------------------------


async def _insert_raw_pg(dsn: str, kind: str, body_text: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        head = await conn.fetchrow("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
        await conn.execute(
            "INSERT INTO audit_records (seq, id, kind, time_us, session_id, subject, body,"
            " prev_hash, hash) VALUES ($1, $2, $3, $4, '', 'eve', $5, $6, $7)",
            head["seq"] + 1, f"x-{head['seq']}", kind, int(time.time() * 1e6), body_text,
            head["hash"], "0" * 64,
        )  # fmt: skip
    finally:
        await conn.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    ("kind", "body_text"),
    [
        ("breaker.tripped", "not json"),
        ("breaker.tripped", '{"paused_until": "x"}'),
        ("decision", '{"egress": {"rows": "x", "bytes": 1, "pdp": "p"}}'),
    ],
)
async def test_a_record_someone_else_inserted_does_not_fail_budgets_closed(
    tmp_path, request, backend, kind, body_text
):
    """Attack (INSERT access to the store, no key): one `breaker.tripped` record whose body
    is not JSON, or whose pause or egress report holds a string. The egress and breaker
    facts are read back by a query that parses bodies in SQL and converts them whole: it
    failed on that record at every read of its range, and MAX_LAG later every budget and
    breaker failed closed — every command of every guarded identity held for approval —
    for as long as the record stayed in the window (a week of pauses, read at every
    start). Now a failed read is done again record by record, skipping what is no fact,
    and the next read starts past it."""
    if backend == "postgres":
        store = {"type": "postgres", "dsn": request.getfixturevalue("pg_database")}
    else:
        store = {"type": "sqlite", "path": str(tmp_path / "audit.db")}
    config = pdp_config(tmp_path, store=store)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        await open_session(stub, token(config))
    if backend == "postgres":
        await _insert_raw_pg(store["dsn"], kind, body_text)
    else:
        _insert_raw(store["path"], kind, body_text, "")
    async with running_pdp(config) as pdp:  # its first read covers the record
        await pdp.service.guard_sync.settle()
        assert pdp.service.guard_sync.problem() == ""


async def test_a_pause_someone_else_inserted_pauses_nobody(tmp_path):
    """Attack (INSERT access to the store, no key): a well-formed `breaker.tripped` record
    naming rita and orders-db, paused for a year, as if another replica's breaker had
    tripped. GuardSync applied every pause it read back: rita's every command (readers
    have breakers in the stock policy) waited for approval for the year, whichever PDP
    she reached, at every restart within the week read back. Now a pause is applied only
    from a record a record MAC vouches for (a PDP holding the key wrote it)."""
    config = pdp_config(tmp_path)
    rita = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        await open_session(stub, rita)
    forged = {"pdp": "another-replica", "connection": "orders-db", "why": "runaway loop",
              "paused_until": time.time() + 365 * 86400}  # fmt: skip
    db = sqlite3.connect(config.pdp.store.path)
    try:
        seq, prev = db.execute(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        db.execute(
            "INSERT INTO audit_records (seq, id, kind, time_us, session_id, subject, body,"
            " prev_hash, hash) VALUES (?, ?, 'breaker.tripped', ?, '', ?, ?, ?, ?)",
            (seq + 1, "x-trip", int(time.time() * 1e6), "rita@example.com",
             json.dumps(forged), prev, "0" * 64),
        )  # fmt: skip
        db.commit()
    finally:
        db.close()
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        await pdp.service.guard_sync.settle()
        opened = await open_session(stub, rita)
        decided = await decide_sql(stub, opened.session_id, "SELECT 1")
        assert decided.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), list(decided.reasons)
        assert not any("breaker" in r for r in decided.reasons)
