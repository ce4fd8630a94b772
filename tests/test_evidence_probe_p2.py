"""Evidence probe 2 (helper evidence4): each executed command tied to a decision of that
very command, and what `audit verify` can tell of a proxy lost mid-session.

A command the session's proxy recorded as let through under the id of a decision the
PDP made on ANOTHER command of the session (a DROP TABLE the PDP denied, recorded under
the id of the SELECT it allowed beside it) was marked by replay only: `audit verify` (of
the store, and offline of an exported bundle) kept no decided text and said "every
command recorded as let through names a decision of its session that let it through".
It now weighs each command against the text its decision was made on, as replay does.
"""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import grpc
import pytest
from pdp_harness import (
    decide_sql,
    free_port,
    open_session,
    pdp_raw,
    pdp_stub,
    running_pdp,
    token,
)
from test_evidence_probe_p1 import _verified
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli
from test_pdp_probe_p11 import _timeline_of

from pdp.domain.recordings import batch_events
from pdp.domain.timeline import OTHER_COMMAND, REUSED
from portcullis.config import load_config
from portcullis.events import truncation_facts
from portcullis.v1 import pdp_pb2

DBA = ("dba", "pii-readers")


def _said(decision: pdp_pb2.Decision) -> str:
    return pdp_pb2.Verdict.Name(decision.verdict).lower()


def _event(when: float, sql: str, decision: pdp_pb2.Decision, **details) -> dict:
    return {"time": when, "direction": "client", "type": "command", "command": sql,
            "decision_id": decision.decision_id, "verdict": _said(decision),
            "cached": False, "details": details}  # fmt: skip


