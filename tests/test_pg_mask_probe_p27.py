"""Probe P27 (helper pgattack25): a masked dba read an application's setting unmasked.

`ALTER DATABASE ... SET app.api_key = 'hunter2-ada'` keeps the setting for every session,
and pg_db_role_setting holds it masked for a dba outside pii-readers (setconfig comes back
NULL). Through the proxy straight at the database, that dba's

    SELECT current_setting('app.api_key')                 -- hunter2-ada
    SELECT current_setting(name) FROM (VALUES ('app.api_key')) v(name)

answered it unmasked: no column's name said what it was (`SHOW app.api_key` and `...
AS api_key` were masked by the name alone, and `SHOW app.note` would not be). Now an
application's setting (a name with a dot) is denied to everyone not in pii-readers
(rego/portcullis/postgres.rego), by a literal name, a name that is not one, or a bound
one (judged at Bind, as readers' are); the server's own settings stay readable.
"""

from __future__ import annotations

import psycopg
import pytest
from adversary import Arena, ready_client
from pg_probe_stack import arena_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture()

SECRET = b"hunter2-ada"
REFUSED = [
    "SELECT current_setting('app.api_key')",
    "SELECT current_setting('APP.API_KEY', true)",
    "SELECT pg_catalog.current_setting('app.note') AS shown",
    "SHOW app.note",
    "SELECT current_setting(name) FROM (VALUES ('app.api_key')) v(name)",
    "SELECT length(current_setting('app.api_key'))",
]


def _stored(arena: Arena) -> None:
    with arena.admin() as admin:
        admin.execute(f"ALTER DATABASE {arena.database} SET app.api_key = 'hunter2-ada'")
        admin.execute(f"ALTER DATABASE {arena.database} SET app.note = 'hunter2-ada'")


def test_an_applications_setting_is_not_read_by_a_masked_dba(arena: Arena) -> None:
    _stored(arena)
    dba = ready_client(arena, ("dba",), "p27")
    try:
        for sql in REFUSED:
            answer = dba.query(sql)
            assert answer.refused and SECRET not in repr(answer.rows).encode(), (sql, answer)
            assert "pii-readers" in answer.errors[0], (sql, answer)
        answer = dba.query("SELECT current_setting('work_mem') IS NOT NULL")
        assert answer.rows == [[b"t"]], answer
        # psql's \dconfig: the rows of pg_settings, which list no application's setting
        answer = dba.query(
            "SELECT s.name, pg_catalog.current_setting(s.name) FROM pg_catalog.pg_settings s"
            " WHERE s.name = 'work_mem'"
        )
        assert len(answer.rows) == 1 and answer.rows[0][0] == b"work_mem", answer
    finally:
        dba.close()
    pii = ready_client(arena, ("dba", "pii-readers"), "p27")
    try:
        answer = pii.query("SELECT current_setting('app.api_key')")
        assert answer.rows == [[SECRET]], answer
    finally:
        pii.close()


def test_a_bound_setting_name_is_judged_at_bind(arena: Arena) -> None:
    _stored(arena)
    dsn = arena.dsn(arena.token("p27", ("dba",)))
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT current_setting(%s::text)", ("work_mem",)).fetchone()
        assert row is not None and row[0]
        with pytest.raises(psycopg.Error) as refused:
            c.execute("SELECT current_setting(%s::text)", ("app.api_key",)).fetchone()
        assert SECRET.decode() not in str(refused.value), refused.value
