"""Probing the MCP exchange's masks (brief P17, helper web5): a content item whose
`annotations` name its field among MCP's own annotations, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy; the
reader outside pii-readers (the field `phone` masked). A text item `{"type": "text",
"text": "+1 555 0100", "annotations": {"audience": ["user"], "field": "phone"}}` came
back whole: an item's `annotations` or `_meta` named its field only when they held
labels alone (`{"field": "phone"}`); MCP's own `audience`, `priority`, `lastModified`
beside the label made them no descriptor (mcp._noted_rule now reads a label among them).
And a structured content's rows whose columns a map of names to positions names
(`{"headers": {"phone": 0}, "rows": [[...]]}`) went whole (test_http_probe_p17).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_mcp_exchange import SSE, agent_of, chunks, event, read, sse_messages, tool_call
from test_mcp_proxy import mcp_stack

from portcullis.masking import Masker, MaskRule
from proxies.http import mcp
from proxies.http.mcp import Forward

pytestmark = pytest.mark.integration

PHONE = "+1 555 0100"
NOTES: dict[str, dict[str, Any]] = {
    "audience and field": {"audience": ["user"], "field": "phone"},
    "audience, priority and field": {
        "audience": ["user", "assistant"],
        "priority": 0.5,
        "field": "phone",
    },
    "a name beside the audience": {"audience": ["user"], "name": "phone"},
    "a label and a date": {"lastModified": "2026-12-06T12:00:00Z", "label": "Phone number"},
    "a descriptor beside the audience": {"audience": ["user"], "field": {"name": "phone"}},
    "fields listed": {"audience": ["user"], "fields": ["phone"]},
    "a label nested deep": {"audience": ["user"], "x": {"y": {"z": {"field": "phone"}}}},
}


def test_a_resource_links_words_are_masked_when_its_annotations_name_its_field() -> None:
    masker = Masker([MaskRule(field="phone"), MaskRule(field="email")], b"k" * 32)
    item = {
        "type": "resource_link",
        "uri": "customer://7",
        "name": "n",
        "description": PHONE,
        "annotations": {"audience": ["user"], "field": "phone"},
    }
    out = mcp._mask_tree({"content": [item]}, masker, Counter())
    assert "555 0100" not in repr(out), out
    assert out["content"][0]["uri"] == "customer://7"


def test_an_items_annotations_naming_its_field_mask_it() -> None:
    masker = Masker([MaskRule(field="phone"), MaskRule(field="email")], b"k" * 32)
    for case, notes in NOTES.items():
        for member in ("annotations", "_meta"):
            item = {"type": "text", "text": PHONE, member: notes}
            out = mcp._mask_tree({"content": [item]}, masker, Counter())
            assert "555 0100" not in repr(out), (case, member, out)


def test_annotations_naming_nothing_leave_the_text() -> None:
    masker = Masker([MaskRule(field="phone"), MaskRule(field="email")], b"k" * 32)
    item = {"type": "text", "text": "call 7", "annotations": {"audience": ["user"], "priority": 1}}
    value = {"content": [item]}
    assert mcp._mask_tree(value, masker, Counter()) == value


def test_rows_named_by_position_in_structured_content_are_masked() -> None:
    masker = Masker([MaskRule(field="phone"), MaskRule(field="email")], b"k" * 32)
    for content in (
        {"headers": {"phone": 0}, "rows": [[PHONE]]},
        {
            "columns": [{"name": "phone", "index": 1}, {"name": "id", "index": 0}],
            "rows": [[7, PHONE]],
        },
        {"columns": {"0": "phone"}, "rows": [[PHONE]]},
    ):
        value = {"content": [{"type": "text", "text": "ok"}], "structuredContent": content}
        out = mcp._mask_tree(value, masker, Counter())
        assert "555 0100" not in repr(out), out


async def test_an_items_annotations_naming_its_field_mask_it_end_to_end(tmp_path: Path) -> None:
    # (the upstream as a transcript: the SDK's own models drop what MCP's Annotations do
    # not define, a server writing JSON need not)
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        shown = {}
        for n, (case, notes) in enumerate(NOTES.items()):
            call = await mallory.send("POST", tool_call(n + 1, "find_customer", name="Ann"))
            assert isinstance(call, Forward)
            item = {"type": "text", "text": PHONE, "annotations": notes}
            answer = {"jsonrpc": "2.0", "id": n + 1, "result": {"content": [item]}}
            reply = await call.response(200, list(SSE), chunks(event(answer)))
            shown[case] = (await read(reply)).decode()
    leaked = {case: text[:300] for case, text in shown.items() if "555 0100" in text}
    assert not leaked, leaked
    # (each an answer to its call, the item's text masked)
    for n, text in enumerate(shown.values()):
        (message,) = sse_messages(text.encode())
        assert message["id"] == n + 1 and message["result"]["content"][0]["type"] == "text"
