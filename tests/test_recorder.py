"""The proxy-side recorder's delivery: one batch per flush, nothing lost, failures halt.

These run the recorder against a stand-in for the PDP client's `record` call only, to
pin the batching rule (a busy session used to degenerate into a stream of tiny
RecordEvents calls, each a write to the audit store); delivery to a real PDP is
covered by the proxy and evidence tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdp_harness import (
    hand_over_keys,
    open_session,
    pdp_config,
    pdp_stub,
    proxy_metadata,
    running_pdp,
    token,
)

from pdp.domain.recordings import (
    EVENTS_KIND,
    MalformedEvents,
    _fully_checked_batch,
    _recorder_batch_size,
    batch_events,
    checked_batch,
    session_events,
)
from portcullis.events import (
    MAX_MASKED_COUNT,
    MAX_MASKED_KEY,
    MAX_MASKED_KEYS,
    MAX_REPEAT,
    masked_details,
)
from portcullis.v1 import pdp_pb2
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.pdp_client import PDPClient, Ruling
from proxies.runtime.recorder import (
    FLUSH_SECONDS,
    MAX_BATCH,
    MAX_RUN_TEXT,
    RecordingTick,
    SessionRecorder,
    spooled,
    statement_room,
    until_next_flush,
)
from proxies.runtime.spool import STORED, UNREACHABLE, Entry, Spool, SpoolFull


class SlowPDP:
    """Takes a while per RecordEvents, like a PDP under load; remembers every batch."""

    def __init__(self, delay: float = 0.01, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.batches: list[list[str]] = []

    async def record(self, session_id: str, events: list, seq: int = 0) -> bool:
        await asyncio.sleep(self.delay)
        if self.fail:
            return False
        self.batches.append(_commands(events))
        return True


ALLOWED = Ruling(Verdict(VerdictKind.ALLOW), decision_id="d-1")


def _commands(events: list[str]) -> list[str]:
    """The command of each statement a batch stands for, runs expanded as the PDP reads them."""
    return [e["command"] for e in batch_events({"events_json": "[" + ",".join(events) + "]"})]


async def test_a_flush_sends_what_was_pending_even_while_events_keep_arriving():
    pdp = SlowPDP(delay=0.01)
    recorder = SessionRecorder(pdp, "s-1")  # type: ignore[arg-type]
    for i in range(10):
        recorder.command(f"select {i}", ALLOWED)

    async def busy_client() -> None:
        for i in range(10, 60):
            recorder.command(f"select {i}", ALLOWED)
            await asyncio.sleep(0.001)

    client = asyncio.create_task(busy_client())
    assert await recorder.flush()
    assert len(pdp.batches) == 1 and pdp.batches[0] == [f"select {i}" for i in range(10)]
    await client
    assert await recorder.flush()
    assert len(pdp.batches) == 2
    sent = [command for batch in pdp.batches for command in batch]
    assert sent == [f"select {i}" for i in range(60)]  # all of them, once, in order


async def test_a_large_backlog_goes_in_batches_of_at_most_max_batch():
    pdp = SlowPDP(delay=0)
    recorder = SessionRecorder(pdp, "s-1")  # type: ignore[arg-type]
    for i in range(MAX_BATCH * 2 + 7):  # each answered its own way: no two in one run
        recorder.command(f"select {i}", ALLOWED, rows=i)
    assert await recorder.flush()
    assert [len(b) for b in pdp.batches] == [MAX_BATCH, MAX_BATCH, 7]


async def test_a_failed_delivery_keeps_the_events_and_marks_the_recording_unavailable():
    pdp = SlowPDP(delay=0, fail=True)
    recorder = SessionRecorder(pdp, "s-1")  # type: ignore[arg-type]
    recorder.command("select 1", ALLOWED)
    assert not await recorder.flush()
    assert recorder.unavailable
    pdp.fail = False
    assert await recorder.flush()
    assert not recorder.unavailable
    assert pdp.batches == [["select 1"]]


def test_the_next_flush_is_on_the_shared_tick_whenever_a_recorder_asks():
    for now in (0.0, 0.1, 12.345, 1e6 + 0.49):
        wait = until_next_flush(now)
        assert 0 < wait <= FLUSH_SECONDS
        ticks = (now + wait) / FLUSH_SECONDS
        assert abs(ticks - round(ticks)) < 1e-6


async def test_sessions_opened_at_different_moments_flush_on_the_same_ticks(monkeypatch):
    """Whenever a session opens, its flushes fall on the proxy-wide tick grid, so the
    batches of all sessions reach the PDP together and share its commit."""
    monkeypatch.setattr("proxies.runtime.recorder.FLUSH_SECONDS", 0.2)
    aimed_at: list[float] = []

    def remembered(now: float | None = None) -> float:
        wait = until_next_flush(now)
        aimed_at.append(time.monotonic() + wait)
        return wait

    monkeypatch.setattr("proxies.runtime.recorder.until_next_flush", remembered)
    pdp = SlowPDP(delay=0)
    recorders = []
    for i in range(3):
        recorder = SessionRecorder(pdp, f"s-{i}")  # type: ignore[arg-type]
        recorder.start()
        recorders.append(recorder)
        await asyncio.sleep(0.05)  # opened 50 ms apart
    await asyncio.sleep(0.25)
    for recorder in recorders:
        await recorder.close()
    assert len(aimed_at) >= 3
    for instant in aimed_at:
        ticks = instant / 0.2
        assert abs(ticks - round(ticks)) < 1e-3


# -- the PDP's side: a batch as JSON text is checked, stored as it arrived, read back --


def test_checked_batch_names_the_first_bad_field():
    good = {"time": 1.5, "direction": "client", "type": "command", "command": "select 1"}
    assert checked_batch(json.dumps([good, good]), 10, 100) == 2
    bad = [
        ("not json", "events_json: not JSON"),
        ('{"time": 1}', "must be a JSON array"),
        (json.dumps([good] * 11), "more than 10"),
        (json.dumps([good, 5]), "events_json[1]: must be an object"),
        (json.dumps([{**good, "time": "now"}]), "events_json[0].time"),
        (json.dumps([{**good, "time": True}]), "events_json[0].time"),
        (json.dumps([{**good, "direction": "x" * 33}]), "events_json[0].direction"),
        (json.dumps([{**good, "command": "x" * 101}]), "events_json[0].command"),
        (json.dumps([{**good, "cached": "yes"}]), "events_json[0].cached"),
        (json.dumps([{**good, "details": []}]), "events_json[0].details"),
        (json.dumps([{**good, "secret": "x"}]), "unknown field 'secret'"),
    ]
    for text, problem in bad:
        with pytest.raises(MalformedEvents, match=re.escape(problem)):
            checked_batch(text, 10, 100)
    for when in ("NaN", "Infinity", "1e999", "true", "null"):
        with pytest.raises(MalformedEvents, match=r"events_json\[0\]\.time"):
            checked_batch(f'[{{"time": {when}}}]', 10, 100)
    # no overflow: refused (no reader holds it: tests/test_evidence_probe_p6.py)
    with pytest.raises(MalformedEvents, match=r"events_json\[0\]: holds an integer"):
        checked_batch('[{"time": ' + "9" * 400 + "}]", 10, 100)
    deep = '[{"time": 1.5, "details": ' + "[" * 100_000 + "]" * 100_000 + "}]"
    with pytest.raises(MalformedEvents, match="nested too deep"):
        checked_batch(deep, 10, 100)  # deeper than the parser goes: refused, not a crash


async def test_the_pdp_stores_a_json_batch_as_sent_and_replays_it(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid = (await open_session(stub, token(config))).session_id
        client = hand_over_keys(PDPClient(app.address, metadata=proxy_metadata(app.address)))
        await client.start()
        try:
            events = [
                {"time": 10.0 + i, "direction": "client", "type": "command",
                 "command": f"select {i}", "decision_id": "d-x", "verdict": "allow",
                 "cached": i > 0, "details": {"rows": 1, "tag": "SELECT 1"}}
                for i in range(3)
            ]  # fmt: skip
            assert await client.record(sid, [json.dumps(e) for e in events])
            assert await client.record(sid, [])  # a heartbeat stores nothing
        finally:
            await client.close()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(session_id=sid, events_json='[{"time": "x"}]')
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "events_json[0].time" in (err.value.details() or "")
        bad = pdp_pb2.RecordEventsRequest(
            session_id=sid, events_json=json.dumps([{**events[0], "repeat_us": [5, -1]}])
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RecordEvents(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "events_json[0].repeat_us" in (err.value.details() or "")
        deep = '[{"time": 1.5, "details": ' + "[" * 100_000 + "]" * 100_000 + "}]"
        with pytest.raises(grpc.aio.AioRpcError) as err:  # refused as malformed, not UNKNOWN
            await stub.RecordEvents(pdp_pb2.RecordEventsRequest(session_id=sid, events_json=deep))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert len(records) == 1 and records[0].body["count"] == 3
        assert json.loads(records[0].body["events_json"]) == events
        replayed = await session_events(app.store, sid)
        assert [e["command"] for e in replayed] == ["select 0", "select 1", "select 2"]
        assert all(e["session_id"] == sid for e in replayed)
        assert (await app.store.verify()).ok


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=40),
    st.text(max_size=20),
    st.booleans(),
    st.sampled_from(list(VerdictKind)),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_a_command_event_is_the_json_of_its_fields(raw, decision_id, cached, kind, details):
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    recorder.command(raw, Ruling(Verdict(kind), decision_id=decision_id, cached=cached), **{
        f"d_{k}": v for k, v in details.items()
    })  # fmt: skip
    (text,) = recorder._due() or []
    event = json.loads(text)
    assert isinstance(event.pop("time"), float)
    assert event == {
        "direction": "client",
        "type": "command",
        "command": raw,
        "decision_id": decision_id,
        "verdict": kind.wire,
        "cached": cached,
        "details": {f"d_{k}": v for k, v in details.items()},
    }
    assert checked_batch(f"[{text}]", 1, 10**6) == 1


def test_a_remembered_tail_never_stands_for_details_that_only_compare_equal():
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    for rows in (1, True, 1.0, 1):
        recorder.command("select 1", ALLOWED, rows=rows)
    texts = recorder._due() or []
    assert [json.loads(text)["details"]["rows"] for text in texts] == [1, True, 1.0, 1]
    assert [type(json.loads(t)["details"]["rows"]) for t in texts] == [
        int,
        bool,
        float,
        int,
    ]


def test_a_statement_tail_never_stands_for_details_that_only_compare_equal():
    """A statement's usual details (tag, rows, protocol) are keyed by their three values
    (statement()'s key): only when rows is a whole number, and only in that order."""
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    recorder.statement("select 1", ALLOWED, "SELECT 1", 1, "simple")
    for rows in (True, 1.0, 1):
        recorder.command("select 1", ALLOWED, tag="SELECT 1", rows=rows, protocol="simple")
    recorder.command("select 1", ALLOWED, rows=1, tag="SELECT 1", protocol="simple")
    recorder.statement("select 1", ALLOWED, "SELECT 1", 1, "simple")
    events = [json.loads(text) for text in recorder._due() or []]
    assert [list(e["details"].items()) for e in events] == [
        [("tag", "SELECT 1"), ("rows", 1), ("protocol", "simple")],
        [("tag", "SELECT 1"), ("rows", True), ("protocol", "simple")],
        [("tag", "SELECT 1"), ("rows", 1.0), ("protocol", "simple")],
        [("tag", "SELECT 1"), ("rows", 1), ("protocol", "simple")],
        [("rows", 1), ("tag", "SELECT 1"), ("protocol", "simple")],
        [("tag", "SELECT 1"), ("rows", 1), ("protocol", "simple")],
    ]
    assert [type(e["details"]["rows"]) for e in events] == [int, bool, float, int, int, int]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3))
