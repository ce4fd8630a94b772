"""Probe P28 (helper pgattack8) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

pg_catalog searched later. Unqualified names resolve over the session's search_path, with
pg_catalog first unless the path names it later, and the database's default may:
`ALTER DATABASE ... SET search_path = public, pg_catalog` (or ALTER ROLE ... SET). The
proxy's facts left out a type the database made under a built-in type's name (a domain
public.text), as pg_catalog's would be found first; with that default:

- a reader's `SELECT 'x'::text` (CAST('y' AS text), '{a}'::text[]) ran the domain's CHECK,
  a PL/pgSQL function of the database, as the superuser (here: set_config of every
  password, read back by SHOW application_name);
- so did the proxy's own catalogue questions, at every session's start, on the session's
  connection (`count(*)::text || ...`): a reader who only connected read the passwords.

Now the database's types count named like a built-in too (user_code.py), and every question
the proxy asks of the catalogue runs with only pg_catalog (and pg_temp, last) on its path
(catalog_watch.PINNED_PATH).
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from adversary import Arena, assert_no_secret, ready_client, running_arena
from pg_probe_stack import assert_read_refused_unrun, code_ran

pytestmark = pytest.mark.integration

CODE = """
CREATE FUNCTION public.p28_check(pg_catalog.text) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN
  RAISE NOTICE 'p28 ran';
  PERFORM pg_catalog.set_config('application_name',
    (SELECT pg_catalog.string_agg(password, ',') FROM public.customers), false);
  RETURN true; END $$;
CREATE DOMAIN public.text AS pg_catalog.text CHECK (public.p28_check(VALUE));
"""


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    """The arena, its database's default search path putting public before pg_catalog."""
    with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
        path = "public, pg_catalog"
        with gateway.admin() as admin:
            admin.execute(f'ALTER DATABASE "{gateway.database}" SET search_path = {path}')
            admin.execute(CODE)
        yield gateway


READER = ("readonly",)


def test_a_session_starting_runs_none_of_the_databases_code(arena: Arena) -> None:
    c = ready_client(arena, READER, "p28")
    try:
        assert not code_ran(c.startup, "p28"), c.startup.messages
        assert_no_secret(c.startup)
        assert "hunter2" not in (c.params.get("application_name") or "")
        assert "hunter2" not in (c.show("application_name") or "")
        assert c.show("search_path") == "public, pg_catalog"  # the database's, unchanged
    finally:
        c.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'x'::text",
        "SELECT CAST('y' AS text)",
        "SELECT '{a}'::text[]",
        "SELECT 'x'::pg_catalog.text",  # (the same name, judged alike: the safe mistake)
    ],
)
def test_a_type_named_like_a_built_in_is_the_databases(arena: Arena, sql: str) -> None:
    assert_read_refused_unrun(arena, READER, "p28", sql)


async def test_the_same_through_the_extended_protocol(arena: Arena) -> None:
    conn = await asyncpg.connect(arena.dsn(arena.token("p28-x@example.com", READER)))
    try:
        assert "hunter2" not in await conn.fetchval("SHOW application_name")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT $1::text", "x")
        assert "hunter2" not in await conn.fetchval("SHOW application_name")
    finally:
        await conn.close()


def test_a_reader_still_reads_text_columns(arena: Arena) -> None:
    c = ready_client(arena, READER, "p28")
    try:
        answer = c.query("SELECT name FROM customers ORDER BY id")
        assert not answer.errors and answer.rows == [[b"Ada"], [b"Bob"]], answer.messages
        assert not code_ran(answer, "p28")
    finally:
        c.close()
