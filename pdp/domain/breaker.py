"""The runaway-loop breaker: per identity rates that pause an agent stuck in a loop
(issue 30).

Owns Breaker.observe(), called once per decided command: it counts, per identity (the
key its caller passes as `subject`: pdp.domain.identity.identity_key) and connection,
commands in the last second, commands of the same shape (pglast fingerprint, literals
ignored) in the last minute and denials in the last minute, against the
thresholds the verdict's `breaker` carries. Crossing one pauses the identity for the
verdict's pause_seconds: observe() then names why, and pdp.domain.guards makes every
command of the identity need approval until the pause ends. The first crossing is handed
to `tripped`. A deny carries no thresholds (the policy answers a deny with reasons
alone), so denials are counted as they come and judged with the identity's next verdict
that carries them: the command after a loop of denials is the one held. The commands a
proxy answered from its decision cache are counted too: reused() takes what the proxy
reports with its next Decide (how many, of which text, when), and reuses_left() is the
bound its answer gives on reuse, so a loop is asked about at the latest when it would
trip. Approvers are
notified through the approval webhook by the approval request of the held command.

The counts are this PDP's alone (rates per second and minute are per replica: N
replicas behind one port let an identity reach up to N times a rate before any trips).
A pause is not: each trip is handed out by take_trips() for the service to record in the
audit store (a `breaker.tripped` record with the wall-clock end of the pause), and
pdp.domain.guard_sync hands the pauses other PDPs recorded — replicas, or this PDP
before a restart — to pause(), so reconnecting to another replica or restarting the PDP
does not end one. Bounded per identity; no IO and no policy here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from portcullis.shape import shaped
from portcullis.verdict import BreakerLimits, Verdict, VerdictKind

MAX_KEPT = 4096  # events kept per identity and window
# verdicts of one Decide's reuse report counted each under its own shape: a proxy reports
# one per verdict it reused since its last Decide; past this many, the earliest are
# counted together (their number still counts for the rate, under no shape of theirs)
MAX_REPORTED_VERDICTS = 256
MAX_TRIPS = 1024  # trips waiting to be recorded (none are lost unless nobody takes them)


class ReuseReport(Protocol):
    """One verdict of a Decide's reuse report (portcullis.v1.ReusedVerdict)."""

    @property
    def raw(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def first_seconds_ago(self) -> float: ...
    @property
    def last_seconds_ago(self) -> float: ...


@dataclass(frozen=True)
class Trip:
    """A pause begun here: what the store's `breaker.tripped` record says."""

    subject: str  # the identity's key (pdp.domain.identity.identity_key)
    connection: str
    why: str
    until: float  # unix time the pause ends
    pause_seconds: int


@dataclass
class _Track:
    times: deque[float] = field(default_factory=deque)  # every command, last second
    shapes: deque[tuple[float, str]] = field(default_factory=deque)  # last minute
    # how many of `shapes` are of each shape: a command's repeats are counted in O(1),
    # not by walking the minute's commands (up to MAX_KEPT) for every command
    shape_counts: dict[str, int] = field(default_factory=dict)
    denials: deque[float] = field(default_factory=deque)  # last minute
    paused_until: float = 0.0
    why: str = ""
    # the shapes of the reused commands reported since the last command judged
    reported: list[str] = field(default_factory=list)


class Breaker:
    def __init__(
        self,
        tripped: Callable[[str, str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """tripped(subject, connection, why): told once per pause. clock: unix time (a
        pause's end is compared with the ends other PDPs recorded)."""
        self.tripped = tripped
        self.clock = clock
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._trips: list[Trip] = []

    def observe(self, subject: str, connection: str, raw: str, verdict: Verdict) -> str:
        """Count one command; why the identity is paused now ("" when it is not)."""
        limits = verdict.breaker
        track = self._tracks.get((subject, connection))
        now = self.clock()
        if track is not None and now < track.paused_until:
            return track.why
        if limits is None:
            # a deny carries nothing but its reasons: its count is judged with the
            # identity's next verdict that carries the thresholds
            if verdict.kind is VerdictKind.DENY:
                if track is None:
                    track = self._tracks[(subject, connection)] = _Track()
                _trim(track.denials, now - 60.0)
                track.denials.append(now)
                if len(track.denials) > MAX_KEPT:
                    track.denials.popleft()
            return ""
        if track is None:
            track = self._tracks[(subject, connection)] = _Track()
        _trim(track.times, now - 1.0)
        _trim_shapes(track, now - 60.0)
        _trim(track.denials, now - 60.0)
        track.times.append(now)
        reported = track.reported
        if reported:
            track.reported = []
        shape = shaped(raw) or raw if limits.identical_per_minute else ""
        if limits.identical_per_minute:
            track.shapes.append((now, shape))
            track.shape_counts[shape] = track.shape_counts.get(shape, 0) + 1
        if verdict.kind is VerdictKind.DENY:
            track.denials.append(now)
        for kept in (track.times, track.denials):
            while len(kept) > MAX_KEPT:
                kept.popleft()
        while len(track.shapes) > MAX_KEPT:
            _forget_shape(track)
        why = ""
        if limits.statements_per_second and len(track.times) > limits.statements_per_second:
            why = (
                f"{len(track.times)} commands in one second "
                f"(threshold {limits.statements_per_second})"
            )
        elif limits.identical_per_minute:
            # this command's shape, and those of the reused commands reported with it
            same = max(track.shape_counts.get(s, 0) for s in (shape, *reported))
            if same > limits.identical_per_minute:
                why = (
                    f"{same} commands of the same shape in one minute "
                    f"(threshold {limits.identical_per_minute})"
                )
        if not why and limits.denials_per_minute and len(track.denials) > limits.denials_per_minute:
            why = (
                f"{len(track.denials)} denied commands in one minute "
                f"(threshold {limits.denials_per_minute})"
            )
        if not why:
            return ""
        track.why = f"{why}; commands need approval for {limits.pause_seconds} s"
        track.paused_until = now + limits.pause_seconds
        track.times.clear()
        track.shapes.clear()
        track.shape_counts.clear()
        track.denials.clear()
        if len(self._trips) < MAX_TRIPS:
            self._trips.append(
                Trip(subject, connection, track.why, track.paused_until, limits.pause_seconds)
            )
        if self.tripped is not None:
            self.tripped(subject, connection, track.why)
        return track.why

    def reused(
        self, subject: str, connection: str, raw: str, count: int, first: float, last: float
    ) -> None:
        """Count `count` commands a proxy answered from its decision cache with the verdict
        decided for `raw` (of its text, or its shape), the first `first` seconds ago and
        the last `last` seconds ago: spread evenly between them, judged with the next
        command (an age outside 0..60 s is taken as its nearest bound)."""
        if count <= 0:
            return
        count = min(count, MAX_KEPT)
        track = self._tracks.get((subject, connection))
        if track is None:
            track = self._tracks[(subject, connection)] = _Track()
        now = self.clock()
        last = now - _age(last)
        first = min(now - _age(first), last)
        step = (last - first) / (count - 1) if count > 1 else 0.0
        shape = shaped(raw) or raw
        for n in range(count):
            at = first + n * step
            # kept in order: a reuse is never older than what is kept already
            at = max(at, track.times[-1] if track.times else at)
            track.times.append(at)
            if track.shapes:
                at = max(at, track.shapes[-1][0])
            track.shapes.append((at, shape))
        track.shape_counts[shape] = track.shape_counts.get(shape, 0) + count
        if len(track.reported) < MAX_KEPT:
            track.reported.append(shape)
        while len(track.times) > MAX_KEPT:
            track.times.popleft()
        while len(track.shapes) > MAX_KEPT:
            _forget_shape(track)

    def reported(self, subject: str, connection: str, reports: Sequence[ReuseReport]) -> None:
        """One Decide's reuse report, one entry per verdict in the order the proxy reused
        them: what reused() for each in turn would leave, in time bounded by MAX_KEPT
        whatever the proxy sent (a report of a megabyte held the PDP's loop a minute).

        A window keeps only its last MAX_KEPT events: the reports whose counts reach that
        from the end are counted, and the earlier ones, which they would push out, only
        for their last time (reused() keeps times in order: no later report's commands
        are counted as older than it). Past MAX_REPORTED_VERDICTS of those counted, the
        earliest are counted together, under the shape of no statement ("")."""
        kept: list[tuple[str, int, float, float]] = []
        total = 0
        newest_left = 60.0  # the age of the last command of the reports left out
        for n in range(len(reports) - 1, -1, -1):
            report = reports[n]
            count = report.count
            if count <= 0:
                continue
            if total >= MAX_KEPT:
                newest_left = min(newest_left, _age(report.last_seconds_ago))
                if not newest_left:
                    break  # none left out can be newer
                continue
            first, last = _age(report.first_seconds_ago), _age(report.last_seconds_ago)
            kept.append((report.raw, min(count, MAX_KEPT - total), first, last))
            total += kept[-1][1]
        kept.reverse()
        if len(kept) > MAX_REPORTED_VERDICTS:
            merged = kept[: len(kept) - MAX_REPORTED_VERDICTS + 1]
            first = max(f for _, _, f, _ in merged)
            last = min(t for _, _, _, t in merged)
            kept = [("", sum(c for _, c, _, _ in merged), first, last), *kept[len(merged) :]]
        for raw, count, first, last in kept:
            first, last = min(first, newest_left), min(last, newest_left)
            self.reused(subject, connection, raw, count, first, last)

    def reuses_left(
        self, subject: str, connection: str, limits: BreakerLimits | None
    ) -> int | None:
        """How many commands a proxy may answer from its cache before it asks again, under
        the thresholds `limits` (None: no breaker, no bound): what keeps every rate within
        its threshold when all of them are of the identity's most repeated shape, so the
        command that would trip the breaker is asked about."""
        if limits is None:
            return None
        track = self._tracks.get((subject, connection))
        left: list[int] = []
        if limits.statements_per_second:
            left.append(limits.statements_per_second - (len(track.times) if track else 0))
        if limits.identical_per_minute:
            most = max(track.shape_counts.values(), default=0) if track else 0
            left.append(limits.identical_per_minute - most)
        if not left:
            return None
        return max(0, min(left))

    def take_trips(self) -> list[Trip]:
        """The pauses begun since the last call (to be recorded)."""
        if not self._trips:
            return []
        trips, self._trips = self._trips, []
        return trips

    def pause(self, subject: str, connection: str, until: float, why: str) -> None:
        """A pause another PDP (or this one before a restart) recorded: the identity's
        commands need approval until `until` (unix time), unless it is already over."""
        if until <= self.clock():
            return
        track = self._tracks.get((subject, connection))
        if track is None:
            track = self._tracks[(subject, connection)] = _Track()
        if until > track.paused_until:
            track.paused_until = until
            track.why = why

    def paused(self, subject: str, connection: str) -> str:
        track = self._tracks.get((subject, connection))
        if track is None or self.clock() >= track.paused_until:
            return ""
        return track.why


def _age(seconds: float) -> float:
    """A reported age within 0..60 s (not a number: 0, now)."""
    return min(seconds, 60.0) if seconds > 0.0 else 0.0


def _trim(kept: deque[float], before: float) -> None:
    while kept and kept[0] <= before:
        kept.popleft()


def _trim_shapes(track: _Track, before: float) -> None:
    shapes = track.shapes
    while shapes and shapes[0][0] <= before:
        _forget_shape(track)


def _forget_shape(track: _Track) -> None:
    """Drop the oldest shape kept, and its count."""
    _, shape = track.shapes.popleft()
    left = track.shape_counts[shape] - 1
    if left:
        track.shape_counts[shape] = left
    else:
        del track.shape_counts[shape]
