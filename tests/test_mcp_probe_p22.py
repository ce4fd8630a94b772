"""Probing the MCP exchange's approvals (P22, helper mcpsec12): a write tool's question
to its user, answered past the approval.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP; test_mcp_proxy's stack), raw JSON-RPC over
HTTP for a client. `refund_order` is a write tool: a reader's call needs approval, and
the approval binds the call (its arguments, headers, endpoint). A tool may ask its user
for what it acts on while it runs (MCP Client → Elicitation: the SDK's `ctx.elicit`, the
request sent on the call's own event stream): here the amount. The client's answer went
upstream allowed whatever it said (the policy allowed every answer to elicitation/create,
sampling/createMessage, ...), so an approved refund of order 11 refunded what the reader
then typed: 900, where the approver saw no amount at all. (MCP 2026-07-28's own form of
the same question, the call retried with `inputResponses`, is another call the approval
does not cover.) An answer to a server's request made while a write tool of the session
runs is now decided with that tool named (`during`), and needs its own approval (with
`Prefer: wait` the answer waits for it, as a call does); a user's bare no (declined,
cancelled) and an answer during a read tool go as before.
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
from test_mcp_proxy import INIT, mcp_stack, messages_of, post, rpc

from pdp.domain.mcp_input import mcp_command
from proxies.http.mcp_codec import APPROVAL_REQUIRED

APPROVER = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
REFUND = {"name": "refund_order", "arguments": {"order_id": 11}}


class Amount(BaseModel):
    amount: int


def asking_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.tool()
    async def refund_order(order_id: int, ctx: Context) -> str:
        answer = await ctx.elicit(f"how much to refund on order {order_id}?", Amount)
        amount = answer.data.amount if answer.action == "accept" else 0
        up.calls.append(f"refund {amount}")
        return f"refunded {amount} on order {order_id}"

    @served.tool()
    def create_invoice(customer: str) -> str:
        up.calls.append("create_invoice")
        return f"invoice for {customer}"

    @served.tool()
    async def get_invoice(invoice_id: int, ctx: Context) -> str:
        answer = await ctx.elicit("which currency?", Amount)
        up.calls.append(f"invoice {answer.action}")
        return f"invoice {invoice_id}"

    return served


def _headers(tok: str, session_id: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {tok}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
        "Mcp-Session-Id": session_id,
    }


async def _answer_while_it_runs(
    stack: Any,
    tok: str,
    session_id: str,
    call: dict[str, Any],
    answer: dict[str, Any],
    extra: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Call the tool on an event stream, answer its elicitation with `answer` (`extra`:
    more headers); returns the messages the answer got and those the call's stream
    carried after it (none when the answer was refused: the session is then ended, which
    ends the tool)."""
    async with httpx2.AsyncClient(timeout=30) as http:
        body = json.dumps(rpc(5, "tools/call", call)).encode()
        async with http.stream(
            "POST", stack.url, content=body, headers=_headers(tok, session_id)
        ) as stream:
            lines = stream.aiter_lines()
            asked = None
            async for line in lines:
                if line.startswith("data:") and "elicitation/create" in line:
                    asked = json.loads(line[5:])
                    break
            assert asked is not None
            reply = {"jsonrpc": "2.0", "id": asked["id"], "result": answer}
            status, _, text = await post(stack, tok, reply, session_id, extra)
            got = messages_of(text)
            if status >= 300:
                await http.delete(stack.url, headers=_headers(tok, session_id))
                return got, []
            rest = []
            async for line in lines:
                if line.startswith("data:"):
                    rest.append(json.loads(line[5:]))
                    break
            return got, rest


async def _session(stack: Any, tok: str) -> str:
    init = {**INIT, "capabilities": {"elicitation": {}}}
    status, headers, _ = await post(stack, tok, rpc(1, "initialize", init))
    assert status == 200
    session_id = headers["mcp-session-id"]
    await post(stack, tok, rpc(None, "notifications/initialized"), session_id)
    return session_id


async def _approved(stack: Any, tok: str, session_id: str, call: dict[str, Any]) -> dict:
    """Call `call` (a write tool: refused for approval), then approve it; the refusal."""
    _, _, answer = await post(stack, tok, rpc(2, "tools/call", call), session_id)
    error = messages_of(answer)[0]["error"]
    await stack.pdp.approvals.decide(error["data"]["approval_id"], APPROVER, True, "ok")
    return dict(error)


