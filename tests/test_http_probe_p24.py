"""Probing the HTTP proxy's methods (P24): GraphQL operations a reader's GET names without
showing them.

Real PDP with the shipped policy, the HTTP proxy, the aiohttp upstream of
http_upstream.py; a real client (aiohttp) holding a reader's token. Before the fix a
persisted query sent by its hash counted as the mutation it may be (P22), but one sent by
its id (Relay's and Facebook's `doc_id`, the GraphQL-over-HTTP draft's `documentId`,
`queryId`), or an operation chosen by `operationName` or given `variables` alone (a
server's stored documents answer it), was a read and went upstream at once: the
document the server ran was never shown to the policy. Each now counts as a POST (a
reader's needs approval); a GraphQL multipart upload's `operations` part too.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from http_upstream import http_stack
from test_http_probe_p5 import bearer

from proxies.http import carried

TIMEOUT = aiohttp.ClientTimeout(total=60)
VARIABLES = json.dumps({"id": 7})

# a reader's GET that ran at once (200) but names a document the proxy is not shown
UNSHOWN = {
    "doc_id": {"doc_id": "4816207361", "variables": VARIABLES},
    "documentId": {"documentId": "sha256:ab12"},
    "DocumentID in another case": {"DocumentID": "ab12"},
    "queryId": {"queryId": "DeleteCustomer:1"},
    "query_id": {"query_id": "9"},
    "operationName alone": {"operationName": "DeleteCustomer"},
    "variables alone": {"variables": VARIABLES},
    "an empty query beside an id": {"query": " ", "doc_id": "48"},
}

SHOWN = {
    "a query with its variables": {"query": "query C($id: ID) { c(id: $id) { id } }",
                                   "variables": VARIABLES, "operationName": "C"},
    "an ordinary search": {"q": "mutation", "id": "7"},
}  # fmt: skip


async def _statuses(tmp_path: Any, cases: dict[str, dict[str, str]]) -> tuple[dict[str, int], int]:
    async with http_stack(tmp_path) as s, aiohttp.ClientSession(timeout=TIMEOUT) as client:
        got = {}
        for name, query in cases.items():
            url = f"{s.url}/echo/graphql?{urlencode(query)}"
            async with client.get(url, headers=bearer(s)) as r:
                got[name] = r.status
        return got, len(s.upstream.seen)


@pytest.mark.integration
async def test_an_operation_the_proxy_is_not_shown_needs_approval(tmp_path: Any) -> None:
    got, reached = await _statuses(tmp_path, UNSHOWN)
    assert got == dict.fromkeys(UNSHOWN, 202)
    assert reached == 0


@pytest.mark.integration
async def test_a_query_shown_whole_is_a_read_as_before(tmp_path: Any) -> None:
    got, reached = await _statuses(tmp_path, SHOWN)
    assert got == dict.fromkeys(SHOWN, 200)
    assert reached == len(SHOWN)


def test_the_operations_read_as_methods() -> None:
    for query in UNSHOWN.values():
        assert carried.graphql_methods(query, None, b"", "") == {"POST"}, query
    for query in SHOWN.values():
        assert carried.graphql_methods(query, None, b"", "") == set(), query
    # in a JSON body, one operation or a batch
    body = [{"query": "{ a }"}, {"doc_id": "48", "variables": {}}]
    assert carried.graphql_methods({}, body, json.dumps(body).encode(), "application/json") == {
        "POST"
    }
    upload = (
        b'--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
        b'{"query": "mutation ($f: Upload!) { up(f: $f) }"}\r\n--b--\r\n'
    )
    assert carried.graphql_methods({}, None, upload, "multipart/form-data") == {"POST"}
    other = b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n--b--\r\n'
    assert carried.graphql_methods({}, None, other, "multipart/form-data") == set()
