"""Probe P9's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column no value
detector recognises; tests/pg_harness.py's gateway for the approval cases).

- A function the database defines, called without its schema, is denied outside
  pii-readers; the proxy sends the names as the catalog spells them, the classifier
  folded them to lower case: `"PwOf"(1)` (or `U&"\\0050wOf"(1)`) matched nothing and a
  masked dba read the password in clear. Unqualified names are kept as the server
  looks them up.
- The proxy's view facts were keyed as the catalog spells a view ("public.PwView"), the
  PDP reads a statement's relations folded (pwview): a reader read a view running the
  database's function unjudged (a prefix oracle on the password; a view that INSERTs
  reached the server). view_functions and relation_sources are keyed both ways.
- A computed view column running the database's code (`pw_of(id) AS secret`) was said to
  derive from what pg_depend names (id): a masked dba's condition on it was an oracle. It
  now derives from every table.
- An approval is bound to what the session's names resolved to when it was asked; the
  database's code setting search_path (a function, procedure or view calling
  set_config), a temporary table renamed away, the end of a transaction that had set the
  path, or a REVOKE of a schema's USAGE changed resolution unseen, and the approved
  TRUNCATE orders ran on public.orders. Each now unbinds it (pdp/domain/search_paths.py).
- A cast to a composite type (a table's row type) with an attribute of a domain whose
  CHECK is an oracle, or jsonb_populate_record(NULL::that_table, ...), ran the CHECK for
  a reader. Such composites are now among the proxy's user_types.
"""

from __future__ import annotations

import asyncpg
import psycopg
import pytest
from adversary import assert_no_secret
from pg_harness import running_gateway
from pg_probe_stack import (
    approve_truncate,
    arena_fixture,
    assert_asked_again,
    assert_refused,
    decoy_orders_gateway,
    probe_client,
)

pytestmark = pytest.mark.integration

FUNCTIONS = """
CREATE FUNCTION public."PwOf"(int) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT password FROM customers WHERE id = $1 $$;
-- made after initdb in pg_catalog itself, with capitals
CREATE FUNCTION pg_catalog."P9Pw"(int) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT password FROM public.customers WHERE id = $1 $$;
"""


arena = arena_fixture(FUNCTIONS, teardown='DROP FUNCTION pg_catalog."P9Pw"(int)')
client = probe_client("p9")


CASED_CALLS = [
    'SELECT "PwOf"(1)',
    'SELECT U&"\\0050wOf"(1)',
    'SELECT pg_catalog."P9Pw"(1)',
    'SELECT "P9Pw"(1)',
    'SELECT x FROM "PwOf"(1) AS x',
    "SELECT upper(\"PwOf\"(1)) = 'HUNTER2-ADA'",
]


@pytest.mark.parametrize("sql", CASED_CALLS)
def test_a_masked_dba_calls_no_database_function_with_capitals_unqualified(arena, sql: str) -> None:
    c = client(arena, ("dba",))
    try:
        assert_refused(c, sql, "defined in this database")
    finally:
        c.close()


def test_a_masked_dba_through_psycopg_binary_reads_no_cased_function(arena) -> None:
    tok = arena.token("p9-psycopg@example.com", ("dba",))
    with (
        psycopg.connect(arena.dsn(tok), autocommit=True) as conn,
        pytest.raises(psycopg.Error, match="defined in this database"),
    ):
        conn.execute('SELECT "PwOf"(%s)', (1,), binary=True).fetchall()


def test_the_schema_qualified_call_is_held_for_approval(arena) -> None:
    """(masked whole once approved; held since P14: test_pg_probe_p14.py)"""
    c = client(arena, ("dba",))
    try:
        answer = c.query('SELECT public."PwOf"(1)')
        assert_no_secret(answer)
        assert any("approval" in e for e in answer.errors), answer.messages
    finally:
        c.close()


