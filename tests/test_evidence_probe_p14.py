"""Evidence probe 14 (helper auditsec7): a crashed proxy's spool is delivered, sealed.

A proxy that crashed left its spool (batches and closes the PDP could not take then); the
process that restarted adopted it, but not the sessions' keys, which lived in the dead
process's memory only: every delivery was refused (PERMISSION_DENIED) and dropped, so the
evidence of what ran while the PDP was away was lost for good. Spooling the key would let
the spool's reader speak for the session (decide, record anything, close it). Each entry is
now spooled with a seal (an HMAC of the very request it becomes, under a key made from the
session's key, which the PDP keeps wrapped under its record key): the adopting process
delivers it under its seal, and the PDP takes exactly that request and nothing else, the
record saying it came from the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace

import grpc
import psycopg
import pytest
from pdp_harness import (
    SESSION_KEYS,
    decide_sql,
    free_port,
    hand_over_keys,
    open_session,
    pdp_raw,
    pdp_stub,
    proxy_metadata,
    running_pdp,
    token,
)
from pg_harness import scratch_database
from test_evidence_probe_p1 import _verified
from test_pdp_probe_p7 import _written

from pdp.domain.recordings import EVENTS_KIND
from pdp.domain.sessions import FROM_SPOOL
from portcullis.config import load_config, parse_config
from portcullis.v1 import pdp_pb2
from portcullis.verdict import Verdict, VerdictKind
from proxies.postgres.proxy import PostgresProxy
from proxies.runtime.pdp_client import PDPClient, Ruling
from proxies.runtime.recorder import SessionRecorder
from proxies.runtime.session import ProxyRuntime, ProxySession
from proxies.runtime.spool import SEALED, STORED, Entry, Spool, seal, spool_key


async def _spooled_by_a_dead_proxy(tmp_path, app, stub, config):
    """A session whose proxy spooled two batches and its close while the PDP was away,
    then died (its keys with it): the session's id and its decision."""
    opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
    sid = opened.session_id
    decided = await decide_sql(stub, sid, "SELECT id FROM orders WHERE id = 1")
    ruling = Ruling(Verdict(VerdictKind.ALLOW), decision_id=decided.decision_id)
    away = hand_over_keys(PDPClient(f"127.0.0.1:{free_port()}", timeout=0.5))
    await away.start()
    spool = Spool(tmp_path / "spool", "orders-db")
    spool.open()
    try:
        recorder = SessionRecorder(away, sid, spool=spool)
        recorder.command("SELECT id FROM orders WHERE id = 1", ruling, rows=1)
        assert await recorder.flush()  # unreachable: spooled as number 1
        recorder.command("SELECT id FROM orders WHERE id = 2", ruling, rows=2)
        assert await recorder.flush()  # queued behind it: number 2
        proxy_session = SimpleNamespace(
            grant=SimpleNamespace(session_id=sid),
            runtime=SimpleNamespace(spool=spool, pdp=away),
            _close_room=0,
        )
        summary = {"commands": 2, "batches": 2}
        await ProxySession._close_at_pdp(proxy_session, "client_disconnect", False, summary, [])
        assert [e.seq for e in spool.entries] == [1, 2, 0]
        assert all(e.seal for e in spool.entries)
    finally:
        await away.close()
        spool.close()  # (the process dies: its spool stays, its keys are gone)
    SESSION_KEYS.pop(sid, None)
    return sid, decided


@contextlib.asynccontextmanager
async def _adopted(tmp_path, app) -> AsyncIterator[tuple[Spool, Callable[[Entry], Awaitable[str]]]]:
    """The dead proxy's restarted process: its spool adopted, and how it delivers one entry
    (as the runtime does: ProxyRuntime._deliver, over a client holding none of its keys)."""
    restarted = PDPClient(app.address, metadata=proxy_metadata(app.address))
    await restarted.start()
    adopted = Spool(tmp_path / "spool", "orders-db")
    adopted.open()
    runtime = SimpleNamespace(pdp=restarted)

    async def deliver(entry: Entry) -> str:
        return await ProxyRuntime._deliver(runtime, entry)  # type: ignore[arg-type]

    try:
        yield adopted, deliver
    finally:
        adopted.close()
        await restarted.close()


