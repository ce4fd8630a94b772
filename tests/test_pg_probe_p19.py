"""Probe P19 (helper pgattack5) against a real PostgreSQL whose upstream credential is the
`postgres` SUPERUSER, as a reader outside pii-readers.

template0 rewritten. The catalogue facts tell a built-in changed in place (CREATE OR
REPLACE FUNCTION pg_catalog.age(timestamp) ...: the same OID) by its row's xmin, newer than
the last transaction initdb ran, which they read as the xmin of template0's pg_database row
(user_code.AFTER_INITDB). A superuser's `UPDATE pg_database SET datallowconn = false WHERE
datname = 'template0'` after the change wrote that row again: the boundary moved past the
changed built-in, which was then judged as initdb made it (the reader's `SELECT
age(timestamp '2020-01-01')` ran the superuser's code). The boundary is now the least of
template0's row and the rows of the databases and of this database's relations made since
(each newer than initdb: a superuser must rewrite them all), and a proxy keeps the least it
read of its server: one read newer than that is no catalogue it can judge by (sessions are
refused: fail closed).
These tests run their own cluster (tests/pg_cluster.py): template0 is the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest
from adversary import RawClient, parse, ready_client, running_arena
from pdp_harness import REGO
from pg_cluster import throwaway_cluster
from pg_harness import gateway_on, running_gateway
from pg_probe_stack import SAM, pending_approval

from proxies.postgres import codec
from proxies.postgres.catalog_watch import POLL_SECONDS
from proxies.postgres.tracker import Expect, ResponseTracker

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


async def test_template0_rewritten_where_no_database_was_made_since_initdb(
    tmp_path, cluster
) -> None:
    # the proxy serves `postgres` (made by initdb), p19 dropped: its own tables bound it
    admin(cluster, "postgres", "DROP DATABASE p19", "CREATE TABLE p19_orders (id int)")
    admin(cluster, "postgres", CHANGE_AGE, MOVE_TEMPLATE0)
    async with gateway_on(
        tmp_path, "postgres", "postgres", "unused", upstream=f"127.0.0.1:{cluster}"
    ) as gw:
        assert not await age_answered(gw)


async def test_a_reader_runs_the_built_in_as_before(tmp_path, cluster) -> None:
    async with gateway(tmp_path, cluster) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("p19-reader@example.com", ("readonly",))))
        try:
            assert await conn.fetchval("SELECT age(timestamp '2020-01-01') > interval '1 day'")
        finally:
            await conn.close()


# Code a range or base type runs with nothing in the statement naming it: the planner
# estimates `during && '[1,5)'` over a range column with statistics by the type's
# subtype_diff (any language: here plpgsql, setting application_name), and reading a column
# runs its type's output function. The facts listed the type's name (a cast to it was
# judged) but not the tables holding it: a reader's count over bookings ran public.noisy_diff.
# Now a relation with a column of such a type (itself, a domain over it, an array of it, its
# multirange, a composite holding it) runs its code when read (view_functions, as an
# operator class's), and a built-in type given such code (UPDATE pg_range of numrange) is
# judged as a cast no statement names (user_casts: every statement).
RANGES = """
CREATE FUNCTION public.noisy_diff(a int4, b int4) RETURNS float8 LANGUAGE plpgsql IMMUTABLE
  AS $$ BEGIN PERFORM set_config('application_name', 'p19diff', false); RETURN a - b; END $$;
CREATE FUNCTION public.noisy_ndiff(a numeric, b numeric) RETURNS float8 LANGUAGE plpgsql
  IMMUTABLE AS $$ BEGIN PERFORM set_config('application_name', 'p19ndiff', false);
  RETURN a - b; END $$;
CREATE TYPE public.slot AS RANGE (subtype = int4, subtype_diff = public.noisy_diff);
CREATE DOMAIN public.slot_d AS public.slot;
CREATE TYPE public.holder AS (s public.slot);
CREATE TABLE bookings (id int, during public.slot);
CREATE TABLE wrapped (id int, d public.slot_d, ds public.slot[], h public.holder,
  m public.slot_multirange);
CREATE VIEW bookings_v AS SELECT id, during FROM bookings;
INSERT INTO bookings SELECT g, ('[' || g || ',' || (g + 3) || ')')::public.slot
  FROM generate_series(1, 2000) g;
INSERT INTO wrapped SELECT id, during, ARRAY[during], ROW(during)::public.holder,
  public.slot_multirange(during) FROM bookings;
