"""Probe P32 (helper pgattack10) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

A foreign table is read by code outside the database. An administrator's file_fdw table
over a program (`OPTIONS (program '...')`, a log reader) or a server file (`filename`)
was read by a reader's plain `SELECT * FROM app_log`: the server ran the shell command as
its operating-system user (here: it touched a marker file) and read the file, which
neither COPY ... PROGRAM nor pg_read_file would let a reader do; so did a view over it, and
a partitioned table one of whose partitions is foreign. Reading a foreign table runs its
wrapper's handler (file_fdw_handler, postgres_fdw_handler: another server, with a user
mapping's credentials): the proxy now counts that handler among the code reading the
relation runs (user_code.py's read code), so a reader's statement naming it is judged as
a view running a function readers may not call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from adversary import Arena, RawClient, assert_no_secret, marker_path, ready_client
from pg_probe_stack import arena_fixture

pytestmark = pytest.mark.integration

MARKER = marker_path()

arena = arena_fixture(
    f"""
CREATE EXTENSION file_fdw;
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE public.app_log (line text) SERVER files
  OPTIONS (program 'echo p32-line; touch {MARKER}');
CREATE FOREIGN TABLE public.host_name (line text) SERVER files
  OPTIONS (filename '/etc/hostname');
CREATE VIEW public.log_view AS SELECT line FROM public.app_log;
CREATE TABLE public.events (at int, line text) PARTITION BY RANGE (at);
CREATE TABLE public.events_now PARTITION OF public.events FOR VALUES FROM (0) TO (10);
CREATE FOREIGN TABLE public.events_old PARTITION OF public.events FOR VALUES FROM (-10) TO (0)
  SERVER files OPTIONS (program 'echo -1,p32-old; touch {MARKER}', format 'csv');
""",
    "DROP TABLE public.events; DROP VIEW public.log_view; DROP EXTENSION file_fdw CASCADE",
)


@pytest.fixture
def reader(arena: Arena) -> Iterator[RawClient]:
    c = ready_client(arena, ("readonly",), "p32")
    yield c
    c.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM app_log",
        "SELECT count(*) FROM public.app_log",
        "TABLE app_log",
        "SELECT * FROM host_name",
        "SELECT * FROM log_view",
        "SELECT * FROM events",
        "SELECT * FROM events WHERE at < 0",
        "SELECT * FROM events_old",
        "EXPLAIN SELECT * FROM app_log",
        "SELECT (SELECT line FROM app_log LIMIT 1)",
        "WITH l AS (SELECT * FROM app_log) SELECT * FROM l",
        "COPY app_log TO STDOUT",
        "COPY (SELECT * FROM app_log) TO STDOUT",
    ],
)
def test_a_foreign_table_is_not_read_by_a_reader(reader: RawClient, sql: str) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
    assert b"p32-" not in answer.raw
    assert not Path(MARKER).exists()


def test_a_reader_still_reads_the_partitions_of_the_database(reader: RawClient) -> None:
    answer = reader.query("SELECT count(*) FROM events_now")
    assert not answer.errors and answer.rows == [[b"0"]], answer.messages
    assert not Path(MARKER).exists()


def test_a_dba_reads_it(arena: Arena) -> None:
    c = ready_client(arena, ("dba", "pii-readers"), "p32")
    try:
        answer = c.query("SELECT * FROM app_log")
        assert not answer.errors and answer.rows == [[b"p32-line"]], answer.messages
    finally:
        c.close()
        Path(MARKER).unlink(missing_ok=True)