async def test_a_crashed_proxys_spool_is_delivered_by_its_restarted_process(tmp_path):
    """The restarted process (no key of the dead one's sessions) adopts the spool and
    delivers each entry as the runtime does: stored, the batches once each however often
    sent, the session closed by its proxy, each record saying it came from the spool, and
    `audit verify` (online and of an exported bundle) passes with no batch missing."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, _ = await _spooled_by_a_dead_proxy(tmp_path, app, stub, config)
        async with _adopted(tmp_path, app) as (adopted, deliver):
            assert [e.seq for e in adopted.entries] == [1, 2, 0]
            batches = [e for e in adopted.entries if e.close is None]
            for entry in batches:  # delivered, then again (a retry): stored once
                assert await deliver(entry) == STORED
                assert await deliver(entry) == STORED
            assert await deliver(adopted.entries[-1]) == STORED
        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert [r.body.get("batch_seq") for r in records] == [1, 2]
        assert all(r.body.get(FROM_SPOOL) is True for r in records)
        closed = await app.store.query(kind="session.close", session_id=sid)
        assert len(closed) == 1 and closed[0].body["closed_by"] == "proxy"
        assert closed[0].body[FROM_SPOOL] is True
        assert closed[0].body["reason"] == "client_disconnect"
        refused = await app.store.query(kind="proxy.refused")
        assert not [r for r in refused if r.body.get("session_id") == sid], refused
    online, offline = await _verified(config_path, tmp_path / "bundle.tar.gz")
    assert "FAIL" not in online and "FAIL" not in offline, online + offline


def _sealed(request, sid: str, key: str, rpc: str = "RecordEvents"):
    request.session_key = SEALED + seal(spool_key(sid, key), rpc, request)
    return request


def _events(decision_id: str, sql: str) -> str:
    return json.dumps(
        [{"time": time.time(), "direction": "client", "type": "command", "command": sql,
          "decision_id": decision_id, "verdict": "allow", "cached": False,
          "details": {"tag": "SELECT 1", "rows": 1, "protocol": "simple"}}]
    )  # fmt: skip


async def test_a_seal_speaks_for_exactly_what_was_spooled(tmp_path):
    """Attack (the spool's reader, with a stolen proxy credential): take a sealed entry
    and send other events under its seal, another number, another session's id, an
    unnumbered batch, a close with another reason or summary, or the seal as a Decide's
    or a Withdraw's key. Each is refused (PERMISSION_DENIED, recorded); what was sealed
    is taken as it is. And a sealed delivery is no word from a live proxy."""
    config = load_config(_written(tmp_path))
    async with (
        running_pdp(config) as app,
        pdp_stub(app.address) as stub,
        pdp_stub(app.address, keys=False) as thief,
    ):
        opened = await open_session(stub, token(config, groups=("dba",)))
        other = await open_session(stub, token(config, groups=("dba",)))
        sid, key = opened.session_id, SESSION_KEYS[opened.session_id]
        decided = await decide_sql(stub, sid, "SELECT id FROM orders WHERE id = 1")
        events = _events(decided.decision_id, "SELECT id FROM orders WHERE id = 1")
        genuine = pdp_pb2.RecordEventsRequest(session_id=sid, events_json=events, batch_seq=1)
        _sealed(genuine, sid, key)
        forged = []
        changed = pdp_pb2.RecordEventsRequest()
        changed.CopyFrom(genuine)
        changed.events_json = _events(decided.decision_id, "SELECT * FROM customers")
        forged.append(changed)
        renumbered = pdp_pb2.RecordEventsRequest()
        renumbered.CopyFrom(genuine)
        renumbered.batch_seq = 2
        forged.append(renumbered)
        moved = pdp_pb2.RecordEventsRequest()
        moved.CopyFrom(genuine)
        moved.session_id = other.session_id
        forged.append(moved)
        unnumbered = _sealed(
            pdp_pb2.RecordEventsRequest(session_id=sid, events_json=events), sid, key
        )
        forged.append(unnumbered)
        upper = pdp_pb2.RecordEventsRequest()
        upper.CopyFrom(genuine)
        upper.session_key = upper.session_key.upper().replace("SPOOLED:", SEALED)
        forged.append(upper)
        for request in forged:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await thief.RecordEvents(request)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, request
            batched = await thief.RecordBatches(pdp_pb2.RecordBatchesRequest(batches=[request]))
            assert batched.results[0].error, request
        # the seal is no key for anything but the request it seals
        decide = pdp_pb2.DecideRequest(
            session_id=sid,
            command=pdp_pb2.Command(kind="postgres.query", raw="SELECT 1"),
            session_key=genuine.session_key,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await thief.Decide(decide)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        close = pdp_pb2.CloseSessionRequest(session_id=sid, reason="client_disconnect")
        _sealed(close, sid, key, "CloseSession")
        as_events = pdp_pb2.CloseSessionRequest()
        as_events.CopyFrom(close)
        as_events.session_key = SEALED + seal(spool_key(sid, key), "RecordEvents", close)
        reworded = pdp_pb2.CloseSessionRequest()
        reworded.CopyFrom(close)
        reworded.reason = "proxy_shutdown"
        summarised = pdp_pb2.CloseSessionRequest()
        summarised.CopyFrom(close)
        summarised.summary.update({"batches": 0})
        for request in (as_events, reworded, summarised):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await thief.CloseSession(request)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, request
        session = app.service.sessions._open[sid]
        session.last_seen = heard_before = time.monotonic() - 100
        # what was sealed, as it was: taken
        answered = await thief.RecordEvents(genuine)
        assert answered.recorded == 1 and not answered.replayed
        assert session.last_seen == heard_before  # (no word from a live proxy)
        await thief.CloseSession(close)
        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert [r.body["events_json"] for r in records] == [events]
        refused = await app.store.query(kind="proxy.refused")
        assert len([r for r in refused if r.body.get("session_id") == sid]) >= 8, refused


async def test_the_session_record_does_not_give_the_sealing_key(tmp_path):
    """Attack (read access to the evidence store): the session.open record keeps what the
    PDP checks seals with, wrapped under its record key; a seal made with what the record
    holds is refused, as is a seal for a session opened with a key this PDP never kept."""
    config = load_config(_written(tmp_path))
    async with (
        running_pdp(config) as app,
        pdp_stub(app.address) as stub,
        pdp_stub(app.address, keys=False) as thief,
    ):
        opened = await open_session(stub, token(config, groups=("dba",)))
        sid = opened.session_id
        record = (await app.store.query(kind="session.open", session_id=sid))[-1]
        wrapped = bytes.fromhex(record.body["session"]["spool_wrap"])
        assert wrapped != spool_key(sid, SESSION_KEYS[sid])
        decided = await decide_sql(stub, sid, "SELECT id FROM orders WHERE id = 1")
        request = pdp_pb2.RecordEventsRequest(
            session_id=sid,
            events_json=_events(decided.decision_id, "SELECT id FROM orders WHERE id = 1"),
            batch_seq=1,
        )
        request.session_key = SEALED + seal(wrapped, "RecordEvents", request)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await thief.RecordEvents(request)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # a session opened with a key that reads as a seal is refused at its open
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await thief.OpenSession(
                pdp_pb2.OpenSessionRequest(
                    token=token(config),
                    connection=pdp_pb2.Connection(name="orders-db", type="postgres"),
                    session_key=SEALED + "0" * 64,
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert Entry.parse(Entry(sid, events="[]", seq=1, seal="ab").line()).seal == "ab"


async def test_a_spool_delivered_after_the_reaper_ended_the_session(tmp_path):
    """The proxy stays down past the session timeout: the reaper ends the session
    (proxy_lost). Its spooled batches are still taken from the restarted process (a reaped
    session takes its proxy's last events), its spooled close is not (the reaper's stands),
    and `audit verify` says the batches after the close came from the dead process's spool."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, _ = await _spooled_by_a_dead_proxy(tmp_path, app, stub, config)
        session = app.service.sessions._open[sid]
        await app.reaper.reap(session, "proxy_lost")
        async with _adopted(tmp_path, app) as (adopted, deliver):
            outcomes = [await deliver(e) for e in adopted.entries]
        assert outcomes == [STORED, STORED, "refused"]
        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert [r.body.get(FROM_SPOOL) for r in records] == [True, True]
        closed = await app.store.query(kind="session.close", session_id=sid)
        assert [c.body["reason"] for c in closed] == ["proxy_lost"]
    online, _ = await _verified(config_path, tmp_path / "bundle.tar.gz")
    assert "2 batches arrived after the close from the spool of a proxy process" in online, online


async def test_a_real_proxy_restarted_delivers_what_it_spooled_while_the_pdp_was_down(tmp_path):
    """End to end: a Postgres proxy's client runs a statement, the PDP goes away, the
    client runs another (recorded) and leaves (its close spooled),
    and the proxy's process is gone with its keys (a new proxy object in its place, the
    spool on disk). The PDP comes back: the new proxy adopts the spool and its delivery
    is taken, the session closed by its proxy, nothing refused."""
    with scratch_database() as (name, role, password):
        raw = pdp_raw(tmp_path)
        raw["connections"][0].update(
            listen=f"127.0.0.1:{free_port()}",
            database=name,
            credentials={"provider": "static", "username": role, "password": password},
            spool_dir=str(tmp_path / "spool"),
        )
        config = parse_config(raw, base_dir=tmp_path)
        async with running_pdp(config) as app:
            proxy = PostgresProxy(config.connections[0], config, app.address)
            await proxy.start()
            dsn = (
                f"postgresql://agent:{token(config)}@127.0.0.1:{proxy.port}/{name}?sslmode=disable"
            )
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            assert await (await conn.execute("select 1")).fetchone() == (1,)
            (opened,) = await app.store.query(kind="session.open")
            sid = opened.session_id
        # the PDP is gone: the next statement is denied (or answered from the proxy's
        # cache, until it hears the PDP is gone), and recorded into the spool either way
        with contextlib.suppress(psycopg.Error):
            await conn.execute("select 2")
        await conn.close()
        spool = proxy.runtime.spool
        assert spool is not None
        async with asyncio.timeout(60):  # (a bound on a hang, not on how long it takes)
            while not any(e.close is not None for e in spool.entries):
                await asyncio.sleep(0.05)  # (the session's close, spooled behind its events)
        assert all(e.seal for e in spool.entries)
        await proxy.stop()  # (the process goes: nothing delivered, its keys with it)
        async with running_pdp(config) as app:
            again = PostgresProxy(config.connections[0], config, app.address)
            await again.start()
            try:
                adopted = again.runtime.spool
                assert adopted is not None and adopted.entries
                async with asyncio.timeout(60):
                    while adopted.entries:
                        await asyncio.sleep(0.05)
                assert adopted.refused == 0 and adopted.delivered >= 2
            finally:
                await again.stop()
            events = await app.store.query(kind=EVENTS_KIND, session_id=sid)
            spooled = [r for r in events if r.body.get(FROM_SPOOL) is True]
            assert spooled and "select 2" in spooled[-1].body["events_json"]
            (closed,) = await app.store.query(kind="session.close", session_id=sid)
            assert closed.body["closed_by"] == "proxy" and closed.body[FROM_SPOOL] is True
