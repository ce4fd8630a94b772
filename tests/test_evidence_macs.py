"""Record MACs: a record someone INSERTs into the audit store is never vouched for.

Attack (INSERT access to the audit store: the PDP's own database login, or write access
to the SQLite file; not the PDP's keys): the chain hash needs no key and the triggers
refuse only UPDATE and DELETE, so a well-chained record of any kind (a decision, session
events) appended by hand was vouched for by the next signed checkpoint, and `portcullis
audit verify`, the export and offline bundle verification passed on forged evidence.

Now the store writes with each batch a MAC under a key derived from the proxy key
(pdp.store.macs), and the checkpoint writer signs a head only when every record since the
last checkpoint carries a valid one. Real PDPs (gRPC, embedded OPA) on a real SQLite file
and on the PostgreSQL test server; the forged records are INSERTed with sqlite3 and
asyncpg, chained as the PDP chains them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from pdp_harness import (
    REPO,
    decide_sql,
    open_session,
    pdp_config,
    pdp_raw,
    pdp_stub,
    running_pdp,
    token,
)

from pdp.api.http_api import metrics_text
from pdp.evidence.bundle import StoreUnverified, export_bundle, verify_bundle
from pdp.evidence.checkpoints import CHECKPOINT_KIND, CheckpointWriter, verify_store
from pdp.evidence.signing import Signer
from pdp.plumbing.keys import load_or_create_ed25519
from pdp.store import open_store
from pdp.store.chain import canonical_json, record_hash
from portcullis.config import Config, StoreSettings, load_config


def write_config(tmp: Path, store: dict[str, Any]) -> tuple[Path, Config]:
    path = tmp / "portcullis.yaml"
    path.write_text(yaml.safe_dump(pdp_raw(tmp, store=store)))
    return path, load_config(path)


def store_of(backend: str, tmp: Path, dsn: str | None) -> dict[str, Any]:
    if backend == "sqlite":
        return {"type": "sqlite", "path": str(tmp / "audit.db")}
    return {"type": "postgres", "dsn": dsn}


def audit(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "-c", str(config_path), "audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + str(REPO / "proto")},
    )


async def forge(
    store: StoreSettings,
    kind: str,
    body: dict[str, Any],
    session_id: str = "",
    subject: str = "",
    mac: str | None = None,
) -> int:
    """INSERT a record chained onto the head, as anyone with INSERT access can (with a
    `mac` column when given): its seq."""
    now_us = int(time.time() * 1_000_000)
    record_id = f"forged-{kind}-{now_us}"
    columns = "seq, id, kind, time_us, session_id, subject, body, prev_hash, hash"
    if mac is not None:
        columns += ", mac"
    if store.type == "sqlite":
        db = sqlite3.connect(store.path, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            head = db.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            seq, prev = head.fetchone()
            seq += 1
            digest = record_hash(prev, seq, record_id, kind, now_us, session_id, subject, body)
            row = (seq, record_id, kind, now_us, session_id, subject, canonical_json(body),
                   prev, digest) + ((mac,) if mac is not None else ())  # fmt: skip
            marks = ", ".join("?" * len(row))
            db.execute(f"INSERT INTO audit_records ({columns}) VALUES ({marks})", row)
            db.execute("COMMIT")
        finally:
            db.close()
        return int(seq)
    conn = await asyncpg.connect(store.dsn)
    try:
        async with conn.transaction():
            head = await conn.fetchrow(
                "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
            )
            seq = head["seq"] + 1
            digest = record_hash(
                head["hash"], seq, record_id, kind, now_us, session_id, subject, body
            )
            row = (seq, record_id, kind, now_us, session_id, subject, canonical_json(body),
                   head["hash"], digest) + ((mac,) if mac is not None else ())  # fmt: skip
            marks = ", ".join(f"${n}" for n in range(1, len(row) + 1))
            await conn.execute(f"INSERT INTO audit_records ({columns}) VALUES ({marks})", *row)
    finally:
        await conn.close()
    return int(seq)


async def forge_with_macs(store: StoreSettings) -> int:
    """INSERT two records carrying a MAC: one copied from the PDP's newest batch, one made
    up (no key) spanning both: the second's seq."""
    sql = "SELECT mac FROM audit_records WHERE mac IS NOT NULL ORDER BY seq DESC LIMIT 1"
    if store.type == "sqlite":
        db = sqlite3.connect(store.path)
        try:
            genuine = db.execute(sql).fetchone()[0]
        finally:
            db.close()
    else:
        conn = await asyncpg.connect(store.dsn)
        try:
            genuine = await conn.fetchval(sql)
        finally:
            await conn.close()
    copied = await forge(store, "decision", {"verdict": "allow"}, subject="x", mac=genuine)
    return await forge(
        store, "decision", {"verdict": "allow"}, subject="y", mac=f"{copied}:" + "ab" * 32
    )


