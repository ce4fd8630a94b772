"""Probe P8's findings at the wire-protocol level against the real stack (tests/adversary.py:
a gateway whose upstream credential is the `postgres` SUPERUSER; customers.password is a
sensitive column no value detector recognises).

- The fast path (FunctionCall, 'F') names a function by OID and gives its arguments as
  values. The policy judges it by the function's name; its result was masked by the value
  detectors only. A dba outside pii-readers called a function the database defines
  (`public.pw_of(int)`, returning customers.password) and read the password in clear,
  where `SELECT public.pw_of(1)` is masked whole (lineage reads a call outside pg_catalog
  as computed from every table). Now, under masks, the result of a fast-path call of a
  function outside pg_catalog (or made after initdb) is masked whole, and refused when
  the client asks for it in binary (no mask can stand in for a type's bytes).
- Parse declares its parameters' types by OID, named nowhere in the text, and the server
  reads each value with its type's input function, a domain's CHECK expressions included.
  A reader, who may not cast to a type outside pg_catalog (`'x'::public.probe` is
  denied: it runs code readers may not call), declared $1 as public.probe, a domain whose
  CHECK calls a function comparing the value with Ada's password, and the error or row
  answered whether a guess was its prefix. Now a Parse declaring a type made after initdb
  is judged as `SELECT CAST(NULL AS schema.type)` as well (the name read from the server),
  and refused with that cast's reasons.
- A verdict is reused for texts of one shape (portcullis.shape: literals replaced by
  normalize). normalize also replaces an integer in DISTINCT ON, which the server reads
  as an output's position: `SELECT DISTINCT ON (2) id, password FROM customers` (rows
  sorted by the password: an order use, denied) took the verdict of `DISTINCT ON (1)`
  in the same session (or from the PDP's cache). Such texts (and ROLLUP, CUBE, GROUPING
  SETS holding an integer, positions too) now have no shape: reused by exact text only.
- The same oracle through pg_catalog's type input functions, which take the type by OID:
  a reader called domain_in('hunter2-a', <probe's OID>, -1) (record_in of a composite
  with a probe column, array_in of probe[] alike), in SQL or on the fast path, and the
  domain's CHECK ran. They (with range_in, multirange_in, and pg_input_is_valid /
  pg_input_error_info of PostgreSQL 16+) are now off the readers' function list
  (pdp/sql/reader_functions.py TYPE_INPUT, rego/data.json regenerated).
- A reader's write awaiting approval lifts the session's read-only default for its batch
  at Parse (so that an approval at Bind can run it). Every other statement of that batch
  ran read-write too, approved or not: Parse(DELETE ...), then
  Parse/Bind/Execute of `SELECT current_setting('transaction_read_only')` answered off,
  and a fast-path call ran in the same window. Now nothing but the awaiting write is
  parsed, bound, queried or called in a batch read-only was lifted for (an ErrorResponse
  in its place; send the rest after Sync).
- A FunctionCall between a Bind and its Execute ends the implicit transaction and the
  unnamed portal with it: the server failed the Describe the proxy sends before a masked
  portal's rows, and that error, the proxy's own message's, was swallowed, so the
  client's Execute got no answer at all. An error of a message the proxy added is now
  passed on when it discards one of the client's.
- Start-up asking for protocol 3.2 was answered as if 3.2 were in effect (the proxy speaks
  3.0 to both sides); it now gets NegotiateProtocolVersion (newest minor 0) first, as
  the server sends it.
"""

from __future__ import annotations

import socket
import struct

import pytest
from adversary import RawClient, assert_no_secret, oid_of
from pg_probe_stack import arena_fixture, probe_client

from portcullis.shape import shape, shaped
from proxies.postgres import codec

pytestmark = pytest.mark.integration

