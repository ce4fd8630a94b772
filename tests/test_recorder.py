"""The proxy-side recorder's delivery: one batch per flush, nothing lost, failures halt.

These run the recorder against a stand-in for the PDP client's `record` call only, to
pin the batching rule (a busy session used to degenerate into a stream of tiny
RecordEvents calls, each a write to the audit store); delivery to a real PDP is
covered by the proxy and evidence tests.
"""

from __future__ import annotations

import asyncio

from pdp.verdict import Verdict, VerdictKind
from proxies.runtime.pdp_client import Ruling
from proxies.runtime.recorder import MAX_BATCH, SessionRecorder


class SlowPDP:
    """Takes a while per RecordEvents, like a PDP under load; remembers every batch."""

    def __init__(self, delay: float = 0.01, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.batches: list[list[str]] = []

    async def record(self, session_id: str, events: list) -> bool:
        await asyncio.sleep(self.delay)
        if self.fail:
            return False
        self.batches.append([e.command for e in events])
        return True


ALLOWED = Ruling(Verdict(VerdictKind.ALLOW), decision_id="d-1")


async def test_a_flush_sends_what_was_pending_even_while_events_keep_arriving():
    pdp = SlowPDP(delay=0.01)
    recorder = SessionRecorder(pdp, "s-1")  # type: ignore[arg-type]
    for i in range(10):
        recorder.command(f"select {i}", ALLOWED)

    async def busy_client() -> None:
        for i in range(10, 60):
            recorder.command(f"select {i}", ALLOWED)
            await asyncio.sleep(0.001)

    client = asyncio.create_task(busy_client())
    assert await recorder.flush()
    assert len(pdp.batches) == 1 and pdp.batches[0] == [f"select {i}" for i in range(10)]
    await client
    assert await recorder.flush()
    assert len(pdp.batches) == 2
    sent = [command for batch in pdp.batches for command in batch]
    assert sent == [f"select {i}" for i in range(60)]  # all of them, once, in order


async def test_a_large_backlog_goes_in_batches_of_at_most_max_batch():
    pdp = SlowPDP(delay=0)
    recorder = SessionRecorder(pdp, "s-1")  # type: ignore[arg-type]
    for i in range(MAX_BATCH * 2 + 7):
        recorder.command(f"select {i}", ALLOWED)
    assert await recorder.flush()
    assert [len(b) for b in pdp.batches] == [MAX_BATCH, MAX_BATCH, 7]


async def test_a_failed_delivery_keeps_the_events_and_marks_the_recording_unavailable():
    pdp = SlowPDP(delay=0, fail=True)
    recorder = SessionRecorder(pdp, "s-1")  # type: ignore[arg-type]
    recorder.command("select 1", ALLOWED)
    assert not await recorder.flush()
    assert recorder.unavailable
    pdp.fail = False
    assert await recorder.flush()
    assert not recorder.unavailable
    assert pdp.batches == [["select 1"]]
