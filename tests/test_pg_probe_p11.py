"""Probe P11's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column no value
detector recognises).

- Other sessions' statement text holds their literals: a pii-reader's `SELECT * FROM
  customers WHERE password = 'hunter2-ada'` stays in pg_stat_activity.query while its
  session is open. The view's query column was masked whole for a dba outside pii-readers
  (a computed view column), but the functions under it were not: `SELECT query FROM
  pg_stat_get_activity(NULL)` and `pg_stat_get_backend_activity(b)` gave the statement with
  its password (the value detectors caught only the card number), and a condition on the
  masked column answered questions about it (`SELECT count(*) FROM pg_stat_activity WHERE
  query LIKE '%hunter2-a%'`: 2 when another session held it, 1 otherwise), also through a
  view the database defines over pg_stat_activity. Now the functions are denied outside
  pii-readers and the column's conditions are judged as a sensitive column's
  (rego/portcullis/postgres_lineage.rego).
- A large object is bytes stored under no column: `SELECT lo_get(oid)`, `loread(lo_open(...))`
  and `SELECT data FROM pg_largeobject` gave a dba outside pii-readers a card number and a
  password stored in one, as hex no value detector reads (readers may read none). Now
  pg_largeobject, lo_get and loread are denied outside pii-readers.
- A CancelRequest with a session's key (a reader's own, from its BackendKeyData) was
  forwarded every time, each on a new connection to the server (a process its postmaster
  forks): 500 sent in 1.5 s opened 500 connections upstream. Now each peer address has at
  most 16 forwarded at once and 4 a second after (proxies/postgres/proxy.py CancelBudget),
  and each key 4 at once and 1 a second (60 addresses sent one each: 60 forwarded);
  another address's cancel still goes through.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from adversary import (
    assert_no_secret,
    function_call,
    oid_of,
    query,
    ready_client,
    running_arena,
)
from pdp_harness import free_port
from pg_probe_stack import arena_fixture, probe_client

from proxies.postgres import codec
from proxies.postgres.proxy import CancelBudget

pytestmark = pytest.mark.integration

VIEWS = """
CREATE VIEW public.p11_sessions AS SELECT usename, query AS q FROM pg_stat_activity;
"""

PII_STATEMENT = (
    "SELECT id FROM customers WHERE password = 'hunter2-ada' OR note = '4111111111111111'"
)


arena = arena_fixture(VIEWS)


client = probe_client("p11")


@pytest.fixture
def pii_session(arena) -> Iterator[None]:
    """A pii-reader's session through the gateway, idle after a statement naming a password:
    pg_stat_activity keeps its text until the next one."""
    tok = arena.token("p11-pii@example.com", ("dba", "pii-readers"))
    with psycopg.connect(arena.dsn(tok), autocommit=True) as conn:
        conn.execute(PII_STATEMENT)
        yield


STATEMENT_TEXT_READS = [
    "SELECT query FROM pg_stat_get_activity(NULL)",
    "SELECT a.query FROM pg_catalog.pg_stat_get_activity(NULL) AS a",
    "SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() AS b",
    'SELECT "pg_stat_get_backend_activity"(b) FROM pg_stat_get_backend_idset() AS b',
    "WITH a AS (SELECT * FROM pg_stat_get_activity(NULL)) SELECT query FROM a",
    "COPY (SELECT query FROM pg_stat_get_activity(NULL)) TO STDOUT",
    "SELECT b FROM pg_stat_get_backend_idset() AS b"
    " WHERE pg_stat_get_backend_activity(b) LIKE '%hunter2-a%'",
]

STATEMENT_TEXT_QUESTIONS = [
    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%hunter2-a%'",
    "SELECT datname FROM pg_catalog.pg_stat_activity WHERE strpos(query, 'hunter2-a') > 0",
    'SELECT datname FROM "pg_stat_activity" ORDER BY query',
    "WITH a(x) AS (SELECT query FROM pg_stat_activity) SELECT count(*) FROM a WHERE x > 'S'",
    "SELECT count(*) FROM (SELECT query AS x FROM pg_stat_activity) AS s WHERE x ~ 'hunter2-a'",
    "SELECT CASE WHEN query LIKE '%hunter2-a%' THEN 1 END FROM pg_stat_activity",
    "EXPLAIN ANALYZE SELECT 1 FROM pg_stat_activity WHERE query LIKE '%hunter2-a%'",
    "SELECT count(*) FROM p11_sessions WHERE q LIKE '%hunter2-a%'",
]


@pytest.mark.parametrize("sql", STATEMENT_TEXT_READS)
def test_a_masked_dba_reads_no_other_sessions_statement_text(arena, pii_session, sql: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql)
        assert_no_secret(answer, b"hunter2-ada", b"4111111111111111", b"1111'")
        assert answer.errors, answer.messages
    finally:
        c.close()


@pytest.mark.parametrize("sql", STATEMENT_TEXT_QUESTIONS)
def test_a_masked_dba_asks_other_sessions_statement_text_no_questions(
    arena, pii_session, sql: str
) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql)
        assert answer.errors and "statement text" in answer.errors[0], answer.messages
        assert not answer.rows, answer.rows
    finally:
        c.close()


STATEMENT_TEXT_STORES = [
    "CREATE TABLE p11_copy AS SELECT query AS q FROM pg_stat_activity",
    "SELECT query INTO p11_copy FROM pg_catalog.pg_stat_activity",
    "INSERT INTO audit_log(what) SELECT query FROM pg_stat_activity",
    "WITH a AS (SELECT query FROM pg_stat_activity)"
    " INSERT INTO audit_log(what) SELECT query FROM a",
    "WITH w AS (INSERT INTO audit_log(what) SELECT query FROM pg_stat_activity RETURNING 1)"
    " SELECT count(*) FROM w",
    "UPDATE audit_log SET what = (SELECT max(query) FROM pg_stat_activity) WHERE id > 0",
    "INSERT INTO audit_log(what) SELECT q FROM p11_sessions",
]


@pytest.mark.parametrize("sql", STATEMENT_TEXT_STORES)
def test_a_masked_dba_stores_no_other_sessions_statement_text(arena, pii_session, sql: str) -> None:
    """CREATE TABLE AS / INSERT ... SELECT query copied the masked column into a table column
    read in clear (the pii-reader's password with it)."""
    c = client(arena, ("dba",))
    try:
        c.query("INSERT INTO audit_log(what) VALUES ('x')")
        answer = c.query(sql)
        assert answer.errors and "statement text" in answer.errors[0], answer.messages
        for read in ("SELECT what FROM audit_log", "SELECT * FROM p11_copy"):
            assert_no_secret(c.query(read), b"hunter2-ada")
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute("DROP TABLE IF EXISTS p11_copy")
            admin.execute("TRUNCATE audit_log")


def test_a_reader_reads_no_statement_text_through_a_view_either(arena, pii_session) -> None:
    c = client(arena, ("readonly",))
    try:
        answer = c.query(STATEMENT_TEXT_QUESTIONS[-1])
        assert answer.errors and "statement text" in answer.errors[0], answer.messages
        for sql in (STATEMENT_TEXT_READS[0], STATEMENT_TEXT_QUESTIONS[0]):
            answer = c.query(sql)
            assert_no_secret(answer, b"hunter2-ada")
            assert answer.errors, answer.messages
        read = c.query("SELECT q FROM p11_sessions")
        assert read.rows and not read.errors, read.messages
        assert_no_secret(read, b"hunter2-ada")
    finally:
        c.close()


def test_a_masked_dba_still_watches_sessions(arena, pii_session) -> None:
    """pg_stat_activity itself stays readable, its query masked; equality and IS NULL on it
    (as on a sensitive column) and conditions on its other columns still run."""
    c = client(arena, ("dba",))
    try:
        answer = c.query(
            "SELECT datname, usename, state, query FROM pg_stat_activity"
            " WHERE query IS NOT NULL AND state <> 'x' AND usename LIKE 'post%'"
        )
        assert not answer.errors and answer.rows, answer.messages
        assert_no_secret(answer, b"hunter2-ada")
        assert not c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'none'"
        ).errors
    finally:
        c.close()


