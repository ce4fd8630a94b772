"""The audit store: one append-only, hash-chained log of every record the PDP keeps.

Owns the `AuditStore` interface, the `open_store()` factory and `GroupCommitStore`, the
only writer of audit records in a process. Callers `append()` and get a record back only
after it is durably committed; when that cannot happen they get `StoreUnavailable` and
must fail closed (the PDP answers deny).

Group commit: `append()` queues a draft and waits; one writer task takes everything
queued (up to `max_batch`), and the backend seals it onto the chain and writes it in ONE
transaction, reading the chain head inside that transaction. If the transaction fails,
every caller in the batch gets `StoreUnavailable` and the head does not move. A backend
may commit a batch and leave its sync under way (SQLite's native AIO fdatasync): the
writer then commits the next batch meanwhile (MAX_SYNCING at most under way), and each
batch is answered only once its own sync and every earlier one are done; a failed or
overdue sync fails its batch and every batch after it. Records an append names as
`before` it (Beside) go into its batch just ahead of it: one transaction. Record
bytes and hashing live in `chain.py`, the reads both SQL backends share in `reads.py`;
backends live in `sqlite.py` and `postgres.py` (imported lazily, so the SQLite store
never imports asyncpg).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time as _time
import uuid
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pdp.plumbing.deadlines import answered_by
from pdp.plumbing.frozen import quick_init
from pdp.plumbing.inbox import Inbox
from pdp.store.chain import (
    GENESIS_HASH,
    AuditRecord,
    ChainReport,
    Draft,
    canonical_json,
    canonical_json_with,
    record_rows,
    seal,
    to_micros,
)
from pdp.store.macs import MacKey
from pdp.store.reads import RecordReads

if TYPE_CHECKING:
    from portcullis.config import StoreSettings

__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "AuditStore",
    "Beside",
    "ChainReport",
    "DuplicateRecordId",
    "GroupCommitStore",
    "GuardFacts",
    "StoreUnavailable",
    "open_store",
]

log = logging.getLogger("portcullis.store")

# a record naming records committed after their callers were told they were not (a commit
# that outlived its batch's deadline): their decisions were answered as unrecorded, a deny
LATE_COMMIT_KIND = "audit.late_commit"
# the PDP found the chain's head below a record it had committed itself: records were
# deleted from the end of the chain while it ran (GroupCommitStore._seen_head)
TAIL_CUT_KIND = "audit.tail_cut"
# batches whose syncs may be under way at once (a backend that starts them: SQLite's
# native AIO): the writer commits the next batch while the disk syncs the last ones
MAX_SYNCING = 8


# the records whose `egress` (a proxy's report of rows and bytes, tagged with the PDP that
# counted it) the guards read back, and the record of a runaway-loop breaker's pause
# (pdp.domain.guard_sync): GuardFacts of a range of the chain
EGRESS_KINDS = ("decision", "session.close")
TRIP_KIND = "breaker.tripped"
EGRESS_MARK = '"egress":{'  # how a body carrying one starts it (canonical JSON)


@dataclass(frozen=True)
class GuardFacts:
    """What `guard_facts()` read of the records after_seq < seq <= upto_seq (the head
    when it read): egress summed per (pdp, kind, subject, session id, connection,
    minute = unix time // 60) → (…, rows, bytes), and the breaker's pauses as (pdp,
    subject, connection, why, paused_until). first_seq: the lowest seq of a record
    whose egress report was counted (0: none), where checking who wrote them begins
    (pdp.domain.guard_sync)."""

    egress: list[tuple[str, str, str, str, str, int, int, int]]
    trips: list[tuple[str, str, str, str, float]]
    upto_seq: int = 0
    first_seq: int = 0


def guard_facts_of(records: list[AuditRecord], upto_seq: int) -> GuardFacts:
    """GuardFacts of records already read (a store without its own guard_facts)."""
    sums: dict[tuple[str, str, str, str, str, int], list[int]] = {}
    trips: list[tuple[str, str, str, str, float]] = []
    first = 0
    for r in records:
        body = r.body
        try:
            if r.kind == TRIP_KIND:
                trips.append(
                    (
                        str(body.get("pdp", "")),
                        r.subject,
                        str(body.get("connection", "")),
                        str(body.get("why", "")),
                        float(body.get("paused_until", 0)),
                    )
                )
                continue
            egress = body.get("egress")
            if r.kind not in EGRESS_KINDS or not isinstance(egress, dict):
                continue
            # never negative: a record the PDP did not write must not hand a budget back
            rows = max(int(egress.get("rows", 0)), 0)
            size = max(int(egress.get("bytes", 0)), 0)
        except (ValueError, TypeError, OverflowError):
            continue  # a record the PDP did not write (its are numbers): no fact
        key = (
            str(egress.get("pdp", "")),
            r.kind,
            r.subject,
            r.session_id,
            str(body.get("connection", "")),
            int(r.time // 60),
        )
        held = sums.setdefault(key, [0, 0])
        held[0] += rows
        held[1] += size
        if rows or size:
            first = min(first, r.seq) if first else r.seq
    return GuardFacts([(*k, v[0], v[1]) for k, v in sums.items()], trips, upto_seq, first)


def guard_facts_of_rows(
    egress: Iterable[Sequence[Any]], trips: Iterable[Sequence[Any]], upto_seq: int
) -> GuardFacts:
    """GuardFacts of the rows a store's own guard_facts query read: egress as (pdp, kind,
    subject, session id, connection, minute, rows, bytes, the group's lowest seq), pauses
    as (pdp, subject, connection, why, paused until), JSON nulls as they come."""
    counted = [row for row in egress if row[6] or row[7]]  # a nested "egress" sums to 0
    return GuardFacts(
        [
            (str(p or ""), k, sub, sid, str(c or ""), int(m), int(r or 0), int(b or 0))
            for p, k, sub, sid, c, m, r, b, _ in counted
        ],
        [
            (str(p or ""), sub, str(c or ""), str(w or ""), float(u or 0))
            for p, sub, c, w, u in trips
        ],
        upto_seq,
        min((int(row[8]) for row in counted), default=0),
    )


class StoreUnavailable(Exception):
    """The record was not (or not provably) committed; the caller must fail closed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"audit store unavailable: {reason}")
        self.reason = reason


