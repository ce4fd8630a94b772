"""Watches bytes sent to a client for the session's upstream secrets.

Owns the evidence behind the "credential never exposed" statement (DESIGN.md, data flow
step 6): a SecretScanner is fed every byte the proxy sends to the client and remembers
whether any encoding of a secret went by. It looks for each secret's raw UTF-8 bytes
(as set, and with its letters upper-cased, lower-cased or case-swapped: each of these
forms too), its hex (lower and upper case), its base64 (standard and URL-safe, padded or not, at
each of the three byte alignments it can have inside a longer encoded text), its
JSON-escaped and percent-encoded forms when those differ from the raw bytes, every byte
percent-encoded (%70%61..., either case of hex), and its UTF-16 (little and big endian:
a Windows or Java upstream's text, a UCS-2 column). It also reads what was sent as its
reader shows it (`shown`): HTML character references and JSON or C escapes of every
character read (`&#115;&#51;...`, `&#x73;...`, `\\u0073...`, `\\x73...`), markup dropped
(`s<b></b>3<b></b>c...`), compatibility forms as their plain letters (fullwidth U+FF53
for s, mathematical U+1D5CC), and characters no one sees dropped (zero-width spaces and
joiners, soft hyphens, combining marks between the characters); the secret, so read,
found there is the form "shown". Not read: the secret rearranged (reversed, rot13, spaced out
character by character, base32): an upstream that re-encodes it so is outside this
evidence, as any cipher would be.

No IO here, and no secret ever leaves this object: findings name the form only, and the
repr shows counts.

Base64 of a secret embedded in a longer value depends on where the secret starts modulo
3 bytes; only the characters built entirely from the secret's own bits are stable, so for
each alignment the scanner searches that stable core (the partial characters at either
end, and any padding, are left out). Derived forms of a 4-byte secret are short (a 4-5
character base64 core), so rare false alarms on long base64 streams are possible;
a false alarm withholds the "never exposed" statement, which is the safe direction.

A chunk is searched pattern by pattern only when it may hold one: every form is made of
a few byte values (base64, hex, the key's own text), so a chunk without a stretch as long
as the shortest form made only of bytes some form uses holds none (one translate and one
find over the chunk, instead of one find per form: most of the bytes a client is sent —
binary files, ordinary text — pass on that test alone).

The scanners of one credential's sessions share one plan of its forms, which lives only
as long as one of those scanners does: when a credential's last session ends, its forms
leave the proxy's memory (a core dump holds no past credential).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import unicodedata
import weakref
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MIN_SECRET_BYTES = 4
# raw bytes of the stream kept for `shown` per byte of the longest secret: the most an
# escape or markup spends on one character it shows (`&#x0073;<b></b>`) read whole
SHOWN_BYTES_PER_CHAR = 16
# a character written otherwise than as itself, or markup (`shown` reads it)
_WRITTEN = re.compile(
    r"&#[xX]0*([0-9a-fA-F]{1,6});?|&#0*([0-9]{1,7});?|\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})"
    r"|<[^<>]{0,256}>"
)


# format characters (zero-width spaces and joiners, the soft hyphen, bidirectional marks,
# variation selectors, fillers) and combining marks
_UNSEEN = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
)


def _read_written(found: re.Match[str]) -> str:
    hexa, decimal, json_u, c_x = found.groups()
    digits = hexa or json_u or c_x
    code = int(digits, 16) if digits else int(decimal) if decimal else -1
    return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else ""


def shown(text: str) -> str:
    """`text` as its reader shows it: escapes read, markup dropped, compatibility forms
    as their plain letters (NFKD), characters no one sees and combining marks dropped."""
    return _UNSEEN.sub("", unicodedata.normalize("NFKD", _WRITTEN.sub(_read_written, text)))


def base64_cores(secret: bytes) -> list[bytes]:
    """The stable standard-alphabet base64 of `secret` at byte alignments 0, 1 and 2."""
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + secret)
        first = -(-8 * offset // 6)  # first character made only of secret bits
        last = 8 * (offset + len(secret)) // 6  # one past the last such character
        if last > first:
            cores.append(encoded[first:last])
    return cores


def _patterns(secret: bytes) -> dict[bytes, str]:
    forms: dict[bytes, str] = {}

    def add(pattern: bytes, form: str) -> None:
        if len(pattern) >= MIN_SECRET_BYTES:
            forms.setdefault(pattern, form)

    # the secret as set, and its letters' case changed (an upstream that echoes it upper-
    # cased, or encodes it so, hands the client the key all the same: the HTTP guard cuts
    # those forms, and this evidence must see them too)
    cases = (
        (secret, ""),
        (secret.upper(), " upper-cased"),
        (secret.lower(), " lower-cased"),
        (secret.swapcase(), " case-swapped"),
    )
    for cased, how in cases:
        add(cased, "raw" + how)
        add(cased.hex().encode(), "hex" + how)
        add(cased.hex().upper().encode(), "hex" + how)
        for core in base64_cores(cased):
            add(core, "base64" + how)
            add(core.translate(bytes.maketrans(b"+/", b"-_")), "base64" + how)
        for digits in (cased.hex(), cased.hex().upper()):
            every = b"".join(b"%" + digits[i : i + 2].encode() for i in range(0, len(digits), 2))
            add(every, "percent-encoded" + how)
        with contextlib.suppress(UnicodeDecodeError):
            for codec in ("utf-16-le", "utf-16-be"):
                wide = cased.decode("utf-8").encode(codec)
                add(wide, "utf-16" + how)
                for core in base64_cores(wide):  # (a UCS-2 column's text sent as base64)
                    add(core, "base64 of utf-16" + how)
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        return forms
    for escaped in (json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]):
        add(escaped.encode("utf-8"), "json-escaped")
    for encoded in (quote(text, safe=""), quote_plus(text, safe="")):
        add(encoded.encode("ascii"), "percent-encoded")
    return forms


def _shown_forms(secrets: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """Each secret as `shown` reads it, in the cases _patterns searches, as UTF-8."""
    found: dict[bytes, None] = {}
    for raw in secrets:
        if len(raw) < MIN_SECRET_BYTES:
            continue
        try:
            text = shown(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        for cased in (text, text.upper(), text.lower(), text.swapcase()):
            if len(cased.encode("utf-8")) >= MIN_SECRET_BYTES:
                found[cased.encode("utf-8")] = None
    return tuple(found)


class _Plan:
    """What scanning for a set of secrets needs: the sessions of one credential (a static
    password, a lease the provider hands out again) share one, not a table of forms each.

    forms (pattern → form name), secrets too short to search, the tail kept between chunks,
    the byte marks and the shortest stretch of marked bytes a form can show as.
    """

    __slots__ = ("__weakref__", "forms", "marks", "shown", "shown_edge", "shown_len",
                 "shown_marks", "shown_stretch", "stretch", "tail_len", "too_short")  # fmt: skip

    def __init__(self, secrets: tuple[bytes, ...]) -> None:
        self.too_short = 0
        forms: dict[bytes, str] = {}
        for raw in secrets:
            if not raw:
                continue
            if len(raw) < MIN_SECRET_BYTES:
                self.too_short += 1
                continue
            for pattern, form in _patterns(raw).items():
                forms.setdefault(pattern, form)
        self.forms = forms
        self.shown = _shown_forms(secrets)
        self.shown_len = SHOWN_BYTES_PER_CHAR * max((len(raw) for raw in secrets), default=0)
        # where no escape or markup is written, `shown` reads an ASCII byte as itself and
        # makes what it reads of the others (a character's bytes, or bytes it drops) only
        # from bytes of 0x80 and up: a shown form read there stands in a stretch this long
        # of bytes that are the forms' own or 0x80 and up
        used = frozenset(b"".join(self.shown))
        self.shown_marks = bytes(1 if v in used or v >= 0x80 else 0 for v in range(256))
        self.shown_stretch = b"\x01" * min((len(form) for form in self.shown), default=1)
        self.shown_edge = len(self.shown_stretch)  # bytes before a chunk a stretch may begin in
        self.tail_len = max((len(p) for p in forms), default=1) - 1
        # 1 for each byte value some form uses; a form shows as a run of 1s this long at least
        used = frozenset(b"".join(forms))
        self.marks = bytes(1 if value in used else 0 for value in range(256))
        self.stretch = b"\x01" * min((len(p) for p in forms), default=1)


# The plans of the scanners alive, by a keyed digest of their secrets: neither the table
# nor its keys hold a secret once the last session of that credential is gone (a plan
# lives exactly as long as a scanner holds it), so past credentials do not stay in proxy
# memory. The key is an HMAC under a key of this process's own, not a plain hash someone
# reading a core dump could test guesses against.
_PLANS: weakref.WeakValueDictionary[bytes, _Plan] = weakref.WeakValueDictionary()
_PLAN_KEY = os.urandom(32)

# further back than any window reaches: no escape, markup or stretch seen yet
_FAR = 1 << 62


def _plan_for(secrets: tuple[bytes, ...]) -> _Plan:
    digest = hmac.new(_PLAN_KEY, digestmod=hashlib.sha256)
    for raw in secrets:
        digest.update(len(raw).to_bytes(4, "big"))
        digest.update(raw)
    key = digest.digest()
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _Plan(secrets)
    return plan


class SecretScanner:
    """Feed it every chunk sent to the client, in order; ask `.exposed` at the end.

    Secrets shorter than MIN_SECRET_BYTES cannot be searched without drowning in false
    alarms; they are counted in `.too_short` so the caller can log that the session's
    evidence does not cover them. Empty secrets are ignored.
    """

    __slots__ = ("_findings", "_mark_back", "_marks", "_pending", "_plan", "_shown_tail",
                 "_stretch", "_stretch_back", "_tail", "_tail_len")  # fmt: skip

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        raws = tuple(s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in secrets)
        self._plan = plan = _plan_for(raws)  # held: the shared plan lives while we do
        # the forms still unseen: the plan's own table until one is found (then a copy)
        self._pending = plan.forms
        self._tail_len, self._marks, self._stretch = plan.tail_len, plan.marks, plan.stretch
        self._tail = b""
        self._shown_tail = b""
        # where the stream's latest escape or markup and its latest stretch of the shown
        # forms' bytes begin, counted back from the stream's end (far: none yet)
        self._mark_back = self._stretch_back = _FAR
        self._findings: tuple[str, ...] = ()

    def feed(self, chunk: bytes | bytearray | memoryview) -> bool:
        """Scan the next chunk sent to the client; True once any secret was seen.

        The last (longest pattern - 1) bytes of the stream are kept, so a secret split
        across chunks is still found. A pattern is dropped once found: its form is
        already on record and the remaining searches get cheaper.
        """
        if chunk.__class__ is not bytes:
            chunk = bytes(chunk)
        self._read_shown(chunk)
        if not self._pending:
            return bool(self._findings)
        window = self._tail + chunk
        # (none searched where no stretch of the forms' bytes is as long as the shortest form)
        if window.translate(self._marks).find(self._stretch) != -1:
            found = [p for p in self._pending if window.find(p) != -1]
            if found:
                self._pending = dict(self._pending)  # never the shared plan's table
            for pattern in found:
                form = self._pending.pop(pattern)
                if form not in self._findings:
                    self._findings = (*self._findings, form)
        self._tail = window[-self._tail_len :] if self._tail_len else b""
        return bool(self._findings)

    def _read_shown(self, chunk: bytes) -> None:
        """Search the stream's last bytes as `shown` reads them, while "shown" is unseen."""
        plan = self._plan
        if not plan.shown or "shown" in self._findings:
            return
        window = self._shown_tail + chunk
        self._shown_tail = window[-plan.shown_len :]
        # Is there escape or markup in the window, or a stretch of the shown forms' bytes?
        # Searched in the chunk and the few bytes before it only (a pair or a stretch may
        # begin there): what began further back is remembered as where it began, counted
        # back from the stream's end, and is in the window when no further back than the
        # window is long. The same answers as searching the whole window each time, for a
        # fifth of the bytes (tests/test_secrets_window holds the two equal).
        size, reach = len(chunk), len(window)
        edge = window[-(size + plan.shown_edge) :]
        # (find, not `in`: `in` first tries the needle as an integer, at twice the cost)
        if edge.find(b"\\") != -1 or edge.find(b"<") != -1 or edge.find(b"&#") != -1:
            begun = max(edge.rfind(b"\\"), edge.rfind(b"<"), edge.rfind(b"&#"))
            marked_back = self._mark_back = len(edge) - begun
        else:
            marked_back = self._mark_back = self._mark_back + size
        begun = edge.translate(plan.shown_marks).rfind(plan.shown_stretch)
        if begun == -1:
            stretch_back = self._stretch_back = self._stretch_back + size
        else:
            stretch_back = self._stretch_back = len(edge) - begun
        if marked_back > reach and (window.isascii() or stretch_back > reach):
            return  # read as it is (the raw forms' search covers it), or holds no shown form
        if window.isascii():
            read = shown(window.decode("ascii")).encode("utf-8")
        else:
            text = window.decode("utf-8", "ignore")
            # ASCII once decoded, with no escape or markup: what shown() reads is the text
            # as it is (no ASCII character has a compatibility form or is unseen), but
            # for the bytes decoding dropped (a Postgres row's -1 typmod, or bytes an
            # upstream slid between the secret's characters), so it is still searched
            if marked_back <= reach or not text.isascii():
                read = shown(text).encode("utf-8")
            else:
                read = text.encode("ascii")
        if any(form in read for form in plan.shown):
            self._findings = (*self._findings, "shown")

    @property
    def too_short(self) -> int:
        return self._plan.too_short

    @property
    def exposed(self) -> bool:
        return bool(self._findings)

    @property
    def findings(self) -> list[str]:
        """The forms seen ("raw", "hex", "base64", ...), each once, never the secret."""
        return list(self._findings)

    def __repr__(self) -> str:
        return (
            f"SecretScanner(patterns={len(self._pending)}, too_short={self.too_short}, "
            f"findings={self._findings!r})"
        )
