"""PDP probe 12 (helper evidence2): an event's time is the proxy's word.

A compromised (or clock-skewed) proxy recorded its events at whatever time it liked
(offsets of -1.8e9 s were taken) and nothing marked them, so a replay showed a command at
a time it did not run: before the session opened, before its own decision, after the
batch reached the PDP. The PDP now keeps its own time of receipt in each batch's record
(`received_us`, hashed with it), refuses a time below zero or more than five minutes
ahead of its clock, and `replay` (text, JSON), the console's timeline and `audit verify`
mark a claimed time the PDP's clock rules out; an event the proxy held (spooled while
the PDP was away) is labelled late, not forged; a recording made before receipt times
were kept reads as before, and says so.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from pg_harness import running_gateway
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli
from test_pdp_probe_p11 import _psql, _timeline_of

from pdp.domain.recordings import EVENTS_KIND
from pdp.domain.timeline import (
    CLOCK_AHEAD,
    CLOCK_BEFORE_DECISION,
    CLOCK_BEFORE_OPEN,
    build_timeline,
    render_text,
)
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2

DBA = ("dba", "pii-readers")


def _command(when: float, sql: str, decision: pdp_pb2.Decision) -> dict:
    return {"time": when, "direction": "client", "type": "command", "command": sql,
            "decision_id": decision.decision_id,
            "verdict": pdp_pb2.Verdict.Name(decision.verdict).lower(),
            "cached": False, "details": {"tag": "SELECT 1", "rows": 1}}  # fmt: skip


async def _record(stub, session_id: str, events: list[dict]) -> None:
    await stub.RecordEvents(
        pdp_pb2.RecordEventsRequest(
            session_id=session_id, events_json=json.dumps(events, separators=(",", ":"))
        )
    )


async def test_backdated_and_postdated_events_are_marked_in_replay_and_verify(tmp_path):
    """Attack: the session's proxy records SELECTs it ran now as run a billion seconds
    ago and 100 s from now. Both were taken and shown at those times, unmarked."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        texts = {n: f"SELECT id FROM orders WHERE id = {i} -- {n}"
                 for i, n in enumerate(("genuine", "backdated", "postdated"))}  # fmt: skip
        ruled = {n: await decide_sql(stub, opened.session_id, sql) for n, sql in texts.items()}
        now = time.time()
        await _record(stub, opened.session_id, [
            _command(now, texts["genuine"], ruled["genuine"]),
            _command(now - 1e9, texts["backdated"], ruled["backdated"]),
            _command(now + 100, texts["postdated"], ruled["postdated"]),
        ])  # fmt: skip
        records = await app.store.query(kind=EVENTS_KIND, session_id=opened.session_id)
        received = records[0].body["received_us"] / 1e6
        assert now - 60 < received < time.time() + 1  # the PDP's clock, not the proxy's
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    line = {n: next(x for x in replay.stdout.splitlines() if f"-- {n}" in x)
            for n in ("genuine", "backdated", "postdated")}  # fmt: skip
    assert "!!" not in line["genuine"], replay.stdout
    assert f"!! time claimed by the proxy is {CLOCK_BEFORE_OPEN}" in line["backdated"]
    assert f"!! time claimed by the proxy is {CLOCK_AHEAD}" in line["postdated"]
    assert "!! 2 event(s) at a time the proxy claims" in replay.stdout
    as_json = await asyncio.to_thread(
        _cli, config_path, "replay", opened.session_id, "--format", "json"
    )
    doc = json.loads(as_json.stdout)
    clocks = {e["command"]: e["clock"] for e in doc["events"] if e["type"] == "command"}
    assert clocks == {texts["genuine"]: "", texts["backdated"]: CLOCK_BEFORE_OPEN,
                      texts["postdated"]: CLOCK_AHEAD}  # fmt: skip
    assert doc["totals"]["clock_marked"] == 2
    assert all(e["received"] for e in doc["events"] if e["type"] == "command")
    verify = await asyncio.to_thread(_cli, config_path, "audit", "verify")
    assert "event times: 2 session events claim a time the PDP's clock rules out" in (
        verify.stdout
    ), verify.stdout + verify.stderr
    assert "before its session opened" in verify.stdout
    bundle = tmp_path / "evidence.tar.gz"
    export = await asyncio.to_thread(_cli, config_path, "audit", "export", "--out", str(bundle))
    assert export.returncode == 0, export.stdout + export.stderr
    offline = await asyncio.to_thread(_cli, config_path, "audit", "verify", "--bundle", str(bundle))
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "event times: 2 session events claim a time" in offline.stdout, offline.stdout


