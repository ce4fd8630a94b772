"""Probing the MCP exchange's resumption (P35, helper webmask22): a stream replayed from an
event this client was handed, holding another identity's messages.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP) keeping its events as many servers do (P3's
CountingEventStore: one list, streams keyed by the ids the SDK gives them — a POST's
stream by the JSON-RPC id of its request, the GET's `_GET_stream` — which every
session's client numbers alike). P3 made a Last-Event-ID resume only an event this
session was handed. Before this fix that was enough to read another identity's session:
mallory calls a tool as request 2 (its stream hands her event ids, then waits on her),
pia (a pii-reader) calls one as her request 2, and mallory resumes from her own event:
the server replayed the stream keyed `2`, pia's log line and elicitation and her tool's
result among it, the result taken for the answer to mallory's request 2 (masked by her
masks: "3 invoices of Ann"). Now a Last-Event-ID is not sent upstream: the GET opens a
stream as at a server keeping no events (resumability is a server's MAY), nothing of
another session replayed; an id this session was not handed is still refused (P3).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest
from test_mcp_probe_p3 import SDK_INIT, CountingEventStore, _resume
from test_mcp_proxy import agent, mcp_stack, post, rpc


async def _first_events(stack: Any, tok: str, session_id: str, body: Any, count: int) -> str:
    """The first `count` events of a POST's stream (then the client goes, its request
    still in flight upstream)."""
    headers = {
        "Authorization": f"Bearer {tok}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
        "Mcp-Session-Id": session_id,
    }
    got = ""
    async with (
        httpx2.AsyncClient(timeout=10) as http,
        http.stream("POST", stack.url, content=json.dumps(body).encode(), headers=headers) as r,
    ):
        async for text in r.aiter_text():
            got += text
            if got.count("\n\n") >= count:
                break
    return got


@pytest.mark.integration
async def test_a_resumed_stream_replays_nothing_of_another_session(tmp_path: Path) -> None:
    store = CountingEventStore()

    async def accept(context: Any, params: Any) -> Any:
        return mcp_types.ElicitResult(action="accept", content={"go": True})

    async with mcp_stack(tmp_path, event_store=store) as stack:
        mallory = stack.token("mallory@example.com", "readonly")
        status, headers, _ = await post(stack, mallory, rpc(1, "initialize", SDK_INIT))
        session_id = headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await post(stack, mallory, initialized, session_id)
        call = rpc(2, "tools/call", {"name": "list_invoices", "arguments": {"customer": "Zed"}})
        text = await asyncio.wait_for(_first_events(stack, mallory, session_id, call, 2), 30)
        mine = re.findall(r"^id: ?(\S+)", text, re.M)
        pia = stack.token("pia@example.com", "readonly", "pii-readers")
        async with agent(stack, pia, elicitation_callback=accept) as client:
            await client.call_tool("list_invoices", {"customer": "Ann"})
        # (pia's call's events are kept under the stream of mallory's: the same id)
        assert {s for _, s, m in store.events if "Ann" in str(m)} == {"2"}
        resumed_status, resumed = await _resume(stack, mallory, session_id, mine[0])
        unknown_status, _ = await _resume(stack, mallory, session_id, "9999")
    assert status == 200 and mine, text
    assert resumed_status == 200, resumed
    assert "Ann" not in resumed and "invoices" not in resumed, resumed[:600]
    assert unknown_status == 400
