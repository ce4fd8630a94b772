"""Issue 20's adversarial corpus: a reader (and, where the rule is "for everyone", a `dba`)
attacks a gateway whose upstream credential is the `postgres` SUPERUSER, so nothing but
Portcullis stands between the client and damage.

Every case asserts from the administrator's side (a direct superuser connection to the
scratch database) that nothing changed: rows, sequence, large objects, replication slots
and origins, server and role settings, the configuration's load time, statistics, roles,
collations, tables, no file written by the server, and the administrator's bystander
backend still alive. That check is the autouse fixture `nothing_changed`; each test adds
its own (no secret in the bytes the client got, a pinned setting still pinned, ...).

Clients: psycopg (text, simple protocol without parameters), asyncpg (extended, binary),
psql, and a raw socket that builds frames byte by byte, in any client encoding, several
messages in one TCP write.

The gateway runs once per module on its own loop (tests/adversary.py); each test uses its
own identity so the per-identity session cap of one test does not bite another.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from typing import Any

import asyncpg
import psycopg
import pytest
from adversary import (
    SECRETS,
    Answer,
    RawClient,
    bind,
    describe,
    execute,
    function_call,
    marker_path,
    oid_of,
    parse,
    query,
    running_arena,
    snapshot,
    sync,
)
from pdp_harness import REGO
from pg_probe_stack import arena_fixture

pytestmark = pytest.mark.integration

READER = ("readonly",)
DBA = ("dba",)
PASSWD = b"root:x:0:0"  # a line of /etc/passwd: a file the server read for the client
SCRAM = b"SCRAM-SHA-256$"


# --- fixtures ------------------------------------------------------------------


arena = arena_fixture()


@pytest.fixture
def admin(arena):
    with arena.admin() as conn:
        yield conn


@pytest.fixture
def bystander(arena):
    """An administrator's session: the backend a reader would like to end."""
    conn = arena.admin(application_name="adv-bystander")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    yield conn, pid
    conn.close()


@pytest.fixture
def marker():
    path = marker_path()
    yield path
    if path.exists():
        path.unlink()


@pytest.fixture
def who(request) -> str:
    """An identity of this test alone."""
    return f"{request.node.name[:80]}@adversary.example"


@pytest.fixture
def reader(arena, who) -> str:
    return arena.token(who, READER)


@pytest.fixture
def dba(arena, who) -> str:
    return arena.token("dba-" + who, DBA)


# what arena.reset_data() puts back, as the snapshot shows it
RESET = ("customers", "orders", "audit_log", "sequence", "large_objects", "slots", "origins")


@pytest.fixture(scope="module")
def pristine(arena) -> dict[str, Any]:
    """The snapshot's RESET entries right after arena.reset_data()."""
    arena.reset_data()
    with arena.admin() as admin:
        taken = snapshot(admin, arena.database, arena.role)
    return {k: taken[k] for k in RESET}


@pytest.fixture(autouse=True)
def nothing_changed(arena, pristine, admin, bystander, marker):
    before = snapshot(admin, arena.database, arena.role)
    # every test starts from the data reset_data() writes: reset again only when that is
    # not what the server holds (a test before failed); a reset's TRUNCATE is a commit of
    # new files for each table, 30-300 ms on the loaded VM, before each of 450 tests
    if {k: before[k] for k in RESET} != pristine:
        arena.reset_data()
        before = snapshot(admin, arena.database, arena.role)
    yield
    after = snapshot(admin, arena.database, arena.role)
    moved = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not moved, f"the attack changed the server: {moved}"
    conn, pid = bystander
    alive = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()[0]
    assert alive == 1, "the administrator's backend was ended"
    assert conn.execute("SELECT 1").fetchone()[0] == 1
    assert not marker.exists(), f"the server wrote {marker}"


# --- client helpers ---------------------------------------------------------------


def connect(arena, tok: str, **kw: Any) -> psycopg.Connection:
    return psycopg.connect(arena.dsn(tok), autocommit=True, **kw)


def attempt(conn: psycopg.Connection, sql: str) -> tuple[bool, str]:
    """Run SQL (simple protocol); (ran, everything the client saw as text)."""
    try:
        if sql.lstrip().upper().startswith("COPY"):
            with conn.cursor() as cur, cur.copy(sql) as copy:
                return True, b"".join(bytes(chunk) for chunk in copy).decode(errors="replace")
        cur = conn.execute(sql)
        seen = []
        while True:
            if cur.description:
                seen.append(repr(cur.fetchall()))
            if not cur.nextset():
                break
        return True, "\n".join(seen)
    except psycopg.Error as exc:
        return False, str(exc)


def show(conn: psycopg.Connection, name: str) -> str | None:
    try:
        return conn.execute(f"SHOW {name}").fetchone()[0]
    except psycopg.Error:
        return None


def assert_no_secret(seen: bytes | str) -> None:
    data = seen.encode() if isinstance(seen, str) else seen
    for secret in (*SECRETS, PASSWD, SCRAM):
        assert secret not in data, f"{secret!r} reached the client"


def psql(arena, tok: str, sql: str, *extra: str, env: dict[str, str] | None = None):
    environ = {**os.environ, "PGPASSWORD": tok, "PGSSLMODE": "disable", **(env or {})}
    return subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(arena.port),
            "-U",
            "agent",
            "-d",
            arena.database,
            "-X",
            "-v",
            "ON_ERROR_STOP=0",
            *extra,
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        env=environ,
        timeout=30,
    )


def raw(arena, tok: str, **params: str) -> RawClient:
    return RawClient(arena.port, tok, arena.database, **params)


def assert_pins_hold(client: RawClient, reader: bool = True) -> None:
    """The session is gone, or the settings that keep the lexers equal still hold."""
    if client.closed:
        return
    encoding = client.show("client_encoding")
    if encoding is None and client.closed:
        return
    assert encoding == "UTF8", f"client_encoding is {encoding!r}"
    assert client.show("standard_conforming_strings") == "on"
    if reader:
        assert client.show("default_transaction_read_only") == "on"


# === 1. the lexer the policy uses must be the server's ============================

