"""Decision reuse probe p1: a verdict the proxy reuses must not outlive what the PDP would
now answer for the same command.

Through the real Postgres proxy, PDP and OPA to the machine's PostgreSQL with asyncpg, as
a reader (the shipped `readonly` group, which has a runaway-loop breaker): the breaker
counts the commands the PDP decides and pauses the identity when a rate is crossed, after
which every command needs approval. A verdict answered from the proxy's decision cache
never reaches the PDP, so neither its count nor the pause may be skipped by it.

After a deny or a held command the proxy asks the PDP for the next command (so the
denials are judged with it and a pause reaches reused verdicts). The commands the proxy
answers from its cache under a breaker are reported with its next Decide (per verdict
reused: how many, and when), and the PDP's answer bounds how many it may answer before it
asks again, so a loop answered from the cache trips the breaker when it would have.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from pg_harness import running_gateway
from test_breaker_pg import paused_by_denials, policies_with_breaker
from test_budget_pg import policies_with_budget

from pdp.domain.breaker import Breaker
from portcullis.verdict import BreakerLimits, Verdict, VerdictKind


async def test_a_paused_reader_gets_no_reused_verdict(tmp_path: Path) -> None:
    """Attack: SELECT id FROM orders allowed (and kept by the proxy for its shape), then a
    loop of denials trips the breaker: the same SELECT must now need approval, not run
    from the cache."""
    breaker = {"denials_per_minute": 3, "pause_seconds": 600}
    async with running_gateway(tmp_path, policies=policies_with_breaker(tmp_path, breaker)) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), statement_cache_size=0)
        try:
            assert len(await conn.fetch("SELECT id FROM orders")) == 2
            await paused_by_denials(conn)
        finally:
            await conn.close()


LOOP = {
    "identical_per_minute": {"identical_per_minute": 5, "pause_seconds": 600},
    "statements_per_second": {"statements_per_second": 5, "pause_seconds": 600},
}


@pytest.mark.parametrize(
    ("rate", "cache"),
    [
        ("identical_per_minute", True),
        ("statements_per_second", True),
        ("identical_per_minute", False),
    ],
)
async def test_a_loop_answered_from_the_cache_still_trips_the_breaker(
    tmp_path: Path, rate: str, cache: bool
) -> None:
    """Attack: a runaway loop of one statement shape; after the first, the proxy answered
    each from its cache, so the PDP counted one and neither identical_per_minute nor
    statements_per_second ever tripped (all 12 ran). The proxy now reports the commands
    it answered with its next Decide, and asks again before a reuse could cross a
    threshold: the loop is held where the PDP holds it without a cache (each fetch is a
    Parse and a Bind, two commands: the third fetch is the sixth and seventh)."""
    options = {"decision_cache": cache}
    policies = policies_with_breaker(tmp_path, LOOP[rate])
    async with running_gateway(tmp_path, options=options, policies=policies) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), statement_cache_size=0)
        try:
            ran: list[int] = []
            for n in range(5):
                try:
                    await conn.fetch(f"SELECT id FROM orders WHERE id = {n}")
                    ran.append(n)
                except asyncpg.PostgresError as exc:
                    assert "approval" in str(exc) or "breaker" in str(exc)
            assert ran == [0, 1], ran
        finally:
            await conn.close()


def test_reused_commands_are_counted_when_they_ran() -> None:
    """The reused commands reported are spread over the time they ran, not piled on the
    Decide that reports them: a slow loop (one every 20 s, 3 a minute under a threshold of
    5) is never paused; a burst reported the same way is."""
    now = [1000.0]
    breaker = Breaker(clock=lambda: now[0])
    limits = BreakerLimits(identical_per_minute=5, pause_seconds=60)
    allowed = Verdict(VerdictKind.ALLOW, breaker=limits)
    raw = "SELECT id FROM orders WHERE id = 1"
    assert breaker.observe("ann", "db", raw, allowed) == ""
    assert breaker.reuses_left("ann", "db", limits) == 4
    for _ in range(10):  # four reused, one every 20 s, then one asked
        now[0] += 100.0
        breaker.reused("ann", "db", raw, 4, 80.0, 20.0)
        assert breaker.observe("ann", "db", raw, allowed) == ""
    now[0] += 1.0
    breaker.reused("ann", "db", raw, 4, 0.5, 0.1)
    # reported with a command of another shape: the reused shape is judged
    assert "same shape" in breaker.observe("ann", "db", "SELECT 1", allowed)


async def test_a_threshold_past_the_wire_field_still_answers(tmp_path: Path) -> None:
    """A breaker threshold larger than Decision.reuses_left holds (a uint32) bounds reuse
    by what it holds: the reader's commands are answered, not failed."""
    breaker = {"identical_per_minute": 2**40, "pause_seconds": 600}
    async with running_gateway(tmp_path, policies=policies_with_breaker(tmp_path, breaker)) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), statement_cache_size=0)
        try:
            for n in range(3):
                assert len(await conn.fetch(f"SELECT id FROM orders WHERE id > {n}")) >= 0
        finally:
            await conn.close()


ROWS = "SELECT g FROM generate_series(1, 3) AS g"


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
    async with running_gateway(tmp_path, policies=policies_with_budget(tmp_path, budget)) as gw:
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
