"""Probing the MCP exchange (brief P5): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP, the SDK's client through the proxy) or, where
the server's answer must be exact, a transcript (test_mcp_exchange's Agent). The attacker
is a reader (outside pii-readers: tool results masked):

- a tool printing a table with its columns aligned with spaces (`column -t`, a report),
  or `name   value` lines, under a header naming a masked column: the password and phone
  cells came back whole (only `name: value`, `name=value`, CSV and XML were read for the
  field rules, and no detector finds a password).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from test_mcp_proxy import agent, mcp_stack, text_of

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.http.mcp import _mask_tree

pytestmark = pytest.mark.integration

SPACE_TABLE = (
    "name   phone            password\n"
    "-----  ---------------  --------\n"
    "Ann    +1 555 0100      hunter2\n"
    "Bob    +1 555 0199      s3cret-bob\n"
)
RECORD = "id         7\npassword   hunter2\nphone      +1 555 0100\n"


def _table_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> str:
        up.calls.append("find_customer")
        return SPACE_TABLE if name == "table" else RECORD

    return server


async def test_columns_aligned_with_spaces_are_masked_by_their_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _table_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            table = text_of(await client.call_tool("find_customer", {"name": "table"}))
            record = text_of(await client.call_tool("find_customer", {"name": "record"}))
    assert stack.upstream.calls == ["find_customer"] * 2
    for shown in (table, record):
        assert not [s for s in ("hunter2", "s3cret-bob", "555 01") if s in shown], shown
    assert table.splitlines()[2].split() == ["Ann", "[REDACTED]", "[REDACTED]"]
    # (a record's line is also a row under `password   hunter2`: both its cells masked)
    assert record.splitlines()[:2] == ["id         7", "password   [REDACTED]"]
    assert record.splitlines()[2].split() == ["[REDACTED]", "[REDACTED]"]


READER_MASK = Masker(
    [MaskRule(field=c) for c in ("email", "phone", "password", "token")]
    + [MaskRule(detector="email", strategy="partial")],
    b"k",
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # single-spaced, as wide as its header: cut by words
        (
            "name phone password\nAnn 5550100 hunter2",
            "name phone password\nAnn [REDACTED] [REDACTED]",
        ),
        # a value longer than its column, cut by words all the same
        ("id  password\n1234567 hunter2", "id  password\n1234567 [REDACTED]"),
        # indented, and a table followed by other text
        ("  name  password\n  Ann   hunter2\n\nok", "  name  password\n  Ann   [REDACTED]\n\nok"),
        # a value straddling two columns, rows of another width: withheld
        ("name  phone\nAnn   +1 555 0100 x\nBobbyTables+1 555 0199", ""),
        ("name phone\nAnn +1 555 0100", ""),
        # `name value` records, one per line
        ("password hunter2\nphone +1 555 0100", "password [REDACTED]\nphone [REDACTED]"),
        # prose and bare values: as they came
        ("Your password was reset.\nThanks", "Your password was reset.\nThanks"),
        ("email", "email"),
        ("via phone", "via phone"),
    ],
)
def test_space_tables_are_read_one_way_or_withheld(text: str, shown: str) -> None:
    counts: Counter[str] = Counter()
    assert _mask_tree({"text": text}, READER_MASK, counts)["text"] == shown
