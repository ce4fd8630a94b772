"""pdp.plumbing.inbox.Inbox, the hand-over of every decision's record to the log's writer
and of every answer to its stream's writer: items in order, a waiting get() woken by the
next put, a cancelled get() leaving nothing behind, one consumer only."""

from __future__ import annotations

import asyncio

import pytest

from pdp.plumbing.inbox import Inbox


async def test_items_come_out_in_order_and_a_waiting_get_is_woken():
    inbox: Inbox[int] = Inbox()
    for n in range(3):
        inbox.put_nowait(n)
    assert inbox.qsize() == 3 and not inbox.empty()
    assert [await inbox.get(), inbox.get_nowait(), await inbox.get()] == [0, 1, 2]
    assert inbox.empty()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait(7)
    assert await waiting == 7


async def test_taking_from_an_empty_inbox_without_waiting_raises_queue_empty():
    with pytest.raises(asyncio.QueueEmpty):
        Inbox().get_nowait()


async def test_a_cancelled_get_leaves_the_inbox_as_it_was():
    inbox: Inbox[str] = Inbox()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    inbox.put_nowait("kept")  # not handed to the get that was cancelled
    assert await inbox.get() == "kept"


async def test_a_second_consumer_is_refused():
    inbox: Inbox[int] = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await inbox.get()
    inbox.put_nowait(1)
    assert await first == 1
