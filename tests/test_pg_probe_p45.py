"""Probe p45 (helper pgattack20): an SQL EXECUTE masked by its PREPARE's verdict, a FETCH by
its cursor's DECLARE's.

A reader's `PREPARE p(int) AS SELECT $1; EXECUTE p(5)` (psql, the simple protocol) gave
NULL: the policy cannot see the rows' query in EXECUTE's text, so every computed column
of an EXECUTE was masked whole. The PDP now tells a PREPARE (prepare:NAME) and a lone
EXECUTE with constant parameters (execute:NAME) apart, and the proxy masks the EXECUTE's
rows by the verdict of the PREPARE that made the statement, once the server is known to
have made that very one. What must not follow, each tried as a reader of the adversary
arena (tests/adversary.py: the upstream credential is the `postgres` SUPERUSER):

- a masked column or a computed one over it, run by EXECUTE, comes back raw;
- the rules of one body go to another under the same name: a PREPARE the server refuses
  (the name is taken) or skips (an error before it in the same Query), one pipelined
  behind the EXECUTE, a Parse or a Close of the name by the extended protocol, DEALLOCATE
  and DISCARD ALL;
- a portal of an SQL EXECUTE (extended protocol) suspended by a row limit and run on after
  its statement's name was given to another body: the rest of its rows masked as its
  first Execute chose;
- a parameter the server computes (a function call): the EXECUTE's own verdict;
- a reader's PREPARE of a write: still waits for an approval nobody gives;
- psycopg's extended protocol and pipeline mode: the same answers.

The same held for FETCH: `BEGIN; DECLARE c CURSOR FOR SELECT count(*) FROM orders; FETCH c`
gave NULL, and so did every computed column psql showed with FETCH_COUNT set (psql then
reads each result through a cursor). A lone FETCH (fetch:NAME) is now masked by the
verdict of the DECLARE that made the cursor, while the transaction that declared it is
open (a cursor WITH HOLD, or one its transaction's end dropped, may since be another's by
its name: every computed column masked as before); a cursor declared again under the name
has its own rules.

Real PostgreSQL, the real proxy.
"""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest
from adversary import Arena, RawClient, assert_no_secret, query, sync
from pg_probe_stack import arena_fixture, reader_fixture

from proxies.postgres import codec

pytestmark = pytest.mark.integration

arena = arena_fixture()
reader = reader_fixture("p45")
# a body whose only output is computed from a masked column (the PREPARE's verdict masks
# it), and one with nothing to mask
MASKED = "SELECT upper(email) FROM customers WHERE id = 1"
PLAIN = "SELECT 'plain'::text"


def ok(c: RawClient, sql: str) -> list[list[bytes | None]]:
    answer = c.query(sql)
    assert_no_secret(answer, b"ADA@EXAMPLE.COM")
    assert not answer.errors, answer.errors
    return answer.rows


def masked(c: RawClient, sql: str) -> None:
    """sql answers one row whose one column is masked whole."""
    assert ok(c, sql) == [[b"[REDACTED]"]]


def test_a_readers_execute_returns_its_parameters(reader: RawClient) -> None:
    assert reader.query("PREPARE p(int) AS SELECT $1").tags == ["PREPARE"]
    assert ok(reader, "EXECUTE p(5)") == [[b"5"]]
    assert ok(reader, "EXECUTE p('7'::int)") == [[b"7"]]
    assert ok(reader, "PREPARE two(text, int) AS SELECT $1, $2 + 1, name FROM customers"
                      " WHERE id = $2") == []  # fmt: skip
    assert ok(reader, "EXECUTE two('x', 1)") == [[b"x", b"2", b"Ada"]]


