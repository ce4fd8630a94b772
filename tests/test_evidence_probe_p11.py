"""Evidence probe p11 (helper auditsec): one recorded batch, two recordings.

Attack (a session's proxy, or whoever holds its credential, with an ordinary reader's
session): RecordEvents stored a batch sent as JSON text as that very text, and read it
with Python's json, which keeps the LAST of a member named twice. A batch whose event said
`"verdict":"allow",...,"verdict":"deny"` (a command the PDP denied, recorded as run), or
whose details said `"rows":0,...,"rows":500` or `"masked":{"email":3},...,"masked":{}`,
was stored and hashed into the chain: `audit verify`, replay and the console read the
last member, while every reader that keeps the first (a SIEM the record is forwarded to,
an auditor's own tooling over the bundle's records.jsonl, Go's and many streaming
parsers) read another recording from the same signed evidence. The recorder's grammar
(the fast path that counts a batch without decoding it) let details and masked counts
repeat a name too. A member named twice in any object of a batch is now refused
(INVALID_ARGUMENT), as the bundle's own JSON refuses one (probe p9); nothing is stored.
A batch stored so before (by a PDP of an earlier release) is named by `audit verify`, of
the store and of a bundle, as a recording with two readings.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store), the batch sent as a proxy
sends it (RecordEvents, RecordBatches with the proxy's credential).
"""

from __future__ import annotations

import json
import time

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token
from test_evidence_probe_p1 import _verified
from test_pdp_probe_p7 import _written

from pdp.domain.recordings import EVENTS_KIND, RECEIVED, batch_events
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2

DENIED = "DROP TABLE orders"


def _event(decision_id: str, now: float) -> str:
    """A recorder's command event (its JSON text, as the recorder writes it), `#` where
    a test puts members of its own into the details."""
    return (
        f'{{"time":{now:.6f},"direction":"client","type":"command",'
        f'"command":{json.dumps(DENIED)},"decision_id":"{decision_id}",'
        '"verdict":"deny","cached":false,"details":{"tag":"","rows":0#}}'
    )


def _batches(decision_id: str, now: float) -> dict[str, str]:
    plain = _event(decision_id, now)
    response = (
        f'{{"time":{now + 0.01:.6f},"direction":"upstream","type":"response",'
        '"details":{"tag":"SELECT 1","rows":1#}}'
    )
    return {
        # the command the PDP denied, recorded as run: last member `allow` to Python
        "verdict twice": "["
        + plain.replace('"verdict":"deny",', '"verdict":"deny","verdict":"allow",').replace("#", "")
        + "]",
        "a detail twice": "[" + plain.replace("#", ',"rows":500') + "]",
        "masked twice": "[" + response.replace("#", ',"masked":{"email":3},"masked":{}') + "]",
        "a masked count twice": "["
        + response.replace("#", ',"masked":{"email":3,"email":0}')
        + "]",
        "a detail twice after masked": "["
        + response.replace("#", ',"masked":{"email":3},"tag":"DELETE 9"')
        + "]",
        "in a later event": "["
        + plain.replace("#", "")
        + ","
        + response.replace("#", ',"bytes":1,"bytes":2')
        + "]",
    }


@pytest.mark.parametrize(
    "case",
    [
        "verdict twice",
        "a detail twice",
        "masked twice",
        "a masked count twice",
        "a detail twice after masked",
        "in a later event",
    ],
)
async def test_a_batch_naming_a_member_twice_is_refused(tmp_path, case):
    config = pdp_config(tmp_path)
    reader = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        denied = await decide_sql(stub, opened.session_id, DENIED)
        assert denied.verdict == pdp_pb2.DENY
        text = _batches(denied.decision_id, time.time())[case]
        # two readings: the first member and the last differ
        assert json.loads(text) != json.loads(text, object_pairs_hook=lambda p: dict(p[::-1]))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events_json=text)
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "names a member twice" in (refused.value.details() or "")
        answer = await stub.RecordBatches(
            pdp_pb2.RecordBatchesRequest(
                batches=[
                    pdp_pb2.RecordEventsRequest(
                        session_id=opened.session_id, events_json=text, batch_seq=1
                    )
                ]
            )
        )
        assert "names a member twice" in answer.results[0].error
        stored = await pdp.store.query(kind=EVENTS_KIND, session_id=opened.session_id)
        assert stored == []


async def test_the_recorders_batches_are_stored_as_before(tmp_path):
    """The control: the same events with each member once (the recorder's own text, and
    a batch of other shapes) are stored and read back."""
    config = pdp_config(tmp_path)
    reader = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        denied = await decide_sql(stub, opened.session_id, DENIED)
        now = time.time()
        plain = _event(denied.decision_id, now)
        texts = [
            "[" + plain.replace("#", ',"masked":{"email":0},"x":"\\"rows\\":{\\"a\\":1}"') + "]",
            "["
            + plain.replace("#", "")
            + ","
            + plain.replace("#", ',"masked":{"email":1,"field:phone":2},"protocol":"simple"')
            + "]",
            json.dumps([{"time": now, "type": "error", "details": {"rows": 1, "n": {"rows": 2}}}]),
        ]
        for text in texts:
            answer = await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events_json=text)
            )
            assert answer.recorded == len(json.loads(text))
        stored = await pdp.store.query(kind=EVENTS_KIND, session_id=opened.session_id)
        assert [batch_events(r.body) for r in stored] == [json.loads(t) for t in texts]


async def test_verify_names_a_batch_stored_before_with_a_member_twice(tmp_path):
    """A batch an earlier PDP stored with `"verdict":"deny","verdict":"allow"` (appended
    here through the PDP's own store, as that PDP did): verify of the store and of the
    bundle says it has two readings, naming its seq; the PDP's own batches are not."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config, "rita@example.com", ("readonly",)))
        denied = await decide_sql(stub, opened.session_id, DENIED)
        now = time.time()
        text = _batches(denied.decision_id, now)["verdict twice"]
        kept = await pdp.store.append(
            EVENTS_KIND,
            {"events_json": text, "count": 1, RECEIVED: round(now * 1_000_000)},
            session_id=opened.session_id,
            subject="rita@example.com",
            plain=True,
        )
        fine = _event(denied.decision_id, now).replace("#", "")
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events_json=f"[{fine}]")
        )
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "1 batches name a member of an event twice" in said, said
        assert f"seq {kept.seq} (session {opened.session_id})" in said, said
