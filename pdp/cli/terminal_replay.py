"""`portcullis replay SESSION` for recorded SSH terminals: play them, or export asciicast.

Owns the command-line side of terminal recordings (pdp.domain.casts builds them): on a
terminal, `replay` plays each recorded shell after the session's timeline, with its
timing (pauses capped, `--speed` to go faster); elsewhere it says how many there are.
`--format asciicast` writes one recording as an asciicast v2 file for standard players
(`asciinema play`), the first unless `--channel N` names another.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from pdp.domain.casts import Cast, casts_of
from pdp.domain.recordings import events_of
from pdp.plumbing.rendering import inert
from pdp.store import AuditRecord

EXIT_NOT_FOUND = 1


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speed", type=float, default=1.0, help="terminal playback speed")
    parser.add_argument("--channel", type=int, default=None, help="which terminal recording")


def recorded(records: list[AuditRecord]) -> list[Cast]:
    """The terminal recordings in a session's `session.events` records."""
    events: list[dict[str, Any]] = []
    for record in records:
        events.extend(events_of(record))
    return casts_of(events)


def export(casts: list[Cast], args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """--format asciicast: one recording as asciicast v2."""
    wanted = getattr(args, "channel", None)
    chosen = [c for c in casts if wanted is None or c.channel == wanted]
    if not chosen:
        which = f" on channel {wanted}" if wanted is not None else ""
        print(f"portcullis: no terminal recording{which} in this session", file=sys.stderr)
        return EXIT_NOT_FOUND
    if len(casts) > 1 and wanted is None:
        channels = ", ".join(str(c.channel) for c in casts)
        print(f"portcullis: {len(casts)} terminal recordings (channels {channels}); "
              f"writing channel {chosen[0].channel} (--channel N for another)",
              file=sys.stderr)  # fmt: skip
    out.write(chosen[0].to_asciicast())
    return 0


def after_timeline(
    casts: list[Cast],
    args: argparse.Namespace,
    out: TextIO = sys.stdout,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """After the text timeline: play the recordings on a terminal, else name them."""
    if not casts:
        return
    if not out.isatty():
        out.write(
            f"{len(casts)} terminal recording(s) (channel "
            f"{', '.join(str(c.channel) for c in casts)}): replay on a terminal to play, "
            "or --format asciicast to export\n"
        )
        return
    speed = float(getattr(args, "speed", 1.0) or 1.0)
    for cast in casts:
        out.write(f"\n--- terminal, channel {cast.channel} (decision {inert(cast.decision_id)})"
                  " ---\n")  # fmt: skip
        out.flush()
        for wait, data in cast.frames(speed):
            if wait:
                sleep(wait)
            out.write(data)
            out.flush()
        out.write("\n--- end of recording ---\n")