# A character whose UTF-8 bytes, read in the named encoding, swallow the backslash that
# follows (found against this server; UHC and JOHAB have none, but changing to them must
# still be refused).
SWALLOWING = {
    "SJIS": "ß",
    "SHIFT_JIS_2004": "ß",
    "BIG5": "中",
    "GBK": "中",
    "GB18030": "中",
    "UHC": "ß",
    "JOHAB": "中",
}
LIVE = ("SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "GB18030")


def hidden_delete(char: str) -> bytes:
    """UTF-8 + standard strings: one string literal. The server in `char`'s encoding: the
    string ends early and a DELETE runs."""
    return ("SELECT E'" + char + "\\' ; DELETE FROM customers; -- '").encode()


def hidden_program(char: str, marker) -> bytes:
    return (
        "SELECT E'" + char + f"\\' ; COPY (SELECT 1) TO PROGRAM $$touch {marker}$$; -- '"
    ).encode()


def hidden_read(char: str) -> bytes:
    """One statement (the extended protocol takes no more): a file read after the string."""
    return ("SELECT E'" + char + "\\' , pg_read_file($$/etc/passwd$$) -- '").encode()


# standard_conforming_strings=off: '\' is a whole string to pglast; to the server \' is a quote
NONSTANDARD_DELETE = b"SELECT '\\', ' ; DELETE FROM customers; -- '"


@pytest.mark.parametrize("encoding", LIVE)
def test_control_the_smuggling_payload_is_live_on_the_server_itself(admin, encoding):
    """Not through the proxy: proves the payloads of this section do what they claim."""
    payload = hidden_delete(SWALLOWING[encoding]).replace(b"customers", b"victim")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{admin.info.dbname}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE victim (x int); INSERT INTO victim VALUES (1)")
        conn.pgconn.exec_(f"SET client_encoding = '{encoding}'".encode())
        conn.pgconn.exec_(payload)
        assert conn.pgconn.exec_(b"SELECT count(*) FROM victim").get_value(0, 0) == b"0"


# how the client changes its encoding: frames sent before the payload (None: at start-up)
ENCODING_VECTORS = {
    "set": lambda e: [query(f"SET client_encoding = '{e}'")],
    "set_lower_unquoted": lambda e: [query(f"set client_encoding to {e.lower()}")],
    "set_session": lambda e: [query(f"SET SESSION client_encoding = '{e}'")],
    "set_quoted_name": lambda e: [query(f"SET \"client_encoding\" = '{e}'")],
    "set_unicode_name": lambda e: [query(f"SET U&\"\\0063lient_encoding\" = '{e}'")],
    "set_comment": lambda e: [query(f"SET /* harmless */ client_encoding -- x\n = '{e}'")],
    "set_names": lambda e: [query(f"SET NAMES '{e}'")],
    "set_config": lambda e: [query(f"SELECT set_config('client_encoding', '{e}', false)")],
    "set_config_qualified": lambda e: [
        query(f"SELECT pg_catalog.set_config('client_encoding', '{e}', false)")
    ],
    "set_config_dollar": lambda e: [
        query(f'SELECT "set_config"($$client_encoding$$, $${e}$$, false)')
    ],
    "set_config_built": lambda e: [
        query(f"SELECT set_config('client_' || 'encoding', '{e}', false)")
    ],
    "set_config_in_subquery": lambda e: [
        query(f"SELECT 1 FROM (SELECT set_config('client_encoding', '{e}', false)) s")
    ],
    "update_pg_settings": lambda e: [
        query(f"UPDATE pg_settings SET setting = '{e}' WHERE name = 'client_encoding'")
    ],
}


def smuggle(client: RawClient, setup: list[bytes], payload: bytes, pipelined: bool) -> Answer:
    if pipelined:
        return client.send(*setup, query(payload), ready=len(setup) + 1)
    for frame_ in setup:
        client.send(frame_)
    return client.send(query(payload))


@pytest.mark.parametrize("encoding", list(SWALLOWING))
def test_reader_encoding_change_then_hidden_delete(arena, reader, encoding):
    client = raw(arena, reader)
    assert client.ready, client.startup.errors
    smuggle(client, ENCODING_VECTORS["set"](encoding), hidden_delete(SWALLOWING[encoding]), False)
    assert_pins_hold(client)
    client.close()


@pytest.mark.parametrize("encoding", list(SWALLOWING))
def test_dba_encoding_change_then_hidden_copy_to_program(arena, dba, marker, encoding):
    client = raw(arena, dba)
    assert client.ready, client.startup.errors
    smuggle(
        client,
        ENCODING_VECTORS["set"](encoding),
        hidden_program(SWALLOWING[encoding], marker),
        False,
    )
    assert_pins_hold(client, reader=False)
    client.close()


@pytest.mark.parametrize("pipelined", [False, True], ids=["separate", "pipelined"])
@pytest.mark.parametrize("vector", list(ENCODING_VECTORS))
def test_reader_sjis_via_every_vector_then_hidden_delete(arena, reader, vector, pipelined):
    client = raw(arena, reader)
    smuggle(client, ENCODING_VECTORS[vector]("SJIS"), hidden_delete("ß"), pipelined)
    assert_pins_hold(client)
    client.close()


@pytest.mark.parametrize("vector", ["set", "set_names", "set_config", "set_config_built"])
def test_dba_gbk_via_vector_pipelined_then_hidden_copy_to_program(arena, dba, marker, vector):
    client = raw(arena, dba)
    smuggle(client, ENCODING_VECTORS[vector]("GBK"), hidden_program("中", marker), True)
    assert_pins_hold(client, reader=False)
    client.close()


def test_dba_do_block_changes_encoding_then_hidden_copy_to_program(arena, dba, marker):
    client = raw(arena, dba)
    setup = [query("DO $$BEGIN PERFORM set_config('client_encoding', 'SJIS', false); END$$")]
    smuggle(client, setup, hidden_program("ß", marker), True)
    assert_pins_hold(client, reader=False)
    client.close()


def test_reader_set_local_in_a_transaction_then_hidden_delete(arena, reader):
    client = raw(arena, reader)
    client.query("BEGIN")
    client.query("SET LOCAL client_encoding = 'SJIS'")
    client.query(hidden_delete("ß"))
    client.query("COMMIT")
    assert_pins_hold(client)
    client.close()


STARTUP_VECTORS = {
    "client_encoding_param": {"client_encoding": "SJIS"},
    "client_encoding_param_lower": {"client_encoding": "sjis"},
    "options_c": {"options": "-c client_encoding=SJIS"},
    "options_c_joined": {"options": "-cclient_encoding=SJIS"},
    "options_long": {"options": "--client_encoding=SJIS"},
    "options_long_dash": {"options": "--client-encoding=SJIS"},
    "options_escaped_space": {"options": "-c application_name=a\\ b -c client_encoding=SJIS"},
    "options_scs_off": {"options": "-c standard_conforming_strings=off"},
    "scs_param": {"standard_conforming_strings": "off"},
}


@pytest.mark.parametrize("vector", list(STARTUP_VECTORS))
def test_reader_startup_parameters_cannot_change_the_lexer(arena, reader, vector):
    client = raw(arena, reader, **STARTUP_VECTORS[vector])
    if client.ready:
        if "scs" in vector:
            client.query(NONSTANDARD_DELETE)
        else:
            client.query(hidden_delete("ß"))
        assert_pins_hold(client)
    client.close()


def test_dba_startup_sjis_then_hidden_copy_to_program(arena, dba, marker):
    client = raw(arena, dba, client_encoding="SJIS")
    if client.ready:
        client.query(hidden_program("ß", marker))
        assert_pins_hold(client, reader=False)
    client.close()


def test_reader_pgoptions_through_psql_cannot_change_the_encoding(arena, reader):
    out = psql(
        arena,
        reader,
        "SHOW client_encoding",
        "-At",
        env={"PGOPTIONS": "-c client_encoding=SJIS", "PGCLIENTENCODING": "SJIS"},
    )
    # refused at start-up, or answered honestly: the session is UTF8 underneath
    assert out.returncode != 0 or out.stdout.strip() in ("UTF8", "SJIS"), out.stderr
    client = raw(arena, reader, client_encoding="SJIS")
    if client.ready:
        assert client.show("client_encoding") == "UTF8" or client.closed
        assert client.params.get("client_encoding") in (None, "UTF8")
    client.close()


SCS_VECTORS = {
    "set": [query("SET standard_conforming_strings = off")],
    "set_false": [query("SET standard_conforming_strings TO false")],
    "set_zero": [query("set STANDARD_CONFORMING_STRINGS = 0")],
    "set_session": [query("SET SESSION standard_conforming_strings = 'off'")],
    "set_config": [query("SELECT set_config('standard_conforming_strings', 'off', false)")],
    "set_config_upper": [query("SELECT SET_CONFIG('standard_conforming_strings', 'off', FALSE)")],
    "set_config_in_cte": [
        query(
            "WITH s AS (SELECT set_config('standard_conforming_strings','off',false))"
            " SELECT * FROM s"
        )
    ],
    "reset_after_startup_off": [query("RESET standard_conforming_strings")],
    "backslash_quote_on": [
        query("SET backslash_quote = on"),
        query("SET standard_conforming_strings = off"),
    ],
}


@pytest.mark.parametrize("pipelined", [False, True], ids=["separate", "pipelined"])
@pytest.mark.parametrize("vector", list(SCS_VECTORS))
def test_reader_nonstandard_strings_then_hidden_delete(arena, reader, vector, pipelined):
    client = raw(arena, reader)
    smuggle(client, SCS_VECTORS[vector], NONSTANDARD_DELETE, pipelined)
    assert_pins_hold(client)
    client.close()


def test_dba_nonstandard_strings_then_hidden_copy_to_program(arena, dba, marker):
    client = raw(arena, dba)
    payload = f"SELECT '\\', ' ; COPY (SELECT 1) TO PROGRAM $$touch {marker}$$; -- '".encode()
    smuggle(client, SCS_VECTORS["set"], payload, True)
    assert_pins_hold(client, reader=False)
    client.close()


@pytest.mark.parametrize("encoding", ["SJIS", "GBK"])
def test_reader_extended_protocol_after_an_encoding_change_reads_no_file(arena, reader, encoding):
    client = raw(arena, reader)
    answer = client.send(
        query(f"SET client_encoding = '{encoding}'"),
        parse("", hidden_read(SWALLOWING[encoding])),
        bind("", ""),
        execute(""),
        sync(),
        ready=2,
    )
    assert_no_secret(answer.raw)
    assert_pins_hold(client)
    client.close()


def test_reader_encoding_change_is_stopped_even_when_a_function_makes_it(arena, dba):
    """ParameterStatus watch: whatever changes the encoding, no statement runs after it.
    A dba may call set_config; the proxy must still stop the session (or refuse)."""
    client = raw(arena, dba)
    changed = client.query("SELECT set_config('client_encoding', 'SJIS', false)")
    after = client.query(hidden_delete("ß"))
    assert changed.refused or after.refused, "the session went on in SJIS"
    client.close()


# === 2. functions that execute SQL text ================================================

INNER = {
    "read_file": "select pg_read_file(''/etc/passwd'') f",
    "email": "select email, ssn, password from customers",
    "large_object": "select lo_from_bytea(0, ''\\x70776e'') o",
    "read_only_off": "select set_config(''default_transaction_read_only'', ''off'', false) s",
}

SPELLINGS = {
    "plain": "SELECT query_to_xml('{q}', true, false, '')",
    "qualified": "SELECT pg_catalog.query_to_xml('{q}', true, false, '')",
    "quoted": "SELECT \"query_to_xml\"('{q}', true, false, '')",
    "qualified_quoted": "SELECT \"pg_catalog\".\"query_to_xml\"('{q}', true, false, '')",
    "upper": "SELECT QUERY_TO_XML('{q}', TRUE, FALSE, '')",
    "mixed_case": "select Query_To_Xml('{q}', true, false, '')",
    "unicode_name": "SELECT U&\"\\0071uery_to_xml\"('{q}', true, false, '')",
    "comments": "SELECT pg_catalog . /* x */ query_to_xml -- y\n('{q}', true, false, '')",
    "cte": "WITH x AS (SELECT query_to_xml('{q}', true, false, '') AS v) SELECT v FROM x",
    "subquery": "SELECT (SELECT query_to_xml('{q}', true, false, ''))",
    "from_clause": "SELECT * FROM query_to_xml('{q}', true, false, '') AS t(v)",
    "lateral": "SELECT v FROM orders, LATERAL query_to_xml('{q}', true, false, '') AS t(v)",
    "where": "SELECT 1 WHERE query_to_xml('{q}', true, false, '')::text <> ''",
    "nested_call": "SELECT length(xmlserialize(content query_to_xml('{q}', true, false, '')"
    " AS text))",
    "copy_stdout": "COPY (SELECT query_to_xml('{q}', true, false, '')) TO STDOUT",
    "explain": "EXPLAIN SELECT query_to_xml('{q}', true, false, '')",
    "explain_verbose": "EXPLAIN (VERBOSE, COSTS OFF) SELECT query_to_xml('{q}', true, false, '')",
    "prepare_execute": "PREPARE adv_q AS SELECT query_to_xml('{q}', true, false, '');"
    " EXECUTE adv_q",
    "xmlschema": "SELECT query_to_xmlschema('{q}', true, false, '')",
    "xml_and_xmlschema": "SELECT query_to_xml_and_xmlschema('{q}', true, false, '')",
    "nested_twice": "SELECT query_to_xml('select query_to_xml(''{qq}'', true, false, '''')',"
    " true, false, '')",
    "built_text": "SELECT query_to_xml(concat('{q}', ''), true, false, '')",
    "dollar": "SELECT query_to_xml($x${dq}$x$, true, false, '')",
    "values_column": "SELECT query_to_xml(q, true, false, '') FROM (VALUES ('{q}')) v(q)",
}


def _sql(spelling: str, inner: str) -> str:
    q = INNER[inner]
    return SPELLINGS[spelling].format(q=q, qq=q.replace("''", "''''"), dq=q.replace("''", "'"))


@pytest.mark.parametrize("inner", list(INNER))
@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_reader_query_to_xml_spellings(arena, reader, spelling, inner):
    with connect(arena, reader) as conn:
        _ran, seen = attempt(conn, _sql(spelling, inner))
        assert_no_secret(seen)
        assert show(conn, "default_transaction_read_only") in ("on", None)
        conn.execute("DEALLOCATE ALL")


@pytest.mark.parametrize(
    "spelling",
    ["plain", "qualified", "upper", "cte", "copy_stdout", "nested_twice", "built_text", "dollar"],
)
def test_dba_query_to_xml_cannot_read_a_server_file(arena, dba, spelling):
    with connect(arena, dba) as conn:
        _ran, seen = attempt(conn, _sql(spelling, "read_file"))
        assert_no_secret(seen)


def test_dba_explain_analyze_query_to_xml_cannot_import_a_file(arena, dba):
    with connect(arena, dba) as conn:
        attempt(
            conn,
            "EXPLAIN ANALYZE SELECT query_to_xml("
            "'select lo_import(''/etc/hostname'')', true, false, '')",
        )


SQL_TEXT_FUNCTIONS = {
    "cursor_to_xml": "BEGIN; DECLARE adv CURSOR FOR SELECT email, ssn, password FROM customers;"
    " SELECT cursor_to_xml('adv', 10, true, false, ''); COMMIT",
    "cursor_to_xml_qualified": "BEGIN; DECLARE adv CURSOR FOR SELECT id FROM customers;"
    " CLOSE adv; DECLARE adv CURSOR FOR SELECT email, ssn, password FROM customers;"
    " SELECT pg_catalog.cursor_to_xml('adv', 10, true, false, ''); COMMIT",
    "table_to_xml": "SELECT table_to_xml('customers', true, false, '')",
    "table_to_xml_regclass": "SELECT table_to_xml('public.customers'::regclass, true, false, '')",
    "table_to_xml_oid": "SELECT table_to_xml((SELECT oid FROM pg_class"
    " WHERE relname = 'customers'), true, false, '')",
    "table_to_xml_quoted_upper": 'SELECT "pg_catalog"."table_to_xml"(\'CUSTOMERS\'::text::'
    "regclass, true, false, '')",
    "table_to_xml_and_xmlschema": "SELECT TABLE_TO_XML_AND_XMLSCHEMA('customers', true, false, '')",
    "schema_to_xml": "SELECT schema_to_xml('public', true, false, '')",
    "schema_to_xml_and_xmlschema": "SELECT schema_to_xml_and_xmlschema('public', true, false, '')",
    "database_to_xml": "SELECT database_to_xml(true, false, '')",
    "database_to_xml_from": "SELECT * FROM pg_catalog.database_to_xml(true, false, '') d",
    "database_to_xml_and_xmlschema": "SELECT database_to_xml_and_xmlschema(true, false, '')",
    "ts_stat": "SELECT * FROM ts_stat('select to_tsvector(''simple'', email) from customers')",
    "ts_stat_qualified": "SELECT word FROM pg_catalog.ts_stat("
    "'select to_tsvector(''simple'', ssn || '' '' || email) from customers')",
    "ts_stat_large_object": "SELECT * FROM ts_stat("
    "'select to_tsvector(lo_from_bytea(0, ''x'')::text)')",
    "ts_rewrite_large_object": "SELECT ts_rewrite('a'::tsquery,"
    " 'select ''a''::tsquery, ''b''::tsquery from (select lo_from_bytea(0, ''x'')) s')",
    "ts_rewrite_quoted": "SELECT \"ts_rewrite\"('ada'::tsquery,"
    " 'select ''ada''::tsquery, phraseto_tsquery(''simple'', email) from customers')",
    "xml_in_copy": "COPY (SELECT table_to_xml('customers', true, false, '')) TO STDOUT",
}


@pytest.mark.parametrize("case", list(SQL_TEXT_FUNCTIONS))
def test_reader_sql_text_functions(arena, reader, case):
    with connect(arena, reader) as conn:
        _ran, seen = attempt(conn, SQL_TEXT_FUNCTIONS[case])
        assert_no_secret(seen)


@pytest.mark.parametrize("client", ["asyncpg_param", "asyncpg_prepared", "sql_prepare_param"])
async def test_reader_query_to_xml_with_the_query_as_a_parameter(arena, reader, client):
    """The SQL text arrives as a bound parameter the classifier never sees as a literal."""
    inner = "select email, ssn, pg_read_file('/etc/passwd') from customers"
    conn = await asyncpg.connect(arena.dsn(reader))
    seen = ""
    try:
        if client == "asyncpg_param":
            seen = repr(await conn.fetch("SELECT query_to_xml($1, true, false, '')", inner))
        elif client == "asyncpg_prepared":
            stmt = await conn.prepare("SELECT pg_catalog.query_to_xml($1::text, true, false, '')")
            seen = repr(await stmt.fetch(inner))
        else:
            await conn.execute("PREPARE adv_p(text) AS SELECT query_to_xml($1, true, false, '')")
            literal = inner.replace("'", "''")
            seen = repr(await conn.fetch(f"EXECUTE adv_p('{literal}')"))
    except asyncpg.PostgresError as exc:
        seen = str(exc)
    finally:
        await conn.close()
    assert_no_secret(seen)


def test_reader_psql_query_to_xml(arena, reader):
    out = psql(arena, reader, _sql("qualified", "read_file"), "-At")
    assert_no_secret(out.stdout)
    out = psql(arena, reader, SQL_TEXT_FUNCTIONS["table_to_xml"], "-At")
    assert_no_secret(out.stdout)


# === 3. functions readers must not call =================================================


def reader_calls(pid: int) -> dict[str, str]:
    return {
        "pg_terminate_backend": f"SELECT pg_terminate_backend({pid})",
        "pg_terminate_backend_qualified": f"SELECT pg_catalog.pg_terminate_backend({pid}, 100)",
        "pg_terminate_backend_quoted_upper": f'SELECT "pg_terminate_backend"({pid})',
        "pg_terminate_backend_by_name": "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'adv-bystander'",
        "pg_terminate_backend_in_cte": f"WITH k AS (SELECT PG_TERMINATE_BACKEND({pid}))"
        " SELECT * FROM k",
        "pg_cancel_backend": f"SELECT pg_cancel_backend({pid})",
        "pg_log_backend_memory_contexts": f"SELECT pg_log_backend_memory_contexts({pid})",
        "pg_reload_conf": "SELECT pg_reload_conf()",
        "pg_reload_conf_from": "SELECT * FROM pg_catalog.pg_reload_conf()",
        "pg_rotate_logfile": "SELECT pg_rotate_logfile()",
        "pg_stat_reset": "SELECT pg_stat_reset()",
        "pg_stat_reset_shared": "SELECT pg_stat_reset_shared('bgwriter')",
        "pg_stat_reset_single_table": "SELECT pg_stat_reset_single_table_counters("
        "'customers'::regclass)",
        "pg_create_physical_replication_slot": "SELECT pg_create_physical_replication_slot("
        "'adv_slot', true)",
        "pg_create_physical_replication_slot_quoted": "SELECT * FROM"
        ' "pg_catalog"."pg_create_physical_replication_slot"(\'adv_slot2\')',
        "pg_replication_origin_create": "SELECT pg_replication_origin_create('adv_origin')",
        "pg_switch_wal": "SELECT pg_switch_wal()",
        "pg_create_restore_point": "SELECT pg_create_restore_point('adv')",
        "pg_backup_start": "SELECT pg_backup_start('adv', true)",
        "pg_import_system_collations": "SELECT pg_import_system_collations('public')",
        "setval": "SELECT setval('adv_seq', 100)",
        "setval_regclass": "SELECT pg_catalog.setval('public.adv_seq'::regclass, 7, true)",
        "nextval": "SELECT nextval('adv_seq')",
        "nextval_quoted": 'SELECT "nextval"(\'"adv_seq"\')',
        "lo_from_bytea": "SELECT lo_from_bytea(0, 'pwn')",
        "lo_create": "SELECT lo_create(0)",
        "lo_creat": "SELECT lo_creat(-1)",
        "lo_import": "SELECT lo_import('/etc/hostname')",
        "lo_import_oid": "SELECT pg_catalog.lo_import('/etc/hostname', 4242424)",
        "pg_notify": "SELECT pg_notify('adv_chan', 'pwned')",
        "pg_advisory_lock": "SELECT pg_advisory_lock(4242)",
        "pg_try_advisory_lock": "SELECT pg_try_advisory_lock(4242)",
        "pg_advisory_lock_shared": "SELECT pg_advisory_lock_shared(1, 2)",
        "pg_stat_file": "SELECT pg_stat_file('postgresql.conf')",
        "pg_ls_waldir": "SELECT * FROM pg_ls_waldir()",
        "pg_ls_tmpdir": "SELECT * FROM pg_ls_tmpdir()",
        "pg_ls_logdir": "SELECT * FROM pg_ls_logdir()",
        "pg_ls_dir": "SELECT pg_ls_dir('.')",
        "pg_ls_archive_statusdir": "SELECT * FROM pg_ls_archive_statusdir()",
        "pg_read_file": "SELECT pg_read_file('/etc/passwd')",
        "pg_read_file_qualified_upper": "SELECT PG_CATALOG.PG_READ_FILE('/etc/passwd', 0, 100)",
        "pg_read_binary_file": "SELECT convert_from(pg_read_binary_file('/etc/passwd'), 'UTF8')",
        "copy_to_program": "COPY (SELECT 1) TO PROGRAM 'true'",
        "user_defined_function": "SELECT public.remember()",
        "view_that_writes": "SELECT * FROM innocent",
        "view_that_writes_qualified": "SELECT r FROM public.innocent WHERE id = 10",
    }


# Refused means refused: an error reaches the client (a policy denial, or the server's
# read-only transaction for a write). A call that returns a row was not refused.
@pytest.mark.parametrize("case", list(reader_calls(0)))
def test_reader_may_not_call(arena, reader, bystander, admin, case):
    _conn, pid = bystander
    sql = reader_calls(pid)[case]
    with connect(arena, reader) as conn:
        ran, seen = attempt(conn, sql)
        assert_no_secret(seen)
        # the arena's database only: a PDP on PostgreSQL in another test (its chain's
        # advisory lock) may hold one elsewhere on the shared server meanwhile
        locks = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0]
        assert locks == 0, "the reader holds an advisory lock"
        backups = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND wait_event = 'BackupWaitWalArchive'"
        ).fetchone()[0]
        assert backups == 0
        assert not ran, f"{sql!r} ran for a reader: {seen[:200]}"


