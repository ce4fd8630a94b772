"""SQL text → the `input.command.postgres.statements` list the policy sees.

Owns classifying Postgres statements with the real Postgres parser (pglast wraps
libpg_query, the server's own grammar), so nothing policy must see can hide: comments,
several statements in one string, DML inside CTEs, `EXPLAIN ANALYZE <write>`, `PREPARE`,
`COPY (<write>) TO`, function calls anywhere in the tree and the static SQL of `DO` blocks
all surface as entries or entry fields. Text the parser rejects becomes one `unparseable`
entry, which the policy denies.

No IO here and no policy: this module says what the SQL is, never whether it may run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pglast
from pglast import ast
from pglast.parser import parse_sql_json

from pdp.lineage import LINEAGE_TAGS, lineage_fields, unknown_lineage

Entry = dict[str, Any]

_BY_TAG = {
    "SelectStmt": "select",
    "InsertStmt": "insert",
    "UpdateStmt": "update",
    "DeleteStmt": "delete",
    "MergeStmt": "merge",
    "CopyStmt": "copy",
    "TruncateStmt": "truncate",
    "GrantStmt": "grant",
    "GrantRoleStmt": "grant",
    "CreateRoleStmt": "grant",
    "AlterRoleStmt": "grant",
    "AlterRoleSetStmt": "grant",
    "DropRoleStmt": "grant",
    "AlterDefaultPrivilegesStmt": "grant",
    "ReassignOwnedStmt": "grant",
    "DropOwnedStmt": "grant",
    "AlterSystemStmt": "alter_system",
    "CreateExtensionStmt": "create_extension",
    "VariableSetStmt": "set",
    "VariableShowStmt": "show",
    "ExplainStmt": "explain",
    "TransactionStmt": "transaction",
    "DoStmt": "do",
    "CallStmt": "call",
    "PrepareStmt": "prepare",
    "ExecuteStmt": "execute",
    "DeallocateStmt": "deallocate",
    "DeclareCursorStmt": "declare",
    "FetchStmt": "fetch",
    "ClosePortalStmt": "close",
    "ListenStmt": "listen",
    "UnlistenStmt": "unlisten",
    "NotifyStmt": "notify",
    "LockStmt": "lock",
    "DiscardStmt": "discard",
    "CreateTableAsStmt": "ddl",
    "RefreshMatViewStmt": "ddl",
    "IndexStmt": "ddl",
    "ViewStmt": "ddl",
    "RuleStmt": "ddl",
    "CompositeTypeStmt": "ddl",
    "ReplicaIdentityStmt": "ddl",
    "ConstraintsSetStmt": "transaction",
    "LoadStmt": "load",
    "VacuumStmt": "maintenance",
    "ClusterStmt": "maintenance",
    "ReindexStmt": "maintenance",
    "CheckPointStmt": "maintenance",
}

# Schema-changing statements not named above are recognised by their node name.
_DDL_PREFIXES = ("Create", "Alter", "Define", "Rename", "Comment", "SecLabel", "Import")

# Statement nodes that, found inside another statement, add tables but no entry of their
# own: subqueries read only, and the settings inside ALTER SYSTEM / ALTER ROLE ... SET /
# CREATE FUNCTION ... SET are configuration the parent statement already names.
_NOT_NESTED_TAGS = {"SelectStmt", "VariableSetStmt"}

# DropStmt object kinds whose names are relations, listed as tables.
_RELATION_OBJECTS = {"table", "view", "materialized_view", "foreign_table", "sequence", "index"}

_TRUE_WORDS = {"true", "on", "1", "yes"}


def classify(sql: str) -> list[Entry]:
    """One entry per statement of sql, nested writes after their parent; [] for no SQL."""
    fast = _classify_fast(sql)
    return _classify_ast(sql) if fast is None else fast


def _classify_fast(sql: str) -> list[Entry] | None:
    """classify() from the parser's JSON walked as plain dicts (building pglast.ast objects
    costs far more than parsing); None where the JSON cannot say exactly what the reference,
    _classify_ast(), would (too deep for json, '' vs no COPY file name).

    The two must agree on every statement: tests/test_classifier_differential.py runs both
    over PostgreSQL's regression suite."""
    try:
        tree = parse_sql_json(sql)
    except Exception as exc:  # any parser failure is a deny, never a crash
        return [_unparseable(exc)]
    try:
        raw_statements = json.loads(tree).get("stmts", ())
        entries: list[Entry] = []
        for raw in raw_statements:
            ((tag, fields),) = raw["stmt"].items()
            found = _classify_json(tag, fields)
            if tag in LINEAGE_TAGS:
                found[0].update(lineage_fields(tag, fields))
            entries.extend(found)
        return entries
    except (RecursionError, _Ambiguous):
        return None


