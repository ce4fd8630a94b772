"""Probe P35 (helper pgattack11) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

The proxy's memory, one gigabyte at a time. A reader's `SELECT repeat('x', 1000000000)`
(or any result row of a gigabyte: array_fill, string_agg over generate_series) makes the
server send one DataRow of that size, which the proxy holds whole, copies while it reads
and masks it, and keeps in the client's write buffer until the client reads it: the
proxy's resident size went from 0.1 to 2.9 GB for one such statement. Nothing bounded how
many sessions did it at once, so a handful of a reader's sessions (their clients reading
slowly) ended the proxy and every session of every user in it.

Now a session takes the bytes of a server frame larger than frame_budget.LARGE (and of
its unsent output beyond that) from one budget per process before it reads on; with the
budget spent by others it stops reading its server (which waits, in ClientWrite) until
they are sent. Here with a budget of 64 MB: a reader whose client does not read holds
its 40 MB row; another reader's 40 MB row waits at the server meanwhile (before: it was
read whole into the proxy's memory and sent on), and comes once the first is read.
No answer changes, only when it comes: a refusal by size would be a threshold a reader
could measure a masked value's length against (the 1 GB oracle).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from adversary import RawClient, query
from pg_probe_stack import arena_fixture, probe_client

from proxies.postgres import codec, frame_budget

pytestmark = pytest.mark.integration

arena = arena_fixture()
client = probe_client("p35", ("readonly",))

ELEMENTS = 20_000_000  # an int[] of zeros: a 40 MB text row no mask or detector changes
BIG_ROW = f"SELECT array_fill(0, ARRAY[{ELEMENTS}]) AS {{tag}}"


@pytest.fixture
def small_budget() -> Iterator[None]:
    budget = frame_budget.BUDGET
    total, budget.total = budget.total, 64 * 1024 * 1024
    try:
        yield
    finally:
        budget.total = total


def backend_state(arena, tag: str) -> tuple[str, str | None] | None:
    """(state, wait_event) of the backend whose statement names tag."""
    with arena.admin() as admin:
        row = admin.execute(
            "SELECT state, wait_event FROM pg_stat_activity WHERE query LIKE %s"
            " AND pid <> pg_backend_pid()",
            (f"%AS {tag}%",),
        ).fetchone()
    return (row[0], row[1]) if row else None


def wait_for(arena, tag: str, states: set[tuple[str, str | None]]) -> tuple[str, str | None]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = backend_state(arena, tag)
        if state in states:
            return state
        time.sleep(0.1)
    raise AssertionError(f"{tag}: never one of {states}: {backend_state(arena, tag)}")


class Reading(threading.Thread):
    """Reads everything a raw client is sent, counting DataRow bytes, until ReadyForQuery."""

    def __init__(self, c: RawClient) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.row_bytes = 0
        self.tags: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        parser = codec.BackendParser()
        self.c.sock.settimeout(300)
        while True:
            try:
                data = self.c.sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                break
            for m in parser.feed(data):
                if isinstance(m, codec.DataRow):
                    self.row_bytes += sum(len(v or b"") for v in m.values)
                elif isinstance(m, codec.CommandComplete):
                    self.tags.append(m.tag)
                elif isinstance(m, codec.ReadyForQuery):
                    self.done.set()
                    return
        self.done.set()


def test_a_second_gigantic_row_waits_at_the_server_while_the_first_is_held(
    arena, small_budget
) -> None:
    slow, other = client(arena), client(arena)
    try:
        # the first reader's client reads nothing: its 40 MB row stays with the proxy
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.sock.sendall(query(BIG_ROW.format(tag="p35_first")))
        wait_for(arena, "p35_first", {("idle", "ClientRead")})
        # the second reader reads as fast as it can
        reading = Reading(other)
        reading.start()
        other.sock.sendall(query(BIG_ROW.format(tag="p35_second")))
        # (before: the proxy read it whole, its backend went idle and the row came)
        deadline = time.monotonic() + 120
        while frame_budget.BUDGET.waiting == 0 and time.monotonic() < deadline:
            if backend_state(arena, "p35_second") == ("idle", "ClientRead"):
                break
            time.sleep(0.1)
        assert frame_budget.BUDGET.waiting == 1, "the second row was read while the first held"
        assert backend_state(arena, "p35_second") == ("active", "ClientWrite")
        assert reading.row_bytes == 0
        # the first client reads its row: the second comes
        first = Reading(slow)
        first.start()
        assert first.done.wait(120) and first.tags == ["SELECT 1"]
        assert first.row_bytes == 2 * ELEMENTS + 1
        assert reading.done.wait(120) and reading.tags == ["SELECT 1"]
        assert reading.row_bytes == 2 * ELEMENTS + 1
    finally:
        slow.close()
        other.close()


def test_one_gigantic_row_alone_goes_and_others_go_on(arena, small_budget) -> None:
    """A frame larger than the whole budget goes when nothing else is held; small results
    are never held back by one."""
    big, small = client(arena), client(arena)
    try:
        reading = Reading(big)
        reading.start()
        big.sock.sendall(query("SELECT array_fill(0, ARRAY[40000000]) AS p35_alone"))
        assert small.query("SELECT id FROM orders ORDER BY id").rows == [[b"10"], [b"11"]]
        assert reading.done.wait(120) and reading.tags == ["SELECT 1"]
        assert reading.row_bytes == 80_000_001
        assert frame_budget.BUDGET.used == 0 or wait_used_zero()
    finally:
        big.close()
        small.close()


def wait_used_zero() -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if frame_budget.BUDGET.used == 0:
            return True
        time.sleep(0.05)
    return False


def test_the_budget_grants_in_turn_and_lets_a_lone_giant_through() -> None:
    budget = frame_budget.FrameBudget(100)
    called: list[str] = []

    def a() -> None:
        called.append("a")

    def b() -> None:
        called.append("b")

    assert budget.take(60, a)
    assert not budget.take(60, b)  # does not fit: b waits
    assert not budget.take(10, a)  # fits, but b waits before it: a queues behind b
    assert budget.waiting == 2
    budget.give(60)
    assert called == ["b"]  # the first waiter is asked
    assert budget.take(60, b) and called == ["b", "a"]  # and then the next
    assert budget.take(10, a) and budget.used == 70 and budget.waiting == 0
    budget.give(70)
    assert budget.take(500, a) and budget.used == 500  # larger than the budget, alone
    assert not budget.take(1, b)
    budget.forget(b)
    assert budget.waiting == 0
    budget.give(500)
    assert budget.used == 0
