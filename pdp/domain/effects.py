"""What a command does to the session state a proxy tracks, told with every decision.

Owns turning the PDP's own classification of a statement (pdp.sql, the server's
grammar) into `Decision.effects`, so a proxy never parses SQL to learn them:

  prepared:NAME PREPARE or DEALLOCATE replace or drop the prepared statement NAME (`*`:
                DEALLOCATE ALL, DISCARD ALL: every one), whose names the extended
                protocol's statements share
  prepare:NAME  PREPARE makes the statement NAME (after its prepared:NAME), and no later
                statement of the command drops it: an EXECUTE of NAME returns the rows
                of the query this decision judged
  execute:NAME  the command is one EXECUTE of the prepared statement NAME whose parameters
                are constants: its rows are that statement's query's, with nothing
                computed by the EXECUTE itself
  close:NAME    CLOSE drops the cursor NAME (`*`: CLOSE ALL, DISCARD ALL: every one),
                whose names the extended protocol's portals share
  cursor:NAME   DECLARE makes a cursor the client may Describe and Execute as a portal
  fetch:NAME    the command is one FETCH from the cursor NAME (not MOVE): its rows are the
                cursor's query's
  copy_out      COPY ... TO STDOUT: rows leave as CopyData, not DataRow, with no column
                names; copy_source:SQL is the query whose rows it sends (deparsed by
                the server's grammar), which a proxy can describe to learn the columns;
                copy_binary when it sends them in the binary format (or any but text
                and CSV), where no value detector can read a value
  settings      SET, RESET, DISCARD or set_config change session settings

Facts about the text, never policy: the same for every session and policy revision.
No IO here.
"""

from __future__ import annotations

import functools
from typing import Any

import pglast
from pglast import ast
from pglast.stream import RawStream

from pdp.domain.policy_input import CACHED_SQL_LENGTH, TEXTS_REMEMBERED, classified


def statement_effects(entries: list[dict[str, Any]]) -> tuple[str, ...]:
    """The effects of the classified statements of one command, in a stable order."""
    found: dict[str, None] = {}
    for entry in entries:
        kind = entry.get("type")
        if kind in ("prepare", "deallocate"):
            name = entry.get("name") or "*"
            found[f"prepared:{name}"] = None
            _dropped(found, name)
            if kind == "prepare":
                found[f"prepare:{name}"] = None
        elif kind == "discard":
            if entry.get("target", "all") == "all":
                found["prepared:*"] = None
                found["close:*"] = None
                _dropped(found, "*")
            found["settings"] = None
        elif kind == "close":
            found[f"close:{entry.get('cursor') or '*'}"] = None
        elif kind == "declare":
            found[f"cursor:{entry.get('cursor') or ''}"] = None
        elif kind == "copy" and entry.get("direction") == "to" and entry.get("stdio"):
            found["copy_out"] = None
        elif kind == "set":
            found["settings"] = None
        if entry.get("settings") or entry.get("dynamic_settings"):
            found["settings"] = None
    return tuple(found)


def _dropped(found: dict[str, None], name: str) -> None:
    """A later statement replaces or drops the statement `name` (`*`: every one): no
    prepare: effect of an earlier PREPARE of it stands."""
    for effect in [e for e in found if e.startswith("prepare:")]:
        if name == "*" or effect == f"prepare:{name}":
            del found[effect]


def execute_effects(entries: list[dict[str, Any]], raw: str) -> tuple[str, ...]:
    """execute:NAME when the command is one EXECUTE whose parameters are constants
    (a literal, or one cast to a type): then what it returns is what the prepared
    statement's query returns for those values. A parameter the server computes (a
    function's result, an operator's) is left to the EXECUTE's own decision."""
    if len(entries) != 1 or entries[0].get("type") != "execute":
        return ()
    try:
        statements = pglast.parse_sql(raw)
    except Exception:
        return ()
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.ExecuteStmt):
        return ()
    node = statements[0].stmt
    for param in node.params or ():
        if isinstance(param, ast.TypeCast):
            param = param.arg
        if not isinstance(param, ast.A_Const):
            return ()
    return (f"execute:{node.name}",)


def copy_sources(raw: str) -> tuple[str, ...]:
    """For each COPY ... TO STDOUT in raw, the query whose rows it sends (and
    copy_binary before it when it sends them in a format no detector reads)."""
    try:
        statements = pglast.parse_sql(raw)
    except Exception:
        return ()
    found: list[str] = []
    for statement in statements:
        node = statement.stmt
        if not isinstance(node, ast.CopyStmt) or node.is_from or node.filename is not None:
            continue
        if any(
            option.defname == "format"
            and str(getattr(option.arg, "sval", option.arg)).lower() not in ("text", "csv")
            for option in node.options or ()
        ):
            found.append("copy_binary")
        if node.query is not None:
            found.append(f"copy_source:{RawStream()(node.query)}")
        elif node.relation is not None:
            columns = ", ".join(
                RawStream()(ast.ColumnRef(fields=(name,))) for name in node.attlist or ()
            )
            found.append(f"copy_source:SELECT {columns or '*'} FROM {RawStream()(node.relation)}")
    return tuple(found)


@functools.lru_cache(maxsize=TEXTS_REMEMBERED)
def _sql_effects(raw: str) -> tuple[str, ...]:
    entries = classified(raw)
    effects = statement_effects(entries)
    if entries and entries[0].get("type") == "execute":
        effects += execute_effects(entries, raw)
    elif len(entries) == 1 and entries[0].get("type") == "fetch":
        cursor = entries[0].get("cursor")
        if cursor and not entries[0].get("move"):
            effects += (f"fetch:{cursor}",)
    if "copy_out" in effects:
        effects += copy_sources(raw)
    return effects


def command_effects(kind: str, raw: str) -> tuple[str, ...]:
    """Effects of one command; () for commands that are not SQL text."""
    if kind != "postgres.query":
        return ()
    if len(raw) > CACHED_SQL_LENGTH:
        return _sql_effects.__wrapped__(raw)
    return _sql_effects(raw)