FUNCTIONS = """
CREATE FUNCTION public.pw_of(int) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT password FROM customers WHERE id = $1 $$;
CREATE FUNCTION public.pw_bytes(int) RETURNS bytea LANGUAGE sql STABLE
  AS $$ SELECT convert_to(password, 'UTF8') FROM customers WHERE id = $1 $$;
-- made after initdb in pg_catalog itself: a superuser may, and the name says pg_catalog
CREATE FUNCTION pg_catalog.p8_pw(int) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT password FROM public.customers WHERE id = $1 $$;
-- a domain whose CHECK answers whether the value is a prefix of Ada's password
CREATE FUNCTION public.pw_prefix(text) RETURNS bool LANGUAGE sql STABLE AS
  $$ SELECT EXISTS (SELECT 1 FROM customers WHERE id = 1 AND password LIKE $1 || '%') $$;
CREATE DOMAIN public.probe AS text CHECK (public.pw_prefix(VALUE));
CREATE TYPE public.probe_pair AS (a public.probe);
"""


arena = arena_fixture(FUNCTIONS)
client = probe_client("p8")


def oid(arena, signature: str) -> int:
    with arena.admin() as admin:
        return oid_of(admin, signature)


def call(c: RawClient, function: int, customer: int, result_format: int = 0):
    """A fast-path call with one int4 argument in binary."""
    return c.send(
        codec.FunctionCall(function, [1], [struct.pack("!i", customer)], result_format).encode()
    )


def results(answer) -> list[bytes | None]:
    return [m.value for m in answer.messages if isinstance(m, codec.FunctionCallResponse)]


@pytest.mark.parametrize("signature", ["public.pw_of(int)", "pg_catalog.p8_pw(int)"])
def test_a_masked_dbas_fast_path_call_of_a_database_function_is_masked_whole(
    arena, signature: str
) -> None:
    c = client(arena, ("dba",))
    try:
        # held for approval since P14 (test_pg_probe_p14.py); masked whole once approved
        answer = call(c, oid(arena, signature), 1)
        assert_no_secret(answer)
        assert any("approval" in e for e in answer.errors), answer.messages
        assert not results(answer)
        # the same function in SQL is masked whole too
        sql = c.query(f"SELECT {signature.split('(')[0]}(1)")
        assert_no_secret(sql)
    finally:
        c.close()


