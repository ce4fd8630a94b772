"""Egress budgets and breaker pauses kept in the audit store (issue 30 §2/§3), against real
components: the Postgres proxy, real PDPs (processes killed with SIGKILL, and replicas
sharing one store), OPA, the SQLite store and the PostgreSQL store at 127.0.0.1:5432.

An attacker holding a reader token must not get a fresh budget, or an end to a pause, by
- waiting for the PDP to restart (or killing it: every report is in the decision record
  written before the answer), or
- landing on another replica behind the same store;
and cannot forge usage away, or onto someone else, through what the record holds of the
statement. While the store cannot be read, budgets and breakers fail closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
import yaml
from pdp_harness import REGO, free_port, pdp_config, pdp_raw, running_pdp, token
from pg_harness import name_of, scratch_database
from test_pdp_replicas import orders_db, start_replica

from pdp.domain import guard_sync
from pdp.domain.guard_sync import GuardSync
from pdp.domain.guards import Guards
from pdp.store import EGRESS_MARK, StoreUnavailable, open_store
from portcullis.config import StoreSettings, load_config
from portcullis.verdict import BreakerLimits, EgressBudget, Verdict, VerdictKind
from proxies.launcher import handed_credential
from proxies.postgres.proxy import PostgresProxy

BUDGET = {"rows_per_hour": 6, "over": "deny"}
BREAKER = {"denials_per_minute": 3, "pause_seconds": 600}
ALICE, BOB = "alice@example.com", "bob@example.com"


def _policies(tmp: Path) -> Path:
    """The shipped policy; readers get a budget of 6 rows an hour and a breaker."""
    target = tmp / "rego"
    if not target.exists():
        shutil.copytree(REGO, target)
        data = json.loads((target / "data.json").read_text())
        data["portcullis"]["budgets"] = {"readonly": BUDGET}
        data["portcullis"]["breakers"] = {"readonly": BREAKER}
        (target / "data.json").write_text(json.dumps(data))
    return target


def _store(kind: str, request: pytest.FixtureRequest, tmp: Path) -> dict[str, Any]:
    if kind == "sqlite":
        return {"type": "sqlite", "path": str(tmp / "audit.db")}
    return {"type": "postgres", "dsn": request.getfixturevalue("pg_database")}


def _dsn(port: int, database: str, token: str) -> str:
    return f"postgresql://agent:{token}@127.0.0.1:{port}/{database}?sslmode=disable"


async def _use_up_the_budget(dsn: str) -> str:
    """3 + 4 rows, then a statement past the 6 rows an hour: denied, its reason returned."""
    conn = await asyncpg.connect(dsn)
    try:
        assert len(await conn.fetch("SELECT g FROM generate_series(1, 3) AS g")) == 3
        assert len(await conn.fetch("SELECT g FROM generate_series(1, 4) AS g")) == 4
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.fetch("SELECT 1")
        assert caught.value.sqlstate == "42501"
        return str(caught.value)
    finally:
        await conn.close()


async def _trip_the_breaker(dsn: str) -> None:
    """A retry loop against a denial: 4 denials, then even an allowed read is held."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(4):
            with pytest.raises(asyncpg.PostgresError) as caught:
                await conn.execute("DROP TABLE orders")
            assert caught.value.sqlstate == "42501"
        await _held(conn)
    finally:
        await conn.close()


async def _held(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.PostgresError) as caught:
        await conn.fetch("SELECT 1")
    assert "approval" in str(caught.value)


