"""Probe P26 (helper pgattack8) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

What the planner runs. Planning a read of a table folds the calls of its stored
expressions whose arguments are all constants: an IMMUTABLE function of the database in an
index expression or predicate, a statistics expression, a CHECK (constraint exclusion) or a
partition key runs whenever a statement reading the table is planned, with the upstream's
rights (here: set_config of every password, read back by SHOW application_name; as the
superuser it could as well COPY ... TO PROGRAM). The catalogue facts
(proxies/postgres/user_code.py, read_code) found such calls by their constant arguments,
and missed:

- a call without arguments (`(id + public.f())`: its node's `:args <>`, no list at all);
- a partition key expression (`PARTITION BY RANGE ((id + public.f(7)))`);
- a call over a column of an SQL function the planner inlines (`public.wrap(id)`, whose
  body `SELECT $1 + public.f(3)` is folded once inlined);
- the code of a parent's inheritance children (and partitions), which a read of the parent
  plans too (`SELECT * FROM parent` ran a child's index expression, `WHERE id = 1` its
  CHECK).

And EXPLAIN, allowed to readers as a read, plans an INSERT with its columns' DEFAULTs and
its relation's rules (ON INSERT DO ALSO SELECT public.f(13)): `EXPLAIN INSERT INTO t (id)
VALUES (1)`, t's `DEFAULT public.f(5)`, ran f. An EXPLAIN now says what it plans (the
classifier's `explains`), and one planning a write is judged by what writing its relations
runs (postgres_user_code.rego).
"""

from __future__ import annotations

import asyncpg
import pytest
from adversary import Arena, assert_no_secret, ready_client
from pg_probe_stack import arena_fixture, assert_read_refused_unrun, code_ran

from pdp.sql import classify
from proxies.postgres import codec

pytestmark = pytest.mark.integration

# Each function RAISEs a NOTICE (code_ran) and keeps every password where SHOW reads it.
SETUP = """
CREATE FUNCTION public.p26_f() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN
  RAISE NOTICE 'p26 ran';
  PERFORM set_config('application_name', (SELECT string_agg(password, ',') FROM customers),
                     false);
  RETURN 1; END $$;
CREATE FUNCTION public.p26_g(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN
  RAISE NOTICE 'p26 ran';
  PERFORM set_config('application_name', (SELECT string_agg(password, ',') FROM customers),
                     false);
  RETURN $1; END $$;
CREATE FUNCTION public.p26_wrap(int) RETURNS int IMMUTABLE LANGUAGE sql
  AS 'SELECT $1 + public.p26_g(3)';
CREATE TABLE p26_none (id int);
CREATE INDEX ON p26_none ((id + public.p26_f()));
CREATE TABLE p26_part (id int) PARTITION BY RANGE ((id + public.p26_g(7)));
CREATE TABLE p26_part1 PARTITION OF p26_part FOR VALUES FROM (0) TO (100);
CREATE TABLE p26_inlined (id int);
CREATE INDEX ON p26_inlined (public.p26_wrap(id));
CREATE TABLE p26_parent (id int);
CREATE TABLE p26_child () INHERITS (p26_parent);
CREATE INDEX ON p26_child ((id + public.p26_g(11)));
CREATE TABLE p26_checked (id int);
CREATE TABLE p26_checked_child (CHECK (id > public.p26_g(9))) INHERITS (p26_checked);
CREATE TABLE p26_defaulted (id int, x int DEFAULT public.p26_g(5));
CREATE TABLE p26_ruled (id int);
CREATE RULE p26_also AS ON INSERT TO p26_ruled DO ALSO SELECT public.p26_g(13);
CREATE TABLE p26_column_indexed (id int);
CREATE INDEX ON p26_column_indexed (public.p26_g(id));
"""

arena = arena_fixture(SETUP)

READER = ("readonly",)
MASKED_DBA = ("dba",)
PII_DBA = ("dba", "pii-readers")

PLANNED_READS = [
    "SELECT * FROM p26_none",
    "SELECT id FROM public.p26_none WHERE id = 1",
    "SELECT * FROM p26_part",
    "SELECT * FROM p26_part WHERE id = 5",
    "SELECT * FROM p26_inlined",
    "SELECT * FROM p26_parent",
    "SELECT * FROM p26_checked WHERE id = 1",
    "SELECT count(*) FROM orders JOIN p26_none ON p26_none.id = orders.id",
]