def test_a_pii_reading_dba_reads_statement_text(arena, pii_session) -> None:
    tok = arena.token("p11-pii-reads@example.com", ("dba", "pii-readers"))
    with psycopg.connect(arena.dsn(tok), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_get_activity(NULL) WHERE query LIKE '%hunter2-a%'"
        ).fetchall()
    assert any(PII_STATEMENT in r[0] for r in rows), rows


CANCEL_CODE = 80877102


class CountingRelay:
    """A TCP relay in front of the real server that counts the connections opening with a
    CancelRequest (what the proxy forwarded)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.server.getsockname()[1]
        self.cancels = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        first = b""
        while len(first) < 8:
            data = client.recv(8 - len(first))
            if not data:
                client.close()
                return
            first += data
        if struct.unpack("!II", first) == (16, CANCEL_CODE):
            self.cancels += 1
        upstream = socket.create_connection(("127.0.0.1", 5432))
        upstream.sendall(first)
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        _pump(upstream, client)

    def close(self) -> None:
        self.server.close()


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture(scope="module")
def relayed(tmp_path_factory):
    relay = CountingRelay()
    try:
        upstream = f"127.0.0.1:{relay.port}"
        with running_arena(tmp_path_factory.mktemp("relayed"), upstream=upstream) as gateway:
            yield gateway, relay
    finally:
        relay.close()


def _send_cancel(port: int, key: codec.BackendKeyData, source: str = "127.0.0.1") -> None:
    with socket.create_connection(("127.0.0.1", port), source_address=(source, 0)) as s:
        s.sendall(codec.CancelRequest(key.pid, key.secret).encode())
        s.recv(1)  # the proxy closes it once handled


def _until_running(arena, sql: str) -> None:
    with arena.admin() as admin:
        for _ in range(200):
            if admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query = %s", (sql,)
            ).fetchone():
                return
            time.sleep(0.05)
    raise AssertionError(f"{sql} never ran")


def test_a_flood_of_cancel_requests_opens_few_connections_upstream(relayed) -> None:
    arena, relay = relayed
    flooder = ready_client(arena, ("readonly",), "p11-flood")
    victim = ready_client(arena, ("dba",), "p11-victim")
    try:
        (key,) = [m for m in flooder.startup.messages if isinstance(m, codec.BackendKeyData)]
        before = relay.cancels
        started = time.monotonic()
        for _ in range(300):
            _send_cancel(arena.port, key)
        elapsed = time.monotonic() - started
        # the burst, and what the rate refilled while the flood was sent
        bound = 16 + 4 * elapsed + 1
        flooder.query("SELECT 1")  # the forwarded ones have reached the relay by now
        assert relay.cancels - before <= bound, (relay.cancels - before, bound)
        # another address's cancel still reaches its statement
        (theirs,) = [m for m in victim.startup.messages if isinstance(m, codec.BackendKeyData)]
        victim.sock.sendall(query("SELECT pg_sleep(30)"))
        _until_running(arena, "SELECT pg_sleep(30)")
        _send_cancel(arena.port, theirs, source="127.0.0.2")
        answer = victim._until((codec.ReadyForQuery,))
        assert any("cancel" in e for e in answer.errors), answer.messages
    finally:
        flooder.close()
        victim.close()


def test_cancel_requests_from_many_addresses_open_few_connections_for_one_key(relayed) -> None:
    """An address of its own for each request passes the per-address budget (an IPv6
    client has a /64 of them): a key's cancels are bounded as well (4 at once, 1 a second)."""
    arena, relay = relayed
    flooder = ready_client(arena, ("readonly",), "p11-spread")
    try:
        (key,) = [m for m in flooder.startup.messages if isinstance(m, codec.BackendKeyData)]
        before = relay.cancels
        started = time.monotonic()
        for host in range(2, 62):
            _send_cancel(arena.port, key, source=f"127.0.0.{host}")
        elapsed = time.monotonic() - started
        flooder.query("SELECT 1")
        assert relay.cancels - before <= 4 + elapsed + 1, (relay.cancels - before, elapsed)
    finally:
        flooder.close()


