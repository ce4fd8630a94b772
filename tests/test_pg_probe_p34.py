"""Probe P34 against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

A transaction kept open by a statement now and then. Since p30 a reader's transaction left
idle ends at the idle bound (idle_in_transaction_session_timeout, pinned), and since p33
one left open without a Sync; but a reader that said something before each bound ran out
(`BEGIN; SELECT ...`, then a `SELECT 1` every minute) kept one transaction, its snapshot
(vacuum waits for it on every table) and its locks (every ALTER, and the writers queued
behind it, wait) open for as long as it liked: PostgreSQL 15 has no bound on a
transaction's age (transaction_timeout came in 17). Policy now bounds it for readers
(postgres.reader_transaction_timeout_ms; the proxy keeps it itself on every server and
sends nothing of it upstream), and the first message of a transaction older than that ends
the session as PostgreSQL 17 ends one (FATAL 25P04).

The policy here bounds a transaction at 2 s.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from adversary import Answer, Arena, ready_client, running_arena
from pdp_harness import REGO
from test_pg_probe_p33 import LOCKS, assert_locks_released

from proxies.postgres import codec
from proxies.postgres.startup import session_pins, upstream_params

pytestmark = pytest.mark.integration

BOUND = 2.0


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    policies = tmp_path_factory.mktemp("rego")
    shutil.copytree(REGO, policies, dirs_exist_ok=True)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["postgres"]["reader_transaction_timeout_ms"] = int(BOUND * 1000)
    (policies / "data.json").write_text(json.dumps(data))
    with running_arena(tmp_path_factory.mktemp("arena"), policies=Path(policies)) as gateway:
        yield gateway


def _codes(answer: Answer) -> list[str]:
    return [m.fields.get("C", "") for m in answer.messages if isinstance(m, codec.ErrorResponse)]


def test_a_transaction_kept_open_by_statements_ends_at_the_bound(arena: Arena) -> None:
    c = ready_client(arena, ("readonly",), "p34")
    try:
        assert c.query("BEGIN").tags == ["BEGIN"]
        assert c.query("SELECT count(*) FROM orders").rows == [[b"2"]]
        with arena.admin() as admin:
            assert admin.execute(LOCKS).fetchone() == (1,)  # the transaction holds its lock
        began, ended = time.monotonic(), None
        while time.monotonic() - began < 4 * BOUND:
            time.sleep(BOUND / 4)  # each wait far shorter than any idle bound
            ended = c.query("SELECT 1")
            if ended.refused:
                break
        assert ended is not None and ended.closed, ended
        assert any("transaction timeout" in e for e in ended.errors), ended.messages
        assert "25P04" in _codes(ended)
        assert_locks_released(arena)
    finally:
        c.close()


def test_short_transactions_and_autocommit_go_on_past_the_bound(arena: Arena) -> None:
    c = ready_client(arena, ("readonly",), "p34")
    try:
        began = time.monotonic()
        while time.monotonic() - began < 2 * BOUND:
            assert c.query("BEGIN").tags == ["BEGIN"]
            assert c.query("SELECT count(*) FROM orders").rows == [[b"2"]]
            assert c.query("COMMIT").tags == ["COMMIT"]
            assert c.query("SELECT 1").rows == [[b"1"]]  # autocommit in between
            time.sleep(BOUND / 4)
        assert not c.closed
    finally:
        c.close()


def test_the_bound_is_the_proxys_own_never_sent_upstream() -> None:
    """PostgreSQL 15 refuses transaction_timeout in a start-up packet (and 17 would let
    RESET move it): the proxy keeps it, the server is sent the rest."""
    chosen = {
        "default_transaction_read_only": "on",
        "statement_timeout": "60000",
        "transaction_timeout": "600000",
    }
    pins = session_pins(chosen)
    assert "transaction_timeout" not in pins and pins["statement_timeout"] == "60000"
    assert "transaction_timeout" not in upstream_params("app", "orders", {}, pins)
