"""Probe P53 (helper pgattack22): behind pgbouncer in transaction mode, a pii-reader's
LISTEN handed other sessions' notifications to a reader.

LISTEN is denied outside pii-readers: what arrives for it is another session's NOTIFY
payload (pg_notify(..., row_to_json(c)::text) in a trigger), which the proxy cannot mask.
Behind a transaction pooler a LISTEN stays registered on the server connection it ran on,
and the notifications for it arrive in whichever client's transaction runs there next:

    pii-reader:  LISTEN orders_changed
    reader:      BEGIN; SELECT 1; COMMIT   -- Asynchronous notification "orders_changed"
                                           -- with payload "... hunter2-ada ..."

A name that outlives a transaction lives on one server connection (README: named
statements, DECLARE), and so does a LISTEN: refused for everyone behind the pooler
(rego/portcullis/postgres_pooler.rego). And a session denied LISTEN has asked for no
notification, so one arriving in it is another session's: the proxy withholds it
(proxies/postgres/tracker.py).

Against a real pgbouncer (tests/test_pgbouncer_pooler.py's pooled_gateway) in front of
the real server, through the real proxy, with psycopg.
"""

from __future__ import annotations

import psycopg
import pytest
from pooler_stack import pooled_admin, straight_at_pgbouncer
from test_pgbouncer_pooler import pooled_gateway, psql

pytestmark = pytest.mark.integration

PAYLOAD = "card 4111 1111 1111 1111 pw hunter2-ada"


async def test_a_listen_behind_the_pooler_is_refused_for_everyone(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        for groups in (("dba", "pii-readers"), ("readonly", "pii-readers")):
            code, _, err = await psql(gw.dsn(gw.token(groups)), "LISTEN p53_chan")
            assert code != 0 and "behind a transaction pooler" in err, (groups, err)


async def test_a_notification_left_on_the_server_connection_reaches_no_reader(tmp_path) -> None:
    # two server connections: the reader's transaction holds one, the proxy's catalogue
    # watch asks on the other
    async with pooled_gateway(tmp_path, pool_size=2) as gw:
        # someone straight at pgbouncer LISTENs on both, and leaves
        bouncer = straight_at_pgbouncer(gw)
        with psycopg.connect(bouncer) as one, psycopg.connect(bouncer) as two:
            one.execute("LISTEN p53_chan")  # each in its transaction: both connections
            two.execute("LISTEN p53_chan")
            one.commit()
            two.commit()
        got: list[psycopg.Notify] = []
        async with await psycopg.AsyncConnection.connect(
            gw.dsn(gw.token()), prepare_threshold=None
        ) as reader:
            reader.add_notify_handler(got.append)
            await reader.execute("SELECT 1")  # the transaction holds the server connection
            with pooled_admin(gw) as admin:
                admin.execute("SELECT pg_notify('p53_chan', %s)", (PAYLOAD,))
            await reader.commit()  # delivered before the transaction's end
            await reader.execute("SELECT 1")
            await reader.commit()
        assert not got, got
