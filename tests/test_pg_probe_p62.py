"""Probe P62 (helper pgattack25): behind pgbouncer in transaction mode, the database's code
that leaves nothing on the server connection was refused with what does.

The pooler's body reader (proxies/postgres/session_code.py, test_pg_probe_p57) took every
aggregate the database made, every internal function and every SQL-standard body calling
set_config as unknown code: a pii-reading dba's `SELECT p62_sum(id) FROM customers`
(`CREATE AGGREGATE p62_sum(int) (SFUNC = int4pl, STYPE = int)`), `SELECT p62_local()`
(`BEGIN ATOMIC SELECT set_config('application_name', 'x', true); END`: SET LOCAL) and
`SELECT p62_in('7')` (`LANGUAGE internal AS 'int4in'`, as a base type's input function
is made) were refused. Now an aggregate is judged by its support functions, a SQL-standard
body by its text as the server writes it back (pg_get_function_sqlbody), and an internal
function as the built-ins of its C symbol; those whose code does leave something (a
transition or final function calling set_config for the session, `AS
'set_config_by_name'`, `AS 'pg_advisory_lock_int8'`, `AS 'lastval'`) stay refused.
"""

from __future__ import annotations

import json

import pytest
from pooler_stack import made_for_the_role
from test_pgbouncer_pooler import pooled_gateway, psql

from proxies.postgres.session_code import session_code

MADE = [
    "CREATE AGGREGATE p62_sum(int) (SFUNC = int4pl, STYPE = int)",
    "CREATE FUNCTION p62_twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'",
    "CREATE AGGREGATE p62_fin(int) (SFUNC = int4pl, STYPE = int, FINALFUNC = p62_twice)",
    "CREATE FUNCTION p62_step(int, int) RETURNS int STRICT LANGUAGE plpgsql AS $$BEGIN"
    " PERFORM set_config('search_path', 'p62, public', false); RETURN $1 + $2; END$$",
    "CREATE AGGREGATE p62_bad(int) (SFUNC = p62_step, STYPE = int)",
    "CREATE AGGREGATE p62_mbad(int) (SFUNC = int4pl, STYPE = int, MSFUNC = p62_step,"
    " MINVFUNC = int4mi, MSTYPE = int)",
    "CREATE FUNCTION p62_settle(int) RETURNS int LANGUAGE plpgsql AS $$BEGIN"
    " SET search_path = p62, public; RETURN $1; END$$",
    "CREATE AGGREGATE p62_badfin(int) (SFUNC = int4pl, STYPE = int, FINALFUNC = p62_settle)",
    "CREATE FUNCTION p62_local() RETURNS text LANGUAGE sql BEGIN ATOMIC"
    " SELECT set_config('application_name', 'p62', true); END",
    "CREATE FUNCTION p62_return() RETURNS text LANGUAGE sql"
    " RETURN set_config('application_name', 'p62', true)",
    "CREATE FUNCTION p62_session() RETURNS text LANGUAGE sql BEGIN ATOMIC"
    " SELECT set_config('search_path', 'p62, public', false); END",
    "CREATE FUNCTION p62_in(cstring) RETURNS int LANGUAGE internal IMMUTABLE STRICT AS 'int4in'",
    "CREATE FUNCTION p62_config(text, text, boolean) RETURNS text LANGUAGE internal"
    " AS 'set_config_by_name'",
    "CREATE FUNCTION p62_lock(bigint) RETURNS void LANGUAGE internal AS 'pg_advisory_lock_int8'",
    "CREATE FUNCTION p62_last() RETURNS bigint LANGUAGE internal AS 'lastval'",
]
ALLOWED = {
    "SELECT p62_sum(id) FROM customers": "3",
    "SELECT p62_fin(id) FROM customers": "6",
    "SELECT sum(id) OVER () FROM customers LIMIT 1": "3",
    "SELECT p62_local()": "p62",
    "SELECT p62_return()": "p62",
    "SELECT p62_in('7')": "7",
}
REFUSED = [
    "SELECT p62_bad(id) FROM customers",
    "SELECT p62_mbad(id) OVER (ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) FROM customers",
    "SELECT p62_badfin(id) FROM customers",
    "SELECT p62_session()",
    "SELECT p62_config('search_path', 'p62, public', true)",
    "SELECT p62_lock(7)",
    "SELECT p62_last()",
]


@pytest.mark.integration
async def test_code_leaving_nothing_runs_and_code_leaving_something_is_refused(
    tmp_path,
) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        made_for_the_role(gw, *MADE)
        dsn = gw.dsn(gw.token(("dba", "pii-readers")))
        for sql, answer in ALLOWED.items():
            code, out, err = await psql(dsn, sql)
            assert code == 0 and out.strip() == answer, (sql, out, err)
        for sql in REFUSED:
            code, out, err = await psql(dsn, sql)
            assert code != 0 and "behind a transaction pooler" in err, (sql, out, err)


@pytest.mark.parametrize(
    ("language", "returns", "body", "calls", "unsafe"),
    [
        ("internal", "aggregate", "aggregate_dummy", ["pg_catalog.int4pl"], False),
        ("internal", "aggregate", "aggregate_dummy", ["public.step"], True),
        ("internal", "aggregate", "aggregate_dummy", ["operator <"], False),
        ("internal", "value", "aggregate_dummy", ["pg_catalog.int4pl"], False),
        ("internal", "value", "int4in", ["int4in"], False),
        ("internal", "value", "set_config_by_name", ["set_config"], True),
        ("internal", "value", "lastval", ["lastval"], True),
        ("internal", "value", "pg_cursor", ["pg_cursor"], True),
        ("internal", "value", "p62_unknown", [], True),
        ("c", "aggregate", "aggregate_dummy", ["pg_catalog.int4pl"], True),
        ("sql", "value", "BEGIN ATOMIC\n SELECT set_config('a'::text, 'b'::text, true);\nEND",
         ["set_config"], False),
        ("sql", "value", "RETURN set_config('a'::text, 'b'::text, true)", ["set_config"], False),
        ("sql", "value", "BEGIN ATOMIC\n SELECT set_config('a'::text, 'b'::text, false);\nEND",
         ["set_config"], True),
        ("sql", "value", "RETURN set_config(is_local => true, setting_name => 'a', new_value"
         " => 'b')", ["set_config"], True),
        ("sql", "value", "BEGIN ATOMIC\n SELECT 1;\nEND", ["set_config"], True),
        ("sql", "value", "BEGIN ATOMIC\n SELECT 1;\nEND; SELECT set_config('a', 'b', false)",
         [], True),
        ("sql", "value", "BEGIN ATOMIC\n SELECT 1 INTO TEMP t;\nEND", [], True),
        ("sql", "value", "RETURN public.step(1)", ["step"], True),
    ],
)  # fmt: skip
def test_the_body_reader_follows_aggregates_internal_code_and_standard_bodies(
    language: str, returns: str, body: str, calls: list[str], unsafe: bool
) -> None:
    """proxies/postgres/session_code.py, without a server (a `step` of the database whose
    body sets search_path for the session)."""
    step = ["public", "step", "plpgsql", "value", "BEGIN SET search_path = x; RETURN 1; END"]
    rows = [
        ["public", "f", language, returns, body, calls, False],
        [*step, [], False],
    ]
    found = session_code([json.dumps({"function_code": rows})], {})
    assert ("public.f" in set(found.get("functions", ()))) is unsafe, found
