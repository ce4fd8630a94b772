"""A statement's literals put into a rewrite of its shape: how a row-filter rewrite made
once per statement shape serves every statement of that shape (issue 30).

Owns fill(): the shape is the statement's text with its literals made parameters
(pglast's normalize); the PDP rewrites the shape once (pdp/sql/rowfilter.py) and both the
PDP and a proxy holding a reused verdict put a statement's own literals back where the
shape's parameters stand in the rewritten text, token for token. A statement whose every
other token is not the shape's, token for token and text for text, a literal that is not
one token (or a minus and one), or a result whose fingerprint is not the rewritten
shape's, gives None: the caller then rewrites on the statement's own tree (PDP) or asks
the PDP (proxy).

No IO, no policy: the rewrite itself (what is filtered, and how) is the PDP's.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast.parser import fingerprint, normalize, scan

_CONSTANT_TOKENS = frozenset(
    {"SCONST", "ICONST", "FCONST", "BCONST", "XCONST", "USCONST", "TRUE_P", "FALSE_P", "NULL_P"}
)


@dataclass(frozen=True)
class ShapeRewrite:
    """A rewrite of one statement shape: `shape` the normalized statement, `text` its
    rewrite (the shape's parameters in it), `printed` the rewrite's fingerprint."""

    shape: str
    text: str
    printed: str


def shape_of(sql: str) -> str | None:
    try:
        return normalize(sql)
    except Exception:
        return None


def printed(sql: str) -> str:
    return fingerprint(sql)


# a rewrite's scans, made once: the shape's tokens (name, text) and where the rewritten
# text's parameters stand (start, end, "$n")
_SCANNED: dict[ShapeRewrite, tuple[list[tuple[str, str]], list[tuple[int, int, str]]]] = {}
MAX_SCANNED = 4096


def _scanned(rewrite: ShapeRewrite) -> tuple[list[tuple[str, str]], list[tuple[int, int, str]]]:
    found = _SCANNED.get(rewrite)
    if found is None:
        shape, text = rewrite.shape, rewrite.text
        tokens = [(t.name, shape[t.start : t.end + 1]) for t in scan(shape)]
        slots = [
            (t.start, t.end + 1, text[t.start : t.end + 1]) for t in scan(text) if t.name == "PARAM"
        ]
        if len(_SCANNED) >= MAX_SCANNED:
            _SCANNED.clear()
        found = _SCANNED[rewrite] = (tokens, slots)
    return found


def fill(rewrite: ShapeRewrite, sql: str, shape: str | None = None) -> str | None:
    """rewrite.text with sql's literals in place of the shape's parameters; None when sql
    is not of that shape or its literals cannot be put back exactly."""
    if shape is not None and shape != rewrite.shape:
        return None
    if sql == rewrite.shape:
        return rewrite.text
    try:
        tokens, slots = _scanned(rewrite)
        literals = _literals(sql, tokens)
        if literals is None:
            return None
        text = rewrite.text
        parts: list[str] = []
        copied = 0
        for start, end, name in slots:
            literal = literals.get(name)
            if literal is not None:
                parts.append(text[copied:start])
                parts.append(literal)
                copied = end
        parts.append(text[copied:])
        final = "".join(parts)
        return final if fingerprint(final) == rewrite.printed else None
    except Exception:
        return None


def _literals(sql: str, shaped: list[tuple[str, str]]) -> dict[str, str] | None:
    """The shape's parameters ("$n") that stand for sql's literals → their text."""
    original = scan(sql)
    found: dict[str, str] = {}
    i = 0
    for kind, name in shaped:
        if i >= len(original):
            return None
        here = original[i]
        if kind == "PARAM":
            if here.name == "PARAM" and sql[here.start : here.end + 1] == name:
                i += 1  # the statement's own parameter
                continue
            start = here.start
            if here.name == "ASCII_45" and i + 1 < len(original):  # a negative number
                i += 1
                here = original[i]
            if here.name not in _CONSTANT_TOKENS:
                return None
            found[name] = sql[start : here.end + 1]
            i += 1
            continue
        # every other token as the shape has it: the same statement but for its literals
        if kind != here.name or name != sql[here.start : here.end + 1]:
            return None
        i += 1
    return found if i == len(original) else None
