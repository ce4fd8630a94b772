"""Probing the MCP exchange (P29, helper webmask17): a large tool list masked on the event
loop every session shares.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP) whose tools carry long descriptions and
schemas, for readers outside pii-readers. Before the fix:

- a masked session's tools/list answer (its schemas' values under the field rules, then
  all of it under the detectors) was masked on the proxy's event loop, in one call, where
  a tool's result was masked in a thread (test_mcp_probe_p27.py): a server listing
  megabytes of tools held every other request of every session through that proxy while
  a reader listed them again and again. A tool list that came in an answer or an event
  longer than 64 KiB is masked in a thread now (mcp.Forward._tools_masked).

The test holds the masking of a large tool list until another reader's call has been
answered through the same proxy (mcp_held_masking.answered_while_held); the list then
comes, masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp_held_masking import answered_while_held, serving

pytestmark = pytest.mark.integration

# (a manual of a tool, as servers write them for a model: long, a contact in it)
MANUAL = "Finds a customer by name; ask ann@example.com for access. " * 3000


def describing_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.tool(description=MANUAL)
    def find_customer(name: str) -> dict[str, Any]:
        up.calls.append("find_customer")
        return {"name": name}

    @served.tool()
    def get_invoice(invoice_id: int) -> str:
        up.calls.append("get_invoice")
        return f"invoice {invoice_id}: 120 EUR, paid"

    return served


@pytest.fixture
def describing(monkeypatch: pytest.MonkeyPatch) -> None:
    serving(monkeypatch, describing_server)


def _large_list(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and "tools" in value
        and any(t.get("name") == "find_customer" for t in value["tools"])
    )


@pytest.mark.parametrize("json_response", [True, False])
async def test_other_calls_are_answered_while_a_large_tool_list_is_masked(
    tmp_path: Path, describing: None, monkeypatch: pytest.MonkeyPatch, json_response: bool
) -> None:
    listed = await answered_while_held(
        tmp_path,
        monkeypatch,
        json_response,
        "_schema_values",
        _large_list,
        lambda big: big.list_tools(),
    )
    [found] = [t for t in listed.tools if t.name == "find_customer"]
    assert found.description is not None and len(found.description) > len(MANUAL) // 2
    assert "ann@example.com" not in found.description
