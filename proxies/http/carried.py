"""Operations a request carries for the upstream to carry out, read as methods (no IO).

Owns the reading of writes that a request's method does not tell: Elasticsearch's and
OpenSearch's `_bulk` action lines (NDJSON: `{"delete": {"_id": "7"}}`), JSON:API's
Atomic Operations (`{"atomic:operations": [{"op": "remove", "ref": ...}]}`), JSON Patch
and SCIM's PatchOp operations (`{"op": "remove", "path": ...}`) and GraphQL mutations
(in the `query` of a GET's target, of a JSON body, of a batch of them, or a body typed
`application/graphql`; a persisted query sent by its hash or id alone, an operation
named or given variables without its text, and a multipart upload's `operations`,
which may be one).
Each is a method of the request (http.rego judges it as one: a reader's POST carrying a
delete is the DELETE). Reads more, never less: what may be such an operation counts.
"""

from __future__ import annotations

import json
import re
from typing import Any

# an action line of _bulk: its one member names the action, its object the document's
# metadata (a _msearch header line, `{"index": "logs"}`, names an index by a string)
BULK_ACTIONS = {"index": "PUT", "create": "PUT", "update": "POST", "delete": "DELETE"}
# JSON:API Atomic Operations (an operation naming its target by `ref` or `href`, or
# carrying `data`, never a `path`): `remove` deletes the resource
RESOURCE_OPS = {"add": "POST", "update": "PATCH", "remove": "DELETE"}
# JSON Patch (RFC 6902) and SCIM PatchOp (RFC 7644 §3.5.2) operations change the document
PATCH_OPS = frozenset({"add", "remove", "replace", "move", "copy"})
MAX_LINES = 10_000  # NDJSON lines read for action lines
MAX_GRAPHQL = 1024 * 1024  # characters of a GraphQL document read for its operations

# GraphQL parameters that name an operation the proxy is not shown (no `query` text beside
# them): a persisted document by its id (Relay's `doc_id`, the GraphQL-over-HTTP draft's
# `documentId`, `queryId`), or an operation chosen by name or given variables, which a
# server's stored documents (an allow-list of operations) answer; any may be a mutation
PERSISTED_NAMES = frozenset(
    {"doc_id", "documentid", "document_id", "queryid", "query_id", "operationname", "variables"}
)
# the GraphQL multipart request (file uploads): its `operations` part carries the
# operations, uploads are mutations
_MULTIPART_OPERATIONS = re.compile(rb'(?i)content-disposition:[^\r\n]*name\s*=\s*"?operations\b')

_BULK_LINE = re.compile(
    rb'(?im)^\s*\{\s*"(index|create|update|delete)"\s*:\s*\{'
)  # (past the bounds: an action line counts by its opening)
_OP_VALUE = re.compile(rb'(?i)"op"\s*:\s*"\s*(add|update|remove|replace|move|copy)\s*"')


def object_methods(item: dict[Any, Any]) -> set[str]:
    """The methods one JSON object stands for as an operation: a JSON:API operation, a
    JSON Patch or SCIM operation (none for anything else)."""
    keys = {str(k).lower(): v for k, v in item.items()}
    op = keys.get("op")
    if not isinstance(op, str):
        return set()
    op = op.strip().lower()
    if op in RESOURCE_OPS and "path" not in keys:
        # (JSON:API names its target by `ref` or `href`, or by the `data` it carries;
        # an operation naming none still acts on something: `remove` as a delete)
        return {RESOURCE_OPS[op]}
    if op in PATCH_OPS or op in RESOURCE_OPS:
        return {"PATCH"}
    return set()


def action_method(item: Any) -> str | None:
    """The method a _bulk action line stands for (`{"delete": {...}}`), or None."""
    if isinstance(item, dict) and len(item) == 1:
        ((name, meta),) = item.items()
        if isinstance(meta, dict) and str(name).strip().lower() in BULK_ACTIONS:
            return BULK_ACTIONS[str(name).strip().lower()]
    return None


