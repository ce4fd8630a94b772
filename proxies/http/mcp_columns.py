"""Text a tool writes as columns aligned with spaces, read for the field rules. No IO here.

Owns one reading of a masked answer's prose (mcp._masked_prose calls it before the
`name: value` and CSV readers): a header line naming a column a field rule names, over
rows aligned under it with spaces (`column -t`, `docker ps`, a report a tool prints), has
that column's cells masked; a line that opens with such a name followed by a value
(`password   hunter2`, a record printed vertically) has the value masked. Where the rows
cannot be tied to the header one way only (a value straddling two columns, rows of
another width than the header), `Ambiguous` says so and the caller withholds the text,
as it withholds a Markdown table. Lines with a tab or a `|` are left to the other readers.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*")
_UNDERLINE = re.compile(r"[ \-=+]+")  # a header's underline: ----  -------
_CELL = re.compile(r"\S+")
_LABEL_REST = re.compile(r"(?:[A-Za-z][\w\-]*\s+)?[A-Za-z][\w\-]*\s*:\s*(?:#.*)?")


class Ambiguous(ValueError):
    """Rows under a header naming a masked column that cannot be cut into its cells."""


def masked_columns(text: str, masker: Masker, counts: Counter[str]) -> str:
    """The text with the cells of masked columns, and the values of masked `name value`
    lines, masked (counted as field:<rule>); as it came when none is found."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = _header(lines[i], masker)
        end = i + 1
        while header is not None and end < len(lines) and _row(lines[end]):
            end += 1
        rows = lines[i + 1 : end]
        if header is None or not rows:
            out.append(_masked_record(lines[i], masker, counts))
            i += 1
            continue
        out.extend(_masked_table(lines[i], header, rows, masker, counts))
        i = end
    return "\n".join(out)


def _row(line: str) -> bool:
    return bool(line.strip()) and "\t" not in line


def _header(line: str, masker: Masker) -> dict[int, MaskRule] | None:
    """The masked columns (by position) of a line that reads as a header: two words or
    more, each a name, one of them a column a field rule names."""
    if "\t" in line or "|" in line:
        return None
    words = line.split()
    if len(words) < 2 or not all(_WORD.fullmatch(w) for w in words):
        return None
    return masker.columns_to_mask(words) or None


def _masked_table(
    header: str, masked: dict[int, MaskRule], rows: list[str], masker: Masker,
    counts: Counter[str],
) -> list[str]:  # fmt: skip
    """The header and its rows, the masked columns' cells masked."""
    starts = [m.start() for m in _CELL.finditer(header)]
    width = len(starts)
    aligned = (
        "  " in header.strip()
        or _UNDERLINE.fullmatch(rows[0]) is not None
        or all(len(r.split()) == width for r in rows)
    )
    if not aligned:
        if any(index > 0 for index in masked):
            raise Ambiguous("rows under a header that are not its columns")
        # (a first word naming a field, single-spaced: `name value` records, not a table)
        return [_masked_record(line, masker, counts) for line in [header, *rows]]
    first = masked.get(0)
    if first is not None:
        # `password   hunter2` over `phone   +1 555 0100` reads as records as well as a
        # table: the header's value is masked, and a row that reads as a record has its
        # first cell (the masked column's) and its value masked
        header = _masked_record(header, masker, counts)
    out = [header]
    for row in rows:
        if _UNDERLINE.fullmatch(row):
            out.append(row)
            continue
        if first is not None and _masked_record(row, masker, Counter()) != row:
            name, value = list(_CELL.finditer(row))[:2]
            rule = masker.rule_for_any([name.group()]) or first
            record = [name.span(), (value.start(), len(row.rstrip()))]
            out.append(_masked_cells(row, record, {0: first, 1: rule}, masker, counts))
            continue
        words = [m.span() for m in _CELL.finditer(row)]
        cells = _cells(row, starts)
        if cells is not None and not _one_reading(cells, words, starts, masked):
            raise Ambiguous("a row cut as its header and word by word masks other words")
        if cells is None:
            if len(words) != width:
                raise Ambiguous("a row that is not cut as its header")
            cells = words
        out.append(_masked_cells(row, cells, masked, masker, counts))
    return out


