"""PDP probe 17 (helper evidence7): a session's end while the approval book is not loaded.

A PDP serves calls before its approval book has read the store (PDPApp.start starts the
gRPC server, then the book). A session that asked for an approval and was closed by its
proxy in that window (the close its spool delivers to a restarted PDP) left its request
pending: the book found no request of the session to withdraw, then loaded it as pending.
Approvers were listed a request of a session gone, and the evidence said it expired,
'nobody decided in time', not that its session ended. Likewise a close recorded by a PDP
that stopped before withdrawing the session's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from unittest import mock

from pdp_harness import ISSUED, decide_sql, open_session, pdp_stub, running_pdp, token
from test_pdp_probe_p7 import _written

from pdp.app import PDPApp
from pdp.domain.approvals import ApprovalBook
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2


async def _asked(config) -> tuple[str, str]:
    """A session with an approval request pending, on a PDP that then stops."""
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        asked = await decide_sql(
            stub, opened.session_id, "UPDATE orders SET total = 0 WHERE id = 1"
        )
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
    return opened.session_id, asked.approval_id


async def test_a_close_served_before_the_approval_book_loaded_withdraws_its_requests(tmp_path):
    config = load_config(_written(tmp_path))
    session_id, approval_id = await _asked(config)
    reached, release = asyncio.Event(), asyncio.Event()
    start = ApprovalBook.start

    async def held(book: ApprovalBook) -> None:
        reached.set()
        await release.wait()
        await start(book)

    app = PDPApp(config)
    with mock.patch.object(ApprovalBook, "start", held):
        starting = asyncio.ensure_future(app.start())
        try:
            await asyncio.wait_for(reached.wait(), 60)  # serving; the book not loaded
            ISSUED[app.address] = app.issue_proxy_credential("pytest", ["*"])
            async with pdp_stub(app.address) as stub:
                await stub.CloseSession(
                    pdp_pb2.CloseSessionRequest(session_id=session_id, reason="client closed")
                )
            release.set()
            await asyncio.wait_for(starting, 60)
            request = app.approvals.requests[approval_id]
            assert request.state == "withdrawn", request.state
            settled = await app.store.query(kind="approval", session_id=session_id)
            assert [r.body.get("by") for r in settled if r.body.get("event") == "withdrawn"] == [
                "session end"
            ]
        finally:
            release.set()
            with contextlib.suppress(Exception):
                await starting
            ISSUED.pop(app.address, None)
            await app.stop(grace=2)


async def test_a_close_recorded_before_a_pdp_stopped_withdraws_its_requests_at_start(tmp_path):
    """The close was recorded, but the PDP stopped before withdrawing (its request
    record left pending): the next start withdraws it."""
    config = load_config(_written(tmp_path))
    with mock.patch.object(ApprovalBook, "withdraw_of_session", return_value=0):
        session_id, approval_id = await _asked(config)
        async with running_pdp(config) as app, pdp_stub(app.address) as stub:
            await stub.CloseSession(
                pdp_pb2.CloseSessionRequest(session_id=session_id, reason="client closed")
            )
            assert app.approvals.requests[approval_id].state == "pending"
    async with running_pdp(config) as app:
        assert app.approvals.requests[approval_id].state == "withdrawn"


async def test_two_refreshes_at_once_apply_each_approval_record_once(tmp_path):
    """A NOTIFY's refresh and the poll's at once read the same records: an approval's
    execution was counted twice by a book (its re-runs, and what the console showed)."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        sql = "UPDATE orders SET total = 0 WHERE id = 1"
        asked = await decide_sql(stub, opened.session_id, sql)
        await stub.ResolveApproval(
            pdp_pb2.ResolveApprovalRequest(
                token=token(config, "sam@example.com", ("security",)),
                approval_id=asked.approval_id,
                approve=True,
                reason="ok",
            )
        )
        ran = await decide_sql(stub, opened.session_id, sql)
        assert ran.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), ran
        assert app.approvals.requests[asked.approval_id].executions == 1
        book = ApprovalBook(app.store, app.approvals.authorize)
        book.binding_key = app.approvals.binding_key
        await asyncio.gather(book.refresh(), book.refresh())
        assert book.requests[asked.approval_id].executions == 1
