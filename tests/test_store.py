"""The audit store on both backends: round trips, group commit, tamper evidence, failure.

SQLite runs on a file in tmp_path; PostgreSQL on the real server (pg_database fixture).
Tampering bypasses the append-only triggers the way an attacker with file or superuser
access would, and `verify()` must name the first bad record.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from audit_tamper import tamper

from pdp.store import (
    GENESIS_HASH,
    LATE_COMMIT_KIND,
    AuditRecord,
    DuplicateRecordId,
    StoreUnavailable,
    disksync,
    open_store,
)
from pdp.store import sqlite as sqlite_store
from pdp.store.chain import ChainVerifier, verify_rows
from pdp.store.postgres import grant_least_privilege
from portcullis.config import StoreSettings

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Backend:
    """How a test reaches one backend: settings, and raw SQL that skips the triggers."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings

    @property
    def kind(self) -> str:
        return self.settings.type

    async def open(self, **kwargs):
        store = open_store(self.settings, **kwargs)
        await store.start()
        return store

    async def tamper(self, *statements: tuple[str, tuple]) -> None:
        await tamper(self.settings, *statements)

    async def execute(self, sql: str) -> None:
        """Run SQL through an ordinary connection (triggers in force)."""
        if self.kind == "sqlite":
            db = sqlite3.connect(self.settings.path, isolation_level=None)
            try:
                db.execute(sql)
            finally:
                db.close()
            return
        conn = await asyncpg.connect(self.settings.dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path) -> Backend:
    if request.param == "sqlite":
        return Backend(StoreSettings(type="sqlite", path=tmp_path / "var" / "audit.db"))
    return Backend(StoreSettings(type="postgres", dsn=request.getfixturevalue("pg_database")))


async def fill(store, n: int) -> list[AuditRecord]:
    return [await store.append("decision", {"n": i}, session_id="s1") for i in range(1, n + 1)]


# -- round trips --------------------------------------------------------------------


async def test_append_get_query_round_trip(backend):
    store = await backend.open()
    try:
        assert await store.head() == (0, GENESIS_HASH)
        opened = await store.append(
            "session.open",
            {"who": "alice", "groups": ["dba"]},
            session_id="s1",
            subject="alice",
            time=1700000000.123456,
        )
        decided = await store.append(
            "decision",
            {"verdict": "allow", "reasons": ["ok"], "ünïcode": "✓", "n": 1.5},
            id="dec-1",
            session_id="s1",
            subject="alice",
            time=1700000001.000001,
        )
        other = await store.append(
            "decision", {"verdict": "deny"}, session_id="s2", subject="bob", time=1700000002.5
        )
        closed = await store.append(
            "session.close", {}, session_id="s1", subject="alice", time=1700000003.0
        )

        assert [r.seq for r in (opened, decided, other, closed)] == [1, 2, 3, 4]
        assert opened.prev_hash == GENESIS_HASH and decided.prev_hash == opened.hash
        assert decided.id == "dec-1" and decided.time == 1700000001.000001
        assert await store.get("dec-1") == decided
        assert await store.get(opened.id) == opened
        assert await store.get("no-such-id") is None
        assert await store.head() == (4, closed.hash)

        assert await store.query() == [opened, decided, other, closed]
        assert await store.query(kind="decision") == [decided, other]
        assert await store.query(session_id="s1") == [opened, decided, closed]
        assert await store.query(subject="bob") == [other]
        assert await store.query(kind="decision", subject="alice") == [decided]
        assert await store.query(since=1700000001.000001, until=1700000003.0) == [decided, other]
        assert await store.query(after_seq=2) == [other, closed]
        assert await store.query(after_seq=1, limit=2) == [decided, other]
        assert await store.query(kind="approval") == []
        assert (await store.verify()).ok
    finally:
        await store.close()


