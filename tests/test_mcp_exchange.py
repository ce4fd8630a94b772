"""The MCP exchange against answers a well-behaved server does not send: what an attacker
who controls what comes back (a compromised or confused upstream, a resumed stream) would
try. The exchange runs with a real PDP and the shipped policy, in a real agent session of
the HTTP proxy; the upstream's answer is given as bytes (a transcript), so every case is
exact: an answer resumed on the GET stream is masked and filtered as on its own POST, an
answer to nothing is dropped, an unreadable answer that had to be read is an error, a
session id another token owns is never handed over.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from test_mcp_proxy import mcp_stack

from proxies.http.mcp import Forward, Reply
from proxies.http.mcp_codec import DENIED, NOT_INSPECTABLE

ACCEPT = ("Accept", "application/json, text/event-stream")
JSON_TYPE = ("Content-Type", "application/json")
SSE = [("Content-Type", "text/event-stream")]
LEAK = {"email": "ann@example.com", "note": "card 4111 1111 1111 1111"}
RESULT = {"content": [{"type": "text", "text": json.dumps(LEAK)}], "structuredContent": LEAK}


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(reply: Reply) -> bytes:
    if isinstance(reply.body, bytes):
        return reply.body
    return b"".join([part async for part in reply.body])


def event(message: dict[str, Any], id_: str = "") -> bytes:
    head = f"id: {id_}\n" if id_ else ""
    return f"{head}data: {json.dumps(message)}\n\n".encode()


def sse_messages(data: bytes) -> list[dict[str, Any]]:
    out = []
    for block in data.decode().split("\n\n"):
        lines = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if lines and "".join(lines).strip():
            out.append(json.loads("\n".join(lines)))
    return out


class Agent:
    """One client of the proxy, speaking to the exchange directly."""

    def __init__(self, stack: Any, token: str, agent: Any) -> None:
        self.stack, self.token, self.agent = stack, token, agent
        self.session_id: str | None = None

    async def send(
        self, method: str, message: Any = None, target: str = "/mcp", **headers: str
    ) -> Reply | Forward:
        sent = [ACCEPT, JSON_TYPE, *headers.items()]
        if self.session_id:
            sent.append(("Mcp-Session-Id", self.session_id))
        body = json.dumps(message).encode() if message is not None else b""
        exchange = self.stack.proxy.mcp
        return await exchange.request(
            self.agent.session, self.token, method, sent, body, target=target
        )

    async def start(self, session_id: str) -> None:
        """initialize, answered by the upstream with this session id."""
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}
        forward = await self.send(
            "POST", {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
        )
        assert isinstance(forward, Forward)
        answer = {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-06-18"}}
        reply = await forward.response(
            200, [*SSE, ("mcp-session-id", session_id)], chunks(event(answer))
        )
        assert reply.status == 200
        self.session_id = session_id


async def agent_of(stack: Any, sub: str = "alice@example.com", *groups: str) -> Agent:
    token = stack.token(sub, *(groups or ("readonly",)))
    agent = await stack.proxy.session_for(token, "127.0.0.1:1", "pytest")
    return Agent(stack, token, agent)


def tool_call(id_: int, tool: str, **arguments: Any) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


async def test_an_answer_resumed_on_the_get_stream_is_masked_and_filtered(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = await agent_of(stack)
        await alice.start("sid-alice")
        call = await alice.send("POST", tool_call(1, "find_customer", name="Ann"))
        listing = await alice.send("POST", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert isinstance(call, Forward) and isinstance(listing, Forward)
        # neither POST stream delivers its answer (the call's primes an event id, then
        # ends): the client resumes on GET from that id
        await read(await call.response(200, list(SSE), chunks(b"id: e-1\ndata: \n\n")))
        stream = await alice.send("GET", None, **{"Last-Event-ID": "e-1"})
        assert isinstance(stream, Forward) and stream.body is None
        tools = [{"name": n, "inputSchema": {}} for n in ("get_invoice", "run_sql", "shadow")]
        upstream = [
            event({"jsonrpc": "2.0", "id": 1, "result": RESULT}, "e-2"),
            event({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}}, "e-3"),
            # an answer to a request nobody made in this session
            event({"jsonrpc": "2.0", "id": 99, "result": {"content": []}}),
            # a server notification: masked by the session's latest mask
            event({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": LEAK}}),
            b": keep-alive comment\n\n",
            b"data: not json at all\n\n",
        ]  # fmt: skip
        reply = await stream.response(200, list(SSE), chunks(*upstream))
        data = await read(reply)
        assert b"ann@example.com" not in data and b"4111 1111" not in data
        got = sse_messages(data)
        assert [m.get("id") for m in got] == [1, 2, None]
        assert got[0]["result"]["structuredContent"]["email"] == "[REDACTED]"
        assert json.loads(got[0]["result"]["content"][0]["text"])["email"] == "[REDACTED]"
        assert [t["name"] for t in got[1]["result"]["tools"]] == ["get_invoice"]
        assert got[2]["params"]["data"]["email"] == "[REDACTED]"
        assert b"id: e-2" in data and b"id: e-3" in data  # resumption ids kept
        assert b":\n\n" in data and b"keep-alive comment" not in data  # a bare keep-alive
        # an answer is delivered once: a second copy of it is dropped
        again = await stream.response(200, list(SSE), chunks(upstream[0]))
        assert sse_messages(await read(again)) == []


async def test_an_answer_owed_to_a_masked_call_is_read_on_another_posts_stream(
    tmp_path: Path,
) -> None:
    async with mcp_stack(tmp_path) as stack:
        pii = await agent_of(stack, "pia@example.com", "readonly", "pii-readers")
        await pii.start("sid-p")
        listing = await pii.send("POST", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert isinstance(listing, Forward) and listing.reads
        # the upstream's stream for that POST ends with no answer (a priming event only),
        # and the list comes on the stream of a later ping, which itself needs no reading
        priming = await read(await listing.response(200, list(SSE), chunks(b"id: p\ndata:\n\n")))
        assert sse_messages(priming) == []
        ping = await pii.send("POST", {"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert isinstance(ping, Forward) and ping.reads
        tools = [{"name": n, "inputSchema": {}} for n in ("get_invoice", "run_sql")]
        late = event({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})
        pong = event({"jsonrpc": "2.0", "id": 2, "result": {}})
        got = sse_messages(await read(await ping.response(200, list(SSE), chunks(late, pong))))
        assert [t["name"] for t in got[0]["result"]["tools"]] == ["get_invoice"]
        assert got[1] == {"jsonrpc": "2.0", "id": 2, "result": {}}
        # nothing owed any more: answers pass as they come
        again = await pii.send("POST", {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        assert isinstance(again, Forward) and not again.reads


async def test_an_answer_that_must_be_read_and_cannot_be_is_an_error(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = await agent_of(stack)
        await alice.start("sid-1")
        for body in (b"<html>oops ann@example.com</html>", b'{"a":1,"a":2}', b'{"no":"jsonrpc"}'):
            forward = await alice.send("POST", tool_call(5, "find_customer", name="Ann"))
            assert isinstance(forward, Forward)
            reply = await forward.response(
                200, [("Content-Type", "application/json")], chunks(body)
            )
            answer = json.loads(await read(reply))
            assert answer["id"] == 5 and answer["error"]["code"] == NOT_INSPECTABLE
            assert b"ann@example.com" not in await read(reply)
        # the same leak in another media type
        forward = await alice.send("POST", tool_call(7, "find_customer", name="Ann"))
        assert isinstance(forward, Forward)
        plain = [("Content-Type", "text/plain")]
        reply = await forward.response(200, plain, chunks(json.dumps(LEAK).encode()))
        data = await read(reply)
        assert b"ann@example.com" not in data
        assert json.loads(data)["error"]["code"] == NOT_INSPECTABLE
        # a GET stream answered with anything but an event stream
        stream = await alice.send("GET")
        assert isinstance(stream, Forward)
        reply = await stream.response(200, plain, chunks(json.dumps(LEAK).encode()))
        assert reply.status == 502 and b"ann@" not in await read(reply)
        # an event too large to hold
        forward = await alice.send("POST", tool_call(6, "find_customer", name="Ann"))
        assert isinstance(forward, Forward)
        huge = b"data: " + b"x" * (17 * 1024 * 1024) + b"\n\n"
        reply = await forward.response(200, list(SSE), chunks(huge[: 1 << 20], huge[1 << 20 :]))
        (error,) = sse_messages(await read(reply))
        assert error["id"] == 6 and error["error"]["code"] == NOT_INSPECTABLE


async def test_an_upstream_cannot_hand_one_clients_session_to_another(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = await agent_of(stack)
        await alice.start("sid-shared")
        mallory = await agent_of(stack, "mallory@example.com")
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "m"}}
        forward = await mallory.send(
            "POST", {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
        )
        assert isinstance(forward, Forward)
        answer = {"jsonrpc": "2.0", "id": 0, "result": {}}
        reply = await forward.response(
            200,
            [("Content-Type", "application/json"), ("mcp-session-id", "sid-shared")],
            chunks(json.dumps(answer).encode()),
        )
        assert reply.status == 502
        # and mallory presenting the id is refused before anything is decided
        mallory.session_id = "sid-shared"
        refused = await mallory.send("POST", {"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert isinstance(refused, Reply) and refused.status == 404
        # a session id of control characters or too long never binds
        for bad in ("a b", "x" * 300, "\x00"):
            mallory.session_id = bad
            refused = await mallory.send("POST", {"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert isinstance(refused, Reply) and refused.status == 400


async def test_each_request_of_a_pipeline_is_decided_with_its_own_endpoint(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        dba = await agent_of(stack, "dan@example.com", "dba")
        await dba.start("sid-d")
        for target in ("/", "/mcp/", "/MCP", "/mcp?x=1", "/admin"):
            reply = await dba.send("POST", {"jsonrpc": "2.0", "id": 3, "method": "ping"}, target)
            assert isinstance(reply, Reply), target
            answer = json.loads(await read(reply))
            assert answer["error"]["code"] == DENIED and answer["id"] == 3
        assert isinstance(
            await dba.send("POST", {"jsonrpc": "2.0", "id": 4, "method": "ping"}), Forward
        )
