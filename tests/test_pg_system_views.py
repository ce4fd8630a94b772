"""The server's own views read as what they carry (proxies/postgres/columns.py
SYSTEM_VIEW_COLUMNS): their columns of names, types, flags, owners and index definitions
come back as the database answers them, to a reader and to a dba (neither in pii-readers),
where every computed column of a view was masked whole (ORM reflection through
information_schema, pg_indexes.indexdef). Through the real PDP and proxy, with psycopg.

An allow-list, and only of the views initdb made reading nothing made since: a column
left off (column_default, a view's definition, a role's settings, pg_stats' values) stays
masked, and a system view replaced to read a table (CREATE OR REPLACE VIEW keeps its OID,
not its dependencies), or dropped and made again (a new OID), is masked as any view.
"""

from __future__ import annotations

import psycopg
import pytest
from pg_harness import Gateway, running_gateway

pytestmark = pytest.mark.integration

MASKED = "[REDACTED]"

# (statement, the outputs left off the list: masked)
READS = [
    (
        "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
        "column_default FROM information_schema.columns WHERE table_schema = 'public' "
        "ORDER BY table_name, ordinal_position",
        {"column_default"},
    ),
    (
        "SELECT table_schema, table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = 'public' ORDER BY table_name",
        set(),
    ),
    (
        "SELECT constraint_name, table_name, constraint_type FROM "
        "information_schema.table_constraints WHERE table_schema = 'public' "
        "AND constraint_type = 'PRIMARY KEY' ORDER BY 1",
        set(),
    ),
    (
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        set(),
    ),
    ("SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'", {"definition"}),
    # rolpassword (a constant, computed) is left off; rolconfig is a stored column of
    # pg_db_role_setting as the view reads it, masked by name and read by the detectors.
    # {role}: the gateway's (no role of the server's is made or changed: other sessions'
    # tests compare the server's roles before and after)
    (
        "SELECT rolname, rolcanlogin, rolconfig, rolpassword FROM pg_roles "
        "WHERE rolname = '{role}'",
        {"rolpassword"},
    ),
]

EXTRA = """
CREATE VIEW customer_names AS SELECT id, upper(name) AS shout FROM customers;
"""


def _readers(gw: Gateway) -> dict[str, str]:
    return {
        "readonly": gw.token("alice@example.com", ("readonly",)),
        "dba": gw.token("dora@example.com", ("dba",)),
    }


async def _answer(gw: Gateway, token: str, sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
    async with await psycopg.AsyncConnection.connect(gw.dsn(token), autocommit=True) as conn:
        cursor = await conn.execute(sql)
        assert cursor.description is not None
        return [d.name for d in cursor.description], [tuple(r) for r in await cursor.fetchall()]


def _direct(gw: Gateway, sql: str) -> list[tuple[object, ...]]:
    with gw.admin() as admin:
        return [tuple(r) for r in admin.execute(sql).fetchall()]


async def test_system_views_are_read_as_they_are_but_what_the_list_leaves_off(tmp_path):
    async with running_gateway(tmp_path) as gw:
        with gw.admin() as admin:
            admin.execute(EXTRA)
            admin.execute(f"GRANT SELECT ON customer_names TO {gw.role}")
        for group, token in _readers(gw).items():
            for statement, left_off in READS:
                sql = statement.replace("{role}", gw.role)
                names, rows = await _answer(gw, token, sql)
                direct = _direct(gw, sql)
                assert rows, sql
                expected = [
                    tuple(
                        MASKED if name in left_off else value
                        for name, value in zip(names, row, strict=True)
                    )
                    for row in direct
                ]
                assert rows == expected, (group, sql, rows)


async def test_a_system_view_replaced_or_made_again_is_masked_as_any_view(tmp_path):
    """The superuser of the database (outside the gateway: the policy needs approval for
    a view) makes information_schema views read a table's text changed on the way."""
    replaced = (
        "SELECT CAST(current_database() AS information_schema.sql_identifier) AS "
        "catalog_name, CAST(reverse(note) AS information_schema.sql_identifier) AS "
        "schema_name, CAST('x' AS information_schema.sql_identifier) AS schema_owner, "
        "CAST(NULL AS information_schema.sql_identifier) AS default_character_set_catalog, "
        "CAST(NULL AS information_schema.sql_identifier) AS default_character_set_schema, "
        "CAST(NULL AS information_schema.sql_identifier) AS default_character_set_name, "
        "CAST(NULL AS information_schema.character_data) AS sql_path FROM public.customers"
    )
    async with running_gateway(tmp_path) as gw:
        with gw.admin() as admin:
            admin.execute(f"CREATE OR REPLACE VIEW information_schema.schemata AS {replaced}")
            admin.execute("DROP VIEW information_schema.views CASCADE")
            admin.execute(
                "CREATE VIEW information_schema.views AS SELECT CAST(reverse(note) AS "
                "information_schema.sql_identifier) AS table_name FROM public.customers"
            )
            admin.execute("GRANT SELECT ON information_schema.views TO PUBLIC")
        answered = 0
        for group, token in _readers(gw).items():
            # (not ordered: a replaced view's columns may hold anything, so ordering by
            # them is an order use of a sensitive column, refused outside pii-readers)
            for sql in (
                "SELECT schema_name FROM information_schema.schemata",
                "SELECT table_name FROM information_schema.views",
            ):
                try:
                    _, rows = await _answer(gw, token, sql)
                except psycopg.errors.InsufficientPrivilege as refused:
                    assert "denied by policy" in str(refused), (group, sql)
                    continue
                answered += 1
                assert rows and all(row == (MASKED,) for row in rows), (group, sql, rows)
                assert "1111" not in repr(rows)
        assert answered == 4  # read, and masked: the policy judges these by lineage alone
