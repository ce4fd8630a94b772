"""Probing the MCP exchange's masks (brief P18, helper web6): masks that broke MCP's
schema, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy; the
reader outside pii-readers (the field `phone` masked). A mask writes strings; MCP types
some members otherwise, and the SDK's client validates every answer with its pydantic
models, so one string where a boolean belongs makes the whole answer an error:

- a tool whose annotations' title names a masked field (`ToolAnnotations(title="Phone",
  readOnlyHint=True)`): the title read as a label named the hints beside it the field's
  values, `readOnlyHint: "[REDACTED]"`, and `list_tools()` raised (the agent saw no tool
  at all); an item's `annotations` naming its field (`{"audience": ["user"], "field":
  "phone"}`) made its `audience` and `priority` strings. MCP's own typed annotations
  (hints, audience, priority) now stay as they came (mcp._annotations_masked);
- any other typed member a mask changed (a resource's `size` beside its name `phone`, a
  prompt message's `role`, a log's `level`, a progress): mcp_schema.conform_message
  drops it where MCP lets it be absent, drops its item from a list of items (a tool, a
  content block), and else answers with an error in place of an invalid answer;
- a tool list's icons (`sms:+15550100`, `mailto:ann.smith&#64;example.com`) were read by
  no mask, and text read by the detectors alone (a tool list's words) kept an address or
  a card written with HTML character references or `\\u0040` (what a page or a script
  shows as `@`): icons are read as the tool's `_meta` is, and the detectors read a
  string with its escapes undone too (bodies.unescaped_view);
- a tool whose outputSchema asks a pattern of a masked field (pydantic's `Field(pattern=
  ...)`), a number, a format or an enumeration: the SDK's client validates structured
  content against it, and every masked result raised in call_tool. A masked session's
  tool list now carries each outputSchema relaxed as masks need (mcp_schema.
  relaxed_output_schema: what it asks of values dropped, a string allowed);
- a next page of rows (a cursor's fetch) after a result naming their columns: rows alone
  went whole, in the text item and the structured content; the session now remembers
  the columns its results named (McpSession.tables), as the HTTP proxy's sessions do.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import mcp_types
import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp_types import Annotations, Icon, ToolAnnotations
from pydantic import BaseModel, Field
from test_mcp_exchange import SSE, agent_of, chunks, event, read, sse_messages
from test_mcp_proxy import agent, mcp_stack

from portcullis.masking import Masker, MaskRule
from proxies.http import mcp
from proxies.http.mcp import Forward
from proxies.http.mcp_schema import Unconformable, conform_message, relaxed_output_schema

pytestmark = pytest.mark.integration

PHONE = "+1 555 0100"
MASKER = Masker([MaskRule(field="phone"), MaskRule(field="email")], b"k" * 32)

# a tool's annotations as a server may write them (titles naming a masked field, labels)
TOOL_NOTES: dict[str, dict[str, Any]] = {
    "a title naming the field": {"title": "Phone", "readOnlyHint": True},
    "a two-word title": {"title": "Customer phone", "readOnlyHint": True, "openWorldHint": False},
    "a label among the hints": {"field": "phone", "readOnlyHint": True, "destructiveHint": False},
    "a name among the hints": {"name": "phone", "idempotentHint": True},
    "a label and a value": {"label": "phone", "value": PHONE, "readOnlyHint": True},
}


def _tool(notes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "find_customer", "inputSchema": {"type": "object"}, "annotations": notes}


@pytest.mark.parametrize("case", sorted(TOOL_NOTES))
def test_a_tool_lists_hints_stay_booleans(case: str) -> None:
    result = mcp._schema_values({"tools": [_tool(TOOL_NOTES[case])]}, MASKER, Counter())
    listed = mcp_types.ListToolsResult.model_validate(result)  # (the SDK's own model)
    notes = result["tools"][0]["annotations"]
    for hint, value in TOOL_NOTES[case].items():
        if hint.endswith("Hint"):
            assert notes[hint] is value, notes
    assert PHONE not in repr(listed), listed


ITEM_NOTES: dict[str, dict[str, Any]] = {
    "audience and a label": {"audience": ["user"], "field": "phone"},
    "audience, priority, a label": {
        "audience": ["user", "assistant"],
        "priority": 0.5,
        "x": "phone",
    },
    "a date naming it": {"audience": ["assistant"], "priority": 1, "lastModified": "phone"},
}


@pytest.mark.parametrize("case", sorted(ITEM_NOTES))
def test_an_items_own_annotations_stay_typed(case: str) -> None:
    notes = ITEM_NOTES[case]
    value = {"content": [{"type": "text", "text": PHONE, "annotations": notes}]}
    out = mcp._mask_tree(value, MASKER, Counter())
    mcp_types.CallToolResult.model_validate(out)
    shown = out["content"][0]
    assert PHONE not in repr(shown), shown
    for own in ("audience", "priority"):
        assert shown["annotations"].get(own) == notes.get(own), shown


# answers whose typed members a mask changed, each by the method it answers
TYPED: dict[str, tuple[str, dict[str, Any], type]] = {
    "a resource named as the field, its size": (
        "resources/list",
        {"resources": [{"uri": "invoice://7", "name": "phone", "size": 12}]},
        mcp_types.ListResourcesResult,
    ),
    "a prompt argument's required": (
        "prompts/list",
        {"prompts": [{"name": "p", "arguments": [{"name": "phone", "required": True}]}]},
        mcp_types.ListPromptsResult,
    ),
    "a prompt message's role beside a label": (
        "prompts/get",
        {
            "messages": [
                {"role": "user", "label": "phone", "content": {"type": "text", "text": "x"}}
            ]
        },
        mcp_types.GetPromptResult,
    ),
    "a tool result's isError beside a label": (
        "tools/call",
        {"content": [], "isError": False, "field": "phone"},
        mcp_types.CallToolResult,
    ),
    "a resource link named as the field": (
        "tools/call",
        {"content": [{"type": "resource_link", "uri": "invoice://7", "name": "phone", "size": 9}]},
        mcp_types.CallToolResult,
    ),
    "a completion's total": (
        "completion/complete",
        {"completion": {"values": ["a"], "total": 1, "hasMore": False, "name": "phone"}},
        mcp_types.CompleteResult,
    ),
}


@pytest.mark.parametrize("case", sorted(TYPED))
def test_a_masked_answer_stays_valid(case: str) -> None:
    method, result, model = TYPED[case]
    came = {"jsonrpc": "2.0", "id": 1, "result": result}
    masked = {"jsonrpc": "2.0", "id": 1, "result": mcp._mask_tree(result, MASKER, Counter())}
    try:
        shown = conform_message(masked, came, method)
    except Unconformable:
        return  # (answered with an error instead: valid too)
    model.model_validate(shown["result"])


def test_what_cannot_be_dropped_is_refused() -> None:
    came = {"jsonrpc": "2.0", "id": 1, "result": {"completion": {"values": ["a", "b"]}}}
    masked = {"jsonrpc": "2.0", "id": 1, "result": {"completion": {"values": ["a", 7]}}}
    with pytest.raises(Unconformable):
        conform_message(masked, came, "completion/complete")
    notice = {"level": "info", "data": "x"}
    masked = {"jsonrpc": "2.0", "method": "notifications/message", "params": notice}
    bad = {**masked, "params": {**notice, "level": "[REDACTED]"}}
    with pytest.raises(Unconformable):
        conform_message(bad, masked, "notifications/message")
    assert conform_message(masked, masked, "notifications/message") == masked


def _annotated_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool(annotations=ToolAnnotations(title="Phone", read_only_hint=True))
    def find_customer(name: str) -> dict[str, str]:
        up.calls.append(name)
        return {"name": name, "phone": PHONE}

    @server.tool(
        annotations=ToolAnnotations(
            title="Customer phone", read_only_hint=True, destructive_hint=False
        )
    )
    def get_invoice(invoice_id: int) -> str:
        up.calls.append(str(invoice_id))
        return "120 EUR"

    @server.resource(
        "invoice://7/phone",
        name="phone",
        mime_type="text/plain",
        annotations=Annotations(audience=["user"], priority=0.5, last_modified="phone"),
    )
    def invoice_phone() -> str:
        return PHONE

    return server


async def test_the_sdk_client_reads_a_masked_tool_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _annotated_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            listed = await client.list_tools()  # (raised: readOnlyHint "[REDACTED]")
            resources = await client.list_resources()
            found = await client.call_tool("find_customer", {"name": "Ann"})
    tools = {t.name: t for t in listed.tools}
    assert sorted(tools) == ["find_customer", "get_invoice"], tools
    assert tools["find_customer"].annotations is not None
    assert tools["find_customer"].annotations.read_only_hint is True
    assert tools["get_invoice"].annotations is not None
    assert tools["get_invoice"].annotations.destructive_hint is False
    (resource,) = resources.resources
    assert resource.annotations is not None and resource.annotations.audience == ["user"]
    assert PHONE not in repr(found.content), found


async def test_an_items_annotations_stay_valid_end_to_end(tmp_path: Path) -> None:
    # (the upstream as a transcript: the SDK's server drops what Annotations do not define)
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        shown = []
        for n, notes in enumerate(ITEM_NOTES.values()):
            call = await mallory.send(
                "POST",
                {
                    "jsonrpc": "2.0",
                    "id": n + 1,
                    "method": "tools/call",
                    "params": {"name": "find_customer", "arguments": {"name": "Ann"}},
                },
            )
            assert isinstance(call, Forward)
            item = {"type": "text", "text": PHONE, "annotations": notes}
            answer = {"jsonrpc": "2.0", "id": n + 1, "result": {"content": [item]}}
            reply = await call.response(200, list(SSE), chunks(event(answer)))
            (message,) = sse_messages(await read(reply))
            shown.append(message)
    for message in shown:
        result = mcp_types.CallToolResult.model_validate(message["result"])
        assert PHONE not in repr(result), result


# what a tool list says in URIs and escapes (its icons were read by no mask, and escapes
# by none in a list or a result read by the detectors alone)
LISTED_WORDS = {
    "an icon dialling a number": ("sms:+15550100", "5550100"),
    "an icon of an address by a character reference": (
        "mailto:ann.smith&#64;example.com",
        "ann.smith",
    ),
    "an address by a hex reference": ("ann.smith&#x40;example.com", "ann.smith"),
    "an address by a script escape": ("ann.smith\\u0040example.com", "ann.smith"),
    "a card parted by references": ("4111&#32;1111&#32;1111&#32;1111", "4111 1111 1111"),
}


def _read(text: str) -> str:
    """`text` as a page or a script shows it (references and escapes undone)."""
    text = re.sub(r"\\\\?u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), html.unescape(text))
    return urllib.parse.unquote(text)


def _listed_server(up: Any) -> MCPServer:
    server = MCPServer("billing")
    srcs = [src for src, _ in LISTED_WORDS.values()]

    @server.tool(description="see " + " or ".join(srcs), icons=[Icon(src=s) for s in srcs])
    def get_invoice(invoice_id: int) -> str:
        up.calls.append(str(invoice_id))
        return "120 EUR"

    return server


def test_a_tool_lists_uris_and_escapes_are_masked() -> None:
    detecting = [MaskRule(detector="email"), MaskRule(detector="credit_card")]
    readers = Masker([*MASKER.rules, *detecting], b"k" * 32)
    detectors = Masker([r for r in readers.rules if r.detector], b"k" * 32)
    for case, (src, hidden) in LISTED_WORDS.items():
        tool = {"name": "t", "inputSchema": {"type": "object"}, "icons": [{"src": src}]}
        listed = mcp._schema_values({"tools": [{**tool, "description": src}]}, readers, Counter())
        shown = mcp._mask_tree(listed, detectors, Counter())
        mcp_types.ListToolsResult.model_validate(shown)
        assert hidden not in _read(repr(shown)), (case, shown)


async def test_a_tool_lists_uris_and_escapes_are_masked_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _listed_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            listed = await client.list_tools()
    (tool,) = listed.tools
    shown = _read(repr(tool.model_dump()))
    leaked = {case: hidden for case, (_, hidden) in LISTED_WORDS.items() if hidden in shown}
    assert not leaked, (leaked, shown)
    assert tool.name == "get_invoice" and tool.icons and len(tool.icons) == len(LISTED_WORDS)


class Customer(BaseModel):
    id: int
    phone: str = Field(pattern=r"^\+?[0-9 ]+$")
    card_number: str = Field(pattern=r"^[0-9 ]{12,19}$", max_length=19)
    tier: Literal["gold", "silver"]
    note: str


def _typed_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> Customer:
        up.calls.append(name)
        card = "4111 1111 1111 1111"
        return Customer(id=7, phone=PHONE, card_number=card, tier="gold", note="ok")

    return server


async def test_a_masked_result_meets_the_output_schema_its_client_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (the SDK's client validates structured content against the tool's outputSchema: a
    # masked phone no longer matched its pattern, and call_tool raised)
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _typed_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            await client.list_tools()
            found = await client.call_tool("find_customer", {"name": "Ann"})
    assert found.structured_content is not None
    assert found.structured_content["tier"] == "gold"
    shown = repr(found.structured_content)
    assert "555 0100" not in shown and "4111 1111 1111 1111" not in shown, shown


def test_an_output_schema_is_relaxed_as_masks_need() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0},
            "e": {"type": "string", "format": "email", "enum": ["a@b.c"]},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "no": {"not": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
        "required": ["n"],
        "additionalProperties": False,
    }
    out = relaxed_output_schema(schema)
    assert out["type"] == "object" and out["required"] == ["n"]
    assert out["additionalProperties"] is False
    props = out["properties"]
    assert props["n"] == {"type": ["integer", "string"]}
    assert props["e"] == {"type": ["string"]}
    assert props["either"] == {"anyOf": [{"type": ["string"]}, {"type": ["integer", "string"]}]}
    assert props["no"] == {}
    assert props["tags"] == {"type": ["array", "string"], "items": {"type": ["string"]}}


PAGES: dict[str, dict[str, Any]] = {
    "first page": {"columns": ["id", "phone"], "rows": [[7, PHONE]], "cursor": "c2"},
    "next page": {"rows": [[8, "+1 555 0101"], [9, "+1 555 0102"]], "cursor": None},
}


def _paged_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> dict[str, Any]:
        up.calls.append(name)
        return PAGES[name]

    return server


async def test_a_next_page_of_rows_is_masked_under_the_columns_named_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a cursor's next page holds rows alone: it went whole, text and structured content)
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _paged_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            shown = [
                repr([c.model_dump() for c in result.content]) + repr(result.structured_content)
                for result in [await client.call_tool("find_customer", {"name": n}) for n in PAGES]
            ]
    leaked = [text for text in shown if "555 01" in text]
    assert not leaked, leaked
    assert "'cursor': 'c2'" in shown[0] and "[8, " in shown[1], shown
