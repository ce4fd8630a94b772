"""Probe P56 (helper pgattack23): behind pgbouncer in transaction mode, a temporary object
stays on the server connection (its pg_temp schema is the server connection's, and
pgbouncer runs no DISCARD between clients in transaction mode), and the next session's
unqualified relation and type names search pg_temp before anything else. With one server
connection (pool_size 1) a masked dba's

    BEGIN READ WRITE; CREATE TABLE pg_temp.customers (id int, name text); COMMIT

ran without approval (DDL without expressions), and a reader's next session's
`SELECT name FROM customers` answered from the dba's table (no rows, not Ada and Bob);
rows a later session writes to `customers` would land there for the dba. The TEMP views,
functions and types need approval there, which a temporary object reads as harmless. Now
a DDL statement making or changing a temporary object (TEMP, pg_temp-qualified, a view
over one) is refused behind the pooler for everyone (pdp/sql/entries.py temporary_object,
rego/portcullis/postgres_pooler.rego); a temporary table ON COMMIT DROP stays.
"""

from __future__ import annotations

import pytest
from pooler_stack import made_for_the_role
from test_pgbouncer_pooler import Pooled, pooled_gateway, psql

from pdp.sql import classify_fast, classify_reference

pytestmark = pytest.mark.integration

TEMPORARY = [
    "CREATE TABLE pg_temp.customers (id int, name text)",
    "CREATE TEMP VIEW customers AS SELECT id, name, 'fake' AS email FROM p56.fake",
    "CREATE VIEW pg_temp.customers AS SELECT id, name FROM p56.fake",
    "CREATE TEMPORARY TABLE customers AS SELECT * FROM p56.fake",
    "SELECT * INTO TEMP customers FROM p56.fake",
    "CREATE TEMP TABLE orders (id int, customer_id int, total numeric)",
    "CREATE VIEW customers_v AS SELECT * FROM pg_temp.customers",
    "CREATE FUNCTION pg_temp.lower(text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
    "CREATE TYPE pg_temp.p56 AS ENUM ('a')",
]


KEPT = [
    "CREATE TEMP TABLE t (id int) ON COMMIT DROP",
    "CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1",
    "CREATE TABLE customers_copy (id int)",
    "CREATE UNLOGGED TABLE u (id int)",
    "CREATE VIEW v AS SELECT name FROM customers",
]


@pytest.mark.parametrize("sql", TEMPORARY + KEPT)
def test_the_classifier_says_which_ddl_leaves_a_temporary_object(sql: str) -> None:
    fast, reference = classify_fast(sql), classify_reference(sql)
    assert fast == reference
    assert fast is not None and fast[0].get("temporary", False) is (sql in TEMPORARY), fast


def _p56_schema(gw: Pooled) -> None:
    made_for_the_role(
        gw,
        "CREATE SCHEMA p56",
        "CREATE TABLE p56.fake AS SELECT 7 AS id, 'Mallory' AS name",
        "ALTER SCHEMA p56 OWNER TO {role}",
        "ALTER TABLE p56.fake OWNER TO {role}",
    )


async def test_a_temporary_object_does_not_reach_the_next_session(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        _p56_schema(gw)
        dba, reader = gw.dsn(gw.token(("dba",))), gw.dsn(gw.token())
        for sql in TEMPORARY:
            code, _, err = await psql(dba, f"BEGIN READ WRITE; {sql}; COMMIT")
            assert code != 0 and "temporary object behind a transaction pooler" in err, (sql, err)
            # the next session, on the one server connection, reads public.customers
            code, out, err = await psql(reader, "SELECT name FROM customers ORDER BY id")
            assert code == 0 and out.split() == ["Ada", "Bob"], (sql, out, err)
        # a temporary table that ends with its transaction stays allowed
        code, out, err = await psql(
            dba,
            "BEGIN READ WRITE; CREATE TEMP TABLE p56_scratch (id int) ON COMMIT DROP;"
            " INSERT INTO p56_scratch VALUES (1); SELECT count(*) FROM p56_scratch; COMMIT",
        )
        assert code == 0 and "1" in out.split(), (out, err)


async def test_a_do_block_hiding_one_is_refused_not_asked(tmp_path) -> None:
    """Elsewhere an opaque DO block needs approval; behind the pooler what it may leave on
    the server connection reaches other sessions, which no approver of this one decides
    for."""
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        dba = gw.dsn(gw.token(("dba", "pii-readers")))
        for body in (
            "EXECUTE 'CREATE TEMP TABLE customers (id int, name text)'",
            "EXECUTE 'SET search_path = ' || quote_ident('pg_temp') || ', public'",
        ):
            code, _, err = await psql(dba, f"DO $$BEGIN {body}; END$$")
            assert code != 0 and "DO block with dynamic or non-SQL code behind a transaction" in err