def _classify_ast(sql: str) -> list[Entry]:
    """classify() from pglast.ast objects: slower, exact for every tree.

    Lineage (pdp.lineage) has one implementation, over the parser's JSON tree, which both
    paths use; a tree too deep for json gets the worst-case lineage."""
    try:
        raw_statements = pglast.parse_sql(sql)
    except Exception as exc:  # any parser failure is a deny, never a crash
        return [_unparseable(exc)]
    try:
        loaded = json.loads(parse_sql_json(sql)).get("stmts", ())
        trees: list[Any] | None = [s["stmt"] for s in loaded]
    except RecursionError:
        trees = None
    entries: list[Entry] = []
    for i, raw in enumerate(raw_statements):
        found = _classify_statement(raw.stmt)  # type: ignore[arg-type]
        tag = type(raw.stmt).__name__
        if tag in LINEAGE_TAGS:
            if trees is None:
                found[0].update(unknown_lineage())
            else:
                ((_, fields),) = trees[i].items()
                found[0].update(lineage_fields(tag, fields))
        entries.extend(found)
    return entries


def split(sql: str) -> list[str]:
    """The text of each statement of sql; the whole text when it cannot be parsed."""
    try:
        return list(pglast.split(sql))
    except Exception:
        return [sql]


def _unparseable(exc: BaseException) -> Entry:
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    return {
        "type": "unparseable",
        "tag": "ParseError",
        "tables": [],
        "functions": [],
        "error": message,
    }


def _classify_statement(node: ast.Node, nested: bool = False) -> list[Entry]:
    """The entry for node followed by entries for every write nested inside it."""
    entry = _describe(node)
    if nested:
        entry["nested"] = True
    found = Findings()
    tables = found.tables
    children: list[Entry] = []
    hide_nested = entry["type"] == "explain" and not entry["analyze"]
    for child in _walk(node):
        if isinstance(child, ast.RangeVar):
            tables[_relation_name(child)] = None
        elif isinstance(child, ast.FuncCall):
            parts = [str(getattr(p, "sval", p)) for p in child.funcname or ()]
            found.call(parts, _const(child.args[0]) if child.args else None)
        elif isinstance(child, ast.SelectStmt) and child.lockingClause:
            found.locking = True
        if not hide_nested and child is not node and _nests(child):
            # The walk goes on below the child too, so deeper statements get their own
            # entries from this loop and the child's tables count for the parent.
            children.extend(_classify_statement(child, nested=True)[:1])
    if isinstance(node, ast.DropStmt) and entry.get("object") in _RELATION_OBJECTS:
        for name in node.objects or ():
            tables[_qualified(name)] = None
    if isinstance(node, ast.DoStmt):
        _fold_do_block(entry, *_do_block(node), found, children)
    found.into(entry)
    return [entry, *children]


