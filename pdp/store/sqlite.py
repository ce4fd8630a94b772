"""SQLite audit store: one file, WAL, durable commits (or NORMAL sync), stdlib sqlite3.

Writes use one connection; reads run on a second thread with their own connection (WAL
lets them proceed while a batch commits). SQLite's own commit never waits for the disk
(synchronous=NORMAL) nor for a lock, so a small batch commits on the event loop's thread
(the hop to a thread and back would cost more than the commit); a bigger one, under load,
and one that finds the write lock taken by another process commit on the writer thread,
which may wait. With `synchronous: full` (the default) the WAL is then fdatasynced before
anyone is answered: what SQLite's FULL does inside the commit, but only the wait for the
disk leaves the loop's thread, not the commit's own work. After a commit on the loop's
thread or on the writer thread the kernel does that sync (Linux native AIO,
pdp.store.disksync), with no thread of ours woken for it, and the next batch commits
while it runs (GroupCommitStore answers each batch once it and those before it are
synced); without native AIO, or when a checkpoint is to be finished, the writer thread
does it. The WAL is checkpointed on the reading thread once enough has been written, never
inside a commit: SQLite's automatic checkpoint would run in whichever commit crossed the
threshold and hold every decision waiting on it for tens of milliseconds.

The file is created (with its parent directory) only by `start()`. If it later
disappears or cannot be written, appends raise StoreUnavailable and the store never
silently starts a new chain: it resumes when a file is back at the path, continuing from
whatever head that file holds.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from pdp.store import (
    EGRESS_KINDS,
    EGRESS_MARK,
    TRIP_KIND,
    AuditStore,
    BatchResult,
    GuardFacts,
    StoreUnavailable,
    fresh_drafts,
    guard_facts_of_rows,
)
from pdp.store.chain import (
    ChainReport,
    Draft,
    to_micros,
    verify_rows,
)
from pdp.store.disksync import AioSync, open_disk_sync
from pdp.store.reads import COLUMNS, HEAD_SQL, SELECT_RECORDS

T = TypeVar("T")

log = logging.getLogger("portcullis.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    time_us    INTEGER NOT NULL,  -- unix time in microseconds, exactly as hashed
    session_id TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,     -- canonical JSON
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    mac        TEXT               -- a batch's last record: "<first seq>:<MAC>" (pdp.store.macs)
) STRICT;
CREATE INDEX IF NOT EXISTS audit_records_kind_time ON audit_records (kind, time_us);
CREATE INDEX IF NOT EXISTS audit_records_session ON audit_records (session_id);
CREATE INDEX IF NOT EXISTS audit_records_subject ON audit_records (subject);
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: DELETE refused'); END;
"""

_INSERT = f"INSERT INTO audit_records ({COLUMNS}, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_MAX_PARAMS = 500
# a batch this small commits on the loop's thread (cheaper than the hop to the writer
# thread and back); a bigger one, under load, goes to the writer thread, which works
# beside the loop instead of taking its time
INLINE_BATCH = 4
# record bodies written between checkpoints (~ the WAL's growth). Each checkpoint delays
# decisions in flight (by what means is not known: not the GIL, not the commits, which stay
# fast; it follows the checkpoint's size): Decide p99 at 1,000/s measured 7-20 ms with
# 4 MiB, 4.5-5.5 ms with 1 MiB, 3.9 ms with none (bench/pdp's load, synchronous: normal)
CHECKPOINT_BYTES = 1 << 20


