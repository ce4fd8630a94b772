"""Evidence probe 6 (helper evidence8): what one batch of a proxy's can do to every reader.

A session's proxy (compromised, or whoever holds its credential) sent a batch whose JSON
held what Python's reader takes and no reader of a recording holds: an integer no double
holds (`"rows": 1e400` written as its 401 digits; a terminal frame's time, its header's
timestamp), a `\\ud800` escape (a lone surrogate, which no UTF-8 writes), or a terminal
recording whose frames are a number. RecordEvents stored it, and from then on `audit
verify` (OverflowError, TypeError), `audit export` (UnicodeEncodeError: no bundle could be
written of any window holding it) and the session's replay stopped, for good: one batch
hid the whole store's evidence from its auditors. RecordEvents now refuses such a batch
(pdp.domain.recordings.unheld, terminal_refusal), and the readers of a recording stored
before (or INSERTed) read it as text (recordings.readable) or mark it, never stop.

And the known open end of the last round: a run of a decision made for one run, recorded
at the first run's very time, was taken by replay and verify for a batch delivered twice
whenever its batch had no number (which any holder of the proxy's credential may send):
a second DELETE read as the first. A delivery twice repeats a batch whole, so that is
what is read once now (pdp.domain.batch_numbers.RecordedNumbers, numbered or not); a run
at the same time is a run.
"""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token
from test_evidence_probe_p1 import _verified
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli
from test_pdp_probe_p11 import _timeline_of

from pdp.domain.recordings import EVENTS_KIND, RECEIVED
from pdp.domain.timeline import RAN_AGAIN
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2

BIG = 10**400  # no double holds it: float() raises OverflowError


def _response(when: float, details: dict) -> dict:
    return {"time": when, "direction": "upstream", "type": "response", "details": details}


def _command(when: float, decision_id: str, command: str, details: dict) -> dict:
    return {"time": when, "direction": "client", "type": "command", "command": command,
            "decision_id": decision_id, "verdict": "allow", "cached": False,
            "details": details}  # fmt: skip


def _unheld_batches(decision_id: str, now: float) -> dict[str, str]:
    """Each batch a proxy could send that no reader holds, as the JSON text sent."""
    cast = {"kind": "ssh.asciicast", "channel": 0, "decision_id": decision_id}
    masked = {"tag": "SELECT 1", "rows": 1, "masked": {"field:email": 1}}
    return {
        "rows past a double": json.dumps([_response(now, {"tag": "SELECT 1", "rows": BIG})]),
        "a frame's time past a double": json.dumps(
            [_response(now, {**cast, "events": [[BIG, "o", "x"]]})]
        ),
        "a header's timestamp past a double": json.dumps(
            [_response(now, {**cast, "header": {"timestamp": BIG}, "events": [[0.1, "o", "x"]]})]
        ),
        "frames that are a number": json.dumps([_response(now, {**cast, "events": 5})]),
        # json.dumps escapes the lone surrogate as \ud800: valid JSON, no text
        "a lone surrogate in a masked command": json.dumps(
            [_command(now, decision_id, "SELECT email \ud800 FROM customers", masked)]
        ),
        "a lone surrogate in a detail's name": json.dumps(
            [_response(now, {"tag": "SELECT 1", "x\udc00": 1})]
        ),
    }


async def _session(stub, config):
    opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
    decided = await decide_sql(stub, opened.session_id, "SELECT email FROM customers")
    return opened.session_id, decided.decision_id