async def signed_seqs(app: Any) -> list[int]:
    """The seqs the checkpoints in the store name."""
    return [r.body["payload"]["seq"] for r in await app.store.query(kind=CHECKPOINT_KIND)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_record_inserted_by_someone_else_is_never_vouched_for(backend, tmp_path, request):
    dsn = request.getfixturevalue("pg_database") if backend == "postgres" else None
    config_path, config = write_config(tmp_path, store_of(backend, tmp_path, dsn))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        sid = opened.session_id
        await decide_sql(stub, sid, "SELECT id FROM orders")
        assert await app.checkpoints.checkpoint() is not None  # authentic: signed
        forged_decision = await forge(
            config.pdp.store,
            "decision",
            {"verdict": "allow", "command": {"raw": "DROP TABLE orders"}, "rule": "approved"},
            session_id=sid,
            subject="alice@example.com",
        )
        forged_events = await forge(
            config.pdp.store,
            "session.events",
            {"events": [{"type": "command", "command": "SELECT 1"}]},
            session_id=sid,
            subject="alice@example.com",
        )
        if "mac" in await _columns(config.pdp.store):  # (the tree before: no such column)
            forged_events = await forge_with_macs(config.pdp.store)  # MACs copied, made up
        await decide_sql(stub, sid, "SELECT id FROM customers")  # authentic, after them
        signed = await app.checkpoints.checkpoint()  # signed, naming them as not the PDP's
        assert signed is not None
        assert signed.body["payload"]["foreign"] == [[forged_decision, forged_events]]
        assert app.checkpoints.foreign_ranges == [(forged_decision, forged_events)]
        count = forged_events - forged_decision + 1
        assert f"portcullis_audit_foreign_records_total {count}\n" in metrics_text(app)
        report = await verify_store(app.store, app.signer.public_key)
        assert not report.ok
        assert [p.seq for p in report.problems] == [forged_decision]
        assert "no valid record MAC" in report.problems[0].text
        with pytest.raises(StoreUnverified) as refused:
            await export_bundle(app.store, app.signer, tmp_path / "bundle.tar.gz")
        assert refused.value.problems[0].seq == forged_decision
        assert not (tmp_path / "bundle.tar.gz").exists()
    # every checkpoint signed over the forged records names them
    async with _store(config.pdp.store) as store:
        payloads = [r.body["payload"] for r in await store.query(kind=CHECKPOINT_KIND)]
    named = [[forged_decision, forged_events]]
    assert all(p.get("foreign") == named for p in payloads if p["seq"] == signed.seq - 1)
    result = audit(config_path, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"records {forged_decision}..{forged_events} not written" in result.stdout
    exported = audit(config_path, "export", "--out", str(tmp_path / "cli.tar.gz"))
    assert exported.returncode == 1 and "no valid record MAC" in exported.stdout
    assert not (tmp_path / "cli.tar.gz").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_authentic_records_keep_checkpointing_across_a_restart(
    backend, tmp_path, request, monkeypatch
):
    """Same keys after a restart: the records of both runs verify and are signed for; a
    record INSERTed while the PDP was down (after its shutdown checkpoint) is not. (verify
    reads 3 records a page here: batches straddle pages.)"""
    from pdp.evidence import checkpoints

    monkeypatch.setattr(checkpoints, "PAGE", 3)
    dsn = request.getfixturevalue("pg_database") if backend == "postgres" else None
    config_path, config = write_config(tmp_path, store_of(backend, tmp_path, dsn))
    tok = token(config)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, tok)
        for n in range(5):
            await decide_sql(stub, opened.session_id, f"SELECT {n}")
        assert await app.checkpoints.checkpoint() is not None
        await decide_sql(stub, opened.session_id, "SELECT 6")
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, tok)
        await asyncio.gather(*(decide_sql(stub, opened.session_id, "SELECT 7") for _ in range(20)))
        signed = await app.checkpoints.checkpoint()
        assert signed is not None
        head = await app.store.head()
        assert signed.body["payload"]["seq"] == head[0] - 1
        report = await verify_store(app.store, app.signer.public_key)
        assert report.ok, [p.describe() for p in report.problems]
        checked = getattr(report.counted, "macs", "")
    verified = audit(config_path, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    forged = await forge(config.pdp.store, "decision", {"verdict": "allow"}, subject="bob")
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, tok)
        await decide_sql(stub, opened.session_id, "SELECT 8")
        signed = await app.checkpoints.checkpoint()
        assert signed is not None and signed.body["payload"]["foreign"] == [[forged, forged]]
    assert audit(config_path, "verify").returncode == 1
    # what verify said it checked, before the forged record
    assert "written by a holder of the PDP's key" in checked
    assert "record MACs:" in verified.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_operator_acknowledges_foreign_records_and_checkpoints_go_on(
    backend, tmp_path, request
):
    """`portcullis audit acknowledge` (run where the proxy key is readable) appends a MAC'd
    record naming the foreign records and the chain's hash at their end: they stay in the
    chain, named by verify as acknowledged. An acknowledgement INSERTed by someone else
    acknowledges nothing; a foreign record after the acknowledgement is named again (by the
    next checkpoint, which is signed all the same: test_pdp_probe_p8)."""
    dsn = request.getfixturevalue("pg_database") if backend == "postgres" else None
    config_path, config = write_config(tmp_path, store_of(backend, tmp_path, dsn))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        assert await app.checkpoints.checkpoint() is not None
        forged = await forge(config.pdp.store, "decision", {"verdict": "allow"}, subject="x")
        [record] = await app.store.query(after_seq=forged - 1, limit=1)
        fake_ack = await forge(
            config.pdp.store,
            "audit.foreign_acknowledged",
            {"ranges": [[forged, forged, record.hash]], "reason": "nothing to see"},
        )
        await decide_sql(stub, opened.session_id, "SELECT 2")
        signed = await app.checkpoints.checkpoint()  # the INSERTed acknowledgement counts not
        assert signed is not None and signed.body["payload"]["foreign"] == [[forged, fake_ack]]
        acked = await asyncio.to_thread(
            audit, config_path, "acknowledge", "--through", str(fake_ack), "--reason", "INC-42"
        )
        assert acked.returncode == 0, acked.stdout + acked.stderr
        assert f"acknowledged foreign records {forged}..{fake_ack}" in acked.stdout
        await decide_sql(stub, opened.session_id, "SELECT 3")
        assert await app.checkpoints.checkpoint() is not None
        report = await verify_store(app.store, app.signer.public_key)
        assert report.ok, [p.describe() for p in report.problems]
        assert f"except records {forged}..{fake_ack}" in report.counted.macs
        later = await forge(config.pdp.store, "decision", {"verdict": "allow"}, subject="z")
        await decide_sql(stub, opened.session_id, "SELECT 4")
        signed = await app.checkpoints.checkpoint()
        assert signed is not None and signed.body["payload"]["foreign"] == [[later, later]]
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1
    assert f"record {later} not written" in result.stdout
    assert f"record {forged} " not in result.stdout


