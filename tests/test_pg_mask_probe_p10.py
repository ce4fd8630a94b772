"""Probe P10 of the Postgres masks (helper pgmask8) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A card number kept in a number column the policy does not list as sensitive (bigint,
unconstrained numeric, double precision, money) is sent as NULL when selected as it is
(proxies/postgres/values.py reads such numbers as cards), but arithmetic carried it past
the detectors: `SELECT num - 1` gave 4111111111111110, `num / 100000000, num % 100000000`
its two halves, sum() over it and a constant the card plus one. The proxy now lists the
columns whose type can hold 13 or more digits (proxies/postgres/columns.py NUMBER), lineage
says which columns reach an output through arithmetic or sum/avg ("arithmetic"), and the
policy masks such an output whole (and refuses a question about such a column, as a
sensitive column's: `num > 4111111111111110`, ORDER BY num, max() beside a constant),
unless the column's name is in
postgres.plain_number_columns or the database fills the column itself (identity, bigserial).

Since tests/test_pg_probe_p37.py such arithmetic (and sum/avg) is refused rather than masked:
whether it fails is a question about the number (`num + (9223372036854775807 -
4111111111111111)` overflows exactly when num is larger, `1/(num - 4111111111111111)`
divides by zero when it is equal), as it is about a sensitive column's.
"""

from __future__ import annotations

import struct

import pytest
from adversary import assert_no_secret, bind, describe, execute, parse, sync
from pg_probe_stack import arena_fixture, assert_refused, probe_client, reader_fixture

pytestmark = pytest.mark.integration

CARD = 4111111111111111
HELD = f"""
CREATE TABLE p10_lots (lot bigserial PRIMARY KEY);
INSERT INTO p10_lots DEFAULT VALUES;
INSERT INTO p10_lots DEFAULT VALUES;
CREATE TABLE p10_cards (k int, num bigint, wide numeric, f float8, m money,
  fee numeric(10,2), small int4, amount_cents bigint, seq bigserial,
  ident bigint GENERATED ALWAYS AS IDENTITY, lot bigint REFERENCES p10_lots, held bigint);
INSERT INTO p10_cards (k, num, wide, f, m, fee, small, amount_cents, lot, held) VALUES
  (1, {CARD}, {CARD}, {CARD}, {CARD}, 12.50, 7, 1250, 1, {CARD}),
  (2, 5, 5, 5, 5, 2.25, 3, 250, 2, 5);
-- a foreign key not validated: the rows it never checked may hold anything
ALTER TABLE p10_cards ADD CONSTRAINT p10_held FOREIGN KEY (held) REFERENCES p10_lots NOT VALID;
"""

arena = arena_fixture(HELD)
reader = reader_fixture("mask-p10")
client = probe_client("mask-p10")