def test_a_response_event_is_the_json_of_its_fields(details):
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    recorder.response(**{f"d_{k}": v for k, v in details.items()})
    (text,) = recorder._due() or []
    event = json.loads(text)
    assert isinstance(event.pop("time"), float)
    assert event == {
        "direction": "upstream",
        "type": "response",
        "details": {f"d_{k}": v for k, v in details.items()},
    }
    assert checked_batch(f"[{text}]", 1, 10**6) == 1


# -- the PDP's fast path for the recorder's own batches never accepts more ------------


def _recorded(
    commands: list[str],
    cached: bool = True,
    repeats: int = 1,
    alike: bool = False,
    masked: dict[str, int] | None = None,
) -> str:
    """A batch as the recorder sends it: each command, then `repeats` executions of it
    as a prepared statement (one response event, repeated); or, `alike`, the commands
    only, all allowed by one decision with one kind of result (one run of commands).
    With `masked`, every statement masked that much (ProxySession.record_masking's call)."""
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    if alike:
        for raw in commands:
            recorder.command(raw, ALLOWED, tag="SELECT 1", rows=1, protocol="simple")
            if masked:
                recorder.masking(masked, ALLOWED.decision_id)
        return "[" + ",".join(recorder._due() or []) + "]"
    for i, raw in enumerate(commands):
        ruling = Ruling(Verdict(VerdictKind.ALLOW), decision_id=f"d-{i}", cached=cached)
        recorder.command(raw, ruling, tag="SELECT 1", rows=i, protocol="simple")
        if masked:
            recorder.masking(masked, f"d-{i}")
        for _ in range(repeats):
            recorder.response(decision_id=f"d-{i}", tag=raw[:8], rows=i, protocol="extended")
            if masked:
                recorder.masking(masked, f"d-{i}")
    return "[" + ",".join(recorder._due() or []) + "]"


