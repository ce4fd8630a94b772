"""Probe P3's findings against the real stack: a reader (and, where masks apply to
everyone not in pii-readers, a dba) through a gateway whose upstream credential is the
`postgres` SUPERUSER (tests/adversary.py), with raw frames built byte by byte.

- COPY ... TO STDOUT of computed columns: a SELECT of `password || ''` or
  `replace(email, '@', ' at ')` is masked whole (the derived rule), while COPY rows went
  out as the server wrote them, only the value detectors reading them.
- COPY options that rewrite values (a text-format DELIMITER ' ', a CSV QUOTE or ESCAPE
  of '1', ENCODING) made the server escape or double characters inside the note's card
  number, so the detectors no longer recognised it.
- A Describe answered after its statement's or portal's name was given to another one
  (re-Parsed, closed and parsed again, bound again, a cursor declared again) set the
  shape the proxy masked the newer one's rows by: `SELECT id` described, `SELECT
  password` executed, the password read as the id column and sent unmasked.
- A Parse, Bind or DECLARE the server refused (a name it held) or discarded (an error
  earlier in the batch) left it holding the earlier statement or cursor, which then ran
  under the verdict of the one the proxy thought had replaced it (a dba's TRUNCATE
  awaiting approval run as `SELECT 1`).
"""

from __future__ import annotations

import pytest
from adversary import (
    Answer,
    RawClient,
    assert_no_secret,
    assert_none_of,
    bind,
    copied,
    describe,
    execute,
    parse,
    query,
    sync,
)
from pg_probe_stack import arena_fixture, probe_client

from proxies.postgres import codec

pytestmark = pytest.mark.integration


arena = arena_fixture()
client = probe_client("p3", ("readonly",))


# --- COPY of computed columns ----------------------------------------------------------

COMPUTED_COPIES = [
    "COPY (SELECT password || '' FROM customers) TO STDOUT",
    "COPY (SELECT replace(email, '@', ' at ') FROM customers) TO STDOUT",
    "COPY (SELECT lower(ssn) FROM customers) TO STDOUT (FORMAT csv)",
    "COPY (SELECT id, reverse(password) AS r FROM customers) TO STDOUT",
    # over a free-text column the value detectors mask inside (test_pg_probe_p4)
    "COPY (SELECT translate(note, '0123456789', 'abcdefghij') FROM customers) TO STDOUT",
    "COPY (SELECT encode(note::bytea, 'hex') FROM customers) TO STDOUT (FORMAT csv)",
    "COPY (SELECT string_agg(note, '5') FROM customers) TO STDOUT",
    "COPY (WITH t AS (SELECT reverse(note) r FROM customers) SELECT r FROM t) TO STDOUT",
]


@pytest.mark.parametrize("sql", COMPUTED_COPIES)
def test_copy_of_computed_columns_is_refused_under_masks(arena, sql: str) -> None:
    for groups in (("readonly",), ("dba",)):
        c = client(arena, groups)
        try:
            answer = c.query(sql)
            assert_no_secret(answer)
            assert not copied(answer)
            # (replace() multiplies its input: a partial use since test_pg_mask_probe_p12)
            assert any(
                "computed columns" in e or "computation that can fail" in e for e in answer.errors
            ), answer.errors
            # the session goes on
            assert c.query("SELECT 1").rows == [[b"1"]]
        finally:
            c.close()


def test_the_same_computed_columns_selected_are_masked(arena) -> None:
    c = client(arena)
    try:
        answer = c.query("SELECT password || '' FROM customers")
        assert_no_secret(answer)
        assert len(answer.rows) == 2
    finally:
        c.close()


def test_copy_of_computed_columns_from_no_table_still_runs(arena) -> None:
    c = client(arena)
    try:
        answer = c.query("COPY (SELECT 1 + 1 AS two) TO STDOUT")
        assert not answer.errors
        assert copied(answer) == [b"2\n"]
    finally:
        c.close()


def test_pii_readers_copy_computed_columns(arena) -> None:
    c = client(arena, ("pii-readers",))
    try:
        answer = c.query("COPY (SELECT lower(email) FROM customers ORDER BY id) TO STDOUT")
        assert not answer.errors
        assert copied(answer) == [b"ada@example.com\n", b"bob@example.org\n"]
    finally:
        c.close()


# --- COPY options that rewrite values ------------------------------------------------------

REWRITING_COPIES = [
    "COPY (SELECT id, note FROM customers) TO STDOUT (DELIMITER ' ')",
    "COPY (SELECT note FROM customers) TO STDOUT (FORMAT csv, QUOTE '1')",
    "COPY customers (id, note) TO STDOUT WITH CSV QUOTE AS '1'",
    "COPY (SELECT note FROM customers) TO STDOUT (FORMAT csv, ESCAPE '1', FORCE_QUOTE *)",
    "COPY (SELECT id, note FROM customers) TO STDOUT (FORMAT csv, DELIMITER '1')",
    "COPY (SELECT note FROM customers) TO STDOUT (ENCODING 'LATIN1')",
    "copy customers (note) to stdout delimiter ' '",
]


