"""Probe P28 (helper pgattack26): a masked dba asked pg_file_settings about a stored password.

With a superuser upstream, pg_file_settings shows the configuration files' lines as
written, those ALTER SYSTEM stored in postgresql.auto.conf among them: a replication
password in primary_conninfo. Through the proxy straight at the database, a dba outside
pii-readers got its rows masked whole, but

    SELECT count(*) FROM pg_file_settings WHERE setting LIKE '%password=hunter2-s%'

answered 1 (0 for a wrong guess): the password, a letter at a time. Now the relation is
denied to everyone not in pii-readers, as the column statistics are
(rego/portcullis/postgres_lineage.rego; a view over it too, postgres.rego), and a
pii-reading dba still reads it.
"""

from __future__ import annotations

import pytest
from adversary import Arena, ready_client
from pg_probe_stack import arena_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture()

STORED = "host=10.0.0.9 user=rep password=hunter2-sys"
QUESTIONS = [
    "SELECT count(*) FROM pg_file_settings WHERE setting LIKE '%password=hunter2-s%'",
    "SELECT name FROM pg_catalog.pg_file_settings WHERE setting LIKE '%hunter2%'",
    "SELECT count(*) FROM PG_FILE_SETTINGS WHERE position('hunter2-s' IN setting) > 0",
    "SELECT name FROM pg_file_settings ORDER BY setting",
    "SELECT * FROM pg_show_all_file_settings() WHERE setting LIKE '%hunter2%'",
]


def test_stored_settings_are_not_questioned_by_a_masked_dba(arena: Arena) -> None:
    with arena.admin() as admin:
        # read from the file at each query: nothing is reloaded, and it is reset below
        admin.execute(f"ALTER SYSTEM SET primary_conninfo = '{STORED}'")
    try:
        dba = ready_client(arena, ("dba",), "p28")
        pii = ready_client(arena, ("dba", "pii-readers"), "p28p")
        try:
            for sql in QUESTIONS:
                answer = dba.query(sql)
                assert answer.refused and not answer.rows, (sql, answer.messages)
                assert b"hunter2" not in answer.raw, sql
            answer = dba.query("SELECT 1")
            assert answer.rows == [[b"1"]], answer.messages
            answer = pii.query(QUESTIONS[0])
            assert answer.rows == [[b"1"]], answer.messages
        finally:
            dba.close()
            pii.close()
    finally:
        with arena.admin() as admin:
            admin.execute("ALTER SYSTEM RESET primary_conninfo")