# masking counts as the tracker makes them: a column's or detector's name, how many values
mask_names = st.one_of(
    st.sampled_from(["field:email", "derived:shout", "detector:ssn", "unknown_columns"]),
    st.text(max_size=12).map(lambda name: f"field:{name}"),
)
mask_counts = st.dictionaries(mask_names, st.integers(1, 10**6), max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=6), st.booleans(), st.integers(1, 4))
def test_the_recorders_batches_take_the_fast_path_and_agree_with_the_full_check(
    commands, cached, repeats
):
    text = _recorded(commands, cached, repeats)
    assert _recorder_batch_size(text, 1000, 10**6) == 2 * len(commands)
    assert _fully_checked_batch(text, 1000, 10**6) == 2 * len(commands)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=6), st.integers(1, 4), mask_counts)
def test_masked_statements_agree_between_the_fast_path_and_the_full_check(
    commands, repeats, masked
):
    text = _recorded(commands, True, repeats, masked=masked)
    plain = all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_:. @-]*", name) for name in masked)
    fast = _recorder_batch_size(text, 1000, 10**6)
    if commands:  # (an empty batch has no name in it)
        assert fast == (2 * len(commands) if plain else None)  # other names: the full check
    assert _fully_checked_batch(text, 1000, 10**6) == 2 * len(commands)
    assert '"type":"masking"' not in text
    events = batch_events({"events_json": text})
    assert all(e["details"].get("masked", {}) == masked_details(masked) for e in events)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.text(max_size=12), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3),
                       st.text(max_size=3) | st.sampled_from(['"masked":', "{", "}", ":1", "-1",
                                                               ",", '"a"', "1.5", "[]"])),
             min_size=1, max_size=3),
    st.booleans(),
    st.none() | mask_counts,
)  # fmt: skip
def test_whatever_the_fast_path_accepts_the_full_check_accepts_alike(
    commands, edits, alike, masked
):
    text = _recorded(commands, alike=alike, masked=masked)
    for at, how, chars in edits:  # insert, delete or overwrite somewhere
        at %= len(text) + 1
        if how == 0:
            text = text[:at] + chars + text[at:]
        elif how == 1:
            text = text[:at] + text[at + len(chars) + 1 :]
        else:
            text = text[:at] + chars + text[at + len(chars) :]
    fast = _recorder_batch_size(text, 1000, 10**6)
    if fast is not None:
        assert _fully_checked_batch(text, 1000, 10**6) == fast


