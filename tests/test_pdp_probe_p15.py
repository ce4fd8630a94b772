"""PDP probe 15 (helper evidence5): approvals of ended sessions, and the reaper's patience.

A request of a session that ended could still be approved when the close's reason was one
the PDP's reaper also gives (`proxy_lost`, `grant_expired`), whoever wrote it: a proxy's
own close as `grant_expired`, or the reaper's. An approval is bound to its session, and a
closed session's commands are decided no more, so such a yes ran nothing and stood in the
evidence as one. Every close now ends the request's approvability, and the approver is
told how the session ended.
"""

from __future__ import annotations

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
            who, reason = how.split(":")
            if who == "proxy":
                await stub.CloseSession(
                    pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason=reason)
                )
            else:
                session = await app.sessions.find(opened.session_id)
                assert session is not None
                await app.reaper.reap(session, reason)
            asked[how] = decision.approval_id
        for how, approval_id in asked.items():
            refused = await _refusal(stub, approver, approval_id)
            reason = how.split(":")[1]
            assert "session that has ended" in refused and f"closed: {reason}" in refused, (
                how,
                refused,
            )
            assert app.approvals.requests[approval_id].state == "pending", how
        denied = await stub.ResolveApproval(
            pdp_pb2.ResolveApprovalRequest(
                token=approver, approval_id=asked["reaper:proxy_lost"], approve=False, reason="x"
            )
        )
        assert denied.approval.state == "denied"
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