-- (amount: a numrange may hold a card, so questions about it are refused unless its name is
-- in postgres.plain_number_columns, which ships amount; pgmask8)
CREATE TABLE spans (id int, amount numrange);
INSERT INTO spans SELECT g, numrange(g, g + 3) FROM generate_series(1, 2000) g;
ANALYZE bookings; ANALYZE wrapped; ANALYZE spans;
"""
# (spelt as the catalogue questions print it with only pg_catalog on their path: p28)
REVIEWED = "public.slot -> public.slot_multirange by public.slot_multirange (explicit)"


@pytest.fixture(scope="module")
def ranges(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The adversary's arena, the range type's own multirange cast reviewed (else every
    statement is refused for it, and no type code is reached)."""
    tmp = tmp_path_factory.mktemp("ranges")
    policies = tmp / "rego"
    shutil.copytree(REGO, policies)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["postgres"]["reviewed_casts"] = {REVIEWED: True}
    (policies / "data.json").write_text(json.dumps(data))
    with running_arena(tmp, policies=policies) as arena:
        with arena.admin() as a:
            a.execute(RANGES)
        yield arena


TYPE_CODE_READS = [
    "SELECT count(*) FROM bookings WHERE during && '[1,5)'",
    "SELECT count(*) FROM public.bookings WHERE during << '[100,105)'",
    "SELECT count(*) FROM bookings_v WHERE during && '[1,5)'",
    "SELECT count(*) FROM wrapped WHERE d && '[1,5)'",
    "SELECT count(*) FROM wrapped WHERE ds[1] && '[1,5)'",
    "SELECT count(*) FROM wrapped WHERE (h).s && '[1,5)'",
    "SELECT count(*) FROM wrapped WHERE m && '{[1,5)}'",
]


@pytest.mark.parametrize("sql", TYPE_CODE_READS)
def test_a_range_types_subtype_diff_is_judged_where_its_columns_are_read(ranges, sql) -> None:
    c = ready_client(ranges, ("readonly",), "p19")
    try:
        answer = c.query(sql)
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
        assert c.show("application_name") != "p19diff"
    finally:
        c.close()


def test_a_built_in_range_given_the_databases_code_is_judged_everywhere(ranges) -> None:
    before = ready_client(ranges, ("readonly",), "p19")
    try:
        assert not before.query("SELECT count(*) FROM spans WHERE amount && '[1,5)'").errors
    finally:
        before.close()
    with ranges.admin() as a:
        a.execute(
            "UPDATE pg_catalog.pg_range SET rngsubdiff = 'public.noisy_ndiff'::regproc"
            " WHERE rngtypid = 'pg_catalog.numrange'::regtype"
        )
    try:
        c = ready_client(ranges, ("readonly",), "p19")
        try:
            answer = c.query("SELECT count(*) FROM spans WHERE amount && '[1,5)'")
            assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
            assert c.show("application_name") != "p19ndiff"
        finally:
            c.close()
    finally:
        with ranges.admin() as a:
            a.execute(
                "UPDATE pg_catalog.pg_range SET rngsubdiff = 'pg_catalog.numrange_subdiff'::regproc"
                " WHERE rngtypid = 'pg_catalog.numrange'::regtype"
            )


