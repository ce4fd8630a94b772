"""Probing the MCP exchange's lookup oracle (P33, helper webmask22): a generic lookup's
argument naming the masked field it looks up by.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP) whose read tool `find_customer(field, value)`
finds a customer by whichever field it is told (a generic lookup, as many servers write
one), the SDK's client through the proxy, a reader outside pii-readers. Before the fix
`find_customer({"field": "phone", "value": "5550100"})` ran unasked: the policy read an
argument's name for a masked field's words (`{"phone": ...}`), and the text of one named
as a query (`filter`, `where`, `q`), but not the value of one naming the field a lookup
is by, so the match or none answered the masked phone one guess at a time, though the
phone that came back was masked. Over HTTP the same lookup (`?field=phone&value=555`)
needs approval: every query value is read. So did a filter handed as a JSON text in an
argument of another name (`list_invoices({"spec": "{\"phone\": \"5550100\"}"})`), whose
keys the tool reads as names. Now an argument named `field`, `column`, `by`, `key`,
`attribute` or `property` (mcp.rego's mcp_field_naming_words) is read as a query's is,
and the keys of a JSON document an argument's string holds as the call's own: the call
needs approval; a lookup by another field runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from test_mcp_proxy import agent, mcp_stack, text_of

from proxies.http.mcp_codec import APPROVAL_REQUIRED


def _lookup_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.tool()
    def find_customer(field: str, value: str) -> str:
        up.calls.append(f"{field}={value}")
        return "found" if (field, value) in (("phone", "5550100"), ("name", "Ann")) else "none"

    @served.tool()
    def list_invoices(spec: str) -> str:
        # (a filter handed as a JSON text, as tools written for a model often take one)
        asked = json.loads(spec)
        up.calls.append(",".join(sorted(asked)))
        return "found" if asked == {"phone": "5550100"} else "none"

    return served


@pytest.mark.integration
async def test_a_lookup_by_a_masked_field_named_in_an_argument_needs_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _lookup_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            by_name = await client.call_tool("find_customer", {"field": "name", "value": "Ann"})
            listed = await client.call_tool("list_invoices", {"spec": '{"customer": 7}'})
            refused = []
            for field in ("phone", "telephone", "email", "card_number"):
                with pytest.raises(MCPError) as error:
                    await client.call_tool("find_customer", {"field": field, "value": "5550100"})
                refused.append((error.value.code, error.value.message))
            with pytest.raises(MCPError) as error:
                await client.call_tool("list_invoices", {"spec": '{"phone": "5550100"}'})
            refused.append((error.value.code, error.value.message))
    assert text_of(by_name) == "found" and text_of(listed) == "none"
    assert all(code == APPROVAL_REQUIRED for code, _ in refused), refused
    assert "naming the masked field phone" in refused[0][1], refused
    assert stack.upstream.calls == ["name=Ann", "customer"]
