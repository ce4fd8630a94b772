"""What `audit verify` says of session events' claimed times, against the PDP's clock.

An event's time is the proxy's word; the record of its batch holds when the PDP received
it (`received_us`, hashed with it; for a batch recorded before that, the record's own
time, which the PDP wrote when it appended the batch). Fed the records in seq order,
`EventTimes` counts the events whose claimed time the PDP's clock rules out (ahead of
their batch's arrival, before their session opened, a command before the decision it
names was made: pdp.domain.recordings' allowances; a terminal recording's frames out of
order or outside that window: pdp.domain.casts.CastClock), names the first batches
holding them, and counts the late ones (held by the proxy past LATE_SECONDS: spooled, or
a long command): genuine, so only counted. A chain holding such events still verifies:
it is a faithful record of what a proxy said.

After the session closed needs no look ahead: the PDP refuses a batch for a session its
proxy closed, so every batch of such a session was received before its close, and an
event claiming a time past the close (beyond the allowance) claims one ahead of its
batch's arrival, which is marked.
"""

from __future__ import annotations

from typing import Any

from pdp.domain.casts import CastClock
from pdp.domain.recordings import (
    CLOCK_SKEW_SECONDS,
    EVENTS_KIND,
    LATE_SECONDS,
    RECEIVED,
    batch_events,
)
from pdp.domain.sessions import REAPED_REASONS
from pdp.plumbing.rendering import inert

SESSION_OPEN = "session.open"
SESSION_CLOSE = "session.close"
DECISION = "decision"
NAMED_AT_MOST = 8
# decisions remembered (their id and time) across the sessions still open at a point of
# the chain: beyond this many, a command's decision is not weighed (counted, said so), so
# a bundle of junk decision records cannot take the verifier's memory
MAX_DECISIONS = 1_000_000


class EventTimes:
    """Claimed event times weighed against the PDP's, over records fed in seq order."""

    def __init__(self) -> None:
        self.opened: dict[str, float] = {}  # session id -> when it opened (the PDP's clock)
        # session id -> {decision id -> when the PDP made it}, while the session is open
        self.decided: dict[str, dict[str, float]] = {}
        self.remembered = 0
        self.unweighed = 0  # decisions past MAX_DECISIONS, not remembered
        self.casts: dict[str, CastClock] = {}
        self.ruled_out = 0
        self.late = 0
        self.unreceived = 0  # batches recorded before the PDP kept its time of receipt
        self.named: list[str] = []

    def feed(
        self, seq: int, kind: str, time: float, session_id: Any, body: Any, record_id: Any = ""
    ) -> None:
        if not isinstance(body, dict) or not isinstance(session_id, str):
            return
        if kind == SESSION_OPEN:
            started = (body.get("session") or {}).get("started_at")
            opened = min(time, started) if isinstance(started, int | float) else time
            self.opened[session_id] = float(opened)
            return
        if kind == DECISION:
            self._decided(session_id, record_id, time)
            return
        if kind == SESSION_CLOSE:
            if body.get("reason") not in REAPED_REASONS:  # (no event is taken after it)
                self.remembered -= len(self.decided.pop(session_id, {}))
                self.casts.pop(session_id, None)
            return
        if kind != EVENTS_KIND:
            return
        received_us = body.get(RECEIVED)
        if type(received_us) is int:
            received = received_us / 1_000_000
        else:
            received = time
            self.unreceived += 1
        start = self.opened.get(session_id)
        decided = self.decided.get(session_id, {})
        casts = self.casts.get(session_id)
        if casts is None:
            casts = self.casts[session_id] = CastClock(start)
        bad: list[str] = []
        for event in batch_events(body):
            when = event.get("time") if isinstance(event, dict) else None
            if not isinstance(when, int | float) or isinstance(when, bool):
                continue
            made = decided.get(str(event.get("decision_id") or ""))
            frames = casts.weigh(event)  # (each recording's event: it keeps their order)
            if when > received + CLOCK_SKEW_SECONDS:
                bad.append(f"{when - received:.3f}s after the PDP received it")
            elif start is not None and when < start - CLOCK_SKEW_SECONDS:
                bad.append(f"{start - when:.3f}s before its session opened")
            elif made is not None and event.get("verdict") and when < made - CLOCK_SKEW_SECONDS:
                bad.append(f"{made - when:.3f}s before the decision it names was made")
            elif frames:
                bad.append(f"the time it claims {frames}")
            elif received - when > LATE_SECONDS:
                self.late += 1
        if bad:
            self.ruled_out += len(bad)
            if len(self.named) < NAMED_AT_MOST:
                self.named.append(f"seq {seq} (session {inert(session_id[:64])}): {bad[0]}")

    def _decided(self, session_id: str, record_id: Any, time: float) -> None:
        if not isinstance(record_id, str) or not record_id:
            return
        if self.remembered >= MAX_DECISIONS:
            self.unweighed += 1
            return
        self.decided.setdefault(session_id, {})[record_id] = time
        self.remembered += 1

    def line(self) -> str:
        """The report's line on event times ("" when no session event was read)."""
        if not (self.ruled_out or self.late or self.unreceived or self.opened or self.unweighed):
            return ""
        if self.ruled_out:
            said = (
                f"{self.ruled_out} session events claim a time the PDP's clock rules out"
                " (a proxy's clock or word is wrong; replay marks them): "
                + "; ".join(self.named)
                + (", ..." if self.ruled_out > len(self.named) else "")
            )
        else:
            said = "every session event's claimed time is within the PDP's clock's window"
        if self.late:
            said += (
                f"; {self.late} arrived more than {LATE_SECONDS:g}s after their time"
                " (spooled by a proxy, or a long command)"
            )
        if self.unreceived:
            said += (
                f"; {self.unreceived} event batches were recorded before the PDP kept its"
                " time of receipt (weighed against their record's time)"
            )
        if self.unweighed:
            said += (
                f"; {self.unweighed} decisions past the first {MAX_DECISIONS} of open sessions"
                " were not remembered: commands naming them are not weighed against them"
            )
        return said