def test_masked_columns_stay_masked_through_execute(reader: RawClient) -> None:
    ok(reader, "PREPARE q AS SELECT email, upper(ssn), note, password, id FROM customers"
               " WHERE id = 1")  # fmt: skip
    rows = ok(reader, "EXECUTE q")
    assert rows[0][0] == b"[REDACTED]" and rows[0][1] == b"[REDACTED]", rows
    assert rows[0][4] == b"1", rows
    ok(reader, f"PREPARE m(int) AS {MASKED} AND $1 = $1")
    masked(reader, "EXECUTE m(1)")


def test_a_prepare_the_server_refuses_gives_its_rules_to_nothing(reader: RawClient) -> None:
    ok(reader, f"PREPARE p AS {MASKED}")
    refused = reader.query(f"PREPARE p AS {PLAIN}")  # the name is taken: p stays MASKED
    assert refused.errors and "already exists" in refused.errors[0], refused.messages
    masked(reader, "EXECUTE p")
    # nothing after the error runs: the DEALLOCATE and the PREPARE are skipped
    skipped = reader.query(f"SELECT 1/0; DEALLOCATE p; PREPARE p AS {PLAIN}")
    assert skipped.errors and "division by zero" in skipped.errors[0], skipped.messages
    masked(reader, "EXECUTE p")


def test_a_prepare_still_unanswered_gives_its_rules_to_nothing(reader: RawClient) -> None:
    ok(reader, f"PREPARE p AS {MASKED}")
    # one write: the refused PREPARE is unanswered when the EXECUTE behind it is sent
    answer = reader.send(query(f"PREPARE p AS {PLAIN}"), query("EXECUTE p"), ready=2)
    assert_no_secret(answer, b"ADA@EXAMPLE.COM")
    assert answer.rows == [[b"[REDACTED]"]], answer.messages


def test_a_new_body_under_the_name_has_its_own_rules(reader: RawClient) -> None:
    ok(reader, f"PREPARE p AS {PLAIN}")
    assert ok(reader, "EXECUTE p") == [[b"plain"]]
    ok(reader, f"DEALLOCATE p; PREPARE p AS {MASKED}")
    masked(reader, "EXECUTE p")
    ok(reader, "DEALLOCATE ALL")
    ok(reader, f"PREPARE p AS {PLAIN}")
    assert ok(reader, "EXECUTE p") == [[b"plain"]]
    ok(reader, "DISCARD ALL")
    ok(reader, f"PREPARE p AS {MASKED}")
    masked(reader, "EXECUTE p")


@pytest.mark.parametrize("how", ["parse", "close"])
def test_the_extended_protocol_taking_the_name_drops_the_rules(reader: RawClient, how: str) -> None:
    ok(reader, f"PREPARE p AS {PLAIN}")
    if how == "parse":  # the proxy closes p first; the server then holds the Parse's body
        made = reader.send(codec.Parse("p", MASKED).encode(), sync())
    else:  # closed, then made again by an SQL PREPARE whose answer is not yet known
        made = reader.send(codec.Close("S", "p").encode(), sync())
        ok(reader, f"PREPARE p AS {MASKED}")
    assert not made.errors, made.messages
    masked(reader, "EXECUTE p")


def test_a_suspended_execute_portal_keeps_the_rules_its_first_execute_chose(
    reader: RawClient,
) -> None:
    ok(reader, "PREPARE p AS SELECT upper(email) FROM customers ORDER BY id")
    assert ok(reader, "BEGIN") == []
    first = reader.send(
        codec.Parse("", "EXECUTE p").encode(),
        codec.Bind("x", "", [], [], [0]).encode(),
        codec.Execute("x", 1).encode(),
        sync(),
    )
    assert first.rows == [[b"[REDACTED]"]], first.messages
    ok(reader, f"DEALLOCATE p; PREPARE p AS {PLAIN}")
    rest = reader.send(codec.Execute("x", 0).encode(), sync())
    assert_no_secret(rest, b"BOB@EXAMPLE.ORG")
    assert rest.rows == [[b"[REDACTED]"]], rest.messages
    reader.query("ROLLBACK")


