"""Probing the MCP exchange's event streams (brief P13, helper webattack3), kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`; the upstream is given
as a transcript (test_mcp_exchange's Agent), so each event a server writes is exact. The
reader is outside pii-readers (tool results masked: the field `phone`, which no detector
finds). Before the fix an event's `id:` and `event:` fields were dropped only when a
detector or a field rule found a value in them alone: an id naming a masked field
(`id: phone`), then a later event's id holding its value (`id: 5550100`: the client's
lastEventId), reached the client, as did an id holding both joined by what is no
separator of a name and its value (`phone/5550100`, `phone_5550100`, `5550100-phone`,
`P-H-O-N-E`). A field one word of which names a masked field, as its reader reads it, is
now left out too (mcp.Forward._event_fields).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_mcp_exchange import SSE, agent_of, chunks, read, sse_messages, tool_call
from test_mcp_proxy import mcp_stack

from proxies.http.mcp import Forward

pytestmark = pytest.mark.integration

ANSWER = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "ok"}]}}
NOTE = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info"}}
NAMED_IDS = (
    "phone",
    "Phone Number",
    "P-H-O-N-E",
    "p-h-o-n-e n-u-m-b-e-r",
    "phone/5550100",
    "phone_5550100",
    "5550100-phone",
    "ph\u0307one.5550100",
)
PLAIN_IDS = ("e-1", "7", "3f1c2e9a-53b1-4c47-9a36-0d8e5b6f7a21", "_GET_stream_12")


def _events(ids: tuple[str, ...], kind: str = "id") -> bytes:
    out = b""
    for n, id_ in enumerate(ids):
        out += f"{kind}: {id_}\ndata: {json.dumps(NOTE)}\n\n".encode()
        out += f"id: {5550100 + n}\ndata: {json.dumps(NOTE)}\n\n".encode()
    return out + f"data: {json.dumps(ANSWER)}\n\n".encode()


async def test_an_event_field_naming_a_masked_field_is_left_out(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        shown = {}
        for n, (kind, ids) in enumerate(
            (("id", NAMED_IDS), ("event", NAMED_IDS), ("id", PLAIN_IDS))
        ):
            call = await mallory.send("POST", tool_call(1, "find_customer", name=f"Ann {n}"))
            assert isinstance(call, Forward)
            shown[kind, ids] = (
                await read(await call.response(200, list(SSE), chunks(_events(ids, kind))))
            ).decode()
    for kind in ("id", "event"):
        text = shown[kind, NAMED_IDS]
        fields = re.findall(rf"^{kind}: ?(.*)$", text, re.M)
        assert not [f for f in fields if not f.isdigit()], text
        assert sse_messages(text.encode())[-1]["id"] == 1
    # ids naming nothing go as they came (a client resumes from them)
    assert re.findall(r"^id: ?(.*)$", shown["id", PLAIN_IDS], re.M) == [
        x for i, id_ in enumerate(PLAIN_IDS) for x in (id_, str(5550100 + i))
    ]
