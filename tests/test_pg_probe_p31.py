"""Probe P31 (helper pgattack10): built-in catalogue rows the proxy's own catalogue
questions stand on, written in place by a superuser (the OIDs kept), blind the facts no
more.

The questions compare, join, aggregate and print through pg_catalog's operators,
aggregates, types, casts and index support functions. p29 stopped a superuser's new
operator, cast or function from being picked; an UPDATE of the built-in rows themselves
was still taken as the built-in: `UPDATE pg_operator SET oprcode = 'int8eq' WHERE oid =
'>(int8,int8)'::regoperator` turned every `xmin > boundary` of the questions false, so a
built-in changed since initdb (here `CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp)
... LANGUAGE plpgsql`, named among the shadowed names before) was named no more, and a
reader's `SELECT age(...)` would have run it unjudged, as the superuser. Here such edits
are made in a scratch database and the proxy's own read_facts, on a real server
connection, must read no facts (sessions refused, fail closed); an edit elsewhere (a
REVOKE on a function the questions do not call, a built-in replaced by CREATE OR REPLACE)
still reads them.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from adversary import Arena, RawClient
from pg_probe_stack import arena_fixture, code_ran
from test_pg_probe_p29 import _facts, _read, _scratch

from proxies.postgres.builtin_rows import changed_builtins, record_fields

pytestmark = pytest.mark.integration

AGE = """CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp) RETURNS interval
  LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'p31 ran'; RETURN '1 day'; END $$"""

EDITS = [
    # the comparison of every xmin with initdb's: never true
    "UPDATE pg_catalog.pg_operator SET oprcode = 'pg_catalog.int8eq'::regproc"
    " WHERE oid = 'pg_catalog.>(int8,int8)'::regoperator",
    "UPDATE pg_catalog.pg_operator SET oprcode = 'pg_catalog.oidne'::regproc"
    " WHERE oid = 'pg_catalog.=(oid,oid)'::regoperator",
    # an aggregate the questions use, another transition function
    "UPDATE pg_catalog.pg_aggregate SET aggtransfn = 'pg_catalog.int8dec'::regproc"
    " WHERE aggfnoid = 'pg_catalog.count()'::regprocedure",
    "UPDATE pg_catalog.pg_aggregate SET aggfinalfn = 'pg_catalog.json_object_agg_finalfn'"
    "::regproc WHERE aggfnoid = 'pg_catalog.json_agg(anyelement)'::regprocedure",
    # how a type is printed or read
    "UPDATE pg_catalog.pg_type SET typoutput = 'pg_catalog.int4out'::regproc"
    " WHERE oid = 'pg_catalog.xid'::regtype",
    # a cast, an index's comparison function
    "UPDATE pg_catalog.pg_cast SET castmethod = 'i'"
    " WHERE castsource = 'regclass'::regtype AND casttarget = 'oid'::regtype",
    "UPDATE pg_catalog.pg_amproc SET amproc = 'pg_catalog.btint4cmp'::regproc"
    " WHERE amproc = 'pg_catalog.btoidcmp'::regproc",
    # a function the questions call: its row (support function, strictness) rewritten
    "ALTER FUNCTION pg_catalog.regexp_replace(text, text, text) CALLED ON NULL INPUT",
    "UPDATE pg_catalog.pg_proc SET prosrc = 'textout'"
    " WHERE oid = 'pg_catalog.int8out(int8)'::regprocedure",
    # a function an operator the questions use runs
    "ALTER FUNCTION pg_catalog.textcat(text, text) COST 2",
]


@pytest.fixture
def scratch() -> Iterator[str]:
    yield from _scratch("pgattack11_p31")  # (not p29's: the two files may run at once)


@pytest.mark.parametrize("edit", EDITS)
def test_a_built_in_row_the_questions_stand_on_written_in_place_refuses_the_facts(
    scratch: str, edit: str
) -> None:
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute(AGE)
    before = _facts(scratch)
    assert "age" in before.shadowed  # the replaced built-in is judged as the database's
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute(edit)
    assert _read(scratch) is None  # not judged by: sessions refused


def test_edits_the_questions_do_not_stand_on_still_read_the_facts(scratch: str) -> None:
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute(AGE)
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) FROM PUBLIC")
        conn.execute("COMMENT ON FUNCTION pg_catalog.lower(text) IS 'p31'")
    facts = _facts(scratch)
    assert "age" in facts.shadowed
    assert facts.user_code["view_functions"] == {"public.v": ["public.f"]}


def test_rows_that_are_not_all_there_refuse() -> None:
    """Read in Python, not by the server's operators: a row missing, an answer that is not
    a record, a database without template0, a function the questions call not there."""
    template0 = "(d,4,700,0,0,0,template0)"
    proc = "(p,1242,1,11,0,0,count)"
    operator = "(o,1,1,1242,26,26,)"
    assert changed_builtins([template0, proc, operator], ("count",), 800) == [
        f"{c} (empty)" for c in ("pg_aggregate", "pg_amproc", "pg_cast", "pg_type")
    ]
    assert changed_builtins([proc, operator], ("count",), 800)
    assert changed_builtins(["garbage"], ("count",), 800)
    assert changed_builtins([template0], ("count",), 800)
    # written since initdb: an operator on oid; one on money (790) is not the questions'
    late = "(o,2,900,1242,26,26,)"
    money = "(o,3,900,1242,790,790,)"
    rest = [
        "(a,1242,1,1242,0,0,)",
        "(s,9,1,1242,26,26,)",
        "(c,8,1,0,25,26,)",
        "(t,26,1,1242,26,26,)",
    ]
    assert changed_builtins([template0, proc, operator, *rest], ("count",), 800) == []
    assert changed_builtins([template0, proc, late, *rest], ("count",), 800) == ["pg_operator 2"]
    assert changed_builtins([template0, proc, money, *rest], ("count",), 800) == []
    assert record_fields('(a,"b,""c\\\\",,d)') == ["a", 'b,"c\\', "", "d"]


# --- through the real stack ------------------------------------------------------------

arena = arena_fixture(AGE.replace("'p31 ran'", "'p31 ran %', current_user") + ";" + EDITS[0])


def test_a_reader_never_runs_the_built_in_changed_behind_the_blinded_questions(
    arena: Arena,
) -> None:
    c = RawClient(arena.port, arena.token("p31@example.com"), arena.database)
    try:
        if c.ready:  # (before: the session opened, and the replaced age() was allowed)
            answer = c.query("SELECT age('2020-01-01'::timestamp)")
            assert not code_ran(answer, "p31"), answer.messages
            assert answer.errors, answer.messages
        else:
            assert c.startup.errors, c.startup.messages
            assert "catalog" in c.startup.errors[0], c.startup.errors
    finally:
        c.close()
