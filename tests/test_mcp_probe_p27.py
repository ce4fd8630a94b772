"""Probing the MCP exchange (P27, helper webmask16): a large tool result masked on the
event loop every session shares.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's clients for readers outside
pii-readers. Before the fix:

- a tool's result of megabytes (a listing of thousands of customers) was masked on the
  proxy's event loop, in one call: while it ran, no other request of any session through
  that proxy was read, decided or answered, and a reader calling such a tool again and
  again held the proxy for everyone (the HTTP proxy's JSON answers alike:
  test_http_probe_p35.py). A message that came in an answer or an event longer than
  64 KiB is masked in a thread now (mcp.Forward._masked_aside).

The test holds the masking of a large result until another reader's call has been
answered through the same proxy (bounded: on the loop, the hold would stall that call,
and it gives up after a minute); the large result then comes, masked.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from test_mcp_proxy import agent, mcp_stack

from proxies.http import mcp as proxy_mcp

pytestmark = pytest.mark.integration

ROWS = [{"id": n, "name": f"Customer {n}", "phone": f"555{n:04d}"} for n in range(3000)]


def listing_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.tool()
    def list_invoices(customer: str) -> dict[str, Any]:
        up.calls.append(f"list_invoices {customer}")
        return {"rows": ROWS}

    @served.tool()
    def get_invoice(invoice_id: int) -> str:
        up.calls.append("get_invoice")
        return f"invoice {invoice_id}: 120 EUR, paid"

    return served


@pytest.fixture
def listing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", listing_server)


@pytest.mark.parametrize("json_response", [True, False])
async def test_other_calls_are_answered_while_a_large_result_is_masked(
    tmp_path: Path, listing: None, monkeypatch: pytest.MonkeyPatch, json_response: bool
) -> None:
    entered, served = threading.Event(), threading.Event()
    seen: list[bool] = []
    mask_tree = proxy_mcp._mask_tree

    def held(value: Any, masker: Any, counts: Any) -> Any:
        # (the listing's result alone, once)
        if isinstance(value, dict) and "structuredContent" in value and not entered.is_set():
            entered.set()
            # (the other reader's call is answered meanwhile, or this gives up)
            seen.append(served.wait(60))
        return mask_tree(value, masker, counts)

    monkeypatch.setattr(proxy_mcp, "_mask_tree", held)
    async with (
        mcp_stack(tmp_path, json_response=json_response) as stack,
        agent(stack, stack.token("mallory@example.com")) as big,
        agent(stack, stack.token("rita@example.com")) as other,
    ):
        large = asyncio.ensure_future(big.call_tool("list_invoices", {"customer": "all"}))
        assert await asyncio.to_thread(entered.wait, 120)
        small = await other.call_tool("get_invoice", {"invoice_id": 1})
        served.set()
        result = await large
    assert seen == [True]
    assert getattr(small.content[0], "text", "").startswith("invoice 1")
    assert result.structured_content is not None
    rows = result.structured_content["rows"]
    assert len(rows) == len(ROWS) and {r["phone"] for r in rows} == {"[REDACTED]"}
