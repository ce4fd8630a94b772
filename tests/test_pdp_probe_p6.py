"""Attacks on the PDP's guards and approvals (sixth probe).

Each test drives a real PDP over gRPC (tests/pdp_harness.py) with the embedded OPA
evaluator and its real audit store (SQLite, and PostgreSQL where the store matters).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

import aiohttp
import asyncpg
import grpc
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

from pdp.domain.identity import DevIssuer
from portcullis.config import ConfigError, parse_config
from portcullis.v1 import pdp_pb2

ALICE = "alice@example.com"
INSERT = (
    "INSERT INTO audit_records (seq, id, kind, time_us, session_id, subject, body,"
    " prev_hash, hash) VALUES ({})"
)


def _store(backend: str, request: pytest.FixtureRequest, tmp_path) -> dict[str, Any]:
    if backend == "sqlite":
        return {"type": "sqlite", "path": str(tmp_path / "audit.db")}
    return {"type": "postgres", "dsn": request.getfixturevalue("pg_database")}


async def _insert(store: dict[str, Any], id: str, kind: str, subject: str, body: Any) -> None:
    """A well-chained record appended with INSERT access alone (no key: no record MAC)."""
    values = [
        id,
        kind,
        int(time.time() * 1e6),
        "",
        subject,
        json.dumps(body, sort_keys=True, separators=(",", ":")),
    ]
    if store["type"] == "sqlite":
        db = sqlite3.connect(store["path"])
        try:
            seq, prev = db.execute(
                "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            db.execute(INSERT.format(", ".join("?" * 9)), [seq + 1, *values, prev, "0" * 64])
            db.commit()
        finally:
            db.close()
        return
    conn = await asyncpg.connect(store["dsn"])
    try:
        seq, prev = await conn.fetchrow(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
        )
        marks = ", ".join(f"${n}" for n in range(1, 10))
        await conn.execute(INSERT.format(marks), seq + 1, *values, prev, "0" * 64)
    finally:
        await conn.close()


async def _reads_freely(stub, alice: str) -> None:
    opened = await open_session(stub, alice)
    decided = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
    assert decided.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), list(decided.reasons)
    assert not any("rows per hour" in r for r in decided.reasons), list(decided.reasons)


# -- guards: what another PDP reported is counted only when a PDP wrote it ------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_egress_report_someone_else_inserted_counts_against_no_budget(
    tmp_path, request, backend
):
    """Attack (INSERT access to the audit store, no key): a decision record whose body
    holds {"egress": {"rows": 10^10, "pdp": "x"}, "connection": "orders-db"} under alice,
    as if another replica had counted her rows. GuardSync summed every report it read
    back: alice's budget counted exhausted for the hour and her every read waited for
    approval, at every PDP, at every restart within the hour. Now a report counts only
    when a valid record MAC covers its record: both the read of what is new (a PDP
    running) and the first read, by time (a PDP starting) leave it out."""
    store = _store(backend, request, tmp_path)
    config = pdp_config(tmp_path, store=store)
    alice = token(config, ALICE, ("readonly",))
    forged = {"connection": "orders-db", "egress": {"rows": 10**10, "bytes": 1, "pdp": "x"}}
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        await pdp.service.guard_sync.settle()
        await _reads_freely(stub, alice)
        await _insert(store, "x-egress-1", "decision", ALICE, forged)
        await asyncio.sleep(2.5)  # past WAIT_SECONDS: the next decision waits for a read
        await _reads_freely(stub, alice)
        assert "x-egress-1" not in pdp.service.guard_sync.problem()
    await _insert(store, "x-egress-2", "decision", ALICE, forged)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        await pdp.service.guard_sync.settle()
        assert pdp.service.guard_sync.problem() == ""
        await _reads_freely(stub, alice)


# -- approvals: a token a proxy was given approves nothing ----------------------------------

APPROVALS = "portcullis-approvals"


async def test_a_session_token_a_proxy_saw_cannot_approve(tmp_path):
    """Attack (a compromised proxy): every client gives a proxy its token (the Postgres
    password, the HTTP bearer, the SSH password) for the audience the approval APIs also
    accepted, so the token of an approver who ever connected through the proxy, replayed
    to POST /v1/approvals/{id}/approve or ResolveApproval, approved requests. With
    `approvals.audience` set, the approval APIs accept only tokens issued for it (never
    one also issued for identity.audience), which OpenSession refuses: no proxy holds one.
    The dev flow (`portcullis token --audience`, then `approvals approve --token`) works."""
    port = free_port()
    raw = pdp_raw(tmp_path, approvals={"audience": APPROVALS})
    raw["pdp"]["http_listen"] = f"127.0.0.1:{port}"
    config = parse_config(raw, base_dir=tmp_path)
    alice = token(config, ALICE, ("readonly",))
    sam_session = token(config, "sam@example.com", ("security",))
    issuer = DevIssuer(config.identity)
    both = issuer.issue("sam@example.com", ["security"], 600, [APPROVALS, "portcullis"])  # type: ignore[arg-type]
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(raw))
    issued = portcullis("-c", str(path), "token", "--sub", "sam@example.com",
                        "--groups", "security", "--audience", APPROVALS)  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    sam_approver = issued.stdout.strip()
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        asked = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (1)")
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        url = f"http://127.0.0.1:{port}/v1/approvals/{asked.approval_id}/approve"
        async with aiohttp.ClientSession() as http:
            for replayed in (sam_session, both):
                headers = {"Authorization": f"Bearer {replayed}"}
                async with http.post(url, json={"reason": "x"}, headers=headers) as answer:
                    assert answer.status == 401
                    assert "approvals.audience" in (await answer.json())["detail"]
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ResolveApproval(
                        pdp_pb2.ResolveApprovalRequest(
                            token=replayed, approval_id=asked.approval_id, approve=True
                        )
                    )
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "approvals.audience" in (refused.value.details() or "")
            # the approver's token opens no session: no proxy is ever given one
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await open_session(stub, sam_approver)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert pdp.approvals.requests[asked.approval_id].state == "pending"
        cli = tmp_path / "approver.yaml"
        cli.write_text(yaml.safe_dump({**raw, "pdp": {**raw["pdp"], "listen": pdp.address}}))
        approved = await asyncio.to_thread(
            portcullis, "-c", str(cli), "approvals", "approve", asked.approval_id,
            "--reason", "ticket 42", "--token", sam_approver,
        )  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        assert pdp.approvals.requests[asked.approval_id].state == "approved"


def test_the_approvals_audience_must_differ_from_the_sessions(tmp_path):
    raw = pdp_raw(tmp_path, approvals={"audience": "portcullis"})
    with pytest.raises(ConfigError, match=r"approvals\.audience"):
        parse_config(raw, base_dir=tmp_path)
