"""Probing the MCP exchange's masks (P21, helper webmask12): a tool that returns one bare
value, a table whose first row holds letters alone, a value split by markup.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy; the
reader outside pii-readers (`phone`, `password`, `ssn` masked; 5550100 and 078051120 are
no detector's). Before the fixes:

- a tool returning one value (`return "5550100"`: one text item, and the SDK's
  `structuredContent: {"result": "5550100"}`), a resource whose text (or base64 blob)
  is one value, went
  whole: the bare values of a result were read only among two items or more
  (mcp._content_row). Now a result that is one bare value is masked as one of a row
  nothing names is (mcp._bare_results);
- a table as text whose first line holds letters alone (`Ann,Smith` over `Bob,5550100`)
  was read as lines of prose (the detectors alone): it is read as CSV now, the rows
  under a first line naming no masked column masked as rows nothing names
  (bodies.table_shaped, BodyMask._row);
- a card or an e-mail split by markup (`4111 <em>1111</em> 1111 1111`, a search's
  highlight) went whole, though a client rendering it shows it whole; the text is read
  as rendered too (bodies.BodyMask._rendered_clear).
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mcp_tool_rows import answering, readers_results
from mcp_tool_rows import shown as show

from portcullis.masking import Masker, MaskRule
from proxies.http import mcp

HIDDEN = ("5550100", "5550101", "078051120", "4111 1111 1111 1111", "bob@example.com")
SHAPES: dict[str, Any] = {
    "a bare phone": "5550100",
    "a bare ssn": "078051120",
    "a bare number": 5550101,
    "a table under a row of letters": "Ann,Smith\nBob,5550100\nCy,078051120\n",
    "a tab table under a row of letters": "Ann\tSmith\nBob\t5550100\n",
    "a highlighted card": "found: 4111 <em>1111</em> 1111 1111",
    "a split address": "mail bob<b></b>@example.com",
}


def get_invoice(invoice_id: int) -> str:
    return "shipped"


@pytest.mark.integration
async def test_bare_values_letter_rows_and_split_values_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, kept = await readers_results(
        tmp_path,
        monkeypatch,
        answering(SHAPES, get_invoice),
        SHAPES,
        also=lambda client: client.call_tool("get_invoice", {"invoice_id": 7}),
    )
    for name, result in results.items():
        shown = show(result)
        assert not any(h in shown for h in HIDDEN), (name, shown)
        assert not result.is_error, (name, shown)
    assert [c.text for c in results["a bare phone"].content] == ["[REDACTED]"]
    table = results["a table under a row of letters"]
    assert [c.text for c in table.content] == ["Ann,Smith\nBob,[REDACTED]\nCy,[REDACTED]\n"]
    # (a word stays)
    assert [c.text for c in kept.content] == ["shipped"]
    assert kept.structured_content == {"result": "shipped"}


MASKER = Masker(
    [MaskRule(field="phone"), MaskRule(detector="credit_card", strategy="partial")], b"k" * 32
)


def _masked(value: dict[str, Any]) -> dict[str, Any]:
    masked: dict[str, Any] = mcp._mask_tree(value, MASKER, Counter())
    return masked


def test_a_resource_that_is_one_value_is_masked() -> None:
    embedded = {
        "content": [
            {"type": "text", "text": "here it is"},
            {"type": "resource", "resource": {"uri": "db://c/7", "text": "5550100"}},
        ]
    }
    assert _masked(embedded)["content"] == [
        {"type": "text", "text": "here it is"},
        {"type": "resource", "resource": {"uri": "db://c/7", "text": "[REDACTED]"}},
    ]
    read = {"contents": [{"uri": "db://c/7", "mimeType": "text/plain", "text": " 5550100\n"}]}
    assert _masked(read)["contents"][0]["text"] == "[REDACTED]"
    blob = {"contents": [{"uri": "db://c/7", "blob": base64.b64encode(b"5550100").decode()}]}
    assert base64.b64decode(_masked(blob)["contents"][0]["blob"]) == b"[REDACTED]"
    structured = {"content": [], "structuredContent": {"result": 5550100}}
    assert _masked(structured)["structuredContent"] == {"result": "[REDACTED]"}
    # (words, short numbers, dates stay)
    for kept in ("ok", "42", "2024-01-05", "v1.2.3"):
        value = {"contents": [{"uri": "db://c/7", "text": kept}]}
        assert _masked(value) == value, kept
