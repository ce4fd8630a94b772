"""Probes of identity keying, sixth round (helper identity5): one person's subject spelt
another way is the same identity to every limit.

Attack (a person whose IdP keeps a username as typed, or any agent holding tokens of
both spellings): the PDP counted per identity on the token's subject as written, so
'RITA@example.com' (same issuer) was another identity than 'rita@example.com' to the
cap on open sessions (max_sessions_per_identity: a 17th session opened), to the
runaway-loop breaker (a paused agent went on under the other spelling, also after a
PDP restart read the pause back from the store), to the approval requests one identity
may have waiting (MAX_WAITING), and to the egress budgets. approvals4's reading of a
subject (NFKC, case folded, format characters dropped, an address's `+tag` dropped) is
now the one identity key every count is kept under (pdp.domain.identity.identity_key),
also for what another PDP reads back from the store (SQLite after a restart, a replica on
PostgreSQL); what is shown and recorded stays the subject as the token wrote it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pdp_harness import REGO, decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain.identity import identity_key
from pdp.store import open_store
from portcullis.v1 import pdp_pb2

RITA = "rita@example.com"
# the same person as the issuer writes her otherwise: case, a fullwidth letter, a +tag of
# her mailbox (a zero-width character inside reads the same too, but no such subject
# verifies: pdp.domain.identity refuses it)
VARIANTS = ("RITA@example.com", "\uff52ita@Example.COM", "rita+x@example.com")


def test_variants_of_one_subject_are_one_key():
    for variant in (*VARIANTS, "ri\u200bta@example.com"):
        assert identity_key(variant) == identity_key(RITA), variant
    assert identity_key("rita2@example.com") != identity_key(RITA)
    assert identity_key("bob@example.com") != identity_key(RITA)


async def test_the_session_cap_holds_for_the_subject_in_another_case(tmp_path):
    config = pdp_config(tmp_path)
    rita = token(config, RITA, ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        for _ in range(16):
            assert (await open_session(stub, rita)).session_id
        for variant in VARIANTS:
            other = await open_session(stub, token(config, variant, ("readonly",)))
            assert not other.session_id, variant
            assert other.decision.verdict == pdp_pb2.DENY
            assert "already holds 16 sessions" in " ".join(other.decision.reasons)
        # another person still opens one
        assert (await open_session(stub, token(config, "bob@example.com"))).session_id
        # what is recorded names each token's subject as written
        opens = await pdp.store.query(kind="session.open")
        assert {r.subject for r in opens} == {RITA, *VARIANTS, "bob@example.com"}


def _config(tmp: Path, store: str, request: pytest.FixtureRequest, **kwargs: Any) -> Any:
    if store == "postgres":
        dsn = request.getfixturevalue("pg_database")
        return pdp_config(tmp, store={"type": "postgres", "dsn": dsn}, **kwargs)
    return pdp_config(tmp, **kwargs)


@contextlib.asynccontextmanager
async def _pdps(config: Any, store: str, tmp: Path, **kwargs: Any) -> AsyncIterator[Any]:
    """Yields (stub of a PDP, opener of another PDP's stub): the other knows the first's
    counts only from the store (pdp.domain.guard_sync). On PostgreSQL it is a replica on
    the same store, started while the first runs; on SQLite the first restarted (the
    first stops as the other opens)."""
    stack = contextlib.AsyncExitStack()
    async with stack:
        pdp = await stack.enter_async_context(running_pdp(config))
        stub = await stack.enter_async_context(pdp_stub(pdp.address))

        @contextlib.asynccontextmanager
        async def another() -> AsyncIterator[Any]:
            other = config
            if store == "postgres":
                dsn = config.pdp.store.dsn
                other = pdp_config(tmp, store={"type": "postgres", "dsn": dsn}, **kwargs)
            else:
                await stack.aclose()
            async with running_pdp(other) as second, pdp_stub(second.address) as stub:
                yield stub

        yield stub, another


def _with_breaker(tmp: Path) -> Path:
    target = tmp / "rego"
    shutil.copytree(REGO, target)
    data = json.loads((target / "data.json").read_text())
    data["portcullis"]["breakers"] = {"readonly": {"denials_per_minute": 3, "pause_seconds": 600}}
    (target / "data.json").write_text(json.dumps(data))
    return target


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_a_paused_identity_stays_paused_under_another_spelling(tmp_path, store, request):
    policies = _with_breaker(tmp_path)
    config = _config(tmp_path, store, request, policies=policies)
    # the looping agent's issuer writes her in capitals; her other tokens do not
    upper = token(config, "RITA@example.com", ("readonly",))
    rita = token(config, RITA, ("readonly",))
    async with _pdps(config, store, tmp_path, policies=policies) as (stub, another):
        hers = (await open_session(stub, upper)).session_id
        for _ in range(4):  # a retry loop against a denial trips the breaker
            assert (await decide_sql(stub, hers, "DROP TABLE orders")).verdict == pdp_pb2.DENY
        held = await decide_sql(stub, hers, "SELECT id FROM orders")
        assert held.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert "runaway-loop breaker" in " ".join(held.reasons)
        other = (await open_session(stub, rita)).session_id
        again = await decide_sql(stub, other, "SELECT id FROM orders")
        assert again.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert "runaway-loop breaker" in " ".join(again.reasons)
        bob = (await open_session(stub, token(config, "bob@example.com"))).session_id
        assert (await decide_sql(stub, bob, "SELECT id FROM orders")).verdict in (
            pdp_pb2.ALLOW,
            pdp_pb2.MASK,
        )
        # another PDP reads the pause back from the store, recorded under the subject
        # the token wrote (pdp.domain.guard_sync)
        async with another() as stub:
            other = (await open_session(stub, rita)).session_id
            again = await decide_sql(stub, other, "SELECT id FROM orders")
            assert again.verdict == pdp_pb2.REQUIRE_APPROVAL
            assert "runaway-loop breaker" in " ".join(again.reasons)
    trips = await _records(config, "breaker.tripped")
    assert [r.subject for r in trips] == ["RITA@example.com"]


async def _records(config: Any, kind: str) -> list[Any]:
    store: Any = open_store(config.pdp.store, timeout=10)
    await store.start()
    try:
        return list(await store.query(kind=kind))
    finally:
        await store.close()


async def test_the_waiting_cap_holds_for_the_subject_in_another_case(tmp_path):
    from pdp.api.approval_rpc import MAX_WAITING

    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        hers = (await open_session(stub, token(config, RITA))).session_id
        for n in range(MAX_WAITING):
            asked = await decide_sql(stub, hers, f"INSERT INTO orders VALUES ({n})")
            assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        other = (await open_session(stub, token(config, "Rita@Example.com"))).session_id
        flood = await decide_sql(stub, other, "INSERT INTO orders VALUES (99)")
        assert flood.verdict == pdp_pb2.DENY and not flood.approval_id
        assert "waiting for a person" in flood.reasons[0]
        assert len(pdp.approvals.requests) == MAX_WAITING


async def _decide_reporting(stub, session_id: str, rows: int) -> pdp_pb2.Decision:
    """A reader's SELECT with the proxy's report of the rows the session took before it."""
    response = await stub.Decide(
        pdp_pb2.DecideRequest(
            session_id=session_id,
            command=pdp_pb2.Command(kind="postgres.query", raw="SELECT id FROM orders"),
            egress_rows=rows,
        )
    )
    return response.decision


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_the_hourly_budget_holds_for_the_subject_in_another_case(tmp_path, store, request):
    """readonly may take 1,000,000 rows an hour (200,000 a session): 'RITA@example.com'
    took 1,199,994 in six sessions. A session of rita@example.com had the whole hour
    again; now it is held, by this PDP and by another that reads the reports back."""
    config = _config(tmp_path, store, request)
    rita = token(config, RITA)
    async with _pdps(config, store, tmp_path) as (stub, another):
        for _ in range(6):
            hers = (await open_session(stub, token(config, "RITA@example.com"))).session_id
            assert (await _decide_reporting(stub, hers, 199_999)).verdict != pdp_pb2.DENY
        other = (await open_session(stub, rita)).session_id
        held = await decide_sql(stub, other, "SELECT id FROM orders")
        assert held.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert "egress budget exceeded" in " ".join(held.reasons)
        async with another() as stub:
            other = (await open_session(stub, rita)).session_id
            held = await decide_sql(stub, other, "SELECT id FROM orders")
            assert held.verdict == pdp_pb2.REQUIRE_APPROVAL
            assert "egress budget exceeded" in " ".join(held.reasons)