async def test_hash_format_is_reproducible_without_portcullis(backend):
    """An auditor recomputes a hash from the documented recipe alone."""
    store = await backend.open()
    try:
        record = await store.append(
            "decision",
            {"b": [1, {"z": None, "a": "é"}], "a": True},
            session_id="s",
            subject="u",
            time=1700000000.25,
        )
    finally:
        await store.close()
    content = json.dumps(
        {
            "seq": 1,
            "id": record.id,
            "kind": "decision",
            "time": 1700000000250000,
            "session_id": "s",
            "subject": "u",
            "body": {"a": True, "b": [1, {"a": "é", "z": None}]},
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    expected = hashlib.sha256(f"{'0' * 64}\n{content}".encode()).hexdigest()
    assert record.hash == expected


async def test_chain_continues_after_reopen(backend):
    store = await backend.open()
    first = await fill(store, 3)
    await store.close()
    store = await backend.open()
    try:
        assert await store.head() == (3, first[-1].hash)
        nxt = await store.append("decision", {"n": 4})
        assert nxt.seq == 4 and nxt.prev_hash == first[-1].hash
        report = await store.verify()
        assert report.ok and report.records == 4
    finally:
        await store.close()


async def test_concurrent_appends_make_one_gap_free_chain(backend):
    store = await backend.open()
    try:
        records = await asyncio.gather(
            *(store.append("decision", {"n": i}, session_id=f"s{i % 7}") for i in range(500))
        )
        assert sorted(r.seq for r in records) == list(range(1, 501))
        stored = await store.query()
        assert [r.seq for r in stored] == list(range(1, 501))
        assert sorted(r.body["n"] for r in stored) == list(range(500))
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))
        report = await store.verify()
        assert report.ok and report.records == 500
    finally:
        await store.close()


async def test_close_commits_everything_already_queued(backend):
    store = await backend.open()
    pending = [asyncio.ensure_future(store.append("decision", {"n": i})) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert len({(await p).seq for p in pending}) == 50
    with pytest.raises(StoreUnavailable):
        await store.append("decision", {})
    store = await backend.open()
    try:
        assert (await store.head())[0] == 50
    finally:
        await store.close()


async def test_duplicate_id_fails_alone(backend):
    store = await backend.open()
    try:
        await store.append("approval", {}, id="appr-1")
        results = await asyncio.gather(
            store.append("decision", {"n": 1}),
            store.append("approval", {"again": True}, id="appr-1"),
            store.append("decision", {"n": 2}, id="dec-x"),
            store.append("decision", {"n": 3}, id="dec-x"),
            return_exceptions=True,
        )
        assert isinstance(results[0], AuditRecord) and isinstance(results[2], AuditRecord)
        assert isinstance(results[1], DuplicateRecordId)
        assert isinstance(results[3], DuplicateRecordId)
        assert (await store.get("appr-1")).body == {}
        report = await store.verify()
        assert report.ok and report.records == 3
    finally:
        await store.close()


async def test_bodies_that_cannot_be_hashed_are_refused(backend):
    store = await backend.open()
    try:
        with pytest.raises(TypeError):
            await store.append("decision", {"s": {1, 2}})
        with pytest.raises(ValueError):
            await store.append("decision", {"x": float("nan")})
        with pytest.raises(ValueError):
            await store.append("", {})
        assert await store.head() == (0, GENESIS_HASH)
    finally:
        await store.close()


# -- tamper evidence ----------------------------------------------------------------

SWAP = (
    "UPDATE audit_records SET id = ?, kind = ?, time_us = ?, session_id = ?, subject = ?,"
    " body = ?, prev_hash = ?, hash = ? WHERE seq = ?"
)


def _swap(a: AuditRecord, b: AuditRecord) -> list[tuple[str, tuple]]:
    def columns(r: AuditRecord, id: str) -> tuple:
        body = json.dumps(r.body, sort_keys=True, separators=(",", ":"))
        return (id, r.kind, round(r.time * 1e6), r.session_id, r.subject, body, r.prev_hash, r.hash)

    return [
        ("UPDATE audit_records SET id = ? WHERE seq = ?", ("swap-tmp", a.seq)),
        (SWAP, (*columns(a, a.id), b.seq)),
        (SWAP, (*columns(b, b.id), a.seq)),
    ]


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        ("change_body", 4),
        ("change_body_and_rehash", 5),
        ("change_time", 2),
        ("delete", 6),
        ("swap", 3),
    ],
)
async def test_verify_names_the_first_bad_record(backend, tamper, first_bad):
    store = await backend.open()
    try:
        records = await fill(store, 10)
        assert (await store.verify()).ok
        if tamper == "change_body":
            statements = [("UPDATE audit_records SET body = ? WHERE seq = ?", ('{"n":40}', 4))]
        elif tamper == "change_body_and_rehash":
            # the attacker fixes record 4's own hash; record 5 still links to the old one
            r = records[3]
            from pdp.store.chain import record_hash

            forged = record_hash(
                r.prev_hash,
                4,
                r.id,
                r.kind,
                round(r.time * 1e6),
                r.session_id,
                r.subject,
                {"n": 40},
            )
            statements = [
                (
                    "UPDATE audit_records SET body = ?, hash = ? WHERE seq = ?",
                    ('{"n":40}', forged, 4),
                )
            ]
        elif tamper == "change_time":
            statements = [("UPDATE audit_records SET time_us = time_us - 1 WHERE seq = ?", (2,))]
        elif tamper == "delete":
            statements = [("DELETE FROM audit_records WHERE seq = ?", (6,))]
        else:
            statements = _swap(records[2], records[6])
        await backend.tamper(*statements)

        report = await store.verify()
        assert not report.ok
        assert report.first_bad_seq == first_bad, report.problem
        assert str(first_bad) in report.problem
        assert report.records == (9 if tamper == "delete" else 10)
    finally:
        await store.close()


