"""When open sessions must end, on one timer per proxy.

Owns the wall-clock deadlines of a proxy's sessions (a just-in-time grant's end, the client
token's expiry: ProxySession.grant_expiry, .end_at_expiry): a heap of (time, key) and one
event-loop timer armed at the earliest. Thousands of idle sessions each held a timer of
their own, with the future, callbacks and arguments around it: about 1.2 KiB of an idle
Postgres session's 20 (issue 27). Here a session costs its heap entry and its place in a
dict; a deadline withdrawn (its session ended first) is forgotten at once, and its heap
entry, which holds nothing of the session, is swept out once such entries outnumber the
live ones.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable

log = logging.getLogger("portcullis.session")

# withdrawn entries the heap may hold beyond as many as it has live ones
SLACK = 64


class Deadlines:
    """Calls at wall-clock times, each withdrawable until it is made; one timer for all."""

    __slots__ = ("_armed_at", "_calls", "_heap", "_loop", "_next", "_timer")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._calls: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, at: float, call: Callable[[], None]) -> int:
        """`call()` at `at` (time.time()'s clock), from the running loop; the key withdraws it."""
        key = self._next
        self._next += 1
        self._calls[key] = call
        heapq.heappush(self._heap, (at, key))
        if at < self._armed_at or self._loop is not asyncio.get_running_loop():
            self._arm(self._heap[0][0])
        return key

    def withdraw(self, key: int) -> None:
        """The call of `key` will not be made (nothing when it was, or was withdrawn)."""
        if self._calls.pop(key, None) is None:
            return
        heap, live = self._heap, len(self._calls)
        if len(heap) > 2 * live + SLACK:
            self._heap = [entry for entry in heap if entry[1] in self._calls]
            heapq.heapify(self._heap)
        if not live and self._timer is not None:
            self._timer.cancel()
            self._timer, self._armed_at = None, float("inf")
            self._heap.clear()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop = loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(at - time.time(), 0.0), self._due)
        self._armed_at = at

    def _due(self) -> None:
        self._timer, self._armed_at = None, float("inf")
        heap, calls = self._heap, self._calls
        now = time.time()
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            call = calls.pop(key, None)
            if call is None:
                continue  # withdrawn
            try:
                call()
            except Exception:
                log.exception("a session's end failed")
        while heap and heap[0][1] not in calls:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def stop(self) -> None:
        """Withdraw every call (the proxy stops)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_at = None, float("inf")
        self._heap.clear()
        self._calls.clear()
