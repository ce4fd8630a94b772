"""Probing the MCP exchange as a reader (brief P4): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP) or, where a server's answer must be exact, a
transcript (test_mcp_exchange's Agent). Every case is a reader's (outside pii-readers:
tool results masked):

- a number no double holds exactly (an integer past 2**53, written as one or as a float
  such as 9007199254740993.0) went upstream in a tool's arguments: the policy's input
  holds doubles, the server reads the digits (the HTTP side refused such bodies, the MCP
  codec did not), so a rule on an argument's value judged another number than the one run.
- an opaque token a server hands the client to echo back (MCP 2026-07-28's multi-round-trip
  `requestState`, a list's `nextCursor`) went through a masked answer as written: a server
  sealing it with a sign-only codec (the SDK allows one) or writing a cursor as plain
  base64 handed the reader the data in it, which the mask never read.

- a string that is base64 as a whole under any other key than a blob's or an image's
  (a file a tool returns in its structuredContent, `{"export": "YW5uQGV4YW1wbGUuY29t"}`),
  and base64 inside JSON that a text content holds, went unread: the detectors saw
  letters, the reader decoded the customer's email and card.

- an MCP header spelled with `_` for `-` (`Mcp_Session_Id`, `Last_Event_ID`, `Mcp_Name`)
  was not the header the exchange checks, and went upstream as it came: a server reading
  headers as CGI, WSGI or PHP do (HTTP_MCP_SESSION_ID) took another token's session id
  from it, so a reader holding alice's session id called tools in alice's session.

- a tool returning JSON text as a `str` (MCPServer then answers with structuredContent
  `{"result": "<that text>"}`) had its text content masked field by field and its
  structuredContent not: only a `text` key was read as JSON, so `password`, `phone`,
  `api_key` (no detector finds them) went whole in the structured copy.

- JSON text encoded twice (a str serialised once more, a common slip: the text content is
  a JSON string holding the document) was read as prose, its fields whole.

- text that is not JSON (`phone: +1 555 0100` lines, a CSV table with a `phone` column,
  the prose around a JSON document) got the detectors alone, where the HTTP proxy's text
  bodies get the field rules too: a phone number, a password, an IBAN went whole.

And what held, kept so it stays so: a list answer past what the proxy filters (1,024
items) is an error, not passed unfiltered; the real SDK's multi-round-trip (2026-07-28: a
tool's question to the user comes back as an input_required result with a sealed
requestState, the client retries with its answer) runs through a masked session, the
question masked, the sealed state passed as it came; the SDK's older HTTP+SSE transport
(a GET /sse stream, messages posted to /messages/?session_id=...) reaches nothing through
an MCP connection that lists /mcp: its stream is refused, no message is forwarded; tool
and method names spelled otherwise (case, a trailing space or NUL, a Cyrillic letter, a
key repeated through an escape) are denied or refused, alone or batched with an allowed
call, and nothing of the batch runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Annotated, Any

import httpx2
import mcp_types
import pytest
import test_mcp_proxy
from mcp.client.sse import sse_client
from mcp.server.mcpserver import Elicit, MCPServer, Resolve
from pydantic import BaseModel
from test_mcp_exchange import SSE, agent_of, chunks, event, read, sse_messages, tool_call
from test_mcp_proxy import agent, initialize, mcp_stack, messages_of, post, text_of

from pdp.domain.mcp_input import mcp_command
from proxies.http.mcp import MAX_LISTED_TOOLS, Forward
from proxies.http.mcp_codec import NOT_INSPECTABLE, PARSE_ERROR

pytestmark = pytest.mark.integration

PLAIN = ("ann@example.com", "4111 1111 1111 1111", "hunter2")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


async def _answered_to_a_reader(tmp_path: Path, result: dict[str, Any]) -> bytes:
    """The SSE bytes a reader is handed when the upstream answers its find_customer call
    with `result`."""
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        call = await mallory.send("POST", tool_call(12, "find_customer", name="Ann"))
        assert isinstance(call, Forward)
        answer = event({"jsonrpc": "2.0", "id": 12, "result": result})
        return await read(await call.response(200, list(SSE), chunks(answer)))


async def test_a_number_no_double_holds_is_refused_before_it_is_decided(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, mallory)
        seen = len(stack.upstream.keys)
        head = b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_invoice",'
        for number in (b"9007199254740993", b"-9007199254740993", b"9007199254740993.0",
                       b"9.007199254740993e15", b"1e400"):  # fmt: skip
            body = head + b'"arguments":{"invoice_id":' + number + b"}}}"
            status, _, text = await post(stack, mallory, body, session_id)
            assert status == 400, (number, status, text)
            assert messages_of(text)[0]["error"]["code"] == PARSE_ERROR
        # a number a double holds exactly goes (2**53 itself, a fraction)
        for number in (b"9007199254740992", b"7"):
            body = head + b'"arguments":{"invoice_id":' + number + b"}}}"
            status, _, text = await post(stack, mallory, body, session_id)
            assert status == 200 and "invoice " + number.decode() in text, text
        assert stack.upstream.calls == ["get_invoice"] * 2
        assert len(stack.upstream.keys) == seen + 2
    # the PDP reads the command text the same way: such a text is malformed
    params = '{"arguments":{"n":9007199254740993},"name":"get_invoice"}'
    raw = '{"endpoint":"/mcp","method":"tools/call","params":' + params + "}"
    assert mcp_command("mcp.call", raw, {}).get("malformed") is True


async def test_an_opaque_token_carrying_data_is_withheld_from_a_masked_answer(
    tmp_path: Path,
) -> None:
    readable = json.dumps({"email": "ann@example.com", "card": "4111 1111 1111 1111"}).encode()
    fields = json.dumps({"customer": {"password": "hunter2"}}).encode()
    sealed = "v1." + b64url(bytes(range(7, 250, 3)) * 2)  # what an AEAD codec gives
    tokens = {
        "sign-only state": "v1." + b64url(readable) + ".c2lnbmF0dXJl",
        "field-named state": b64url(fields),
        "plain state": readable.decode(),
        "sealed state": sealed,
    }
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        got: dict[str, Any] = {}
        for n, (name, token) in enumerate(tokens.items()):
            call = await mallory.send("POST", tool_call(10 + n, "find_customer", name="Ann"))
            assert isinstance(call, Forward), name
            result = {"resultType": "input_required", "inputRequests": {}, "requestState": token}
            answer = event({"jsonrpc": "2.0", "id": 10 + n, "result": result})
            data = await read(await call.response(200, list(SSE), chunks(answer)))
            assert not [s for s in PLAIN if s in data.decode()], name
            got[name] = sse_messages(data)[0]["result"]["requestState"]
        # a resources/list page's cursor, base64 of what the server listed last
        listing = await mallory.send(
            "POST", {"jsonrpc": "2.0", "id": 30, "method": "resources/list"}
        )
        assert isinstance(listing, Forward)
        cursor = base64.b64encode(b'{"after": "ann@example.com"}').decode()
        page = {"resources": [{"uri": "invoice://1", "name": "i1"}], "nextCursor": cursor}
        answer = event({"jsonrpc": "2.0", "id": 30, "result": page})
        data = await read(await listing.response(200, list(SSE), chunks(answer)))
    listed = sse_messages(data)[0]["result"]
    assert listed["nextCursor"] == "" and listed["resources"][0]["uri"] == "invoice://1"
    assert got["sign-only state"] == got["field-named state"] == ""
    assert "ann@example.com" not in got["plain state"]
    # a sealed token reads as nothing: it goes as it came, so the round trip works
    assert got["sealed state"] == sealed


async def test_a_list_past_what_the_proxy_filters_is_an_error_not_passed(tmp_path: Path) -> None:
    """(held) A tools/list page longer than the proxy asks the PDP about is not passed
    unfiltered: the client gets an error, and no tool of it."""
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        listing = await mallory.send("POST", {"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
        assert isinstance(listing, Forward)
        tools = [{"name": "delete_customer", "inputSchema": {"type": "object"}}]
        tools += [{"name": f"t{n}", "inputSchema": {"type": "object"}} for n in range(1024)]
        assert len(tools) > MAX_LISTED_TOOLS
        answer = event({"jsonrpc": "2.0", "id": 7, "result": {"tools": tools}})
        data = await read(await listing.response(200, list(SSE), chunks(answer)))
    (message,) = sse_messages(data)
    assert message["error"]["code"] == NOT_INSPECTABLE and "delete_customer" not in data.decode()


async def test_base64_under_any_key_of_a_masked_result_is_read(tmp_path: Path) -> None:
    secret = b"ann@example.com card 4111 1111 1111 1111"
    csv = b"name,email\nAnn,ann@example.com\n"
    utf16 = "password hunter2 ann@example.com".encode("utf-16")
    exported = {
        "export": base64.b64encode(csv).decode(),
        "urlsafe": b64url(secret + b" >>>???"),  # with - and _
        "unpadded": base64.b64encode(secret).decode().rstrip("="),
        "listed": [base64.b64encode(secret).decode()],
        "utf16": base64.b64encode(utf16).decode(),
        "plain": "invoice20261205abcdefgh",  # base64 as well, reads as nothing: kept
    }
    result = {
        "content": [{"type": "text", "text": json.dumps(exported)}],
        "structuredContent": exported,
    }
    data = await _answered_to_a_reader(tmp_path, result)
    got = sse_messages(data)[0]["result"]
    shown = [got["structuredContent"], json.loads(got["content"][0]["text"])]
    for seen in shown:
        assert _decoded(seen["export"]) == b"name,email\nAnn,[REDACTED]\n"  # a CSV column
        for key in ("urlsafe", "unpadded"):
            assert b"ann@example.com" not in _decoded(seen[key]), key
            assert b"a***@example.com" in _decoded(seen[key]), key
        assert b"4111 1111 1111 1111" not in _decoded(seen["listed"][0])
        assert seen["utf16"] == ""  # not UTF-8: withheld, not masked in place
        assert seen["plain"] == "invoice20261205abcdefgh"


def _decoded(text: str) -> bytes:
    bare = text.rstrip("=")
    altchars = b"-_" if "-" in text or "_" in text else b"+/"
    return base64.b64decode(bare + "=" * (-len(bare) % 4), altchars=altchars)


class Confirm(BaseModel):
    go: bool


def ask_first() -> Elicit[Confirm]:
    return Elicit("go on with ann@example.com?", Confirm)


def _asking_server(up: Any) -> MCPServer:
    """find_customer (a read tool) asking the user first, through a resolver: on 2026-07-28
    an input_required result with the SDK's sealed requestState, earlier a mid-call
    elicitation/create."""
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str, ok: Annotated[Confirm, Resolve(ask_first)]) -> str:
        up.calls.append("find_customer")
        return f"{name}: ann@example.com, go={ok.go}"

    return server


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_sdks_multi_round_trip_runs_masked_through_the_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    asked: list[str] = []

    async def on_elicit(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return mcp_types.ElicitResult(action="accept", content={"go": True})

    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _asking_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader, mode, elicitation_callback=on_elicit) as client:
            result = await client.call_tool("find_customer", {"name": "Ann"})
        assert text_of(result) == "Ann: a***@example.com, go=True"
        assert asked == ["go on with a***@example.com?"]
        assert stack.upstream.calls and set(stack.upstream.calls) == {"find_customer"}
        assert ("2026-07-28" in stack.upstream.versions) == (mode == "auto")


class _CgiLike:
    """The SDK's server behind a gateway that reads header names as CGI, WSGI and PHP do
    (`_` and `-` one: HTTP_MCP_SESSION_ID), as many deployed MCP servers are."""

    def __init__(self, up: Any) -> None:
        self.server = _SDK_SERVER(up)

    def streamable_http_app(self, **options: Any) -> Any:
        app = self.server.streamable_http_app(**options)

        async def folded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = [(k.replace(b"_", b"-"), v) for k, v in scope["headers"]]
                scope = {**scope, "headers": headers}
            await app(scope, receive, send)

        return folded


_SDK_SERVER = test_mcp_proxy.mcp_server


async def test_an_mcp_header_spelled_with_underscores_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _CgiLike)
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        mallory = stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, alice)
        seen = len(stack.upstream.keys)
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "get_invoice", "arguments": {"invoice_id": 1}}}  # fmt: skip
        for name in ("Mcp_Session_Id", "MCP_SESSION_ID", "mcp-session_id"):
            status, _, text = await post(stack, mallory, call, None, {name: session_id})
            # (on the tree before: forwarded, and run in alice's session — its answer, which
            # names alice's session, then refused with a 502)
            assert len(stack.upstream.keys) == seen, (name, status, text)
            assert status == 400, (name, status, text)
        status, _, _ = await post(stack, alice, call, session_id, {"Last_Event_ID": "1"})
        assert status == 400
        status, _, _ = await post(stack, alice, call, session_id, {"Mcp_Name": "run_sql"})
        assert status == 400
        assert len(stack.upstream.keys) == seen and stack.upstream.calls == []
        # with its dashes, the header is the one checked: another token's is unknown (404)
        status, _, _ = await post(stack, mallory, call, session_id)
        assert status == 404
        status, _, text = await post(stack, alice, call, session_id)
        assert status == 200 and "invoice 1" in text


ACCOUNT = {"name": "Ann", "password": "hunter2", "phone": "+1 555 0100", "api_key": "k-123"}


def _json_text_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> str:  # JSON text as a str: structuredContent.result
        up.calls.append("find_customer")
        return json.dumps(dict(ACCOUNT, name=name))

    return server


async def test_json_text_in_structured_content_is_masked_as_its_text_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _json_text_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            result = await client.call_tool("find_customer", {"name": "Ann"})
    assert stack.upstream.calls == ["find_customer"]
    structured = result.structured_content
    assert structured is not None and isinstance(structured.get("result"), str)
    for shown in (text_of(result), structured["result"]):
        fields = json.loads(shown)
        assert fields["name"] == "Ann"
        assert fields["password"] == fields["phone"] == fields["api_key"] == "[REDACTED]"
        assert not [s for s in ("hunter2", "555 0100", "k-123") if s in shown]


async def test_json_encoded_twice_is_masked_as_json(tmp_path: Path) -> None:
    twice = json.dumps(json.dumps(ACCOUNT))
    result = {
        "content": [{"type": "text", "text": twice}, {"type": "text", "text": '"Hi," I said'}],
        "structuredContent": {"result": twice},
    }
    data = await _answered_to_a_reader(tmp_path, result)
    got = sse_messages(data)[0]["result"]
    for shown in (got["content"][0]["text"], got["structuredContent"]["result"]):
        fields = json.loads(json.loads(shown))
        assert fields["password"] == fields["api_key"] == "[REDACTED]", shown
        assert fields["name"] == "Ann"
    assert got["content"][1]["text"] == '"Hi," I said'  # a quotation, nothing found: as it came


class _SseServer:
    """The SDK's server over its older HTTP+SSE transport (2024-11-05)."""

    def __init__(self, up: Any) -> None:
        self.server = _SDK_SERVER(up)

    def streamable_http_app(self, **options: Any) -> Any:
        return self.server.sse_app()


