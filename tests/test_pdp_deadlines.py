"""pdp.plumbing.deadlines.answered_by: the deadline on an evaluation's answer and on a
decision record's commit. Past it the caller gets TimeoutError and the future is done
(so a late answer is passed over); an answer in time is returned and its timer gone; a
cancelled caller cancels the future."""

from __future__ import annotations

import asyncio

import pytest

from pdp.plumbing.deadlines import answered_by


async def test_an_answer_in_time_is_returned_and_its_timer_is_gone():
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    loop.call_soon(future.set_result, "allow")
    assert await answered_by(future, loop.time() + 5) == "allow"
    await asyncio.sleep(0)
    # a cancelled timer left on uvloop or asyncio's heap would still be counted here
    scheduled = getattr(loop, "_scheduled", [])
    assert not [h for h in scheduled if not h.cancelled()]


async def test_past_the_deadline_the_caller_gets_timeout_and_the_future_is_done():
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    with pytest.raises(TimeoutError):
        await answered_by(future, loop.time() + 0.01)
    assert future.done()
    assert isinstance(future.exception(), TimeoutError)  # a late answer is passed over


async def test_a_deadline_already_passed_still_times_out():
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    with pytest.raises(TimeoutError):
        await answered_by(future, loop.time() - 1)


async def test_cancelling_the_caller_cancels_the_future():
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    waiting = asyncio.ensure_future(answered_by(future, loop.time() + 5))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert future.cancelled()


async def test_an_error_answered_is_raised_as_it_is():
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    future.set_exception(ConnectionResetError("worker gone"))
    with pytest.raises(ConnectionResetError):
        await answered_by(future, loop.time() + 5)
