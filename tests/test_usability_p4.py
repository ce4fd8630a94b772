"""Usability probe 4 (helper pgusable2): SQLAlchemy's table options (get_table_options,
MetaData.reflect, Table(..., autoload_with=...)) over psycopg 3 and asyncpg, which bind the
name current_setting reads (`current_setting($1::VARCHAR)`, default_table_access_method),
answer a READER through the real PDP on the shipped policy, the real Postgres proxy and
PostgreSQL; and a bound name readers may not read stays unread, whatever the client binds
at a later Bind of the same statement, in text or binary, and wherever `$n` is not the
Bind's value (PREPARE, DECLARE, EXPLAIN, a DO block)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import MetaData, Table, create_engine, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from test_usability_p1 import sessions  # noqa: F401  (a fixture)
from test_usability_p2 import TIMEOUT, dsn, pg, url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

TABLES = ["customers", "employees", "events", "order_items", "orders", "products"]


def reflected(conn: Any) -> dict[str, Any]:
    metadata = MetaData()
    metadata.reflect(conn, only=TABLES)
    return {
        "options": inspect(conn).get_table_options("orders"),
        "tables": sorted(metadata.tables),
        "columns": [c.name for c in Table("orders", MetaData(), autoload_with=conn).c],
    }


EXPECTED = {
    "tables": TABLES,
    "columns": ["id", "customer_id", "status", "placed_at", "total"],
}


def test_sqlalchemy_reflection_over_psycopg(pg: dict[str, Any]) -> None:  # noqa: F811
    engine = create_engine(url(pg, "postgresql+psycopg"), connect_args={"sslmode": "disable"})
    try:
        with engine.connect() as conn:
            found = reflected(conn)
    finally:
        engine.dispose()
    assert {k: found[k] for k in EXPECTED} == EXPECTED


def test_sqlalchemy_reflection_over_asyncpg(pg: dict[str, Any]) -> None:  # noqa: F811
    async def work() -> dict[str, Any]:
        engine = create_async_engine(url(pg, "postgresql+asyncpg"), connect_args={"ssl": False})
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(reflected)
        finally:
            await engine.dispose()

    found = asyncio.run(asyncio.wait_for(work(), TIMEOUT))
    assert {k: found[k] for k in EXPECTED} == EXPECTED


def test_a_readable_name_bound_reads_it(
    sessions: tuple[psycopg.Connection, psycopg.Connection],  # noqa: F811
) -> None:
    reader, direct = sessions
    for sql in ("SELECT current_setting(%s)", "SELECT current_setting(%s::varchar, true)"):
        for name in ("default_table_access_method", "TimeZone", "server_version_num"):
            got = reader.execute(sql, (name,)).fetchone()
            assert got == direct.execute(sql, (name,)).fetchone()


SECRETS = ["primary_conninfo", "archive_command", "pgusable2.secret", "data_directory"]


@pytest.mark.parametrize("name", SECRETS)
def test_a_bound_name_readers_may_not_read_stays_unread(
    sessions: tuple[psycopg.Connection, psycopg.Connection],  # noqa: F811
    name: str,
) -> None:
    reader, _ = sessions
    for sql in ("SELECT current_setting(%s)", "SELECT current_setting(%s::text, true)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
            reader.execute(sql, (name,))
        # in binary format too
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
            reader.cursor(binary=True).execute(sql, (name,))
    # a name cut by a length, or built around the parameter: never judged by the value
    for sql in ("SELECT current_setting(%s::varchar(30))", "SELECT current_setting(%s || '')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
            reader.execute(sql, ("timezone",))


def test_a_prepared_statement_is_judged_at_each_bind(pg: dict[str, Any]) -> None:  # noqa: F811
    """asyncpg prepares once (Parse) and binds many times, in binary: a readable name,
    then a secret one, then the readable one again."""

    async def work() -> list[Any]:
        conn = await asyncpg.connect(dsn(pg))
        try:
            statement = await conn.prepare("SELECT current_setting($1::varchar)")
            first = await statement.fetchval("TimeZone")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="denied by policy"):
                await statement.fetchval("primary_conninfo")
            again = await statement.fetchval("timezone")
            refused = []
            for sql in ("SELECT current_setting($1)", "SELECT current_setting($1, true)"):
                try:
                    await conn.fetchval(sql, "archive_command")
                except asyncpg.InsufficientPrivilegeError as exc:
                    refused.append("denied by policy" in str(exc))
            return [first, again, refused]
        finally:
            await conn.close()

    first, again, refused = asyncio.run(asyncio.wait_for(work(), TIMEOUT))
    assert first == again and first
    assert refused == [True, True]


# `$1` that is not the Bind's value: the name bound is not what is read
NOT_BOUND = [
    "PREPARE pgusable2_p(text) AS SELECT current_setting($1)",
    "DECLARE pgusable2_c CURSOR FOR SELECT current_setting($1)",
    "EXPLAIN SELECT current_setting($1)",
    "DO $$BEGIN PERFORM current_setting($1); END$$",
]


@pytest.mark.parametrize("sql", NOT_BOUND)
def test_a_parameter_that_is_not_the_binds_value_is_refused(
    sessions: tuple[psycopg.Connection, psycopg.Connection],  # noqa: F811
    sql: str,
) -> None:
    reader, _ = sessions
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
        reader.execute(sql.replace("$1", "%s"), ("timezone",), prepare=False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
        reader.execute(sql)