async def test_verify_names_a_command_run_under_another_commands_allow(tmp_path):
    """Attack (the session's proxy, compromised): the PDP denies DROP TABLE orders and
    allows SELECT id FROM orders; the proxy runs the DROP and records it as allowed under
    the SELECT's decision id. Replay marked it; `audit verify` and `audit verify --bundle`
    said every command let through named a decision that let it through."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        denied = await decide_sql(stub, opened.session_id, "DROP TABLE orders")
        assert denied.verdict == pdp_pb2.DENY
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        assert allowed.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK)
        now = time.time()
        events = [
            _event(now + 0.1, "SELECT id FROM orders", allowed),
            _event(now + 0.2, "DROP TABLE orders", allowed),
        ]
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events)
            )
        )
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 1 commands recorded as let through" in said, said
        assert "'DROP TABLE orders' recorded as" in said, said
        assert "under the PDP's decision of another command ('SELECT id FROM orders')" in said


# -- a proxy lost mid-session --------------------------------------------------------------


async def _reaped(app, session_id: str) -> None:
    """Wait until the PDP ends the session whose proxy went silent (session_timeout)."""
    deadline = time.monotonic() + 60
    while not await app.store.query(kind="session.close", session_id=session_id):
        assert time.monotonic() < deadline, "the PDP never ended the session"
        await asyncio.sleep(0.3)


async def test_verify_accounts_for_the_commands_a_lost_proxy_never_recorded(tmp_path):
    """A proxy dies mid-session: three statements decided (allowed), only the first one's
    event sent. `audit verify` said nothing of the session (a chain of what arrived), and
    replay only that events 'may be missing'. Now verify names the session, when the PDP
    last heard from its proxy, and the two decisions letting a command through that no
    recorded event names (whether they ran is unknown); replay lists them too."""
    config_path = _written(tmp_path, session_timeout=2)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        texts = [f"SELECT id FROM orders WHERE id = {n}" for n in range(3)]
        ruled = [await decide_sql(stub, opened.session_id, sql) for sql in texts]
        denied = await decide_sql(stub, opened.session_id, "DROP TABLE orders")
        assert denied.verdict == pdp_pb2.DENY
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id,
                events_json=json.dumps([_event(time.time(), texts[0], ruled[0])]),
            )
        )
        await _reaped(app, opened.session_id)
        # a session its proxy closed is not in the account, unrecorded decisions or not
        other = await open_session(stub, token(config))
        await decide_sql(stub, other.session_id, "SELECT 1")
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=other.session_id, reason="client closed")
        )
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        line = next(x for x in said.splitlines() if x.startswith("  lost proxies: "))
        assert line.startswith(
            "  lost proxies: 1 sessions closed by the PDP because it lost their proxy"
            " (proxy_lost): 2 decisions letting a command through are named by no recorded"
            " event: whether those commands ran is unknown"
        ), line
        assert f"session {opened.session_id} (closed at seq" in line
        assert "proxy last heard 20" in line, line
        assert "no credential-never-exposed statement is signed for them" in line, line
        assert ruled[1].decision_id in line and ruled[2].decision_id in line
        assert ruled[0].decision_id not in line and denied.decision_id not in line
        assert other.session_id not in said
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    lost = next(x for x in replay.stdout.splitlines() if "!! lost" in x)
    assert "the PDP last heard from it at 20" in lost, lost
    assert "2 decisions letting a command through are named by no recorded event" in lost
    assert ruled[2].decision_id in lost and ruled[0].decision_id not in lost


async def test_another_proxy_cannot_keep_a_lost_proxys_session_open(tmp_path):
    """Attack (a proxy credential of another zone, or any proxy's): keep calling Decide
    and RecordEvents for a session whose own proxy died. Each call was refused, but the
    PDP took it as word from the session's proxy (its last-heard time was set before the
    check of who is calling), so the session was never ended as proxy_lost: it stayed
    open, its evidence never said its proxy was lost."""
    config_path = _written(tmp_path, session_timeout=2)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        rogue = app.issue_proxy_credential("rogue", ["billing-api"])
        async with pdp_stub(app.address, rogue) as other:
            deadline = time.monotonic() + 60
            while not await app.store.query(kind="session.close", session_id=opened.session_id):
                assert time.monotonic() < deadline, "the session was kept open by another proxy"
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await decide_sql(other, opened.session_id, "SELECT 2")
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                with pytest.raises(grpc.aio.AioRpcError):
                    await other.RecordEvents(
                        pdp_pb2.RecordEventsRequest(session_id=opened.session_id)
                    )
                await asyncio.sleep(0.3)
        closed = await app.store.query(kind="session.close", session_id=opened.session_id)
    assert closed[0].body["reason"] == "proxy_lost"


def _serve_proxy(raw: dict, base: str, credential: str, address: str, pipe) -> None:
    """A real Postgres proxy in a process of its own (killed by the test: a crash)."""
    from pathlib import Path

    from portcullis.config import parse_config
    from proxies.postgres.proxy import PostgresProxy
    from proxies.runtime.pdp_auth import with_credential

    async def serve() -> None:
        config = with_credential(parse_config(raw, base_dir=Path(base)), credential)
        proxy = PostgresProxy(config.connections[0], config, address)
        await proxy.start()
        pipe.send(proxy.port)
        await asyncio.Event().wait()

    asyncio.run(serve())


async def test_a_real_proxy_killed_mid_session_is_accounted_for(tmp_path):
    """A real Postgres proxy is killed (SIGKILL) right after a client's statements: what
    `audit verify` says of the session is exactly what the store holds: the decisions
    letting a command through that no recorded event names, each by id, no more, no
    fewer, and when the PDP last heard from the proxy."""
    import multiprocessing
    import os
    import signal

    from pg_harness import scratch_database

    from portcullis.config import parse_config

    with scratch_database() as (name, role, password):
        connection = {
            "name": "orders-db", "type": "postgres", "listen": f"127.0.0.1:{free_port()}",
            "upstream": "127.0.0.1:5432", "database": name, "zone": "eu-prod",
            "credentials": {"provider": "static", "username": role, "password": password},
            "spool_dir": str(tmp_path / "spool"),
        }  # fmt: skip
        raw = pdp_raw(tmp_path, connections=[connection])
        raw["pdp"]["session_timeout_seconds"] = 2
        config_path = tmp_path / "portcullis.yaml"
        import yaml

        config_path.write_text(yaml.safe_dump(raw))
        config = parse_config(raw, base_dir=tmp_path)
        async with running_pdp(config) as app:
            credential = app.issue_proxy_credential("crashing", ["orders-db"])
            context = multiprocessing.get_context("spawn")
            ours, theirs = context.Pipe()
            child = context.Process(
                target=_serve_proxy, args=(raw, str(tmp_path), credential, app.address, theirs)
            )
            child.start()
            try:
                assert await asyncio.to_thread(ours.poll, 120), "the proxy did not start"
                port = ours.recv()
                dsn = f"postgresql://agent:{token(config)}@127.0.0.1:{port}/{name}?sslmode=disable"
                conn = await asyncpg.connect(dsn)
                for n in range(3):
                    await conn.fetch(f"SELECT id FROM orders WHERE id = {n}")
                os.kill(child.pid, signal.SIGKILL)  # no flush, no close
            finally:
                await asyncio.to_thread(child.join, 30)
            opened = [r for r in await app.store.query(kind="session.open")]
            assert len(opened) == 1
            session_id = opened[0].session_id
            await _reaped(app, session_id)
            decisions = await app.store.query(kind="decision", session_id=session_id)
            events = await app.store.query(kind="session.events", session_id=session_id)
    named = {e.get("decision_id") for r in events for e in batch_events(r.body)}
    unrecorded = [d.id for d in decisions if d.body.get("verdict") in ("allow", "mask")
                  and d.id not in named]  # fmt: skip
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        line = next(x for x in said.splitlines() if x.startswith("  lost proxies: "))
        assert f"(proxy_lost): {len(unrecorded)} decisions letting a command through" in line
        assert f"session {session_id} (closed at seq" in line
        assert "proxy last heard 20" in line, line
        assert all(d in line for d in unrecorded[:4]), (unrecorded, line)
        assert not any(d in line for d in named if d), line


# -- a cut text is the same command only when its whole text's digest says so -------------


def _with_ssh(tmp_path):
    ssh = {"name": "web-1", "type": "ssh", "listen": f"127.0.0.1:{free_port()}",
           "upstream": "127.0.0.1:22", "zone": "eu-prod",
           "credentials": {"provider": "static", "username": "deploy",
                           "password": "x"}}  # fmt: skip
    pg = pdp_raw(tmp_path)["connections"][0]
    return _written(tmp_path, connections=[pg, ssh])


async def test_a_cut_text_is_the_decided_command_only_if_its_digest_says_so(tmp_path):
    """Attack (the session's proxy): a decision record keeps only the first 8 KiB of a
    long SSH line (and the whole line's SHA-256); an event keeps only the first 4 KiB of a
    command longer than 64 KiB (and the whole text's SHA-256). Replay and verify took a
    text beginning with the decided one's kept start as the same command: the proxy ran
    `<the 9 KiB line it was allowed>; rm -rf /srv` and recorded it so under the allowed
    line's decision, and recorded `SELECT id` (cut, its digest that of a DROP) under a
    SELECT's decision, unmarked. The digests now decide; genuine cuts stay unmarked."""
    config_path = _with_ssh(tmp_path)
    config = load_config(config_path)
    line = "cat /var/log/" + "a" * 9000
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config), "web-1")
        allowed = await stub.Decide(
            pdp_pb2.DecideRequest(
                session_id=opened.session_id,
                command=pdp_pb2.Command(kind="ssh.exec", raw=line),
            )
        )
        allowed = allowed.decision
        assert allowed.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), allowed
        record = (await app.store.query(kind="decision", session_id=opened.session_id))[-1]
        assert record.body.get("raw_truncated"), "the decision keeps only the line's start"
        now = time.time()
        forged = line + "; rm -rf /srv"
        events = [
            _event(now, line, allowed),  # genuine: the whole line
            _event(now + 0.1, line[:8192], allowed, **truncation_facts(line)),  # genuine cut
            _event(now + 0.2, forged, allowed),
        ]
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events)
            )
        )
        pg = await open_session(stub, token(config))
        select = await decide_sql(stub, pg.session_id, "SELECT id FROM orders")
        cut = _event(now, "SELECT id", select, **truncation_facts("SELECT id; DROP TABLE orders"))
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=pg.session_id, events_json=json.dumps([cut]))
        )
        timeline = await _timeline_of(app.store, opened.session_id)
        marked = [e.pdp_verdict for e in timeline.entries if e.type == "command"]
        assert marked == ["", "", OTHER_COMMAND], marked
        timeline = await _timeline_of(app.store, pg.session_id)
        assert [e.pdp_verdict for e in timeline.entries if e.type == "command"] == [OTHER_COMMAND]
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 2 commands recorded as let through" in said, said
        assert "'SELECT id' recorded as" in said, said


