"""Probe P15 of the Postgres masks (helper pgmask10) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

The order of groups. GROUP BY and DISTINCT of a sensitive column run (an equality test),
and the server returns the groups in the order of the grouped values when it sorts them
(always when one of the grouped values cannot be hashed: a constant `B'1'::varbit` beside
the column), else in the order of their hashes. Any output telling the groups apart then
answers how the hidden values compare:

    SELECT min(id) FROM customers GROUP BY password, B'1'::varbit

returned 3, 1, 2, 4: the ids in their passwords' order ('aaa' < 'hunter2-ada' < ...), and
`SELECT DISTINCT ssn, id, B'1'::varbit` the same with the ssn masked beside it. Lineage now
makes every output of a grouping SELECT carry what it was grouped by (pdp/sql/lineage.py
Lineage.grouped_outputs): a computed one (min(id), count(*), a window function over the
groups) is masked whole where that is masked, a stored column shown beside a sensitive
grouped value it is not (`SELECT DISTINCT id, ssn`) is a `sequence` of that value, refused
(postgres_lineage.rego). A SELECT whose ORDER BY names every output (and no window function) returns
its rows in their own order, so `count(*) ... GROUP BY password ORDER BY 1` still counts.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

# two more customers, whose passwords sort before and after Ada's and Bob's
arena = arena_fixture(
    "INSERT INTO customers VALUES"
    " (3, 'Cy', 'cy@example.net', '012-34-5678', 'x', 'aaa'),"
    " (4, 'Di', 'di@example.net', '999-99-9999', 'y', 'zzz')"
)
reader = reader_fixture("mask-p15")


# each with the output position of the ids its rows tell apart
ORDERED_GROUPS = [
    ("SELECT min(id) FROM customers GROUP BY password, B'1'::varbit", 0),
    ("SELECT min(id), count(*) FROM customers GROUP BY ssn, B'1'::varbit", 0),
    ("SELECT max(name) FROM customers GROUP BY password, B'1'::varbit", 0),
    ("SELECT DISTINCT ssn, id, B'1'::varbit FROM customers", 1),
    ("SELECT DISTINCT id, password, B'1'::varbit FROM customers", 0),
    ("SELECT name, count(*) FROM customers GROUP BY name, password, B'1'::varbit", 0),
    (
        "SELECT row_number() OVER (), min(id) FROM customers GROUP BY password, B'1'::varbit"
        " ORDER BY 2, 1",
        0,
    ),
    (
        "SELECT array_agg(m) FROM (SELECT min(id) m FROM customers"
        " GROUP BY password, B'1'::varbit) s",
        0,
    ),
    ("SELECT m FROM (SELECT min(id) m FROM customers GROUP BY ssn, B'1'::varbit) s", 0),
    ("WITH g AS (SELECT min(id) m FROM customers GROUP BY ssn, B'1'::varbit) SELECT m FROM g", 0),
    (
        "SELECT id FROM customers WHERE id IN"
        " (SELECT min(id) FROM customers GROUP BY password, B'1'::varbit LIMIT 1)",
        0,
    ),
    ("SELECT (SELECT min(id) FROM customers GROUP BY password, B'1'::varbit LIMIT 1)", 0),
    ("SELECT min(id) FROM customers GROUP BY ROLLUP (password, B'1'::varbit)", 0),
    ("SELECT min(id) FROM customers GROUP BY GROUPING SETS ((password, B'1'::varbit))", 0),
]

NAMES = {b"Ada": b"1", b"Bob": b"2", b"Cy": b"3", b"Di": b"4"}


def _told(rows: list[list[bytes | None]], position: int) -> bytes:
    """What the rows' values at position say of which rows came first, as ids in order."""
    said = b""
    for row in rows:
        value = row[position] if position < len(row) else None
        said += NAMES.get(value or b"", value or b"")
    return said


@pytest.mark.parametrize(("sql", "position"), ORDERED_GROUPS)
def test_the_order_of_groups_of_a_masked_column_is_not_shown(reader, sql, position) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    if answer.errors:
        assert "denied by policy" in answer.errors[0], answer.errors
        return
    told = bytes(c for c in _told(answer.rows, position) if chr(c).isdigit())
    # the passwords' and ssns' order (3, 1, 2, 4), or its first steps (a LIMIT 1's 3)
    assert b"312" not in told and told != b"3", answer.rows


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        # counted groups whose own order is asked for, and a masked column's distinct values
        ("SELECT count(*) FROM customers GROUP BY password ORDER BY 1", [[b"1"]] * 4),
        (
            "SELECT min(id) FROM customers GROUP BY password ORDER BY 1",
            [[b"1"], [b"2"], [b"3"], [b"4"]],
        ),
        ("SELECT DISTINCT password FROM customers", [[b"[REDACTED]"]] * 4),
        ("SELECT count(*) FROM (SELECT DISTINCT ssn FROM customers) s", [[b"4"]]),
        # ordinary analytics over columns that are not masked
        (
            "SELECT customer_id, count(*) FROM orders GROUP BY customer_id ORDER BY 1",
            [[b"1", b"1"], [b"2", b"1"]],
        ),
        (
            "SELECT name, count(*) FROM customers GROUP BY name ORDER BY name",
            [[b"Ada", b"1"], [b"Bob", b"1"], [b"Cy", b"1"], [b"Di", b"1"]],
        ),
        (
            "SELECT customer_id, sum(total) FROM orders GROUP BY customer_id ORDER BY 1",
            [[b"1", b"99.50"], [b"2", b"12.00"]],
        ),
        ("SELECT DISTINCT customer_id FROM orders ORDER BY 1", [[b"1"], [b"2"]]),
    ],
)
def test_groups_still_answer_what_they_may(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert sorted(answer.rows, key=repr) == sorted(rows, key=repr)