# -- the same response again: one event with the gaps, expanded by every reader ------


def test_responses_in_a_row_are_one_event_with_the_gaps_and_read_back_one_by_one(monkeypatch):
    clock = iter([100.0, 100.000250, 100.001, 100.0015, 100.002, 100.003, 100.004])
    monkeypatch.setattr(time, "time", lambda: next(clock))
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    same = {"decision_id": "d-1", "tag": "SELECT 1", "rows": 1, "protocol": "extended"}
    for _ in range(3):
        recorder.response(**same)
    recorder.response(**{**same, "rows": 0})  # another kind of result: a new event
    recorder.command("select 2", ALLOWED, tag="SELECT 1", rows=1, protocol="simple")
    recorder.response(**same)  # after a command: a new run, so the order stays
    recorder.response(**same)
    texts = recorder._due() or []
    assert [json.loads(t).get("repeat_us") for t in texts] == [[250, 750], None, None, [1000]]
    text = "[" + ",".join(texts) + "]"
    assert _recorder_batch_size(text, 1000, 10**6) == _fully_checked_batch(text, 1000, 10**6) == 4
    events = batch_events({"events_json": text, "count": 4})
    assert [(e["type"], e["time"]) for e in events] == [
        ("response", 100.0),
        ("response", 100.00025),
        ("response", 100.001),
        ("response", 100.0015),
        ("command", 100.002),
        ("response", 100.003),
        ("response", 100.004),
    ]
    assert all("repeat_us" not in e for e in events)
    assert [e["details"]["rows"] for e in events if e["type"] == "response"] == [1, 1, 1, 0, 1, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), min_size=1, max_size=6))
def test_commands_decided_and_answered_alike_are_one_run_that_reads_back_text_by_text(commands):
    text = _recorded(commands, alike=True)
    assert text.count('{"time":') == 1
    assert _recorder_batch_size(text, 1000, 10**6) == _fully_checked_batch(text, 1000, 10**6) == 1
    events = batch_events({"events_json": text})
    assert [e["command"] for e in events] == commands
    assert all(e["decision_id"] == "d-1" and e["details"]["rows"] == 1 for e in events)
    times = [e["time"] for e in events]
    assert times == sorted(times)


def test_a_run_stands_for_at_most_max_repeat_responses_after_its_first():
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    for _ in range(MAX_REPEAT + 2):
        recorder.response(decision_id="d-1", tag="SELECT 1", rows=1, protocol="extended")
    texts = recorder._due() or []
    assert [len(json.loads(t).get("repeat_us", [])) for t in texts] == [MAX_REPEAT, 0]
    text = "[" + ",".join(texts) + "]"
    assert _recorder_batch_size(text, 1000, 10**6) == 2
    assert len(batch_events({"events_json": text})) == MAX_REPEAT + 2


def test_a_run_takes_a_bounded_amount_of_command_text():
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    commands = [f"select '{i:04}{'x' * 1000}'" for i in range(200)]
    for raw in commands:
        recorder.command(raw, ALLOWED, tag="SELECT 1", rows=1, protocol="simple")
    texts = recorder._due() or []
    # the bound, plus the command that crossed it and the run's first command (each with
    # its gap: up to 7 digits on a loaded machine), plus the event's other fields
    most = MAX_RUN_TEXT + 2 * (max(map(len, commands)) + 16) + 200
    assert len(texts) > 1 and all(len(t) < most for t in texts)
    assert [e["command"] for e in batch_events({"events_json": f"[{','.join(texts)}]"})] == commands


