"""The statement shape: what keys the reuse of a verdict declared `cache_key: shape`.

Owns one function both ends compute alike: the proxy to find a reusable verdict in its
session's table, the PDP to file one in its own. A shape is a digest of the SQL text with
its literal values replaced by placeholders (pglast's normalize, the server's own
grammar), so the texts of one statement with other values share it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import pglast
from pglast import ast
from pglast.parser import normalize

# texts longer than this are reused only by their exact text, never remembered here
REMEMBERED_LENGTH = 4096


def shape(sql: str) -> str | None:
    """A digest of sql with its literal values replaced by placeholders.

    Not pglast's fingerprint: that also ignores schema names (`hr.pay` and `public.pay`
    share one) and the names LISTEN, PREPARE, EXECUTE and DEALLOCATE take, none of which
    are literals. None when unparseable, and None for text holding a DO block: the
    block's code is a literal, yet the PDP's classifier reads the SQL inside it, so a
    harmless block and a destructive one would share a shape. None also for text holding
    an integer constant in DISTINCT ON or in ROLLUP, CUBE or GROUPING SETS: the server
    reads it as an output's position, not a value (`DISTINCT ON (2)` sorts by the second
    output), while normalize replaces it (it keeps those of ORDER BY and a plain GROUP
    BY). None makes a reuse fall back to exact text.

    The classifier also reads the literals of SET (value, pg_catalog_first, read_write)
    and the setting set_config names: texts sharing a shape may differ there, so the
    shipped policy offers no shape reuse for them (rego/portcullis/decision.rego)."""
    try:
        normalized = normalize(sql)
    except Exception:
        return None
    if _holds_do_block(sql) or _holds_positions(sql):
        return None
    return hashlib.blake2b(normalized.encode(), digest_size=16).hexdigest()


# A run of 1-9 ASCII digits standing on its own: no letter, digit, `_`, `$` or non-ASCII
# character (all of which continue a PostgreSQL name) on either side. Nine digits at most,
# so every such run lexes as an integer whatever its digits are. Written digit first, the
# character before the run looked at once a digit is found (a two-character lookbehind
# over it: at the text's start there is none): the engine then skips to the digits instead
# of trying the lookbehind at every character (callgrind: 16.9k -> 6.9k instructions for
# one pgbench statement's sub). The same matches as
# (?<![0-9A-Za-z_$\x80-\U0010ffff])[0-9]{1,9}(?![0-9A-Za-z_$\x80-\U0010ffff])
# (tests/test_pg_hot_path.py holds the two alike).
NUMBER_RUN = re.compile(
    r"[0-9](?<![0-9A-Za-z_$\x80-\U0010ffff][0-9])[0-9]{0,8}(?![0-9A-Za-z_$\x80-\U0010ffff])"
)
_QUOTES = re.compile(r"['\"$\\]")


def skeleton(sql: str, digit: str = "0") -> str | None:
    """sql with every standalone run of digits written as `digit`: texts that differ only in
    such numbers share it. None when there is no run to rewrite, or the text holds a quote,
    `$` or a backslash (inside a string or a quoted name, a digit is no number).

    Texts sharing a skeleton are one token sequence with other digits in the same places.
    Whether those places are literal values (a shape ignores them) or not (`FETCH 5`, a
    type modifier, a comment, a column number) the skeleton cannot tell: proven_shape()
    proves it once per skeleton."""
    if digit == "0":
        last = _last_skeleton
        if last[0] is sql:  # the same text object asked again (a lookup, then a fill)
            return last[1]
    if _QUOTES.search(sql):
        found = None
    else:
        rewritten = NUMBER_RUN.sub(digit, sql)
        found = None if rewritten == sql else rewritten
    if digit == "0":
        _remember_skeleton(sql, found)
    return found


# the last text skeleton() was asked for and its answer, as one tuple (replaced whole, so
# a thread never reads one text's answer for another)
_last_skeleton: tuple[str | None, str | None] = (None, None)


def _remember_skeleton(sql: str, found: str | None) -> None:
    global _last_skeleton
    _last_skeleton = (sql, found)


def proven_shape(zeros: str) -> tuple[bool, str | None]:
    """For a skeleton written with zeros: whether every one of its numbers is a literal the
    shape ignores, and then the shape every text with that skeleton has.

    The proof: the same skeleton written with ones differs from it at every number, and
    has the same shape only if each of them sits inside a literal value. Then any text with
    this skeleton (the same tokens, other digits) has that shape too."""
    value = shape(zeros)
    ones = NUMBER_RUN.sub("1", zeros)
    return value == shape(ones), value


def shaped(raw: str) -> str | None:
    """shape() with memory; None for unparseable text and for texts too long to remember,
    which are then reused only by their exact text.

    Remembered by the text's skeleton where one is proven (proven_shape): the statements
    an agent repeats with other ids then cost a substitution, not a parse."""
    if len(raw) > REMEMBERED_LENGTH:
        return None
    template = _last_template
    if template is not None:
        before, after, value = template
        if raw.startswith(before) and raw.endswith(after):
            run = raw[len(before) : len(raw) - len(after)]
            if 0 < len(run) < 10 and run.isascii() and run.isdigit():
                return value  # the template's text with another number there: its shape
    zeros = skeleton(raw)
    if zeros is not None:
        proven, value = _proven_shape(zeros)
        if proven:
            _learn_template(raw, zeros, value)
            return value
    return _shape(raw)


# The statement a client repeats with another number (pgbench's aid, an agent's id): the
# last proven text split around the one number in which it differed from the proven text
# before it with the same skeleton, as (before the number, after it, the shape). A text
# that is `before`, a run of 1-9 ASCII digits and `after` has that skeleton too (the run
# stands where the other stood, between the same characters, so NUMBER_RUN rewrites it
# alike, and `before` and `after`, the same text, alike), hence that proven shape: no
# substitution, no lookup (tests/test_shape_template.py holds shaped() equal to shape()).
# Both replaced whole, so a thread never reads one text's parts with another's.
_last_template: tuple[str, str, str | None] | None = None
_last_proven: tuple[str, str] = ("", "")  # the last text shaped by a proven skeleton, and it


def _learn_template(raw: str, zeros: str, value: str | None) -> None:
    global _last_proven, _last_template
    last_raw, last_zeros = _last_proven
    _last_proven = (raw, zeros)
    if zeros != last_zeros or raw == last_raw:
        return  # a template needs two texts of one skeleton, differing in a number
    runs = [m.span() for m in NUMBER_RUN.finditer(raw)]
    others = [m.span() for m in NUMBER_RUN.finditer(last_raw)]
    if len(runs) != len(others):
        return  # (one skeleton: never)
    differ = [
        (start, end)
        for (start, end), (s, e) in zip(runs, others, strict=True)
        if raw[start:end] != last_raw[s:e]
    ]
    if len(differ) == 1:
        start, end = differ[0]
        _last_template = (raw[:start], raw[end:], value)


_shape = functools.lru_cache(maxsize=8192)(shape)
_proven_shape = functools.lru_cache(maxsize=8192)(proven_shape)

_DO_WORD = re.compile(r"\bdo\b", re.IGNORECASE)


def _holds_do_block(sql: str) -> bool:
    """Whether sql holds a DO statement, parsing it only when the word `do` stands where a
    statement may start: at the start, after `;` or after a comment. Elsewhere
    (`ON CONFLICT ... DO`, `CREATE RULE ... DO`, a quoted name) it starts none."""
    for match in _DO_WORD.finditer(sql):
        before = sql[: match.start()].rstrip()
        last_line = before[before.rfind("\n") + 1 :]
        if not before or before.endswith((";", "*/")) or "--" in last_line:
            try:
                return any(isinstance(raw.stmt, ast.DoStmt) for raw in pglast.parse_sql(sql))
            except Exception:
                return True  # normalize parsed it; unsure here, so no shape
    return False


_POSITION_WORDS = re.compile(r"distinct|rollup|cube|grouping", re.IGNORECASE)


def _holds_positions(sql: str) -> bool:
    """Whether sql holds an integer constant the server reads as an output position and
    normalize replaces: in DISTINCT ON, or inside ROLLUP, CUBE or GROUPING SETS. Parsed
    only when one of those key words is in the text (a key word is never spelt otherwise)."""
    if _POSITION_WORDS.search(sql) is None:
        return False
    try:
        statements = pglast.parse_sql(sql)
    except Exception:
        return True  # normalize parsed it; unsure here, so no shape
    return any(_positions_in(raw.stmt) for raw in statements)


def _positions_in(node: object) -> bool:
    """The walk of _holds_positions over one parse tree."""
    stack: list[object] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple | list):
            stack.extend(item)
            continue
        if not isinstance(item, ast.Node):
            continue
        if isinstance(item, ast.SelectStmt) and any(
            isinstance(d, ast.A_Const) for d in item.distinctClause or ()
        ):
            return True
        if isinstance(item, ast.GroupingSet) and _holds_const(item.content):
            return True
        stack.extend(getattr(item, name) for name in item)
    return False


def _holds_const(items: Any) -> bool:
    """Whether a grouping set's content holds an integer constant at any depth of sets."""
    for item in items or ():
        if isinstance(item, ast.A_Const):
            return True
        if isinstance(item, ast.GroupingSet) and _holds_const(item.content):
            return True
        if isinstance(item, tuple | list) and _holds_const(item):
            return True
    return False
