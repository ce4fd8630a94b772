"""Probe P60 (helper pgattack25): behind pgbouncer in transaction mode, a session read
another session's sequence values, and a LOAD waited for approval.

An application straight at pgbouncer (as an application beside the gateway does) took
`nextval('p60_orders')` (4111) on the one server connection (pool_size 1). Then a masked
dba through the proxy:

    SELECT lastval()                  -- 4111: the application's last value
    SELECT currval('p60_orders')      -- 4111

which elsewhere answer only the session's own nextval (an error before one). And a
pii-reading dba's `LOAD 'auto_explain'` asked for approval, though the library stays
loaded in the server connection (its hooks and settings) for whichever session's
transaction runs there next. Now behind the pooler lastval() and currval() and LOAD are
refused for everyone (rego/portcullis/postgres_pooler.rego).
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from adversary import Answer, RawClient, function_call
from pooler_stack import made_for_the_role, straight_at_pgbouncer
from test_pgbouncer_pooler import pooled_gateway, psql

pytestmark = pytest.mark.integration

LASTVAL_OID = 2559  # pg_catalog.lastval(), as initdb makes it
READS = [
    "SELECT lastval()",
    "SELECT pg_catalog.lastval()",
    "SELECT currval('p60_orders')",
    "SELECT \"currval\"('public.p60_orders'::regclass)",
    "SELECT id FROM customers WHERE id < lastval()",
]


async def test_another_sessions_sequence_values_and_load_are_refused(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        made_for_the_role(
            gw, "CREATE SEQUENCE p60_orders START 4111", "ALTER SEQUENCE p60_orders OWNER TO {role}"
        )
        with (
            psycopg.connect(straight_at_pgbouncer(gw), autocommit=True) as app,
            app.transaction(),
        ):
            app.execute("SET TRANSACTION READ WRITE")
            assert app.execute("SELECT nextval('p60_orders')").fetchall() == [(4111,)]
        for groups in [("dba",), ("dba", "pii-readers")]:
            dsn = gw.dsn(gw.token(groups))
            for sql in READS:
                code, out, err = await psql(dsn, sql)
                assert code != 0 and "behind a transaction pooler" in err, (groups, sql, out, err)
                assert "4111" not in out
        dba = gw.dsn(gw.token(("dba", "pii-readers")))
        code, out, err = await psql(dba, "LOAD 'auto_explain'")
        assert code != 0 and "behind a transaction pooler" in err, (out, err)
        # a FunctionCall ('F') message of lastval by its OID, with no SQL text
        tok = gw.token(("dba", "pii-readers"))

        def call() -> Answer:
            c = RawClient(gw.proxy.port, tok, gw.database)
            try:
                return c.send(function_call(LASTVAL_OID))
            finally:
                c.close()

        answer = await asyncio.to_thread(call)
        assert answer.errors and "behind a transaction pooler" in answer.errors[0], answer