class Findings:
    """What the walk of one statement's tree finds, for both trees (pglast.ast and JSON):
    the tables it names and the functions it calls, under every name policy reads."""

    __slots__ = ("cased", "dynamic", "functions", "locking", "qualified", "settings", "tables")

    def __init__(self) -> None:
        self.tables: dict[str, None] = {}
        self.functions: dict[str, None] = {}
        self.qualified: dict[str, None] = {}
        self.cased: dict[str, None] = {}
        self.settings: dict[str, None] = {}
        self.dynamic = False
        self.locking = False

    def call(self, parts: list[str], first: Const | None) -> None:
        """One function call: its name as written (parts, the parser's identifiers: unquoted
        ones already folded to lower case) and its first argument if a constant."""
        if not parts:
            return
        written = ".".join(parts)
        lowered = written.lower()
        name = parts[-1].lower()
        self.functions[name] = None
        if len(parts) > 1:
            self.qualified[lowered] = None
        if written != lowered:
            # A quoted name with capitals is another function than the lower-case one the
            # lists name (pg_catalog has none): policy sees it exactly as the server will.
            self.cased[written] = None
        if name == "set_config":
            # set_config(name, value, is_local) is SET name in a function call: which
            # setting it changes is known only when its first argument is a string literal.
            if first is not None and first[0] == "sval":
                self.settings[first[1].lower()] = None
            else:
                self.dynamic = True

    def fold(self, inner: Entry) -> None:
        """Add what an entry classified from other text (a DO block's body) holds."""
        self.tables.update(dict.fromkeys(inner["tables"]))
        self.functions.update(dict.fromkeys(inner["functions"]))
        self.qualified.update(dict.fromkeys(inner["qualified_functions"]))
        self.cased.update(dict.fromkeys(inner.get("cased_functions", ())))
        self.settings.update(dict.fromkeys(inner.get("settings", ())))
        self.dynamic = self.dynamic or inner.get("dynamic_settings", False)
        self.locking = self.locking or inner.get("locking", False)

    def into(self, entry: Entry) -> None:
        entry["tables"] = list(self.tables)
        entry["functions"] = list(self.functions)
        entry["qualified_functions"] = list(self.qualified)
        if self.cased:
            entry["cased_functions"] = list(self.cased)
        if self.settings:
            entry["settings"] = list(self.settings)
        if self.dynamic:
            entry["dynamic_settings"] = True
        if self.locking:
            entry["locking"] = True


# A constant as both trees can say it: (the A_Const field that holds it, its text), the
# field one of sval, ival, fval, boolval, bsval, isnull.
Const = tuple[str, str]

_CONST_FIELDS = {
    ast.String: "sval",
    ast.Integer: "ival",
    ast.Float: "fval",
    ast.Boolean: "boolval",
    ast.BitString: "bsval",
}


def _const(node: Any) -> Const | None:
    """The constant node is, or None when it is anything else (an expression, a cast)."""
    if not isinstance(node, ast.A_Const):
        return None
    if node.isnull:
        return ("isnull", "")
    key = _CONST_FIELDS[type(node.val)]
    return (key, _const_text(getattr(node.val, key)))


def _const_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# The value of a boolean setting the server reads as true (its parse_bool: any prefix of
# true or yes, on, 1); everything else is false or an error.
_TRUE_SETTING = frozenset({"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"})

# Settings that make transactions read-write unless set to true; SET TRANSACTION and SET
# SESSION CHARACTERISTICS say it as a transaction_read_only option.
_READ_ONLY_SETTINGS = frozenset({"transaction_read_only", "default_transaction_read_only"})


Options = list[tuple[str, "Const | None"]]


def _set_fields(
    entry: Entry, kind: str, name: str, args: list[Const | None], options: Options
) -> None:
    """The fields of a VariableSetStmt from either tree: kind the VariableSetKind name,
    args its value list as constants, options the DefElems of SET TRANSACTION."""
    entry["setting"] = name or "all"
    # SET x TO DEFAULT is RESET x: both return to the session's start-up value.
    entry["reset"] = kind.startswith("VAR_RESET") or kind == "VAR_SET_DEFAULT"
    if kind == "VAR_SET_VALUE" and len(args) == 1 and args[0] is not None:
        entry["value"] = args[0][1]
    if name in _READ_ONLY_SETTINGS:
        # RESET transaction_read_only makes the transaction read-write whatever the
        # session's default; both are judged as read-write unless set to true.
        value = entry.get("value", "").lower()
        if entry["reset"] or value not in _TRUE_SETTING:
            entry["read_write"] = True
    elif kind == "VAR_SET_MULTI" and _option_read_write(options):
        entry["read_write"] = True
    if name == "search_path":
        # The server searches pg_catalog first unless the path names it later.
        schemas = [a[1] if a is not None else "" for a in args]
        entry["pg_catalog_first"] = "pg_catalog" not in schemas or schemas[0] == "pg_catalog"


def _option_read_write(options: Options) -> bool:
    """Whether SET TRANSACTION / BEGIN options say READ WRITE (transaction_read_only 0)
    anywhere: the server applies them in order, so one is enough."""
    return any(
        name == "transaction_read_only" and (value is None or value[1] not in _TRUE_SETTING)
        for name, value in options
    )


