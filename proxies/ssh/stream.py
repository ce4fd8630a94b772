"""What the SSH proxy does to a channel's byte streams: masking, and the asciicast record.

Owns two sans-IO pieces (no sockets, no asyncio; the proxy's channel calls them):

- `MaskedOutput`: the value detectors of a `mask` verdict over stdout/stderr bytes. A
  value may straddle two chunks, so text is released up to its last line end and the
  rest held (at most HOLD_LIMIT bytes); of a longer line (a file with its line ends
  removed, a long log line) all but its last OVERLAP bytes go out, cut after a space
  where masking the part sent and masking the whole agree (no detected value crosses
  the cut), and the rest is held with what comes next; `flush()` gives
  what is held (at end of stream, or when an interactive upstream has gone quiet: a
  prompt has no line end). Only text the detectors read goes out: output that is not
  UTF-8, or holds NUL bytes (a gzip'd log, UTF-16 text: a card number in it is read by
  the client once decoded, never by the detectors), raises Unreadable for a command's
  output (the channel withholds the rest and says so); under a terminal, whose output is
  for a screen, such bytes are dropped and what remains is masked. Counts per detector,
  never values.
- `Cast`: an interactive session as an asciicast v2 recording (https://docs.asciinema.org/
  manual/asciicast/v2/): a header (width, height, TERM, start), then `[time, "o"|"i"|"r",
  data]` events — output (after masking), input, resize ("COLSxROWS") — taken in batches
  for the session's events. A terminal's recording is for watching, not for bulk data:
  at most RECORDED_PER_SECOND bytes of output and as many of input of each second are
  kept (each its own budget: output flooding a second cannot push out what was typed in
  it); the rest is counted, and the recording says how much was left out where it was
  ("[portcullis: N bytes not recorded]"), so a `cat` of a large file in a shell cannot
  swell the session's evidence.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from typing import Any

from portcullis.masking import Masker

HOLD_LIMIT = 4096
# what of a line longer than HOLD_LIMIT is kept back for the next chunk: longer than any
# value a detector finds (an e-mail address is at most 254 bytes)
OVERLAP = 1024
SPACES = (b" ", b"\t")
CUT_TRIES = 8  # spaces tried back from the cut before the line goes out whole
NOTHING_FOUND: Counter[str] = Counter()  # shared, never added to
LINE_ENDS = (b"\n", b"\r")
# ECMA-48 control sequences a terminal interprets rather than shows: CSI (ESC [ or C1 CSI)
# with its parameters, OSC / DCS / APC / PM / SOS strings to their terminator, and two-byte
# escapes
_ESCAPES = re.compile(
    "(?:\x1b\\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b[\\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[ -/]*[0-~]"
)
_OVERSTRUCK = re.compile("[^\x08\n\r]\x08")
CAST_VERSION = 2
RECORDED_PER_SECOND = 64 * 1024


class Unreadable(Exception):
    """Output the detectors cannot read: not UTF-8, or holding NUL bytes (safe to show)."""


class MaskedOutput:
    """Detector masking over one output stream of one channel (terminal: a screen's)."""

    def __init__(self, masker: Masker, terminal: bool = False) -> None:
        self.masker = masker
        self.terminal = terminal
        self.counts: Counter[str] = Counter()
        self._held = b""

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, data: bytes) -> bytes:
        """Masked bytes ready to send; the tail after the last line end is held."""
        data = self._held + data
        cut = max(data.rfind(end) for end in LINE_ENDS) + 1
        if len(data) - cut <= HOLD_LIMIT:
            self._held = data[cut:]
            return self._mask(data[:cut]) if cut else b""
        # a tail longer than the hold limit: whole lines, then the long one's safe part
        return self._mask(data[:cut]) + self._long(data[cut:])

    def _long(self, line: bytes) -> bytes:
        """Of a line (no line end) longer than HOLD_LIMIT: all but its last OVERLAP bytes,
        masked, cut after a space where masking the part sent gives what masking the whole
        gives for it (no value the detectors find in the whole crosses the cut, so none
        is sent half-masked or in two halves); the rest is held. With no such cut, the
        whole line goes out masked as one."""
        cut = len(line) - OVERLAP
        # a character the chunk cut in two waits for its other bytes, whatever goes out
        body = line[: _complete(line)]
        whole, counts = self._masked(body)
        for _ in range(CUT_TRIES):
            cut = max(body.rfind(space, 0, cut) for space in SPACES) + 1
            if cut <= 0:
                break
            head, head_counts = self._masked(body[:cut])
            if whole.startswith(head):
                self._held = line[cut:]
                return self._counted(head, head_counts)
            cut -= 1  # before this space: the next cut is at an earlier one
        self._held = line[len(body) :]
        return self._counted(whole, counts)

    def flush(self) -> bytes:
        """What is held, masked (a terminal's gone quiet: but a character its last chunk cut
        in two, which waits for its other bytes rather than being dropped as not text)."""
        data, self._held = self._held, b""
        if self.terminal:
            data, self._held = data[: _complete(data)], data[_complete(data) :]
        return self._mask(data) if data else b""

    def _mask(self, data: bytes) -> bytes:
        return self._counted(*self._masked(data))

    def _counted(self, masked: bytes, counts: Counter[str]) -> bytes:
        """masked, its detectors' counts added to this stream's."""
        for detector, count in counts.items():  # as every proxy's events name them
            self.counts[f"detector:{detector}"] += count
        return masked

    def _masked(self, data: bytes) -> tuple[bytes, Counter[str]]:
        """data masked by the detectors, and what each found (nothing counted yet)."""
        if b"\x00" in data or not data.isascii():
            data = self._readable(data)
        if b"\x1b" in data or b"\xc2\x9b" in data or b"\x08" in data:
            return self._masked_styled(data)
        if not self.masker.may_detect(data):
            return data, NOTHING_FOUND
        masked, counts = self.masker.mask_text(data.decode("utf-8"))
        if not counts:
            return data, counts
        return masked.encode("utf-8"), counts

    def _masked_styled(self, data: bytes) -> tuple[bytes, Counter[str]]:
        """Text with terminal escape sequences (colours: grep --color, a coloured log line)
        or backspaces (overstrike) shows without them what the detectors read:
        '\x1b[1m4111\x1b[m 1111 1111 1111' is a card on the screen. Read with them taken
        out as well; when that finds more, the text goes out so, masked (its styling lost),
        else as masked with them."""
        text = data.decode("utf-8")
        plain = _ESCAPES.sub("", text)
        while "\x08" in plain:  # overstrike (4<BS>4, nroff's bold) shows the last character
            struck = _OVERSTRUCK.sub("", plain)
            if struck == plain:
                break
            plain = struck
        if not self.masker.may_detect(plain.encode("utf-8")):
            return data, NOTHING_FOUND
        masked, counts = self.masker.mask_text(text)
        plain_masked, plain_counts = self.masker.mask_text(plain)
        if plain_counts.total() > counts.total():
            return plain_masked.encode("utf-8"), plain_counts
        if not counts:
            return data, counts
        return masked.encode("utf-8"), counts

    def _readable(self, data: bytes) -> bytes:
        """data as UTF-8 text without NUL bytes, or Unreadable (a terminal's: what is not
        text dropped, so what the detectors read is all the screen shows)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if not self.terminal:
                raise Unreadable("the output is not UTF-8 text the mask can read") from None
            text = data.decode("utf-8", "ignore")
        if "\x00" in text:
            if not self.terminal:
                raise Unreadable("the output holds NUL bytes (binary, or UTF-16 text)")
            text = text.replace("\x00", "")
        return text.encode("utf-8")


def _complete(data: bytes) -> int:
    """The length of data up to a UTF-8 sequence its end cuts short (all of it if none)."""
    for back in range(1, min(len(data), 3) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the last sequence starts here
            needs = 2 if byte >= 0xC0 else 1
            needs = 3 if byte >= 0xE0 else needs
            needs = 4 if byte >= 0xF0 else needs
            return len(data) - back if needs > back else len(data)
    return len(data)


class Cast:
    """One interactive channel as asciicast v2: header, then timed events."""

    def __init__(self, width: int, height: int, term: str, started: float) -> None:
        self.started = started
        self.header: dict[str, Any] = {
            "version": CAST_VERSION,
            "width": max(int(width), 1),
            "height": max(int(height), 1),
            "timestamp": int(started),
            "env": {"TERM": term or "", "SHELL": ""},
        }
        self._events: list[list[Any]] = []
        self.pending_bytes = 0
        self.skipped = 0  # bytes of the current second left out
        self._second = 0
        # what each kind ("o" output, "i" input) used of the current second: each has its
        # own budget, so output flooding a second never leaves out what was typed in it
        self._used = {"o": 0, "i": 0}
        self._last = 0.0
        self._decoders = {
            code: codecs.getincrementaldecoder("utf-8")("replace") for code in ("o", "i")
        }
        self.bytes = 0

    def output(self, now: float, data: bytes) -> None:
        self._add(now, "o", data)

    def input(self, now: float, data: bytes) -> None:
        self._add(now, "i", data)

    def resize(self, now: float, width: int, height: int) -> None:
        self._last = max(self._at(now), self._last)
        self._events.append([self._last, "r", f"{int(width)}x{int(height)}"])

    def _add(self, now: float, code: str, data: bytes) -> None:
        second = int(now - self.started)
        if second != self._second:
            self._left_out(now)
            self._second, self._used = second, {"o": 0, "i": 0}
        room = RECORDED_PER_SECOND - self._used[code]
        if len(data) > room:
            self.skipped += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        if not data:
            return
        self._used[code] += len(data)
        text = self._decoders[code].decode(data)
        if text:
            self.bytes += len(data)
            self.pending_bytes += len(text)
            self._last = self._at(now)
            self._events.append([self._last, code, text])

    def _left_out(self, now: float) -> None:
        if self.skipped:
            note = f"\r\n[portcullis: {self.skipped} bytes not recorded]\r\n"
            self._last = max(self._at(now), self._last)
            self._events.append([self._last, "o", note])
            self.pending_bytes += len(note)
            self.skipped = 0

    def _at(self, now: float) -> float:
        return round(max(now - self.started, 0.0), 6)

    @property
    def pending(self) -> int:
        return len(self._events)

    def take(self, final: bool = False) -> list[list[Any]]:
        """The events since the last take (final: also what the last second left out)."""
        if final:
            self._left_out(self.started + self._second)
        events, self._events = self._events, []
        self.pending_bytes = 0
        return events