@pytest.mark.parametrize("sql", PLANNED_READS)
def test_a_read_planning_the_databases_code_is_refused_unrun(arena: Arena, sql: str) -> None:
    assert_read_refused_unrun(arena, READER, "p26", sql)


async def test_the_same_read_through_the_extended_protocol(arena: Arena) -> None:
    conn = await asyncpg.connect(arena.dsn(arena.token("p26-x@example.com", READER)))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM p26_none WHERE id = $1", 1)
        assert await conn.fetchval("SHOW application_name") != "hunter2-ada,hunter2-bob"
    finally:
        await conn.close()


PLANNED_WRITES = [
    "EXPLAIN INSERT INTO p26_defaulted (id) VALUES (1)",
    "EXPLAIN (VERBOSE) INSERT INTO public.p26_defaulted (id) SELECT 1",
    "EXPLAIN UPDATE p26_defaulted SET x = DEFAULT WHERE id = 1",
    "EXPLAIN INSERT INTO p26_ruled VALUES (1)",  # the rule's action is planned too
]


@pytest.mark.parametrize("sql", PLANNED_WRITES)
def test_explaining_a_write_whose_default_the_planner_runs_is_refused_unrun(
    arena: Arena, sql: str
) -> None:
    assert_read_refused_unrun(arena, READER, "p26", sql)


@pytest.mark.parametrize("sql", [*PLANNED_WRITES, PLANNED_READS[0]])
def test_a_masked_dba_explains_or_reads_it_only_once_approved(arena: Arena, sql: str) -> None:
    c = ready_client(arena, MASKED_DBA, "p26")
    try:
        answer = c.query(sql)  # the arena's approvals time out after a second: refused
        assert_no_secret(answer)
        assert answer.errors and "approval" in answer.errors[0], answer.messages
        notices = [m for m in answer.messages if isinstance(m, codec.NoticeResponse)]
        assert all(n.message.startswith("portcullis: approval") for n in notices), notices
        assert "hunter2" not in (c.show("application_name") or "")
    finally:
        c.close()


def test_a_pii_reading_dba_still_explains_and_reads_them(arena: Arena) -> None:
    c = ready_client(arena, PII_DBA, "p26")
    try:
        for sql in (PLANNED_WRITES[0], PLANNED_READS[0]):
            answer = c.query(sql)
            assert not answer.errors, answer.messages
    finally:
        c.close()


ORDINARY = [
    "SELECT * FROM p26_column_indexed WHERE id = 3",  # f(id): a column's, not folded
    "SELECT * FROM orders",
    "EXPLAIN SELECT * FROM p26_defaulted",  # a read plans no DEFAULT
    "EXPLAIN INSERT INTO audit_log (what) VALUES ('x')",  # nextval: never folded
    "EXPLAIN INSERT INTO orders VALUES (1, 1, 1)",
]


@pytest.mark.parametrize("sql", ORDINARY)
def test_a_reader_still_reads_and_explains_what_runs_no_code(arena: Arena, sql: str) -> None:
    c = ready_client(arena, READER, "p26")
    try:
        answer = c.query(sql)
        assert not answer.errors, answer.messages
        assert not code_ran(answer, "p26")
    finally:
        c.close()


@pytest.mark.parametrize(
    ("sql", "explains"),
    [
        ("EXPLAIN INSERT INTO t VALUES (1)", ["insert"]),
        ("SELECT 1; EXPLAIN (ANALYZE false) UPDATE t SET x = 1", [None, "update"]),
        ("EXPLAIN VERBOSE SELECT * FROM t", ["select"]),
        ("EXPLAIN SELECT 1 INTO x", ["ddl"]),
        ("EXPLAIN EXECUTE p", ["execute"]),
        ("EXPLAIN MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", ["merge"]),
    ],
)
def test_an_explain_says_what_it_plans(sql: str, explains: list[str | None]) -> None:
    entries = [e for e in classify(sql) if not e.get("nested")]
    assert [e.get("explains") for e in entries] == explains


def test_an_explain_in_a_do_block_is_judged_as_planning_a_write() -> None:
    # (both walks classify a block's statements alike: neither says what it plans, which
    # the policy reads as "unknown", a write: postgres_user_code_test.rego)
    entries = classify("DO $$ BEGIN EXPLAIN INSERT INTO t VALUES (1); END $$")
    assert [e.get("explains") for e in entries if e["type"] == "explain"] == [None]
