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
answered through the same proxy (mcp_held_masking.answered_while_held); the large
result then comes, masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp_held_masking import answered_while_held, serving

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
    serving(monkeypatch, listing_server)


@pytest.mark.parametrize("json_response", [True, False])
async def test_other_calls_are_answered_while_a_large_result_is_masked(
    tmp_path: Path, listing: None, monkeypatch: pytest.MonkeyPatch, json_response: bool
) -> None:
    result = await answered_while_held(
        tmp_path,
        monkeypatch,
        json_response,
        "_mask_tree",
        # (the listing's result alone)
        lambda value: isinstance(value, dict) and "structuredContent" in value,
        lambda big: big.call_tool("list_invoices", {"customer": "all"}),
    )
    assert result.structured_content is not None
    rows = result.structured_content["rows"]
    assert len(rows) == len(ROWS) and {r["phone"] for r in rows} == {"[REDACTED]"}
