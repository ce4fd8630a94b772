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

Statements whose only literals are numbers (an agent's `WHERE id = 42`, the common case)
take a faster road, proved once per skeleton (portcullis.shape): the skeleton's numbers are
each shown to be one of the shape's literals (proven_shape), a probe with a distinct number
in each place is filled token for token as above, which says which parameter each number
fills (and whether a minus sign went with it); every later statement with that skeleton
gets its own digits put in those places by string slicing, no scan and no fingerprint. A
run of 1 to 9 digits between the same neighbours is one integer token whatever its
digits, so what the probe proved holds for them.

No IO, no policy: the rewrite itself (what is filtered, and how) is the PDP's.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast.parser import fingerprint, normalize, scan

from portcullis.shape import NUMBER_RUN, proven_shape, skeleton

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
    zeros = skeleton(sql)
    if zeros is not None:
        plan = _number_plan(rewrite, zeros)
        if plan is not None:
            return _filled_numbers(rewrite.text, plan, sql)
    return _fill_scanned(rewrite, sql)


def _fill_scanned(rewrite: ShapeRewrite, sql: str) -> str | None:
    """fill() token for token: sql scanned, the result fingerprinted."""
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


# per (rewrite, skeleton): where each number of a statement goes in the rewritten text,
# as (start, end, which number, minus sign with it); None: not provable, scan instead
_Plan = tuple[tuple[int, int, int, bool], ...]
_PLANS: dict[tuple[ShapeRewrite, str], _Plan | None] = {}
_PROBE_BASE = 100000


# the last plan looked up, as (rewrite, skeleton, plan): a proxy refills one reused verdict
# (the same rewrite object) statement after statement, and a ShapeRewrite's hash is a
# Python call making a tuple of its three texts (replaced whole, so a thread never reads
# one rewrite's plan for another)
_last_plan: tuple[ShapeRewrite | None, str, _Plan | None] = (None, "", None)
_UNKNOWN: _Plan = ((-1, -1, -1, False),)  # no plan is this: _PLANS holds no entry


def _number_plan(rewrite: ShapeRewrite, zeros: str) -> _Plan | None:
    global _last_plan
    last = _last_plan
    if last[0] is rewrite and last[1] == zeros:
        return last[2]
    key = (rewrite, zeros)
    plan = _PLANS.get(key, _UNKNOWN)
    if plan is _UNKNOWN:
        plan = _proved_plan(rewrite, zeros)
        if len(_PLANS) >= MAX_SCANNED:
            _PLANS.clear()
        _PLANS[key] = plan
    _last_plan = (rewrite, zeros, plan)
    return plan


def _proved_plan(rewrite: ShapeRewrite, zeros: str) -> _Plan | None:
    proven, _ = proven_shape(zeros)
    if not proven:
        return None  # a number in the skeleton is not a literal (FETCH 5, a typmod...)
    runs = iter(range(_PROBE_BASE, _PROBE_BASE + 10**6))
    probe = NUMBER_RUN.sub(lambda _: str(next(runs)), zeros)
    try:
        tokens, slots = _scanned(rewrite)
        literals = _literals(probe, tokens)
    except Exception:
        return None
    if literals is None:
        return None
    plan = []
    for start, end, name in slots:
        literal = literals.get(name)
        if literal is None:
            continue  # the statement's own parameter, left in place
        minus = literal.startswith("-")
        digits = literal[1:] if minus else literal
        if not digits.isdigit() or int(digits) < _PROBE_BASE:
            return None
        plan.append((start, end, int(digits) - _PROBE_BASE, minus))
    proved = tuple(plan)
    # the probe filled both ways must agree, and be the rewrite's own statement
    if _filled_numbers(rewrite.text, proved, probe) != _fill_scanned(rewrite, probe):
        return None
    return proved


def _filled_numbers(text: str, plan: _Plan, sql: str) -> str | None:
    numbers = NUMBER_RUN.findall(sql)
    parts: list[str] = []
    copied = 0
    for start, end, which, minus in plan:
        if which >= len(numbers):
            return None
        parts.append(text[copied:start])
        parts.append("-" + numbers[which] if minus else numbers[which])
        copied = end
    parts.append(text[copied:])
    return "".join(parts)


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