@pytest.mark.parametrize(
    "case", ["pg_terminate_backend", "lo_from_bytea", "setval", "pg_advisory_lock", "pg_read_file"]
)
async def test_reader_may_not_call_with_asyncpg_binary(arena, reader, bystander, case):
    _conn, pid = bystander
    sql = reader_calls(pid)[case]
    conn = await asyncpg.connect(arena.dsn(reader))
    try:
        with pytest.raises(asyncpg.PostgresError):
            await conn.fetch(sql)  # extended protocol, binary results
    finally:
        await conn.close()


def test_reader_pg_notify_reaches_no_listener(arena, reader):
    with arena.admin() as listener:
        listener.execute("LISTEN adv_chan")
        with connect(arena, reader) as conn:
            attempt(conn, "SELECT pg_notify('adv_chan', 'pwned')")
            attempt(conn, "NOTIFY adv_chan, 'pwned'")
        listener.execute("SELECT 1")
        got = list(listener.notifies(timeout=0.5, stop_after=1))
        assert not got, f"a reader notified: {got}"


@pytest.mark.parametrize(
    "options", ["(FORMAT binary)", "WITH BINARY", "BINARY", '(FORMAT "binary", HEADER false)']
)
def test_reader_binary_copy_is_refused_under_a_mask(arena, reader, admin, options):
    """A card number kept as a bigint is masked by the detectors in text and CSV COPY; in
    the binary format it is eight bytes no detector reads (and a masked value would change
    the length its field declares): refused under any mask."""
    admin.execute("CREATE TABLE adv_cards (n bigint)")
    admin.execute("INSERT INTO adv_cards VALUES (4111111111111111)")
    try:
        _binary_copy_refused(arena, reader, options)
    finally:
        admin.execute("DROP TABLE adv_cards")  # (the snapshot after each test must match)


