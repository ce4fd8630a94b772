"""PDP probe 15 (helper evidence5): approvals of ended sessions, and the reaper's patience.

A request of a session that ended could still be approved when the close's reason was one
the PDP's reaper also gives (`proxy_lost`, `grant_expired`), whoever wrote it: a proxy's
own close as `grant_expired`, or the reaper's. An approval is bound to its session, and a
closed session's commands are decided no more, so such a yes ran nothing and stood in the
evidence as one. Every close now ends the request's approvability, and the approver is
told how the session ended.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from test_pdp_probe_p7 import _written

from portcullis.config import load_config
from portcullis.v1 import pdp_pb2

UPDATE = "UPDATE orders SET total = 0 WHERE id = 1"
# CloseSession reasons proxies give (the client went, the grant or token ran out at the
# proxy, the proxy stopping or draining), and the PDP's own reaping
PROXY_CLOSES = ("grant_expired", "proxy_shutdown", "drain", "client_disconnect")
REAPED = ("proxy_lost", "grant_expired")


async def end_session(app, stub, session_id: str, how: str) -> None:
    """End a session as `how` says: "proxy:REASON" (its proxy's CloseSession) or
    "reaper:REASON" (the PDP's reaper)."""
    who, reason = how.split(":")
    if who == "proxy":
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=session_id, reason=reason))
    else:
        session = await app.sessions.find(session_id)
        assert session is not None
        await app.reaper.reap(session, reason)


async def _refusal(stub, approver: str, approval_id: str) -> str:
    """The details of the refused approve, "" if it was approved."""
    try:
        await stub.ResolveApproval(
            pdp_pb2.ResolveApprovalRequest(
                token=approver, approval_id=approval_id, approve=True, reason="ok"
            )
        )
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED, exc
        return exc.details() or ""
    return ""


async def test_no_close_of_a_session_leaves_its_requests_approvable(tmp_path):
    """Attack (a requester, and an approver talked into it later): ask for an UPDATE, have
    the session end in a way the PDP's reaper also ends sessions (a proxy's close as
    `grant_expired`; the reaper's `proxy_lost` or `grant_expired`), then get the request
    approved. Each was approved; each is refused now, naming how the session ended, and
    denying is still recorded. A request of a session still open is approved as before."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        approver = token(config, "sam@example.com", ("security",))
        asked: dict[str, str] = {}
        for how in (*(f"proxy:{r}" for r in PROXY_CLOSES), *(f"reaper:{r}" for r in REAPED)):
            opened = await open_session(stub, token(config))
            decision = await decide_sql(stub, opened.session_id, UPDATE)
            assert decision.verdict == pdp_pb2.REQUIRE_APPROVAL and decision.approval_id
            await end_session(app, stub, opened.session_id, how)
            asked[how] = decision.approval_id
        for how, approval_id in asked.items():
            refused = await _refusal(stub, approver, approval_id)
            reason = how.split(":")[1]
            # withdrawn as the session ended (evidence6: tests/test_pdp_probe_p16.py)
            assert "already withdrawn" in refused, (how, refused)
            request = app.approvals.requests[approval_id]
            assert request.state == "withdrawn", how
            assert reason in request.decision_reason, (how, request.decision_reason)
        # the control: a request of an open session is approved
        opened = await open_session(stub, token(config))
        decision = await decide_sql(stub, opened.session_id, UPDATE)
        assert await _refusal(stub, approver, decision.approval_id) == ""
        assert app.approvals.requests[decision.approval_id].state == "approved"


@pytest.mark.parametrize("reason", ["proxy_lost"])
async def test_an_approval_given_to_a_reaped_session_could_run_nothing(tmp_path, reason):
    """Why a reaped session's request is not approvable: its proxy, even alive and still
    waiting, can no longer have the command decided (the session is closed at the PDP)."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        decision = await decide_sql(stub, opened.session_id, UPDATE)
        assert decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        session = await app.sessions.find(opened.session_id)
        assert session is not None
        await app.reaper.reap(session, reason)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await decide_sql(stub, opened.session_id, UPDATE)
        assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# -- the reaper: a live proxy's session is not ended for the PDP's own delays ----------------


