"""Probing the MCP exchange's masks (P25, helper webmask15): a tool's table with an empty
list beside it, and what a server puts in a header of its answer.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client for a reader outside
pii-readers. Before the fixes:

- a tool whose structured result holds a table and an empty list beside it (`{"columns":
  [...], "rows": [...], "next": []}`, a page of rows and an empty cursor list, what any
  listing tool answers once the list runs out) broke the call: reading the empty list
  as rows raised an IndexError, the answer's stream ended unanswered and the SDK's
  client failed the call. An empty list is no row (bodies.BodyMask._rows_masked): the
  rows are masked, the call answers.

- an answer the proxy read and masked went with the headers that describe the server's
  bytes (its `ETag`, a `Content-MD5`, `Digest`, `X-Checksum-Sha256`, added by a server
  or a gateway before it): the digest of the unmasked answer (the reader knows all of it
  but what the mask hid, and picks the request id) tells which guess of the masked phone
  number is right. What is read is written anew: those headers no longer describe it
  and are dropped (messages.undescribed_headers), JSON answers and event streams alike.

- a resource's `blob` of text in EBCDIC (an XML or CSV file a mainframe wrote) went as
  it came: bytes that are no UTF-8 were read as Latin-1 only, where the e-mail and card
  in it are unreadable. They are read as EBCDIC too (mcp._masked_blob): such a blob is
  withheld.

(Held already, pinned here: EBCDIC CSV or labelled text in a blob, which its Latin-1
reading happened to withhold; the same table without the empty list, a tool's text and
structured content that disagree, each masked.)
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest
import test_mcp_proxy
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from test_mcp_proxy import agent, mcp_stack

from portcullis.masking import DETECTORS, Masker
from portcullis.verdict import MaskRule
from proxies.http.mcp import _mask_tree

# (three rows of two columns: a square table may be read column by column as well)
ROWS = {
    "columns": ["name", "phone"],
    "rows": [["Ann", "5550100"], ["Bob", "5550101"], ["Cy", "5550102"]],
}
PAGES = {
    "ended": {**ROWS, "next": []},
    "pairs": {"rows": [{"key": "phone", "value": "5550100"}], "tags": []},
    "whole": ROWS,
}


def table_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.tool()
    def find_customer(name: str) -> dict[str, Any]:
        up.calls.append(f"find_customer {name}")
        return PAGES[name]

    @served.tool()
    def get_invoice(invoice_id: int) -> dict[str, Any]:
        # (text and structured content that say other things: each masked)
        up.calls.append("get_invoice")
        return {"note": "paid", "phone": "5550100", "email": "ann@example.com"}

    return served


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", table_server)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_table_beside_an_empty_list_is_answered_masked(
    tmp_path: Path, tables: None, mode: str
) -> None:
    async with mcp_stack(tmp_path) as stack, agent(stack, stack.token(), mode) as client:
        for name in PAGES:
            result = await client.call_tool("find_customer", {"name": name})
            assert not result.is_error, (name, result)
            shown = json.dumps(result.structured_content) + json.dumps(
                [c.model_dump() for c in result.content]
            )
            assert "5550100" not in shown and "5550101" not in shown, (name, shown)
            assert "[REDACTED]" in shown, (name, shown)
            if "columns" in PAGES[name]:
                assert result.structured_content is not None
                assert [r[0] for r in result.structured_content["rows"]] == ["Ann", "Bob", "Cy"]
        result = await client.call_tool("get_invoice", {"invoice_id": 7})
        shown = json.dumps(result.structured_content) + json.dumps(
            [c.model_dump() for c in result.content]
        )
        assert "5550100" not in shown and "ann@example.com" not in shown, shown


DIGEST_HEADERS = {
    "etag": '"5f3c9a"',
    "content-md5": "Q2hlY2sgSW50ZWdyaXR5IQ==",
    "digest": "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
    "x-checksum-sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "x-amz-meta-md5chksum": "XUFAKrxLKna5cZ2REBfFkg==",
}


class DigestedServer:
    """find_customer's server (table_server), each HTTP answer of it given the headers a
    gateway before it adds (DIGEST_HEADERS)."""

    def __init__(self, up: Any) -> None:
        self.served = table_server(up)

    def streamable_http_app(self, **options: Any) -> Any:
        app = self.served.streamable_http_app(**options)
        added = [(k.encode(), v.encode()) for k, v in DIGEST_HEADERS.items()]

        async def digested(scope: Any, receive: Any, send: Any) -> None:
            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), *added]}
                await send(message)

            await app(scope, receive, sending if scope["type"] == "http" else send)

        return digested


@pytest.mark.integration
@pytest.mark.parametrize("json_response", [True, False])
async def test_a_digest_of_the_servers_answer_does_not_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_response: bool
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", DigestedServer)
    seen: list[dict[str, str]] = []

    async def noted(response: Any) -> None:
        seen.append(dict(response.headers))

    async with mcp_stack(tmp_path, json_response=json_response) as stack:
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {stack.token()}"},
            timeout=30,
            event_hooks={"response": [noted]},
        )
        transport = streamable_http_client(stack.url, http_client=http)
        async with http, Client(transport, mode="legacy", cache=None) as client:
            result = await client.call_tool("find_customer", {"name": "whole"})
    assert "5550100" not in json.dumps(result.structured_content)
    assert seen
    for headers in seen:
        for name, value in DIGEST_HEADERS.items():
            assert name not in headers and value not in headers.values(), (name, headers)


MASKER = Masker(
    [
        MaskRule(field="phone", strategy="redact"),
        *(MaskRule(detector=n, strategy="partial") for n in DETECTORS),
    ],
    b"k" * 32,
)
EBCDIC_FILES = {
    "xml": '<?xml version="1.0" encoding="cp037"?><c><mail>ann@example.com</mail></c>',
    "csv": "name,card\nAnn,4111 1111 1111 1111\n",
    "labelled": "name: Ann\nphone: 5550100\n",
}


@pytest.mark.parametrize("kind", sorted(EBCDIC_FILES))
def test_a_blob_of_ebcdic_text_is_withheld(kind: str) -> None:
    data = EBCDIC_FILES[kind].encode("cp037")
    resource = {"uri": "file:///export", "mimeType": "text/plain", "blob": ""}
    resource["blob"] = base64.b64encode(data).decode("ascii")
    counts: Counter[str] = Counter()
    out = _mask_tree({"contents": [resource]}, MASKER, counts)
    assert out["contents"][0]["blob"] == "" and counts["blob:withheld"] == 1, out


def test_a_binary_blob_still_goes() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    blob = base64.b64encode(png).decode("ascii")
    out = _mask_tree(
        {"content": [{"type": "image", "data": blob, "mimeType": "image/png"}]}, MASKER, Counter()
    )
    assert out["content"][0]["data"] == blob