async def test_commands_a_cut_off_proxy_ran_after_the_pdp_ended_the_session_are_counted(
    tmp_path,
):
    """A proxy cut off from the PDP (not dead) past the session timeout: the PDP ends the
    session as proxy_lost, the proxy answers its client from its decision cache, then
    delivers those events. Taken (the proxy may still deliver), but shown as any other:
    neither verify nor replay said the commands ran after the PDP held the session ended,
    decided by nobody then."""
    config_path = _written(tmp_path, session_timeout=2)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        await _reaped(app, opened.session_id)
        closed = (await app.store.query(kind="session.close", session_id=opened.session_id))[0]
        while time.time() < closed.time + 2.5:  # (past the clock's allowance)
            await asyncio.sleep(0.2)
        cached = {**_event(time.time(), "SELECT id FROM orders", allowed), "cached": True}
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps([cached])
            )
        )
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        line = next(x for x in said.splitlines() if x.startswith("  lost proxies: "))
        assert "1 batches arrived after the close: not lost for good" in line, line
        assert "1 commands claimed to have run after the close" in line, line
        assert "every decision letting a command through is named by an event" in line, line
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    lost = next(x for x in replay.stdout.splitlines() if "!! lost" in x)
    assert "1 commands the proxy recorded as run after the PDP ended the session" in lost


