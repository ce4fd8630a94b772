"""Attacks on the PDP's identity, approvals and evidence (fourth probe).

Each test drives real components: the PDP over gRPC (tests/pdp_harness.py) with the
embedded OPA evaluator and its real audit store (sqlite), and the `portcullis` CLI in a
subprocess where an auditor would use it.
"""

from __future__ import annotations

import time

import asyncpg
import grpc
import jwt
import pytest
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token
from test_evidence import make_env, populate, portcullis, seq_of
from test_pdp_probe_p2 import JIT_POLICY, SAM

from pdp.domain.identity import DevIssuer
from pdp.store import open_store
from pdp.store.chain import canonical_json, record_hash
from portcullis.config import StoreSettings
from portcullis.v1 import pdp_pb2

IDP = "https://idp.example.com"
ALICE = "alice@example.com"
IDP_SECRET = "a-shared-secret-of-the-corporate-idp-0123456789"


def _two_issuers(tmp_path):
    """A PDP that trusts the corporate IdP (HS256, shared secret) and the dev issuer."""
    policies = tmp_path / "jit"
    policies.mkdir(exist_ok=True)
    (policies / "policy.rego").write_text(JIT_POLICY)
    engine = {"type": "embedded", "policies": str(policies), "workers": 1, "timeout_ms": 2000}
    identity = {
        "dev": True,
        "dev_key": str(tmp_path / "dev.key"),
        "issuer": IDP,
        "shared_secret": IDP_SECRET,
        "algorithms": ["HS256"],
    }
    return pdp_config(tmp_path, engine=engine, identity=identity)


def _idp_token(sub: str, groups: list[str]) -> str:
    now = int(time.time())
    claims = {"iss": IDP, "sub": sub, "aud": "portcullis", "iat": now, "exp": now + 3600}
    return jwt.encode({**claims, "groups": groups}, IDP_SECRET, algorithm="HS256")


async def test_a_just_in_time_grant_is_not_reused_by_a_namesake_of_another_issuer(tmp_path):
    """Attack (a namesake at another trusted issuer): carl@example.com of the corporate
    IdP was granted a session on orders-db. Anyone whose token from another issuer the
    PDP trusts (here the dev issuer) names the same `sub` opened sessions under that grant
    without anyone approving them: the approvals book matched a session.open grant, which
    binds to no session, by subject alone. Now a grant (and a pending request) is the
    requester's by subject AND issuer; the namesake is asked for approval of their own."""
    config = _two_issuers(tmp_path)
    real = _idp_token("carl@example.com", ["contractors"])
    namesake = DevIssuer(config.identity).issue("carl@example.com", ["contractors"], 3600)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        asked = await open_session(stub, real)
        assert asked.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        await pdp.approvals.decide(asked.decision.approval_id, SAM, True, "on-call fix")
        granted = await open_session(stub, real)
        assert granted.decision.verdict == pdp_pb2.ALLOW and granted.session_id
        other = await open_session(stub, namesake)
        assert not other.session_id
        assert other.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        # a request of its own, not the granted one, and the grant stays the real carl's
        assert other.decision.approval_id != asked.decision.approval_id
        again = await open_session(stub, real)
        assert again.decision.verdict == pdp_pb2.ALLOW and again.session_id


# -- evidence: an export signs only a store that verifies ---------------------------------


async def test_an_export_does_not_sign_a_store_whose_tail_was_deleted(tmp_path):
    """Attack (write access to the audit DB, not to the keys): delete the newest records
    (bob's session and the last checkpoint). `audit verify` fails (the anchor names a seq
    past the head), but `audit export` read the shorter chain and signed it: its bundle
    verified offline with the PDP's pinned public key, and the deletion was laundered
    into signed evidence. Now the export verifies the store first (chain, checkpoints,
    anchor) and writes nothing when it fails, naming the first bad record."""
    env = make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    await populate(env)
    rows = await env.rows()
    cut = seq_of(rows, "session.open", 1)
    await env.tamper(("DELETE FROM audit_records WHERE seq >= ?", (cut,)))
    assert env.verify().returncode == 1
    out = tmp_path / "evidence.tar.gz"
    exported = portcullis("-c", str(env.config_path), "audit", "export", "--out", str(out))
    assert exported.returncode == 1, exported.stdout + exported.stderr
    assert "deleted from the end" in exported.stdout
    assert not out.exists()
    # an intact store still exports, and its bundle verifies against the pinned key
    (tmp_path / "b").mkdir()
    other = make_env(tmp_path / "b", {"type": "sqlite", "path": str(tmp_path / "b" / "a.db")})
    await populate(other)
    fine = tmp_path / "fine.tar.gz"
    assert (
        portcullis("-c", str(other.config_path), "audit", "export", "--out", str(fine)).returncode
        == 0
    )
    assert portcullis("audit", "verify", "--bundle", str(fine)).returncode == 0


