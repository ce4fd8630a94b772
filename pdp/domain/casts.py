"""Recorded SSH terminals: asciicast v2 recordings read back from a session's events.

Owns how the SSH proxy's `ssh.asciicast` response events (details: `channel`, the
`decision_id` that allowed the shell, `header` on a channel's first batch, `events` as
`[seconds since the channel opened, "o"|"i"|"r", data]`) become one `Cast` per channel,
and how a Cast is written as an asciicast v2 file (https://docs.asciinema.org/manual/
asciicast/v2/: a JSON header line, then one JSON array per event) or played: `frames()`
gives what to write and how long to wait before it; the caller sleeps and writes.

No IO here. Data comes back as recorded: output after the proxy's masking; what a reader
sees is control sequences and all (the terminal renders them), so a caller that prints
anywhere but a terminal or a file should render it inert.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
        except (TypeError, ValueError):
            continue
        cast = casts.setdefault(channel, Cast(channel, str(details.get("decision_id", ""))))
        header = details.get("header")
        if isinstance(header, dict) and not cast.header:
            cast.header = header
        for item in details.get("events") or ():
            if (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], int | float)
                and item[1] in ("o", "i", "r")
                and isinstance(item[2], str)
            ):
                cast.events.append(item)
    return list(casts.values())
