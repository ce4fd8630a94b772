"""Decision reuse probe p1: a verdict the proxy reuses must not outlive what the PDP would
now answer for the same command.

Through the real Postgres proxy, PDP and OPA to the machine's PostgreSQL with asyncpg, as
a reader (the shipped `readonly` group, which has a runaway-loop breaker): the breaker
counts the commands the PDP decides and pauses the identity when a rate is crossed, after
which every command needs approval. A verdict answered from the proxy's decision cache
never reaches the PDP, so neither its count nor the pause may be skipped by it.

After a deny or a held command the proxy asks the PDP for the next command (so the
denials are judged with it and a pause reaches reused verdicts). The breaker's rates are
still OPEN (strict xfail): the PDP sees no reused command, so a loop answered from the
cache is never counted. Answering no verdict under a breaker from the proxy's cache would
close it but end reuse for every reader of the shipped data (test_pg_prepared_rewrites,
test_metrics_proxy and test_http_proxy's reuse cases rely on it); the fix wanted is the
proxy reporting its reused commands with the next Decide (as it reports egress) and
asking again after a bounded number of reuses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import asyncpg
import pytest
from pdp_harness import REGO
from pg_harness import running_gateway


def _policies(tmp: Path, breaker: dict[str, int]) -> Path:
    target = tmp / "rego"
    shutil.copytree(REGO, target)
    data = json.loads((target / "data.json").read_text())
    data["portcullis"]["breakers"] = {"readonly": breaker}
    (target / "data.json").write_text(json.dumps(data))
    return target


OPEN = pytest.mark.xfail(
    strict=True, reason="open: the breaker neither counts nor pauses proxy-reused verdicts"
)


async def test_a_paused_reader_gets_no_reused_verdict(tmp_path: Path) -> None:
    """Attack: SELECT id FROM orders allowed (and kept by the proxy for its shape), then a
    loop of denials trips the breaker: the same SELECT must now need approval, not run
    from the cache."""
    breaker = {"denials_per_minute": 3, "pause_seconds": 600}
    async with running_gateway(tmp_path, policies=_policies(tmp_path, breaker)) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), statement_cache_size=0)
        try:
            assert len(await conn.fetch("SELECT id FROM orders")) == 2
            for _ in range(4):
                with pytest.raises(asyncpg.PostgresError) as caught:
                    await conn.execute("DROP TABLE orders")
                assert caught.value.sqlstate == "42501"
            with pytest.raises(asyncpg.PostgresError) as caught:
                await conn.fetch("SELECT id FROM orders")
            assert "approval" in str(caught.value)
        finally:
            await conn.close()


@OPEN
async def test_a_loop_answered_from_the_cache_still_trips_the_breaker(tmp_path: Path) -> None:
    """Attack: a runaway loop of one statement shape; after the first, the proxy answered
    each from its cache, so the PDP counted one and identical_per_minute never tripped."""
    breaker = {"identical_per_minute": 5, "pause_seconds": 600}
    async with running_gateway(tmp_path, policies=_policies(tmp_path, breaker)) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), statement_cache_size=0)
        try:
            refused = 0
            for n in range(12):
                try:
                    await conn.fetch(f"SELECT id FROM orders WHERE id = {n}")
                except asyncpg.PostgresError as exc:
                    assert "approval" in str(exc) or "breaker" in str(exc)
                    refused += 1
            assert refused >= 5
        finally:
            await conn.close()


ROWS = "SELECT g FROM generate_series(1, 3) AS g"


def _budget(tmp: Path, budget: dict[str, object]) -> Path:
    target = tmp / "rego"
    shutil.copytree(REGO, target)
    data = json.loads((target / "data.json").read_text())
    data["portcullis"]["budgets"] = {"readonly": budget}
    data["portcullis"]["breakers"] = {}
    (target / "data.json").write_text(json.dumps(data))
    return target


@pytest.mark.parametrize("protocol", ["extended", "simple"])
async def test_a_denial_does_not_lift_the_egress_budget_of_reused_verdicts(
    tmp_path: Path, protocol: str
) -> None:
    """Attack (reader under an egress budget, over: deny): the proxy reuses an allowed
    verdict while the rows taken since the PDP last answered stay within the allowance the
    PDP gave. A deny carries no allowance, and the proxy took that for no budget at all:
    after any denied statement (DROP TABLE, or the budget's own deny) every reused SELECT
    ran again, without limit."""
    budget = {"rows_per_hour": 10, "over": "deny"}
    async with running_gateway(tmp_path, policies=_budget(tmp_path, budget)) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), statement_cache_size=0)
        try:
            take = conn.execute if protocol == "simple" else conn.fetch
            await take(ROWS)  # 3 rows, the verdict kept for its shape
            with pytest.raises(asyncpg.PostgresError) as caught:
                await conn.execute("DROP TABLE orders")
            assert caught.value.sqlstate == "42501"
            taken = 0
            for _ in range(8):
                try:
                    await take(ROWS)
                    taken += 3
                except asyncpg.PostgresError as exc:
                    assert "egress budget exceeded" in str(exc)
            # 3 before, then at most the allowance left (7) and one statement past it
            assert taken <= 7 + 3, taken
        finally:
            await conn.close()