def _binary_copy_refused(arena, reader: str, options: str) -> None:
    with connect(arena, reader) as conn:
        with conn.cursor() as cur, cur.copy("COPY adv_cards TO STDOUT (FORMAT csv)") as copy:
            text = b"".join(bytes(chunk) for chunk in copy)
        assert b"4111111111111111" not in text and b"1111" in text
        for sql in (
            f"COPY adv_cards TO STDOUT {options}",
            f"COPY (TABLE adv_cards) TO STDOUT {options}",
        ):
            ran, seen = attempt(conn, sql)
            assert not ran and "binary format cannot be masked" in seen, (sql, seen)


def test_reader_pg_cancel_backend_cancels_nothing(arena, reader, admin):
    result: dict[str, Any] = {}
    with arena.admin(application_name="adv-sleeper") as sleeper:
        pid = sleeper.execute("SELECT pg_backend_pid()").fetchone()[0]

        def sleep() -> None:
            try:
                sleeper.execute("SELECT pg_sleep(1.5)")
                result["ok"] = True
            except psycopg.Error as exc:
                result["error"] = str(exc)

        t = threading.Thread(target=sleep)
        t.start()
        time.sleep(0.3)
        with connect(arena, reader) as conn:
            attempt(conn, f"SELECT pg_cancel_backend({pid})")
            attempt(
                conn,
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'adv-sleeper'",
            )
        t.join(10)
    assert result.get("ok"), f"the administrator's statement was cancelled: {result}"


