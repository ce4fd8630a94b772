"""A prepared statement's executions name it in the session's recording (evidence6).

The PDP decides a statement of the extended protocol at its Parse; a client that parses
once and executes again and again (asyncpg's statement cache, JDBC, psycopg's prepared
statements) runs every execution under that one decision. `audit verify` disputes a
Postgres decision run more than once unless each run is an execution of one prepared
statement under its Parse's decision (pdp.evidence.event_times.EventTimes.runs_again):
the proxy's event of each Execute now names the statement it ran (`details.prepared`).
Before, those runs were counted apart as naming no statement.
"""

from __future__ import annotations

import asyncio

import asyncpg
from pg_harness import running_gateway

from pdp.domain.recordings import EVENTS_KIND, batch_events
from pdp.evidence.checkpoints import verify_store

DBA = ("dba", "pii-readers")


async def test_a_prepared_statements_executions_name_it(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        statement = await conn.prepare("SELECT id FROM orders WHERE id = $1")
        for n in range(3):
            await statement.fetch(n)
        for n in range(2):  # asyncpg's statement cache: one Parse, two executions
            await conn.fetch("SELECT name FROM customers WHERE id = $1", n)
        await conn.execute("SELECT 1")  # a simple Query: no prepared statement
        await conn.close()
        await asyncio.sleep(1.0)  # the recorder's last flush
        events = [
            e
            for r in await gw.pdp.store.query(kind=EVENTS_KIND)
            for e in batch_events(r.body)
            if e.get("type") == "command"
        ]
        named = {}
        for e in events:
            named.setdefault(e["command"], set()).add(e["details"].get("prepared"))
        assert named["SELECT 1"] == {None}, named
        orders = named["SELECT id FROM orders WHERE id = $1"]
        customers = named["SELECT name FROM customers WHERE id = $1"]
        assert len(orders) == len(customers) == 1 and None not in orders | customers, named
        assert orders != customers
        report = await verify_store(gw.pdp.store, gw.pdp.signer.public_key)
    assert report.ok, report.problems
    assert report.counted.verdicts == (
        "every command recorded as let through names a decision of its session that let"
        " that very command through"
    ), report.counted.verdicts
