"""Probing the MCP exchange (brief P7): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy (or raw
HTTP where the SDK would not send the message). The attacker is a reader (outside
pii-readers: tool results masked):

- a tool handing a customer's record back as bytes written as text in the usual ways
  other than one base64 string — base64 in MIME lines (Python's base64.encodebytes), a
  `data:` URI (base64 or percent-encoded), hex, or base64 inside a longer text (after a
  sentence, a Markdown image) — passed unread: the e-mail and the card number reached
  the reader, who decodes them.
- a request id is kept by the proxy until its answer comes (up to 256 a session), and a
  string id was as long as the body allowed (4 MiB): 24 calls of a tool that waits (an
  elicitation the reader never answers), each with a 4 MiB id, held 100 MB in one
  session's table, 1 GiB at its 256, 64 GiB over the identity's 64 sessions.
- params keys MCP does not define for a method were forwarded, and the SDK's public
  types (mcp_types, pydantic with populate_by_name) read `meta` as `_meta`,
  `input_responses` as `inputResponses`, `request_state` as `requestState`: a `_meta`
  key the connection's allow-list refuses went as `meta`, read by a server validating
  with those types as the refused key, which the policy never saw. (The SDK's own
  MCPServer 2.3.0 dispatch reads the wire names only: through it, the tool saw none of
  the three.) Params are now an allow-list per method.
- a client's roots (its answer to the server's roots/list) went upstream unread: a
  server bounding its tools by the client's roots, as the reference filesystem server
  does, read a file outside the directory it serves when the reader declared file:///.
  Roots are now shown to the policy (`roots`), which allows only the URI prefixes
  data.portcullis.mcp.roots lists for the connection (none by default).
- a percent-encoded JSON document (%7B%22password%22%3A...) came back whole, and an
  e-mail or a card number percent-escaped in a word (ann%40example.com) was found by no
  detector.
- a tool returning a record as name/value pairs (custom fields, settings, environment
  variables: {"name": "password", "value": "hunter2"}) passed the field rules, which
  match keys: the password and the phone came back whole (no detector finds them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
import test_mcp_proxy
from mcp.server.mcpserver import Context, MCPServer
from test_mcp_proxy import CUSTOMER, agent, initialize, mcp_stack, messages_of, post, rpc, text_of

from pdp.domain.mcp_input import mcp_command
from proxies.http.mcp_codec import DENIED, INVALID_REQUEST, MAX_ID
from proxies.http.mcp_sessions import McpSession

pytestmark = pytest.mark.integration

RECORD = json.dumps(CUSTOMER).encode()
PLAIN = ("ann@example.com", "4111 1111 1111 1111")

# how a tool writes bytes as text → how its reader reads them back
ENCODINGS: dict[str, tuple[Callable[[bytes], str], Callable[[str], bytes]]] = {
    "mime lines": (
        lambda b: base64.encodebytes(b).decode(),
        lambda s: base64.b64decode(s),  # (a MIME reader skips the line breaks)
    ),
    "data uri": (
        lambda b: "data:application/json;base64," + base64.b64encode(b).decode(),
        lambda s: base64.b64decode(s.split(",", 1)[1]),
    ),
    "data uri, percent-encoded": (
        lambda b: "data:application/json," + urllib.parse.quote_from_bytes(b),
        lambda s: urllib.parse.unquote_to_bytes(s.split(",", 1)[1]),
    ),
    "hex": (lambda b: b.hex(), bytes.fromhex),
    "HEX": (lambda b: b.hex().upper(), bytes.fromhex),
    # inside a longer text
    "base64 in a sentence": (
        lambda b: f"Export of Ann: {base64.b64encode(b).decode()} (3 rows)",
        lambda s: base64.b64decode(s.split(": ", 1)[1].rsplit(" (", 1)[0]),
    ),
    "markdown image": (
        lambda b: f"![export](data:application/json;base64,{base64.b64encode(b).decode()})",
        lambda s: base64.b64decode(s.split(",", 1)[1].rstrip(")")),
    ),
    "mime lines in a message": (
        lambda b: f"Attached:\n{base64.encodebytes(b).decode()}-- end",
        lambda s: base64.b64decode(s.split("\n", 1)[1].rsplit("--", 1)[0]),
    ),
}
# bytes with nothing in them: as they came
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" * 8
CLEAN = {
    "sha-256": hashlib.sha256(b"invoice 7").hexdigest(),
    "png data uri": "data:image/png;base64," + base64.b64encode(PNG).decode(),
    "png lines": base64.encodebytes(PNG).decode(),
}


def _encoding_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> str:
        up.calls.append(name)
        if name in CLEAN:
            return CLEAN[name]
        return ENCODINGS[name][0](RECORD * 3)

    return server


async def test_a_record_written_as_bytes_in_text_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _encoding_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            results = {n: await client.call_tool("find_customer", {"name": n}) for n in ENCODINGS}
            clean = {n: await client.call_tool("find_customer", {"name": n}) for n in CLEAN}
    assert stack.upstream.calls == [*ENCODINGS, *CLEAN]
    for name, result in results.items():
        decode = ENCODINGS[name][1]
        shown = [text_of(result), result.structured_content["result"]]
        read = [decode(text).decode() for text in shown]
        leaked = [p for p in PLAIN if any(p in text for text in read)]
        assert not leaked, (name, read[0])
        # what was masked is still what the client expects: the same encoding of JSON
        assert json.loads(read[0][: read[0].index("}") + 1])["email"] == "[REDACTED]", name
    for name, result in clean.items():
        assert text_of(result) == CLEAN[name], name
        assert result.structured_content == {"result": CLEAN[name]}, name


async def test_a_request_id_is_bounded_in_length(tmp_path: Path) -> None:
    call = rpc(None, "tools/call", {"name": "get_invoice", "arguments": {"invoice_id": 7}})
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, reader)
        status, _, text = await post(stack, reader, {**call, "id": "x" * (MAX_ID + 1)}, session_id)
        assert status == 400, text
        assert messages_of(text)[0]["error"]["code"] == INVALID_REQUEST
        assert stack.upstream.calls == []
        status, _, text = await post(stack, reader, {**call, "id": "x" * MAX_ID}, session_id)
        assert status == 200, text
        assert messages_of(text)[0]["id"] == "x" * MAX_ID
        assert stack.upstream.calls == ["get_invoice"]
    # a server's request of a longer id is not noted: the client's answer to it is refused
    mcp = McpSession("owner")
    mcp.ask("y" * (MAX_ID + 1), "elicitation/create")
    assert mcp.asking("y" * (MAX_ID + 1)) is None and not mcp.asked


def _spelling_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def get_invoice(invoice_id: int, ctx: Context) -> str:
        up.calls.append(json.dumps([ctx.input_responses, ctx.request_state], default=str))
        return f"invoice {invoice_id}"

    return server


async def test_params_are_read_only_under_the_keys_mcp_defines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _spelling_server)
    invoice = {"name": "get_invoice", "arguments": {"invoice_id": 7}}
    spelled: dict[str, dict[str, Any]] = {
        "_meta as meta": {"meta": {"acme/tenant": "other"}},
        "inputResponses as input_responses": {"input_responses": {"k": {"roots": []}}},
        "requestState as request_state": {"request_state": "state"},
    }
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, reader)
        # (the allow-list a `meta` key went around)
        meta = {**invoice, "_meta": {"acme/tenant": "other"}}
        status, _, text = await post(stack, reader, rpc(2, "tools/call", meta), session_id)
        assert "not allowed" in messages_of(text)[0]["error"]["message"]
        for n, (name, extra) in enumerate(spelled.items()):
            call = rpc(3 + n, "tools/call", {**invoice, **extra})
            status, _, text = await post(stack, reader, call, session_id)
            assert status == 400, (name, text)
            assert messages_of(text)[0]["error"]["code"] == INVALID_REQUEST, name
        assert stack.upstream.calls == []
        status, _, text = await post(stack, reader, rpc(9, "tools/call", invoice), session_id)
        assert status == 200 and stack.upstream.calls == ["[null, null]"], text
    # what a server validating with the SDK's types reads of such params
    read = mcp_types.CallToolRequestParams.model_validate({**invoice, **spelled["_meta as meta"]})
    assert read.meta == {"acme/tenant": "other"}
    # the PDP reads such a message as malformed whatever a proxy sends
    raw = json.dumps(
        {"endpoint": "/mcp", "method": "tools/call", "params": {**invoice, "meta": {}}}
    )
    assert mcp_command("mcp.call", raw, {}).get("malformed") is True


# MCP 2026-07-28's per-request envelope (no initialize, no session)
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
DEPLOY_NOTE = "deploy host db-7.internal, break-glass phrase: orange-cobalt-42\n"


def _roots_server(up: Any, served: Path) -> MCPServer:
    server = MCPServer("files")

    @server.tool()
    async def find_customer(name: str, ctx: Context) -> str:
        """Reads a file within the client's roots (its own directory when it declares
        none, or says nothing in time), as the reference filesystem server does."""
        bounds = [served]
        with anyio.move_on_after(3):
            declared = await ctx.session.list_roots()  # type: ignore[deprecated]
            bounds = [Path(str(r.uri).removeprefix("file://")) for r in declared.roots] or bounds
        up.calls.append(",".join(map(str, bounds)))
        path = Path(name).resolve()
        if not any(path.is_relative_to(bound) for bound in bounds):
            return "outside the roots"
        return path.read_text()

    return server


async def test_a_client_declares_only_the_roots_the_connection_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, outside = tmp_path / "served", tmp_path / "outside"
    served.mkdir()
    outside.mkdir()
    (outside / "deploy.txt").write_text(DEPLOY_NOTE)
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", lambda up: _roots_server(up, served))

    async def everything(context: Any) -> mcp_types.ListRootsResult:
        return mcp_types.ListRootsResult.model_validate({"roots": [{"uri": "file:///"}]})

    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader, list_roots_callback=everything) as client:
            result = await client.call_tool("find_customer", {"name": str(outside / "deploy.txt")})
        assert "orange-cobalt-42" not in text_of(result), text_of(result)
        assert text_of(result) == "outside the roots"
        assert stack.upstream.calls == [str(served)]  # the answer naming file:/// never came
        # 2026-07-28: roots answered among a retried call's inputResponses, decided alike
        call = {"name": "find_customer", "arguments": {"name": "x"}, "_meta": ENVELOPE}
        headers = {
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "find_customer",
        }
        for roots, allowed in (([{"uri": "file:///"}], False), ([], True)):
            answered = {**call, "inputResponses": {"r": {"roots": roots}}}
            _, _, text = await post(stack, reader, rpc(7, "tools/call", answered), None, headers)
            denied = messages_of(text)[0].get("error", {}).get("code") == DENIED
            assert denied is not allowed, text  # (allowed: forwarded, whatever the server says)


PAIRS = [
    {"name": "plan", "value": "gold"},
    {"name": "password", "value": "hunter2", "type": "string"},
    {"key": "Phone", "val": "5550100"},
]


def _pairs_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> dict[str, Any]:
        up.calls.append(name)
        return {"customer": name, "fields": PAIRS}

    return server


async def test_a_field_named_beside_its_value_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _pairs_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            result = await client.call_tool("find_customer", {"name": "Ann"})
    assert stack.upstream.calls == ["Ann"]
    for shown in (result.structured_content, json.loads(text_of(result))):
        assert shown is not None
        assert "hunter2" not in json.dumps(shown) and "5550100" not in json.dumps(shown)
        assert shown["fields"] == [
            {"name": "plan", "value": "gold"},
            {"name": "password", "value": "[REDACTED]", "type": "string"},
            {"key": "Phone", "val": "[REDACTED]"},
        ]


ESCAPED = {
    "json": urllib.parse.quote(json.dumps({"password": "hunter2", "email": "ann@example.com"})),
    "mailto": "write to mailto:ann%40example.com today",
    "escaped twice": "ann%2540example.com",
}


def _escaping_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> str:
        up.calls.append(name)
        return ESCAPED[name]

    return server


async def test_what_percent_escapes_hide_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _escaping_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            shown = {
                n: text_of(await client.call_tool("find_customer", {"name": n})) for n in ESCAPED
            }
    assert stack.upstream.calls == list(ESCAPED)
    for name, text in shown.items():
        read = urllib.parse.unquote(urllib.parse.unquote(text))
        assert "hunter2" not in read and "ann@example.com" not in read, (name, text)
    assert urllib.parse.unquote(shown["mailto"]) == "write to mailto:a***@example.com today"