@pytest.fixture
def asking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MCP stacks of these tests run asking_server (its tools ask their user)."""
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", asking_server)


@pytest.mark.integration
async def test_a_write_tools_question_is_not_answered_past_its_approval(
    tmp_path: Path, asking: None
) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await _session(stack, alice)
        error = await _approved(stack, alice, session_id, REFUND)
        assert error["code"] == APPROVAL_REQUIRED
        accept = {"action": "accept", "content": {"amount": 900}}
        got, rest = await _answer_while_it_runs(stack, alice, session_id, REFUND, accept)
        pending = [r for r in stack.pdp.approvals.requests.values() if r.state == "pending"]
    assert rest == []
    assert got and got[0]["error"]["code"] == APPROVAL_REQUIRED, got
    assert "refund 900" not in stack.upstream.calls
    shown = "\n".join(r.command for r in pending)
    assert '"during":["refund_order"]' in shown and "900" in shown


async def _approve_when_asked(stack: Any) -> None:
    while True:
        pending = [r for r in stack.pdp.approvals.requests.values() if r.state == "pending"]
        if pending:
            await stack.pdp.approvals.decide(pending[0].id, APPROVER, True, "900 is right")
            return
        await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_an_answer_held_with_prefer_wait_goes_once_approved(
    tmp_path: Path, asking: None
) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await _session(stack, alice)
        await _approved(stack, alice, session_id, REFUND)
        accept = {"action": "accept", "content": {"amount": 900}}
        approving = asyncio.ensure_future(_approve_when_asked(stack))
        got, rest = await _answer_while_it_runs(
            stack, alice, session_id, REFUND, accept, {"Prefer": "wait=20"}
        )
        approved = approving.done()
        approving.cancel()
    assert approved  # (the answer waited for an approver, who saw it)
    assert got == []
    assert rest and rest[0]["result"]["content"][0]["text"] == "refunded 900 on order 11"
    assert stack.upstream.calls == ["refund 900"]


@pytest.mark.integration
async def test_a_read_tools_question_is_answered_as_before(tmp_path: Path, asking: None) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await _session(stack, alice)
        call = {"name": "get_invoice", "arguments": {"invoice_id": 7}}
        accept = {"action": "accept", "content": {"amount": 1}}
        got, rest = await _answer_while_it_runs(stack, alice, session_id, call, accept)
    assert got == []
    assert rest and rest[0]["result"]["content"][0]["text"] == "invoice 7"
    assert stack.upstream.calls == ["invoice accept"]


def test_the_policy_reads_what_an_answer_was_given_during() -> None:
    raw = '{"answers":"elicitation/create","during":["refund_order"],"endpoint":"/mcp","result":{}}'
    command = mcp_command("mcp.call", raw, {})
    assert command["during"] == ["refund_order"] and "malformed" not in command
    for bad in ('"refund_order"', "[1]", "{}"):
        text = raw.replace('["refund_order"]', bad)
        assert mcp_command("mcp.call", text, {}).get("malformed"), bad
    declined = raw.replace('"result":{}', '"result":{"action":"decline"}')
    assert mcp_command("mcp.call", declined, {})["declined"] is True
    for given in ('{"action":"decline","content":{"amount":9}}', '{"action":"accept"}'):
        text = raw.replace('"result":{}', f'"result":{given}')
        assert "declined" not in mcp_command("mcp.call", text, {}), given


@pytest.mark.integration
async def test_a_write_tool_that_ran_is_no_longer_running(tmp_path: Path, asking: None) -> None:
    # a pii-reader's session is read by nothing (no mask): the answers pass as they come,
    # and the write tool, once answered, runs no more when a read tool asks its question
    async with mcp_stack(tmp_path) as stack:
        pat = stack.token("pat@example.com", "readonly", "pii-readers")
        session_id = await _session(stack, pat)
        create = {"name": "create_invoice", "arguments": {"customer": "Ann"}}
        await _approved(stack, pat, session_id, create)
        _, _, answer = await post(stack, pat, rpc(3, "tools/call", create), session_id)
        assert messages_of(answer)[0]["result"]["content"][0]["text"] == "invoice for Ann"
        call = {"name": "get_invoice", "arguments": {"invoice_id": 7}}
        accept = {"action": "accept", "content": {"amount": 1}}
        got, rest = await _answer_while_it_runs(stack, pat, session_id, call, accept)
    assert got == []
    assert rest and rest[0]["result"]["content"][0]["text"] == "invoice 7"
    assert stack.upstream.calls == ["create_invoice", "invoice accept"]
