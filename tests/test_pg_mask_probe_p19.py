"""Probe P19 of the Postgres masks (helper pgmask11) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader (and a dba) outside pii-readers.

The catalogue's names trusted. Lineage now lets what a query makes of the names and flags
of the server's own views and of pg_proc come back as computed (Grafana's
`quote_ident(table_name)`, psql's \\du and \\dp: tests/test_usability_p5.py), as it let
those of pg_class and pg_type. Each way to make a trusted name read a table's text is
tried here:
- a superuser replaces information_schema.schemata (or pg_catalog.pg_user: CREATE OR
  REPLACE VIEW works in pg_catalog too) with a view whose schema_name (usename) is a
  customer's note: the proxy lists the columns of a listed view that is not initdb's
  (proxies/postgres/columns.py UNTRUSTED_SQL) as carrying any column, so what a reader
  computes from them is masked or refused, as a sensitive column's is; so is one whose
  rule or columns were written since initdb (a column renamed: pg_views' definition
  named viewname);
- a schema renamed "INFORMATION_SCHEMA" (another schema: quoted, in capitals) holding a
  view `tables` over the notes is not information_schema;
- a relation made under a trusted view's name (pg_roles, pg_user, pg_proc: read in its
  place before pg_catalog when in pg_temp), or inside information_schema, is refused;
- text others wrote stays masked when changed: a function's body (prosrc), a role's
  settings (rolconfig), a bare name beside pg_proc that may be one of its columns;
- an outer query's column named bare in a sub-query over catalogs only (`SELECT (SELECT
  reverse(note) FROM pg_class LIMIT 1) FROM customers`) was read as a catalog column
  (since the catalog trust began, before this probe): lineage now knows the catalogs'
  columns (_CATALOG_COLUMNS) and looks a name none of them has up in the outer query.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, RawClient, assert_no_secret, ready_client
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture(
    "CREATE FUNCTION public.pgm_card() RETURNS text LANGUAGE sql"
    " AS $$ SELECT 'card 4111 1111 1111 1111' $$;"
    # a role of this arena's own (roles are the cluster's; each worker has an arena)
    "DO $$ BEGIN EXECUTE format('CREATE ROLE %I NOLOGIN', 'pgm19_' || current_database());"
    " EXECUTE format('ALTER ROLE %I SET application_name = %L', 'pgm19_' || current_database(),"
    " 'card 4111 1111 1111 1111'); END $$",
    "DO $$ BEGIN EXECUTE format('DROP ROLE %I', 'pgm19_' || current_database()); END $$",
)
reader = reader_fixture("mask-p19")

# the note's card as a query turns it (no digit left for the value detectors)
LETTERS = b"ebbb bbbb bbbb bbbb"
TURNED = b"1111 1111 1111 1114"


def assert_hidden(c: RawClient, sql: str) -> None:
    """sql's answer: refused or masked, the note's card in no form."""
    answer = c.query(sql)
    assert_no_secret(answer, LETTERS, TURNED)
    if answer.errors:
        assert "denied by policy" in answer.errors[0], answer.errors
        return
    assert answer.rows and all(v in (None, b"[REDACTED]") for r in answer.rows for v in r), (
        answer.rows
    )


@pytest.fixture
def replaced_schemata(arena: Arena) -> Iterator[None]:
    """information_schema.schemata replaced by the superuser to read the notes, put back
    after (initdb's definition: the proxy trusts it again)."""
    with arena.admin() as admin:
        (definition,) = admin.execute(
            "SELECT pg_get_viewdef('information_schema.schemata'::regclass)"
        ).fetchone()  # type: ignore[misc]
        admin.execute(
            "CREATE OR REPLACE VIEW information_schema.schemata AS SELECT"
            " 'x'::information_schema.sql_identifier AS catalog_name,"
            " c.note::information_schema.sql_identifier AS schema_name,"
            " 'x'::information_schema.sql_identifier AS schema_owner,"
            " NULL::information_schema.sql_identifier AS default_character_set_catalog,"
            " NULL::information_schema.sql_identifier AS default_character_set_schema,"
            " NULL::information_schema.sql_identifier AS default_character_set_name,"
            " NULL::information_schema.character_data AS sql_path FROM public.customers c"
        )
    try:
        yield
    finally:
        with arena.admin() as admin:
            admin.execute(f"CREATE OR REPLACE VIEW information_schema.schemata AS {definition}")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT translate(schema_name, '0123456789', 'abcdefghij') FROM"
        " information_schema.schemata",
        "SELECT reverse(schema_name) FROM information_schema.schemata",
        "SELECT quote_ident(schema_name) || '' FROM information_schema.schemata",
    ],
)
def test_a_replaced_information_schema_view_is_not_trusted(
    arena: Arena, replaced_schemata: None, sql: str
) -> None:
    c = ready_client(arena, ("readonly",), "mask-p19-replaced")
    try:
        assert_hidden(c, sql)
    finally:
        c.close()


