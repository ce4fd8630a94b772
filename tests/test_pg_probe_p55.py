"""Probe P55 (helper pgattack23): behind pgbouncer in transaction mode, a session-level SET
stays on the server connection for whichever client's transaction runs there next, and
the proxy checks its pins only as a session starts.

With one server connection (pool_size 1) a masked dba's

    SET search_path = p55, public      -- p55 holding a table named customers

had a reader's next `SELECT name FROM customers` answered from p55.customers (no rows,
not Ada and Bob; an INSERT INTO customers on a writable upstream would resolve there too:
a victim's rows where the dba reads them), a reader's `SET client_min_messages = error` /
`default_transaction_isolation = serializable` / `lock_timeout = '1ms'` ran the next
session under them, and a pii-reading dba's read of a view calling set_config did the
same as the SET. Now, behind the pooler, a
session-level change is allowed only of a setting that cannot reach another session
(rego/portcullis/postgres_pooler.rego pg_pooler_session_setting); SET LOCAL and RESET
stay, and psql, psycopg (prepare_threshold=None) and asyncpg (statement_cache_size=0,
which turns jit off and back with set_config) keep working.
"""

from __future__ import annotations

import asyncpg
import psycopg
import pytest
from pooler_stack import made_for_the_role
from test_pgbouncer_pooler import Pooled, pooled_gateway, psql

from pdp.sql import classify_fast, classify_reference

pytestmark = pytest.mark.integration

# (groups, SET) a session may not leave on the server connection
LEFT_BEHIND = [
    (("dba",), "SET search_path = p55, public"),
    (("dba",), "SET SESSION search_path TO p55, public"),
    (("dba",), "SET SCHEMA 'p55'"),
    (("dba",), "SELECT set_config('search_path', 'p55, public', false)"),
    (("dba",), "DO $$BEGIN SET search_path = p55, public; END$$"),
    (("dba",), "DO $$BEGIN PERFORM set_config('search_path', 'p55, public', false); END$$"),
    (("dba",), "SELECT set_config('app.tenant', '7', false)"),
    (("dba",), "SELECT set_config('app.tenant', '7', $$f$$)"),
    (("dba",), "SET enable_indexscan = off"),
    (("dba",), "SET SEED TO 0.5"),
    (("readonly",), "SET client_min_messages = error"),
    (("readonly",), "SET default_transaction_isolation = serializable"),
    (("readonly",), "SET lock_timeout = '1ms'"),
    (("readonly",), "SET IntervalStyle = postgres_verbose"),
    (("readonly",), "SET idle_session_timeout = '1h'"),
]

DEFAULTS = (
    "SELECT current_setting('search_path'), current_setting('client_min_messages'),"
    " current_setting('app.tenant', true),"
    " current_setting('default_transaction_isolation'), current_setting('lock_timeout'),"
    " current_setting('IntervalStyle'), current_setting('enable_indexscan')"
)


@pytest.mark.parametrize(
    ("sql", "local"),
    [
        ("SET LOCAL search_path = p55", True),
        ("SET LOCAL TIME ZONE 'UTC'", True),
        ("SET search_path = p55", False),
        ("SET SESSION search_path = p55", False),
        ("RESET search_path", False),
    ],
)
def test_the_classifier_tells_set_local_from_set(sql: str, local: bool) -> None:
    fast, reference = classify_fast(sql), classify_reference(sql)
    assert fast == reference
    assert fast is not None and fast[0].get("local", False) is local, fast


def _p55_schema(gw: Pooled) -> None:
    made_for_the_role(
        gw,
        "CREATE SCHEMA p55",
        "CREATE TABLE p55.customers (id int, name text, email text, ssn text)",
        "CREATE TYPE public.p55_mood AS ENUM ('ok')",
        "ALTER SCHEMA p55 OWNER TO {role}",
        "ALTER TABLE p55.customers OWNER TO {role}",
    )


