"""A harness for the MCP proxy's tests that a large mask is worked off the event loop.

One reader asks for something large (a tool's result, a tool list) whose masking the
test holds, in the proxy's own masking function, until another reader's call through
the same proxy has been answered: on the loop, the hold would stall that call, and it
gives up after a minute. Used by test_mcp_probe_p27.py (a tool's result) and
test_mcp_probe_p29.py (a tool list); their servers are the tests' own
(`serving`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from test_mcp_proxy import agent, mcp_stack

from proxies.http import mcp as proxy_mcp

T = TypeVar("T")
HOLD_SECONDS = 60  # (how long a hold waits for the other call: a bound, not a timing)
OTHER_INVOICE = 1


def serving(monkeypatch: pytest.MonkeyPatch, server: Callable[[Any], MCPServer]) -> None:
    """test_mcp_proxy's stacks run `server` (given their Upstream) as the MCP server."""
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", server)


async def answered_while_held(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    json_response: bool,
    masking: str,
    held: Callable[[Any], bool],
    large: Callable[[Any], Awaitable[T]],
) -> T:
    """What `large` (given mallory's client) answers, when the proxy's masking function
    `masking` (of proxies.http.mcp, called as (value, masker, counts)) is held, the first
    time it is given a value `held` picks, until rita's get_invoice call has been
    answered; asserts that it was answered meanwhile, and what it answered."""
    entered, served = threading.Event(), threading.Event()
    seen: list[bool] = []
    mask = getattr(proxy_mcp, masking)

    def holding(value: Any, masker: Any, counts: Any) -> Any:
        if not entered.is_set() and held(value):
            entered.set()
            # (the other reader's call is answered meanwhile, or this gives up)
            seen.append(served.wait(HOLD_SECONDS))
        return mask(value, masker, counts)

    monkeypatch.setattr(proxy_mcp, masking, holding)
    async with (
        mcp_stack(tmp_path, json_response=json_response) as stack,
        agent(stack, stack.token("mallory@example.com")) as big,
        agent(stack, stack.token("rita@example.com")) as other,
    ):
        asked = asyncio.ensure_future(large(big))
        assert await asyncio.to_thread(entered.wait, 2 * HOLD_SECONDS)
        small = await other.call_tool("get_invoice", {"invoice_id": OTHER_INVOICE})
        served.set()
        got = await asked
    assert seen == [True]
    assert getattr(small.content[0], "text", "").startswith(f"invoice {OTHER_INVOICE}")
    return got