def test_the_cancel_budget_refills_per_peer() -> None:
    now = [100.0]
    budget = CancelBudget(burst=3, rate=2.0, clock=lambda: now[0])
    assert [budget.admit("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert budget.admit("10.0.0.2")  # another address has its own
    now[0] += 0.5  # one more after half a second at 2 a second
    assert [budget.admit("10.0.0.1") for _ in range(2)] == [True, False]
    now[0] += 60  # full again, and no more than full
    assert [budget.admit("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert budget.refused == 3


LARGE_OBJECT_TEXT = "card 4111 1111 1111 1111 pw hunter2-lo"
LARGE_OBJECT_HEX = LARGE_OBJECT_TEXT.encode().hex().encode()


@pytest.fixture
def large_object(arena) -> Iterator[int]:
    with arena.admin() as admin:
        (oid,) = admin.execute(
            "SELECT lo_from_bytea(0, convert_to(%s, 'UTF8'))", (LARGE_OBJECT_TEXT,)
        ).fetchone()
    yield int(oid)
    arena.reset_data()


LARGE_OBJECT_READS = [
    "SELECT lo_get({oid})",
    "SELECT pg_catalog.lo_get({oid}, 5, 19)",
    "SELECT loread(lo_open({oid}, 262144), 100)",
    "SELECT data FROM pg_largeobject",
    'SELECT encode(data, \'hex\') FROM "pg_catalog"."pg_largeobject" WHERE loid = {oid}',
]


@pytest.mark.parametrize("sql", LARGE_OBJECT_READS)
def test_a_masked_dba_reads_no_large_objects_bytes(arena, large_object: int, sql: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql.format(oid=large_object))
        assert_no_secret(answer, LARGE_OBJECT_HEX, b"hunter2-lo", b"34313131")
        assert answer.errors and "large object" in answer.errors[0], answer.messages
    finally:
        c.close()


def test_a_masked_dba_reads_no_large_object_on_the_fast_path(arena, large_object: int) -> None:
    with arena.admin() as admin:
        lo_get = oid_of(admin, "lo_get(oid)")
    c = client(arena, ("dba",))
    try:
        answer = c.send(function_call(lo_get, large_object))
        assert_no_secret(answer, LARGE_OBJECT_HEX, b"hunter2-lo")
        assert answer.errors and "large object" in answer.errors[0], answer.messages
    finally:
        c.close()


def test_a_masked_dba_still_manages_large_objects(arena, large_object: int) -> None:
    c = client(arena, ("dba",))
    try:
        listed = c.query("SELECT oid FROM pg_largeobject_metadata")
        assert listed.rows == [[str(large_object).encode()]], listed.messages
        assert not c.query(f"SELECT lo_unlink({large_object})").errors
    finally:
        c.close()
    tok = arena.token("p11-pii-lo@example.com", ("dba", "pii-readers"))
    with arena.admin() as admin:
        (oid,) = admin.execute("SELECT lo_from_bytea(0, 'x')").fetchone()
    with psycopg.connect(arena.dsn(tok), autocommit=True) as conn:
        assert conn.execute("SELECT lo_get(%s)", (oid,)).fetchone()[0] == b"x"