def _type_of(tag: str) -> str:
    """The statement type policy sees for a parser node tag."""
    kind = _BY_TAG.get(tag)
    if kind is not None:
        return kind
    if tag.startswith("Drop"):
        return "drop"
    return "ddl" if tag.startswith(_DDL_PREFIXES) else "other"


def _describe(node: ast.Node) -> Entry:
    """Type, tag and the flags of one statement node (tables and functions come later)."""
    tag = type(node).__name__
    kind = _type_of(tag)
    entry: Entry = {"type": kind, "tag": tag}
    if isinstance(node, ast.SelectStmt) and node.intoClause is not None:
        entry["type"] = "ddl"  # SELECT INTO creates a table
    elif isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
        entry["has_where"] = node.whereClause is not None
    elif isinstance(node, ast.ExplainStmt):
        entry["analyze"] = _option_on(node.options, "analyze")
    elif isinstance(node, ast.CopyStmt):
        entry["direction"] = "from" if node.is_from else "to"
        entry["program"] = bool(node.is_program)
        # STDIN/STDOUT travel through the client connection; a filename is the server's.
        entry["stdio"] = not node.is_program and node.filename is None
    elif isinstance(node, ast.VariableSetStmt):
        args = node.args or ()
        options = [(d.defname or "", _const(d.arg)) for d in args if isinstance(d, ast.DefElem)]
        values = [_const(a) for a in args if not isinstance(a, ast.DefElem)]
        kind_name = node.kind.name  # type: ignore[union-attr]
        _set_fields(entry, kind_name, (node.name or "").lower(), values, options)
    elif isinstance(node, ast.VariableShowStmt):
        entry["setting"] = (node.name or "").lower()
    elif isinstance(node, ast.TransactionStmt):
        entry["action"] = node.kind.name.removeprefix("TRANS_STMT_").lower()  # type: ignore[union-attr]
        options = [(d.defname or "", _const(d.arg)) for d in node.options or ()]
        if _option_read_write(options):
            entry["read_write"] = True
    elif isinstance(node, ast.DeclareCursorStmt | ast.ClosePortalStmt):
        entry["cursor"] = node.portalname if node.portalname is not None else "*"
    elif isinstance(node, ast.PrepareStmt | ast.ExecuteStmt):
        entry["name"] = node.name
    elif isinstance(node, ast.DeallocateStmt):
        entry["name"] = "*" if node.isall or node.name is None else node.name
    elif isinstance(node, ast.DiscardStmt):
        entry["target"] = node.target.name.removeprefix("DISCARD_").lower()  # type: ignore[union-attr]
    if kind == "drop":
        entry["object"] = _drop_object(node, tag)
    return entry


def _drop_object(node: ast.Node, tag: str) -> str:
    remove_type = getattr(node, "removeType", None)
    if remove_type is not None:
        return remove_type.name.removeprefix("OBJECT_").lower()
    if tag == "DropdbStmt":
        return "database"
    return tag.removeprefix("Drop").removesuffix("Stmt").lower()


def _option_on(options: Any, name: str) -> bool:
    """Whether the option name is on. The server reads EXPLAIN's options in order with no
    check for repeats, so the last one named wins: `(ANALYZE false, ANALYZE true)` runs the
    statement it explains."""
    on = False
    for option in options or ():
        if isinstance(option, ast.DefElem) and option.defname == name:
            arg = option.arg
            if arg is None:
                on = True
                continue
            value = getattr(arg, "sval", None)
            if value is None:
                value = getattr(arg, "boolval", None)
            if value is None:
                value = getattr(arg, "ival", None)
            on = str(value).lower() in _TRUE_WORDS
    return on


def _nests(node: ast.Node) -> bool:
    """Whether node, found inside another statement, gets an entry of its own."""
    tag = type(node).__name__
    return tag.endswith("Stmt") and tag != "RawStmt" and tag not in _NOT_NESTED_TAGS


def _walk(root: ast.Node) -> Iterator[ast.Node]:
    """Every node under root, root first; iterative so deep expressions cannot overflow."""
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            for attr in reversed(type(item).__slots__):  # type: ignore[attr-defined]
                value = getattr(item, attr, None)
                if isinstance(value, ast.Node | tuple | list):
                    stack.append(value)
        elif isinstance(item, tuple | list):
            stack.extend(reversed(item))


