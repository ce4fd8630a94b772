"""Probe P42 of the Postgres proxy (helper pgattack18) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER): a
session's start-up takes the facts read before when the catalogue's marks have not moved
(CatalogWatch.session_facts, read_facts(known=...)), where it used to read them whole.

- A superuser outside the proxy renames a column of one of pg_catalog's views
  (`ALTER VIEW pg_catalog.pg_views RENAME COLUMN definition TO viewname`): only that
  view's pg_attribute rows are written (an OID below 16384), which neither MARK_SQL nor
  COLUMNS_MARK_SQL counted. A session starting after a first one read the facts took
  those facts, which trust pg_views.viewname (columns.py UNTRUSTED_SQL had not been
  asked again), and a reader's `SELECT reverse(viewname) FROM pg_views` read a view's
  definition (a card in it) past the value detectors. COLUMNS_MARK_SQL now counts the
  built-in relations' pg_attribute rows written since initdb too.
- The same superuser keeps MARK_SQL's count and xmin sum while rewriting a function's body
  (two rewrites whose xids were chosen: one older than the row, one newer by as much), so
  a session start (and the watch) took the facts from before. The marks now carry, beside
  the sum, the sum of each xmin hashed with a key of the process.
- A foreign data wrapper's handler changed (ALTER FOREIGN DATA WRAPPER ... HANDLER) wrote
  pg_foreign_data_wrapper alone, which no mark counted; MARK_SQL counts it now, with
  pg_foreign_server and pg_foreign_table.
- The code rows asked as a whole answer (upstream.session_answer) that failed once sent
  (its time ran out while a superuser held a lock on pg_proc) left the connection in use:
  the late answer was read as the answer to the next question. It is closed now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from adversary import Arena, assert_no_secret, ready_client
from pg_probe_stack import arena_fixture

from proxies.postgres import catalog_watch
from proxies.postgres.builtin_rows import CODE_ROWS_SQL
from proxies.postgres.upstream import connect, session_answer, session_query
from proxies.runtime.credentials import CredentialLease

pytestmark = pytest.mark.integration

arena = arena_fixture(
    "CREATE VIEW public.pga18_card AS SELECT 'card 4111 1111 1111 1111'::text AS c",
    "DROP VIEW IF EXISTS public.pga18_card",
)

# the card as reverse() turns it, and as translate() spells its digits
REVERSED = b"1111 1111 1111 1114"
LETTERS = b"ebbb bbbb bbbb bbbb"


def _start_a_session(arena: Arena) -> None:
    """A session through the proxy, started and ended (the watch keeps its facts)."""
    c = ready_client(arena, ("readonly",), "p42-first")
    try:
        answer = c.query("SELECT 1")
        assert not answer.errors, answer.errors
    finally:
        c.close()


def test_a_system_view_column_renamed_between_sessions_is_not_trusted(arena: Arena) -> None:
    _start_a_session(arena)
    with arena.admin() as admin:
        admin.execute(
            "ALTER VIEW pg_catalog.pg_views RENAME COLUMN viewname TO pga18_name;"
            "ALTER VIEW pg_catalog.pg_views RENAME COLUMN definition TO viewname"
        )
    try:
        c = ready_client(arena, ("readonly",), "p42-renamed")
        try:
            for sql in (
                "SELECT reverse(viewname) FROM pg_views WHERE schemaname = 'public'",
                "SELECT translate(viewname, '0123456789', 'abcdefghij') FROM pg_views"
                " WHERE schemaname = 'public'",
            ):
                answer = c.query(sql)
                assert_no_secret(answer, REVERSED, LETTERS)
                if answer.errors:
                    assert "denied by policy" in answer.errors[0], answer.errors
        finally:
            c.close()
    finally:
        with arena.admin() as admin:
            admin.execute(
                "ALTER VIEW pg_catalog.pg_views RENAME COLUMN viewname TO definition;"
                "ALTER VIEW pg_catalog.pg_views RENAME COLUMN pga18_name TO viewname"
            )


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of this probe's own on the real server (its DSN), dropped after."""
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pga18_p42 WITH (FORCE)")
        conn.execute("CREATE DATABASE pga18_p42")
    yield "host=127.0.0.1 port=5432 user=postgres dbname=pga18_p42"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pga18_p42 WITH (FORCE)")