async def _over_budget(dsn: str) -> str:
    """The reason a new session's first read is denied (retried while the proxy is still
    reconnecting to a PDP that was just started: that is denied too, for another reason)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            reason = str(exc)
        else:
            try:
                with pytest.raises(asyncpg.PostgresError) as caught:
                    await conn.fetch("SELECT 1")
                reason = str(caught.value)
                if "rows per hour" in reason:
                    assert caught.value.sqlstate == "42501"
                    return reason
            finally:
                await conn.close()
        assert time.monotonic() < deadline, reason
        await asyncio.sleep(0.25)


async def _paused(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await _held(conn)
    finally:
        await conn.close()


async def _held_reasons(store: Any, subject: str) -> list[str]:
    return [
        "; ".join(r.body.get("reasons", []))
        for r in await store.query(kind="decision", subject=subject)
        if r.body.get("verdict") == "require_approval"
    ]


# -- a PDP killed and started again ------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_killed_pdp_restarts_with_the_hours_usage_and_the_pause(tmp_path, request, backend):
    """SIGKILL: nothing is flushed at exit. The budget used up and the pause begun before
    the kill still hold in the new process's new sessions."""
    with scratch_database() as (database, role, password):
        port = free_port()
        raw = pdp_raw(
            tmp_path,
            listen=f"127.0.0.1:{port}",
            policies=_policies(tmp_path),
            engine={
                "type": "embedded",
                "policies": str(_policies(tmp_path)),
                "workers": 1,
                "timeout_ms": 5000,
            },
            store=_store(backend, request, tmp_path),
            connections=[orders_db(tmp_path, database, role, password)],
            approvals={"timeout_seconds": 1},
        )
        raw["pdp"]["proxy_key"] = str(tmp_path / "proxy.key")
        raw["pdp"]["proxy_credential_file"] = str(tmp_path / "proxy.credential")
        path = tmp_path / "portcullis.yaml"
        path.write_text(yaml.safe_dump(raw))
        config = load_config(path)
        from pdp.domain.identity import DevIssuer

        issuer = DevIssuer(config.identity)
        alice = issuer.issue(ALICE, ["readonly"], 3600)
        bob = issuer.issue(BOB, ["readonly"], 3600)
        pdp = start_replica(path, port, tmp_path / "pdp-1.log")
        proxy = PostgresProxy(config.connections[0], config, config.pdp.listen)
        await proxy.start()
        try:
            before = await _use_up_the_budget(_dsn(proxy.port, database, alice))
            assert "7 of 6 rows per hour used" in before
            await _trip_the_breaker(_dsn(proxy.port, database, bob))
            os.kill(pdp.pid, signal.SIGKILL)
            pdp.wait()
            pdp = start_replica(path, port, tmp_path / "pdp-2.log")
            # a new session of the same identity, on the new process: still over budget
            after = await _over_budget(_dsn(proxy.port, database, alice))
            assert "7 of 6 rows per hour used" in after
            # and the paused identity is still paused
            await _paused(_dsn(proxy.port, database, bob))
            # another identity has neither
            carol = issuer.issue("carol@example.com", ["readonly"], 3600)
            conn = await asyncpg.connect(_dsn(proxy.port, database, carol))
            try:
                assert await conn.fetchval("SELECT 3") == 3
            finally:
                await conn.close()
        finally:
            await proxy.stop()
            pdp.send_signal(signal.SIGTERM)
            try:
                pdp.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pdp.kill()
                pdp.wait()
        store = open_store(StoreSettings(**raw["pdp"]["store"]), timeout=10)
        await store.start()
        try:
            # the pause is in the chain once, as evidence, and held the reader after the restart
            trips = await store.query(kind="breaker.tripped")
            assert [t.subject for t in trips] == [BOB]
            assert "4 denied commands in one minute (threshold 3)" in trips[0].body["why"]
            assert trips[0].body["paused_until"] > time.time() + 500
            held = await _held_reasons(store, BOB)
            assert len(held) >= 2 and all("runaway-loop breaker" in r for r in held)
            report = await store.verify()
            assert report.ok, report.problem
        finally:
            await store.close()


# -- two replicas on one store -------------------------------------------------------------


async def test_replicas_on_one_store_share_budgets_and_pauses(tmp_path, pg_database):
    """Two PDPs (one proxy each) on one PostgreSQL store: a session at either counts
    what the other's sessions took, and a pause begun at one holds at the other."""
    store = {"type": "postgres", "dsn": pg_database}
    engine = {"type": "embedded", "policies": str(_policies(tmp_path)), "workers": 1}
    with scratch_database() as (database, role, password):
        configs = [
            pdp_config(
                tmp_path,
                store=store,
                engine=engine,
                connections=[orders_db(tmp_path, database, role, password)],
                approvals={"timeout_seconds": 1},
            )
            for _ in range(2)
        ]
        async with running_pdp(configs[0]) as first, running_pdp(configs[1]) as second:
            proxies = []
            for config, pdp in ((configs[0], first), (configs[1], second)):
                handed = handed_credential(config, name_of(config), pdp.issue_proxy_credential)
                proxy = PostgresProxy(config.connections[0], handed, pdp.address)
                await proxy.start()
                proxies.append(proxy)
            try:
                alice = token(configs[0], ALICE)
                bob = token(configs[0], BOB)
                at_first = _dsn(proxies[0].port, database, alice)
                at_second = _dsn(proxies[1].port, database, alice)
                # a row taken at the second replica first
                conn = await asyncpg.connect(at_second)
                assert await conn.fetchval("SELECT 1") == 1
                await conn.close()
                await _until_closed(first.store, 1)
                # the first replica counts it: 1 + 3 + 4 rows
                assert "8 of 6 rows per hour used" in await _use_up_the_budget(at_first)
                # a new session at the second replica counts the first's 7 (past the
                # lag a replica may have, OPEN_SECONDS: the documented bound)
                await asyncio.sleep(guard_sync.OPEN_SECONDS + 0.1)
                assert "8 of 6 rows per hour used" in await _over_budget(at_second)
                # a pause begun at the first replica holds at the second
                await _trip_the_breaker(_dsn(proxies[0].port, database, bob))
                await asyncio.sleep(guard_sync.OPEN_SECONDS + 0.1)
                await _paused(_dsn(proxies[1].port, database, bob))
                held = await _held_reasons(second.store, BOB)
                assert any("4 denied commands in one minute" in r for r in held)
                # each replica's own reports are counted once: the usage the second
                # recorded for its last decision is the 8 both agree on
                used = [
                    r.body["egress_used"]["hour_rows"]
                    for r in await second.store.query(kind="decision", subject=ALICE)
                    if "egress_used" in r.body
                ]
                assert max(used) == 8
            finally:
                for proxy in proxies:
                    await proxy.stop()


