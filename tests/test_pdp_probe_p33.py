"""PDP probe 33 (helper auditsec6): a reader's justification comment cannot stall the PDP.

Attack (an agent with an ordinary reader token): a statement that needs approval (a
DELETE) opening with `/* justification: x<160,000 spaces>y */`. The PDP read the comment
with `^\\s*/\\*\\s*justification:\\s*(.*?)\\s*\\*/`, which tries the run of white space after
every character of the comment: quadratic, on the event loop every decision shares (the
call that makes the approval's view), so that statement held every proxy's every decision
for a minute, and one of a megabyte (a command may be that long) for half an hour. The
comment is now read by one scan, with the same result.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store), called as a proxy calls it
for a reader's session.
"""

from __future__ import annotations

import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain.approvals import MAX_JUSTIFICATION, justification_of
from portcullis.v1 import pdp_pb2

SPACES = 160_000  # the pattern took a minute over this many; a scan takes milliseconds


async def test_a_long_justification_comment_is_read_in_one_scan(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid = (await open_session(stub, token(config))).session_id
        raw = "/* justification: x" + " " * SPACES + "y */ DELETE FROM orders"
        command = pdp_pb2.Command(kind="postgres.query", raw=raw)
        # a deadline a thousand times what the answer takes: the PDP shares this loop, so
        # the old reading ended past it, and the call failed (DEADLINE_EXCEEDED)
        request = pdp_pb2.DecideRequest(session_id=sid, command=command)
        answer = await stub.Decide(request, timeout=30)
        assert answer.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        request = app.approvals.requests[answer.decision.approval_id]
        assert request.justification == ("x" + " " * SPACES)[:MAX_JUSTIFICATION]


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (
            "/* justification: fix Bob's name, ticket 42 */ UPDATE t SET a = 1",
            "fix Bob's name, ticket 42",
        ),
        ("  \n/*JUSTIFICATION:\n  two\n lines \t*/ DELETE FROM t", "two\n lines"),
        ("/* justification: a */ b */ DELETE FROM t", "a"),
        ("/* justification:*/ DELETE FROM t", ""),
        ("/* justification: never closed DELETE FROM t", ""),
        ("/* why: ticket 42 */ DELETE FROM t", ""),
        ("DELETE FROM t /* justification: after */", ""),
        ("/* justification: " + "z" * 5000 + " */", "z" * MAX_JUSTIFICATION),
    ],
)
def test_what_a_justification_comment_says(raw: str, said: str) -> None:
    assert justification_of(raw) == said
