"""Probe P8 of the Postgres masks (helper pgmask7) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A card number kept in a type made of numbers under another form. bigint, numeric and
double precision values are read as a JSON number is (a card kept as one is sent as NULL),
but money, numrange/int8range (and their multiranges) and the geometric types were taken
for types holding no text: `SELECT m FROM t` gave `$4,111,111,111,111,111.00`, a range
`[4111111111111111,4111111111111112)`, a point `(4.111111111111111e+15,0)`, and in the
binary format the card's number as bytes (money's cents, a range's int8 bounds, a point's
float8), arrays of them alike. proxies/postgres/values.py now reads their numbers as
NUMBERS' are (HELD_NUMBERS: money's amount with and without its cents, a range's bounds,
a geometric value's coordinates) and sends a value a detector finds anything in as NULL.
"""

from __future__ import annotations

import struct

import pytest
from adversary import assert_no_secret, bind, describe, execute, parse, sync
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

HELD = """
CREATE TABLE p8_held (id int, m money, r int8range, nr numrange, mr int8multirange,
  pt point, bx box, pg polygon, ma money[], ra int8range[]);
INSERT INTO p8_held VALUES
  (1, 4111111111111111, int8range(4111111111111111, 4111111111111112),
   numrange(4111111111111111.5, 4111111111111112), '{[4111111111111111,4111111111111112)}',
   point(4111111111111111, 0), box(point(1, 2), point(4111111111111111, 3)),
   polygon '((1,2),(4111111111111111,3),(5,5))', ARRAY[4111111111111111::money],
   ARRAY[int8range(4111111111111111, 4111111111111112)]),
  (2, 12.50, int8range(1, 100), numrange(1.5, 2), '{[1,3)}', point(1.5, 2),
   box(point(1, 2), point(3, 4)), polygon '((1,2),(3,4),(5,5))', ARRAY[1::money],
   ARRAY[int8range(1, 2)]);
"""

arena = arena_fixture(HELD)
reader = reader_fixture("mask-p8")

COLUMNS = ("m", "r", "nr", "mr", "pt", "bx", "pg", "ma", "ra")
# the card as each form spells it: digits, grouped as money, as a float, as bytes
SPELT = (
    b"4111111111111111",
    b"4,111,111,111,111,111",
    b"4.111111111111111e+15",
    struct.pack("!q", 4111111111111111),
    struct.pack("!q", 411111111111111100),
    struct.pack("!d", 4111111111111111.0),
)


@pytest.mark.parametrize("result_format", [0, 1])
@pytest.mark.parametrize("column", COLUMNS)
def test_a_card_held_as_numbers_is_not_sent(reader, column, result_format) -> None:
    sql = f"SELECT {column} FROM p8_held WHERE id = 1"
    answer = reader.send(
        parse("", sql), bind("", "", result_format), describe("P", ""), execute(), sync()
    )
    assert not answer.errors, answer.errors
    assert answer.rows == [[None]], answer.rows
    assert_no_secret(answer, *SPELT)


def test_other_values_of_those_types_go_as_they_are(reader) -> None:
    answer = reader.query(f"SELECT {', '.join(COLUMNS)} FROM p8_held WHERE id = 2")
    assert not answer.errors, answer.errors
    assert answer.rows == [
        [
            b"$12.50",
            b"[1,100)",
            b"[1.5,2)",
            b"{[1,3)}",
            b"(1.5,2)",
            b"(3,4),(1,2)",
            b"((1,2),(3,4),(5,5))",
            b"{$1.00}",
            b'{"[1,2)"}',
        ]
    ]


def test_copy_rows_of_those_types_are_read_too(reader) -> None:
    answer = reader.query("COPY (SELECT m, r, pt FROM p8_held WHERE id = 1) TO STDOUT")
    assert_no_secret(answer, *SPELT[:3])
