"""Probe P20 of the Postgres masks (helper pgattack13) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

The order of groups. `ORDER BY note` is refused to readers: the value detectors mask the
card inside a note and show the rest, so where 'card **** **** **** 1111 on file' lands
among the notes shown answers `>` against each of them. But GROUP BY and DISTINCT hand
back their groups in the order of the grouped values whenever the server sorts them, and
a reader can make it sort: a grouping key that cannot be hashed (`B'1'::varbit`) leaves
no other plan (so do a large input and an index). `SELECT note FROM t GROUP BY note,
B'1'::varbit` returned

    card 3 lost / card 41 x / card **** **** **** 1111 on file / card 42 x / card 5 lost

the masked card between 41 and 42: its first digits, as ORDER BY note would have told.
A join comparing notes (`a.note = b.note`, IN, EXISTS: a merge join returns its rows in the
column's order) alike, and a document's masked keys through `GROUP BY profile`. Lineage
(pdp/sql/lineage.py) gives what a SELECT groups or joins by as `arranged` unless its ORDER
BY names every output or it aggregates into one row; the policy refuses it for a
free-text column and a whole document (rego/portcullis/postgres_lineage.rego), as the
sequence rule refused it for a sensitive column beside another output.
"""

from __future__ import annotations

import pytest
from adversary import Arena, RawClient, assert_no_secret, bind, execute, parse, ready_client, sync
from pg_probe_stack import arena_fixture, assert_answered, reader_fixture

pytestmark = pytest.mark.integration

# no primary key: grouping by (note, id) is not reduced to id
arena = arena_fixture(
    "CREATE TABLE p20_notes (id int, status text, note text);"
    " INSERT INTO p20_notes VALUES (1, 'open', 'card 4111 1111 1111 1111 on file'),"
    " (2, 'open', 'nothing to see'), (3, 'closed', 'card 3 lost'), (4, 'closed', 'card 5 lost'),"
    " (5, 'open', 'card 41 x'), (6, 'open', 'card 42 x');"
    " CREATE TABLE p20_docs (id int, profile jsonb);"
    """ INSERT INTO p20_docs VALUES (1, '{"password": "hunter2-m", "n": 1}'),"""
    """ (2, '{"password": "hunter2-a", "n": 1}'), (3, '{"password": "hunter2-z", "n": 1}')""",
    "DROP TABLE p20_notes, p20_docs",
)
reader = reader_fixture("mask-p20")

DENIED = "denied by policy"
MASKED = b"card **** **** **** 1111 on file"

SORTED_GROUPS = "SELECT note FROM p20_notes GROUP BY note, B'1'::varbit"

ARRANGED = {
    "group_by_unhashable": SORTED_GROUPS,
    "group_by_beside_an_id": "SELECT id FROM p20_notes GROUP BY note, B'1'::varbit, id",
    "distinct_unhashable": "SELECT DISTINCT note, B'1'::varbit FROM p20_notes",
    "distinct": "SELECT DISTINCT note FROM p20_notes",
    "group_with_count": "SELECT note, count(*) FROM p20_notes GROUP BY note",
    "order_read_by_an_aggregate": "SELECT string_agg(id::text, ',') FROM (SELECT id FROM"
    " p20_notes GROUP BY note, B'1'::varbit, id) s",
    "order_read_by_row_number": "SELECT id, row_number() OVER () FROM (SELECT id FROM"
    " p20_notes GROUP BY note, B'1'::varbit, id) s",
    "first_group": "SELECT id FROM (SELECT id FROM p20_notes GROUP BY note, B'1'::varbit, id)"
    " s LIMIT 1",
    "join_on_the_note": "SELECT a.id FROM p20_notes a JOIN p20_notes b ON a.note = b.note",
    "semi_join_on_the_note": "SELECT id FROM p20_notes a WHERE EXISTS (SELECT 1 FROM"
    " p20_notes b WHERE b.note = a.note)",
    "through_a_cte": "WITH g AS (SELECT note FROM p20_notes GROUP BY note, B'1'::varbit)"
    " SELECT note FROM g",
    "document_grouped": "SELECT id FROM p20_docs GROUP BY profile, B'1'::varbit, id",
    "ordered_by_another_output_only": "SELECT note, count(*) FROM p20_notes GROUP BY note"
    " ORDER BY 2",
}


def test_the_server_sorts_such_groups(arena: Arena) -> None:
    """What the refused statements would have shown: the masked card among the notes
    shown, in the notes' order (the superuser's own answer, unmasked)."""
    with arena.admin() as admin:
        notes = [n for (n,) in admin.execute(SORTED_GROUPS).fetchall()]
    assert notes == sorted(notes) and notes[2].startswith("card 4111"), notes


def test_a_pii_reader_sees_the_groups(arena: Arena) -> None:
    c = ready_client(arena, ("readonly", "pii-readers"), "mask-p20-pii")
    try:
        answer = c.query(SORTED_GROUPS)
        assert not answer.errors and len(answer.rows) == 6, answer.messages
    finally:
        c.close()


@pytest.mark.parametrize("sql", list(ARRANGED.values()), ids=list(ARRANGED))
def test_groups_in_the_order_of_a_partly_masked_value_are_refused(
    reader: RawClient, sql: str
) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    assert answer.errors and DENIED in answer.errors[0], answer.messages
    assert "the rows come back in the order of the values of column" in answer.errors[0]
    assert not answer.rows


def test_refused_in_the_extended_protocol_too(reader: RawClient) -> None:
    answer = reader.send(parse("", SORTED_GROUPS), bind("", ""), execute(""), sync())
    assert answer.errors and DENIED in answer.errors[0], answer.messages
    assert MASKED not in answer.raw and not answer.rows


STILL = [
    # every output named in ORDER BY: rows tied on all of them look alike
    ("SELECT count(*) FROM p20_notes GROUP BY note ORDER BY 1",
     [[b"1"]] * 6),
    ("SELECT id FROM p20_notes GROUP BY note, id ORDER BY id",
     [[str(i).encode()] for i in range(1, 7)]),
    # one row
    ("SELECT count(DISTINCT note) FROM p20_notes", [[b"6"]]),
    ("SELECT count(*) FROM p20_notes a JOIN p20_notes b ON a.note = b.note", [[b"6"]]),
    # a listed plain name (status) groups as before; notes shown as they are
    ("SELECT status, count(*) FROM p20_notes GROUP BY status ORDER BY status",
     [[b"closed", b"2"], [b"open", b"4"]]),
    ("SELECT DISTINCT status FROM p20_notes ORDER BY status", [[b"closed"], [b"open"]]),
    ("SELECT note FROM p20_notes WHERE id = 1", [[MASKED]]),
    ("SELECT id FROM p20_notes WHERE note = 'card 41 x'", [[b"5"]]),
    # a document's key taken out with a constant key, read as a number, groups (masked)
    ("SELECT (profile->>'n')::int, count(*) FROM p20_docs GROUP BY 1", [[None, b"3"]]),
]  # fmt: skip


@pytest.mark.parametrize("sql,rows", STILL, ids=[str(i) for i in range(len(STILL))])
def test_what_shows_no_such_order_still_answers(
    reader: RawClient, sql: str, rows: list[list[bytes]]
) -> None:
    assert_answered(reader, sql, rows)
