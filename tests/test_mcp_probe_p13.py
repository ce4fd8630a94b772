"""Probing the MCP exchange's masks (brief P16, helper webattack4): a label after its
value, and a field named by a descriptor or a JSON-LD context, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy. The
reader is outside pii-readers: tool results are masked (the field `phone`; a phone
number is no detector's). Each came back whole before its fix:

- a label after its value: `["+1 555 0100", "phone"]`, a row `[7, "phone", ...]`, text
  `... is the phone`, `value=...&name=phone` (bodies.BodyMask._labelled_list, _prose,
  _inline, which the MCP masks share);
- a value beside a path of segments ending in its field (`{"loc": ["body", "phone"],
  "input": ...}`: a validation error echoing the input; mcp._pair_name, bodies.path_end);
- an embedded resource whose URI ends in the field (`{"uri": "customer://7/phone",
  "text": ...}`), as an HTTP answer to `/customers/7/phone` is that field's value, and a
  content item whose `_meta` names its field (`{"field": "phone"}`): a result's `_meta`
  and `annotations` were passed over as the tool's own answer (mcp._pair_name);
- a tool list's `_meta` (`{"owner_phone": ...}`) and its annotations past the hints:
  a tool list was read by the detectors alone, past its descriptions and titles (a
  schema's `phone` property is a name); they are now masked as a tool's result is;
- a card or an e-mail the detectors find only as its reader reads it (soft hyphens
  between a card's groups, Arabic-Indic digits, a fullwidth at sign): the text as
  written was read (mcp._read_masked);
- a field's id named by its descriptor (`{"fields": [{"id": "f1", "label": "Phone"}],
  "values": {"f1": ...}}`: a form's or a CRM's custom fields) or a JSON-LD context's term
  (`"@context": {"p": "http://schema.org/telephone"}`, then `"p": ...`): the value under
  the id or the term went (bodies.BodyMask._described_keys).
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp.types import EmbeddedResource, TextContent, TextResourceContents
from test_mcp_probe_p10 import every_answer_shown
from test_mcp_proxy import agent, mcp_stack

from proxies.http.bodies import as_read

pytestmark = pytest.mark.integration

PHONE = "+1 555 0100"
ANSWERS: dict[str, Any] = {
    "pair, label second": {"pair": [PHONE, "phone"]},
    "a row with its label inside": {"rows": [[7, "phone", PHONE]]},
    "values and labels in turn": {"attrs": ["Ann", "name", PHONE, "Phone Number"]},
    "a descriptor's id": {"fields": [{"id": "f1", "label": "Phone"}], "values": {"f1": PHONE}},
    "a descriptor's numeric id": {
        "properties": [{"fieldId": 12, "displayName": "Mobile phone"}],
        "record": {"12": PHONE},
    },
    "a validation error's input": {"detail": [{"loc": ["body", "phone"], "input": PHONE}]},
    "a json-ld term": {"@context": {"p": "http://schema.org/telephone"}, "p": PHONE},
    "a json-ld term by @id": {"@context": {"t": {"@id": "schema:telephone"}}, "t": [PHONE]},
}
TEXTS = {
    "value is the phone": f"call {PHONE} is the phone on file",
    "value then (phone)": f"{PHONE} (phone)",
    "pairs, label after": f"value={PHONE}&name=phone",
    "a list as text, label after": f'["{PHONE}", "phone"]',
    "yaml, label after": f"- value: {PHONE}\n  name: phone\n",
}


async def test_a_label_after_its_value_or_a_descriptor_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = await every_answer_shown(tmp_path, monkeypatch, ANSWERS, TEXTS)
    leaked = {
        name: text[:300] for name, text in shown.items() if "555 0100" in text or "5550100" in text
    }
    assert not leaked, leaked


# (uri, text) of each embedded resource a tool answers with, or a text item's _meta
RESOURCES = {
    "a resource ending in the field": ("customer://7/phone", PHONE),
    "a file named as the field": ("file:///exports/phone.txt", PHONE),
    "a resource ending in the field, escaped": ("customer://7/ph%6Fne", PHONE),
}


def _resources_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> list[EmbeddedResource | TextContent]:
        up.calls.append(name)
        if name == "a text item whose _meta names it":
            return [TextContent(type="text", text=PHONE, _meta={"field": "phone"})]
        uri, text = RESOURCES[name]
        resource = TextResourceContents(uri=uri, text=text, mime_type="text/plain")
        return [EmbeddedResource(type="resource", resource=resource)]

    return server


async def test_a_resource_or_an_item_naming_its_field_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _resources_server)
    shown: dict[str, str] = {}
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            for name in [*RESOURCES, "a text item whose _meta names it"]:
                result = await client.call_tool("find_customer", {"name": name})
                shown[name] = repr([c.model_dump() for c in result.content])
    assert len(stack.upstream.calls) == len(RESOURCES) + 1
    leaked = {name: text[:300] for name, text in shown.items() if "555 0100" in text}
    assert not leaked, leaked
    # (the resource's URI stays as it came: a client reads it again by it)
    assert "customer://7/phone" in shown["a resource ending in the field"]


def _listed_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool(meta={"owner_phone": PHONE, "escalation": [PHONE, "phone"]})
    def find_customer(name: str) -> str:
        up.calls.append(name)
        return "ok"

    return server


async def test_a_tool_lists_meta_is_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _listed_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            listed = await client.list_tools()
    shown = repr([t.model_dump() for t in listed.tools])
    assert "find_customer" in shown
    assert "555 0100" not in shown, shown


# (bare values, one word to the masks: no text around them is read as a line is)
READ_OTHERWISE = {
    "a card parted by soft hyphens": "4111\u00ad1111\u00ad1111\u00ad1111",
    "a card in arabic-indic digits": "".join(chr(0x660 + int(c)) for c in "4111" * 4),
    "an e-mail with a fullwidth at sign": "ann.smith\uff20example.com",
}


async def test_what_a_reader_reads_otherwise_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = await every_answer_shown(tmp_path, monkeypatch, {}, READ_OTHERWISE)
    read = {
        name: as_read(json.dumps(json.loads(text), ensure_ascii=False))
        for name, text in shown.items()
    }
    leaked = {
        name: text[:300]
        for name, text in read.items()
        if "41111111" in re.sub(r"[^0-9]", "", _digits(text)) or "ann.smith" in text
    }
    assert not leaked, leaked


def _digits(text: str) -> str:
    """`text` with every decimal digit of another script as its ASCII digit."""
    return re.sub(r"\d", lambda d: str(unicodedata.decimal(d[0])), text)
