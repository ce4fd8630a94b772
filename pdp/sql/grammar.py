"""What the policy's parser reads otherwise than the server does.

Owns newer_grammar(): the constructs of pglast's grammar (PostgreSQL 18's, libpg_query)
that the server the gateway fronts (PostgreSQL 15, DESIGN.md) reads as something else.
PostgreSQL 16-18 made words of their SQL/JSON syntax, MERGE's merge_action() and
SYSTEM_USER keywords; to a PostgreSQL 15 server they are plain names:

- `system_user` is a column (`SELECT upper(system_user) FROM (SELECT password AS
  system_user FROM customers) s`) where pglast reads the function SYSTEM_USER, so lineage
  and predicates lose the column;
- `json(x)`, `json_scalar(x)`, `json_serialize(x)`, `json_value(...)`, `json_query(...)`,
  `json_exists(...)`, `json_array(...)`, `json_arrayagg(x)`, `json_objectagg(...)`,
  `json_object()`, `json_table(...)` and `merge_action()` are calls of whatever function
  of that name the search path reaches (the database's own, pg_catalog has none), where
  pglast reads a SQL/JSON or MERGE node that names no function, so the readers' function
  allow-list and the rule on the database's own functions never see the call.

Each such text is one the policy cannot read as the server will, so classify() denies it
as unparseable (on a server of PostgreSQL 16 or later this refuses SQL/JSON syntax that
would have meant what pglast reads: the safe mistake). Every other construct new since
PostgreSQL 15 (RETURNING OLD/NEW, MERGE ... BY SOURCE, non-decimal integers, ...) is a
syntax error to the server, which refuses it itself.

No IO here and no policy.
"""

from __future__ import annotations

import json
from typing import Any

from pglast import ast

# node tags pglast 8 builds that a PostgreSQL 15 parser never does (the SQL/JSON family:
# JsonParseExpr, JsonScalarExpr, JsonFuncExpr, JsonTable, JsonArrayAgg, ...)
_NEWER_TAG_PREFIX = "Json"
_NEWER_TAGS = frozenset({"MergeSupportFunc"})
# a FuncCall the newer grammar makes of a word that is a name to PostgreSQL 15
_NEWER_CALLS = frozenset({("pg_catalog", "system_user")})
# a JSON text holding none of these holds none of the constructs (most statements)
_MARKERS = ('"Json', '"MergeSupportFunc"', '"system_user"')


def newer_grammar(tree_json: str, loaded: Any = None) -> str | None:
    """The first construct of the parser's JSON tree (parse_sql_json's text, and the same
    read by json.loads if the caller has it) that the server reads otherwise, named for
    the client; None when there is none."""
    if not any(marker in tree_json for marker in _MARKERS):
        return None
    return _first_newer(json.loads(tree_json) if loaded is None else loaded)


def newer_nodes(statements: Any) -> str | None:
    """newer_grammar() of pglast.ast objects, for a tree too deep for json."""
    stack = [statements]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, ast.Node):
            tag = type(item).__name__
            if tag.startswith(_NEWER_TAG_PREFIX) or tag in _NEWER_TAGS:
                return tag
            if isinstance(item, ast.FuncCall):
                names = tuple(getattr(p, "sval", None) for p in item.funcname or ())
                if names in _NEWER_CALLS:
                    return "SYSTEM_USER"
            stack.extend(getattr(item, field) for field in getattr(item, "__slots__", ()))
    return None


def _first_newer(tree: Any) -> str | None:
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if key.startswith(_NEWER_TAG_PREFIX) or key in _NEWER_TAGS:
                return key
            if key == "FuncCall" and isinstance(value, dict):
                names = tuple(
                    part.get("String", {}).get("sval")
                    for part in value.get("funcname", ())
                    if isinstance(part, dict)
                )
                if names in _NEWER_CALLS:
                    return "SYSTEM_USER"
            if isinstance(value, (dict, list)):
                stack.append(value)
    return None


class NewerGrammar(Exception):
    """Text the server's grammar reads otherwise than the policy's parser."""

    def __init__(self, construct: str) -> None:
        super().__init__(
            f"the server (PostgreSQL 15) reads a SQL/JSON, MERGE_ACTION or SYSTEM_USER word "
            f"of this text ({construct} to the policy's newer parser) as a plain name: a "
            "column, or a function of the database; quote or schema-qualify such a name"
        )
