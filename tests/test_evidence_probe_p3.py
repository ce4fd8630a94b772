"""Evidence probe 3 (helper evidence6): long statements decided off the PDP's event loop,
and what `audit verify` tells of one decision's many executions.

A reader's INSERT naming 120,000 columns (850 KB) was classified twice on the PDP's event
loop (the policy's input, then the effects sent to the proxy): ~5 s in which no other
session's decision was answered (measured under load: 4 other decisions answered in that
time, the slowest after 2.4 s, and the PDP's audit writes timed out, answering deny).
A text longer than pdp.api.sql_reading.READ_APART is now classified in a thread of its own
(42 other decisions answered meanwhile, the slowest after 0.65 s; the loop itself spent
0.06 s on the long decision, from 4.9 s).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token
from test_evidence_probe_p1 import _verified
from test_pdp_probe_p7 import _written
from test_pdp_probe_p11 import _timeline_of

from pdp.domain import policy_input
from pdp.domain.recordings import EVENTS_KIND
from pdp.domain.timeline import NO_VERDICT, RAN_AGAIN, UNKNOWN_VERDICT
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2


async def test_other_decisions_are_answered_while_a_long_statement_is_classified() -> None:
    """Attack (a reader): send a statement of thousands of column names, so that every
    other session's decision waits for its classification. The classification is held
    here until another session's decision has been answered: it is, since the long one
    is read off the loop (on the loop, the held reading held the loop, and the other
    decision waited for it)."""
    config = pdp_config(Path(tempfile.mkdtemp(prefix="evidence6-long-")))
    started = asyncio.Event()
    release = asyncio.Event()
    classify = policy_input.classify
    loop = asyncio.get_running_loop()

    def held(raw: str):
        if len(raw) > 16 * 1024:
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return classify(raw)

    columns = ",".join(f"c{i}" for i in range(4_000))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        long_session = await open_session(stub, token(config, groups=("dba",)))
        other = await open_session(stub, token(config))
        with mock.patch.object(policy_input, "classify", held):
            insert = f"INSERT INTO orders ({columns}) SELECT 1"
            asked = asyncio.ensure_future(decide_sql(stub, long_session.session_id, insert))
            await asyncio.wait_for(started.wait(), 60)
            answer = await asyncio.wait_for(
                decide_sql(stub, other.session_id, "SELECT id FROM orders"), 60
            )
            assert answer.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), answer
            assert not asked.done()
            release.set()
            decided = await asyncio.wait_for(asked, 60)
        assert decided.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), decided
        records = await pdp.store.query(kind="decision", session_id=long_session.session_id)
        assert [r.body["statements"][0]["type"] for r in records] == ["insert"]


async def test_a_statement_past_the_hard_limit_is_refused_unread() -> None:
    """The hard limit (1 MiB, pdp.api.recording_rpc.MAX_COMMAND_BYTES): refused with its
    reason, never classified."""
    config = pdp_config(Path(tempfile.mkdtemp(prefix="evidence6-huge-")))
    columns = ",".join(f"c{i}" for i in range(150_000))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba",)))
        with mock.patch.object(policy_input, "classify", side_effect=AssertionError("read")):
            decided = await decide_sql(
                stub, opened.session_id, f"INSERT INTO orders ({columns}) SELECT 1"
            )
        assert decided.verdict == pdp_pb2.DENY
        assert "larger than the 1048576 a command may be" in decided.reasons[0], decided


# -- one decision, many runs ------------------------------------------------------------


def _run(when: float, sql: str, decision: pdp_pb2.Decision, protocol: str, **details) -> dict:
    return {"time": when, "direction": "client", "type": "command", "command": sql,
            "decision_id": decision.decision_id, "verdict": "allow", "cached": False,
            "details": {"tag": "SELECT 1", "rows": 1, "protocol": protocol, **details}}  # fmt: skip


async def _decide_parse(stub, session_id: str, sql: str) -> pdp_pb2.Decision:
    """A Decide as the Postgres proxy asks at a Parse (extended protocol)."""
    attributes = Struct()
    attributes.update({"protocol": "extended", "phase": "parse"})
    response = await stub.Decide(
        pdp_pb2.DecideRequest(
            session_id=session_id,
            command=pdp_pb2.Command(kind="postgres.query", raw=sql, attributes=attributes),
        )
    )
    return response.decision


async def _recorded_runs(tmp_path, runs) -> tuple[str, str, list[str]]:
    """`audit verify` (store, bundle) of a session whose proxy recorded `runs(simple,
    parsed)`: events made of a simple Query's decision and a Parse's; and what replay
    marks of its commands (pdp_verdict, in order)."""
    tmp_path.mkdir(exist_ok=True)
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
        simple = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        parsed = await _decide_parse(stub, opened.session_id, "SELECT id FROM orders")
        assert simple.verdict == parsed.verdict == pdp_pb2.ALLOW
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(runs(simple, parsed))
            )
        )
        timeline = await _timeline_of(app.store, opened.session_id)
    marked = [e.pdp_verdict for e in timeline.entries if e.type == "command"]
    online, offline = await _verified(config_path, tmp_path / "evidence.tar.gz")
    return online, offline, marked


async def test_verify_names_a_simple_querys_decision_run_again(tmp_path):
    """Attack (the session's proxy, compromised): the PDP allowed one run of a statement
    (a simple Query, no reuse: cache_ttl_seconds 0); the proxy runs it three times,
    recording each run under that one decision, as not answered from its cache. verify
    said every command was let through by its decision."""
    now = time.time()

    def runs(simple, parsed):
        return [_run(now + 0.1 * n, "SELECT id FROM orders", simple, "simple") for n in (1, 2, 3)]

    *verified, marked = await _recorded_runs(tmp_path, runs)
    assert marked == ["", RAN_AGAIN, RAN_AGAIN]  # replay marks them too
    for said in verified:
        assert "proxy verdicts: 2 commands recorded as let through" in said, said
        assert "allow again under a decision the PDP made for one run (not at a Parse)" in said


async def test_verify_takes_a_prepared_statements_runs_under_its_parse(tmp_path):
    """A statement parsed once and executed three times (Bind/Execute each time) is run
    under the decision of its Parse, each run naming the prepared statement: not disputed.
    Runs naming another statement, or outside the extended protocol, under that decision
    are; a portal suspended and a later statement of one text are not runs."""
    now = time.time()
    sql = "SELECT id FROM orders"

    def runs(simple, parsed):
        return [
            _run(now + 0.1, sql, simple, "simple"),
            _run(now + 0.2, sql, simple, "simple", part=1),  # ; SELECT id FROM orders
            *(_run(now + 0.3 + 0.1 * n, sql, parsed, "extended", prepared="s1") for n in (0, 1, 2)),
            _run(now + 0.7, sql, parsed, "extended", prepared="s1", tag=""),  # suspended
        ]

    *verified, marked = await _recorded_runs(tmp_path, runs)
    assert not any(marked), marked
    for said in verified:
        assert "every command recorded as let through names a decision of its session" in said
        assert "executions again of a statement parsed once" not in said, said

    def forged(simple, parsed):
        return [
            *runs(simple, parsed),
            _run(now + 0.8, sql, parsed, "extended", prepared="s2"),
            _run(now + 0.9, sql, parsed, "simple", prepared="s1"),
        ]

    *verified, marked = await _recorded_runs(tmp_path / "forged", forged)
    assert marked[-2:] == [RAN_AGAIN, RAN_AGAIN] and not any(marked[:-2]), marked
    for said in verified:
        assert "proxy verdicts: 2 commands recorded as let through" in said, said
        assert "allow as prepared statement 's2' under the decision of the Parse of 's1'" in said
        assert "allow again, outside the extended protocol, under the decision of a Parse" in said


async def test_verify_counts_a_parses_runs_recorded_without_a_name(tmp_path):
    """Recordings of proxies that did not name the prepared statement (extended-protocol
    runs of a Parse's decision, no `prepared`): counted and said, not disputed."""
    now = time.time()
    sql = "SELECT id FROM orders"

    def runs(simple, parsed):
        return [_run(now + 0.1 * n, sql, parsed, "extended") for n in (1, 2, 3)]

    *verified, marked = await _recorded_runs(tmp_path, runs)
    assert not any(marked), marked
    for said in verified:
        assert "every command recorded as let through names a decision of its session" in said
        assert "2 executions again of a statement parsed once name no prepared statement" in said


async def test_a_batch_delivered_twice_is_not_a_run_again(tmp_path):
    """A proxy whose batch the PDP took, its answer lost, sends it again (a proxy before
    batch numbers: no number): the same events at the same times, stored twice. Not a
    second run of the decision: read once, counted, said, not disputed. (The same run
    twice within one batch, or in a batch of other events, is no delivery twice: another
    run, disputed: tests/test_evidence_probe_p6.py.)"""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
        simple = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        text = json.dumps([_run(time.time(), "SELECT id FROM orders", simple, "simple")])
        for _ in range(2):
            await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events_json=text)
            )
        assert len(await app.store.query(kind=EVENTS_KIND, session_id=opened.session_id)) == 2
        timeline = await _timeline_of(app.store, opened.session_id)
    assert [e.pdp_verdict for e in timeline.entries if e.type == "command"] == [""]
    assert timeline.header["batches"] == "1 batches stored twice are shown once"
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "every command recorded as let through names a decision of its session" in said
        assert "1 batch stored again with the same events" in said, said


