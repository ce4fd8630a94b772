"""PDP probe 34 (helper auditsec7): an approval's reason must say something.

Attack (an approver, or whoever holds an approver's token, wanting no justification on
record): every way to decide a request asks for a reason and refused an empty or blank
one (tests/test_pdp_probe_p24.py), but each checked `reason.strip()`, which keeps what
reads as nothing: a zero-width space, a soft hyphen, a word joiner, a bidi mark, the
Hangul filler or a braille blank. The request was approved and the evidence said "approved
by sam: " with nothing for an auditor to weigh. The approval book itself now refuses a
reason with no character one can read (a letter, digit, punctuation or symbol that is not
a blank letter), whichever API it came through; the request stays pending.

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
UNREADABLE = [
    "\u200b",  # zero-width space
    "\u00ad\u00ad",  # soft hyphens
    "\u2060 \u202e",  # word joiner, a space, right-to-left override
    "\u3164",  # Hangul filler (a letter that draws nothing)
    "\u2800\u2800",  # braille pattern blank
    "\u0301",  # a combining accent on nothing
    "\u200b" * 1000 + "ticket 42",  # (the reason kept is its first 1,000 characters)
]


@pytest.mark.parametrize("reason", UNREADABLE)
async def test_no_approval_is_recorded_with_a_reason_that_reads_as_nothing(tmp_path, reason):
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
            assert refused.value.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert "reason" in (refused.value.details() or "")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/v1/approvals/{asked.approval_id}/approve",
                json={"reason": reason},
                headers={"Authorization": f"Bearer {sam}"},
            ) as answer,
        ):
            assert answer.status in (400, 403)
        assert pdp.approvals.requests[asked.approval_id].state == "pending"
        # the control: a short reason in any script is one
        approved = await stub.ResolveApproval(
            pdp_pb2.ResolveApprovalRequest(
                token=sam, approval_id=asked.approval_id, approve=True, reason="\u8ba4\u53ef #4"
            )
        )
        assert approved.approval.state == "approved"
        assert approved.approval.decision_reason == "\u8ba4\u53ef #4"
