"""Probe P19 (helper pgattack5) against a real PostgreSQL whose upstream credential is the
`postgres` SUPERUSER, as a reader outside pii-readers.

template0 rewritten. The catalogue facts tell a built-in changed in place (CREATE OR
REPLACE FUNCTION pg_catalog.age(timestamp) ...: the same OID) by its row's xmin, newer than
the last transaction initdb ran, which they read as the xmin of template0's pg_database row
(user_code.AFTER_INITDB). A superuser's `UPDATE pg_database SET datallowconn = false WHERE
datname = 'template0'` after the change wrote that row again: the boundary moved past the
changed built-in, which was then judged as initdb made it (the reader's `SELECT
age(timestamp '2020-01-01')` ran the superuser's code). The boundary is now the least of
template0's row and the rows of the databases made since (each newer than initdb: a
superuser must rewrite them all), and a proxy keeps the first it read of its server: one
read newer than that is no catalogue it can judge by (sessions are refused: fail closed).
These tests run their own cluster (tests/pg_cluster.py): template0 is the server's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest
from pg_cluster import throwaway_cluster
from pg_harness import gateway_on

pytestmark = pytest.mark.integration

CHANGE_AGE = (
    "CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp) RETURNS interval LANGUAGE plpgsql"
    " AS $$ BEGIN RAISE NOTICE 'age ran'; RETURN interval '1 day'; END $$"
)
MOVE_TEMPLATE0 = (
    "UPDATE pg_catalog.pg_database SET datallowconn = false WHERE datname = 'template0'"
)


@pytest.fixture
def cluster() -> Iterator[int]:
    with throwaway_cluster("host all all 127.0.0.1/32 trust\n") as (port, _):
        admin(port, "postgres", "CREATE DATABASE p19 OWNER postgres")
        admin(port, "p19", "CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
        yield port


def admin(port: int, database: str, *sql: str) -> None:
    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{port}/{database}", autocommit=True
    ) as c:
        for statement in sql:
            c.execute(statement)


@contextlib.asynccontextmanager
async def gateway(tmp: Path, port: int):  # type: ignore[no-untyped-def]
    async with gateway_on(tmp, "p19", "postgres", "unused", upstream=f"127.0.0.1:{port}") as gw:
        yield gw


async def age_answered(gw) -> bool:  # type: ignore[no-untyped-def]
    """Whether the reader's age() was run (the superuser's code, changed in place), not
    refused (at connect or at the statement)."""
    try:
        conn = await asyncpg.connect(gw.dsn(gw.token("p19-reader@example.com", ("readonly",))))
    except (asyncpg.PostgresError, OSError):
        return False
    try:
        await conn.fetchval("SELECT age(timestamp '2020-01-01')")
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()
    return True


async def test_template0_rewritten_after_a_change_does_not_hide_it(tmp_path, cluster) -> None:
    admin(cluster, "p19", CHANGE_AGE)
    async with gateway(tmp_path, cluster) as gw:
        assert not await age_answered(gw)  # judged as a changed built-in: denied
        admin(cluster, "postgres", MOVE_TEMPLATE0)
        assert not await age_answered(gw)


async def test_template0_rewritten_before_the_proxy_starts_does_not_hide_it(
    tmp_path, cluster
) -> None:
    # a database made since initdb (p19, the fixture's) bounds it still
    admin(cluster, "p19", CHANGE_AGE)
    admin(cluster, "postgres", MOVE_TEMPLATE0)
    async with gateway(tmp_path, cluster) as gw:
        assert not await age_answered(gw)


async def test_a_reader_runs_the_built_in_as_before(tmp_path, cluster) -> None:
    async with gateway(tmp_path, cluster) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("p19-reader@example.com", ("readonly",))))
        try:
            assert await conn.fetchval("SELECT age(timestamp '2020-01-01') > interval '1 day'")
        finally:
            await conn.close()
