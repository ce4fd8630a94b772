"""An uncached statement (the decision cache off: every statement decided by the PDP) asks
the session whether a verdict needs no round trip, and the recorder whether the spool has
room for it, no more often than its path needs: the enforcer's steps do not ask again what
its now() just asked (issue 27: four lookups and four admits a statement before)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg
from pg_harness import running_gateway

from proxies.runtime.recorder import SessionRecorder
from proxies.runtime.session import ProxySession

DBA = ("dba", "pii-readers")


def _counting(monkeypatch: Any) -> Counter[str]:
    """The real ruling_now() and admit(), each call counted."""
    calls: Counter[str] = Counter()
    ruling_now, admit = ProxySession.ruling_now, SessionRecorder.admit

    def counted_ruling_now(self: ProxySession, *args: Any, **kwargs: Any) -> Any:
        calls["ruling_now"] += 1
        return ruling_now(self, *args, **kwargs)

    def counted_admit(self: SessionRecorder, command_chars: int) -> bool:
        calls["admit"] += 1
        return admit(self, command_chars)

    monkeypatch.setattr(ProxySession, "ruling_now", counted_ruling_now)
    monkeypatch.setattr(SessionRecorder, "admit", counted_admit)
    return calls


async def test_an_uncached_statement_is_looked_up_once_per_step_that_needs_it(
    tmp_path, monkeypatch
):
    calls = _counting(monkeypatch)
    async with running_gateway(tmp_path, options={"decision_cache": False}) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        try:
            await conn.execute("SELECT 1")  # the session settled
            decided = gw.pdp.decider.stats.total
            calls.clear()
            for i in range(4):  # the simple protocol: one Query each
                await conn.execute(f"SELECT * FROM orders WHERE id = {i}")
            simple = dict(calls)
            assert gw.pdp.decider.stats.total - decided == 4
            decided = gw.pdp.decider.stats.total
            calls.clear()
            for i in range(4):  # the extended protocol: Parse, Bind, Execute, Sync
                await conn.fetch(f"SELECT * FROM orders WHERE id = $1 AND {i} = {i}", i)
            prepared = dict(calls)
            assert gw.pdp.decider.stats.total - decided == 4
        finally:
            await conn.close()
    # per statement: now()'s lookup and the Decide's before the PDP is asked (the driver's,
    # which decide() does not repeat); a prepared run's Execute also asks the recorder
    # right before it is forwarded
    assert simple == {"ruling_now": 4 * 2, "admit": 4 * 2}
    assert prepared == {"ruling_now": 4 * 2, "admit": 4 * 3}
