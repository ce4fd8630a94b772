"""Opens whose answer never reached the proxy: the session is still closed in the evidence.

A PDP killed after it recorded a `session.open` and before its answer left (seen in
test_pdp_kill_under_load), a call that timed out while the PDP went on, a client that went
away: the proxy never held the session, and the evidence showed it opened and never
ended. The proxy now proposes the session's id in OpenSession and, when no answer came,
closes that id as `open_unanswered` once the PDP answers again; the PDP finishes an open
whose caller left (recorded and held) and lets a close naming an open under way wait for
it. Real PDP (PDPApp on SQLite), the proxies' real PDPClient.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from pdp_harness import (
    connection,
    free_port,
    pdp_config,
    pdp_stub,
    proxy_metadata,
    running_pdp,
    token,
)

from pdp.app import PDPApp
from pdp.store import AuditRecord
from portcullis.v1 import pdp_pb2
from proxies.runtime.pdp_client import OPEN_UNANSWERED, PDPClient, SessionRefused


def open_request(tok: str, session_id: str = "") -> pdp_pb2.OpenSessionRequest:
    return pdp_pb2.OpenSessionRequest(
        token=tok,
        connection=connection(),
        client_addr="127.0.0.1:50000",
        client="pytest",
        session_id=session_id,
    )


async def records(app: PDPApp, kind: str, session_id: str) -> list[AuditRecord]:
    return await app.store.query(kind=kind, session_id=session_id)


async def until_closed(app: PDPApp, session_id: str, within: float = 10) -> list[AuditRecord]:
    """The session's close records once there is one (a bound on a hung run)."""
    deadline = time.monotonic() + within
    while not (closes := await records(app, "session.close", session_id)):
        assert time.monotonic() < deadline, f"session {session_id} was never closed"
        await asyncio.sleep(0.05)
    return closes


async def test_the_proxys_session_id_is_taken_once_and_only_in_its_form(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        proposed = "s-" + uuid.uuid4().hex
        opened = await stub.OpenSession(open_request(token(config), proposed))
        assert opened.session_id == proposed
        assert len(await records(app, "session.open", proposed)) == 1
        # the same id again (a replay, or a proxy naming another's session): refused
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub.OpenSession(open_request(token(config), proposed))
        assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=proposed))
        with pytest.raises(grpc.aio.AioRpcError) as closed:  # closed: still used
            await stub.OpenSession(open_request(token(config), proposed))
        assert closed.value.code() == grpc.StatusCode.ALREADY_EXISTS
        for bad in ("s-" + "A" * 32, "s-" + "0" * 31, "x-" + "0" * 32, "s-" + "0" * 32 + "\n"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.OpenSession(open_request(token(config), bad))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(await app.store.query(kind="session.open")) == 1
        # no id proposed (an older proxy): the PDP chooses one
        chosen = await stub.OpenSession(open_request(token(config)))
        assert chosen.session_id.startswith("s-") and chosen.session_id != proposed


async def test_an_open_that_times_out_is_recorded_then_closed_as_unanswered(tmp_path):
    """The proxy's call ends at its deadline while the PDP is still deciding: the PDP
    finishes the open (recorded), and the proxy's close for it, sent as soon as the PDP
    answers again, waits for that open and closes the session."""
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app:
        decide = app.service.decider.decide

        async def slow(*args, **kwargs):
            await asyncio.sleep(2.5)  # an evaluation slower than the proxy waits
            return await decide(*args, **kwargs)

        app.service.decider.decide = slow  # type: ignore[method-assign]
        # a deadline a loaded CI machine's round trips fit in (0.2 s did not, once: every
        # close attempt timed out too, and the session was not closed within the bound)
        client = PDPClient(app.address, timeout=1.0, metadata=proxy_metadata(app.address))
        await client.start()
        try:
            with pytest.raises(SessionRefused, match="unreachable"):
                await client.open_session(token(config), connection(), "127.0.0.1:1", "pytest")
            (session_id,) = client._unanswered  # the id it proposed, to be closed
            (close,) = await until_closed(app, session_id)
            (opened,) = await records(app, "session.open", session_id)
            assert opened.seq < close.seq
            assert close.body["reason"] == OPEN_UNANSWERED
            assert close.body["abnormal"] is True
            # the close is stored before its answer reaches the client: its task ends then
            assert client._unanswered_task is not None
            await asyncio.wait_for(client._unanswered_task, 30)
            assert not client._unanswered
            # and the PDP holds nothing of it any more
            assert await app.service.sessions.find(session_id) is None
        finally:
            await client.close()


async def test_an_open_whose_caller_is_cancelled_is_closed_as_unanswered(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app:
        decide = app.service.decider.decide
        deciding = asyncio.Event()

        async def slow(*args, **kwargs):
            deciding.set()
            await asyncio.sleep(0.3)
            return await decide(*args, **kwargs)

        app.service.decider.decide = slow  # type: ignore[method-assign]
        client = PDPClient(app.address, timeout=5, metadata=proxy_metadata(app.address))
        await client.start()
        try:
            opening = asyncio.create_task(
                client.open_session(token(config), connection(), "127.0.0.1:1", "pytest")
            )
            await deciding.wait()
            opening.cancel()  # the client went away while its session was being opened
            with pytest.raises(asyncio.CancelledError):
                await opening
            (session_id,) = client._unanswered
            (close,) = await until_closed(app, session_id)
            assert close.body["reason"] == OPEN_UNANSWERED
            assert len(await records(app, "session.open", session_id)) == 1
        finally:
            await client.close()


async def test_refusals_and_a_pdp_never_reached_leave_nothing_to_close(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app:
        client = PDPClient(app.address, timeout=2, metadata=proxy_metadata(app.address))
        await client.start()
        try:
            with pytest.raises(SessionRefused):  # answered: a forged token
                await client.open_session("not.a.token", connection(), "127.0.0.1:1", "t")
            assert not client._unanswered
        finally:
            await client.close()
    nobody = PDPClient(f"127.0.0.1:{free_port()}", timeout=2)
    await nobody.start()
    try:
        with pytest.raises(SessionRefused, match="unreachable"):
            await nobody.open_session(token(config), connection(), "127.0.0.1:1", "t")
        assert not nobody._unanswered  # no connection ever carried it: nothing was recorded
    finally:
        await nobody.close()
