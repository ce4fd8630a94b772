"""The upstream credential kept from the client: every response byte checked before it goes.

Owns `ResponseGuard`, through which the HTTP proxy writes every response (and WebSocket
bytes) to its client: each chunk is searched for the session's credential in every form
the runtime's SecretScanner knows (raw, hex, base64, JSON- and percent-encoded) and the
escapes an upstream's encoders write (escaped_forms: `\\/`, `\\u00xx`, lower-case
percent-encoding, HTML character references), and a
chunk's end that could begin one waits for the next chunk, so no byte of a secret goes
out before it is recognised. An answer is read as its client reads it (write_head): the
body de-chunked (the guard frames the chunks after checking them), the head's values
joined, and a piece of a form at one text's edge (a field's name or value, the body's
start or end) put together with one at another's, so a credential cut in two across
fields or a chunk's boundary is seen whole; a text is read with only its letters and
digits too (the raw, hex and base64 forms so), for pieces parted by punctuation alone.
A response carrying it raises `CredentialInResponse`: the proxy cuts it. No IO of its
own: it writes through the connection's ClientOutput.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import json
import re
import unicodedata
from urllib.parse import quote

from proxies.http import messages
from proxies.http.packed import unpacked
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.secrets_scan import MIN_SECRET_BYTES, _patterns, base64_cores


class CredentialInResponse(Exception):
    """The response carried the upstream credential: it stops here."""


class ResponseGuard:
    """A response's bytes on their way to the client, checked for the upstream credential
    (every form the runtime's SecretScanner knows: raw, hex, base64, JSON- and
    percent-encoded) before they are written. A chunk's end that could be the start of one
    waits for the next chunk, so a secret split across two is seen whole before any of it
    goes; anything else goes at once (a stream is not delayed)."""

    def __init__(
        self, output: ClientOutput, patterns: tuple[bytes, ...], least_held: int = 1
    ) -> None:
        self.output = output
        self.patterns = patterns
        # a tail that begins a secret is held back only from this many bytes on: a relay
        # whose peer waits for every message (a WebSocket) would stall on a shorter one
        # (any message ending in a secret's first letter); what goes out is under
        # least_held bytes of it, and the rest, when it comes, is still found (_seen)
        self.least_held = least_held
        # forms an upstream's text tools make (transformed_forms: reversed, base32) are
        # found as the others are, but a tail is held back for one only from LOOSE_HELD
        # bytes on: their first letters are any letter, and a stream pausing on one (a
        # download awaiting its client) would stall on a single byte held
        loose: frozenset[bytes] = getattr(patterns, "loose", frozenset())
        self._held = tuple(p for p in patterns if p not in loose) if loose else patterns
        self._loose = tuple(p for p in patterns if p in loose)
        self._spread_held = _spread(self._held)
        self._span, self._firsts, self._marks, self._stretch = _shape(patterns)
        self._grams = _gram_index(patterns)
        # the same patterns looked for with white space and NULs left out (_SPREAD): a
        # secret wrapped at 76 or 64 columns (MIME, PEM base64), hex in spaced bytes, UTF-16
        # (not the forms made in two steps, layered_forms: no encoder wraps those, and
        # each one spread-searched costs every chunk of prose a find)
        tight: frozenset[bytes] = getattr(patterns, "tight", frozenset())
        self._spread = _spread(tuple(p for p in patterns if p not in tight))
        self._spread_shape = _shape(self._spread)
        # and with only their letters and digits, in a text read so too (_bare): a
        # secret cut in pieces that only punctuation and spaces part (two strings of a
        # JSON array, two cells of a CSV line, a list), which a client puts together
        self._bare: tuple[bytes, ...] = getattr(patterns, "bare", ())
        self._bare_shape = _shape(self._bare)
        # and the secret's bytes as numbers (bare_numbers), in the digits of that text:
        # apart from _bare, so that only a run of digits as long as one is looked through
        self._numbers: tuple[bytes, ...] = getattr(patterns, "numbers", ())
        self._numbers_shape = _shape(self._numbers)
        # and any piece of a third of a form or more, in any case (_Pieces): a client
        # reads the whole answer (and the next), and puts together halves the upstream
        # wrote far apart, in two answers, or with their letters' case changed
        self._pieces = _pieces_of(getattr(patterns, "pieces", ()))
        # raw bytes kept to find a spread-out secret across chunks (UTF-16 of hex with
        # spaces and CRLFs is at most 4 bytes per letter)
        self._keep = 4 * self._spread_shape[0] if self._spread else self._span
        self._seen = b""  # the last bytes checked, so a secret across two chunks is found
        self._tail = b""  # bytes held back: they could begin a secret
        # the answer as its client reads it (write_head): the body's bytes are framed as
        # chunks here, after they are checked; the head waits (_head) while the body's
        # start could complete a piece of a form one of its texts ends with (the rest of
        # it: _rests), and the first pieces its texts' starts complete are kept for the
        # body's end (_firsts_of)
        self._chunked = False
        self._head = b""
        self._rests: list[bytes] = []
        self._unread = False  # a held head's texts wait in _seen to be read with the body
        self._opening = b""
        self._firsts_of: list[bytes] = []

    def write_head(
        self, head: bytes, chunked: bool = False, final: bool = False, held: bool = False
    ) -> None:
        """An answer's head (its status line and fields, through the empty line), checked
        as its client reads it: each of its texts (the reason phrase, each field's name
        and value, and a value's parts between separators), its values joined in order,
        a form's first piece ending one text and its rest beginning another (or the
        same), and each with the body's start and end (write) — a credential cut in
        pieces across fields is one credential to a client. The body written after it
        is framed as chunks here when `chunked` (its client reads it de-chunked: a
        chunk's size line between two pieces hides nothing). Pieces are followed from
        PIECE_LEAST bytes on, as the form is written (not spread out nor bare): a
        credential in smaller pieces, or in three or more out of order, is not seen
        whole. The head goes at once, unless the body's start could complete a
        piece one of its texts ends with: then with the body's first bytes that go.
        `final`: no body follows (HEAD, 204, 304, a WebSocket's 101); `held`: the head
        waits for the body whatever it is, and is read with it (answer)."""
        self._chunked = chunked
        if not self.patterns:
            self.output.write(head)
            return
        names, values = _head_texts(head)
        joined = b"".join(values)
        # (and the parts of a value between its separators: a cookie's value, a
        # parameter's, cut in two across two fields as chunked cookies are)
        parts = [p for v in values for p in _SEPARATORS.split(v) if p and p != v]
        texts = [*names, *values, *parts]
        # the fields' names apart (line breaks between: no form holds one), and the
        # values joined in order (each one whole in it), on into the body's start
        # (_seen); a held head is read with the body, in one pass
        read = b"\n".join(names) + b"\n" + joined
        if held:
            self._seen, self._unread = read, True
        else:
            self._check(read)
            self._seen = joined[-self._keep :] if self._keep else b""
        # pieces of a form (PIECE_LEAST bytes or more) at the texts' edges, as (form,
        # where it is cut): a text ending with its first part and one (or the same)
        # beginning with the rest is the form whole; found through the form's runs of
        # PIECE_LEAST bytes, so the work grows with the texts, not with their pairs
        ends = _pieces(set(texts) | {joined}, self._grams, at_end=True)
        starts = _pieces(set(texts), self._grams, at_end=False)
        if not ends.isdisjoint(starts):
            raise CredentialInResponse(
                "the upstream's response carried the upstream credential in pieces"
            )
        self._firsts_of = [self.patterns[n][:k] for n, k in starts]
        if not final:
            self._rests = [self.patterns[n][k:] for n, k in ends]
        if final or not (held or self._rests):
            self.output.write(head)
        else:
            self._head = head

    def answer(self, head: bytes, body: bytes) -> None:
        """A whole answer: its head and body checked before any of it goes."""
        self.write_head(head, held=True)
        self.write(body, final=True)

    def write(self, data: bytes, final: bool = False) -> None:
        if self.patterns and (data or self._unread):
            self._unread = False
            window = self._seen + data if self._seen else data
            self._check(window)
            if self._rests:
                # the body's start (up to the longest form's length): the rest of a form
                # a text of the head ends with the first part of
                self._opening += data[: self._span + 1 - len(self._opening)]
                if self._opening.startswith(tuple(self._rests)):
                    raise CredentialInResponse(
                        "the upstream's response carried the upstream credential in pieces"
                    )
            self._seen = window[-self._keep :] if self._keep else b""
        # the body's end and the start of a text of the head: one credential too
        if final and self._firsts_of and self._seen.endswith(tuple(self._firsts_of)):
            raise CredentialInResponse(
                "the upstream's response carried the upstream credential in pieces"
            )
        if final and not self._tail:  # all of it goes
            self._out(data, final)
            return
        data = self._tail + data
        keep = 0 if final else self._prefix_at_end(data, self._seen)
        if self._rests and not final:
            keep = max(keep, self._opening_held(data))
        if keep < self.least_held:
            keep = 0
        out, self._tail = data[: len(data) - keep], data[len(data) - keep :]
        self._out(out, final)

    def _check(self, text: bytes) -> None:
        _search(text, self.patterns, self._marks, self._stretch)
        if self._spread:
            _, _, marks, stretch = self._spread_shape
            _search(text.translate(None, _SPREAD), self._spread, marks, stretch)
        binary = False
        if b"\x00" in text:
            # read without its NULs (UTF-16 or UTF-32 text, a NUL slipped into text to
            # turn the views below off, a binary file): a reader skips them; and, when it
            # holds other control bytes too (a binary file's), not as NFKC (_read)
            text = text.replace(b"\x00", b"")
            binary = _CONTROL.search(text) is not None
        self._read(text, binary)

    def _read(self, text: bytes, binary: bool) -> None:
        """text (no NUL) read as its reader reads it: only its letters and digits (a key
        cut by punctuation alone), its escapes undone, as NFKC (not `binary`: a binary
        file's bytes are no text a reader normalises, and reading them so costs 70
        times the rest: its runs of ASCII text are read, _text_runs), and any piece of
        a third of the key in any of those."""
        if binary:
            # (a binary file's runs of ASCII text are what the rest reads: a piece, an
            # escape are ASCII, and the bytes between the runs would cost the views
            # below 4 times what the raw and spread searches cost)
            text = _text_runs(text)
        if self._bare:
            _, _, marks, stretch = self._bare_shape
            bare = text.translate(None, _NOT_ALNUM).lower()
            _search(bare, self._bare, marks, stretch)
            if self._numbers:
                _, _, marks, stretch = self._numbers_shape
                _search(bare, self._numbers, marks, stretch)
        # and as its reader reads it, its escapes undone, whichever mixture of them
        # (`s\u0033cr&#51;t-%75pstream...`: a JSON parser, a browser, a URL decoder)
        view = _unescaped(text) if _ESCAPE_HINT.search(text) else text
        if not binary and not view.isascii():
            # (and its letters as NFKC reads them: a fullwidth key is the key
            # to a reader, and format characters between them are nothing)
            view = _compatible(view)
        if self._pieces.found_in(text.lower()) or (
            view is not text and self._pieces.found_in(view.lower())
        ):
            raise CredentialInResponse(
                "the upstream's response carried a piece of the upstream credential"
            )

    def _opening_held(self, data: bytes) -> int:
        """How many of data's last bytes wait because the body so far (under the
        longest form's length) could still complete a piece a text of the head ends
        with; past that length the head's ends are done with."""
        if len(self._opening) > self._span:
            self._rests = []
            return 0
        if any(rest.startswith(self._opening) for rest in self._rests):
            return min(len(data), len(self._opening))
        return 0

    def _out(self, data: bytes, final: bool) -> None:
        if self._chunked:
            data = messages.chunk(data) + (messages.LAST_CHUNK if final else b"")
        if self._head:
            if not data and not final:
                return
            data, self._head = self._head + data, b""
        self.output.write(data)

    def _prefix_at_end(self, data: bytes, stream: bytes) -> int:
        """How many of data's last bytes begin some secret pattern (the longest run), in
        the raw bytes or spread out (a wrapped secret's first line); a loose pattern's
        run counted in the stream's last bytes (`stream`: what went before too), so at
        most LOOSE_HELD - 1 bytes of one go, however it is split."""
        last = data[-self._span :] if self._span else b""
        found = _prefix_length(last, self._held)
        if self._loose:
            loose = _prefix_length(stream[-self._span :] if self._span else b"", self._loose)
            if loose >= LOOSE_HELD:
                found = max(found, min(loose, len(data)))
        if self._spread_held:
            tail = data[-self._keep :]
            kept = _prefix_length(tail.translate(None, _SPREAD), self._spread_held)
            if kept:
                # as many raw bytes as hold those `kept` bytes that are not spread
                count = 0
                for back, byte in enumerate(reversed(tail), 1):
                    if byte not in _SPREAD:
                        count += 1
                        if count == kept:
                            found = max(found, back)
                            break
        return found

    def flush(self) -> None:
        self.write(b"", final=True)


def _head_texts(head: bytes) -> tuple[list[bytes], list[bytes]]:
    """What a client reads in an answer's head as texts of their own: (each field's
    name; the reason phrase and each field's value, in order) (RFC 9112 §4, §5)."""
    lines = head.split(b"\r\n")
    values = [lines[0].split(b" ", 2)[2]] if lines[0].count(b" ") >= 2 else []
    names = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            names.append(name)
            values.append(value.strip(b" \t"))
    return [n for n in names if n], [v for v in values if v]


_SEPARATORS = re.compile(rb'[\s;,="<>&]+')  # between a field value's parts (cookies, lists)
PIECE_LEAST = 4  # a piece of a form shorter than this at a text's end is not followed


def _pieces(texts: set[bytes], index: _GramIndex, at_end: bool) -> set[tuple[int, int]]:
    """(form, cut) for each form whose first `cut` bytes end one of texts (at_end), or
    whose bytes from `cut` on begin one; either piece PIECE_LEAST bytes or more."""
    found = set()
    for text in texts:
        run = text[-PIECE_LEAST:] if at_end else text[:PIECE_LEAST]
        places = index.get(run)
        if places is None:
            continue
        pieces, cuts = (places[1], places[2]) if at_end else (places[3], places[4])
        # (one pass in C over the pieces this run could end or begin, then which)
        if not (text.endswith(pieces) if at_end else text.startswith(pieces)):
            continue
        for piece, cut in zip(pieces, cuts, strict=True):
            if text.endswith(piece) if at_end else text.startswith(piece):
                found.add(cut)
    return found


# a run of PIECE_LEAST bytes of the forms: (where it stands as (form, offset); the first
# pieces ending with it and their (form, cut); the rest pieces beginning with it, likewise)
_GramIndex = dict[
    bytes,
    tuple[
        tuple[tuple[int, int], ...],
        tuple[bytes, ...],
        tuple[tuple[int, int], ...],
        tuple[bytes, ...],
        tuple[tuple[int, int], ...],
    ],
]


@functools.lru_cache(maxsize=256)
def _gram_index(patterns: tuple[bytes, ...]) -> _GramIndex:
    """Every run of PIECE_LEAST bytes of the patterns, and the pieces of a form cut in two
    (each PIECE_LEAST bytes or more) that end or begin with it."""
    places: dict[bytes, list[tuple[int, int]]] = {}
    for n, form in enumerate(patterns):
        for at in range(len(form) - PIECE_LEAST + 1):
            places.setdefault(form[at : at + PIECE_LEAST], []).append((n, at))
    index: _GramIndex = {}
    for run, where in places.items():
        ends = [(n, at + PIECE_LEAST) for n, at in where]
        ends = [(n, cut) for n, cut in ends if len(patterns[n]) - cut >= PIECE_LEAST]
        starts = [(n, at) for n, at in where if at >= PIECE_LEAST]
        index[run] = (
            tuple(where),
            tuple(patterns[n][:cut] for n, cut in ends),
            tuple(ends),
            tuple(patterns[n][cut:] for n, cut in starts),
            tuple(starts),
        )
    return index


def check_unpacked(patterns: tuple[bytes, ...], data: bytes) -> None:
    """A body that is a compressed file (packed.packed_format) read for the credential in
    the files it holds, one after another as one text (a key cut across two files of an
    archive, in their order, is the key): CredentialInResponse when they hold it,
    packed.Unopenable when it cannot be read through."""
    guard = ResponseGuard(ClientOutput(_discarded), patterns)
    for content in unpacked(data):
        guard.write(content)
    guard.flush()


# a character escaped as JSON (\\u0073, \\/), a C-like string (\\x73), an HTML character
# reference (&#115; &#x73;) or a percent-escape (%73) writes it
_ESCAPE_HINT = re.compile(rb"\\[ux/]|&#|%[0-9A-Fa-f]{2}")
_ESCAPED_BYTE = re.compile(
    rb"\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|&#[xX]([0-9A-Fa-f]{1,6});?|&#([0-9]{1,7});?"
    rb"|%([0-9A-Fa-f]{2})|\\(/)"
)


def _unescaped(text: bytes) -> bytes:
    """text with each escape _ESCAPED_BYTE names written as the character it stands for
    (one pass: an escape of an escape stays one)."""

    def one(found: re.Match[bytes]) -> bytes:
        if found[6]:
            return b"/"
        if found[5]:
            return bytes([int(found[5], 16)])
        code = int(found[4]) if found[4] else int(found[1] or found[2] or found[3], 16)
        if code >= 0x110000 or 0xD800 <= code < 0xE000:
            return b"?"
        return chr(code).encode("utf-8")

    return _ESCAPED_BYTE.sub(one, text)


def _compatible(text: bytes) -> bytes:
    """text as UTF-8 read in Unicode's compatibility form (NFKC), format characters
    (zero-width spaces, joiners, bidi marks) left out."""
    read = unicodedata.normalize("NFKC", text.decode("utf-8", "ignore"))
    return "".join(c for c in read if unicodedata.category(c) != "Cf").encode("utf-8")


# control bytes no text holds (C0 but tab, LF, CR; DEL): a binary file's (_check)
_CONTROL = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
# ASCII text's bytes (printable, tab, LF, CR) as 1, every other as 0
_TEXTUAL = bytes(1 if b in b"\t\n\r" or 0x20 <= b < 0x7F else 0 for b in range(256))


def _text_runs(data: bytes) -> bytes:
    """data's runs of ASCII text as long as the shortest piece followed
    (PIECE_OF_FORM_LEAST) or longer, one a line (a few finds in C: `strings`)."""
    marks = data.translate(_TEXTUAL)
    run = b"\x01" * PIECE_OF_FORM_LEAST
    runs = []
    at = marks.find(run)
    while at != -1:
        end = marks.find(b"\x00", at)
        end = len(data) if end == -1 else end
        runs.append(data[at:end])
        at = marks.find(run, end)
    return b"\n".join(runs)


def _discarded(data: bytes) -> None:
    return None


def _search(window: bytes, patterns: tuple[bytes, ...], marks: bytes, stretch: bytes) -> None:
    # a pattern in the window is a run of its bytes at least as long as the shortest
    # pattern: without such a run (one pass in C) none can be there
    if window.translate(marks).find(stretch) != -1:
        for pattern in patterns:
            if pattern in window:
                raise CredentialInResponse(
                    "the upstream's response carried the upstream credential"
                )


def _prefix_length(tail: bytes, patterns: tuple[bytes, ...]) -> int:
    """How many of tail's last bytes begin one of patterns (the longest run)."""
    firsts = {p[0] for p in patterns}
    for start, byte in enumerate(tail):
        if byte in firsts:
            rest = tail[start:]
            if any(p.startswith(rest) for p in patterns):
                return len(rest)
    return 0


# what an encoder spreads a text with, left out of the spread view: line breaks (base64
# wrapped by MIME at 76 columns, PEM at 64), spaces (hex dumps) and NULs (UTF-16, UTF-32)
_SPREAD = b"\r\n\t \x00"
SPREAD_LEAST = 12  # patterns shorter than this are not looked for spread out (false alarms)


@functools.lru_cache(maxsize=256)
def _spread(patterns: tuple[bytes, ...]) -> tuple[bytes, ...]:
    out = (p.translate(None, _SPREAD) for p in patterns)
    return tuple(dict.fromkeys(p for p in out if len(p) >= SPREAD_LEAST))


# what the bare view leaves out: every byte but an ASCII letter or digit
_NOT_ALNUM = bytes(b for b in range(256) if not bytes([b]).isalnum())
BARE_LEAST = 16  # forms with fewer letters and digits are not looked for bare (false alarms)


@functools.lru_cache(maxsize=256)
def _shape(patterns: tuple[bytes, ...]) -> tuple[int, frozenset[int], bytes, bytes]:
    """(the longest pattern's length - 1, the bytes a pattern can begin with, a table
    mapping each byte some pattern uses to 1 and every other to 0, and as many 1s as the
    shortest pattern is long)."""
    used = frozenset(b"".join(patterns))
    marks = bytes(1 if value in used else 0 for value in range(256))
    stretch = b"\x01" * min((len(p) for p in patterns), default=1)
    longest = max((len(p) for p in patterns), default=1) - 1
    return longest, frozenset(p[0] for p in patterns), marks, stretch


class Patterns(tuple[bytes, ...]):
    """The forms of a credential a guard looks for; `loose` names those held back only
    from LOOSE_HELD bytes on (ResponseGuard), `bare` the plain ones (raw, hex, base64)
    with only their letters and digits (lower case), looked for in a text read so too,
    and `pieces` the forms (lower case) any third of which is the credential (_Pieces)."""

    loose: frozenset[bytes] = frozenset()
    tight: frozenset[bytes] = frozenset()
    bare: tuple[bytes, ...] = ()
    numbers: tuple[bytes, ...] = ()
    pieces: tuple[bytes, ...] = ()


# a piece of a form this long, or a third of it if longer, is the credential: an upstream
# handing back the key in two or three pieces anywhere in what a client reads (words
# between, two answers on one connection, a redirect's Location and its body) hands back
# at least one piece so long; a shorter one alone is not looked for (false alarms)
PIECE_OF_FORM_LEAST = 10
PIECE_SHARE = 3


class _Pieces:
    """Where the pieces of PIECE_OF_FORM_LEAST bytes (or a PIECE_SHARE-th of the form) of
    a credential's forms are looked for, in a text in lower case: each form cut into
    blocks of half that length at fixed places, so any such piece holds a whole block
    (one find in C per block), and each block found is grown both ways along its form
    to see how long a piece of it the text holds."""

    def __init__(self, forms: tuple[bytes, ...]) -> None:
        self.forms = forms
        self.least: list[int] = []
        self.blocks: dict[bytes, list[tuple[int, int]]] = {}
        for n, form in enumerate(forms):
            least = min(len(form), max(PIECE_OF_FORM_LEAST, -(-len(form) // PIECE_SHARE)))
            self.least.append(least)
            size = (least + 1) // 2  # a piece of 2 * size - 1 bytes holds a whole block
            for at in range(0, len(form) - size + 1, size):
                self.blocks.setdefault(form[at : at + size], []).append((n, at))
        # a piece is a run of bytes the forms use, at least the shortest least long: a
        # text without one (one pass in C: a binary file's, mostly) holds none
        used = frozenset(b"".join(forms))
        self.marks = bytes(1 if value in used else 0 for value in range(256))
        self.stretch = b"\x01" * min(self.least, default=1)

    def found_in(self, text: bytes) -> bool:
        if not self.forms or text.translate(self.marks).find(self.stretch) == -1:
            return False
        for block, places in self.blocks.items():
            at = text.find(block)
            while at != -1:
                if any(self._grown(text, at, len(block), n, off) for n, off in places):
                    return True
                at = text.find(block, at + 1)
        return False

    def _grown(self, text: bytes, at: int, size: int, n: int, offset: int) -> bool:
        form, least = self.forms[n], self.least[n]
        before = 0
        while before < min(offset, at) and text[at - before - 1] == form[offset - before - 1]:
            before += 1
        after, end, form_end = 0, at + size, offset + size
        while (
            form_end + after < len(form)
            and end + after < len(text)
            and text[end + after] == form[form_end + after]
        ):
            after += 1
        return before + size + after >= least


@functools.lru_cache(maxsize=256)
def _pieces_of(forms: tuple[bytes, ...]) -> _Pieces:
    return _Pieces(forms)


LOOSE_HELD = 4


def secret_patterns(secrets: list[str]) -> tuple[bytes, ...]:
    """Every form of the secrets the scanner looks for (too short ones: none, as there),
    the forms an upstream's own encoders write them in (escaped_forms), and those its text
    tools make of them (transformed_forms: loose; those made in two steps, layered_forms,
    are not looked for spread out: tight), and its bytes as numbers (bare_numbers)."""
    found: dict[bytes, None] = {}
    transformed: dict[bytes, None] = {}
    bare: dict[bytes, None] = {}
    numbers: dict[bytes, None] = {}
    layered: set[bytes] = set()
    pieced: dict[bytes, None] = {}
    for secret in [part for whole in secrets for part in credential_parts(whole)]:
        if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
            continue
        transformed.update(dict.fromkeys(transformed_forms(secret.encode("utf-8"))))
        layered.update(layered_forms(secret.encode("utf-8")))
        # and the secret with its letters' case changed, then encoded (an upstream
        # upper-casing what it echoes: a header's value in a log line, a shouted error)
        for spelled in _cases(secret):
            raw = spelled.encode("utf-8")
            found.update(dict.fromkeys(_patterns(raw)))
            found.update(dict.fromkeys(escaped_forms(spelled)))
            plain = [raw, raw.hex().encode(), *base64_cores(raw)]
            numbers.update(dict.fromkeys(bare_numbers(raw)))
            bare.update(dict.fromkeys(p.translate(None, _NOT_ALNUM).lower() for p in plain))
        # (a JWT's pieces are its payload's and signature's: its header, `{"alg":"HS256",
        # "typ":"JWT"}` in base64url, is the same in every other JWT an API hands out)
        core = _JWT.fullmatch(secret)
        for spelled in _cases(core[1]) if core is not None else _cases(secret):
            raw = spelled.encode("utf-8")
            pieced.update(dict.fromkeys([*_patterns(raw), *escaped_forms(spelled)]))
    out = Patterns((*found, *(p for p in transformed if p not in found)))
    out.loose = frozenset(p for p in transformed if p not in found)
    out.tight = frozenset(p for p in layered if p not in found)
    out.bare = tuple(p for p in bare if len(p) >= BARE_LEAST)
    out.numbers = tuple(p for p in numbers if len(p) >= BARE_LEAST)
    out.pieces = _whole_forms([p.lower() for p in pieced])
    return out


def _cases(secret: str) -> list[str]:
    return list(dict.fromkeys([secret, secret.upper(), secret.lower(), secret.swapcase()]))


# a JSON Web Token (RFC 7519 §3, JWS compact serialisation): header.payload.signature
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]*\.([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)")


def _whole_forms(forms: list[bytes]) -> tuple[bytes, ...]:
    """The forms none of the others holds (the pieces of one it holds are its pieces)."""
    unique = sorted(dict.fromkeys(forms), key=len, reverse=True)
    kept: list[bytes] = []
    for form in unique:
        if not any(form in longer for longer in kept):
            kept.append(form)
    return tuple(kept)


def transformed_forms(secret: bytes) -> list[bytes]:
    """The secret as an upstream's text tools may hand it back beyond escaping: reversed
    (raw, hex, base64), and in base32 (RFC 4648's alphabet and its extended hex one,
    upper and lower case: TOTP seeds, Crockford-like IDs) at each of the five byte
    alignments, as base64_cores does for base64."""
    out = [secret[::-1], secret[::-1].hex().encode()]
    out += base64_cores(secret[::-1])
    for offset in range(5):
        encoded = base64.b32encode(bytes(offset) + secret)
        first = -(-8 * offset // 5)  # first character made only of the secret's bits
        last = 8 * (offset + len(secret)) // 5  # one past the last such character
        core = encoded[first:last]
        hexed = core.translate(_B32_TO_HEX)
        out += [core, core.lower(), hexed, hexed.lower()]
    out += base85_cores(secret)
    out += layered_forms(secret)
    return [f for f in dict.fromkeys(out) if len(f) >= MIN_SECRET_BYTES]


def layered_forms(secret: bytes) -> list[bytes]:
    """The secret as an upstream's platform writes it in two steps: its UTF-16 text
    (Windows, .NET, Java's and JavaScript's strings) in hex (SQL Server's `0x7300...`) or
    base64 (PowerShell's `-EncodedCommand`); base64 of its base64 (a Kubernetes Secret's
    `data` holding a value that is base64 already: a Basic credential, a docker config),
    hex of its base64 and base64 of its hex; its base64 reversed, and in uuencode's
    alphabet; and ROT13. Each base64 at every byte alignment (base64_cores)."""
    out = [secret.translate(_ROT13)]
    cores = base64_cores(secret)
    out += [core[::-1] for core in cores]
    for core in cores:
        # (a zero sextet as a backquote, or as a space where the secret has one: only
        # then, as a form holding a space would make every line of prose a candidate)
        out += dict.fromkeys([core.translate(_B64_TO_UU), core.translate(_B64_TO_UU_SPACE)])
    with contextlib.suppress(UnicodeDecodeError):
        text = secret.decode("utf-8")
        for codec in ("utf-16-le", "utf-16-be"):
            wide = text.encode(codec)
            out += [wide.hex().encode(), wide.hex().upper().encode(), *_b64(wide)]
    for core in cores:
        out += [*_b64(core), core.hex().encode(), core.hex().upper().encode()]
    out += _b64(secret.hex().encode()) + _b64(secret.hex().upper().encode())
    return out


def _b64(data: bytes) -> list[bytes]:
    """data's base64 cores (base64_cores) in the standard and URL-safe alphabets."""
    cores = base64_cores(data)
    return [*cores, *(core.translate(_B64_TO_URL) for core in cores)]


def bare_numbers(secret: bytes) -> list[bytes]:
    """The secret's bytes written as numbers, read bare (only digits kept): in decimal
    (Node's `Buffer.toJSON()`, Java's `Arrays.toString(byte[])`, Python's `list(b)`: `[115,
    51, ...]`) and in octal escapes (`\\163\\063...`, PostgreSQL's bytea escape format, a C
    string, `printf %q`)."""
    return [
        "".join(str(b) for b in secret).encode(),
        "".join(f"{b:03o}" for b in secret).encode(),
    ]


_ROT13 = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_TO_URL = bytes.maketrans(b"+/", b"-_")
# uuencode writes the sextet n as the byte 32 + n, 0 as a backquote (or a space)
_B64_TO_UU = bytes.maketrans(_B64_ALPHABET, b"`" + bytes(range(33, 96)))
_B64_TO_UU_SPACE = bytes.maketrans(_B64_ALPHABET, bytes(range(32, 96)))


def base85_cores(secret: bytes) -> list[bytes]:
    """The secret in base85 — RFC 1924's alphabet (Python's b85encode, git's binary
    patches), Ascii85 (PDF, PostScript) and Z85 (ZeroMQ) — at each of the four byte
    alignments: the characters of the groups of four bytes the secret alone fills."""
    out = []
    for offset in range(4):
        first = -(-offset // 4)  # first group made only of the secret's bytes
        last = (offset + len(secret)) // 4  # one past the last such group
        if last <= first:
            continue
        aligned = bytes(offset) + secret
        rfc = base64.b85encode(aligned)[5 * first : 5 * last]
        # (a85 writes a group of four zero bytes as one `z`: a credential holds no NUL)
        ascii85 = base64.a85encode(aligned)[5 * first : 5 * last]
        out += [rfc, rfc.translate(_B85_TO_Z85), ascii85]
    return out


_B85_TO_Z85 = bytes.maketrans(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~",
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#",
)


_B32_TO_HEX = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHIJKLMNOPQRSTUV"
)


_SCHEMED = re.compile(r"([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~\-]*) +([^ ]+)")
LEAST_PART = 8  # a part shorter than this is not looked for alone (false alarms)


def credential_parts(secret: str) -> list[str]:
    """The secret, and what an upstream may echo of it alone when it is a whole
    Authorization value (`Bearer <token>`: the token; `Basic <base64>`: `user:password`
    and the password), as a static credential's value may be written."""
    parts = [secret]
    scheme = _SCHEMED.fullmatch(secret.strip())
    if scheme is None:
        return parts
    token = scheme[2]
    parts.append(token)
    if scheme[1].lower() == "basic":
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            pair = base64.b64decode(token, validate=True).decode("utf-8")
            parts += [pair, pair.partition(":")[2]]
    return [p for p in dict.fromkeys(parts) if p == secret or len(p) >= LEAST_PART]


_UNESCAPED = re.compile(r"[A-Za-z0-9\-._~]")  # what no encoder below rewrites (RFC 3986)
LONG_RUN = 12  # a run of the secret's letters and digits this long is the secret too


def escaped_forms(secret: str) -> list[bytes]:
    """The secret as an upstream echoing it may write it, beyond the scanner's forms:
    percent-encoded in lower-case hex or with `/` kept (a path), JSON with `/` as `\\/`
    (PHP's json_encode) or every other character as `\\u00xx` (Go's and PHP's
    HEX_ flags), HTML-escaped and as numeric character references; and each run of its
    letters and digits of LONG_RUN or more, which every encoding leaves as it is (a
    mixture of the escapes above); and every character escaped, as obfuscators and
    serialisers write text (`&#115;&#51;...`, `\\u0073...`, `\\x73...`, `%73%33...`)."""
    forms = [
        "".join(spell % ord(c) for c in secret)
        for spell in (
            *("&#%d;", "&#x%x;", "&#x%X;", "\\u%04x", "\\u%04X", "\\x%02x", "\\x%02X"),
            *("%%u%04x", "%%u%04X"),  # (JavaScript's escape(), ASP's %u-encoding)
        )
        if all(ord(c) < 0x100 or "u" in spell or "#" in spell for c in secret)
    ]
    forms += ["".join(f"%{b:02X}" for b in secret.encode("utf-8"))]
    forms += [forms[-1].lower()]
    if all(_UNESCAPED.fullmatch(c) for c in secret):
        # (no encoder rewrites it in part: the raw form and those above are every form)
        return [f.encode("utf-8") for f in forms]
    forms += [
        quote(secret, safe=""),
        quote(secret),
        json.dumps(secret, ensure_ascii=False)[1:-1].replace("/", "\\/"),
        html.escape(secret),
    ]
    forms += [f.lower() if "%" not in f else _lower_escapes(f) for f in forms[:2]]
    for spell in ("\\u%04x", "\\u%04X", "&#x%x;", "&#x%X;", "&#%d;"):
        forms.append("".join(c if _UNESCAPED.fullmatch(c) else spell % ord(c) for c in secret))
    forms += [run for run in re.findall(r"[A-Za-z0-9]+", secret) if len(run) >= LONG_RUN]
    out = [f.encode("utf-8") for f in forms if f != secret]
    return [f for f in dict.fromkeys(out) if len(f) >= MIN_SECRET_BYTES]


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)
