"""Builds the policy input document of DESIGN.md from a session and a command.

Owns the shape of `input` and the rule that the PDP classifies SQL itself from the raw
text (pglast, via pdp.sql) instead of trusting a proxy's description of it.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from pdp.domain.sessions import Session, rfc3339
from pdp.sql import Findings, classify
from portcullis import protocols, strict_json

CACHED_SQL_LENGTH = 4096
# Distinct texts each bounded memory of SQL texts keeps (the classification and typing
# here, pdp.domain.effects' effects): with a new literal in every statement (agents) they
# fill to the bound and stay, ~3 KB a text in all, so 8,192 held ~25-35 MB after a soak
# of short sessions over a baseline of ~95 MB (issue 27: memory that returns); an
# application's own statements, repeated, take a few hundred.
TEXTS_REMEMBERED = 2048


@functools.lru_cache(maxsize=TEXTS_REMEMBERED)
def _classified(raw: str) -> list[dict[str, Any]]:
    return classify(raw)


def classified(raw: str) -> list[dict[str, Any]]:
    """classify() with memory for short texts: agents and pools repeat the same statements.

    The list may be shared between callers, who must treat it as read-only."""
    return _classified(raw) if len(raw) <= CACHED_SQL_LENGTH else classify(raw)


def function_call_entry(name: str) -> dict[str, Any]:
    """The statement entry of a fast-path call of the function the proxy named: its name
    as the server writes a function (regproc text: schema-qualified when not on the search
    path, identifiers double-quoted where needed), under the same fields classify() gives
    a call written in SQL, so one rule judges both."""
    found = Findings()
    parts = _identifiers(name)
    if parts is None:
        # not a name the server would write: judged as a name no list holds
        parts = [name or "?", "?"]
    found.call(parts, None)
    entry: dict[str, Any] = {"type": "select", "tag": "FunctionCall"}
    found.into(entry)
    return entry


def _identifiers(name: str) -> list[str] | None:
    """The identifiers of a dotted name, double-quoted ones unquoted; None if malformed."""
    parts: list[str] = []
    i = 0
    while i < len(name):
        if name[i] == '"':
            end = i + 1
            text = []
            while True:
                end = name.find('"', end)
                if end < 0:
                    return None
                if name.startswith('""', end):
                    text.append(name[i + 1 : end + 1])
                    i, end = end + 1, end + 2
                    continue
                text.append(name[i + 1 : end])
                break
            parts.append("".join(text))
            i = end + 1
        else:
            end = name.find(".", i)
            end = len(name) if end < 0 else end
            if '"' in name[i:end] or end == i:
                return None
            parts.append(name[i:end].lower())
            i = end
        if i < len(name):
            if name[i] != "." or i == len(name) - 1:
                return None
            i += 1
    return parts or None


def command_input(kind: str, raw: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command for one command: its attributes under its protocol's key, as the
    protocol's PDP-side builder makes them (portcullis.protocols), else as sent."""
    command: dict[str, Any] = {"kind": kind, "raw": raw}
    known = protocols.protocol_of(kind)
    if known is None:
        return command
    builder = known.input_builder()
    if builder is not None:
        command[known.name] = builder(kind, raw, attributes)
    elif attributes:
        command[known.name] = attributes
    return command


def statement_types(statements: list[dict[str, Any]]) -> dict[str, bool]:
    """input.command.postgres.types: {type: true} for the type of every statement (nested
    ones included). A departure from DESIGN.md's input contract (issue 27): the policy's
    rules about one type of statement open with `input.command.postgres.types.<type>`, which
    the evaluator's rule index reads, so a query holding none of that type skips them
    instead of walking its statements; rego/portcullis/postgres.rego denies any statement
    whose type this leaves out, so it can only ever make a decision stricter."""
    return {s["type"]: True for s in statements if isinstance(s.get("type"), str)}


# What input.command.postgres.has says of the statements (statement_flags): the flag, and the
# statement fields whose presence sets it (a field present with any value but false, as
# `s.<field>` holds in Rego, or iterated over in a rule, sets it).
_TRUTHY_FLAGS = {
    "settings": ("settings", "dynamic_settings", "read_settings", "dynamic_read_settings"),
    "locking": ("locking",),
    "read_write": ("read_write",),
    "nested": ("nested",),
    "attributes": ("attribute_names",),
    "writes": ("writes",),
    "shadows": ("shadows",),
}
# the catalogue facts (after trim_to_names) that set has.user_code when not empty
USER_CODE_FACTS = (
    "shadowed_functions",
    "user_operators",
    "user_types",
    "view_functions",
    "user_casts",
    "row_functions",
    "user_functions",
)
# every flag statement_flags may set: a statement it cannot read sets them all
STATEMENT_FLAGS = (
    *_TRUTHY_FLAGS,
    "untyped",
    "functions",
    "whole_row",
    "computed",
    "qualified_names",
    "pg_names",
)