# the forms the card takes under the probes' arithmetic
SPELT = tuple(
    str(v).encode()
    for v in (CARD - 1, CARD + 1, CARD // 100000000, CARD % 100000000, CARD * 2, CARD + 5)
)

PROBES = [
    "SELECT num - 1 FROM p10_cards WHERE k = 1",
    "SELECT num / 100000000, num % 100000000 FROM p10_cards WHERE k = 1",
    "SELECT sum(x) FROM (SELECT num AS x FROM p10_cards WHERE k = 1 UNION ALL SELECT 1) s",
    "SELECT wide + 1 FROM p10_cards WHERE k = 1",
    "SELECT (f - 1)::bigint::text FROM p10_cards WHERE k = 1",
    "SELECT f * 2 FROM p10_cards WHERE k = 1",
    "SELECT m + 1::money FROM p10_cards WHERE k = 1",
    "SELECT avg(num) FROM p10_cards",
    "SELECT sum(num) OVER () FROM p10_cards",
    "SELECT x - 1 FROM (SELECT num AS x FROM p10_cards WHERE k = 1) s",
    "SELECT coalesce(num, 0) * 2 FROM p10_cards WHERE k = 1",
    "SELECT -num FROM p10_cards WHERE k = 1",
    "SELECT held - 1 FROM p10_cards WHERE k = 1",
    "SELECT num - 1 AS amount_cents FROM p10_cards WHERE k = 1",
    "SELECT (SELECT num - 1 FROM p10_cards WHERE k = 1)",
    "WITH c AS (SELECT num - 1 AS x FROM p10_cards WHERE k = 1) SELECT x FROM c",
    "WITH c AS (SELECT num - 1 AS x FROM p10_cards WHERE k = 1) SELECT * FROM c",
    "SELECT g FROM p10_cards, LATERAL (SELECT num - 1) AS s(g) WHERE k = 1",
    "SELECT * FROM (VALUES ((SELECT num FROM p10_cards WHERE k = 1) - 1)) v",
    "SELECT array_agg(num - 1) FROM p10_cards",
    "SELECT num - 1 FROM p10_cards WHERE k = 1 UNION ALL SELECT 0",
    "SELECT x FROM (SELECT num - 1 AS x FROM p10_cards WHERE k = 1) s",
    "SELECT x - 1 FROM (SELECT num AS id, num AS x FROM p10_cards WHERE k = 1) s",
]


# arithmetic can fail for some values (overflow, a division by zero): refused, as over a
# sensitive column (tests/test_pg_probe_p37.py)
REFUSED = "can fail for some of its values"


@pytest.mark.parametrize("sql", PROBES)
def test_arithmetic_over_a_wide_number_column_is_refused(reader, sql) -> None:
    answer = assert_refused(reader, sql, "denied by policy")
    assert REFUSED in answer.errors[0], answer.errors
    assert not answer.rows, answer.rows
    assert_no_secret(answer, *SPELT)


@pytest.mark.parametrize("result_format", [0, 1])
def test_arithmetic_is_refused_in_the_extended_protocol_too(reader, result_format) -> None:
    sql = "SELECT num - 1, k FROM p10_cards WHERE k = 1"
    answer = reader.send(
        parse("", sql), bind("", "", result_format), describe("P", ""), execute(), sync()
    )
    assert answer.errors and REFUSED in answer.errors[0], answer.messages
    assert not answer.rows, answer.rows
    assert_no_secret(answer, *SPELT, struct.pack("!q", CARD - 1))


def test_a_pii_reader_gets_the_arithmetic(arena) -> None:
    c = client(arena, ("readonly", "pii-readers"))
    try:
        answer = c.query("SELECT num - 1 FROM p10_cards WHERE k = 1")
    finally:
        c.close()
    assert answer.rows == [[str(CARD - 1).encode()]], answer.rows


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("SELECT count(*) FROM p10_cards", [[b"2"]]),
        ("SELECT sum(fee) FROM p10_cards", [[b"14.75"]]),
        # orders.total: an unconstrained numeric, listed in postgres.plain_number_columns
        ("SELECT sum(total) * 2 FROM orders", [[b"223.00"]]),
        ("SELECT small * 2 + 1 FROM p10_cards WHERE k = 1", [[b"15"]]),
        # listed in postgres.plain_number_columns
        ("SELECT sum(amount_cents) FROM p10_cards", [[b"1500"]]),
        # values the database made: a bigserial and an identity column
        ("SELECT max(seq) + 1, max(ident) + 1 FROM p10_cards", [[b"3", b"3"]]),
        # a validated foreign key's values come from such a column (an order's customer_id)
        ("SELECT max(lot) + 1 FROM p10_cards WHERE lot > 0", [[b"3"]]),
        # a wide column selected as it is: the detectors judge it, as before
        ("SELECT num, num::text FROM p10_cards WHERE k = 2", [[b"5", b"5"]]),
        # ...and counted
        ("SELECT count(*), count(num) FROM p10_cards", [[b"2", b"2"]]),
    ],
)
def test_ordinary_number_queries_come_back(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows, answer.rows


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT count(*) FROM p10_cards WHERE num > {CARD - 1}",
        f"SELECT count(*) FROM p10_cards WHERE num BETWEEN {CARD - 1} AND {CARD + 1}",
        "SELECT k FROM p10_cards ORDER BY num",
        "SELECT count(*) FROM p10_cards WHERE num % 100000000 = 11111111",
        "SELECT count(*) FROM p10_cards WHERE num::text LIKE '4111%'",
        f"SELECT count(*) FROM p10_cards WHERE f > {CARD - 1}",
        f"SELECT max(x) FROM (SELECT num AS x FROM p10_cards UNION ALL SELECT {CARD - 1}) s",
        "SELECT max(num - 1) FROM p10_cards",
        # a foreign key NOT VALID never checked the rows it found
        f"SELECT count(*) FROM p10_cards WHERE held > {CARD - 1}",
    ],
)
def test_a_question_about_a_wide_number_column_is_refused(reader, sql) -> None:
    assert_refused(reader, sql, "number column")


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("SELECT k FROM p10_cards WHERE amount_cents > 1000", [[b"1"]]),
        ("SELECT k FROM p10_cards WHERE small > 5 ORDER BY seq, ident", [[b"1"]]),
        ("SELECT k FROM p10_cards WHERE fee > 10", [[b"1"]]),
        ("SELECT id FROM orders WHERE total > 50 ORDER BY total", [[b"10"]]),
    ],
)
def test_questions_about_other_number_columns_are_answered(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows, answer.rows


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
def test_a_number_computed_from_a_wide_number_column_is_not_stored(arena, groups) -> None:
    # (the dba's CREATE TEMP TABLE ran before: SELECT y::text FROM p10_kept then gave the
    # card minus one, which no detector reads as a card)
    c = client(arena, groups)
    try:
        answer = c.query(
            "CREATE TEMP TABLE p10_kept AS SELECT num - 1 AS y FROM p10_cards WHERE k = 1"
        )
        assert answer.errors, answer.messages
        assert "stores a number computed by arithmetic" in answer.errors[0], answer.errors
        assert_no_secret(answer, *SPELT)
    finally:
        c.close()
