"""Sessions left open when the PDP stopped (issue 22 §5): a real PDP on a real store opens a
session and stops without closing it; the next PDP on the same store closes it as
`proxy_lost` unless the proxy that opened it speaks for it again (Decide, RecordEvents,
heartbeat, CloseSession)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import grpc
import pytest
import yaml
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token
from test_sessions_cli import portcullis, write_config

from pdp.app import PDPApp
from pdp.store import AuditRecord, StoreUnavailable
from portcullis.config import Config, load_config
from portcullis.v1 import pdp_pb2

TIMEOUT = 1  # pdp.session_timeout_seconds of the restarted PDP


def short_timeout_config(tmp: Path) -> tuple[Path, Config]:
    """portcullis.yaml (SQLite store in tmp) whose PDP reaps after TIMEOUT seconds."""
    path = write_config(tmp)
    raw = yaml.safe_load(path.read_text())
    raw["pdp"]["session_timeout_seconds"] = TIMEOUT
    path.write_text(yaml.safe_dump(raw))
    return path, load_config(path)


async def left_open(config: Config, count: int = 1) -> list[str]:
    """Sessions opened (and used) through a PDP that then stops without closing them."""
    ids = []
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        for _ in range(count):
            opened = await open_session(stub, token(config))
            assert opened.decision.verdict == pdp_pb2.ALLOW
            decision = await decide_sql(stub, opened.session_id, "SELECT 1")
            assert decision.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK)
            ids.append(str(opened.session_id))
    return ids


async def closes_of(app: PDPApp, session_id: str) -> list[AuditRecord]:
    return await app.store.query(kind="session.close", session_id=session_id)


async def wait_for_close(app: PDPApp, session_id: str, within: float) -> list[AuditRecord]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        closes = await closes_of(app, session_id)
        if closes:
            return closes
        await asyncio.sleep(0.1)
    return []


async def test_session_left_open_is_reaped_as_proxy_lost_after_restart(tmp_path):
    path, config = short_timeout_config(tmp_path)
    (session_id,) = await left_open(config)

    async with running_pdp(config) as app:
        started = time.monotonic()
        closes = await wait_for_close(app, session_id, within=TIMEOUT + 5)
        assert len(closes) == 1, "the session left open was never closed"
        assert time.monotonic() - started >= TIMEOUT * 0.9  # not before its proxy had its time
        close = closes[0]
        assert close.body["reason"] == "proxy_lost"
        assert close.body["abnormal"] is True
        assert close.subject == "alice@example.com"
        assert close.body["connection"] == "orders-db"
        await asyncio.sleep(TIMEOUT + 0.5)  # reaped once, not again every round
        assert len(await closes_of(app, session_id)) == 1
        # the proxy's last events after the reap are still taken (as for any proxy lost)
        async with pdp_stub(app.address) as stub:
            late = await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(
                    session_id=session_id,
                    events=[pdp_pb2.SessionEvent(time=time.time(), type="command", command="x")],
                )
            )
            assert late.recorded == 1
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await decide_sql(stub, session_id, "SELECT 2")
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # a third start finds nothing left open: no second close
    async with running_pdp(config) as app:
        await asyncio.sleep(TIMEOUT + 1)
        assert len(await closes_of(app, session_id)) == 1

    listed = portcullis(path, "sessions", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (summary,) = [s for s in json.loads(listed.stdout) if s["session_id"] == session_id]
    assert summary["status"] == "ended abnormally"
    assert summary["close_reason"] == "proxy_lost"
    assert summary["ended_at"] is not None


async def test_session_its_proxy_keeps_using_after_restart_is_not_reaped(tmp_path):
    _, config = short_timeout_config(tmp_path)
    # used: its proxy decides; idle: its proxy only heartbeats; silent: its proxy is gone
    used, idle, silent = await left_open(config, 3)

    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        until = time.monotonic() + TIMEOUT * 3
        while time.monotonic() < until:
            decision = await decide_sql(stub, used, "SELECT 1")
            assert decision.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK)
            beat = await stub.RecordEvents(pdp_pb2.RecordEventsRequest(session_id=idle))
            assert beat.recorded == 0
            await asyncio.sleep(TIMEOUT / 4)
        assert await closes_of(app, used) == []
        assert await closes_of(app, idle) == []
        (reaped,) = await closes_of(app, silent)
        assert reaped.body["reason"] == "proxy_lost"

        # the proxy ends them itself: its close, with its reason, and nothing more
        for session_id in (used, idle):
            await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=session_id))
            (close,) = await closes_of(app, session_id)
            assert close.body["reason"] == "closed"
            assert close.body["abnormal"] is False
        await asyncio.sleep(TIMEOUT + 0.5)
        for session_id in (used, idle):
            assert len(await closes_of(app, session_id)) == 1


async def test_another_proxy_cannot_take_over_a_session_left_open(tmp_path):
    """Restarted, the PDP still binds the session to the proxy that opened it."""
    _, config = short_timeout_config(tmp_path)
    (session_id,) = await left_open(config)

    async with running_pdp(config) as app:
        stranger = app.issue_proxy_credential("other-proxy", ["*"])
        async with pdp_stub(app.address, credential=stranger) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=session_id))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        (close,) = await wait_for_close(app, session_id, within=TIMEOUT + 5)
        assert close.body["reason"] == "proxy_lost"


async def test_replica_starting_on_a_shared_postgres_store_leaves_live_sessions(
    tmp_path, pg_database
):
    """Replicas share a PostgreSQL store, and a proxy's heartbeats reach only its own
    replica: one that starts takes on no session from the store (it cannot tell one left
    open from one a live replica holds), so it never closes a live session as lost."""
    store = {"type": "postgres", "dsn": pg_database}
    first = pdp_config(tmp_path, store=store)
    (tmp_path / "replica").mkdir()
    second = pdp_config(tmp_path / "replica", store=store, session_timeout=TIMEOUT)
    # replicas of one store sign with one key
    second = dataclasses.replace(
        second, pdp=dataclasses.replace(second.pdp, signing_key=first.pdp.signing_key)
    )
    async with running_pdp(first) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(first))
        async with running_pdp(second) as replica:
            until = time.monotonic() + TIMEOUT * 3
            while time.monotonic() < until:
                await stub.RecordEvents(pdp_pb2.RecordEventsRequest(session_id=opened.session_id))
                await asyncio.sleep(TIMEOUT / 4)
            assert await closes_of(replica, opened.session_id) == []


async def test_a_close_the_store_cannot_check_now_is_unavailable_not_refused(tmp_path, monkeypatch):
    """A restarted PDP checks a session it does not hold in the store: when that read
    fails, the proxy is told UNAVAILABLE (it keeps the close and sends it again), never
    FAILED_PRECONDITION, which a proxy takes as "never": the close would be lost."""
    _, config = short_timeout_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        session_id = str(opened.session_id)
        app.service.sessions._open.pop(session_id)  # as after a restart: only the store knows
        real_query = app.service.sessions.store.query

        async def failing(*args, **kwargs):
            raise StoreUnavailable("the read timed out")

        monkeypatch.setattr(app.service.sessions.store, "query", failing)
        with pytest.raises(grpc.aio.AioRpcError) as later:
            await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=session_id))
        assert later.value.code() == grpc.StatusCode.UNAVAILABLE
        monkeypatch.setattr(app.service.sessions.store, "query", real_query)
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=session_id))
        (close,) = await closes_of(app, session_id)
        assert close.body["reason"] == "closed"


async def test_a_close_the_store_cannot_write_is_taken_when_sent_again(tmp_path, monkeypatch):
    """The close record's write fails: the proxy is told UNAVAILABLE, and the close it
    sends again is stored (the PDP had marked the session closed in memory; the store,
    holding no close, says it is still open)."""
    _, config = short_timeout_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        session_id = str(opened.session_id)
        store = app.service.decider.store
        real_append = store.append

        async def failing(kind, *args, **kwargs):
            if kind == "session.close":
                raise StoreUnavailable("the write timed out")
            return await real_append(kind, *args, **kwargs)

        monkeypatch.setattr(store, "append", failing)
        with pytest.raises(grpc.aio.AioRpcError) as first:
            await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=session_id))
        assert first.value.code() == grpc.StatusCode.UNAVAILABLE
        monkeypatch.setattr(store, "append", real_append)
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=session_id))
        (close,) = await closes_of(app, session_id)
        assert close.body["reason"] == "closed"
        with pytest.raises(grpc.aio.AioRpcError) as third:  # once closed, closed
            await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=session_id))
        assert third.value.code() == grpc.StatusCode.FAILED_PRECONDITION
