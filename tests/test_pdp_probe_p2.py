"""Attacks on the PDP's API, its evidence and its approvals (second probe).

Each test drives real components: the PDP over gRPC (tests/pdp_harness.py), its real
audit store (sqlite), the `portcullis` CLI in a subprocess where an auditor would use it.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp

from portcullis.v1 import pdp_pb2

# contractors get sessions only through a just-in-time grant of GRANT_SECONDS
GRANT_SECONDS = 2
JIT_POLICY = f"""package portcullis

decision := {{"verdict": "require_approval", "reasons": ["contractors need a grant"],
             "approval": {{"approvers": ["group:security"], "ttl_seconds": {GRANT_SECONDS}}}}} if {{
  input.command.kind == "session.open"
  not input.approval
}}

decision := {{"verdict": "allow", "reasons": ["granted"]}} if {{
  input.command.kind == "session.open"
  input.approval.state == "approved"
  input.approval.approver != input.identity.subject
}}

decision := {{"verdict": "allow", "reasons": ["reads"]}} if input.command.kind == "postgres.query"

approvers := {{"allowed": true, "reasons": ["security"]}} if {{
  "security" in input.approver.groups
  lower(input.approver.subject) != lower(input.request.requester.subject)
}} else := {{"allowed": false, "reasons": ["not an approver"]}}
"""

SAM = {"subject": "sam@example.com", "groups": ["security"], "issuer": "portcullis-dev"}


def _jit_config(tmp_path):
    policies = tmp_path / "jit"
    policies.mkdir(exist_ok=True)
    (policies / "policy.rego").write_text(JIT_POLICY)
    engine = {"type": "embedded", "policies": str(policies), "workers": 1, "timeout_ms": 2000}
    return pdp_config(tmp_path, engine=engine)


async def test_a_just_in_time_grant_still_ends_after_the_pdp_restarts(tmp_path):
    """Attack (contractor with a granted session): the grant's end lived only in the PDP's
    memory. The session.open record kept grant_expires_at 0 and Session.from_record did
    not read it, so once the PDP restarted (or another replica, or an evicted session,
    found the session in the store) the session ran on with no end: statements were
    allowed long after the grant ran out. Now the record holds the grant's end and a
    session found in the store keeps it."""
    from pdp.domain.identity import DevIssuer

    config = _jit_config(tmp_path)
    token = DevIssuer(config.identity).issue("carl@example.com", ["contractors"], 3600)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        asked = await open_session(stub, token)
        assert asked.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        await pdp.approvals.decide(asked.decision.approval_id, SAM, True, "on-call fix")
        granted = await open_session(stub, token)
        assert granted.decision.verdict == pdp_pb2.ALLOW and granted.session_id
        ends = granted.session_expires_at
        assert ends > 0
        recorded = await pdp.store.query(kind="session.open", session_id=granted.session_id)
        allowed = [r for r in recorded if r.body.get("verdict") == "allow"]
        assert allowed[0].body["session"]["grant_expires_at"] == pytest.approx(ends)
        session_id = granted.session_id
    while time.time() <= ends + 0.2:  # the grant runs out while the PDP is down
        await asyncio.sleep(0.2)
    async with running_pdp(_jit_config(tmp_path)) as pdp, pdp_stub(pdp.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await stub.Decide(
                pdp_pb2.DecideRequest(
                    session_id=session_id,
                    command=pdp_pb2.Command(kind="postgres.query", raw="SELECT 1"),
                )
            )
        assert ended.value.code() in (
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED,
        )