def _items(value: Any) -> list[Any] | None:
    """What a rule's `some x in value` meets: a list's items, an object's values; None
    when it is neither (a rule may meet anything in it, so a flag counts it as set)."""
    if type(value) is list:
        return value
    if type(value) is dict:
        return list(value.values())
    return None


def _named_outside(values: Any) -> bool:
    """Whether some name of a list is written with a schema (holds a dot), or may be."""
    items = _items(values)
    return items is None or any(type(v) is not str or "." in v for v in items)


def _kind(output: Any) -> str | None:
    """An output's kind; None when it is not an object with a kind that is a string."""
    kind = output.get("kind") if type(output) is dict else None
    return kind if type(kind) is str else None


def statement_flags(statements: Any) -> dict[str, bool]:
    """input.command.postgres.has, the statements' part: {flag: true} for each of the facts
    below some statement holds (nested ones included), and no key for one none holds. A
    departure from DESIGN.md's input contract, like `types` (issue 27): a rule that looks
    for one of these facts in every statement opens with `input.command.postgres.has.<flag>`,
    which the evaluator's rule index reads, so a query holding none skips it instead of
    walking its statements. Each flag is set from the fields the rules it guards read, and
    whenever a statement or field is not of the shape the classifier gives (not an object,
    a list that is not a list): a flag may be set for nothing, never left out for something.

      untyped          a statement without a type (or with type false)
      settings         a statement names settings it changes (set_config) or reads
                       (current_setting), a setting name that is not a literal, or calls
                       set_config or current_setting
      locking          FOR UPDATE/SHARE
      read_write       would make the transaction read-write
      nested           a statement of a DO block
      attributes       a name after a dot on a row (`c.f`, `(expr).f`): a column, or a
                       function called on the whole row
      writes           stores values read from columns or rows (pdp/sql/lineage.py's
                       `writes`: INSERT ... SELECT, UPDATE ... SET, CREATE TABLE AS)
      shadows          makes or renames a relation under a system catalog table's name
      functions        calls a function
      whole_row        an output that is a whole row
      computed         an output that is an expression or an aggregate
      qualified_names  a function written with its schema or a quoted name with capitals, an
                       operator or a type written with its schema
      pg_names         a relation name holding `pg_` in any case (the statistics and TOAST
                       catalogs' rules, postgres_lineage.rego, lower-case and split every
                       name: ~140,000 evaluator instructions per agent query without it), or
                       a name that is not ASCII (whose lower case the evaluator may write
                       otherwise than Python)
    """
    flags: dict[str, bool] = {}
    items = _items(statements)
    if items is None:
        return dict.fromkeys(STATEMENT_FLAGS, True)
    for s in items:
        if type(s) is not dict:
            return dict.fromkeys(STATEMENT_FLAGS, True)
        if s.get("type", False) is False:
            flags["untyped"] = True
        for flag, fields in _TRUTHY_FLAGS.items():
            if any(s.get(f, False) is not False for f in fields):
                flags[flag] = True
        functions = _items(s.get("functions", []))
        if functions is None or "set_config" in functions or "current_setting" in functions:
            flags["settings"] = True
        if functions is None or functions:
            flags["functions"] = True
        outputs = _items(s.get("outputs", []))
        kinds = None if outputs is None else [_kind(o) for o in outputs]
        if kinds is None or None in kinds or "whole_row" in kinds:
            flags["whole_row"] = True
        if kinds is None or None in kinds or "expression" in kinds or "aggregate" in kinds:
            flags["computed"] = True
        if (
            _items(s.get("qualified_functions", [])) != []
            or _items(s.get("cased_functions", [])) != []
            or _named_outside(s.get("operators", []))
            or _named_outside(s.get("type_names", []))
        ):
            flags["qualified_names"] = True
        if _names_pg(s.get("tables", [])):
            flags["pg_names"] = True
    return flags


def _names_pg(values: Any) -> bool:
    """Whether some name of a list may be `pg_` something in any case: it holds `pg_`
    lower-cased, is not ASCII, or is not a string (or the list is not a list)."""
    items = _items(values)
    return items is None or any(
        type(v) is not str or not v.isascii() or "pg_" in v.lower() for v in items
    )


def query_flags(details: dict[str, Any], flags: dict[str, bool]) -> dict[str, bool]:
    """input.command.postgres.has: the statements' flags (statement_flags), and `user_code`
    when one of the catalogue facts the proxy sends (USER_CODE_FACTS: shadowed functions,
    user operators and types, view functions, user casts; as trimmed to the statement's
    names) is not empty, or not a list or object. The policy denies a postgres command
    without it."""
    if any(key in details and _items(details[key]) != [] for key in USER_CODE_FACTS):
        return {**flags, "user_code": True}
    return dict(flags)


