"""Probe P22 of the Postgres masks (helper pgattack14) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A recursive CTE's SEARCH and CYCLE clauses add columns lineage did not know of:

    WITH RECURSIVE r(id, e) AS (SELECT id, email FROM p22_people UNION ALL
      SELECT id, e FROM r WHERE false) SEARCH DEPTH FIRST BY e SET ord
    SELECT id FROM r ORDER BY ord

returned the ids in the order of their e-mail addresses (a sensitive column: ORDER BY
email is refused), `SEARCH ... BY note` in the order of the notes whose cards the value
detectors masked ('card 41 x', Ada's card, 'card 42 x'), `BY num` in the order of the
numbers one of which is a card sent as NULL; and `CYCLE e SET c USING path` returned path,
an array of the rows of e, as a column of no table: the addresses in it masked only by
the value detectors (a***@example.com), a password by nothing at all. pdp/sql/lineage.py
now gives a CTE's SEARCH column and CYCLE mark and path as values computed from the
columns they name: masked whole, ordering by the SEARCH column an ordering by them
(refused where ORDER BY of the columns is), the cycle's check a question about them.
"""

from __future__ import annotations

import pytest
from adversary import Arena, RawClient, assert_no_secret, bind, execute, parse, ready_client, sync
from pg_probe_stack import arena_fixture, assert_refused, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture(
    "CREATE TABLE p22_people (id int, email text, password text, note text, num bigint);"
    " INSERT INTO p22_people VALUES"
    " (1, 'zed@example.com', 'hunter2-z', 'card 4111 1111 1111 1111 on file', 4111111111111111),"
    " (2, 'amy@example.com', 'hunter2-a', 'card 41 x', 4100000000000000),"
    " (3, 'mia@example.com', 'hunter2-m', 'card 42 x', 4200000000000001)",
    "DROP TABLE p22_people",
)
reader = reader_fixture("mask-p22")

DENIED = "denied by policy"


def recursive(column: str, clause: str, select: str) -> str:
    return (
        f"WITH RECURSIVE r(id, v) AS (SELECT id, {column} FROM p22_people UNION ALL"
        f" SELECT id, v FROM r WHERE false) {clause} {select}"
    )


ORDERED = {
    "search_by_a_sensitive_column": recursive(
        "email", "SEARCH DEPTH FIRST BY v SET ord", "SELECT id FROM r ORDER BY ord"
    ),
    "breadth_first": recursive(
        "password", "SEARCH BREADTH FIRST BY v SET ord", "SELECT id FROM r ORDER BY ord"
    ),
    "search_by_free_text": recursive(
        "note", "SEARCH DEPTH FIRST BY v SET ord", "SELECT id FROM r ORDER BY ord"
    ),
    "search_by_a_wide_number": recursive(
        "num", "SEARCH DEPTH FIRST BY v SET ord", "SELECT id FROM r ORDER BY ord"
    ),
    "ordered_in_a_window": recursive(
        "email", "SEARCH DEPTH FIRST BY v SET ord", "SELECT id, rank() OVER (ORDER BY ord) FROM r"
    ),
    "cycle_over_free_text": recursive("note", "CYCLE v SET c USING path", "SELECT id FROM r"),
}


def test_the_server_orders_by_the_search_column(arena: Arena) -> None:
    """What the refused statements would have shown (the superuser's answer): the ids in
    the order of the addresses, and the path holding each address."""
    with arena.admin() as admin:
        ids = [i for (i,) in admin.execute(ORDERED["search_by_a_sensitive_column"]).fetchall()]
        cycle = recursive("password", "CYCLE v SET c USING path", "SELECT path::text FROM r")
        paths = admin.execute(cycle + " ORDER BY id").fetchall()
    assert ids == [2, 3, 1], ids
    assert "hunter2-z" in paths[0][0], paths


@pytest.mark.parametrize("sql", list(ORDERED.values()), ids=list(ORDERED))
def test_ordering_by_a_search_column_is_refused(reader: RawClient, sql: str) -> None:
    assert not assert_refused(reader, sql, DENIED).rows


def test_refused_in_the_extended_protocol_too(reader: RawClient) -> None:
    sql = ORDERED["search_by_a_sensitive_column"]
    answer = reader.send(parse("", sql), bind("", "", 1), execute(""), sync())
    assert answer.errors and DENIED in answer.errors[0], answer.messages
    assert not answer.rows


SHOWN = {
    "cycle_path_of_passwords": recursive(
        "password", "CYCLE v SET c USING path", "SELECT id, path::text FROM r ORDER BY id"
    ),
    "cycle_path_of_addresses": recursive(
        "email", "CYCLE v SET c USING path", "SELECT id, path FROM r ORDER BY id"
    ),
    "search_column_of_addresses": recursive(
        "email", "SEARCH DEPTH FIRST BY v SET ord", "SELECT id, ord::text FROM r ORDER BY id"
    ),
}


@pytest.mark.parametrize("sql", list(SHOWN.values()), ids=list(SHOWN))
def test_search_and_cycle_columns_are_masked_whole(reader: RawClient, sql: str) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    raw = answer.raw
    assert b"hunter2" not in raw and b"@example.com" not in raw, answer.rows
    if not answer.errors:
        assert [r[0] for r in answer.rows] == [b"1", b"2", b"3"], answer.rows
        assert all(r[1] in (b"[REDACTED]", None) for r in answer.rows), answer.rows


STILL = [
    # a search over a plain id, ordered by it, answers as before
    (recursive("id", "SEARCH DEPTH FIRST BY v SET ord", "SELECT id FROM r ORDER BY ord"),
     [[b"1"], [b"2"], [b"3"]]),
    (recursive("id", "CYCLE v SET c USING path", "SELECT id FROM r ORDER BY id"),
     [[b"1"], [b"2"], [b"3"]]),
]  # fmt: skip


@pytest.mark.parametrize("sql,rows", STILL, ids=[str(i) for i in range(len(STILL))])
def test_a_search_over_plain_columns_still_answers(
    reader: RawClient, sql: str, rows: list[list[bytes]]
) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows, answer.rows


def test_a_pii_reader_orders_by_the_search_column(arena: Arena) -> None:
    c = ready_client(arena, ("readonly", "pii-readers"), "mask-p22-pii")
    try:
        answer = c.query(ORDERED["search_by_a_sensitive_column"])
        assert not answer.errors and answer.rows == [[b"2"], [b"3"], [b"1"]], answer.messages
    finally:
        c.close()
