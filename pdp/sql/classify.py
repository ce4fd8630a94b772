"""SQL text → the `input.command.postgres.statements` list the policy sees.

Owns classifying Postgres statements with the real Postgres parser (pglast wraps
libpg_query, the server's own grammar), so nothing policy must see can hide: comments,
several statements in one string, DML inside CTEs, `EXPLAIN ANALYZE <write>`, `PREPARE`,
`COPY (<write>) TO`, function calls anywhere in the tree and the static SQL of `DO` blocks
all surface as entries or entry fields. Text the parser rejects becomes one `unparseable`
entry, which the policy denies.

The walk here reads the parser's JSON as plain dicts; what the JSON cannot say exactly goes
to the reference walk over pglast.ast (pdp.sql.reference).

No IO here and no policy: this module says what the SQL is, never whether it may run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pglast
from pglast import ast
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
    Options,
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
from pdp.sql.grammar import NewerGrammar, newer_grammar
from pdp.sql.lineage import (
    _ANY_KEY_FUNCTIONS,
    _CONTAINMENT,
    _JSON_EXTRACTIONS,
    _JSON_PATH_FUNCTIONS,
    _JSON_PATH_OPERATORS,
    _PATH_TESTS,
    _SHAPE_FUNCTIONS,
    LINEAGE_TAGS,
    lineage_fields,
)
from pdp.sql.plpgsql import do_block_body, fold_do_block
from pdp.sql.reference import classify_reference


def classify(sql: str) -> list[Entry]:
    """One entry per statement of sql, nested writes after their parent; [] for no SQL.
    An EXPLAIN's entry says what it explains (`explains`: the type of the statement it
    plans, see explained())."""
    fast = classify_fast(sql)
    entries = classify_reference(sql) if fast is None else fast
    if any(e["type"] == "explain" and not e.get("nested") for e in entries):
        explained(sql, entries)
    if len(entries) > 1 and any(e["type"] == "execute" for e in entries):
        prepared_here(sql, entries)
    if len(entries) > 1 and any(e["type"] == "fetch" for e in entries):
        declared_here(entries)
    if _MAY_NAME_KEYS.search(sql) is not None:
        keys_read(sql, entries)
    return entries


# What may take a value out of a document by a constant key, path or jsonpath (text
# holding none of these is not parsed again by keys_read): the operators, a subscript,
# the json/jsonb/xml functions, and a U& name (whose escapes may spell one).
_MAY_NAME_KEYS = re.compile(r"->|#>|[@?\[&]|json|xpath|xml", re.IGNORECASE)


def keys_read(sql: str, entries: list[Entry]) -> None:
    """Set `literal_keys` on every entry of a text in which lineage may read a string
    constant as a name: a document's key, path or jsonpath (`profile->>'password'` is
    masked and questioned as the column password, `profile->>'status'` as status:
    pdp/sql/lineage.py). Such a classification depends on a literal's value, which a
    statement's shape ignores, so the policy offers no reuse by shape for it
    (rego/portcullis/postgres.rego), as for set_config. Found by where the constant stands
    (the operators and functions lineage reads keys by, never its value), so every text of
    one shape is flagged alike; a text that cannot be walked is flagged."""
    try:
        tree = json.loads(parse_sql_json(sql))
    except Exception:
        return  # unparseable: one entry, denied, never cached
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if _names_keys(node):
            for entry in entries:
                entry["literal_keys"] = True
            return
        stack.extend(node.values())


_KEY_OPERATORS = _JSON_EXTRACTIONS | _CONTAINMENT | _JSON_PATH_OPERATORS
_KEY_FUNCTIONS = _JSON_PATH_FUNCTIONS | _ANY_KEY_FUNCTIONS | _SHAPE_FUNCTIONS | _PATH_TESTS


def _names_keys(node: dict[str, Any]) -> bool:
    """Whether one JSON node is where lineage reads a constant as a key: a document
    operator, a subscript by a string, a document function; any such node, whatever its
    operands (the shape is the same for every value)."""
    expr = node.get("A_Expr")
    if isinstance(expr, dict):
        names = expr.get("name") or ()
        return any(
            isinstance(n, dict) and n.get("String", {}).get("sval") in _KEY_OPERATORS for n in names
        )
    indices = node.get("A_Indices")
    if isinstance(indices, dict):
        return any(
            isinstance(b, dict) and "sval" in b.get("A_Const", {})
            for b in (indices.get("uidx"), indices.get("lidx"))
        )
    call = node.get("FuncCall")
    if isinstance(call, dict):
        names = call.get("funcname") or ()
        last = names[-1] if names else {}
        name = last.get("String", {}).get("sval", "") if isinstance(last, dict) else ""
        return str(name).lower() in _KEY_FUNCTIONS
    return False


def _walked(sql: str) -> list[Entry]:
    """classify() without what it adds to both walks' entries."""
    fast = classify_fast(sql)
    return classify_reference(sql) if fast is None else fast


