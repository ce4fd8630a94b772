"""Usability probe 1 (helper pgusable): what real tools and analysts send as a READER
(group readonly) through the real PDP on the shipped policy, the real Postgres proxy and
PostgreSQL, pinned so that a later refusal rule cannot take it away unnoticed.

tests/test_usability_corpus.py holds the analytic statements; this file holds what the
tools themselves send and the analyst's statements it lacks: psql's describe commands it
leaves out, SQLAlchemy 2's inspector (psycopg 3, psycopg2 and asyncpg) and reflection,
the ORM, pandas.read_sql, asyncpg's type codecs and introspection, psycopg 3's server-side
binding, binary results, pipeline mode and a statement prepared and run many times,
keyset and OFFSET pagination with parameters, BI tools' catalogue queries (pgjdbc's
getTables/getColumns as Metabase, DBeaver and DataGrip send them, Grafana's table and
column lists, Metabase's generated SQL), harmless session settings, and read-only
transactions. Each statement's answer is the database owner's direct one (masked columns
aside) where the answer is stable.

Only what works on the tree is here; what the gateway refuses a reader today is reported
with its patch in /work/notes/pgusable-*.patch (the tests that patch adds fail before it).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pandas as pd
import psycopg
import pytest
from sqlalchemy import MetaData, Table, create_engine, func, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from usability_stacks import owner, serving
from usability_stacks import reader_dsn as dsn
from usability_stacks import reader_url as url

pytestmark = pytest.mark.integration

TIMEOUT = 60  # seconds a client step may take before the test fails instead of hanging
MASKED = "[REDACTED]"


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serving("postgres", tmp_path_factory.mktemp("pg")) as info:
        yield info


# ------------------------------------------------------------------ statements, one by one

# (id, statement): through the proxy as a reader (psycopg, extended protocol), equal to the
# owner's direct answer. Analytics the corpus lacks, Metabase's generated SQL, BI tools'
# catalogue queries.
READS = [
    ("count_distinct_two", "SELECT count(DISTINCT customer_id), count(DISTINCT status) FROM "
     "orders"),
    ("buyers_by_country", "SELECT c.country, count(DISTINCT o.customer_id) FROM orders o JOIN "
     "customers c ON c.id = o.customer_id GROUP BY c.country ORDER BY 1"),
    ("orders_with_customers", "SELECT c.id, c.name, c.country, o.id AS order_id, o.total, "
     "o.placed_at FROM customers c JOIN orders o ON o.customer_id = c.id ORDER BY "
     "o.placed_at DESC LIMIT 10"),
    ("ilike_title", "SELECT title, price FROM products WHERE title ILIKE '%wid%' ORDER BY price"),
    ("ilike_dollar_quoted", "SELECT title FROM products WHERE title ILIKE $$%GAD%$$"),
    ("lower_like", "SELECT title FROM products WHERE lower(title) LIKE '%get%'"),
    ("regex_ci", "SELECT title FROM products WHERE title ~* 'sprock'"),
    ("json_key_equality", "SELECT id FROM events WHERE payload->>'page' = '/pricing'"),
    ("json_key_in", "SELECT id FROM events WHERE payload->>'page' IN ('/pricing', '/home')"),
    ("json_key_cast_range", "SELECT id FROM events WHERE (payload->>'ms')::int > 100"),
    ("json_path_text", "SELECT attrs #>> '{color}' FROM products ORDER BY id"),
    ("json_path_literal_equality", "SELECT count(*) FROM products WHERE (attrs #>> '{color}') "
     "= 'red'"),
    ("json_key_by_kind", "SELECT kind, count(*) FROM events WHERE payload->>'user' = '1' GROUP "
     "BY kind ORDER BY 1"),
    ("revenue_by_product", "SELECT p.title, sum(oi.qty) AS units, sum(oi.qty * p.price) AS "
     "revenue FROM order_items oi JOIN products p ON p.id = oi.product_id GROUP BY p.title "
     "ORDER BY revenue DESC, 1"),
    ("running_total_by_customer", "SELECT customer_id, id, sum(total) OVER (PARTITION BY "
     "customer_id ORDER BY placed_at) FROM orders ORDER BY customer_id, id"),
    ("moving_average", "SELECT id, avg(total) OVER (ORDER BY placed_at ROWS 2 PRECEDING) FROM "
     "orders ORDER BY id"),
    ("delta_lag", "SELECT id, total - lag(total) OVER (ORDER BY placed_at) AS delta FROM orders "
     "ORDER BY id"),
    ("cte_top_per_group", "WITH ranked AS (SELECT o.*, row_number() OVER (PARTITION BY "
     "customer_id ORDER BY total DESC) rn FROM orders o) SELECT * FROM ranked WHERE rn = 1 "
     "ORDER BY id"),
    ("keyset_id", "SELECT id, status FROM orders WHERE id > 12 ORDER BY id LIMIT 2"),
    ("keyset_row_value", "SELECT id, placed_at FROM orders WHERE (placed_at, id) > "
     "('2026-04-03', 11) ORDER BY placed_at, id LIMIT 3"),
    ("offset_star", "SELECT * FROM products ORDER BY id LIMIT 2 OFFSET 2"),
    ("total_count_window", "SELECT count(*) OVER () AS total_count, id FROM orders ORDER BY id "
     "LIMIT 3"),
    ("exists", "SELECT EXISTS (SELECT 1 FROM orders WHERE total > 100)"),
    # Metabase's generated SQL (three-part names, quoted aliases, LIMIT 2000)
    ("metabase_count_by", 'SELECT "source"."status" AS "status", COUNT(*) AS "count" FROM '
     '(SELECT "public"."orders"."id" AS "id", "public"."orders"."status" AS "status" FROM '
     '"public"."orders") AS "source" GROUP BY "source"."status" ORDER BY "source"."status" '
     "ASC LIMIT 2000"),
    ("metabase_distinct_by", 'SELECT "public"."customers"."country" AS "country", '
     'count(distinct "public"."customers"."id") AS "count" FROM "public"."customers" GROUP BY '
     '"public"."customers"."country" ORDER BY "count" DESC, "public"."customers"."country" ASC'),
    ("metabase_contains", 'SELECT "public"."products"."title" AS "title" FROM '
     '"public"."products" WHERE (lower("public"."products"."title") LIKE \'%idg%\') LIMIT 2000'),
    ("metabase_fk_join", 'SELECT "public"."orders"."status" AS "status", "Customers"."country" '
     'AS "Customers__country", "public"."orders"."total" FROM "public"."orders" LEFT JOIN '
     '"public"."customers" AS "Customers" ON "public"."orders"."customer_id" = '
     '"Customers"."id" ORDER BY "public"."orders"."id" LIMIT 2000'),
    ("metabase_minmax", 'SELECT MIN("public"."orders"."placed_at") AS "min", '
     'MAX("public"."orders"."placed_at") AS "max" FROM "public"."orders"'),
    ("pgjdbc_get_tables", "SELECT NULL AS TABLE_CAT, n.nspname AS TABLE_SCHEM, c.relname AS "
     "TABLE_NAME, CASE n.nspname ~ '^pg_' OR n.nspname = 'information_schema' WHEN true THEN "
     "CASE WHEN n.nspname = 'pg_catalog' OR n.nspname = 'information_schema' THEN CASE "
     "c.relkind WHEN 'r' THEN 'SYSTEM TABLE' WHEN 'v' THEN 'SYSTEM VIEW' ELSE NULL END ELSE "
     "NULL END WHEN false THEN CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN "
     "'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' ELSE NULL END ELSE NULL END AS TABLE_TYPE, "
     "d.description AS REMARKS FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c LEFT "
     "JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0 AND "
     "d.classoid = 'pg_class'::regclass) WHERE c.relnamespace = n.oid AND n.nspname LIKE "
     "'public' AND c.relname LIKE '%' AND (false OR (c.relkind IN ('r','p') AND n.nspname "
     "!~ '^pg_' AND n.nspname <> 'information_schema')) ORDER BY TABLE_TYPE, TABLE_SCHEM, "
     "TABLE_NAME"),
    ("pgjdbc_get_columns", "SELECT * FROM (SELECT n.nspname, c.relname, a.attname, "
     "a.atttypid, a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS attnotnull, "
     "a.atttypmod, a.attlen, t.typtypmod, row_number() OVER (PARTITION BY a.attrelid ORDER "
     "BY a.attnum) AS attnum, nullif(a.attidentity, '') AS attidentity, "
     "nullif(a.attgenerated, '') AS attgenerated, pg_catalog.pg_get_expr(def.adbin, "
     "def.adrelid) AS adsrc, dsc.description, t.typbasetype, t.typtype FROM "
     "pg_catalog.pg_namespace n JOIN pg_catalog.pg_class c ON (c.relnamespace = n.oid) JOIN "
     "pg_catalog.pg_attribute a ON (a.attrelid = c.oid) JOIN pg_catalog.pg_type t ON "
     "(a.atttypid = t.oid) LEFT JOIN pg_catalog.pg_attrdef def ON (a.attrelid = def.adrelid "
     "AND a.attnum = def.adnum) LEFT JOIN pg_catalog.pg_description dsc ON (c.oid = "
     "dsc.objoid AND a.attnum = dsc.objsubid) LEFT JOIN pg_catalog.pg_class dc ON (dc.oid = "
     "dsc.classoid AND dc.relname = 'pg_class') LEFT JOIN pg_catalog.pg_namespace dn ON "
     "(dc.relnamespace = dn.oid AND dn.nspname = 'pg_catalog') WHERE c.relkind IN "
     "('r','p','v','f','m') AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname LIKE "
     "'public' AND c.relname LIKE 'orders') c WHERE true ORDER BY nspname, c.relname, attnum"),
    ("pgjdbc_type_lookup", "SELECT typinput = 'pg_catalog.array_in'::regproc AS is_array, "
     "typtype, typname, pg_type.oid FROM pg_catalog.pg_type LEFT JOIN (SELECT ns.oid AS "
     "nspoid, ns.nspname, r.r FROM pg_namespace AS ns JOIN (SELECT s.r, "
     "(current_schemas(false))[s.r] AS nspname FROM generate_series(1, "
     "array_upper(current_schemas(false), 1)) AS s(r)) AS r USING (nspname)) AS sp ON "
     "sp.nspoid = typnamespace WHERE typname = 'jsonb' ORDER BY sp.r, pg_type.oid DESC"),
    # catalogue browsing
    ("info_tables", "SELECT table_schema, table_name, table_type FROM information_schema.tables "
     "WHERE table_schema = 'public' ORDER BY 2"),
    ("info_key_columns", "SELECT constraint_name, table_name, column_name, ordinal_position "
     "FROM information_schema.key_column_usage WHERE table_schema = 'public' ORDER BY 1, 4"),
    ("info_referential", "SELECT constraint_name, unique_constraint_name FROM "
     "information_schema.referential_constraints ORDER BY 1"),
    ("pg_tables_owner", "SELECT schemaname, tablename, tableowner FROM pg_tables WHERE "
     "schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 2"),
    ("pg_class_listing", "SELECT n.nspname, c.relname, c.relkind, "
     "pg_catalog.obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c JOIN "
     "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','v','m','p',"
     "'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"),
    ("pg_attribute_types", "SELECT c.relname, a.attname, t.typname, a.attnotnull, a.attnum FROM "
     "pg_attribute a JOIN pg_class c ON a.attrelid = c.oid JOIN pg_type t ON t.oid = "
     "a.atttypid WHERE c.relname = 'orders' AND a.attnum > 0 ORDER BY a.attnum"),
    ("pg_attrdef_expr", "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute "
     "a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE "
     "a.attrelid = 'events'::regclass AND a.attnum > 0 ORDER BY a.attnum"),
    ("pg_constraint_public", "SELECT conname, contype, pg_get_constraintdef(oid, true) FROM "
     "pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1"),
    ("pg_user_functions", "SELECT proname, pg_get_function_arguments(oid), "
     "pg_get_function_result(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
     "ORDER BY 1"),
    ("pg_serial_sequence", "SELECT pg_get_serial_sequence('events', 'id')"),
    ("pg_relation_sizes", "SELECT pg_table_size('orders') > 0, pg_indexes_size('orders') > 0"),
    ("reltuples_estimate", "SELECT reltuples::bigint FROM pg_class WHERE oid = "
     "'public.orders'::regclass"),
    ("has_column_privilege", "SELECT has_column_privilege('customers', 'email', 'SELECT')"),
    ("current_schemas", "SELECT current_schemas(true)"),
    ("format_type", "SELECT format_type('int4'::regtype, NULL), 'orders'::regclass::oid > 0"),
]  # fmt: skip

# answers that change from one run to the next: run, same number of rows
VOLATILE = {"pg_relation_sizes", "reltuples_estimate"}


@pytest.fixture(scope="module")
def sessions(pg: dict[str, Any]) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """The reader's session through the proxy and the owner's direct one."""
    reader = psycopg.connect(dsn(pg), autocommit=True)
    direct = owner(pg["role"], pg["database"])
    yield reader, direct
    reader.close()
    direct.close()


def rows_of(session: psycopg.Connection, sql: str, params: Any = None) -> Any:
    cur = session.execute(sql, params)
    return ([d.name for d in cur.description], cur.fetchall()) if cur.description else None


@pytest.mark.parametrize(("item", "sql"), READS, ids=[i for i, _ in READS])
def test_a_tool_or_analyst_read_answers_as_the_database_does(
    sessions: tuple[psycopg.Connection, psycopg.Connection], item: str, sql: str
) -> None:
    reader, direct = sessions
    got, expected = rows_of(reader, sql), rows_of(direct, sql)
    if item in VOLATILE:
        assert got[0] == expected[0] and len(got[1]) == len(expected[1])
    else:
        assert got == expected


# (id, statement, parameters): psycopg 3 binds on the server (extended protocol, $n)
BOUND = [
    ("keyset", "SELECT id FROM orders WHERE id > %s ORDER BY id LIMIT %s", (11, 2)),
    ("offset", "SELECT id FROM orders ORDER BY id LIMIT %s OFFSET %s", (2, 2)),
    ("ilike", "SELECT title FROM products WHERE title ILIKE %s ORDER BY 1", ("%g%",)),
    ("json_key", "SELECT id FROM events WHERE payload->>'user' = %s ORDER BY id", ("1",)),
    ("date_range", "SELECT count(*) FROM orders WHERE placed_at >= %s AND placed_at < %s",
     (datetime.date(2026, 4, 1), datetime.date(2026, 5, 1))),
    ("any_array", "SELECT id, total FROM orders WHERE total > %s AND status = ANY(%s) ORDER BY "
     "id", (10, ["paid", "shipped"])),
]  # fmt: skip


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize(("item", "sql", "params"), BOUND, ids=[i for i, *_ in BOUND])
def test_a_statement_bound_on_the_server_answers_as_the_database_does(
    sessions: tuple[psycopg.Connection, psycopg.Connection],
    item: str,
    sql: str,
    params: tuple[Any, ...],
    binary: bool,
) -> None:
    reader, direct = sessions
    got = reader.cursor(binary=binary).execute(sql, params).fetchall()
    assert got == direct.execute(sql, params).fetchall()


def test_psycopg_prepares_a_statement_and_runs_it_many_times(pg: dict[str, Any]) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        names = [
            conn.execute(
                "SELECT name FROM customers WHERE id = %s", (n % 4 + 1,), prepare=True
            ).fetchone()[0]  # type: ignore[index]
            for n in range(24)
        ]
    assert names[:4] == ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"]
    assert names[4:] == names[:4] * 5


def test_psycopg_pipeline_mode_and_a_read_only_transaction(pg: dict[str, Any]) -> None:
    with psycopg.connect(dsn(pg)) as conn:
        conn.read_only = True
        with conn.pipeline():
            cursors = [
                conn.execute("SELECT count(*) FROM orders WHERE customer_id = %s", (n,))
                for n in (1, 2, 3)
            ]
        assert [c.fetchone() for c in cursors] == [(2,), (1,), (2,)]
        conn.commit()


# ------------------------------------------------------------------ settings and transactions

# each on a session of its own, the same answer as directly
SETTINGS = [
    "SET statement_timeout = 30000",
    "SET statement_timeout TO '30s'",
    "SET SESSION statement_timeout = '1min'",
    "SET lock_timeout = '2s'",
    "SET application_name TO 'metabase'",
    "SET search_path TO public",
    'SET search_path = "$user", public',
    "SET search_path TO DEFAULT",
    "SET DateStyle TO ISO",
    "SET TIME ZONE 'UTC'",
    "SET TIME ZONE LOCAL",
    "SET client_min_messages TO warning",
    "SET bytea_output = 'hex'",
    "SET default_transaction_read_only = on",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SHOW max_connections",
    "SHOW lc_collate",
    "SHOW server_encoding",
    "SHOW client_encoding",
    "SHOW integer_datetimes",
    "SHOW max_identifier_length",
    "SHOW block_size",
    "SHOW application_name",
]


@pytest.mark.parametrize("sql", SETTINGS)
def test_a_harmless_setting_is_read_and_set(pg: dict[str, Any], sql: str) -> None:
    with (
        psycopg.connect(dsn(pg), autocommit=True) as session,
        owner(pg["role"], pg["database"]) as direct,
    ):
        assert rows_of(session, sql) == rows_of(direct, sql)


# ------------------------------------------------------------------------------------ psql


def psql(info: dict[str, Any], through: bool, *args: str) -> subprocess.CompletedProcess[str]:
    """psql as the reader through the proxy, or as the owner straight to PostgreSQL."""
    if through:
        where = ["-h", "127.0.0.1", "-p", str(info["port"]), "-U", "agent"]
        env = {**os.environ, "PGPASSWORD": info["tokens"]["reader"], "PGSSLMODE": "disable"}
    else:
        where = ["-h", "127.0.0.1", "-p", "5432", "-U", info["role"]]
        env = {**os.environ, "PGSSLMODE": "disable"}
    return subprocess.run(
        ["psql", *where, "-d", info["database"], "-X", "-v", "ON_ERROR_STOP=1", *args],
        capture_output=True, text=True, env=env, timeout=TIMEOUT,
    )  # fmt: skip


# describe commands the corpus leaves out, each equal to psql run directly (\\drds, its
# values withheld: usability p2)
DESCRIBE = [
    r"\d",
    r"\dt+",
    r"\d+ customers",
    r"\d+ products",
    r"\d events",
    r"\d+ order_totals",
    r"\df+",
    r"\dn+",
    r"\di+",
    r"\ds",
    r"\dD",
    r"\dc",
    r"\do",
    r"\dy",
    r"\dx+",
    r"\db",
    r"\des",
    r"\dew",
    r"\det",
    r"\dRp",
    r"\dA",
    r"\sf now",
    r"\sv order_totals",
    r"\d orders_placed_at",
    r"\dO",
    r"\ddp",
    r"\dT+",
    r"\dt",
    r"\df",
    r"\dn",
    r"\d+ orders",
    r"\d order_items",
    r"\dv",
    r"\dm",
    r"\dE",
    r"\dt public.*",
    r"\dX",
    r"\dT",
]


@pytest.mark.parametrize("command", DESCRIBE)
def test_a_psql_describe_command_shows_what_it_shows_directly(
    pg: dict[str, Any], command: str
) -> None:
    through, direct = psql(pg, True, "-c", command), psql(pg, False, "-c", command)
    assert through.returncode == 0 and "ERROR" not in through.stderr, through.stderr
    assert through.stdout == direct.stdout


def test_psql_expanded_output_and_a_read_only_transaction(pg: dict[str, Any]) -> None:
    steps = [
        r"\x on", "BEGIN READ ONLY", "SELECT id, status, total FROM orders WHERE id = 12",
        "SELECT count(*) FROM order_totals", "COMMIT",
    ]  # fmt: skip
    args = [a for step in steps for a in ("-c", step)]
    through, direct = psql(pg, True, *args), psql(pg, False, *args)
    assert through.returncode == 0, through.stderr
    assert through.stdout == direct.stdout
    assert "status | paid" in through.stdout


# ------------------------------------------------------------------ SQLAlchemy and pandas

INSPECTIONS = {
    "tables": lambda i: sorted(i.get_table_names()),
    "columns": lambda i: [(c["name"], str(c["type"]), c["nullable"])
                          for c in i.get_columns("orders")],
    "foreign_keys": lambda i: [(f["constrained_columns"], f["referred_table"],
                                f["referred_columns"]) for f in i.get_foreign_keys("order_items")],
    "indexes": lambda i: [(x["name"], x["column_names"]) for x in i.get_indexes("orders")],
    "primary_key": lambda i: i.get_pk_constraint("order_items")["constrained_columns"],
    "unique": lambda i: [u["column_names"] for u in i.get_unique_constraints("products")],
    "views": lambda i: i.get_view_names(),
    "view_definition": lambda i: "sum(o.total)" in i.get_view_definition("order_totals"),
    "comment": lambda i: i.get_table_comment("customers")["text"],
    "schemas": lambda i: i.get_schema_names(),
    "sequences": lambda i: i.get_sequence_names(),
    "multi_columns": lambda i: sorted(t for _, t in i.get_multi_columns()),
}  # fmt: skip

EXPECTED_INSPECTION: dict[str, Any] = {
    "columns": [("id", "INTEGER", False), ("customer_id", "INTEGER", True),
                ("status", "TEXT", False), ("placed_at", "TIMESTAMP", False),
                ("total", "NUMERIC(10, 2)", False)],
    "foreign_keys": [(["order_id"], "orders", ["id"]), (["product_id"], "products", ["id"])],
    "indexes": [("orders_placed_at", ["placed_at"])],
    "primary_key": ["order_id", "product_id"],
    "unique": [["sku"]],
    "views": ["order_totals"],
    "view_definition": True,
    "comment": "people who buy",
    "schemas": ["information_schema", "public"],
    "sequences": ["events_id_seq"],
}  # fmt: skip


def check_inspection(found: dict[str, Any]) -> None:
    for key, value in EXPECTED_INSPECTION.items():
        assert found[key] == value, key
    assert {"customers", "orders", "order_items", "products", "events"} <= set(found["tables"])
    assert found["multi_columns"] == found["tables"] or set(found["tables"]) <= set(
        found["multi_columns"]
    )


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sqlalchemy_inspector_reads_the_schema(pg: dict[str, Any], driver: str) -> None:
    engine = create_engine(url(pg, f"postgresql+{driver}"), connect_args={"sslmode": "disable"})
    try:
        with engine.connect() as conn:
            i = inspect(conn)
            check_inspection({k: f(i) for k, f in INSPECTIONS.items()})
    finally:
        engine.dispose()


def test_sqlalchemy_inspector_over_asyncpg(pg: dict[str, Any]) -> None:
    async def work() -> dict[str, Any]:
        engine = create_async_engine(url(pg, "postgresql+asyncpg"), connect_args={"ssl": False})
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: {k: f(inspect(c)) for k, f in INSPECTIONS.items()}
                )
        finally:
            await engine.dispose()

    check_inspection(asyncio.run(asyncio.wait_for(work(), TIMEOUT)))


def test_sqlalchemy_reflection_core_and_orm_over_psycopg2(pg: dict[str, Any]) -> None:
    """psycopg2 binds on the client: reflection's current_setting(...) arrives a literal."""
    engine = create_engine(url(pg, "postgresql+psycopg2"), connect_args={"sslmode": "disable"})
    try:
        with engine.connect() as conn:
            metadata = MetaData()
            metadata.reflect(conn, only=["orders", "customers", "products", "order_items"])
            orders = metadata.tables["orders"]
            assert list(orders.c.keys()) == ["id", "customer_id", "status", "placed_at", "total"]
            by_status = select(orders.c.status, func.count()).group_by(orders.c.status)
            assert conn.execute(by_status.order_by(orders.c.status)).fetchall() == [
                ("paid", 3), ("pending", 1), ("refunded", 1), ("shipped", 1),
            ]  # fmt: skip
            loaded = Table("products", MetaData(), autoload_with=conn)
            assert conn.execute(select(func.count()).select_from(loaded)).scalar() == 4
    finally:
        engine.dispose()


