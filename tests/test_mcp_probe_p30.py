"""Probing the MCP exchange's masks (P30, helper webmask18): a value a tool logs in
pieces, one log or progress line after another.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client and raw JSON-RPC for a
reader outside pii-readers (cards masked by the detectors). Before the fix:

- a card number a tool logged in halves (`ctx.info("card on file: 4111 1111")`, then
  `ctx.info("1111 1111")`), or as progress messages, came whole to a client showing the
  lines one after another: each server message was masked apart, and neither half is
  a card. The log and progress lines of a stream are now held while their text ends in
  digits (a value may go on in the next), read together, and a value found across them
  masked into its pieces (proxies/http/mcp_pieces.py); what is held goes with the next
  other event, at the stream's end, or after a bound;
- so did one across a prompt's messages (prompts/get: `card 4111 1111`, then `1111
  1111`), each masked apart: they are read as a result's text items are now
  (mcp._split_items, values.masked_split_values).

HELD_SECONDS is raised in the tests so that a slow machine cannot release the first
half before the second comes (the release on time is a bound, not what is tested).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import AssistantMessage, Message, UserMessage
from test_mcp_proxy import INIT, agent, mcp_stack, messages_of, post, rpc, text_of

from proxies.http import mcp_pieces

pytestmark = pytest.mark.integration

DIGITS = "4111111111111111"


def logging_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.tool()
    async def list_invoices(customer: str, ctx: Context) -> str:
        up.calls.append("list_invoices")
        await ctx.info("card on file: 4111 1111")
        await ctx.info("1111 1111")
        await ctx.info("invoices: 12")
        await ctx.report_progress(1, 2, "card 4111 1111")
        await ctx.report_progress(2, 2, "1111 1111")
        return f"3 invoices of {customer}"

    @served.tool()
    def get_invoice(invoice_id: int) -> str:
        up.calls.append("get_invoice")
        return f"invoice {invoice_id}: 120 EUR, paid"

    @served.prompt()
    def summarize_invoice(invoice: str) -> list[Message]:
        # (a prompt's messages, each a piece of the card, as a conversation's turns)
        return [UserMessage("card 4111 1111"), AssistantMessage("1111 1111")]

    return served


@pytest.fixture
def logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", logging_server)
    monkeypatch.setattr(mcp_pieces, "HELD_SECONDS", 60.0)


def _digits(texts: list[str]) -> str:
    return "".join(c for text in texts for c in text if c.isdigit())


async def invoices_logged(tmp_path: Path) -> tuple[Any, list[Any]]:
    """A reader's list_invoices through the proxy: its result, and the log messages' data
    the client was sent while it ran (tests/test_mcp_probe_p31.py too)."""
    logged: list[Any] = []

    async def on_log(params: Any) -> None:
        logged.append(params.data)

    async with (
        mcp_stack(tmp_path) as stack,
        agent(stack, stack.token("mallory@example.com"), logging_callback=on_log) as client,
    ):
        result = await client.call_tool("list_invoices", {"customer": "Ann"})
    return result, logged


async def test_a_card_logged_in_halves_is_masked(tmp_path: Path, logging: None) -> None:
    result, logged = await invoices_logged(tmp_path)
    assert text_of(result) == "3 invoices of Ann"
    assert len(logged) == 3 and all(isinstance(line, str) for line in logged), logged
    assert DIGITS not in _digits(logged), logged
    assert logged[0].startswith("card on file: ") and logged[2] == "invoices: 12"


async def test_a_card_in_progress_messages_is_masked(tmp_path: Path, logging: None) -> None:
    async with mcp_stack(tmp_path) as stack:
        tok = stack.token("mallory@example.com")
        status, headers, _ = await post(stack, tok, rpc(1, "initialize", INIT))
        assert status == 200
        session = headers["mcp-session-id"]
        await post(stack, tok, rpc(None, "notifications/initialized"), session)
        call = {"name": "list_invoices", "arguments": {"customer": "Ann"}}
        call["_meta"] = {"progressToken": "p1"}
        status, _, text = await post(stack, tok, rpc(2, "tools/call", call), session)
    assert status == 200
    messages = messages_of(text)
    progress = [
        m["params"].get("message", "")
        for m in messages
        if m.get("method") == "notifications/progress"
    ]
    logs = [m["params"]["data"] for m in messages if m.get("method") == "notifications/message"]
    assert len(progress) == 2 and len(logs) == 3, messages
    assert DIGITS not in _digits(progress) and DIGITS not in _digits(logs), messages
    assert messages[-1]["result"]["content"][0]["text"] == "3 invoices of Ann"


async def test_a_card_across_a_prompts_messages_is_masked(tmp_path: Path, logging: None) -> None:
    async with (
        mcp_stack(tmp_path) as stack,
        agent(stack, stack.token("mallory@example.com")) as client,
    ):
        prompt = await client.get_prompt("summarize_invoice", {"invoice": "7"})
    texts = [getattr(m.content, "text", "") for m in prompt.messages]
    assert len(texts) == 2 and texts[0].startswith("card "), texts
    assert DIGITS not in _digits(texts), texts
