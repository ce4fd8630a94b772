"""Where the end of a text that may still grow into a value starts, found in one pass.

Owns one search the proxies make of what they hold back: the tail of a stream's text (an
SSH upstream's output, an HTTP body's event or line, an MCP log message) that what comes
next could complete into a card, a phone number or an address (`... card 4111 1111`).
Searched for as `(?:piece)*\\Z` (or `first more*\\Z`), a regex engine tries every start
in a run of pieces and reads on to the run's end: quadratic in the run, on the event loop
every session of a proxy shares (64 KiB of digits then a letter: ~20 s per search). Here
the run's matches are read left to right, once each, and the last one is the tail when
it reaches the end.
"""

from __future__ import annotations

import re
from typing import AnyStr


def tail_start(run: re.Pattern[AnyStr], text: AnyStr, end: int | None = None) -> int:
    """Where the tail of text[:end] made of `run` starts: the start of the last of run's
    matches, read left to right, when it reaches `end`; `end` when none does.

    `run` reads its pieces greedily, no two of them starting at one character, and a
    try of it that fails reads on no further than the piece it tries (`[0-9][0-9 ]*`,
    `(?:[0-9]|\\x1b\\[[0-9;]*m)+`): each character is read a bounded number of times,
    and the start found is the one `(?:run)\\Z`'s search finds (the leftmost)."""
    stop = len(text) if end is None else end
    start = stop
    for found in run.finditer(text, 0, stop):
        start = found.start() if found.end() == stop else stop
    return start
