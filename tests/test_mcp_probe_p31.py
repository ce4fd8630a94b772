"""Probing the MCP proxy's masks (P31, helper webmask19): a value split across blobs.

Real PDP with the shipped policy, the proxy with `mcp: true` before a real MCPServer (the
`mcp` SDK), a reader outside pii-readers. Before the fix, a card number cut across the
bytes of two resources beside each other (a resources/read answering two contents, a
tool's result of two embedded resources: `card on file 4111 1111` in one blob, `1111
1111` in the next) came through whole to whoever decoded them in order: each blob was
decoded and masked alone (mcp._masked_blob), and only text items were read together as
lines (mcp._split_items). A blob that is UTF-8 text is read with its neighbours now too,
and masked into its bytes (mcp._item_text, _with_text).

So did one a tool logged in halves as JSON data (`ctx.info({"line": "card 4111 1111"})`,
then `{"line": "1111 1111"}`: a client shows the JSON): only log data that was text was
held and read with the next line. The strings of JSON data are held and read so too
(mcp_pieces.shown_texts). HELD_SECONDS is raised so that a slow machine cannot release
the first half before the second comes (the bound is not what is tested).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import BlobResourceContents, EmbeddedResource
from test_mcp_probe_p30 import invoices_logged
from test_mcp_proxy import agent, mcp_stack, text_of

from proxies.http import mcp_pieces

pytestmark = pytest.mark.integration

HALVES = (b"card on file 4111 1111", b"1111 1111 thanks")


class TwoBlobs(MCPServer):
    """A server whose every resource reads as two contents, the card cut between them."""

    async def read_resource(self, uri: Any, context: Any = None) -> Iterable[ReadResourceContents]:
        return [
            ReadResourceContents(content=half, mime_type="application/octet-stream")
            for half in HALVES
        ]


def blob_server(up: Any) -> MCPServer:
    served = TwoBlobs("billing")

    @served.resource("invoice://{number}")
    def invoice(number: str) -> bytes:
        up.calls.append(f"invoice {number}")
        return HALVES[0]

    @served.tool()
    def get_invoice(invoice_id: int) -> list[EmbeddedResource]:
        up.calls.append("get_invoice")
        return [
            EmbeddedResource(
                type="resource",
                resource=BlobResourceContents(
                    uri=f"invoice://{invoice_id}/{n}",
                    mime_type="application/octet-stream",
                    blob=base64.b64encode(half).decode(),
                ),
            )
            for n, half in enumerate(HALVES)
        ]

    @served.tool()
    async def list_invoices(customer: str, ctx: Context) -> str:
        up.calls.append("list_invoices")
        await ctx.info({"line": "card on file 4111 1111", "level": 3})
        await ctx.info({"line": "1111 1111", "level": 3})
        await ctx.info({"line": "invoices: 12", "level": 3})
        return f"3 invoices of {customer}"

    return served


@pytest.fixture
def blobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", blob_server)
    monkeypatch.setattr(mcp_pieces, "HELD_SECONDS", 60.0)


def _decoded(blobs: list[Any]) -> str:
    return "".join(base64.b64decode(b).decode() for b in blobs)


async def test_a_card_split_across_blobs_is_masked(tmp_path: Path, blobs: None) -> None:
    async with (
        mcp_stack(tmp_path) as stack,
        agent(stack, stack.token("mallory@example.com")) as client,
    ):
        read = await client.read_resource("invoice://7")
        called = await client.call_tool("get_invoice", {"invoice_id": 7})
    assert not called.is_error, called
    read_blobs = [getattr(c, "blob", None) for c in read.contents]
    tool_blobs = [getattr(getattr(c, "resource", None), "blob", None) for c in called.content]
    for blobs_shown in (read_blobs, tool_blobs):
        assert len(blobs_shown) == 2 and all(blobs_shown), blobs_shown
        shown = "".join(c for c in _decoded(blobs_shown) if c.isdigit())
        assert "4111" not in shown and "11111111" not in shown, _decoded(blobs_shown)
        assert _decoded(blobs_shown).startswith("card on file"), _decoded(blobs_shown)


async def test_a_card_logged_in_halves_as_json_is_masked(tmp_path: Path, blobs: None) -> None:
    result, logged = await invoices_logged(tmp_path)
    assert text_of(result) == "3 invoices of Ann"
    assert len(logged) == 3 and all(isinstance(line, dict) for line in logged), logged
    shown = "".join(c for line in logged for c in line["line"] if c.isdigit())
    assert "4111" not in shown and "11111111" not in shown, logged
    assert logged[2] == {"line": "invoices: 12", "level": 3}
