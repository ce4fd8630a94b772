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

from pdp.evidence.checkpoints import CHECKPOINT_KIND, CheckpointWriter, verify_store
from pdp.evidence.signing import Signer
from pdp.store import open_store
from portcullis.config import StoreSettings


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


async def test_events_and_close_of_a_session_that_ends_while_the_pdp_is_down_reach_it_after(
    tmp_path: Path,
):
    """A real PDP stops mid-session; the proxy's recorder spools the session's events and
    its close (fsynced, on disk); the PDP starts again on the same store and address, and
    the spool delivers them in order: the replay has every statement, the close is there."""
    from pdp_harness import (
        free_port,
        hand_over_keys,
        open_session,
        pdp_config,
        pdp_stub,
        proxy_metadata,
        running_pdp,
        token,
    )

    from pdp.domain.recordings import session_events
    from portcullis.verdict import Verdict, VerdictKind
    from proxies.runtime.pdp_client import PDPClient, Ruling
    from proxies.runtime.recorder import RecordingTick, SessionRecorder
    from proxies.runtime.spool import Entry, Spool

    config = pdp_config(tmp_path, listen=f"127.0.0.1:{free_port()}")
    allowed = Ruling(Verdict(VerdictKind.ALLOW), decision_id="d-1")
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid = (await open_session(stub, token(config))).session_id
        address = app.address
        metadata = proxy_metadata(address)
    client = hand_over_keys(PDPClient(address, timeout=0.5, metadata=metadata))
    await client.start()
    spool = Spool(tmp_path / "spool", "orders-db", max_bytes=1 << 20)
    spool.open()
    tick = RecordingTick(client)
    recorder = SessionRecorder(client, sid, tick=tick, spool=spool)
    tick.join(recorder)
    try:
        for n in range(5):
            recorder.command(f"INSERT INTO t VALUES ({n})", allowed)
        await tick.flush()  # the PDP is down: into the spool, and the session goes on
        assert not recorder.unavailable and spool.holds(sid)
        recorder.command("INSERT INTO t VALUES (5)", allowed)
        await tick.flush()  # queued behind, in order
        await spool.add([Entry(sid, close={"reason": "client_disconnect", "abnormal": False})])
        on_disk = (spool.path.read_text()).splitlines()
        assert len(on_disk) == 3
        async with running_pdp(config) as app:
            client.metadata = proxy_metadata(app.address)

            async def deliver(entry: Entry) -> str:
                if entry.close is not None:
                    return await client.close_session(sid, entry.close["reason"])
                from portcullis.v1 import pdp_pb2

                request = pdp_pb2.RecordEventsRequest(session_id=sid, events_json=entry.events)
                return await client.deliver(sid, request)

            for _ in range(40):
                if await spool.deliver_some(deliver):
                    break
                await asyncio.sleep(0.25)
            assert not spool.entries and spool.path.stat().st_size == 0
            store = app.decider.store
            commands = [e["command"] for e in await session_events(store, sid)]
            assert commands == [f"INSERT INTO t VALUES ({n})" for n in range(6)]
            closes = await store.query(kind="session.close", session_id=sid)
            assert [c.body["reason"] for c in closes] == ["client_disconnect"]
    finally:
        await tick.close()
        spool.close()
        await client.close()


async def test_an_oversized_statement_leaves_a_decision_and_its_neighbours_in_the_replay(
    tmp_path: Path,
):
    """A 1.5 MB statement between two small ones: the PDP records a deny decision for it
    (its start, its size, its SHA-256), and the recording batch carrying all three is
    stored — the big one cut and marked, the others whole."""
    import hashlib
    import json

    from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token

    from pdp.domain.recordings import session_events
    from portcullis.v1 import pdp_pb2

    config = pdp_config(tmp_path)
    big = "SELECT '" + "x" * (1536 * 1024) + "'"
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid = (await open_session(stub, token(config))).session_id
        answer = await stub.Decide(
            pdp_pb2.DecideRequest(
                session_id=sid, command=pdp_pb2.Command(kind="postgres.query", raw=big)
            )
        )
        assert answer.decision.verdict == pdp_pb2.DENY
        record = await app.decider.store.get(answer.decision.decision_id)
        assert record is not None and record.body["verdict"] == "deny"
        assert record.body["raw_bytes"] == len(big)
        assert record.body["raw_sha256"] == hashlib.sha256(big.encode()).hexdigest()
        assert big.startswith(record.body["raw"]) and len(record.body["raw"]) < 10_000
        events = [
            {"time": 1.0, "direction": "client", "type": "command", "command": "SELECT 1"},
            {"time": 2.0, "direction": "client", "type": "command", "command": big},
            {"time": 3.0, "direction": "client", "type": "command", "command": "SELECT 2"},
        ]
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=sid, events_json=json.dumps(events))
        )
        replay = await session_events(app.decider.store, sid)
        assert [e["command"][:8] for e in replay] == ["SELECT 1", "SELECT '", "SELECT 2"]
        assert replay[1]["details"]["command_truncated"] is True
        assert replay[1]["details"]["command_bytes"] == len(big)
