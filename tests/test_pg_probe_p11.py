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
  view the database defines over pg_stat_activity; `CREATE TABLE t AS SELECT query ...` and
  `INSERT INTO audit_log(what) SELECT query ...` stored it where it was read in clear. Now
  the functions are denied outside pii-readers, and the column's conditions are judged and
  its stores refused as a sensitive column's (rego/portcullis/postgres_lineage.rego; the
  proxy now reads a view's plain column of a pg_catalog view as that column by name, so
  `usename` of a view over pg_stat_activity does not count as carrying `query`).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from adversary import RawClient, assert_no_secret, ready_client, running_arena

pytestmark = pytest.mark.integration

VIEWS = """
CREATE VIEW public.p11_sessions AS SELECT usename, query AS q FROM pg_stat_activity;
"""

PII_STATEMENT = (
    "SELECT id FROM customers WHERE password = 'hunter2-ada' OR note = '4111111111111111'"
)


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
        with gateway.admin() as admin:
            admin.execute(VIEWS)
        yield gateway


def client(arena, groups: tuple[str, ...]) -> RawClient:
    return ready_client(arena, groups, "p11")


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
