"""`portcullis replay SESSION` for recorded SSH terminals: play them, or export asciicast.

Owns the command-line side of terminal recordings (pdp.domain.casts builds them): on a
terminal, `replay` plays each recorded shell after the session's timeline, with its
timing (pauses capped, `--speed` to go faster); elsewhere it says how many there are.
`--format asciicast` writes one recording as an asciicast v2 file for standard players
(`asciinema play`), the first unless `--channel N` names another.

By default a recording is shown as text, every byte of it (Visible): its control
characters and sequences written as inert escapes (`\x1b[1A\x1b[2K`, `\r`, an OSC 52
clipboard string whole), lines only where it sent a line feed. A recording replayed as a
terminal draws it can erase and overwrite what it printed (`cat secret; printf
'\r\x1b[2K'`, cursor up and erase): the auditor would read the screen the user wanted
read, not what the shell printed. `--raw` plays it as a terminal draws it: then what is
played on the auditor's terminal is the recording's display only (DisplayOnly: no clipboard, links,
titles, sequences the terminal answers or modes that change what it sends), played
below the timeline once that has scrolled out of reach, and every mode it left set is
reset after it; an export is the recording exact, but for its terminal sizes, bounded
(Cast.to_asciicast: a player sizes its screen from them). DisplayOnly is not proxies/ssh/stream's
`shown()` on purpose: replay keeps the sequences that draw (colour, cursor, modes) for a
real terminal, fed in pieces, where masking flattens a line into the text a screen shows.

What was typed at a password prompt is never played or exported (`recorded`: the proxy
leaves it out of a recording, portcullis/password_prompts.py, and a recording made before
it did is read by the same rule), for the console's player and download as well.

The lines the replay adds itself (each recording's heading, `--- end of recording ---`,
`[typed, not echoed: ...]`) end in a seal, `#` and 8 hex digits drawn afresh for each
replay and named in the line before the first recording: a recording was made before its
replay and cannot print it (under `--raw` a recording may draw over that line, but not
over the replay's last line, its end). Recorded output can print any text (`--- end of
recording ---` and then more, a `[typed, not echoed: ...]` of a command never typed),
start it on a row of its own by filling the row before it, and under `--raw` draw it
anywhere on the screen; what it prints has no seal, or not this replay's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from pdp.domain.casts import Cast, casts_of
from pdp.domain.recordings import events_of
from pdp.plumbing.rendering import inert
from pdp.store import AuditRecord
from portcullis.password_prompts import without_secrets

EXIT_NOT_FOUND = 1


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speed", type=float, default=1.0, help="terminal playback speed")
    parser.add_argument("--channel", type=int, default=None, help="which terminal recording")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="play terminal recordings as a terminal draws them (colour, cursor moves, "
        "erasing) instead of showing every byte, control sequences as escapes",
    )


def recorded(records: list[AuditRecord]) -> list[Cast]:
    """The terminal recordings in a session's `session.events` records, each line typed at
    a password prompt left out (portcullis/password_prompts.py: a recording made before the
    proxy left them out holds them)."""
    events: list[dict[str, Any]] = []
    for record in records:
        events.extend(events_of(record))
    casts = casts_of(events)
    for cast in casts:
        cast.events = without_secrets(cast.events)
    return casts


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
    out.write(chosen[0].to_asciicast())  # (acting characters escaped there)
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
    seal = new_seal()
    out.write(
        f"(the lines this replay adds end in {seal}, drawn for this replay alone, as its"
        " last line does: a recording's line that looks like one ends otherwise)\n"
    )
    if not getattr(args, "raw", False):
        for cast in casts:
            out.write(f"--- terminal, channel {cast.channel} (decision {inert(cast.decision_id)})"
                      ": every byte shown, control sequences as escapes (--raw to play it as"
                      f" a terminal draws it) --- {seal}\n")  # fmt: skip
            shown = Visible()
            for wait, kind, data in cast.plays(speed):
                if wait:
                    sleep(wait)
                out.write(shown.feed(data) if kind == "o" else _typed(data, seal))
                out.flush()
            out.write(shown.end() + f"\n--- end of recording --- {seal}\n")
        return
    for cast in casts:
        # a screenful of new lines first: what was printed (the timeline) is then in the
        # scrollback, which no cursor movement or erase a recording may send can reach
        out.write("\n" * _rows(out))
        out.write(f"--- terminal, channel {cast.channel} (decision {inert(cast.decision_id)})"
                  f" --- {seal}\n")  # fmt: skip
        out.flush()
        display = DisplayOnly()
        unechoed = []
        for wait, kind, data in cast.plays(speed):
            if wait:
                sleep(wait)
            if kind == "typed":
                unechoed.append(data)  # listed after it: drawing may overwrite anything
                continue
            out.write(display.feed(data))
            out.flush()
        # each line of the replay's from column 0 of a row erased (the recording may have
        # drawn on the rows below where it left the cursor), and nothing it drew below them
        out.write(display.end() + f"\x1b[0m\n{_ROW}--- end of recording --- {seal}\n")
        out.write("".join(_ROW + _typed(line, seal).lstrip("\n") for line in unechoed))
        out.write("\x1b[J")


_ROW = "\r\x1b[2K"  # a row of the auditor's terminal, from its start, erased


def new_seal() -> str:
    """What ends every line one replay adds: `#` and 8 hex digits, random."""
    return "#" + secrets.token_hex(4)


def _typed(line: str, seal: str) -> str:
    """A line typed that the terminal did not echo (pdp.domain.casts.Unechoed), shown
    inert on a line of its own: what ran under `stty -echo` is not hidden from the replay."""
    return f"\n[typed, not echoed: {inert(line)}] {seal}\n"


def _rows(out: TextIO) -> int:
    try:
        return max(os.get_terminal_size(out.fileno()).lines, 1)
    except (OSError, ValueError):
        return 24


class Visible:
    """A recorded terminal's output as text an auditor reads whole (sans-IO, fed in pieces):
    every character that acts on a terminal (C0 and C1 controls, ESC and so every escape
    sequence's start, DEL, format characters) is written as its inert escape
    (pdp.plumbing.rendering.inert), the rest of a sequence then being plain text; a line
    break only for a line feed (CR LF is one line break; any other CR is shown as `\r`).
    Nothing it writes moves the cursor back or erases: each byte's text stays on screen."""

    def __init__(self) -> None:
        self._cr = False  # the last piece ended in CR: a line feed may follow

    def feed(self, data: str) -> str:
        text = ("\r" if self._cr else "") + data
        self._cr = text.endswith("\r")
        if self._cr:
            text = text[:-1]
        lines = text.split("\n")
        shown = [inert(line.removesuffix("\r")) for line in lines[:-1]]
        shown.append(inert(lines[-1]))
        return "\n".join(shown)

    def end(self) -> str:
        """What the recording left unsaid: a CR it ended with."""
        held, self._cr = self._cr, False
        return inert("\r") if held else ""


# -- what a recorded terminal may do to the auditor's ---------------------------------------

# C0 controls that only move on the screen or ring: everything else of C0 and all of C1
# (U+0080..U+009F: 8-bit CSI, OSC, DCS, ... to a terminal that reads them) is dropped
_C0_KEPT = frozenset("\b\t\n\r\x07")
# CSI finals of display and movement only (cursor, erase, insert/delete, scroll, SGR,
# modes, margins, save/restore): never one the terminal answers (DSR n, DA c, window
# ops and title reports t, DECRQM/DECREQTPARM p/x, ...)
_CSI_FINALS = frozenset("@ABCDEFGHIJKLMPSTXZ`abdefghlmrsu")
# ESC sequences other than CSI and the strings: charset designations (with an
# intermediate), save/restore cursor, index, reverse index, next line, keypad modes, tab set
_ESC_FINALS = frozenset("78DEHM=>")
_STRINGS = frozenset("]PX^_")  # OSC, DCS, SOS, PM, APC: dropped whole
_MAX_SEQUENCE = 64
# modes a recording may set (CSI ? n h / l), with their resets: autowrap, cursor blink and
# visibility, the alternate screen. Every other private mode changes what the auditor's
# terminal sends afterwards (mouse and focus reports, resize and theme notifications,
# cursor and keypad keys, bracketed paste, meta keys) and is dropped.
_PRIVATE_MODES = {"7": "h", "12": "l", "25": "h", "47": "l", "1047": "l", "1048": "l",
                  "1049": "l"}  # fmt: skip
# ANSI modes (CSI n h / l): insert only (KAM locks the keyboard, SRM echoes it, LNM
# changes what Enter sends)
_ANSI_MODES = {"4": "l"}


class DisplayOnly:
    """A recorded terminal's output with only what draws on the screen (sans-IO, fed in
    pieces: a sequence may be cut between frames). Text, SGR colours, cursor movement,
    erasing, scrolling and modes pass; string sequences (OSC: clipboard, links, titles;
    DCS, SOS, PM, APC), sequences the terminal answers (its answer would be typed into the
    auditor's shell) and C1 controls are dropped."""

    def __init__(self) -> None:
        self._held = ""  # an escape sequence begun and not ended
        self._string = False  # inside a string sequence, until BEL or ST
        self._string_esc = False  # its last character was ESC (ST is ESC \\)
        self._left: dict[str, str] = {}  # the reset of each mode set, as its sequence
        self._margins = False  # a scrolling region was set

    def end(self) -> str:
        """What undoes the state the recording left the terminal in: its modes, the
        scrolling region (cursor kept) and the G0 character set."""
        # the alternate screen first: the rest then applies to the main one
        screens = [k for k in self._left if k in ("?47", "?1047", "?1048", "?1049")]
        resets = [self._left.pop(k) for k in screens] + list(self._left.values())
        if self._margins:
            resets.append("\x1b7\x1b[r\x1b8")
        self._left.clear()
        self._margins = False
        return "".join(resets) + "\x1b(B"

    def feed(self, data: str) -> str:
        out: list[str] = []
        for char in data:
            if self._string:
                self._in_string(char)
                continue
            if self._held:
                self._in_sequence(char, out)
                continue
            code = ord(char)
            if char == "\x1b":
                self._held = char
            elif code < 0x20 or code == 0x7F:
                if char in _C0_KEPT:
                    out.append(char)
            elif 0x80 <= code <= 0x9F:
                if code in (0x90, 0x98, 0x9D, 0x9E, 0x9F):  # DCS SOS OSC PM APC
                    self._string = True
            else:
                out.append(char)
        return "".join(out)

    def _in_string(self, char: str) -> None:
        if char == "\x07" or char == "\x9c" or (self._string_esc and char == "\\"):
            self._string = self._string_esc = False
            return
        self._string_esc = char == "\x1b"

    def _in_sequence(self, char: str, out: list[str]) -> None:
        held = self._held + char
        code = ord(char)
        if len(held) == 2:  # ESC and what follows it
            if char == "[":
                self._held = held
            elif char in _STRINGS:
                self._held, self._string = "", True
            elif 0x20 <= code <= 0x2F:  # an intermediate: a charset designation follows
                self._held = held
            else:
                self._held = ""
                if char in _ESC_FINALS:
                    out.append(held)
            return
        if code < 0x20 or code > 0x7E or len(held) > _MAX_SEQUENCE:
            self._held = ""  # broken off: dropped, and what broke it is read afresh
            if char == "\x1b":
                self._held = char
            return
        if held[1] == "[":
            if 0x40 <= code <= 0x7E:  # the final
                self._held = ""
                if _displays(held):
                    self._track(held)
                    out.append(held)
            else:
                self._held = held
            return
        if 0x30 <= code <= 0x7E:  # ESC, intermediates, final: a charset designation
            self._held = ""
            if held[1] in "()*+-./":
                out.append(held)
        else:
            self._held = held

    def _track(self, csi: str) -> None:
        """Remember what a passed sequence set that outlives the recording."""
        final, body = csi[-1], csi[2:-1]
        if final == "r":
            self._margins = True
        elif final in "hl":
            private = body.startswith("?")
            table = _PRIVATE_MODES if private else _ANSI_MODES
            for mode in body.lstrip("?").split(";"):
                key = ("?" if private else "") + mode
                if final == table[mode]:
                    self._left.pop(key, None)
                else:
                    self._left[key] = f"\x1b[{key}{table[mode]}"


def _displays(csi: str) -> bool:
    """Whether a whole CSI sequence only draws: a display final, no intermediates (they
    make requests of most finals: DECRQTSR $u, DECRQCRA *y, ...), modes only from
    _PRIVATE_MODES / _ANSI_MODES, no erase of the scrollback (CSI 3 J, CSI ? 3 J: the
    timeline printed above is there), and no other private prefix (< = >): `CSI ? u`,
    `CSI ? m` and `CSI ? S` are queries, `CSI ? s` / `? r` save and restore modes,
    `CSI > m` changes what keys send."""
    final, body = csi[-1], csi[2:-1]
    if final not in _CSI_FINALS or any(0x20 <= ord(c) <= 0x2F for c in body):
        return False
    if final in "hl":
        private = body.startswith("?")
        modes = body[1:] if private else body
        table = _PRIVATE_MODES if private else _ANSI_MODES
        return bool(modes) and all(m in table for m in modes.split(";"))
    if final == "J" and any(p.isdigit() and int(p) == 3 for p in body.lstrip("?").split(";")):
        return False
    if body[:1] in ("<", "=", ">", "?"):
        return final in "JK"
    return True
