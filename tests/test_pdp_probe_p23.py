"""PDP probe 23 (helper auditsec): one session id, two opens at once.

Attack (whoever holds a proxy's credential, with a reader's token; or a proxy retrying an
open under one id while another open of that id is decided): OpenSession takes the id a
proxy proposes once it is "never used before" (SessionTable.id_taken: held, under way,
or recorded). The check read the store and only then marked the open under way, so two
opens proposing the same id at once both found it free: both were decided and recorded
(two session.open records, two identities, for one session id in the evidence), and the
later caller was told its session was open while the table held the other's identity
under that id, so its proxy's commands were decided as the other person's. An id found
free is now claimed before the store is read; the second open is refused
(ALREADY_EXISTS) and one session.open is recorded.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store); the store's read made slow
so the two opens meet inside it every time.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
from pdp_harness import connection, pdp_config, pdp_stub, running_pdp, token

from portcullis.v1 import pdp_pb2


async def test_two_opens_of_one_id_at_once_record_one_session(tmp_path):
    config = pdp_config(tmp_path)
    rita = token(config, "rita@example.com", ("readonly",))
    sam = token(config, "sam@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        store = pdp.sessions.store
        query = store.query

        async def slow(*args, **kwargs):
            if kwargs.get("kind") == "session.open" and kwargs.get("limit") == 1:
                await asyncio.sleep(0.3)  # both opens inside the store's read at once
            return await query(*args, **kwargs)

        store.query = slow  # type: ignore[method-assign]
        session_id = "s-" + uuid.uuid4().hex

        async def opened(tok: str) -> tuple[str, str]:
            try:
                answer = await stub.OpenSession(
                    pdp_pb2.OpenSessionRequest(
                        token=tok, connection=connection(), session_id=session_id
                    )
                )
            except grpc.aio.AioRpcError as refused:
                assert refused.code() == grpc.StatusCode.ALREADY_EXISTS, refused
                return "refused", ""
            return answer.session_id, answer.identity.subject

        answers = await asyncio.gather(opened(rita), opened(sam))
        store.query = query  # type: ignore[method-assign]
        records = await pdp.store.query(kind="session.open", session_id=session_id)
        assert len(records) == 1, (answers, [r.subject for r in records])
        assert sorted(a[0] for a in answers) == sorted(["refused", session_id])
        # the one told its session is open is the identity the table holds under the id
        subject = next(s for sid, s in answers if sid == session_id)
        held = await pdp.sessions.find(session_id)
        assert held is not None and held.identity.subject == subject == records[0].subject


async def test_an_id_proposed_again_after_its_open_is_refused(tmp_path):
    """The control: one open proposing an id opens it; the same id proposed again (after
    it was recorded) is refused, and a new id opens."""
    config = pdp_config(tmp_path)
    rita = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        session_id = "s-" + uuid.uuid4().hex
        request = pdp_pb2.OpenSessionRequest(
            token=rita, connection=connection(), session_id=session_id
        )
        assert (await stub.OpenSession(request)).session_id == session_id
        try:
            await stub.OpenSession(request)
        except grpc.aio.AioRpcError as refused:
            assert refused.code() == grpc.StatusCode.ALREADY_EXISTS
        else:
            raise AssertionError("an id used before was taken again")
        other = "s-" + uuid.uuid4().hex
        again = pdp_pb2.OpenSessionRequest(token=rita, connection=connection(), session_id=other)
        assert (await stub.OpenSession(again)).session_id == other
        assert len(await pdp.store.query(kind="session.open", session_id=session_id)) == 1