def _xid(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_a_function_rewritten_with_chosen_xids_moves_the_mark(own_database: str) -> None:
    """count and xmin sum kept by two rewrites: one by a transaction whose xid is older
    than the first function's row (its xmin falls by c - a), one by a transaction whose
    xid is as much newer than the second's (it rises by as much). Other clients of the
    machine take xids meanwhile: several second functions are made, and the one whose
    xmin fits the xid taken is rewritten."""
    dsn = own_database

    def marks(conn: psycopg.Connection[Any]) -> list[str]:
        found = []
        for sql in (catalog_watch.MARK_SQL, catalog_watch.COLUMNS_MARK_SQL):
            row = conn.execute(sql).fetchone()
            assert row is not None
            found.append(row[0])
        return found

    def plain(conn: psycopg.Connection[Any]) -> object:
        arms = catalog_watch.MARK_SQL.split(") FROM (", 1)[1]
        row = conn.execute(f"SELECT count(*), sum(x) FROM ({arms}").fetchone()
        return row

    with (
        psycopg.connect(dsn, autocommit=True) as c,
        psycopg.connect(dsn) as early,
        psycopg.connect(dsn) as late,
    ):
        a = _xid(early, "SELECT pg_current_xact_id()::text")
        for _ in range(30):  # the first function's xmin well after a
            c.execute("SELECT pg_current_xact_id()")
        c.execute("CREATE FUNCTION public.v() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1'")
        made = _xid(c, "SELECT xmin::text FROM pg_proc WHERE oid = 'public.v()'::regprocedure")
        seconds: dict[int, int] = {}
        for _attempt in range(20):
            for i in range(len(seconds), len(seconds) + 40):
                c.execute(f"CREATE FUNCTION public.w{i}() RETURNS int LANGUAGE sql AS 'SELECT 2'")
                xmin = f"SELECT xmin::text FROM pg_proc WHERE oid = 'public.w{i}()'::regprocedure"
                seconds[_xid(c, xmin)] = i
            before, plain_before = marks(c), plain(c)
            d = _xid(late, "SELECT pg_current_xact_id()::text")
            e = d - (made - a)
            if e in seconds:
                break
            late.rollback()  # others' xids fell where the one needed was: once more
        else:
            pytest.fail(f"no second function's xmin fit ({a}, {made}, {d})")
        early.execute(
            "CREATE OR REPLACE FUNCTION public.v() RETURNS int LANGUAGE plpgsql VOLATILE"
            " AS 'BEGIN RAISE NOTICE ''ran''; RETURN 1; END'"
        )
        late.execute(
            f"CREATE OR REPLACE FUNCTION public.w{seconds[e]}() RETURNS int LANGUAGE sql"
            " AS 'SELECT 3'"
        )
        late.commit()
        early.commit()
        after = marks(c)
        # the plain count and xmin sum (what MARK_SQL was) are as they were
        assert plain(c) == plain_before
    assert after != before, (before, after)


def test_a_foreign_data_wrappers_handler_changed_moves_the_mark(own_database: str) -> None:
    """Reading a foreign table runs its wrapper's handler (user_code: the relation's read
    code). ALTER FOREIGN DATA WRAPPER ... HANDLER writes pg_foreign_data_wrapper alone:
    the marks stayed, and a session start took facts naming the handler before."""
    with psycopg.connect(own_database, autocommit=True) as c:
        c.execute("CREATE EXTENSION file_fdw")
        c.execute("CREATE SERVER p42_files FOREIGN DATA WRAPPER file_fdw")
        c.execute(
            "CREATE FOREIGN TABLE public.p42_lines (line text) SERVER p42_files"
            " OPTIONS (program 'echo p42')"
        )
        c.execute(
            "CREATE FUNCTION public.p42_handler() RETURNS fdw_handler LANGUAGE c STRICT"
            " AS '$libdir/file_fdw', 'file_fdw_handler'"
        )
        before = [c.execute(sql).fetchone() for sql in (catalog_watch.MARK_SQL,)]
        c.execute("ALTER FOREIGN DATA WRAPPER file_fdw HANDLER public.p42_handler")
        after = [c.execute(sql).fetchone() for sql in (catalog_watch.MARK_SQL,)]
        assert c.execute("SELECT line FROM public.p42_lines").fetchall() == [("p42",)]
    assert after != before, (before, after)


def test_a_whole_answer_that_failed_once_sent_is_not_read_as_the_next(own_database: str) -> None:
    """A superuser holds pg_proc locked while a start-up asks the code rows: the answer
    comes after session_answer gave up, and the next question on that connection read it
    (the code rows as the answer to `SELECT 'p42'`)."""

    async def run() -> list[str] | None:
        lease = CredentialLease("static", username="postgres")
        params = {"user": "postgres", "database": "pga18_p42"}
        upstream = await connect("127.0.0.1", 5432, params, lease, None)
        try:
            with psycopg.connect(own_database) as holder:
                holder.execute("LOCK TABLE pg_catalog.pg_proc IN ACCESS EXCLUSIVE MODE")
                sql = catalog_watch.PINNED_PATH + CODE_ROWS_SQL
                assert await session_answer(upstream, sql, timeout=0.5) is None
                holder.rollback()  # the lock let go: the code rows' answer is sent
            return await session_query(upstream, "SELECT 'p42'")
        finally:
            upstream.writer.close()

    assert asyncio.run(run()) in (None, ["p42"])
