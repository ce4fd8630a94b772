"""Egress budgets: what each identity took out of each connection, per session and per
hour (issue 30).

Owns the EgressLedger: proxies report the rows and bytes a session's client took with
each Decide (and what was left at CloseSession); the ledger keeps them per session and in
one-minute buckets per (identity, connection), so a new session of the same identity
starts with the hour's usage, not from zero. Usage.over() names the budget a session
has passed, with what was used; Usage.left() is what the proxy may let through on reused
verdicts before it must ask again.

Persisted through the audit store, not here: each report rides in the decision (or
session.close) record it came with (its `egress`, tagged with the PDP that counted it),
and pdp.domain.guard_sync reads back what other PDPs — replicas on the same store, or
this PDP before a restart — recorded, handing it to absorb(). The ledger itself does no
IO and holds no policy (limits come from the verdict's `budget`).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from portcullis.verdict import EgressBudget

BUCKET_SECONDS = 60
WINDOW_SECONDS = 3600
MAX_SESSIONS = 100_000
UNLIMITED = 2**62
# a key whose usage reached this share of a limit is "near": its sums from other PDPs
# are read again before each decision more often (pdp.domain.guard_sync)
NEAR_SHARE = 0.8


@dataclass(frozen=True)
class Usage:
    subject: str
    connection: str
    session_rows: int = 0
    session_bytes: int = 0
    hour_rows: int = 0
    hour_bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "session_rows": self.session_rows,
            "session_bytes": self.session_bytes,
            "hour_rows": self.hour_rows,
            "hour_bytes": self.hour_bytes,
        }

    def _pairs(self, budget: EgressBudget) -> list[tuple[str, int, int]]:
        return [
            ("rows per session", budget.rows_per_session, self.session_rows),
            ("bytes per session", budget.bytes_per_session, self.session_bytes),
            ("rows per hour", budget.rows_per_hour, self.hour_rows),
            ("bytes per hour", budget.bytes_per_hour, self.hour_bytes),
        ]

    def over(self, budget: EgressBudget) -> str:
        """Which limits are reached, with usage ("" when none)."""
        if not (
            (budget.rows_per_session and self.session_rows >= budget.rows_per_session)
            or (budget.bytes_per_session and self.session_bytes >= budget.bytes_per_session)
            or (budget.rows_per_hour and self.hour_rows >= budget.rows_per_hour)
            or (budget.bytes_per_hour and self.hour_bytes >= budget.bytes_per_hour)
        ):
            return ""  # the common case, without the list and the strings of each limit
        passed = [
            f"{used} of {limit} {what} used"
            for what, limit, used in self._pairs(budget)
            if limit and used >= limit
        ]
        if not passed:
            return ""
        return f"{self.subject} on {self.connection}: {', '.join(passed)}"

    def near(self, budget: EgressBudget) -> bool:
        """Whether any limit is NEAR_SHARE used (or more). Spelled out limit by limit
        (asked on every decision that carries a budget): any() over _pairs() built a list
        of tuples and a generator for four comparisons."""
        lim = budget.rows_per_session
        if lim and self.session_rows >= lim * NEAR_SHARE:
            return True
        lim = budget.bytes_per_session
        if lim and self.session_bytes >= lim * NEAR_SHARE:
            return True
        lim = budget.rows_per_hour
        if lim and self.hour_rows >= lim * NEAR_SHARE:
            return True
        lim = budget.bytes_per_hour
        return bool(lim and self.hour_bytes >= lim * NEAR_SHARE)

    def left(self, budget: EgressBudget) -> tuple[int, int]:
        """(rows, bytes) still allowed under every limit (UNLIMITED where none is set)."""
        rows = size = None
        if budget.rows_per_session:
            rows = budget.rows_per_session - self.session_rows
        if budget.rows_per_hour:
            hour = budget.rows_per_hour - self.hour_rows
            rows = hour if rows is None else min(rows, hour)
        if budget.bytes_per_session:
            size = budget.bytes_per_session - self.session_bytes
        if budget.bytes_per_hour:
            hour = budget.bytes_per_hour - self.hour_bytes
            size = hour if size is None else min(size, hour)
        return (
            max(0, UNLIMITED if rows is None else rows),
            max(0, UNLIMITED if size is None else size),
        )


class EgressLedger:
    def __init__(self, clock: object = time.time) -> None:
        self._clock = clock
        self._sessions: OrderedDict[str, list[int]] = OrderedDict()
        # (subject, connection) → deque of [minute, rows, bytes], oldest first
        self._hours: dict[tuple[str, str], deque[list[int]]] = {}
        # keys whose last budget check was near a limit (see NEAR_SHARE)
        self.near: set[tuple[str, str]] = set()
        # reports counted here whose record never reached the store (the decision was
        # answered deny for it): session id → [rows, bytes], carried by its next record
        self._unrecorded: dict[str, list[int]] = {}

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def add(self, subject: str, connection: str, session_id: str, rows: int, size: int) -> None:
        """A report of this PDP's (it rides in the record this PDP writes for it)."""
        if rows <= 0 and size <= 0:
            return
        self.absorb(subject, connection, session_id, int(self._now() // BUCKET_SECONDS), rows, size)

    def absorb(
        self, subject: str, connection: str, session_id: str, minute: int, rows: int, size: int
    ) -> None:
        """Usage counted in minute `minute` (unix time // 60): this PDP's own, or what
        another PDP recorded in the store (a report older than the hour is dropped)."""
        if rows <= 0 and size <= 0:
            return
        rows, size = max(rows, 0), max(size, 0)
        if session_id:
            totals = self._sessions.get(session_id)
            if totals is None:
                if len(self._sessions) >= MAX_SESSIONS:
                    self._sessions.popitem(last=False)
                totals = self._sessions[session_id] = [0, 0]
            totals[0] += rows
            totals[1] += size
        now = int(self._now() // BUCKET_SECONDS)
        if minute <= now - WINDOW_SECONDS // BUCKET_SECONDS:
            return
        buckets = self._hours.setdefault((subject, connection), deque())
        _bump(buckets, minute, rows, size)
        self._expire(buckets, now)

    def usage(self, subject: str, connection: str, session_id: str) -> Usage:
        session = self._sessions.get(session_id, (0, 0))
        key = (subject, connection)
        buckets = self._hours.get(key)
        hour_rows = hour_bytes = 0
        if buckets:
            self._expire(buckets, int(self._now() // BUCKET_SECONDS))
            if not buckets:
                del self._hours[key]  # an identity quiet for an hour holds nothing here
            for _, rows, size in buckets:
                hour_rows += rows
                hour_bytes += size
        return Usage(subject, connection, session[0], session[1], hour_rows, hour_bytes)

    def unrecorded(self, session_id: str, rows: int, size: int) -> None:
        """A report counted here whose record was not stored: carried by the next one."""
        if rows <= 0 and size <= 0:
            return
        held = self._unrecorded.setdefault(session_id, [0, 0])
        held[0] += max(rows, 0)
        held[1] += max(size, 0)

    def take_unrecorded(self, session_id: str) -> tuple[int, int]:
        """What the session's next record must carry besides its own report."""
        held = self._unrecorded.pop(session_id, None) if self._unrecorded else None
        return (held[0], held[1]) if held else (0, 0)

    def forget_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._unrecorded.pop(session_id, None)
        if len(self._hours) > MAX_SESSIONS:
            # identities gone quiet for an hour: their windows are empty, drop them
            minute = int(self._now() // BUCKET_SECONDS)
            for key, buckets in list(self._hours.items()):
                self._expire(buckets, minute)
                if not buckets:
                    del self._hours[key]
                    self.near.discard(key)

    @staticmethod
    def _expire(buckets: deque[list[int]], minute: int) -> None:
        oldest = minute - WINDOW_SECONDS // BUCKET_SECONDS
        while buckets and buckets[0][0] <= oldest:
            buckets.popleft()


def _bump(buckets: deque[list[int]], minute: int, rows: int, size: int) -> None:
    """Add to minute's bucket, kept in order (another PDP's report may be older than
    the newest bucket: it goes where its minute is)."""
    if not buckets or buckets[-1][0] < minute:
        buckets.append([minute, rows, size])
        return
    for i in range(len(buckets) - 1, -1, -1):
        bucket = buckets[i]
        if bucket[0] == minute:
            bucket[1] += rows
            bucket[2] += size
            return
        if bucket[0] < minute:
            buckets.insert(i + 1, [minute, rows, size])
            return
    buckets.appendleft([minute, rows, size])