@pytest.mark.parametrize("signature", ["public.pw_of(int)", "public.pw_bytes(int)"])
def test_a_masked_dbas_binary_fast_path_result_is_refused(arena, signature: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = call(c, oid(arena, signature), 1, result_format=1)
        assert_no_secret(answer)
        # held for approval since P14 before its format is looked at
        assert answer.errors, answer.messages
        assert not results(answer)
        # the session goes on
        assert c.query("SELECT 1").rows == [[b"1"]]
    finally:
        c.close()


def test_a_masked_dbas_fast_path_call_of_a_built_in_is_unchanged(arena) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.send(
            codec.FunctionCall(oid(arena, "pg_catalog.textout(text)"), [0], [b"plain"], 0).encode()
        )
        assert results(answer) == [b"plain"], answer.messages
    finally:
        c.close()


def test_a_pii_reading_dba_reads_the_fast_path_result(arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        assert results(call(c, oid(arena, "public.pw_of(int)"), 1)) == [b"hunter2-ada"]
        assert results(call(c, oid(arena, "public.pw_of(int)"), 2, 1)) == [b"hunter2-bob"]
    finally:
        c.close()


# --- parameter types declared at Parse -----------------------------------------------


def typed(c: RawClient, sql: str, type_oid: int, value: bytes):
    return c.send(
        codec.Parse("", sql, [type_oid]).encode(),
        codec.Bind("", "", [0], [value], [0]).encode(),
        codec.Execute("", 0).encode(),
        codec.Sync().encode(),
    )


def type_oid(arena, name: str) -> int:
    with arena.admin() as admin:
        return int(admin.execute("SELECT %s::regtype::oid", (name,)).fetchone()[0])


@pytest.mark.parametrize("sql", ["SELECT 1", "SELECT $1 IS NULL"])
def test_a_reader_declares_no_parameter_type_it_may_not_cast_to(arena, sql: str) -> None:
    c = client(arena, ("readonly",))
    try:
        assert c.query("SELECT 'hunter2-a'::public.probe").refused  # the cast, written
        probe = type_oid(arena, "public.probe")
        right, wrong = typed(c, sql, probe, b"hunter2-a"), typed(c, sql, probe, b"zzz")
        for answer in (right, wrong):
            assert not answer.rows, answer.messages
            assert answer.errors and "parameter type public.probe" in answer.errors[0]
        # the same answer whatever the guess: no oracle
        assert right.errors == wrong.errors
        # built-in parameter types are untouched
        assert typed(c, "SELECT $1 + 1", type_oid(arena, "int4"), b"41").rows == [[b"42"]]
    finally:
        c.close()


def test_a_dba_still_declares_the_databases_types(arena) -> None:
    """A pii-reading dba; under the masks the domain's CHECK (the database's code, run on
    the parameter) refuses the Parse since P14, as SELECT 'x'::probe needs approval."""
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = typed(c, "SELECT $1 IS NULL", type_oid(arena, "public.probe"), b"hunter2-a")
        assert answer.rows == [[b"f"]], answer.messages
    finally:
        c.close()
    c = client(arena, ("dba",))
    try:
        answer = typed(c, "SELECT $1 IS NULL", type_oid(arena, "public.probe"), b"hunter2-a")
        assert answer.errors and "parameter type public.probe" in answer.errors[0], answer.messages
    finally:
        c.close()


# --- a verdict reused for an output position --------------------------------------------

FIRST, SECOND = (
    "SELECT DISTINCT ON (1) id, password FROM customers",
    "SELECT DISTINCT ON (2) id, password FROM customers",
)


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
def test_a_distinct_on_position_takes_no_other_positions_verdict(arena, groups) -> None:
    c = client(arena, groups)
    try:
        assert not c.query(FIRST).refused
        second = c.query(SECOND)
        assert second.refused and "order use of sensitive column password" in second.errors[0]
        # in the extended protocol as well
        answer = c.send(
            codec.Parse("", SECOND, []).encode(),
            codec.Bind("", "", [], [], [0]).encode(),
            codec.Execute("", 0).encode(),
            codec.Sync().encode(),
        )
        assert answer.refused and not answer.rows
    finally:
        c.close()


@pytest.mark.parametrize(
    "sql",
    [
        FIRST,
        "SELECT * FROM (SELECT DISTINCT ON ((2)) id, password FROM customers) s",
        "SELECT id, password FROM customers GROUP BY ROLLUP (1, 2)",
        "SELECT id, password FROM customers GROUP BY CUBE (2)",
        "SELECT id, password FROM customers GROUP BY GROUPING SETS ((1), (id, (2)))",
    ],
)
def test_an_output_position_gives_no_shape(sql: str) -> None:
    assert shape(sql) is None and shaped(sql) is None


def test_values_beside_distinct_and_grouping_sets_still_share_a_shape() -> None:
    assert shape("SELECT DISTINCT ON (id) id FROM t WHERE id = 3") == shape(
        "SELECT DISTINCT ON (id) id FROM t WHERE id = 4"
    )
    assert shape("SELECT count(DISTINCT a) FROM t WHERE b = 1") is not None
    assert shape("SELECT a FROM t GROUP BY GROUPING SETS ((a), ()) HAVING a > 1") is not None


# --- protocol version negotiation ---------------------------------------------------


def started(arena, version: int) -> list[codec.Message]:
    """What the proxy answers a start-up packet of `version`, through ReadyForQuery."""
    tok = arena.token("p8-version@example.com", ("readonly",))
    params = {"user": "agent", "database": arena.database}
    parser, got = codec.BackendParser(), list[codec.Message]()
    with socket.create_connection(("127.0.0.1", arena.port), timeout=15) as s:
        s.sendall(codec.StartupMessage(version, params).encode())
        while not any(isinstance(m, codec.Authentication) for m in got):
            got += parser.feed(s.recv(65536))
        s.sendall(codec.PasswordMessage.from_password(tok).encode())
        while not any(isinstance(m, (codec.ReadyForQuery, codec.ErrorResponse)) for m in got):
            data = s.recv(65536)
            assert data, got
            got += parser.feed(data)
        s.sendall(codec.Terminate().encode())
    return got


def test_protocol_3_2_is_negotiated_down_to_3_0(arena) -> None:
    got = started(arena, 0x00030002)
    assert isinstance(got[0], codec.NegotiateProtocolVersion), got
    assert got[0].newest_minor == 0 and not got[0].unrecognized
    assert isinstance(got[1], codec.AuthenticationCleartextPassword)
    assert isinstance(got[-1], codec.ReadyForQuery)
    assert not any(isinstance(m, codec.NegotiateProtocolVersion) for m in started(arena, 0x30000))


# --- type input functions taking the type by OID ----------------------------------------


def type_inputs(arena) -> list[tuple[str, int, str, int]]:
    """(function, its OID, the value's text with {} for the guess, the type's OID)."""
    probe = type_oid(arena, "public.probe")
    return [
        ("domain_in", oid(arena, "domain_in(cstring,oid,integer)"), "{}", probe),
        ("record_in", oid(arena, "record_in(cstring,oid,integer)"), "({})", 0),
        ("array_in", oid(arena, "array_in(cstring,oid,integer)"), "{{{}}}", probe),
    ]


@pytest.mark.parametrize("fast_path", [False, True])
def test_a_reader_runs_no_type_input_named_by_oid(arena, fast_path: bool) -> None:
    pair = type_oid(arena, "public.probe_pair")
    c = client(arena, ("readonly",))
    try:
        for name, function, form, type_id in type_inputs(arena):
            type_id = type_id or pair
            answers = []
            for guess in ("hunter2-a", "zzz"):
                value = form.format(guess)
                if fast_path:
                    answer = c.send(
                        codec.FunctionCall(
                            function,
                            [0, 1, 1],
                            [value.encode(), struct.pack("!I", type_id), struct.pack("!i", -1)],
                            0,
                        ).encode()
                    )
                else:
                    answer = c.query(f"SELECT {name}('{value}', {type_id}, -1)")
                assert answer.errors, (name, answer.messages)
                assert f"function {name} is not one readers may call" in answer.errors[0]
                answers.append(answer.errors)
            assert answers[0] == answers[1]  # the same answer whatever the guess
    finally:
        c.close()


# --- the batch read-only was lifted for ---------------------------------------------------


def test_nothing_else_runs_in_the_batch_read_only_is_lifted_for(arena) -> None:
    c = client(arena, ("readonly",))
    try:
        answer = c.send(
            codec.Parse("w", "DELETE FROM orders", []).encode(),
            codec.Parse("r", "SELECT current_setting('transaction_read_only')", []).encode(),
            codec.Bind("p", "r", [], [], [0]).encode(),
            codec.Execute("p", 0).encode(),
            codec.Sync().encode(),
        )
        assert [b"off"] not in answer.rows, answer.messages
        assert answer.errors and "read-only default is lifted" in answer.errors[0]
        fast = c.send(
            codec.Parse("w", "DELETE FROM orders", []).encode(),
            codec.FunctionCall(oid(arena, "pg_catalog.pg_jit_available()"), [], [], 0).encode(),
            codec.Sync().encode(),
            ready=2,  # the call's, then the Sync's
        )
        assert not results(fast) and fast.errors, fast.messages
        # and after the Sync the session is read-only again, and runs statements
        assert c.query("SELECT current_setting('transaction_read_only')").rows == [[b"on"]]
    finally:
        c.close()


# --- an error of the proxy's own message that discards the client's -----------------------


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
def test_the_clients_execute_gets_the_error_that_discarded_it(arena, groups) -> None:
    c = client(arena, groups)
    try:
        answer = c.send(
            codec.Parse("", "SELECT id, password FROM customers", []).encode(),
            codec.Bind("", "", [], [], [0]).encode(),
            codec.FunctionCall(oid(arena, "pg_catalog.pg_jit_available()"), [], [], 0).encode(),
            codec.Execute("", 0).encode(),
            codec.Sync().encode(),
            ready=2,
        )
        assert_no_secret(answer)
        assert any("does not exist" in e for e in answer.errors), answer.messages
        assert c.query("SELECT 42").rows == [[b"42"]]
    finally:
        c.close()