def test_the_full_check_names_a_bad_run():
    command, response = json.loads(_recorded(["select 1"], repeats=3))
    assert response["repeat_us"] and all(type(gap) is int for gap in response["repeat_us"])
    bad_runs = ([-1], [1.5], [True], "12", [10**10], [1] * (MAX_REPEAT + 1), [[1, 2]],
                [[1, "x", 2]], [["1", "x"]], [[1, "x" * 101]])  # fmt: skip
    for event in (command, response):
        for bad in bad_runs:
            text = json.dumps([{**event, "repeat_us": bad}], separators=(",", ":"))
            assert _recorder_batch_size(text, 1000, 100) is None
            with pytest.raises(MalformedEvents, match=r"events_json\[0\]\.repeat_us"):
                checked_batch(text, 1000, 100)
    pair = [5, [7, "select 2"]]
    text = json.dumps([{**response, "repeat_us": pair}])  # a response has no text of its own
    with pytest.raises(MalformedEvents, match=r"events_json\[0\]\.repeat_us"):
        checked_batch(text, 1000, 100)
    text = json.dumps([{**command, "repeat_us": pair}], separators=(",", ":"))
    assert checked_batch(text, 1000, 100) == 1  # (not where the recorder puts it: no fast path)
    assert [e["command"] for e in batch_events({"events_json": text})] == [
        "select 1", "select 1", "select 2"
    ]  # fmt: skip


def test_a_statements_masking_counts_ride_in_its_event_and_alike_statements_make_one_run():
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    counts = {"field:email": 1, "derived:shout": 1, "detector:ssn": 2}
    for n in range(3):
        recorder.command(f"select {n}", ALLOWED, tag="SELECT 1", rows=1, protocol="simple")
        recorder.masking(dict(reversed(counts.items())), ALLOWED.decision_id)  # any order
    recorder.command("select 9", ALLOWED, tag="SELECT 1", rows=1, protocol="simple")
    recorder.masking({"field:email": 1}, ALLOWED.decision_id)  # masked otherwise: a new run
    recorder.command("select 10", ALLOWED, tag="SELECT 0", rows=0, protocol="simple")
    recorder.response(decision_id="d-1", tag="SELECT 1", rows=1, protocol="extended")
    recorder.masking(counts, "d-1")  # an execution's counts: in its response event
    recorder.masking(counts, "d-1")  # once only: more counts are an event of their own
    recorder.masking(counts, "d-other")  # counts of no held statement: an event of their own
    texts = recorder._due() or []
    events = [json.loads(t) for t in texts]
    assert [(e["type"], len(e.get("repeat_us", []))) for e in events] == [
        ("command", 2), ("command", 0), ("command", 0), ("response", 0),
        ("masking", 0), ("masking", 0),
    ]  # fmt: skip
    assert events[0]["details"]["masked"] == dict(sorted(counts.items()))
    assert events[1]["details"]["masked"] == {"field:email": 1}
    assert "masked" not in events[2]["details"]
    assert events[3]["details"]["masked"] == dict(sorted(counts.items()))
    assert [e["decision_id"] for e in events[4:]] == ["d-1", "d-other"]
    statements = "[" + ",".join(texts[:4]) + "]"
    assert _recorder_batch_size(statements, 1000, 10**6) == 4  # the fast path takes them
    expanded = batch_events({"events_json": statements})
    assert [e.get("command") for e in expanded] == [
        "select 0", "select 1", "select 2", "select 9", "select 10", None
    ]  # fmt: skip
    assert [sum(e["details"].get("masked", {}).values()) for e in expanded] == [4, 4, 4, 1, 0, 4]


def test_masking_counts_are_bounded_in_shape():
    assert masked_details({"b": 2, "a": 1, "zero": 0, "x" * 500: 3}) == {
        "a": 1, "b": 2, "x" * MAX_MASKED_KEY: 3
    }  # fmt: skip
    assert masked_details({"a": 10**20}) == {"a": MAX_MASKED_COUNT}
    many = masked_details({f"field:c{i:05}": 1 for i in range(MAX_MASKED_KEYS + 10)})
    assert len(many) == MAX_MASKED_KEYS and many["more"] == 11


