"""Whether a Postgres session's unqualified names still resolve as when an approval was asked.

Owns one question settle() asks before re-running an approved statement: has the session
run, since the request, anything that may change how the server resolves an unqualified
name — `SET search_path` (or `SET SCHEMA`), `set_config(...)`, `SET ROLE` / `SET SESSION
AUTHORIZATION` (the default path starts with "$user"), `RESET ALL`, `DISCARD`, a `DO`
block, or a statement the PDP could not read? An approval binds the text and the bound
values; `TRUNCATE orders` approved while the path named a scratch schema truncated
public.orders once the path was set back. The audit store is the truth (every allowed
statement is recorded before it runs), so any replica, or this PDP after a restart, gives
the same answer. Reads the store; decides nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pdp.domain.approvals import ApprovalRequest
from pdp.domain.policy_input import command_input
from pdp.store import AuditStore, StoreUnavailable

# settings whose change moves what an unqualified name means ("all": RESET ALL)
_RESOLUTION_SETTINGS = frozenset({"search_path", "all", "role", "session_authorization"})
# statement types that may change them in ways the classification does not name
_OPAQUE_TYPES = frozenset({"discard", "do", "unparseable"})
_RAN = ("allow", "mask")
# statements that keep code for later (a prepared statement, a cursor, a rule)
_STORING = frozenset({"prepare", "declare", "ddl"})
# transaction statements that may undo settings made since the transaction began
_ENDING = frozenset({"commit", "rollback", "rollback_to", "prepare"})
# DDL that makes, moves or removes no name a statement may resolve to
_NAMING_NOTHING = frozenset({"CommentStmt", "IndexStmt", "ReindexStmt", "ClusterStmt"})


def changes_resolution(statements: Iterable[Any], attributes: dict[str, Any] | None = None) -> bool:
    """Whether any of these classified statements may change name resolution: by code it
    runs (_runs_change) or by the names it makes, moves or removes (_renames)."""
    return any(_runs_change(s, attributes) or _renames(s) for s in statements)


def _runs_change(statement: Any, attributes: dict[str, Any] | None) -> bool:
    """Whether a statement may run something that sets a resolution setting: SET and its
    kin, set_config, or code the statement does not show — anything but a pg_catalog
    built-in (a function the database defines, under any spelling, as the proxy names
    them in `attributes`), a procedure, a view running the database's code."""
    if not isinstance(statement, dict):
        return True  # not a classification this module knows: assume it may
    kind = statement.get("type")
    if kind in _OPAQUE_TYPES or kind == "call":
        return True
    if kind == "set" and str(statement.get("setting", "")).lower() in _RESOLUTION_SETTINGS:
        return True
    functions = statement.get("functions") or ()
    if any(str(f).lower().rsplit(".", 1)[-1] == "set_config" for f in functions):
        return True
    if statement.get("cased_functions") or any(
        not str(f).startswith("pg_catalog.") for f in statement.get("qualified_functions") or ()
    ):
        return True
    facts = attributes or {}
    defined = facts.get("user_functions", [])
    if not isinstance(defined, list) or set(map(str, defined)) & set(
        map(str, statement.get("unqualified_functions") or ())
    ):
        return True
    return _reads_code(statement, facts.get("view_functions", {}))


def _reads_code(statement: dict[str, Any], view_functions: Any) -> bool:
    """Whether a statement names a view that runs the database's functions (the proxy's
    view_functions: "schema.view" -> functions; a name without its schema is any
    schema's view of that name)."""
    if not isinstance(view_functions, dict):
        return True
    if not view_functions:
        return False
    for table in statement.get("tables") or ():
        name = str(table)
        for view in view_functions:
            if view == name or ("." not in name and str(view).endswith("." + name)):
                return True
    return False


def _renames(statement: Any) -> bool:
    """Whether a statement makes, moves or removes a name an unqualified one may resolve
    to: a temporary table made or dropped (pg_temp is searched first), a schema, a
    function that may match a call better than a built-in, a privilege on a schema. DDL
    other than the few that name nothing new (_NAMING_NOTHING) counts, GRANT and REVOKE
    too."""
    if not isinstance(statement, dict):
        return True
    kind = statement.get("type")
    if kind == "grant":
        return True  # a schema the role may no longer use is skipped on the path
    return kind in ("ddl", "drop") and statement.get("tag") not in _NAMING_NOTHING