class DuplicateRecordId(ValueError):
    """append() was given an id that the chain already holds (or the same batch holds)."""


@dataclass(frozen=True)
class Beside:
    """A record append() writes just before the one it appends, in the same transaction:
    both are committed or neither is (a session's claims and its open: pdp.domain.claims)."""

    kind: str
    body: dict[str, Any]
    session_id: str = ""
    subject: str = ""


def open_store(settings: StoreSettings, *, timeout: float = 2.0) -> AuditStore:
    """Build the configured backend (not started: `await store.start()` or `async with`)."""
    if settings.type == "sqlite":
        from pdp.store.sqlite import SQLiteAuditStore

        return SQLiteAuditStore(settings.path, timeout=timeout, synchronous=settings.synchronous)
    if settings.type == "postgres":
        from pdp.store.postgres import PostgresAuditStore

        return PostgresAuditStore(settings.dsn, timeout=timeout)
    raise ValueError(f"unknown store type {settings.type!r}")


@quick_init
@dataclass(frozen=True)
class _Pending:
    draft: Draft
    explicit_id: bool
    future: asyncio.Future[AuditRecord]
    before: tuple[Draft, ...] = ()  # written just before draft, in its transaction


def fresh_drafts(drafts: list[Draft], duplicates: set[str]) -> list[Draft]:
    """The drafts a backend writes: those whose id, and the id of the record each is
    written with (Draft.with_id), is not one it found already in the chain."""
    if not duplicates:
        return drafts
    return [d for d in drafts if d.id not in duplicates and d.with_id not in duplicates]


@quick_init
@dataclass(frozen=True)
class BatchResult:
    """What a backend wrote: sealed records, and explicit ids it refused as duplicates."""

    records: list[AuditRecord]
    duplicate_ids: set[str]


