"""PDP probe 28 (helper auditsec4): what the PDP keeps of session.open approval requests.

Attack (an agent, or anyone with a token the policy sends to a just-in-time grant, in a
loop): every OpenSession answered require_approval put an entry (approval id -> the
proxy that asked) in DecisionService.open_approvals, and nothing ever took one out:
not the request's approval, denial, expiry or withdrawal, nor the end of the session a
grant opened. A busy agent grew the PDP's memory for as long as it ran. The proxy that
asked is recorded with the request itself (ApprovalRequest.proxy, which the approval
book keeps, bounded, for as long as it keeps the request, on every replica), so the map
is gone: the service holds nothing of a request once it has ended, and only the proxy
that asked may still wait on it.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store), a just-in-time policy.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from pdp_harness import open_session, pdp_stub, running_pdp
from test_pdp_probe_p2 import SAM, _jit_config

from pdp.domain.identity import DevIssuer
from portcullis.v1 import pdp_pb2


def _held(service: Any, ids: set[str]) -> list[str]:
    """The names of the service's maps (its attributes) that still hold any of `ids`."""
    found = []
    for name, value in vars(service).items():
        if isinstance(value, dict) and ids & set(value):
            found.append(name)
    return found


async def _await(stub, approval_id: str) -> list[str]:
    request = pdp_pb2.AwaitApprovalRequest(approval_id=approval_id, timeout_seconds=1)
    return [update.approval.state async for update in stub.AwaitApproval(request)]


async def test_ended_open_approvals_leave_nothing_in_the_service(tmp_path):
    config = _jit_config(tmp_path)
    carl = DevIssuer(config.identity).issue("carl@example.com", ["contractors"], 3600)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        service, book = pdp.service, pdp.approvals
        asked: dict[str, str] = {}
        for way in ("approved", "denied", "expired", "withdrawn"):
            opened = await open_session(stub, carl)
            assert opened.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
            asked[way] = opened.decision.approval_id
        ids = set(asked.values())
        # the proxy that asked waits on its request; another proxy may not
        other = pdp.issue_proxy_credential("other-proxy", ["*"])
        async with pdp_stub(pdp.address, other) as stranger:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _await(stranger, asked["approved"])
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await _await(stub, asked["approved"]))[0] == "pending"

        await book.decide(asked["approved"], SAM, True, "on-call fix")
        await book.decide(asked["denied"], SAM, False, "no")
        book.requests[asked["expired"]].expires_at = time.time() - 1
        await book._expire_overdue()
        withdrawn = await stub.WithdrawApproval(
            pdp_pb2.WithdrawApprovalRequest(token=carl, approval_id=asked["withdrawn"])
        )
        assert withdrawn.approval.state == "withdrawn"
        states = {way: book.requests[i].state for way, i in asked.items()}
        assert states == {w: w for w in asked}, states
        # the session the grant opens, then closes
        granted = await open_session(stub, carl)
        assert granted.decision.verdict == pdp_pb2.ALLOW and granted.session_id
        assert granted.decision.approval_id == asked["approved"]
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=granted.session_id))
        assert _held(service, ids) == []
        # still answered to the proxy that asked, from the book
        assert (await _await(stub, asked["denied"]))[-1] == "denied"


async def test_a_loop_of_refused_opens_does_not_grow_the_service(tmp_path):
    config = _jit_config(tmp_path)
    carl = DevIssuer(config.identity).issue("carl@example.com", ["contractors"], 3600)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        ids = set()
        for _ in range(5):
            opened = await open_session(stub, carl)
            ids.add(opened.decision.approval_id)
            withdrawn = await stub.WithdrawApproval(
                pdp_pb2.WithdrawApprovalRequest(token=carl, approval_id=opened.decision.approval_id)
            )
            assert withdrawn.approval.state == "withdrawn"
        assert len(ids) == 5
        assert _held(pdp.service, ids) == []
