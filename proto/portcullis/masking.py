"""Response masking: value detectors and the redact / hash / partial strategies.

Owns what a `mask` verdict means once the PDP has answered it (DESIGN.md, data flow step
4): which column or JSON field a MaskRule names, which substrings a detector finds, and
what a masked value looks like. Every proxy masks through a Masker (Postgres DataRow
columns, HTTP JSON bodies, SSH output); none implements masking of its own.

No IO here (masking_key only logs that no key is configured). The original value never
goes into a count key, an exception or a repr: counts are logged and audited, so they
name rules and detectors only.

Output formats (fixed; audit readers and tests rely on them):

- redact: a field becomes ``[REDACTED]`` (its name is already visible beside it); a
  detector match becomes ``[REDACTED:<detector>]`` so a reader knows what was removed.
- hash: ``sha256:`` + the first 16 hex digits of HMAC-SHA256(per-proxy key, value).
  Equal values stay joinable within one deployment; the key stops dictionary attacks on
  small value spaces such as SSNs, which is why a key of at least 16 bytes is required.
- partial: cards, SSNs, IBANs and tokens keep their last 4 characters (card, SSN and IBAN
  separators stay in place: ``****-****-****-1111``, ``***-**-6789``; a token or password
  shorter than 16 characters, or holding a space, is ``****``), emails keep their first
  character and domain (``a***@example.com``), telephone numbers their last 2 digits
  (``+* *** *** **00``), anything else its last 2 characters (``****42``). A value too
  short to hide at least as much as it shows is hidden completely, and a JSON object or
  array under a partial field rule is redacted.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import contextvars
import functools
import hashlib
import hmac
import itertools
import json
import logging
import math
import os
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from portcullis import phone_numbers
from portcullis.card_groupings import covering, grouped_card_spans
from portcullis.verdict import MASK_STRATEGIES, MaskRule

log = logging.getLogger("portcullis.masking")

REDACTED = "[REDACTED]"
HASH_PREFIX = "sha256:"
HASH_HEX_DIGITS = 16
MIN_HASH_KEY_BYTES = 16
# when two rules name the same target, the one that reveals least wins
_STRICTNESS = {"partial": 0, "hash": 1, "redact": 2}
_KEY_RULES_KEPT = 4096  # JSON keys whose rule a Masker remembers (then it starts again)

Span = tuple[int, int]


class MaskingError(ValueError):
    """The mask rules cannot be enforced as given; the proxy must fail closed."""


class ScanBudgetExceeded(MaskingError):
    """A text the detectors could not read within the time its caller allows
    (scan_budget): what holds it must be withheld, never passed on unread."""


# when the detectors give up reading (scan_budget), by the CPU time of the thread reading
# (time.thread_time: a thread waiting for the interpreter's lock, or a test's hold, spends
# none of it)
_SCAN_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar(
    "portcullis_scan_deadline", default=math.inf
)


@contextlib.contextmanager
def scan_budget(seconds: float) -> Iterator[None]:
    """Within it the detectors raise ScanBudgetExceeded once the thread has spent
    `seconds` of CPU time (an enclosing budget's earlier deadline stands): a proxy
    masking an upstream's answer on a loop every session shares bounds the time one
    answer takes, whatever it holds."""
    deadline = min(_SCAN_DEADLINE.get(), time.thread_time() + seconds)
    token = _SCAN_DEADLINE.set(deadline)
    try:
        yield
    finally:
        _SCAN_DEADLINE.reset(token)


def _within_budget() -> None:
    if time.thread_time() > _SCAN_DEADLINE.get():
        raise ScanBudgetExceeded("the text could not be read for values in the time allowed")


# ---------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Detector:
    """A named value pattern. `precheck` is a cheap test that must be true for any text
    `find` could match, so text without a candidate costs a few C-level calls. `gate` is
    the same over the bytes of ASCII text (true at least wherever `precheck` is), given
    their count of digits (counted once for every gate), so a result's values are cleared
    without being decoded (Masker.may_detect)."""

    name: str
    precheck: Callable[[str], bool]
    find: Callable[[str], Iterator[Span]]
    gate: Callable[[bytes, int], bool]


def _digit_count(text: str) -> int:
    return sum(map(text.count, "0123456789"))


# Local part anchored at the start of its run (lookbehind) so a long run of word
# characters is scanned once, not once per start position.
# Letters and digits of any script (RFC 6531 addresses: jörg@müller.de, 用户@例子.广告),
# so no part of a name is left beside the mask and no internationalised address is missed.
# An address as a reader writes it past a filter is one too: the @ fullwidth (U+FF20,
# U+FE6B), between spaces, in brackets (ann [@] example [.] com) or spelt in brackets
# (ann(at)example.com, ann [at] example [dot] com, {at}, <at>), the dot an ideographic or
# fullwidth full stop (example。com), in brackets, or spelt in brackets or between spaces
# (example dot com); `ann at example dot com`, the @ spelt between
# spaces, only with a dot spelt too and a usual top-level domain (`look at the dot matrix`
# is prose).
_DOT_SPELT = (
    r"(?:[ \t]*[(\[{<][ \t]*(?:(?i:dot)|[.\u3002\uff0e\uff61\u2024\ufe52\u00b7])[ \t]*[)\]}>][ \t]*"
    r"|[ \t]+(?i:dot)[ \t]+)"
)
_DOT_MARK = r"(?:[.\u3002\uff0e\uff61\u2024\ufe52\u00b7]|(?=[ \t(\[{<])" + _DOT_SPELT + ")"
_USUAL_TLD = (
    "com|net|org|edu|gov|mil|int|info|biz|io|co|me|dev|app|ai|us|uk|de|fr|nl|be|at|ch|es|it"
    "|pt|se|no|dk|fi|pl|cz|ru|ua|cn|jp|kr|in|br|ar|mx|au|nz|ca|eu|ie"
)
# The @ escaped as its writer's format does (a URL's %40, HTML's &#64; &#x40; &commat;, a
# JSON or C string's \\u0040 \\x40 written out): its reader, a browser or a decoder, sees
# the address.
_AT_ESCAPED = r"%40|&#0*64;?|&#[xX]0*40;?|&commat;|\\u0040|\\x40"
_EMAIL = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]{1,64}"
    r"(?:[ \t]{0,3}[@\uff20\ufe6b][ \t]{0,3}|[ \t]*[(\[{<][ \t]*[@\uff20\ufe6b][ \t]*[)\]}>][ \t]*"
    rf"|{_AT_ESCAPED})"
    rf"(?:[\w\-]{{1,63}}+{_DOT_MARK}){{1,8}}[^\W\d_]{{2,63}}"
)
# what every address with a spelt @ holds: the at in brackets (ann(at)example.com,
# ann ( at ) example ...), or between spaces (and then a dot spelt too); read from there: its
# domain forward, its local part back
_BRACKET_AT = re.compile(r"[(\[{<][ \t]*[aA][tT][ \t]*[)\]}>]")
_SPELT_AT = re.compile(_BRACKET_AT.pattern + r"|[ \t][aA][tT][ \t]")
_BRACKET_AT_ASCII = re.compile(_BRACKET_AT.pattern.encode())
_SPELT_AT_ASCII = re.compile(_SPELT_AT.pattern.encode())
_SPELT_TAIL = re.compile(
    rf"[ \t]*[(\[{{<][ \t]*(?i:at)[ \t]*[)\]}}>][ \t]*(?:[\w\-]{{1,63}}+{_DOT_MARK}){{1,8}}"
    r"[^\W\d_]{2,63}"
    rf"|[ \t]+(?i:at)[ \t]+(?:[\w\-]{{1,63}}+{_DOT_SPELT}){{1,8}}(?i:{_USUAL_TLD})(?!\w)"
)
# a word and a spelt dot just before a local part (searched up to the local part's start)
_SPELT_LOCAL_DOT = re.compile(
    r"(?<![\w.%+\-])[\w%+\-]{1,64}(?:[ \t]+(?i:dot)[ \t]+|[ \t]*[(\[{<][ \t]*(?i:dot)[ \t]*"
    r"[)\]}>][ \t]*)\Z"
)
# (where partial parts an address found: at its last @, written in any of those ways)
_AT_SPLIT = re.compile(
    r"[ \t]*[(\[{<][ \t]*(?:[@\uff20\ufe6b]|(?i:at))[ \t]*[)\]}>][ \t]*"
    r"|[ \t]{0,3}[@\uff20\ufe6b][ \t]{0,3}|[ \t]+(?i:at)[ \t]+|" + _AT_ESCAPED
)
# `ann at example.com`, the @ spelt between spaces and the dot written, is an address only
# as a whole item: a value, a line, a cell, a list item or what follows a label's colon,
# holding nothing else (what replace(email, '@', ' at ') gives). In prose, `meet at
# example.com tomorrow`, it is no address; nor is an item whose first word is one prose
# puts before an at and a site (`look at github.com`, `available at pypi.org`).
_ITEM_EDGE = "\n\r,;:=|\t\"'<>()\\[\\]{}"
_ITEM_AT = re.compile(
    rf"(?:^|(?<=[{_ITEM_EDGE}]))[ ]*(?P<local>[\w.%+\-]{{1,64}})[ ]+(?i:at)[ ]+"
    rf"(?:[\w\-]{{1,63}}\.){{1,8}}(?i:{_USUAL_TLD})(?=[ ]*(?:$|[{_ITEM_EDGE}]))",
    re.MULTILINE,
)
_ITEM_AT_ASCII = re.compile(_ITEM_AT.pattern.encode(), re.MULTILINE)
_PROSE_BEFORE_AT = frozenset(
    (
        "look", "looking", "looked", "available", "hosted", "host", "docs", "documentation",
        "live", "living", "lives", "mirror", "mirrored", "see", "visit", "visiting", "found",
        "located", "online", "here", "there", "now", "us", "me", "them", "him", "her", "it",
        "find", "posted", "published", "read", "download", "downloads", "source", "code", "home",
        "site", "website", "page", "info", "details", "more", "served", "running", "deployed",
        "up", "check", "get", "is", "are", "was", "were", "be", "been", "stay", "staying", "work",
        "working", "works", "meet", "arrive", "arrived", "based", "open",
    )
)  # fmt: skip
# what every escaped @ holds
_AT_ESCAPED_HINTS = ("%40", "&#", "&commat;", "\\u0040", "\\x40")
_AT_ESCAPED_HINTS_ASCII = tuple(h.encode() for h in _AT_ESCAPED_HINTS)


def _email_precheck(text: str) -> bool:
    if "@" in text or "\uff20" in text or "\ufe6b" in text or _at_escaped(text):
        return True
    lowered = text.lower()
    if "at" not in lowered:
        return False
    if "dot" in lowered:
        return _SPELT_AT.search(text) is not None
    if " at " in lowered and "." in text and _ITEM_AT.search(text) is not None:
        return True
    return (")" in text or "]" in text or "}" in text or ">" in text) and _BRACKET_AT.search(
        text
    ) is not None


def _at_escaped(text: str) -> bool:
    # (every escaped @ holds a 4 but &commat;)
    return (
        "4" in text
        and ("%" in text or "&" in text or "\\" in text)
        and any(h in text for h in _AT_ESCAPED_HINTS)
    ) or "&commat;" in text


def _email_gate(data: bytes, digits: int) -> bool:
    if b"@" in data:
        return True
    # (every escaped @ holds a 4 but &commat;, which holds an `at`)
    if (
        b"4" in data
        and (b"%" in data or b"&" in data or b"\\" in data)
        and any(h in data for h in _AT_ESCAPED_HINTS_ASCII)
    ):
        return True
    lowered = data.lower()
    if b"at" not in lowered:
        return False
    if b"&commat;" in data:
        return True
    if b"dot" in lowered:
        return _SPELT_AT_ASCII.search(data) is not None
    if b" at " in lowered and b"." in data and _ITEM_AT_ASCII.search(data) is not None:
        return True
    return (
        b")" in data or b"]" in data or b"}" in data or b">" in data
    ) and _BRACKET_AT_ASCII.search(data) is not None


def _email_spans(text: str) -> Iterator[Span]:
    if "@" in text or "\uff20" in text or "\ufe6b" in text or _at_escaped(text):
        for m in _EMAIL.finditer(text):
            yield m.span()
    lowered = text.lower()
    if "at" not in lowered:
        return
    if " at " in lowered and "." in text:
        for item in _ITEM_AT.finditer(text):
            if item["local"].lower() not in _PROSE_BEFORE_AT:
                yield item.start("local"), item.end()
    # (an at between spaces is one only with a dot spelt after it)
    marks = _SPELT_AT if "dot" in lowered else _BRACKET_AT
    searched = 0
    for mark in marks.finditer(text):
        # the local part: the word characters before the at, past spaces and a bracket
        end = mark.start() + 1
        while end > searched and text[end - 1] in " \t":
            end -= 1
        if end > searched and text[end - 1] in "([{<":
            end -= 1
            while end > searched and text[end - 1] in " \t":
                end -= 1
        start = end
        while start > max(searched, end - 64) and (
            text[start - 1].isalnum() or text[start - 1] in "_.%+-"
        ):
            start -= 1
        if start == end:
            continue
        tail = _SPELT_TAIL.match(text, end)
        if tail is not None:
            searched, reach = tail.end(), max(searched, start - 64)
            # (a local part with its dots spelt too: ann dot smith at example dot com)
            while (head := _SPELT_LOCAL_DOT.search(text, reach, start)) is not None:
                start = head.start()
            yield start, searched


# A run of ASCII digit groups, each separated from the next by one separator; card numbers
# are looked for inside it (see _card_spans). Groups of 3 to 6 digits may be joined by any
# one character that is no letter, digit, comma, semicolon or line break (a dash, dot,
# underscore, slash, star, colon, bar, en dash, no-break or thin space ...; mixed, but a
# colon only alone: 192.168.100.200:8080, an address and port, is no card), by up to four
# spaces or tabs (4111.1111.1111.1111, 4111*1111|1111-1111, 4111  1111  1111  1111:
# columns), or by a dash, slash, dot or star between two spaces (4111 - 1111 - 1111 - 1111);
# thousands groups (a group of 1 to 3 digits, then groups of 3, one separator throughout)
# by a comma as well (4,111,111,111,111,111; 4 111 111 ...); single digits by one
# separator throughout (4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1: a number spelt out).
# What no separator is: a letter or digit of any script, a line break, a comma between
# groups of a card or a semicolon (a list: 2019,2020,2021,2022).
_NOT_SEPARATORS = "\\w\n\r\v\f\x1c-\x1e\x85\u2028\u2029;"
_SPACES = "[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]{1,4}"
_PADDED = "[ \t][-\u2010-\u2015/.*][ \t]"
_SEPARATOR = "(?:" + _PADDED + "|" + _SPACES + "|_|,|[^" + _NOT_SEPARATORS + ",])"
_DIGIT_RUN = re.compile(rf"(?<![0-9])[0-9]+(?:{_SEPARATOR}[0-9]+)*")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_CARD_MIN, _CARD_MAX = 13, 19
_FLOAT_EXACT = float(2**53)  # from here on a float does not hold every integer
# necessary for any card: 13 digits with at most four characters that are no letter or
# digit between neighbours (_SEPARATOR, card_groupings; a number with an exponent carries
# 13 digits in its mantissa: see _EXPONENT_NUMBER)
_CARD_HINT = re.compile(r"[0-9](?:[\W_]{0,4}[0-9]){12}")
# A number written with an exponent (4.111111111111111e15, as JSON or a program's %e
# writes it): its value, when a whole number, is read as a card. The mantissa must carry
# at least 13 digits (what any such writing of a card keeps), so _CARD_HINT holds for it.
_EXPONENT_NUMBER = re.compile(
    r"(?<![0-9A-Za-z_.])(?P<mantissa>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE](?P<exp>[+\-]?[0-9]{1,3})"
    r"(?![0-9])"
)
# what every _EXPONENT_NUMBER holds, found in a third of its time: most text has none
_EXPONENT_HINT = re.compile(r"[0-9.][eE][+\-]?[0-9]")


def luhn_valid(digits: str) -> bool:
    """The ISO/IEC 7812 check digit test; `digits` holds ASCII digits only."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_digits_ok(digits: str) -> bool:
    """A card's digits: zero padding before them (printf %022d) is not part of the card."""
    digits = digits.lstrip("0")
    return _CARD_MIN <= len(digits) <= _CARD_MAX and len(set(digits)) > 1 and luhn_valid(digits)


def _card_window_ok(groups: list[str], separators: list[str]) -> bool:
    """Whether groups of digits (Luhn-valid together: _card_digits_ok) joined by these
    separators are written as a card is."""
    if len(groups) == 1:
        return True
    one = len(set(separators)) == 1
    # printed cards group their digits 4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3: groups shorter
    # than 3 are dates, phone numbers, versions — not a card; or a number in thousands;
    # or one digit at a time, one separator throughout
    if all(3 <= len(g) <= 6 for g in groups):
        # any separators but a comma (a list); a colon only alone (192.168.100.200:8080)
        joined = "".join(separators)
        if "," not in joined and (one or ":" not in joined):
            return True
    if one and all(len(g) == 1 for g in groups) and "," not in separators[0]:
        return True
    return one and 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])


