"""Recorded SSH terminals: asciicast v2 recordings read back from a session's events.

Owns how the SSH proxy's `ssh.asciicast` response events (details: `channel`, the
`decision_id` that allowed the shell, `header` on a channel's first batch, `events` as
`[seconds since the channel opened, "o"|"i"|"r", data]`) become one `Cast` per channel,
and how a Cast is written as an asciicast v2 file (https://docs.asciinema.org/manual/
asciicast/v2/: a JSON header line, then one JSON array per event) or played: `frames()`
gives what to write and how long to wait before it; the caller sleeps and writes.

`CastClock` weighs a recording's times, which are the proxy's word like every event's:
each frame is `header.timestamp` (whole seconds, not after the channel started) plus its
offset, so it happened after the session opened, no later than the event recording it was
made, and after the frame before it (the recorder never steps back). A frame outside that
is marked wherever a recording is read (replay, the console, `audit verify`), as an
event's own time is (pdp.domain.recordings).

No IO here. Data comes back as recorded: output after the proxy's masking; what a reader
sees is control sequences and all (the terminal renders them), so a caller that prints
anywhere but a terminal or a file should render it inert.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pdp.domain.recordings import CLOCK_SKEW_SECONDS

KIND = "ssh.asciicast"
MAX_IDLE = 2.0  # a pause longer than this plays as this long (asciinema's idle_time_limit)


@dataclass
class Cast:
    channel: int
    decision_id: str = ""
    header: dict[str, Any] = field(default_factory=dict)
    events: list[list[Any]] = field(default_factory=list)

    def to_asciicast(self) -> str:
        """The recording as an asciicast v2 file."""
        header = {"version": 2, "width": 80, "height": 24, **self.header}
        lines = [json.dumps(header, ensure_ascii=False)]
        lines.extend(json.dumps(e, ensure_ascii=False) for e in self.events)
        return "\n".join(lines) + "\n"

    def frames(self, speed: float = 1.0, max_idle: float = MAX_IDLE) -> Iterator[tuple[float, str]]:
        """(seconds to wait, output to write) for playing it back; input and resizes are
        not written (the output already shows what the terminal echoed)."""
        previous = 0.0
        for at, code, data in self.events:
            if code != "o":
                continue
            wait = min(max(float(at) - previous, 0.0), max_idle) / max(speed, 0.01)
            previous = float(at)
            yield wait, str(data)

    @property
    def output(self) -> str:
        return "".join(str(e[2]) for e in self.events if e[1] == "o")


def casts_of(events: Iterable[dict[str, Any]]) -> list[Cast]:
    """The terminal recordings among a session's events, one per channel, in order."""
    casts: dict[int, Cast] = {}
    for event in events:
        details = event.get("details")
        if not isinstance(details, dict) or details.get("kind") != KIND:
            continue
        try:
            channel = int(details.get("channel", 0))
        except (TypeError, ValueError, OverflowError):
            continue
        cast = casts.setdefault(channel, Cast(channel, str(details.get("decision_id", ""))))
        header = details.get("header")
        if isinstance(header, dict) and not cast.header:
            cast.header = header
        frames = details.get("events")
        for item in frames if isinstance(frames, list) else ():
            if (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], int | float)
                and item[1] in ("o", "i", "r")
                and isinstance(item[2], str)
            ):
                cast.events.append(item)
    return list(casts.values())


class CastClock:
    """The terminal recordings of one session, fed their events in recorded order: which
    of them hold a frame whose time cannot be when it happened (see the module)."""

    def __init__(self, opened: float | None) -> None:
        self.opened = opened
        self._channels: dict[int, tuple[float | None, float]] = {}  # -> (start, last offset)

    def weigh(self, event: Any) -> str:
        """Why this event's frames are not when they happened, for "the time claimed by
        the proxy is ..." ("" when they can be, or it records no terminal)."""
        details = event.get("details") if isinstance(event, dict) else None
        if not isinstance(details, dict) or details.get("kind") != KIND:
            return ""
        try:
            channel = int(details.get("channel", 0))
        except (TypeError, ValueError, OverflowError):
            return ""
        start, last = self._channels.get(channel, (None, 0.0))
        problem = ""
        header = details.get("header")
        if start is None and isinstance(header, dict):
            start = _seconds(header.get("timestamp"))
            # the header's whole second is at most one before the channel started
            opened = self.opened
            if start is not None and opened is not None and start < opened - CLOCK_SKEW_SECONDS - 1:
                problem = (
                    f"for its terminal's start, {opened - start:.3f}s before the session opened"
                )
        latest = last
        frames = details.get("events")
        for item in frames if isinstance(frames, list) else ():
            at = _seconds(item[0] if isinstance(item, list) and item else None)
            if at is None:
                continue
            if at < last and not problem:
                problem = f"for a terminal frame, {last - at:.3f}s before the frame ahead of it"
            last = at
            latest = max(latest, last)
        when = _seconds(event.get("time"))
        if start is not None and when is not None and not problem:
            ahead = start + latest - when
            if ahead > CLOCK_SKEW_SECONDS:
                problem = f"for a terminal frame, {ahead:.3f}s after the event recording it"
        self._channels[channel] = (start, last)
        return problem


def _seconds(value: Any) -> float | None:
    """A time as a recording holds one (a finite number, not below zero), else None."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        return float(value) if number and math.isfinite(value) and value >= 0 else None
    except OverflowError:  # an integer no double holds
        return None