async def test_the_older_sse_transport_reaches_nothing_but_the_listed_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _SseServer)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        url = stack.url.removesuffix("/mcp") + "/sse"
        headers = {"Authorization": f"Bearer {reader}"}
        with pytest.raises(BaseException) as failed:  # (the SDK raises an exception group)
            async with sse_client(url, headers=headers, timeout=10) as streams:
                await asyncio.wait_for(streams[0].receive(), 10)
        assert "403" in repr(failed.value) or "403" in str(failed.value.__cause__), failed
        # the messages endpoint, with any session id: not an MCP endpoint of the connection
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        async with httpx2.AsyncClient(timeout=10) as http:
            response = await http.post(
                url.removesuffix("/sse") + "/messages/?session_id=" + "0" * 32,
                json=body,
                headers={**headers, "Accept": "application/json, text/event-stream"},
            )
        assert "is not an MCP endpoint" in response.text
        assert stack.upstream.keys == [] and stack.upstream.calls == []


async def test_text_that_is_not_json_gets_the_field_rules(tmp_path: Path) -> None:
    texts = {
        "lines": "name: Ann\nphone: +1 555 0100\npassword = hunter2\nnote: ann@example.com",
        "csv": "name,phone,iban\nAnn,+1 555 0100,DE89370400440532013000\n",
        "markdown": "| name | phone |\n|---|---|\n| Ann | +1 555 0100 |",
        "after json": '{"name": "Ann"}\nphone: +1 555 0100',
        "prose": "Ann paid invoice 7 on time.",
        "bare value": "phone",  # (a value, {"via": "phone"}: no column, kept)
    }
    result = {"content": [{"type": "text", "text": t} for t in texts.values()]}
    data = await _answered_to_a_reader(tmp_path, result)
    shown = [c["text"] for c in sse_messages(data)[0]["result"]["content"]]
    got = dict(zip(texts, shown, strict=True))
    for secret in ("555 0100", "hunter2", "DE8937", "ann@example.com"):
        assert secret not in data.decode(), secret
    assert got["lines"].startswith("name: Ann\nphone: [REDACTED]\npassword = [REDACTED]")
    assert got["csv"] == "name,phone,iban\nAnn,[REDACTED],[REDACTED]\n"
    assert got["markdown"] == ""  # a column whose cells cannot be told: withheld
    assert got["after json"].endswith("phone: [REDACTED]")
    assert got["prose"] == texts["prose"] and got["bare value"] == "phone"