def test_verifier_reports_a_missing_first_record_and_order():
    assert verify_rows([]).ok
    verifier = ChainVerifier()
    verifier.feed((2, "x", "decision", 0, "", "", "{}", GENESIS_HASH, "0" * 64))
    report = verifier.report()
    assert report.first_bad_seq == 1 and "missing" in report.problem


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_records SET body = '{}'", "DELETE FROM audit_records"]
)
async def test_triggers_refuse_update_and_delete(backend, statement):
    store = await backend.open()
    try:
        await fill(store, 3)
        with pytest.raises((sqlite3.DatabaseError, asyncpg.PostgresError), match="append-only"):
            await backend.execute(statement)
        assert (await store.verify()).ok
        assert (await store.head())[0] == 3
    finally:
        await store.close()


async def test_postgres_refuses_truncate(pg_database):
    backend = Backend(StoreSettings(type="postgres", dsn=pg_database))
    store = await backend.open()
    try:
        await fill(store, 2)
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await backend.execute("TRUNCATE audit_records")
        assert (await store.head())[0] == 2
    finally:
        await store.close()


# -- failure and recovery -----------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unwritable_sqlite_path_is_unavailable(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    store = open_store(StoreSettings(type="sqlite", path=tmp_path / "file" / "audit.db"))
    with pytest.raises(StoreUnavailable):
        await store.start()
    with pytest.raises(StoreUnavailable):
        await store.append("decision", {})


async def test_unreachable_postgres_is_unavailable():
    dsn = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    store = open_store(StoreSettings(type="postgres", dsn=dsn))
    with pytest.raises(StoreUnavailable):
        await store.start()
    with pytest.raises(StoreUnavailable):
        await store.append("decision", {})


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_sqlite_file_gone_then_back(tmp_path, synchronous):
    """Also when commits run on the loop's thread (synchronous: normal)."""
    path = tmp_path / "var" / "audit.db"
    store = open_store(StoreSettings(type="sqlite", path=path, synchronous=synchronous))
    await store.start()
    try:
        before = await fill(store, 3)
        aside = tmp_path / "aside.db"
        os.rename(path, aside)
        with pytest.raises(StoreUnavailable, match="missing"):
            await store.append("decision", {"lost": True})
        assert not path.exists(), "the store must never start a new chain behind our back"
        os.rename(aside, path)
        after = await store.append("decision", {"n": 4})
        assert after.seq == 4 and after.prev_hash == before[-1].hash
        assert (await store.verify()).ok
    finally:
        await store.close()


