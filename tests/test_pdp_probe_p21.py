"""PDP probe 21 (helper approvals4): what the approval book holds of requests nobody can use.

Probe 3 bounded the settled requests every PDP keeps in memory (withdrawn, denied,
expired, approved past their use) by their number, MAX_SETTLED = 4096, but not by what
they hold: a request of a megabyte of SQL (the most a proxy sends) holds its text, the
approver's view of it and its statements, ~4 MB. One reader asking and cancelling (a psql
Ctrl-C withdraws; here the proxy's WithdrawApproval) made the book grow ~3.9 MB a
request (100 of them: RSS 81 -> 471 MiB, measured on a real PDP), up to ~16 GB at 4096,
on every replica. The settled requests now hold at most MAX_SETTLED_BYTES between them,
the oldest dropped first (the audit store keeps them); an approval still usable stays.
"""

from __future__ import annotations

from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain import approvals
from portcullis.v1 import pdp_pb2

SAM = {"subject": "sam@example.com", "groups": ["security"], "issuer": "portcullis-dev"}
MEGABYTE = 1000 * 1000
LIMIT = 8 * MEGABYTE


def _held(book: approvals.ApprovalBook) -> int:
    return sum(
        len(r.command) + len(r.shown_command) + sum(len(s["text"]) for s in r.shown_statements)
        for r in book.requests.values()
    )


async def test_cancelled_large_requests_cannot_fill_the_pdps_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(approvals, "MAX_SETTLED_BYTES", LIMIT, raising=False)
    config = pdp_config(tmp_path)
    rita = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, rita)
        keep = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (-1)")
        await pdp.approvals.decide(keep.approval_id, SAM, True, "still usable")
        for n in range(12):
            sql = f"UPDATE orders SET note = '{n:04d}{'x' * MEGABYTE}' WHERE id = 1"
            asked = await decide_sql(stub, opened.session_id, sql)
            assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
            await stub.WithdrawApproval(
                pdp_pb2.WithdrawApprovalRequest(
                    session_id=opened.session_id, approval_id=asked.approval_id, reason="^C"
                )
            )
            # the newest is still there for its requester to read
            assert pdp.approvals.requests[asked.approval_id].state == "withdrawn"
        assert _held(pdp.approvals) <= LIMIT, len(pdp.approvals.requests)
        # the approval still usable was kept, and is still used
        again = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (-1)")
        assert again.approval_id == keep.approval_id and again.verdict != pdp_pb2.REQUIRE_APPROVAL
    async with running_pdp(pdp_config(tmp_path)) as pdp:  # read back from the store
        assert _held(pdp.approvals) <= LIMIT
        assert keep.approval_id in pdp.approvals.requests