# -- approvals: the PDP trusts only the approval records it wrote -------------------------

UPDATE = "UPDATE customers SET note = 'VIP' WHERE id = 7"


async def _append_as_a_database_writer(
    dsn: str, kind: str, body: dict, session_id: str, subject: str = "sam@example.com"
) -> None:
    """INSERT one record at the head of the chain, linked and hashed as the PDP would: no
    trigger to bypass (they refuse UPDATE and DELETE only) and no key needed (the chain's
    hash is unkeyed); what anyone holding the store's DSN can do."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x5043_4155_4449_5401)
            head = await conn.fetchrow(
                "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
            )
            seq, now_us = head["seq"] + 1, int(time.time() * 1_000_000)
            digest = record_hash(
                head["hash"], seq, "forged-1", kind, now_us, session_id, subject, body
            )
            await conn.execute(
                "INSERT INTO audit_records (seq, id, kind, time_us, session_id, subject, body,"
                " prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                seq, "forged-1", kind, now_us, session_id, subject,
                canonical_json(body), head["hash"], digest,
            )  # fmt: skip
    finally:
        await conn.close()


async def test_an_approval_written_into_the_store_by_someone_else_approves_nothing(
    tmp_path, pg_database
):
    """Attack (write access to the audit database, a reader's token): the reader's UPDATE
    waits for approval; the attacker INSERTs an `approval` record `approved` by
    sam@example.com at the head of the chain (the triggers refuse only UPDATE and DELETE;
    the chain hash needs no key). The approvals book read every approval record as the
    truth: the request became approved, the reader's re-run was allowed, and the forged
    record sat in an unbroken chain that the next signed checkpoint vouched for. Now the
    book keeps only approval records carrying the MAC of a key the store does not hold
    (derived from the PDP's proxy key); others are left out (and logged)."""
    config = pdp_config(tmp_path, store={"type": "postgres", "dsn": pg_database})
    reader = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        asked = await decide_sql(stub, opened.session_id, UPDATE)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        forged = {
            "approval_id": asked.approval_id,
            "event": "approved",
            "time": time.time(),
            "approver": "sam@example.com",
            "reason": "looks fine",
            "approver_groups": ["security"],
            "session_id": opened.session_id,
        }
        await _append_as_a_database_writer(pg_database, "approval", forged, opened.session_id)
        await pdp.approvals.refresh()
        again = await decide_sql(stub, opened.session_id, UPDATE)
        assert again.verdict == pdp_pb2.REQUIRE_APPROVAL, "the forged approval let it run"
        assert pdp.approvals.requests[asked.approval_id].state == "pending"
        # the PDP's own approvals still work, across a restart of the book
        await pdp.approvals.decide(asked.approval_id, SAM, True, "ticket 42")
        approved = await decide_sql(stub, opened.session_id, UPDATE)
        assert approved.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK)  # ran, its result masked
    async with running_pdp(config) as pdp:
        assert pdp.approvals.requests[asked.approval_id].state == "approved"
        assert pdp.approvals.requests[asked.approval_id].approver == "sam@example.com"


async def test_a_session_record_written_into_the_store_by_someone_else_is_not_believed(
    tmp_path, pg_database
):
    """Attack (INSERT access to the audit store, a reader's token): rita's session is open
    through a proxy; the attacker INSERTs a second session.open record for the same
    session id, a copy of the real one with groups ["dba"]. A PDP that finds the session
    in the store (a restart, another replica taking the proxy's stream, an evicted
    session) took the last allowed open record: rita's UPDATE, which needs approval for a
    reader, was decided as a dba's and allowed. Now a session record carries an HMAC
    under a key derived from the PDP's proxy key, and one without it is not believed."""
    config = pdp_config(tmp_path, store={"type": "postgres", "dsn": pg_database})
    reader = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        asked = await decide_sql(stub, opened.session_id, UPDATE)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        real = await pdp.store.query(kind="session.open", session_id=opened.session_id)
    body = dict(real[-1].body)
    session = dict(body["session"])
    session["identity"] = {**session["identity"], "groups": ["dba"]}
    session.pop("mac", None)
    body["session"] = session
    await _append_as_a_database_writer(pg_database, "session.open", body, opened.session_id)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        found = await decide_sql(stub, opened.session_id, UPDATE)
        assert found.verdict == pdp_pb2.REQUIRE_APPROVAL, "decided as a dba"
        # the session itself is still found, from its real record
        assert "readonly" in (await pdp.sessions.find(opened.session_id)).identity.groups


async def test_a_copy_of_another_sessions_record_does_not_become_this_session(
    tmp_path, pg_database
):
    """Attack (INSERT access to the audit store, a reader's token), the MAC'd form of the
    one above: copy the genuine open record of a dba's session (its MAC and all) under
    rita's session id. The MAC binds the session id: the copy is not believed."""
    config = pdp_config(tmp_path, store={"type": "postgres", "dsn": pg_database})
    reader = token(config, "rita@example.com", ("readonly",))
    dba = token(config, "dora@example.com", ("dba",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        theirs = await open_session(stub, dba)
        real = await pdp.store.query(kind="session.open", session_id=theirs.session_id)
    body = {**real[-1].body, "session_id": opened.session_id}
    await _append_as_a_database_writer(pg_database, "session.open", body, opened.session_id)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        found = await decide_sql(stub, opened.session_id, UPDATE)
        assert found.verdict == pdp_pb2.REQUIRE_APPROVAL, "decided as the dba"


# -- a proxy of one zone speaks only for the connections it serves ------------------------


async def test_a_proxy_of_another_zone_with_the_same_name_cannot_speak_for_a_session(tmp_path):
    """Attack (a compromised proxy credential of one zone): the us zone's proxy and the eu
    zone's carry the same name (one certificate CN for every proxy, zones told apart by
    their subjectAltName connections, or two credentials named alike), so their identity
    key, which a session is bound to, is the same. With the us credential (serving only
    billing-api) the attacker decided commands in, recorded events into and closed an
    orders-db session of the eu proxy. Now a session call is also refused (and recorded)
    unless the calling proxy serves the session's connection."""
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp:
        eu = pdp.issue_proxy_credential("edge", ["orders-db"])
        us = pdp.issue_proxy_credential("edge", ["billing-api"])
        async with pdp_stub(pdp.address, eu) as stub:
            opened = await open_session(stub, token(config, "rita@example.com", ("readonly",)))
            assert opened.session_id
        async with pdp_stub(pdp.address, us) as other:
            with pytest.raises(grpc.aio.AioRpcError) as decided:
                await decide_sql(other, opened.session_id, "SELECT 1")
            assert decided.value.code() == grpc.StatusCode.PERMISSION_DENIED
            event = pdp_pb2.SessionEvent(
                time=time.time(), direction="client", type="command", command="SELECT 1"
            )
            with pytest.raises(grpc.aio.AioRpcError) as recorded:
                await other.RecordEvents(
                    pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events=[event])
                )
            assert recorded.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as closed:
                await other.CloseSession(
                    pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason="x")
                )
            assert closed.value.code() == grpc.StatusCode.PERMISSION_DENIED
        async with pdp_stub(pdp.address, eu) as stub:  # its own proxy still speaks for it
            assert (await decide_sql(stub, opened.session_id, "SELECT 1")).verdict
        refused = await pdp.store.query(kind="proxy.refused")
        assert len(refused) >= 3


# -- egress budgets: a report of egress never counts negative ------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_negative_egress_report_gives_no_budget_back(tmp_path, request, kind):
    """Attack (INSERT access to the audit store, a reader with an egress budget): the
    budgets every PDP enforces are summed from the egress reports in the store's records
    (another PDP's, or this one's before a restart). A decision record INSERTed with
    egress rows -1000000 (tagged as another PDP's) was summed with alice's real usage,
    handing her a fresh million rows. An egress report is never negative: each one
    counts at least 0, in the SQL sums of both stores and in the Python one."""
    settings = (
        StoreSettings(type="sqlite", path=tmp_path / "audit.db")
        if kind == "sqlite"
        else StoreSettings(type="postgres", dsn=request.getfixturevalue("pg_database"))
    )
    store = open_store(settings)
    await store.start()
    try:
        real = {"kind": "postgres.query", "verdict": "allow", "connection": "orders-db",
                "egress": {"rows": 5, "bytes": 50, "pdp": "pdp-a"}}  # fmt: skip
        await store.append("decision", real, session_id="s-1", subject=ALICE)
        forged = {**real, "egress": {"rows": -1000000, "bytes": -(10**9), "pdp": "pdp-b"}}
        if kind == "postgres":
            await _append_as_a_database_writer(settings.dsn, "decision", forged, "s-2", ALICE)
        else:  # the file's writer appends as the PDP would
            await store.append("decision", forged, session_id="s-2", subject=ALICE)
        facts = await store.guard_facts(0, 0.0, 0.0, True)
    finally:
        await store.close()
    assert facts.egress and all(rows >= 0 and size >= 0 for *_, rows, size in facts.egress)