async def test_verify_counts_the_sessions_left_without_a_close(tmp_path):
    """A session whose proxy and PDP both stopped (a host lost) has decisions and no
    close at all; with replicas sharing a store no PDP adopts it to close it. `audit
    verify` counted it opened, and nothing more: it now says how many sessions have no
    close record (open now, or ended with no record)."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        left = await open_session(stub, token(config))
        await decide_sql(stub, left.session_id, "SELECT 1")
        closed = await open_session(stub, token(config))
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=closed.session_id, reason="client closed")
        )
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert (
            "sessions: 2 opened in this range (session.open records); 1 have no close record"
            in said
        ), said


async def test_a_command_recorded_as_run_under_the_decision_that_asked_for_approval(tmp_path):
    """Attack (the session's proxy): the PDP asks a person to approve a reader's UPDATE;
    nobody does (or someone denies it); the proxy runs it anyway and records it as
    `allow` under the require_approval decision's id. Replay and verify exempted
    decisions that asked for approval from the weighing, so it read as allowed, unmarked.
    A genuine approved run is recorded under the decision asked for once approved (a
    real gateway's: tests/test_approvals.py), never under the one that asked."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    update = "UPDATE customers SET name = 'R' WHERE id = 2"
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        asked = await decide_sql(stub, opened.session_id, update)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        forged = {**_event(time.time(), update, asked), "verdict": "allow"}
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps([forged])
            )
        )
        timeline = await _timeline_of(app.store, opened.session_id)
    assert [e.pdp_verdict for e in timeline.entries if e.type == "command"] == ["require_approval"]
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert "!! the PDP recorded require_approval for this decision" in replay.stdout
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "allow where the PDP decided require_approval" in said, said


def _policies_reusable_for(tmp_path, seconds: int):
    """The shipped policies with decisions reusable for `seconds` (decision_cache_ttl)."""
    import shutil

    from pdp_harness import REGO

    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["decision_cache_ttl_seconds"] = seconds
    (policies / "data.json").write_text(json.dumps(data))
    return policies