def prepared_here(sql: str, entries: list[Entry]) -> None:
    """Set `prepared_here` on each EXECUTE entry of sql's own statements that runs the
    statement a PREPARE of this same text made: one of its name, with only PREPAREs between
    them (nothing that runs anything, which could DEALLOCATE the name and PREPARE it again
    by other text), and parameters that are constants (a literal, or one cast to a type:
    pdp.domain.effects' execute:NAME alike). In one simple Query a failed statement ends
    the text, so when the EXECUTE runs, the PREPARE made the name (it fails on a name
    taken) and the rows are that PREPARE's query's, which this same text's decision
    judged. Any other EXECUTE runs a body made before, which this text does not show.

    Here, beside both walks, so the two walks say the same (tests/
    test_classifier_differential.py)."""
    own = [e for e in entries if not e.get("nested")]
    if not any(e["type"] == "prepare" for e in own):
        return
    try:
        statements = pglast.parse_sql(sql)
    except Exception:
        return
    if len(statements) != len(own):
        return
    made: set[str] = set()  # prepared with nothing run since
    for entry, raw in zip(own, statements, strict=True):
        node = raw.stmt
        if type(node).__name__ != entry["tag"]:
            return
        if isinstance(node, ast.PrepareStmt):
            made.add(str(node.name))
            continue
        if (
            isinstance(node, ast.ExecuteStmt)
            and node.name in made
            and all(_constant(p) for p in node.params or ())
        ):
            entry["prepared_here"] = True
        made.clear()  # (an EXECUTE runs its query: what runs may prepare by other text)


def declared_here(entries: list[Entry]) -> None:
    """Set `declared_here` on each FETCH (and MOVE) entry of the text's own statements
    that reads the cursor a DECLARE of this same text made: the statement right before it,
    or FETCHes and MOVEs of that cursor alone between them (a query running in the cursor
    cannot close it: the server refuses to drop an active portal). A DECLARE fails on a
    name taken, ending the text, so the rows are that DECLARE's query's, which this same
    text's decision judged; any other statement between could run code that closes the
    cursor and opens another under its name (PL/pgSQL's OPEN of a refcursor names a
    portal as it likes)."""
    cursor: object = None  # the cursor the statements since its DECLARE only read
    for entry in entries:
        if entry.get("nested"):
            continue
        kind = entry["type"]
        if kind == "declare":
            cursor = entry.get("cursor")
        elif kind == "fetch" and cursor is not None and entry.get("cursor") == cursor:
            entry["declared_here"] = True
        else:
            cursor = None


def _constant(node: Any) -> bool:
    """A literal, or one cast to a type."""
    if isinstance(node, ast.TypeCast):
        node = node.arg
    return isinstance(node, ast.A_Const)


