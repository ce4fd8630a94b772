"""PDP probe 16 (helper evidence6): who closed a session, and a closed session's requests.

A proxy's own `grant_expired` close was recorded with its reason alone; the PDP told it
from its reaper's only by the memory of the close (`grant_expired (by its proxy)`). Read
back after a restart it was the reaper's: the session took events after its close (a
proxy's close takes none) and verify and replay said the PDP had ended it. The close
now names its author (`closed_by`, in the hash-chained body).

A closed session's pending approval requests stayed pending until they expired: listed to
approvers as waiting for them, and (once evidence5 refused approving them) each approve
attempt refused with a reason approvers had to work out. They are now withdrawn as the
session ends, whoever ends it: an `approval` record `withdrawn` by "session end".

A proxy's close giving the reaper's own reason (`proxy_lost`) is recorded as said by the
proxy; spelt otherwise (`Proxy_Lost `, with a zero-width space) it was recorded as given,
and read in a listing as the PDP having lost the proxy. Every spelling that reads as it
is marked now.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from test_pdp_probe_p7 import _written
from test_pdp_probe_p11 import _timeline_of
from test_pdp_probe_p15 import end_session

from portcullis.config import load_config
from portcullis.v1 import pdp_pb2


def _command(when: float, sql: str, decision: pdp_pb2.Decision) -> dict:
    return {"time": when, "direction": "client", "type": "command", "command": sql,
            "decision_id": decision.decision_id, "verdict": "allow", "cached": False,
            "details": {"tag": "SELECT 1", "rows": 1, "protocol": "simple"}}  # fmt: skip


async def test_a_proxys_grant_expired_close_is_its_own_after_a_restart(tmp_path):
    """Attack (a proxy, or whoever holds its credential): close a session as
    `grant_expired`, wait for the PDP to restart, then send events for the closed session.
    Before the restart they were refused (a proxy's close takes no event after it); after
    it the close read as the reaper's, so they were taken, and replay showed the session
    ended by the PDP. The close now records its author: refused, and named the proxy's."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        decision = await decide_sql(stub, opened.session_id, "SELECT 1")
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason="grant_expired")
        )
        closes = await app.store.query(kind="session.close", session_id=opened.session_id)
        assert closes[0].body["closed_by"] == "proxy"
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        late = [_command(time.time(), "SELECT 1", decision)]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(
                    session_id=opened.session_id, events_json=json.dumps(late)
                )
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is closed" in (refused.value.details() or "")
        timeline = await _timeline_of(app.store, opened.session_id)
        assert timeline.summary.close_reason == "grant_expired (by its proxy)"


async def test_the_reapers_grant_expired_close_is_the_pdps_after_a_restart(tmp_path):
    """The control: the reaper's own close stays the reaper's (its proxy's last events,
    sent after it, are still taken)."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        decision = await decide_sql(stub, opened.session_id, "SELECT 1")
        session = await app.sessions.find(opened.session_id)
        assert session is not None
        await app.reaper.reap(session, "grant_expired")
        closes = await app.store.query(kind="session.close", session_id=opened.session_id)
        assert closes[0].body["closed_by"] == "pdp"
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        late = [_command(time.time(), "SELECT 1", decision)]
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events_json=json.dumps(late))
        )
        timeline = await _timeline_of(app.store, opened.session_id)
        assert timeline.summary.close_reason == "grant_expired"


UPDATE = "UPDATE orders SET total = 0 WHERE id = 1"


async def _pending_listed(stub, approver: str) -> set[str]:
    listed = await stub.ListApprovals(
        pdp_pb2.ListApprovalsRequest(token=approver, pending_only=True)
    )
    return {a.id for a in listed.approvals}


@pytest.mark.parametrize(
    "how", ["proxy:client_disconnect", "proxy:grant_expired", "reaper:proxy_lost"]
)
async def test_a_sessions_pending_requests_are_withdrawn_as_it_ends(tmp_path, how):
    """Attack (a requester): ask for an UPDATE, then end the session. The request stayed
    pending for approvers until it expired (120 s). It is withdrawn at the close, with an
    approval record saying so; approvers no longer list it; an approve is refused. The
    other session's request is untouched."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        approver = token(config, "sam@example.com", ("security",))
        opened = await open_session(stub, token(config))
        other = await open_session(stub, token(config))
        asked = await decide_sql(stub, opened.session_id, UPDATE)
        kept = await decide_sql(stub, other.session_id, UPDATE)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        assert await _pending_listed(stub, approver) == {asked.approval_id, kept.approval_id}
        reason = how.split(":")[1]
        await end_session(app, stub, opened.session_id, how)
        request = app.approvals.requests[asked.approval_id]
        assert request.state == "withdrawn"
        assert reason in request.decision_reason
        records = await app.store.query(kind="approval", session_id=opened.session_id)
        withdrawn = [r.body for r in records if r.body.get("event") == "withdrawn"]
        assert len(withdrawn) == 1 and withdrawn[0]["by"] == "session end", withdrawn
        assert await _pending_listed(stub, approver) == {kept.approval_id}
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ResolveApproval(
                pdp_pb2.ResolveApprovalRequest(
                    token=approver, approval_id=asked.approval_id, approve=True, reason="ok"
                )
            )
        assert "already withdrawn" in (refused.value.details() or "")
        assert app.approvals.requests[kept.approval_id].state == "pending"


@pytest.mark.parametrize("said", ["proxy_lost", "Proxy_Lost", "proxy_lost ", "proxy_lost\u200b"])
async def test_a_proxy_cannot_close_as_the_reaper_under_another_spelling(tmp_path, said):
    """Attack (a proxy's credential): close a session with the reaper's reason, spelt so
    the exact comparison misses it: it read as the PDP having lost the proxy."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason=said, abnormal=True)
        )
        closes = await app.store.query(kind="session.close", session_id=opened.session_id)
        assert closes[0].body["reason"] == f"{said} (said by the proxy)"
        timeline = await _timeline_of(app.store, opened.session_id)
        assert timeline.summary.close_reason.endswith("(said by the proxy)")
