"""An approval request's view is made off the PDP's event loop: a reader's statement of
120,000 column names (850 KB) needing approval held every other decision for 17 s while
approver_view read each name by the mask rules (suitetime's finding, 2026-12-06)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from unittest import mock

from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain import approvals


async def test_other_decisions_are_answered_while_a_long_request_is_viewed() -> None:
    config = pdp_config(Path(tempfile.mkdtemp(prefix="portcullis-view-")))
    started = asyncio.Event()
    release = asyncio.Event()
    made = approvals.approver_view
    loop = asyncio.get_running_loop()

    def held_view(*args, **kwargs):  # (in the worker thread, if the view is made off-loop)
        loop.call_soon_threadsafe(started.set)
        fut = asyncio.run_coroutine_threadsafe(release.wait(), loop)
        fut.result(10)
        return made(*args, **kwargs)

    columns = ",".join(f"c{i}" for i in range(2_000))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        long_session = await open_session(stub, token(config))
        other = await open_session(stub, token(config))
        with mock.patch.object(approvals, "approver_view", held_view):
            insert = f"INSERT INTO orders ({columns}) SELECT 1"
            asked = asyncio.ensure_future(decide_sql(stub, long_session.session_id, insert))
            await asyncio.wait_for(started.wait(), 60)
            # the view is being made: the event loop still answers another session
            answer = await asyncio.wait_for(
                decide_sql(stub, other.session_id, "SELECT id FROM orders"), 60
            )
            assert answer.verdict, answer
            assert not asked.done()
            release.set()
            decided = await asyncio.wait_for(asked, 60)
        assert decided.verdict == 4, decided  # require_approval: the request was made
