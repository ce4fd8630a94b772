"""PDP probe 20 (helper approvals4): one person's two accounts approving their own request.

Nobody approves their own request: the PDP compared the approver's subject with the
requester's (as read: case, NFKC, invisible characters; probe 9). But one person often
holds two accounts at the IdP, with two subjects: a daily one their agent works with,
and an admin one in the approvers' group (alice and alice-admin), or one account at each
of two of the IdP's connections (google-oauth2|123 and auth0|456). Both tokens name the
person alike in `email` (or `preferred_username`, `upn`), and alice-admin approved the
UPDATE alice's agent asked for: four eyes that were two. Any name either token gives its
person (pdp.domain.identity.person_names) that reads as one of the other's now makes them
one person, a mailbox's `+tag` dropped.
"""

from __future__ import annotations

import aiohttp
import grpc
import pytest
from pdp_harness import decide_sql, free_port, open_session, pdp_raw, pdp_stub, running_pdp

from pdp.domain.identity import DevIssuer
from portcullis.config import parse_config
from portcullis.v1 import pdp_pb2

UPDATE = "UPDATE orders SET note = 'x' WHERE id = 1"


def _token(config, sub: str, groups: tuple[str, ...], **claims: str) -> str:
    return DevIssuer(config.identity).issue(sub, list(groups), 600, extra_claims=claims)


@pytest.mark.parametrize(
    "agent,admin",
    [
        (
            ("alice", {"email": "alice@example.com"}),
            ("alice-admin", {"email": "alice@example.com"}),
        ),
        (
            ("auth0|456", {"email": "Alice@Example.com"}),
            ("google-oauth2|123", {"email": "alice@example.com"}),
        ),
        (("alice@example.com", {}), ("alice-admin", {"email": "alice+admin@example.com"})),
        (
            ("u-1", {"preferred_username": "alice@example.com"}),
            ("u-2", {"upn": "ALICE@example.com"}),
        ),
    ],
    ids=["email", "email-case", "plus-tag", "username-upn"],
)
async def test_a_second_account_of_the_requester_cannot_approve(tmp_path, agent, admin):
    """Attack (alice, who holds an agent's account and an approver's): her agent asks for
    an UPDATE, she approves it as her admin account, over gRPC or the HTTP API."""
    port = free_port()
    raw = pdp_raw(tmp_path)
    raw["pdp"]["http_listen"] = f"127.0.0.1:{port}"
    config = parse_config(raw, base_dir=tmp_path)
    asking = _token(config, agent[0], ("readonly",), **agent[1])
    deciding = _token(config, admin[0], ("security",), **admin[1])
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, asking)
        asked = await decide_sql(stub, opened.session_id, UPDATE)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ResolveApproval(
                pdp_pb2.ResolveApprovalRequest(
                    token=deciding, approval_id=asked.approval_id, approve=True, reason="mine"
                )
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "own request" in str(refused.value.details())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/v1/approvals/{asked.approval_id}/approve",
                json={"reason": "mine"},
                headers={"Authorization": f"Bearer {deciding}"},
            ) as answer,
        ):
            assert answer.status == 403
            assert "own request" in (await answer.json())["detail"]
        assert pdp.approvals.requests[asked.approval_id].state == "pending"
        # approvers are not shown the names that told them apart
        listed = pdp.approvals.requests[asked.approval_id].public()
        assert set(listed["requester"]) == {"subject", "groups", "issuer"}


async def test_another_person_still_approves(tmp_path):
    """The control: sam, whose names are his own, approves alice's agent's UPDATE, and the
    agent's next try runs."""
    config = parse_config(pdp_raw(tmp_path), base_dir=tmp_path)
    asking = _token(config, "alice", ("readonly",), email="alice@example.com")
    deciding = _token(config, "sam-admin", ("security",), email="sam@example.com",
                      preferred_username="sam")  # fmt: skip
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, asking)
        asked = await decide_sql(stub, opened.session_id, UPDATE)
        approved = await stub.ResolveApproval(
            pdp_pb2.ResolveApprovalRequest(
                token=deciding, approval_id=asked.approval_id, approve=True, reason="ok"
            )
        )
        assert approved.approval.state == "approved"
        rerun = await decide_sql(stub, opened.session_id, UPDATE)
        assert rerun.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), list(rerun.reasons)
        assert pdp.approvals.requests[asked.approval_id].approver == "sam-admin"