async def test_names_spelled_otherwise_are_denied_and_their_batch_with_them(
    tmp_path: Path,
) -> None:
    def call(id_: int, name: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": id_, "method": "tools/call",
                "params": {"name": name, "arguments": {"customer_id": 7}}}  # fmt: skip

    names = ["Delete_customer", "delete_customer ", "delete_customer\u0000",
             "d\u0435lete_customer", "delete_customer\u200b", "DELETE_CUSTOMER"]  # fmt: skip
    async with mcp_stack(tmp_path) as stack:
        mallory = stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, mallory)
        seen = len(stack.upstream.keys)
        for n, name in enumerate(names):
            allowed = {**call(100 + n, "get_invoice"), "params": {"name": "get_invoice",
                       "arguments": {"invoice_id": 1}}}  # fmt: skip
            status, _, text = await post(stack, mallory, [allowed, call(n, name)], session_id)
            answers = {m["id"]: m for m in messages_of(text)}
            assert status == 200 and answers[n]["error"]["code"] == -32010, (name, text)
            assert "another message of its batch" in answers[100 + n]["error"]["message"]
        for method in ("Tools/call", "tools/Call", "tools//call", "tools/call/"):
            other = {**call(50, "get_invoice"), "method": method}
            status, _, text = await post(stack, mallory, other, session_id)
            assert messages_of(text)[0]["error"]["code"] in (-32010, -32600), (method, text)
        repeated = (b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":'
                    b'"get_invoice","n\\u0061me":"delete_customer","arguments":{}}}')  # fmt: skip
        status, _, _ = await post(stack, mallory, repeated, session_id)
        assert status == 400
        assert len(stack.upstream.keys) == seen and stack.upstream.calls == []
