"""Usage.near/over/left spelled out limit by limit say what the list-of-pairs forms said:
the same answers for every budget and usage, limits unset (0), reached, past, and usage
that is negative or past UNLIMITED."""

from __future__ import annotations

import random

from pdp.domain.egress import NEAR_SHARE, UNLIMITED, Usage
from portcullis.verdict import EgressBudget


def _pairs(u: Usage, b: EgressBudget) -> list[tuple[str, int, int]]:
    return [
        ("rows per session", b.rows_per_session, u.session_rows),
        ("bytes per session", b.bytes_per_session, u.session_bytes),
        ("rows per hour", b.rows_per_hour, u.hour_rows),
        ("bytes per hour", b.bytes_per_hour, u.hour_bytes),
    ]


def reference(u: Usage, b: EgressBudget) -> tuple[bool, str, tuple[int, int]]:
    pairs = _pairs(u, b)
    near = any(lim and used >= lim * NEAR_SHARE for _, lim, used in pairs)
    passed = [f"{used} of {lim} {what} used" for what, lim, used in pairs if lim and used >= lim]
    over = f"{u.subject} on {u.connection}: {', '.join(passed)}" if passed else ""
    rows = [lim - used for w, lim, used in pairs if lim and w.startswith("rows")]
    size = [lim - used for w, lim, used in pairs if lim and w.startswith("bytes")]
    left = (max(0, min(rows, default=UNLIMITED)), max(0, min(size, default=UNLIMITED)))
    return near, over, left


def test_spelled_out_answers_equal_the_pairs_forms():
    rnd = random.Random(27)
    values = [0, 0, 1, 5, 79, 80, 99, 100, 101, 10**6, UNLIMITED, -1, -100]
    for _ in range(50_000):
        budget = EgressBudget(*(rnd.choice(values) for _ in range(4)))
        usage = Usage("s", "c", *(rnd.choice(values) for _ in range(4)))
        assert (usage.near(budget), usage.over(budget), usage.left(budget)) == reference(
            usage, budget
        )