def test_the_checks_hold_details_masked_to_its_shape():
    event = json.loads(_recorded(["select 1"], masked={"field:email": 2}))[0]
    assert event["details"]["masked"] == {"field:email": 2}
    bad = [1, "x", None, [], [["a", 1]], {"a": -1}, {"a": 1.5}, {"a": True}, {"a": "1"},
           {"a": MAX_MASKED_COUNT + 1}, {"k" * (MAX_MASKED_KEY + 1): 1},
           {f"k{i}": 1 for i in range(MAX_MASKED_KEYS + 1)}]  # fmt: skip
    for counts in bad:
        for form in (event, {**event, "details": {"tag": "SELECT 1", "masked": counts}}):
            form = {**form, "details": {**form["details"], "masked": counts}}
            text = json.dumps([form], separators=(",", ":"))
            assert _recorder_batch_size(text, 1000, 10**6) is None
            with pytest.raises(MalformedEvents, match=r"events_json\[0\]\.details\.masked"):
                checked_batch(text, 1000, 10**6)
    # a name past the fast path's plain letters is the full check's to take
    for counts in ({"field:é-mail": 1}, {'field:"q"': 1}, {"field:a\nb": 1}, {}):
        form = {**event, "details": {**event["details"], "masked": counts}}
        text = json.dumps([form], separators=(",", ":"), ensure_ascii=False)
        if counts:
            assert _recorder_batch_size(text, 1000, 10**6) is None
        assert checked_batch(text, 1000, 10**6) == 1
    # a `masked` that is not counts never passes as a scalar detail, wherever it stands
    for text in (
        '[{"time":1,"direction":"upstream","type":"response","details":{"masked":1}}]',
        '[{"time":1,"direction":"upstream","type":"response","details":'
        '{"masked":{"a":1},"masked":"x"}}]',
    ):
        assert _recorder_batch_size(text, 1000, 10**6) is None
        with pytest.raises(MalformedEvents, match=r"details\.masked"):
            checked_batch(text, 1000, 10**6)


def test_the_fast_path_leaves_the_unusual_to_the_full_check():
    event = json.loads(_recorded(["select 1"]))[0]
    unusual = [
        {**event, "time": 1e300},  # written with an exponent
        {**event, "decision_id": 'd-"quoted"'},  # an escape in an id
        {**event, "details": {"counts": {"email": 3}}},  # nested details
        {**event, "type": "masking"},  # another event type
    ]
    for item in unusual:
        text = json.dumps([item], separators=(",", ":"), ensure_ascii=False)
        assert _recorder_batch_size(text, 1000, 10**6) is None
        assert _fully_checked_batch(text, 1000, 10**6) == 1
    long_batch = _recorded(["x" * 50])
    assert _recorder_batch_size(long_batch, 1000, 20) is None  # longer than a command may be
    with pytest.raises(MalformedEvents, match="command"):
        checked_batch(long_batch, 1000, 20)
    many = _recorded(["select 1"] * 3)
    assert _recorder_batch_size(many, 2, 10**6) is None
    with pytest.raises(MalformedEvents, match="more than 2"):
        checked_batch(many, 2, 10**6)


# -- one flush tick for all of a proxy's sessions: one RecordBatches call ------------


class BatchPDP(SlowPDP):
    """Answers RecordBatches; sessions named in `refuse` are not stored."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        super().__init__(delay=0)
        self.refuse = refuse
        self.calls: list[list[tuple[str, list[str]]]] = []

    async def record_batches(self, batches: list[tuple]) -> list[bool]:
        self.calls.append([(sid, _commands(ev)) for sid, ev, *_ in batches])
        return [sid not in self.refuse for sid, *_ in batches]


async def test_a_tick_sends_every_sessions_events_in_one_call():
    pdp = BatchPDP(refuse=frozenset({"s-2"}))
    tick = RecordingTick(pdp)  # type: ignore[arg-type]
    recorders = [SessionRecorder(pdp, f"s-{i}", tick=tick) for i in range(3)]  # type: ignore[arg-type]
    for i, recorder in enumerate(recorders):
        tick.join(recorder)
        recorder.command(f"select {i}", ALLOWED)
    await tick.flush()
    assert pdp.calls == [[("s-0", ["select 0"]), ("s-1", ["select 1"]), ("s-2", ["select 2"])]]
    assert [r.unavailable for r in recorders] == [False, False, True]
    assert [len(r._pending) for r in recorders] == [0, 0, 1]  # kept for the next try

    await tick.flush()  # nothing new: only the refused session's events go again
    assert pdp.calls[-1] == [("s-2", ["select 2"])]

    async with recorders[0]._sending:  # a session busy with its own delivery waits a tick
        recorders[0].command("select 3", ALLOWED)
        await tick.flush()
    assert all(sid != "s-0" for sid, _ in pdp.calls[-1])
    await tick.close()


async def test_the_pdp_stores_several_sessions_batches_each_with_its_own_answer(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        first = (await open_session(stub, token(config))).session_id
        second = (await open_session(stub, token(config))).session_id
        good = json.dumps(json.loads(_recorded(["select 1"]))[:1])  # one command event
        answer = await stub.RecordBatches(
            pdp_pb2.RecordBatchesRequest(
                batches=[
                    pdp_pb2.RecordEventsRequest(session_id=first, events_json=good),
                    pdp_pb2.RecordEventsRequest(session_id="nobody", events_json=good),
                    pdp_pb2.RecordEventsRequest(session_id=second, events_json='[{"time": "x"}]'),
                    pdp_pb2.RecordEventsRequest(session_id=second, events_json=good),
                    pdp_pb2.RecordEventsRequest(session_id=second),  # a heartbeat
                ]
            )
        )
        results = list(answer.results)
        assert [r.recorded for r in results] == [1, 0, 0, 1, 0]
        assert results[0].decision_id and results[3].decision_id and not results[4].error
        assert "unknown" in results[1].error and "events_json[0].time" in results[2].error
        for sid in (first, second):
            (record,) = await app.store.query(kind=EVENTS_KIND, session_id=sid)
            assert record.body["count"] == 1
        assert (await app.store.verify()).ok


async def test_a_tick_of_more_sessions_than_one_call_takes_is_stored_in_several(tmp_path):
    """A proxy with more sessions due in one tick than the PDP takes in one RecordBatches
    call (MAX_BATCHES_PER_CALL): the PDP refused the call whole (invalid_argument) and
    every one of those sessions halted — 9,000 idle sessions' heartbeats, bench_idle."""
    from portcullis.wire import MAX_BATCHES_PER_CALL

    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        count = MAX_BATCHES_PER_CALL + 50
        batches = [(opened.session_id, [])] * (count - 1) + [("nobody", [])]
        client = hand_over_keys(PDPClient(app.address, metadata=proxy_metadata(app.address)))
        await client.start()
        try:
            outcomes = await client.record_batches_outcomes(batches)
        finally:
            await client.close()
        assert outcomes == [STORED] * (count - 1) + ["refused"], set(outcomes)
        assert client.recording_failure == ""


