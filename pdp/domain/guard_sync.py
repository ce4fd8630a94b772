"""Egress budgets and breaker pauses shared through the audit store (issue 30): what
other PDPs recorded reaches this PDP's ledgers.

Owns GuardSync, which reads back from the audit store what this PDP's ledgers must count
besides their own: the egress reports other PDPs wrote into their decision and
session.close records (each report carries `egress` = {rows, bytes, pdp}, the writing
PDP's instance id), and the `breaker.tripped` records of their pauses. "Other PDPs" are
the replicas writing the same store and this PDP's own earlier process: a PDP takes a
new instance id at every start, so after a restart the hour it counted before is read
back like any replica's. Nothing is written here; the records are the ones the decision
path writes anyway (one `breaker.tripped` record per pause is the only record added).

How (cheap): one read as the PDP starts, waited for before it serves (the last hour of
egress, the last week of pauses, through the store's kind and time index, summed per
minute by the database), then only what is new by seq (`guard_facts(after_seq, ...)`),
one round trip a read, at most every SYNC_SECONDS and only while calls come — in the
background, the decision not waiting — except that a call waits for a read when the last
is older than it may be: a new session's (OPEN_SECONDS), a decision for an identity near
a limit (NEAR_SECONDS), any decision (WAIT_SECONDS). Calls waiting at once share one
read, and none waits longer than CALL_WAIT (FIRST_CALL_WAIT for the PDP's first read, or
one after MAX_LAG of quiet): a slow store (the first read of a busy hour) does not stall
decisions, it leaves them to what is known, which fails closed once older than MAX_LAG
(or while nothing has been read yet).

Where it can still over-admit, and by how much: a replica sees what another admitted
only after its next read, so an identity spread over N replicas can take, beyond its
budget, what the other replicas let through in the lag: a new session starts with all
that was recorded OPEN_SECONDS before it opened; within a session, at most WAIT_SECONDS
of the others' traffic (NEAR_SECONDS once its usage is past
pdp.domain.egress.NEAR_SHARE of a limit); plus, as with one PDP, what each open session
may take on reused verdicts before asking again (the `egress_left` the proxy was
given). While reads fail or take longer than CALL_WAIT, the lag grows, up to MAX_LAG
before budgets fail closed. A pause another replica began is applied here within the
same lags; the breaker's rates are counted per replica (pdp.domain.breaker). A pause's
record is queued with the decision that began it, so the group commit writes the two in
one transaction as a rule; were they split over two batches and the PDP killed between
the commits, the pause would be forgotten (the decision record still names it).

The records name the subject as its token wrote it; the ledgers count under its identity
key (pdp.domain.identity.identity_key), as this PDP's own decisions do.

Fail closed: while the store cannot be read (no read succeeded in the last MAX_LAG
seconds, or none yet), `problem()` names why and pdp.domain.guards holds every command
whose verdict carries a budget or breaker thresholds for approval (a budget whose over
is deny: denies it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from pdp.domain.egress import BUCKET_SECONDS, WINDOW_SECONDS
from pdp.domain.guards import Guards
from pdp.domain.identity import identity_key
from pdp.evidence.checkpoints import not_written_by_pdp
from pdp.store import EGRESS_KINDS, TRIP_KIND, GuardFacts, StoreUnavailable, guard_facts_of
from pdp.store.macs import uncovered, valid_spans

log = logging.getLogger("portcullis.guards")

SYNC_SECONDS = 1.0  # read what is new this often while calls come (in the background)
WAIT_SECONDS = 2.0  # a decision waits for a read when the last is older than this
NEAR_SECONDS = 0.25  # ... or than this, for an identity near a limit
OPEN_SECONDS = 0.25  # ... and a new session's first, for any identity
MAX_LAG = 10.0  # no read for this long: budgets and breakers fail closed
TRIP_LOOKBACK = 7 * 86400  # pauses read back at start: begun in the last week
READ_TIMEOUT = 5.0  # a read of what is new
FIRST_READ_TIMEOUT = 120.0  # the first (an hour of a busy store's records)
CALL_WAIT = 1.0  # a call waits this long for a read at most, then decides on what is known
# ... or this long for the PDP's first read: until it ends every budget fails closed, and
# on a loaded machine even a small store's first read may take longer than CALL_WAIT
FIRST_CALL_WAIT = 5.0
START_WAIT = 30.0  # the PDP's start waits this long for the first read before serving


def new_instance() -> str:
    """This PDP process's id in the egress reports it records."""
    return os.urandom(8).hex()