def _in_hex_word(text: str, start: int, end: int, words: list[tuple[int, int, bool]]) -> bool:
    """Whether the digits at start:end are part of a word of hex digits with letters (a
    UUID's `695955b7b439`, a hash's, a hex dump's `d802`): that word's digits, no card's.
    `words`: the text's runs of letters and digits, each with whether it is hex digits
    alone, found once (empty until first asked):
    a long hex word's many digit runs each scanning it whole took quadratic time (an
    800 KB hex line held the event loop for minutes)."""
    if not (start > 0 and text[start - 1].isalpha()) and not (
        end < len(text) and text[end].isalpha()
    ):
        return False  # (the usual run: no letter beside it)
    if not words:
        words.extend(
            (m.start(), m.end(), _HEX_WORD.fullmatch(m[0]) is not None and _mixed(text, *m.span()))
            for m in _ALNUM_RUN.finditer(text)
        )
    at = bisect.bisect_right(words, (start, len(text) + 1, True)) - 1
    if at < 0 or not words[at][0] <= start < words[at][1]:
        return False
    left, right, hexed = words[at]
    return (left, right) != (start, end) and hexed and _hex_looking(text, left, right)


def _mixed(text: str, left: int, right: int) -> bool:
    """Whether a hex word's letters are mixed in (_hex_looking): a word of up to four
    characters is asked about its line instead. Four runs at most are read (a long
    blob's first few characters hold them), each word once."""
    if right - left <= 4:
        return True
    if sum(1 for _ in itertools.islice(_HEX_TURNS.finditer(text, left, right), 4)) >= 4:
        return True
    # (or a part of a UUID: `54ac8776-4024-...`; a window about the word is searched)
    near = _UUID.finditer(text, max(0, left - 36), min(len(text), right + 36))
    return any(m.start() <= left and right <= m.end() for m in near)


def _hex_looking(text: str, left: int, right: int) -> bool:
    """Whether the hex word text[left:right] reads as hex, not as letters beside a card
    (`a4111 1111 1111 1111`, `a4111111111111111`, `deadbeef4111...`: before, any hex word
    was): its letters mixed in, letters and digits taking turns four times at least (a
    hash's, an id's, a hex blob's: 9f4c2...), or a UUID's part (_mixed, found with the
    words); or a hex
    dump's group of up to four characters, another such on its line (`d802 a411 ...`)."""
    if right - left > 4:
        return True
    # (its line, up to _DUMP_REACH characters either side: a dump's line is shorter, and
    # a long line's every glued group reading it whole took quadratic time)
    low, high = max(0, left - _DUMP_REACH), min(len(text), right + _DUMP_REACH)
    line_start = max(text.rfind("\n", low, left), text.rfind("\r", low, left), low - 1) + 1
    ends = (text.find("\n", right, high), text.find("\r", right, high), high)
    line_end = min(i for i in ends if i >= 0)
    dump_groups = _HEX_GROUPS[right - left].finditer(text, line_start, line_end)
    return any(m.start() != left for m in dump_groups)


_HEX_WORD = re.compile(r"[0-9A-Fa-f]+")
_DUMP_REACH = 160
_UUID = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
_HEX_TURNS = re.compile(r"[A-Fa-f]+|[0-9]+")  # (a hex word's runs of letters, of digits)
# a hex dump's group of `size` characters holding a letter, between spaces
_HEX_GROUPS = {
    size: re.compile(rf"(?<!\S)(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{{{size}}}(?!\S)")
    for size in range(1, 5)
}
_ALNUM_RUN = re.compile(r"[^\W_]+")  # (\w is str.isalnum's letters and digits, and _)


def _card_spans(text: str) -> Iterator[Span]:
    found: list[Span] = []
    words: list[tuple[int, int, bool]] = []  # (_in_hex_word's, found once when asked)
    for run in _DIGIT_RUN.finditer(text):
        groups = [m.span() for m in _DIGIT_GROUP.finditer(text, run.start(), run.end())]
        # (a run's first or last group may be glued to a hex word's letters: not read)
        if groups and _in_hex_word(text, *groups[-1], words):
            groups.pop()
        if groups and _in_hex_word(text, *groups[0], words):
            groups.pop(0)
        sizes = [b - a for a, b in groups]
        if sum(sizes) < _CARD_MIN:
            continue
        _within_budget()
        digits = _RunDigits(text, groups, sizes)
        start = 0
        while start < len(groups):
            if start % 1024 == 1023:
                _within_budget()
            if not digits.reaches_card(start):
                start += 1  # (the cheap test first: dates and times stop here)
                continue
            end = _longest_card_from(text, groups, start, digits)
            if end is None:
                start += 1
                continue
            found.append((groups[start][0], groups[end][1]))
            yield found[-1]
            # not end + 1: a window found may take the first group of a card that follows
            # (`1111 1111 1111 1111 4111 1111 1111 1111` holds 1111...4111, valid, then
            # 4111 1111 1111 1111), which must be found too; overlaps are merged
            start += 1
    # (the groupings no printed card uses, which most are not found above already)
    covered = covering(found)
    for span in grouped_card_spans(text, _card_digits_ok, found):
        if not covered(*span):
            yield span
    if _EXPONENT_HINT.search(text) is None:
        return
    for m in _EXPONENT_NUMBER.finditer(text):
        if _exponent_card(m["mantissa"], int(m["exp"])):
            yield m.span()


def _reaches_card(sizes: list[int], start: int) -> bool:
    """Whether the groups from `start` on, as _longest_card_from takes them, hold a card's
    fewest digits (necessary for it to find one)."""
    total = sizes[start]
    index = start + 1
    single = total == 1 and index < len(sizes) and sizes[index] == 1
    while total < _CARD_MIN and index < len(sizes):
        size = sizes[index]
        if size != 1 if single else not 3 <= size <= 6:
            return False
        total += size
        index += 1
    return total >= _CARD_MIN


def _exponent_card(mantissa: str, exponent: int) -> bool:
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    if len(digits) < _CARD_MIN:
        return False
    shift = exponent - len(fraction)  # the value is int(digits) * 10**shift
    if shift < 0:
        digits, cut = digits[:shift], digits[shift:]
        if cut.strip("0"):
            return False  # not a whole number
    elif shift > _CARD_MAX:
        return False
    else:
        digits += "0" * shift
    return _card_digits_ok(digits)


class _RunDigits:
    """A run's digits read once for the card windows tried in it (_longest_card_from):
    whether a window's digits are a card's (_card_digits_ok) is then found in a few
    steps, not by joining and reading its digits again from each of its groups. A run
    of digits one at a time (`1 1 1 ...`, each a window's start, seven windows each)
    read each window's digits afresh: ~13 s a MiB on the event loop."""

    __slots__ = ("_nonzero", "_ones", "_same_to", "_sums", "digits", "offsets", "sizes")

    def __init__(self, text: str, groups: list[Span], sizes: list[int]) -> None:
        self.digits = "".join(text[a:b] for a, b in groups)
        self.sizes = sizes
        self.offsets = [0, *itertools.accumulate(sizes)]
        # from each group: how many groups of one digit follow on, itself the first
        ones = [0] * (len(sizes) + 1)
        for k in range(len(sizes) - 1, -1, -1):
            ones[k] = ones[k + 1] + 1 if sizes[k] == 1 else 0
        self._ones = ones
        self._sums: list[list[int]] = []  # (_read: for a long run, once asked)
        self._nonzero: list[int] = []
        self._same_to: list[int] = []

    def _read(self) -> None:
        values = self.digits.encode("ascii")
        count = len(values)
        # the sums of the digits before each place, as Luhn reads a digit (as it is, or
        # doubled), apart for the places of each parity
        for parity in (0, 1):
            for read in (_AS_IS, _DOUBLED):
                sums = (read[v] if k % 2 == parity else 0 for k, v in enumerate(values))
                self._sums.append([0, *itertools.accumulate(sums)])
        # from each place: the first digit that is not a 0, the end of its run of one digit
        nonzero, same_to = [count] * (count + 1), [count] * (count + 1)
        for k in range(count - 1, -1, -1):
            nonzero[k] = k if values[k] != 48 else nonzero[k + 1]
            same_to[k] = same_to[k + 1] if k + 1 < count and values[k + 1] == values[k] else k + 1
        self._nonzero, self._same_to = nonzero, same_to

    def card_digits(self, first: int, last: int) -> bool:
        """_card_digits_ok of the digits of groups first..last."""
        start, end = self.offsets[first], self.offsets[last + 1]
        if len(self.digits) <= _READ_DIRECTLY:
            return _card_digits_ok(self.digits[start:end])  # (a card's run: 13-19 digits)
        if not self._sums:
            self._read()
        start = min(self._nonzero[start], end)  # (zero padding is not the card's)
        if not _CARD_MIN <= end - start <= _CARD_MAX or self._same_to[start] >= end:
            return False
        parity = (end - 1) % 2  # (the check digit's: read as it is, then every other)
        as_is, doubled = self._sums[2 * parity], self._sums[2 * (1 - parity) + 1]
        total = as_is[end] - as_is[start] + doubled[end] - doubled[start]
        return total % 10 == 0

    def reaches_card(self, start: int) -> bool:
        """_reaches_card, in a step for groups of one digit."""
        sizes = self.sizes
        if sizes[start] == 1 and start + 1 < len(sizes) and sizes[start + 1] == 1:
            return self._ones[start] >= _CARD_MIN
        return _reaches_card(sizes, start)

    def single_ends(self, start: int) -> range | None:
        """The last groups of the windows _longest_card_from tries from `start` when it
        and the next group are one digit each (`4 1 1 1 ...`); None otherwise."""
        sizes = self.sizes
        if not (sizes[start] == 1 and start + 1 < len(sizes) and sizes[start + 1] == 1):
            return None
        padding = 1 if self.digits[self.offsets[start]] == "0" else 0
        last = min(start + _CARD_MAX - 1 + padding, start + self._ones[start] - 1)
        return range(start + _CARD_MIN - 1 + padding, last + 1)


_READ_DIRECTLY = 64  # (a run of at most this many digits: each window read as it is)
_AS_IS = [0] * 48 + list(range(10))  # (by the ASCII code of a digit)
_DOUBLED = [0] * 48 + [v * 2 - 9 if v > 4 else v * 2 for v in range(10)]


def _longest_card_from(text: str, groups: list[Span], start: int, run: _RunDigits) -> int | None:
    """Index of the last group of the longest valid card starting at group `start`."""
    tried: Sequence[int] | None = run.single_ends(start)
    if tried is None:
        candidates = []
        digits = 0
        first = text[groups[start][0] : groups[start][1]]
        padding = len(first) - len(first.lstrip("0"))
        for index in range(start, len(groups)):
            size = groups[index][1] - groups[index][0]
            if index > start and not 3 <= size <= 6:
                break  # a later group outside 3-6 digits is no card's, grouped either way
            digits += size
            if digits - padding > _CARD_MAX:
                break
            if digits - padding >= _CARD_MIN:
                candidates.append(index)
        tried = candidates
    for end in reversed(tried):
        if not run.card_digits(start, end):
            continue  # the check digit first: it turns down nine windows in ten
        window = groups[start : end + 1]
        parts = [text[a:b] for a, b in window]
        separators = [text[a[1] : b[0]] for a, b in itertools.pairwise(window)]
        if _card_window_ok(parts, separators):
            return end
    return None


# NNN-NN-NNNN with the ranges the SSA never issues excluded: area 000, 666 and 9xx,
# group 00, serial 0000. Not inside a longer separated number.
# Between its groups one separator, one kind throughout: a dash, a space, a dot, a slash, an
# underscore, a star, a colon, a bar, a tab, an en or em dash, a no-break or thin space, a
# character no one sees (soft hyphen, zero-width space) (123 45 6789, 078.05.1120,
# 078/05/1120); not a comma or semicolon (a list of numbers).
_SSN_SEPARATORS = "- ./_*:|\t\u2010-\u2015\u00a0\u2000-\u200d\u202f\u205f\u3000\u00ad\u2060\ufeff"
_SSN = re.compile(
    rf"(?<![0-9])(?<![0-9][{_SSN_SEPARATORS}])(?!000|666|9)[0-9]{{3}}(?P<sep>[{_SSN_SEPARATORS}])"
    rf"(?!00)[0-9]{{2}}(?P=sep)(?!0000)[0-9]{{4}}(?![{_SSN_SEPARATORS}]?[0-9])"
)


_SSN_HINT = re.compile(rf"[0-9]{{3}}[{_SSN_SEPARATORS}][0-9]{{2}}[{_SSN_SEPARATORS}][0-9]{{4}}")
# Nine digits written together (or grouped otherwise: 078 051 120) are an SSN only where a
# label says so: a bare nine-digit
# number is an order number, a phone number without its area, a ZIP+4, an amount in cents,
# far more often than an SSN, and masking every one would hide ordinary data. Labelled is
# `ssn`, `SSN#`, `social security (number|no|#)`, `soc sec` before it on its line or the line
# before (`SSN: 078051120`, `"ssn": "078051120"`, `customer_ssn | 078051120`, a label
# alone on its line), or just after it (`078051120 (SSN)`). A column or field so named is
# masked whole by its field rule already.
_SSN_BARE = re.compile(
    r"(?<![0-9])(?<![0-9][-./, ])[0-9](?:[-. ]?[0-9]){8}(?![0-9])(?![-./, ][0-9])"
)
_SSN_ISSUED = re.compile(r"(?!000|666|9)[0-9]{3}(?!00)[0-9]{2}(?!0000)[0-9]{4}")
_SSN_LABEL = re.compile(
    r"(?i)(?<![a-z])(?:ssn|ss#|ssan|soc(?:ial)?[ \t_.\-]*sec(?:urity)?)(?![a-z])"
)
_SSN_BARE_HINT = re.compile(r"[0-9](?:[-. ]?[0-9]){8}")
_SSN_BARE_HINT_ASCII = re.compile(_SSN_BARE_HINT.pattern.encode())
_SSN_LABEL_ASCII = re.compile(_SSN_LABEL.pattern.encode())
_SSN_LABEL_BEFORE = 32  # characters before the number a label may stand, on two lines
_SSN_LABEL_AFTER = 16


def _ssn_labelled(text: str, start: int, end: int) -> bool:
    before_from = max(0, start - _SSN_LABEL_BEFORE)
    line = text.rfind("\n", before_from, start)
    if line >= 0:  # (its own line and the one before)
        line = text.rfind("\n", before_from, line)
        if line >= 0:
            before_from = line + 1
    if _SSN_LABEL.search(text, before_from, start) is not None:
        return True
    after_to = min(len(text), end + _SSN_LABEL_AFTER)
    line = text.find("\n", end, after_to)
    return _SSN_LABEL.search(text, end, after_to if line < 0 else line) is not None


def _ssn_precheck(text: str) -> bool:
    if _SSN_HINT.search(text) is not None:
        return True
    lowered = text.lower()  # (every label begins `ss` or `soc`)
    return (
        ("ss" in lowered or "soc" in lowered)
        and _SSN_LABEL.search(text) is not None
        and _SSN_BARE_HINT.search(text) is not None
    )


def _ssn_spans(text: str) -> Iterator[Span]:
    found = [m.span() for m in _SSN.finditer(text)]
    yield from found
    if _SSN_BARE_HINT.search(text) is None:
        return
    seen = set(found)  # (a list looked through per bare match was quadratic)
    for m in _SSN_BARE.finditer(text):
        digits = m[0].replace("-", "").replace(".", "").replace(" ", "")
        if (
            m.span() not in seen
            and _SSN_ISSUED.fullmatch(digits)
            and _ssn_labelled(text, *m.span())
        ):
            yield m.span()


_TOKEN = re.compile(
    r"""
    (?i:\b(?P<scheme>bearer|basic))[ \t]+(?P<cred>[A-Za-z0-9\-._~+/]{8,}=*)
  | (?<![A-Za-z0-9_\-])(?P<key>
        eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*
      | sk-[A-Za-z0-9_\-]{20,}
      | (?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}
      | gh[pousr]_[A-Za-z0-9]{36,}
      | github_pat_[A-Za-z0-9_]{22,}
      | xox[abprs]-[A-Za-z0-9\-]{10,}
      | (?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Za-z])
      | AIza[0-9A-Za-z_\-]{35}
      | hv[sbr]\.[A-Za-z0-9_\-]{24,}
      | glpat-[A-Za-z0-9_\-]{20,}
      | npm_[A-Za-z0-9]{36}
      | SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}
    )
  | -----BEGIN[ ](?:[A-Z0-9]+[ ])*PRIVATE[ ]KEY(?:[ ]BLOCK)?-----
    (?P<pem>(?:(?!-----END[ ])[A-Za-z0-9+/=\s:,\-\\])+)
  | (?<![A-Za-z0-9+/])(?P<pem64>LS0tLS1CRUdJTi[A-Za-z0-9+/]{40,}={0,2})
  | (?i:token|api[_\-]?key|apikey|secret|passw(?:or)?d|pwd|credentials?|auth)
    ["']?[ \t]*[:=][ \t]*["']?(?P<assigned>[A-Za-z0-9+/_\-.]{32,}=*)
    """,
    re.VERBOSE,
)
# lower-case fragments of which every _TOKEN match contains at least one
_TOKEN_HINTS = (
    "bearer", "basic", "eyj", "sk-", "_live_", "_test_", "gh", "xox", "akia", "asia",
    "aiza", "token", "key", "secret", "passw", "pwd", "credential", "auth", "hvs.", "hvb.",
    "hvr.", "glpat-", "npm_", "sg.", "ls0tls1crudjti",
)  # fmt: skip
_MIN_TOKEN_TEXT = 15


def _shannon_bits(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _basic_credentials(cred: str) -> bool:
    try:
        decoded = base64.b64decode(cred + "=" * (-len(cred) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def _encoded_private_key(text: str) -> bool:
    """Whether base64 text begins a PEM private key (a kubeconfig's client-key-data, a
    Secret's data): its first line, decoded, names one."""
    head = text[: len(text[:96]) // 4 * 4]
    try:
        return b"PRIVATE KEY-----" in base64.b64decode(head, validate=True)
    except (binascii.Error, ValueError):
        return False


def _token_spans(text: str) -> Iterator[Span]:
    found = set()
    for m in _TOKEN.finditer(text):
        if m.group("key"):
            found.add(m.span("key"))
        elif m.group("pem"):
            found.add(m.span("pem"))
        elif m.group("pem64"):
            if _encoded_private_key(m.group("pem64")):
                found.add(m.span("pem64"))
        elif m.group("cred"):
            cred = m.group("cred")
            if m.group("scheme").lower() == "basic":
                if _basic_credentials(cred):
                    found.add(m.span("cred"))
            elif any(c.isdigit() for c in cred) or len(cred) >= 20:
                # "bearer instrument" is prose; opaque tokens carry digits or length
                found.add(m.span("cred"))
        elif _shannon_bits(m.group("assigned")) >= 3.0:
            found.add(m.span("assigned"))
    yield from sorted(found)
    lowered = text.lower()
    if any(hint in lowered for hint in _SECRET_HINTS):
        for span in _secret_spans(text):
            if span not in found:
                yield span


# A secret named as one: the value after a key that names a password, a secret, a token or
# an API key (DB_PASSWORD=hunter2, password: s3cr3t, PGPASSWORD='abc', "api_key": "x",
# --password hunter2, a YAML block (`password: |` and its indented lines),
# <password>x</password>, PASSWORD 'x' in SQL, IDENTIFIED BY 'x', a URL's user:password@,
# curl's -u user:password; the password a client named on its command line takes as a
# short flag: mysql/mysqldump/mysqld_safe/mariadb's -pS3cret, sshpass -p, redis-cli -a,
# mongodump/mongosh's -p, ldapsearch/ldapmodify's -w, openssl's -passin pass:S3cret,
# smbclient's -U user%S3cret, redis-server's --requirepass, as a cron
# line, sudo's COMMAND=, a process list or systemctl status's CGroup tree shows them) is
# masked whatever its length or randomness: _TOKEN's `assigned` reads only 32 random
# characters or more as a token. The key is any run of name characters whose words end in
# such a name (_secret_key); the value is quoted (to its closing quote, escapes read) or
# runs to a space, quote or list separator. A value that is already a mask
# (_masked_already) is left as it is: the masked text is read again (Masker._mask_text),
# and a field rule's `[REDACTED]` or a hash in a JSON document reaches the detectors too.
_SECRET_WORD = r"(?i:passw(?:or)?d|passphrase|passcode|pwd|pass|pw|secret|token|key)"  # noqa: S105
_SECRET_ASSIGNED = re.compile(
    rf"""
    (?P<word>{_SECRET_WORD}|(?i:identified[ \t]+by))
    (?P<sep>
        \\*["']?[ \t]*(?::=|=>|=(?!=)|:(?!//)|%3[dDaA])[ \t]*
      | \\*["']?[ \t]+(?=\\*["'`])
      | (?<=[A-Za-z])[ \t]+(?=[^\s\-])
    )
    (?:
        "(?P<dq>(?:[^"\\\n]|\\.)*)"
      | '(?P<sq>[^'\n]*)'
      | `(?P<bq>[^`\n]*)`
      | \\+["'](?P<eq>[^"'\\\n]+)
      | (?P<bare>[^\s"'`,;&|<>\\]+)
    )
  | (?P<block_word>{_SECRET_WORD})[ \t]*:[ \t]*[|>][+\-]?[0-9]?[ \t]*\r?\n
    (?P<indent>[ \t]+)(?P<block>[^\n]+(?:\n(?P=indent)[^\n]+)*)
  | <(?P<element_name>[\w.:\-]{{0,64}}?{_SECRET_WORD})
    (?:[ \t][^<>]*)?>(?P<element>[^<]+)</(?P=element_name)>
  | (?<=[A-Za-z0-9+.\-])://[^\s:/@?#]*:(?P<userinfo>[^\s/?#]+)@
  | (?<![\w\-])(?:-u|--user)[ \t]+["']?[^\s:"']+:(?P<user_arg>[^\s"']+)
  | (?<![\w\-])(?:mysql[a-z0-9_]*|mariadb(?:-[a-z]+)?)(?=[ \t])[^\n|;&()]*?[ \t]
    -p["']?(?P<mysql_p>[^\s"'`|;&()]+)
  | (?<![\w\-])mongo[a-z]*(?=[ \t])[^\n|;&()]*?[ \t]-p[ \t]*
    ["']?(?P<mongo_p>[^\s"'`|;&()\-][^\s"'`|;&()]*)
  | (?<![\w\-])ldap[a-z]+(?=[ \t])[^\n|;&()]*?[ \t]-w[ \t]*["']?(?P<ldap_w>[^\s"'`|;&()]+)
  | (?<![\w\-])-pass(?:in|out)?[ \t]+["']?pass:(?P<openssl_pass>[^\s"'`|;&()]+)
  | (?<![\w\-])(?:-U|--user(?:name)?)(?:[ \t]+|=)["']?[^\s%"'`|;&()]+%
    (?P<smb_pass>[^\s"'`|;&()]+)
  | (?<![\w\-])sshpass(?:[ \t]+-[a-oq-zA-Z][^\s]*)*[ \t]+-p[ \t]*["']?(?P<sshpass_p>[^\s"'`|;&()]+)
  | (?<![\w\-])redis-cli(?=[ \t])[^\n|;&()]*?[ \t](?:-a|--pass)[ \t]+
    ["']?(?P<redis_a>[^\s"'`|;&()]+)
    """,
    re.VERBOSE,
)
# where a _SECRET_ASSIGNED match may begin, in the text lower-cased
_SECRET_START = re.compile(
    r"pass|pw|secret|token|key|identified|<[\w.:\-]{0,64}?(?:pass|pw|secret|token|key)|://|-u"
    r"|--user|mysql|mariadb|redis-cli|sshpass|mongo|ldap|-pass"
)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_NAME_CHARS_READ = 64  # of a key's text before its last word, for its words
# what _SECRET_ASSIGNED needs: one of these (lower case) and a text this long (`a_pw=x`)
_SECRET_HINTS = ("pass", "pwd", "pw", "secret", "token", "key", "identified", "://", "-u",
                 "mysql", "mariadb", "redis-cli", "sshpass", "mongo", "ldap")  # fmt: skip
_SECRET_HINTS_ASCII = re.compile(b"|".join(re.escape(h.encode()) for h in _SECRET_HINTS))
_MIN_SECRET_TEXT = 5
_LONG_SECRET = 32  # (_TOKEN's `assigned` length)
# the last word of a key naming a secret; `pass`, `pwd` and `pw` only after another word
# (DB_PASS, MYSQL_PWD, smtpPass: `PWD=/home/ann` is the shell's working directory, `pass:
# 12` a test count); `key` only after a word saying whose (api, access, secret, private ...)
_SECRET_WORDS = frozenset(("password", "passwd", "passphrase", "passcode", "secret", "token"))
_SECRET_COMPOUNDS = ("password", "passwd", "passphrase", "passcode", "secret", "token", "apikey",
                     "accesskey", "secretkey", "privatekey", "requirepass")  # fmt: skip
_AFTER_A_WORD = frozenset(("pass", "pwd", "pw"))
_KEY_OWNERS = frozenset(
    ("api", "access", "secret", "private", "auth", "encryption", "signing", "master",
     "session", "client", "app", "license", "account", "storage", "shared")
)  # fmt: skip
# a value that names no secret: a literal of JSON, YAML or a language
_NO_SECRET = frozenset(("true", "false", "null", "none", "nil", "undefined", "yes", "no"))
# what the strategies make of a value (_apply, mask_field): a redaction, a hash, a partial
# mask (****, ****2345, ***-**-6789, +* *** **00, a***@example.com)
_MASK_FORM = re.compile(
    rf"\[REDACTED(?::[a-z_]+)?\]|{HASH_PREFIX}[0-9a-f]{{{HASH_HEX_DIGITS}}}|\*\*|\+\*|[^\s*]?\*\*\*@"
)


@functools.lru_cache(maxsize=1024)
def _secret_key(name: str) -> bool:
    """Whether a key's words end in the name of a secret (password, DB_PASSWORD, dbPass,
    client_secret, x-api-key, AWS_SECRET_ACCESS_KEY, IDENTIFIED BY)."""
    words = name_words(name.lstrip("-"))
    if not words:
        return False
    last = words[-1]
    if last in _SECRET_WORDS or last.endswith(_SECRET_COMPOUNDS):
        return True
    if len(words) < 2:
        return False
    if last in _AFTER_A_WORD:
        return True
    if last == "key":
        return words[-2] in _KEY_OWNERS or words[-2].endswith(_SECRET_COMPOUNDS)
    return words[-2:] == ("identified", "by")


def _masked_already(value: str) -> bool:
    return _MASK_FORM.match(value) is not None


def _trim_closers(value: str) -> str:
    """A bare value without the brackets that close around it (`(password=abc)`,
    `{user=ann, pwd=abc}`): closers beyond the openers it holds."""
    while value and value[-1] in ")]}":
        opener = "([{"[")]}".index(value[-1])]
        if value.count(opener) >= value.count(value[-1]):
            break
        value = value[:-1]
    return value


def _key_before(text: str, end: int) -> str:
    """The key whose last word ends at `end`: the run of name characters up to it."""
    start = end
    while start > max(0, end - _NAME_CHARS_READ) and (
        text[start - 1] in _NAME_CHARS or text[start - 1].isalnum()
    ):
        start -= 1
    return text[start:end]


def _next_secret(text: str, lowered: str, pos: int) -> re.Match[str] | None:
    """_SECRET_ASSIGNED's next match from `pos`, tried only where _SECRET_START finds a
    beginning in `lowered`, the text lower-cased (a case-insensitive search of the whole
    pattern took a second a megabyte); all searched when `lowered` is empty."""
    if not lowered:
        return _SECRET_ASSIGNED.search(text, pos)
    while (begin := _SECRET_START.search(lowered, pos)) is not None:
        m = _SECRET_ASSIGNED.match(text, begin.start())
        if m is not None:
            return m
        pos = begin.start() + 1
    return None


def _secret_spans(text: str) -> Iterator[Span]:
    lowered = text.lower()
    if len(lowered) != len(text):  # (a letter whose lower case is longer: search it all)
        lowered = ""
    pos = 0
    while (m := _next_secret(text, lowered, pos)) is not None:
        group = m.lastgroup or ""
        start, end = m.span(group)
        # (a match turned down is read on from its value: `monkey: password=abc`)
        pos = end if start < end else m.end()
        if group in ("dq", "sq", "bq", "eq", "bare"):
            word = m["word"]
            name = word if " " in word or "\t" in word else _key_before(text, m.end("word"))
            if not _secret_key(name) or (
                # (`token expired`: a key and a word apart are a flag's only)
                group == "bare" and not m["sep"].strip(" \t") and not name.startswith("-")
            ):
                pos = start
                continue
            if group == "bare":
                end = start + len(_trim_closers(m["bare"]))
        elif group in ("block", "element") and not _secret_key(
            _key_before(text, m.end("block_word")) if group == "block" else m["element_name"]
        ):
            pos = start
            continue
        value = text[start:end]
        if not value or value.lower() in _NO_SECRET or _masked_already(value):
            continue
        if len(value) >= _LONG_SECRET and _shannon_bits(value) < 3.0:
            continue  # (token=aaaa...: filler, as _TOKEN's `assigned` reads a long value)
        yield start, end


# any of _TOKEN_HINTS or _SECRET_HINTS, in one search (two scans of every hint cost more
# than the rest of a short value's masking)
_TOKEN_OR_SECRET_HINT = re.compile("|".join(re.escape(h) for h in (*_TOKEN_HINTS, *_SECRET_HINTS)))


def _token_precheck(text: str) -> bool:
    if len(text) < _MIN_SECRET_TEXT:
        return False
    return _TOKEN_OR_SECRET_HINT.search(text.lower()) is not None


# the prechecks over ASCII bytes: a digit count first, as most values have too few digits
# for a card or an SSN, and the token hints only in text long enough to hold a token
_NON_DIGITS = bytes(b for b in range(256) if not 0x30 <= b <= 0x39)
_TOKEN_HINTS_ASCII = re.compile(b"|".join(re.escape(h.encode()) for h in _TOKEN_HINTS))
_CARD_HINT_ASCII = re.compile(rb"[0-9](?:[^0-9A-Za-z]{0,4}[0-9]){12}")
_SSN_HINT_ASCII = re.compile(rb"[0-9]{3}[- ./_*:|\t][0-9]{2}[- ./_*:|\t][0-9]{4}")


# what every detector needs at the least, whichever a masker runs: a token is 15 characters
# long or more, an email has an @, a card 13 digits, an SSN and a telephone number 9 (the
# gates below say so)
_QUIET_BELOW = _MIN_TOKEN_TEXT
_QUIET_DIGITS = min(_CARD_MIN, 9, phone_numbers.LEAST_DIGITS)
# a JSON number below this in magnitude has fewer digits before any point than that
_QUIET_NUMBER = 10 ** (_QUIET_DIGITS - 1)


_BYTEA_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})+")


def _token_gate(data: bytes, digits: int) -> bool:
    if len(data) < _MIN_SECRET_TEXT:
        return False
    lowered = data.lower()
    return (
        _TOKEN_HINTS_ASCII.search(lowered) is not None
        or _SECRET_HINTS_ASCII.search(lowered) is not None
    )


def _card_gate(data: bytes, digits: int) -> bool:
    return digits >= _CARD_MIN and _CARD_HINT_ASCII.search(data) is not None


def _ssn_gate(data: bytes, digits: int) -> bool:
    if digits < 9:
        return False
    if _SSN_HINT_ASCII.search(data) is not None:
        return True
    lowered = data.lower()  # (every label begins `ss` or `soc`)
    return (
        (b"ss" in lowered or b"soc" in lowered)
        and _SSN_LABEL_ASCII.search(data) is not None
        and _SSN_BARE_HINT_ASCII.search(data) is not None
    )


def _phone_precheck(text: str) -> bool:
    # (the hint first: counting digits costs more, and most text has no hint)
    return phone_numbers.phone_precheck(text) and _digit_count(text) >= phone_numbers.LEAST_DIGITS


def _phone_gate(data: bytes, digits: int) -> bool:
    return digits >= phone_numbers.LEAST_DIGITS and phone_numbers.phone_gate(data)


# An IBAN (ISO 13616): a country code, two check digits and the country's account number,
# written together or in groups of four parted by a space or a dash (`GB82 WEST 1234 5698
# 7654 32`, `DE89370400440532013000`), of the length its country's IBANs have (the IBAN
# registry) and passing the ISO 7064 mod-97 check: a reader's upper-case id or hash that
# begins with two letters and two digits passes both one time in many thousands.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ \-]?[A-Za-z0-9]{4}){2,7}(?:[ \-]?[A-Za-z0-9]{1,4})?"
    r"(?![A-Za-z0-9])"
)
_IBAN_HINT = re.compile(r"[A-Za-z]{2}[0-9]{2}[ \-]?[A-Za-z0-9]{4}")
_IBAN_HINT_ASCII = re.compile(_IBAN_HINT.pattern.encode())


def _iban_valid(written: str) -> bool:
    compact = written.replace(" ", "").replace("-", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _iban_spans(text: str) -> Iterator[Span]:
    for m in _IBAN.finditer(text):
        if _iban_valid(m[0]):
            yield m.span()


def _iban_gate(data: bytes, digits: int) -> bool:
    return digits >= 2 and len(data) >= 15 and _IBAN_HINT_ASCII.search(data) is not None


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("token", _token_precheck, _token_spans, _token_gate),
        Detector("email", _email_precheck, _email_spans, _email_gate),
        Detector(
            "credit_card", lambda t: _CARD_HINT.search(t) is not None, _card_spans, _card_gate
        ),
        Detector(
            "iban",
            lambda t: len(t) >= 15 and _IBAN_HINT.search(t) is not None,  # (Norway's: 15)
            _iban_spans,
            _iban_gate,
        ),
        Detector("ssn", _ssn_precheck, _ssn_spans, _ssn_gate),
        Detector("phone", _phone_precheck, phone_numbers.phone_spans, _phone_gate),
    )
}


class _AsciiForms(dict[int, int]):
    """str.translate's table: a decimal digit of any script as its ASCII digit (`٤١١١`,
    `४१११`, fullwidth digits), a fullwidth form of an ASCII character as that character
    (U+FF20 as @, U+FF1A as :), a space of any width as a space and a dash as a hyphen
    (`+1\u00a0415\u00a0555\u00a02671`, `password:\u2009x`); every other character as it
    is. One character for one, so a span found in the text read is the same span of the
    text itself."""

    def __missing__(self, code: int) -> int:
        char = chr(code)
        if char.isdecimal():
            found = 48 + unicodedata.decimal(char)
        elif char.isdigit() and unicodedata.digit(char, -1) >= 0:
            # a digit written raised, lowered or in a circle (`⁴¹¹¹`, `₄`, `④`, `➍`)
            found = 48 + unicodedata.digit(char)
        elif 0xFF01 <= code <= 0xFF5E:
            found = code - 0xFEE0
        elif unicodedata.category(char) == "Zs":
            found = 32  # a no-break, thin or ideographic space (`+1\u00a0415\u00a0555...`)
        elif unicodedata.category(char) == "Pd" or code == 0x2212:
            found = 45  # a hyphen, an en or em dash, a minus sign
        else:
            found = code
        if len(self) < 4096:
            self[code] = found
        return found


_ASCII_FORMS = _AsciiForms()
# a character _ASCII_FORMS changes: a digit past ASCII or a fullwidth form
_OTHER_FORM = re.compile(
    r"(?![0-9])\d|[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u2010-\u2015\u2212\u2e3a\u2e3b"
    r"\ufe58\ufe63\uff01-\uff5e\u00b2\u00b3\u00b9\u2070-\u2089\u2460-\u2468\u2474-\u247c"
    r"\u2488-\u2490\u24f5-\u24fd\u2776-\u277e\u2780-\u2788\u278a-\u2792]"
)


# line breaks a reader's screen shows (a terminal's vertical tab and form feed, NEL, the
# Unicode line and paragraph separators, the information separators str.splitlines
# reads as breaks) where the proxies part a text's lines at CR and LF alone: a value
# across them is read as one line's (Masker._one_line_hits), as across lines parted by LF
_OTHER_BREAKS = re.compile("[\v\f\x1c-\x1e\x85\u2028\u2029]")
_BREAKS_AS_SPACES = dict.fromkeys(map(ord, "\v\f\x1c\x1d\x1e\x85\u2028\u2029"), " ")

# characters no one sees on screen (format characters, joiners, bidirectional marks,
# variation selectors, the soft hyphen, fillers), and marks drawn over the character before
# them (`4\u0301111`, a keycap's `4\ufe0f\u20e3`: the digit read all the same): a value
# read with them and without
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
)


# An HTML character reference, numeric (`&#52;`, `&#x34;`, the semicolon optional as
# browsers read it) or one of the names a number or an address is written with
_REFERENCE = re.compile(
    r"&(?:#(?:[xX]0*([0-9a-fA-F]{1,6})|0*([0-9]{1,7}))|(nbsp|ensp|emsp|thinsp|hyphen|dash|ndash"
    r"|mdash|minus|period|comma|lpar|rpar|plus|num|amp|commat|colon|sol|lowbar));?"
)
_REFERENCE_ASCII = re.compile(_REFERENCE.pattern.encode())
_REFERENCE_NAMES = {
    "nbsp": " ", "ensp": " ", "emsp": " ", "thinsp": " ", "hyphen": "-", "dash": "-",
    "ndash": "-", "mdash": "-", "minus": "-", "period": ".", "comma": ",", "lpar": "(",
    "rpar": ")", "plus": "+", "num": "#", "amp": "&", "commat": "@", "colon": ":", "sol": "/",
    "lowbar": "_",
}  # fmt: skip


# What else writes a character other than as itself, which its reader decodes: a percent
# escape (`%34%31...`, `078%2D05%2D1120`: a URL's reader), a JSON or C string's `\\u0034`
# and `\\x34` (a JSON reader), and markup that shows nothing between the characters it
# splits: an inline tag (`4111<b>1111</b>...`, `ann<span>@</span>...`) or a comment shows
# nothing, any other tag (a cell, a line break) a space, as a browser lays them out.
_OTHER_ESCAPE = (
    r"|%([0-9A-Fa-f]{2})|\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})"
    r"|<!--.{0,256}?-->|<(/?)([A-Za-z][A-Za-z0-9]{0,15})(?:[ \t\n/][^<>]{0,512})?>"
)
_ESCAPED = re.compile(_REFERENCE.pattern + _OTHER_ESCAPE, re.DOTALL)
_ESCAPED_ASCII = re.compile(_ESCAPED.pattern.encode(), re.DOTALL)
_INLINE_TAGS = frozenset(
    ("a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn", "em", "font",
     "i", "ins", "kbd", "mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub",
     "sup", "time", "tt", "u", "var", "wbr")
)  # fmt: skip


def _escaped_char(found: re.Match[str]) -> str:
    """What a reader shows for one _ESCAPED match."""
    hexa, decimal, name, percent, json_u, c_x, _, tag = found.groups()
    if name is not None:
        return _REFERENCE_NAMES[name]
    if tag is not None:
        return "" if tag.lower() in _INLINE_TAGS else " "
    if found[0].startswith("<!--"):
        return ""
    if hexa is not None or json_u is not None or percent is not None or c_x is not None:
        code = int(next(g for g in (hexa, json_u, percent, c_x) if g is not None), 16)
    else:
        code = int(decimal)
    return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else "\ufffd"


def _referenced(text: str) -> tuple[str, list[int], list[int]] | None:
    """`text` as its reader shows it (_ESCAPED: `&#52;&#49;...`, `%34%31...`,
    `\\u0034...`, `4111<b>1111</b>...` as 41..., 41..., 41..., 41111111...), and where each
    character shown starts and ends in `text`; None when it has nothing so written."""
    read: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for found in _ESCAPED.finditer(text):
        # (the text between escapes, as it is: C-level copies, not one append a character)
        read.append(text[pos : found.start()])
        starts.extend(range(pos, found.start()))
        ends.extend(range(pos + 1, found.start() + 1))
        char = _escaped_char(found)
        if char:
            read.append(char)
            starts.append(found.start())
            ends.append(found.end())
        pos = found.end()
    if not pos:
        return None
    read.append(text[pos:])
    starts.extend(range(pos, len(text)))
    ends.extend(range(pos + 1, len(text) + 1))
    return "".join(read), starts, ends


def as_ascii(text: str) -> str:
    """`text` with its other digits and fullwidth forms as ASCII (_AsciiForms), for the
    detectors: as its reader reads them, at the same positions."""
    if _OTHER_FORM.search(text) is None:
        return text
    return text.translate(_ASCII_FORMS)


def detect(name: str, text: str) -> list[Span]:
    """Spans of `text` that detector `name` finds (for tests and diagnostics)."""
    detector = DETECTORS[name]
    return list(detector.find(text)) if detector.precheck(text) else []


# ---------------------------------------------------------------- strategies


def _hide_tail(value: str, keep: int) -> str:
    if len(value) < 2 * keep:
        return "****"
    return "****" + value[-keep:]


def _a_digit(char: str) -> bool:
    """A digit as the detectors read one (_AsciiForms): of any script, raised, circled."""
    return char.isdecimal() or (char.isdigit() and unicodedata.digit(char, -1) >= 0)


def _hide_digits(value: str, keep: int) -> str:
    """Star every digit (of any script: a fullwidth card is a card; raised or circled
    too) except the last `keep`, leaving separators in place."""
    total = sum(map(_a_digit, value))
    reveal_from = total - keep if total >= 2 * keep else total
    out, seen = [], 0
    for char in value:
        if _a_digit(char):
            out.append(char if seen >= reveal_from else "*")
            seen += 1
        else:
            out.append(char)
    return "".join(out)


# a token or a password this long keeps its last 4 characters under partial; a shorter one
# none
_SHOWN_TOKEN_LEAST = 16
_SPACE = re.compile(r"\s")


def _hide_alnum(value: str, keep: int) -> str:
    """Star every letter and digit except the last `keep`, leaving separators in place."""
    total = sum(map(str.isalnum, value))
    out, seen = [], 0
    for char in value:
        if char.isalnum():
            out.append(char if seen >= total - keep else "*")
            seen += 1
        else:
            out.append(char)
    return "".join(out)


def _partial(kind: str | None, value: str) -> str:
    if kind == "email":
        # (the @ written in any way: ann(at)example.com, ann [@] example.com, ann at ...)
        marks = list(_AT_SPLIT.finditer(value))
        if marks:
            local, domain = value[: marks[-1].start()], value[marks[-1].end() :]
            head = local[0] if len(local) >= 2 else ""
            return f"{head}***@{domain}"
    if kind in ("credit_card", "ssn"):
        return _hide_digits(value, 4)
    if kind == "iban":
        return _hide_alnum(value, 4)
    if kind == "phone":
        return _hide_digits(value, 2)
    if kind == "token" and (len(value) < _SHOWN_TOKEN_LEAST or _SPACE.search(value) is not None):
        # (a password's last 4 of 10 characters are too much of it; a passphrase's or a
        # YAML block's last 4 are a word of it)
        return "****"
    return _hide_tail(value, 4 if kind == "token" else 2)


def _kind_of(value: str) -> str | None:
    """Which detector describes the whole value, so a partial field keeps the right part."""
    stripped = value.strip()
    for name in ("email", "credit_card", "iban", "ssn"):
        if detect(name, stripped) == [(0, len(stripped))]:
            return name
    if any(end == len(stripped) for _, end in detect("token", stripped)):
        return "token"
    return None


# ---------------------------------------------------------------- the masker


def _segments(name: str) -> tuple[str, ...]:
    return tuple(name.casefold().split("."))


# a name's words: runs of capitals, a capital and its lower case, digits (camelCase breaks);
# in a name not all ASCII, a run of letters holding one outside ASCII is one word too
# (`hasło`, `пароль`, `密码`: words of other scripts)
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_NAME_PARTS_WIDE = re.compile(r"[^\W\d_]*[^\W\d_A-Za-z][^\W\d_]*|" + _NAME_PARTS.pattern)
_KEY_CHARS_READ = 128  # of a key's text, for its words


# a character a name's writer escaped (a JSON string's \\u0070, \\x70, an HTML character
# reference &#112; or &#x70;, a percent-escape %70): the name its reader reads has it
_ESCAPED_CHAR = re.compile(
    r"\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|&#[xX]([0-9A-Fa-f]{1,6});?|&#([0-9]{1,7});?"
    r"|%([0-9A-Fa-f]{2})"
)


def _unescaped(found: re.Match[str]) -> str:
    code = int(found[4], 10) if found[4] else int(next(g for g in found.groups() if g), 16)
    return chr(code) if code < 0x110000 else ""


def name_words(name: str) -> tuple[str, ...]:
    """A field name's words, lower-cased: split at what is not a letter or digit and where
    camelCase changes case (`customerPhoneNumber`, `customer_phone-number`, `PHONE_NUMBER`:
    customer, phone, number), read as NFKD (fullwidth letters are letters) with format
    and control characters and combining marks dropped (`pass\u200bword` is password,
    `contraseña` contrasena, `Téléphone` telephone: as a reader reads past an accent),
    and its escaped characters as its reader reads them (`\\u0070assword`, `&#112;assword`,
    `pass%77ord`: password)."""
    for _ in range(3):  # (escapes escaped again: `\\u0026#112;`, `%2570`)
        if "\\" not in name and "&#" not in name and "%" not in name:
            break
        unescaped = _ESCAPED_CHAR.sub(_unescaped, name)
        if unescaped == name:
            break
        name = unescaped
    text = unicodedata.normalize("NFKD", name)
    parts = _NAME_PARTS
    if not text.isascii() or not text.isprintable():
        text = "".join(c for c in text if unicodedata.category(c)[0] not in "CM")
        parts = _NAME_PARTS if text.isascii() else _NAME_PARTS_WIDE
    return tuple(part.lower() for part in parts.findall(text))


def field_words(masker: Masker) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(field, its words) for each field rule of the masker naming one name (a trail of
    keys, `user.email` or `/user/email`, names where it is: read as it is written)."""
    out = []
    for rule in masker.rules:
        if rule.field and not rule.derived and "." not in rule.field:
            words = name_words(rule.field)
            if words:
                out.append((rule.field, words))
                out += [(rule.field, alias) for alias in FIELD_ALIASES.get(words, ())]
    return tuple(out)


# other words a field is named by (a rule `password` masks `pwd`, `passwd`, `client_secret`
# too): the short and older names APIs, config files and environments give these fields
FIELD_ALIASES: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {
    ("password",): (
        ("pwd",), ("passwd",), ("pass",), ("pw",), ("passphrase",), ("passcode",),
        ("secret",), ("credential",), ("credentials",), ("identified", "by"),
    ),
    ("api", "key"): (("apikey",), ("access", "key"), ("secret", "key"), ("private", "key")),
    ("token",): (("jwt",), ("bearer",), ("authorization",), ("session", "id")),
    ("ssn",): (("social", "security"), ("social", "security", "number")),
    ("phone",): (
        ("tel",), ("telephone",), ("mobile",), ("msisdn",), ("cellphone",),
        ("phonenumber",), ("mobilephone",),
    ),
    ("card", "number"): (("ccn",), ("cc", "number"), ("credit", "card")),
    ("email",): (("e", "mail"), ("mail", "address")),
}  # fmt: skip
# the same names in other languages an API, a form or a log may label them in (`contraseña:`,
# `Passwort`, `mot de passe`, `Teléfono`), read as name_words reads a name
_OTHER_LANGUAGES = {
    ("password",): (
        "contraseña", "clave de acceso", "passwort", "kennwort", "mot de passe", "motdepasse",
        "senha", "palavra passe", "wachtwoord", "lösenord", "passord", "adgangskode",
        "salasana", "hasło", "heslo", "jelszó", "şifre", "parola d'accesso", "пароль",
        "密码", "密碼", "パスワード", "비밀번호", "كلمة المرور", "סיסמה",
    ),
    ("phone",): (
        "teléfono", "telefono", "telefon", "telefone", "telefoon", "téléphone", "móvil",
        "celular", "cellulare", "handynummer", "rufnummer", "телефон", "电话", "電話",
        "携帯", "전화", "هاتف",
    ),
    ("email",): (
        "correo", "courriel", "adresse électronique", "endereço eletrônico", "e-posta",
        "почта", "邮箱", "電子郵件", "メール", "이메일", "البريد الإلكتروني",
    ),
    ("card", "number"): (
        "numero de tarjeta", "número de tarjeta", "tarjeta de crédito", "numéro de carte",
        "carte bancaire", "carte de crédit", "kartennummer", "kreditkarte", "numero carta",
        "carta di credito", "número do cartão", "cartão de crédito", "номер карты",
        "卡号", "カード番号",
    ),
    ("ssn",): (
        "número de seguro social", "numéro de sécurité sociale", "sécurité sociale",
        "sozialversicherungsnummer", "codice fiscale", "номер социального страхования",
    ),
    ("api", "key"): ("clave api", "clé api", "api schlüssel", "chiave api"),
}  # fmt: skip
for _words, _names in _OTHER_LANGUAGES.items():
    FIELD_ALIASES[_words] += tuple(name_words(_name) for _name in _names)
# a field's name this long written into one word with others (`PGPASSWORD`, `dbpassword`,
# `nocardnumber`) names it too; shorter ones would be found inside other words (`iphone`)
COMPOUND_LEAST = 8


def worded_field(
    worded: tuple[tuple[str, tuple[str, ...]], ...], words: tuple[str, ...], plural: bool = True
) -> str:
    """The first field whose words `words` hold in a row, or whose words written as one
    (`cardnumber`) one of `words` is, a word in the plural too (`phones`, `cardNumbers`,
    `passwords`: a list of the field's values) unless `plural` is false; "" for none."""
    # the words a field's words may begin at (most names have none: no word begins like a
    # field's first word or ends in a long one)
    prefixes, suffixes, plan, by_first, long_rules = _word_gate(worded)
    starts = [i for i, w in enumerate(words) if w.startswith(prefixes) or w.endswith(suffixes)]
    if not starts:
        return ""
    endings = ("", "s", "es") if plural else ("",)
    # the rules a start may match: those whose first word begins it (a dict look-up per
    # leading part of the word), and those with long endings when it ends in one; in
    # the plan's order (the first field found is the answer)
    chosen: set[int] = set()
    for start in starts:
        word = words[start]
        for end in range(1, len(word) + 1):
            chosen.update(by_first.get(word[:end], ()))
        if word.endswith(suffixes):
            chosen.update(long_rules)
    for index in sorted(chosen):
        field, rule, joined, longs = plan[index]
        for start in starts:
            word = words[start]
            if not word.startswith(rule[0]) and not (longs and word.endswith(longs)):
                continue  # (neither way of _same_word can match this rule here)
            if _same_word(word, joined, endings) or (
                len(words) - start >= len(rule)
                and all(
                    _same_word(w, r, endings) for w, r in zip(words[start:], rule, strict=False)
                )
            ):
                return field
    return ""


# a rule of worded_field's: (field, its words, them joined, the long endings it may match)
_WordedRule = tuple[str, tuple[str, ...], str, tuple[str, ...]]


@functools.lru_cache(maxsize=64)
def _word_gate(
    worded: tuple[tuple[str, tuple[str, ...]], ...],
) -> tuple[
    tuple[str, ...],
    tuple[str, ...],
    list[tuple[str, tuple[str, ...], str, tuple[str, ...]]],
    dict[str, tuple[int, ...]],
    tuple[int, ...],
]:
    """What a word must begin or end with for worded_field to find a field in it: a field's
    first word (its words joined begin so too), or a word of COMPOUND_LEAST letters or
    more, or those joined, with an ending (_same_word's two ways to match); and per rule
    (field, words, joined, its long endings). One C-level startswith/endswith per word
    then passes over the names that hold no field, and per rule over the words it cannot
    begin at: the rules by their first word, and those with long endings, so a word is
    tried against the few it may match, not every one (a field's other names in other
    languages make a hundred)."""
    plan: list[_WordedRule] = []
    for field, rule in worded:
        if not rule:
            continue
        joined = "".join(rule)
        longs = tuple(
            whole + ending
            for whole in dict.fromkeys((rule[0], joined))
            if len(whole) >= COMPOUND_LEAST
            for ending in ("", "s", "es")
        )
        plan.append((field, rule, joined, longs))
    prefixes = tuple(sorted({rule[0] for _, rule, _, _ in plan}))
    suffixes = tuple(sorted({end for *_, longs in plan for end in longs}))
    firsts: dict[str, list[int]] = {}
    for index, (_, rule, _, _) in enumerate(plan):
        firsts.setdefault(rule[0], []).append(index)
    by_first = {first: tuple(indices) for first, indices in firsts.items()}
    long_rules = tuple(index for index, (*_, longs) in enumerate(plan) if longs)
    return prefixes, suffixes, plan, by_first, long_rules


def _same_word(word: str, rule: str, endings: tuple[str, ...]) -> bool:
    """`word` is `rule` with one of `endings` (`phones`, `addresses`: the plural), or
    ends so after other letters when `rule` is COMPOUND_LEAST letters or more
    (`pgpassword`)."""
    if word.startswith(rule) and word[len(rule) :] in endings:
        return True
    if len(rule) < COMPOUND_LEAST:
        return False
    return any(word.endswith(rule + ending) for ending in endings)


def stricter(a: MaskRule, b: MaskRule) -> MaskRule:
    """The stricter of two rules (redact > hash > partial); `a` when they are alike."""
    return b if _STRICTNESS[b.strategy] > _STRICTNESS[a.strategy] else a


def _both_derived(a: MaskRule, b: MaskRule) -> MaskRule:
    """Two derived rules as one: the stricter strategy, over the positions of both when
    both name positions of results of one width, else over every computed column."""
    rule = stricter(a, b)
    if a.outputs and a.outputs == b.outputs:
        positions = tuple(sorted(set(a.positions) | set(b.positions)))
        return MaskRule(
            derived=True, strategy=rule.strategy, positions=positions, outputs=a.outputs
        )
    return MaskRule(derived=True, strategy=rule.strategy)


# the longest text the detectors read (mask_text); a longer one is masked whole: a reader's
# megabytes of digit groups held a proxy's event loop seconds per megabyte
MAX_READ_CHARS = 1024 * 1024
# times a masked text is read again for a value its masks' kept characters make (_mask_text)
RESCANS = 3


class Masker:
    """Applies one verdict's mask rules. Immutable; safe to share between tasks.

    Field rules name columns or JSON fields, matched case-insensitively on dotted paths:
    a rule matches when its segments are the trailing segments of the name (`email`
    matches `email` and `customers.email`; `user.email` matches `$.user.email`). An
    unqualified column name (Postgres RowDescription carries no table) also matches a
    qualified rule with the same last segment: masking too much is the safe mistake.
    When several rules match, the strictest strategy wins (redact > hash > partial).
    Detector rules run over every other text value.
    """

    __slots__ = ("_derived", "_detector_rules", "_detectors", "_field_rules", "_gates",
                 "_hash_key", "_key_rules", "_last_segment", "_max_depth", "_rules",
                 "_worded")  # fmt: skip
    _derived: MaskRule | None
    _detector_rules: dict[str, MaskRule]
    _detectors: tuple[tuple[Detector, str], ...]
    _gates: tuple[Callable[[bytes, int], bool], ...]
    _field_rules: dict[tuple[str, ...], MaskRule]
    _hash_key: bytes
    _last_segment: dict[str, MaskRule]
    _max_depth: int
    _rules: tuple[MaskRule, ...]
    _worded: tuple[tuple[str, tuple[str, ...]], ...]
    _key_rules: dict[tuple[str, bool], MaskRule | None]

    def __init__(self, rules: Sequence[MaskRule], hash_key: bytes) -> None:
        rules = tuple(rules)
        field_rules: dict[tuple[str, ...], MaskRule] = {}
        detectors: dict[str, MaskRule] = {}
        derived: MaskRule | None = None
        for rule in rules:
            _check_rule(rule)
            if rule.derived:
                derived = rule if derived is None else _both_derived(derived, rule)
            elif rule.field:
                key = _segments(rule.field)
                field_rules[key] = stricter(field_rules.get(key, rule), rule)
            else:
                detectors[rule.detector] = stricter(detectors.get(rule.detector, rule), rule)
        if any(r.strategy == "hash" for r in rules) and len(hash_key) < MIN_HASH_KEY_BYTES:
            raise MaskingError(f"hash strategy needs a key of at least {MIN_HASH_KEY_BYTES} bytes")
        last: dict[str, MaskRule] = {}
        for segs, rule in field_rules.items():
            last[segs[-1]] = stricter(last.get(segs[-1], rule), rule)
        # detectors in a fixed priority order so overlapping matches resolve the same way
        ordered = [(DETECTORS[n], detectors[n].strategy) for n in DETECTORS if n in detectors]
        object.__setattr__(self, "_rules", rules)
        object.__setattr__(self, "_derived", derived)
        object.__setattr__(self, "_hash_key", bytes(hash_key))
        object.__setattr__(self, "_field_rules", field_rules)
        object.__setattr__(self, "_last_segment", last)
        object.__setattr__(self, "_worded", field_words(self))
        object.__setattr__(self, "_key_rules", {})  # key → rule_for_key's answer, bounded
        object.__setattr__(self, "_max_depth", max((len(k) for k in field_rules), default=0))
        object.__setattr__(self, "_detector_rules", detectors)
        object.__setattr__(self, "_detectors", tuple(ordered))
        object.__setattr__(self, "_gates", tuple(detector.gate for detector, _ in ordered))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Masker is immutable")

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __repr__(self) -> str:
        return f"Masker({[r.to_dict() for r in self._rules]!r})"

    @property
    def rules(self) -> tuple[MaskRule, ...]:
        return self._rules

    @property
    def detector_rules(self) -> dict[str, MaskRule]:
        """The strictest detector rule for each detector named (read only)."""
        return self._detector_rules

    @property
    def derived(self) -> MaskRule | None:
        """The rule for result columns that are not stored table columns, if any."""
        return self._derived

    # -- field rules

    def rule_for(self, path: Sequence[str]) -> MaskRule | None:
        """The field rule for a full path of names (JSON keys, or schema/table/column)."""
        segs = tuple(s for name in path for s in _segments(name))
        found: MaskRule | None = None
        for length in range(1, min(len(segs), self._max_depth) + 1):
            rule = self._field_rules.get(segs[-length:])
            if rule is not None:
                found = rule if found is None else stricter(found, rule)
        return found

    def rule_for_key(self, path: tuple[str, ...], key: str, plural: bool = True) -> MaskRule | None:
        """The field rule for a JSON key at `path` (the path's last names, the key's
        included): by its full path (rule_for), else the rule of a one-name field the
        key's words name (worded_field: `user_password`, `userPassword`, `DB_PASSWORD`,
        fullwidth or zero-width-split letters; `phones` unless `plural` is false: a
        number under `tokens` is a count), as the HTTP proxy reads a body's names."""
        rule = self.rule_for(path)
        if rule is not None or not self._worded:
            return rule
        known = self._key_rules
        if (key, plural) in known:
            return known[key, plural]
        field = worded_field(self._worded, name_words(key[:_KEY_CHARS_READ]), plural)
        rule = self._field_rules.get(_segments(field)) if field else None
        if len(known) >= _KEY_RULES_KEPT:
            known.clear()
        known[key, plural] = rule
        return rule

    def rule_for_any(self, names: Sequence[str]) -> MaskRule | None:
        """The strictest field rule matching any of these column names, or None."""
        found: MaskRule | None = None
        for rule in self.columns_to_mask(list(names)).values():
            found = rule if found is None else stricter(found, rule)
        if found is None:
            # (a name in other words: `pwd`, `userPassword`, as rule_for_key reads a key)
            for name in names:
                worded = self.rule_for_key((name,), name, plural=False)
                if worded is not None:
                    found = worded if found is None else stricter(found, worded)
        return found

    def strictest_field_rule(self) -> MaskRule | None:
        """The strictest of the field rules (what masks a column that cannot be named)."""
        found: MaskRule | None = None
        for rule in self._field_rules.values():
            found = rule if found is None else stricter(found, rule)
        return found

    def columns_to_mask(self, names: list[str]) -> dict[int, MaskRule]:
        """Column index → field rule, for a result set's column names."""
        out: dict[int, MaskRule] = {}
        for index, name in enumerate(names):
            rule = self.rule_for([name])
            if "." not in name:
                loose = self._last_segment.get(name.casefold())
                if loose is not None:
                    rule = loose if rule is None else stricter(rule, loose)
            if rule is not None:
                out[index] = rule
        return out

    def mask_field(self, rule: MaskRule, value: str) -> str:
        """The whole value masked by `rule`'s strategy."""
        if rule.detector:
            return self._apply(rule.strategy, rule.detector, value)
        if rule.strategy == "redact":
            return REDACTED
        if rule.strategy == "hash":
            return self._hash(value)
        return _partial(_kind_of(value), value)

    # -- detectors

    @property
    def detects(self) -> bool:
        """Whether any detector rule applies."""
        return bool(self._detectors)

    def may_detect(self, data: bytes) -> bool:
        """False only when no detector of this masker can find anything in the UTF-8 text
        of data: ASCII that no detector's gate lets through. Anything else (a candidate,
        or a byte past ASCII, whose case folding could make one) is for mask_text."""
        gates = self._gates
        if not gates:
            return False
        if not data.isascii():
            return True
        if data[:2] == b"\\x" and _BYTEA_HEX.fullmatch(data, 2):
            # (a bytea's hex form, `\\x616e6e40...`, as text: its bytes' text is read,
            # whose `@` or digits the hex digits do not show)
            return True
        digits = len(data.translate(None, _NON_DIGITS))  # (read once, for every gate)
        if (
            len(data) < _QUIET_BELOW
            and b"@" not in data
            and (b"4" not in data or not (b"%" in data or b"&" in data or b"\\" in data))
            and digits < _QUIET_DIGITS
            and (b"t" not in data and b"T" not in data)
            and (b"p" not in data and b"P" not in data)
            and (b"k" not in data and b"K" not in data and b":" not in data)
        ):
            # the usual short value: too short for a token, no @ (nor a `t` to spell one:
            # a(at)b.co, nor a 4 beside a %, & or \\ to escape one: a%40b.co), few digits
            # (an HTML reference to a digit holds two: a number of them is no quiet value),
            # no key naming a secret (pwd=x, db_pass=x, app_key=x, -u a:b: every such key
            # holds a t, p or k, or a colon)
            return False
        if (
            b"&" in data or b"%" in data or b"\\" in data or b"<" in data
        ) and _ESCAPED_ASCII.search(data) is not None:
            # an HTML reference, a percent or JSON escape spelling a digit, a separator or
            # an @ (`&#52;&#49;...`, `%34%31...`), or a tag splitting a value (_ESCAPED)
            return True
        for gate in gates:  # noqa: SIM110  (a loop: any() over a generator costs more)
            if gate(data, digits):
                return True
        return False

    def mask_text(self, value: str) -> tuple[str, Counter[str]]:
        """Run every detector rule over `value`; counts are keyed by detector name. A value
        longer than MAX_READ_CHARS is masked whole, unread (counted as `oversized`): the
        detectors' time grows with it, on an event loop a proxy's sessions share."""
        counts: Counter[str] = Counter()
        if self._detectors and len(value) > MAX_READ_CHARS:
            counts["oversized"] += 1
            return REDACTED, counts
        return self._mask_text(value, counts, ""), counts

    def _mask_text(self, value: str, counts: Counter[str], prefix: str) -> str:
        masked = self._mask_once(value, counts, prefix)
        # What a mask keeps (a card's last four digits) may join what follows it into a
        # value no pass found: `4111 1111111111114111 1111 1111 1111` masked its 16-digit
        # group as ************4111, and the 4111 kept began the card 4111 1111 1111 1111,
        # which no group of the text began, shown whole. The masked text is read again
        # until nothing more is found; one that still changes after RESCANS goes whole.
        for _ in range(RESCANS):
            if masked is value or masked == value:
                return masked
            found: Counter[str] = Counter()
            again = self._mask_once(masked, found, prefix)
            if again is masked or again == masked:
                return masked
            counts.update(found)
            value, masked = masked, again
        return masked if masked == value else REDACTED

    def _mask_once(self, value: str, counts: Counter[str], prefix: str) -> str:
        if not self._detectors or not value:
            return value
        hits: list[tuple[int, int, int]] = []
        read = value if value.isascii() else as_ascii(value)
        for priority, (detector, _) in enumerate(self._detectors):
            if detector.precheck(read):
                _within_budget()
                hits.extend((s, e, priority) for s, e in detector.find(read))
        if not value.isascii() and _INVISIBLE.search(read) is not None:
            hits.extend(self._unseen_hits(read))
        if _OTHER_BREAKS.search(read) is not None:
            hits.extend(self._one_line_hits(read))
        if ("&" in value or "%" in value or "\\" in value or "<" in value) and (
            referenced := _referenced(value)
        ) is not None:
            hits.extend(self._referenced_hits(*referenced))
        if not hits:
            return value
        out: list[str] = []
        pos = 0
        for start, end, priority in _merge_overlaps(hits):
            detector, strategy = self._detectors[priority]
            out.append(value[pos:start])
            out.append(self._apply(strategy, detector.name, value[start:end]))
            counts[prefix + detector.name] += 1
            pos = end
        out.append(value[pos:])
        return "".join(out)

    def _one_line_hits(self, read: str) -> Iterator[tuple[int, int, int]]:
        """What the detectors find in `read` with its line breaks other than CR and LF
        read as spaces (_OTHER_BREAKS), as spans of `read`: the lines a reader sees,
        read as one line, as the proxies read a text's lines parted by CR or LF
        (`4111 1111\u20281111 1111`, `\v`, `\f`, NEL: a card on two lines on screen)."""
        seen = read.translate(_BREAKS_AS_SPACES)
        for priority, (detector, _) in enumerate(self._detectors):
            if detector.precheck(seen):
                _within_budget()
                for start, end in detector.find(seen):
                    yield start, end, priority

    def _unseen_hits(self, read: str) -> Iterator[tuple[int, int, int]]:
        """What the detectors find in `read` as its reader sees it, without the characters
        no one sees (`41\u200b11\u200b1111...`, `ann\u200b@example.com`, `078\u2060-05-1120`:
        a card, an address, an SSN on screen), as spans of `read`."""
        kept = [i for i, char in enumerate(read) if not _INVISIBLE.match(char)]
        seen = "".join(read[i] for i in kept)
        for priority, (detector, _) in enumerate(self._detectors):
            if seen and detector.precheck(seen):
                for start, end in detector.find(seen):
                    yield kept[start], kept[end - 1] + 1, priority

    def _referenced_hits(
        self, shown: str, starts: list[int], ends: list[int]
    ) -> Iterator[tuple[int, int, int]]:
        """What the detectors find in a value as a browser shows its HTML character
        references (`SSN &#48;&#55;&#56;-&#48;&#53;-...`, `&#x34;&#x31;...`, `&#52;111
        1111 ...`: an SSN, a card on screen), as spans of the value."""
        read = shown if shown.isascii() else as_ascii(shown)
        if not read.isascii() and _INVISIBLE.search(read) is not None:
            kept = [i for i, char in enumerate(read) if not _INVISIBLE.match(char)]
            read = "".join(read[i] for i in kept)
            starts = [starts[i] for i in kept]
            ends = [ends[i] for i in kept]
        for priority, (detector, _) in enumerate(self._detectors):
            if read and detector.precheck(read):
                for start, end in detector.find(read):
                    yield starts[start], ends[end - 1], priority

    # -- JSON

    def mask_json(self, doc: Any, numbers: bool = True) -> tuple[Any, Counter[str]]:
        """A masked copy of a decoded JSON document (the input is not modified).

        Values under keys that match a field rule are masked whole — any JSON type
        becomes the masked string, null stays null — and counted as "field:<rule field>";
        detectors run over every other string, every object key and (unless `numbers` is
        false: a database's json column keeps its numbers) every number, integer or float
        (see _mask_number; a number found becomes the masked string), and are counted as
        "detector:<name>". Iterative, so nesting depth cannot exhaust the stack.
        """
        counts: Counter[str] = Counter()
        holder: list[Any] = [doc]
        stack: list[tuple[Any, Any, tuple[str, ...]]] = [(holder, 0, ())]
        while stack:
            parent, slot, path = stack.pop()
            value = parent[slot]
            if isinstance(value, str):
                parent[slot] = self._mask_text(value, counts, "detector:")
            elif isinstance(value, dict):
                parent[slot] = self._mask_object(value, path, counts, stack)
            elif isinstance(value, list | tuple):
                copy = list(value)
                parent[slot] = copy
                stack.extend((copy, i, path) for i, v in enumerate(copy) if _walkable(v))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if not numbers:
                    continue
                masked = self._mask_number(value, counts)
                if masked is not None:
                    parent[slot] = masked
            elif not (value is None or isinstance(value, bool)):
                raise TypeError(f"cannot mask a {type(value).__name__} in a JSON document")
        return holder[0], counts

    def _mask_number(self, value: float, counts: Counter[str]) -> str | None:
        """A JSON number masked as text, or None when the detectors find nothing in it.

        Its text is gone once parsed (4.111111111111111e15, 4111111111111111.0 and
        4111111111111111 are one value), so the detectors read what it is: an integer's
        digits, a whole float's digits, a fraction's integer part. A fraction's digits
        after the point are not read: one in ten random floats of 16 such digits passes
        the card check, and a number must stay a number. A whole float of 16 to 19 digits
        past 2**53 stands for every integer rounding to it — a 19-digit card among them
        whose digits are lost — so it is masked as a card number whenever cards are (the
        safe mistake: such floats are rare). Below _QUIET_DIGITS digits no detector can
        find anything, and the usual number stops at that comparison."""
        if isinstance(value, int):
            if -_QUIET_NUMBER < value < _QUIET_NUMBER:
                return None
            digits = str(value)
            masked = self._mask_text(digits, counts, "detector:")
            return masked if masked != digits else None
        if -_QUIET_NUMBER < value < _QUIET_NUMBER or not math.isfinite(value):
            return None
        if not value.is_integer():
            whole, point, fraction = repr(value).partition(".")
            if not point or "e" in fraction:
                return None
            masked = self._mask_text(whole, counts, "detector:")
            return masked + point + fraction if masked != whole else None
        digits = str(int(value))
        masked = self._mask_text(digits, counts, "detector:")
        if masked != digits:
            return masked
        magnitude = abs(value)
        card = dict((d.name, strategy) for d, strategy in self._detectors).get("credit_card")
        if card is not None and _FLOAT_EXACT <= magnitude < 10.0**_CARD_MAX:
            counts["detector:credit_card"] += 1
            return self._apply(card, "credit_card", digits)
        return None

    def _mask_object(
        self,
        obj: dict[Any, Any],
        path: tuple[str, ...],
        counts: Counter[str],
        stack: list[tuple[Any, Any, tuple[str, ...]]],
    ) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, child in obj.items():
            child_path = path
            rule = None
            if isinstance(key, str):
                if self._max_depth:
                    child_path = (*path, *_segments(key))[-self._max_depth :]
                    # (a number under a plural is a count: `tokens`, as the HTTP proxy reads)
                    plural = not isinstance(child, int | float)
                    rule = self.rule_for_key(child_path, key, plural)
                key = _unique_key(out, self._mask_text(key, counts, "detector:"))
            if rule is not None and child is not None:
                out[key] = self._mask_whole(rule, child)
                counts["field:" + rule.field] += 1
            else:
                out[key] = child
                if rule is None and _walkable(child):
                    stack.append((out, key, child_path))
        return out

    def _mask_whole(self, rule: MaskRule, value: Any) -> str:
        if isinstance(value, str):
            return self.mask_field(rule, value)
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if isinstance(value, dict | list | tuple) and rule.strategy == "partial":
            return REDACTED
        return self.mask_field(rule, text)

    # -- strategies

    def _apply(self, strategy: str, detector: str, text: str) -> str:
        if strategy == "redact":
            return f"[REDACTED:{detector}]"
        if strategy == "hash":
            return self._hash(text)
        return _partial(detector, text)

    def _hash(self, value: str) -> str:
        data = value.encode("utf-8", "surrogatepass")
        digest = hmac.new(self._hash_key, data, hashlib.sha256).hexdigest()
        return HASH_PREFIX + digest[:HASH_HEX_DIGITS]


def _check_rule(rule: MaskRule) -> None:
    if [bool(rule.field), bool(rule.detector), rule.derived].count(True) != 1:
        raise MaskingError("a mask rule names exactly one of field, detector or derived")
    if rule.strategy not in MASK_STRATEGIES:
        raise MaskingError(f"unknown mask strategy {rule.strategy!r}")
    if rule.detector and rule.detector not in DETECTORS:
        # a policy asking for a detector we do not have must not pass data unmasked
        raise MaskingError(f"unknown detector {rule.detector!r}; known: {sorted(DETECTORS)}")


def _walkable(value: Any) -> bool:
    # anything but the JSON leaves detectors ignore; unknown types reach the walker's error
    return not (value is None or isinstance(value, bool))


def _unique_key(out: dict[Any, Any], key: str) -> str:
    # two masked keys can collide ("[REDACTED:email]"); never let one overwrite another
    candidate, n = key, 1
    while candidate in out:
        n += 1
        candidate = f"{key}#{n}"
    return candidate


def _merge_overlaps(hits: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Join overlapping spans so every detected character is masked; the merged span is
    labelled by the detector of its longest member (priority order breaks ties)."""
    hits.sort()
    merged: list[tuple[int, int, int]] = []
    best_len = 0
    for start, end, priority in hits:
        if merged and start < merged[-1][1]:
            m_start, m_end, m_priority = merged[-1]
            if end - start > best_len or (end - start == best_len and priority < m_priority):
                m_priority, best_len = priority, end - start
            merged[-1] = (m_start, max(m_end, end), m_priority)
        else:
            merged.append((start, end, priority))
            best_len = end - start
    return merged


def masking_key(secret: str, connection: str) -> bytes:
    """The key of the `hash` strategy: derived from the deployment's configured secret
    (masking.hash_key), so hashed values join across proxies and restarts; without one,
    random for this process (and said so once)."""
    if not secret:
        log.warning(
            "masking.hash_key is not set: values masked with the hash strategy by %s will not "
            "join across proxies or restarts",
            connection,
        )
        return os.urandom(32)
    return hashlib.sha256(b"portcullis masking hash key\x00" + secret.encode()).digest()
