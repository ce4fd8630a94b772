"""Row filters from policy: a statement rewritten so that every read of a filtered table
sees only the rows the policy's predicate admits (virtual row-level security, issue 30).

Owns rewrite(): the statement is parsed by the real Postgres parser (pglast), every
reference to a filtered table in a FROM position — joins, subqueries, CTE bodies, set
operations, LATERAL, UPDATE ... FROM, DELETE ... USING, MERGE ... USING, EXPLAIN,
PREPARE, DECLARE and COPY (query) bodies — becomes a subselect under the reference's own
name,

    t            →  (SELECT * FROM t AS portcullis_rf WHERE portcullis_rf.col = 'v') AS t
    s.t AS x     →  (SELECT * FROM s.t AS portcullis_rf WHERE ...) AS x

and the tree is written back as text by pglast's deparser: predicate values are A_Const
nodes the deparser quotes, never text pasted into SQL. The predicate's columns are
qualified by the inner alias, so a column the table lacks is an error, never an outer
query's column.

A SELECT whose FROM holds that one table reference and nothing else (no join, no column
aliases) gets the predicate as the first term of its own WHERE instead,

    SELECT a FROM s.t AS x WHERE a = 1  →  SELECT a FROM s.t AS x WHERE x.col = 'v' AND a = 1

the same rows for every later clause (grouping, windows, DISTINCT, LIMIT and the target
list all run on what WHERE kept), and the plan the server makes of the subselect once it
pulls it up, without the pull-up's parse and planning work on every statement. The
predicate is qualified by the reference's own name, which in that SELECT's scope can only
be this table (the innermost scope resolves first); column aliases would rename the
table's columns, so a reference carrying them keeps the subselect.

Conditions never meet a hidden row: the planner runs a scan's conditions cheapest first,
the filter's among them, so a statement with a condition that could fail on a row's
values (anything but comparisons of columns with columns, constants and parameters), or
with a subquery in FROM or a WITH query, reads every filtered table in a subselect kept
apart by `OFFSET 0` (never pulled up, nothing pushed into it), as an `in` filter always
is (_conditions_can_fail).

Proving coverage, not hoping for it: after the rewrite every RangeVar of the tree is
checked; one that names a filtered table and is not the inner reference this module made
(a write's target, COPY of the table, TABLESAMPLE, LOCK, DDL...) denies the statement, and
so does one that names a relation whose rows come from a filtered table (a view or
materialized view over it, a parent or a partition of it: `sources`, read by the proxy from
the catalog at session start). A name that a CTE in scope defines is the CTE (scopes
follow the server's rules: a non-recursive WITH sees only the CTEs before it). DO blocks,
CALL, the functions that run SQL text or read tables by name (`*_to_xml*`, ts_stat,
ts_rewrite, dblink*), and the statistics catalogs that hold sampled values are denied while
any filter applies.

A table is matched by name as the parser reads it (unquoted names folded to lower case):
a filter on "public.orders" applies to `orders` whatever the search_path (filtering a
same-named table in another schema is the safe mistake: its predicate column may be
missing, an error) and to `public.orders`, not to `archive.orders`; a filter on "orders"
applies to every schema's `orders`.

No IO here and no policy: the policy says which predicate applies (Verdict.row_filter);
this module only applies it, or says why it cannot.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind
from pglast.stream import RawStream

from portcullis.literals import ShapeRewrite, fill, printed, shape_of
from portcullis.verdict import RowCondition

INNER_ALIAS = "portcullis_rf"
UNPARSEABLE = "the statement cannot be parsed, so its row filter cannot be applied"
MAX_INT4 = 2**31 - 1

# functions that run SQL text or read a table named by a string: what they read cannot be
# rewritten, so a statement calling one is denied while a row filter applies
_SQL_TEXT_FUNCTIONS = frozenset({"ts_stat", "ts_rewrite", "query_to_json", "query_to_jsonb"})
_SQL_TEXT_MARKERS = ("_to_xml", "dblink")
# catalogs whose rows hold sampled column values of every table
_SAMPLE_CATALOGS = frozenset(
    {"pg_stats", "pg_statistic", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic_ext_data"}
)
_COMPARISONS = frozenset({"=", "<>", "!=", "<", "<=", ">", ">="})


@dataclass(frozen=True)
class Rewrite:
    """What rewrite() made of a statement: `sql` the text to run ("" when nothing needed
    rewriting), `denied` why it may not run ("" when it may), `tables` the filtered tables
    whose references were rewritten, `shape` the rewrite of the statement's shape."""

    sql: str = ""
    denied: str = ""
    tables: tuple[str, ...] = ()
    # the rewrite of the statement's shape, which a proxy may fill with the literals of
    # another statement of that shape (portcullis.literals); None: this text's alone
    shape: ShapeRewrite | None = None