def postgres_command(kind: str, raw: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command.postgres: the proxy's attributes (protocol, phase, parameters, ...)
    and the statements as the PDP classifies them from the raw text itself, with their
    types (statement_types) and flags (query_flags); a `statements`, `types` or `has` a
    proxy sent is never taken. The session's catalogue facts are trimmed to the names the
    statements hold (trim_to_names) before the flags are worked out from them."""
    details = {k: v for k, v in attributes.items() if k not in ("statements", "types", "has")}
    if kind == "postgres.function_call":
        # a FunctionCall ('F') message names a function by OID; the proxy resolves it
        details["statements"] = [function_call_entry(str(attributes.get("function", "")))]
        details["types"] = statement_types(details["statements"])
        names = statement_names(details["statements"])
        flags = statement_flags(details["statements"])
    else:
        details["statements"], details["types"], words, flags = _classified_with_types(raw)
        # a set made per call from the remembered tuple (~1 µs for 40 names): a frozenset
        # kept with each of the 8,192 remembered texts held ~1-2 KB more per text
        names = frozenset(words) if _has_facts(details) else frozenset()
    details.setdefault("protocol", "simple")
    trim_to_names(details, names)
    details["has"] = query_flags(details, flags)
    return details


def statement_names(statements: list[dict[str, Any]]) -> frozenset[str]:
    """Every string the statements hold, at any depth, values and keys: the names of
    their tables, columns, functions and outputs among them (and words that name nothing,
    which only make the set larger)."""
    names: set[str] = set()
    stack: list[Any] = [statements]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return frozenset(names)


def trim_to_names(details: dict[str, Any], names: frozenset[str]) -> None:
    """Keep of the catalogue facts the proxy reads from the database at start-up and sends whole
    with every statement only the entries for names the statements hold (statement_names),
    in place: `shadowed_functions`, `user_operators`, `user_types` and `view_columns`, which
    the policy reads only by a name taken from a statement (rego/portcullis/postgres.rego:
    `f in shadowed_functions` for each of a statement's functions, postgres_user_code.rego
    likewise for operators and types; postgres_lineage.rego: `view_columns[column]` for each
    column lineage meets), so it sees the same facts for every name it asks about;
    `view_functions` (view -> the functions reading it runs, by schema-qualified name;
    postgres_user_code.rego reads it for a statement's tables) and `relation_sources` (view
    -> the relations it reads, likewise; no shipped rule reads it: the row-filter guard
    takes it from the proxy's attributes, not from the input) and `write_code` (relation
    -> what writing it runs; read for a statement's tables, and whole by VACUUM, ANALYZE
    and REINDEX naming no relation, for which it is left whole): kept for a relation named
    with or without its schema. The evaluator parses and copies what a database of many
    views and functions sends only for the few a statement uses (issue 27: the input's size
    is a cost per byte). A key stays present (even if empty) whenever it was sent, and a
    value of another type than the list and objects of the contract is left as sent. A
    departure from DESIGN.md's input contract like `types`: a rule of its own that walked
    any of them whole would see only the trimmed part."""
    for key in (
        "shadowed_functions",
        "user_operators",
        "user_types",
        "row_functions",
        "user_functions",
    ):
        listed = details.get(key)
        if type(listed) is list:
            # the policy compares them with a statement's function, operator and type
            # names (postgres_user_code.rego), which are strings
            details[key] = [f for f in listed if isinstance(f, str) and f in names]
    views = details.get("view_columns")
    if type(views) is dict and views:
        if len(names) < len(views):
            details["view_columns"] = {n: views[n] for n in names if n in views}
        else:
            details["view_columns"] = {k: v for k, v in views.items() if k in names}
    keyed = ["relation_sources", "view_functions"]
    if not _every_relation(details.get("statements")):
        keyed.append("write_code")
    for key in keyed:
        by_relation = details.get(key)
        if type(by_relation) is dict and by_relation:
            details[key] = {
                k: v
                for k, v in by_relation.items()
                if isinstance(k, str) and (k in names or k.rpartition(".")[2] in names)
            }


_FACTS = (
    "shadowed_functions",
    "user_operators",
    "user_types",
    "row_functions",
    "user_functions",
    "view_columns",
    "relation_sources",
    "view_functions",
    "write_code",
)


def _has_facts(details: dict[str, Any]) -> bool:
    """Whether the proxy sent a catalogue fact trim_to_names keeps by name."""
    return any(key in details for key in _FACTS)


def _every_relation(statements: Any) -> bool:
    """Whether a statement may run every relation's write_code: VACUUM, ANALYZE or REINDEX
    naming none (the whole database, a schema), which postgres_user_code.rego reads whole."""
    return not isinstance(statements, list) or any(
        not isinstance(s, dict)
        or (s.get("tag") in ("VacuumStmt", "ReindexStmt") and not s.get("tables"))
        for s in statements
    )


# the statements, their types, their names (statement_names, as a tuple: remembered for
# each text, a tuple of 40 names holds ~380 bytes where their frozenset held ~2,260) and
# their flags
Typed = tuple[list[dict[str, Any]], dict[str, bool], tuple[str, ...], dict[str, bool]]


def _typing(statements: list[dict[str, Any]]) -> Typed:
    return (
        statements,
        statement_types(statements),
        tuple(statement_names(statements)),
        statement_flags(statements),
    )


@functools.lru_cache(maxsize=TEXTS_REMEMBERED)
def _typed(raw: str) -> Typed:
    return _typing(_classified(raw))


def _classified_with_types(raw: str) -> Typed:
    """classified(), its statement_types(), statement_names() and statement_flags(),
    remembered together for short texts (all shared between callers, read-only)."""
    if len(raw) <= CACHED_SQL_LENGTH:
        return _typed(raw)
    return _typing(classify(raw))


def http_command(kind: str, raw: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command.http: method, path and query re-derived from the request line the
    proxy recorded as `raw` (normalised as the proxy must have forwarded it), never taken
    from the proxy's say; a body shown whole in `raw` is read from there. A request line
    that does not normalise, or a JSON body that does not read one way only, leaves
    `path` out, which no rule allows."""
    from portcullis.http_target import TargetRefused, normalise

    details = {k: v for k, v in attributes.items() if k not in ("method", "path", "query")}
    line, _, rest = raw.partition("\n")
    parts = line.split(" ")
    if len(parts) != 3:
        return details
    details["method"] = parts[0]
    try:
        target = normalise(parts[1])
    except TargetRefused:
        return details
    details["path"], details["query"] = target.path, target.query_params()
    _, blank, body = rest.partition("\n\n")
    headers = details.get("headers")
    content_type = str(headers.get("content-type", "")) if isinstance(headers, dict) else ""
    if blank and "json" in content_type.split(";")[0].lower():
        # read one way only (as the proxy's messages.json_body): a name given twice, text
        # that is not JSON (a BOM, NaN), a number the input's doubles do not hold exactly
        # (1e400 failed the evaluation), nesting past the parser is decided with no path,
        # which no rule allows — the upstream's parser may keep the first of two values
        try:
            details["body"] = strict_json.loads(body)
        except (ValueError, RecursionError):
            # lines of JSON (Elasticsearch's _bulk and _msearch, typed application/json
            # or x-ndjson): the list of their values, each read one way only, as the
            # proxy's messages.ndjson_body shows them; else no path
            lines = _json_lines(body)
            if lines is None:
                for key in ("body", "path", "query"):
                    details.pop(key, None)
            else:
                details["body"] = lines
    return details


def _json_lines(body: str) -> list[Any] | None:
    """A body of newline-delimited JSON (strict_json.lines_of) as its lines' values, each
    read one way only, or None."""
    lines = strict_json.lines_of(body)
    if lines is None:
        return None
    try:
        return [strict_json.loads(line) for line in lines]
    except (ValueError, RecursionError):
        return None


# the second now_text() wrote last: (unix second, its RFC 3339 text up to the seconds)
_second: tuple[int, str] = (-1, "")


def now_text(seconds: float) -> str:
    """rfc3339(seconds) exactly, the date and time of day made once per second (every
    evaluated decision's input.now): the microseconds as datetime.fromtimestamp rounds
    them (half to even, a carry into the next second), then truncated to milliseconds."""
    global _second
    if not 0 <= seconds < 1e11:  # NaN, negative, past year 5138: as rfc3339 says
        return rfc3339(seconds)
    whole = int(seconds)
    micros = round((seconds - whole) * 1e6)  # the fraction is exact: whole <= seconds
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    held = _second
    if held[0] != whole:
        held = _second = (whole, rfc3339(whole)[:-5])  # less ".000Z"
    return f"{held[1]}.{micros // 1000:03d}Z"


def build_input(
    session: Session,
    command: dict[str, Any],
    approval: dict[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The input document of DESIGN.md "Policy contract". pdp.domain.decisions adds
    `standing` (rego/portcullis/standing.rego: the policy's own conclusions about the
    identity on the connection, evaluated once per session and policy revision) when it
    has one; nothing else may set it."""
    policy_input: dict[str, Any] = {
        "identity": session.identity.to_input(),
        "connection": session.connection,
        "session": session.to_input(),
        "command": command,
        "now": now_text(time.time() if now is None else now),
    }
    if approval:
        policy_input["approval"] = approval
    return policy_input
