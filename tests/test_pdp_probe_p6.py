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

import asyncpg
import pytest
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

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