class _Refused(Exception):
    """The statement cannot be proved covered; the message says why."""


def rewrite(
    sql: str,
    filters: Mapping[str, Sequence[RowCondition]],
    sources: Mapping[str, Sequence[str]] | None = None,
) -> Rewrite:
    """sql with every read of a table in `filters` ({"schema.table" or "table": the
    conditions, all of which a row must meet}) filtered; `sources`: relation → the
    relations whose rows it shows (views, inheritance), as the proxy read them.

    Statements of one shape are rewritten once: the text with its literals made
    parameters (pglast's normalize) is rewritten on the tree and remembered; a statement
    of that shape gets the remembered text with its own literals put back where the
    parameters stand, token for token, and the result must parse to the remembered
    text's fingerprint (else it is rewritten on its own tree)."""
    if not filters:
        return Rewrite()
    try:
        return _by_shape(sql, filters, sources or {})
    except _NoShape:
        return _rewrite_tree(sql, filters, sources or {})


class _NoShape(Exception):
    """The statement's literals cannot be put back token for token: use its own tree."""


_TEMPLATES: dict[tuple[Any, ...], tuple[Rewrite, ShapeRewrite | None]] = {}
MAX_TEMPLATES = 4096


def _by_shape(
    sql: str, filters: Mapping[str, Sequence[RowCondition]], sources: Mapping[str, Sequence[str]]
) -> Rewrite:
    shape = shape_of(sql)
    if shape is None:
        raise _NoShape
    key = (
        shape,
        tuple((k, tuple(v)) for k, v in filters.items()),
        tuple((k, tuple(v)) for k, v in sources.items()),
    )
    known = _TEMPLATES.get(key)
    if known is None:
        done = _rewrite_tree(shape, filters, sources)
        if done.denied == UNPARSEABLE:  # e.g. `TIMESTAMP $1`: the literal was grammar
            raise _NoShape
        template = ShapeRewrite(shape, done.sql, printed(done.sql)) if done.sql else None
        if len(_TEMPLATES) >= MAX_TEMPLATES:
            _TEMPLATES.clear()
        known = _TEMPLATES[key] = (done, template)
    done, template = known
    if done.denied or template is None:
        return done
    final = fill(template, sql, shape)
    if final is None:
        raise _NoShape
    return Rewrite(final, "", done.tables, template)


def _rewrite_tree(
    sql: str, filters: Mapping[str, Sequence[RowCondition]], sources: Mapping[str, Sequence[str]]
) -> Rewrite:
    """rewrite() on sql's own tree."""
    try:
        statements = parse_sql(sql)
    except Exception:
        return Rewrite(denied=UNPARSEABLE)
    rewriter = _Rewriter(filters, sources)
    try:
        for raw in statements:
            raw.stmt = rewriter.statement(raw.stmt)
        rewriter.prove(statements)
        if not rewriter.applied:
            return Rewrite()
        text = "; ".join(RawStream()(raw.stmt) for raw in statements if raw.stmt is not None)
    except _Refused as exc:
        return Rewrite(denied=str(exc))
    except RecursionError:
        return Rewrite(denied="the statement is too deeply nested to apply its row filter")
    return Rewrite(text, "", tuple(rewriter.applied))


def _key(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None, table)


def _named(rv: ast.RangeVar) -> str:
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else str(rv.relname)


