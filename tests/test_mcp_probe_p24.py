"""Probing the MCP exchange's approvals (P24, helper webmask14): a write tool made to look
ended while it runs, so that its question is answered past the approval.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), raw JSON-RPC over HTTP for a client (P22's).
A client's answer to a server's question is decided with the tools the session's calls
in flight run (`during`): while the approved `refund_order` runs, the answer naming the
amount needs its own approval. The proxy keeps what is in flight per session up to
MAX_PENDING requests and forgot the oldest past it; and a request whose client dropped
its stream stays in flight for good (the server still runs it). Before the fix, a reader
started the approved refund (its tool looks the order up before it asks), then left
MAX_PENDING read calls unanswered (each posted, its stream dropped): the refund's call
was forgotten, its question then came `during` nothing but those reads, and the answer
(900) went upstream without approval. And a session read by nothing (a pii-reader's:
no mask, so a request id still in flight may be sent again) sent a read call with the
refund's id: it took the refund's place in the list, with the same outcome. A call
forgotten before its answer came (pushed out, or its id taken) now counts as running for
the rest of the session (McpSession.running), and so does one whose stream the proxy
gave up reading (McpSession.abandoned).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
import test_mcp_proxy
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel
from test_mcp_probe_p22 import REFUND, _approved, _headers, _session
from test_mcp_proxy import mcp_stack, messages_of, post, rpc

from proxies.http import mcp_sessions
from proxies.http.mcp_codec import APPROVAL_REQUIRED
from proxies.http.mcp_sessions import McpSession

FLOOD = 6  # (MAX_PENDING for the test: the shipped 256 is the same, only slower)


class Amount(BaseModel):
    amount: int


def looking_up_server(gate: asyncio.Event) -> Any:
    def build(up: Any) -> MCPServer:
        served = MCPServer("billing")

        @served.tool()
        async def refund_order(order_id: int, ctx: Context) -> str:
            up.calls.append(f"looking up {order_id}")
            await gate.wait()  # (the order looked up: a database, another API)
            answer = await ctx.elicit(f"how much to refund on order {order_id}?", Amount)
            amount = answer.data.amount if answer.action == "accept" else 0
            up.calls.append(f"refund {amount}")
            return f"refunded {amount} on order {order_id}"

        @served.tool()
        async def get_invoice(invoice_id: int, ctx: Context) -> str:
            up.calls.append(f"invoice {invoice_id}")
            await ctx.elicit("which currency?", Amount)
            return f"invoice {invoice_id}"

        return served

    return build


async def _dropped_call(stack: Any, tok: str, session_id: str, n: int) -> None:
    """A read tool called, its stream dropped once the tool runs (its answer never read)."""
    call = {"name": "get_invoice", "arguments": {"invoice_id": n}}
    async with httpx2.AsyncClient(timeout=30) as http:
        body = json.dumps(rpc(100 + n, "tools/call", call)).encode()
        async with http.stream(
            "POST", stack.url, content=body, headers=_headers(tok, session_id)
        ) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    return  # (the tool's question: it runs; the stream is dropped)


@pytest.mark.integration
async def test_a_write_call_pushed_out_of_the_in_flight_list_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", looking_up_server(gate))
    monkeypatch.setattr(mcp_sessions, "MAX_PENDING", FLOOD)
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await _session(stack, alice)
        error = await _approved(stack, alice, session_id, REFUND)
        assert error["code"] == APPROVAL_REQUIRED
        async with httpx2.AsyncClient(timeout=30) as http:
            body = json.dumps(rpc(5, "tools/call", REFUND)).encode()
            async with http.stream(
                "POST", stack.url, content=body, headers=_headers(alice, session_id)
            ) as stream:
                while "looking up 11" not in stack.upstream.calls:
                    await asyncio.sleep(0.02)
                for n in range(FLOOD):
                    await _dropped_call(stack, alice, session_id, n)
                gate.set()
                asked = None
                lines = stream.aiter_lines()
                async for line in lines:
                    if line.startswith("data:") and "elicitation/create" in line:
                        asked = json.loads(line[5:])
                        break
                assert asked is not None
                accept = {"action": "accept", "content": {"amount": 900}}
                reply = {"jsonrpc": "2.0", "id": asked["id"], "result": accept}
                status, _, text = await post(stack, alice, reply, session_id)
                got = messages_of(text)
                if status >= 300:
                    await http.delete(stack.url, headers=_headers(alice, session_id))
    assert got and got[0]["error"]["code"] == APPROVAL_REQUIRED, (status, got)
    assert "refund 900" not in stack.upstream.calls


def test_calls_forgotten_or_abandoned_still_run() -> None:
    class Handling:
        def __init__(self, tool: str | None) -> None:
            self.tool = tool

    mcp = McpSession("owner")
    mcp.expect(1, Handling("refund_order"))
    mcp.expect(2, Handling(None))
    assert mcp.running() == ("refund_order",)
    for n in range(mcp_sessions.MAX_PENDING):
        mcp.expect(10 + n, Handling("get_invoice"))
    assert mcp.owed(1) is None  # (forgotten)
    assert mcp.running() == ("get_invoice", "refund_order")
    other = McpSession("owner")
    other.expect(1, Handling("delete_customer"))
    assert other.abandoned(1) is not None and other.owed(1) is None
    assert other.running() == ("delete_customer",)
    retried = McpSession("owner")
    retried.expect(5, Handling("refund_order"))
    retried.expect("5", Handling("get_invoice"))
    assert retried.running() == ("get_invoice", "refund_order")
    answered = McpSession("owner")
    answered.expect(1, Handling("refund_order"))
    answered.answered(1)
    assert answered.running() == ()


@pytest.mark.integration
async def test_a_write_calls_id_taken_by_a_read_call_does_not_end_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a pii-reader's session is read by nothing (no mask), so a request id still in flight
    # may be sent again: the read call took the refund's place in the in-flight list
    gate = asyncio.Event()
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", looking_up_server(gate))
    async with mcp_stack(tmp_path) as stack:
        pat = stack.token("pat@example.com", "readonly", "pii-readers")
        session_id = await _session(stack, pat)
        await _approved(stack, pat, session_id, REFUND)
        async with httpx2.AsyncClient(timeout=30) as http:
            body = json.dumps(rpc(5, "tools/call", REFUND)).encode()
            async with http.stream(
                "POST", stack.url, content=body, headers=_headers(pat, session_id)
            ) as stream:
                while "looking up 11" not in stack.upstream.calls:
                    await asyncio.sleep(0.02)
                read = {"name": "get_invoice", "arguments": {"invoice_id": 7}}
                again = json.dumps(rpc(5, "tools/call", read)).encode()
                async with http.stream(
                    "POST", stack.url, content=again, headers=_headers(pat, session_id)
                ) as other:
                    streams = [stream.aiter_lines(), other.aiter_lines()]
                    while not any(c.startswith("invoice") for c in stack.upstream.calls):
                        await asyncio.sleep(0.02)
                    gate.set()
                    asked = None
                    while asked is None:
                        for lines in streams:
                            try:
                                line = await asyncio.wait_for(lines.__anext__(), 0.5)
                            except (TimeoutError, StopAsyncIteration):
                                continue
                            if line.startswith("data:") and "how much" in line:
                                asked = json.loads(line[5:])
                    accept = {"action": "accept", "content": {"amount": 900}}
                    reply = {"jsonrpc": "2.0", "id": asked["id"], "result": accept}
                    status, _, text = await post(stack, pat, reply, session_id)
                    got = messages_of(text)
                    if status >= 300:
                        await http.delete(stack.url, headers=_headers(pat, session_id))
    assert got and got[0]["error"]["code"] == APPROVAL_REQUIRED, (status, got)
    assert "refund 900" not in stack.upstream.calls