def _relation_name(rv: ast.RangeVar) -> str:
    parts = [p for p in (rv.catalogname, rv.schemaname, rv.relname) if p]
    return ".".join(parts).lower()


def _qualified(name: Any) -> str:
    parts = name if isinstance(name, tuple | list) else (name,)
    return ".".join(str(getattr(p, "sval", p)) for p in parts).lower()


# --- the parser's JSON tree ---------------------------------------------------
#
# libpg_query writes a node as {"Tag": {fields}} where the field is a generic Node or a
# list, but a field declared with a node type (UpdateStmt.relation is a RangeVar*) holds
# the fields alone, and false, zero and empty values are left out. pglast.ast knows every
# field's declared type, so that is where the untagged ones get their tag.


class _Ambiguous(Exception):
    """The JSON tree cannot tell what classify must know; use the pglast.ast tree."""


_NODE_TAGS = frozenset(
    name
    for name, cls in vars(ast).items()
    if isinstance(cls, type) and issubclass(cls, ast.Node) and cls is not ast.Node
)


def _typed_fields(cls: type) -> dict[str, str]:
    typed: dict[str, str] = {}
    slots = getattr(cls, "__slots__", None)
    if not isinstance(slots, dict):
        return typed
    for field, info in slots.items():
        # "RangeVar*", or "CreateStmt" for CreateForeignTableStmt.base, a struct inside
        target = getattr(info, "c_type", "").removesuffix("*")
        if target in _NODE_TAGS and target not in ("Expr", "List"):
            typed[field] = target
    return typed


_TYPED = {name: _typed_fields(getattr(ast, name)) for name in _NODE_TAGS}
_NO_FIELDS: dict[str, str] = {}
_NESTS = frozenset(
    tag
    for tag in _NODE_TAGS
    if tag.endswith("Stmt") and tag != "RawStmt" and tag not in _NOT_NESTED_TAGS
)


def _classify_json(tag: str, fields: dict[str, Any], nested: bool = False) -> list[Entry]:
    """_classify_statement() for one JSON node."""
    entry = _describe_json(tag, fields)
    if nested:
        entry["nested"] = True
    found = Findings()
    tables = found.tables
    children: list[Entry] = []
    hide_nested = entry["type"] == "explain" and not entry["analyze"]
    walk = _walk_json(tag, fields)
    if tag == "SelectStmt" and "lockingClause" in fields:
        found.locking = True
    next(walk)  # the statement itself
    for child_tag, child in walk:
        if child_tag == "RangeVar":
            parts = [child.get(p) for p in ("catalogname", "schemaname", "relname")]
            tables[".".join(p for p in parts if p).lower()] = None
        elif child_tag == "FuncCall":
            args = child.get("args")
            name = [_json_sval(p) for p in child.get("funcname", ())]
            found.call(name, _json_const(args[0]) if args else None)
        elif child_tag == "SelectStmt":
            if "lockingClause" in child:
                found.locking = True
        elif not hide_nested and child_tag in _NESTS:
            children.extend(_classify_json(child_tag, child, nested=True)[:1])
    if tag == "DropStmt" and entry.get("object") in _RELATION_OBJECTS:
        for name in fields.get("objects", ()):
            tables[_json_qualified(name)] = None
    elif tag == "DoStmt":
        _fold_do_block(entry, *_do_block_source(fields.get("args", ())), found, children)
    found.into(entry)
    return [entry, *children]