async def test_sqlite_directory_removed(tmp_path):
    path = tmp_path / "var" / "audit.db"
    store = open_store(StoreSettings(type="sqlite", path=path))
    await store.start()
    try:
        await fill(store, 2)
        for f in path.parent.iterdir():
            f.unlink()
        path.parent.rmdir()
        with pytest.raises(StoreUnavailable):
            await store.append("decision", {})
        with pytest.raises(StoreUnavailable):
            await store.query()
        assert not path.parent.exists()
    finally:
        await store.close()


async def test_postgres_down_then_back(pg_database):
    store = open_store(StoreSettings(type="postgres", dsn=pg_database))
    await store.start()
    try:
        before = await fill(store, 3)
        async with refusing_connections(pg_database):
            with pytest.raises(StoreUnavailable):
                await store.append("decision", {"lost": True})
        after = await store.append("decision", {"n": 4})
        assert after.seq == 4 and after.prev_hash == before[-1].hash
        report = await store.verify()
        assert report.ok and report.records == 4
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def refusing_connections(dsn: str) -> AsyncIterator[None]:
    """The database of `dsn` takes no connection, and those open are ended, until the block
    ends: a store whose database went away."""
    dbname = dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbname
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        await admin.close()


# -- PostgreSQL: replicas and privileges --------------------------------------------


async def test_two_postgres_stores_share_one_chain(pg_database):
    settings = StoreSettings(type="postgres", dsn=pg_database)
    a, b = open_store(settings), open_store(settings)
    await asyncio.gather(a.start(), b.start())  # concurrent schema creation too
    try:
        results = await asyncio.gather(
            *(a.append("decision", {"from": "a", "n": i}) for i in range(300)),
            *(b.append("decision", {"from": "b", "n": i}) for i in range(300)),
        )
        assert sorted(r.seq for r in results) == list(range(1, 601))
        report = await a.verify()
        assert report.ok and report.records == 600
        assert await a.head() == await b.head()
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_least_privileged_role_can_append_but_not_rewrite(pg_database):
    owner = open_store(StoreSettings(type="postgres", dsn=pg_database))
    await owner.start()
    await fill(owner, 2)
    await owner.close()
    role = "portcullis_t_pdp_" + os.urandom(4).hex()
    admin = await asyncpg.connect(pg_database)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        await grant_least_privilege(pg_database, role)
        role_dsn = pg_database.replace("postgres@", f"{role}@", 1)
        store = open_store(StoreSettings(type="postgres", dsn=role_dsn))
        await store.start()
        try:
            record = await store.append("decision", {"n": 3})
            assert record.seq == 3
            assert (await store.verify()).ok
        finally:
            await store.close()
        conn = await asyncpg.connect(role_dsn)
        try:
            for sql in (
                "UPDATE audit_records SET body = '{}'",
                "DELETE FROM audit_records",
                "ALTER TABLE audit_records DISABLE TRIGGER ALL",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def test_sqlite_schema_has_the_documented_indexes(tmp_path):
    path = tmp_path / "audit.db"
    store = open_store(StoreSettings(type="sqlite", path=path))
    await store.start()
    await store.close()
    db = sqlite3.connect(path)
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert {
        "audit_records_kind_time",
        "audit_records_session",
        "audit_records_subject",
        "audit_records_no_update",
        "audit_records_no_delete",
    } <= names


async def test_sqlite_checkpoints_off_the_commit_path(tmp_path, monkeypatch):
    """No commit runs SQLite's own checkpoint (it would stall every decision waiting on
    that commit); the store checkpoints on its reading thread once enough was written,
    which copies the WAL into the database file."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_BYTES", 20_000)
    path = tmp_path / "audit.db"
    store = open_store(StoreSettings(type="sqlite", path=str(path)))
    await store.start()
    try:
        writer = store._wconn.get()  # the writer's own connection, as its thread uses it
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        before = path.stat().st_size
        for n in range(40):
            await store.append("decision", {"n": n, "pad": "x" * 1000})
        while store._checkpoint is not None:
            await asyncio.sleep(0.01)
        assert path.stat().st_size > before + 20_000  # the WAL's pages reached the file
        assert (await store.verify()).ok
    finally:
        await store.close()


async def test_sqlite_synchronous_normal_commits_on_the_loop_thread(tmp_path, monkeypatch):
    """`synchronous: normal`: SQLite's NORMAL sync in WAL mode, and a small commit, which
    waits for no disk, is made on the event loop's thread; the chain is the same chain."""
    written_on: list[int] = []
    write = sqlite_store.SQLiteAuditStore._write_sync

    def spy(self, *args):
        written_on.append(threading.get_ident())
        return write(self, *args)

    monkeypatch.setattr(sqlite_store.SQLiteAuditStore, "_write_sync", spy)
    settings = StoreSettings(type="sqlite", path=str(tmp_path / "audit.db"), synchronous="normal")
    store = open_store(settings)
    await store.start()
    try:
        records = [await store.append("decision", {"n": n}) for n in range(20)]
        assert [r.seq for r in records] == list(range(1, 21))
        assert set(written_on) == {threading.get_ident()}  # one at a time: each inline
        burst = await asyncio.gather(*(store.append("decision", {"n": n}) for n in range(40)))
        assert sorted(r.seq for r in burst) == list(range(21, 61))
        assert written_on[-1] != threading.get_ident()  # a batch of 40: the writer thread
        assert store._wconn.get().execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert (await store.verify()).ok
    finally:
        await store.close()


@pytest.fixture(params=["kernel", "thread"])
def wal_sync(request, monkeypatch):
    """How `synchronous: full` syncs the WAL after a commit on the loop's thread: by the
    kernel (native AIO) where it can, else on the writer thread. Yields a list that gets
    (path synced, thread that asked) for each sync, and a list of OSErrors to fail the
    next syncs with."""
    synced: list[tuple[str, int]] = []
    failing: list[OSError] = []
    if request.param == "thread":
        monkeypatch.setattr(sqlite_store, "open_disk_sync", lambda loop: None)
    real_sync, real_aio = os.fdatasync, disksync.AioSync.fdatasync

    def on_thread(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), threading.get_ident()))
        if failing:
            raise failing.pop()
        real_sync(fd)

    def by_kernel(self, fd: int) -> asyncio.Future[None]:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), -1))
        if failing:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(failing.pop())
            return future
        return real_aio(self, fd)

    monkeypatch.setattr(sqlite_store.os, "fdatasync", on_thread)
    monkeypatch.setattr(disksync.AioSync, "fdatasync", by_kernel)
    yield request.param, synced, failing