class _Rewriter:
    def __init__(
        self, filters: Mapping[str, Sequence[RowCondition]], sources: Mapping[str, Sequence[str]]
    ) -> None:
        self.filters = [(_key(name), name, tuple(conds)) for name, conds in filters.items()]
        # relation name → the filtered tables whose rows it shows
        self.through: dict[str, set[str]] = {}
        for relation, reads in sources.items():
            hits = {f for r in reads if (f := self._filter_of(*_key(r))) is not None}
            if hits:
                self.through.setdefault(relation, set()).update(hits)
        self.made: set[int] = set()  # the inner RangeVars this rewrite placed
        self.ctes: set[int] = set()  # RangeVars that name a CTE in scope
        self.applied: dict[str, None] = {}
        # the statement being rewritten has a condition that could fail on a hidden row
        # (_conditions_can_fail): every filter of it is read fenced
        self.fence = False

    # -- matching ------------------------------------------------------------------------

    def _filter_of(self, schema: str | None, table: str) -> str | None:
        for (f_schema, f_table), name, _ in self.filters:
            if f_table == table and (f_schema is None or schema is None or f_schema == schema):
                return name
        return None

    def _conditions(self, rv: ast.RangeVar) -> tuple[str, tuple[RowCondition, ...]] | None:
        for (f_schema, f_table), name, conds in self.filters:
            if f_table == rv.relname and (
                f_schema is None or rv.schemaname is None or f_schema == rv.schemaname
            ):
                return name, conds
        return None

    def _shows_filtered(self, rv: ast.RangeVar) -> set[str]:
        if rv.schemaname:
            return self.through.get(_named(rv), set())
        found: set[str] = set()
        for relation, hits in self.through.items():
            if relation.rpartition(".")[2] == rv.relname:
                found |= hits
        return found

    # -- the walk ------------------------------------------------------------------------

    def statement(self, node: Any) -> Any:
        if isinstance(node, ast.DoStmt):
            raise _Refused("a DO block cannot run under a row filter (its SQL is text)")
        if isinstance(node, ast.CallStmt):
            raise _Refused("CALL cannot run under a row filter (a procedure reads what it likes)")
        if type(node).__name__ not in _KNOWN_STATEMENTS:
            raise _Refused(
                f"{type(node).__name__} is not a statement the row filter knows how to cover — "
                "denied"
            )
        self.fence = _conditions_can_fail(node)
        return self.visit(node, frozenset())

    def visit(self, node: Any, scope: frozenset[str]) -> Any:
        if isinstance(node, tuple):
            return tuple(self.visit(item, scope) for item in node)
        if not isinstance(node, ast.Node):
            return node
        if isinstance(node, ast.FuncCall):
            self._check_function(node)
        with_clause = getattr(node, "withClause", None)
        if isinstance(with_clause, ast.WithClause) and with_clause.ctes:
            names = [str(c.ctename) for c in with_clause.ctes]
            for i, cte in enumerate(with_clause.ctes):
                visible = scope | frozenset(names if with_clause.recursive else names[:i])
                cte.ctequery = self.visit(cte.ctequery, visible)
            scope = scope | frozenset(names)
        for name in _slots(node):
            if name == "withClause":
                continue
            value = getattr(node, name)
            if value is None or isinstance(value, (str, int, float, bool)):
                continue
            if (
                name == "fromClause"
                and isinstance(node, ast.SelectStmt)
                and self._where_filtered(node, value, scope)
            ):
                continue  # the one reference stays as it is, filtered by WHERE
            if (type(node).__name__, name) in _FROM_LISTS and isinstance(value, tuple):
                setattr(node, name, tuple(self.from_item(item, scope) for item in value))
            elif (type(node).__name__, name) in _FROM_ITEMS:
                setattr(node, name, self.from_item(value, scope))
            else:
                setattr(node, name, self.visit(value, scope))
        return node

    def _where_filtered(self, select: ast.SelectStmt, items: Any, scope: frozenset[str]) -> bool:
        """A SELECT reading one filtered table alone: the predicate first in its WHERE,
        the reference kept (and proved covered); True when done so."""
        if not (isinstance(items, tuple) and len(items) == 1):
            return False
        [item] = items
        if not isinstance(item, ast.RangeVar):
            return False
        if item.schemaname is None and item.relname in scope:
            return False  # a CTE: from_item marks it
        if item.alias is not None and item.alias.colnames:
            return False  # renamed columns: the subselect's inner alias reads the table's
        found = self._conditions(item)
        if found is None or self.fence or _fenced(found[1]):
            return False
        name, conditions = found
        qualifier = str(item.alias.aliasname if item.alias is not None else item.relname)
        predicate = _predicate(conditions, qualifier)
        if select.whereClause is not None:
            predicate = ast.BoolExpr(boolop=0, args=(predicate, select.whereClause))  # AND
        select.whereClause = predicate
        self.made.add(id(item))
        self.applied[name] = None
        return True

    def from_item(self, item: Any, scope: frozenset[str]) -> Any:
        """One FROM-clause item: a table reference may become a filtered subselect."""
        if not isinstance(item, ast.RangeVar):
            return self.visit(item, scope)
        if item.schemaname is None and item.relname in scope:
            self.ctes.add(id(item))
            return item
        found = self._conditions(item)
        if found is None:
            return item
        name, conditions = found
        inner = ast.RangeVar(
            catalogname=item.catalogname,
            schemaname=item.schemaname,
            relname=item.relname,
            inh=item.inh,
            relpersistence=item.relpersistence,
            alias=ast.Alias(aliasname=INNER_ALIAS),
        )
        self.made.add(id(inner))
        select = parse_sql(f"SELECT * FROM x AS {INNER_ALIAS}")[0].stmt
        assert isinstance(select, ast.SelectStmt)
        select.fromClause = (inner,)
        select.whereClause = _predicate(conditions, INNER_ALIAS)
        if self.fence or _fenced(conditions):
            select.limitOffset = ast.A_Const(isnull=False, val=ast.Integer(ival=0))
        self.applied[name] = None
        alias = item.alias or ast.Alias(aliasname=item.relname)
        return ast.RangeSubselect(lateral=False, subquery=select, alias=alias)

    def _check_function(self, call: ast.FuncCall) -> None:
        parts = [getattr(p, "sval", "") for p in call.funcname or ()]
        name = str(parts[-1]).lower() if parts else ""
        if name in _SQL_TEXT_FUNCTIONS or any(m in name for m in _SQL_TEXT_MARKERS):
            raise _Refused(
                f"{name}() runs SQL text or reads a table by name, which a row filter "
                "cannot reach — denied"
            )

    # -- the proof -----------------------------------------------------------------------

    def prove(self, statements: Sequence[Any]) -> None:
        """Every relation reference left is one this rewrite made, a CTE, or a relation no
        filter touches; otherwise the statement is refused."""
        for rv in _range_vars(statements):
            if id(rv) in self.made or id(rv) in self.ctes:
                continue
            if rv.relname in _SAMPLE_CATALOGS:
                raise _Refused(
                    f"{rv.relname} holds sampled column values of filtered tables — denied "
                    "under a row filter"
                )
            found = self._conditions(rv)
            if found is not None:
                raise _Refused(
                    f"{_named(rv)} has a row filter that cannot be applied where this "
                    "statement uses it (writes to it, COPY, TABLESAMPLE, LOCK and DDL are "
                    "denied; read it with SELECT)"
                )
            hidden = self._shows_filtered(rv)
            if hidden:
                raise _Refused(
                    f"{_named(rv)} shows rows of {', '.join(sorted(hidden))}, which has a row "
                    "filter (a view, or a parent or partition of it): query the filtered "
                    "table itself"
                )


