"""Probing the MCP exchange's masks (P19, helper webattack10): a tool's rows as TSV text,
and rows whose first holds no digit.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy; the
reader outside pii-readers (`phone` and `password` masked; 5550100 and hunter2 are no
detector's). Before the fixes:

- a tool answering tab-separated text (psql's `\\pset format unaligned` with a tab,
  `mysql --batch`, `COPY ... TO STDOUT`, a spreadsheet's paste): rows nothing names went
  whole where the same CSV was masked, and a header naming `phone` withheld the whole
  text where CSV's was masked by column (mcp._masked_prose read only commas);
- rows whose first holds no digit (a customer with an empty phone, ordered first:
  `[["Ann", ""], ["Bob", "5550100"]]`, `Ann,,x` in CSV) were read as a row of names over
  the rest, which went unmasked (bodies._names_row: an empty cell, a placeholder such as
  `n/a`, or a name twice is no row of names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp_tool_rows import answering, readers_results
from mcp_tool_rows import masked_text as _text
from mcp_tool_rows import shown as show

P, W = "5550100", "hunter2"

SHAPES: dict[str, Any] = {
    "tsv": f"7\tAnn\t{P}\t{W}\n8\tBob\t5550101\tpa55",
    "tsv named": f"id\tname\tphone\n7\tAnn\t{P}",
    "rows empty first": {"rows": [["Ann", "", ""], ["Bob", P, W]]},
    "rows placeholder first": {"rows": [["Ann", "n/a", "none"], ["Bob", P, W]]},
    "csv empty first": f"Ann,,\nBob,{P},{W}",
}


@pytest.mark.integration
async def test_tsv_rows_and_rows_under_a_row_of_data_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, _ = await readers_results(tmp_path, monkeypatch, answering(SHAPES), SHAPES)
    for name, result in results.items():
        shown = show(result)
        assert P not in shown and W not in shown and "5550101" not in shown, (name, shown)
        assert "Ann" in shown, (name, shown)  # (masked, not withheld)


def test_tsv_is_masked_as_csv_is_and_names_stay() -> None:
    assert _text(f"id\tphone\n7\t{P}") == "id\tphone\n7\t[REDACTED]"
    assert _text(f"7\t{P}\n8\tx") == "7\t[REDACTED]\n8\tx"
    for kept in ("id\tname\n7\tAnn", "gold\tactive\nsilver\tclosed", ",name\n0,Ann"):
        assert _text(kept) == kept
