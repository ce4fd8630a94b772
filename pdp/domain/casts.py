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
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pdp.domain.recordings import CLOCK_SKEW_SECONDS

KIND = "ssh.asciicast"
# the largest terminal a recording's asciicast says (proxies/ssh/stream.py records no more)
MAX_COLUMNS = 2000
MAX_ROWS = 1000
_SIZE = re.compile(r"([0-9]+)x([0-9]+)")
MAX_IDLE = 2.0  # a pause longer than this plays as this long (asciinema's idle_time_limit)


@dataclass
class Cast:
    channel: int
    decision_id: str = ""
    header: dict[str, Any] = field(default_factory=dict)
    events: list[list[Any]] = field(default_factory=list)

    def to_asciicast(self) -> str:
        """The recording as an asciicast v2 file, its terminal sizes (header, resize
        events) within MAX_COLUMNS x MAX_ROWS: a player sizes its screen from them, and a
        recording made before the SSH proxy bounded them (tests/test_ssh_probe_p39.py) says
        what its client asked, 100000x100000; a resize naming no size is left out."""
        header = {"version": 2, "width": 80, "height": 24, **self.header}
        header["width"] = _bounded(header["width"], 80, MAX_COLUMNS)
        header["height"] = _bounded(header["height"], 24, MAX_ROWS)
        lines = [_inert_json(json.dumps(header, ensure_ascii=False))]
        for event in self.events:
            if event[1] == "r":
                size = _SIZE.fullmatch(str(event[2]))
                if size is None:
                    continue
                cols, rows = min(int(size[1]), MAX_COLUMNS), min(int(size[2]), MAX_ROWS)
                event = [event[0], "r", f"{cols}x{rows}"]
            lines.append(_inert_json(json.dumps(event, ensure_ascii=False)))
        return "\n".join(lines) + "\n"

    def frames(self, speed: float = 1.0, max_idle: float = MAX_IDLE) -> Iterator[tuple[float, str]]:
        """(seconds to wait, output to write) for playing it back; input and resizes are
        not written (the output shows what the terminal echoed; plays() what it did not)."""
        return ((wait, data) for wait, kind, data in self.plays(speed, max_idle) if kind == "o")

    def plays(
        self, speed: float = 1.0, max_idle: float = MAX_IDLE
    ) -> Iterator[tuple[float, str, str]]:
        """frames() as (wait, "o", output), with each line typed that the terminal did not
        echo (`Unechoed`) as (0, "typed", line) where the next key was (or at the end)."""
        unechoed = Unechoed()
        previous = 0.0
        for at, code, data in self.events:
            if code == "i":
                yield from ((0.0, "typed", line) for line in unechoed.typed(str(data)))
            elif code == "o":
                unechoed.output(str(data))
                wait = min(max(float(at) - previous, 0.0), max_idle) / max(speed, 0.01)
                previous = float(at)
                yield wait, "o", str(data)
        yield from ((0.0, "typed", line) for line in unechoed.end())

    @property
    def output(self) -> str:
        return "".join(str(e[2]) for e in self.events if e[1] == "o")


# characters that act on a terminal or reorder what it shows, which json.dumps leaves raw
# with ensure_ascii=False: C1 controls (U+009B is CSI, U+009D OSC to a terminal reading
# them in UTF-8), DEL, line and paragraph separators, bidi and other format characters
_ACTING = re.compile("[\x7f-\x9f\u2028\u2029\u00ad\u061c\u200b-\u200f\u202a-\u202e"
                     "\u2060-\u206f\ufeff\U000e0000-\U000e0fff]")  # fmt: skip


def _inert_json(text: str) -> str:
    """JSON text with those characters as \\u escapes: the same JSON values (they occur
    only inside strings), so the file stays exact for a player, and one shown on a
    terminal (`cat x.cast`, the console's download opened as text) shows them instead of
    acting on it."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        if code < 0x10000:
            return f"\\u{code:04x}"
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"

    return _ACTING.sub(escape, text)


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


# a key's or a terminal's escape sequence (CSI, SS3, two-character): no character of a line
_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.|.)?", re.DOTALL)


class Unechoed:
    """Lines typed into a recorded terminal that it did not echo (sans-IO, fed the input
    and output events in recorded order).

    The text replay shows output only, which holds what was typed as far as the terminal
    echoed it; a shell whose echo is off (`stty -echo`, a program that turns it off) runs
    commands the output never shows. A typed line (input up to CR or LF, or MAX_LINE of
    it) is judged at the next input (or end()), when its echo has had time to come: it
    counts as echoed when the text it leaves (erasures applied, key sequences dropped)
    stands whole in the output recorded from its first key on, as the screen got it
    (erasures applied, sequences, CR and LF dropped). Any other line is handed back, so
    the replay shows it, marked. Editing keys and tab completion make a line's keys differ
    from its echo: such a line is shown too (over-showing is the safe side)."""

    MAX_LINE = 4096

    def __init__(self) -> None:
        self._keys: list[str] = []  # of the line being typed
        self._pending: list[str] = []  # lines ended, not yet judged
        self._seen: list[str] = []  # output since the first key of the oldest of those

    def output(self, data: str) -> None:
        if self._keys or self._pending:
            self._seen.append(data)

    def typed(self, data: str) -> list[str]:
        """The lines typed before this input that were not echoed by now."""
        done = self._judged() if self._pending else []
        for char in data:
            if char in "\r\n" or len(self._keys) >= self.MAX_LINE:
                if self._keys:
                    self._pending.append("".join(self._keys))
                    self._keys.clear()
                if char in "\r\n":
                    continue
            self._keys.append(char)
        return done

    def end(self) -> list[str]:
        """The lines typed that were never echoed, the one typed last included."""
        if self._keys:
            self._pending.append("".join(self._keys))
            self._keys.clear()
        return self._judged()

    def _judged(self) -> list[str]:
        screen = _erased(_SEQUENCE.sub("", "".join(self._seen)).replace("\r", "").replace("\n", ""))
        unechoed = [
            line for line in self._pending if _erased(_SEQUENCE.sub("", line)) not in screen
        ]
        self._pending.clear()
        if not self._keys:
            self._seen.clear()
        return unechoed


def _erased(text: str) -> str:
    """text as it stands once its backspaces and DELs took back a character each, with no
    other control character."""
    kept: list[str] = []
    for char in text:
        if char in "\b\x7f":
            if kept:
                kept.pop()
        elif char >= " " or char == "\t":
            kept.append(char)
    return "".join(kept)


def _bounded(value: Any, default: int, most: int) -> int:
    """A header's size: a whole number within 1..most, else `default`."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else default
    return min(max(number, 1), most)