def _one_reading(
    cells: list[tuple[int, int]], words: list[tuple[int, int]], starts: list[int],
    masked: dict[int, MaskRule],
) -> bool:  # fmt: skip
    """Whether a row cut at the header's column starts masks what its words would: the
    same words when it has as many words as the header has columns (`Bob hunter2` under
    `name          password` is not Bob's empty password), else no masked cell empty
    while the row holds words."""
    if len(words) != len(starts):
        return all(cells[k][1] > cells[k][0] for k in masked if k < len(cells))
    by_cut = set()
    for index, (start, _) in enumerate(words):
        column = bisect.bisect_right(starts, start) - 1
        if column in masked:
            by_cut.add(index)
    return by_cut == set(masked)


def _cells(row: str, starts: list[int]) -> list[tuple[int, int]] | None:
    """The row's cells under the header's column starts, or None when a value straddles a
    column's start (it is not aligned with its header)."""
    if row[: starts[0]].strip():
        return None
    cells = []
    for k, start in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(row)
        if start > 0 and start < len(row) and row[start - 1] != " " and row[start] != " ":
            return None
        piece = row[start:stop] if start < len(row) else ""
        lead = len(piece) - len(piece.lstrip(" "))
        cells.append((start + lead, start + len(piece.rstrip(" "))))
    return cells


def _masked_cells(
    row: str, cells: list[tuple[int, int]], masked: dict[int, MaskRule], masker: Masker,
    counts: Counter[str],
) -> str:  # fmt: skip
    pieces: list[str] = []
    done = 0
    for index, (start, stop) in enumerate(cells):  # (left to right, in one pass)
        rule = masked.get(index)
        if rule is None or stop <= start:
            continue
        pieces += [row[done:start], masker.mask_field(rule, row[start:stop])]
        done = stop
        counts["field:" + rule.field] += 1
    return "".join([*pieces, row[done:]])


def _masked_record(line: str, masker: Masker, counts: Counter[str]) -> str:
    """`name   value`: a line opening with a masked column's name, then its value."""
    if "\t" in line or "|" in line:
        return line
    body = line.strip()
    parts = body.split(None, 1)  # (str methods: no pattern to backtrack over a long line)
    if len(parts) < 2:
        return line
    name, value = parts
    lead = line[: len(line) - len(line.lstrip())]
    tail = line[len(line.rstrip()) :]
    gap = body[len(name) : len(body) - len(value)]
    if not _WORD.fullmatch(name) or value[0] in ":=" or _LABEL_REST.fullmatch(value):
        # (`name = value`, `name : value`, a label `Phone Number:` whose value is on the
        # next line: the other readers' lines)
        return line
    rule = masker.rule_for_any([name])
    if rule is None:
        return line
    counts["field:" + rule.field] += 1
    return lead + name + gap + masker.mask_field(rule, value) + tail


class AlignedRows:
    """The same reading a line at a time, for a text body that streams (an HTTP answer's
    lines): a header of aligned columns (two spaces between two of its names, or an
    underline of dashes after it) naming a masked column has the cells under it masked on
    each line after it, up to a blank line. `line` gives the line masked, or None when it
    is no line of such a table; Ambiguous when a row cannot be cut one way only."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._header: tuple[str, dict[int, MaskRule]] | None = None
        self._pending: tuple[str, dict[int, MaskRule]] | None = None

    def line(self, line: str, counts: Counter[str]) -> str | None:
        pending, self._pending = self._pending, None
        if not line.strip():
            self._header = None
            return None
        if self._header is None and pending is not None and _UNDERLINE.fullmatch(line):
            self._header = pending  # (a single-spaced header over its underline)
            return line
        if self._header is not None:
            if _UNDERLINE.fullmatch(line):
                return line
            if not _row(line):
                self._header = None
                return None
            header, columns = self._header
            return _masked_table(header, columns, [line], self.masker, counts)[1]
        masked = _header(line, self.masker)
        if masked is None:
            return None
        if "  " in line.strip():
            self._header = (line, masked)
        else:
            self._pending = (line, masked)
            return None
        return _masked_record(line, self.masker, counts) if 0 in masked else line
