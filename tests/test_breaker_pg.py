"""The runaway-loop breaker (issue 30) through the real Postgres proxy, PDP and OPA to the
machine's PostgreSQL with asyncpg: an agent that keeps hitting denials is paused (every
statement, even an allowed one, needs approval), approvers get the approval webhook's
notice naming the breaker, and another identity is not paused."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from pdp_harness import REGO, free_port
from pg_harness import running_gateway

from pdp.domain.breaker import Breaker
from portcullis.verdict import BreakerLimits, Verdict, VerdictKind


def policies_with_breaker(tmp: Path, breaker: dict) -> Path:
    """The shipped policies copied under `tmp`, with `breaker` as the readonly group's."""
    target = tmp / "rego"
    shutil.copytree(REGO, target)
    data = json.loads((target / "data.json").read_text())
    data["portcullis"]["breakers"] = {"readonly": breaker}
    (target / "data.json").write_text(json.dumps(data))
    return target


async def paused_by_denials(conn: asyncpg.Connection) -> None:
    """Four denials in a row (a retry loop) trip a 3-a-minute breaker: then even what the
    policy allows waits for a person."""
    for _ in range(4):  # a retry loop against a denial
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.execute("DROP TABLE orders")
        assert caught.value.sqlstate == "42501"
    # now even what the policy allows waits for a person
    with pytest.raises(asyncpg.PostgresError) as caught:
        await conn.fetch("SELECT id FROM orders")
    assert "approval" in str(caught.value)


async def test_an_agent_looping_on_denials_is_paused_and_approvers_are_told(tmp_path):
    notices: asyncio.Queue[dict] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await notices.put(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    breaker = {"denials_per_minute": 3, "pause_seconds": 600}
    try:
        async with running_gateway(
            tmp_path,
            policies=policies_with_breaker(tmp_path, breaker),
            approvals={"timeout_seconds": 1, "webhook": f"http://127.0.0.1:{port}/hook"},
        ) as gw:
            conn = await asyncpg.connect(gw.dsn(gw.token()))
            try:
                await paused_by_denials(conn)
            finally:
                await conn.close()
            notice = await asyncio.wait_for(notices.get(), 60)
            assert "runaway-loop breaker" in notice["text"]
            assert "4 denied commands in one minute (threshold 3)" in notice["text"]
            # another identity is not paused
            other = await asyncpg.connect(gw.dsn(gw.token(sub="bob@example.com")))
            try:
                assert await other.fetchval("SELECT count(*) FROM orders") == 2
            finally:
                await other.close()
    finally:
        await runner.cleanup()


def test_identical_shapes_and_rates_trip_with_their_own_reasons():
    now = [1000.0]
    told: list[str] = []
    breaker = Breaker(lambda s, c, why: told.append(why), clock=lambda: now[0])
    limits = BreakerLimits(statements_per_second=0, identical_per_minute=3, pause_seconds=30)
    allow = Verdict(VerdictKind.ALLOW, breaker=limits)
    for n in range(3):
        assert breaker.observe("a", "db", f"SELECT * FROM t WHERE id = {n}", allow) == ""
        now[0] += 1
    why = breaker.observe("a", "db", "SELECT * FROM t WHERE id = 99", allow)
    assert "4 commands of the same shape in one minute (threshold 3)" in why
    assert told == [why]
    # paused: every command says so, even another shape, until the pause ends
    assert breaker.observe("a", "db", "SELECT 1", allow) == why
    now[0] += 31
    assert breaker.observe("a", "db", "SELECT 1", allow) == ""
    rate = Breaker(clock=lambda: now[0])
    fast = Verdict(VerdictKind.ALLOW, breaker=BreakerLimits(statements_per_second=2))
    assert rate.observe("b", "db", "SELECT 1", fast) == ""
    assert rate.observe("b", "db", "SELECT 2", fast) == ""
    assert "3 commands in one second" in rate.observe("b", "db", "SELECT 3", fast)


def test_repeats_are_counted_per_shape_over_the_sliding_minute():
    """The per-shape counts the breaker keeps (not a walk over the minute's commands for
    every command) always equal the commands kept, as the minute slides and the cap
    (MAX_KEPT) drops the oldest."""
    import random
    from collections import Counter

    from pdp.domain import breaker as breaker_module

    rng = random.Random(30)
    now = [0.0]
    breaker = Breaker(clock=lambda: now[0])
    limits = BreakerLimits(identical_per_minute=10**6, pause_seconds=1)
    allow = Verdict(VerdictKind.ALLOW, breaker=limits)
    original = breaker_module.MAX_KEPT
    breaker_module.MAX_KEPT = 50
    try:
        for _ in range(3000):
            now[0] += rng.choice((0.001, 0.5, 3.0, 20.0))
            table = rng.choice("abcde")
            assert breaker.observe("a", "db", f"SELECT * FROM {table} WHERE id = 1", allow) == ""
            track = breaker._tracks[("a", "db")]
            assert track.shape_counts == Counter(s for _, s in track.shapes)
            assert len(track.shapes) <= 50
            assert all(t > now[0] - 60 for t, _ in track.shapes)
    finally:
        breaker_module.MAX_KEPT = original


def test_a_pause_recorded_elsewhere_holds_until_its_end():
    """pause(): what another PDP (or this one before a restart) recorded; a later end
    wins, an end already past does nothing."""
    now = [1000.0]
    breaker = Breaker(clock=lambda: now[0])
    allow = Verdict(VerdictKind.ALLOW, breaker=BreakerLimits(denials_per_minute=3))
    breaker.pause("a", "db", 900.0, "long over")
    assert breaker.observe("a", "db", "SELECT 1", allow) == ""
    breaker.pause("a", "db", 1100.0, "tripped at another replica")
    breaker.pause("a", "db", 1050.0, "an earlier end")
    assert breaker.observe("a", "db", "SELECT 1", allow) == "tripped at another replica"
    assert breaker.paused("b", "db") == ""
    assert breaker.take_trips() == []  # not begun here: not recorded again
    now[0] = 1100.0
    assert breaker.observe("a", "db", "SELECT 1", allow) == ""