async def test_sqlite_full_syncs_the_wal_before_answering(tmp_path, wal_sync):
    """`synchronous: full` (the default): SQLite's commit itself waits for no disk; the
    store then fdatasyncs the WAL, never on the event loop's thread, before the append
    returns, so every answered record is on disk. After a failed sync the kernel may have
    dropped what it could not write, so the store refuses every record (a deny) until
    restarted."""
    path_taken, synced, failing = wal_sync
    path = tmp_path / "audit.db"
    store = open_store(StoreSettings(type="sqlite", path=str(path)))
    await store.start()
    try:
        assert store._wconn.get().execute("PRAGMA synchronous").fetchone() == (1,)
        assert (store._disk is not None) == (path_taken == "kernel")
        for n in range(3):
            before = len(synced)
            await store.append("decision", {"n": n})
            assert [p for p, _ in synced[before:]] == [f"{path}-wal"]
        assert threading.get_ident() not in {t for _, t in synced}
        burst = await asyncio.gather(*(store.append("decision", {"n": n}) for n in range(40)))
        assert sorted(r.seq for r in burst) == list(range(4, 44))
        failing.append(OSError(5, "Input/output error"))
        with pytest.raises(StoreUnavailable, match="Input/output error"):
            await store.append("decision", {"n": "unsynced"})
        with pytest.raises(StoreUnavailable, match="restart the PDP"):
            await store.append("decision", {"n": 44})
    finally:
        await store.close()
    restarted = open_store(StoreSettings(type="sqlite", path=str(path)))
    await restarted.start()
    try:
        assert (await restarted.append("decision", {"n": 44})).seq == 45
        assert (await restarted.verify()).ok
    finally:
        await restarted.close()