async def test_a_store_written_before_record_macs_checkpoints_on(tmp_path):
    """Upgrade: a store whose records carry no MAC, closed with a signed checkpoint (a
    clean shutdown), is vouched for up to it; the PDP with the key checkpoints its own
    records after it, and names a record INSERTed after that."""
    _, config = write_config(tmp_path, store_of("sqlite", tmp_path, None))
    signer = Signer(load_or_create_ed25519(config.pdp.signing_key))
    async with _store(config.pdp.store) as old:  # as the PDP before record MACs wrote it
        for n in range(3):
            await old.append("decision", {"verdict": "allow", "n": n}, subject="old")
        assert await CheckpointWriter(old, signer).checkpoint() is not None
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        assert await app.checkpoints.checkpoint() is not None
        report = await verify_store(app.store, app.signer.public_key)
        assert report.ok, [p.describe() for p in report.problems]
        forged = await forge(config.pdp.store, "decision", {"verdict": "allow"}, subject="x")
        await decide_sql(stub, opened.session_id, "SELECT 2")
        signed = await app.checkpoints.checkpoint()
        assert signed is not None and signed.body["payload"]["foreign"] == [[forged, forged]]
        report = await verify_store(app.store, app.signer.public_key)
        assert [p.seq for p in report.problems] == [forged]


