"""PDP probe 24 (helper auditsec): an approval with no reason, through the gRPC API.

Attack (an approver, or whoever holds an approver's token, wanting no justification on
record): the HTTP API, the console and `portcullis approvals approve --reason` all ask
for the reason a person lets a reader's write run; ResolveApproval took none (an empty
or blank `reason`), and the evidence said "approved by sam" with nothing for an auditor
to weigh (SOC 2 CC8.1, SOX change control: who approved, and why). The HTTP API took a
reason of blanks. Both now refuse a blank reason (gRPC INVALID_ARGUMENT, HTTP 400) and
the request stays pending; a reason given is recorded as before.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store, its HTTP API).
"""

from __future__ import annotations

import aiohttp
import grpc
import pytest
from pdp_harness import decide_sql, free_port, open_session, pdp_raw, pdp_stub, running_pdp, token

from portcullis.config import parse_config
from portcullis.v1 import pdp_pb2

UPDATE = "UPDATE orders SET note = 'x' WHERE id = 1"


@pytest.mark.parametrize("reason", ["", " ", "\t\n"])
async def test_no_approval_is_recorded_without_a_reason(tmp_path, reason):
    await no_approval_with(tmp_path, reason, control="ticket 42")


async def no_approval_with(tmp_path, reason: str, control: str) -> None:
    """Neither gRPC nor HTTP records an approval or a denial with `reason`; the request
    stays pending, and `control` as the reason then approves it (test_pdp_probe_p34 too)."""
    port = free_port()
    raw = pdp_raw(tmp_path)
    raw["pdp"]["http_listen"] = f"127.0.0.1:{port}"
    config = parse_config(raw, base_dir=tmp_path)
    rita = token(config, "rita@example.com", ("readonly",))
    sam = token(config, "sam@example.com", ("security",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, rita)
        asked = await decide_sql(stub, opened.session_id, UPDATE)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        for approve in (True, False):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ResolveApproval(
                    pdp_pb2.ResolveApprovalRequest(
                        token=sam, approval_id=asked.approval_id, approve=approve, reason=reason
                    )
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "reason: a reason is required" in (refused.value.details() or "")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/v1/approvals/{asked.approval_id}/approve",
                json={"reason": reason},
                headers={"Authorization": f"Bearer {sam}"},
            ) as answer,
        ):
            assert answer.status == 400
        assert pdp.approvals.requests[asked.approval_id].state == "pending"
        # the control: with a reason it is approved, and the reason kept
        approved = await stub.ResolveApproval(
            pdp_pb2.ResolveApprovalRequest(
                token=sam, approval_id=asked.approval_id, approve=True, reason=control
            )
        )
        assert approved.approval.state == "approved"
        assert approved.approval.decision_reason == control
