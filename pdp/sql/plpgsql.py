"""The static SQL of a DO block, read with the PL/pgSQL parser.

Owns what a DO block adds to its entry: the statements and expressions of its body,
classified by the walk that found the block (each classifier path stays whole), and
whether some of the body stays unseen (`opaque`: another language, dynamic EXECUTE, a body
that does not parse), which the policy treats as unknown code.

No IO here and no policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pglast

from pdp.sql.entries import Entry, Findings
from portcullis.parse_trees import key_values


def do_block_body(
    options: list[tuple[str, str]], reclassify: Callable[[str], list[Entry]]
) -> tuple[list[Entry], bool]:
    """Entries for the static SQL of a DO block, and whether some of it stays unseen;
    reclassify is the classifier of the tree the block came from, so each path stays whole.

    A DO block in another language, dynamic EXECUTE, or a body that does not parse is
    opaque: the policy cannot know what it runs. A FETCH or MOVE is a nested fetch entry:
    it reads rows of a cursor the block may not have opened.
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
    for key, value in key_values(tree):
        if key in ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors") or (
            key == "PLpgSQL_stmt_open" and "dynquery" in value
        ):
            opaque = True
        elif key == "PLpgSQL_stmt_fetch":
            # FETCH (into variables) and MOVE read a cursor by the name its refcursor
            # holds: any portal of the session (a SQL cursor, a protocol portal), whose
            # rows SQL FETCH would mask and whose query is not in this text; MOVE runs that
            # query too, and its error (SQLERRM in a handler) may quote a value
            entries.append(dict(_CURSOR_ROWS))
        elif (key == "PLpgSQL_stmt_getdiag" and value.get("is_stacked", False)) or (
            key == "PLpgSQL_expr" and _ERROR_TEXT.search(value.get("query", ""))
        ):
            # an EXCEPTION handler's SQLERRM and GET STACKED DIAGNOSTICS hold the text of
            # the error a statement met, values of the rows it touched included (`Failing
            # row contains (...)`), which the proxy withholds from the client
            entries.append(dict(_ERROR_TEXT_READ))
        if key == "PLpgSQL_expr":
            found = _plpgsql_expr(value, reclassify)
            if found is None:
                opaque = True
            else:
                entries.extend(found)
    return entries, opaque


# What a DO block's FETCH adds: a nested fetch entry, judged as rows of a cursor
_CURSOR_ROWS: Entry = {
    "type": "fetch",
    "tag": "PLpgSQL_stmt_fetch",
    "tables": [],
    "functions": [],
    "qualified_functions": [],
}
# ...and its reading of an error's text: a nested fetch entry of its own tag
_ERROR_TEXT_READ: Entry = {**_CURSOR_ROWS, "tag": "PLpgSQL_error_text"}
# SQLERRM as PL/pgSQL reads a name (any case, quoted or not)
_ERROR_TEXT = re.compile(r"(?<![\w$])sqlerrm(?![\w$])", re.IGNORECASE)


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


def fold_do_block(
    entry: dict[str, Any],
    inner: list[dict[str, Any]],
    opaque: bool,
    found: Findings,
    children: list[dict[str, Any]],
) -> None:
    """What a DO block's body holds joins its entry: tables and functions (with the
    settings set_config changes and any locking) always, and the statements as nested
    entries. IF conditions, RAISE arguments and assignments add only what they call, unless
    they read a relation (`x := (SELECT password FROM customers)`, `RAISE NOTICE '%',
    (SELECT ...)`) or call what may (`x := public.pw_of(1)`, `IF public.pw_of(1) LIKE
    ...`: lineage reads a function outside pg_catalog as reading every table): then they
    are nested entries too, whose outputs the policy judges as a statement's (what they
    read reaches the block's variables, notices and errors)."""
    entry["opaque"] = opaque
    for item in inner:
        found.fold(item)
        if not item.pop("expression", False) or item.get("tables") or _reads_rows(item):
            item["nested"] = True
            children.append(item)


def _reads_rows(item: Entry) -> bool:
    """Whether lineage says some value of item may carry whole rows of tables: a function
    of another schema (pdp.sql.lineage reads it as reading every table, "*")."""
    return any(
        flow.get("tables")
        for key in ("outputs", "writes", "arguments")
        for flow in item.get(key, ())
    ) or any(p.get("column") == "*" for p in item.get("predicates", ()))
