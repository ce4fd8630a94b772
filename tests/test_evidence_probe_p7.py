"""Evidence probe 7 (helper evidence8): an auditor's checks stop on nothing a bundle or a
store holds.

An exported bundle edited before the auditor verifies it offline fails its manifest's
digest, and `audit verify --bundle` must say so. A line of records.jsonl whose seq was
text (or a list), whose id or session id was a list, whose time_us no double holds or
whose kind or hash was a number stopped the check with a TypeError, AttributeError or
OverflowError (ten places found by changing one field of one line at a time): a traceback
where the auditor should read FAIL and the line. Each line is now taken as a record only
when its fields are of the types the export writes (pdp.evidence.bundle.a_record), else
named.

A record INSERTed into the store by someone else is named by `audit verify` (no record
MAC); a `session.open` whose `session` was text, or its start an integer no double
holds, stopped `audit verify`, the export, `sessions list` and the session's replay for
the whole store: one INSERT hid every record. Readers now take such fields as absent.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time

import pytest
from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from test_evidence_macs import forge
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli

from portcullis.config import load_config
from portcullis.v1 import pdp_pb2


async def _genuine(config) -> str:
    """A session with a decision, a batch and a close: its id."""
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
        decided = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        events = [{"time": time.time(), "direction": "client", "type": "command",
                   "command": "SELECT id FROM orders", "decision_id": decided.decision_id,
                   "verdict": "allow", "cached": False,
                   "details": {"tag": "SELECT 1", "rows": 1, "protocol": "simple"}}]  # fmt: skip
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events), batch_seq=1
            )
        )
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=opened.session_id))
        return opened.session_id


def _members(path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def _packed(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _edited(members, name: str, kind: str, field: str, value) -> list[tuple[str, bytes]]:
    """The members with `field` of the first line of `kind` in `name` set to `value`."""
    out = []
    for member, data in members:
        if member == name:
            lines = data.decode().splitlines()
            at = next(n for n, line in enumerate(lines) if json.loads(line)["kind"] == kind)
            line = json.loads(lines[at])
            line[field] = value
            lines[at] = json.dumps(line)
            data = ("\n".join(lines) + "\n").encode()
        out.append((member, data))
    return out


EDITS = [
    ("records.jsonl", "session.open", "seq", "x"),
    ("records.jsonl", "session.open", "seq", []),
    ("records.jsonl", "session.open", "seq", "1"),
    ("records.jsonl", "session.open", "kind", 1.5),
    ("records.jsonl", "session.open", "time_us", 10**400),
    ("records.jsonl", "decision", "id", []),
    ("records.jsonl", "session.events", "session_id", []),
    ("records.jsonl", "session.close", "hash", 1.5),
    ("records.jsonl", "session.close", "seq", "x"),
    ("records.jsonl", "checkpoint", "seq", "x"),
]


@pytest.mark.parametrize(("name", "kind", "field", "value"), EDITS)
async def test_an_edited_bundle_line_is_named_not_a_crash(tmp_path, name, kind, field, value):
    """Attack (whoever hands the auditor the bundle): change one field of one record line
    to another type. The offline check raised instead of failing with the line named."""
    config_path = _written(tmp_path)
    await _genuine(load_config(config_path))
    bundle = tmp_path / "evidence.tar.gz"
    export = await asyncio.to_thread(_cli, config_path, "audit", "export", "--out", str(bundle))
    assert export.returncode == 0, export.stdout + export.stderr
    edited = tmp_path / "edited.tar.gz"
    _packed(edited, _edited(_members(bundle), name, kind, field, value))
    said = await asyncio.to_thread(_cli, config_path, "audit", "verify", "--bundle", str(edited))
    assert said.returncode == 1, said.stdout + said.stderr
    assert "Traceback" not in said.stderr, said.stderr
    assert said.stdout.startswith("FAIL: "), said.stdout
    assert "records.jsonl: sha256 does not match manifest.json" in said.stdout, said.stdout


async def test_a_key_history_line_of_another_shape_is_named_not_a_crash(tmp_path):
    """The same for the bundle's key history: a line shaped as a rotation record whose
    seq is text stopped the key history's walk (sorting seqs of text and numbers)."""
    config_path = _written(tmp_path)
    await _genuine(load_config(config_path))
    bundle = tmp_path / "evidence.tar.gz"
    export = await asyncio.to_thread(_cli, config_path, "audit", "export", "--out", str(bundle))
    assert export.returncode == 0, export.stdout + export.stderr
    members = _members(bundle)
    records = dict(members)["records.jsonl"].decode().splitlines()
    rotation = {**json.loads(records[0]), "kind": "signing_key.rotated"}
    lines = [json.dumps({**rotation, "seq": "x"}), json.dumps({**rotation, "seq": 2})]
    history = ("\n".join(lines) + "\n").encode()
    edited = tmp_path / "edited.tar.gz"
    _packed(edited, [(n, history if n == "key_history.jsonl" else d) for n, d in members])
    said = await asyncio.to_thread(_cli, config_path, "audit", "verify", "--bundle", str(edited))
    assert said.returncode == 1, said.stdout + said.stderr
    assert "Traceback" not in said.stderr, said.stderr
    assert "key_history.jsonl line 1: not a record" in said.stdout, said.stdout


SESSIONS = [
    {"session": "x"},
    {"session": {"started_at": -(10**400)}},
    {"session": {"identity": "x", "connection": 7}, "reasons": 1.5, "credential": []},
]


@pytest.mark.parametrize("odd", SESSIONS)
async def test_a_session_open_inserted_with_odd_fields_stops_no_reader(tmp_path, odd):
    """Attack (INSERT access to the audit store, no key): append one well-chained
    `session.open` whose fields are of other types than the PDP's. `audit verify`,
    `audit export`, `sessions list` and the made-up session's replay raised (one
    AttributeError, OverflowError, TypeError) for as long as the store held it."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _genuine(config)
    body = {"verdict": "allow", "connection": "orders-db", **odd}
    await forge(config.pdp.store, "session.open", body, "s-made-up", "bob@example.com")
    online = await asyncio.to_thread(_cli, config_path, "audit", "verify")
    assert online.returncode == 1 and "Traceback" not in online.stderr, online.stderr
    assert "not written by a PDP holding the record key" in online.stdout, online.stdout
    listing = await asyncio.to_thread(_cli, config_path, "sessions", "list")
    assert listing.returncode == 0, listing.stderr
    assert "s-made-up" in listing.stdout
    replay = await asyncio.to_thread(_cli, config_path, "sessions", "replay", "s-made-up")
    assert replay.returncode == 0, replay.stderr
    assert "bob@example.com" in replay.stdout