def test_a_pii_reading_dba_still_calls_it(arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        assert c.query('SELECT "PwOf"(1)').rows == [[b"hunter2-ada"]]
    finally:
        c.close()


@pytest.mark.parametrize("sql", CASED_CALLS)
def test_a_reader_calls_none_of_them(arena, sql: str) -> None:
    c = client(arena, ("readonly",))
    try:
        assert_refused(c, sql, "denied by policy")
    finally:
        c.close()


# --- a view whose name has capitals -------------------------------------------------------

VIEWS = """
CREATE FUNCTION public.pw_of(int) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT password FROM customers WHERE id = $1 $$;
CREATE VIEW public."PwView" AS SELECT id, public.pw_of(id) AS secret FROM customers;
CREATE VIEW public."Sneaky" AS SELECT id, public.remember() AS r FROM orders;
CREATE VIEW public.pw_view AS SELECT id, public.pw_of(id) AS secret FROM customers;
CREATE VIEW public.pw_view_over AS SELECT id, secret AS s FROM pw_view;
"""


@pytest.fixture(scope="module")
def cased_views(arena):
    with arena.admin() as admin:
        admin.execute(VIEWS)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM \"PwView\" WHERE secret LIKE 'hunter2-a%'",
        "SELECT id FROM public.\"PwView\" WHERE secret = 'hunter2-ada'",
        'SELECT * FROM "Sneaky"',
    ],
)
def test_a_reader_reads_no_view_with_capitals_running_the_databases_function(
    arena, cased_views, sql: str
) -> None:
    """Attack (reader): a view runs a function the database defines, which readers may not
    call (postgres_user_code.rego, by the proxy's view_functions); the facts were keyed as
    the catalog spells the view ("public.PwView") while the PDP reads a statement's
    relation folded to lower case (pwview), so the rule met nothing: the count answered
    whether a guess was the password's prefix, and "Sneaky" ran its INSERT (stopped only
    by read-only at the server)."""
    c = client(arena, ("readonly",))
    try:
        assert_refused(c, sql, "runs function public.")
    finally:
        c.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM pw_view WHERE secret LIKE 'hunter2-a%'",
        "SELECT id FROM pw_view ORDER BY secret",
        "SELECT count(*) FROM pw_view_over WHERE s LIKE 'hunter2-a%'",
        "SELECT count(*) FROM \"PwView\" WHERE secret LIKE 'hunter2-a%'",
    ],
)
def test_a_masked_dbas_condition_on_a_view_column_the_databases_function_computes(
    arena, cased_views, sql: str
) -> None:
    """Attack (dba outside pii-readers): pw_view's secret is public.pw_of(id), the
    password; the proxy told the PDP the column derives from what pg_depend says the view
    reads (id), so a condition on it was a condition on an id: the count answered whether
    a guess was the password's prefix. A computed column of a view running code the
    database made now derives from every table ("*"), as public.pw_of(1) does."""
    c = client(arena, ("dba",))
    try:
        assert_refused(c, sql, "denied by policy")
    finally:
        c.close()


def test_a_pii_reading_dba_still_filters_on_it(arena, cased_views) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query("SELECT count(*) FROM pw_view WHERE secret LIKE 'hunter2-a%'")
        assert answer.rows == [[b"1"]], answer.messages
    finally:
        c.close()


# --- an approval and the database's code changing the search_path ---------------------

PATH_CODE = """
CREATE SCHEMA scratch;
CREATE TABLE scratch.orders (id int);
CREATE FUNCTION public.path_public() RETURNS text LANGUAGE sql VOLATILE
  AS $$ SELECT set_config('search_path', 'public', false) $$;
CREATE PROCEDURE public.path_public_proc() LANGUAGE plpgsql
  AS $$ BEGIN PERFORM set_config('search_path', 'public', false); END $$;
CREATE VIEW public.path_view AS SELECT public.path_public() AS p;
"""


@pytest.mark.parametrize(
    "change",
    [
        "SELECT public.path_public()",
        "SELECT path_public()",
        "CALL public.path_public_proc()",
        "SELECT * FROM path_view",
    ],
)
async def test_the_databases_code_setting_the_path_unbinds_an_approval(tmp_path, change) -> None:
    """Attack (dba, in pii-readers or not): TRUNCATE orders is approved while the path
    names a scratch schema (scratch.orders, the approver is told); then a function, a
    procedure or a view the database defines sets search_path back to public
    (set_config inside it, named nowhere in the statement), and the approved text, run
    again in the session, truncated public.orders. The approvals binding (pdp/domain/
    search_paths.py) looked for set_config among the statement's own function names only.
    Now a call of anything but a pg_catalog built-in (the database's functions, as the
    proxy names them, any procedure) and a read of a view running the database's code
    count as a possible change: asked again."""
    async with decoy_orders_gateway(
        tmp_path,
        PATH_CODE,
        "GRANT ALL ON SCHEMA scratch TO {role}",
        "GRANT ALL ON scratch.orders, public.path_view TO {role}",
    ) as (gw, conn):
        await conn.execute("SET search_path = scratch, public")
        asked = await approve_truncate(gw, conn, "scratch copy only")
        await conn.execute(change)
        assert await conn.fetchval("SHOW search_path") == "public"
        await assert_asked_again(gw, conn, asked)


