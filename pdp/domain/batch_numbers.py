"""The numbers of a session's recorded batches: which were stored, which are missing.

A proxy numbers each batch of a session's events it makes, 1, 2, ... in order
(RecordEventsRequest.batch_seq; a heartbeat carries none). The number is stored with the
batch, in its `session.events` record (BATCH_SEQ, hashed with the events), so:

- the PDP stores a number once: a batch sent again (a retry after a timeout whose first
  send was stored, a spool delivered twice after a proxy restart) is answered as taken
  and not recorded again (pdp.api.recording_rpc);
- `audit verify` and replay read the numbers back in chain order (`feed`): a number
  missing below the highest one stored, or up to the last one the proxy said it made at
  its close (CLOSE_BATCHES in the session.close record's summary), is a batch that never reached
  the store; a number arriving after a higher one came late (reordered); a number stored
  twice is a batch recorded again (the same text: one delivery twice, not a second run)
  or two batches under one number (other text: not what a proxy sends).

Sans-IO: numbers in, what they show out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

BATCH_SEQ = "batch_seq"  # the field of a session.events record body holding its number
CLOSE_BATCHES = "batches"  # of a session.close record's summary: the last number made
# the largest number taken (a JSON number every reader holds exactly)
MAX_BATCH_SEQ = 2**53


def batch_seq_of(body: Any) -> int:
    """The number a session.events record body holds (0: none, a batch not numbered)."""
    if not isinstance(body, dict):
        return 0
    value = body.get(BATCH_SEQ)
    return value if type(value) is int and 0 < value <= MAX_BATCH_SEQ else 0


class BatchNumbers:
    """One session's batch numbers taken so far: the highest, and the ranges below it not
    taken (each a batch missing, or still to come late)."""

    __slots__ = ("missing", "top")

    def __init__(self, taken: list[int] | None = None) -> None:
        self.top = 0
        self.missing: list[tuple[int, int]] = []  # (first, last) ranges below top
        for number in sorted(set(taken or ())):
            self.take(number)

    def has(self, number: int) -> bool:
        """Whether this number was taken already."""
        if number > self.top:
            return False
        return not any(first <= number <= last for first, last in self.missing)

    def take(self, number: int) -> str:
        """Take a number not taken before: "" in order, "gap" past a number never taken,
        "late" filling a range missing below the highest."""
        if number > self.top:
            said = "gap" if number > self.top + 1 else ""
            if said:
                self.missing.append((self.top + 1, number - 1))
            self.top = number
            return said
        for i, (first, last) in enumerate(self.missing):
            if first <= number <= last:
                parts = [(a, b) for a, b in ((first, number - 1), (number + 1, last)) if a <= b]
                self.missing[i : i + 1] = parts
                return "late"
        raise ValueError(f"batch {number} was taken already")

    def give_back(self, number: int) -> None:
        """A number taken whose batch was not stored after all (the store refused it)."""
        if not self.has(number):
            return
        self.missing.append((number, number))
        self.missing.sort()

    def until(self, last: int) -> None:
        """The proxy said it made `last` batches: numbers up to it never taken are missing."""
        if last > self.top:
            self.missing.append((self.top + 1, last))
            self.top = last

    def lost(self) -> int:
        """How many numbers below the highest were never taken."""
        return sum(last - first + 1 for first, last in self.missing)


def digest(body: dict[str, Any]) -> bytes:
    """What tells two stored batches of one number apart: their events' text."""
    text = body.get("events_json")
    if not isinstance(text, str):  # (events as a list: their keys in one order)
        text = json.dumps(body.get("events"), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


class RecordedNumbers:
    """What a session's batch numbers, read back in chain order, show (verify, replay):
    batches missing, late, recorded again (the same events: skipped by readers, the
    events are one delivery's; a batch with no number too) and numbers held by two
    different batches."""

    def __init__(self) -> None:
        self.numbers: dict[str, BatchNumbers] = {}
        self.digests: dict[str, dict[int, bytes]] = {}
        self.late: dict[str, int] = {}
        self.again: dict[str, int] = {}
        self.forked: dict[str, int] = {}
        self.unnumbered: dict[str, int] = {}  # batches with no number, per session
        self.unnumbered_digests: dict[str, set[bytes]] = {}  # their events, per session

    def feed(self, session_id: str, body: dict[str, Any]) -> bool:
        """A session.events record read: False when its batch was stored before (the same
        events under the same number: its events are not to be read twice)."""
        number = batch_seq_of(body)
        mine = digest(body)
        if not number:
            # a batch not numbered (a proxy before the numbers) sent again is the same
            # events again: read once. Not a run of the same time in another batch, nor a
            # second event in the same batch: a delivery twice repeats a batch whole
            seen = self.unnumbered_digests.setdefault(session_id, set())
            if mine in seen:
                self.again[session_id] = self.again.get(session_id, 0) + 1
                return False
            seen.add(mine)
            self.unnumbered[session_id] = self.unnumbered.get(session_id, 0) + 1
            return True
        numbers = self.numbers.setdefault(session_id, BatchNumbers())
        digests = self.digests.setdefault(session_id, {})
        if numbers.has(number):
            if digests.get(number, mine) == mine:
                self.again[session_id] = self.again.get(session_id, 0) + 1
                return False
            self.forked[session_id] = self.forked.get(session_id, 0) + 1
            return True
        if numbers.take(number) == "late":
            self.late[session_id] = self.late.get(session_id, 0) + 1
        digests[number] = mine
        return True

    def closed(self, session_id: str, body: dict[str, Any]) -> None:
        """The proxy's close: how many batches it made (numbers past the last stored)."""
        summary = body.get("summary")
        last = summary.get(CLOSE_BATCHES) if isinstance(summary, dict) else None
        if type(last) is float and last.is_integer():  # (a Struct's number)
            last = int(last)
        if type(last) is int and 0 < last <= MAX_BATCH_SEQ:
            self.numbers.setdefault(session_id, BatchNumbers()).until(last)
        self.digests.pop(session_id, None)  # no batch is taken after a proxy's close
        self.unnumbered_digests.pop(session_id, None)

    def mixed(self) -> int:
        """Batches with no number in sessions whose other batches have one: not what one
        proxy sends (a proxy numbers every batch of its sessions, or none)."""
        return sum(n for sid, n in self.unnumbered.items() if sid in self.numbers)

    def missing(self) -> dict[str, list[tuple[int, int]]]:
        """Each session's batch numbers never stored (in the range read)."""
        return {sid: list(n.missing) for sid, n in self.numbers.items() if n.missing}


def describe_ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in ranges)