async def test_the_kernel_syncs_a_file_and_reports_what_fails(tmp_path):
    """pdp.store.disksync against the real kernel: a file's sync completes on the loop;
    one the kernel refuses (a pipe cannot be synced) fails with its errno; several fly at
    once; closing cancels what is unfinished without waiting for it, and releases the
    context and its eventfd."""
    loop = asyncio.get_running_loop()
    aio = disksync.open_disk_sync(loop)
    if aio is None:
        pytest.skip("no native AIO on this platform")  # Linux x86_64/aarch64 always has it
    eventfd = aio._eventfd
    target = tmp_path / "f"
    fd = os.open(target, os.O_RDWR | os.O_CREAT)
    reader, writer = os.pipe()
    try:
        os.write(fd, b"x" * 4096)
        assert await aio.fdatasync(fd) is None
        await asyncio.gather(*(aio.fdatasync(fd) for _ in range(10)))
        with pytest.raises(OSError) as refused:
            await aio.fdatasync(reader)
        assert refused.value.errno == errno.EINVAL
        with pytest.raises(OSError) as not_taken:  # refused at submission: raised at once
            aio.fdatasync(10_000)
        assert not_taken.value.errno == errno.EBADF
        assert await aio.fdatasync(fd) is None  # still working after a refusal
        unfinished = aio.fdatasync(fd)
    finally:
        aio.close()  # with a sync in flight: released on a thread, the loop goes on
        for d in (fd, reader, writer):
            os.close(d)
    with pytest.raises(OSError) as cancelled:
        await unfinished
    assert cancelled.value.errno == errno.ECANCELED
    for _ in range(200):  # the context and its eventfd are released once the sync ends
        try:
            os.fstat(eventfd)
        except OSError:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the eventfd was never closed")


