"""PDP probe 13 (helper evidence3): the PDP's own APIs against a compromised proxy.

A session's proxy sent a batch whose details held `Infinity` (Python's JSON reader takes
NaN and the infinities; RFC 8259 has none): RecordEvents stored it, and from then on the
session's replay, its console page and `audit verify` stopped with an OverflowError, so
one forged number hid the whole session's recording from its auditors. The PDP now
refuses the batch as not JSON, and the readers pass over such a number in a recording
stored before.
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
        assert f"{constant.lstrip('-')} is not a JSON number" in str(refused.value.details())
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
