"""What PostgreSQL shows only to superusers stays hidden from readers when the upstream
credential is the `postgres` SUPERUSER: server settings (primary_conninfo with its
password, data_directory, ...) read by SHOW, current_setting or the settings views, and
user-mapping options (a foreign server's password) read through information_schema.

Readers read only the settings rego/data.json lists in postgres.reader_readable_settings
and no catalog in postgres.secret_catalogs. The tests also hold the lists to the server
itself: a role without privileges is created, and every setting, catalog relation and
pg_catalog function PostgreSQL hides from it must be refused to a reader through the proxy.

Real PDP and Postgres proxy (tests/adversary.py), clients psycopg (simple protocol, and
extended with parameters) and asyncpg (extended, binary).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from adversary import SUPERUSER, running_arena
from pdp_harness import REGO

pytestmark = pytest.mark.integration

READER = ("readonly",)
PII_READER = ("pii-readers",)
DBA = ("dba",)
UM_SECRET = "um-s3cret-Pw"
PLAIN = "portcullis_probe_plain"

# information_schema relations PostgreSQL leaves without a grant though nothing in them is
# secret: the parts of the SQL standard, and the SQL-standard view of type transforms.
UNGRANTED_BUT_PUBLIC = {"information_schema.sql_parts", "information_schema.transforms"}


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Iterator[Any]:
    with running_arena(tmp_path_factory.mktemp("secrets")) as gateway:
        with gateway.admin() as admin:
            admin.execute("CREATE FOREIGN DATA WRAPPER portcullis_probe_fdw")
            admin.execute("CREATE SERVER probe_server FOREIGN DATA WRAPPER portcullis_probe_fdw")
            admin.execute(
                "CREATE USER MAPPING FOR PUBLIC SERVER probe_server"
                f" OPTIONS (user 'remote', password '{UM_SECRET}')"
            )
        yield gateway


@pytest.fixture(scope="module")
def hidden(arena) -> dict[str, list[str]]:
    """What this server hides from a role without privileges: settings, catalog relations
    (schema-qualified) and pg_catalog functions."""
    with arena.admin() as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PLAIN,)).fetchone():
            admin.execute(f"CREATE ROLE {PLAIN} NOLOGIN")
        every = {r[0].lower() for r in admin.execute("SELECT name FROM pg_settings")}
        with admin.transaction():
            admin.execute(f"SET LOCAL ROLE {PLAIN}")
            shown = {r[0].lower() for r in admin.execute("SELECT name FROM pg_settings")}
        relations = [
            f"{schema}.{name}"
            for schema, name in admin.execute(
                "SELECT n.nspname, c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname IN ('pg_catalog', 'information_schema')"
                " AND c.relkind IN ('r', 'v', 'm')"
                " AND NOT has_table_privilege(%s, c.oid, 'SELECT')",
                (PLAIN,),
            )
        ]
        functions = [
            r[0]
            for r in admin.execute(
                "SELECT DISTINCT proname FROM pg_proc"
                " WHERE pronamespace = 'pg_catalog'::regnamespace"
                " AND NOT has_function_privilege(%s, oid, 'EXECUTE')",
                (PLAIN,),
            )
        ]
    return {"settings": sorted(every - shown), "relations": relations, "functions": functions}


def connect(arena, groups: tuple[str, ...], who: str) -> psycopg.Connection:
    return psycopg.connect(arena.dsn(arena.token(who, groups)), autocommit=True)


def refused(conn: psycopg.Connection, sql: str, *params: Any) -> tuple[bool, str]:
    """(refused by the gateway, everything the client saw)."""
    try:
        cur = conn.execute(sql, params or None)
        return False, repr(cur.fetchall() if cur.description else [])
    except psycopg.Error as exc:
        return "portcullis" in str(exc), str(exc)


def test_the_server_hides_settings_and_user_mapping_options_from_a_plain_role(arena, hidden):
    """The control: what a reader must not see is there for the superuser upstream, and
    PostgreSQL itself would hide it from an ordinary role."""
    assert "data_directory" in hidden["settings"] and "primary_conninfo" in hidden["settings"]
    assert "information_schema._pg_user_mappings" in hidden["relations"]
    with arena.admin() as admin:
        row = admin.execute("SELECT option_value FROM information_schema.user_mapping_options"
                            " WHERE option_name = 'password'").fetchone()  # fmt: skip
        assert row == (UM_SECRET,)
        with admin.transaction():
            admin.execute(f"SET LOCAL ROLE {PLAIN}")
            row = admin.execute("SELECT option_value FROM information_schema.user_mapping_options"
                                " WHERE option_name = 'password'").fetchone()  # fmt: skip
            assert row in (None, (None,))


READS = {
    "show": "SHOW data_directory",
    "show_quoted": 'SHOW "data_directory"',
    "show_all": "SHOW ALL",
    "current_setting": "SELECT current_setting('data_directory')",
    "current_setting_case": "SELECT pg_catalog.current_setting('Data_Directory', true)",
    "current_setting_escape": "SELECT current_setting(E'data\\x5fdirectory')",
    "current_setting_unicode": "SELECT current_setting(U&'data\\005fdirectory')",
    "current_setting_in_from": "SELECT * FROM current_setting('hba_file')",
    "current_setting_computed": "SELECT current_setting(reverse('yrotcerid_atad'))",
    "current_setting_from_column": "SELECT current_setting(name) FROM pg_catalog.pg_settings",
    "current_setting_from_values": "SELECT current_setting(x) FROM (VALUES ('config_file')) v(x)",
    "current_setting_cast": "SELECT current_setting('data_directory'::text)",
    "current_setting_in_cte": "WITH s AS (SELECT current_setting('ident_file') AS v)"
    " SELECT v FROM s",
    "pg_settings": "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
    "pg_settings_oracle": "SELECT count(*) FROM pg_settings WHERE name = 'data_directory'"
    " AND setting LIKE '/var%'",
    "pg_show_all_settings": "SELECT name, setting FROM pg_show_all_settings() s",
    "pg_config": "SELECT * FROM pg_config()",
    "user_mapping_options": "SELECT option_value FROM information_schema.user_mapping_options",
    "user_mapping_oracle": "SELECT count(*) FROM information_schema.user_mapping_options"
    " WHERE option_value LIKE 'um-%'",
    "pg_user_mappings_internal": "SELECT umoptions FROM information_schema._pg_user_mappings",
}


FILTERED = {"pg_settings", "pg_settings_oracle"}


@pytest.mark.parametrize("groups", [READER, PII_READER], ids=["readonly", "pii-readers"])
@pytest.mark.parametrize("case", list(READS))
def test_reader_cannot_read_what_only_superusers_see(arena, hidden, case, groups):
    with connect(arena, groups, f"{case}-{groups[0]}@secrets.example") as conn:
        data_directory = None
        with arena.admin() as admin:
            data_directory = admin.execute("SHOW data_directory").fetchone()[0]
        was_refused, seen = refused(conn, READS[case])
        # pg_settings is read through a row filter of the readable settings: no row
        # (test_usability_p9)
        filtered = case in FILTERED and seen in ("[]", "[(0,)]")
        assert was_refused or filtered, f"{READS[case]!r} ran for a reader: {seen[:200]}"
        assert data_directory not in seen and UM_SECRET not in seen


async def test_reader_extended_protocol_parameters_cannot_name_the_setting(arena):
    tok = arena.token("asyncpg@secrets.example", PII_READER)
    conn = await asyncpg.connect(arena.dsn(tok))
    try:
        with pytest.raises(asyncpg.PostgresError) as denied:
            await conn.fetchval("SELECT current_setting($1)", "data_directory")
        assert "portcullis" in str(denied.value)
        # the same statement shape with an ordinary setting, then a hidden one: a reused
        # decision must not carry the first answer over to the second
        assert await conn.fetchval("SELECT current_setting('server_version_num')")
        with pytest.raises(asyncpg.PostgresError):
            await conn.fetchval("SELECT current_setting('config_file')")
    finally:
        await conn.close()
    with connect(arena, PII_READER, "psycopg-params@secrets.example") as conn:
        assert refused(conn, "SELECT current_setting(%s)", "data_directory")[0]


def test_reader_keeps_the_settings_clients_read(arena):
    with connect(arena, READER, "clients@secrets.example") as conn:
        for sql in (
            "SHOW server_version",
            "SHOW TRANSACTION ISOLATION LEVEL",
            "SHOW TIME ZONE",
            "SHOW search_path",
            "SHOW standard_conforming_strings",
            "SELECT current_setting('server_version_num')",
            "SELECT pg_catalog.current_setting('max_identifier_length')",
            "SELECT current_setting('application_name', true)",
        ):
            ran = conn.execute(sql).fetchone()
            assert ran and ran[0] is not None, sql


def test_dba_reads_every_setting(arena):
    with connect(arena, DBA, "dba@secrets.example") as conn:
        assert conn.execute("SHOW data_directory").fetchone()[0].startswith("/")
        assert conn.execute("SELECT current_setting('hba_file')").fetchone()[0].startswith("/")


def test_every_setting_the_server_hides_is_refused_to_readers(arena, hidden):
    """The allow-list held to the server: each setting PostgreSQL hides from a role without
    privileges, asked for by SHOW and by current_setting."""
    assert hidden["settings"]
    with connect(arena, PII_READER, "every-setting@secrets.example") as conn:
        for name in hidden["settings"]:
            assert refused(conn, f'SHOW "{name}"')[0], name
            assert refused(conn, f"SELECT current_setting('{name}')")[0], name


def test_every_catalog_relation_the_server_hides_is_refused_to_readers(arena, hidden):
    relations = [r for r in hidden["relations"] if r not in UNGRANTED_BUT_PUBLIC]
    assert "pg_catalog.pg_authid" in relations
    with connect(arena, PII_READER, "every-relation@secrets.example") as conn:
        for relation in relations:
            schema, name = relation.split(".")
            assert refused(conn, f'SELECT * FROM {schema}."{name}" LIMIT 1')[0], relation
            if schema == "pg_catalog":  # pg_catalog is searched first: the bare name is it
                assert refused(conn, f'SELECT * FROM "{name}" LIMIT 1')[0], relation


def test_no_function_the_server_hides_is_reader_callable(hidden):
    reader_functions = json.loads((REGO / "data.json").read_text())["portcullis"]["postgres"][
        "reader_functions"
    ]
    assert hidden["functions"]
    assert not sorted(set(hidden["functions"]) & set(reader_functions))


def test_the_upstream_is_a_superuser(arena):
    """The premise of this file: the gateway holds a credential that sees everything."""
    assert SUPERUSER == "postgres"
    with arena.admin() as admin:
        assert admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s",
                             (SUPERUSER,)).fetchone() == (True,)  # fmt: skip