def _statements_of(body: dict[str, Any]) -> Iterable[Any]:
    """A decision record's statements; classified again from its text when the record
    holds none (an evaluation reused records only the text)."""
    statements = body.get("statements")
    if isinstance(statements, list):
        return statements
    raw = body.get("raw")
    command = command_input(str(body.get("kind", "")), raw if isinstance(raw, str) else "", {})
    details = command.get("postgres")
    found = details.get("statements") if isinstance(details, dict) else None
    return found if isinstance(found, list) else [None]


def _stored(body: dict[str, Any], statements: Iterable[Any]) -> bool:
    """Whether a record's statements keep a way to change name resolution for later,
    which runs without a decision of its own: a statement prepared with the extended
    protocol (bound and executed again at will), or PREPARE, DECLARE (a cursor FETCHed
    later) and DDL (a rule) holding set_config."""
    attributes = body.get("attributes")
    facts = attributes if isinstance(attributes, dict) else None
    if facts is not None and facts.get("protocol") == "extended":
        return changes_resolution(statements, facts)
    return any(
        isinstance(s, dict) and s.get("type") in _STORING and _runs_change(s, facts)
        for s in statements
    )


@dataclass
class _SessionChanges:
    """What a session's decision log says so far (records up to seq `upto`): whether it
    keeps a change for later, and its newest change run (seq and time)."""

    upto: int = 0
    stored: bool = False
    last_seq: int = 0
    last_time: float = 0.0
    # a change run since the transaction began, which its end (or a rollback to a
    # savepoint) may undo: SET LOCAL, set_config(..., true), anything rolled back
    open_change: bool = False


def _changes_in_order(
    statements: list[Any], facts: dict[str, Any] | None, seen: _SessionChanges
) -> bool:
    """Whether one record's statements, in order, may change name resolution: a change
    (changes_resolution), or the end of a transaction in which one ran, which puts the
    path back by itself (SET LOCAL ends with it; a rollback undoes a session SET too)."""
    changed = False
    for statement in statements:
        if changes_resolution([statement], facts):
            changed = seen.open_change = True
        elif isinstance(statement, dict) and statement.get("type") == "transaction":
            action = statement.get("action")
            if action in _ENDING and seen.open_change:
                changed = True
            if action in _ENDING - {"rollback_to"} or action in ("begin", "start"):
                seen.open_change = False
    return changed


# per session, so that each reuse reads only the records since the last (a long session's
# whole log is not read again for every approved re-run); cleared when full
_SEEN: dict[str, _SessionChanges] = {}
_SEEN_SESSIONS = 4096


async def names_resolve_as_approved(store: AuditStore, approved: ApprovalRequest) -> bool:
    """False when the session may have changed name resolution since `approved` was
    asked — a change run after the request, or one kept for later at any time in the
    session — or the store cannot say (fail closed); True for a request that is not a
    Postgres statement."""
    if not approved.command_kind.startswith("postgres."):
        return True
    seen = _SEEN.get(approved.session_id)
    if seen is None:
        if len(_SEEN) >= _SEEN_SESSIONS:
            _SEEN.clear()
        seen = _SEEN[approved.session_id] = _SessionChanges()
    try:
        records = await store.query(
            kind="decision", session_id=approved.session_id, after_seq=seen.upto
        )
    except StoreUnavailable:
        return False
    for record in records:
        if record.seq <= seen.upto:
            continue
        body = record.body
        if body.get("verdict") in _RAN and str(body.get("kind", "")).startswith("postgres."):
            statements = list(_statements_of(body))
            if _stored(body, statements):
                seen.stored = True
            attributes = body.get("attributes")
            facts = attributes if isinstance(attributes, dict) else None
            if _changes_in_order(statements, facts, seen):
                seen.last_seq, seen.last_time = record.seq, record.time
        seen.upto = max(seen.upto, record.seq)
    if seen.stored:
        return False
    if approved.recorded_seq:
        return seen.last_seq <= approved.recorded_seq
    return seen.last_time < approved.created_at - 1  # a request read before seqs were kept
