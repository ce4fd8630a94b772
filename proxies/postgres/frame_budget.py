"""The bytes of large server frames every session of this process may hold at once.

A reader's `SELECT repeat('x', 1000000000)` makes the server send one DataRow of a
gigabyte, which the proxy holds whole (a row is masked as a whole), copies while it reads
and masks it, and then keeps in the client's write buffer until the client reads it: about
three gigabytes of the proxy's memory for one statement. A few sessions doing that at once
(one token is enough) ended the proxy, every session of every user with it. A session whose
server frame under way, or whose unsent output, is larger than LARGE now takes that many
bytes from this process's budget first; when the budget is spent (by other sessions), the
session stops reading its server, which waits in its ClientWrite (TCP backpressure), until
the others' large frames are sent. A frame larger than the whole budget still goes, alone.
No answer changes, only when it comes: a refusal here would itself be a threshold a
reader could measure a masked value's length against.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

LARGE = 8 * 1024 * 1024  # smaller frames and write buffers are not counted
TOTAL = 1024 * 1024 * 1024  # large frames of every session at once, per process


class FrameBudget:
    """Bytes taken and given back; sessions that could not take wait in turn (FIFO)."""

    __slots__ = ("_waiting", "total", "used")

    def __init__(self, total: int = TOTAL) -> None:
        self.total = total
        self.used = 0
        self._waiting: deque[Callable[[], None]] = deque()

    def take(self, size: int, waiter: Callable[[], None]) -> bool:
        """Take size bytes: True when they fit (or nothing else is held: one frame larger
        than the budget goes alone) and no one waits before waiter. False when not, having
        queued waiter, which is called when bytes are given back (to take again)."""
        waiting = self._waiting
        first = bool(waiting) and waiting[0] is waiter
        if (not waiting or first) and (self.used == 0 or self.used + size <= self.total):
            if first:
                waiting.popleft()
                if waiting:
                    waiting[0]()  # the next may fit too
            self.used += size
            return True
        if waiter not in waiting:
            waiting.append(waiter)
        return False

    def give(self, size: int) -> None:
        if size <= 0:
            return
        self.used = max(0, self.used - size)
        if self._waiting:
            self._waiting[0]()

    def forget(self, waiter: Callable[[], None]) -> None:
        """waiter waits no more (its session ended); the next one is asked."""
        if waiter in self._waiting:
            first = self._waiting[0] is waiter
            self._waiting.remove(waiter)
            if first and self._waiting:
                self._waiting[0]()

    @property
    def waiting(self) -> int:
        return len(self._waiting)


BUDGET = FrameBudget()