async def test_a_temporary_table_renamed_away_unbinds_an_approval(tmp_path) -> None:
    """Attack (dba), the path untouched: a temporary table is searched before every
    schema, so with one named orders, TRUNCATE orders (approved for that scratch copy)
    truncates it; renamed away (ALTER TABLE orders RENAME TO gone: DDL, no setting), the
    same approved text truncated public.orders. DDL that makes, moves or removes a name
    now counts as a possible change."""
    async with decoy_orders_gateway(tmp_path) as (gw, conn):
        await conn.execute("CREATE TEMP TABLE orders (id int)")
        asked = await approve_truncate(gw, conn, "temporary copy only")
        await conn.execute("ALTER TABLE orders RENAME TO gone")
        await assert_asked_again(gw, conn, asked)


@pytest.mark.parametrize(
    ("setting", "ending"),
    [
        ("SET LOCAL search_path = scratch, public", "COMMIT"),
        ("SELECT set_config('search_path', 'scratch, public', true)", "COMMIT"),
        ("SET search_path = scratch, public", "ROLLBACK"),
    ],
)
async def test_a_transaction_ending_a_path_set_in_it_unbinds_an_approval(
    tmp_path, setting: str, ending: str
) -> None:
    """Attack (dba): in a transaction, SET LOCAL search_path = scratch (or a session SET
    then ROLLBACK, which undoes it); TRUNCATE orders is approved for scratch.orders; the
    transaction's end puts the path back by itself, with no statement naming it after the
    request, and the approved text run again truncated public.orders. Now ending a
    transaction in which the path may have been changed counts as a change."""
    async with decoy_orders_gateway(
        tmp_path,
        PATH_CODE,
        "GRANT ALL ON SCHEMA scratch TO {role}",
        "GRANT ALL ON scratch.orders TO {role}",
    ) as (gw, conn):
        await conn.execute("BEGIN")
        await conn.execute(setting)
        asked = await approve_truncate(gw, conn, "scratch copy only")
        await conn.execute(ending)
        assert await conn.fetchval("SHOW search_path") == '"$user", public'
        await assert_asked_again(gw, conn, asked)


# --- a composite type holding a domain whose CHECK is an oracle ---------------------------

PROBES = """
CREATE FUNCTION public.pw_prefix9(text) RETURNS bool LANGUAGE sql STABLE AS
  $$ SELECT EXISTS (SELECT 1 FROM customers WHERE id = 1 AND password LIKE $1 || '%') $$;
CREATE DOMAIN public.probe9 AS text CHECK (public.pw_prefix9(VALUE));
CREATE TABLE public.probe9_tab (x public.probe9);
CREATE TYPE public.probe9_nest AS (t public.probe9_tab, n int);
CREATE TYPE public.probe9_arr AS (xs public.probe9[]);
"""


@pytest.fixture(scope="module")
def composites(arena):
    with arena.admin() as admin:
        admin.execute(PROBES)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ROW('{guess}')::probe9_tab",
        "SELECT CAST(ROW('{guess}') AS public.probe9_tab)",
        'SELECT jsonb_populate_record(NULL::probe9_tab, \'{{"x": "{guess}"}}\')',
        'SELECT json_populate_recordset(NULL::probe9_tab, \'[{{"x": "{guess}"}}]\')',
        'SELECT jsonb_populate_record(NULL::probe9_nest, \'{{"t": {{"x": "{guess}"}}}}\')',
        'SELECT jsonb_populate_record(NULL::probe9_arr, \'{{"xs": ["{guess}"]}}\')',
        "SELECT '{{({guess})}}'::probe9_tab[]",
    ],
)
def test_a_reader_casts_to_no_composite_holding_the_databases_code(
    arena, composites, sql: str
) -> None:
    """Attack (reader): with public.probe9 a domain whose CHECK calls a function comparing
    the value with Ada's password, readers may not cast to probe9 (user_types), but a cast
    to a table's row type (or a composite type) with a probe9 attribute, or
    jsonb_populate_record(NULL::probe9_tab, ...), reads each attribute with its type's
    input, the CHECK included: the error or the row answered whether a guess was the
    password's prefix. The proxy now counts composites holding such a type (through
    composites and arrays) among user_types."""
    c = client(arena, ("readonly",))
    try:
        right = c.query(sql.format(guess="hunter2-a"))
        wrong = c.query(sql.format(guess="zzz"))
        for answer in (right, wrong):
            assert_no_secret(answer)
            assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
            assert "check constraint" not in answer.errors[0]
    finally:
        c.close()


