"""A proxy session's decision cache keeps no per-scope index, and its entries no dict
(issue 27: 10,000 idle Postgres sessions within 250 MiB; bench_idle --trace showed
reuse.py's scope set, 216 bytes, and each entry's instance dict in every session holding
one cached verdict).

ReuseTable(scoped=False), the table of one session's own cache, answers every lookup, len
and forget exactly as the scoped table (the PDP's, one scope per session) does, over
random stores, lookups, forgets, expiries and evictions; it files nothing per scope.
"""

from __future__ import annotations

import random

from portcullis.config import ConnectionSettings
from portcullis.reuse import ReuseTable, _Entry
from portcullis.shape import shape, shaped
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.session import ProxyRuntime, ProxySession

TEXTS = [
    "SELECT 1",
    "SELECT a FROM t",
    "SELECT * FROM t WHERE id = 1",
    "SELECT * FROM t WHERE id = 2",
    "SELECT * FROM u WHERE name = 'x'",
    "SELECT * FROM u WHERE name = 'y'",
]


def _verdict(rng: random.Random) -> Verdict:
    kind = rng.choice([VerdictKind.ALLOW, VerdictKind.ALLOW, VerdictKind.DENY])
    return Verdict(
        kind, cache_ttl_seconds=rng.choice([0, 5, 60]), cache_key=rng.choice(["exact", "shape"])
    )


def _compared(seed: int) -> None:
    rng = random.Random(seed)
    now = [0.0]
    scoped: ReuseTable[int] = ReuseTable(max_entries=5, clock=lambda: now[0])
    unscoped: ReuseTable[int] = ReuseTable(max_entries=5, clock=lambda: now[0], scoped=False)
    for step in range(300):
        scope = rng.choice(["", "", "s1", "s2"])
        kind = rng.choice(["postgres.query", "http.request"])
        text = rng.choice(TEXTS)
        revision = rng.choice(["r1", "r1", "r2"])
        action = rng.random()
        if action < 0.45:
            verdict = _verdict(rng)
            for table in (scoped, unscoped):
                table.store(scope, kind, text, verdict, revision, step, shape)
        elif action < 0.9:
            got = unscoped.lookup(scope, kind, text, revision, shaped)
            assert got == scoped.lookup(scope, kind, text, revision, shaped), (seed, step)
        elif action < 0.95:
            assert unscoped.forget(scope) == scoped.forget(scope), (seed, step)
        else:
            now[0] += rng.choice([1.0, 10.0, 100.0])
        assert len(unscoped) == len(scoped)
        assert unscoped._scopes == {}
    assert (unscoped.hits, unscoped.misses) == (scoped.hits, scoped.misses)


def test_an_unscoped_table_answers_as_a_scoped_one() -> None:
    for seed in range(40):
        _compared(seed)


def test_a_proxy_sessions_cache_files_nothing_per_scope() -> None:
    connection = ConnectionSettings(
        name="memory", type="postgres", listen="127.0.0.1:0", upstream="127.0.0.1:5432"
    )
    runtime = ProxyRuntime(connection=connection, pdp=object(), provider=None)  # type: ignore[arg-type]
    session = ProxySession(runtime, "127.0.0.1:5000", "memory")
    reusable = Verdict(VerdictKind.ALLOW, cache_ttl_seconds=60, cache_key="shape")
    session.cache.store("", "postgres.query", TEXTS[2], reusable, "r1", "v", shaped)
    assert session.cache.lookup("", "postgres.query", TEXTS[3], "r1", shaped) == "v"
    assert session.cache._scopes == {}


def test_an_entry_has_no_dict() -> None:
    entry = _Entry("v", "r1", 1.0)
    assert not hasattr(entry, "__dict__")
    assert (entry.value, entry.revision, entry.expires_at) == ("v", "r1", 1.0)
