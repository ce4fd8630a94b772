"""A tool that answers what a test gives it, asked by a reader through the MCP proxy: the
shared stage of the MCP mask probes (p18-p20) that try rows a tool returns unnamed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from test_mcp_proxy import agent, mcp_stack

from portcullis.masking import Masker, MaskRule
from proxies.http import mcp


def answering(
    shapes: Mapping[str, Any], *more_tools: Callable[..., Any]
) -> Callable[[Any], MCPServer]:
    """An MCP server factory (test_mcp_proxy.mcp_server's shape) whose `find_customer`
    returns shapes[name] as it is; `more_tools` are served beside it (their annotations
    are their schemas)."""

    def server(up: Any) -> MCPServer:
        served = MCPServer("billing")

        @served.tool()
        def find_customer(name: str) -> Any:
            up.calls.append(name)
            return shapes[name]

        for tool in more_tools:
            served.tool()(tool)
        return served

    return server


def shown(result: Any) -> str:
    """Everything of a tool result a client sees: its content items and structured content."""
    return repr([c.model_dump() for c in result.content]) + repr(result.structured_content)


async def readers_results(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: Callable[[Any], MCPServer],
    names: Any,
    also: Callable[[Any], Awaitable[Any]] | None = None,
) -> tuple[dict[str, Any], Any]:
    """A reader outside pii-readers calls find_customer once per name through the proxy
    (real PDP, shipped policy) before `server`; `also(client)` runs after, in the same
    session. Returns the results by name and what `also` returned."""
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            results = {
                name: await client.call_tool("find_customer", {"name": name}) for name in names
            }
            more = await also(client) if also is not None else None
    return results, more


PHONE_PASSWORD = Masker([MaskRule(field="phone"), MaskRule(field="password")], b"k" * 32)


def masked_text(text: str, masker: Masker = PHONE_PASSWORD) -> str:
    """A tool's text content as the MCP exchange masks it (no stack: the sans-IO step)."""
    value = {"content": [{"type": "text", "text": text}]}
    return mcp._mask_tree(value, masker, Counter())["content"][0]["text"]
