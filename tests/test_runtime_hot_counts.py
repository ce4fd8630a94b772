"""A session's counts and the proxy's command metrics, as the hot path keeps them.

ProxySession counts the two things every statement moves (commands, cache_hits) in plain
ints and adds them into its counters whenever they are read (issue 27: a Counter's `+= 1`
cost a tenth of a reused statement's proxy work); record_statement counts the verdict in
ProxyMetrics without a call. Whatever the order of statements, reused verdicts, denials
and reads, the counters and metrics are what counting each one at once gives.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis.config import ConnectionSettings
from portcullis.shape import shaped
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.pdp_client import Ruling, SessionGrant
from proxies.runtime.session import ProxyRuntime, ProxySession

SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = {};"


class _PDP:
    reachable = True
    answered = True
    revision = "rev-1"
    recording_failure = ""


def _session() -> ProxySession:
    connection = ConnectionSettings(
        name="counts", type="postgres", listen="127.0.0.1:0", upstream="127.0.0.1:5432"
    )
    runtime = ProxyRuntime(connection=connection, pdp=_PDP(), provider=None)  # type: ignore[arg-type]
    runtime.cache_enabled = True
    session = ProxySession(runtime, "127.0.0.1:5000", "counts")
    allowed = Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")
    session.grant = SessionGrant("s-1", allowed, "counts@example.com", ("dba",), "ref")
    reusable = Verdict(VerdictKind.ALLOW, cache_ttl_seconds=3600, cache_key="shape")
    cached = Ruling(reusable, "d-2", "rev-1", cached=True)
    session.cache.store("", "postgres.query", SQL.format(1), reusable, "rev-1", cached, shaped)
    return session


_STEPS = st.lists(
    st.sampled_from(["reused", "unknown", "allowed", "masked", "denied", "read"]), max_size=40
)


@settings(max_examples=100, deadline=None)
@given(_STEPS)
def test_counters_and_metrics_are_what_counting_each_statement_gives(steps):
    async def run() -> None:
        session = _session()
        metrics = session.runtime.metrics
        expected: Counter[str] = Counter()
        verdicts: Counter[str] = Counter()
        rulings = {
            "allowed": Ruling(Verdict(VerdictKind.ALLOW), "d-3", "rev-1"),
            "masked": Ruling(Verdict(VerdictKind.MASK), "d-4", "rev-1"),
            "denied": Ruling(Verdict.deny("no"), "d-5", "rev-1"),
        }
        for n, step in enumerate(steps):
            if step == "reused":
                found = session.ruling_now("postgres.query", SQL.format(n + 2), shaped)
                assert found is not None and found.cached
                expected["cache_hits"] += 1
            elif step == "unknown":
                assert session.ruling_now("postgres.query", f"SELECT {n} + x", shaped) is None
            elif step == "read":
                assert +session.counters == +expected  # read at any time, as often as wanted
            else:
                ruling = rulings[step]
                session.record_statement(SQL.format(n), ruling, "SELECT 1", 1, "simple")
                expected["commands"] += 1
                verdicts[ruling.kind.wire] += 1
                if step == "denied":
                    expected["denied"] += 1
        assert +session.counters == +expected
        assert session.counters["commands"] == expected["commands"]  # read twice: no double
        assert metrics.cache_hits == expected["cache_hits"]
        assert {k: v for k, v in metrics.commands.items() if v} == dict(verdicts)

    asyncio.run(run())