async def test_a_failed_delivery_names_why_and_a_stored_one_clears_it(tmp_path):
    """What a session halted for its recording tells its client: why the last delivery
    failed (a PDP that cannot be reached), cleared by the next delivery that is stored."""
    from pdp_harness import free_port

    nowhere = PDPClient(f"127.0.0.1:{free_port()}", timeout=0.5)
    await nowhere.start()
    try:
        assert await nowhere.record_batches([("s-1", ['{"time":1}'])]) == [False]
        assert nowhere.recording_failure == "policy decision point unreachable"
    finally:
        await nowhere.close()
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        client = hand_over_keys(PDPClient(app.address, metadata=proxy_metadata(app.address)))
        await client.start()
        try:
            client.recording_failure = "policy decision point unreachable"
            assert await client.record(opened.session_id, [])  # a heartbeat, stored
            assert client.recording_failure == ""
        finally:
            await client.close()


# -- room in the spool: no statement runs unless its events are sure of a place ----------


class DeliveringPDP:
    """The PDP client's `deliver`: stores every batch while `up`, unreachable otherwise."""

    def __init__(self) -> None:
        self.up = True
        self.stored: list[str] = []

    def seal(self, session_id: str, rpc: str, request: object) -> str:
        return ""  # (holds no session's key: its spooled entries go unsealed)

    async def deliver(self, session_id: str, request: object, count: int = 0) -> str:
        if not self.up:
            return UNREACHABLE
        self.stored.extend(_command_texts(getattr(request, "events_json", "[]")))
        return STORED


def _command_texts(events_json: str) -> list[str]:
    events = batch_events({"events_json": events_json})
    return [e["command"] for e in events if e["type"] == "command"]


def _spooled_commands(spool: Spool) -> list[str]:
    return [c for e in spool.entries if e.close is None for c in _command_texts(e.events)]


async def test_a_statement_runs_only_while_the_spool_can_hold_its_sessions_events(tmp_path):
    spool = Spool(tmp_path, "orders-db", max_bytes=8 * 1024)
    spool.open()
    pdp = DeliveringPDP()
    recorder = SessionRecorder(pdp, "s-1", spool=spool)  # type: ignore[arg-type]
    try:
        ran = []
        pdp.up = False
        for n in range(1000):  # the PDP is dead: every flush goes into the spool
            command = f"insert into t values ({n}, '{'x' * 40}')"
            if not recorder.admit(len(command)):
                break
            ran.append(command)
            recorder.command(command, ALLOWED, rows=n)  # answered alike: no runs
            recorder.response(rows=n, n=n)
            if n % 5 == 4:
                assert await recorder.flush()
        assert 3 < len(ran) < 1000, "the spool never ran out of room"
        # what ran before room ran out is all kept, even past the bound
        assert await recorder.flush()
        assert _spooled_commands(spool) == ran
        assert spool.size + spool.reserved <= spool.max_bytes + 4096

        pdp.up = True  # the PDP is back: the spool drains in order, room comes back
        assert await spool.deliver_some(lambda e: _deliver(pdp, e))
        assert pdp.stored == ran and spool.size == 0
        assert recorder.admit(10)
        recorder.command("select 1", ALLOWED)
        assert await recorder.flush()
        assert pdp.stored[-1] == "select 1"
        assert spool.reserved == recorder.claim == 0  # nothing pending, nothing held
    finally:
        await recorder.close()
        spool.close()
    assert spool.reserved == 0


