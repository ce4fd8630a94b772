"""Probe P21 of the Postgres masks (helper pgattack14) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

The order of groups, for wide numbers. A card kept in a bigint (an unconstrained numeric, a
double precision, money: a column that can hold 13 or more digits) is sent as NULL, the
value detectors reading it as a card; `ORDER BY num` and `num > ...` are refused. But
GROUP BY and DISTINCT hand back their groups in the order of the grouped values whenever
the server sorts them (`GROUP BY num, B'1'::varbit`, which cannot be hashed), and so does a
merge join: `SELECT num FROM t GROUP BY num, B'1'::varbit` returned

    4000000000000000 / 4100000000000000 / NULL / 4200000000000001 / 5000000000000000

the masked card between 41... and 42...: its first digits, as ORDER BY num would have
told (pg mask p20 closed the same for free text). Lineage gives what a SELECT groups or
joins by as `arranged`; the policy now refuses it for a wide number column too, as for
free text (rego/portcullis/postgres_lineage.rego). Columns the database fills (identity,
bigserial, a validated foreign key to one) and the names the team lists
(postgres.plain_number_columns: id, amount, ...) are no wide numbers: joins of keys stay.
"""

from __future__ import annotations

import pytest
from adversary import Arena, RawClient, assert_no_secret, bind, execute, parse, ready_client, sync
from pg_probe_stack import arena_fixture, assert_answered, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture(
    "CREATE TABLE p21_nums (ref int, num bigint, ratio float8, big numeric);"
    " INSERT INTO p21_nums VALUES (1, 4111111111111111, 4111111111111111, 4111111111111111),"
    " (2, 4000000000000000, 4000000000000000, 4000000000000000),"
    " (3, 4100000000000000, 4100000000000000, 4100000000000000),"
    " (4, 4200000000000001, 4200000000000001, 4200000000000001),"
    " (5, 5000000000000000, 5000000000000000, 5000000000000000);"
    " CREATE TABLE p21_accounts (id bigserial PRIMARY KEY, label text);"
    " INSERT INTO p21_accounts (label) VALUES ('a'), ('b');"
    " CREATE TABLE p21_moves (move bigserial PRIMARY KEY,"
    " account bigint REFERENCES p21_accounts (id), amount bigint);"
    " INSERT INTO p21_moves (account, amount) VALUES (1, 10), (2, 20), (1, 30)",
    "DROP TABLE p21_nums, p21_moves, p21_accounts",
)
reader = reader_fixture("mask-p21")

DENIED = "denied by policy"

SORTED_GROUPS = "SELECT num FROM p21_nums GROUP BY num, B'1'::varbit"

ARRANGED = {
    "group_by_unhashable": SORTED_GROUPS,
    "group_by_beside_a_ref": "SELECT ref FROM p21_nums GROUP BY num, B'1'::varbit, ref",
    "distinct_unhashable": "SELECT DISTINCT num, B'1'::varbit FROM p21_nums",
    "distinct": "SELECT DISTINCT num FROM p21_nums",
    "float_grouped": "SELECT ratio FROM p21_nums GROUP BY ratio, B'1'::varbit",
    "numeric_grouped": "SELECT big FROM p21_nums GROUP BY big, B'1'::varbit",
    "group_with_count": "SELECT num, count(*) FROM p21_nums GROUP BY num",
    "order_read_by_row_number": "SELECT ref, row_number() OVER () FROM (SELECT ref FROM"
    " p21_nums GROUP BY num, B'1'::varbit, ref) s",
    "join_on_the_number": "SELECT a.ref FROM p21_nums a JOIN p21_nums b ON a.num = b.num",
    "semi_join_on_the_number": "SELECT ref FROM p21_nums a WHERE EXISTS (SELECT 1 FROM"
    " p21_nums b WHERE b.num = a.num)",
    "through_a_cte": "WITH g AS (SELECT num FROM p21_nums GROUP BY num, B'1'::varbit)"
    " SELECT num FROM g",
    "ordered_by_another_output_only": "SELECT num, count(*) FROM p21_nums GROUP BY num ORDER BY 2",
}


def test_the_server_sorts_such_groups(arena: Arena) -> None:
    """What the refused statements would have shown: the card among the numbers shown, in
    their order (the superuser's own answer, unmasked)."""
    with arena.admin() as admin:
        nums = [n for (n,) in admin.execute(SORTED_GROUPS).fetchall()]
    assert nums == sorted(nums) and nums[2] == 4111111111111111, nums