# A change made through the proxy itself, then used at once. The catalogue watch read
# built-in rows written since initdb every POLL_SECONDS only, and a cached verdict was
# reused with the facts the session had: a dba's UPDATE of pg_proc (through the proxy, no
# approval needed) making pg_catalog.age(timestamp) set application_name was followed,
# within the poll, by a reader's `SELECT age(...)` whose verdict the cache held (or a
# first-time statement calling obj_description, changed alike): the reader ran the
# superuser's code. Now a session's transaction that may have written the catalogue (its
# command tags: ResponseTracker) tells the watch as it ends, and no session reuses a
# verdict or decides with the facts until they are read again, built-in rows included.
@pytest.fixture(scope="module")
def still(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The adversary's arena, its catalogue watch's poll stopped (its only question after
    start-up is the one the test makes the proxy ask)."""
    with running_arena(tmp_path_factory.mktemp("still")) as arena:
        watch = arena.proxy.knowledge(arena.database).catalog
        watch.poll = 3600.0
        c = ready_client(arena, ("readonly",), "p19")  # the watch runs while a session is
        try:
            # the poll's sleep under way ends, and the next is the long one (should the
            # loop lag, the poll may ask once more: the test can then only pass on HEAD)
            time.sleep(3 * POLL_SECONDS)
            yield arena
        finally:
            c.close()


# (Written as the DDL it is: a write of pg_proc's rows through the proxy needs approval
# since test_pg_probe_p54, as a function whose body is a string does.)
CHANGED_THROUGH_THE_PROXY = [
    (
        "CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp) RETURNS interval LANGUAGE sql"
        " RETURN pg_catalog.set_config('application_name', 'p19ran', false)::interval",
        "SELECT age(timestamp '2020-01-01')",
    ),
    (
        "CREATE OR REPLACE FUNCTION pg_catalog.obj_description(oid) RETURNS text"
        " LANGUAGE sql STABLE RETURN pg_catalog.set_config('application_name', 'p19ran', false)",
        "SELECT obj_description(1259)",
    ),
]


@pytest.mark.parametrize(("change", "sql"), CHANGED_THROUGH_THE_PROXY)
def test_a_built_in_changed_through_the_proxy_is_judged_at_once(still, change, sql) -> None:
    reader = ready_client(still, ("readonly",), "p19")
    dba = ready_client(still, ("dba", "pii-readers"), "p19")
    try:
        if "age" in sql:
            assert not reader.query(sql).errors  # the verdict cached, before the change
        assert not reader.query(sql).errors
        made = dba.query(change)
        assert not made.errors, made.messages
        answer = reader.query(sql)
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
        assert reader.show("application_name") != "p19ran"
    finally:
        reader.close()
        dba.close()


# An approved write run again before the last one's answers are all in. A reader's write
# runs with the session's read-only default lifted for it and put back after it (the
# proxy's own quiet queries); the lift needs nothing in flight. A Bind of the approved
# statement (the same values: the approval reused) that came while the previous run's
# answers, or the proxy's own put-back, were still owed was sent without the lift, after
# the put-back, and failed at the server ("cannot execute UPDATE in a read-only
# transaction": test_approvals_views flaked so). It now waits for the server first.
def _bind_run(statement: str, value: bytes) -> bytes:
    return (
        codec.Bind("", statement, [0], [value], [0]).encode()
        + codec.Execute("", 0).encode()
        + codec.Sync().encode()
    )


async def test_an_approved_write_run_again_at_once_is_lifted_again(tmp_path) -> None:
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 30}) as gw:
        tok = gw.token("p19-writer@example.com", ("readonly",))
        c = await asyncio.to_thread(RawClient, gw.proxy.port, tok, gw.database)
        try:
            assert c.ready
            sql = "UPDATE orders SET total = total + 1 WHERE id = $1"
            first = asyncio.ensure_future(
                asyncio.to_thread(c.send, parse("w", sql), _bind_run("w", b"10"))
            )
            asked = await pending_approval(gw, set())
            await gw.pdp.approvals.decide(asked, SAM, True, "p19: run it")
            done = await asyncio.wait_for(first, 30)
            assert not done.errors and done.tags == ["UPDATE 1"], done.messages
            # twice more in one write: the second Bind comes while the first's answers
            # (and the put-back of read-only) are owed
            again = await asyncio.to_thread(
                c.send, _bind_run("w", b"10"), _bind_run("w", b"10"), ready=2
            )
            assert not again.errors, again.errors
            assert again.tags == ["UPDATE 1", "UPDATE 1"]
            shown = await asyncio.to_thread(c.query, "SHOW default_transaction_read_only")
            assert shown.rows == [[b"on"]], shown.messages
        finally:
            c.close()
        with gw.admin() as admin:
            total = admin.execute("SELECT total FROM orders WHERE id = 10").fetchone()[0]
            assert float(total) == 102.5


# which ended transactions tell the watch (sans IO): a write of rows only when it names a
# catalogue table or may hide the name it writes (a write-heavy workload through a dba's
# session would otherwise ask the catalogue again before every statement)
TOLD = [
    ("CREATE FUNCTION f() ...", "CREATE FUNCTION", True),
    ("DO $$ ... $$", "DO", True),
    ("EXPLAIN ANALYZE UPDATE pg_proc ...", "EXPLAIN", True),
    ("UPDATE pg_catalog.pg_proc SET prosrc = '' WHERE oid = 1", "UPDATE 1", True),
    ("UPDATE \"pg_proc\" SET prosrc = '' WHERE oid = 1", "UPDATE 1", True),
    ("UPDATE U&\"\\0070g_proc\" SET prosrc = '' WHERE oid = 1", "UPDATE 1", True),
    ("EXECUTE p(1)", "UPDATE 1", True),
    ("UPDATE orders SET total = 1 WHERE id = 10", "UPDATE 1", False),
    ("INSERT INTO orders VALUES (1, 1, 1)", "INSERT 0 1", False),
    ("SELECT 1", "SELECT 1", False),
    ("COPY orders TO STDOUT", "COPY 2", False),
    ("COPY pg_catalog.pg_proc FROM STDIN", "COPY 1", True),
]


@pytest.mark.parametrize(("sql", "tag", "told"), TOLD)
def test_a_transaction_that_may_write_the_catalogue_tells_the_watch(sql, tag, told) -> None:
    tracker = ResponseTracker()
    heard: list[bool] = []
    tracker.on_catalog_written = lambda: heard.append(True)
    tracker.expect(Expect("Query", command=sql))
    tracker.on_backend(codec.CommandComplete(tag))
    tracker.on_backend(codec.ReadyForQuery("I"))
    assert heard == ([True] if told else [])
