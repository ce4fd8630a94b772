"""Probe P11 of the Postgres masks (helper pgmask9) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

Rows in a masked column's order. ORDER BY password (a note's text, a card kept as money)
is refused as a question; a set operation and a join's comparison were judged equality
tests of the column (allowed while oracle.equality is). But the server carries UNION,
INTERSECT and EXCEPT out by sorting the rows on every column in turn (always, when one of
the columns cannot be hashed: a tsvector beside them), and a FULL JOIN by merging both
sides in the order of the columns it compares (always, when their type cannot be hashed:
money, bit, tsvector), and returns the rows in that order. A reader's constant beside the
stored values then lands where it sorts among them:

    SELECT id FROM (SELECT password, id, ''::tsvector FROM customers
                    UNION SELECT 'hunter2-b', 0, '') s

gave [1, 0, 2] (Ada's password < 'hunter2-b' < Bob's), [1, 2, 0] for 'hunter2-c': a binary
search of each masked value, a character at a time; so for the card in a note
('card 4111 1111 1111 1110' before it, '... 1112' after) and for one kept as money
(`FULL JOIN (VALUES (4111111111111110::money, 0), ...) v(m, n) ON w.m = v.m` placed
n = 0 before or after the card's row). pdp/sql/lineage.py now records each column a set
operation (but UNION ALL) compares, and each a FULL JOIN's condition compares, as an
ordering: refused as ORDER BY of it is. GROUP BY and DISTINCT of a column still run (their
sorted rows compare stored values among themselves, no reader's constant).
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, assert_refused, probe_client, reader_fixture

pytestmark = pytest.mark.integration

CARD = 4111111111111111
HELD = f"""
CREATE TABLE p11_wallet (k int, m money, b bit(8));
INSERT INTO p11_wallet VALUES (1, {CARD}, B'10110001'), (2, 5, B'00000001');
"""

arena = arena_fixture(HELD)
reader = reader_fixture("mask-p11")
client = probe_client("mask-p11")

TSV = "''::tsvector"

# each places a constant of the reader's among the masked values; {guess} is where it goes
SORTING = [
    # a set operation sorts its rows
    f"SELECT id FROM (SELECT password, id, {TSV} t FROM customers "
    f"UNION SELECT '{{guess}}', 0, {TSV}) s",
    f"SELECT id FROM (SELECT password, id, {TSV} t FROM customers "
    f"INTERSECT SELECT password, id, {TSV} FROM customers UNION SELECT '{{guess}}', 0, {TSV}) s",
    f"SELECT id FROM (SELECT password, id, {TSV} t FROM customers "
    f"EXCEPT SELECT '{{guess}}', 0, {TSV}) s",
    f"SELECT id FROM (SELECT password, id, {TSV} t FROM customers "
    f"EXCEPT ALL SELECT '{{guess}}', 0, {TSV}) s",
    # the free text the value detectors mask inside a note
    f"SELECT id FROM (SELECT note, id, {TSV} t FROM customers "
    f"UNION SELECT '{{guess}}', 0, {TSV}) s",
    # every column of a row: sorted on the first, then the next ...
    f"SELECT id FROM (SELECT *, {TSV} t FROM customers "
    f"UNION SELECT 1, 'Ada', 'x', 'x', 'x', '{{guess}}', {TSV}) s",
    # a CTE, a sub-query in a condition
    f"WITH u AS (SELECT password p, id, {TSV} t FROM customers UNION SELECT '{{guess}}', 0, {TSV})"
    " SELECT id FROM u",
    # a FULL JOIN is merged in the order of what it compares
    "SELECT c.id, v.n FROM customers c FULL JOIN (VALUES ('{guess}', 0, B'1'), ('~', -1, B'1'))"
    " v(p, n, b) ON c.password = v.p AND c.id::bit(1) = v.b",
    "SELECT c.id, v.n FROM customers c FULL JOIN (VALUES ('{guess}', 0), ('~', -1)) v(password, n)"
    " USING (password)",
]


@pytest.mark.parametrize("sql", SORTING)
def test_a_constant_sorted_among_the_masked_values_is_refused(reader, sql) -> None:
    because = "ordering (order)" if "SELECT *" in sql else "order use"  # (a whole row's)
    for guess in ("hunter2-b", "hunter2-c", "card 4111 1111 1111 1112"):
        assert_refused(reader, sql.format(guess=guess), because)


# a card kept as money: its type cannot be hashed, so the server has no plan but a merge
MONEY = [
    "SELECT w.k, v.n FROM p11_wallet w FULL JOIN (VALUES ({guess}::money, 0), (1::money, -1))"
    " v(m, n) ON w.m = v.m",
    "SELECT w.k, v.n FROM p11_wallet w FULL JOIN (VALUES ({guess}::money, 0), (1::money, -1))"
    " v(m, n) USING (m)",
    "SELECT k FROM (SELECT m, k FROM p11_wallet UNION SELECT {guess}::money, 0) s",
]


@pytest.mark.parametrize("sql", MONEY)
def test_a_constant_sorted_among_cards_kept_as_money_is_refused(reader, sql) -> None:
    for guess in (CARD - 1, CARD + 1):
        assert_refused(reader, sql.format(guess=guess), "order use")


def test_a_pii_reader_still_sorts(arena) -> None:
    c = client(arena, ("readonly", "pii-readers"))
    try:
        answer = c.query(SORTING[0].format(guess="hunter2-b"))
    finally:
        c.close()
    assert answer.rows == [[b"1"], [b"0"], [b"2"]], answer.messages


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        # comparing the stored values among themselves, or a column no one masks
        ("SELECT count(*) FROM (SELECT DISTINCT password FROM customers) s", [[b"2"]]),
        ("SELECT count(*) FROM customers GROUP BY password ORDER BY 1", [[b"1"], [b"1"]]),
        ("SELECT count(*) FROM (SELECT password FROM customers UNION ALL SELECT 'x') s", [[b"3"]]),
        ("SELECT name FROM customers UNION SELECT 'Ada' ORDER BY 1", [[b"Ada"], [b"Bob"]]),
        ("SELECT id FROM customers EXCEPT SELECT customer_id FROM orders ORDER BY 1", []),
        # equality of the column itself, where no unmatched reader's row is sorted in
        (
            "SELECT c.id FROM customers c LEFT JOIN (VALUES ('x')) v(p) ON c.password = v.p"
            " ORDER BY 1",
            [[b"1"], [b"2"]],
        ),
        (
            "SELECT count(*) FROM customers c JOIN customers d ON c.password = d.password",
            [[b"2"]],
        ),
        ("SELECT count(*) FROM customers WHERE password = 'x'", [[b"0"]]),
        (
            "SELECT o.id FROM orders o FULL JOIN customers c ON c.id = o.customer_id ORDER BY 1",
            [[b"10"], [b"11"]],
        ),
    ],
)
def test_ordinary_set_operations_and_joins_still_run(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows, answer.rows
    assert_no_secret(answer)
