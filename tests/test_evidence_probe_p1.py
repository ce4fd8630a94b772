"""Evidence probe 1 (helper evidence3): what `audit verify` weighs of a recording's times.

Replay and the console marked a command timed before the decision it names, but `audit
verify` (of the store, and offline of an exported bundle) weighed only the session's
open and the batch's arrival: a compromised proxy could record a command as run before
the PDP decided it and the auditor's verification said every time was within the
window. A terminal recording (SSH shell, asciicast) held times nobody weighed: frames
going backwards, frames hours after the event recording them (beyond the session's
close), a recording started before its session opened. Each is now marked by replay, the
console and `audit verify`; a genuine SSH shell's recording is not.

Replay marked a command the proxy recorded as let through under no decision of its
session, or under a decision the PDP recorded as a deny; `audit verify` said nothing of
verdicts, so a compromised proxy that ran a denied DROP and recorded it as allowed left a
bundle that verified clean. Verify now counts and names them ("proxy verdicts: ..."); a
genuine Postgres session (cache, masks, prepared statements) has none.
"""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from pg_harness import running_gateway
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli
from test_pdp_probe_p11 import _psql, _timeline_of
from test_pdp_probe_p12 import _command, _record, _record_before_its_decision
from test_ssh_proxy import ssh_stack
from test_ssh_sessions import shell

from pdp.domain.timeline import CLOCK_BEFORE_DECISION, render_text
from pdp.evidence.event_times import EventTimes
from portcullis.config import load_config

DBA = ("dba", "pii-readers")


async def _verified(config_path, bundle) -> tuple[str, str]:
    """`audit verify` of the store, and of an exported bundle (offline)."""
    online = await asyncio.to_thread(_cli, config_path, "audit", "verify")
    export = await asyncio.to_thread(_cli, config_path, "audit", "export", "--out", str(bundle))
    assert export.returncode == 0, export.stdout + export.stderr
    offline = await asyncio.to_thread(_cli, config_path, "audit", "verify", "--bundle", str(bundle))
    assert offline.returncode == 0, offline.stdout + offline.stderr
    return online.stdout, offline.stdout


async def test_verify_marks_a_command_timed_before_its_decision(tmp_path):
    """Attack: the session's proxy records a SELECT as run 3 s before the PDP decided it
    (after the session opened). Replay marked it; `audit verify` said every session
    event's time was within the PDP's clock's window."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await _record_before_its_decision(
            stub,
            opened.session_id,
            "SELECT id FROM orders -- early",
            "SELECT id FROM orders -- genuine",
        )
        timeline = await _timeline_of(app.store, opened.session_id)
    assert [e.clock for e in timeline.entries if e.type == "command"] == [
        CLOCK_BEFORE_DECISION,
        "",
    ]
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "event times: 1 session events claim a time the PDP's clock rules out" in said, said
        assert "before the decision it names was made" in said, said


def _cast(when: float, decision_id: str, frames: list, header: dict | None = None) -> dict:
    details = {"kind": "ssh.asciicast", "decision_id": decision_id, "channel": 7,
               "events": frames}  # fmt: skip
    if header is not None:
        details["header"] = header
    return {"time": when, "direction": "upstream", "type": "response", "details": details}


async def _forged_cast(tmp_path, batches) -> tuple:
    """A session whose proxy records the terminal `batches(start, decision_id)` gives;
    its timeline and what `audit verify` says (store, bundle)."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        now = time.time()
        for events in batches(now, allowed.decision_id):
            await _record(stub, opened.session_id, events)
        timeline = await _timeline_of(app.store, opened.session_id)
    return timeline, await _verified(config_path, tmp_path / "evidence.tar.gz")


def _header(start: float) -> dict:
    return {"version": 2, "width": 80, "height": 24, "timestamp": int(start)}


async def test_terminal_frames_going_backwards_are_marked(tmp_path):
    """Attack: the proxy reorders what the terminal showed (`rm -rf` typed after the
    output that followed it): frames whose times go backwards, within one batch and
    across two. Played and exported as given, unmarked."""

    def batches(now: float, decision: str) -> list[list[dict]]:
        return [
            [_cast(now, decision, [[0.5, "o", "$ "], [0.9, "i", "ls\r"]], _header(now - 1))],
            [_cast(now, decision, [[0.2, "i", "rm -rf /srv\r"], [0.95, "o", "gone\r\n"]])],
        ]

    timeline, verified = await _forged_cast(tmp_path, batches)
    casts = [e for e in timeline.entries if e.type == "response"]
    assert [bool(e.clock) for e in casts] == [False, True], [e.clock for e in casts]
    assert "before the frame ahead of it" in casts[1].clock
    assert "before the frame ahead of it" in render_text(timeline)
    for said in verified:
        assert "1 session events claim a time the PDP's clock rules out" in said, said
        assert "before the frame ahead of it" in said, said