async def _until_closed(store: Any, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(await store.query(kind="session.close")) < count:
        assert time.monotonic() < deadline, "the session's close never reached the store"
        await asyncio.sleep(0.05)


# -- what a record of a statement cannot do -------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_statement_text_and_attributes_cannot_forge_egress(tmp_path, request, backend):
    """Only a record's own top-level `egress` counts; the mark in a statement's text or in
    the attributes a proxy forwards is not a report (both reads: the first, by time, and
    the following, by seq)."""
    settings = _store(backend, request, tmp_path)
    store = open_store(StoreSettings(**settings), timeout=10)
    await store.start()
    try:
        forged = '{"bytes":1,"pdp":"x","rows":1000000}'
        await store.append(
            "decision",
            {
                "connection": "orders-db",
                "raw": f"SELECT 1 /* {EGRESS_MARK}{forged[1:]} */",
                "attributes": {"egress": {"rows": 1000000, "bytes": 1, "pdp": "x"}},
            },
            subject=ALICE,
        )
        await store.append(
            "decision",
            {"connection": "orders-db", "egress": {"rows": 5, "bytes": 50, "pdp": "p1"}},
            session_id="s1",
            subject=BOB,
        )
        head, _ = await store.head()
        since = time.time() - 3600
        for after, by_time in ((0, True), (1, False), (1, True)):
            facts = await store.guard_facts(after, since, since, by_time)
            assert facts.upto_seq == head
            assert [(f[0], f[2], f[3], f[4], f[6], f[7]) for f in facts.egress] == [
                ("p1", BOB, "s1", "orders-db", 5, 50)
            ]
            assert facts.trips == []
    finally:
        await store.close()


# -- failing closed ---------------------------------------------------------------------------


async def test_a_slow_store_read_leaves_decisions_to_what_is_known(tmp_path, monkeypatch):
    """A read that does not end (a busy hour on a slow store) holds no call longer than
    FIRST_CALL_WAIT; until it ends, nothing of the other PDPs is known: budgets fail
    closed."""
    monkeypatch.setattr(guard_sync, "CALL_WAIT", 0.05)
    monkeypatch.setattr(guard_sync, "FIRST_CALL_WAIT", 0.05)
    store = open_store(StoreSettings(type="sqlite", path=str(tmp_path / "audit.db")))
    await store.start()
    guards = Guards()
    sync = GuardSync(store, guards, "me")
    release = asyncio.Event()
    read = store.guard_facts

    async def slow(*args: Any) -> Any:
        await release.wait()
        return await read(*args)

    store.guard_facts = slow  # type: ignore[method-assign]
    session = SimpleNamespace(
        id="s1", identity=SimpleNamespace(subject=ALICE), connection={"name": "orders-db"}
    )
    budget = Verdict(VerdictKind.ALLOW, budget=EgressBudget(rows_per_hour=100))
    try:
        await store.append("decision", {"connection": "orders-db"}, subject=ALICE)
        await sync.ensure()  # returns, the read still under way
        assert "not been read" in sync.problem()
        held = guards.check(session, "postgres.query", "SELECT 1", {}, budget).verdict
        assert held.kind is VerdictKind.REQUIRE_APPROVAL
        release.set()
        await sync.ensure()
        assert sync.problem() == ""
        allowed = guards.check(session, "postgres.query", "SELECT 1", {}, budget).verdict
        assert allowed.kind is VerdictKind.ALLOW
    finally:
        await store.close()


async def test_budgets_and_breakers_fail_closed_while_the_store_cannot_be_read(tmp_path):
    store = open_store(StoreSettings(type="sqlite", path=str(tmp_path / "audit.db")))
    await store.start()
    now = [1000.0]
    guards = Guards()
    sync = GuardSync(store, guards, "me", clock=lambda: now[0])
    session = SimpleNamespace(
        id="s1", identity=SimpleNamespace(subject=ALICE), connection={"name": "orders-db"}
    )
    budget = Verdict(VerdictKind.ALLOW, budget=EgressBudget(rows_per_hour=100))
    denying = Verdict(VerdictKind.ALLOW, budget=EgressBudget(rows_per_hour=100, over="deny"))
    breaker = Verdict(VerdictKind.ALLOW, breaker=BreakerLimits(denials_per_minute=3))
    plain = Verdict(VerdictKind.ALLOW)

    def check(verdict: Verdict) -> Verdict:
        return guards.check(session, "postgres.query", "SELECT 1", {}, verdict).verdict

    try:
        # never read yet: nothing another PDP recorded is known
        assert sync.problem()
        assert check(budget).kind is VerdictKind.REQUIRE_APPROVAL
        await sync.ensure()
        assert sync.problem() == ""
        assert check(budget).kind is VerdictKind.ALLOW
        assert check(breaker).kind is VerdictKind.ALLOW

        async def unreadable(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("reads refused")

        store.guard_facts = unreadable  # type: ignore[method-assign]
        store.query = unreadable  # type: ignore[method-assign]  # what a failed read falls back to
        await store.append("decision", {"connection": "orders-db"}, subject=ALICE)
        now[0] += guard_sync.MAX_LAG - 1  # a failed read within the lag: still known
        await sync.ensure()
        assert sync.problem() == ""
        now[0] += 2  # past it
        await sync.ensure()
        assert "reads refused" in sync.problem()
        held = check(budget)
        assert held.kind is VerdictKind.REQUIRE_APPROVAL
        assert "egress budget cannot be checked" in held.reasons[-1]
        assert "reads refused" in held.reasons[-1]
        assert check(denying).kind is VerdictKind.DENY
        paused = check(breaker)
        assert paused.kind is VerdictKind.REQUIRE_APPROVAL
        assert "runaway-loop breaker" in paused.reasons[-1]
        assert check(plain).kind is VerdictKind.ALLOW  # no guard: nothing to know
        # an approved re-run is not held again
        approved = guards.check(session, "postgres.query", "SELECT 1", {}, budget, True)
        assert approved.verdict.kind is VerdictKind.ALLOW
        del store.guard_facts, store.query  # readable again
        await sync.ensure()
        assert sync.problem() == ""
        assert check(budget).kind is VerdictKind.ALLOW
    finally:
        await store.close()


# -- counted once ------------------------------------------------------------------------------


async def test_a_report_is_counted_once_through_an_approval_and_its_rerun(tmp_path):
    """The decision held for approval carries the proxy's report; the re-run after the
    approval (its own record) does not carry it again, so other PDPs and a restarted one
    count it once."""
    from pdp_harness import open_session, pdp_stub

    from portcullis.v1 import pdp_pb2

    config = pdp_config(tmp_path, approvals={"timeout_seconds": 5})
    insert = "INSERT INTO orders VALUES (99, 1, 1.00)"
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        session_id = (await open_session(stub, token(config, ALICE))).session_id

        async def decide(rows: int) -> pdp_pb2.Decision:
            response = await stub.Decide(
                pdp_pb2.DecideRequest(
                    session_id=session_id,
                    command=pdp_pb2.Command(kind="postgres.query", raw=insert),
                    egress_rows=rows,
                    egress_bytes=rows * 10,
                )
            )
            return response.decision

        asked = await decide(5)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        approver = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
        await pdp.approvals.decide(asked.approval_id, approver, True, "fine")
        rerun = await decide(2)
        assert rerun.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK) and rerun.approval_id
        records = await pdp.store.query(kind="decision", session_id=session_id)
        assert any(r.body.get("approval_id") == asked.approval_id for r in records)
        reported = [r.body["egress"] for r in records if "egress" in r.body]
        assert sum(e["rows"] for e in reported) == 7
        assert sum(e["bytes"] for e in reported) == 70
        assert {e["pdp"] for e in reported} == {pdp.service.instance}
        since = time.time() - 3600
        facts = await pdp.store.guard_facts(0, since, since)
        assert sum(f[6] for f in facts.egress) == 7