def _range_vars(node: Any) -> Iterator[ast.RangeVar]:
    return (item for item in _nodes(node) if isinstance(item, ast.RangeVar))


def _nodes(node: Any) -> Iterator[Any]:
    """Every parse node under node (node included)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(item)
            continue
        if not isinstance(item, ast.Node):
            continue
        yield item
        for name in _slots(item):
            value = getattr(item, name)
            if isinstance(value, (ast.Node, tuple, list)):
                stack.append(value)


def _slots(node: ast.Node) -> tuple[str, ...]:
    return tuple(getattr(node, "__slots__", ()))


# statements whose every table reference is a RangeVar this module sees (reads, writes,
# their wrappers) or that reference no table: anything else under a row filter is denied
_KNOWN_STATEMENTS = frozenset(
    {
        "SelectStmt",
        "InsertStmt",
        "UpdateStmt",
        "DeleteStmt",
        "MergeStmt",
        "ExplainStmt",
        "PrepareStmt",
        "ExecuteStmt",
        "DeallocateStmt",
        "DeclareCursorStmt",
        "FetchStmt",
        "ClosePortalStmt",
        "CopyStmt",
        "VariableSetStmt",
        "VariableShowStmt",
        "TransactionStmt",
        "DiscardStmt",
        "LockStmt",
        "CheckPointStmt",
        "ListenStmt",
        "UnlistenStmt",
        "NotifyStmt",
    }
)


# the fields that hold FROM items: lists of them, and single ones
_FROM_LISTS = frozenset(
    {("SelectStmt", "fromClause"), ("UpdateStmt", "fromClause"), ("DeleteStmt", "usingClause")}
)
_FROM_ITEMS = frozenset(
    {("JoinExpr", "larg"), ("JoinExpr", "rarg"), ("MergeStmt", "sourceRelation")}
)


# -- the predicate ---------------------------------------------------------------------


def _fenced(conditions: Sequence[RowCondition]) -> bool:
    """Whether the filter's subselect is kept apart whatever the statement's conditions:
    one with an `in` list. The planner runs a scan's conditions cheapest first, and n
    values cost n/2 comparisons (hashed: one, as `=` does), so a reader's cheaper
    `1/(ascii(s.setting) - 47) = 1`, in the same WHERE or pushed down into the subselect,
    ran on rows the filter hides (pg_settings' data_directory): its division by zero told
    their values. `OFFSET 0` keeps the subselect apart (never pulled up, no condition
    pushed into it), so the statement's conditions, outputs and functions meet only the
    rows the filter admits."""
    return any(c.op == "in" for c in conditions)


def _conditions_can_fail(statement: Any) -> bool:
    """Whether a condition of the statement could run on a row the filter hides and fail
    (or do anything else a row's values could show) there: then every filter is read in a
    subselect kept apart (`OFFSET 0`), as an `in` list always is.

    An `=` filter costs the planner one comparison, and a reader's condition of one
    function call costs the same: tied, the reader's ran first (the filter's equality goes
    to an equivalence class and comes back last), so `WHERE jsonb_path_match(j, '$.a')`
    failed with "single boolean result is expected" on another tenant's row, and the
    error answered what that row held; the same when the condition sat in an outer query
    and was pushed down into the filtered subselect. A statement whose conditions are all
    comparisons of columns with columns, constants or parameters (`id = 5`, `a IN (1, 2)`,
    `b IS NULL`, `c BETWEEN $1 AND $2`, joined by AND, OR, NOT) keeps the plans it had:
    such a comparison of the server's own types cannot fail on a row's values, so which
    runs first does not matter, and its index can still be used. A subquery in FROM or a
    WITH query makes a column name an expression of its own (`WHERE x` over `SELECT
    jsonb_path_match(...) AS x`), so a statement with one is read fenced too."""
    for node in _nodes(statement):
        if isinstance(node, (ast.RangeSubselect, ast.WithClause, ast.CommonTableExpr)):
            return True
        for slot in _CONDITION_SLOTS.get(type(node).__name__, ()):
            condition = getattr(node, slot, None)
            if condition is not None and not _plain_condition(condition):
                return True
    return False


# the fields holding a condition a scan may run, per node type
_CONDITION_SLOTS = {
    "SelectStmt": ("whereClause", "havingClause"),
    "UpdateStmt": ("whereClause",),
    "DeleteStmt": ("whereClause",),
    "JoinExpr": ("quals",),
    "MergeStmt": ("joinCondition",),
    "MergeWhenClause": ("condition",),
    "OnConflictClause": ("whereClause",),
    "InferClause": ("whereClause",),
}


def _plain_condition(node: Any) -> bool:
    """A condition built only of comparisons between columns, constants and parameters."""
    if isinstance(node, ast.BoolExpr):
        return all(_plain_condition(a) for a in node.args or ())
    if isinstance(node, (ast.NullTest, ast.BooleanTest)):
        return _plain_operand(node.arg)
    if isinstance(node, ast.ColumnRef):
        return _plain_operand(node)
    if _constant_operand(node):
        return True
    if not isinstance(node, ast.A_Expr) or node.kind not in _PLAIN_KINDS:
        return False
    names = [getattr(n, "sval", None) for n in node.name or ()]
    between = node.kind in (A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_NOT_BETWEEN)
    if not between and (len(names) != 1 or names[0] not in _COMPARISONS):
        return False
    if not _plain_operand(node.lexpr):
        return False
    if node.kind in (A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_OP_ALL):
        return _constant_operand(node.rexpr)
    if isinstance(node.rexpr, tuple):  # IN (...), BETWEEN a AND b
        return all(_plain_operand(v) for v in node.rexpr)
    return _plain_operand(node.rexpr)


_PLAIN_KINDS = frozenset(
    {
        A_Expr_Kind.AEXPR_OP,
        A_Expr_Kind.AEXPR_OP_ANY,
        A_Expr_Kind.AEXPR_OP_ALL,
        A_Expr_Kind.AEXPR_DISTINCT,
        A_Expr_Kind.AEXPR_NOT_DISTINCT,
        A_Expr_Kind.AEXPR_IN,
        A_Expr_Kind.AEXPR_BETWEEN,
        A_Expr_Kind.AEXPR_NOT_BETWEEN,
    }
)


def _plain_operand(node: Any) -> bool:
    """A column named as it is (no `*`), or a constant."""
    if isinstance(node, ast.ColumnRef):
        return all(isinstance(f, ast.String) for f in node.fields or ())
    return _constant_operand(node)


def _constant_operand(node: Any) -> bool:
    """A literal or parameter, maybe cast or negated: the same value on every row."""
    if isinstance(node, (ast.A_Const, ast.ParamRef)):
        return True
    if isinstance(node, ast.TypeCast):
        return _constant_operand(node.arg)
    if isinstance(node, ast.A_Expr) and node.kind == A_Expr_Kind.AEXPR_OP and node.lexpr is None:
        names = [getattr(n, "sval", None) for n in node.name or ()]
        return names in (["-"], ["+"]) and _constant_operand(node.rexpr)
    return False


def _predicate(conditions: Sequence[RowCondition], qualifier: str) -> Any:
    if not conditions:
        raise _Refused("a row filter without conditions — denied")
    parts = [_condition(c, qualifier) for c in conditions]
    if len(parts) == 1:
        return parts[0]
    return ast.BoolExpr(boolop=0, args=tuple(parts))  # AND_EXPR


def _condition(condition: RowCondition, qualifier: str) -> Any:
    column = ast.ColumnRef(fields=(ast.String(sval=qualifier), ast.String(sval=condition.column)))
    op = condition.op
    if op == "in":
        values = condition.value if isinstance(condition.value, tuple) else (condition.value,)
        if not values:
            return ast.A_Const(isnull=False, val=ast.Boolean(boolval=False))
        return ast.A_Expr(
            kind=A_Expr_Kind.AEXPR_IN,
            name=(ast.String(sval="="),),
            lexpr=column,
            rexpr=tuple(_constant(v) for v in values),
        )
    if op not in _COMPARISONS or isinstance(condition.value, tuple):
        raise _Refused(f"row filter operator {op!r} with that value is not supported — denied")
    return ast.A_Expr(
        kind=A_Expr_Kind.AEXPR_OP,
        name=(ast.String(sval="<>" if op == "!=" else op),),
        lexpr=column,
        rexpr=_constant(condition.value),
    )


def _constant(value: Any) -> Any:
    """A literal the deparser quotes. Text must be plain ASCII without backslashes or NUL:
    the proxy sends the rewritten text without settling first, which is safe only for
    text every client encoding and escaping setting reads alike."""
    if isinstance(value, bool):
        return ast.A_Const(isnull=False, val=ast.Boolean(boolval=value))
    if isinstance(value, int):
        if -MAX_INT4 <= value <= MAX_INT4:
            return ast.A_Const(isnull=False, val=ast.Integer(ival=value))
        return ast.A_Const(isnull=False, val=ast.Float(fval=str(value)))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused("a row filter value is not a finite number — denied")
        return ast.A_Const(isnull=False, val=ast.Float(fval=repr(value)))
    if isinstance(value, str):
        if not value.isascii() or "\\" in value or "\x00" in value:
            raise _Refused(
                "a row filter value holds characters other than plain ASCII (or a "
                "backslash) — denied"
            )
        return ast.A_Const(isnull=False, val=ast.String(sval=value))
    raise _Refused(f"a row filter value of type {type(value).__name__} — denied")