class _Connection:
    """One sqlite3 connection, used by one thread at a time, reopened when the file changes."""

    def __init__(self, path: Path, timeout: float, synchronous: str = "full") -> None:
        self.path = path
        self.timeout = timeout
        self.synchronous = synchronous
        self.conn: sqlite3.Connection | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._inode: tuple[int, int] | None = None
        self._wal: int | None = None  # a descriptor of the WAL file, for sync_wal()

    def get(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.close()
            raise StoreUnavailable(f"database file {self.path} is missing") from None
        if self.conn is not None and self._inode != (st.st_dev, st.st_ino):
            self.close()  # file replaced (e.g. restored): follow the path
        if self.conn is None:
            # mode=rw never creates a file: only start() may begin a new chain
            self.conn = _connect(
                f"file:{self.path}?mode=rw", self.timeout, uri=True, synchronous=self.synchronous
            )
            self._inode = (st.st_dev, st.st_ino)
        return self.conn

    def cursor(self) -> sqlite3.Cursor:
        """A cursor of get()'s connection, kept while it is open: the writer's statements
        run on it (Connection.execute makes and drops a cursor for every statement)."""
        conn = self.get()
        if self._cursor is None or self._cursor.connection is not conn:
            self._cursor = conn.cursor()
        return self._cursor

    def sync_wal(self) -> None:
        """Make every commit so far durable: fdatasync the WAL, as synchronous=FULL does
        inside each commit (the frames are in the WAL file once COMMIT returns)."""
        os.fdatasync(self.wal())

    def wal(self) -> int:
        """A descriptor of the WAL file, kept until the connection is (re)opened: SQLite
        keeps the WAL's inode while a connection is open (it starts the file over in
        place), and get() notices a database file replaced under it."""
        if self._wal is None:
            self._wal = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        return self._wal

    def _close_wal(self) -> None:
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None

    def close(self) -> None:
        self._close_wal()
        self._cursor = None
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None


def _private(path: Path) -> None:
    """The store, its WAL and shared-memory file readable by the PDP's user alone (0600),
    whatever the umask or the folder's mode: SQLite creates the WAL and -shm with the
    database file's mode, so the file is made 0600 before SQLite first opens it, and a
    store left wider by an older version is narrowed."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if name.stat().st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


def _connect(
    target: str, timeout: float, *, uri: bool = False, synchronous: str = "full"
) -> sqlite3.Connection:
    conn = sqlite3.connect(
        target, timeout=timeout, isolation_level=None, uri=uri, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "PRAGMA synchronous=NORMAL" if synchronous == "normal" else "PRAGMA synchronous=FULL"
    )
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoint_wal: off the commit path
    return conn


class SQLiteAuditStore(AuditStore):
    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 2.0, synchronous: str = "full"
    ) -> None:
        super().__init__(timeout=timeout)
        self.path = Path(path)
        self.synchronous = synchronous
        self._writes: ThreadPoolExecutor | None = None
        self._reads: ThreadPoolExecutor | None = None
        # the writer's commits never wait for the disk inside SQLite: with "full",
        # the WAL is synced by this store before anyone is answered (_write_batch_then_sync).
        # Nor do they wait for a lock (busy timeout 0): see _write_retrying
        self._wconn = _Connection(self.path, 0.0, "normal")
        self._rconn = _Connection(self.path, timeout)
        self._unchecked = 0  # body bytes written since the last checkpoint started
        self._checkpoint: asyncio.Future[None] | None = None
        self._catch_up = False  # a checkpoint ran beside commits: the writer finishes it
        self._unsynced: str | None = None  # why the WAL can no longer be trusted, once it can't
        self._disk: AioSync | None = None  # fdatasync by the kernel, where it can be had
        self._retired: AioSync | None = None

    # -- plumbing --------------------------------------------------------------------

    async def _run(self, pool: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any) -> T:
        if pool is None:
            raise StoreUnavailable("store is not running")
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._run(self._reads, fn, *args)
        except (OSError, sqlite3.Error) as exc:
            await self._run(self._reads, self._rconn.close)
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None

    # -- lifecycle -------------------------------------------------------------------

    async def _open(self) -> None:
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="audit-sqlite-write")
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="audit-sqlite-read")
        try:
            await self._run(self._writes, self._create)
        except (OSError, sqlite3.Error) as exc:
            await self._shutdown()
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from None
        if self.synchronous == "full":
            self._disk = open_disk_sync(asyncio.get_running_loop())

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _private(self.path)
        conn = _connect(str(self.path), self.timeout)
        try:
            conn.executescript(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(audit_records)")}
            if "mac" not in columns:  # a store made before record MACs
                conn.execute("ALTER TABLE audit_records ADD COLUMN mac TEXT")
        finally:
            conn.close()

    async def _reset(self) -> None:
        await self._run(self._writes, self._wconn.close)

    async def _shutdown(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        for disk in (self._disk, self._retired):
            if disk is not None:
                disk.close()
        self._disk = self._retired = None
        for pool, conn in ((self._writes, self._wconn), (self._reads, self._rconn)):
            if pool is not None:
                await self._run(pool, conn.close)
                pool.shutdown(wait=False)
        self._writes = self._reads = None

    # -- writing (writer thread) -----------------------------------------------------

    async def _write_batch(self, drafts: list[Draft], explicit_ids: set[str]) -> BatchResult:
        result, sync = await self._write_batch_then_sync(drafts, explicit_ids)
        if sync is not None:
            await self._await_sync(sync, result)
        return result

    async def _write_batch_then_sync(
        self, drafts: list[Draft], explicit_ids: set[str]
    ) -> tuple[BatchResult, asyncio.Future[None] | None]:
        """Commit the batch; with synchronous "full", its fdatasync is started by the
        kernel (native AIO) and its future returned, for _await_sync, or done here on the
        writer thread (None: durable already)."""
        if self._unsynced is not None:
            raise StoreUnavailable(self._unsynced)
        result = None
        sync = None
        if len(drafts) <= INLINE_BATCH and self._writes:
            try:
                result = self._write_sync(drafts, explicit_ids)  # no disk wait: no thread hop
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
            else:
                if self.synchronous == "full" and not self._catch_up and self._disk:
                    sync = self._sync_by_kernel()
                if sync is None and (self._catch_up or self.synchronous == "full"):
                    await self._on_writer(result, self._settle)  # the thread waits instead
        if result is None:
            if self.synchronous == "full" and not self._catch_up and self._disk:
                # committed on the writer thread, synced by the kernel as the loop's are
                result = await self._on_writer(None, self._write_retrying, drafts, explicit_ids)
                sync = self._sync_by_kernel()
                if sync is None:
                    await self._on_writer(result, self._settle)
            else:
                result = await self._on_writer(None, self._write_waiting, drafts, explicit_ids)
        self._unchecked += sum(len(d.body_json) for d in drafts)
        if self._unchecked >= CHECKPOINT_BYTES and self._checkpoint is None:
            self._unchecked = 0
            self._checkpoint = asyncio.ensure_future(self._checkpoint_wal())
        return result, sync

    async def _on_writer(
        self, committed: BatchResult | None, fn: Callable[..., T], *args: Any
    ) -> T:
        """fn(*args) on the writer thread. When the batch's deadline ends the wait while fn
        runs, its commit (`committed`, or what fn returns) may land all the same, after its
        callers were told it did not: if it does, _note_late names those records, so the
        chain says which of them were answered as unrecorded (a decision's verdict then
        became a deny)."""
        if self._writes is None:
            raise StoreUnavailable("store is not running")
        job = self._writes.submit(fn, *args)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            loop = asyncio.get_running_loop()
            job.add_done_callback(
                lambda done: loop.call_soon_threadsafe(self._landed_late, done, committed)
            )
            raise

    def _landed_late(
        self, done: Future[Any] | asyncio.Future[Any], committed: BatchResult | None
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # never ran, or nothing landed (a failed sync stops the store)
        landed = committed if committed is not None else done.result()
        ids = [r.id for r in landed.records]
        if ids:
            self._in_background(self._note_late(ids))

    def _sync_by_kernel(self) -> asyncio.Future[None] | None:
        """_settle's fdatasync, started by the kernel while the loop goes on (see
        pdp.store.disksync): its future. None: the kernel would not take it, and the
        writer thread syncs from now on."""
        assert self._disk is not None
        try:
            wal = self._wconn.wal()
        except OSError as exc:
            self._sync_failed(exc)
        try:
            return self._disk.fdatasync(wal)
        except OSError as exc:  # not taken (nothing synced, nothing failed)
            log.warning("native AIO refused a sync (%s): the writer thread syncs", exc)
            self._retired, self._disk = self._disk, None  # closed at shutdown, when
            # nothing of its (a late sync) can still be in flight to wait for
            return None

    async def _await_sync(self, sync: asyncio.Future[None], committed: BatchResult) -> None:
        """Wait for a sync _sync_by_kernel started; a batch whose deadline ends the wait
        is named if it lands, as in _on_writer."""
        # the deadline must not cancel the sync's future: the wait is on a future of its
        # own, to which the sync's future relays its outcome (what asyncio.shield does,
        # without its wrapping: callgrind, an AIO sync awaited, 45.3k -> 36.4k instructions)
        waited: asyncio.Future[None] = sync.get_loop().create_future()
        sync.add_done_callback(functools.partial(_relay, waited))
        try:
            await waited
        except asyncio.CancelledError:
            sync.add_done_callback(lambda done: self._synced_late(done, committed))
            raise
        except OSError as exc:
            self._sync_failed(exc)

    def _synced_late(self, done: asyncio.Future[None], committed: BatchResult) -> None:
        exc = None if done.cancelled() else done.exception()
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOENT, errno.ECANCELED):
            self._distrust_wal(exc)  # as if it had been waited for (not: closed unfinished)
        self._landed_late(done, committed)

    async def _checkpoint_wal(self) -> None:
        """Copy the WAL into the database without blocking writers (PASSIVE).

        SQLite starts the WAL over only in a transaction that began with all of the WAL
        copied. Under load, commits land while this runs, so that never happens by itself
        and the WAL would grow for as long as the load lasts. So the writer copies what
        was committed meanwhile (few frames) right after its next commit, while nothing
        else writes, and the transaction after that starts the WAL over."""
        try:
            await self._read(self._fetch, "PRAGMA wal_checkpoint(PASSIVE)", [])
            self._catch_up = True
        except StoreUnavailable as exc:
            log.warning("audit store checkpoint failed (retried later): %s", exc)
        finally:
            self._checkpoint = None

    def _write_waiting(self, drafts: list[Draft], explicit_ids: set[str]) -> BatchResult:
        """_write_retrying then _settle, on the writer thread."""
        result = self._write_retrying(drafts, explicit_ids)
        self._settle()
        return result

    def _write_retrying(self, drafts: list[Draft], explicit_ids: set[str]) -> BatchResult:
        """_write_sync on the writer thread, waiting for a write lock another process
        holds (a VACUUM, say): the loop's thread, which must keep answering, tries once
        and hands the batch here. It waits half the batch's timeout at most, so it gives
        up before the batch is reported unwritten, never commits after."""
        deadline = time.monotonic() + self.timeout / 2
        pause = 0.001
        while True:
            try:
                result = self._write_sync(drafts, explicit_ids)
                break
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return result

    def _settle(self) -> None:
        """What follows a commit and waits for the disk: ending a checkpoint that left
        frames behind (see _checkpoint_wal), and with synchronous "full" the fdatasync
        that makes the commit durable before anyone is answered."""
        if self._catch_up:
            self._catch_up = False
            try:
                self._wconn.get().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the batch is committed all the same
                log.warning("audit store checkpoint not finished (retried later): %s", exc)
        if self.synchronous == "full":
            try:
                self._wconn.sync_wal()
            except OSError as exc:
                self._sync_failed(exc)

    def _sync_failed(self, exc: OSError) -> NoReturn:
        if isinstance(exc, FileNotFoundError):
            raise exc  # the file is gone: unavailable until it is back, as anywhere
        raise StoreUnavailable(self._distrust_wal(exc)) from None

    def _distrust_wal(self, exc: OSError) -> str:
        """After a failed fdatasync the kernel may have dropped the pages it could not
        write, and a later sync succeeds regardless: nothing written after this point
        could be shown durable, so the store refuses every record until restarted."""
        if self._unsynced is None:
            self._unsynced = (
                f"the decision log could not be synced to disk ({exc.strerror or exc}); "
                "check the disk and restart the PDP"
            )
            log.critical("audit store: %s", self._unsynced)
        return self._unsynced

    def _write_sync(self, drafts: list[Draft], explicit_ids: set[str]) -> BatchResult:
        """Commit the drafts; an explicit id already in the chain is left out and named.

        Ids are unique by construction (random or given once), so the batch is first
        written without looking them up: the id index refuses a duplicate, and only then
        is the batch written again with the lookup."""
        try:
            return self._write_transaction(drafts, set())
        except sqlite3.IntegrityError:
            if not explicit_ids:
                raise
        return self._write_transaction(drafts, explicit_ids)

    def _write_transaction(self, drafts: list[Draft], look_up: set[str]) -> BatchResult:
        cursor = self._wconn.cursor()
        cursor.execute("BEGIN IMMEDIATE")  # takes the write lock before reading the head
        try:
            duplicates = _existing_ids(cursor.connection, look_up) if look_up else set()
            fresh = fresh_drafts(drafts, duplicates)
            records, rows = self._sealed(fresh, cursor.execute(HEAD_SQL).fetchone())
            if len(rows) == 1:  # a lone decision's batch, as a rule at a low pace
                cursor.execute(_INSERT, rows[0])
            else:
                cursor.executemany(_INSERT, rows)
            cursor.execute("COMMIT")
        except BaseException:
            try:
                cursor.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return BatchResult(records, duplicates)

    # -- reading (reader thread) -----------------------------------------------------

    @staticmethod
    def _placeholder(n: int) -> str:
        return "?"

    async def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return await self._read(self._fetch, sql, params)

    async def guard_facts(
        self, after_seq: int, since: float, trips_since: float, by_time: bool | None = None
    ) -> GuardFacts:
        """The egress reports and breaker pauses of the records after after_seq up to the
        head (upto_seq), egress recorded at `since` or later and pauses at `trips_since`
        or later, summed per minute by SQLite, in one trip to the reading thread
        (pdp.domain.guard_sync). by_time: through the kind and time index (a PDP's first
        read, or one after a long pause: the last hour), not by seq (what is new);
        default: by time for after_seq 0. Both filters apply either way."""
        return await self._read(
            self._guard_facts,
            after_seq,
            to_micros(since),
            to_micros(trips_since),
            not after_seq if by_time is None else by_time,
        )

    def _guard_facts(
        self, after_seq: int, since_us: int, trips_us: int, by_time: bool
    ) -> GuardFacts:
        conn = self._rconn.get()
        row = conn.execute("SELECT seq FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
        upto = int(row[0]) if row else 0
        if upto <= after_seq:
            return GuardFacts([], [], upto)
        kinds = ",".join(f"'{k}'" for k in EGRESS_KINDS)
        if by_time:
            where = f"kind IN ({kinds}) AND time_us >= ? AND seq > ? AND seq <= ?"
            bounds = [since_us, after_seq, upto]
        else:  # "+kind": the seq range, never the kind index (all of history)
            where = f"seq > ? AND seq <= ? AND +kind IN ({kinds}) AND time_us >= ?"
            bounds = [after_seq, upto, since_us]
        egress = conn.execute(
            "SELECT json_extract(body, '$.egress.pdp'), kind, subject, session_id,"
            " json_extract(body, '$.connection'), time_us / 60000000,"
            # a report is never negative: one that is (a record the PDP did not write)
            # must not hand a budget back (max() of NULL is NULL: sum skips it, as before)
            " sum(max(json_extract(body, '$.egress.rows'), 0)),"
            " sum(max(json_extract(body, '$.egress.bytes'), 0)), min(seq)"
            f" FROM audit_records WHERE {where} AND instr(body, ?) > 0"
            " GROUP BY 1, 2, 3, 4, 5, 6",
            [*bounds, EGRESS_MARK],
        ).fetchall()
        trips = conn.execute(
            "SELECT json_extract(body, '$.pdp'), subject, json_extract(body, '$.connection'),"
            " json_extract(body, '$.why'), json_extract(body, '$.paused_until')"
            " FROM audit_records WHERE kind = ? AND time_us >= ? AND seq > ? AND seq <= ?",
            [TRIP_KIND, trips_us, after_seq, upto],
        ).fetchall()
        return guard_facts_of_rows(egress, trips, upto)

    async def verify(self) -> ChainReport:
        """Recompute every hash and link in seq order (one consistent read snapshot)."""
        return await self._read(self._verify_sync)

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self._rconn.get().execute(sql, params).fetchall()

    def _verify_sync(self) -> ChainReport:
        return verify_rows(self._rconn.get().execute(f"{SELECT_RECORDS} ORDER BY seq"))


def _relay(waited: asyncio.Future[None], done: asyncio.Future[None]) -> None:
    """done's outcome to waited, unless waited has ended (its waiter was cancelled: the
    late path watches done itself)."""
    if waited.done():
        return
    if done.cancelled():
        waited.cancel()
        return
    exc = done.exception()
    if exc is None:
        waited.set_result(None)
    else:
        waited.set_exception(exc)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """The write lock is taken (by another process): SQLITE_BUSY or one of its variants."""
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _existing_ids(conn: sqlite3.Connection, ids: set[str]) -> set[str]:
    found: set[str] = set()
    wanted = list(ids)
    for i in range(0, len(wanted), _MAX_PARAMS):
        chunk = wanted[i : i + _MAX_PARAMS]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f"SELECT id FROM audit_records WHERE id IN ({marks})", chunk)
        found.update(r[0] for r in rows)
    return found
