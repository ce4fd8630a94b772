"""Probe P61 (helper pgattack25): behind pgbouncer in transaction mode, a view of the
database's read what the server connection kept for another session.

test_pg_probe_p59 and p60 refuse a statement naming pg_prepared_statements, pg_cursors,
pg_backend_memory_contexts (or their functions), lastval() or currval() there; a view the
database defines over them was read all the same. An application straight at pgbouncer
left on the one server connection (pool_size 1) a prepared statement whose text names an
SSN, and took `nextval('p61_orders')` (4111). Then a masked dba through the proxy:

    SELECT count(*) FROM p61_statements   -- 1: the application's statement (its text
                                          -- is masked, but p59 refuses even the count)

and a pii-reading dba `SELECT v FROM p61_last` -- 4111, the application's value

(`CREATE VIEW p61_statements AS SELECT statement FROM pg_prepared_statements`,
`CREATE VIEW p61_last AS SELECT lastval() AS v`). Now the proxy lists the session-list
functions a view runs (view_functions, proxies/postgres/user_code.py), and behind the
pooler reading a view running them is judged as naming them
(rego/portcullis/postgres_pooler.rego).
"""

from __future__ import annotations

import psycopg
import pytest
from pooler_stack import made_for_the_role, straight_at_pgbouncer
from test_pgbouncer_pooler import pooled_gateway, psql

pytestmark = pytest.mark.integration


async def test_views_over_other_sessions_state_are_judged_as_it(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        made_for_the_role(
            gw,
            "CREATE SEQUENCE p61_orders START 4111",
            "ALTER SEQUENCE p61_orders OWNER TO {role}",
            "CREATE VIEW p61_statements AS SELECT statement FROM pg_prepared_statements",
            "CREATE VIEW p61_cursors AS SELECT statement FROM pg_catalog.pg_cursor()",
            "CREATE VIEW p61_nested AS SELECT statement FROM p61_statements",
            "CREATE VIEW p61_last AS SELECT lastval() AS v",
            "CREATE VIEW p61_current AS SELECT currval('p61_orders') AS v",
            "GRANT SELECT ON p61_statements, p61_cursors, p61_nested, p61_last, p61_current"
            " TO {role}",
        )
        with psycopg.connect(straight_at_pgbouncer(gw), autocommit=True) as app:
            app.execute("SELECT id FROM customers WHERE ssn = '123-45-6789'", prepare=True)
            with app.transaction():
                app.execute("SET TRANSACTION READ WRITE")
                assert app.execute("SELECT nextval('p61_orders')").fetchall() == [(4111,)]
        dba = gw.dsn(gw.token(("dba",)))
        for view in ("p61_statements", "p61_cursors", "p61_nested"):
            sql = f"SELECT count(*) FROM {view}"
            code, out, err = await psql(dba, sql)
            assert code != 0 and "behind a transaction pooler" in err, (sql, out, err)
        for groups in [("dba",), ("dba", "pii-readers")]:
            for view in ("p61_last", "public.p61_current"):
                code, out, err = await psql(gw.dsn(gw.token(groups)), f"SELECT v FROM {view}")
                assert code != 0 and "behind a transaction pooler" in err, (groups, view, out, err)
        # a pii-reader may read the session lists, as it may name them
        code, out, err = await psql(
            gw.dsn(gw.token(("dba", "pii-readers"))), "SELECT count(*) >= 0 FROM p61_nested"
        )
        assert code == 0 and out.strip() == "t", (out, err)