class GroupCommitStore:
    """Queue + single writer task shared by the backends.

    Subclasses implement `_open()`, `_write_batch()`, `_reset()`, `_shutdown()` and the
    read methods (pdp.store.reads.RecordReads). `_write_batch()` must, in one
    transaction: read the head, drop drafts whose explicit id already exists, seal the
    rest (`_sealed()`) and insert them.
    """

    max_batch = 512
    max_backlog = 50_000

    def __init__(self, *, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self._macs: MacKey | None = None
        self._queue: Inbox[_Pending | None] = Inbox()
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer's, once started
        self._writer: asyncio.Task[None] | None = None
        self._accepting = False
        self._notes: set[asyncio.Future[None]] = set()  # late-commit work under way
        # batches committed whose syncs are under way, in commit order (_answer_synced)
        self._syncing: collections.deque[asyncio.Future[bool]] = collections.deque()
        # the newest record this process committed (seq, hash): the chain's head never
        # goes below it unless records were deleted from its end
        self._committed: tuple[int, str] = (0, "")
        self.tail_cuts = 0  # times the head was found below it

    @property
    def record_key(self) -> bytes | None:
        """The key of record MACs (pdp.store.macs), set by the composition root before
        start(); a store without one (tools, tests) writes none."""
        return self._record_key if self._macs is not None else None

    @record_key.setter
    def record_key(self, key: bytes | None) -> None:
        self._record_key = key or b""
        self._macs = MacKey(key) if key else None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the backend and create the schema; raises StoreUnavailable if unreachable."""
        if self._writer is not None:
            return
        await self._open()
        # appends and commits use the writer's loop as found here: on Python 3.11 each
        # asyncio.get_running_loop() is a getpid system call
        self._loop = asyncio.get_running_loop()
        self._queue = Inbox(self._loop)
        self._accepting = True
        self._writer = asyncio.create_task(self._write_loop(), name="audit-store-writer")

    async def close(self) -> None:
        """Stop accepting appends, commit everything already queued, release the backend."""
        if self._writer is None:
            return
        if self._notes:  # records that landed late, still to be named: give them their time
            await asyncio.wait(set(self._notes), timeout=self.timeout * 2)
        self._accepting = False
        self._queue.put_nowait(None)
        try:
            await self._writer
        finally:
            self._writer = None
            await self._shutdown()

    async def __aenter__(self) -> GroupCommitStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- appending -------------------------------------------------------------------

    async def append(
        self,
        kind: str,
        body: dict[str, Any],
        *,
        id: str | None = None,
        session_id: str = "",
        subject: str = "",
        time: float | None = None,
        plain: bool = False,
        encoded: Mapping[str, str] | None = None,
        before: Sequence[Beside] = (),
    ) -> AuditRecord:
        """Add one record; returns it once durably committed, else raises StoreUnavailable.

        Bad arguments (body not JSON-serializable, empty kind) raise TypeError/ValueError;
        an id already in the chain raises DuplicateRecordId. `plain` says the body holds
        only what JSON reads back unchanged (str keys, str/int/bool/None/list/dict values,
        no tuples), so the returned record keeps it as given instead of a decoded copy.
        `encoded` gives the canonical JSON of some of body's top-level values, made once
        by the caller (chain.canonical_json_with: the record's bytes are the same).
        `before`: records written just before this one in its transaction (new ids, the
        same time): committed with it, or refused with it (a duplicate id too).
        """
        if not isinstance(kind, str) or not kind:
            raise ValueError("kind must be a non-empty string")
        if not isinstance(body, dict):
            raise TypeError("body must be a dict")
        body_json = canonical_json_with(body, encoded) if encoded else canonical_json(body)
        if not body_json.isascii():  # lone surrogates cannot be hashed: fail here, not
            body_json.encode()  # in the writer (an ASCII text has none: no copy made)
        if not self._accepting:
            raise StoreUnavailable("store is not running")
        if self._queue.qsize() >= self.max_backlog:
            raise StoreUnavailable("too many records waiting to be written")
        draft = Draft(
            id=id if id is not None else str(uuid.uuid4()),
            kind=kind,
            time_us=to_micros(_time.time() if time is None else time),
            session_id=session_id,
            subject=subject,
            # as it reads back: tuples → lists, int keys → str
            body=body if plain else json.loads(body_json),
            body_json=body_json,
        )
        ahead = tuple(_beside_draft(b, draft) for b in before) if before else ()
        loop = self._loop
        assert loop is not None  # set before appends are accepted
        future: asyncio.Future[AuditRecord] = loop.create_future()
        self._queue.put_nowait(_Pending(draft, id is not None, future, ahead))
        try:
            # the deadline ends the future, so a draft not yet taken by the writer is
            # dropped rather than written after its caller gave up (one timer per record:
            # pdp.plumbing.deadlines)
            return await answered_by(future, loop.time() + self.timeout * 2)
        except TimeoutError:
            raise StoreUnavailable(f"not committed within {self.timeout * 2:g}s") from None

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            batch: list[_Pending] = []
            while True:
                if item is None:
                    stopping = True
                    break
                if not item.future.done():  # caller timed out or was cancelled
                    batch.append(item)
                if len(batch) >= self.max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._commit(batch)
        while self._syncing:  # the last batches' answers, before the store closes
            await self._syncing.popleft()

    async def _commit(self, batch: list[_Pending]) -> None:
        seen: set[str] = set()
        unique: list[_Pending] = []
        for p in batch:
            if p.draft.id in seen:
                _fail(p, DuplicateRecordId(f"record id {p.draft.id!r} is already in use"))
            else:
                seen.add(p.draft.id)
                unique.append(p)
        explicit = {p.draft.id for p in unique if p.explicit_id}
        drafts = [p.draft for p in unique]
        if any(p.before for p in unique):  # each with the records written just before it
            drafts = [d for p in unique for d in (*p.before, p.draft)]
        loop = self._loop
        assert loop is not None  # the writer runs on it
        syncing = self._syncing
        while syncing and syncing[0].done():
            syncing.popleft()
        deadline = loop.time() + self.timeout
        try:
            # no task made for every commit; timeout_at: no loop looked up (a getpid)
            async with asyncio.timeout_at(deadline):
                result, sync = await self._write_batch_then_sync(drafts, explicit)
        except Exception as exc:  # any backend failure: nobody in the batch is committed
            while syncing:  # the batches before it first: none is reset under their syncs
                await syncing.popleft()
            reason = _describe(exc)
            log.warning("audit batch of %d records not written: %s", len(unique), reason)
            try:
                await self._reset()
            except Exception:  # the writer task must survive a backend that is gone
                log.exception("resetting the audit store backend failed")
            for p in unique:
                _fail(p, StoreUnavailable(reason))
            if isinstance(exc, TimeoutError):  # cut off while writing: it may land yet
                self._failed_batch([d.id for d in drafts])
            return
        if sync is None:  # durable already: answered once the batches before it are
            while syncing:
                await syncing.popleft()
            self._answer(unique, result)
            return
        # its sync under way, the writer goes on to the next batch: that one commits and
        # starts its own sync meanwhile (syncs in flight together cost the disk about
        # one), and each batch is answered after its own sync and every earlier one
        previous = syncing[-1] if syncing else None
        syncing.append(
            asyncio.ensure_future(self._answer_synced(unique, result, sync, previous, deadline))
        )
        if len(syncing) >= MAX_SYNCING:
            await syncing.popleft()

    async def _answer_synced(
        self,
        unique: list[_Pending],
        result: BatchResult,
        sync: asyncio.Future[None],
        previous: asyncio.Future[bool] | None,
        deadline: float,
    ) -> bool:
        """Answer a committed batch once its sync is done, and every sync before it:
        True when all were. A batch whose own sync failed or overran its deadline, or
        that follows one that did, is answered as unrecorded (StoreUnavailable); one
        durable after all (its sync done, an earlier one that overran landing later) is
        named by a late-commit record, as a batch cut off by its deadline is."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._await_sync(sync, result)
        except Exception as exc:
            reason = _describe(exc)
            log.warning("audit batch of %d records not made durable: %s", len(unique), reason)
            for p in unique:
                _fail(p, StoreUnavailable(reason))
            return False
        if previous is not None and not await previous:
            for p in unique:
                _fail(p, StoreUnavailable("an earlier batch was not made durable"))
            self._in_background(self._note_late([r.id for r in result.records]))
            return False
        self._answer(unique, result)
        return True

    def _answer(self, unique: list[_Pending], result: BatchResult) -> None:
        """Answer the callers of a batch committed and durable."""
        if result.records:
            self._seen_head(result.records)
        by_id = {r.id: r for r in result.records}
        late: list[str] = []
        for p in unique:
            record = by_id.get(p.draft.id)
            if record is not None:
                if not p.future.done():
                    p.future.set_result(record)
                elif not p.future.cancelled() and isinstance(p.future.exception(), TimeoutError):
                    # its append's deadline (2 x timeout) ended while this batch committed:
                    # the caller was answered as unrecorded (a decision: deny) and the
                    # record, with its verdict, is in the chain all the same
                    late.append(p.draft.id)
            elif p.draft.id in result.duplicate_ids:
                _fail(p, DuplicateRecordId(f"record id {p.draft.id!r} is already in use"))
            else:
                _fail(p, StoreUnavailable("backend did not return the record"))
        if late:
            self._in_background(self._note_late(late))

    # -- commits that land late -------------------------------------------------------

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    async def _note_late(self, ids: list[str]) -> None:
        """Append a LATE_COMMIT_KIND record naming records that were committed after
        their callers were told they were not."""
        try:
            await self.append(
                LATE_COMMIT_KIND,
                {
                    "ids": ids,
                    "note": "committed after the batch's deadline: these records' callers "
                    "were answered as if they were not recorded",
                },
            )
        except StoreUnavailable as exc:
            log.error("records %s committed late and not noted as such: %s", ids, exc)

    def _seen_head(self, records: list[AuditRecord]) -> None:
        """A batch sealed at seqs this process had committed records at: someone deleted
        records from the end of the chain (with DELETE on the store, or the file) and the
        PDP now writes on the shorter chain. The chain alone would verify, and the anchor
        names only the last checkpoint, so the cut is written into the chain itself: an
        `audit.tail_cut` record (MAC'd, then checkpointed), which `audit verify` names."""
        first, newest = records[0].seq, records[-1]  # sealed in seq order (chain.seal)
        lost_seq, lost_hash = self._committed
        self._committed = (newest.seq, newest.hash)  # after a cut: the chain written on
        if first > lost_seq:
            return
        self.tail_cuts += 1
        log.error(
            "audit store: records %d..%d this PDP committed are no longer in the chain (the"
            " head went back to %d): deleted from its end; recorded as %s",
            first,
            lost_seq,
            first - 1,
            TAIL_CUT_KIND,
        )
        body = {
            "lost_first_seq": first,
            "lost_last_seq": lost_seq,
            "lost_last_hash": lost_hash,
            "note": "records this PDP had committed were deleted from the end of the chain;"
            " the records at these seqs now were written after the cut",
        }
        self._in_background(self._note_cut(body))

    async def _note_cut(self, body: dict[str, Any]) -> None:
        try:
            await self.append(TAIL_CUT_KIND, body)
        except StoreUnavailable as exc:
            log.error("a cut of the chain's tail was not recorded: %s (%s)", body, exc)

    def _sealed(
        self, drafts: list[Draft], head: Sequence[Any] | None
    ) -> tuple[list[AuditRecord], list[tuple[Any, ...]]]:
        """A batch sealed onto the chain's head as the transaction read it ((seq, hash),
        None: an empty chain), and the rows to insert (chain.record_rows): the last one
        carries the batch's MAC, when there is a key."""
        records = seal(drafts, *(tuple(head) if head else (0, GENESIS_HASH)))
        macs = self._macs
        if macs is None or not records:
            return records, record_rows(records, drafts, None)
        last = records[-1]
        return records, record_rows(
            records, drafts, macs.batch(records[0].seq, last.seq, last.hash)
        )

    # -- backend hooks ---------------------------------------------------------------

    def _failed_batch(self, ids: list[str]) -> None:
        """A batch cut off by its deadline, reported unwritten, whose commit may land all
        the same: a backend that can tell calls _note_late once it knows (see the SQLite
        and Postgres stores). The writer is serial, so at most one per deadline."""

    async def _open(self) -> None:
        raise NotImplementedError

    async def _write_batch(self, drafts: list[Draft], explicit_ids: set[str]) -> BatchResult:
        raise NotImplementedError

    async def _write_batch_then_sync(
        self, drafts: list[Draft], explicit_ids: set[str]
    ) -> tuple[BatchResult, asyncio.Future[None] | None]:
        """_write_batch, or a commit whose sync is under way: its future, done when the
        batch is durable (_await_sync waits for it). None: durable already."""
        return await self._write_batch(drafts, explicit_ids), None

    async def _await_sync(self, sync: asyncio.Future[None], committed: BatchResult) -> None:
        """Wait for a sync _write_batch_then_sync started (raises as a failed write)."""
        raise NotImplementedError

    async def _reset(self) -> None:
        """Forget connections after a failed batch, so the next batch reconnects."""

    async def _shutdown(self) -> None:
        raise NotImplementedError


class AuditStore(RecordReads, GroupCommitStore):
    """What every caller holds: GroupCommitStore's writing (start, close, append) and
    pdp.store.reads.RecordReads' reading (query, newest, get, head and the evidence
    reads); the SQLite and Postgres stores are its two backends."""

    async def verify(self) -> ChainReport:
        """The whole chain checked from its first record (chain.verify_rows)."""
        raise NotImplementedError


def _beside_draft(beside: Beside, draft: Draft) -> Draft:
    """The draft of a record written just before `draft`, tied to it (Draft.with_id)."""
    if not isinstance(beside.kind, str) or not beside.kind:
        raise ValueError("kind must be a non-empty string")
    body_json = canonical_json(beside.body)
    if not body_json.isascii():  # lone surrogates: refused here, as append() refuses them
        body_json.encode()
    return Draft(
        str(uuid.uuid4()),
        beside.kind,
        draft.time_us,
        beside.session_id,
        beside.subject,
        json.loads(body_json),
        body_json,
        draft.id,
    )


def _fail(pending: _Pending, exc: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "write timed out"
    if isinstance(exc, StoreUnavailable):
        return exc.reason
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