@pytest.mark.parametrize("sql", REWRITING_COPIES)
def test_copy_options_that_rewrite_values_are_refused_under_masks(arena, sql: str) -> None:
    for groups in (("readonly",), ("dba",)):
        c = client(arena, groups)
        try:
            answer = c.query(sql)
            assert_no_secret(answer)
            assert_none_of(answer, (b"4111",))
            assert not copied(answer)
            assert any("rewrites values" in e for e in answer.errors), answer.errors
        finally:
            c.close()


def test_copy_options_that_keep_values_run_with_the_detectors(arena) -> None:
    c = client(arena)
    try:
        sql = (
            "COPY (SELECT id, note FROM customers ORDER BY id) TO STDOUT"
            " (FORMAT csv, HEADER, FORCE_QUOTE *, NULL 'n/a')"
        )
        answer = c.query(sql)
        assert not answer.errors
        assert_no_secret(answer)
        assert copied(answer)[0] == b"id,note\n"
        assert len(copied(answer)) == 3
    finally:
        c.close()


# --- a Describe answered after its name was given to another statement or portal -------


def run_and_check(c: RawClient, *frames: bytes) -> Answer:
    answer = c.send(*frames)
    assert_no_secret(answer)
    return answer


def test_named_statement_closed_and_parsed_again_after_its_describe(arena) -> None:
    c = client(arena)
    try:
        setup = c.send(
            parse("s", "SELECT id FROM customers"),
            describe("S", "s"),
            codec.Close("S", "s").encode(),
            parse("s", "SELECT password FROM customers"),
            sync(),
        )
        assert not setup.errors
        answer = run_and_check(c, bind("", "s"), execute(""), sync())
        assert len(answer.rows) == 2 and not answer.errors
        answer = run_and_check(c, bind("", "s", 1), execute(""), sync())
        assert len(answer.rows) == 2
    finally:
        c.close()


def test_unnamed_statement_parsed_again_after_its_describe(arena) -> None:
    c = client(arena)
    try:
        c.send(
            parse("", "SELECT id FROM customers"),
            describe("S", ""),
            parse("", "SELECT password FROM customers"),
            sync(),
        )
        answer = run_and_check(c, bind("", ""), execute(""), sync())
        assert len(answer.rows) == 2
    finally:
        c.close()


def test_unnamed_portal_bound_again_after_its_describe_in_one_chunk(arena) -> None:
    c = client(arena)
    try:
        c.send(parse("sp", "SELECT password FROM customers"), describe("S", "sp"), sync())
        answer = run_and_check(
            c,
            parse("", "SELECT id FROM customers"),
            bind("", ""),
            describe("P", ""),
            bind("", "sp"),
            execute(""),
            sync(),
        )
        assert len(answer.rows) == 2 and not answer.errors
    finally:
        c.close()


def test_unnamed_portal_bound_again_after_its_describe_then_executed_later(arena) -> None:
    c = client(arena)
    try:
        assert not c.query("BEGIN").errors
        c.sock.sendall(
            parse("", "SELECT id FROM customers")
            + bind("", "")
            + describe("P", "")
            + parse("", "SELECT password FROM customers")
            + bind("", "")
            + codec.Flush().encode()
        )
        # the answers (two ParseComplete, two BindComplete, the description) are read
        # before the Execute is sent
        c._until((codec.BindComplete,), 2)
        answer = run_and_check(c, execute(""), sync())
        assert len(answer.rows) == 2
        c.query("COMMIT")
    finally:
        c.close()


def test_cursor_declared_again_after_its_describe(arena) -> None:
    c = client(arena)
    try:
        assert not c.query("BEGIN").errors
        assert not c.query("DECLARE c CURSOR FOR SELECT id FROM customers").errors
        c.send(
            describe("P", "c"),
            query("CLOSE c; DECLARE c CURSOR FOR SELECT password FROM customers"),
        )
        answer = run_and_check(c, execute("c"), sync())
        assert len(answer.rows) == 2
        c.query("COMMIT")
    finally:
        c.close()


def test_a_pipeline_reusing_the_unnamed_portal_masks_each_result_as_its_own(arena) -> None:
    """Two results of the unnamed portal in one pipeline, each described by the client:
    each is masked by its own description (the shapes follow the portal, not its name)."""
    c = client(arena)
    try:
        answer = run_and_check(
            c,
            parse("", "SELECT password FROM customers ORDER BY id"),
            bind("", ""),
            describe("P", ""),
            execute(""),
            parse("", "SELECT id, name FROM customers ORDER BY id"),
            bind("", ""),
            describe("P", ""),
            execute(""),
            sync(),
        )
        assert not answer.errors
        rows = answer.rows
        assert len(rows) == 4
        assert rows[2:] == [[b"1", b"Ada"], [b"2", b"Bob"]]
    finally:
        c.close()


# --- a Parse, Bind or DECLARE the server refuses or discards, under a name it holds ------
#
# The proxy took each for made when it sent it. The server refuses a Parse or DECLARE of a
# name it holds (42P05, 42P03) and discards the rest of a batch after an error, keeping
# what it held: a `SELECT lower(password)` prepared (or declared) first ran later under
# the verdict of the `SELECT 'a' AS p` the proxy thought had replaced it, whose masks
# have no derived rule, so the password went out as it is.

