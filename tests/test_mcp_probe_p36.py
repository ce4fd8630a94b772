"""Probing the MCP exchange's text content (P36, helper webmask23): a card in a list with
another item, glued to a hex letter, or written as base32.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP) whose read tool find_customer echoes the
name it is asked about into its answer (text content and structuredContent). Before
these fixes a reader outside pii-readers read a card back in three writings: a one-line
comma list with an id before it (`7,4111,1111,1111,1111`, card_groupings), a letter a-f
glued to it (`a4111111111111111`, the hex-word exception), base32 text (only base64 and
hex were decoded for masking). Now each is masked (HTTP P40, P41, masking P13).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_mcp_proxy import agent, mcp_stack, text_of

NAMES = {
    "list": "7,4111,1111,1111,1111",
    "hex": "a4111111111111111",
    "base32": base64.b32encode(b"card 4111 1111 1111 1111").decode(),
}


def _shows_card(text: str) -> bool:
    if "4111111111111111" in "".join(c for c in text if c.isdigit()):
        return True
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        return False
    return "4111" in raw.decode("utf-8", "replace")


@pytest.mark.integration
async def test_a_card_echoed_by_a_tool_is_masked_in_each_writing(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack, agent(stack, stack.token()) as client:
        got = {}
        for key, name in NAMES.items():
            result = await client.call_tool("find_customer", {"name": name})
            got[key] = (text_of(result), result.structured_content)
    for key, (text, structured) in got.items():
        shown = json.loads(text)["name"]
        assert not _shows_card(shown), (key, text)
        if structured is not None:
            assert not _shows_card(structured["name"]), (key, structured)