SHADOWING = {
    "overload_varchar_literal": "SELECT upper('x'::varchar)",
    "overload_varchar_column": "SELECT upper(name::varchar) FROM customers",
    "overload_nested_varying": "SELECT lower(upper('x'::character varying))",
    "search_path_set": "SET search_path = evil, pg_catalog; SELECT lower('x')",
    "search_path_set_config": "SELECT set_config('search_path', 'evil, pg_catalog', false);"
    " SELECT lower('x')",
    "qualified_user_function": "SELECT evil.lower('x')",
}


@pytest.mark.parametrize("case", list(SHADOWING))
def test_reader_the_function_allowed_is_the_function_the_server_runs(arena, reader, admin, case):
    """upper(varchar) in public beats pg_catalog.upper(text) even with pg_catalog first in
    search_path (an exact argument match wins over a cast): the name the policy allows must be
    the function the server runs."""
    admin.execute(
        "CREATE OR REPLACE FUNCTION public.upper(varchar) RETURNS text LANGUAGE sql"
        " AS $$ SELECT pg_catalog.pg_read_file('/etc/passwd') $$"
    )
    admin.execute("CREATE SCHEMA IF NOT EXISTS evil")
    admin.execute(
        "CREATE OR REPLACE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql"
        " AS $$ SELECT pg_catalog.pg_read_file('/etc/passwd') $$"
    )
    try:
        with connect(arena, reader) as conn:
            _ran, seen = attempt(conn, SHADOWING[case])
            assert_no_secret(seen)
    finally:
        admin.execute("DROP FUNCTION public.upper(varchar); DROP SCHEMA evil CASCADE")


def test_reader_select_for_update_takes_no_lock(arena, reader, admin):
    for lock in (
        "FOR UPDATE",
        "FOR NO KEY UPDATE",
        "FOR SHARE",
        "FOR KEY SHARE",
        "for update of c nowait",
    ):
        with connect(arena, reader) as conn:
            conn.autocommit = False
            ran, _ = attempt(conn, f"SELECT * FROM orders c WHERE id = 10 {lock}")
            ran2, _ = attempt(conn, f"WITH x AS (SELECT id FROM orders c {lock}) SELECT 1")
            try:
                admin.execute("SELECT * FROM orders WHERE id = 10 FOR UPDATE NOWAIT")
                taken = False
            except psycopg.errors.LockNotAvailable:
                taken = True
            conn.rollback()
        assert not taken, f"a reader locked a row with {lock}"
        assert not ran and not ran2, f"SELECT ... {lock} ran for a reader"


# --- the fast path (FunctionCall is not the extended protocol: no Sync after it) -----