def explained(sql: str, entries: list[Entry]) -> None:
    """Set `explains` on the EXPLAIN entries of sql's own statements: the type of the
    statement each plans. EXPLAIN without ANALYZE runs nothing, yet the planner folds what
    it plans: an INSERT's column defaults and the rules the rewriter adds are planned, and
    an IMMUTABLE function of the database they call with constants runs then (the policy
    judges EXPLAIN of a write by the code writing its relation runs). Its nested statement
    is no entry of its own (it runs nothing), so only this says what it plans; "unknown"
    where the text's statements cannot be matched with its entries.

    Here, beside both walks, so the two walks say the same (tests/
    test_classifier_differential.py) and a text without EXPLAIN is not parsed again."""
    own = [e for e in entries if not e.get("nested")]
    try:
        statements = json.loads(parse_sql_json(sql)).get("stmts", ())
    except Exception:
        statements = ()
    if len(statements) != len(own):
        for entry in own:
            if entry["type"] == "explain":
                entry["explains"] = "unknown"
        return
    for entry, raw in zip(own, statements, strict=True):
        if entry["type"] != "explain":
            continue
        ((tag, fields),) = raw["stmt"].items()
        query = fields.get("query") if tag == "ExplainStmt" else None
        if isinstance(query, dict) and len(query) == 1:
            ((inner, inner_fields),) = query.items()
            try:
                entry["explains"] = _describe_json(inner, inner_fields)["type"]
            except _Ambiguous:
                entry["explains"] = "unknown"
        else:
            entry["explains"] = "unknown"


def classify_fast(sql: str) -> list[Entry] | None:
    """classify() from the parser's JSON walked as plain dicts (building pglast.ast objects
    costs far more than parsing); None where the JSON cannot say exactly what the reference,
    classify_reference(), would (too deep for json, '' vs no COPY file name).

    The two must agree on every statement: tests/test_classifier_differential.py runs both
    over PostgreSQL's regression suite."""
    try:
        tree = parse_sql_json(sql)
    except Exception as exc:  # any parser failure is a deny, never a crash
        return [unparseable(exc)]
    try:
        loaded = json.loads(tree)
        newer = newer_grammar(tree, loaded)
        if newer is not None:
            return [unparseable(NewerGrammar(newer))]
        raw_statements = loaded.get("stmts", ())
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


def split(sql: str) -> list[str]:
    """The text of each statement of sql; the whole text when it cannot be parsed."""
    try:
        return list(pglast.split(sql))
    except Exception:
        return [sql]


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
    if tag.endswith("Stmt") and tag != "RawStmt" and tag not in NOT_NESTED_TAGS
)


def _classify_json(tag: str, fields: dict[str, Any], nested: bool = False) -> list[Entry]:
    """pdp.sql.reference's _classify_statement() for one JSON node."""
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
    values = tag in DDL_VALUE_TAGS
    for child_tag, child in walk:
        if values:
            if child_tag in VALUE_NODES or (
                child_tag == "IndexElem"
                and runs_opclass_code([_json_sval(p) for p in child.get("opclass", ())])
            ):
                entry["value_expressions"] = True
            elif child_tag == "AlterTableCmd":
                alter_command(entry, child.get("subtype", "AT_AddColumn"))
        if child_tag == "RangeVar":
            parts = [child.get(p) for p in ("catalogname", "schemaname", "relname")]
            tables[".".join(p for p in parts if p).lower()] = None
            if parts[0]:
                # db.schema.t is schema.t (the server refuses another database's name):
                # named so too, as the session's facts about relations name it
                tables[f"{parts[1]}.{parts[2]}".lower()] = None
        elif child_tag == "FuncCall":
            args = child.get("args")
            name = [_json_sval(p) for p in child.get("funcname", ())]
            third = _json_const(args[2]) if args and len(args) == 3 else None
            found.call(name, _json_first(args[0]) if args else None, third)
            if values and reads_anything(name):
                entry["value_expressions"] = True
        elif child_tag in _NAMES_CODE:
            _code_json(child_tag, child, found)
        elif child_tag == "ColumnRef":
            refs = child.get("fields", ())
            if len(refs) > 1 and "String" in refs[-1]:
                found.attribute(_json_sval(refs[-1]))
        elif child_tag == "A_Indirection":
            for step in child.get("indirection", ()):
                if "String" in step:
                    found.attribute(_json_sval(step))
        elif child_tag == "SelectStmt":
            if "lockingClause" in child:
                found.locking = True
        elif not hide_nested and child_tag in _NESTS:
            children.extend(_classify_json(child_tag, child, nested=True)[:1])
    if tag == "DropStmt" and entry.get("object") in RELATION_OBJECTS:
        for name in fields.get("objects", ()):
            tables[_json_qualified(name)] = None
    elif tag == "DoStmt":
        fold_do_block(entry, *_do_block_source(fields.get("args", ())), found, children)
    found.into(entry)
    return [entry, *children]