async def test_a_session_level_set_does_not_reach_the_next_session(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        _p55_schema(gw)
        witness = gw.dsn(gw.token(("dba", "pii-readers")))
        code, before, err = await psql(witness, DEFAULTS)
        assert code == 0, err
        for groups, sql in LEFT_BEHIND:
            code, _, err = await psql(gw.dsn(gw.token(groups)), sql)
            assert code != 0 and "behind a transaction pooler" in err, (sql, err)
            # the next session on the one server connection: the role's values, public's rows
            code, after, err = await psql(witness, DEFAULTS)
            assert code == 0 and after == before, (sql, before, after, err)
        code, out, err = await psql(witness, "SELECT count(*) FROM customers")
        assert code == 0 and out.strip() == "2", (out, err)


async def test_set_local_reset_and_the_real_clients_still_work(tmp_path) -> None:
    # two server connections: psycopg's open transaction holds one, the proxy's catalogue
    # watch asks on the other
    async with pooled_gateway(tmp_path, pool_size=2) as gw:
        _p55_schema(gw)
        dba, reader = gw.dsn(gw.token(("dba", "pii-readers"))), gw.dsn(gw.token())
        code, out, err = await psql(
            dba,
            "BEGIN; SET LOCAL search_path = p55, public; SELECT count(*) FROM customers; COMMIT",
        )
        assert code == 0 and out.split() == ["BEGIN", "SET", "0", "COMMIT"], (out, err)
        code, out, err = await psql(dba, "SELECT count(*) FROM customers")
        assert code == 0 and out.strip() == "2", (out, err)
        # set_config with is_local true is SET LOCAL (an application's row-level security
        # tenant, say)
        code, out, err = await psql(
            dba,
            "BEGIN; SELECT set_config('app.tenant', '7', true);"
            " SELECT current_setting('app.tenant'); COMMIT",
        )
        assert code == 0 and out.split() == ["BEGIN", "7", "7", "COMMIT"], (out, err)
        tracked = "SELECT current_setting('TimeZone'), current_setting('DateStyle')"
        code, before, err = await psql(dba, tracked)
        assert code == 0, err
        for sql in (
            "RESET search_path",
            "SET TimeZone = 'Asia/Kolkata'",
            "SET DateStyle = 'SQL, DMY'",
            "SET application_name = p55",
        ):
            code, out, err = await psql(reader, sql)
            assert code == 0, (sql, err)
            # pgbouncer gives the next client its own values back
            code, after, err = await psql(dba, tracked)
            assert code == 0 and after == before, (sql, before, after)
        async with await psycopg.AsyncConnection.connect(reader, prepare_threshold=None) as conn:
            rows = await (await conn.execute("SELECT name FROM customers ORDER BY id")).fetchall()
            assert rows == [("Ada",), ("Bob",)]
        conn2 = await asyncpg.connect(reader, statement_cache_size=0)
        try:
            # a type asyncpg must introspect: its jit set_config round trip
            rows = await conn2.fetch("SELECT name, 'ok'::p55_mood AS mood FROM customers")
            assert sorted(r["name"] for r in rows) == ["Ada", "Bob"]
        finally:
            await conn2.close()


async def test_a_view_calling_set_config_does_not_set_for_the_next_session(tmp_path) -> None:
    """postgres_lineage.rego lets a pii-reading dba read a view calling set_config; behind the
    pooler the setting it changes stayed for the next session on the server connection."""
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        _p55_schema(gw)
        made_for_the_role(
            gw,
            "CREATE VIEW p55_path AS"
            " SELECT set_config('search_path', 'p55, public', false) AS path",
            "ALTER VIEW p55_path OWNER TO {role}",
        )
        pii, witness = gw.dsn(gw.token(("dba", "pii-readers"))), gw.dsn(gw.token())
        code, _, err = await psql(pii, "SELECT path FROM p55_path")
        assert code != 0 and "runs set_config behind a transaction pooler" in err, err
        code, out, err = await psql(witness, "SELECT name FROM customers ORDER BY id")
        assert code == 0 and out.split() == ["Ada", "Bob"], (out, err)
