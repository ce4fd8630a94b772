"""Probing the MCP exchange's approvals (brief P20, helper webattack8): an approval
given for a tool call covered it sent with any other headers, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP; test_mcp_proxy's stack), raw JSON-RPC over
HTTP for a client (the headers are the attack). `refund_order` is a write tool: it needs
approval. The approval bound the message (its method, tool and arguments, the endpoint)
and the approver was shown that alone; the same call sent again with headers the
approver never saw ran on it, though MCP servers act on headers as on arguments (the
GitHub MCP server's `X-MCP-Toolsets` and `X-MCP-Readonly`, a tenant or account header a
server routes by, a cookie). Every header that goes upstream is now part of what is
decided, approved and shown (messages.bound_headers), but MCP's own, which the exchange
checks (Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method/-Name/-Param-*),
and those that change nothing a server acts on (messages.UNBOUND_HEADERS).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_mcp_proxy import initialize, mcp_stack, messages_of, post, rpc

from pdp.domain.mcp_input import mcp_command
from proxies.http.mcp_codec import APPROVAL_REQUIRED

APPROVER = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
REFUND = {"name": "refund_order", "arguments": {"order_id": 11, "amount": 5}}
UNSEEN = {
    "X-Tenant-Id": "another-tenant",
    "X-MCP-Readonly": "false",
    "Cookie": "session=someone-elses",
}


@pytest.mark.integration
async def test_an_approval_does_not_cover_headers_it_was_not_shown(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await initialize(stack, alice)
        _, _, answer = await post(stack, alice, rpc(2, "tools/call", REFUND), session_id)
        error = messages_of(answer)[0]["error"]
        assert error["code"] == APPROVAL_REQUIRED
        approval_id = error["data"]["approval_id"]
        await stack.pdp.approvals.decide(approval_id, APPROVER, True, "fine")
        codes = {}
        for n, (name, value) in enumerate(UNSEEN.items()):
            _, _, answer = await post(
                stack, alice, rpc(3 + n, "tools/call", REFUND), session_id, {name: value}
            )
            codes[name] = messages_of(answer)[0].get("error", {}).get("code")
        # the approved call itself, with a tracing id and the proxy's own Prefer: wait
        extra = {"traceparent": "00-1", "Prefer": "wait=1"}
        _, _, answer = await post(stack, alice, rpc(9, "tools/call", REFUND), session_id, extra)
        approved = messages_of(answer)[0]
        pending = [r for r in stack.pdp.approvals.requests.values() if r.state == "pending"]
    assert codes == dict.fromkeys(UNSEEN, APPROVAL_REQUIRED)
    assert approved["result"]["content"][0]["text"] == "refunded 5 on order 11"
    assert stack.upstream.calls == ["refund_order"]
    shown = "\n".join(r.command for r in pending)
    assert "another-tenant" in shown and "x-mcp-readonly" in shown
    assert "someone-elses" not in shown


def test_the_policy_reads_a_message_with_its_headers() -> None:
    raw = (
        '{"endpoint":"/mcp","headers":[["x-tenant-id","t2"]],"method":"tools/call",'
        '"params":{"arguments":{},"name":"refund_order"}}'
    )
    command = mcp_command("mcp.call", raw, {})
    assert command["tool"] == "refund_order" and "malformed" not in command
    assert command["headers"] == [["x-tenant-id", "t2"]]
    for headers in ('{"x": "y"}', '[["x"]]', '[["x", 1]]', '"x"'):
        bad = raw.replace('[["x-tenant-id","t2"]]', headers)
        assert mcp_command("mcp.call", bad, {}).get("malformed"), headers