# Nodes that name, or imply, an operator or a type (Findings.operator, implied, type_name).
_NAMES_CODE = frozenset({"A_Expr", "SubLink", "SortBy", "CaseExpr", "JoinExpr", "TypeName"})


def _code_json(tag: str, fields: dict[str, Any], found: Findings) -> None:
    """pdp.sql.reference's operators and types of one JSON node."""
    if tag == "A_Expr":
        if fields.get("kind", "AEXPR_OP") in BETWEEN_KINDS:
            found.implied(*BETWEEN_OPERATORS)
        else:
            found.operator([_json_sval(p) for p in fields.get("name", ())])
    elif tag == "SubLink":
        if "operName" in fields:
            found.operator([_json_sval(p) for p in fields["operName"]])
        elif fields.get("subLinkType") == "ANY_SUBLINK":
            found.implied("=")
    elif tag == "SortBy":
        found.operator([_json_sval(p) for p in fields.get("useOp", ())])
    elif tag == "CaseExpr":
        if "arg" in fields:
            found.implied("=")
    elif tag == "JoinExpr":
        if fields.get("usingClause") or fields.get("isNatural", False):
            found.implied("=")
    else:
        found.type_name([_json_sval(p) for p in fields.get("names", ())])


def _describe_json(tag: str, fields: dict[str, Any]) -> Entry:
    """pdp.sql.reference's _describe() for one JSON node."""
    kind = type_of(tag)
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
        # the names of its options (FORMAT, DELIMITER, QUOTE, ...), never their values
        copy_options = {
            (o["DefElem"].get("defname") or "").lower() for o in fields.get("options", ())
        }
        if copy_options:
            entry["copy_options"] = sorted(copy_options)
    elif tag == "VariableSetStmt":
        options: Options = []
        values: list[Const | None] = []
        for arg in fields.get("args", ()):
            if "DefElem" in arg:
                options.append(_json_option(arg["DefElem"]))
            else:
                values.append(_json_const(arg))
        kind = fields.get("kind", "VAR_SET_VALUE")
        name = (fields.get("name") or "").lower()
        set_fields(entry, kind, name, values, options, bool(fields.get("is_local", False)))
    elif tag == "VariableShowStmt":
        entry["setting"] = (fields.get("name") or "").lower()
    elif tag in STORING_SETTINGS:
        setstmt = fields.get("setstmt") or {}
        stored_setting_fields(
            entry, setstmt.get("kind", "VAR_SET_VALUE"), (setstmt.get("name") or "").lower()
        )
    elif tag == "TransactionStmt":
        action = fields.get("kind", "TRANS_STMT_BEGIN")
        entry["action"] = action.removeprefix("TRANS_STMT_").lower()
        options = [_json_option(o["DefElem"]) for o in fields.get("options", ())]
        if option_read_write(options):
            entry["read_write"] = True
    elif tag in ("DeclareCursorStmt", "ClosePortalStmt"):
        entry["cursor"] = fields.get("portalname", "*")
    elif tag == "FetchStmt":
        # the cursor whose rows it returns (the PDP's fetch:NAME effect); MOVE returns none
        entry["cursor"] = fields.get("portalname", "")
        if fields.get("ismove"):
            entry["move"] = True
    elif tag in ("PrepareStmt", "ExecuteStmt"):
        entry["name"] = fields.get("name", "")
    elif tag == "DeallocateStmt":
        entry["name"] = "*" if fields.get("isall") or "name" not in fields else fields["name"]
    elif tag == "DiscardStmt":
        target = fields.get("target", "DISCARD_ALL")
        entry["target"] = target.removeprefix("DISCARD_").lower()
    elif tag == "RenameStmt":
        rename_fields(
            entry, fields.get("renameType", "OBJECT_ACCESS_METHOD"), fields.get("subname")
        )
    elif tag == "IndexStmt":
        if fields.get("unique"):
            entry["unique"] = True  # its inserts then answer equality questions (entries.py)
        # the columns it orders by (an index scan returns rows in their order)
        keys = [
            p["IndexElem"]["name"]
            for p in fields.get("indexParams", ())
            if "name" in p.get("IndexElem", {})
        ]
        if keys:
            entry["index_columns"] = keys
    elif tag == "CreateFunctionStmt":
        defs = [o["DefElem"] for o in fields.get("options", ())]
        entry["language"] = function_language(
            [_json_sval(d["arg"]) for d in defs if d.get("defname") == "language"]
        )
        if any(d.get("defname") == "as" for d in defs):
            entry["body_text"] = True  # a body written as a string: not read here
    if kind == "drop":
        if "removeType" in ast.__dict__[tag].__slots__:
            remove_type = fields.get("removeType", "OBJECT_ACCESS_METHOD")
            entry["object"] = remove_type.removeprefix("OBJECT_").lower()
        elif tag == "DropdbStmt":
            entry["object"] = "database"
        else:
            entry["object"] = tag.removeprefix("Drop").removesuffix("Stmt").lower()
    if entry["type"] == "ddl" and temporary_object(fields):
        entry["temporary"] = True
    return entry


