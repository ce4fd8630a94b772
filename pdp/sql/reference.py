"""The reference classifier: pglast.ast objects walked node by node.

Owns classify_reference(), what classify() must say of every statement. It is exact for
every tree the parser builds, and about three times slower than the JSON walk of
pdp.sql.classify, which hands it the trees it cannot read exactly;
tests/test_classifier_differential.py holds the two to the same answer.

No IO here and no policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pglast
from pglast import ast
from pglast.enums import AlterTableType
from pglast.parser import parse_sql_json

from pdp.sql.entries import (
    BETWEEN_KINDS,
    BETWEEN_OPERATORS,
    DDL_VALUE_TAGS,
    NOT_NESTED_TAGS,
    PARAMETER,
    PARAMETER_CASTS,
    RELATION_OBJECTS,
    STORING_SETTINGS,
    TRUE_WORDS,
    VALUE_NODES,
    Const,
    Entry,
    Findings,
    alter_command,
    const_text,
    function_language,
    option_read_write,
    reads_anything,
    rename_fields,
    runs_opclass_code,
    set_fields,
    stored_setting_fields,
    temporary_object,
    type_of,
    unparseable,
)
from pdp.sql.grammar import NewerGrammar, newer_grammar, newer_nodes
from pdp.sql.lineage import LINEAGE_TAGS, lineage_fields, unknown_lineage
from pdp.sql.plpgsql import do_block_body, fold_do_block


def classify_reference(sql: str) -> list[Entry]:
    """classify() from pglast.ast objects: slower, exact for every tree.

    Lineage (pdp.sql.lineage) has one implementation, over the parser's JSON tree, which both
    paths use; a tree too deep for json gets the worst-case lineage."""
    try:
        raw_statements = pglast.parse_sql(sql)
    except Exception as exc:  # any parser failure is a deny, never a crash
        return [unparseable(exc)]
    try:
        text = parse_sql_json(sql)
        tree = json.loads(text)
        newer = newer_grammar(text, tree)
        trees: list[Any] | None = [s["stmt"] for s in tree.get("stmts", ())]
    except RecursionError:
        newer = newer_nodes(raw_statements)
        trees = None
    if newer is not None:
        return [unparseable(NewerGrammar(newer))]
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


def _classify_statement(node: ast.Node, nested: bool = False) -> list[Entry]:
    """The entry for node followed by entries for every write nested inside it."""
    entry = _describe(node)
    if nested:
        entry["nested"] = True
    found = Findings()
    tables = found.tables
    children: list[Entry] = []
    hide_nested = entry["type"] == "explain" and not entry["analyze"]
    values = type(node).__name__ in DDL_VALUE_TAGS
    for child in _walk(node):
        if values:
            if type(child).__name__ in VALUE_NODES or (
                isinstance(child, ast.IndexElem)
                and runs_opclass_code([str(getattr(p, "sval", p)) for p in child.opclass or ()])
            ):
                entry["value_expressions"] = True
            elif isinstance(child, ast.AlterTableCmd):
                alter_command(entry, AlterTableType(child.subtype or 0).name)
        if isinstance(child, ast.RangeVar):
            tables[_relation_name(child)] = None
            if child.catalogname:  # db.schema.t is schema.t: classify.py says why
                tables[f"{child.schemaname}.{child.relname}".lower()] = None
        elif isinstance(child, ast.FuncCall):
            parts = [str(getattr(p, "sval", p)) for p in child.funcname or ()]
            args = child.args or ()
            third = _const(args[2]) if len(args) == 3 else None
            found.call(parts, _first(args[0]) if args else None, third)
            if values and reads_anything(parts):
                entry["value_expressions"] = True
        elif isinstance(child, ast.SelectStmt) and child.lockingClause:
            found.locking = True
        elif isinstance(child, _NAMES_CODE):
            _code(child, found)
        elif isinstance(child, ast.ColumnRef):
            refs = child.fields or ()
            if len(refs) > 1 and isinstance(refs[-1], ast.String):
                found.attribute(refs[-1].sval or "")
        elif isinstance(child, ast.A_Indirection):
            for step in child.indirection or ():
                if isinstance(step, ast.String):
                    found.attribute(step.sval or "")
        if not hide_nested and child is not node and _nests(child):
            # The walk goes on below the child too, so deeper statements get their own
            # entries from this loop and the child's tables count for the parent.
            children.extend(_classify_statement(child, nested=True)[:1])
    if isinstance(node, ast.DropStmt) and entry.get("object") in RELATION_OBJECTS:
        for name in node.objects or ():
            tables[_qualified(name)] = None
    if isinstance(node, ast.DoStmt):
        fold_do_block(entry, *_do_block(node), found, children)
    found.into(entry)
    return [entry, *children]


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
    return (key, const_text(getattr(node.val, key)))


def _first(node: Any) -> Const | None:
    """A call's first argument as pdp.sql.entries.Findings.call reads it: a constant, or a
    bound parameter as it is or cast to text or varchar without a length (PARAMETER)."""
    if isinstance(node, ast.TypeCast):
        type_name = node.typeName
        if type_name is None:
            return None
        names = tuple(str(getattr(n, "sval", n)) for n in type_name.names or ())
        if names not in PARAMETER_CASTS or type_name.typmods or type_name.arrayBounds:
            return None
        node = node.arg
        if not isinstance(node, ast.ParamRef):
            return None
    if isinstance(node, ast.ParamRef):
        return (PARAMETER, str(node.number)) if node.number and node.number > 0 else None
    return _const(node)


def _describe(node: ast.Node) -> Entry:
    """Type, tag and the flags of one statement node (tables and functions come later)."""
    tag = type(node).__name__
    kind = type_of(tag)
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
        # the names of its options (FORMAT, DELIMITER, QUOTE, ...), never their values
        copy_options = {(d.defname or "").lower() for d in node.options or ()}
        if copy_options:
            entry["copy_options"] = sorted(copy_options)
    elif isinstance(node, ast.VariableSetStmt):
        args = node.args or ()
        options = [(d.defname or "", _const(d.arg)) for d in args if isinstance(d, ast.DefElem)]
        values = [_const(a) for a in args if not isinstance(a, ast.DefElem)]
        kind_name = node.kind.name  # type: ignore[union-attr]
        name = (node.name or "").lower()
        set_fields(entry, kind_name, name, values, options, bool(node.is_local))
    elif isinstance(node, ast.VariableShowStmt):
        entry["setting"] = (node.name or "").lower()
    elif tag in STORING_SETTINGS:
        setstmt = node.setstmt  # type: ignore[attr-defined]
        stored_setting_fields(
            entry,
            setstmt.kind.name if setstmt is not None else "VAR_SET_VALUE",
            (setstmt.name or "").lower() if setstmt is not None else "",
        )
    elif isinstance(node, ast.TransactionStmt):
        entry["action"] = node.kind.name.removeprefix("TRANS_STMT_").lower()  # type: ignore[union-attr]
        options = [(d.defname or "", _const(d.arg)) for d in node.options or ()]
        if option_read_write(options):
            entry["read_write"] = True
    elif isinstance(node, ast.DeclareCursorStmt | ast.ClosePortalStmt):
        entry["cursor"] = node.portalname if node.portalname is not None else "*"
    elif isinstance(node, ast.FetchStmt):
        entry["cursor"] = node.portalname or ""
        if node.ismove:
            entry["move"] = True
    elif isinstance(node, ast.PrepareStmt | ast.ExecuteStmt):
        entry["name"] = node.name
    elif isinstance(node, ast.DeallocateStmt):
        entry["name"] = "*" if node.isall or node.name is None else node.name
    elif isinstance(node, ast.DiscardStmt):
        entry["target"] = node.target.name.removeprefix("DISCARD_").lower()  # type: ignore[union-attr]
    elif isinstance(node, ast.RenameStmt):
        rename_fields(entry, node.renameType.name, node.subname)  # type: ignore[union-attr]
    elif isinstance(node, ast.IndexStmt):
        if node.unique:
            entry["unique"] = True
        keys = [p.name for p in node.indexParams or () if p.name is not None]
        if keys:
            entry["index_columns"] = keys
    elif isinstance(node, ast.CreateFunctionStmt):
        names = [o.arg.sval for o in node.options or () if o.defname == "language"]
        entry["language"] = function_language(names)
        if any(o.defname == "as" for o in node.options or ()):
            entry["body_text"] = True  # a body written as a string: not read here
    if kind == "drop":
        entry["object"] = _drop_object(node, tag)
    if entry["type"] == "ddl" and temporary_object(node(None, None, True)):
        entry["temporary"] = True
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
            on = str(value).lower() in TRUE_WORDS
    return on


_NAMES_CODE = (ast.A_Expr, ast.SubLink, ast.SortBy, ast.CaseExpr, ast.JoinExpr, ast.TypeName)


def _code(node: ast.Node, found: Findings) -> None:
    """The operators a node applies or implies and the type it names (Findings)."""
    if isinstance(node, ast.A_Expr):
        if node.kind is not None and node.kind.name in BETWEEN_KINDS:
            found.implied(*BETWEEN_OPERATORS)
        else:
            found.operator(_names(node.name))
    elif isinstance(node, ast.SubLink):
        if node.operName:
            found.operator(_names(node.operName))
        elif node.subLinkType is not None and node.subLinkType.name == "ANY_SUBLINK":
            found.implied("=")
    elif isinstance(node, ast.SortBy):
        found.operator(_names(node.useOp))
    elif isinstance(node, ast.CaseExpr):
        if node.arg is not None:
            found.implied("=")
    elif isinstance(node, ast.JoinExpr):
        if node.usingClause or node.isNatural:
            found.implied("=")
    elif isinstance(node, ast.TypeName):
        found.type_name(_names(node.names))


def _names(parts: Any) -> list[str]:
    return [str(getattr(p, "sval", p)) for p in parts or ()]


def _nests(node: ast.Node) -> bool:
    """Whether node, found inside another statement, gets an entry of its own."""
    tag = type(node).__name__
    return tag.endswith("Stmt") and tag != "RawStmt" and tag not in NOT_NESTED_TAGS


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


def _do_block(node: ast.DoStmt) -> tuple[list[Entry], bool]:
    """Entries for the static SQL of a DO block, and whether some of it stays unseen."""
    options = []
    for option in node.args or ():
        if option.defname in ("as", "language"):
            options.append((option.defname, option.arg.sval))
    return do_block_body(options, classify_reference)