async def _silent_session(app, stub, config, seconds: float):
    """A session opened through the PDP, its proxy last heard `seconds` ago."""
    opened = await open_session(stub, token(config))
    session = await app.sessions.find(opened.session_id)
    assert session is not None
    session.last_seen = time.monotonic() - seconds
    return session


async def _heartbeat(stub, session_id: str) -> None:
    """What a proxy's recorder sends for an idle session: an empty batch."""
    await stub.RecordEvents(pdp_pb2.RecordEventsRequest(session_id=session_id, events_json="[]"))


async def test_a_stalled_pdp_hears_its_proxies_before_ending_their_sessions(tmp_path):
    """Under load (load 13 on 2 cores) a PDP whose own loop stalled heard nothing while
    it stalled, the live proxies' heartbeats waiting unread on its sockets; its reaper's
    next round ended every session as proxy_lost before reading them (bench_ssh: `echo
    r1-14` denied, "session is no longer open at the policy decision point"). A round that
    wakes half the timeout late or more now lets proxies be heard first (a third of the
    timeout) and ends only the sessions still silent then."""
    config = load_config(_written(tmp_path))  # session_timeout_seconds: 30
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        await app.reaper.stop()  # its rounds are driven here
        timeout = app.reaper.timeout
        live = await _silent_session(app, stub, config, timeout + 10)
        dead = await _silent_session(app, stub, config, timeout + 10)
        await app.reaper.sweep(late=timeout / 2)  # the PDP's loop stalled
        assert not live.closed and not dead.closed
        await _heartbeat(stub, live.id)  # read once the loop runs again
        app.reaper._stalled_at -= timeout / 3  # (the proxies' time to be heard has passed)
        await app.reaper.sweep(late=0.0)
        assert not live.closed
        assert dead.closed and dead.closed_reason == "proxy_lost"
        assert not await app.store.query(kind="session.close", session_id=live.id)


async def test_a_session_heard_while_the_reaper_closes_another_is_not_ended(tmp_path):
    """The reaper's round listed the silent sessions, then wrote each one's close; the
    store being slow under load, a session whose proxy spoke while an earlier close was
    being written was ended all the same, on the stale list."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        await app.reaper.stop()
        timeout = app.reaper.timeout
        first = await _silent_session(app, stub, config, timeout + 10)
        second = await _silent_session(app, stub, config, timeout + 10)
        append = app.store.append

        async def slow_append(kind, body, **kwargs):
            if kind == "session.close" and kwargs.get("session_id") == first.id:
                await _heartbeat(stub, second.id)  # the second's proxy speaks meanwhile
            return await append(kind, body, **kwargs)

        app.store.append = slow_append
        try:
            await app.reaper.sweep()
        finally:
            app.store.append = append
        assert first.closed
        assert not second.closed
        assert not await app.store.query(kind="session.close", session_id=second.id)


async def test_a_session_being_opened_is_not_adopted_as_left_open(tmp_path):
    """A reaper that adopts the sessions a stopped PDP left open (SQLite store) read the
    open record of a session whose open was still under way (recorded, not yet held):
    adopted as heard at the PDP's start, it was ended as proxy_lost on the next round, and
    the open's own session, finding its id held, was never added."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        await app.reaper.stop()
        opened = await open_session(stub, token(config))
        table = app.sessions
        # the moment between its open record's write and its holding
        session = table._open.pop(opened.session_id)
        table._release(session)
        work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        table.opening(opened.session_id, work)
        try:
            assert await table.adopt_unclosed(time.monotonic() - 100) == 0
            assert opened.session_id not in table._open
        finally:
            work.set_result(None)
