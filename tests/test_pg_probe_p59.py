"""Probe P59 (helper pgattack24): behind pgbouncer in transaction mode, what a server
connection keeps for its session was read and changed by the next client.

An application straight at pgbouncer (as an application beside the gateway does) left on
the one server connection (pool_size 1) a named prepared statement and a WITH HOLD cursor
whose text names an SSN, and a session-level advisory lock. Then a reader through the
proxy:

    SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%123-45%'   -- 1
    SELECT count(*) FROM pg_cursors WHERE statement LIKE '%123-45%'               -- 1
    FETCH ALL FROM appcur         -- the application's cursor, used up
    SELECT pg_advisory_unlock_all()   -- the application's lock released

and a masked dba counted pg_backend_memory_contexts `WHERE ident LIKE '%ssn = ''123-4%'`
(the application's cached plan's text: 2, and 0 for '999-4'), and its
`SELECT pg_advisory_lock(7)` and `SELECT setseed(0.5)` stayed for the next session; a
reader's `DEALLOCATE ALL`, `UNLISTEN *` or `DISCARD ALL` / `DISCARD TEMP` ended the
application's prepared statements, notifications and temporary tables (the pooler refuses
the proxy's sessions all of these, so they can only be another's). Elsewhere each lists or
changes only the session's own. Now behind the pooler the statement text of prepared
statements, cursors and cached plans is denied outside pii-readers, and FETCH, MOVE and
CLOSE, DEALLOCATE, UNLISTEN and DISCARD ALL / TEMP, and the session-level advisory locks
and the seed, are refused for everyone (rego/portcullis/postgres_pooler.rego); the
transaction-level advisory locks stay.
"""

from __future__ import annotations

import psycopg
import pytest
from pooler_stack import made_for_the_role, pooled_admin, straight_at_pgbouncer
from test_pgbouncer_pooler import Pooled, pooled_gateway, psql

pytestmark = pytest.mark.integration

APP_QUERY = "SELECT id FROM customers WHERE ssn = '123-45-6789'"
APP_CURSOR = (
    "DECLARE appcur CURSOR WITH HOLD FOR SELECT name FROM customers WHERE ssn = '123-45-6789'"
)

QUESTIONS = [
    "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%123-45%'",
    "SELECT count(*) FROM pg_catalog.pg_cursors WHERE statement LIKE '%123-45%'",
    "SELECT statement FROM pg_prepared_statement()",
    "SELECT name FROM pg_cursor()",
]
MOVES = [
    "FETCH ALL FROM appcur",
    "MOVE FORWARD ALL IN appcur",
    "CLOSE appcur",
    "CLOSE ALL",
    "SELECT pg_advisory_unlock_all()",
    "SELECT pg_advisory_unlock(4242)",
    "SELECT pg_advisory_lock(7)",
    "SELECT pg_try_advisory_lock(7)",
    "SELECT setseed(0.5)",
    "DEALLOCATE ALL",
    "DEALLOCATE _pg3_0",
    "UNLISTEN *",
    "DISCARD TEMP",
    "DISCARD ALL",
]


def _app_leaves_its_session_state(gw: Pooled) -> None:
    with psycopg.connect(straight_at_pgbouncer(gw), autocommit=True) as app:
        app.execute(APP_QUERY, prepare=True)
        with app.transaction():
            app.execute(APP_CURSOR)
        app.execute("SELECT pg_advisory_lock(4242)")
        app.execute("SET default_transaction_read_only = off")
        app.execute("CREATE TEMP TABLE app_scratch AS SELECT 1 AS id")
        app.execute("RESET default_transaction_read_only")


def _held(gw: Pooled) -> list[tuple[object, ...]]:
    """The advisory locks held in the pooled database."""
    with pooled_admin(gw) as admin:
        return admin.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY 1"
        ).fetchall()


async def test_another_sessions_statements_cursors_and_locks_are_not_reached(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        _app_leaves_its_session_state(gw)
        before = _held(gw)
        assert before == [(4242,)]
        outside: list[tuple[str, ...]] = [("readonly",), ("dba",)]
        for groups in outside:
            dsn = gw.dsn(gw.token(groups))
            for sql in QUESTIONS:
                code, out, err = await psql(dsn, sql)
                assert code != 0 and "behind a transaction pooler" in err, (groups, sql, out, err)
        for groups in [*outside, ("dba", "pii-readers")]:
            dsn = gw.dsn(gw.token(groups))
            for sql in MOVES:
                code, out, err = await psql(dsn, sql)
                assert code != 0 and "behind a transaction pooler" in err, (groups, sql, out, err)
        assert _held(gw) == before
        # the application's cursor still has its row (nothing fetched it), and its
        # prepared statement and temporary table are still there
        with psycopg.connect(straight_at_pgbouncer(gw), autocommit=True) as app:
            assert app.execute("FETCH ALL FROM appcur").fetchall() == [("Ada",)]
            kept = "SELECT count(*) FROM pg_prepared_statements, pg_temp.app_scratch"
            assert app.execute(kept).fetchall() == [(1,)]


async def test_cached_plans_of_another_session_answer_no_question(tmp_path) -> None:
    """pg_backend_memory_contexts names each cached plan by its statement text (an upstream
    role reading all statistics may read it: a superuser's does)."""
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        made_for_the_role(gw, "GRANT pg_read_all_stats TO {role}")
        _app_leaves_its_session_state(gw)
        dba = gw.dsn(gw.token(("dba",)))
        for pattern in ("123-4", "999-4"):
            code, out, err = await psql(
                dba,
                "SELECT count(*) FROM pg_backend_memory_contexts"
                f" WHERE ident LIKE '%ssn = ''{pattern}%'",
            )
            assert code != 0 and "behind a transaction pooler" in err, (pattern, out, err)
        code, out, err = await psql(
            gw.dsn(gw.token(("dba", "pii-readers"))),
            "SELECT count(*) > 0 FROM pg_backend_memory_contexts",
        )
        assert code == 0 and out.strip() == "t", (out, err)


async def test_what_ends_with_the_transaction_stays(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        dba = gw.dsn(gw.token(("dba", "pii-readers")))
        code, out, err = await psql(
            dba, "BEGIN; SELECT pg_advisory_xact_lock(7); SELECT count(*) FROM customers; COMMIT"
        )
        assert code == 0 and out.split() == ["BEGIN", "2", "COMMIT"], (out, err)
        code, out, err = await psql(dba, "SELECT count(*) FROM pg_prepared_statements")
        assert code == 0 and out.strip() == "0", (out, err)