@pytest.mark.parametrize(
    "offset, shape",
    [(-1.8e9, "json"), (86400.0, "json"), (3600.0, "proto"), (-1.8e9, "reordered")],
)
async def test_a_time_no_clock_gives_is_refused(tmp_path, offset, shape):
    """A time below zero (offset -1.8e9 s today) or hours ahead of the PDP's clock was
    stored; now RecordEvents refuses it, whichever way the batch is sent (the recorder's
    JSON, the JSON with its keys in another order, protobuf events)."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        when = time.time() + offset
        if shape == "proto":
            request = pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id,
                events=[pdp_pb2.SessionEvent(time=when, direction="client", type="command",
                                             command="SELECT 1", verdict="allow",
                                             decision_id=allowed.decision_id)],
            )  # fmt: skip
        else:
            event = _command(when, "SELECT 1", allowed)
            if shape == "reordered":
                event = {"direction": "client", **event}
            request = pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps([event])
            )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordEvents(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "time" in (refused.value.details() or "")
        assert not await app.store.query(kind=EVENTS_KIND, session_id=opened.session_id)
        # a genuine time a little ahead (clock skew within the allowance) is taken
        await _record(stub, opened.session_id, [_command(time.time() + 1, "SELECT 1", allowed)])
        assert await app.store.query(kind=EVENTS_KIND, session_id=opened.session_id)


async def _record_before_its_decision(stub, session_id: str, early: str, genuine: str) -> None:
    """`SELECT id FROM orders` decided 3.5 s into the session, recorded as run twice: as
    `early` at the session's start (before the decision), as `genuine` after it."""
    start = time.time()
    await asyncio.sleep(3.5)  # the decision comes later than the skew allowance
    allowed = await decide_sql(stub, session_id, "SELECT id FROM orders")
    await _record(stub, session_id, [
        _command(start, early, allowed),
        _command(time.time(), genuine, allowed),
    ])  # fmt: skip


async def test_an_event_before_its_own_decision_is_marked(tmp_path):
    """Attack: a command recorded as run before the PDP decided it (after the session
    opened): shown unmarked, as if it ran under a decision not yet made."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await _record_before_its_decision(
            stub, opened.session_id, "SELECT id FROM orders", "SELECT id FROM orders"
        )
        timeline = await _timeline_of(app.store, opened.session_id)
    commands = [e for e in timeline.entries if e.type == "command"]
    assert [e.clock for e in commands] == [CLOCK_BEFORE_DECISION, ""]
    assert f"is {CLOCK_BEFORE_DECISION}" in render_text(timeline)
    # the console's timeline row says so beside the time
    from pdp.console.views.sessions import SessionsView

    marked, genuine = (str(SessionsView._entry_row(e, "s", 0, None)[0]) for e in commands)
    assert f"time ruled out: {CLOCK_BEFORE_DECISION}" in marked
    assert "badge" not in genuine


async def test_late_events_are_labelled_late_and_old_recordings_still_read(tmp_path):
    """A proxy that lost its PDP spools its events and sends them later: genuine, so
    labelled late (`(late: received Ns after its time ...)`), never `!!`. A recording
    made before receipt times were kept (no received_us) reads as before, with a note
    saying its times are the proxy's word, and is weighed against its record's time."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        await _record(
            stub, opened.session_id, [_command(time.time(), "SELECT id FROM orders", allowed)]
        )
        store = app.store
        session_open = (await store.query(kind="session.open", session_id=opened.session_id))[0]
        batch = (await store.query(kind=EVENTS_KIND, session_id=opened.session_id))[0]
        decisions = await store.query(kind="decision", session_id=opened.session_id)
    # the same batch, as the PDP would have received it ten minutes after the event
    held = replace(
        batch, body={**batch.body, "received_us": batch.body["received_us"] + 600_000_000}
    )
    timeline = build_timeline(session_open, None, [held], decisions)
    entry = next(e for e in timeline.entries if e.type == "command")
    assert entry.clock == "" and entry.late_seconds is not None and entry.late_seconds >= 599
    text = render_text(timeline)
    assert "(late: received" in text and "!!" not in text, text
    assert timeline.totals["late"] == 1
    from pdp.console.views.sessions import SessionsView

    assert "late: received" in str(SessionsView._entry_row(entry, "s", 0, None)[0])
    # before this change: no received_us; read, checked against the record's own time
    old_body = {k: v for k, v in batch.body.items() if k != "received_us"}
    old = build_timeline(session_open, None, [replace(batch, body=old_body)], decisions)
    entry = next(e for e in old.entries if e.type == "command")
    assert entry.received == "" and entry.clock == ""
    assert "recorded before the PDP kept its time of receipt" in render_text(old)


async def test_a_genuine_postgres_session_has_no_event_marked(tmp_path):
    """What the real proxy records is never marked or labelled late."""
    async with running_gateway(tmp_path) as gw:
        tok = gw.token("dana", DBA)
        run = await asyncio.to_thread(
            _psql, gw, tok, "select 1 as one; select 2;\nselect id from orders where id = 1;\n"
        )
        assert run.returncode == 0, run.stderr
        await asyncio.sleep(1.0)  # the recorder's last flush
        opened = await gw.pdp.store.query(kind="session.open")
        assert opened
        for record in opened:
            timeline = await _timeline_of(gw.pdp.store, record.session_id)
            events = [
                e for e in timeline.entries if e.type not in ("session.open", "session.close")
            ]
            assert events
            assert all(e.received for e in events)
            marked = [(e.command[:60], e.clock, e.late_seconds) for e in events
                      if e.clock or e.late_seconds is not None]  # fmt: skip
            assert not marked, marked
