"""Evidence that survives faults: what `audit verify` says about a live, growing store.

Real stores (SQLite file, a real PostgreSQL database), a real signer: checkpoints land
while verify reads, and verify must never report tampering that is not there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.config import StoreSettings
from pdp.evidence.checkpoints import CHECKPOINT_KIND, CheckpointWriter, verify_store
from pdp.evidence.signing import Signer
from pdp.store import open_store


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(request, tmp_path: Path) -> StoreSettings:
    if request.param == "sqlite":
        return StoreSettings(type="sqlite", path=tmp_path / "audit.db")
    return StoreSettings(type="postgres", dsn=request.getfixturevalue("pg_database"))


class LandsDuringVerify:
    """The real store; right after verify has listed the checkpoints, more records and a
    new checkpoint land (what a running PDP does every interval)."""

    def __init__(self, store: Any, writer: CheckpointWriter) -> None:
        self._store, self._writer = store, writer
        self.landed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def query(self, *args: Any, **kwargs: Any) -> Any:
        found = await self._store.query(*args, **kwargs)
        if kwargs.get("kind") == CHECKPOINT_KIND and not self.landed:
            for n in range(3):
                await self._store.append("decision", {"n": n, "late": True})
            assert await self._writer.checkpoint() is not None
            self.landed += 1
        return found


async def test_checkpoint_landing_during_verify_is_not_tampering(store_settings):
    key = Ed25519PrivateKey.generate()
    store = open_store(store_settings, timeout=10.0)
    await store.start()
    try:
        writer = CheckpointWriter(store, Signer(key))
        for n in range(50):
            await store.append("decision", {"n": n})
            if n % 10 == 9:
                await writer.checkpoint()
        racing = LandsDuringVerify(store, writer)
        report = await verify_store(racing, key.public_key())  # type: ignore[arg-type]
        assert racing.landed == 1
        assert report.ok, [p.describe() for p in report.problems]
        # and once it has landed, a fresh verify covers it too
        again = await verify_store(store, key.public_key())
        assert again.ok and again.checkpoints == report.checkpoints + 1
    finally:
        await store.close()


async def test_verify_under_a_steady_stream_of_checkpoints(store_settings):
    """A writer appending and checkpointing as fast as it can while verify runs, again
    and again: every run passes."""
    key = Ed25519PrivateKey.generate()
    store = open_store(store_settings, timeout=10.0)
    await store.start()
    stop = asyncio.Event()

    async def write() -> None:
        writer = CheckpointWriter(store, Signer(key))
        n = 0
        while not stop.is_set():
            await store.append("decision", {"n": n})
            n += 1
            if n % 3 == 0:
                await writer.checkpoint()
            await asyncio.sleep(0)

    try:
        for n in range(200):
            await store.append("decision", {"n": n})
        task = asyncio.create_task(write())
        try:
            for _ in range(15):
                report = await verify_store(store, key.public_key())
                assert report.ok, [p.describe() for p in report.problems]
        finally:
            stop.set()
            await task
    finally:
        await store.close()
