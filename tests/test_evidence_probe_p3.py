"""Evidence probe 3 (helper evidence6): long statements decided off the PDP's event loop,
and what `audit verify` tells of one decision's many executions.

A reader's INSERT naming 120,000 columns (850 KB) was classified twice on the PDP's event
loop (the policy's input, then the effects sent to the proxy): ~5 s in which no other
session's decision was answered (measured under load: 4 other decisions answered in that
time, the slowest after 2.4 s, and the PDP's audit writes timed out, answering deny).
A text longer than pdp.api.sql_reading.READ_APART is now classified in a thread of its own
(42 other decisions answered meanwhile, the slowest after 0.65 s; the loop itself spent
0.06 s on the long decision, from 4.9 s).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from unittest import mock

from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain import policy_input
from portcullis.v1 import pdp_pb2


async def test_other_decisions_are_answered_while_a_long_statement_is_classified() -> None:
    """Attack (a reader): send a statement of thousands of column names, so that every
    other session's decision waits for its classification. The classification is held
    here until another session's decision has been answered: it is, since the long one
    is read off the loop (on the loop, the held reading held the loop, and the other
    decision waited for it)."""
    config = pdp_config(Path(tempfile.mkdtemp(prefix="evidence6-long-")))
    started = asyncio.Event()
    release = asyncio.Event()
    classify = policy_input.classify
    loop = asyncio.get_running_loop()

    def held(raw: str):
        if len(raw) > 16 * 1024:
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return classify(raw)

    columns = ",".join(f"c{i}" for i in range(4_000))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        long_session = await open_session(stub, token(config, groups=("dba",)))
        other = await open_session(stub, token(config))
        with mock.patch.object(policy_input, "classify", held):
            insert = f"INSERT INTO orders ({columns}) SELECT 1"
            asked = asyncio.ensure_future(decide_sql(stub, long_session.session_id, insert))
            await asyncio.wait_for(started.wait(), 60)
            answer = await asyncio.wait_for(
                decide_sql(stub, other.session_id, "SELECT id FROM orders"), 60
            )
            assert answer.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), answer
            assert not asked.done()
            release.set()
            decided = await asyncio.wait_for(asked, 60)
        assert decided.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), decided
        records = await pdp.store.query(kind="decision", session_id=long_session.session_id)
        assert [r.body["statements"][0]["type"] for r in records] == ["insert"]


async def test_a_statement_past_the_hard_limit_is_refused_unread() -> None:
    """The hard limit (1 MiB, pdp.api.recording_rpc.MAX_COMMAND_BYTES): refused with its
    reason, never classified."""
    config = pdp_config(Path(tempfile.mkdtemp(prefix="evidence6-huge-")))
    columns = ",".join(f"c{i}" for i in range(150_000))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba",)))
        with mock.patch.object(policy_input, "classify", side_effect=AssertionError("read")):
            decided = await decide_sql(
                stub, opened.session_id, f"INSERT INTO orders ({columns}) SELECT 1"
            )
        assert decided.verdict == pdp_pb2.DENY
        assert "larger than the 1048576 a command may be" in decided.reasons[0], decided