async def test_a_command_answered_from_the_cache_past_its_decisions_reuse_is_marked(tmp_path):
    """Attack (the session's proxy, or one whose cache never forgets): a SELECT decided
    reusable for 1 s (the policy's cache_ttl_seconds) is answered from the proxy's cache
    seconds later, and a SET decided with no reuse at all (its value is judged) is
    recorded as `cached` under its allow. Both read as allowed under that very decision:
    no decision of the PDP backed them then (the group may have been revoked since).
    Marked now, in replay, the console and verify; a genuine session's cache hits are not
    (test above)."""
    config_path = _written(tmp_path, policies=_policies_reusable_for(tmp_path, 1))
    config = load_config(config_path)
    select = "SELECT id FROM orders WHERE id = 1"
    setting = "SET statement_timeout = 1000"
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=DBA))
        reusable = await decide_sql(stub, opened.session_id, select)
        once = await decide_sql(stub, opened.session_id, setting)
        assert once.verdict == pdp_pb2.ALLOW
        records = {r.id: r for r in await app.store.query(kind="decision")}
        assert records[reusable.decision_id].body.get("cache_ttl_seconds") == 1
        assert not records[once.decision_id].body.get("cache_ttl_seconds")
        now = time.time()
        events = [
            {**_event(now, select, reusable), "cached": True},  # genuine: within its second
            {**_event(now + 0.1, setting, once), "cached": True},
        ]
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events)
            )
        )
        while time.time() < records[reusable.decision_id].time + 1 + 2.5:  # (TTL, allowance)
            await asyncio.sleep(0.2)
        late = {**_event(time.time(), select, reusable), "cached": True}
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps([late])
            )
        )
        timeline = await _timeline_of(app.store, opened.session_id)
    marked = [(e.pdp_verdict, e.clock) for e in timeline.entries if e.type == "command"]
    assert marked == [("", ""), (REUSED, ""), (REUSED, "")], marked
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert replay.stdout.count("where the PDP's decision allowed no reuse") == 2, replay.stdout
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 2 commands recorded as let through" in said, said
        assert "from the proxy's cache where the PDP's decision allowed no reuse then" in said
        assert "every session event's claimed time is within" in said, said


async def test_a_session_found_again_is_not_heard_from_by_another_proxys_call(tmp_path):
    """A session a PDP finds again in the store (after a restart, or at a replica) because
    a call named it: when that call is another proxy's (refused), the session's close as
    proxy_lost said the PDP last heard from its proxy then. It says nothing of when now:
    the PDP never heard from that proxy."""
    config_path = _written(tmp_path, session_timeout=2)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        app.service.sessions._open.pop(opened.session_id)  # as after a restart
        rogue = app.issue_proxy_credential("rogue", ["*"])
        async with pdp_stub(app.address, rogue) as other:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await decide_sql(other, opened.session_id, "SELECT 2")
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await _reaped(app, opened.session_id)
        (closed,) = await app.store.query(kind="session.close", session_id=opened.session_id)
    assert closed.body["reason"] == "proxy_lost"
    assert "last_heard_from_proxy" not in closed.body, closed.body
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy last heard unknown (not heard since the PDP found the session" in said


async def test_a_statement_on_another_schemas_table_is_not_the_decided_shape(tmp_path):
    """Attack (the session's proxy): a SELECT on public.orders is decided reusable for its
    shape; the proxy runs the same SELECT on secret.orders and records it under that
    decision. Replay and verify compared pglast's fingerprint, which ignores schema
    names: the same command, unmarked. Proxies reuse a verdict by portcullis.shape's
    shape, which keeps them, and so do replay and verify now; another literal is the same
    shape still."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=DBA))
        decided = await decide_sql(
            stub, opened.session_id, "SELECT id FROM public.orders WHERE id = 1"
        )
        record = (await app.store.query(kind="decision", session_id=opened.session_id))[-1]
        assert record.body.get("cache_key") == "shape", record.body
        now = time.time()
        events = [
            {**_event(now, "SELECT id FROM public.orders WHERE id = 2", decided), "cached": True},
            {**_event(now + 0.1, "SELECT id FROM secret.orders WHERE id = 1", decided),
             "cached": True},
        ]  # fmt: skip
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events)
            )
        )
        timeline = await _timeline_of(app.store, opened.session_id)
    assert [e.pdp_verdict for e in timeline.entries if e.type == "command"] == ["", OTHER_COMMAND]
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 1 commands recorded as let through" in said, said
        assert "'SELECT id FROM secret.orders WHERE id = 1' recorded as" in said, said
