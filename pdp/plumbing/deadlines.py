"""A deadline on one future: `answered_by(future, when)`.

Owns the cheapest way the PDP's busiest waits (an evaluation's answer, a decision
record's commit, each once per evaluated decision) are bounded: one timer on the loop
that, at the deadline, gives the future a TimeoutError, instead of asyncio.timeout's
context manager (an object, the current task looked up, a reschedule, a cancellation and
its uncancel). The future is then done, so whoever would answer it later (a worker's
reply, the decision log's writer) sees that and passes over it, as it passes over one
its caller cancelled. No IO here.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

T = TypeVar("T")


async def answered_by(future: asyncio.Future[T], when: float) -> T:
    """`await future`, raising TimeoutError once the loop's time reaches `when` (the
    future itself then holds that TimeoutError). Cancelling the caller cancels the
    future, as awaiting it directly does."""
    timer = future.get_loop().call_at(when, _expire, future)
    try:
        return await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
