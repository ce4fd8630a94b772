"""Probe P30 (helper pgattack10) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

A transaction held open. A reader's `BEGIN; SELECT ...` and then nothing kept its
transaction open on the production database for as long as the client liked: its snapshot
holds back vacuum for every table, its locks (an ACCESS SHARE on what it read) queue every
ALTER and the writers behind it. The server's idle_in_transaction_session_timeout was the
database's default (0: never) and a reader's to change (SET, SET LOCAL, set_config, the
start-up packet's options: it was in postgres.reader_settings).

Now a session the policy bounds per statement (its statement_timeout pin) is bounded idle
in a transaction as well, pinned in the start-up packet (so RESET, SET TO DEFAULT, RESET
ALL and DISCARD ALL return to it), and a reader may only shorten it (1 ms up to
postgres.reader_statement_timeout_ms), never by set_config (whose value is not read).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, RawClient, assert_no_secret, ready_client
from pg_probe_stack import arena_fixture

from proxies.postgres import codec

pytestmark = pytest.mark.integration

arena = arena_fixture()

BOUND = "60000"  # rego/data.json postgres.reader_statement_timeout_ms


@pytest.fixture
def reader(arena: Arena) -> Iterator[RawClient]:
    c = ready_client(arena, ("readonly",), "p30")
    yield c
    c.close()


def test_a_reader_session_is_bounded_idle_in_a_transaction(reader: RawClient) -> None:
    assert reader.show("idle_in_transaction_session_timeout") == "1min"


@pytest.mark.parametrize(
    "sql",
    [
        "SET idle_in_transaction_session_timeout = 0",
        "SET idle_in_transaction_session_timeout TO '0'",
        "SET SESSION idle_in_transaction_session_timeout = '1h'",
        "SET idle_in_transaction_session_timeout = 60001",
        "SET idle_in_transaction_session_timeout = '0.5'",
        "SET idle_in_transaction_session_timeout = '-1'",
        "SET LOCAL idle_in_transaction_session_timeout = 0",
        "BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0; COMMIT",
        "SELECT set_config('idle_in_transaction_session_timeout', '0', false)",
        "SELECT set_config('idle_in_transaction_session_timeout', '100', false)",
        "SELECT pg_catalog.set_config('IDLE_IN_TRANSACTION_SESSION_TIMEOUT', '0', true)",
        "BEGIN; SELECT set_config('idle_in_transaction_session_timeout', '0', true); COMMIT",
    ],
)
def test_a_reader_may_not_lift_the_bound(reader: RawClient, sql: str) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
    assert reader.show("idle_in_transaction_session_timeout") == "1min"


@pytest.mark.parametrize(
    "sql",
    [
        "RESET idle_in_transaction_session_timeout",
        "SET idle_in_transaction_session_timeout TO DEFAULT",
        "RESET ALL",
        "DISCARD ALL",
    ],
)
def test_reset_returns_to_the_bound(reader: RawClient, sql: str) -> None:
    answer = reader.query("SET idle_in_transaction_session_timeout = '2s'")
    assert not answer.errors, answer.messages
    assert reader.show("idle_in_transaction_session_timeout") == "2s"
    answer = reader.query(sql)
    assert not answer.errors, answer.messages
    assert reader.show("idle_in_transaction_session_timeout") == "1min"


@pytest.mark.parametrize(
    "params",
    [
        {"options": "-c idle_in_transaction_session_timeout=0"},
        {"options": "--idle-in-transaction-session-timeout=0"},
        {"options": "-c idle_in_transaction_session_timeout=2h"},
        {"idle_in_transaction_session_timeout": "0"},
        {"IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "0"},
    ],
)
def test_the_start_up_packet_may_not_lift_it(arena: Arena, params: dict[str, str]) -> None:
    c = RawClient(arena.port, arena.token("p30-s@example.com"), arena.database, **params)
    try:
        assert not c.ready, c.show("idle_in_transaction_session_timeout")
        assert_no_secret(c.startup)
    finally:
        c.close()


def test_a_reader_may_shorten_it_and_the_server_ends_the_idle_transaction(
    arena: Arena,
) -> None:
    """Asked shorter at start-up, honoured: the idle transaction is ended by the server,
    which the client is told (FATAL 25P03), and the session is over."""
    options = "-c idle_in_transaction_session_timeout=300"
    c = RawClient(arena.port, arena.token("p30-t@example.com"), arena.database, options=options)
    try:
        assert c.ready, c.startup.messages
        assert c.show("idle_in_transaction_session_timeout") == "300ms"
        began = c.query("BEGIN; SELECT count(*) FROM orders")
        assert not began.errors and began.rows == [[b"2"]], began.messages
        # the client says nothing more; the server ends it (no timer here: read until then)
        ended = c._until((codec.ReadyForQuery,))
        assert ended.closed, ended.messages
        assert any("idle-in-transaction" in e for e in ended.errors), ended.messages
    finally:
        c.close()


def test_a_reader_still_sets_a_shorter_bound(reader: RawClient) -> None:
    for value, shown in (("5s", "5s"), ("1500", "1500ms"), (BOUND, "1min")):
        answer = reader.query(f"SET idle_in_transaction_session_timeout = '{value}'")
        assert not answer.errors, answer.messages
        assert reader.show("idle_in_transaction_session_timeout") == shown
