"""Audit evidence: signatures, checkpoints, credential statements, `audit verify`, exports.

Records are written by a real PDP (gRPC, embedded OPA) into a real store: SQLite in
tmp_path and PostgreSQL on the test server. Every tamper bypasses the append-only
triggers the way an attacker with file or superuser access would, and `portcullis audit
verify` (run as a subprocess, as an operator would) must exit 1 naming the first bad record.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import asyncpg
import pytest
import yaml
from audit_tamper import tamper
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import struct_pb2
from pdp_harness import REGO, REPO, decide_sql, free_port, open_session, pdp_stub, running_pdp
from pdp_harness import token as dev_token

from pdp.evidence.bundle import parse_time, read_bundle, verify_bundle
from pdp.evidence.checkpoints import (
    EXPOSED,
    NEVER_EXPOSED,
    CheckpointWriter,
    record_credential_statement,
)
from pdp.evidence.controls import CONTROLS, ISO, NIST, STREAMS
from pdp.evidence.signing import Signer, key_id_of, load_public_pem, verify_signed
from pdp.plumbing.timestamps import rfc3339
from pdp.store import open_store
from pdp.store.chain import record_hash
from portcullis.config import StoreSettings, load_config
from portcullis.v1 import pdp_pb2

COLUMNS = "seq, id, kind, time_us, session_id, subject, body, prev_hash, hash"


# -- helpers --------------------------------------------------------------------------


def portcullis(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + str(REPO / "proto")},
        timeout=120,
    )


@dataclass
class Env:
    """One PDP configuration (as a YAML file) and raw access to its store."""

    tmp: Path
    config_path: Path
    store: StoreSettings

    @property
    def config(self):
        return load_config(self.config_path)

    def verify(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return portcullis("-c", str(self.config_path), "audit", "verify", *extra)

    async def rows(self) -> list[dict[str, Any]]:
        names = [c.strip() for c in COLUMNS.split(",")]
        if self.store.type == "sqlite":
            db = sqlite3.connect(self.store.path)
            try:
                raw = db.execute(f"SELECT {COLUMNS} FROM audit_records ORDER BY seq").fetchall()
            finally:
                db.close()
            return [dict(zip(names, r, strict=True)) for r in raw]
        conn = await asyncpg.connect(self.store.dsn)
        try:
            raw = await conn.fetch(f"SELECT {COLUMNS} FROM audit_records ORDER BY seq")
        finally:
            await conn.close()
        return [dict(r) for r in raw]

    async def tamper(self, *statements: tuple[str, tuple]) -> None:
        await tamper(self.store, *statements)

    async def rewrite_and_rechain(self, seq: int, body: dict[str, Any]) -> None:
        """Replace one body and recompute every hash from there on: a valid-looking chain."""
        rows = await self.rows()
        statements = []
        prev = rows[seq - 2]["hash"] if seq > 1 else "0" * 64
        for row in rows[seq - 1 :]:
            new_body = body if row["seq"] == seq else json.loads(row["body"])
            digest = record_hash(
                prev,
                row["seq"],
                row["id"],
                row["kind"],
                row["time_us"],
                row["session_id"],
                row["subject"],
                new_body,
            )
            text = json.dumps(new_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            statements.append(
                (
                    "UPDATE audit_records SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (text, prev, digest, row["seq"]),
                )
            )
            prev = digest
        await self.tamper(*statements)


def make_env(tmp: Path, store: dict[str, Any]) -> Env:
    raw = {
        "pdp": {
            "listen": f"127.0.0.1:{free_port()}",
            # the default 250 ms deadline denies a cold first evaluation on a loaded
            # machine (an OpenSession refused: a session id of "" in the test after it)
            "engine": {"type": "embedded", "policies": str(REGO), "workers": 1, "timeout_ms": 5000},
            "store": store,
            "signing_key": str(tmp / "var" / "signing.key"),
        },
        "identity": {"dev": True, "dev_key": str(tmp / "var" / "dev.key")},
        "connections": [
            {
                "name": "orders-db",
                "type": "postgres",
                "listen": f"127.0.0.1:{free_port()}",
                "upstream": "127.0.0.1:5432",
                "zone": "eu-prod",
                "credentials": {"provider": "static", "username": "app", "password": "x"},
            }
        ],
    }
    path = tmp / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    return Env(tmp, path, config.pdp.store)


@pytest.fixture(params=["sqlite", "postgres"])
def env(request, tmp_path) -> Env:
    if request.param == "sqlite":
        return make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    return make_env(tmp_path, {"type": "postgres", "dsn": request.getfixturevalue("pg_database")})


def masking_event(decision_id: str) -> pdp_pb2.SessionEvent:
    details = struct_pb2.Struct()
    details.update({"counts": {"field:email": 3, "detector:credit_card": 1}})
    return pdp_pb2.SessionEvent(
        time=1.0, direction="proxy", type="masking", decision_id=decision_id, details=details
    )


async def close(stub, session_id: str, exposed: int, sent: int) -> None:
    summary = struct_pb2.Struct()
    summary.update({"credential_exposed": exposed, "bytes_to_client": sent, "commands": 2})
    await stub.CloseSession(
        pdp_pb2.CloseSessionRequest(
            session_id=session_id, reason="client_disconnect", summary=summary
        )
    )


async def populate(env: Env) -> None:
    """Two sessions through a real PDP; a checkpoint mid-way; a final one at shutdown."""
    config = env.config
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        tok = dev_token(config, groups=("readonly",))
        one = await open_session(stub, tok)
        select = await decide_sql(stub, one.session_id, "SELECT email FROM customers")
        await decide_sql(stub, one.session_id, "DROP TABLE customers")
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=one.session_id,
                events=[
                    pdp_pb2.SessionEvent(
                        time=1.0,
                        direction="client",
                        type="command",
                        command="SELECT email FROM customers",
                        decision_id=select.decision_id,
                        verdict="mask",
                    ),
                    masking_event(select.decision_id),
                ],
            )
        )
        await close(stub, one.session_id, exposed=0, sent=4096)
        assert app.checkpoints is not None
        assert await app.checkpoints.checkpoint() is not None
        assert await app.checkpoints.checkpoint() is None  # head did not move
        two = await open_session(stub, dev_token(config, sub="bob@example.com"))
        await decide_sql(stub, two.session_id, "SELECT 1")
        await close(stub, two.session_id, exposed=1, sent=77)
    # app.stop() wrote the shutdown checkpoint


def seq_of(rows: list[dict[str, Any]], kind: str, nth: int = 0) -> int:
    return [r["seq"] for r in rows if r["kind"] == kind][nth]


# -- signing ----------------------------------------------------------------------------


def test_signed_document_format_and_tampering():
    key = Ed25519PrivateKey.generate()
    signer = Signer(key)
    doc = signer.sign({"type": "x", "b": [1, "é"], "a": True})
    assert set(doc) == {"payload", "signature", "key_id", "alg"}
    assert doc["alg"] == "Ed25519" and len(doc["key_id"]) == 16
    assert len(base64.b64decode(doc["signature"])) == 64
    assert verify_signed(doc, key.public_key())
    # the signed bytes are canonical JSON: anyone can reproduce them
    message = json.dumps(
        doc["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    key.public_key().verify(base64.b64decode(doc["signature"]), message)
    assert not verify_signed({**doc, "payload": {**doc["payload"], "a": False}}, key.public_key())
    other = Ed25519PrivateKey.generate()
    assert not verify_signed(doc, other.public_key())
    forged = {**Signer(other).sign(doc["payload"]), "key_id": doc["key_id"]}
    assert not verify_signed(forged, key.public_key())
    assert not verify_signed({**doc, "signature": "!!"}, key.public_key())
    assert not verify_signed({"payload": "x"}, key.public_key())
    assert load_public_pem(signer.public_pem()).public_bytes_raw() == (
        key.public_key().public_bytes_raw()
    )


def test_parse_time():
    assert parse_time("1700000000") == 1700000000.0
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_time("2023-11-14T23:13:20+01:00") == 1700000000.0
    assert parse_time("2023-11-14") == 1699920000.0
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_every_required_control_is_evidenced_with_a_rationale():
    nist = {"AC-2", "AC-3", "AC-6", "AU-2", "AU-3", "AU-6", "AU-9", "AU-10", "AU-12", "IA-2"}
    nist |= {"SC-28"}
    iso = {"5.15", "5.18", "8.2", "8.5", "8.15", "8.16"}
    assert set(CONTROLS[NIST]) == nist and set(CONTROLS[ISO]) == iso
    used = {(fw, cid) for s in STREAMS for fw, cid, why in s.controls if why.strip()}
    assert {(NIST, c) for c in nist} | {(ISO, c) for c in iso} <= used


# -- checkpoints and statements ------------------------------------------------------------


async def test_checkpoint_writer_runs_on_its_interval_and_at_stop(tmp_path):
    store = open_store(StoreSettings(type="sqlite", path=tmp_path / "audit.db"))
    await store.start()
    signer = Signer(Ed25519PrivateKey.generate())
    writer = CheckpointWriter(store, signer, interval_seconds=0.05, anchor_path=tmp_path / "a.json")
    try:
        writer.start()
        await asyncio.sleep(0.15)
        assert await store.query(kind="checkpoint") == []  # empty chain: nothing to sign
        first = await store.append("decision", {"n": 1})
        for _ in range(100):
            if await store.query(kind="checkpoint"):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # several more ticks with an unmoved head
        checkpoints = await store.query(kind="checkpoint")
        assert len(checkpoints) == 1
        payload = checkpoints[0].body["payload"]
        assert (payload["seq"], payload["hash"]) == (1, first.hash)
        assert verify_signed(checkpoints[0].body, signer.public_key)
        await store.append("decision", {"n": 2})
        await writer.stop()
        last = (await store.query(kind="checkpoint"))[-1]
        assert last.body["payload"]["seq"] == 3
        anchor = json.loads((tmp_path / "a.json").read_text())
        assert anchor["payload"] == last.body["payload"]
        assert anchor["record"]["seq"] == last.seq
    finally:
        await writer.stop()
        await store.close()


async def test_stop_lets_a_begun_checkpoint_write_its_anchor(tmp_path):
    """stop() while the timer's checkpoint is between its record and its anchor: the
    checkpoint finishes, so the anchor holds the newest checkpoint (cancelled there, the
    anchor kept an older one and the last checkpoint, finding the head already a
    checkpoint, wrote nothing)."""
    store = open_store(StoreSettings(type="sqlite", path=tmp_path / "audit.db"))
    await store.start()
    signer = Signer(Ed25519PrivateKey.generate())
    writer = CheckpointWriter(store, signer, interval_seconds=0.05, anchor_path=tmp_path / "a.json")
    appending, release = asyncio.Event(), asyncio.Event()
    append = store.append

    async def held_append(kind, body, **kw):
        record = await append(kind, body, **kw)
        if kind == "checkpoint" and not release.is_set():
            appending.set()
            await release.wait()  # the record is in; its anchor not yet written
        return record

    store.append = held_append  # type: ignore[method-assign]
    try:
        await append("decision", {"n": 1})
        writer.start()
        await asyncio.wait_for(appending.wait(), 30)
        stopping = asyncio.create_task(writer.stop())
        await asyncio.sleep(0.1)  # stop() is waiting on the begun checkpoint
        release.set()
        await stopping
        checkpoints = await store.query(kind="checkpoint")
        assert len(checkpoints) == 1  # the head was covered: stop() had nothing to add
        anchor = json.loads((tmp_path / "a.json").read_text())
        assert anchor["payload"] == checkpoints[0].body["payload"]
        assert anchor["record"]["seq"] == checkpoints[0].seq
    finally:
        release.set()
        await writer.stop()
        await store.close()


async def test_statement_is_made_only_from_the_proxy_finding(tmp_path):
    store = open_store(StoreSettings(type="sqlite", path=tmp_path / "audit.db"))
    await store.start()
    signer = Signer(Ed25519PrivateKey.generate())
    try:
        common = {"session_id": "s-1", "subject": "alice", "connection": "orders-db"}
        none = await record_credential_statement(store, signer, summary={}, **common)
        assert none is None  # no finding → no claim
        record = await record_credential_statement(
            store,
            signer,
            summary={"credential_exposed": 1.0, "bytes_to_client": 12.0, "credential_ref": "r"},
            **common,
        )
        payload = record.body["payload"]
        assert payload["exposed"] is True and payload["statement"] == EXPOSED
        assert payload["checked_bytes"] == 12 and payload["credential_ref"] == "r"
        assert record.session_id == "s-1" and verify_signed(record.body, signer.public_key)
    finally:
        await store.close()


# -- audit verify on a live store ------------------------------------------------------------


async def test_pdp_writes_statements_and_checkpoints_and_verify_is_ok(env):
    await populate(env)
    result = env.verify()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ")
    rows = await env.rows()
    # it says what it counted, and over which range of seqs and times
    first, last = rows[0], rows[-1]
    assert (
        f"{len(rows)} audit records in an unbroken hash chain (seq 1..{last['seq']},"
        f" {rfc3339(first['time_us'] / 1e6)} to {rfc3339(last['time_us'] / 1e6)})"
    ) in result.stdout
    assert f"head: seq {last['seq']} hash {last['hash']}" in result.stdout
    assert "2 signed credential-never-exposed statements" in result.stdout
    checkpoints = [r for r in rows if r["kind"] == "checkpoint"]
    assert len(checkpoints) == 2 and f"{len(checkpoints)} signed checkpoints" in result.stdout
    assert "signatures: 4 Ed25519 signatures verified" in result.stdout
    opened = sum(1 for r in rows if r["kind"] == "session.open")
    assert f"sessions: {opened} opened in this range" in result.stdout
    assert "anchor: " in result.stdout and "reached, unchanged" in result.stdout
    assert rows[-1]["kind"] == "checkpoint"  # written at shutdown

    statements = [json.loads(r["body"]) for r in rows if r["kind"] == "credential.statement"]
    assert [s["payload"]["statement"] for s in statements] == [NEVER_EXPOSED, EXPOSED]
    first = statements[0]["payload"]
    assert first["subject"] == "alice@example.com" and first["connection"] == "orders-db"
    assert first["checked_bytes"] == 4096 and first["exposed"] is False
    assert first["credential_ref"] == "static:orders-db"  # named, never the secret
    close_rows = [r for r in rows if r["kind"] == "session.close"]
    assert first["session_close_id"] == close_rows[0]["id"]
    # the statement follows its session.close record
    assert seq_of(rows, "credential.statement") == close_rows[0]["seq"] + 1


@pytest.mark.parametrize("tamper", ["change_body", "delete", "swap", "forge_checkpoint"])
async def test_verify_names_the_first_bad_record(env, tamper):
    await populate(env)
    rows = await env.rows()
    if tamper == "change_body":
        bad = seq_of(rows, "decision", 1)
        body = json.loads(rows[bad - 1]["body"])
        body["verdict"] = "allow"
        await env.tamper(
            ("UPDATE audit_records SET body = ? WHERE seq = ?", (json.dumps(body), bad))
        )
    elif tamper == "delete":
        bad = seq_of(rows, "session.events")
        await env.tamper(("DELETE FROM audit_records WHERE seq = ?", (bad,)))
    elif tamper == "swap":
        a, b = rows[1], rows[4]
        bad = a["seq"]
        cols = "id = ?, kind = ?, time_us = ?, session_id = ?, subject = ?, body = ?,"
        cols += " prev_hash = ?, hash = ?"

        def values(r):
            return (r["kind"], r["time_us"], r["session_id"], r["subject"], r["body"])

        await env.tamper(
            ("UPDATE audit_records SET id = ? WHERE seq = ?", ("tmp", a["seq"])),
            (
                f"UPDATE audit_records SET {cols} WHERE seq = ?",
                (a["id"], *values(a), a["prev_hash"], a["hash"], b["seq"]),
            ),
            (
                f"UPDATE audit_records SET {cols} WHERE seq = ?",
                (b["id"], *values(b), b["prev_hash"], b["hash"], a["seq"]),
            ),
        )
    else:
        # the attacker re-signs a checkpoint with their own key and re-hashes the whole
        # chain after it: every link holds, only the signature gives it away
        bad = seq_of(rows, "checkpoint")
        doc = json.loads(rows[bad - 1]["body"])
        forged = Signer(Ed25519PrivateKey.generate()).sign({**doc["payload"], "time": 1.0})
        forged["key_id"] = doc["key_id"]
        await env.rewrite_and_rechain(bad, forged)

    result = env.verify()
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"FAIL: record seq={bad} "), result.stdout
    if tamper == "forge_checkpoint":
        assert "kind=checkpoint" in first and "signature does not verify" in first


async def test_rewrite_with_a_rehashed_chain_is_caught_by_the_signed_checkpoint(env):
    await populate(env)
    rows = await env.rows()
    target = seq_of(rows, "decision", 1)  # before the first checkpoint
    body = json.loads(rows[target - 1]["body"])
    body["verdict"] = "allow"
    await env.rewrite_and_rechain(target, body)
    result = env.verify()
    assert result.returncode == 1, result.stdout
    checkpoint = seq_of(rows, "checkpoint")
    assert f"record seq={checkpoint} kind=checkpoint" in result.stdout
    assert f"a record in seq 1..{checkpoint - 1} was rewritten" in result.stdout


async def test_truncating_the_tail_is_caught_by_the_anchor(env):
    await populate(env)
    rows = await env.rows()
    cut = seq_of(rows, "session.open", 1)  # delete bob's session and everything after
    await env.tamper(("DELETE FROM audit_records WHERE seq >= ?", (cut,)))
    result = env.verify()
    assert result.returncode == 1, result.stdout
    assert "deleted from the end" in result.stdout
    assert f"seq={cut}" in result.stdout.splitlines()[0]
    # the head file (the head as the PDP last saw it) alone catches it too
    (env.tmp / "var" / "checkpoint.json").unlink()
    assert "deleted from the end" in env.verify().stdout
    # without either file the shorter chain is internally consistent
    (env.tmp / "var" / "head.json").unlink()
    assert env.verify().returncode == 0


# -- export and offline verification -----------------------------------------------------------


def read_tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


async def test_export_and_offline_verify(env, tmp_path):
    await populate(env)
    out = tmp_path / "out" / "evidence.tar.gz"
    result = portcullis("-c", str(env.config_path), "audit", "export", "--out", str(out))
    assert result.returncode == 0, result.stderr
    # offline: no config, no store — from an empty directory
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = portcullis("audit", "verify", "--bundle", str(out), cwd=empty)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ")
    assert "audit records in an unbroken hash chain (seq 1.." in result.stdout
    assert "sessions: " in result.stdout and "signed by key " in result.stdout

    files = read_tar(out)
    rows = await env.rows()
    records = jsonl(files["records.jsonl"])
    assert [r["seq"] for r in records] == [r["seq"] for r in rows]
    assert records[-1]["hash"] == rows[-1]["hash"]
    assert {r["kind"] for r in jsonl(files["access.jsonl"])} == {"session.open", "session.close"}
    assert len(jsonl(files["decisions.jsonl"])) == 3
    assert len(jsonl(files["recordings.jsonl"])) == 1
    assert files["approvals.jsonl"] == b""
    masking = jsonl(files["masking.jsonl"])
    assert {(m.get("field"), m.get("detector"), m["count"]) for m in masking} == {
        ("email", None, 3),
        (None, "credit_card", 1),
    }
    assert all(m["command"] == "SELECT email FROM customers" for m in masking)
    manifest = json.loads(files["manifest.json"])["payload"]
    for name, data in files.items():
        if name != "manifest.json":
            assert manifest["files"][name] == hashlib.sha256(data).hexdigest()
    assert {"AC-2", "AU-9", "AU-10", "SC-28"} <= set(manifest["controls"][NIST])
    assert manifest["streams"]["access"]["controls"][0]["rationale"]
    head = json.loads(files["chain_head.json"])
    assert (head["payload"]["seq"], head["payload"]["hash"]) == (rows[-1]["seq"], rows[-1]["hash"])

    # the credential statement verifies with the public key alone, using cryptography only
    public = serialization.load_pem_public_key(files["public_key.pem"])
    statements = jsonl(files["credential_statements.jsonl"])
    assert len(statements) == 2
    for line in statements:
        doc = line["body"]
        message = json.dumps(
            doc["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        public.verify(base64.b64decode(doc["signature"]), message)  # raises if forged
    assert statements[0]["body"]["payload"]["statement"] == "credential never exposed"

    # pinning the PDP's real key works; the key of someone else does not
    real = env.tmp / "pdp.pem"
    real.write_bytes(files["public_key.pem"])
    assert (
        portcullis("audit", "verify", "--bundle", str(out), "--public-key", str(real)).returncode
        == 0
    )


async def test_export_window_is_contiguous_and_verifies(env, tmp_path):
    await populate(env)
    rows = await env.rows()
    middle = rows[len(rows) // 2]
    since = middle["time_us"] / 1e6
    out = tmp_path / "window.tar.gz"
    result = portcullis(
        "-c", str(env.config_path), "audit", "export", "--since", str(since), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    records = jsonl(read_tar(out)["records.jsonl"])
    assert records[0]["seq"] <= middle["seq"] and records[-1]["seq"] == rows[-1]["seq"]
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], rows[-1]["seq"] + 1))
    report = verify_bundle(out)
    assert report.ok, [p.describe() for p in report.problems]
    empty = tmp_path / "empty.tar.gz"
    result = portcullis(
        "-c", str(env.config_path), "audit", "export", "--until", "1000", "--out", str(empty)
    )
    assert result.returncode == 0 and verify_bundle(empty).ok


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, Mapping[str, bytes]]:
    """One exported bundle the module's tamper tests read (each writes its edits to a
    bundle of its own); its members read-only, so no test changes what the next reads.
    Made once: a populated PDP and an `audit export` per test were most of their time."""
    where = tmp_path_factory.mktemp("bundle")
    env = make_env(where, {"type": "sqlite", "path": str(where / "var" / "audit.db")})
    asyncio.run(populate(env))
    out = where / "evidence.tar.gz"
    assert (
        portcullis("-c", str(env.config_path), "audit", "export", "--out", str(out)).returncode == 0
    )
    return out, MappingProxyType(read_tar(out))


def edit(files: Mapping[str, bytes], name: str, fn) -> dict[str, bytes]:
    lines = jsonl(files[name])
    fn(lines)
    text = b"".join(
        json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        for x in lines
    )
    return {**files, name: text}


def offline(path: Path) -> subprocess.CompletedProcess[str]:
    return portcullis("audit", "verify", "--bundle", str(path))


async def test_edited_record_line_is_named(bundle, tmp_path):
    _out, files = bundle
    records = jsonl(files["records.jsonl"])
    target = next(r for r in records if r["kind"] == "decision")

    def change(lines):
        next(x for x in lines if x["seq"] == target["seq"])["body"]["verdict"] = "allow"

    bad = tmp_path / "bad.tar.gz"
    write_tar(bad, edit(files, "records.jsonl", change))
    result = offline(bad)
    assert result.returncode == 1
    assert result.stdout.startswith(f"FAIL: record seq={target['seq']} kind=decision")
    assert "records.jsonl: sha256 does not match manifest.json" in result.stdout


async def test_dropped_record_line_is_named(bundle, tmp_path):
    _out, files = bundle
    records = jsonl(files["records.jsonl"])
    dropped = records[3]["seq"]
    bad = tmp_path / "bad.tar.gz"
    write_tar(bad, edit(files, "records.jsonl", lambda lines: lines.pop(3)))
    result = offline(bad)
    assert result.returncode == 1
    assert result.stdout.startswith(f"FAIL: record seq={dropped} ")
    assert "missing" in result.stdout.splitlines()[0]


async def test_dropped_last_line_is_caught_by_the_signed_head(bundle, tmp_path):
    _out, files = bundle
    last = jsonl(files["records.jsonl"])[-1]["seq"]
    bad = tmp_path / "bad.tar.gz"
    write_tar(bad, edit(files, "records.jsonl", lambda lines: lines.pop()))
    result = offline(bad)
    assert result.returncode == 1
    assert result.stdout.startswith(f"FAIL: record seq={last} ")
    assert "chain_head.json" in result.stdout


async def test_edited_stream_file_and_manifest_are_caught(bundle, tmp_path):
    _out, files = bundle

    def hide(lines):
        lines.pop()

    bad = tmp_path / "bad.tar.gz"
    write_tar(bad, edit(files, "masking.jsonl", hide))
    result = offline(bad)
    assert result.returncode == 1 and "masking.jsonl" in result.stdout
    # the attacker also fixes the manifest hash: the manifest signature gives it away
    tampered = edit(files, "masking.jsonl", hide)
    manifest = json.loads(files["manifest.json"])
    manifest["payload"]["files"]["masking.jsonl"] = hashlib.sha256(
        tampered["masking.jsonl"]
    ).hexdigest()
    tampered["manifest.json"] = json.dumps(manifest).encode()
    write_tar(bad, tampered)
    result = offline(bad)
    assert result.returncode == 1 and "manifest.json: signature does not verify" in result.stdout


async def test_a_bundle_resigned_by_another_key_fails_when_the_key_is_pinned(bundle, tmp_path):
    _out, files = bundle
    real_pem = tmp_path / "pdp.pem"
    real_pem.write_bytes(files["public_key.pem"])
    other = Ed25519PrivateKey.generate()
    swapped = {
        **files,
        "public_key.pem": other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    bad = tmp_path / "bad.tar.gz"
    write_tar(bad, swapped)
    result = portcullis("audit", "verify", "--bundle", str(bad), "--public-key", str(real_pem))
    assert result.returncode == 1
    assert f"not the pinned key {key_id_of(load_public_pem(files['public_key.pem']))}" in (
        result.stdout
    )


async def test_record_times_are_the_one_form_and_older_bundles_still_verify(bundle):
    """records.jsonl writes `time` as RFC 3339 with milliseconds, like every other output;
    a bundle written before (microseconds) still verifies, and a time that is not its
    hashed time_us is still caught."""
    from pdp.evidence.bundle import _check_records, _legacy_time_of

    _out, files = bundle
    lines = jsonl(files["records.jsonl"])
    assert all(r["time"] == rfc3339(r["time_us"] / 1e6) for r in lines)
    assert all(len(r["time"]) == len("2026-12-03T14:37:20.123Z") for r in lines)

    def rewritten(time_of) -> bytes:
        return b"".join(
            json.dumps({**r, "time": time_of(r)}, sort_keys=True).encode() + b"\n" for r in lines
        )

    problems: list = []
    _check_records(rewritten(lambda r: _legacy_time_of(r["time_us"])), problems)
    assert problems == []
    _check_records(rewritten(lambda r: rfc3339(r["time_us"] / 1e6 + 0.002)), problems)
    assert problems and "differs from its hashed time_us" in problems[0].text


async def test_a_member_the_manifest_does_not_list_is_not_read(bundle, tmp_path):
    """A bundle handed over with members its signed manifest does not name (here one;
    as well many of up to 1 GiB each, every one read into the auditor's memory before)
    fails, naming them, and they are not read; nor is a manifest that is not the first
    member (the export writes it first) taken as the list."""
    _out, files = bundle
    assert next(iter(files)) == "manifest.json"
    bad = tmp_path / "bad.tar.gz"
    write_tar(bad, {**files, "extra.bin": b"x" * 4096})
    read, problems = read_bundle(bad)
    assert "extra.bin" not in read
    assert any("extra.bin: not a file the manifest lists" in p.describe() for p in problems)
    result = offline(bad)
    assert result.returncode == 1 and "extra.bin" in result.stdout
    moved = tmp_path / "moved.tar.gz"
    write_tar(moved, {k: v for k, v in files.items() if k != "manifest.json"}
              | {"manifest.json": files["manifest.json"]})  # fmt: skip
    result = offline(moved)
    assert result.returncode == 1 and "not the archive's first member" in result.stdout