HELD = "SELECT lower(password) AS p FROM customers"
OTHER = "SELECT 'a' AS p"


def test_a_named_statement_parsed_again_under_its_name(arena) -> None:
    c = client(arena)
    try:
        assert not c.send(parse("s", HELD), sync()).errors
        c.send(parse("s", OTHER), sync())
        answer = run_and_check(c, bind("", "s"), describe("P", ""), execute(""), sync())
        assert answer.rows == [[b"a"]] or answer.errors
    finally:
        c.close()


def test_a_named_statement_parsed_again_then_bound_in_one_pipeline(arena) -> None:
    c = client(arena)
    try:
        assert not c.send(parse("s", HELD), sync()).errors
        run_and_check(
            c, parse("s", OTHER), sync(), bind("", "s"), describe("P", ""), execute(""), sync()
        )
    finally:
        c.close()


def test_a_statement_prepared_in_sql_then_parsed_under_its_name(arena) -> None:
    c = client(arena)
    try:
        assert not c.query(f"PREPARE s AS {HELD}").errors
        run_and_check(
            c, parse("s", OTHER), sync(), bind("", "s"), describe("P", ""), execute(""), sync()
        )
    finally:
        c.close()


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_close_and_parse_discarded_after_an_error(arena, pipelined: bool) -> None:
    c = client(arena)
    try:
        assert not c.send(parse("s", HELD), sync()).errors
        breaking = (
            parse("", "SELECT 1/0"),
            bind("", ""),
            execute(""),
            codec.Close("S", "s").encode(),
            parse("s", OTHER),
            sync(),
        )
        run = (bind("", "s"), describe("P", ""), execute(""), sync())
        if pipelined:
            answer = c.send(*breaking, *run, ready=2)
            assert_no_secret(answer)
            assert any("was not made at the server" in e for e in answer.errors)
        else:
            assert c.send(*breaking).errors
            run_and_check(c, *run)
        # the session goes on, and the name can be prepared again
        assert not c.send(parse("s", OTHER), sync()).errors
        assert run_and_check(c, bind("", "s"), execute(""), sync()).rows == [[b"a"]]
    finally:
        c.close()


def test_the_unnamed_statement_parsed_in_a_discarded_batch(arena) -> None:
    c = client(arena)
    try:
        assert not c.send(parse("", HELD), sync()).errors
        # a Bind the server refuses (a value for a statement that takes none): the Parse
        # after it is discarded, and the server keeps the unnamed statement it had
        wrong = codec.Bind("", "", [0], [b"x"], [0]).encode()
        assert c.send(wrong, parse("", OTHER), sync()).errors
        run_and_check(c, bind("", ""), describe("P", ""), execute(""), sync())
    finally:
        c.close()


def test_a_held_cursor_declared_again_under_its_name(arena) -> None:
    c = client(arena)
    try:
        assert not c.query(f"DECLARE c CURSOR WITH HOLD FOR {HELD}").errors
        c.query(f"DECLARE c CURSOR WITH HOLD FOR {OTHER}")
        run_and_check(c, describe("P", "c"), execute("c"), sync())
        c.query("CLOSE ALL")
    finally:
        c.close()


def test_a_held_cursor_declared_again_and_executed_in_one_pipeline(arena) -> None:
    c = client(arena)
    try:
        assert not c.query(f"DECLARE c CURSOR WITH HOLD FOR {HELD}").errors
        c.send(query(f"DECLARE c CURSOR WITH HOLD FOR {OTHER}"), execute("c"), sync(), ready=2)
        run_and_check(c, describe("P", "c"), execute("c"), sync())
        c.query("CLOSE ALL")
    finally:
        c.close()


def test_a_portal_bound_under_a_held_cursors_name(arena) -> None:
    c = client(arena)
    try:
        assert not c.query(f"DECLARE c CURSOR WITH HOLD FOR {HELD}").errors
        c.send(parse("b", OTHER), bind("c", "b"), sync())
        run_and_check(c, describe("P", "c"), execute("c"), sync())
        c.query("CLOSE ALL")
    finally:
        c.close()


def test_a_write_awaiting_approval_is_not_run_under_another_statements_verdict(arena) -> None:
    """A dba's TRUNCATE needs approval at Bind; the statement parsed again under its name
    must not let the server bind the TRUNCATE under the new text's verdict."""
    c = client(arena, ("dba",))
    try:
        with arena.admin() as admin:
            before = admin.execute("SELECT count(*) FROM orders").fetchone()[0]
        assert before == 2
        c.send(parse("t", "TRUNCATE orders"), sync())
        c.send(parse("t", "SELECT 1"), sync())
        c.send(bind("", "t"), execute(""), sync())
        with arena.admin() as admin:
            assert admin.execute("SELECT count(*) FROM orders").fetchone()[0] == before
    finally:
        c.close()
        arena.reset_data()