@pytest.fixture
def replaced_pg_user(arena: Arena) -> Iterator[None]:
    """pg_catalog.pg_user replaced by the superuser (CREATE OR REPLACE VIEW works there
    too) to show the notes as user names, put back after."""
    with arena.admin() as admin:
        (definition,) = admin.execute(
            "SELECT pg_get_viewdef('pg_catalog.pg_user'::regclass)"
        ).fetchone()  # type: ignore[misc]
        admin.execute(
            "CREATE OR REPLACE VIEW pg_catalog.pg_user AS SELECT"
            ' (note COLLATE "C")::name AS usename, 1::oid AS usesysid, true AS usecreatedb,'
            " true AS usesuper, true AS userepl, true AS usebypassrls, '***'::text AS passwd,"
            " now() AS valuntil, ('{}' COLLATE \"C\")::text[] AS useconfig FROM customers"
        )
    try:
        yield
    finally:
        with arena.admin() as admin:
            admin.execute(f"CREATE OR REPLACE VIEW pg_catalog.pg_user AS {definition}")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT reverse(usename) FROM pg_user",
        "SELECT translate(usename, '0123456789', 'abcdefghij') FROM pg_catalog.pg_user",
        "SELECT quote_ident(usename) || '' FROM pg_user",
    ],
)
def test_a_replaced_pg_catalog_view_is_not_trusted(
    arena: Arena, replaced_pg_user: None, sql: str
) -> None:
    c = ready_client(arena, ("readonly",), "mask-p19-replaced")
    try:
        assert_hidden(c, sql)
    finally:
        c.close()


def test_a_view_column_renamed_in_the_catalogue_is_not_trusted(arena: Arena) -> None:
    """ALTER VIEW works on pg_catalog's views too: pg_views' definition (text others wrote)
    renamed viewname was read as a trusted name, reversed past the value detectors."""
    with arena.admin() as admin:
        admin.execute(
            "CREATE VIEW public.pgm_p19_card AS SELECT 'card 4111 1111 1111 1111' AS c;"
            "ALTER VIEW pg_catalog.pg_views RENAME COLUMN viewname TO pgm_p19_name;"
            "ALTER VIEW pg_catalog.pg_views RENAME COLUMN definition TO viewname"
        )
    c = ready_client(arena, ("readonly",), "mask-p19-renamed")
    try:
        assert_hidden(c, "SELECT reverse(viewname) FROM pg_views WHERE schemaname = 'public'")
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute(
                "ALTER VIEW pg_catalog.pg_views RENAME COLUMN viewname TO definition;"
                "ALTER VIEW pg_catalog.pg_views RENAME COLUMN pgm_p19_name TO viewname;"
                "DROP VIEW public.pgm_p19_card"
            )


