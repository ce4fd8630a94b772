"""Probe P21 (helper pgattack6) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

A range type's subtype operator class. Every comparison of two ranges (&&, =, <, ORDER
BY, DISTINCT) compares their bounds by the support function of the operator class
pg_range.rngsubopc names. A superuser's `UPDATE pg_range SET rngsubopc = <an operator
class of theirs> WHERE rngtypid = 'int4range'::regtype` (or CREATE TYPE ... AS RANGE
(subtype_opclass = ...)) ran their PL/pgSQL for a reader's `SELECT int4range(1, 5) &&
int4range(2, 6)`: the catalogue facts followed a range's subtype_diff and canonical
(type_code), not its operator class. Its support functions, when the database's, are now
type_code too: a built-in range given them is listed among user_casts ("int4range <-> text
by public.f": every statement judged).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, ready_client, running_arena
from pg_probe_stack import code_ran

pytestmark = pytest.mark.integration

MADE = """
CREATE FUNCTION public.p21_cmp(int4, int4) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN RAISE NOTICE 'p21 ran'; PERFORM set_config('application_name', 'p21', false);
  RETURN btint4cmp($1, $2); END $$;
CREATE OPERATOR CLASS public.p21_int4_ops FOR TYPE int4 USING btree AS
  OPERATOR 1 pg_catalog.<, OPERATOR 2 pg_catalog.<=, OPERATOR 3 pg_catalog.=,
  OPERATOR 4 pg_catalog.>=, OPERATOR 5 pg_catalog.>, FUNCTION 1 public.p21_cmp(int4, int4);
UPDATE pg_catalog.pg_range SET rngsubopc =
  (SELECT oid FROM pg_catalog.pg_opclass WHERE opcname = 'p21_int4_ops')
  WHERE rngtypid = 'int4range'::regtype;
"""
UNMADE = """
UPDATE pg_catalog.pg_range SET rngsubopc =
  (SELECT c.oid FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod
   WHERE c.opcname = 'int4_ops' AND a.amname = 'btree')
  WHERE rngtypid = 'int4range'::regtype;
DROP OPERATOR FAMILY public.p21_int4_ops USING btree;
DROP FUNCTION public.p21_cmp;
"""
READS = [
    "SELECT int4range(1, 5) && int4range(2, 6)",
    "SELECT DISTINCT int4range(id, id + 1) FROM orders",
]


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
        yield gateway


@pytest.mark.parametrize("sql", READS)
@pytest.mark.parametrize("groups", [("readonly",), ("dba",)], ids=["reader", "masked dba"])
def test_a_built_in_ranges_subtype_class_given_the_databases_code_runs_in_no_read(
    arena: Arena, groups: tuple[str, ...], sql: str
) -> None:
    with arena.admin() as admin:
        admin.execute(MADE)
    try:
        c = ready_client(arena, groups, "p21")
        try:
            answer = c.query(sql)
            assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
            assert "int4range <-> text by public.p21_cmp" in answer.errors[0]
            assert not code_ran(answer, "p21") and not answer.rows, answer.messages
        finally:
            c.close()
    finally:
        with arena.admin() as admin:
            admin.execute(UNMADE)


def test_a_reader_compares_ranges_as_before(arena: Arena) -> None:
    c = ready_client(arena, ("readonly",), "p21")
    try:
        for sql in READS:
            answer = c.query(sql)
            assert not answer.errors and answer.rows, answer.messages
    finally:
        c.close()