def test_a_reader_still_casts_to_a_row_type_of_built_in_columns(arena, composites) -> None:
    c = client(arena, ("readonly",))
    try:
        answer = c.query("SELECT (jsonb_populate_record(NULL::orders, '{\"id\": 7}')).id")
        assert answer.rows == [[b"7"]], answer.messages
    finally:
        c.close()


async def test_a_schema_privilege_revoked_unbinds_an_approval(tmp_path) -> None:
    """Attack (dba, an upstream role that is no superuser), the path untouched: the
    server skips a schema on the path the role may not use, so with scratch (the role's
    own) first, TRUNCATE orders (approved for scratch.orders) truncates that; after
    REVOKE USAGE ON SCHEMA scratch FROM CURRENT_USER, the same approved text truncated
    public.orders. A GRANT or REVOKE now counts as a possible change."""
    async with decoy_orders_gateway(
        tmp_path,
        "CREATE SCHEMA scratch AUTHORIZATION {role}",
        "CREATE TABLE scratch.orders (id int)",
        "ALTER TABLE scratch.orders OWNER TO {role}",
    ) as (gw, conn):
        await conn.execute("SET search_path = scratch, public")
        asked = await approve_truncate(gw, conn, "scratch copy only")
        await conn.execute("REVOKE USAGE ON SCHEMA scratch FROM CURRENT_USER")
        await assert_asked_again(gw, conn, asked)


# --- a column's DEFAULT calling the database's function ---------------------------------


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE {t} (id int, v text DEFAULT public.pw_of(1))",
        "CREATE TABLE {t} (id int, v text); "
        "ALTER TABLE {t} ALTER COLUMN v SET DEFAULT public.pw_of(1)",
        "CREATE TABLE {t} (id int); ALTER TABLE {t} ADD COLUMN v text DEFAULT public.pw_of(1)",
        'CREATE TABLE {t} (id int, v text DEFAULT "public".pw_of(1))',
    ],
)
def test_a_masked_dba_stores_no_default_the_databases_function_computes(
    arena, cased_views, ddl: str
) -> None:
    """Attack (dba outside pii-readers): CREATE TABLE and ALTER TABLE without expressions
    over columns run without approval under the masks, and a column's DEFAULT may call
    public.pw_of(1) (the password): INSERT INTO t (id) VALUES (1) stored it and
    SELECT v FROM t read it in clear, v being no sensitive column. A DEFAULT (generated
    column, CHECK, index expression) calling a function written with a schema other than
    pg_catalog now counts as an expression over values: approval."""
    table = f"p9_default_{abs(hash(ddl)) % 10_000}"
    c = client(arena, ("dba",))
    try:
        answer = c.query(ddl.format(t=table))
        assert answer.errors and "approval required" in answer.errors[0], answer.messages
        c.query(f"INSERT INTO {table} (id) VALUES (1)")
        assert_no_secret(c.query(f"SELECT * FROM {table}"))
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute(f"DROP TABLE IF EXISTS {table}")


def test_a_masked_dba_still_makes_a_table_with_a_built_in_default(arena) -> None:
    c = client(arena, ("dba",))
    try:
        made = c.query("CREATE TABLE p9_now (id int, at timestamptz DEFAULT now())")
        assert not made.errors, made.messages
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute("DROP TABLE IF EXISTS p9_now")


async def test_a_dba_prepares_no_statement_needing_approval(tmp_path) -> None:
    """Attack (dba): SQL PREPARE p AS DELETE FROM orders (no WHERE: approval), approved
    while the path named scratch; EXECUTE is decided as a read, so after SET search_path
    = public, EXECUTE p (at any later time, again and again) emptied public.orders under
    no approval. A privileged statement needing approval is now refused in PREPARE."""
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 3}) as gw:
        with gw.admin() as admin:
            admin.execute("INSERT INTO orders VALUES (-1, 1, 9.5)")
        conn = await asyncpg.connect(gw.dsn(gw.token("dana@example.com", ("dba", "pii-readers"))))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not prepared"):
                await conn.execute("PREPARE p AS DELETE FROM orders")
            assert not [r for r in gw.pdp.approvals.requests.values() if r.state == "pending"]
            with pytest.raises(asyncpg.InvalidSQLStatementNameError):
                await conn.execute("EXECUTE p")
            # one with a WHERE needs no approval, and is still a dba's to prepare
            await conn.execute("PREPARE q AS DELETE FROM orders WHERE id = -2")
            assert await conn.execute("EXECUTE q") == "DELETE 0"
        finally:
            await conn.close()
        with gw.admin() as admin:
            kept = admin.execute("SELECT count(*) FROM public.orders WHERE id = -1").fetchone()
            assert kept == (1,)