def test_reader_fast_path_lo_creat(arena, reader, admin):
    client = raw(arena, reader)
    answer = client.send(function_call(oid_of(admin, "lo_creat(integer)"), -1))
    assert answer.refused
    client.close()


def test_reader_fast_path_lo_open_and_lowrite(arena, reader, admin):
    loid = admin.execute("SELECT lo_from_bytea(0, 'original')").fetchone()[0]
    try:
        client = raw(arena, reader)
        client.query("BEGIN")
        opened = client.send(
            function_call(oid_of(admin, "lo_open(oid,integer)"), int(loid), 0x20000)
        )
        client.send(function_call(oid_of(admin, "lowrite(integer,bytea)"), 0, b"pwned"))
        client.query("COMMIT")
        client.close()
        content = admin.execute("SELECT lo_get(%s)", (loid,)).fetchone()[0]
        assert bytes(content) == b"original"
        assert opened.refused
    finally:
        admin.execute("SELECT lo_unlink(%s)", (loid,))


def test_reader_fast_path_pg_terminate_backend(arena, reader, admin, bystander):
    _conn, pid = bystander
    client = raw(arena, reader)
    answer = client.send(
        function_call(oid_of(admin, "pg_terminate_backend(integer,bigint)"), pid, None)
    )
    client.close()
    assert answer.refused


def test_reader_fast_path_sql_text_and_settings(arena, reader, admin):
    client = raw(arena, reader)
    xml = client.send(
        function_call(
            oid_of(admin, "query_to_xml(text,boolean,boolean,text)"),
            b"select email, ssn, pg_read_file('/etc/passwd') from customers",
            b"t",
            b"f",
            b"",
        ),
    )
    assert_no_secret(xml.raw)
    read = client.send(function_call(oid_of(admin, "pg_read_file(text)"), b"/etc/passwd"))
    assert_no_secret(read.raw)
    client.send(
        function_call(
            oid_of(admin, "set_config(text,text,boolean)"),
            b"default_transaction_read_only",
            b"off",
            b"f",
        ),
    )
    client.send(
        function_call(
            oid_of(admin, "set_config(text,text,boolean)"), b"client_encoding", b"SJIS", b"f"
        ),
    )
    client.query(hidden_delete("ß"))
    assert_pins_hold(client)
    client.close()
    assert xml.refused and read.refused


# --- read-only at the server ----------------------------------------------------------

READ_WRITE_ATTEMPTS = {
    "begin_read_write": [
        "BEGIN READ WRITE",
        "DELETE FROM audit_log",
        "INSERT INTO audit_log(what) VALUES ('rw')",
        "COMMIT",
    ],
    "start_transaction_rw": [
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
        "SELECT * FROM innocent",
        "COMMIT",
    ],
    "set_transaction_rw": [
        "BEGIN",
        "SET TRANSACTION READ WRITE",
        "SELECT * FROM innocent",
        "COMMIT",
    ],
    "set_transaction_read_only_off": [
        "BEGIN",
        "SET transaction_read_only = off",
        "SELECT * FROM innocent",
        "COMMIT",
    ],
    "set_default_off": ["SET default_transaction_read_only = off", "SELECT * FROM innocent"],
    "set_default_false_quoted": [
        'SET "default_transaction_read_only" TO false',
        "SELECT * FROM innocent",
    ],
    "set_default_to_default": [
        "SET default_transaction_read_only TO DEFAULT",
        "SELECT * FROM innocent",
    ],
    "set_local_default_off": [
        "BEGIN",
        "SET LOCAL default_transaction_read_only = off",
        "COMMIT",
        "SELECT * FROM innocent",
    ],
    "session_characteristics": [
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SELECT * FROM innocent",
    ],
    "set_config": [
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT * FROM innocent",
    ],
    "set_config_is_local": [
        "BEGIN",
        "SELECT set_config('transaction_read_only', 'off', true)",
        "SELECT * FROM innocent",
        "COMMIT",
    ],
    "reset": ["RESET default_transaction_read_only", "SELECT * FROM innocent"],
    "reset_all": ["RESET ALL", "SELECT * FROM innocent"],
    "discard_all": ["DISCARD ALL", "SELECT * FROM innocent"],
    "view_that_writes": ["SELECT * FROM innocent"],
}


@pytest.mark.parametrize("case", list(READ_WRITE_ATTEMPTS))
def test_reader_session_is_read_only_at_the_server(arena, reader, case):
    with connect(arena, reader) as conn:
        assert show(conn, "default_transaction_read_only") == "on"
        for sql in READ_WRITE_ATTEMPTS[case]:
            attempt(conn, sql)
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                attempt(conn, "ROLLBACK")
        assert show(conn, "default_transaction_read_only") == "on"
        attempt(conn, "BEGIN")
        assert show(conn, "transaction_read_only") == "on"
        attempt(conn, "ROLLBACK")


@pytest.mark.parametrize(
    "setting",
    [
        "default_transaction_read_only=off",
        "default_transaction_read_only=0",
        "transaction_read_only=off",
        "statement_timeout=0",
    ],
)
def test_reader_startup_options_cannot_lift_the_session_bounds(arena, reader, setting):
    client = raw(arena, reader, options=f"-c {setting}")
    if client.ready:
        assert client.show("default_transaction_read_only") == "on"
        assert client.show("statement_timeout") not in ("0", None)
        client.query("SELECT * FROM innocent")
    client.close()


async def test_reader_asyncpg_server_settings_cannot_lift_read_only(arena, reader):
    try:
        conn = await asyncpg.connect(
            arena.dsn(reader),
            server_settings={"default_transaction_read_only": "off", "statement_timeout": "0"},
        )
    except asyncpg.PostgresError:
        return  # refused at start-up by name: fine
    try:
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        assert await conn.fetchval("SHOW statement_timeout") != "0"
        with pytest.raises(asyncpg.PostgresError):
            await conn.fetch("SELECT * FROM innocent")
    finally:
        await conn.close()


# === 4. settings readers may not change ======================================================

FORBIDDEN_SETTINGS = {
    "session_replication_role": "replica",
    "log_statement": "'none'",
    "log_min_duration_statement": "-1",
    "log_min_messages": "panic",
    "allow_system_table_mods": "on",
    "zero_damaged_pages": "on",
    "ignore_system_indexes": "on",
    "lo_compat_privileges": "on",
    "backslash_quote": "on",
    "escape_string_warning": "off",
    "client_min_messages": "panic",
    "session_preload_libraries": "'auto_explain'",
    "role": "pg_read_server_files",
    "session_authorization": "postgres",
}


