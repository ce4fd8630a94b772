"""Probe p43: a start-up's snapshot question answered by a superuser's own function.

A session start takes the facts read before when the server's snapshot is still the one
asked just before they were read (catalog_watch.CatalogWatch.session_facts). The question
calls `pg_catalog.pg_current_snapshot()` by name on a connection new to it: a superuser
who renamed the built-in and made a `pg_catalog.pg_current_snapshot()` of their own (an
SQL function is enough) answering the old snapshot would have every later session start
with the facts of before, never reading the catalogue again. Such a start-up also asks
OVERLOADED_SQL (a function made after initdb in pg_catalog under a question's name), and
reads whole, and refuses, when it finds one.

Real PostgreSQL, the real proxy, psycopg; the database tampered with is the arena's own.
"""

from __future__ import annotations

import psycopg
import pytest
from adversary import Arena
from pg_probe_stack import arena_fixture

arena = arena_fixture()


def _session(arena: Arena) -> list[tuple[object, ...]]:
    with psycopg.connect(arena.dsn(arena.token("p43-reader")), autocommit=True) as conn:
        return conn.execute("SELECT 1").fetchall()


def test_a_snapshot_question_answered_by_the_databases_function_is_not_trusted(
    arena: Arena,
) -> None:
    assert _session(arena) == [(1,)]
    whole = arena.proxy.databases[arena.database].catalog._whole
    assert whole is not None
    snapshot = whole[1]
    with arena.admin() as admin:
        admin.execute(
            "ALTER FUNCTION pg_catalog.pg_current_snapshot() RENAME TO p43_current_snapshot"
        )
        admin.execute(
            "CREATE FUNCTION pg_catalog.pg_current_snapshot() RETURNS pg_catalog.pg_snapshot"
            f" LANGUAGE sql AS $$ SELECT '{snapshot}'::pg_catalog.pg_snapshot $$"
        )
        # the question, as a start-up asks it, now answers the snapshot of before
        row = admin.execute(
            "SELECT pg_catalog.textin(pg_catalog.pg_snapshot_out(pg_catalog.pg_current_snapshot()))"
        ).fetchone()
        assert row == (snapshot,)
    with pytest.raises(psycopg.OperationalError, match="upstream catalog could not be read"):
        _session(arena)
