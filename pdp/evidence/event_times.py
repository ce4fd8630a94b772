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

It also weighs each event's verdict against the PDP's record, as replay does
(pdp.domain.timeline): a command the proxy says it let through (allow, mask) under a
decision id the PDP recorded no decision of in that session, or under one the PDP recorded
as a deny (or a mask, for an allow), is counted and named (`verdicts_line`): the proxy's
events contradict the decisions. So is a command recorded under the id of a decision the PDP made
on another command (replay's test, pdp.domain.timeline.of_another_command: verify keeps
each open session's decided texts, up to MAX_TEXT_CHARS in all).

And a Postgres decision run more than once (pdp.domain.timeline.DecisionRuns, which replay
asks too): a decision is made for one run of its command; a statement parsed once and
executed again and again runs under its Parse's decision, each execution's event naming
the prepared statement. Another run of a decision made for one, or one naming another
statement, or outside the extended protocol, is counted and named; runs naming no
statement (proxies before they named it) are counted apart.

And each session's batch numbers (pdp.domain.batch_numbers; `numbers_line`): batches that
never reached the store (a number skipped, or past the last stored up to the count the
proxy's close gives), batches that arrived after a later one, a batch stored twice (the
same events: read once, as one delivery; a batch with no number too) and a number two
different batches hold. A delivery twice repeats a batch whole: a decision's run again at
its first run's very time, in the same batch or another, is another run.
"""

from __future__ import annotations

from typing import Any

from pdp.domain.batch_numbers import RecordedNumbers, describe_ranges
from pdp.domain.casts import CastClock
from pdp.domain.recordings import (
    CLOCK_SKEW_SECONDS,
    EVENT_VERDICTS,
    EVENTS_KIND,
    LATE_SECONDS,
    RECEIVED,
    batch_events,
    names_a_member_twice,
)
from pdp.domain.sessions import FROM_SPOOL, closed_by_reaper
from pdp.domain.timeline import (
    DECIDED_TEXT_FIELDS,
    LETS_THROUGH,
    NO_DECISION,
    PARSE,
    DecisionRuns,
    finite_number,
    of_another_command,
    reused_past,
    weaker_than_ruled,
    weigh_frames,
)
from pdp.evidence.proxy_losses import ProxyLosses
from pdp.plumbing.rendering import inert

SESSION_OPEN = "session.open"
SESSION_CLOSE = "session.close"
DECISION = "decision"
NAMED_AT_MOST = 8
# decisions remembered (their id and time) across the sessions still open at a point of
# the chain: beyond this many, a command's decision is not weighed (counted, said so), so
# a bundle of junk decision records cannot take the verifier's memory
MAX_DECISIONS = 1_000_000
# ... and of their texts (the command each decided, to tell a command recorded under the
# decision of another: pdp.domain.timeline.of_another_command), this many characters in all
MAX_TEXT_CHARS = 256 * 2**20
_RULING_FIELDS = ("verdict", "enforced", *DECIDED_TEXT_FIELDS)


def _time_of(event: dict[str, Any]) -> float | None:
    when = event.get("time")
    return float(when) if finite_number(when) else None


class EventTimes:
    """Claimed event times weighed against the PDP's, over records fed in seq order."""

    def __init__(self) -> None:
        self.opened: dict[str, float] = {}  # session id -> when it opened (the PDP's clock)
        # session id -> {decision id -> (when the PDP made it, the ruling's verdict and
        # enforcement)}, while the session is open
        self.decided: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}
        self.incomplete: set[str] = set()  # sessions with a decision not remembered
        self.disputed = 0
        self.disputes: list[str] = []
        self.remembered = 0
        self.unweighed = 0  # decisions past MAX_DECISIONS, not remembered
        self.text_chars = 0  # of the decided texts remembered (MAX_TEXT_CHARS)
        self.untexted = 0  # decisions remembered without their text
        self.casts: dict[str, CastClock] = {}
        self.ruled_out = 0
        self.late = 0
        self.unreceived = 0  # batches recorded before the PDP kept its time of receipt
        self.named: list[str] = []
        self.losses = ProxyLosses()  # sessions whose proxy the PDP lost (read alongside)
        # session id -> the runs of its Postgres decisions (another run of one made for one)
        self.runs: dict[str, DecisionRuns] = {}
        self.unnamed_runs = 0  # runs again of a Parse's decision naming no statement
        self.portal_again = 0  # a Bind's portal executed again, answering no row: no run
        self.numbers = RecordedNumbers()  # the batch numbers of sessions whose open was read
        # batches whose JSON names a member twice in one object: read here as the last,
        # by other readers of the record as the first (RecordEvents refuses them now)
        self.twice = 0
        self.twice_named: list[str] = []

    def feed(
        self, seq: int, kind: str, time: float, session_id: Any, body: Any, record_id: Any = ""
    ) -> None:
        if not isinstance(body, dict) or not isinstance(session_id, str):
            return
        if kind == SESSION_OPEN:
            # (a record INSERTed by someone else may hold a session that is text, a start
            # no double holds: read as none, never stopping the verification)
            session = body.get("session")
            started = session.get("started_at") if isinstance(session, dict) else None
            opened = min(time, float(started)) if finite_number(started) else time
            self.opened[session_id] = float(opened)
            self.losses.opened(session_id, body)
            return
        if kind == DECISION:
            self._decided(session_id, record_id, time, body)
            if isinstance(record_id, str) and record_id:
                self.losses.decided(session_id, record_id, body)
            return
        if kind == SESSION_CLOSE:
            self.losses.closed(seq, session_id, time, body)
            if not closed_by_reaper(body):  # a proxy's: no event is taken after it
                if session_id in self.opened:
                    self.numbers.closed(session_id, body)
                self._forget(session_id)
                self.casts.pop(session_id, None)
                self.incomplete.discard(session_id)
            return
        if kind != EVENTS_KIND:
            return
        if session_id in self.opened and not self.numbers.feed(session_id, body):
            return  # (a batch stored again: its events are read once)
        if names_a_member_twice(body):
            self.twice += 1
            if len(self.twice_named) < NAMED_AT_MOST:
                self.twice_named.append(f"seq {seq} (session {inert(session_id[:64])})")
        received_us = body.get(RECEIVED)
        if type(received_us) is int:
            received = received_us / 1_000_000
        else:
            received = time
            self.unreceived += 1
        self.losses.batch(session_id, received, body.get(FROM_SPOOL) is True)
        start = self.opened.get(session_id)
        decided = self.decided.get(session_id, {})
        casts = self.casts.get(session_id)
        if casts is None:
            casts = self.casts[session_id] = CastClock(start)
        bad: list[str] = []
        for event in batch_events(body):
            if not isinstance(event, dict):
                continue
            details = event.get("details")
            named = event.get("decision_id") or (
                details.get("decision_id") if isinstance(details, dict) else None
            )
            if isinstance(named, str) and named:
                self.losses.named(session_id, named)
            when = event.get("time")
            if not isinstance(when, int | float) or isinstance(when, bool):
                continue
            self.losses.ran(session_id, when, event)
            ruled = decided.get(str(event.get("decision_id") or ""))
            made = ruled[0] if ruled is not None else None
            self._weigh_verdict(seq, session_id, event, ruled)
            frames = weigh_frames(casts, event)  # (each recording's event: their order)
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

    def _decided(self, session_id: str, record_id: Any, time: float, body: dict[str, Any]) -> None:
        if not isinstance(record_id, str) or not record_id:
            return
        if self.remembered >= MAX_DECISIONS:
            self.unweighed += 1
            self.incomplete.add(session_id)
            return
        ruling: dict[str, Any] = {k: body[k] for k in _RULING_FIELDS if k in body}
        attributes = body.get("attributes")
        if isinstance(attributes, dict) and attributes.get("phase") == PARSE:
            ruling["phase"] = PARSE  # (DecisionRuns reads it)
        raw = ruling.get("raw")
        if isinstance(raw, str):
            if self.text_chars + len(raw) > MAX_TEXT_CHARS:
                del ruling["raw"]  # its command is not weighed against it (said so)
                self.untexted += 1
            else:
                self.text_chars += len(raw)
        self.decided.setdefault(session_id, {})[record_id] = (time, ruling)
        self.remembered += 1

    def _forget(self, session_id: str) -> None:
        """A closed session's decisions: no event of it is taken after its close."""
        self.runs.pop(session_id, None)
        rulings = self.decided.pop(session_id, {})
        self.remembered -= len(rulings)
        for _, ruling in rulings.values():
            raw = ruling.get("raw")
            if isinstance(raw, str):
                self.text_chars -= len(raw)

    def _weigh_verdict(self, seq: int, session_id: str, event: dict[str, Any], ruled: Any) -> None:
        """An event letting a command through under no decision of the session, or under
        one the PDP recorded as stronger: counted and named. Only for a session whose
        opening was read (a bundle of a window may start after a session's decisions)."""
        verdict = event.get("verdict")
        if session_id not in self.opened:
            return
        if verdict is not None and verdict not in EVENT_VERDICTS:
            # (refused since at RecordEvents: a batch recorded before)
            said = f"{inert(str(verdict)[:32])!r}, a verdict the PDP never gives"
        elif not verdict and event.get("type") == "command":
            # a proxy records every command with the verdict it enforced (a denied one
            # too): one with none was sent on nobody's decision, by its own account
            said = "run with no verdict (no decision of the PDP named)"
        elif verdict not in LETS_THROUGH:
            return
        elif ruled is None:
            if session_id in self.incomplete:
                return
            said = f"{verdict} under {NO_DECISION} of the PDP in its session"
        else:
            stronger = weaker_than_ruled(str(verdict), ruled[1])
            if stronger:
                said = f"{verdict} where the PDP decided {stronger}"
            elif self._of_another_command(event, ruled[1]):
                decided = inert(str(ruled[1].get("raw", ""))[:60])
                said = f"{verdict} under the PDP's decision of another command ({decided!r})"
            elif reused_past(event.get("cached") is True, _time_of(event), ruled[0], ruled[1]):
                ttl = ruled[1].get("cache_ttl_seconds") or 0
                said = (
                    f"{verdict} from the proxy's cache where the PDP's decision allowed no"
                    f" reuse then (cache_ttl_seconds {ttl})"
                )
            else:
                again = self._runs_again(session_id, event, ruled[1])
                if not again:
                    return
                said = f"{verdict} {again}"
        self.disputed += 1
        if len(self.disputes) < NAMED_AT_MOST:
            command = inert(str(event.get("command", ""))[:80])
            where = f"seq {seq} (session {inert(session_id[:64])})"
            self.disputes.append(f"{where}: {command!r} recorded as {said}")

    def _runs_again(self, session_id: str, event: dict[str, Any], ruling: dict[str, Any]) -> str:
        runs = self.runs.get(session_id)
        if runs is None:
            runs = self.runs[session_id] = DecisionRuns()
        details = event.get("details")
        unnamed, portal = runs.unnamed, runs.portal_again
        said = runs.again(
            str(event.get("decision_id") or ""),
            str(event.get("type", "")),
            event.get("cached") is True,
            details if isinstance(details, dict) else {},
            ruling,
        )
        self.unnamed_runs += runs.unnamed - unnamed
        self.portal_again += runs.portal_again - portal
        return said

    @staticmethod
    def _of_another_command(event: dict[str, Any], ruling: dict[str, Any]) -> bool:
        details = event.get("details")
        command = event.get("command")
        if not isinstance(command, str):
            return False
        said = details if isinstance(details, dict) else {}
        return of_another_command(str(event.get("type", "")), command, said, ruling)

    def verdicts_line(self) -> str:
        """The report's line on the verdicts proxies recorded ("" when no session event
        was read)."""
        untexted = (
            f"; {self.untexted} decisions' texts past {MAX_TEXT_CHARS} characters of open"
            " sessions were not remembered: commands naming them are not weighed against"
            " the text decided"
            if self.untexted
            else ""
        )
        if self.portal_again:
            untexted += (
                f"; {self.portal_again} Executes again of a portal its Bind's decision ran"
                " answered no row (the server runs a portal once): not runs"
            )
        if self.unnamed_runs:
            untexted += (
                f"; {self.unnamed_runs} executions again of a statement parsed once name no"
                " prepared statement (recorded by a proxy that did not name it): taken as"
                " runs of the statement its Parse prepared"
            )
        twice = (
            f"{self.twice} batches name a member of an event twice (a verdict, a detail,"
            " masked counts): read here as the last, by other readers of the same record"
            " as the first, so what they recorded has two readings: "
            + "; ".join(self.twice_named)
            + (", ..." if self.twice > len(self.twice_named) else "")
            if self.twice
            else ""
        )
        if twice:
            untexted += f"; {twice}"
        if not self.disputed:
            if not self.opened:
                return twice
            return (
                "every command recorded as let through names a decision of its session"
                " that let that very command through" + untexted
            )
        return (
            f"{self.disputed} commands recorded as let through where the PDP's record says"
            " otherwise (the proxy's events contradict the decisions; replay marks them): "
            + "; ".join(self.disputes)
            + (", ..." if self.disputed > len(self.disputes) else "")
            + untexted
        )

    def numbers_line(self) -> str:
        """The report's line on the sessions' batch numbers ("" when no numbered batch of
        a session whose open was read, and no batch stored again)."""
        numbers = self.numbers
        if not numbers.numbers and not numbers.again:
            return ""
        missing = numbers.missing()
        if not numbers.numbers:
            said = "no session's batches are numbered"
        elif missing:
            lost = sum(b - a + 1 for ranges in missing.values() for a, b in ranges)
            named = [
                f"session {inert(sid[:64])}: batches {describe_ranges(ranges[:NAMED_AT_MOST])}"
                " missing"
                for sid, ranges in list(missing.items())[:NAMED_AT_MOST]
            ]
            said = (
                f"{lost} {_plural(lost, 'batch', 'batches')} of {len(missing)}"
                f" {_plural(len(missing), 'session', 'sessions')} are not in the records"
                " read (never stored: lost between the proxy and the PDP, refused by the PDP"
                " as malformed, or taken from a proxy's spool; or, in a bundle of a time"
                " range, stored after its end; what they recorded is not here): "
                + "; ".join(named)
                + (", ..." if len(missing) > len(named) else "")
            )
        else:
            said = (
                f"every numbered batch of {len(numbers.numbers)}"
                f" {_plural(len(numbers.numbers), 'session', 'sessions')} is in the store"
            )
        late = sum(numbers.late.values())
        if late:
            said += (
                f"; {late} {_plural(late, 'batch', 'batches')} arrived after a later one"
                " (delivered out of order)"
            )
        again = sum(numbers.again.values())
        if again:
            said += (
                f"; {again} {_plural(again, 'batch', 'batches')} stored again with the same"
                " events (one delivery recorded twice: read once)"
            )
        forked = sum(numbers.forked.values())
        if forked:
            said += (
                f"; {forked} batch {_plural(forked, 'number', 'numbers')} held by two"
                " different batches (not what a proxy sends: forged, or edited)"
            )
        mixed = numbers.mixed()
        if mixed:
            said += (
                f"; {mixed} {_plural(mixed, 'batch', 'batches')} with no number in sessions"
                " whose other batches have one (not what one proxy sends: another holder of"
                " its credential, or edited)"
            )
        return said

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


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many