@pytest.mark.parametrize("form", ["set", "set_session", "set_config", "set_local"])
@pytest.mark.parametrize("setting", list(FORBIDDEN_SETTINGS))
def test_reader_may_not_change_setting(arena, reader, setting, form):
    value = FORBIDDEN_SETTINGS[setting]
    with connect(arena, reader) as conn:
        shown = "current_user" if setting in ("role", "session_authorization") else setting
        if shown not in _data()["portcullis"]["postgres"]["reader_readable_settings"]:
            # a setting only superusers are shown: readers may not read it either (SET
            # LOCAL's current_setting is refused too), so it is judged by the refusal
            shown = "current_user"
        before = conn.execute(
            f"SHOW {shown}" if shown != "current_user" else "SELECT current_user"
        ).fetchone()[0]
        sql = {
            "set": f"SET {setting} = {value}",
            "set_session": f"SET SESSION {setting.upper()} TO {value}",
            "set_config": f"SELECT set_config('{setting}', '{value.strip(chr(39))}', false)",
            "set_local": f"BEGIN; SET LOCAL {setting} = {value}; "
            f"SELECT current_setting('{setting}'); COMMIT",
        }[form]
        if setting == "role" and form in ("set", "set_session", "set_local"):
            sql = sql.replace(" = ", " ").replace(" TO ", " ")
        if setting == "session_authorization" and form != "set_config":
            sql = sql.replace("session_authorization = ", "SESSION AUTHORIZATION ").replace(
                "SESSION_AUTHORIZATION TO ", "SESSION AUTHORIZATION "
            )
        ran, _seen = attempt(conn, sql)
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            attempt(conn, "ROLLBACK")
        after = conn.execute(
            f"SHOW {shown}" if shown != "current_user" else "SELECT current_user"
        ).fetchone()[0]
        assert after == before, f"{setting} moved from {before!r} to {after!r}"
        assert not ran, f"{sql!r} was accepted for a reader"


def test_reader_may_not_load_a_library(arena, reader):
    with connect(arena, reader) as conn:
        ran, _ = attempt(conn, "LOAD 'auto_explain'")
        assert not ran


HOUSEKEEPING = {
    "reset_all": "RESET ALL",
    "discard_all": "DISCARD ALL",
    "reset_all_lower": "reset all",
    "asyncpg_pool_release": "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
    "reset_client_encoding": "RESET client_encoding",
    "reset_scs": "RESET standard_conforming_strings",
    "reset_statement_timeout": "RESET statement_timeout",
    "set_statement_timeout_zero": "SET statement_timeout = 0",
    "set_statement_timeout_huge": "SET statement_timeout = '1000h'",
    "set_config_statement_timeout_zero": "SELECT set_config('statement_timeout', '0', false)",
    "set_session_authorization_default": "SET SESSION AUTHORIZATION DEFAULT",
    "reset_role": "RESET ROLE",
}


@pytest.mark.parametrize("group", ["reader", "dba"])
@pytest.mark.parametrize("case", list(HOUSEKEEPING))
def test_housekeeping_does_not_undo_what_the_proxy_pinned(arena, reader, dba, case, group):
    tok = reader if group == "reader" else dba
    with connect(arena, tok) as conn:
        timeout_before = show(conn, "statement_timeout")
        attempt(conn, HOUSEKEEPING[case])
        assert show(conn, "client_encoding") == "UTF8"
        assert show(conn, "standard_conforming_strings") == "on"
        if group == "reader":
            assert show(conn, "default_transaction_read_only") == "on"
            timeout = show(conn, "statement_timeout")
            assert timeout not in ("0", None), "the reader's statement timeout was lifted"
            assert timeout == timeout_before or _ms(timeout) <= _ms(timeout_before)


