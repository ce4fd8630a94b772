"""Probing the HTTP proxy's methods (brief P22, helper webattack9): writes a request
carries inside its body or query, which its method does not tell.

Real PDP with the shipped policy, the HTTP proxy, the aiohttp upstream of
http_upstream.py (its `/echo` records what reaches it); a real client (aiohttp) holding
a reader's token. Before the fix:

- a GraphQL mutation sent as a GET (`?query=mutation{...}`, or a GET's JSON body, or one
  of a batch) was a read, and went upstream at once; so did a persisted query sent by
  its hash alone (`extensions={"persistedQuery": ...}`), which may stand for one;
- Elasticsearch's `_bulk` (NDJSON action lines) deleting documents, and JSON:API's
  Atomic Operations removing resources, were a reader's POST: approvable as any POST,
  though the policy reserves deletes to the privileged groups.

Each operation is now a method of the request (proxies/http/carried.py, as
messages.embedded_methods reads a batch's requests): a mutation a POST, a bulk's
`delete` and an operation's `remove` a DELETE.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from http_upstream import http_stack
from test_http_probe_p5 import bearer

from proxies.http import carried, messages

TIMEOUT = aiohttp.ClientTimeout(total=60)
MUTATION = "mutation { deleteCustomer(id: 7) { id } }"


def _get(query: str) -> tuple[str, str, bytes, dict[str, str]]:
    return ("GET", "/echo/graphql?" + query, b"", {})


def _json(method: str, path: str, doc: Any) -> tuple[str, str, bytes, dict[str, str]]:
    return (method, path, json.dumps(doc).encode(), {"Content-Type": "application/json"})


BULK_DELETE = (
    b'{"index": {"_index": "customers", "_id": "8"}}\n{"name": "x"}\n'
    b'{"delete": {"_index": "customers", "_id": "7"}}\n'
)
ATOMIC_REMOVE = {
    "atomic:operations": [{"op": "remove", "ref": {"type": "customers", "id": "7"}}],
}

# a reader's request that ran at once (200) but carries a write: needs approval now
READS_THAT_WRITE = {
    "mutation in the query": _get("query=" + quote(MUTATION)),
    "named mutation after a comment": _get(
        "query=" + quote('# "read"\n  Mutation Drop($id: ID) { deleteCustomer(id: $id) }')
    ),
    "mutation after a query": _get("query=" + quote("query A { a } mutation B { b }")),
    "mutation in a GET's body": _json("GET", "/echo/graphql", {"query": MUTATION}),
    "mutation in a batch": _json(
        "GET", "/echo/graphql", [{"query": "{ customers { id } }"}, {"query": MUTATION}]
    ),
    "persisted query by hash": _get(
        "extensions=" + quote(json.dumps({"persistedQuery": {"version": 1, "sha256Hash": "ab"}}))
    ),
    "application/graphql": (
        "GET",
        "/echo/graphql",
        MUTATION.encode(),
        {"Content-Type": "application/graphql"},
    ),
}

# a reader's POST that was approvable as any POST, but deletes: refused now
POSTS_THAT_DELETE = {
    # (typed application/x-ndjson or json it is refused as a JSON body that is not one)
    "bulk delete as text": ("POST", "/echo/_bulk", BULK_DELETE, {"Content-Type": "text/plain"}),
    "bulk delete untyped": ("POST", "/echo/_bulk", BULK_DELETE, {}),
    "atomic remove": (
        "POST",
        "/echo/operations",
        json.dumps(ATOMIC_REMOVE).encode(),
        {"Content-Type": 'application/vnd.api+json; ext="https://jsonapi.org/ext/atomic"'},
    ),
    "json:api remove by href": _json("POST", "/echo/ops", [{"op": "Remove", "href": "/c/7"}]),
}

# reads that stay reads, POSTs that stay approvable
UNCHANGED = {
    "a graphql query": (_get("query=" + quote("{ customers { id mutation } }")), 200),
    "a query with a string": (_get("query=" + quote('{ c(q: "mutation { x }") { id } }')), 200),
    "a search for the word": (("GET", "/echo/search?query=mutation", b"", {}), 200),
    "msearch header lines": (
        (
            "POST",
            "/echo/_msearch",
            b'{"index": "customers"}\n{"query": {"match_all": {}}}\n',
            {"Content-Type": "text/plain"},
        ),
        202,
    ),
    "bulk index": (
        (
            "POST",
            "/echo/_bulk",
            b'{"index": {"_index": "c"}}\n{"name": "x"}\n',
            {"Content-Type": "text/plain"},
        ),
        202,
    ),
}


async def _statuses(tmp_path: Any, cases: dict[str, Any]) -> tuple[dict[str, int], int]:
    async with (
        http_stack(tmp_path) as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = {}
        for name, (method, path, body, headers) in cases.items():
            sent = {**bearer(s), **headers}
            async with client.request(method, s.url + path, data=body, headers=sent) as r:
                got[name] = r.status
        return got, len(s.upstream.seen)


@pytest.mark.integration
async def test_a_write_carried_in_a_read_needs_approval(tmp_path: Any) -> None:
    got, reached = await _statuses(tmp_path, READS_THAT_WRITE)
    assert got == dict.fromkeys(READS_THAT_WRITE, 202)
    assert reached == 0


@pytest.mark.integration
async def test_a_delete_carried_in_a_post_is_refused(tmp_path: Any) -> None:
    got, reached = await _statuses(tmp_path, POSTS_THAT_DELETE)
    assert got == dict.fromkeys(POSTS_THAT_DELETE, 403)
    assert reached == 0


@pytest.mark.integration
async def test_reads_and_writes_without_one_are_judged_as_before(tmp_path: Any) -> None:
    got, _ = await _statuses(tmp_path, {k: v[0] for k, v in UNCHANGED.items()})
    assert got == {k: v[1] for k, v in UNCHANGED.items()}


def test_operations_read_as_methods() -> None:
    def methods(body: bytes) -> list[str]:
        return messages.embedded_methods(body, None)

    assert methods(BULK_DELETE) == ["DELETE", "PUT"]
    assert methods(b'{"update": {"_id": "1"}}\n{"doc": {"a": 1}}\n') == ["POST"]
    assert methods(b'{"delete": {"_id": "1"}}\n') == ["DELETE"]
    assert methods(b'{"index": "logs"}\n{"query": {}}\n') == []
    seen = [{"op": "remove", "path": "/tags/0"}, {"op": "test", "path": "/a", "value": 1}]
    assert messages.embedded_methods(json.dumps(seen).encode(), seen) == ["PATCH"]
    ops = {"atomic:operations": [{"op": "add", "data": {}}, {"op": "update", "data": {}}]}
    assert messages.embedded_methods(json.dumps(ops).encode(), ops) == ["PATCH", "POST"]
    # past the walk's bound: read by the bytes
    many = b"".join(b'{"index": {}}\n{"a": %d}\n' % n for n in range(6000)) + BULK_DELETE
    assert "DELETE" in methods(many)


def test_graphql_mutations_are_found() -> None:
    assert carried.graphql_mutation(MUTATION)
    assert carried.graphql_mutation('"""a { """ mutation { x }')
    assert carried.graphql_mutation("fragment F on Q { a } MUTATION { x }")
    assert not carried.graphql_mutation("{ mutation }")
    assert not carried.graphql_mutation('query { a(s: "mutation {") }')
    assert not carried.graphql_mutation("# mutation { x }\n{ a }")
    assert not carried.graphql_mutation("subscription { a }")
