"""Probe P7 of the Postgres masks (helper pgmask7) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

The server's error text. An error of a statement under masks had its double-quoted strings
redacted and a field still holding a digit withheld; a card number kept as a bigint (or as
bytes, or in a note) translated to letters (`translate(num::text, '0123456789',
'abcdefghij')`: no digit, no card for the value detectors) came out of an error all the
same:
- quoted with a double quote of its own at each end, the value split the quoting:
  `('"' || translate(num::text, ...) || '"')::int` gave `invalid input syntax for type
  integer: "[REDACTED]"ebbbbbbbbbbbbbbb"[REDACTED]"`;
- printed unquoted: `translate(replace(convert_from(blob, 'UTF8'), ' ', '.'),
  ...)::regclass` (to_regclass, ::regproc alike) gave `improper relation name (too many
  dotted names): card.ebbb.bbbb.bbbb.bbbb`.
A field is now kept only as one of the server's message templates, every argument
redacted (proxies/postgres/server_messages.py: the English texts of PostgreSQL's own
translation catalogues, an allow-list), and withheld when no template makes it.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret, bind, describe, execute, parse, sync
from pg_probe_stack import arena_fixture, reader_fixture

from proxies.postgres.server_messages import MAX_FIELD, rewrite

pytestmark = pytest.mark.integration

CARDS = """
CREATE TABLE p7_cards (id int, num bigint, blob bytea);
INSERT INTO p7_cards VALUES
  (1, 4111111111111111, convert_to('card 4111 1111 1111 1111', 'UTF8'));
"""

arena = arena_fixture(CARDS)
reader = reader_fixture("mask-p7")

# the note's card number (4111 1111 1111 1111) as the translations below spell it
SPELT = (b"ebbb", b"bbbb bbbb", b"bbbb.bbbb", b"EBBB", b"4111", b"bbbbbbbb")

NUMBER = "translate(num::text, '0123456789', 'abcdefghij')"
BYTES = "translate(replace(convert_from(blob, 'UTF8'), ' ', '.'), '0123456789', 'abcdefghij')"
TRANSLATED = "translate(note, '0123456789', 'abcdefghij')"
DOTTED = "translate(replace(note, ' ', '.'), '0123456789', 'abcdefghij')"

ERRORS = [
    # a double quote at each end of the value
    f"SELECT ('\"' || {NUMBER} || '\"')::int FROM p7_cards",
    f"SELECT ('\"' || {NUMBER} || '\"')::regclass FROM p7_cards",
    f"SELECT ('x\" \"' || {NUMBER} || '\" \"y')::date FROM p7_cards",
    f"SELECT count(*) FROM p7_cards WHERE ('\"' || {NUMBER} || '\"')::int > 0",
    f"SELECT ('\"' || upper({NUMBER}) || '\"')::uuid FROM p7_cards",
    # unquoted in the server's message
    f"SELECT ({BYTES})::regclass FROM p7_cards",
    f"SELECT ({BYTES})::regproc FROM p7_cards",
    f"SELECT ({BYTES})::regtype FROM p7_cards",
    f"SELECT to_regclass({BYTES}) FROM p7_cards",
    f"SELECT to_regproc({BYTES}) FROM p7_cards",
    # the same of a note (a policy may refuse these as questions about free text)
    f"SELECT ('\"' || {TRANSLATED} || '\"')::int FROM customers WHERE id = 1",
    f"SELECT ('\"' || {TRANSLATED} || '\"')::regclass FROM customers WHERE id = 1",
    f"SELECT ('x\" \"' || {TRANSLATED} || '\" \"y')::date FROM customers WHERE id = 1",
    f"SELECT count(*) FROM customers WHERE ('\"' || {TRANSLATED} || '\"')::int > 0",
    f"SELECT ('\"' || upper({TRANSLATED}) || '\"')::uuid FROM customers WHERE id = 1",
    # unquoted in the server's message
    f"SELECT ({DOTTED})::regclass FROM customers WHERE id = 1",
    f"SELECT ({DOTTED})::regproc FROM customers WHERE id = 1",
    f"SELECT ({DOTTED})::regtype FROM customers WHERE id = 1",
    f"SELECT to_regclass({DOTTED}) FROM customers WHERE id = 1",
    f"SELECT to_regproc({DOTTED}) FROM customers WHERE id = 1",
]


@pytest.mark.parametrize("sql", ERRORS)
def test_a_value_does_not_leave_in_an_error(reader, sql) -> None:
    answer = reader.query(sql)
    assert answer.errors, answer.rows
    assert_no_secret(answer, *SPELT)


@pytest.mark.parametrize("sql", ERRORS[:2] + ERRORS[5:7] + ERRORS[10:12])
def test_nor_in_an_error_of_the_extended_protocol(reader, sql) -> None:
    answer = reader.send(parse("", sql), bind("", "", 1), describe("P", ""), execute(), sync())
    assert answer.errors, answer.rows
    assert_no_secret(answer, *SPELT)


# the server's own words stay, its arguments redacted (a built-in type's name kept). (A
# cast of what a wide number or bytea column holds, turned, is refused before it runs
# since tests/test_pg_probe_p37.py: whether it fails answers about the card.)
SAID = [
    (
        "SELECT translate(id::text, '0123456789', 'abcdefghij')::int FROM p7_cards",
        'invalid input syntax for type integer: "[REDACTED]"',
    ),
    ("SELECT 'card.ebbb.bbbb.bbbb.bbbb'::regclass FROM p7_cards", "improper relation name"),
    ("SELECT 1 / (id - id) FROM customers", "division by zero"),
    ("SELECT nonesuch FROM customers", 'column "[REDACTED]" does not exist'),
]


@pytest.mark.parametrize(("sql", "said"), SAID)
def test_the_server_still_says_what_went_wrong(reader, sql, said) -> None:
    answer = reader.query(sql)
    assert answer.errors and said in answer.errors[0], answer.errors


# --- the sans-IO rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "made"),
    [
        ('invalid input syntax for type integer: ""card ebbb""', 'integer: "[REDACTED]"'),
        ("improper relation name (too many dotted names): card.ebbb", "names): [REDACTED]"),
        ('syntax error at or near "SELEC"', 'syntax error at or near "[REDACTED]"'),
        ("value too long for type character varying(3)", "character varying([REDACTED])"),
        ("division by zero", "division by zero"),
        ('relation "a" does not exist', 'relation "[REDACTED]" does not exist'),
        # a statement part's name is the parser's word, kept; anything else redacted
        ("aggregate functions are not allowed in GROUP BY", "allowed in GROUP BY"),
        ("set-returning functions are not allowed in WHERE", "allowed in WHERE"),
        ("aggregate functions are not allowed in 4111 1111", "allowed in [REDACTED]"),
    ],
)
def test_a_field_is_made_of_its_template(text: str, made: str) -> None:
    out = rewrite(text)
    assert out is not None and made in out, out


@pytest.mark.parametrize(
    "text",
    [
        "card ebbb bbbb bbbb bbbb",  # no text of the server's
        "x" * (MAX_FIELD + 1),
        "ungültige Eingabesyntax für Typ integer: »x«",  # another language's
    ],
)
def test_a_field_no_template_makes_is_withheld(text: str) -> None:
    assert rewrite(text) is None
