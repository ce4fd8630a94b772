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

How (cheap): one read at the PDP's first call (the last hour of egress, the last week of
pauses, through the store's kind and time index, summed per minute by the database),
then only what is new by seq (`guard_facts(after_seq, ...)`), at most every SYNC_SECONDS
and only while calls come — in the background, the decision not waiting, unless the
last read is older than WAIT_SECONDS or the identity is near a limit (NEAR_SECONDS).

Where it can still over-admit, and by how much: a replica sees what another admitted
only after its next read, so an identity spread over N replicas can take, beyond its
budget, what the other replicas let through in the lag: at most WAIT_SECONDS of their
traffic (NEAR_SECONDS once its usage is past pdp.domain.egress.NEAR_SHARE of a limit),
plus what each open session may take on reused verdicts before asking again (the
`egress_left` the proxy was given, as with one PDP). A pause another replica began is
applied here within the same lag; the breaker's rates are counted per replica
(pdp.domain.breaker).

Fail closed: while the store cannot be read (no read succeeded in the last MAX_LAG
seconds, or none yet), `problem()` names why and pdp.domain.guards holds every command
whose verdict carries a budget or breaker thresholds for approval (a budget whose over
is deny: denies it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from pdp.domain.egress import BUCKET_SECONDS, WINDOW_SECONDS
from pdp.domain.guards import Guards
from pdp.store import EGRESS_KINDS, TRIP_KIND, GuardFacts, StoreUnavailable, guard_facts_of

log = logging.getLogger("portcullis.guards")

SYNC_SECONDS = 1.0  # read what is new this often while calls come (in the background)
WAIT_SECONDS = 2.0  # a decision waits for a read when the last is older than this
NEAR_SECONDS = 0.25  # ... or than this, for an identity near a limit
MAX_LAG = 10.0  # no read for this long: budgets and breakers fail closed
TRIP_LOOKBACK = 7 * 86400  # pauses read back at start: begun in the last week
READ_TIMEOUT = 5.0


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
        self._read_at: float | None = None  # clock() when the last good read began
        self._error = ""
        self._running: asyncio.Future[None] | None = None
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

    async def ensure(self, near: bool = False) -> None:
        """Before a decision: read what is new when due (see the module docstring)."""
        read_at = self._read_at
        age = None if read_at is None else self.clock() - read_at
        if age is not None and age < (NEAR_SECONDS if near else SYNC_SECONDS):
            return
        running = self._running
        if running is None:
            running = self._running = asyncio.ensure_future(self._read())
        if age is None or age >= (NEAR_SECONDS if near else WAIT_SECONDS):
            await asyncio.shield(running)  # _read raises nothing: problem() says what failed

    async def _read(self) -> None:
        began = self.clock()
        try:
            async with asyncio.timeout(READ_TIMEOUT):
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
        upto, _ = await self.store.head()
        if upto <= self._seq:
            return
        since = now - WINDOW_SECONDS - BUCKET_SECONDS  # the ledger drops what is older
        facts = await self._facts(self._seq, upto, since, now - TRIP_LOOKBACK)
        egress, breaker = self.guards.egress, self.guards.breaker
        closes_last = sorted(facts.egress, key=lambda fact: fact[1] == "session.close")
        for pdp, kind, subject, session_id, connection, minute, rows, size in closes_last:
            if pdp == self.instance:
                continue  # counted here as it came
            egress.absorb(subject, connection, session_id, minute, rows, size)
            if kind == "session.close":
                egress.forget_session(session_id)
        for pdp, subject, connection, why, until in facts.trips:
            if pdp != self.instance:
                breaker.pause(subject, connection, until, why)
        self._seq = upto

    async def _facts(
        self, after_seq: int, upto_seq: int, since: float, trips_since: float
    ) -> GuardFacts:
        read = getattr(self.store, "guard_facts", None)
        if read is not None:
            facts: GuardFacts = await read(after_seq, upto_seq, since, trips_since)
            return facts
        # a store without its own (a test's): every record of the range, summed here
        records = []
        for kind in (*EGRESS_KINDS, TRIP_KIND):
            for r in await self.store.query(
                kind=kind,
                after_seq=after_seq,
                since=trips_since if kind == TRIP_KIND else since,
            ):
                if r.seq <= upto_seq:
                    records.append(r)
        return guard_facts_of(records)
