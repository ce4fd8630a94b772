"""Probe P18 of the Postgres masks (helper pgmask10) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

The order of joined rows. A join on a sensitive column (an equality test, allowed) returns
the rows as its plan leaves them: a merge join in the order of the compared values, a hash
join (and IN or EXISTS made one) in the order of their hashes. With the grouped values
sorted on one side (`GROUP BY ssn, B'1'::varbit`, which cannot be hashed) and the other
side made small (LIMIT 10, so it is the one hashed or merged against):

    SELECT c.id FROM (SELECT ssn FROM customers GROUP BY ssn, B'1'::varbit) s
      JOIN (SELECT id, ssn FROM customers LIMIT 10) c ON c.ssn = s.ssn

returned 3, 1, 2, 4, the ids in their ssns' order; a correlated EXISTS or a DISTINCT
sub-query returned them in the order of the ssns' hashes (a test of guessed values run
offline). Lineage now gives the compared columns (column to column: a join's, IN (SELECT
...)'s, a correlated sub-query's) to every SELECT around them as it gives what a SELECT
groups by (test_pg_mask_probe_p15.py), where no grouping reorders the rows: a stored
column shown beside them is a `sequence`, refused for a sensitive column
(postgres_lineage.rego), a computed one carries them. A statement whose ORDER BY names
every other output, one aggregating into one row, a join on columns nobody masks, and an
equality with a constant run as before.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture(
    "INSERT INTO customers VALUES"
    " (3, 'Cy', 'cy@example.net', '012-34-5678', 'x', 'aaa'),"
    " (4, 'Di', 'di@example.net', '999-99-9999', 'y', 'zzz')"
)
reader = reader_fixture("mask-p18")

SMALL = "(SELECT id, ssn, password, email FROM customers LIMIT 10)"

JOINED_IN_THEIR_ORDER = [
    f"SELECT c.id FROM (SELECT ssn FROM customers GROUP BY ssn, B'1'::varbit) s JOIN {SMALL} c"
    " ON c.ssn = s.ssn",
    f"SELECT c.id FROM (SELECT password FROM customers GROUP BY password, B'1'::varbit) s"
    f" JOIN {SMALL} c USING (password)",
    f"SELECT c.id FROM (SELECT DISTINCT ssn FROM customers) s, {SMALL} c WHERE c.ssn = s.ssn",
    f"SELECT c.id FROM {SMALL} c WHERE EXISTS (SELECT 1 FROM customers d WHERE d.ssn = c.ssn)",
    f"SELECT c.id FROM {SMALL} c WHERE c.email IN (SELECT email FROM customers)",
    f"SELECT upper(c.email), c.id + 0 FROM {SMALL} c JOIN customers d ON c.ssn = d.ssn",
    f"SELECT x.id FROM (SELECT c.id FROM {SMALL} c JOIN customers d ON c.ssn = d.ssn) x",
    f"SELECT c.id FROM {SMALL} c JOIN customers d ON c.ssn = d.ssn ORDER BY c.ssn IS NULL",
]


@pytest.mark.parametrize("sql", JOINED_IN_THEIR_ORDER)
def test_rows_joined_on_a_masked_column_do_not_show_its_order(reader, sql) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    if answer.errors:
        assert "denied by policy" in answer.errors[0], answer.errors
        return
    told = [v for row in answer.rows for v in row if v is not None and v.isdigit()]
    assert not told, answer.rows


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        (
            f"SELECT c.id FROM (SELECT DISTINCT ssn FROM customers) s JOIN {SMALL} c"
            " ON c.ssn = s.ssn ORDER BY 1",
            [[b"1"], [b"2"], [b"3"], [b"4"]],
        ),
        (
            "SELECT c.id, c.email FROM customers c JOIN customers d ON c.email = d.email"
            " ORDER BY 1",
            [
                [b"1", b"[REDACTED]"],
                [b"2", b"[REDACTED]"],
                [b"3", b"[REDACTED]"],
                [b"4", b"[REDACTED]"],
            ],
        ),
        ("SELECT count(*) FROM customers c JOIN customers d USING (ssn)", [[b"4"]]),
        (
            "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY 1",
            [[b"10", b"Ada"], [b"11", b"Bob"]],
        ),
        ("SELECT id FROM customers WHERE email = 'ada@example.com'", [[b"1"]]),
        (
            "SELECT c.id FROM customers c JOIN (VALUES ('aaa'), ('zzz')) v(p)"
            " ON c.password = v.p ORDER BY 1",
            [[b"3"], [b"4"]],
        ),
    ],
)
def test_joins_still_answer_what_they_may(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows
