"""Card numbers written in groupings no printed card uses: the second reading of the
credit_card detector (portcullis.masking owns the first, the printed layouts, and the
check digit).

What a reader's own SELECT or echo makes of a card: digits joined by a comma
(`string_agg(d, ',')`), by a separator of up to four characters (`4111 | 1111 | ...`,
`4111, 1111, ...`, `4111\\r\\n1111...`), in pairs (`regexp_replace(card, '(..)', '\\1 ',
'g')`: `41 11 11 ...`), one digit a line. Such text is also what lists, table cells and
columns of ordinary numbers look like, so a grouping is read as a card only when all of
these hold (each one is what such a SELECT produces and what most lists are not):

- one separator throughout, and the grouping whole: the digits joined by that separator
  begin and end there (a list of ten numbers is no card of four of them), next to no
  letter or digit (a UUID's or a hex dump's digits are glued to its letters); but a
  printed card's groups inside a longer list are read too when nothing like them goes
  on beside them (`7,4111,1111,1111,1111`: four groups of exactly four digits, their
  neighbours of another size; 4-6-5, 4-6-4: _inner_cards);
- groups of one size, but the last or the first may be shorter (or Amex's 4-6-5, 4-6-4);
- a line break between groups of one or two digits only: a column of larger numbers
  (PIDs, ports, counts: `pgrep`, `ss`, `wc` over SSH) is ordinary output;
- the digits begin as an issued card does and are as long as that issuer's cards
  (issued_length), and pass the check digit (the caller's test).

No IO; nothing here imports portcullis.masking (which imports this).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterator, Sequence

Span = tuple[int, int]

# digit groups joined by up to four characters that are no letter or digit each
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[\W_]{1,4}[0-9]+)+")
_GROUP = re.compile(r"[0-9]+")
# what every grouping read holds: four groups of up to four digits joined by one separator
# (13 digits need four such groups), or a printed layout's three (a timestamp has neither:
# its separators change every two groups)
_HINT = re.compile(
    r"[0-9]{1,4}(?P<s>[\W_]{1,4})[0-9]{1,4}(?P=s)[0-9]{1,4}(?P=s)[0-9]"
    r"|[0-9]{4}(?P<t>[\W_]{1,4})[0-9]{6}(?P=t)[0-9]{4}"
)
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_LEAST, _MOST = 13, 19
_LONGEST_GROUP = 4
# the printed layouts of 15 and 14 digits whose groups differ in size
_LAYOUTS = ((4, 6, 5), (4, 6, 4))
# a hex number of 1 to 4 characters holding a letter, between spaces (a hex dump's group)
_HEX_WORDS = {
    size: re.compile(rf"(?<!\S)(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{{{size}}}(?!\S)")
    for size in range(1, _LONGEST_GROUP + 1)
}
_DUMP_OFFSET = re.compile(r"[ \t]*(?:0x)?[0-9A-Fa-f]{6,}:?[ \t]")

# Issuer identification numbers of the networks that issue most cards (ISO/IEC 7812 ranges)
# and the lengths of their card numbers: (lowest prefix, highest prefix, lengths). Fewer
# networks and lengths than exist (Maestro's 50 and 56-69, RuPay, Mir are left out): each
# range left in lets one list of ordinary numbers in ten of its length through as a card.
_ISSUERS: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("300", "305", frozenset({14, 16})),  # Diners Club
    ("36", "36", frozenset({14})),
    ("3528", "3589", frozenset({16, 17, 18, 19})),  # JCB
    ("6011", "6011", frozenset({16, 17, 18, 19})),  # Discover
    ("644", "649", frozenset({16, 17, 18, 19})),
    ("65", "65", frozenset({16, 17, 18, 19})),
    ("62", "62", frozenset({16, 17, 18, 19})),  # UnionPay
)


def issued_length(digits: str) -> bool:
    """Whether `digits` begin as a network's cards do and are as long as its cards are."""
    size = len(digits)
    for low, high, lengths in _ISSUERS:
        if size in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def _regular(sizes: list[int]) -> bool:
    """Groups of one size up to four, the last one maybe shorter (what cutting a card's
    digits from its start makes); or a printed layout of unequal groups."""
    if tuple(sizes) in _LAYOUTS:
        return True
    size = sizes[0]
    return size <= _LONGEST_GROUP and all(s == size for s in sizes[1:-1]) and 1 <= sizes[-1] <= size


def _in_dump(text: str, start: int, end: int, size: int) -> bool:
    """Whether the line around start:end is a hex dump's (`hexdump -C`, `xxd`, `od`,
    `tcpdump -X`), whose byte groups are digits alone as often as not: it begins with an
    offset, or holds a hex number of `size` characters with a letter, between spaces."""
    line_start = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
    line_end = min(i for i in (text.find("\n", end), text.find("\r", end), len(text)) if i >= 0)
    return (
        _HEX_WORDS[size].search(text, line_start, line_end) is not None
        or _DUMP_OFFSET.match(text, line_start, line_end) is not None
    )


def _glued(text: str, start: int, end: int) -> bool:
    """Whether the digits at start:end touch a letter or digit (a UUID's, a hex dump's)."""
    return (start > 0 and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum())


def covering(spans: Sequence[Span]) -> Callable[[int, int], bool]:
    """Whether a span lies inside one of `spans`, asked in O(log n): each run's question
    read every span found before (quadratic in a text of many cards: 64 KiB of ordinary
    text holding a few thousand took ~2 s)."""
    ordered = sorted(spans)
    starts = [a for a, _ in ordered]
    reach = list(itertools.accumulate((b for _, b in ordered), max))

    def covered(start: int, end: int) -> bool:
        at = bisect.bisect_right(starts, start) - 1
        return at >= 0 and reach[at] >= end

    return covered


def grouped_card_spans(
    text: str, valid: Callable[[str], bool], found: Sequence[Span] = ()
) -> Iterator[Span]:
    """Spans of `text` that are card numbers in a grouping of their own (module docstring):
    `valid` is the check of the digits (the check digit, at least); a run of groups inside
    a span `found` already (a printed layout's) is not read again."""
    if _HINT.search(text) is None:
        return
    covered = covering(found)
    for run in _RUN.finditer(text):
        if covered(run.start(), run.end()):
            continue
        groups = [m.span() for m in _GROUP.finditer(text, run.start(), run.end())]
        if sum(b - a for a, b in groups) < _LEAST:
            continue
        separators = [text[a[1] : b[0]] for a, b in itertools.pairwise(groups)]
        first = 0
        while first < len(separators):
            # the groups one separator joins: first .. last (a maximal stretch)
            last = first
            while last + 1 < len(separators) and separators[last + 1] == separators[first]:
                last += 1
            shared = (first > 0, last + 1 < len(separators))
            yield from _stretch(text, groups[first : last + 2], separators[first], shared, valid)
            first = last + 1


def _stretch(
    text: str,
    groups: list[Span],
    separator: str,
    shared: tuple[bool, bool],
    valid: Callable[[str], bool],
) -> Iterator[Span]:
    """The card that the groups one separator joins are, if they are one."""
    # (a group shared with the stretch before or after, under another separator, may be
    # either's: `2024-01-15 41 11 11 ...`; the stretch is tried without it too)
    count = len(groups)
    tried = [(0, count)]
    if shared[0] and count > 2:
        tried.append((1, count))
    if shared[1] and count > 2:
        tried.append((0, count - 1))
    if shared[0] and shared[1] and count > 3:
        tried.append((1, count - 1))
    line_break = not _LINE_BREAKS.isdisjoint(separator)
    for lo, hi in tried:
        window = groups[lo:hi]
        start, end = window[0][0], window[-1][1]
        sizes = [b - a for a, b in window]
        if not _LEAST <= sum(sizes) <= _MOST or not _regular(sizes):
            continue
        if line_break and max(sizes) > 2:
            continue
        if _glued(text, start, end):
            continue
        if separator.isspace() and _in_dump(text, start, end, sizes[0]):
            continue
        digits = "".join(text[a:b] for a, b in window)
        if digits[0] != "0" and issued_length(digits) and valid(digits):
            yield start, end
            return
    if not line_break:
        yield from _inner_cards(text, groups, valid)


def _inner_cards(text: str, groups: list[Span], valid: Callable[[str], bool]) -> Iterator[Span]:
    """Cards printed whole inside a longer stretch, a list's other items beside them
    (`7,4111,1111,1111,1111`: a row's id, then a card kept in four columns): the groups
    of a printed layout of unequal sizes (4-6-5, 4-6-4), or four groups of exactly four
    digits that their neighbours do not continue (a neighbour of another size, or none);
    or cards of them back to back, every four such groups a card. A list of years, codes
    or ids of four digits goes on beyond four (or is one grouping whole: _stretch). Of
    four codes between two ids, ~2.7% pass the check digit and an issuer's range: the
    same row's cells as CSV are read alike (HTTP P39, P40)."""
    sizes = [b - a for a, b in groups]
    if 4 not in sizes:
        return  # (each window read holds a group of four: most stretches have none)
    count = len(sizes)
    for index in range(count - 2):
        window = groups[index : index + 3]
        if tuple(sizes[index : index + 3]) in _LAYOUTS and _card_at(text, window, valid):
            yield window[0][0], window[-1][1]
    index = 0
    while index < count:
        if sizes[index] != 4:
            index += 1
            continue
        last = index
        while last + 1 < count and sizes[last + 1] == 4:
            last += 1
        run = groups[index : last + 1]
        if len(run) % 4 == 0:
            cards = [run[k : k + 4] for k in range(0, len(run), 4)]
            if all(_card_at(text, card, valid) for card in cards):
                for card in cards:
                    yield card[0][0], card[-1][1]
        index = last + 1


def _card_at(text: str, window: list[Span], valid: Callable[[str], bool]) -> bool:
    """Whether the digits of the groups `window`, not glued to a letter or digit, are a
    card's (an issuer's range and length, `valid`)."""
    if _glued(text, window[0][0], window[-1][1]):
        return False
    digits = "".join(text[a:b] for a, b in window)
    return digits[0] != "0" and issued_length(digits) and valid(digits)
