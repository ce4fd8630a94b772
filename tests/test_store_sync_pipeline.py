"""The SQLite decision log's syncs under way together: the next batch commits while the
last one's fdatasync runs, and answers still leave only once durable, in commit order.

The kernel's syncs (pdp.store.disksync) are replaced by futures the test completes, so
which batch is durable when is the test's choice; everything else is the real store on a
real file.
"""

from __future__ import annotations

import asyncio
import errno

import pytest

from pdp.store import LATE_COMMIT_KIND, StoreUnavailable, open_store
from portcullis.config import StoreSettings


class HeldSyncs:
    """A stand-in for AioSync: each fdatasync a future the test completes."""

    def __init__(self) -> None:
        self.started: list[asyncio.Future[None]] = []
        self.asked = asyncio.Event()
        self.passing = False  # each sync from now on done at once

    def fdatasync(self, fd: int) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        if self.passing:
            future.set_result(None)
        self.started.append(future)
        self.asked.set()
        return future

    def close(self) -> None:
        for future in self.started:
            if not future.done():
                future.set_exception(OSError(errno.ECANCELED, "closed"))

    async def until(self, n: int) -> None:
        """Wait until n syncs were asked for."""
        async with asyncio.timeout(5):
            while len(self.started) < n:
                self.asked.clear()
                await self.asked.wait()


async def _store(tmp_path):
    store = open_store(StoreSettings(type="sqlite", path=str(tmp_path / "audit.db")))
    await store.start()
    if store._disk is None:
        await store.close()
        pytest.skip("no native AIO here: the writer thread syncs, one batch at a time")
    store._disk.close()
    store._disk = syncs = HeldSyncs()
    return store, syncs


async def test_a_batch_commits_while_the_last_ones_sync(tmp_path):
    """Before: the writer waited for batch 1's sync before committing batch 2, so a
    decision arriving during a sync waited for two. Now batch 2 commits and starts its
    own sync at once; it is answered only when its sync and batch 1's are done."""
    store, syncs = await _store(tmp_path)
    try:
        first = asyncio.ensure_future(store.append("decision", {"n": 1}))
        await syncs.until(1)
        second = asyncio.ensure_future(store.append("decision", {"n": 2}))
        await syncs.until(2)  # the second batch's sync, with the first's still under way
        syncs.started[1].set_result(None)
        await asyncio.sleep(0.05)
        assert not first.done() and not second.done()  # the first is not durable yet
        syncs.started[0].set_result(None)
        assert [(await first).seq, (await second).seq] == [1, 2]
    finally:
        await store.close()


async def test_a_failed_sync_fails_the_batches_after_it(tmp_path):
    """A sync that fails may have lost its frames, so a later batch's WAL frames cannot be
    shown durable either, though its own sync succeeded: both callers are told their
    records are not written (a decision: deny), and the store refuses until restarted."""
    store, syncs = await _store(tmp_path)
    try:
        first = asyncio.ensure_future(store.append("decision", {"n": 1}))
        await syncs.until(1)
        second = asyncio.ensure_future(store.append("decision", {"n": 2}))
        await syncs.until(2)
        syncs.started[1].set_result(None)
        syncs.started[0].set_exception(OSError(errno.EIO, "Input/output error"))
        with pytest.raises(StoreUnavailable, match="Input/output error"):
            await first
        with pytest.raises(StoreUnavailable, match="earlier batch"):
            await second
        with pytest.raises(StoreUnavailable, match="restart the PDP"):
            await store.append("decision", {"n": 3})
    finally:
        await store.close()


async def test_a_batch_after_one_that_overran_is_named_if_durable(tmp_path):
    """A sync that overruns the batch's deadline fails its callers (deny), and the batch
    after it too; the later batch, durable, is named by a late-commit record, and so is
    the first once its sync lands."""
    store, syncs = await _store(tmp_path)
    store.timeout = 0.3
    try:
        first = asyncio.ensure_future(store.append("decision", {"n": 1}))
        await syncs.until(1)
        second = asyncio.ensure_future(store.append("decision", {"n": 2}))
        await syncs.until(2)
        syncs.started[1].set_result(None)
        with pytest.raises(StoreUnavailable, match="timed out"):
            await first
        with pytest.raises(StoreUnavailable, match="earlier batch"):
            await second
        syncs.passing = True  # the late-commit records' own syncs
        syncs.started[0].set_result(None)  # the first lands late
        async with asyncio.timeout(5):
            while len(late := await store.query(kind=LATE_COMMIT_KIND)) < 2:
                await asyncio.sleep(0.02)
        named = sorted(i for r in late for i in r.body["ids"])
        records = {r.body["n"]: r.id for r in await store.query(kind="decision")}
        assert named == sorted([records[1], records[2]])
    finally:
        await store.close()