def test_a_pii_reader_sees_the_groups(arena: Arena) -> None:
    c = ready_client(arena, ("readonly", "pii-readers"), "mask-p21-pii")
    try:
        answer = c.query(SORTED_GROUPS)
        assert not answer.errors and len(answer.rows) == 5, answer.messages
    finally:
        c.close()


@pytest.mark.parametrize("sql", list(ARRANGED.values()), ids=list(ARRANGED))
def test_groups_in_the_order_of_a_wide_number_are_refused(reader: RawClient, sql: str) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    assert answer.errors and DENIED in answer.errors[0], answer.messages
    assert "the rows come back in the order of the values of number column" in answer.errors[0]
    assert not answer.rows


def test_refused_in_the_extended_protocol_too(reader: RawClient) -> None:
    answer = reader.send(parse("", SORTED_GROUPS), bind("", "", 1), execute(""), sync())
    assert answer.errors and DENIED in answer.errors[0], answer.messages
    assert not answer.rows


STILL = [
    # every output named in ORDER BY: rows tied on all of them look alike
    ("SELECT count(*) FROM p21_nums GROUP BY num ORDER BY 1", [[b"1"]] * 5),
    # one row
    ("SELECT count(DISTINCT num) FROM p21_nums", [[b"5"]]),
    ("SELECT count(*) FROM p21_nums a JOIN p21_nums b ON a.num = b.num", [[b"5"]]),
    # the numbers as they are, the card masked
    ("SELECT num FROM p21_nums WHERE ref = 1", [[None]]),
    # keys the database makes, and a listed name (amount), join and group as before
    ("SELECT a.label, m.amount FROM p21_moves m JOIN p21_accounts a ON a.id = m.account"
     " WHERE m.move = 2", [[b"b", b"20"]]),
    ("SELECT account, sum(amount) FROM p21_moves GROUP BY account ORDER BY account",
     [[b"1", b"40"], [b"2", b"20"]]),
    ("SELECT DISTINCT account FROM p21_moves ORDER BY 1", [[b"1"], [b"2"]]),
    ("SELECT amount FROM p21_moves GROUP BY amount, B'1'::varbit",
     [[b"10"], [b"20"], [b"30"]]),
    ("SELECT count(*) FROM p21_moves m JOIN p21_accounts a ON a.id = m.account", [[b"3"]]),
]  # fmt: skip


@pytest.mark.parametrize("sql,rows", STILL, ids=[str(i) for i in range(len(STILL))])
def test_what_shows_no_such_order_still_answers(
    reader: RawClient, sql: str, rows: list[list[bytes]]
) -> None:
    assert_answered(reader, sql, rows)


# Hash plans (HashAggregate, a hashed SetOp, a hash join) return groups in the order of
# their values' hashes. A free-text, wide-number or document column grouped is refused
# above whatever the plan. A sensitive column is masked whole: its groups all read
# alike, and any output telling them apart carries it (masked) or is refused (the rows in
# its order beside another output); how many groups there are is the equality the shipped
# policy answers (oracle.equality), and a set operation beside a constant is an ordering.
HASHED = [
    ("SELECT DISTINCT email FROM customers", None),
    ("SELECT DISTINCT email, 1 FROM customers", None),
    ("SELECT row_number() OVER (), e FROM (SELECT DISTINCT email e FROM customers) s", None),
    ("SELECT email FROM customers UNION SELECT 'x'", DENIED),
    ("SELECT a.id FROM customers a JOIN customers b ON a.email = b.email", DENIED),
    ("SELECT DISTINCT x, y FROM (SELECT email x, 0 y FROM customers UNION ALL"
     " SELECT 'ada@example.com', 1) s", DENIED),
]  # fmt: skip


@pytest.mark.parametrize("sql,refused", HASHED, ids=[str(i) for i in range(len(HASHED))])
def test_hash_order_of_a_column_masked_whole_shows_nothing(
    reader: RawClient, sql: str, refused: str | None
) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    if refused:
        assert answer.errors and refused in answer.errors[0], answer.messages
        return
    assert not answer.errors and answer.rows, answer.messages
    shown = {v for row in answer.rows for v in row if v is not None and not v.isdigit()}
    assert shown == {b"[REDACTED]"}, answer.rows
