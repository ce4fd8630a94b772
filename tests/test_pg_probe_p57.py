"""Probe P57 (helper pgattack24): behind pgbouncer in transaction mode, the database's code
left session state on the server connection for the next client.

P55 and P56 refused, behind the pooler, a statement's own session-level SET, set_config
and temporary object, and P53 its LISTEN; but a function's body was not read. With one
server connection (pool_size 1) a pii-reading dba's

    SELECT p57_path()    -- plpgsql: PERFORM set_config('search_path', 'p57, public', false)

(or a body running `SET search_path = ...` or `CREATE TEMP TABLE customers ...`, a
procedure by CALL, a trigger fired by an INSERT, a view, a column DEFAULT, an operator or a
domain's CHECK calling one, a function calling one by name, by CALL, by an operator or by
a cast) had a reader's next `SELECT name FROM customers`
answered from the dba's p57.customers (no rows, not Ada and Bob). Now the proxy reads the
bodies of the database's functions (proxies/postgres/session_code.py) and, behind the
pooler, code whose body cannot be shown free of session-level changes is refused for
everyone (rego/portcullis/postgres_pooler.rego): by name, by a view or relation running
it, by a write whose trigger or default runs it. A function whose body only reads, writes
rows, or SETs LOCAL stays.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from adversary import Answer, RawClient, function_call
from pooler_stack import made_for_the_role, pooled_admin
from test_pgbouncer_pooler import pooled_gateway, psql

from proxies.postgres.session_code import session_code

PATH = "'search_path', 'p57, public'"
SETUP = [
    "CREATE SCHEMA p57 AUTHORIZATION {role}",
    "CREATE TABLE p57.customers (id int, name text, email text, ssn text)",
    "ALTER TABLE p57.customers OWNER TO {role}",
    # session-level changes, each its own way
    f"CREATE FUNCTION p57_path() RETURNS int LANGUAGE plpgsql"
    f" AS $$BEGIN PERFORM set_config({PATH}, false); RETURN 1; END$$",
    "CREATE FUNCTION p57_set() RETURNS int LANGUAGE plpgsql"
    " AS $$BEGIN SET search_path = p57, public; RETURN 1; END$$",
    f"CREATE FUNCTION p57_sql() RETURNS text LANGUAGE sql AS $$SELECT set_config({PATH}, false)$$",
    f"CREATE FUNCTION p57_atomic() RETURNS text LANGUAGE sql RETURN set_config({PATH}, false)",
    "CREATE FUNCTION p57_temp() RETURNS int LANGUAGE plpgsql AS"
    " $$BEGIN CREATE TEMP TABLE customers (id int, name text); RETURN 1; END$$",
    "CREATE FUNCTION p57_dynamic() RETURNS int LANGUAGE plpgsql"
    " AS $$BEGIN EXECUTE 'SET search_path = p57, public'; RETURN 1; END$$",
    "CREATE FUNCTION p57_outer() RETURNS int LANGUAGE plpgsql"
    " AS $$BEGIN RETURN public.p57_path(); END$$",
    "CREATE FUNCTION p57_named_so() RETURNS int LANGUAGE plpgsql"
    " AS $$BEGIN SET search_path = p57, public; RETURN 1; END$$",
    "ALTER FUNCTION p57_named_so() SET search_path = public",
    "CREATE PROCEDURE p57_proc() LANGUAGE plpgsql AS $$BEGIN SET search_path = p57, public; END$$",
    "CREATE FUNCTION p57_calls_proc() RETURNS int LANGUAGE plpgsql"
    " AS $$BEGIN CALL p57_proc(); RETURN 1; END$$",
    f"CREATE FUNCTION p57_op(int, int) RETURNS int LANGUAGE plpgsql"
    f" AS $$BEGIN PERFORM set_config({PATH}, false); RETURN $1; END$$",
    "CREATE OPERATOR ### (leftarg = int, rightarg = int, function = p57_op)",
    "CREATE FUNCTION p57_uses_op() RETURNS int LANGUAGE sql AS 'SELECT 1 ### 2'",
    "CREATE DOMAIN p57_domain AS int CHECK (p57_path() > 0)",
    "CREATE FUNCTION p57_casts() RETURNS int LANGUAGE plpgsql"
    " AS $$BEGIN RETURN 1::p57_domain; END$$",
    "CREATE FUNCTION p57_assigns() RETURNS int LANGUAGE plpgsql"
    " AS $$DECLARE v p57_domain; BEGIN v := 1; RETURN v; END$$",
    "CREATE VIEW p57_view AS SELECT p57_path() AS one",
    "ALTER VIEW p57_view OWNER TO {role}",
    "CREATE FUNCTION p57_trigger() RETURNS trigger LANGUAGE plpgsql"
    " AS $$BEGIN SET search_path = p57, public; RETURN NEW; END$$",
    "CREATE TABLE p57_log (id int)",
    "ALTER TABLE p57_log OWNER TO {role}",
    "CREATE TRIGGER p57_log_t BEFORE INSERT ON p57_log FOR EACH ROW EXECUTE FUNCTION p57_trigger()",
    "CREATE TABLE p57_defaulted (id int, one int DEFAULT p57_path())",
    "ALTER TABLE p57_defaulted OWNER TO {role}",
    "CREATE TABLE p57_ruled (id int)",
    "ALTER TABLE p57_ruled OWNER TO {role}",
    "CREATE RULE p57_rule AS ON INSERT TO p57_ruled DO ALSO SELECT lower('x'), p57_path()",
    # code that leaves nothing behind
    "CREATE FUNCTION p57_count() RETURNS bigint LANGUAGE plpgsql"
    " AS $$BEGIN RETURN (SELECT count(*) FROM customers); END$$",
    f"CREATE FUNCTION p57_local() RETURNS text LANGUAGE plpgsql"
    f" AS $$BEGIN RETURN set_config({PATH}, true); END$$",
    "CREATE FUNCTION p57_plain(int) RETURNS int LANGUAGE sql IMMUTABLE RETURN $1 + 1",
    "CREATE FUNCTION p57_calls_plain() RETURNS int LANGUAGE sql AS 'SELECT p57_plain(1)'",
]

LEAVES_STATE = [
    "SELECT p57_path()",
    "SELECT public.p57_path()",
    'SELECT "p57_path"()',
    "SELECT p57_set()",
    "SELECT p57_sql()",
    "SELECT p57_atomic()",
    "BEGIN READ WRITE; SELECT p57_temp(); COMMIT",
    "SELECT p57_dynamic()",
    "SELECT p57_outer()",
    "SELECT p57_named_so()",
    "CALL p57_proc()",
    "SELECT p57_calls_proc()",
    "SELECT 1 ### 2",
    "SELECT p57_uses_op()",
    "SELECT 1::p57_domain",
    "SELECT p57_casts()",
    "SELECT p57_assigns()",
    "SELECT one FROM p57_view",
    "BEGIN READ WRITE; INSERT INTO p57_log VALUES (1); COMMIT",
    "BEGIN READ WRITE; INSERT INTO p57_defaulted (id) VALUES (1); COMMIT",
    "BEGIN READ WRITE; INSERT INTO p57_ruled VALUES (1); COMMIT",
]

WITNESS = "SELECT current_setting('search_path'); SELECT name FROM customers ORDER BY id"


@pytest.mark.integration
async def test_code_leaving_session_state_is_refused_behind_the_pooler(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        made_for_the_role(gw, *SETUP)
        pii, reader = gw.dsn(gw.token(("dba", "pii-readers"))), gw.dsn(gw.token())
        code, before, err = await psql(reader, WITNESS)
        assert code == 0 and before.split("\n")[1:3] == ["Ada", "Bob"], (before, err)
        for sql in LEAVES_STATE:
            code, _, err = await psql(pii, sql)
            assert code != 0 and "behind a transaction pooler" in err, (sql, err)
            # the next session on the one server connection: the role's path, public's rows
            code, after, err = await psql(reader, WITNESS)
            assert code == 0 and after == before, (sql, before, after, err)


@pytest.mark.integration
async def test_a_fast_path_call_of_one_is_refused_alike(tmp_path) -> None:
    """A FunctionCall ('F') message names the function by its OID, with no SQL text."""
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        made_for_the_role(gw, *SETUP)
        with pooled_admin(gw) as admin:
            found = admin.execute("SELECT 'p57_path()'::regprocedure::oid").fetchone()
        assert found is not None
        tok = gw.token(("dba", "pii-readers"))

        def call() -> Answer:
            c = RawClient(gw.proxy.port, tok, gw.database)
            try:
                return c.send(function_call(int(found[0])))
            finally:
                c.close()

        answer = await asyncio.to_thread(call)
        assert answer.errors and "behind a transaction pooler" in answer.errors[0], answer
        code, after, err = await psql(gw.dsn(gw.token()), WITNESS)
        assert code == 0 and after.split("\n")[1:3] == ["Ada", "Bob"], (after, err)


@pytest.mark.integration
async def test_code_leaving_nothing_behind_still_runs(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        made_for_the_role(gw, *SETUP)
        pii = gw.dsn(gw.token(("dba", "pii-readers")))
        for sql, shown in (
            ("SELECT p57_count()", "2"),
            ("BEGIN; SELECT p57_local(); COMMIT", "BEGIN\np57, public\nCOMMIT"),
            ("SELECT p57_calls_plain()", "2"),
        ):
            code, out, err = await psql(pii, sql)
            assert code == 0 and out.strip() == shown, (sql, out, err)


def _function(
    name: str, language: str, body: str, returns: str = "value", extension: bool = False
) -> list[object]:
    return ["public", name, language, returns, body, [], extension]


@pytest.mark.parametrize(
    ("language", "returns", "body", "unsafe"),
    [
        ("plpgsql", "value", "BEGIN RETURN (SELECT count(*) FROM customers); END", False),
        ("plpgsql", "void", "BEGIN SET LOCAL search_path = p57; END", False),
        ("plpgsql", "value", "BEGIN RETURN set_config('a.b', 'x', true); END", False),
        ("plpgsql", "procedure", "BEGIN INSERT INTO t VALUES (1); COMMIT; END", False),
        ("sql", "value", "SELECT 1; UPDATE t SET x = lower(x) RETURNING 1", False),
        (
            "plpgsql",
            "trigger",
            "BEGIN NOTIFY changed; PERFORM pg_notify('c', 'x'); RETURN NEW; END",
            False,
        ),
        ("plpgsql", "void", "BEGIN LOCK TABLE t IN SHARE MODE; TRUNCATE t; END", False),
        ("plpgsql", "value", "BEGIN RETURN set_config('a.b', 'x', false); END", True),
        ("plpgsql", "value", "BEGIN RETURN set_config('a.b', 'x', is_local); END", True),
        ("plpgsql", "setof", "BEGIN RETURN QUERY EXECUTE 'SELECT 1'; END", True),
        ("plpgsql", "void", "BEGIN LISTEN p57; END", True),
        ("plpgsql", "void", "BEGIN DISCARD ALL; END", True),
        ("plpgsql", "void", "BEGIN PERFORM setseed(0.5); END", True),
        ("plpgsql", "void", "BEGIN PERFORM pg_catalog.pg_advisory_lock(1); END", True),
        ("plpgsql", "void", "BEGIN DO $d$BEGIN NULL; END$d$; END", True),
        ("plpgsql", "void", "BEGIN PREPARE p AS SELECT 1; END", True),
        ("sql", "value", "SELECT 1 INTO TEMP customers", True),
        ("sql", "void", "RESET search_path", True),
        ("sql", "value", "not sql at all", True),
        ("c", "value", "p57_symbol", True),
        ("internal", "value", "set_config_by_name", True),
        ("plpython3u", "value", "plpy.execute('SET search_path = p57')", True),
    ],
)
def test_the_body_reader_shows_only_what_it_can_read_free(
    language: str, returns: str, body: str, unsafe: bool
) -> None:
    """proxies/postgres/session_code.py's allow-list, without a server: one function, and
    another calling it by name."""
    rows = [_function("f", language, body, returns), _function("g", "sql", "SELECT public.f()")]
    found = session_code([json.dumps({"function_code": rows})], {})
    named = set(found.get("functions", ()))
    assert ("public.f" in named) is unsafe and ("public.g" in named) is unsafe, found


def test_an_extensions_compiled_code_counts_only_when_known_to_keep_state() -> None:
    rows = [
        _function("uuid_generate_v4", "c", "uuid_generate_v4", extension=True),
        _function("dblink_connect", "c", "dblink_connect", extension=True),
        _function("by_hand", "c", "by_hand"),
        _function("ext_sql", "plpgsql", "BEGIN SET search_path = x; END", "void", True),
    ]
    found = session_code([json.dumps({"function_code": rows})], {})
    named = set(found.get("functions", ()))
    assert {"dblink_connect", "by_hand", "ext_sql"} <= named, found
    assert "uuid_generate_v4" not in named, found
