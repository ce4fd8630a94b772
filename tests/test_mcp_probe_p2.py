"""Probing the MCP exchange as a reader (brief P2): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`; the upstream is given
as a transcript (test_mcp_exchange's Agent), so each misbehaviour of a server is exact:

- a server's own messages (notifications/message, a sampling request) went out unmasked
  until the session's first masked call: on the GET stream, on a POST's event stream and
  in a JSON answer, for a reader whose every tool result is masked;
- an `Mcp-Param-{Name}` header was checked for a value the arguments hold anywhere, not
  for the argument it names: `Mcp-Param-Tenant: Ann` went upstream for a body whose only
  Ann is the `name`, so a server or balancer routing by it acted on what was not decided.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_mcp_exchange import LEAK, SSE, agent_of, chunks, event, read, sse_messages
from test_mcp_proxy import mcp_stack

from proxies.http.mcp import Forward

pytestmark = pytest.mark.integration

JSON = [("Content-Type", "application/json")]
RAW = (b"ann@example.com", b"4111 1111")


def notification(n: int = 0) -> dict[str, Any]:
    params = {"level": "info", "data": {**LEAK, "n": n}}
    return {"jsonrpc": "2.0", "method": "notifications/message", "params": params}


ARGUMENTS = {"name": "Ann", "filter": {"region": "eu"}}
SAMPLING = {
    "jsonrpc": "2.0",
    "id": "s-1",
    "method": "sampling/createMessage",
    "params": {"messages": [{"role": "user", "content": {"type": "text", "text": str(LEAK)}}]},
}


async def test_a_servers_own_messages_are_masked_before_any_masked_call(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        # the server's own stream, opened first: nothing masked has been called yet
        stream = await mallory.send("GET")
        assert isinstance(stream, Forward)
        got = await read(
            await stream.response(200, list(SSE), chunks(event(notification()), event(SAMPLING)))
        )
        # a ping's event stream, the server talking before it answers
        ping = await mallory.send("POST", {"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert isinstance(ping, Forward)
        answer = {"jsonrpc": "2.0", "id": 1, "result": {}}
        pinged = await read(
            await ping.response(200, list(SSE), chunks(event(notification(1)), event(answer)))
        )
        # a JSON answer holding the server's notification beside the answer
        ping = await mallory.send("POST", {"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert isinstance(ping, Forward)
        document = json.dumps([notification(2), {"jsonrpc": "2.0", "id": 2, "result": {}}])
        as_json = await read(await ping.response(200, list(JSON), chunks(document.encode())))
        # a pii-reader's session is not masked
        pia = await agent_of(stack, "pia@example.com", "readonly", "pii-readers")
        await pia.start("sid-p")
        stream = await pia.send("GET")
        assert isinstance(stream, Forward)
        plain = await read(await stream.response(200, list(SSE), chunks(event(notification()))))
    for data in (got, pinged, as_json):
        assert not any(value in data for value in RAW), data[:300]
    shown = sse_messages(got)
    assert [m.get("method") for m in shown] == ["notifications/message", "sampling/createMessage"]
    assert shown[0]["params"]["data"]["email"] == "[REDACTED]"
    assert [m.get("id") for m in sse_messages(pinged)] == [None, 1]
    assert [m.get("id") for m in json.loads(as_json)] == [None, 2]
    assert b"ann@example.com" in plain


async def test_an_mcp_param_header_names_the_argument_it_carries(tmp_path: Path) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "find_customer", "arguments": ARGUMENTS},
    }
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        outcomes = {}
        for header, value in (
            ("Mcp-Param-Name", "Ann"),  # the argument `name`, as the body says
            ("mcp-param-region", "eu"),  # a nested property, statically reachable
            ("Mcp-Param-Tenant", "Ann"),  # no argument `tenant`: a value of another
            ("Mcp-Param-Region", "Ann"),  # `region` is eu, not Ann
            ("Mcp-Param-Name", "eu"),  # `name` is Ann
        ):
            sent = await mallory.send("POST", {**call, "id": len(outcomes) + 3}, **{header: value})
            outcomes[(header, value)] = sent
            if isinstance(sent, Forward):
                sent.abandon()
        # the same header twice, saying two things
        twice = await mallory.send(
            "POST", {**call, "id": 9}, **{"Mcp-Param-Name": "Ann", "MCP-PARAM-NAME": "eu"}
        )
    kinds = {k: isinstance(v, Forward) for k, v in outcomes.items()}
    assert kinds == {
        ("Mcp-Param-Name", "Ann"): True,
        ("mcp-param-region", "eu"): True,
        ("Mcp-Param-Tenant", "Ann"): False,
        ("Mcp-Param-Region", "Ann"): False,
        ("Mcp-Param-Name", "eu"): False,
    }
    assert not isinstance(twice, Forward)


async def test_an_mcp_param_header_follows_the_servers_x_mcp_header(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "filter": {"properties": {"region": {"type": "string", "x-mcp-header": "Zone"}}},
        },
    }
    call = {
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": "find_customer", "arguments": ARGUMENTS},
    }
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        listing = await mallory.send("POST", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert isinstance(listing, Forward)
        tools = {"tools": [{"name": "find_customer", "inputSchema": schema}]}
        answer = event({"jsonrpc": "2.0", "id": 2, "result": tools})
        await read(await listing.response(200, list(SSE), chunks(answer)))
        outcomes = {}
        for n, (header, value) in enumerate(
            (("Mcp-Param-Zone", "eu"), ("Mcp-Param-Zone", "us"), ("Mcp-Param-Name", "Ann"))
        ):
            sent = await mallory.send("POST", {**call, "id": 10 + n}, **{header: value})
            outcomes[(header, value)] = isinstance(sent, Forward)
            if isinstance(sent, Forward):
                sent.abandon()
    # Zone is the server's name for filter.region; `name` is declared as no header
    assert outcomes == {
        ("Mcp-Param-Zone", "eu"): True,
        ("Mcp-Param-Zone", "us"): False,
        ("Mcp-Param-Name", "Ann"): False,
    }


async def test_meta_goes_upstream_only_as_decided(tmp_path: Path) -> None:
    def call(id_: int, meta: Any) -> dict[str, Any]:
        params = {"name": "find_customer", "arguments": {"name": "Ann"}, "_meta": meta}
        return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}

    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        outcomes = {}
        for n, meta in enumerate(
            (
                {"progressToken": 7},
                {"progressToken": "p-1", "io.modelcontextprotocol/clientInfo": {"name": "m"}},
                # what a server may act on (a user, a tenant) that the policy never saw
                {"user": "admin", "tenant": "all"},
                # a progress token carrying more than a token
                {"progressToken": {"user": "admin"}},
            )
        ):
            sent = await mallory.send("POST", call(20 + n, meta))
            outcomes[json.dumps(meta)] = sent
            if isinstance(sent, Forward):
                sent.abandon()
    forwarded = [k for k, v in outcomes.items() if isinstance(v, Forward)]
    assert forwarded == [
        '{"progressToken": 7}',
        '{"progressToken": "p-1", "io.modelcontextprotocol/clientInfo": {"name": "m"}}',
    ]
    denied = outcomes['{"user": "admin", "tenant": "all"}']
    assert not isinstance(denied, Forward)
    text = (await read(denied)).decode()
    assert "_meta key" in text and "user" in text


async def test_an_answers_headers_are_masked_in_a_masked_session(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        ping = await mallory.send("POST", {"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert isinstance(ping, Forward)
        answer = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {}}).encode()
        headed = [*JSON, ("X-Customer-Email", "ann@example.com"), ("mcp-session-id", "sid-m")]
        reply = await ping.response(200, headed, chunks(answer))
    shown = dict((k.lower(), v) for k, v in reply.headers)
    assert "ann@example.com" not in str(reply.headers)
    assert shown["mcp-session-id"] == "sid-m" and shown["content-type"] == "application/json"
