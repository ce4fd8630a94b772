"""Probe P16 of the Postgres masks (helper pgmask10) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

Analytics over columns nobody masks came back masked. A computed output is masked whole
unless lineage knows it keeps its columns' text as it was (the value detectors read stored
text only: `translate(note, '0123', 'abcd')` would carry a card past them), and lineage
knew only min/max/count/sum/avg, arithmetic and casts to text: `date_trunc('month',
created_at)`, `extract(year FROM created_at)`, `round(avg(total), 2)`, `created_at::date`,
`avg(total)::int`, `percentile_cont`, `stddev` and `AT TIME ZONE` over a timestamptz and a
numeric column were sent as NULL. Functions of pg_catalog computing a number, time or truth
value from numbers and times (none of them takes text: round(note) does not exist) now keep
(pdp/sql/lineage.py _NUMBER_FUNCTIONS, with a constant unit or zone), as do casts of one to
a number or time, and a column's whole value cast to a date or timestamp. What was masked
stays masked: text cut or measured on the way (`round(length(note))`), a unit taken from
a column (`date_part(name, ...)`), a sensitive column under any of them.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture(
    "ALTER TABLE orders ADD created_at timestamptz DEFAULT '2026-01-02 03:04:05+00';"
    " UPDATE orders SET created_at = '2026-03-04 05:06:07+00' WHERE id = 11"
)
reader = reader_fixture("mask-p16")


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        (
            "SELECT date_trunc('month', created_at), count(*), round(avg(total), 2),"
            " max(created_at)::date, extract(year FROM created_at)"
            " FROM orders GROUP BY 1, 5 ORDER BY 1",
            [
                [b"2026-01-01 00:00:00+00", b"1", b"99.50", b"2026-01-02", b"2026"],
                [b"2026-03-01 00:00:00+00", b"1", b"12.00", b"2026-03-04", b"2026"],
            ],
        ),
        (
            "SELECT created_at::date, avg(total)::int, percentile_cont(0.5) WITHIN GROUP"
            " (ORDER BY total), min(created_at AT TIME ZONE 'UTC')"
            " FROM orders GROUP BY 1 ORDER BY 1",
            [
                [b"2026-01-02", b"100", b"99.5", b"2026-01-02 03:04:05"],
                [b"2026-03-04", b"12", b"12", b"2026-03-04 05:06:07"],
            ],
        ),
        (
            "SELECT CAST(sum(total) AS numeric(10, 1)), date_part('month', min(created_at)),"
            " round(stddev(total), 2), floor(sum(total)) FROM orders",
            [[b"111.5", b"1", b"61.87", b"111"]],
        ),
        (
            "SELECT date_bin('1 day', created_at, '2026-01-01'), ceil(total) FROM orders"
            " ORDER BY 1",
            [[b"2026-01-02 00:00:00+00", b"100"], [b"2026-03-04 00:00:00+00", b"12"]],
        ),
    ],
)
def test_analytics_over_unmasked_columns_come_back(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows


@pytest.mark.parametrize(
    "sql",
    [
        # text measured or cut on the way, a unit read from a column, a sensitive column
        "SELECT round(length(note)) FROM customers",
        "SELECT floor(ascii(substr(note, 6, 1))) FROM customers",
        "SELECT date_trunc('day', now()) + (length(password) || ' days')::interval FROM customers",
        "SELECT date_part(name, now()) FROM customers WHERE id = 1",
        "SELECT count(*)::int FROM customers GROUP BY password",
        "SELECT round(avg(length(ssn))) FROM customers",
        "SELECT substr(note, 1, 10)::date FROM customers",
    ],
)
def test_what_reaches_masked_text_stays_masked(reader, sql) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    if not answer.errors:
        assert answer.rows and all(v in (None, b"[REDACTED]") for r in answer.rows for v in r), (
            answer.rows
        )