# JSON leaves out false and zero, and pglast.ast reads them back as these.
_JSON_VALUE_DEFAULTS = {
    "String": ("sval", None),
    "Boolean": ("boolval", False),
    "Integer": ("ival", 0),
}


_JSON_CONST_DEFAULTS = (("sval", ""), ("ival", 0), ("fval", ""), ("boolval", False), ("bsval", ""))


def _json_const(node: dict[str, Any]) -> Const | None:
    """pdp.sql.reference's _const() for one JSON node, which leaves out false, zero and
    empty values."""
    fields = node.get("A_Const")
    if fields is None:
        return None
    if fields.get("isnull", False):
        return ("isnull", "")
    for key, default in _JSON_CONST_DEFAULTS:
        if key in fields:
            return (key, const_text(fields[key].get(key, default)))
    raise _Ambiguous("A_Const without a value")


def _json_first(node: dict[str, Any]) -> Const | None:
    """A call's first argument as pdp.sql.entries.Findings.call reads it: a constant, or a
    bound parameter as it is or cast to text or varchar without a length (PARAMETER)."""
    cast = node.get("TypeCast")
    if cast is not None:
        type_name = cast.get("typeName", {})
        names = tuple(_json_sval(n) for n in type_name.get("names", ()))
        if names not in PARAMETER_CASTS or type_name.get("typmods") or type_name.get("arrayBounds"):
            return _json_const(node)
        node = cast.get("arg", {})
    param = node.get("ParamRef")
    if param is not None and isinstance(param.get("number"), int) and param["number"] > 0:
        return (PARAMETER, str(param["number"]))
    return _json_const(node) if cast is None else None


def _json_option(fields: dict[str, Any]) -> tuple[str, Const | None]:
    arg = fields.get("arg")
    return fields.get("defname", ""), _json_const(arg) if arg is not None else None


def _json_option_on(options: Any, name: str) -> bool:
    """pdp.sql.reference's _option_on() for JSON options: the last one named wins."""
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
            on = str(value).lower() in TRUE_WORDS
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


def _do_block_source(args: Any) -> tuple[list[Entry], bool]:
    """pdp.sql.reference's _do_block() for the args of a JSON DoStmt."""
    options = []
    for option in args:
        ((_, fields),) = option.items()
        defname = fields.get("defname")
        if defname in ("as", "language"):
            options.append((defname, _json_sval(fields["arg"])))
    # the walks alone (as the reference walk's blocks are): a block's statements carry
    # neither `explains` nor `literal_keys` (a DO block is never reused by shape, and an
    # EXPLAIN without `explains` is judged as one planning a write)
    return do_block_body(options, _walked)
