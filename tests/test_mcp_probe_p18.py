"""Probing the MCP exchange's masks (brief P18, helper webattack9): rows a tool returns
that nothing names.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy; the
reader outside pii-readers (`phone` and `password` masked; 5550100 and hunter2 are no
detector's). A `run_sql`-like tool answers `SELECT *` with its driver's rows: a list of
lists (structured content and its JSON text), Python's repr of fetchall()
(`[(7, '5550100', 'hunter2')]`), CSV lines without a header, one JSON row a line. No
column is named anywhere, so the field masks found nothing: every value went whole.

Now each cell that may be a masked field's value (a number of seven digits or more, a
string holding a digit or `@` but a short number or a date) in rows nothing names is
masked by the strictest field rule (bodies.BodyMask._nameless, _literal_cell,
nameless_csv); named rows, words and short numbers stay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp_tool_rows import answering, readers_results
from mcp_tool_rows import masked_text as _text
from mcp_tool_rows import shown as show

P, W = "5550100", "hunter2"
ROWS = [(7, P, W), (8, "5550101", "pa55")]

SHAPES: dict[str, Any] = {
    "rows": {"rows": [list(r) for r in ROWS]},
    "repr": str(ROWS),
    "csv": "\n".join(",".join(map(str, r)) for r in ROWS),
    "json lines": "\n".join(json.dumps(list(r)) for r in ROWS),
    "one row": json.dumps(list(ROWS[0])),
}


@pytest.mark.integration
async def test_rows_a_tool_returns_unnamed_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, _ = await readers_results(tmp_path, monkeypatch, answering(SHAPES), SHAPES)
    for name, result in results.items():
        shown = show(result)
        assert P not in shown and W not in shown and "5550101" not in shown, (name, shown)
        assert "7" in shown, (name, shown)  # (the ids stay)


def test_the_shapes_are_masked_and_what_holds_no_value_stays() -> None:
    assert _text(str(ROWS)) == "[(7, '[REDACTED]', '[REDACTED]'), (8, '[REDACTED]', '[REDACTED]')]"
    assert _text("[(Decimal('7'), 'gold', 5550100)]") == "[(Decimal('7'), 'gold', [REDACTED])]"
    assert _text(f"7,{P},{W}\n8,x,y") == "7,[REDACTED],[REDACTED]\n8,x,y"
    for kept in (
        "Paid 2 invoices (see below), total 12.50 on 2024-01-05",
        "id,name\n7,Ann",
        '["id", "name"]',
        "[(7, 'gold', 12.5, '2024-01-05')]",
    ):
        assert _text(kept) == kept
