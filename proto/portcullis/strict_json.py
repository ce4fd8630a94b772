"""JSON read one way only: the reading both the HTTP proxy (a request body it decides and
forwards) and the PDP (the body re-read from the command text) give a body, so what the
policy sees is what any upstream parser reads.

Refused, as ValueError: a name repeated in an object (parsers keep the first, the last,
or fail: Python's json the last, Go's and Jackson's settings differ), NaN and Infinity
(Python's extension, not JSON), and a number the policy's input (doubles, RFC 8259 §6)
cannot hold exactly (1e400, an integer past 2**53, written as one or as a float such as
9007199254740993.0), so the policy never sees another
number than the upstream does.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, AnyStr, cast


class RepeatedName(ValueError):
    """A name given twice in one JSON object."""


class Inexact(ValueError):
    """A number a double does not hold exactly."""


_EXACT = 2**53  # integers a double holds exactly
_ID = 2**64  # integers an id may be (int64, uint64): a float naming one is read as one


def loads(text: str) -> Any:
    """The JSON value of `text`, or ValueError (RepeatedName, Inexact or another) when it
    does not read one way only; RecursionError past the parser's nesting."""
    return json.loads(
        text,
        object_pairs_hook=unique_names,
        parse_constant=_not_json,
        parse_float=_finite,
        parse_int=_exact,
    )


def unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook refusing a name given twice (RepeatedName): the one
    duplicate-name rule of every JSON the proxies and the PDP read."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise RepeatedName("a name repeated in a JSON object")
    return out


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise Inexact(text)  # 1e400: infinity to Python, the policy's input has none
    if abs(number) >= _EXACT:
        # 9007199254740993.0 or 9.007199254740993e15: the integer _exact refuses, written
        # as a float; a double holds ...992, a parser keeping decimals (Jackson's
        # BigDecimal, Python's parse_float=Decimal) reads ...993 (past 64 bits no id is)
        exact = Decimal(text)
        if abs(exact) < _ID and exact == exact.to_integral_value() and exact != Decimal(number):
            raise Inexact(text)
    return number


def _exact(text: str) -> int:
    number = int(text)
    if not -_EXACT <= number <= _EXACT:
        raise Inexact(text)
    return number


MAX_LINES = 10_000  # lines of JSON read as one body's values, at most


def lines_of(body: AnyStr) -> list[AnyStr] | None:
    """A body written as newline-delimited JSON (two lines or more, or one ended by a
    newline; Elasticsearch's _bulk and _msearch): its non-blank lines, each without a
    trailing CR, or None when it is not so written or holds more than MAX_LINES. The one
    split both the HTTP proxy (messages.ndjson_body) and the PDP (the body re-read from the
    command text) make; each then reads every line as it reads a JSON body."""
    if isinstance(body, bytes):
        nl, cr, blank = cast("tuple[AnyStr, AnyStr, AnyStr]", (b"\n", b"\r", b" \t\r"))
    else:
        nl, cr, blank = cast("tuple[AnyStr, AnyStr, AnyStr]", ("\n", "\r", " \t\r"))
    if nl not in body.rstrip(blank + nl) and not body.rstrip(blank).endswith(nl):
        return None
    lines = [line.rstrip(cr) for line in body.split(nl) if line.strip(blank)]
    if not lines or len(lines) > MAX_LINES:
        return None
    return lines
