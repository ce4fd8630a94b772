"""Builds the policy input document of DESIGN.md from a session and a command.

Owns the shape of `input` and the rule that the PDP classifies SQL itself from the raw
text (pglast, via pdp.sql) instead of trusting a proxy's description of it.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from pdp.domain.sessions import Session, rfc3339
from pdp.sql import Findings, classify
from portcullis import protocols

CACHED_SQL_LENGTH = 4096


@functools.lru_cache(maxsize=8192)
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


def postgres_command(kind: str, raw: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command.postgres: the proxy's attributes (protocol, phase, parameters, ...)
    and the statements as the PDP classifies them from the raw text itself, with their
    types (statement_types); a `statements` or `types` a proxy sent is never taken. The
    session's catalogue facts are trimmed to the names the statements hold (trim_to_names)."""
    details = {k: v for k, v in attributes.items() if k not in ("statements", "types")}
    if kind == "postgres.function_call":
        # a FunctionCall ('F') message names a function by OID; the proxy resolves it
        details["statements"] = [function_call_entry(str(attributes.get("function", "")))]
        details["types"] = statement_types(details["statements"])
        names = statement_names(details["statements"])
    else:
        details["statements"], details["types"], names = _classified_with_types(raw)
    details.setdefault("protocol", "simple")
    trim_to_names(details, names)
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
    """Keep of the catalogue facts the proxy reads from the database at start-up and sends
    whole with every statement only the entries for names the statements hold
    (statement_names), in place: `shadowed_functions` and `view_columns`, which the policy
    reads only by a name taken from a statement (rego/portcullis/postgres.rego: `f in
    shadowed_functions` for each of a statement's functions; postgres_lineage.rego:
    `view_columns[column]` for each column lineage meets), so it sees the same facts for
    every name it asks about; and `relation_sources` (view -> the relations it reads, by
    schema-qualified name), which no shipped rule reads (the row-filter guard takes it
    from the proxy's attributes, not from the input): kept for a relation named with or
    without its schema. The evaluator parses and copies what a database of many views
    and functions sends only for the few a statement uses (issue 27: the input's size is
    a cost per byte). A key stays present (even if empty) whenever it was sent, and a
    value of another type than the list and objects of the contract is left as sent.
    A departure from DESIGN.md's input contract like `types`: a rule of its own that
    walked any of them whole would see only the trimmed part."""
    shadowed = details.get("shadowed_functions")
    if type(shadowed) is list:
        # the policy compares them with a statement's function names, which are strings
        details["shadowed_functions"] = [f for f in shadowed if isinstance(f, str) and f in names]
    views = details.get("view_columns")
    if type(views) is dict and views:
        if len(names) < len(views):
            details["view_columns"] = {n: views[n] for n in names if n in views}
        else:
            details["view_columns"] = {k: v for k, v in views.items() if k in names}
    sources = details.get("relation_sources")
    if type(sources) is dict and sources:
        details["relation_sources"] = {
            k: v
            for k, v in sources.items()
            if isinstance(k, str) and (k in names or k.rpartition(".")[2] in names)
        }


@functools.lru_cache(maxsize=8192)
def _typed(raw: str) -> tuple[list[dict[str, Any]], dict[str, bool], frozenset[str]]:
    statements = _classified(raw)
    return statements, statement_types(statements), statement_names(statements)


def _classified_with_types(
    raw: str,
) -> tuple[list[dict[str, Any]], dict[str, bool], frozenset[str]]:
    """classified(), its statement_types() and its statement_names(), remembered together
    for short texts (all shared between callers, read-only)."""
    if len(raw) <= CACHED_SQL_LENGTH:
        return _typed(raw)
    statements = classify(raw)
    return statements, statement_types(statements), statement_names(statements)


def http_command(kind: str, raw: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command.http: method, path and query re-derived from the request line the
    proxy recorded as `raw` (normalised as the proxy must have forwarded it), never taken
    from the proxy's say; a body shown whole in `raw` is read from there. A request line
    that does not normalise leaves `path` out, which no rule allows."""
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
    if blank and "json" in content_type.lower():
        try:
            details["body"] = json.loads(body)
        except ValueError:
            details.pop("body", None)
    return details


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
        "now": rfc3339(time.time() if now is None else now),
    }
    if approval:
        policy_input["approval"] = approval
    return policy_input
