"""What the SSH proxy does to a channel's byte streams: masking, and the asciicast record.

Owns two sans-IO pieces (no sockets, no asyncio; the proxy's channel calls them):

- `MaskedOutput`: the value detectors of a `mask` verdict over stdout/stderr bytes. A
  value may straddle two chunks, so text is released up to its last line end and the
  rest held (at most HOLD_LIMIT bytes); of a longer line (a file with its line ends
  removed, a long log line) all but its last OVERLAP bytes go out, cut after a space
  where masking the part sent and masking the whole agree (no detected value crosses
  the cut), and the rest is held with what comes next; `flush()` gives
  what is held (at end of stream, or when an interactive upstream has gone quiet: a
  prompt has no line end; then a tail of digits and separators that more output could
  still make a card or an SSN waits for the line's end). A line sent in parts (a quiet
  flush, a long line's cut) is read whole: what follows is masked with the part sent
  before it (LINE_CONTEXT), so a value completed across the parts (`4111 1111`, a pause,
  ` 1111 1111`; a carriage return overwriting the sent part) is found; since its first
  part is out already, the rest of that line is replaced by a note (CROSSED), not sent
  half-masked. Only text the detectors read goes out: output that is not
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
  swell the session's evidence; likewise at most RESIZES_PER_SECOND resize events (a
  flood of window-change requests), the second's last size kept. A size is at most
  MAX_COLUMNS x MAX_ROWS (`terminal_size`: the channel gives the upstream the same).

`shown()` is not pdp/cli/terminal_replay's DisplayOnly on purpose: masking must read the
text a screen ends up showing (sequences out, cursor moves applied), where replay keeps
the sequences that draw and drops only those that act.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from typing import Any

from portcullis.masking import Masker
from portcullis.tails import tail_start

HOLD_LIMIT = 4096
# what of a line longer than HOLD_LIMIT is kept back for the next chunk: longer than any
# value a detector finds (an e-mail address is at most 254 bytes)
OVERLAP = 1024
SPACES = (b" ", b"\t")
# what of the current line already sent is read with what follows it: a value completed
# across the parts is found. Of a longer line its last LINE_CONTEXT bytes are read as its
# start (a terminal's carriage return goes back to the start of its row, well within them;
# a full-screen program's output, with no line end for long, is read at bounded cost)
LINE_CONTEXT = 16 * 1024
# of the last whole line sent, what is read before the next one: a label on the line
# before a value names it (`SSN:` then `078051120`), whatever the chunks' cut between them
PREVIOUS_CONTEXT = 256
CROSSED = b"[portcullis: masked: output completing a value with output already sent]"
# a tail the detectors could still read as part of a card or an SSN once more comes: digits
# and their group separators (masking._SEPARATOR's, in UTF-8), carriage returns,
# backspaces and CSI sequences (colour) between them
_SEPARATOR_BYTES = b"|".join(
    re.escape(c.encode()) for c in " \t-._/,'\u2013\u2011\u00a0\u202f\u2009\r\x08"
)
# runs of them, read left to right: each byte starts at most one kind of piece, so the run
# that reaches the end is the tail. (Searched for as `(...)*\Z`, every start in a run read
# on to its end: 30 KB of digits then a letter, an upstream's quiet output, 40 s per flush)
_GROWING = re.compile(rb"(?:[0-9]|" + _SEPARATOR_BYTES + rb"|\x1b\[[0-9;]*[A-Za-z])+")
_DIGIT = re.compile(rb"[0-9]")
# whole lines at the end of what is released that the next chunk could make a card with
# (one or two digits a line: a card spelt a digit a line, portcullis.card_groupings):
# held with the tail, so the detectors read them with what follows
_DIGIT_LINES = re.compile(rb"(?:(?<=\n)|\A)(?:[0-9]{1,2}\r?\n){1,18}\Z")
CUT_TRIES = 8  # spaces tried back from the cut before the line goes out whole
NOTHING_FOUND: Counter[str] = Counter()  # shared, never added to
# ECMA-48 control sequences a terminal interprets rather than shows: CSI (ESC [ or C1 CSI)
# with its parameters, OSC / DCS / APC / PM / SOS strings to their terminator, and two-byte
# escapes
_ESCAPES = re.compile(
    "(?:\x1b\\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b[\\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[ -/]*[0-~]"
)
# what makes a line's text differ from what a screen shows of it: control sequences,
# backspaces, and a carriage return that is not a line end's (CR LF)
_CONTROLS = re.compile("[\x1b\x9b\x08]|\r(?!\n|$)")
_CONTROLS_ASCII = re.compile(b"[\x1b\x08]|\xc2\x9b|\r(?!\n|$)")
# a line read as a screen shows it: control sequences, runs of text, one control
_SCREEN = re.compile(f"(?P<esc>{_ESCAPES.pattern})|(?P<text>[^\x1b\x9b\r\x08\t]+)|(?P<ctl>.)", re.S)
# the control sequences that move the cursor along a line, or erase it: CUF, CUB, CHA, EL
_MOVES = re.compile("(?:\x1b\\[|\x9b)([0-9]*)([CDGK])")
TAB_STOP = 8
CAST_VERSION = 2
RECORDED_PER_SECOND = 64 * 1024
RESIZES_PER_SECOND = 16
# The largest terminal the proxy gives the upstream and records: a client's pty-req or
# window-change names any size up to 2^32-1 columns and rows, and 100000x100000 went into
# the recording's header and resize events as sent (a web player sizes its screen from
# them: ten billion cells) and to the upstream, whose sshd cut it to 16 bits (34464: the
# program drew for a size the recording does not say). Wider than any screen's text (an
# 8K display in a 6-pixel font: 1280 columns), taller than any (about 400 rows); the
# pixel size (told to the upstream only) to the kernel's 16 bits.
MAX_COLUMNS = 2000
MAX_ROWS = 1000
MAX_PIXELS = 0xFFFF


# a PEM private key's first and last lines, and what the lines between may be: base64,
# or a header (RFC 1421's Proc-Type and DEK-Info, PuTTY's), or nothing (KeyBlocks)
_KEY_BEGIN = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(rb"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_KEY_BODY = re.compile(rb"[ \t]*(?:[A-Za-z0-9+/=]*|[A-Za-z][A-Za-z0-9-]*: [^\r\n]*)[ \t]*\r?\n")
_LINE_PIECES = re.compile(rb"[^\n]*\n|[^\n]+")
KEY_LINE = b"[portcullis: masked: a line of a private key]"
KEY_LINES = 1024  # lines of a key's body at most (a 16384-bit RSA key's PEM: some 200)
KEY_LINE_READ = 512  # of a line, what is kept to read it (a body's lines are 64-70 bytes)


def _growing_tail(data: bytes) -> int:
    """Where the tail of data that could still grow into a value starts (_GROWING):
    len(data) when it ends in none. One pass: each run is read once (tail_start)."""
    return tail_start(_GROWING, data)


class Unreadable(Exception):
    """Output the detectors cannot read: not UTF-8, or holding NUL bytes (safe to show)."""


class KeyBlocks:
    """PEM private keys (RFC 7468; OpenSSH's, PKCS#1's, PKCS#8's) in output already masked:
    each line of a key's body, from its `-----BEGIN ... PRIVATE KEY-----` line to its END
    line, goes out as KEY_LINE, however the output is cut into chunks. The detectors read
    a chunk's lines (with the line before it): a key's body is lines of base64, none of
    which a detector reads as a token, so `cat` of a log holding a key gave it whole. A
    line that is neither base64 nor a PEM header (`Proc-Type: 4,ENCRYPTED`) ends the body
    (a log cut short), as do KEY_LINES lines. Sans-IO; a line's start is kept to read it
    whole (KEY_LINE_READ at most), and a line of a body goes out once it ended."""

    def __init__(self) -> None:
        self.inside = False  # in a key's body
        self.blocks = 0  # keys found
        self._line = b""  # the current line's start, not yet ended
        self._lines = 0  # of the current body

    def filter(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for piece in _LINE_PIECES.findall(data):
            line = self._line + piece
            ended = piece.endswith(b"\n")
            self._line = b"" if ended else line[-KEY_LINE_READ:]
            if not self.inside:
                out.append(piece)
                begun = _KEY_BEGIN.search(line) if ended else None
                # (a key whose body the detectors masked on its BEGIN line ends there)
                if begun is not None and not _KEY_END.search(line, begun.end()):
                    self.inside, self._lines = True, 0
                    self.blocks += 1
            elif ended:
                out.append(self._body_line(line))
        return b"".join(out)

    def _body_line(self, line: bytes) -> bytes:
        """A whole line read in a key's body: KEY_LINE, or the line itself once it ends
        the body (its END line, or one that cannot be of a body)."""
        self._lines += 1
        if _KEY_END.search(line) or not _KEY_BODY.fullmatch(line) or self._lines > KEY_LINES:
            self.inside = False
            return line
        return KEY_LINE + (b"\r\n" if line.endswith(b"\r\n") else b"\n")


class MaskedOutput:
    """Detector masking over one output stream of one channel (terminal: a screen's)."""

    def __init__(self, masker: Masker, terminal: bool = False) -> None:
        self.masker = masker
        self.terminal = terminal
        self.counts: Counter[str] = Counter()
        self._held = b""
        self._line = b""  # the current line's text already sent (LINE_CONTEXT at most)
        self._previous = b""  # the last whole line sent, its end (PREVIOUS_CONTEXT at most)
        tokens = any(rule.detector == "token" for rule in masker.rules)
        self._keys = KeyBlocks() if tokens else None  # private keys' bodies, line by line

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, data: bytes) -> bytes:
        """Masked bytes ready to send; the tail after the last line end is held."""
        data = self._held + data
        # a line ends at LF: a CR alone moves the cursor back over the same line, whose
        # screen the detectors read whole (mask_shown)
        cut = data.rfind(b"\n") + 1
        lines = _DIGIT_LINES.search(data, 0, cut)
        if lines is not None:
            cut = lines.start()
        if len(data) - cut <= HOLD_LIMIT:
            self._held = data[cut:]
            return self._release(data[:cut])
        # a tail longer than the hold limit: whole lines, then the long one's safe part
        return self._release(data[:cut]) + self._long(data[cut:])

    def _long(self, line: bytes) -> bytes:
        """Of a line (no line end) longer than HOLD_LIMIT: all but its last OVERLAP bytes,
        masked, cut after a space where masking the part sent gives what masking the whole
        gives for it (no value the detectors find in the whole crosses the cut, so none
        is sent half-masked or in two halves); the rest is held. Each cut turned down is
        followed by one further back (1, 4, 16... bytes before it: a run of values with a
        space every few bytes, cards one after another, is left in a few tries). With no
        such cut, the whole line goes out masked as one (what follows it is then read
        with it: _continued)."""
        cut = len(line) - OVERLAP
        # a character the chunk cut in two waits for its other bytes, whatever goes out
        body = line[: _complete(line)]
        whole, counts = self._masked(body)
        back = 1
        for _ in range(CUT_TRIES):
            cut = max(body.rfind(space, 0, cut) for space in SPACES) + 1
            if cut <= 0:
                break
            head, head_counts = self._masked(body[:cut])
            if whole.startswith(head):
                self._held = line[cut:]
                return self._release(body[:cut], (head, head_counts))
            cut -= back  # before this space: the next cut is at an earlier one
            back *= 4
        self._held = line[len(body) :]
        return self._release(body, (whole, counts))

    def flush(self, final: bool = True) -> bytes:
        """What is held, masked. Not final (an interactive upstream gone quiet): a character
        its last chunk cut in two waits for its other bytes rather than being dropped as
        not text, and a tail of digits and separators (_GROWING) waits for more: `4111
        1111`, a pause, then ` 1111 1111` is one card, masked whole at the line's end."""
        data, self._held = self._held, b""
        if self.terminal:
            data, self._held = data[: _complete(data)], data[_complete(data) :]
        if not final:
            start = _growing_tail(data)
            if _DIGIT.search(data, start):
                data, self._held = data[:start], data[start:] + self._held
        return self._release(data)

    def _release(self, data: bytes, ready: tuple[bytes, Counter[str]] | None = None) -> bytes:
        """data, which goes out now, masked (_masked_release), a private key's body taken
        out of it (KeyBlocks)."""
        out = self._masked_release(data, ready)
        if self._keys is None:
            return out
        blocks = self._keys.blocks
        out = self._keys.filter(out)
        if self._keys.blocks > blocks:
            self.counts["detector:token"] += self._keys.blocks - blocks
        return out

    def _masked_release(
        self, data: bytes, ready: tuple[bytes, Counter[str]] | None = None
    ) -> bytes:
        """data, which goes out now, masked. The first line of it continues the line whose
        part went out before (self._line): masked with that part (_continued); `ready`:
        data masked alone, when nothing of its line went out before."""
        if not data:
            return b""
        if not self._line:
            out = self._after_previous(data, ready)
            self._sent(data)
            return out
        end = data.find(b"\n") + 1 or len(data)
        first, rest = data[:end], data[end:]
        out = self._continued(first)
        if rest:
            out += self._after_previous(rest, None)
            self._sent(rest)
        return out

    def _after_previous(self, data: bytes, ready: tuple[bytes, Counter[str]] | None) -> bytes:
        """data, which starts a line, masked as it reads after the line sent before it
        (self._previous): what masking both gives past what masking that line gives. A
        label there names a value here however the output was cut between them; when the
        two disagree (a value found across the line end, whose first part went out), data
        is masked alone."""
        before = self._previous
        if before and self.masker.may_detect(before + data):
            sent, sent_counts = self._masked(before)
            whole, counts = self._masked(before + data)
            if whole.startswith(sent):
                return self._counted(whole[len(sent) :], counts - sent_counts)
        return self._counted(*ready) if ready is not None else self._mask(data)

    def _continued(self, first: bytes) -> bytes:
        """The continuation of a line partly sent, masked as the whole line is: what masking
        the whole gives past what masking the part sent gives; when the two disagree (a value
        crosses into the part sent, or a carriage return brings it back under what follows),
        the part is out already and cannot be masked: the rest of the line is replaced by
        CROSSED on a line of its own (and what follows starts a new line)."""
        before = self._line
        sent, sent_counts = self._masked(before)
        whole, counts = self._masked(before + first)
        if whole.startswith(sent):
            self._sent(first)
            return self._counted(whole[len(sent) :], counts - sent_counts)
        self._counted(b"", counts - sent_counts)
        self._line = b""
        end = b"\r\n" if self.terminal else b"\n"
        return end + CROSSED + end

    def _sent(self, data: bytes) -> None:
        """Keep the current line's part that went out (its last LINE_CONTEXT bytes)."""
        last = data.rfind(b"\n")
        if last >= 0:
            start = data.rfind(b"\n", 0, last) + 1
            whole = data[start : last + 1] if start else self._line + data[: last + 1]
            self._previous = _char_tail(whole, PREVIOUS_CONTEXT)
        self._line = data[last + 1 :] if last >= 0 else self._line + data
        if len(self._line) > LINE_CONTEXT:
            start = len(self._line) - LINE_CONTEXT
            while start < len(self._line) and self._line[start] & 0xC0 == 0x80:
                start += 1  # not inside a character
            self._line = self._line[start:]

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
        if _CONTROLS_ASCII.search(data):
            masked, counts = mask_shown(self.masker, data.decode("utf-8"))
            return (masked.encode("utf-8") if counts else data), counts
        if not self.masker.may_detect(data):
            return data, NOTHING_FOUND
        masked, counts = self.masker.mask_text(data.decode("utf-8"))
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


def _char_tail(data: bytes, size: int) -> bytes:
    """data's last `size` bytes at most, not starting inside a UTF-8 character."""
    start = max(len(data) - size, 0)
    while start < len(data) and data[start] & 0xC0 == 0x80:
        start += 1
    return data[start:]


def shown(text: str) -> str:
    """text as a terminal shows it, line by line: control sequences taken out (those that
    move the cursor along the line or erase it acted on), a backspace or a carriage return
    moving the cursor back (what follows overwrites: 4<BS>4 is nroff's bold, and
    '4111 1111 XXXX 1111<CR>4111 1111 1111' shows a card), a tab moving it to the next
    stop. A line's ending CR (CR LF) is kept."""
    return "\n".join(_screen_line(line) if _CONTROLS.search(line) else line
                     for line in text.split("\n"))  # fmt: skip


def _screen_line(line: str) -> str:
    end = "\r" if line.endswith("\r") else ""
    cells: list[str] = []
    col = 0
    for found in _SCREEN.finditer(line[: len(line) - len(end)]):
        if found["text"] is not None:
            text = found["text"]
            if col > len(cells):
                cells.extend(" " * (col - len(cells)))
            cells[col : col + len(text)] = text
            col += len(text)
        elif found["esc"] is not None:
            move = _MOVES.fullmatch(found["esc"])
            if move is None:
                continue
            count, what = int(move[1] or 0), move[2]
            if what == "C":
                col += max(count, 1)
            elif what == "D":
                col = max(col - max(count, 1), 0)
            elif what == "G":
                col = max(count, 1) - 1
            elif count == 0:  # EL 0: the cursor to the line's end
                del cells[col:]
            else:  # EL 1 / 2: the line's start to the cursor, or all of it, blanked
                upto = min(col + 1, len(cells)) if count == 1 else len(cells)
                cells[:upto] = " " * upto
        elif found["ctl"] == "\r":
            col = 0
        elif found["ctl"] == "\x08":
            col = max(col - 1, 0)
        elif found["ctl"] == "\t":
            col = (col // TAB_STOP + 1) * TAB_STOP
    return "".join(cells) + end


def mask_shown(masker: Masker, text: str) -> tuple[str, Counter[str]]:
    """text masked so that neither it nor what a screen shows of it (`shown`) holds a value
    the detectors find: a card split by colour codes ('4111\x1b[0m 1111 1111 1111'), by
    overstrike, or overwritten into place by a carriage return shows whole on a screen
    while the detectors read its pieces apart, and a value inside a control sequence (a
    window title) is read though not shown. The text masked as it is goes out when what a
    screen shows of that holds nothing the detectors find (its styling kept); else what
    the screen shows, masked (styling, and the overwritten text, lost); its counts are
    then what the text and the screen held, so a value the screen does not show (written,
    then overwritten: its bytes still reach a client that keeps them) is counted, and a
    caller that sends the text unchanged when nothing was found never sends that one.
    Text without control characters is masked as it is."""
    if not _CONTROLS.search(text):
        return masker.mask_text(text)
    screen = shown(text)
    if not masker.may_detect(text.encode("utf-8")) and not masker.may_detect(
        screen.encode("utf-8")
    ):
        return text, NOTHING_FOUND
    masked, counts = masker.mask_text(text)
    if not masker.mask_text(shown(masked))[1]:
        return masked, counts
    on_screen, seen = masker.mask_text(screen)
    return on_screen, counts | seen


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


def terminal_size(
    width: int, height: int, pixwidth: int = 0, pixheight: int = 0
) -> tuple[int, int, int, int]:
    """A client's terminal size within MAX_COLUMNS x MAX_ROWS (and its pixels within
    MAX_PIXELS): what the upstream is given and the recording says. 0 stays 0 (RFC 4254:
    not given)."""
    return (
        min(max(int(width), 0), MAX_COLUMNS),
        min(max(int(height), 0), MAX_ROWS),
        min(max(int(pixwidth), 0), MAX_PIXELS),
        min(max(int(pixheight), 0), MAX_PIXELS),
    )


class Cast:
    """One interactive channel as asciicast v2: header, then timed events."""

    def __init__(self, width: int, height: int, term: str, started: float) -> None:
        self.started = started
        width, height, _, _ = terminal_size(width, height)
        self.header: dict[str, Any] = {
            "version": CAST_VERSION,
            "width": max(width, 1),
            "height": max(height, 1),
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
        self._resizes = 0  # resize events of the current second
        self._size_held = ""  # the last size of the second past RESIZES_PER_SECOND
        self.resizes_skipped = 0
        self._resizes_held = 0  # of the current second (the last one's size recorded)

    def output(self, now: float, data: bytes) -> None:
        self._add(now, "o", data)

    def input(self, now: float, data: bytes) -> None:
        self._add(now, "i", data)

    def resize(self, now: float, width: int, height: int) -> None:
        """A resize event; at most RESIZES_PER_SECOND of them a second (a client's flood of
        window-change requests would swell the recording without bound): the others are
        counted, and the last size of the second is recorded when the next event comes."""
        second = int(now - self.started)
        if second != self._second:
            self._left_out(now)
            self._second, self._used = second, {"o": 0, "i": 0}
        width, height, _, _ = terminal_size(width, height)
        size = f"{width}x{height}"
        if self._resizes >= RESIZES_PER_SECOND:
            self.resizes_skipped += 1
            self._resizes_held += 1
            self._size_held = size
            return
        self._resizes += 1
        self._last = max(self._at(now), self._last)
        self._events.append([self._last, "r", size])

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
            # never back: a wall clock stepping back would read as frames out of order
            # (pdp.domain.casts.CastClock marks those)
            self._last = max(self._at(now), self._last)
            self._events.append([self._last, code, text])

    def _left_out(self, now: float) -> None:
        self._resizes = 0
        if self._size_held:
            self._last = max(self._at(now), self._last)
            self._events.append([self._last, "r", self._size_held])
            note = f"\r\n[portcullis: {self._resizes_held} resizes not recorded]\r\n"
            self._events.append([self._last, "o", note])
            self.pending_bytes += len(note)
            self._size_held, self._resizes_held = "", 0
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
