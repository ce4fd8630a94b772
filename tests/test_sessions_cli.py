"""`portcullis sessions list` / `replay`, run as a user would, against a store that a real PDP
filled through its gRPC API (OpenSession, Decide, RecordEvents, CloseSession)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import struct_pb2
from pdp_harness import REGO, REPO, free_port, pdp_raw, pdp_stub, running_pdp, token

from pdp.domain.recordings import EVENTS_KIND
from pdp.domain.timeline import (
    build_timeline,
    http_request_details,
    render_text,
    ssh_exec_details,
    ssh_io_details,
)
from pdp.evidence.bundle import MaskingLog, record_line
from pdp.store import AuditRecord
from portcullis.config import Config, load_config
from portcullis.v1 import pdp_pb2

VERDICTS = {pdp_pb2.ALLOW: "allow", pdp_pb2.DENY: "deny", pdp_pb2.MASK: "mask",
            pdp_pb2.REQUIRE_APPROVAL: "require_approval"}  # fmt: skip


def write_config(tmp: Path) -> Path:
    def conn(name: str, kind: str, upstream: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": kind,
            "listen": f"127.0.0.1:{free_port()}",
            "upstream": upstream,
            "zone": "eu-prod",
            "credentials": {"provider": "static", "username": "app", "password": "x"},
        }

    raw = pdp_raw(
        tmp,
        engine={"type": "embedded", "policies": str(REGO), "workers": 1},
        connections=[
            conn("orders-db", "postgres", "127.0.0.1:5432"),
            conn("billing-api", "http", "http://127.0.0.1:9000"),
            conn("web-1", "ssh", "127.0.0.1:22"),
        ],
    )
    path = tmp / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def portcullis(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "-c", str(config), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        timeout=60,
    )


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def event(when: float, decision: pdp_pb2.Decision | None = None, **fields: Any):
    details = fields.pop("details", None)
    if decision is not None:
        fields.setdefault("decision_id", decision.decision_id)
        fields.setdefault("verdict", VERDICTS[decision.verdict])
    message = pdp_pb2.SessionEvent(time=when, **fields)
    if details is not None:
        message.details.CopyFrom(struct(details))
    return message


async def open_on(stub, config: Config, name: str, kind: str, sub: str, groups: tuple[str, ...]):
    return await stub.OpenSession(
        pdp_pb2.OpenSessionRequest(
            token=token(config, sub, groups),
            connection=pdp_pb2.Connection(name=name, type=kind, zone="eu-prod"),
            client_addr="127.0.0.1:50000",
            client=f"{kind}-client",
        )
    )


async def decide(stub, session_id: str, kind: str, raw: str, attributes=None):
    command = pdp_pb2.Command(kind=kind, raw=raw)
    if attributes:
        command.attributes.CopyFrom(struct(attributes))
    response = await stub.Decide(pdp_pb2.DecideRequest(session_id=session_id, command=command))
    return response.decision


async def record(stub, session_id: str, *events: pdp_pb2.SessionEvent) -> None:
    response = await stub.RecordEvents(
        pdp_pb2.RecordEventsRequest(session_id=session_id, events=list(events))
    )
    assert response.recorded == len(events)


async def populate(config: Config) -> dict[str, Any]:
    """Four real sessions: postgres (masking, deny, cache hit), ssh (abnormal end), http
    (still open), and one that policy refused at session.open."""
    out: dict[str, Any] = {}
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        # postgres: alice, readonly
        opened = await open_on(stub, config, "orders-db", "postgres", "alice@example.com",
                               ("readonly",))  # fmt: skip
        pg = opened.session_id
        t0 = time.time()
        select = "SELECT email, name FROM customers"
        d_select = await decide(stub, pg, "postgres.query", select)
        d_drop = await decide(stub, pg, "postgres.query", "DROP TABLE customers")
        assert VERDICTS[d_select.verdict] == "mask"
        assert VERDICTS[d_drop.verdict] == "deny"
        await record(
            stub,
            pg,
            event(t0 + 0.10, d_select, direction="client", type="command", command=select,
                  details={"tag": "SELECT 2", "rows": 2, "protocol": "simple"}),
            event(t0 + 0.11, direction="proxy", type="masking", decision_id=d_select.decision_id,
                  details={"counts": {"email": 2}}),
        )  # fmt: skip
        await record(
            stub,
            pg,
            event(t0 + 0.20, d_drop, direction="client", type="command",
                  command="DROP TABLE customers",
                  details={"tag": "", "rows": 0, "protocol": "simple",
                           "error": "42501 denied by policy"}),
            event(t0 + 0.30, d_select, direction="client", type="command", command=select,
                  cached=True, details={"tag": "SELECT 2", "rows": 2, "protocol": "extended"}),
        )  # fmt: skip
        await asyncio.sleep(max(0.0, t0 + 0.35 - time.time()))  # the session ends after them
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(
                session_id=pg, reason="client_disconnect",
                summary=struct({"commands": 3, "denied": 1}),
            )
        )  # fmt: skip
        out["pg"] = pg
        out["d_select"], out["d_drop"] = d_select.decision_id, d_drop.decision_id

        # ssh: bob, dba; the proxy died
        ssh = (await open_on(stub, config, "web-1", "ssh", "bob@example.com", ("dba",))).session_id
        t1 = time.time()
        d_up = await decide(stub, ssh, "ssh.exec", "uptime",
                            {"command": "uptime", "argv": ["uptime"]})  # fmt: skip
        await record(
            stub,
            ssh,
            event(t1 + 0.05, d_up, direction="client", type="command", command="uptime",
                  details=ssh_exec_details(0, 60, 0)),
            event(t1 + 0.04, direction="upstream", type="io", decision_id=d_up.decision_id,
                  details=ssh_io_details("stdout", 60)),
        )  # fmt: skip
        await asyncio.sleep(max(0.0, t1 + 0.1 - time.time()))
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=ssh, reason="proxy_crash", abnormal=True)
        )
        out["ssh"], out["d_up"] = ssh, d_up.decision_id

        # http: carol, analyst; still open
        http = (await open_on(stub, config, "billing-api", "http", "carol@example.com",
                              ("analyst",))).session_id  # fmt: skip
        d_get = await decide(stub, http, "http.request", "GET /v1/users/7",
                             {"method": "GET", "path": "/v1/users/7"})  # fmt: skip
        await record(
            stub,
            http,
            event(time.time(), d_get, direction="client", type="command",
                  command="GET /v1/users/7",
                  details=http_request_details("GET", "/v1/users/7", 200, 512)),
        )  # fmt: skip
        out["http"], out["d_get"] = http, d_get.decision_id

        # refused at session.open
        refused = await open_on(stub, config, "orders-db", "postgres", "mallory@example.com",
                                ("nobody",))  # fmt: skip
        assert refused.session_id == ""
        assert VERDICTS[refused.decision.verdict] == "deny"
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sessions")
    path = write_config(tmp)
    ids = asyncio.run(populate(load_config(path)))
    return path, ids


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- sessions list ---------------------------------------------------------------------------


def test_list_shows_every_session_with_its_outcome(recorded):
    config, ids = recorded
    result = portcullis(config, "sessions", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "STARTED", "SUBJECT", "CONNECTION", "VERDICT",
                                "STATUS", "DURATION", "COMMANDS", "CLIENT"]  # fmt: skip
    assert len(lines) == 5
    by_subject = {line.split()[2]: line for line in lines[1:]}
    assert ids["pg"] in by_subject["alice@example.com"]
    assert "closed" in by_subject["alice@example.com"]
    assert "ended abnormally" in by_subject["bob@example.com"]
    assert " open " in by_subject["carol@example.com"]
    assert "deny" in by_subject["mallory@example.com"]
    assert "denied" in by_subject["mallory@example.com"]


def test_list_json_and_filters(recorded):
    config, ids = recorded
    every = as_json(portcullis(config, "sessions", "list", "--format", "json"))
    assert [s["subject"] for s in every] == [
        "alice@example.com", "bob@example.com", "carol@example.com", "mallory@example.com"
    ]  # fmt: skip
    alice = every[0]
    assert alice["session_id"] == ids["pg"]
    assert alice["connection"] == "orders-db" and alice["connection_type"] == "postgres"
    assert alice["groups"] == ["readonly"] and alice["zone"] == "eu-prod"
    assert alice["client"] == "postgres-client" and alice["client_addr"] == "127.0.0.1:50000"
    assert (alice["verdict"], alice["status"]) == ("allow", "closed")
    assert alice["close_reason"] == "client_disconnect"
    assert alice["commands"] == 3 and alice["denied"] == 1
    assert alice["duration_seconds"] >= 0 and alice["ended_at"].endswith("Z")

    only = as_json(portcullis(config, "sessions", "list", "--subject", "alice@example.com",
                              "--format", "json"))  # fmt: skip
    assert [s["session_id"] for s in only] == [ids["pg"]]
    only = as_json(portcullis(config, "sessions", "list", "--connection", "web-1",
                              "--format", "json"))  # fmt: skip
    assert [s["session_id"] for s in only] == [ids["ssh"]]
    recent = as_json(portcullis(config, "sessions", "list", "--since", "1h", "--format", "json"))
    assert len(recent) == 4
    future = as_json(portcullis(config, "sessions", "list", "--since", "2999-01-01",
                                "--format", "json"))  # fmt: skip
    assert future == []
    since = as_json(portcullis(config, "sessions", "list", "--since", every[1]["started_at"],
                               "--format", "json"))  # fmt: skip
    assert [s["subject"] for s in since] == ["bob@example.com", "carol@example.com",
                                             "mallory@example.com"]  # fmt: skip


def test_list_rejects_a_time_it_cannot_read(recorded):
    config, _ = recorded
    result = portcullis(config, "sessions", "list", "--since", "yesterday-ish")
    assert result.returncode == 2
    assert "is not a time" in result.stderr


# -- replay ----------------------------------------------------------------------------------


def test_replay_postgres_session_as_statements_and_results(recorded):
    config, ids = recorded
    replay = as_json(portcullis(config, "sessions", "replay", ids["pg"], "--format", "json"))
    session = replay["session"]
    assert session["session_id"] == ids["pg"] and session["subject"] == "alice@example.com"
    assert session["token_id"] and session["issuer"] and session["policy_revision"]
    events = replay["events"]
    assert [(e["type"], e["verdict"]) for e in events] == [
        ("session.open", "allow"),
        ("command", "mask"),
        ("masking", ""),
        ("command", "deny"),
        ("command", "mask"),
        ("session.close", ""),
    ]
    offsets = [e["offset"] for e in events]
    assert offsets == sorted(offsets) and offsets[0] >= -0.01
    assert abs(events[1]["offset"] - events[3]["offset"] + 0.10) < 0.01  # from event times
    select, masking, drop, cached = events[1:5]
    assert select["kind"] == "postgres.query" and select["direction"] == "client"
    assert select["command"] == "SELECT email, name FROM customers"
    assert select["rows"] == 2 and select["result"]["tag"] == "SELECT 2"
    assert select["result"]["protocol"] == "simple"
    assert (select["decision_id"], select["cached"]) == (ids["d_select"], False)
    assert masking["masking"] == {"email": 2} and masking["decision_id"] == ids["d_select"]
    assert drop["decision_id"] == ids["d_drop"] and drop["error"] == "42501 denied by policy"
    assert drop["reasons"], "the deny shows the policy's reasons from its decision record"
    assert (cached["cached"], cached["decision_id"]) == (True, ids["d_select"])
    assert events[-1]["result"] == {"reason": "client_disconnect", "abnormal": False}
    totals = replay["totals"]
    assert totals["commands"] == 3 and totals["cached"] == 1 and totals["rows"] == 4
    assert totals["verdicts"] == {"mask": 2, "deny": 1}
    assert totals["masked"] == {"email": 2} and totals["errors"] == 1


def test_replay_text_timeline(recorded):
    config, ids = recorded
    result = portcullis(config, "replay", ids["pg"])  # the top-level shortcut
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"session {ids['pg']}" in text
    assert "alice@example.com" in text and "orders-db (postgres, zone eu-prod)" in text
    lines = text.splitlines()
    timeline = [line for line in lines if line.strip().startswith(("+", "-")) and "s  " in line]
    assert len(timeline) == 6
    assert "session opened: allow" in timeline[0]
    assert "SELECT email, name FROM customers" in timeline[1] and "SELECT 2" in timeline[1]
    assert f"[mask {ids['d_select']}]" in timeline[1]
    assert "masked email: 2" in timeline[2]
    assert "DROP TABLE customers" in timeline[3] and "[deny" in timeline[3]
    assert "error: 42501 denied by policy" in timeline[3]
    assert f"[mask cached from {ids['d_select']}]" in timeline[4]
    assert "session closed: client_disconnect" in timeline[5]
    assert "3 commands (deny 1, mask 2; 1 from cache), 4 rows" in text


def test_replay_ssh_and_http_events(recorded):
    config, ids = recorded
    ssh = as_json(portcullis(config, "sessions", "replay", ids["ssh"], "--format", "json"))
    kinds = [(e["type"], e["kind"]) for e in ssh["events"]]
    assert kinds == [("session.open", "session.open"), ("io", "ssh.io"),
                     ("command", "ssh.exec"), ("session.close", "session.close")]  # fmt: skip
    io, exec_ = ssh["events"][1:3]
    assert io["direction"] == "upstream" and io["result"] == {"stream": "stdout"}
    assert io["bytes"] == 60
    assert exec_["command"] == "uptime" and exec_["verdict"] == "mask"  # output detectors
    assert exec_["result"]["exit_status"] == 0 and exec_["result"]["stdout_bytes"] == 60
    assert ssh["session"]["status"] == "ended abnormally"
    assert ssh["events"][-1]["result"]["abnormal"] is True
    text = portcullis(config, "sessions", "replay", ids["ssh"]).stdout
    assert "$ uptime" in text and "exit 0, stdout 60 B, stderr 0 B" in text
    assert "(abnormal)" in text

    http = as_json(portcullis(config, "sessions", "replay", ids["http"], "--format", "json"))
    assert http["session"]["status"] == "open"
    request = http["events"][1]
    assert request["kind"] == "http.request" and request["decision_id"] == ids["d_get"]
    assert request["result"]["method"] == "GET" and request["result"]["path"] == "/v1/users/7"
    assert request["result"]["status"] == 200 and request["bytes"] == 512
    assert http["events"][-1]["type"] == "command"  # no close record yet
    text = portcullis(config, "replay", ids["http"][:12]).stdout  # a unique prefix
    assert "GET /v1/users/7" in text and "HTTP 200, 512 bytes" in text


def test_replay_unknown_session(recorded):
    config, _ = recorded
    result = portcullis(config, "sessions", "replay", "s-doesnotexist")
    assert result.returncode == 1
    assert "no recorded session 's-doesnotexist'" in result.stderr
    assert result.stdout == ""


def test_missing_store_is_an_error_not_a_new_file(tmp_path):
    config = write_config(tmp_path)
    result = portcullis(config, "sessions", "list")
    assert result.returncode == 1 and "no audit store" in result.stderr
    assert not (tmp_path / "audit.db").exists()


async def test_list_and_replay_while_the_pdp_is_running(tmp_path):
    path = write_config(tmp_path)
    config = load_config(path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        sid = (await open_on(stub, config, "orders-db", "postgres", "dave@example.com",
                             ("dba",))).session_id  # fmt: skip
        d = await decide(stub, sid, "postgres.query", "SELECT 1")
        details = {"tag": "SELECT 1", "rows": 1}
        await record(stub, sid, event(time.time(), d, direction="client", type="command",
                                      command="SELECT 1", details=details))  # fmt: skip
        listing = await asyncio.to_thread(portcullis, path, "sessions", "list", "--format", "json")
        replay = await asyncio.to_thread(portcullis, path, "replay", sid, "--format", "json")
    assert [s["status"] for s in as_json(listing)] == ["open"]
    events = as_json(replay)["events"]
    assert [e["command"] for e in events if e["type"] == "command"] == ["SELECT 1"]


# -- masking counts: in the statement's own event, or (older recordings) an event after it --


def _record(seq: int, kind: str, when: float, body: dict[str, Any], rid: str = "") -> AuditRecord:
    return AuditRecord(seq, rid or f"r{seq}", kind, when, "s-1", "alice@example.com", body, "", "")


def _recorded_both_ways(t0: float) -> tuple[list[AuditRecord], list[AuditRecord]]:
    """Two statements masked alike and one execution of a prepared one, as a proxy records
    them now (counts in details.masked, the two statements one run) and as it did before
    (a masking event after each statement)."""
    select = "SELECT email, upper(email) AS shout FROM customers"
    counts = {"field:email": 2, "derived:shout": 2}
    result: dict[str, Any] = {"tag": "SELECT 2", "rows": 2, "protocol": "simple"}
    executed = {**result, "protocol": "extended", "decision_id": "d-1"}
    command = {"direction": "client", "type": "command", "command": select,
               "decision_id": "d-1", "verdict": "mask", "cached": True}  # fmt: skip
    execution = {"direction": "upstream", "type": "response", "details": executed}
    now = [
        {**command, "time": t0 + 0.1, "repeat_us": [1000],
         "details": {**result, "masked": counts}},
        {**execution, "time": t0 + 0.2,
         "details": {**executed, "masked": {"field:email": 1}}},
    ]  # fmt: skip
    before = []
    for when in (t0 + 0.1, t0 + 0.101):
        before.append({**command, "time": when, "details": result})
        before.append({"time": when, "direction": "proxy", "type": "masking",
                       "decision_id": "d-1", "details": {"counts": counts}})  # fmt: skip
    before += [
        {**execution, "time": t0 + 0.2},
        {"time": t0 + 0.2, "direction": "proxy", "type": "masking", "decision_id": "d-1",
         "details": {"counts": {"field:email": 1}}},
    ]  # fmt: skip
    decision = _record(2, "decision", t0, {"verdict": "mask", "mask": [
        {"field": "email", "strategy": "redact"}, {"derived": True, "strategy": "hash"}]},
        rid="d-1")  # fmt: skip
    return (
        [decision, _record(3, EVENTS_KIND, t0 + 0.3, {"events_json": json.dumps(now)})],
        [decision, _record(3, EVENTS_KIND, t0 + 0.3, {"events": before})],
    )


def test_a_replay_reads_masking_counts_in_either_recorded_form():
    t0 = 1_700_000_000.0
    opened = _record(1, "session.open", t0, {"verdict": "mask", "session": {
        "identity": {"subject": "alice@example.com"}, "started_at": t0,
        "connection": {"name": "orders-db", "type": "postgres"}}})  # fmt: skip
    now, before = _recorded_both_ways(t0)
    timelines = [
        build_timeline(
            opened,
            None,
            [r for r in rs if r.kind == EVENTS_KIND],
            [r for r in rs if r.kind == "decision"],
        )
        for rs in (now, before)
    ]
    new, old = (t.to_dict() for t in timelines)
    commands = [[e for e in t["events"] if e["type"] == "command"] for t in (new, old)]
    for each in commands:
        assert [e["reasons"] for e in each] == [
            [
                "masked column shout (derived from a sensitive column) (hash): 2 values,"
                " field email (redact): 2 values"
            ],
            # the execution's counts go to the command its decision was last given to
            [
                "masked column shout (derived from a sensitive column) (hash): 2 values,"
                " field email (redact): 3 values"
            ],
        ]
    assert new["totals"]["masked"] == old["totals"]["masked"] == {
        "field:email": 5, "derived:shout": 4}  # fmt: skip
    assert [e["masking"] for e in commands[0]] == [{"derived:shout": 2, "field:email": 2}] * 2
    assert not [e for e in new["events"] if e["type"] == "masking"]
    text = render_text(timelines[0])
    assert "field email (redact): 3 values" in text
    assert "SELECT 2, masked field:email: 1" in text  # the execution's own line
    assert "masked" not in json.dumps([e["result"] for e in new["events"]])


def test_the_masking_log_reads_counts_in_either_recorded_form():
    t0 = 1_700_000_000.0
    logs = []
    for records in _recorded_both_ways(t0):
        log = MaskingLog()
        logs.append(
            sorted(
                (e["session_id"], e["decision_id"], e["command"], e.get("field", ""),
                 e.get("derived", ""), e["rule"], e["count"])
                for r in records
                for e in log.feed(record_line(r))
            )
        )  # fmt: skip
    assert logs[0] == logs[1]
    select = "SELECT email, upper(email) AS shout FROM customers"
    assert logs[0] == sorted(
        [("s-1", "d-1", select, "email", "", "redact", 2)] * 2
        + [("s-1", "d-1", select, "", "shout", "hash", 2)] * 2
        + [("s-1", "d-1", select, "email", "", "redact", 1)]
    )