async def test_records_left_after_the_last_checkpoint_before_record_macs(tmp_path, monkeypatch):
    """Upgrade after an unclean shutdown: records written after the last checkpoint of the
    version before carry no MAC, and are named as no PDP's (fail closed) until an operator
    acknowledges them; a run of them too long to read one by one (here: more than 2)
    goes the same way, the old checkpoint inside it still vouching for itself."""
    from pdp.evidence import checkpoints

    monkeypatch.setattr(checkpoints, "UNCOVERED_READ", 2)
    config_path, config = write_config(tmp_path, store_of("sqlite", tmp_path, None))
    signer = Signer(load_or_create_ed25519(config.pdp.signing_key))
    async with _store(config.pdp.store) as old:
        for n in range(3):
            await old.append("decision", {"verdict": "allow", "n": n}, subject="old")
        assert await CheckpointWriter(old, signer).checkpoint() is not None
        for n in range(5):  # then the PDP died: no checkpoint at shutdown
            await old.append("decision", {"verdict": "allow", "n": n}, subject="late")
        last_old = (await old.head())[0]
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        signed = await app.checkpoints.checkpoint()
        # the run is too long to read: named whole, the old checkpoint at 4 with it (which
        # verify takes as vouching for itself)
        assert signed is not None and signed.body["payload"]["foreign"] == [[4, last_old]]
        report = await verify_store(app.store, app.signer.public_key)
        assert report.foreign == [(5, last_old)]
        acked = await asyncio.to_thread(
            audit, config_path, "acknowledge", "--through", str(last_old), "--reason", "upgrade"
        )
        assert acked.returncode == 0, acked.stdout + acked.stderr
        report = await verify_store(app.store, app.signer.public_key)
        assert report.ok, [p.describe() for p in report.problems]
        assert f"except records 5..{last_old}" in report.counted.macs


async def test_replicas_checkpoint_each_others_records(tmp_path, pg_database):
    """Two PDPs on one PostgreSQL store, sharing the proxy key: each signs a head holding
    the other's records; a record INSERTed by someone else is named by both."""
    store = {"type": "postgres", "dsn": pg_database}
    config_path, config = write_config(tmp_path, store)
    second_config = pdp_config(tmp_path, store=store)  # its own port, the same keys
    tok = token(config)
    async with (
        running_pdp(config) as first,
        running_pdp(second_config) as second,
        pdp_stub(first.address) as one,
        pdp_stub(second.address) as two,
    ):
        a = await open_session(one, tok)
        b = await open_session(two, tok)
        for n in range(3):
            await decide_sql(one, a.session_id, f"SELECT {n}")
            await decide_sql(two, b.session_id, f"SELECT {n}")
        assert await first.checkpoints.checkpoint() is not None
        await decide_sql(two, b.session_id, "SELECT 9")
        await decide_sql(one, a.session_id, "SELECT 9")
        assert await second.checkpoints.checkpoint() is not None  # first's records too
        await decide_sql(two, b.session_id, "SELECT 10")
        assert await first.checkpoints.checkpoint() is not None
        for app in (first, second):
            report = await verify_store(app.store, app.signer.public_key)
            assert report.ok, [p.describe() for p in report.problems]
        forged = await forge(config.pdp.store, "session.close", {"summary": {}}, b.session_id)
        for app, stub, sid in ((first, one, a.session_id), (second, two, b.session_id)):
            await decide_sql(stub, sid, "SELECT 11")
            signed = await app.checkpoints.checkpoint()
            assert signed is not None and [forged, forged] in signed.body["payload"]["foreign"]
    assert audit(config_path, "verify").returncode == 1


async def test_a_bundle_of_authentic_records_still_verifies_offline(tmp_path):
    """Offline verification is unchanged: a bundle the PDP exports verifies with the public
    key alone (its checkpoints now vouch for authentic records only)."""
    _, config = write_config(tmp_path, store_of("sqlite", tmp_path, None))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        assert await app.checkpoints.checkpoint() is not None
        out = tmp_path / "bundle.tar.gz"
        await export_bundle(app.store, app.signer, out)
    report = verify_bundle(out, app.signer.public_key)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.checkpoints >= 1
    async with _store(config.pdp.store) as store:
        rows = await store.batch_macs(0, (await store.head())[0])  # type: ignore[attr-defined]
    assert rows  # the PDP wrote MACs, in the records' own rows


async def _columns(store: StoreSettings) -> set[str]:
    if store.type == "sqlite":
        db = sqlite3.connect(store.path)
        try:
            return {r[1] for r in db.execute("PRAGMA table_info(audit_records)")}
        finally:
            db.close()
    conn = await asyncpg.connect(store.dsn)
    try:
        rows = await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'audit_records'::regclass"
        )
    finally:
        await conn.close()
    return {r["attname"] for r in rows}


class _store:
    """A store opened (and closed) around a block, without a key: it writes no MACs."""

    def __init__(self, settings: StoreSettings) -> None:
        self.store = open_store(settings, timeout=10)

    async def __aenter__(self) -> Any:
        await self.store.start()
        return self.store

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()
