"""Probe P50 (helper pgattack22) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader: PREPARE and EXECUTE in one
simple Query.

P45 masked a lone EXECUTE by its PREPARE's verdict, but a text holding both (psql's one
`-c` string, a driver's multi-statement Query) was judged as an EXECUTE of a body the
text does not show, every computed column masked whole (and a FETCH of a cursor the same
text DECLAREd likewise):

    PREPARE p AS SELECT 1 + 1 AS two, count(*), name FROM customers GROUP BY name ...;
    EXECUTE p      -- two and count NULL, where two strings gave 2 and 1

The classifier now says when an EXECUTE runs a PREPARE of the same text (`prepared_here`:
its name prepared before it with only PREPAREs between, constant parameters; a failed
statement ends a simple Query, so the PREPARE made the name), and that query's own
outputs are judged with the rest of the text; a FETCH right after its cursor's DECLARE
(`declared_here`) too. What must not follow: an EXECUTE of a
body prepared before (by an earlier Query, or kept when the text's PREPARE of its name
fails, or run after a statement that could prepare it again) shown by the masks of the
text's other PREPARE; a cursor declared before read by the masks of another DECLARE.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from adversary import Arena, RawClient, assert_no_secret
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture()
reader = reader_fixture("p50")
MASKED = "SELECT upper(email) FROM customers WHERE id = 1"
SHOUTED = b"ADA@EXAMPLE.COM"


def rows(c: RawClient, sql: str) -> list[list[bytes | None]]:
    answer = c.query(sql)
    assert_no_secret(answer, SHOUTED)
    assert not answer.errors, answer.errors
    return answer.rows


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "PREPARE p AS SELECT 1 + 1 AS two, count(*), name FROM customers GROUP BY name"
            " ORDER BY name; EXECUTE p",
            [[b"2", b"1", b"Ada"], [b"2", b"1", b"Bob"]],
        ),
        ("PREPARE p(int) AS SELECT $1, $1 * 2; EXECUTE p(21)", [[b"21", b"42"]]),
        ("PREPARE p(text) AS SELECT upper($1); EXECUTE p('x'::text)", [[b"X"]]),
        ("PREPARE a AS SELECT 1 + 1; PREPARE b AS SELECT 2 + 2; EXECUTE a", [[b"2"]]),
    ],
)
def test_an_execute_of_the_texts_own_prepare_is_judged_with_it(
    reader: RawClient, sql: str, expected: list[list[bytes | None]]
) -> None:
    assert rows(reader, sql) == expected
    assert rows(reader, "DEALLOCATE ALL") == []


def test_its_masked_outputs_stay_masked(reader: RawClient) -> None:
    answer = rows(reader, f"PREPARE p AS {MASKED}; EXECUTE p")
    assert answer == [[b"[REDACTED]"]]
    answer = rows(reader, f"DEALLOCATE p; PREPARE p AS SELECT 1 + 1; DEALLOCATE p;"
                          f" PREPARE p AS {MASKED}; EXECUTE p")  # fmt: skip
    assert answer == [[b"[REDACTED]"]]


def test_a_body_prepared_before_is_not_shown_by_the_texts_masks(reader: RawClient) -> None:
    assert rows(reader, "PREPARE m AS SELECT count(*) FROM customers") == []
    assert rows(reader, "EXECUTE m") == [[b"2"]]  # (P45: by its PREPARE's verdict)
    # another PREPARE in the text: m's body is not this text's
    assert rows(reader, "PREPARE x AS SELECT 1; EXECUTE m") == [[None]]
    # something that runs stands between: it could have prepared the name again (one mask
    # for the text's every result: its SELECT's constant too)
    assert rows(reader, "PREPARE y AS SELECT 1 + 1; SELECT 1; EXECUTE y") == [[None], [None]]
    # a computed parameter: the EXECUTE's own verdict
    assert rows(reader, "PREPARE z(text) AS SELECT $1; EXECUTE z(lower('A'))") == [[b"[REDACTED]"]]


def test_a_prepare_that_fails_on_a_taken_name_runs_no_execute(reader: RawClient) -> None:
    assert rows(reader, f"PREPARE p AS {MASKED}") == []
    answer = reader.query("PREPARE p AS SELECT 'plain'::text; EXECUTE p")
    assert_no_secret(answer, SHOUTED)
    assert answer.errors and "already exists" in answer.errors[0], answer.messages
    assert answer.rows == []
    assert rows(reader, "EXECUTE p") == [[b"[REDACTED]"]]


def test_psql_one_string(arena: Arena) -> None:
    tok = arena.token("p50-psql@example.com", ("readonly",))
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(arena.port), "-U", "agent", "-d", arena.database,
         "-X", "-At", "-c",
         "PREPARE p AS SELECT count(*), 1 + 1, name FROM customers GROUP BY name ORDER BY name;"
         " EXECUTE p; DEALLOCATE p; PREPARE p AS SELECT upper(email) FROM customers ORDER BY id;"
         " EXECUTE p"],
        env={**os.environ, "PGPASSWORD": tok, "PGSSLMODE": "disable"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # psql shows every result of a one-string -c; one mask for the text's every result
    shown = "PREPARE\n||Ada\n||Bob\nDEALLOCATE\nPREPARE\n[REDACTED]\n[REDACTED]\n"
    assert out.stdout == shown, (out.stdout, out.stderr)
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(arena.port), "-U", "agent", "-d", arena.database,
         "-X", "-At", "-c",
         "PREPARE p AS SELECT count(*), 1 + 1, name FROM customers GROUP BY name ORDER BY name;"
         " EXECUTE p"],
        env={**os.environ, "PGPASSWORD": tok, "PGSSLMODE": "disable"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.stdout == "PREPARE\n1|2|Ada\n1|2|Bob\n", (out.stdout, out.stderr)


def test_a_fetch_of_the_texts_own_declare_is_judged_with_it(reader: RawClient) -> None:
    declare = "DECLARE c CURSOR FOR SELECT count(*), 1 + 1, name FROM customers GROUP BY name"
    read = f"BEGIN; {declare} ORDER BY name; FETCH ALL c; MOVE BACKWARD ALL IN c; FETCH 1 c; END"
    ada, bob = [b"1", b"2", b"Ada"], [b"1", b"2", b"Bob"]
    assert rows(reader, read) == [ada, bob, ada]
    assert rows(reader, f"BEGIN; DECLARE c CURSOR FOR {MASKED}; FETCH c; ROLLBACK") == [
        [b"[REDACTED]"]
    ]


def test_a_cursor_declared_before_is_not_shown_by_the_texts_masks(reader: RawClient) -> None:
    assert rows(reader, "BEGIN") == []
    assert rows(reader, "DECLARE m CURSOR FOR SELECT count(*) FROM customers") == []
    assert rows(reader, "DECLARE x CURSOR FOR SELECT 1; FETCH m") == [[None]]
    assert rows(reader, "DECLARE y CURSOR FOR SELECT 1 + 1; SELECT 1; FETCH y") == [[None], [None]]
    # a name taken: the proxy closes the cursor first, so the text's DECLARE makes it
    answer = reader.query("DECLARE m CURSOR FOR SELECT 'plain'::text; FETCH m")
    assert not answer.errors and answer.rows == [[b"plain"]], answer.messages
    assert rows(reader, f"DECLARE m CURSOR FOR {MASKED}; FETCH m") == [[b"[REDACTED]"]]
    reader.query("ROLLBACK")
