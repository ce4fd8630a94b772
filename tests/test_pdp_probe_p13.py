"""PDP probe 13 (helper evidence3): the PDP's own APIs against a compromised proxy.

A session's proxy sent a batch whose details held `Infinity` (Python's JSON reader takes
NaN and the infinities; RFC 8259 has none): RecordEvents stored it, and from then on the
session's replay, its console page and `audit verify` stopped with an OverflowError, so
one forged number hid the whole session's recording from its auditors. The PDP now
refuses the batch as not JSON, and the readers pass over such a number in a recording
stored before.

A session's proxy recorded events in the PDP's voice: `{"direction": "pdp", "type":
"session.close"}` mid-session read in the replay as `pdp  session closed: client closed`
while the session was open, and an `approval` event as the PDP's line of an approved DROP.
RecordEvents takes only what proxies record now (directions client, upstream, proxy;
types command, response, io, masking, error, unenforced), whichever way a batch is sent.

A session whose proxy the PDP lost (a crash: what it had not sent yet, up to a flush
interval of events and the commands it answered from its decision cache then, is gone)
read in the replay as any other ended session; the replay and the console now say what
may be missing.

Approvers answering one request at once (two approvers, or one approver's double click)
each found it pending: both answers were recorded and both answered as given ("denied by
kim" stood in the evidence beside the approval that counted, and kim was told nothing).
One answer settles a request now: a PDP takes one at a time, and an answer another
replica recorded first wins on every reader while the later one is refused.
"""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli
from test_pdp_probe_p11 import _timeline_of

from pdp.domain.approvals import ApprovalBook, ApprovalRefused
from pdp.domain.recordings import EVENTS_KIND, RECEIVED
from pdp.domain.timeline import render_text
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2