class GuardSync:
    def __init__(
        self,
        store: Any,
        guards: Guards,
        instance: str,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.guards = guards
        self.instance = instance
        self.clock = clock
        self.wall = wall
        self._seq = 0  # the last seq read
        self._read_wall = 0.0  # wall() of the last good read
        self._read_at: float | None = None  # clock() when the last good read began
        self._error = ""
        self._running: asyncio.Future[None] | None = None
        self._began = 0.0  # clock() when the running (or last) read began
        guards.unsynced = self.problem

    def problem(self) -> str:
        """Why the other PDPs' usage and pauses are not known now ("": they are)."""
        if self._read_at is None:
            return self._error or "the audit store has not been read yet"
        age = self.clock() - self._read_at
        if age <= MAX_LAG:
            return ""
        return f"the audit store was last read {age:.0f} s ago" + (
            f": {self._error}" if self._error else ""
        )

    async def ensure(self, max_age: float = WAIT_SECONDS) -> None:
        """Before a call: make what this PDP knows of the others at most max_age old,
        waiting for a read when it is older; a read that is only due (SYNC_SECONDS) runs
        in the background."""
        now = self.clock()
        read_at = self._read_at
        if read_at is not None and now - read_at < max_age:
            if now - read_at >= SYNC_SECONDS and self._running is None:
                self._start()
            return
        while True:  # a read begun max_age ago or later: the running one, or the next
            running = self._running or self._start()
            began = self._began
            try:  # _read raises nothing: problem() says what failed
                # a first read, or one after a quiet spell long enough that what is known
                # fails closed: worth the longer wait a loaded machine may need
                stale = read_at is None or now - read_at > MAX_LAG
                async with asyncio.timeout(FIRST_CALL_WAIT if stale else CALL_WAIT):
                    await asyncio.shield(running)
            except TimeoutError:
                return  # a slow store: decide on what is known (problem() may fail it)
            if began >= now - max_age:
                return

    def begin(self) -> None:
        """At the PDP's start: the first read begins (as the engine starts)."""
        if self._running is None and self._read_at is None:
            self._start()

    async def settle(self, timeout: float = START_WAIT) -> None:
        """At the PDP's start, before it serves: wait up to `timeout` for the first read,
        so no call waits for it on a store that answers (a slower one is waited for by
        the first calls, and fails budgets closed meanwhile)."""
        running = self._running
        if running is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(running)

    def _start(self) -> asyncio.Future[None]:
        self._began = self.clock()
        self._running = asyncio.ensure_future(self._read())
        return self._running

    async def _read(self) -> None:
        began = self._began
        try:
            await self._catch_up()
        except (StoreUnavailable, TimeoutError, OSError) as exc:
            self._error = str(exc) or type(exc).__name__
            log.warning("egress and breaker facts of other PDPs not read: %s", self._error)
        except Exception as exc:  # never let the decision path die of it
            self._error = f"{type(exc).__name__}: {exc}"
            log.exception("egress and breaker facts of other PDPs not read")
        else:
            self._read_at = began
            self._error = ""
        finally:
            self._running = None

    async def _catch_up(self) -> None:
        now = self.wall()
        since = now - WINDOW_SECONDS - BUCKET_SECONDS  # the ledger drops what is older
        # after a long quiet spell, what is new is best found by time, not by seq
        by_time = self._seq == 0 or self._read_wall < since - BUCKET_SECONDS
        async with asyncio.timeout(FIRST_READ_TIMEOUT if by_time else READ_TIMEOUT):
            facts = await self._facts(self._seq, since, now - TRIP_LOOKBACK, by_time)
            if facts.trips:
                facts = await self._authentic_trips(facts, self._seq, now - TRIP_LOOKBACK)
            if any(fact[0] != self.instance for fact in facts.egress):
                facts = await self._authentic_egress(facts, since)
        egress, breaker = self.guards.egress, self.guards.breaker
        closes_last = sorted(facts.egress, key=lambda fact: fact[1] == "session.close")
        for pdp, kind, subject, session_id, connection, minute, rows, size in closes_last:
            if pdp == self.instance:
                continue  # counted here as it came
            egress.absorb(identity_key(subject), connection, session_id, minute, rows, size)
            if kind == "session.close":
                egress.forget_session(session_id)
        for pdp, subject, connection, why, until in facts.trips:
            if pdp != self.instance:
                breaker.pause(identity_key(subject), connection, until, why)
        self._seq = max(self._seq, facts.upto_seq)
        self._read_wall = now

    async def _authentic_trips(
        self, facts: GuardFacts, after_seq: int, trips_since: float
    ) -> GuardFacts:
        """The facts with only the pauses a PDP holding the key recorded: a pause is read
        back from a `breaker.tripped` record, and anyone who may INSERT into the store can
        append one naming anyone, paused for a year. Pauses are rare: their records are
        read again, with their seqs, and those no record MAC vouches for are left out (a
        store keeping no MACs, or holding no key, vouches for all, as before)."""
        if not getattr(self.store, "record_key", None):
            return facts
        records = [
            r
            for r in await self.store.query(kind=TRIP_KIND, after_seq=after_seq, since=trips_since)
            if r.seq <= facts.upto_seq
        ]
        forged = set(await not_written_by_pdp(self.store, records))
        if forged:
            log.warning("breaker pauses in records %s have no valid record MAC: not applied",
                        sorted(forged)[:10])  # fmt: skip
        believed = [r for r in records if r.seq not in forged]
        trips = guard_facts_of(believed, facts.upto_seq).trips
        return GuardFacts(facts.egress, trips, facts.upto_seq, facts.first_seq)

    async def _authentic_egress(self, facts: GuardFacts, since: float) -> GuardFacts:
        """The facts with only the egress reports a PDP holding the key recorded: anyone
        who may INSERT into the store can append a decision reporting 10^10 rows under
        anyone, whose budget then counts exhausted for the hour. Reports are in every
        decision, so they are not read again: the batch MACs of the range read (one row
        per batch, from the first record holding a report: the first read's range is the
        hour, not history) are checked, and only when some records of it no valid MAC
        covers are the range's reports read again, record by record, without those (a
        store keeping no MACs, or holding no key, vouches for all, as before)."""
        key = getattr(self.store, "record_key", None)
        batch_macs = getattr(self.store, "batch_macs", None)
        if not key or batch_macs is None or not facts.first_seq:
            return facts
        after, upto = facts.first_seq - 1, facts.upto_seq
        gaps = uncovered(after, upto, valid_spans(key, await batch_macs(after, upto)))
        if not gaps:
            return facts
        starts = [first for first, _ in gaps]
        believed, forged = [], []
        for kind in EGRESS_KINDS:
            for r in await self.store.query(kind=kind, after_seq=after, since=since):
                at = bisect.bisect_right(starts, r.seq) - 1
                if r.seq > upto:
                    continue
                if at >= 0 and r.seq <= gaps[at][1]:
                    forged.append(r.seq)
                else:
                    believed.append(r)
        if forged:
            log.warning("egress reports in records %s have no valid record MAC: not counted",
                        sorted(forged)[:10])  # fmt: skip
        egress = guard_facts_of(believed, upto).egress
        return GuardFacts(egress, facts.trips, upto, facts.first_seq)

    async def _facts(
        self, after_seq: int, since: float, trips_since: float, by_time: bool
    ) -> GuardFacts:
        read = getattr(self.store, "guard_facts", None)
        if read is not None:
            try:
                facts: GuardFacts = await read(after_seq, since, trips_since, by_time)
                return facts
            except (StoreUnavailable, ValueError, TypeError) as exc:
                # the store's own query reads bodies in SQL (or converts them whole): one
                # record someone else INSERTed whose body is not JSON, or whose report or
                # pause holds a string, failed every read of its range — budgets and
                # breakers of every identity failed closed for as long as it stayed in the
                # window (a week of pauses). Read the range record by record instead: a
                # store that is down fails here again, a bad record is skipped, and the
                # next read starts past it.
                log.warning("egress and breaker facts: the store's read failed (%s);"
                            " reading the records one by one", exc)  # fmt: skip
        # a store without its own (a test's): every record of the range, summed here
        upto, _ = await self.store.head()
        records = []
        for kind in (*EGRESS_KINDS, TRIP_KIND):
            for r in await self.store.query(
                kind=kind,
                after_seq=after_seq,
                since=trips_since if kind == TRIP_KIND else since,
            ):
                if r.seq <= upto:
                    records.append(r)
        return guard_facts_of(records, upto)