async def test_a_batch_no_reader_holds_is_refused(tmp_path):
    """Attack (the session's proxy): send each batch above, as events_json and as events
    with details_json. Each was stored. Now each is refused, naming why, and the
    session's next genuine batch is taken."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decision_id = await _session(stub, config)
        now = time.time()
        for what, text in _unheld_batches(decision_id, now).items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordEvents(
                    pdp_pb2.RecordEventsRequest(session_id=sid, events_json=text)
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
            assert "events_json[0]" in refused.value.details(), (what, refused.value.details())
            event = json.loads(text)[0]
            details, command = dict(event["details"]), event.get("command", "")
            if not command.isascii():  # (a protobuf string is UTF-8: in details_json then)
                details["statement"], command = command, ""
            plain = pdp_pb2.SessionEvent(
                time=event["time"], direction=event["direction"], type=event["type"],
                command=command, decision_id=event.get("decision_id", ""),
                verdict=event.get("verdict", ""), details_json=json.dumps(details),
            )  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordEvents(pdp_pb2.RecordEventsRequest(session_id=sid, events=[plain]))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        good = json.dumps([_response(now, {"tag": "SELECT 1", "rows": 10**15})])
        taken = await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=sid, events_json=good)
        )
        assert taken.recorded == 1
        # a surrogate pair escaped is one character, and text: taken
        pair = json.dumps([_response(now, {"tag": "SELECT 1", "note": "\U0001f600"})])
        assert "\\ud83d\\ude00" in pair
        taken = await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=sid, events_json=pair)
        )
        assert taken.recorded == 1
        assert len(await app.store.query(kind=EVENTS_KIND, session_id=sid)) == 2


async def test_a_recording_stored_before_stops_no_reader(tmp_path):
    """The same batches stored before RecordEvents refused them (written here by the
    PDP's own store, record MACs and all): `audit verify`, `audit export`, offline
    verification of the bundle and the session's replay (text and JSON) each stopped on
    one of them. Each now reads them through; the terminal recording that is none is
    marked."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decision_id = await _session(stub, config)
        frames_a_number, _ = await _session(stub, config)  # (its replay: terminal_replay)
        now = time.time()
        for what, text in _unheld_batches(decision_id, now).items():
            target = frames_a_number if what == "frames that are a number" else sid
            body = {"events_json": text, "count": 1, RECEIVED: round(now * 1e6)}
            await app.store.append(
                EVENTS_KIND, body, session_id=target, subject="alice@example.com"
            )
        # the events' list shape (protobuf events) with an integer no double holds
        listed = {"events": [_response(now, {"tag": "SELECT 1", "bytes": BIG})],
                  RECEIVED: round(now * 1e6)}  # fmt: skip
        await app.store.append(EVENTS_KIND, listed, session_id=sid, subject="alice@example.com")
    bundle = tmp_path / "evidence.tar.gz"
    online = await asyncio.to_thread(_cli, config_path, "audit", "verify")
    assert online.returncode == 0, online.stdout + online.stderr
    assert "a terminal recording whose frames are not a recording's" in online.stdout
    export = await asyncio.to_thread(_cli, config_path, "audit", "export", "--out", str(bundle))
    assert export.returncode == 0, export.stdout + export.stderr
    offline = await asyncio.to_thread(_cli, config_path, "audit", "verify", "--bundle", str(bundle))
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "a terminal recording whose frames are not a recording's" in offline.stdout
    replay = await asyncio.to_thread(_cli, config_path, "sessions", "replay", sid)
    assert replay.returncode == 0, replay.stderr
    assert "SELECT email \ufffd FROM customers" in replay.stdout, replay.stdout
    as_json = await asyncio.to_thread(
        _cli, config_path, "sessions", "replay", sid, "--format", "json"
    )
    assert as_json.returncode == 0, as_json.stderr
    rows = [e.get("rows") for e in json.loads(as_json.stdout)["events"]]
    assert None in rows  # the integer no double holds is no row count


# -- a run again at the first one's very time ------------------------------------------


def _run(when: float, sql: str, decision_id: str) -> dict:
    return _command(when, decision_id, sql, {"tag": "DELETE 1", "rows": 1, "protocol": "simple"})


@pytest.mark.parametrize("where", ["in the same batch", "in a batch of its own"])
async def test_a_run_again_at_the_first_ones_time_is_another_run(tmp_path, where):
    """Attack (the session's proxy, compromised): the PDP allows one run of a DELETE (a
    simple Query, no reuse); the proxy runs it twice and records the second run at the
    first one's very time, in batches with no number (which a proxy before the numbers
    sent, and any holder of the credential may). Replay and `audit verify` took it for
    the first batch delivered again ("taken as that one run"): a run of its own read as
    none. A delivery twice repeats a batch whole (read once); anything else is a run."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    sql = "DELETE FROM orders WHERE id = 7"
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
        sid = opened.session_id
        decided = await decide_sql(stub, sid, sql)
        assert decided.verdict == pdp_pb2.ALLOW, decided
        now = time.time()
        first = _run(now, sql, decided.decision_id)
        if where == "in the same batch":
            batches = [[first, dict(first)]]
        else:  # the second run beside another event: no batch sent again
            batches = [[first], [_response(now + 0.2, {"tag": "SELECT 0"}), dict(first)]]
        for events in batches:
            await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(session_id=sid, events_json=json.dumps(events))
            )
        timeline = await _timeline_of(app.store, sid)
    assert [e.pdp_verdict for e in timeline.entries if e.type == "command"] == ["", RAN_AGAIN]
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 1 commands recorded as let through" in said, said
        assert "allow again under a decision the PDP made for one run" in said, said


# -- a batch sent again to another replica ------------------------------------------------


async def test_a_batch_sent_again_to_another_replica_is_recorded_once(tmp_path, pg_database):
    """Two PDP replicas on one PostgreSQL store (the known open end of the last round):
    the proxy's batch 1 goes to replica B, its batch 2 to A (its stream moved), A's answer
    is lost and the proxy sends batch 2 again, to B. B knew the session's numbers as it
    read them (1), not A's 2: it stored batch 2 a second time. The record of a numbered
    batch now has the batch's own id (session, number, events), which the store takes
    once whoever writes it: B answers `replayed`. Another batch under number 2 (other
    events: a holder of the credential sending it first) is still stored."""
    store = {"type": "postgres", "dsn": pg_database}
    config = load_config(_written(tmp_path, store=store))
    second = pdp_config(tmp_path, store=store)  # its own port, the same keys
    async with (
        running_pdp(config) as first_app,
        running_pdp(second) as second_app,
        pdp_stub(first_app.address) as a,
        pdp_stub(second_app.address) as b,
    ):
        sid, decision_id = await _session(a, config)
        now = time.time()

        def batch(n: int, sql: str) -> pdp_pb2.RecordEventsRequest:
            events = [_command(now + n, decision_id, sql, {"tag": "SELECT 1", "rows": 1})]
            return pdp_pb2.RecordEventsRequest(
                session_id=sid, events_json=json.dumps(events), batch_seq=n
            )

        assert not (await b.RecordEvents(batch(1, "SELECT email FROM customers"))).replayed
        assert not (await a.RecordEvents(batch(2, "SELECT email FROM customers"))).replayed
        again = await b.RecordEvents(batch(2, "SELECT email FROM customers"))
        assert again.replayed and again.recorded == 1, again
        other = await b.RecordEvents(batch(2, "SELECT email FROM customers -- other"))
        assert not other.replayed
        stored = await first_app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert [r.body.get("batch_seq") for r in stored] == [1, 2, 2]