def _describe_json(tag: str, fields: dict[str, Any]) -> Entry:
    """_describe() for one JSON node."""
    kind = _type_of(tag)
    entry: Entry = {"type": kind, "tag": tag}
    if tag == "SelectStmt":
        if "intoClause" in fields:
            entry["type"] = "ddl"  # SELECT INTO creates a table
    elif tag in ("UpdateStmt", "DeleteStmt"):
        entry["has_where"] = "whereClause" in fields
    elif tag == "ExplainStmt":
        entry["analyze"] = _json_option_on(fields.get("options", ()), "analyze")
    elif tag == "CopyStmt":
        program = bool(fields.get("is_program", False))
        if not program and "filename" not in fields:
            raise _Ambiguous("STDIN/STDOUT or an empty file name")
        entry["direction"] = "from" if fields.get("is_from", False) else "to"
        entry["program"] = program
        entry["stdio"] = False
    elif tag == "VariableSetStmt":
        options: Options = []
        values: list[Const | None] = []
        for arg in fields.get("args", ()):
            if "DefElem" in arg:
                options.append(_json_option(arg["DefElem"]))
            else:
                values.append(_json_const(arg))
        kind = fields.get("kind", "VAR_SET_VALUE")
        _set_fields(entry, kind, (fields.get("name") or "").lower(), values, options)
    elif tag == "VariableShowStmt":
        entry["setting"] = (fields.get("name") or "").lower()
    elif tag == "TransactionStmt":
        action = fields.get("kind", "TRANS_STMT_BEGIN")
        entry["action"] = action.removeprefix("TRANS_STMT_").lower()
        options = [_json_option(o["DefElem"]) for o in fields.get("options", ())]
        if _option_read_write(options):
            entry["read_write"] = True
    elif tag in ("DeclareCursorStmt", "ClosePortalStmt"):
        entry["cursor"] = fields.get("portalname", "*")
    elif tag in ("PrepareStmt", "ExecuteStmt"):
        entry["name"] = fields.get("name", "")
    elif tag == "DeallocateStmt":
        entry["name"] = "*" if fields.get("isall") or "name" not in fields else fields["name"]
    elif tag == "DiscardStmt":
        target = fields.get("target", "DISCARD_ALL")
        entry["target"] = target.removeprefix("DISCARD_").lower()
    if kind == "drop":
        if "removeType" in ast.__dict__[tag].__slots__:
            remove_type = fields.get("removeType", "OBJECT_ACCESS_METHOD")
            entry["object"] = remove_type.removeprefix("OBJECT_").lower()
        elif tag == "DropdbStmt":
            entry["object"] = "database"
        else:
            entry["object"] = tag.removeprefix("Drop").removesuffix("Stmt").lower()
    return entry


# JSON leaves out false and zero, and pglast.ast reads them back as these.
_JSON_VALUE_DEFAULTS = {
    "String": ("sval", None),
    "Boolean": ("boolval", False),
    "Integer": ("ival", 0),
}


_JSON_CONST_DEFAULTS = (("sval", ""), ("ival", 0), ("fval", ""), ("boolval", False), ("bsval", ""))


def _json_const(node: dict[str, Any]) -> Const | None:
    """_const() for one JSON node: JSON leaves out false, zero and empty values."""
    fields = node.get("A_Const")
    if fields is None:
        return None
    if fields.get("isnull", False):
        return ("isnull", "")
    for key, default in _JSON_CONST_DEFAULTS:
        if key in fields:
            return (key, _const_text(fields[key].get(key, default)))
    raise _Ambiguous("A_Const without a value")


def _json_option(fields: dict[str, Any]) -> tuple[str, Const | None]:
    arg = fields.get("arg")
    return fields.get("defname", ""), _json_const(arg) if arg is not None else None


def _json_option_on(options: Any, name: str) -> bool:
    """_option_on() for JSON options: the last one named wins."""
    on = False
    for option in options:
        ((tag, fields),) = option.items()
        if tag == "DefElem" and fields.get("defname") == name:
            arg = fields.get("arg")
            if arg is None:
                on = True
                continue
            ((arg_tag, arg_fields),) = arg.items()
            key, default = _JSON_VALUE_DEFAULTS.get(arg_tag, (None, None))
            value = arg_fields.get(key, default) if key else None
            on = str(value).lower() in _TRUE_WORDS
    return on


