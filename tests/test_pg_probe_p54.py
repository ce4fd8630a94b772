"""Probe P54 (helper pgattack22) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a masked dba.

P51 denied storing a setting that chooses how values are written (ALTER DATABASE ...
SET lc_monetary) outside pii-readers. The superuser upstream writes the system catalogs
as tables too, and a dba's writes need no approval:

    INSERT INTO pg_db_role_setting
      VALUES ((SELECT oid FROM pg_database WHERE datname = current_database()), 0,
              '{lc_monetary=C}')                                    -- INSERT 0 1

stored the same for every later session; and UPDATEs of pg_authid (a role's password or
superuser flag: a way in that never meets Portcullis, which CREATE ROLE needs approval
for), pg_attribute (a sensitive column renamed out of its masks) or pg_proc (a built-in's
body) ran alike, and `UPDATE pg_settings SET setting = 'escape' WHERE name =
'bytea_output'` (its rule calls set_config) set what SET of it is denied. A statement
writing rows of a pg_catalog relation, by name or through a view showing one, is now
denied outside pii-readers and needs approval within (rego/portcullis/postgres.rego).
"""

from __future__ import annotations

import pytest
from adversary import Arena
from pg_probe_stack import arena_fixture, probe_client
from pooler_stack import stored_settings

pytestmark = pytest.mark.integration

arena = arena_fixture(
    setup="CREATE VIEW public.p54_settings AS SELECT * FROM pg_catalog.pg_db_role_setting",
    teardown="DROP VIEW public.p54_settings",
)
client = probe_client("p54")

DB_OID = "(SELECT oid FROM pg_database WHERE datname = current_database())"
WRITES = [
    f"INSERT INTO pg_db_role_setting VALUES ({DB_OID}, 0, '{{lc_monetary=C}}')",
    f"INSERT INTO pg_catalog.pg_db_role_setting VALUES ({DB_OID}, 0, '{{bytea_output=escape}}')",
    "UPDATE pg_catalog.pg_authid SET rolsuper = true WHERE rolname = 'p54_nobody'",
    "UPDATE pg_attribute SET attname = 'p54_renamed' WHERE attrelid = 'customers'::regclass"
    " AND attname = 'password'",
    "UPDATE pg_proc SET prosrc = prosrc WHERE proname = 'p54_nothing'",
    'DELETE FROM "pg_catalog".pg_db_role_setting WHERE setrole = 0 AND false',
    "WITH w AS (UPDATE pg_class SET relname = relname WHERE false RETURNING 1) SELECT 1",
    f"INSERT INTO p54_settings VALUES ({DB_OID}, 0, '{{lc_monetary=C}}')",
    # pg_settings' rule makes an UPDATE of it set_config: SET by other means
    "UPDATE pg_settings SET setting = 'escape' WHERE name = 'bytea_output'",
]


def _unchanged(arena: Arena) -> tuple[object, ...]:
    with arena.admin() as admin:
        return (
            tuple(stored_settings(admin, arena.database, arena.role)),
            admin.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'customers'::regclass"
                " AND attnum > 0 ORDER BY attnum"
            ).fetchall(),
        )


@pytest.mark.parametrize("sql", WRITES)
def test_a_masked_dba_may_not_write_the_system_catalogs(arena: Arena, sql: str) -> None:
    before = _unchanged(arena)
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql)
        assert answer.errors, answer.messages
        assert "denied by policy" in answer.errors[0], answer.errors
        assert "writes rows of the system catalog" in answer.errors[0], answer.errors
    finally:
        c.close()
    assert _unchanged(arena) == before


def test_a_pii_reading_dba_is_asked(arena: Arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query(WRITES[0])
        assert answer.errors and "approval required" in answer.errors[0], answer.messages
    finally:
        c.close()


def test_a_dba_still_reads_catalogs_and_writes_tables(arena: Arena) -> None:
    c = client(arena, ("dba",))
    try:
        assert c.query("SELECT count(*) FROM pg_db_role_setting").rows
        assert c.query("BEGIN").tags == ["BEGIN"]
        answer = c.query("UPDATE orders SET total = total WHERE id = 10")
        assert answer.tags == ["UPDATE 1"], answer.messages
        assert c.query("ROLLBACK").tags == ["ROLLBACK"]
    finally:
        c.close()
