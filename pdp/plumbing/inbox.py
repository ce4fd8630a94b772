"""`Inbox`: a queue with one consumer, on the event loop's thread.

Owns the hand-over the PDP makes on every decision (a record to the decision log's
writer, an answer to its DecideStream's writer): asyncio.Queue's interface where those
use it (put_nowait, get, get_nowait, empty, qsize) without its bounds, task accounting
and getters' queue (callgrind: ~5.9k instructions a put and take against ~0.9k for the
deque alone). One consumer only: a second waiting get() is refused. No IO here.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """Unbounded; items come out in the order they went in."""

    __slots__ = ("_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """loop: the loop its consumer runs on, when known (else looked up at each wait:
        on Python 3.11 asyncio.get_running_loop() makes a getpid system call)."""
        self._items: collections.deque[T] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._loop = loop

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> T:
        """The next item, waiting for one."""
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("Inbox has one consumer: a get() is already waiting")
            loop = self._loop if self._loop is not None else asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        return self._items.popleft()

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)
