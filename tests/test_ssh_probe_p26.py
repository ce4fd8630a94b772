"""SSH probe, part 26: channels racing one approval (against the real sshd, as a reader).

The PDP gives a session one pending approval request per command: a second channel
running the same line while the first waits is told the first's request id. Giving up on
the second (Ctrl-C, an INT signal, its close) withdrew that request, so the first, still
waiting, was denied as withdrawn and the approver found nothing to approve: one channel's
cancel decided another's command. Now the request stays pending while another channel
waits for it; the last one to give up withdraws it. Approved, it runs on the channel that
still waits (and, by the design's re-run rule, a later same line in the session).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ssh_probe_stack import stack_fixture
from test_ssh_probe_p23 import HANG_GUARD

pytestmark = pytest.mark.integration

READER = ("readonly",)
HELD = "df /t*"  # a glob: approval for a reader
APPROVER = {"subject": "sam@example.com", "groups": ["security"]}
stack = stack_fixture()


async def waiting(conn: Any, line: str = HELD) -> tuple[Any, str]:
    process = await conn.create_process(line)
    said = await process.stderr.readuntil("--reason '...'")
    assert "waiting for request" in said
    return process, said


async def test_cancelling_one_channel_leaves_the_others_request(stack: Any) -> None:
    async with await stack.connect(READER) as conn:
        first, said = await waiting(conn)
        second, said_again = await waiting(conn)
        (request,) = stack.pdp.approvals.requests.values()
        assert request.id in said and request.id in said_again  # one request, two waits
        second.send_signal("INT")
        cancelled = await asyncio.wait_for(second.wait(), HANG_GUARD)
        assert cancelled.exit_status == 1
        assert "left pending" in str(cancelled.stderr), cancelled.stderr
        # the cancelled channel ended once its request's fate was settled at the PDP
        await stack.pdp.approvals.decide(request.id, APPROVER, True, "ok")
        ran = await asyncio.wait_for(first.wait(), HANG_GUARD)
        assert ran.exit_status == 0, ran.stderr
        assert "Filesystem" in str(ran.stdout)


async def test_the_last_to_give_up_withdraws_it(stack: Any) -> None:
    async with await stack.connect(READER) as conn:
        first, _ = await waiting(conn)
        second, _ = await waiting(conn)
        (request,) = stack.pdp.approvals.requests.values()
        second.send_signal("INT")
        await asyncio.wait_for(second.wait(), HANG_GUARD)
        first.send_signal("INT")
        cancelled = await asyncio.wait_for(first.wait(), HANG_GUARD)
        assert cancelled.exit_status == 1
        assert f"approval request {request.id} withdrawn" in str(cancelled.stderr)
        await stack.pdp.approvals.refresh()
        assert stack.pdp.approvals.requests[request.id].state == "withdrawn"
    assert stack.sshd.sessions_started() == 0