def _ms(value: str | None) -> float:
    if not value:
        return 0.0
    units = {"ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}
    for unit in ("ms", "min", "s", "h", "d"):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * units[unit]
    return float(value)


# === 5. catalogs that hold secrets, and bounds =============================================

SECRET_CATALOGS = {
    "pg_authid": "select rolpassword from pg_authid",
    "pg_authid_qualified": "SELECT rolname, rolpassword FROM pg_catalog.pg_authid",
    "pg_authid_quoted_upper": 'SELECT * FROM "pg_catalog"."pg_authid"',
    "pg_authid_upper": "SELECT ROLPASSWORD FROM PG_AUTHID",
    "pg_authid_table": "TABLE pg_authid",
    "pg_authid_whole_row": "SELECT a FROM pg_authid a",
    "pg_authid_json": "SELECT row_to_json(a) FROM pg_authid a",
    "pg_authid_cte": "WITH x AS (SELECT * FROM pg_authid) SELECT rolpassword FROM x",
    "pg_authid_join": "SELECT r.rolname, a.rolpassword FROM pg_roles r JOIN pg_authid a"
    " USING (oid)",
    "pg_authid_subquery": "SELECT (SELECT string_agg(rolpassword, ',') FROM pg_authid)",
    "pg_authid_copy": "COPY pg_authid TO STDOUT",
    "pg_authid_copy_query": "COPY (SELECT rolpassword FROM pg_authid) TO STDOUT",
    "pg_authid_unicode": 'SELECT * FROM U&"pg\\005fauthid"',
    "pg_authid_via_xml": "SELECT table_to_xml('pg_authid', true, false, '')",
    "pg_shadow": "SELECT * FROM pg_shadow",
    "pg_shadow_passwd": "SELECT usename, passwd FROM pg_catalog.pg_shadow",
    "pg_user_mapping": "SELECT umoptions FROM pg_user_mapping",
    "pg_user_mappings": "SELECT * FROM pg_user_mappings",
    "pg_largeobject": "SELECT * FROM pg_largeobject",
    "pg_read_global_authid": "SELECT pg_read_binary_file('global/1260')",
}


@pytest.mark.parametrize("case", list(SECRET_CATALOGS))
def test_reader_cannot_read_secret_catalogs(arena, reader, case):
    with connect(arena, reader) as conn:
        ran, seen = attempt(conn, SECRET_CATALOGS[case])
        assert_no_secret(seen)
        assert not ran, f"{SECRET_CATALOGS[case]!r} ran for a reader"


async def test_reader_cannot_read_pg_authid_with_asyncpg_binary(arena, reader):
    conn = await asyncpg.connect(arena.dsn(reader))
    try:
        with pytest.raises(asyncpg.PostgresError):
            await conn.fetch("SELECT rolpassword FROM pg_authid WHERE rolname <> $1", "x")
    finally:
        await conn.close()


def _find_keys(node: Any, fragment: str, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if fragment in key:
                found.append((*path, key))
            found.extend(_find_keys(value, fragment, (*path, key)))
    return found


def _data() -> dict[str, Any]:
    return json.loads((REGO / "data.json").read_text())


def test_reader_statement_timeout_is_set_by_policy(arena, reader):
    with connect(arena, reader) as conn:
        timeout = show(conn, "statement_timeout")
    assert timeout not in ("0", None), "a reader's statements are not bounded"


@pytest.fixture(scope="module")
def short_timeout_arena(tmp_path_factory):
    """The shipped policy with every statement_timeout it sets shortened to one second."""
    tmp = tmp_path_factory.mktemp("short")
    policies = tmp / "rego"
    shutil.copytree(REGO, policies)
    data = _data()
    keys = _find_keys(data, "statement_timeout")
    for path in keys:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = 1000 if isinstance(node[path[-1]], int) else "1s"
    (policies / "data.json").write_text(json.dumps(data))
    with running_arena(tmp, policies=policies) as gateway:
        gateway.timeout_keys = keys
        yield gateway


def test_reader_pg_sleep_is_stopped_by_the_policy_statement_timeout(short_timeout_arena, who):
    gateway = short_timeout_arena
    assert gateway.timeout_keys, "rego/data.json sets no statement_timeout for readers"
    with connect(gateway, gateway.token(who, READER)) as conn:
        for sql in (
            "SELECT pg_sleep(8)",
            "SELECT pg_catalog.pg_sleep_for('8 seconds')",
            "SET statement_timeout = 0; SELECT pg_sleep(8)",
        ):
            start = time.monotonic()
            ran, _ = attempt(conn, sql)
            assert time.monotonic() - start < 6, f"{sql!r} was not bounded"
            assert not ran


def _session_cap() -> int | None:
    data = _data()["portcullis"]
    value = data.get("max_sessions_per_identity")
    if value is None:
        conn = data.get("connections", {}).get("orders-db", {})
        value = conn.get("max_sessions_per_identity")
    return value if isinstance(value, int) else None


def test_reader_session_cap_per_identity(arena, reader):
    cap = _session_cap()
    assert cap is not None, "data.portcullis.max_sessions_per_identity is not set"
    assert cap <= 50
    held: list[RawClient] = []
    try:
        for _ in range(cap):
            client = raw(arena, reader)
            assert client.ready, client.startup.errors
            held.append(client)
        extra = raw(arena, reader)
        held.append(extra)
        assert not extra.ready, f"session {cap + 1} of one identity was opened"
        # the cap is per identity: another identity still gets in
        other = raw(arena, arena.token("someone-else-" + reader[-12:], READER))
        held.append(other)
        assert other.ready
    finally:
        for client in held:
            client.close()


# === 6. prepared statements and portals that change under the proxy ==========================

SWAPS = {
    "deallocate_prepare": [
        query("DEALLOCATE s; PREPARE s AS SELECT id, email, ssn, password FROM customers")
    ],
    "deallocate_prepare_separate": [
        query("DEALLOCATE s"),
        query("PREPARE s AS SELECT id, email, ssn, password FROM customers"),
    ],
    "deallocate_all": [
        query("DEALLOCATE ALL"),
        query("PREPARE s AS SELECT id, email, ssn, password FROM customers"),
    ],
    "deallocate_prepare_keyword": [
        query("DEALLOCATE PREPARE s"),
        query("PREPARE s AS SELECT id, email, ssn, password FROM customers"),
    ],
    "discard_all": [
        query("DISCARD ALL"),
        query("PREPARE s AS SELECT id, email, ssn, password FROM customers"),
    ],
    "upper_case_name": [
        query("DEALLOCATE S; PREPARE S AS SELECT id, email, ssn, password FROM customers")
    ],
    "quoted_name": [
        query(
            'DEALLOCATE "s"; PREPARE "s"(int) AS SELECT id, email, ssn'
            " FROM customers WHERE $1 IS NULL OR true"
        )
    ],
    "aliased_and_derived": [
        query(
            "DEALLOCATE s; PREPARE s AS SELECT id AS a, email AS b,"
            " replace(ssn, '-', '') AS c FROM customers"
        )
    ],
    "do_block": [
        query("DO $$BEGIN EXECUTE 'DEALLOCATE s'; END$$"),
        query("PREPARE s AS SELECT id, email, ssn, password FROM customers"),
    ],
}


@pytest.mark.parametrize("result_format", [0, 1], ids=["text", "binary"])
@pytest.mark.parametrize("pipelined", [False, True], ids=["separate", "pipelined"])
@pytest.mark.parametrize("swap", list(SWAPS))
def test_reader_prepared_statement_replaced_under_the_proxy(
    arena, reader, swap, pipelined, result_format
):
    client = raw(arena, reader)
    first = [parse("s", "SELECT id, id, id FROM customers"), describe("S", "s"), sync()]
    then = [bind("", "s", result_format), describe("P", ""), execute(""), sync()]
    then_no_describe = [bind("", "s", result_format), execute(""), sync()]
    if pipelined:
        answers = [
            client.send(*first, *SWAPS[swap], *then, *then_no_describe, ready=len(SWAPS[swap]) + 3)
        ]
    else:
        answers = [client.send(*first)]
        answers += [client.send(f) for f in SWAPS[swap]]
        answers += [client.send(*then), client.send(*then_no_describe)]
    for answer in answers:
        assert_no_secret(answer.raw)
        assert b"123456789" not in answer.raw and b"234567890" not in answer.raw
    client.close()


def test_reader_sql_execute_of_a_replaced_protocol_statement(arena, reader):
    client = raw(arena, reader)
    client.send(parse("s", "SELECT id, id, id FROM customers"), describe("S", "s"), sync())
    answer = client.query(
        "DEALLOCATE s; PREPARE s AS SELECT id, email, ssn, password FROM customers; EXECUTE s"
    )
    assert_no_secret(answer.raw)
    client.close()


CURSOR_SWAPS = {
    "close_declare": "CLOSE p; DECLARE p CURSOR FOR SELECT id, email, ssn, password FROM customers",
    "close_all_declare": "CLOSE ALL; DECLARE p CURSOR FOR SELECT id, email, ssn, password"
    " FROM customers",
    "close_declare_binary": "CLOSE p; DECLARE p BINARY CURSOR FOR SELECT id, email, ssn"
    " FROM customers",
    "close_declare_derived": "CLOSE p; DECLARE p NO SCROLL CURSOR FOR SELECT id,"
    " replace(ssn, '-', ''), reverse(email) FROM customers",
    "close_declare_quoted": 'CLOSE "p"; DECLARE "p" CURSOR FOR SELECT id, email, ssn'
    " FROM customers",
}


@pytest.mark.parametrize("swap", list(CURSOR_SWAPS))
def test_reader_portal_replaced_by_a_cursor_of_the_same_name(arena, reader, swap):
    client = raw(arena, reader)
    client.query("BEGIN")
    described = client.send(
        parse("s", "SELECT id, id, id FROM customers"),
        bind("p", "s"),
        describe("P", "p"),
        sync(),
    )
    swapped = client.query(CURSOR_SWAPS[swap])
    fetched = client.send(execute("p"), sync())
    client.query("ROLLBACK")
    for answer in (described, swapped, fetched):
        assert_no_secret(answer.raw)
        assert b"123456789" not in answer.raw and b"moc.elpmaxe@ada" not in answer.raw
    client.close()


CURSORS = {
    "declare_then_protocol_execute": [
        "DECLARE c CURSOR WITH HOLD FOR SELECT email, ssn, password FROM customers"
    ],
    "declare_harmless_then_swap": [
        "DECLARE c CURSOR WITH HOLD FOR SELECT id, id FROM customers",
        "CLOSE c",
        "DECLARE c CURSOR WITH HOLD FOR SELECT email, ssn, password FROM customers",
    ],
    "declare_derived": [
        "DECLARE c CURSOR WITH HOLD FOR SELECT replace(ssn, '-', '') AS x,"
        " reverse(email) AS y FROM customers"
    ],
    "declare_binary": [
        "DECLARE c BINARY CURSOR WITH HOLD FOR SELECT email AS x, ssn AS y FROM customers"
    ],
}


@pytest.mark.parametrize("case", list(CURSORS))
def test_reader_sql_cursor_read_as_a_protocol_portal_or_fetched(arena, reader, case):
    client = raw(arena, reader)
    answers = [client.query(sql) for sql in CURSORS[case]]
    answers.append(client.send(describe("P", "c"), execute("c"), sync()))
    answers.append(client.query("MOVE ABSOLUTE 0 IN c; FETCH ALL FROM c"))
    answers.append(client.send(parse("", "FETCH ALL FROM c"), bind("", "", 1), execute(""), sync()))
    client.query("CLOSE ALL")
    for answer in answers:
        assert_no_secret(answer.raw)
        assert b"123456789" not in answer.raw and b"moc.elpmaxe@ada" not in answer.raw
    client.close()