def _batch(decision_id: str, constant: str) -> str:
    return (
        f'[{{"time":{time.time():.6f},"direction":"client","type":"command",'
        f'"command":"SELECT id FROM orders","decision_id":"{decision_id}","verdict":"allow",'
        f'"cached":false,"details":{{"rows":{constant},"channel":{constant},'
        f'"kind":"ssh.asciicast","events":[[{constant},"o","x"]]}}}}]'
    )


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
async def test_a_number_json_has_not_is_refused_and_stops_no_reader(tmp_path, constant):
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(
                    session_id=opened.session_id, events_json=_batch(allowed.decision_id, constant)
                )
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "holds NaN or an infinity" in str(refused.value.details())
        assert not await app.store.query(kind=EVENTS_KIND, session_id=opened.session_id)
        # a recording stored before the PDP refused them: every reader passes over it
        text = _batch(allowed.decision_id, constant)
        body = {"events_json": text, "count": 1, RECEIVED: round(time.time() * 1e6)}
        await app.store.append(
            EVENTS_KIND, body, session_id=opened.session_id, subject="alice@example.com"
        )
        timeline = await _timeline_of(app.store, opened.session_id)
        assert [e.command for e in timeline.entries if e.type == "command"] == [
            "SELECT id FROM orders"
        ]
        assert render_text(timeline)
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    as_json = await asyncio.to_thread(
        _cli, config_path, "replay", opened.session_id, "--format", "json"
    )
    assert as_json.returncode == 0, as_json.stderr
    json.loads(as_json.stdout)
    verify = await asyncio.to_thread(_cli, config_path, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def _asked(stub, config):
    opened = await open_session(stub, token(config))
    asked = await decide_sql(stub, opened.session_id, "UPDATE orders SET total = 0 WHERE id = 1")
    assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
    return asked.approval_id


async def test_two_answers_at_once_settle_a_request_once(tmp_path):
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        approval_id = await _asked(stub, config)
        sam = token(config, "sam@example.com", ("security",))
        kim = token(config, "kim@example.com", ("security",))

        async def answer(approver: str, approve: bool) -> str:
            try:
                await stub.ResolveApproval(
                    pdp_pb2.ResolveApprovalRequest(
                        token=approver, approval_id=approval_id, approve=approve, reason="r"
                    )
                )
            except grpc.aio.AioRpcError as exc:
                return f"refused: {exc.details()}"
            return "approved" if approve else "denied"

        answers = await asyncio.gather(answer(sam, True), answer(kim, False), answer(sam, True))
        records = await app.store.query(kind="approval")
    assert answers[0] == "approved", answers
    assert all(a.startswith("refused: ") and "already approved" in a for a in answers[1:])
    assert [r.body["event"] for r in records] == ["requested", "approved"]


async def test_an_answer_another_replica_recorded_first_wins(tmp_path):
    """A replica sharing the store records kim's denial while sam's approval is being
    checked here: sam's is refused (its record settles nothing), never answered as given."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        approval_id = await _asked(stub, config)
        book = app.approvals
        replica = ApprovalBook(app.store, book.authorize)
        replica.binding_key = book.binding_key  # (replicas share the PDP's key)
        await replica.refresh()
        checked_here = book.authorize
        kim = {"subject": "kim@example.com", "groups": ["security"], "issuer": "portcullis-dev"}
        sam = {**kim, "subject": "sam@example.com"}

        async def meanwhile(approver, request):
            allowed = await checked_here(approver, request)
            await replica.decide(approval_id, kim, False, "not today")
            return allowed

        book.authorize = meanwhile
        with pytest.raises(ApprovalRefused, match=r"already denied by kim@example\.com"):
            await book.decide(approval_id, sam, True, "fine")
        assert book.requests[approval_id].state == "denied"
        assert book.requests[approval_id].approver == "kim@example.com"


@pytest.mark.parametrize(
    "direction, kind, shape",
    [
        ("pdp", "session.close", "json"),
        ("pdp", "command", "json"),
        ("client", "approval", "json"),
        ("upstream", "session.open", "proto"),
        ("pdp", "response", "proto"),
    ],
)
async def test_an_event_in_the_pdps_voice_is_refused(tmp_path, direction, kind, shape):
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        forged = {"time": time.time(), "direction": direction, "type": kind,
                  "command": "DROP TABLE orders", "decision_id": allowed.decision_id,
                  "verdict": "allow", "details": {"reason": "client closed"}}  # fmt: skip
        if shape == "json":
            request = pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps([forged])
            )
        else:
            forged.pop("details")
            request = pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events=[pdp_pb2.SessionEvent(**forged)]
            )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordEvents(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not one a proxy records" in str(refused.value.details())
        assert not await app.store.query(kind=EVENTS_KIND, session_id=opened.session_id)
        # what proxies record is taken
        masking = {"time": time.time(), "direction": "proxy", "type": "masking",
                   "decision_id": allowed.decision_id, "details": {"counts": {"x": 1}}}  # fmt: skip
        genuine = [{**forged, "direction": "client", "type": "command", "details": {}}, masking]
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(genuine)
            )
        )
        assert await app.store.query(kind=EVENTS_KIND, session_id=opened.session_id)
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert "session closed" not in replay.stdout, replay.stdout


async def test_a_session_whose_proxy_was_lost_says_its_last_events_may_be_missing(tmp_path):
    config_path = _written(tmp_path, session_timeout=2)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        await _record_one(stub, opened.session_id, allowed)
        # the proxy goes silent (killed): the PDP ends the session as proxy_lost
        deadline = time.monotonic() + 60
        while not await app.store.query(kind="session.close", session_id=opened.session_id):
            assert time.monotonic() < deadline, "the PDP never ended the session"
            await asyncio.sleep(0.5)
        timeline = await _timeline_of(app.store, opened.session_id)
        kinds = ("session.open", "session.close", EVENTS_KIND, "decision")
        records = {k: await app.store.query(kind=k, session_id=opened.session_id) for k in kinds}
    assert timeline.summary.close_reason == "proxy_lost"
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert "!! lost     the PDP lost this session's proxy" in replay.stdout, replay.stdout
    assert "answered from its decision cache" in replay.stdout
    from pdp.console.views.sessions import SessionsView

    page, _ = SessionsView._replay_content(
        SessionsView,  # (its rows and players are static)
        opened.session_id, 0, records["session.open"][0], records["session.close"][0],
        records[EVENTS_KIND], records["decision"], [],
    )  # fmt: skip
    assert "the PDP lost this session&#x27;s proxy" in page, page
    # a session its proxy closed says nothing of the kind
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        closed = await open_session(stub, token(config))
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=closed.session_id, reason="client closed")
        )
        assert "lost" not in (await _timeline_of(app.store, closed.session_id)).header


async def _record_one(stub, session_id: str, decision: pdp_pb2.Decision) -> None:
    event = {"time": time.time(), "direction": "client", "type": "command",
             "command": "SELECT id FROM orders", "decision_id": decision.decision_id,
             "verdict": "mask", "cached": False, "details": {}}  # fmt: skip
    await stub.RecordEvents(
        pdp_pb2.RecordEventsRequest(session_id=session_id, events_json=json.dumps([event]))
    )