async def _deliver(pdp: DeliveringPDP, entry: Entry) -> str:
    return await pdp.deliver(
        entry.session_id, pdp_pb2.RecordEventsRequest(events_json=entry.events)
    )


async def test_the_spool_writes_what_was_promised_and_refuses_what_was_not(tmp_path):
    spool = Spool(tmp_path, "orders-db", max_bytes=256)
    spool.open()
    try:
        big = Entry("s-1", events=json.dumps([{"command": "x" * 400}]))
        with pytest.raises(SpoolFull):
            await spool.add([big])  # no room promised: refused, nothing kept
        assert not spool.entries and spool.size == 0
        assert spool.reserve(200) and not spool.reserve(100)
        await spool.add([big], claim=200)  # evidence of what ran: written past the bound
        assert spool.holds("s-1") and spool.size > spool.max_bytes and spool.reserved == 0
        assert not spool.reserve(1)
    finally:
        spool.close()


# -- SessionRecorder.statement: the hot path's event, the same as command()'s -----------


_RULINGS = [
    ALLOWED,
    ALLOWED.with_rewritten("select 9"),  # a refilled verdict: another object, alike
    Ruling(Verdict(VerdictKind.ALLOW), decision_id="d-2", cached=True),
    Ruling(Verdict(VerdictKind.MASK), decision_id="d-3"),
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["select 1", "select 2", 'select "\\n"', "x" * 70_000]),
            st.sampled_from(range(len(_RULINGS))),
            st.sampled_from(["SELECT 1", "SELECT 0", "INSERT 0 1"]),
            st.integers(0, 2),
            st.sampled_from(["simple", "extended"]),
            st.booleans(),  # a response event in between
        ),
        max_size=40,
    )
)
def test_a_statement_is_recorded_as_its_command_event_would_be(steps):
    """statement() (no details dict, the last tail reused) and command() with the same
    details give the same events, byte for byte, in the same runs."""
    texts = []
    real_time = time.time
    for fast in (False, True):
        clock = iter(range(10**6))
        time.time = lambda clock=clock: 1000.0 + next(clock) / 1000  # type: ignore[assignment,misc]
        try:
            recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
            for raw, which, tag, rows, protocol, respond in steps:
                ruling = _RULINGS[which]
                if fast:
                    recorder.statement(raw, ruling, tag, rows, protocol)
                else:
                    recorder.command(raw, ruling, tag=tag, rows=rows, protocol=protocol)
                if respond:
                    recorder.response(decision_id="d-1", tag=tag, rows=rows, protocol=protocol)
            texts.append(recorder._due())
        finally:
            time.time = real_time  # type: ignore[assignment]
    assert texts[0] == texts[1]


class _RoomySpool:
    """A spool that always has room, keeping count of what is held."""

    reserved = 0

    def reserve(self, size: int) -> bool:
        self.reserved += size
        return True

    def release(self, size: int) -> None:
        self.reserved -= size


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["command", "statement", "response", "masking", "admit"]),
            st.text(max_size=300),
        ),
        max_size=30,
    )
)
def test_admit_holds_the_room_owed_and_statement_room_say(steps):
    """admit() spells out spooled(owed()) + statement_room(): the room it holds is theirs."""
    spool = _RoomySpool()
    recorder = SessionRecorder(SlowPDP(), "s-1", spool=spool)  # type: ignore[arg-type]
    for what, raw in steps:
        if what == "command":
            recorder.command(raw, ALLOWED, tag="SELECT 1", rows=1, protocol="simple")
        elif what == "statement":
            recorder.statement(raw, ALLOWED, "SELECT 1", 1, "simple")
        elif what == "response":
            recorder.response(decision_id="d-1", tag="SELECT 1", rows=1, protocol="extended")
        elif what == "masking":
            recorder.masking({"email": 1}, "d-1")
        assert recorder.admit(len(raw))
        assert recorder.claim == spool.reserved
        assert recorder.claim == spooled(recorder.owed()) + statement_room(len(raw))


def test_statements_whose_results_alternate_look_their_tails_up(monkeypatch):
    """A row filter's statements find a row or none in turn: each result's tail is spelt
    out once, then looked up (the events are test_a_statement_is_recorded_as_its_command_
    event_would_be's: the same as command() gives)."""
    import proxies.runtime.recorder as recorder_module

    spelt = []
    real = recorder_module._command_tail

    def counting(ruling, details, tails, key=None):
        spelt.append(details["rows"])
        return real(ruling, details, tails, key)

    monkeypatch.setattr(recorder_module, "_command_tail", counting)
    recorder = SessionRecorder(SlowPDP(), "s-1")  # type: ignore[arg-type]
    for n in range(40):
        recorder.statement(f"select {n}", ALLOWED, f"SELECT {n % 2}", n % 2, "simple")
    assert spelt == [0, 1]
    events = [json.loads(text) for text in recorder._due()]
    assert [e["details"]["rows"] for e in events] == [n % 2 for n in range(40)]
