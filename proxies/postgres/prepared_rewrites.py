"""Reused row-filtered simple Queries run as statements the proxy prepared on the server
(issue 30): when that gives the server exactly the filled text's statement, and the
session's names for them.

A row filter's rewrite is made once per statement shape (portcullis.literals); a reused
verdict refills it with each statement's own literals, and the server then parses,
analyses and plans the filtered text for every simple Query. For pgbench's read that is
about 28k of the backend's instructions per statement more than the statement unfiltered
(callgrind of a single-user backend: 121k -> 149k), most of it the planner's work on the
added predicate. Prepared once per session and rewrite, each statement is a Bind of its
literals: the backend skips the parse and analysis and, after PostgreSQL's five custom
plans, plans no more (the generic plan).

Taken only where the prepared statement is the filled text's, else the filled text goes
as a simple Query, as before:
- every literal of the statement is an integer of 1 to 9 digits (with its minus sign), as
  literals.fill's number plan proves them, and is bound as a parameter declared int4: the
  type the server gives such a literal, so operators, functions and result types resolve
  alike;
- the rewrite is one SELECT (no INTO, no data-modifying WITH), with no parameter under
  DISTINCT ON, GROUP BY, ORDER BY, a window or an aggregate's ORDER BY (DISTINCT ON (1)
  and GROUP BY ROLLUP (1) read an integer constant as a column's position, and shapes
  make those parameters);
- the parameters are $1..$n, each filled by one number of the statement.
The enforcer also takes it only outside a client's unfinished extended batch and never
behind a transaction pooler.

One difference remains, and it fails closed: a statement prepared before the filtered
table's columns changed (ALTER TABLE under a `SELECT *` shape) is refused by the server at
its next Bind ("cached plan must not change result type"), an error where the filled text
would have run; that statement is then prepared anew, under a new name, for the next one.

Names are `portcullis_rf_<random>_<n>`: a new one for every Parse, so a name whose Parse
or Bind failed (ResponseTracker.unprepared) is never bound again. The enforcer refuses a
client's Parse, Close, PREPARE or DEALLOCATE of a name with the prefix, and DEALLOCATE ALL
or DISCARD ALL forget every one. No IO here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from typing import Any

from pglast import ast, parse_sql

from portcullis.literals import ShapeRewrite
from portcullis.literals import _number_plan as number_plan
from portcullis.shape import NUMBER_RUN, skeleton
from proxies.postgres.codec.frontend import Parse
from proxies.postgres.codec.wire import INT32, UINT16

PREFIX = "portcullis_rf_"
INT4 = 23  # pg_type.oid of int4: the type of an integer literal of at most 9 digits
MAX_PREPARED = 64  # statements one session prepares; past it, filled text as before
MAX_KNOWN = 256  # rewrites whose parameter count is kept per session

# where a parameter is not the literal it stands for: an integer constant there names a
# column by its position (or may: the aggregate's and the window's ORDER BY are kept out
# alike, to be sure)
_POSITIONAL = frozenset({"distinctClause", "groupClause", "sortClause", "windowClause"})
_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)

# after the Bind: the unnamed portal described and run whole, then Sync
_DESCRIBE_EXECUTE_SYNC = b"D\0\0\0\x06P\0" + b"E\0\0\0\x09\0\0\0\0\0" + b"S\0\0\0\x04"
# a Bind of one value after that value: no result formats (all text), then the rest
_AFTER_VALUE = b"\0\0" + _DESCRIBE_EXECUTE_SYNC


def parameters_of(text: str) -> int:
    """How many int4 parameters a rewrite's text takes when it may run prepared for a
    simple Query of integer literals; 0 when it may not (see the module's conditions)."""
    try:
        statements = parse_sql(text)
    except Exception:
        return 0
    if len(statements) != 1:
        return 0
    top = statements[0].stmt
    if not isinstance(top, ast.SelectStmt) or top.intoClause is not None:
        return 0
    numbers: set[int] = set()
    for node, positional in _nodes(top, False):
        if isinstance(node, _WRITES):
            return 0
        if isinstance(node, ast.SelectStmt) and node is not top and node.intoClause is not None:
            return 0
        if isinstance(node, ast.ParamRef):
            if positional:
                return 0
            numbers.add(node.number or 0)
    count = len(numbers)
    return count if numbers == set(range(1, count + 1)) else 0


def _nodes(node: Any, positional: bool) -> Iterator[tuple[Any, bool]]:
    """Every node under node, and whether it stands where a constant may be a position."""
    if isinstance(node, (tuple, list)):
        for item in node:
            yield from _nodes(item, positional)
        return
    if not isinstance(node, ast.Node):
        return
    yield node, positional
    for name in getattr(node, "__slots__", ()):
        value = getattr(node, name)
        if isinstance(value, (ast.Node, tuple, list)):
            inner = (
                positional
                or name in _POSITIONAL
                or (isinstance(node, ast.FuncCall) and name in ("agg_order", "over"))
            )
            yield from _nodes(value, inner)


class PreparedRewrites:
    """The rewrites one session runs prepared, by the rewrite's text: their statement
    names and parameter counts."""

    def __init__(self) -> None:
        self._secret = secrets.token_hex(6)
        self._made = 0
        # rewrite text -> (statement name, the Bind frame's bytes up to its values, and by
        # the length of a lone value the Bind frame's bytes up to it), once a Parse of it
        # went upstream
        self.names: dict[str, tuple[str, bytes, dict[int, bytes]]] = {}
        self._counts: dict[str, int] = {}  # rewrite text -> parameters_of(text)
        # the last (rewrite, statement skeleton), the statement numbers its parameters
        # take, as ((which number, minus), ...) in parameter order (None: not provable),
        # the highest of those numbers, and for a skeleton of one number that is the one
        # parameter, where it stands: (its start, the characters after it, minus)
        self._last: tuple[Any, str, tuple[tuple[int, bool], ...] | None, int, Any] = (
            None, "", None, 0, None,
        )  # fmt: skip

    def values(self, rewrite: ShapeRewrite, sql: str) -> list[bytes] | None:
        """sql's literals as the values of rewrite's parameters, when the statement may
        run prepared (see the module); None: fill the text instead."""
        zeros = skeleton(sql)
        if zeros is None:
            return None
        last = self._last
        if last[0] is not rewrite or last[1] != zeros:
            # the plan is the same for the same rewrite and skeleton: proved once for them
            plan = number_plan(rewrite, zeros)
            if plan is None:
                return None
            last = self._last = self._proved(rewrite, zeros, plan)
        order = last[2]
        if order is None:
            return None
        single = last[4]
        if single is not None:  # the usual (`WHERE id = 42`): sql is zeros but that number
            start, after, minus = single
            digits = sql[start : len(sql) - after]
            return [("-" + digits if minus else digits).encode()]
        numbers = NUMBER_RUN.findall(sql)
        if len(numbers) <= last[3]:
            return None
        if len(order) == 1:  # one parameter: no comprehension's frame
            [(which, minus)] = order
            return [("-" + numbers[which] if minus else numbers[which]).encode()]
        return [
            ("-" + numbers[which] if minus else numbers[which]).encode() for which, minus in order
        ]

    def _proved(self, rewrite: ShapeRewrite, zeros: str, plan: Any) -> tuple[Any, ...]:
        text = rewrite.text
        count = self._counts.get(text)
        if count is None:
            if len(self._counts) >= MAX_KNOWN:
                self._counts.clear()
            count = self._counts[text] = parameters_of(text)
        order = _order(text, plan, count) if count else None
        if order is not None and self._made >= MAX_PREPARED and text not in self.names:
            order = None  # (a later plan of a prepared one is proved again)
        top = max((which for which, _ in order), default=0) if order is not None else 0
        # each number of a statement with this skeleton is one of its zeros, in order (the
        # skeleton's only standalone runs of digits): with one, the statement is the
        # skeleton with that zero's characters in its place
        runs = [(m.start(), m.group()) for m in NUMBER_RUN.finditer(zeros)]
        single = None
        if order is not None and len(order) == 1 and order[0][0] == 0 and len(runs) == 1:
            start, run = runs[0]
            if run == "0":
                single = (start, len(zeros) - start - 1, order[0][1])
        return (rewrite, zeros, order, top, single)

    def frames(self, text: str, values: list[bytes]) -> tuple[str, bytes]:
        """The statement name for a rewrite's text, and the frames that run it bound to
        values into the unnamed portal (protocol 3.0, 55.7 Message Formats): Parse the
        first time, Bind (values and results as text), Describe, Execute and Sync."""
        known = self.names.get(text)
        if known is None:
            self._made += 1
            name = f"{PREFIX}{self._secret}_{self._made}"
            known = self.names[text] = (name, b"\0" + name.encode() + b"\0\0\0", {})
            parse = Parse(name, text, [INT4] * len(values)).encode()
        else:
            parse = b""
        name, head, starts = known
        if len(values) == 1:
            [value] = values
            size = len(value)
            start = starts.get(size)
            if start is None:  # the Bind frame up to its one value, for values this long
                length = 4 + len(head) + 2 + 4 + size + 2
                start = starts[size] = (
                    b"B" + INT32.pack(length) + head + b"\0\x01" + INT32.pack(size)
                )
            return name, parse + start + value + _AFTER_VALUE
        parts = [head, UINT16.pack(len(values))]
        for value in values:
            parts.append(INT32.pack(len(value)))
            parts.append(value)
        parts.append(b"\0\0")
        body = b"".join(parts)
        return name, parse + b"B" + INT32.pack(len(body) + 4) + body + _DESCRIBE_EXECUTE_SYNC

    def forget(self, names: Iterable[str]) -> None:
        """Statements the server may not hold as made (a Parse or Bind of them failed)."""
        gone = set(names)
        for text, (name, _, _) in list(self.names.items()):
            if name in gone:
                del self.names[text]
        self._last = (None, "", None, 0, None)  # proved again, against MAX_PREPARED

    def forget_all(self) -> None:
        """DEALLOCATE ALL, DISCARD ALL: the server holds none of them any more."""
        self.names.clear()
        self._last = (None, "", None, 0, None)


def _order(
    text: str, plan: tuple[tuple[int, int, int, bool], ...], count: int
) -> tuple[tuple[int, bool], ...] | None:
    """For each of the text's parameters $1..$count, the statement number the plan puts
    there and whether a minus sign goes with it; None unless each is filled, alike
    wherever it stands."""
    found: dict[int, tuple[int, bool]] = {}
    for start, end, which, minus in plan:
        slot = text[start:end]
        if not slot.startswith("$") or not slot[1:].isdigit():
            return None
        if found.setdefault(int(slot[1:]), (which, minus)) != (which, minus):
            return None
    if set(found) != set(range(1, count + 1)):
        return None
    return tuple(found[k] for k in range(1, count + 1))


def reserved(name: str) -> bool:
    """Whether a statement name is one this module makes (folded as the server folds an
    unquoted name)."""
    return name.lower().startswith(PREFIX)