class _Base(DeclarativeBase):
    pass


class _Order(_Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int]
    status: Mapped[str]
    total: Mapped[Decimal]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sqlalchemy_orm_queries_pages_and_gets(pg: dict[str, Any], driver: str) -> None:
    engine = create_engine(url(pg, f"postgresql+{driver}"), connect_args={"sslmode": "disable"})
    try:
        with Session(engine) as session:
            page = session.scalars(
                select(_Order).where(_Order.total > 5).order_by(_Order.id).limit(2).offset(2)
            )
            assert [(o.id, o.status) for o in page] == [(12, "paid"), (14, "paid")]
            got = session.get(_Order, 13)
            assert got is not None and got.status == "refunded"
            totals = session.execute(
                select(_Order.customer_id, func.sum(_Order.total))
                .group_by(_Order.customer_id)
                .order_by(_Order.customer_id)
            ).all()
            assert totals[0] == (1, Decimal("44.48"))
    finally:
        engine.dispose()


def test_pandas_read_sql(pg: dict[str, Any]) -> None:
    engine = create_engine(url(pg, "postgresql+psycopg"), connect_args={"sslmode": "disable"})
    classic = create_engine(url(pg, "postgresql+psycopg2"), connect_args={"sslmode": "disable"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = pd.read_sql("SELECT status, sum(total) s FROM orders GROUP BY status", engine)
            assert sorted(frame["status"]) == ["paid", "pending", "refunded", "shipped"]
            one = pd.read_sql(
                text("SELECT * FROM orders WHERE customer_id = :c ORDER BY id"),
                engine,
                params={"c": 1},
            )
            assert list(one["id"]) == [10, 11]
            dated = pd.read_sql_query(
                "SELECT placed_at, total FROM orders ORDER BY id", engine, parse_dates=["placed_at"]
            )
            assert str(dated["placed_at"].dtype).startswith("datetime64")
            chunks = pd.read_sql("SELECT * FROM orders ORDER BY id", engine, chunksize=2)
            assert sum(len(c) for c in chunks) == 6
            table = pd.read_sql_table("orders", classic)
            assert table.shape == (6, 5)
            with psycopg.connect(dsn(pg)) as raw:
                products = pd.read_sql("SELECT * FROM products ORDER BY id", raw)
            assert list(products["sku"]) == ["W-1", "G-2", "S-3", "F-4"]
    finally:
        engine.dispose()
        classic.dispose()


# ------------------------------------------------------------------------------------ asyncpg


async def _asyncpg_types(dsn_: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn_)
    try:
        found: dict[str, Any] = {}
        # asyncpg's type introspection: a codec set on jsonb, composite, range, point,
        # arrays of ranges and of numerics
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        found["jsonb"] = await conn.fetchval("SELECT attrs FROM products WHERE id = 1")
        found["param_jsonb"] = await conn.fetchval("SELECT $1::jsonb->>'a'", {"a": "b"})
        found["types"] = tuple(
            await conn.fetchrow(
                "SELECT int4range(1, 5), '(1,2)'::point, ARRAY[int4range(1, 2)], ROW(1, 'a'), "
                "'{1,2}'::int[], 'ab'::varchar(3), interval '1 day', B'101', '\\x01'::bytea"
            )
        )
        found["numerics"] = [
            r[0] for r in await conn.fetch("SELECT x FROM unnest($1::numeric[]) x", [1, 2])
        ]
        found["in_list"] = [
            r[0] for r in await conn.fetch(
                "SELECT sku FROM products WHERE id = ANY($1::int[]) ORDER BY id", [1, 2]
            )
        ]  # fmt: skip
        # keyset pagination with a statement prepared once
        page = await conn.prepare(
            "SELECT id, placed_at FROM orders WHERE (placed_at, id) > ($1, $2) "
            "ORDER BY placed_at, id LIMIT 2"
        )
        seen: list[int] = []
        last: tuple[Any, int] = (datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC), 0)
        while rows := await page.fetch(*last):
            seen += [r["id"] for r in rows]
            last = (rows[-1]["placed_at"], rows[-1]["id"])
        found["keyset"] = seen
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            found["in_tx"] = await conn.fetchval("SELECT count(*) FROM orders")
        found["ilike"] = await conn.fetchval(
            "SELECT title FROM products WHERE title ILIKE $1", "%adg%"
        )
        return found
    finally:
        await conn.close()


def test_asyncpg_type_introspection_codecs_and_keyset_pages(pg: dict[str, Any]) -> None:
    found = asyncio.run(asyncio.wait_for(_asyncpg_types(dsn(pg)), TIMEOUT))
    assert found["jsonb"] == {"color": "red", "dims": {"w": 2, "h": 3}}
    assert found["param_jsonb"] == "b"
    assert found["types"][0] == asyncpg.Range(1, 5)
    assert found["types"][3] == (1, "a")
    assert found["numerics"] == [Decimal(1), Decimal(2)]
    assert found["in_list"] == ["W-1", "G-2"]
    assert found["keyset"] == [10, 11, 12, 13, 14, 15]
    assert found["in_tx"] == 6
    assert found["ilike"] == "Gadget"


def test_nothing_here_leaks_a_masked_column(pg: dict[str, Any], tmp_path: Path) -> None:
    """The reader's e-mail column stays masked beside the tools' reads above."""
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        emails = conn.execute("SELECT email FROM customers ORDER BY id").fetchall()
    assert emails == [(MASKED,)] * 4


# Metabase reads a JSON column's keys as columns of their own and filters on them with a
# path written as an array (`attrs #>> array['color']::text[]`); the same path as the
# string '{color}' was always keyed (pgusable-json-array-path.patch)
ARRAY_PATHS = [
    ("metabase_json_filter", 'SELECT count(*) AS "count" FROM "public"."products" WHERE '
     '("public"."products"."attrs"#>> array[\'color\']::text[]) = \'red\''),
    ("array_path", "SELECT count(*) FROM products WHERE (attrs #>> ARRAY['color']) = 'red'"),
    ("typed_literal_path", "SELECT id FROM products WHERE (attrs #>> '{dims,w}'::text[]) = '2'"),
    ("array_path_output", "SELECT attrs #>> ARRAY['dims', 'w'] FROM products ORDER BY id"),
]  # fmt: skip


@pytest.mark.parametrize(("item", "sql"), ARRAY_PATHS, ids=[i for i, _ in ARRAY_PATHS])
def test_a_json_path_written_as_an_array_is_read_as_its_keys(
    sessions: tuple[psycopg.Connection, psycopg.Connection], item: str, sql: str
) -> None:
    reader, direct = sessions
    assert rows_of(reader, sql) == rows_of(direct, sql)


@pytest.mark.parametrize(
    "sql",
    [
        # a pattern over the value under a key stays a question about a document's text
        "SELECT id FROM events WHERE (payload #>> ARRAY['ip']) LIKE '10.%'",
        # a key the array literal would spell otherwise, or a computed one: any key
        "SELECT id FROM events WHERE (payload #>> ARRAY['a,b']) = 'x'",
        "SELECT id FROM events WHERE (payload #>> ARRAY[kind]) = 'x'",
    ],
)
def test_a_json_path_array_asks_no_more_than_its_string_form(
    sessions: tuple[psycopg.Connection, psycopg.Connection], sql: str
) -> None:
    reader, _ = sessions
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
        reader.execute(sql)


# Whether a value is under a JSON key (`payload->>'page' IS NOT NULL`) asks what
# `payload ? 'page'` asks (pgusable-json-key-null-test.patch)
KEY_NULL_TESTS = [
    "SELECT kind, count(*) FROM events WHERE payload->>'page' IS NOT NULL GROUP BY kind ORDER BY 1",
    "SELECT count(*) FILTER (WHERE payload->>'ip' IS NULL) FROM events",
    "SELECT id FROM events WHERE payload #>> '{tags,0}' IS NOT NULL ORDER BY id",
]


@pytest.mark.parametrize("sql", KEY_NULL_TESTS)
def test_a_null_test_of_a_json_key_answers_as_the_database_does(
    sessions: tuple[psycopg.Connection, psycopg.Connection], sql: str
) -> None:
    reader, direct = sessions
    assert rows_of(reader, sql) == rows_of(direct, sql)


@pytest.mark.parametrize(
    "sql",
    [
        # a value under a sensitive key's name, or computed from the value's text
        "SELECT id FROM events WHERE payload->>'ssn' IS NULL",
        "SELECT id FROM events WHERE upper(payload->>'page') IS NULL",
    ],
)
def test_a_null_test_of_a_sensitive_key_or_of_a_computed_value_stays_refused(
    sessions: tuple[psycopg.Connection, psycopg.Connection], sql: str
) -> None:
    reader, _ = sessions
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
        reader.execute(sql)