def ndjson_values(body: bytes) -> list[Any] | None:
    """The JSON values of a body written as lines of JSON (two or more, or one ended by
    a newline), or None when it is not so written."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    if (
        not lines
        or len(lines) > MAX_LINES
        or (len(lines) == 1 and not body.rstrip(b" \t\r").endswith(b"\n"))
    ):
        return None
    values = []
    for line in lines:
        try:
            values.append(json.loads(line))
        except (ValueError, RecursionError):
            continue
    return values or None


def unbounded_methods(body: bytes) -> set[str]:
    """Methods read from the bytes alone, for a body too large to walk."""
    found = {BULK_ACTIONS[m.group(1).decode().lower()] for m in _BULK_LINE.finditer(body)}
    for m in _OP_VALUE.finditer(body):
        op = m.group(1).decode().lower()
        found.add(RESOURCE_OPS.get(op, "PATCH"))
    return found


# -- GraphQL -------------------------------------------------------------------------------

_IGNORED = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*(?:"""|$)|"(?:[^"\\\n]|\\.)*"?|#[^\n\r]*', re.S)
_TOKEN = re.compile(r"[{}]|\$?[_A-Za-z][_0-9A-Za-z]*")


def graphql_mutation(document: str) -> bool:
    """Whether a GraphQL document may define a mutation: `mutation` at its top level
    (outside any selection set), in any case, opening a selection set after it, strings
    and comments set aside; a document too large to read counts as one."""
    if len(document) > MAX_GRAPHQL:
        return True
    text = _IGNORED.sub(" ", document)
    depth, mutation = 0, False
    for word in _TOKEN.findall(text):
        if word == "{":
            if depth == 0 and mutation:
                return True  # (a selection set of a mutation's)
            depth += 1
        elif word == "}":
            depth = max(depth - 1, 0)
        elif depth == 0 and word.lower() == "mutation":
            mutation = True
        elif depth == 0 and word.lower() in ("query", "subscription", "fragment"):
            mutation = False
    return False


def _persisted(value: Any) -> bool:
    """Whether an `extensions` value names a persisted query (Apollo's APQ, by its hash)."""
    if isinstance(value, str):
        if "persistedquery" not in value.lower():
            return False
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return True
    return isinstance(value, dict) and any(str(k).lower() == "persistedquery" for k in value)


def _query_methods(fields: dict[Any, Any]) -> set[str]:
    """POST when a request's GraphQL parameters (a query string's, or one operation of a
    JSON body or batch) carry a mutation, or a persisted query the proxy cannot read."""
    named = {str(k).lower(): v for k, v in fields.items()}
    texts = named.get("query")
    texts = [texts] if isinstance(texts, str) else texts if isinstance(texts, list) else []
    if any(isinstance(t, str) and graphql_mutation(t) for t in texts):
        return {"POST"}
    if not any(isinstance(t, str) and t.strip() for t in texts):
        extensions = named.get("extensions")
        given = extensions if isinstance(extensions, list) else [extensions]
        if any(_persisted(e) for e in given) or not PERSISTED_NAMES.isdisjoint(named):
            return {"POST"}
    return set()


def graphql_methods(query: dict[str, Any], seen: Any, body: bytes, media: str) -> set[str]:
    """The methods the GraphQL operations a request carries stand for: POST for a
    mutation (or a persisted query sent by its hash) in the target's query, in a JSON or
    form body's `query` (one operation, or a batch of them), or in a body typed
    `application/graphql`."""
    found = _query_methods(query)
    if seen is None and body.lstrip()[:1] in (b"{", b"["):
        try:  # (a body the policy is not shown whole: past its bound)
            seen = json.loads(body)
        except (ValueError, RecursionError):
            seen = None
    if media == "application/graphql" and graphql_mutation(body.decode("utf-8", "replace")):
        found.add("POST")
    if media == "multipart/form-data" and _MULTIPART_OPERATIONS.search(body):
        found.add("POST")
    operations = seen if isinstance(seen, list) else [seen]
    for operation in operations:
        if isinstance(operation, dict):
            found |= _query_methods(operation)
    return found
