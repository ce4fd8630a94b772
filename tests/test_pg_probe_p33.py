"""Probe P33 (helper pgattack10) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

A transaction held open without a Sync. The server arms idle_in_transaction_session_timeout
(pinned for readers since p30) only before it sends ReadyForQuery, which only a Sync (or a
simple Query) brings: a reader's Parse, Bind, Execute of `SELECT count(*) FROM orders` and a
Flush, then nothing, kept the implicit transaction open, its snapshot (vacuum waits for it
everywhere) and its lock on orders (every ALTER, and the writers queued behind it, wait),
for as long as the client liked; the proxy's statement watchdog watched only statements the
server had not answered. Now the watchdog watches a batch left open too, and one the client
left open for the statement bound, everything in it answered, ends the session as the
server ends one idle in a transaction (FATAL 25P03).

The policy here bounds statements at 1 s (postgres.reader_statement_timeout_ms), so the
test waits that long, by reading until the proxy's answer comes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from adversary import Arena, bind, execute, parse, ready_client, running_arena, sync
from pdp_harness import REGO

from proxies.postgres import codec

pytestmark = pytest.mark.integration

LOCKS = (
    "SELECT count(*) FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a USING (pid)"
    " WHERE a.datname = current_database() AND l.relation = 'public.orders'::regclass"
)


def assert_locks_released(arena: Arena) -> None:
    """No lock on orders is left: the server's backend goes once the proxy closes it."""
    with arena.admin() as admin:
        for _ in range(100):
            if admin.execute(LOCKS).fetchone() == (0,):
                break
            admin.execute("SELECT pg_sleep(0.05)")
        assert admin.execute(LOCKS).fetchone() == (0,)


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    policies = tmp_path_factory.mktemp("rego")
    shutil.copytree(REGO, policies, dirs_exist_ok=True)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["postgres"]["reader_statement_timeout_ms"] = 1000
    (policies / "data.json").write_text(json.dumps(data))
    arena_dir = tmp_path_factory.mktemp("arena")
    # approvals wait 3 s, longer than the 1 s bound: a batch waiting on one is not left open
    with running_arena(arena_dir, policies=Path(policies), approval_timeout=3) as gateway:
        yield gateway


def test_a_batch_left_without_sync_ends_at_the_bound(arena: Arena) -> None:
    c = ready_client(arena, ("readonly",), "p33")
    try:
        c.sock.sendall(
            parse("", "SELECT count(*) FROM orders")
            + bind("", "")
            + execute("")
            + codec.Flush().encode()
        )
        answered = c._until((codec.CommandComplete,))
        assert answered.rows == [[b"2"]], answered.messages
        with arena.admin() as admin:
            assert admin.execute(LOCKS).fetchone() == (1,)  # held while the batch is open
        ended = c._until((codec.ReadyForQuery,))  # none comes: the session is ended
        assert ended.closed, ended.messages
        assert any("idle-in-transaction" in e for e in ended.errors), ended.messages
        assert_locks_released(arena)
    finally:
        c.close()


def test_a_batch_closed_by_sync_and_a_busy_pipeline_go_on(arena: Arena) -> None:
    c = ready_client(arena, ("readonly",), "p33")
    try:
        answer = c.send(parse("", "SELECT count(*) FROM orders"), bind("", ""), execute(""), sync())
        assert answer.rows == [[b"2"]] and not answer.errors, answer.messages
        # a batch kept open while the client keeps sending: each Execute answered
        for _ in range(3):
            c.sock.sendall(bind("", "") + execute("") + codec.Flush().encode())
            step = c._until((codec.CommandComplete,))
            assert step.rows == [[b"2"]] and not step.closed, step.messages
        closing = c.send(sync())
        assert not closing.closed and not closing.errors, closing.messages
        assert c.query("SELECT 1").rows == [[b"1"]]
    finally:
        c.close()


def test_a_batch_waiting_on_an_approval_is_not_ended(arena: Arena) -> None:
    """The proxy holds the batch while an approver is asked (here nobody answers, and the
    request lapses after 3 s): the client is not the one leaving it open."""
    c = ready_client(arena, ("readonly",), "p33")
    try:
        c.sock.sendall(
            parse("", "SELECT count(*) FROM orders")
            + bind("", "")
            + execute("")
            + codec.Flush().encode()
        )
        assert c._until((codec.CommandComplete,)).rows == [[b"2"]]
        answer = c.send(
            parse("w", "INSERT INTO audit_log(what) VALUES ('p33')"),
            bind("", "w"),
            execute(""),
            sync(),
        )
        assert not answer.closed, answer.messages
        assert answer.errors and "idle-in-transaction" not in answer.errors[0], answer.messages
        assert c.query("SELECT 1").rows == [[b"1"]]
    finally:
        c.close()
