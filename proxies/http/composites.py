"""Whole rows written as one value: PostgreSQL's record and array text, masked. No IO here.

An SQL-over-HTTP API answering `SELECT c FROM customers c` (a whole-row reference),
`SELECT row(...)` or an array of rows gives each row as one string in PostgreSQL's text
output (`(7,5550100,ann)`, `{"(7,5550100)","(8,5550101)"}`): its columns have no names
the masks can read, so a masked field's value inside went whole unless a detector knew
it. A string that is such a record (two fields or more), or an array holding records, is
read field by field: a field that is a short number (up to six digits: an id, a count, a
point's coordinate), a boolean or NULL stays; every other field is masked by the
strictest field rule in force, as a column that cannot be named is (more, never less);
a field that is itself a record or an array is read so in turn. The text is written
back in PostgreSQL's quoting. A string not wholly such a text, or a record of one field
(`(see below)`), is not one.
"""

from __future__ import annotations

import re
from collections import Counter

from portcullis.masking import Masker

MAX_DEPTH = 8  # records nested in records (deeper: masked as one field)
_KEPT = re.compile(r"[+-]?\d{1,6}(?:\.\d+)?|[tf]|true|false|")
_QUOTE_NEEDED = re.compile(r'[,(){}"\\\s]')


# a row PostgreSQL's errors give whole in prose (a NOT NULL or CHECK violation's detail,
# `Failing row contains (7, ann, 5550100).`, as PostgREST and others hand it on)
_ROW_IN_PROSE = re.compile(r"(?P<head>\brow contains )(?P<row>\(.*\))", re.IGNORECASE)


def masked_in_prose(text: str, masker: Masker, found: Counter[str]) -> str | None:
    """`text` with the row an error's detail gives in prose masked (its values parted by
    `, ` as PostgreSQL writes them, unquoted, up to the last `)`): every value but short
    numbers and null by the strictest field rule; None when it holds none."""
    if "row contains" not in text.lower():
        return None
    match = _ROW_IN_PROSE.search(text)
    rule = masker.strictest_field_rule()
    if match is None or rule is None:
        return None
    row = match["row"]
    end = row.rfind(")")
    values = row[1:end].split(", ")
    if len(values) < 2:
        return None
    shown = []
    for value in values:
        if value == "null" or _KEPT.fullmatch(value.strip()):
            shown.append(value)
        else:
            shown.append(masker.mask_field(rule, value))
            found["field:" + rule.field] += 1
    if shown == values:
        return None
    masked = "(" + ", ".join(shown) + row[end:]
    return text[: match.start("row")] + masked + text[match.end("row") :]


def _fields(text: str, opening: str, closing: str) -> list[str | None] | None:
    """The fields of `opening f1,f2,... closing` (None: NULL, an unquoted empty field in
    a record or NULL in an array), or None when `text` is not wholly that."""
    if len(text) < 2 or text[0] != opening or text[-1] != closing:
        return None
    out: list[str | None] = []
    i, end = 1, len(text) - 1
    if i == end:
        return []
    while True:
        if text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= end:
                    return None
                c = text[i]
                if c == "\\" and i + 1 < end:
                    chars.append(text[i + 1])
                    i += 2
                elif c == '"' and i + 1 < end and text[i + 1] == '"':
                    chars.append('"')
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            out.append("".join(chars))
        else:
            start, depth = i, 0
            chars = []
            while i < end and (depth or text[i] != ","):
                c = text[i]
                if c == "\\" and i + 1 < end:
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == '"':
                    return None
                if c in "({":
                    depth += 1
                elif c in ")}":
                    depth -= 1
                    if depth < 0:
                        return None
                chars.append(c)
                i += 1
            if depth:
                return None
            field = "".join(chars)
            if opening == "{" and field.strip().upper() == "NULL" and i - start == len(field):
                out.append(None)
            else:
                out.append(field if field or opening == "{" else None)
        if i == end:
            return out
        if text[i] != ",":
            return None
        i += 1


def _quoted(field: str | None, opening: str) -> str:
    if field is None:
        return "NULL" if opening == "{" else ""
    if field and not _QUOTE_NEEDED.search(field) and field.upper() != "NULL":
        return field
    return '"' + field.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_composite(text: str, depth: int = 0) -> bool:
    """Whether `text` is a record of two fields or more, or an array holding one."""
    return _read(text, depth) is not None


def _read(text: str, depth: int = 0) -> tuple[str, list[str | None]] | None:
    text = text.strip()
    if text[:1] not in ("(", "{") or depth > MAX_DEPTH:
        return None  # (arrays in arrays deeper than MAX_DEPTH: not read, each a pass)
    record = _fields(text, "(", ")")
    if record is not None and len(record) >= 2:
        return "(", record
    array = _fields(text, "{", "}")
    if array and any(f is not None and is_composite(f, depth + 1) for f in array):
        return "{", array
    return None


def masked_composite(text: str, masker: Masker, found: Counter[str], depth: int = 0) -> str | None:
    """`text` with its fields masked (counted as field:<rule>), or None when it is no
    record or array of records (or nothing in it needs masking: then also None)."""
    rule = masker.strictest_field_rule()
    read = _read(text, depth)
    if rule is None or read is None:
        return None
    opening, fields = read
    changed = False
    out: list[str | None] = []
    for field in fields:
        if field is None or _KEPT.fullmatch(field.strip()):
            out.append(field)
            continue
        inner = masked_composite(field, masker, found, depth + 1) if depth < MAX_DEPTH else None
        if inner is None and depth < MAX_DEPTH and is_composite(field, depth + 1):
            out.append(field)  # (a record of short numbers alone)
            continue
        shown = inner if inner is not None else masker.mask_field(rule, field)
        if inner is None:
            found["field:" + rule.field] += 1
        changed = changed or shown != field
        out.append(shown)
    if not changed:
        return None
    closing = ")" if opening == "(" else "}"
    return opening + ",".join(_quoted(f, opening) for f in out) + closing