def _walk_json(tag: str, fields: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(tag, fields) of every node under a JSON node, root first, in pglast.ast order."""
    stack: list[tuple[str | None, Any]] = [(tag, fields)]
    while stack:
        tag, fields = stack.pop()  # type: ignore[assignment]
        if tag is not None:
            yield tag, fields
        typed = _TYPED.get(tag, _NO_FIELDS) if tag is not None else _NO_FIELDS
        for key, value in reversed(fields.items()):
            if isinstance(value, dict):
                target = typed.get(key)
                stack.append((target, value) if target else _json_node(value))
            elif isinstance(value, list):
                stack.extend(_json_node(v) for v in reversed(value) if isinstance(v, dict))


def _json_node(value: dict[str, Any]) -> tuple[str | None, Any]:
    if len(value) == 1:
        ((tag, fields),) = value.items()
        if tag in _NODE_TAGS and isinstance(fields, dict):
            return tag, fields
    return None, value


def _json_sval(node: Any) -> str:
    ((tag, fields),) = node.items()
    if tag != "String":
        raise _Ambiguous(tag)
    return fields.get("sval", "")


def _json_qualified(name: dict[str, Any]) -> str:
    ((tag, fields),) = name.items()
    if tag == "List":
        return ".".join(_json_sval(p) for p in fields.get("items", ())).lower()
    return _json_sval(name).lower()


def _do_block(node: ast.DoStmt) -> tuple[list[Entry], bool]:
    """Entries for the static SQL of a DO block, and whether some of it stays unseen."""
    options = []
    for option in node.args or ():
        if option.defname in ("as", "language"):
            options.append((option.defname, option.arg.sval))
    return _do_block_body(options, _classify_ast)


def _do_block_source(args: Any) -> tuple[list[Entry], bool]:
    """_do_block() for the args of a JSON DoStmt."""
    options = []
    for option in args:
        ((_, fields),) = option.items()
        defname = fields.get("defname")
        if defname in ("as", "language"):
            options.append((defname, _json_sval(fields["arg"])))
    return _do_block_body(options, classify)


def _do_block_body(
    options: list[tuple[str, str]], reclassify: Callable[[str], list[Entry]]
) -> tuple[list[Entry], bool]:
    """Entries for the static SQL of a DO block, and whether some of it stays unseen;
    reclassify is the classifier of the tree the block came from, so each path stays whole.

    A DO block in another language, dynamic EXECUTE, or a body that does not parse is
    opaque: the policy cannot know what it runs.
    """
    body, language = "", "plpgsql"
    for defname, value in options:
        if defname == "as":
            body = value
        else:
            language = value.lower()
    if language != "plpgsql":
        return [], True
    wrapper = (
        f"CREATE FUNCTION portcullis_do() RETURNS void AS $portcullis_do${body}"
        "$portcullis_do$ LANGUAGE plpgsql"
    )
    if "$portcullis_do$" in body:
        return [], True
    try:
        tree = pglast.parse_plpgsql(wrapper)
    except Exception:
        return [], True
    entries: list[Entry] = []
    opaque = False
    for key, value in _json_walk(tree):
        if key in ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors") or (
            key == "PLpgSQL_stmt_open" and "dynquery" in value
        ):
            opaque = True
        elif key == "PLpgSQL_expr":
            found = _plpgsql_expr(value, reclassify)
            if found is None:
                opaque = True
            else:
                entries.extend(found)
    return entries, opaque


def _plpgsql_expr(
    expr: dict[str, Any], reclassify: Callable[[str], list[Entry]]
) -> list[Entry] | None:
    """Statements of one PL/pgSQL expression; None when it does not parse."""
    query = expr.get("query", "")
    is_statement = expr.get("parseMode", 0) == 0
    candidates = [query] if is_statement else [f"SELECT {query}"]
    if ":=" in query:
        candidates.append("SELECT " + query.split(":=", 1)[1])
    for candidate in candidates:
        entries = reclassify(candidate)
        if not any(e["type"] == "unparseable" for e in entries):
            if not is_statement:
                for entry in entries:
                    entry["expression"] = True
            return entries
    return None


def _json_walk(tree: Any) -> Iterator[tuple[str, Any]]:
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield from item.items()
            stack.extend(reversed(item.values()))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _fold_do_block(
    entry: dict[str, Any],
    inner: list[dict[str, Any]],
    opaque: bool,
    found: Findings,
    children: list[dict[str, Any]],
) -> None:
    """What a DO block's body holds joins its entry: tables and functions (with the
    settings set_config changes and any locking) always, and the statements as nested
    entries (IF conditions and assignments add only what they call)."""
    entry["opaque"] = opaque
    for item in inner:
        found.fold(item)
        if not item.pop("expression", False):
            item["nested"] = True
            children.append(item)
