"""Probe P12 of the Postgres masks (helper pgmask9) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

The 1 GB limit as an oracle. A sensitive column going into a computation that can fail for
some of its values is refused (whether it failed answers a question about the value), but
concatenation, the constructors and replace/translate/lpad/string_agg were listed as never
failing. Every value of the server is at most 1 GB (MaxAllocSize), so each fails where its
result would be larger, and the reader chooses how large the rest of it is:

    SELECT length(translate(substr(password, 1, 1), 'abcdefghijklm', '')
                  || repeat('x', 1073741819)) FROM customers WHERE id = 1

answered (NULL, masked) when Ada's password starts with a-m and failed otherwise: a
character at a time in about seven statements (so did `regexp_replace(substr(password, 1,
2), '^[h-m]', repeat('x', 1073741819))`, failing exactly when the first character is in
h-m, with no concatenation at all). The error's text is withheld under the masks; that
there was one is the answer. pdp/sql/lineage.py now counts a column's value going into a
computation that multiplies it (a replacement at each match, a fill, a mapping, every
row's value joined by an aggregate or ARRAY(SELECT ...)) as a partial use, and into one
that joins it with other values (||, concat, array_to_string, json(b)_build_*, ROW, ARRAY,
XMLELEMENT) too unless every other value is a constant written in the statement.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, assert_refused, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture()
reader = reader_fixture("mask-p12")

BIG = "repeat('x', 1073741819)"  # the largest text `'a' || it` cannot make

# each fails, or not, by Ada's password ({chars}: a set its first character is in, or not)
GROWING = [
    f"SELECT length(translate(substr(password, 1, 1), '{{chars}}', '') || {BIG})"
    " FROM customers WHERE id = 1",
    f"SELECT length(concat(translate(substr(password, 1, 1), '{{chars}}', ''), {BIG}))"
    " FROM customers WHERE id = 1",
    f"SELECT length(regexp_replace(substr(password, 1, 2), '^[{{chars}}]', {BIG}))"
    " FROM customers WHERE id = 1",
    # (h, then u: the eighth of each set)
    f"SELECT length(replace(substr(password, 1, 2), substr('{{chars}}', 8, 1), {BIG}))"
    " FROM customers WHERE id = 1",
    f"SELECT array_length(ARRAY[translate(substr(password, 1, 1), '{{chars}}', ''), {BIG}], 1)"
    " FROM customers WHERE id = 1",
    f"SELECT length(array_to_string(ARRAY[substr(password, 1, 1), {BIG}], '{{chars}}'))"
    " FROM customers WHERE id = 1",
    f"SELECT length(jsonb_build_array(translate(email, '{{chars}}', ''), {BIG})::text)"
    " FROM customers WHERE id = 1",
    # many rows of one value joined: fails by the value's length
    "SELECT length(string_agg(translate(password, '{chars}', ''), ''))"
    " FROM customers, generate_series(1, 100000000) WHERE id = 1",
    "SELECT cardinality(ARRAY(SELECT translate(password, '{chars}', '')"
    " FROM customers, generate_series(1, 100000000) WHERE id = 1))",
    # through a CTE, a sub-query
    f"WITH p AS (SELECT translate(substr(password, 1, 1), '{{chars}}', '') AS x"
    f" FROM customers WHERE id = 1) SELECT length(x || {BIG}) FROM p",
    f"SELECT (SELECT length(p || {BIG})) FROM (SELECT translate(ssn, '{{chars}}', '') p"
    " FROM customers WHERE id = 1) s",
]


@pytest.mark.parametrize("sql", GROWING)
def test_a_value_grown_past_the_limit_answers_no_question(reader, sql) -> None:
    for chars in ("abcdefghijklm", "nopqrstuvwxyz"):
        assert_refused(reader, sql.format(chars=chars), "computation that can fail")


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        # a column's value beside constants written in the statement: masked as before
        (
            "SELECT password || '@', concat(email, ' (', 'x', ')'), jsonb_build_object('e', email),"
            " ARRAY[ssn, 'x'], id FROM customers WHERE id = 1",
            [[b"[REDACTED]", b"[REDACTED]", None, None, b"1"]],
        ),
        # columns no one masks are joined and replaced as before (text a computation may
        # have changed is masked whole, as it was: the value detectors read stored text)
        ("SELECT string_agg(name, ', ' ORDER BY id) FROM customers", [[b"[REDACTED]"]]),
        (
            "SELECT concat(name, ' #', id), replace(name, 'A', 'a') FROM customers WHERE id = 1",
            [[b"[REDACTED]", b"[REDACTED]"]],
        ),
        ("SELECT array_agg(id ORDER BY id) FROM orders", [[b"{10,11}"]]),
        ("SELECT count(*) FROM customers WHERE name || ' ' || name = 'Ada Ada'", [[b"1"]]),
    ],
)
def test_ordinary_joins_of_values_still_run(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows, answer.rows
    assert_no_secret(answer)
