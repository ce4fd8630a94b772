"""Probing the MCP exchange's masks (P20, helper webattack10): a tool that returns a list.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy; the
reader outside pii-readers (`phone` and `password` masked; 5550100 and hunter2 are no
detector's). The SDK makes one text item of each element of a list a tool returns
(`return ["Ann", "5550100"]`, `return list(row)`, rows flattened: `7`, `5550100`, `8`,
...), and a tool typed `-> list[str]` carries the list as `structuredContent: {"result":
[...]}`. Before the fix every such value went whole: each item was a bare value with no
name, and the wrapped list sat two levels down, where a list of strings is no row.

Now the text items of a result with two or more are read as a row nothing names
(mcp._content_row: an item that is a bare value is masked by the strictest field rule),
and `{"result": [...]}` is read as the document it wraps (bodies.BodyMask._nameless).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp_tool_rows import answering, readers_results
from mcp_tool_rows import shown as show

P, W = "5550100", "hunter2"
LISTS: dict[str, Any] = {
    "strings": ["Ann", P],
    "one row": [7, P, W],
    "rows": [[7, P], [8, "5550101"]],
    "rows under a row of data": [["Ann", ""], ["Bob", P]],
}


def get_invoice(invoice_id: int) -> list[str]:
    return ["Ann", P, "paid", "v1.2", "2024-01-05"]


@pytest.mark.integration
async def test_a_list_a_tool_returns_is_masked_as_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, typed = await readers_results(
        tmp_path,
        monkeypatch,
        answering(LISTS, get_invoice),
        LISTS,
        also=lambda client: client.call_tool("get_invoice", {"invoice_id": 7}),
    )
    for name, result in results.items():
        shown = show(result)
        assert P not in shown and W not in shown and "5550101" not in shown, (name, shown)
        assert not result.is_error, (name, shown)
    shown = show(typed)
    assert P not in shown, shown
    # (names, words, versions and dates stay)
    assert typed.structured_content == {
        "result": ["Ann", "[REDACTED]", "paid", "v1.2", "2024-01-05"]
    }, shown
    assert [c.text for c in typed.content] == ["Ann", "[REDACTED]", "paid", "v1.2", "2024-01-05"]