def test_a_schema_named_information_schema_in_capitals_is_not_the_catalog(
    arena: Arena, reader: RawClient
) -> None:
    with arena.admin() as admin:
        admin.execute(
            'DROP SCHEMA IF EXISTS "INFORMATION_SCHEMA" CASCADE;'
            "CREATE SCHEMA pgm_p19;"
            "CREATE VIEW pgm_p19.tables AS SELECT note AS table_name FROM customers;"
            'ALTER SCHEMA pgm_p19 RENAME TO "INFORMATION_SCHEMA"'
        )
    try:
        for sql in (
            'SELECT reverse(table_name) FROM "INFORMATION_SCHEMA".tables',
            "SELECT translate(table_name, '0123456789', 'abcdefghij')"
            ' FROM "INFORMATION_SCHEMA".tables t',
        ):
            assert_hidden(reader, sql)
    finally:
        with arena.admin() as admin:
            admin.execute('DROP SCHEMA "INFORMATION_SCHEMA" CASCADE')


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP VIEW pg_roles AS SELECT note AS rolname FROM customers",
        "CREATE TEMP TABLE pg_user AS SELECT note AS usename FROM customers",
        "CREATE TEMP VIEW pg_proc AS SELECT note AS proname FROM customers",
        "CREATE TEMP VIEW pg_language AS SELECT note AS lanname FROM customers",
        "CREATE TABLE information_schema.pgm_p19 (table_name text)",
        "CREATE VIEW information_schema.pgm_p19 AS SELECT note AS table_name FROM customers",
    ],
)
def test_a_relation_under_a_trusted_catalogue_name_is_refused(arena: Arena, sql: str) -> None:
    c = ready_client(arena, ("dba",), "mask-p19-dba")
    try:
        answer = c.query(sql)
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
    finally:
        c.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT translate(prosrc, '0123456789', 'abcdefghij') FROM pg_proc"
        " WHERE proname = 'pgm_card'",
        "SELECT reverse(p.prosrc) FROM pg_catalog.pg_proc p WHERE p.proname = 'pgm_card'",
        "SELECT reverse(prosrc) FROM pg_proc, pg_cast WHERE proname = 'pgm_card' LIMIT 1",
        "SELECT translate(rolconfig::text, '0123456789', 'abcdefghij') FROM pg_roles"
        " WHERE rolname = 'pgm19_' || current_database()",
        "SELECT reverse(note) FROM pg_proc, customers WHERE proname = 'pgm_card' AND id = 1",
        "SELECT reverse(note) FROM pg_get_keywords(), customers WHERE id = 1 LIMIT 1",
        "SELECT reverse(k.w) FROM customers, LATERAL (SELECT note AS w) k WHERE id = 1",
    ],
)
def test_text_others_wrote_stays_masked_when_changed(reader: RawClient, sql: str) -> None:
    assert_hidden(reader, sql)


OUTER = [
    "SELECT (SELECT reverse(note) FROM pg_class LIMIT 1) FROM customers",
    "SELECT (SELECT translate(note, '0123456789', 'abcdefghij') FROM pg_type LIMIT 1)"
    " FROM customers",
    "SELECT x FROM customers, LATERAL (SELECT reverse(note) FROM pg_class LIMIT 1) l(x)",
    "SELECT (SELECT reverse(note) FROM pg_proc LIMIT 1) FROM customers",
    "SELECT (SELECT reverse(note) FROM pg_type t JOIN pg_namespace n"
    " ON n.oid = t.typnamespace LIMIT 1) FROM customers",
    "SELECT (SELECT reverse(c.note) FROM pg_class LIMIT 1) FROM customers c",
]


@pytest.mark.parametrize("sql", OUTER)
def test_an_outer_column_in_a_catalog_sub_query_is_not_the_catalogs(
    reader: RawClient, sql: str
) -> None:
    """A bare name in a sub-query over catalogs only was read as a catalog column (trusted:
    its text may be changed), though none of them has it and the server reads the outer
    query's: the note's card reversed or turned to letters, past the value detectors."""
    assert_hidden(reader, sql)


def test_catalogue_names_come_back_as_computed(reader: RawClient) -> None:
    answer = reader.query(
        "SELECT quote_ident(p.proname) || '_' || p.pronargs FROM pg_proc p"
        " WHERE p.proname = 'pgm_card'"
    )
    assert answer.rows == [[b"pgm_card_0"]], answer.messages
