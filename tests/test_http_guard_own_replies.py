"""An answer the credential guard cuts before any of it went is a 502, never silence.

Found by a newcomer following the README: with the Makefile's old dev key
(`portcullis-dev-billing`), every denied MCP call got no answer at all (curl: "Empty reply
from server"). The proxy's own reply (`portcullis: denied: ...`) goes through the guard
too (it may echo what an upstream said: a tool's name), and the word `portcullis`, a
third of that key, is a piece of it: the guard raised, and the connection closed with
nothing written. The guard still cuts (a key holding a word the proxy writes is the
operator's to change); the client now gets a 502 problem saying why.

Real PDP with the shipped policy, the HTTP proxy with `mcp: true` before the `mcp` SDK's
server, and plain HTTP requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_mcp_proxy
from test_mcp_proxy import initialize, mcp_stack, post, rpc

pytestmark = pytest.mark.integration

KEY_HOLDING_A_PROXY_WORD = "portcullis-x9f3k2q"


async def test_a_denial_the_guard_cuts_is_a_502_not_an_empty_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "SECRET", KEY_HOLDING_A_PROXY_WORD)
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await initialize(stack, alice)
        call = rpc(5, "tools/call", {"name": "run_sql", "arguments": {"sql": "drop"}})
        status, _, text = await post(stack, alice, call, session_id)
        assert status == 502, text
        problem = json.loads(text)
        assert problem["title"] == "the answer cannot be passed on"
        assert KEY_HOLDING_A_PROXY_WORD not in text and "portcullis" not in text
        assert stack.upstream.calls == []
        # an allowed call whose answer holds no piece of the key still goes through
        fine = rpc(6, "tools/call", {"name": "get_invoice", "arguments": {"invoice_id": 7}})
        session_id = await initialize(stack, alice)
        status, _, text = await post(stack, alice, fine, session_id)
        assert status == 200 and "invoice 7" in text, text