async def test_sqlite_wal_starts_over_under_continuous_load(tmp_path, monkeypatch):
    """Commits that land while a checkpoint runs would keep SQLite from ever starting the
    WAL over (it starts over only in a transaction that begins with all of it copied); the
    writer finishes each checkpoint, so the WAL is started over once per checkpoint instead
    of growing with the load. Made deterministic: a reader's snapshot, taken before the
    last commits and ended after the checkpoint's copy, leaves the checkpoint short of
    those commits, as commits landing during its copy do under load; the WAL header's salt
    (which SQLite changes at every start-over) tells whether the WAL started over."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_BYTES", 50_000)
    path = tmp_path / "audit.db"
    store = open_store(StoreSettings(type="sqlite", path=str(path), synchronous="normal"))
    await store.start()
    copied = threading.Event()
    fetch = store._fetch

    def signalled_checkpoint(sql: str, params: list) -> list:
        rows = fetch(sql, params)
        if "wal_checkpoint" in sql:
            copied.set()
        return rows

    monkeypatch.setattr(store, "_fetch", signalled_checkpoint)

    def salt() -> bytes:
        with open(f"{path}-wal", "rb") as wal:
            return wal.read(20)[16:20]

    async def burst(n: int) -> None:
        await asyncio.gather(
            *(store.append("decision", {"n": i, "pad": "x" * 1000}) for i in range(n))
        )

    try:
        await burst(8)
        for _ in range(4):
            copied.clear()
            reader = sqlite3.connect(path, isolation_level=None)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM audit_records").fetchall()  # its snapshot
            await burst(60)  # past CHECKPOINT_BYTES: a checkpoint starts, copies up to it
            checkpoint = store._checkpoint
            assert checkpoint is not None
            await checkpoint
            assert copied.is_set()
            reader.close()
            before = salt()
            await store.append("decision", {"n": "the writer finishes the checkpoint"})
            await store.append("decision", {"n": "this transaction starts the WAL over"})
            assert salt() != before
        assert (await store.verify()).ok
    finally:
        await store.close()


async def test_sqlite_write_lock_held_elsewhere_never_blocks_the_event_loop(tmp_path):
    """Another process holding the write lock (a VACUUM, an admin's transaction) makes
    appends wait on the writer thread, never on the loop's thread, which keeps running;
    they commit once the lock is free, and fail (a deny) if it stays taken too long."""
    path = tmp_path / "audit.db"
    store = open_store(StoreSettings(type="sqlite", path=str(path)), timeout=1.0)
    await store.start()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - last)
            last = loop.time()

    ticking = asyncio.create_task(ticker())
    try:
        await store.append("decision", {"n": 0})
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.create_task(store.append("decision", {"n": 1}))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        other.execute("COMMIT")
        assert (await waiting).seq == 2
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            await store.append("decision", {"n": "locked out"})
        other.execute("COMMIT")
        assert (await store.append("decision", {"n": 2})).seq == 3
        assert max(gaps) < 0.1  # the loop never stopped for the lock
        assert (await store.verify()).ok
    finally:
        ticking.cancel()
        other.close()
        await store.close()


@pytest.mark.parametrize("path_taken", ["kernel", "thread"])
async def test_a_commit_that_lands_after_its_deadline_is_named_in_the_chain(
    tmp_path, monkeypatch, path_taken
):
    """A disk that stalls past the batch's deadline: the callers are told their records
    were not written (a decision becomes a deny), yet the commit lands. The chain must not
    pass those records off as answered: an audit.late_commit record names them. Whether
    the kernel or the writer thread waits for the disk."""
    stalls = [0.8]
    if path_taken == "thread":
        monkeypatch.setattr(sqlite_store, "open_disk_sync", lambda loop: None)
    real_sync, real_aio = sqlite_store._Connection.sync_wal, disksync.AioSync.fdatasync

    def stalled(self) -> None:
        if stalls:
            time.sleep(stalls.pop())
        real_sync(self)

    def stalled_by_kernel(self, fd: int) -> asyncio.Future[None]:
        synced = real_aio(self, fd)
        if not stalls:
            return synced
        late = asyncio.get_running_loop().create_future()
        synced.add_done_callback(
            lambda _: asyncio.get_running_loop().call_later(stalls.pop(), late.set_result, None)
        )
        return late

    monkeypatch.setattr(sqlite_store._Connection, "sync_wal", stalled)
    monkeypatch.setattr(disksync.AioSync, "fdatasync", stalled_by_kernel)
    store = open_store(StoreSettings(type="sqlite", path=str(tmp_path / "audit.db")), timeout=0.3)
    await store.start()
    try:
        ids = [f"d-{n}" for n in range(8)]
        outcomes = await asyncio.gather(
            *(store.append("decision", {"n": n}, id=i) for n, i in enumerate(ids)),
            return_exceptions=True,
        )
        refused = {i for i, o in zip(ids, outcomes, strict=True) if isinstance(o, Exception)}
        assert refused and all(
            isinstance(o, StoreUnavailable) for o in outcomes if isinstance(o, Exception)
        )
        for _ in range(100):
            notes = await store.query(kind=LATE_COMMIT_KIND)
            if notes:
                break
            await asyncio.sleep(0.02)
        in_chain = {r.id for r in await store.query(kind="decision")}
        named = {i for note in notes for i in note.body["ids"]}
        assert named == refused & in_chain and named  # exactly the records answered as lost
        assert (await store.verify()).ok
    finally:
        await store.close()


async def _started_syncing_by_kernel(tmp_path, **kwargs) -> sqlite_store.SQLiteAuditStore:
    """A started SQLite store whose WAL syncs go through native AIO (else the test skips)."""
    store = open_store(StoreSettings(type="sqlite", path=str(tmp_path / "audit.db")), **kwargs)
    await store.start()
    if store._disk is None:
        await store.close()
        pytest.skip("no native AIO on this platform")
    return store


async def test_a_sync_the_kernel_will_not_take_is_done_on_the_writer_thread(tmp_path, monkeypatch):
    """io_submit refusing the request (a full queue, a kernel without IOCB_CMD_FDSYNC)
    is no failed sync: nothing was written badly. The writer thread syncs instead, from
    then on, and the store goes on."""
    synced_on: list[int] = []
    real_sync = os.fdatasync

    def on_thread(fd: int) -> None:
        synced_on.append(threading.get_ident())
        real_sync(fd)

    def refused(self, fd: int) -> asyncio.Future[None]:
        raise OSError(errno.EAGAIN, "io_submit: Resource temporarily unavailable")

    monkeypatch.setattr(sqlite_store.os, "fdatasync", on_thread)
    store = await _started_syncing_by_kernel(tmp_path)
    monkeypatch.setattr(disksync.AioSync, "fdatasync", refused)
    try:
        records = [await store.append("decision", {"n": n}) for n in range(3)]
        assert [r.seq for r in records] == [1, 2, 3]
        assert len(synced_on) == 3 and threading.get_ident() not in synced_on
        assert store._disk is None
        assert (await store.verify()).ok
    finally:
        await store.close()


async def test_a_sync_that_fails_after_its_deadline_still_stops_the_store(tmp_path, monkeypatch):
    """The kernel's sync of a batch already cut off by its deadline fails later: no caller
    is waiting for it, yet the WAL can no longer be trusted, so the store refuses every
    record from then on, as when the failure is waited for."""
    failures: list[asyncio.Future[None]] = []

    def failing_late(self, fd: int) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        loop.call_later(0.5, future.set_exception, OSError(5, "Input/output error"))
        failures.append(future)
        return future

    store = await _started_syncing_by_kernel(tmp_path, timeout=0.2)
    monkeypatch.setattr(disksync.AioSync, "fdatasync", failing_late)
    try:
        with pytest.raises(StoreUnavailable, match="timed out"):
            await store.append("decision", {"n": 0})
        await asyncio.gather(*failures, return_exceptions=True)
        with pytest.raises(StoreUnavailable, match="restart the PDP"):
            await store.append("decision", {"n": 1})
    finally:
        await store.close()


async def test_postgres_names_a_commit_the_server_did_after_the_deadline(pg_database, monkeypatch):
    """The deadline cancels a batch whose COMMIT the server has done all the same: its
    callers hear it failed, so once the server has settled, the store looks, and an
    audit.late_commit record names what landed."""
    from pdp.store import postgres as postgres_store

    write = postgres_store.PostgresAuditStore._write_batch
    stalls = [1.0]

    async def committed_then_stalled(self, drafts, explicit_ids):
        result = await write(self, drafts, explicit_ids)
        if stalls:
            await asyncio.sleep(stalls.pop())  # the answer is late; the commit is done
        return result

    monkeypatch.setattr(postgres_store.PostgresAuditStore, "_write_batch", committed_then_stalled)
    store = open_store(StoreSettings(type="postgres", dsn=pg_database), timeout=0.3)
    await store.start()
    try:
        with pytest.raises(StoreUnavailable):
            await store.append("decision", {"n": 1}, id="d-late")
        for _ in range(100):
            notes = await store.query(kind=LATE_COMMIT_KIND)
            if notes:
                break
            await asyncio.sleep(0.05)
        assert [note.body["ids"] for note in notes] == [["d-late"]]
        assert (await store.verify()).ok
    finally:
        await store.close()


async def test_the_pdp_answers_a_decision_once_the_kernel_has_synced_its_record(
    tmp_path, monkeypatch
):
    """The PDP on its defaults (SQLite, `synchronous: full`) syncs a decision's commit
    through native AIO, and answers only after that sync completed."""
    from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

    completed: list[str] = []
    real_aio = disksync.AioSync.fdatasync

    def watched(self, fd: int) -> asyncio.Future[None]:
        synced = real_aio(self, fd)
        synced.add_done_callback(lambda _: completed.append(os.readlink(f"/proc/self/fd/{fd}")))
        return synced

    monkeypatch.setattr(disksync.AioSync, "fdatasync", watched)
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        if app.store._disk is None:  # type: ignore[attr-defined]
            pytest.skip("no native AIO on this platform")
        session = await open_session(stub, token(config))
        before = len(completed)
        decision = await decide_sql(stub, session.session_id, "SELECT id FROM orders")
        assert decision.decision_id and len(completed) > before
        assert completed[-1] == f"{tmp_path / 'audit.db'}-wal"
