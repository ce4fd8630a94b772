"""Probing the MCP exchange's masks (brief P10, helper httpattack): a field named by a
value, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy. The
reader is outside pii-readers: tool results are masked (the field `phone` among the
sensitive columns; a phone number is no detector's). A tool answers with a customer's
phone where no key is `phone`; each came back whole before its fix:

- a map from a value to the field it is, `{"+1 555 0100": "phone"}` (the README's
  inverted map): MCP's masks read keys as names only (the HTTP proxy inverted a map whose
  members all name fields, not one holding anything else: `{"+1 555 0100": "phone",
  "seen": 3}` kept its key there too), nor `{"+1 555 0100": "Phone number"}`, `{"+1 555
  0100": ["phone"]}` or `{"+1 555 0100": {"kind": "phone"}}`. A key that is no identifier
  (a digit, `@`, `+`, a space in it) whose member labels a field is now that field's
  value, at any depth (bodies.BodyMask.value_key_field, keys_masked);
- an object naming its field under a key MCP's masks did not list (`{"type": "phone",
  "value": ...}`, `{"kind": "phone", "v": ...}`): only `name`, `key`, `field`, ...
  named a field there. Any member whose string is a label of up to three words naming a
  field a rule masks now names it (mcp._pair_name);
- a key a map elsewhere in the answer names as the field (Jira's `expand=names`:
  `"names": {"customfield_10010": "Phone"}` beside `"fields": {"customfield_10010":
  ...}`): the value under the id passed (bodies.BodyMask.aliased);
- a columnar table (`{"names": ["id", "phone"], "columns": [[7, 8], [...]]}`):
  read as rows, position by position (bodies.BodyMask.columns_masked);
- text naming the field where the value stands on the next line: a YAML list item
  (`- phone:`), a YAML comment where the value would be (`phone:  # mobile`), a label
  alone on its line (`Phone Number:`): the text is withheld, as a YAML block already was;
- base64 of 16 to 31 characters inside a text (`prefs: eyJwaG9uZSI6...`, a short
  record's): only runs of 32 or more were read there (mcp._EMBEDDED), though a whole
  string of 16 is;
- an event's `id:` naming a field with its value (`id: phone=5550100`) or a `retry:` of
  seven digits: only the detectors read them (a phone number is no detector's).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from test_mcp_proxy import agent, mcp_stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.http import mcp
from proxies.http import mcp_codec as codec

pytestmark = pytest.mark.integration

PHONE = "+1 555 0100"
# {"phone":"5550100"} in unpadded base64 (a cookie's, a JWT's payload): 26 characters
CODED = base64.b64encode(b'{"phone":"5550100"}').decode().rstrip("=")
ANSWERS: dict[str, Any] = {
    "inverted": {PHONE: "phone"},
    "inverted among others": {"contacts": {PHONE: "phone", "seen": 3}},
    "inverted in words": {PHONE: "Phone number"},
    "inverted to a list": {PHONE: ["phone"]},
    "keyed by its value": {"by value": {PHONE: {"kind": "phone"}}},
    "typed": {"value": PHONE, "type": "phone"},
    "kind": {"kind": "phone", "v": PHONE},
    "kind in words": {"attr": {"category": "Mobile phone", "data": PHONE}},
    "columnar": {"names": ["id", "phone"], "columns": [[7, 8, 9], [PHONE, PHONE, PHONE]]},
    "jira names": {
        "fields": {"customfield_10010": PHONE, "summary": "x"},
        "names": {"customfield_10010": "Phone", "summary": "Summary"},
    },
}
TEXTS = {
    "yaml item": f"customer:\n  - phone:\n      {PHONE}\n",
    "yaml comment": f"phone:  # mobile\n  {PHONE}\n",
    "label alone": f"Ann\nPhone Number:\n{PHONE}\n",
    "base64 after a label": f"prefs: {CODED}",
}


def tools_server(answers: dict[str, Any], texts: dict[str, str]) -> Any:
    """An upstream MCP server whose tools answer each name with answers[name] (structured,
    or as JSON text) or texts[name] (text): what a reader is then shown is read."""

    def make(up: Any) -> MCPServer:
        server = MCPServer("billing")

        @server.tool()
        def find_customer(name: str) -> dict[str, Any]:
            up.calls.append(name)
            return answers[name.removesuffix(" as text")]

        @server.tool()
        def list_invoices(name: str) -> str:  # (a str result: JSON or text as a text content)
            up.calls.append(name)
            return texts[name] if name in texts else json.dumps(answers[name])

        return server

    return make


async def every_answer_shown(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answers: dict[str, Any],
    texts: dict[str, str],
) -> dict[str, str]:
    """Each answer of tools_server(answers, texts) as a reader outside pii-readers is shown
    it through the proxy (structured content and content items, as JSON text)."""
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", tools_server(answers, texts))
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        shown: dict[str, str] = {}
        async with agent(stack, reader) as client:
            for name in [*answers, *texts]:
                for tool in ("find_customer", "list_invoices"):
                    if tool == "find_customer" and name in texts:
                        continue
                    result = await client.call_tool(tool, {"name": name})
                    shown[f"{tool} {name}"] = json.dumps(
                        [result.structured_content, [c.model_dump() for c in result.content]]
                    )
    assert stack.upstream.calls, "the tools ran"
    return shown


async def test_a_value_keyed_or_typed_as_its_field_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = await every_answer_shown(tmp_path, monkeypatch, ANSWERS, TEXTS)
    leaked = {
        name: text[:300] for name, text in shown.items() if "555 0100" in text or CODED in text
    }
    assert not leaked, leaked


def test_what_does_not_name_a_field_stays() -> None:
    """The shapes MCP itself writes, and values keyed by what names no field, go as
    they came: a content item's type, a label naming nothing, a date keying a count."""
    masker = Masker([MaskRule(field="phone"), MaskRule(field="email")], b"k" * 32)
    value = {
        "content": [{"type": "text", "text": "phone"}, {"type": "text", "text": "ok"}],
        "byDay": {"2026-12-06": 3, "2026-12-05": {"kind": "call"}},
        "status": {"state": "done", "detail": "1 row"},
    }
    counts: Counter[str] = Counter()
    assert mcp._mask_tree(value, masker, counts) == value
    assert not counts


class _Recorded:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record_response(self, **event: Any) -> None:
        self.events.append(event)


def test_an_event_field_holding_a_named_value_is_left_out() -> None:
    masker = Masker([MaskRule(field="phone"), MaskRule(detector="email")], b"k" * 32)
    forward = object.__new__(mcp.Forward)
    forward.server, forward.masks = (True, masker), []
    forward.session = _Recorded()  # type: ignore[assignment]  # (what it records, alone)
    event = codec.SseEvent(
        "{}", [("id", "phone=5550100"), ("retry", "5550100"), ("id", "7"), ("retry", "3000")]
    )
    assert forward._event_fields(event).fields == [("id", "7"), ("retry", "3000")]
