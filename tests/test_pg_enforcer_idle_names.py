"""An idle Postgres session's enforcer holds no sets of its own for the statement and
portal names it has made (issue 27: 10,000 idle sessions within 250 MiB; bench_idle
--trace: enforcer.py's two empty sets, 216 bytes each, in every session). Until a
session makes its first name every enforcer shares one empty set; the first name gives it
its own, and no other enforcer sees it.
"""

from __future__ import annotations

from proxies.postgres.enforcer import Enforcer
from proxies.postgres.tracker import ResponseTracker


def _enforcer() -> Enforcer:
    return Enforcer(
        ResponseTracker(), b"k" * 32, lambda *a: None, {}, lambda raw="": None, lambda: "", []
    )


def test_enforcers_share_one_empty_set_until_they_name_something() -> None:
    first, second = _enforcer(), _enforcer()
    assert first._statement_names is second._statement_names
    assert first._portal_names is second._portal_names
    assert not first._statement_names and not first._portal_names
    first._statement_named("s1")
    first._portal_named("")
    assert first._statement_names == {"s1"} and first._portal_names == {""}
    assert not second._statement_names and not second._portal_names
    assert second._statement_names is _enforcer()._statement_names
    second._portal_named("c1")
    assert second._portal_names == {"c1"} and first._portal_names == {""}
