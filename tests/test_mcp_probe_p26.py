"""Probing the MCP exchange (P26, helper webmask16): a tool's arguments filtering on a
masked field.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client for a reader outside
pii-readers. Before the fix:

- a read tool called with an argument naming a masked field ran as any read:
  `find_customer({"phone": "555"})` answering how many customers' phone numbers begin
  with `555`, `{"email": "ann@example.com"}` whether Ann's address is that one. Each
  value that came back was masked, but the answer to the filter was not: a reader
  learnt Ann's masked phone number a digit at a time (ten calls a digit). The HTTP
  proxy's policy asks an approval for a query or body naming a masked field (a filter,
  order or search on it); the MCP policy now does the same for a tool's or a prompt's
  arguments whose names or texts name one (mcp.rego, http_words_fields): the call needs
  approval, and never reaches the server without it. Arguments naming no masked field
  run as before, and a pii-reader's call runs whatever it names.

- the same lookup as a resource: `invoice://customers/by-phone/555` (a template's
  `{prefix}` filled in) read as any resource under the listed prefix `invoice://`. A
  resource URI's path is read as an HTTP path is (http.rego's http_lookup_fields): a
  segment naming a masked field with a value after it needs approval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from test_mcp_proxy import agent, mcp_stack

pytestmark = pytest.mark.integration

PHONES = {"Ann": "5550100", "Bob": "5550199", "Cy": "6170042"}
EMAILS = {"Ann": "ann@example.com", "Bob": "bob@example.com", "Cy": "cy@example.com"}


def filter_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.tool()
    def find_customer(
        name: str = "", phone: str = "", email: str = "", where: str = ""
    ) -> dict[str, Any]:
        up.calls.append(json.dumps([name, phone, email, where]))
        prefix = where.partition("phone like '")[2].rstrip("%'") if where else ""
        found = [
            n
            for n in PHONES
            if (not name or n == name)
            and PHONES[n].startswith(phone)
            and (not email or EMAILS[n] == email)
            and PHONES[n].startswith(prefix)
        ]
        return {"matches": len(found), "names": found}

    @served.resource("invoice://customers/by-phone/{prefix}")
    def by_phone(prefix: str) -> str:
        up.calls.append(f"by-phone {prefix}")
        return json.dumps({"matches": sum(p.startswith(prefix) for p in PHONES.values())})

    @served.resource("invoice://{number}")
    def invoice(number: str) -> str:
        up.calls.append(f"invoice {number}")
        return json.dumps({"invoice": number, "phone": PHONES["Ann"]})

    return served


@pytest.fixture
def filters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", filter_server)


ORACLES = [
    {"name": "Ann", "phone": "555"},
    {"name": "Ann", "email": "ann@example.com"},
    {"name": "Ann", "where": "phone like '5550%'"},
]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_filter_on_a_masked_field_needs_approval(
    tmp_path: Path, filters: None, mode: str
) -> None:
    async with mcp_stack(tmp_path) as stack:
        async with agent(stack, stack.token("mallory@example.com"), mode) as client:
            for arguments in ORACLES:
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("find_customer", arguments)
                assert refused.value.code == -32011, (arguments, refused.value.message)
                assert "masked field" in refused.value.message, refused.value.message
            # (an argument naming no masked field runs, its answer masked as before)
            result = await client.call_tool("find_customer", {"name": "Ann"})
            assert not result.is_error and result.structured_content is not None
            assert result.structured_content["matches"] == 1
        assert stack.upstream.calls == [json.dumps(["Ann", "", "", ""])]
        # (a pii-reader is shown the values: its filters run)
        reader = stack.token("pat@example.com", "readonly", "pii-readers")
        async with agent(stack, reader, mode) as client:
            result = await client.call_tool("find_customer", ORACLES[0])
            assert result.structured_content == {"matches": 1, "names": ["Ann"]}


async def test_a_resource_looked_up_by_a_masked_field_needs_approval(
    tmp_path: Path, filters: None
) -> None:
    async with mcp_stack(tmp_path) as stack:
        async with agent(stack, stack.token("mallory@example.com")) as client:
            for prefix in ("555", "617"):
                with pytest.raises(MCPError) as refused:
                    await client.read_resource(f"invoice://customers/by-phone/{prefix}")
                assert refused.value.code == -32011, refused.value.message
            text = getattr((await client.read_resource("invoice://7")).contents[0], "text", "")
            assert "[REDACTED]" in text and PHONES["Ann"] not in text
        assert stack.upstream.calls == ["invoice 7"]