async def test_terminal_frames_after_the_event_recording_them_are_marked(tmp_path):
    """Attack: frames timed a day after the batch that recorded them (beyond the
    session's close, which comes seconds later), and a recording whose header starts it
    an hour before its session opened. Neither was weighed."""

    def batches(now: float, decision: str) -> list[list[dict]]:
        return [
            [
                _cast(
                    now, decision, [[0.1, "o", "$ "], [86400.0, "o", "later\r\n"]], _header(now - 1)
                )
            ],
        ]

    timeline, verified = await _forged_cast(tmp_path, batches)
    cast = next(e for e in timeline.entries if e.type == "response")
    assert "after the event recording it" in cast.clock, cast.clock
    for said in verified:
        assert "after the event recording it" in said, said

    def early(now: float, decision: str) -> list[list[dict]]:
        return [[_cast(now, decision, [[3600.0, "o", "$ "]], _header(now - 3600))]]

    (tmp_path / "early").mkdir()
    timeline, verified = await _forged_cast(tmp_path / "early", early)
    cast = next(e for e in timeline.entries if e.type == "response")
    assert "before the session opened" in cast.clock, cast.clock
    for said in verified:
        assert "for its terminal's start" in said, said


async def test_a_genuine_shell_recording_is_not_marked(tmp_path):
    """What the real SSH proxy records of a shell (typed input, output, a resize,
    several batches) keeps time: nothing marked in the timeline or by verify's check."""
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(DBA) as conn:
            out = await shell(conn, ["echo $((6*7))-done", "sleep 1.2", "echo x"], "42-done")
            await asyncio.sleep(1.5)  # a second batch of the recording
        assert "42-done" in out
        await stack.proxy.settled()
        store = stack.pdp.store
        records = await store.query()
        timelines = [
            await _timeline_of(store, session.session_id)
            for session in await store.query(kind="session.open")
        ]
    casts = [
        r for r in records if r.kind == "session.events" and "ssh.asciicast" in json.dumps(r.body)
    ]
    assert casts
    times = EventTimes()
    for r in records:
        times.feed(r.seq, r.kind, r.time, r.session_id, r.body, r.id)
    assert times.ruled_out == 0, times.line()
    assert times.disputed == 0, times.verdicts_line()
    for timeline in timelines:
        assert not [e.clock for e in timeline.entries if e.clock], render_text(timeline)


async def test_verify_names_commands_let_through_against_the_pdps_record(tmp_path):
    """Attack: the proxy runs a DROP the PDP denied and records it as allowed (under the
    deny's id), and a TRUNCATE nobody decided under a made-up id. Replay marked both;
    `audit verify` of the store and of the bundle said nothing of verdicts."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        denied = await decide_sql(stub, opened.session_id, "DROP TABLE orders")
        now = time.time()
        forged = _command(now, "DROP TABLE orders", denied)
        forged["verdict"] = "allow"
        made_up = {**_command(now, "TRUNCATE orders", allowed), "decision_id": "d-made-up"}
        await _record(stub, opened.session_id, [
            _command(now, "SELECT id FROM orders", allowed), forged, made_up,
        ])  # fmt: skip
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 2 commands recorded as let through where the PDP's" in said, said
        assert "'DROP TABLE orders' recorded as allow where the PDP decided deny" in said
        assert f"'TRUNCATE orders' recorded as {made_up['verdict']} under no decision" in said


async def test_a_genuine_postgres_session_has_no_verdict_disputed(tmp_path):
    """What the real Postgres proxy records (multi-statement texts, verdicts reused from
    its cache, masked reads, prepared statements, a denied statement) is not named."""
    async with running_gateway(tmp_path) as gw:
        script = (
            "select 1 as one; select 2 as two;\n"
            + "".join(f"select id from orders where id = {n};\n" for n in range(5))
            + "select email from customers;\nselect pg_read_file('/etc/passwd');\n"
        )
        for tok in (gw.token("dana", DBA), gw.token("rita", ("readonly",))):
            run = await asyncio.to_thread(_psql, gw, tok, script)
            assert run.returncode == 0, run.stderr
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        statement = await conn.prepare("SELECT id FROM orders WHERE id = $1")
        for n in range(3):
            await statement.fetch(n)
        await conn.close()
        await asyncio.sleep(1.0)  # the recorder's last flush
        records = await gw.pdp.store.query()
    times = EventTimes()
    for r in records:
        times.feed(r.seq, r.kind, r.time, r.session_id, r.body, r.id)
    assert len(times.opened) >= 3
    assert times.disputed == 0, times.verdicts_line()
    assert times.ruled_out == 0, times.line()
    assert "every command recorded as let through names a decision" in times.verdicts_line()


async def test_a_genuine_http_session_has_no_verdict_disputed(tmp_path):
    """What the real HTTP proxy records (reads masked, one verdict reused, a delete
    denied) is not named either."""
    import aiohttp
    from http_upstream import http_stack
    from test_http_proxy import bearer

    async with http_stack(tmp_path) as s:
        async with aiohttp.ClientSession() as client:
            for _ in range(3):
                async with client.get(s.url + "/v1/invoices/7", headers=bearer(s)) as r:
                    await r.read()
            async with client.delete(s.url + "/v1/invoices/7", headers=bearer(s)) as r:
                assert r.status == 403
        await asyncio.sleep(1.0)  # the recorder's last flush
        records = await s.pdp.store.query()
    times = EventTimes()
    for r in records:
        times.feed(r.seq, r.kind, r.time, r.session_id, r.body, r.id)
    assert [r for r in records if r.kind == "session.events"]
    assert times.disputed == 0, times.verdicts_line()
    assert times.ruled_out == 0, times.line()