# -- verdicts the PDP never gives ---------------------------------------------------------


def _forged(when: float, decision: pdp_pb2.Decision, verdict: str) -> dict:
    return {"time": when, "direction": "client", "type": "command",
            "command": "DROP TABLE orders", "decision_id": decision.decision_id,
            "verdict": verdict, "cached": False,
            "details": {"tag": "DROP TABLE", "rows": 0, "protocol": "simple"}}  # fmt: skip


@pytest.mark.parametrize("verdict", ["Allow", "allow ", "approved", "ALLOW"])
async def test_a_command_recorded_under_a_verdict_the_pdp_never_gives_is_refused(tmp_path, verdict):
    """Attack (the session's proxy, compromised): the PDP denies DROP TABLE orders; the
    proxy runs it and records it under that decision as `Allow` (or `approved`). Replay
    showed `[Allow d-…]` unmarked and `audit verify` said every command let through was
    let through by its decision: only `allow` and `mask` were weighed. Refused now, in
    either shape of a batch; a batch recorded before is marked by replay and verify."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        denied = await decide_sql(stub, opened.session_id, "DROP TABLE orders")
        assert denied.verdict == pdp_pb2.DENY
        event = _forged(time.time(), denied, verdict)
        for request in (
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps([event])
            ),
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id,
                events=[
                    pdp_pb2.SessionEvent(
                        time=event["time"],
                        direction="client",
                        type="command",
                        command=event["command"],
                        decision_id=denied.decision_id,
                        verdict=verdict,
                    )
                ],
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordEvents(request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "is not one the PDP gives" in (refused.value.details() or "")
        # a batch recorded before the check: what readers make of it
        await app.store.append(
            EVENTS_KIND,
            {"events_json": json.dumps([event]), "count": 1},
            session_id=opened.session_id,
            subject="alice@example.com",
        )
        timeline = await _timeline_of(app.store, opened.session_id)
        assert [e.pdp_verdict for e in timeline.entries if e.type == "command"] == [UNKNOWN_VERDICT]
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 1 commands recorded as let through" in said, said
        assert "a verdict the PDP never gives" in said, said


async def test_a_command_recorded_with_no_verdict_is_marked(tmp_path):
    """Attack (the session's proxy, compromised): run DROP TABLE orders without asking and
    record it as a command with no verdict and no decision: neither replay nor verify
    weighed a command with no verdict (a proxy records every command with the verdict it
    enforced, a denied one too)."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        bare = {"time": time.time(), "direction": "client", "type": "command",
                "command": "DROP TABLE orders"}  # fmt: skip
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps([bare])
            )
        )
        timeline = await _timeline_of(app.store, opened.session_id)
        assert [e.pdp_verdict for e in timeline.entries if e.type == "command"] == [NO_VERDICT]
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 1 commands recorded as let through" in said, said
        assert "'DROP TABLE orders' recorded as run with no verdict" in said, said