def test_an_extended_execute_is_masked_by_its_prepare(reader: RawClient) -> None:
    ok(reader, "PREPARE p(int) AS SELECT $1")
    answer = reader.send(
        codec.Parse("", "EXECUTE p(5)").encode(),
        codec.Bind("", "", [], [], [0]).encode(),
        codec.Execute("", 0).encode(),
        sync(),
    )
    assert answer.rows == [[b"5"]], answer.messages


def test_a_computed_parameter_keeps_the_executes_own_masks(reader: RawClient) -> None:
    ok(reader, "PREPARE p(text) AS SELECT $1")
    masked(reader, "EXECUTE p(lower('ABC'))")


def test_a_readers_prepared_write_still_needs_approval(reader: RawClient) -> None:
    answer = reader.query("PREPARE w AS DELETE FROM orders WHERE id = 10")
    assert answer.errors and "approval" in answer.errors[0], answer.messages
    assert reader.query("EXECUTE w").errors


def test_psycopg_in_and_out_of_a_pipeline(arena: Arena) -> None:
    dsn = arena.dsn(arena.token("p45-psycopg@example.com", ("readonly",)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("PREPARE p(int) AS SELECT $1")
        assert conn.execute("EXECUTE p(5)").fetchall() == [(5,)]
        with conn.pipeline():
            conn.execute("DEALLOCATE p")
            conn.execute(f"PREPARE p AS {MASKED}")
            piped = conn.execute("EXECUTE p")
        assert piped.fetchall() == [("[REDACTED]",)]
        assert conn.execute("EXECUTE p").fetchall() == [("[REDACTED]",)]


def test_a_fetch_is_masked_by_its_cursors_declare(reader: RawClient) -> None:
    ok(reader, "BEGIN")
    ok(reader, "DECLARE c CURSOR FOR SELECT count(*), 1 + 1, name FROM customers GROUP BY name")
    assert ok(reader, "FETCH ALL FROM c") == [[b"1", b"2", b"Ada"], [b"1", b"2", b"Bob"]]
    ok(reader, f"DECLARE m CURSOR FOR {MASKED}")
    masked(reader, "FETCH m")
    ok(reader, "CLOSE c")
    ok(reader, f"DECLARE c CURSOR FOR {MASKED}")  # the name again, another body
    masked(reader, "FETCH NEXT FROM c")
    ok(reader, "ROLLBACK")


def test_a_cursor_dropped_by_a_rollback_to_savepoint_gives_its_rules_to_nothing(
    reader: RawClient,
) -> None:
    ok(reader, "BEGIN")
    ok(reader, "SAVEPOINT s")
    ok(reader, f"DECLARE c CURSOR FOR {PLAIN}")
    ok(reader, "ROLLBACK TO SAVEPOINT s")  # drops c at the server
    ok(reader, f"DECLARE c CURSOR FOR {MASKED}")
    masked(reader, "FETCH c")
    ok(reader, "ROLLBACK")


def test_a_cursor_of_an_ended_transaction_keeps_every_computed_column_masked(
    reader: RawClient,
) -> None:
    ok(reader, f"DECLARE h CURSOR WITH HOLD FOR {PLAIN}")
    masked(reader, "FETCH h")
    ok(reader, "CLOSE h")


def test_psql_with_fetch_count_shows_what_it_shows_without(arena: Arena) -> None:
    tok = arena.token("p45-psql@example.com", ("readonly",))
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(arena.port), "-U", "agent", "-d", arena.database,
         "-X", "-At", "-v", "FETCH_COUNT=1", "-c",
         "SELECT count(*), 1 + 1, name FROM customers GROUP BY name ORDER BY name",
         "-c", "SELECT upper(email) FROM customers ORDER BY id"],
        env={**os.environ, "PGPASSWORD": tok, "PGSSLMODE": "disable"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.stdout == "1|2|Ada\n1|2|Bob\n[REDACTED]\n[REDACTED]\n", (out.stdout, out.stderr)
