"""A verdict the driver finds in the decision cache is looked up once (issue 27).

EnforcerDriver._decide looks the command up in the session's cache first, to know whether
the catalogue must be asked alongside a PDP decision (e0454ff); it then had the session
decide, which looked it up again. A lookup that finds a verdict counts a reuse (the
session's cache_hits, the proxy's metric) and, under the runaway-loop breaker, spends one
of the reuses the PDP allowed (reuses_left): a Bind of a prepared statement asked again
(the policy or the catalogue facts changed since it was allowed: Enforcer._bind_asking's
Decide, made without the enforcer's own lookup) counted two reuses and spent two. Now it
is looked up once: one reuse counted and spent, the same verdict, no PDP and no catalogue
asked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from portcullis.config import ConnectionSettings
from portcullis.reuse import reuse_key
from portcullis.shape import shaped
from portcullis.verdict import Verdict, VerdictKind
from proxies.postgres.commands import Decide
from proxies.postgres.driver import EnforcerDriver
from proxies.runtime.pdp_client import ReuseTally, Ruling, SessionGrant
from proxies.runtime.session import ProxyRuntime, ProxySession

SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = {};"
ATTRIBUTES = {"protocol": "parse"}


class _PDP:
    """A PDP that must not be asked: every verdict here comes from the cache."""

    reachable = True
    answered = True
    revision = "rev-1"
    recording_failure = ""

    async def decide(self, *args: Any, **kwargs: Any) -> Ruling:
        raise AssertionError("the PDP was asked for a verdict the cache holds")


class _Enforcer:
    unsure = False


def _session(reuses_left: int | None) -> tuple[ProxySession, Ruling]:
    connection = ConnectionSettings(
        name="reuse", type="postgres", listen="127.0.0.1:0", upstream="127.0.0.1:5432"
    )
    runtime = ProxyRuntime(connection=connection, pdp=_PDP(), provider=None)  # type: ignore[arg-type]
    runtime.cache_enabled = True
    session = ProxySession(runtime, "127.0.0.1:5000", "reuse")
    allowed = Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")
    session.grant = SessionGrant("s-1", allowed, "reuse@example.com", ("dba",), "ref")
    reusable = Verdict(VerdictKind.ALLOW, cache_ttl_seconds=3600, cache_key="shape")
    # as ProxySession.decide keeps a verdict: with the tally of its reuses
    cached = Ruling(reusable, "d-2", "rev-1", cached=True, tally=ReuseTally(SQL.format(1)))
    key = reuse_key("postgres.query", ATTRIBUTES)
    session.cache.store("", key, SQL.format(1), reusable, "rev-1", cached, shaped)
    session.reuses_left = reuses_left
    return session, cached


def _decided(session: ProxySession, may_wait: bool) -> tuple[Ruling, int]:
    asked: list[int] = []

    async def fresh_facts() -> bool | None:
        asked.append(1)
        return False

    async def nothing(*_: Any) -> None:
        return None

    driver = EnforcerDriver(
        _Enforcer(),  # type: ignore[arg-type]
        session,
        lambda data: None,
        nothing,
        nothing,  # type: ignore[arg-type]
        nothing,  # type: ignore[arg-type]
        None,
        fresh_facts,
    )
    request = Decide("postgres.query", SQL.format(7), dict(ATTRIBUTES), shaped, may_wait)
    ruling = asyncio.run(driver._decide(request))
    return ruling, len(asked)


def test_a_cached_verdict_is_counted_once() -> None:
    for may_wait in (True, False):
        session, cached = _session(None)
        ruling, asked = _decided(session, may_wait)
        assert ruling is cached
        assert asked == 0  # the catalogue is not asked for a reused verdict
        assert session.counters["cache_hits"] == 1
        assert session.runtime.metrics.cache_hits == 1


def test_a_cached_verdict_spends_one_reuse_of_the_breakers_bound() -> None:
    session, cached = _session(5)
    ruling, _ = _decided(session, True)
    assert ruling is cached
    assert session.reuses_left == 4
    assert cached.tally is not None and cached.tally.count == 1
