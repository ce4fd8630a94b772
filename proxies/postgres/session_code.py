"""Which of the database's code may leave session state on a server connection.

Behind a transaction pooler each transaction of a session may run on another server
connection, and whatever a session changes for itself there (a session-level SET or
set_config, a temporary object, a LISTEN, a session-level advisory lock, a seed) stays for
whichever client's transaction runs there next (rego/portcullis/postgres_pooler.rego). A
statement's own such changes the classifier names; the database's functions run them
where the statement names only the function (`SELECT f()` whose PL/pgSQL body runs
`PERFORM set_config('search_path', 'evil', false)`), or names nothing at all (a trigger, a
column default, a view's or a rule's functions, an operator, a cast, an event trigger).

Owns session_code(): from the bodies of the database's functions (user_code.py's
USER_CODE_SQL `function_code`), the names of those whose body cannot be shown free of
such changes, and what runs one (user_code's other facts). An allow-list: a body is shown
free of them only when it is LANGUAGE sql or plpgsql, parses, holds no dynamic SQL, runs
only statements that read or write rows (SELECT without INTO, INSERT, UPDATE, DELETE,
MERGE, TRUNCATE, CALL) or whose effect ends with the transaction (SET LOCAL, LOCK,
NOTIFY), and calls no built-in that keeps session state (SESSION_STATE_BUILTINS;
set_config only with is_local a constant true) and no function of the database not so
shown (by name, any schema's, any overload's: more refused, never less), nor uses an
operator or a type whose code is not (a domain's CHECK). An aggregate the database made
runs its support functions (transition, final, combine, serial, deserial, moving-aggregate)
and its sort operator's, each judged so; an internal function runs the C code of the
built-ins of its symbol (a type's `AS 'int4in'` input; `AS 'set_config_by_name'` is
set_config), judged as those. Every other language (C, plpython, ...) is unknown code, but
an installed extension's compiled functions (CREATE EXTENSION is a superuser's reviewed
act), of which those named in SESSION_STATE_BUILTINS (dblink_connect) count.
A function's own SET clause (ALTER FUNCTION f SET search_path = ...) is restored at its exit
and is no change; a SET in its body, even of the same setting, is (it outlives the call).

No IO here; the proxy sends what this finds only behind a transaction pooler.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import pglast
from pglast.parser import parse_sql_json

from portcullis.parse_trees import key_values

# pg_catalog's functions that keep something for the rest of the session (whatever
# schema a call names: a function of the database under such a name counts the same);
# rego/portcullis/postgres_pooler.rego's pg_pooler_session_builtins refuses the same in a
# statement
SESSION_STATE_BUILTINS = frozenset(
    {
        "set_config",  # unless is_local is a constant true: SET LOCAL
        "setseed",  # random()'s seed
        "pg_advisory_lock",  # session-level advisory locks (the _xact ones end with it)
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_unlock",  # ...and releasing them: what another session may hold
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
        "pg_replication_origin_session_setup",
        "pg_replication_origin_session_reset",
        "dblink_connect",  # a named connection kept for the session
        "dblink_connect_u",
        "dblink_open",
    }
)

# pg_catalog's functions that read what the server connection keeps for its session
# (rego/portcullis/postgres_pooler.rego judges a statement naming them): an internal
# function running their code is unknown code, as it was before internal functions were
# read as the built-ins they alias
_SESSION_READ_BUILTINS = frozenset(
    {"lastval", "currval", "pg_prepared_statement", "pg_cursor", "pg_get_backend_memory_contexts"}
)

# the statements a body may run: they read or write rows, or what they do ends with the
# transaction (a lock, a notification sent at commit), and keep nothing for the session
_ROW_STATEMENTS = frozenset(
    {
        "SelectStmt",
        "InsertStmt",
        "UpdateStmt",
        "DeleteStmt",
        "MergeStmt",
        "TruncateStmt",
        "CallStmt",
        "LockStmt",
        "NotifyStmt",
    }
)
# PL/pgSQL's statements that run SQL given as a string
_DYNAMIC = frozenset({"PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors"})
# a function's name in a fact: `schema.name` then maybe a note: ` (created after initdb)`
_FACT_FUNCTION = re.compile(r"^([^ ]+?)(?: \(.*\))?$")
# ...in a trigger's or event trigger's: `name on what (schema.function)`
_FACT_TRIGGER = re.compile(r"\(([^()]+)\)$")
# ...in a cast's: `source -> target by schema.function (context)`
_FACT_CAST = re.compile(r" by ([^ ]+) \(")


def session_code(rows: list[str], code: dict[str, Any]) -> dict[str, Any]:
    """The facts' `pooler_session_code` from USER_CODE_SQL's one row (its function_code,
    operator_code, type_code and rule_code) and the facts user_code() made of it (`code`:
    view_functions, write_code, event_triggers, user_casts):

      functions       names of functions whose body cannot be shown free of session-level
                      changes: `name`, lower-cased, and `schema.name` (as a statement's
                      functions, qualified_functions and cased_functions give them)
      operators       the database's operator names whose function is one
      types           type names whose domain CHECKs (or an attribute's) run one
      reads           relation (as view_functions keys it) -> such functions reading runs
      writes          relation (as write_code keys it) -> such functions writing runs
                      (triggers, defaults, constraints, rules' actions)
      event_triggers  enabled event triggers running one
      casts           the database's casts running one

    each present only when not empty; {} when there is none. Raises ValueError for an
    answer not of that shape (the catalogue is then not judged by: fail closed)."""
    found = json.loads(rows[0] or "{}") if rows else {}
    if not isinstance(found, dict):
        raise ValueError("the user code answer is not an object")
    functions = _function_rows(found.get("function_code"))
    operator_code = [(str(o), str(f)) for o, f in _pairs(found.get("operator_code"))]
    type_code = [(str(t), str(f)) for t, f in _pairs(found.get("type_code"))]
    unsafe = _unsafe(functions, operator_code, type_code)
    if not unsafe:
        return {}
    names: set[str] = set()
    for schema, name in unsafe:
        names.update({name, name.lower(), f"{schema}.{name}", f"{schema}.{name}".lower()})
    result: dict[str, Any] = {"functions": sorted(names)}

    def runs(fact: str, pattern: re.Pattern[str] = _FACT_FUNCTION) -> bool:
        match = pattern.search(fact)
        return match is not None and match.group(1) in names

    operators = sorted({o for o, f in operator_code if runs(f)})
    if operators:
        result["operators"] = operators
    types = sorted({t for t, f in type_code if runs(f)})
    if types:
        result["types"] = types
    reads = {
        v: sorted(f for f in fs if runs(f))
        for v, fs in (code.get("view_functions") or {}).items()
        if any(runs(f) for f in fs)
    }
    if reads:
        result["reads"] = reads
    rules: dict[str, set[str]] = {}
    for rule, function in _pairs(found.get("rule_code")):
        rules.setdefault(str(rule), set()).add(str(function))
    writes: dict[str, list[str]] = {}
    for relation, kinds in (code.get("write_code") or {}).items():
        ran = {t for t in kinds.get("triggers", ()) if runs(t, _FACT_TRIGGER)}
        ran |= {f for f in kinds.get("functions", ()) if runs(f)}
        ran |= {f"{r} ({f})" for r in kinds.get("rules", ()) for f in rules.get(r, ()) if runs(f)}
        if ran:
            writes[relation] = sorted(ran)
    if writes:
        result["writes"] = writes
    events = [e for e in code.get("event_triggers") or () if runs(e, _FACT_TRIGGER)]
    if events:
        result["event_triggers"] = events
    casts = [c for c in code.get("user_casts") or () if runs(c, _FACT_CAST)]
    if casts:
        result["casts"] = casts
    return result


def _pairs(rows: Any) -> Iterator[tuple[Any, Any]]:
    if rows is None:
        return
    if not isinstance(rows, list):
        raise ValueError("a code fact is not a list")
    for row in rows:
        if not isinstance(row, list) or len(row) != 2:
            raise ValueError("a code fact's row is not a pair")
        yield row[0], row[1]


# (schema, name, language, what it returns, body, the functions a pre-parsed SQL body
# calls, whether CREATE EXTENSION made it)
_Function = tuple[str, str, str, str, str, list[str], bool]
# the head a PL/pgSQL body is parsed under, by what the function returns (a RETURN's form
# depends on it: a value, none, RETURN NEXT)
_HEADS = {
    "procedure": "PROCEDURE portcullis_body()",
    "setof": "FUNCTION portcullis_body() RETURNS SETOF int",
    "trigger": "FUNCTION portcullis_body() RETURNS trigger",
    "event_trigger": "FUNCTION portcullis_body() RETURNS event_trigger",
    "void": "FUNCTION portcullis_body() RETURNS void",
    "value": "FUNCTION portcullis_body() RETURNS int",
}


def _function_rows(rows: Any) -> list[_Function]:
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise ValueError("function_code is not a list")
    functions: list[_Function] = []
    for row in rows:
        if (
            not isinstance(row, list)
            or len(row) != 7
            or not all(isinstance(x, str) for x in row[:5])
            or not isinstance(row[5], list)
            or not isinstance(row[6], bool)
        ):
            raise ValueError(
                "a function_code row is not"
                " [schema, name, language, returns, body, calls, extension]"
            )
        functions.append((row[0], row[1], row[2], row[3], row[4], [str(c) for c in row[5]], row[6]))
    return functions


def _unsafe(
    functions: list[_Function],
    operator_code: list[tuple[str, str]],
    type_code: list[tuple[str, str]],
) -> set[tuple[str, str]]:
    """(schema, name) of each function whose body cannot be shown free of session-level
    changes, what bodies call followed to a fixed point: functions, the database's
    operators (by the function each runs) and the types whose domain CHECKs run one."""
    unsafe: set[tuple[str, str]] = set()
    calls: dict[tuple[str, str], frozenset[str]] = {}
    for schema, name, language, returns, body, called, extension in functions:
        if extension and language not in ("sql", "plpgsql"):
            # an installed extension's compiled code (uuid-ossp's uuid_generate_v4, a
            # DEFAULT of many tables): CREATE EXTENSION is a superuser's reviewed act, and
            # those known to keep session state are named (dblink_connect)
            if name.lower() in SESSION_STATE_BUILTINS:
                unsafe.add((schema, name))
            continue
        if language == "internal" and returns != "aggregate":
            # a built-in's C code under another name (a type's input and output
            # functions: `AS 'int4in'`): judged as the built-ins running it, which
            # USER_CODE_SQL gives as what it calls (none: unknown code)
            aliased = {c.rpartition(".")[2].lower() for c in called}
            if aliased and not aliased & _SESSION_READ_BUILTINS:
                calls[(schema, name)] = frozenset(aliased)
            else:
                unsafe.add((schema, name))
            continue
        found = _body_calls(language, returns, body)
        if found is None:
            unsafe.add((schema, name))
        else:
            resolved = {c.rpartition(".")[2].lower() for c in called}
            if language == "sql" and _LOCAL_SET_CONFIG in found and "set_config" not in found:
                # a SQL-standard body's calls as the server resolved them: its set_config
                # calls, which _atomic_calls read, all have is_local a constant true
                resolved.discard("set_config")
            calls[(schema, name)] = found | resolved
    while True:
        bad_functions = {n.lower() for _, n in unsafe}
        bad = SESSION_STATE_BUILTINS | bad_functions
        bad |= {_OPERATOR + o for o, f in operator_code if _bare(f) in bad_functions}
        bad |= {_TYPE + t.lower() for t, f in type_code if _bare(f) in bad_functions}
        more = {f for f, names in calls.items() if f not in unsafe and names & bad}
        if not more:
            return unsafe
        unsafe |= more


def _bare(function: str) -> str:
    """`schema.name` → name, lower-cased."""
    return function.rpartition(".")[2].lower()


@functools.lru_cache(maxsize=4096)
def _body_calls(language: str, returns: str, body: str) -> frozenset[str] | None:
    """The names (lower-cased, without schema) a body calls; None when it may make a
    session-level change itself or cannot be read. Remembered: the facts are read again
    on every change of the catalogue, and bodies seldom change with it."""
    if language == "sql":
        found = _sql_calls(body, statement=True)
        if found is None:
            # a BEGIN ATOMIC or RETURN body, as pg_get_function_sqlbody writes it (a
            # prosrc so written does not parse as statements, and never runs)
            found = _atomic_calls(body)
        return None if found is None else frozenset(found)
    if returns == "aggregate" and language == "internal" and body == "aggregate_dummy":
        # an aggregate the database made runs only its support functions (and its sort
        # operator's), which USER_CODE_SQL gives as what it calls, judged as any call
        return frozenset()
    if language != "plpgsql" or returns not in _HEADS:
        return None
    wrapper = (
        f"CREATE {_HEADS[returns]} AS $portcullis_body${body}$portcullis_body$ LANGUAGE plpgsql"
    )
    if "$portcullis_body$" in body:
        return None
    try:
        tree = pglast.parse_plpgsql(wrapper)
    except Exception:
        return None
    names: set[str] = set()
    for key, value in key_values(tree):
        if key in _DYNAMIC or key == "dynquery":
            return None
        if key != "PLpgSQL_expr" or not isinstance(value, dict):
            continue
        query = str(value.get("query", ""))
        if value.get("parseMode", 0) == 0:
            found = _sql_calls(query, statement=True)
        else:
            expression = query.split(":=", 1)[1] if ":=" in query else query
            found = _sql_calls(f"SELECT {expression}", statement=False)
        if found is None:
            return None
        names |= found
    # a variable of a domain runs its CHECK on every assignment, and the parser (without a
    # catalogue) does not say a declared variable's type: every word of the body counts
    # as a type it may name (more refused, never less)
    names |= {_TYPE + word for word in _WORD.findall(body.lower())}
    return frozenset(names)


def _sql_calls(text: str, statement: bool) -> set[str] | None:
    """The names SQL text calls; None when a statement of it is not one of _ROW_STATEMENTS
    (or SELECT INTO, which makes a table), it sets a setting for the session, or it does
    not parse."""
    if not text.strip():
        return set()
    try:
        tree = json.loads(parse_sql_json(text))
    except Exception:
        return None
    for raw in tree.get("stmts", []):
        node = raw.get("stmt", {})
        kind = next(iter(node), "")
        if kind == "VariableSetStmt" and node[kind].get("is_local", False) is True:
            continue  # SET LOCAL: it ends with the transaction
        if kind not in _ROW_STATEMENTS or (statement and node[kind].get("intoClause")):
            return None
    return _calls(tree)


def _atomic_calls(text: str) -> set[str] | None:
    """The names a SQL-standard body (`BEGIN ATOMIC ... END`, `RETURN expression`) calls;
    None when it does not parse as one, or a statement of it is not one of _ROW_STATEMENTS
    (or SELECT INTO)."""
    if not text.startswith(("BEGIN ATOMIC", "RETURN")):
        return None
    try:
        tree = json.loads(
            parse_sql_json(f"CREATE FUNCTION portcullis_body() RETURNS int LANGUAGE sql {text}")
        )
    except Exception:
        return None
    stmts = tree.get("stmts", [])
    if len(stmts) != 1 or not isinstance(stmts[0].get("stmt", {}), dict):
        return None
    create = stmts[0]["stmt"].get("CreateFunctionStmt")
    body = create.get("sql_body") if isinstance(create, dict) else None
    if not isinstance(body, dict):
        return None
    if "ReturnStmt" in body:
        statements = [body]
    else:
        outer = body.get("List", {}).get("items", [])
        if len(outer) != 1 or not isinstance(outer[0], dict):
            return None
        statements = outer[0].get("List", {}).get("items", [])
    for node in statements:
        kind = next(iter(node), "") if isinstance(node, dict) else ""
        if kind != "ReturnStmt" and (kind not in _ROW_STATEMENTS or node[kind].get("intoClause")):
            return None
    return _calls(body)


def _calls(tree: Any) -> set[str]:
    """The names a parsed tree calls: functions (set_config with is_local a constant true
    left out), operators and type names."""
    names: set[str] = set()
    for key, value in key_values(tree):
        if not isinstance(value, dict):
            continue
        if key in ("FuncCall", "funccall"):  # (CALL's is not wrapped in a FuncCall node)
            name = _last(value.get("funcname"))
            if name == "set_config" and _is_local(value.get("args", [])):
                names.add(_LOCAL_SET_CONFIG)
                continue
            names.add(name)
        elif key == "A_Expr":
            names.add(_OPERATOR + _last(value.get("name")))
        elif key in ("TypeName", "typeName"):  # (a cast's is not wrapped in a TypeName)
            names.add(_TYPE + _last(value.get("names")))
    return names


# a name as it may stand in a body, lower-cased (a quoted one's inside)
_WORD = re.compile(r"[a-z_][a-z0-9_$]*")
# how a body's operators and type names are told from its function names in its calls
_OPERATOR = "operator "
_TYPE = "type "
# ...and a set_config call with is_local a constant true (no name has a NUL)
_LOCAL_SET_CONFIG = "\x00set_config local"


def _last(parts: Any) -> str:
    """The last identifier of a name's list of String nodes, lower-cased."""
    if not isinstance(parts, list) or not parts or not isinstance(parts[-1], dict):
        return ""
    return str(parts[-1].get("String", {}).get("sval", "")).lower()


def _is_local(args: list[Any]) -> bool:
    """set_config's is_local is a constant true (SET LOCAL: it ends with the transaction)."""
    if len(args) != 3 or not isinstance(args[2], dict):
        return False
    const = args[2].get("A_Const", {})
    return const.get("boolval", {}).get("boolval", False) is True or (
        str(const.get("sval", {}).get("sval", "")).lower() in ("true", "t", "on", "yes")
    )
