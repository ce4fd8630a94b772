"""Probing the MCP exchange as a reader (brief P3): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`; the upstream is given
as a transcript (test_mcp_exchange's Agent), so each answer of a server is exact. Every
case is a reader's (mallory, outside pii-readers: tool results masked):

- content the masking did not read: an image's or audio's base64 `data` holding text,
  a text content or resource text that is JSON after a newline or a byte order mark (its
  fields, `password` say, went whole; so did JSON in a Markdown code block, as servers
  write it for a model, JSON followed by prose or by more JSON (JSON lines), and JSON
  nested past the reader's depth), a blob of UTF-16 text (NULs between the letters,
  with or without a byte order mark).
- what a server's message carries outside what was masked: a key JSON-RPC does not define
  beside a result, a server request's id, a notification's method name, an event's `id:`
  and `event:` fields; and the answers to requests that return no data by the policy
  (initialize's instructions, a ping's result or error data, tool and prompt descriptions)
  were passed as the server wrote them.
- a completion's values for an argument a field rule names (`phone`, `iban`, `password`:
  no detector finds them) went whole: the values came as a bare list, under no key; and
  completion/complete was allowed for any prompt or resource template, so a reader had
  the server suggest argument values of a prompt or resource the connection does not list.
- a `Last-Event-ID` was forwarded whatever it named: a server's event store (the SDK's
  interface keys events by id alone) replays the stream an id belongs to, another
  session's and another token's as well (here: sequential ids, the real SDK server).
- prompts/list, resources/list and resources/templates/list answers showed every prompt,
  resource and template the server has,
  where a tools/list answer shows only what the caller may call: a reader read the names
  (and descriptions) of prompts and resources the connection does not list.
- a resource URI was matched by prefix as written while a server resolves it normalised:
  `invoice://7/../../etc/passwd`, `%2e%2e`, `%2F`, escaped letters went upstream (with
  the shipped prefix `invoice://` nothing escapes the scheme; with a path prefix such as
  `file:///srv/public/`, a server joining or parsing the path reads outside it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest
from mcp.server.streamable_http import EventMessage, EventStore
from test_mcp_exchange import SSE, agent_of, chunks, event, read, sse_messages, tool_call
from test_mcp_proxy import INIT as SDK_INIT
from test_mcp_proxy import agent, mcp_stack, post, rpc

from pdp.domain.mcp_input import mcp_command
from proxies.http.mcp import Forward, Reply

pytestmark = pytest.mark.integration

SECRET_TEXT = "ann@example.com card 4111 1111 1111 1111"
PLAIN = ("ann@example.com", "4111 1111 1111 1111", "hunter2", "k-123")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _revealed(data: bytes) -> list[str]:
    """What a client would read in the answer: its text, and every base64 string in it
    decoded (standard or URL-safe, NULs dropped)."""
    views = [data.decode()]
    for message in sse_messages(data):
        stack: list[Any] = [message]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, str) and len(node) >= 8:
                for decode in (base64.b64decode, base64.urlsafe_b64decode):
                    try:
                        views.append(decode(node + "==").replace(b"\0", b"").decode("latin-1"))
                    except ValueError:
                        pass
    return [secret for secret in PLAIN if any(secret in view for view in views)]


async def _answers(stack: Any, results: dict[str, Any]) -> dict[str, bytes]:
    mallory = await agent_of(stack, "mallory@example.com", "readonly")
    await mallory.start("sid-m")
    out = {}
    for n, (name, result) in enumerate(results.items()):
        call = await mallory.send("POST", tool_call(10 + n, "find_customer", name="Ann"))
        assert isinstance(call, Forward), name
        answer = event({"jsonrpc": "2.0", "id": 10 + n, "result": result})
        out[name] = await read(await call.response(200, list(SSE), chunks(answer)))
    return out


def _resource(**contents: str) -> dict[str, Any]:
    resource = {"uri": "invoice://1", **contents}
    return {"content": [{"type": "resource", "resource": resource}]}


async def test_base64_and_json_texts_in_a_result_are_read_to_be_masked(tmp_path: Path) -> None:
    utf16 = SECRET_TEXT.encode("utf-16")  # with its byte order mark: not UTF-8
    fields = '{"password": "hunter2", "api_key": "k-123"}'
    deep = fields[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    results = {
        "image": {"content": [{"type": "image", "data": b64(SECRET_TEXT.encode()),
                               "mimeType": "image/png"}]},
        "audio": {"content": [{"type": "audio", "data": b64(SECRET_TEXT.encode()),
                               "mimeType": "audio/wav"}]},
        "json after a newline": {"content": [{"type": "text", "text": "\n " + fields}]},
        "json after a BOM": {"content": [{"type": "text", "text": "\ufeff" + fields}]},
        "resource json": _resource(mimeType="application/json", text="\r\n" + fields),
        "json in a code block": {"content": [{"type": "text",
                                              "text": "```json\n" + fields + "\n```"}]},
        "json blob in a code block": _resource(blob=b64(f"```\n{fields}\n```\n".encode())),
        "json then prose": {"content": [{"type": "text", "text": fields + "\n\n(1 row)"}]},
        "json lines": {"content": [{"type": "text", "text": "{}\n" + fields + "\n"}]},
        "json lines blob": _resource(blob=b64(f"{{}}\n{fields}\n".encode())),
        "json too deep": {"content": [{"type": "text", "text": deep}]},
        "utf-16 blob": _resource(blob=b64(utf16)),
        "utf-16le blob": _resource(blob=b64(SECRET_TEXT.encode("utf-16-le"))),
    }  # fmt: skip
    async with mcp_stack(tmp_path) as stack:
        answers = await _answers(stack, results)
    leaked = {name: _revealed(data) for name, data in answers.items()}
    assert leaked == {name: [] for name in results}, leaked
    # what was masked is still what the client expects: JSON stays JSON, an image an image
    text = sse_messages(answers["json after a newline"])[0]["result"]["content"][0]["text"]
    assert json.loads(text) == {"password": "[REDACTED]", "api_key": "[REDACTED]"}
    text = sse_messages(answers["json in a code block"])[0]["result"]["content"][0]["text"]
    assert text.startswith("```json\n") and text.endswith("\n```")
    image = sse_messages(answers["image"])[0]["result"]["content"][0]
    assert b"a***@example.com" in base64.b64decode(image["data"])


async def test_clean_images_and_blobs_go_as_they_came_others_are_withheld(tmp_path: Path) -> None:
    utf16 = SECRET_TEXT.encode("utf-16")
    png = b64(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x10 plain pixels")
    wrapped = b64(b"plain text, nothing sensitive, " * 4)
    results = {
        "png": {"content": [{"type": "image", "data": png, "mimeType": "image/png"}]},
        "text blob, MIME lines": _resource(blob=wrapped[:40] + "\r\n" + wrapped[40:]),
        "base64url blob": _resource(blob=base64.urlsafe_b64encode(b"\xfb\xff" + utf16).decode()),
    }
    async with mcp_stack(tmp_path) as stack:
        answers = await _answers(stack, results)
    image = sse_messages(answers["png"])[0]["result"]["content"][0]
    assert image["data"] == png
    blob = sse_messages(answers["text blob, MIME lines"])[0]["result"]["content"][0]
    assert base64.b64decode(blob["resource"]["blob"]) == base64.b64decode(wrapped)
    # base64 of another alphabet is not read as other bytes than the client reads: withheld
    other = sse_messages(answers["base64url blob"])[0]["result"]["content"][0]
    assert other["resource"]["blob"] == ""


LEAK = {"email": "ann@example.com", "note": "card 4111 1111 1111 1111"}


def _rpc(id_: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, **({"params": params} if params else {})}


def _answer(id_: int, **kv: Any) -> bytes:
    return event({"jsonrpc": "2.0", "id": id_, **kv})


TOOLS = {
    "tools": [
        {
            "name": "get_invoice",
            "description": "ask ann@example.com",
            "inputSchema": {
                "type": "object",
                "properties": {"email": {"type": "string", "default": "ann@example.com"}},
            },
        }
    ]
}
INIT = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}
SERVER_MESSAGES: dict[str, tuple[dict[str, Any], list[bytes]]] = {
    "extra key": (tool_call(1, "find_customer", name="Ann"), [_answer(1, result={}, extra=LEAK)]),
    "server request id": (
        _rpc(2, "ping"),
        [event({"jsonrpc": "2.0", "id": "ann@example.com", "method": "roots/list"}),
         _answer(2, result={})],
    ),
    "method name": (
        _rpc(3, "ping"),
        [event({"jsonrpc": "2.0", "method": "notifications/ann@example.com"}),
         _answer(3, result={})],
    ),
    "event fields": (
        _rpc(4, "ping"),
        [b"event: ann@example.com\nid: 4111 1111 1111 1111\ndata: "
         + json.dumps({"jsonrpc": "2.0", "id": 4, "result": {}}).encode() + b"\n\n"],
    ),
    "ping result": (
        _rpc(5, "ping"),
        [_answer(5, result={"note": "ann@example.com", "password": "hunter2"})],
    ),
    "ping error": (_rpc(6, "ping"), [_answer(6, error={"code": 1, "message": "x", "data": LEAK})]),
    "tools/list": (_rpc(7, "tools/list"), [_answer(7, result=TOOLS)]),
    "prompts/list": (
        _rpc(8, "prompts/list"),
        [_answer(8, result={"prompts": [{"name": "p", "description": "4111 1111 1111 1111"}]})],
    ),
    "initialize": (
        _rpc(9, "initialize", **INIT),
        [_answer(9, result={"protocolVersion": "2025-06-18", "instructions": "ann@example.com"})],
    ),
}  # fmt: skip


async def _server_says(stack: Any, who: Any) -> dict[str, bytes]:
    out = {}
    for name, (message, events) in SERVER_MESSAGES.items():
        sent = await who.send("POST", message)
        assert isinstance(sent, Forward), name
        out[name] = await read(await sent.response(200, list(SSE), chunks(*events)))
    return out


async def test_a_servers_messages_reach_a_masked_client_only_as_json_rpc_masked(
    tmp_path: Path,
) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        masked = await _server_says(stack, mallory)
        pia = await agent_of(stack, "pia@example.com", "readonly", "pii-readers")
        await pia.start("sid-p")
        plain = await _server_says(stack, pia)
    leaked = {name: _revealed(data) for name, data in masked.items()}
    assert leaked == {name: [] for name in SERVER_MESSAGES}, leaked
    # what a client needs still comes: every answer, the tool's schema with its properties
    for name, data in masked.items():
        ids = [m.get("id") for m in sse_messages(data) if "method" not in m]
        assert ids == [SERVER_MESSAGES[name][0]["id"]], (name, data)
    [listing] = sse_messages(masked["tools/list"])
    tool = listing["result"]["tools"][0]
    assert tool["inputSchema"]["properties"]["email"]["type"] == "string"
    assert tool["description"] == "ask a***@example.com"
    assert sse_messages(masked["extra key"]) == [{"jsonrpc": "2.0", "id": 1, "result": {}}]
    # a pii-reader's answers go as the server wrote them
    assert all(b"ann@example.com" in plain[n] for n in ("extra key", "tools/list", "initialize"))


def _complete(id_: int, argument: str) -> dict[str, Any]:
    ref = {"type": "ref/prompt", "name": "summarize_invoice"}
    return _rpc(id_, "completion/complete", ref=ref, argument={"name": argument, "value": ""})


SUGGESTED = {
    "phone": ["+44 20 7946 0958", "+44 20 7946 0959"],
    "iban": ["GB82 WEST 1234 5698 7654 32"],
    "password": ["hunter2"],
    "customer": ["Ann", "Bob"],
}


async def _completions(who: Any) -> dict[str, list[str]]:
    out = {}
    for n, (argument, values) in enumerate(SUGGESTED.items()):
        sent = await who.send("POST", _complete(40 + n, argument))
        assert isinstance(sent, Forward), argument
        answer = _answer(40 + n, result={"completion": {"values": values, "hasMore": False}})
        data = await read(await sent.response(200, list(SSE), chunks(answer)))
        out[argument] = sse_messages(data)[0]["result"]["completion"]["values"]
    return out


async def test_completions_of_a_sensitive_argument_come_back_empty(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        masked = await _completions(mallory)
        pia = await agent_of(stack, "pia@example.com", "readonly", "pii-readers")
        await pia.start("sid-p")
        plain = await _completions(pia)
    # (masked values would still be counted: test_mcp_probe_p28.py)
    assert masked == {"phone": [], "iban": [], "password": [], "customer": ["Ann", "Bob"]}
    assert plain == SUGGESTED


class CountingEventStore(EventStore):
    """Resumability as many servers keep it: every event of every session in one list,
    numbered 1, 2, 3..."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    async def store_event(self, stream_id: str, message: Any) -> str:
        self.events.append((str(len(self.events) + 1), stream_id, message))
        return self.events[-1][0]

    async def replay_events_after(self, last_event_id: str, send_callback: Any) -> str | None:
        if not last_event_id.isdigit() or not 0 < int(last_event_id) <= len(self.events):
            return None
        stream = self.events[int(last_event_id) - 1][1]
        for event_id, stream_id, message in self.events[int(last_event_id) :]:
            if stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


async def _resume(stack: Any, tok: str, session_id: str, last_event_id: str) -> tuple[int, str]:
    """A GET resuming from an event id: its status and what came within a second."""
    headers = {
        "Authorization": f"Bearer {tok}",
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": "2025-06-18",
        "Last-Event-ID": last_event_id,
    }
    got: list[str] = []
    async with (
        httpx2.AsyncClient(timeout=10) as http,
        http.stream("GET", stack.url, headers=headers) as response,
    ):

        async def take() -> None:
            async for text in response.aiter_text():
                got.append(text)

        try:
            await asyncio.wait_for(take(), 1.0)
        except TimeoutError:
            pass
        return response.status_code, "".join(got)


async def test_a_stream_resumes_only_from_an_event_this_session_was_handed(
    tmp_path: Path,
) -> None:
    store = CountingEventStore()

    async def accept(context: Any, params: Any) -> Any:
        return mcp_types.ElicitResult(action="accept", content={"go": True})

    async with mcp_stack(tmp_path, event_store=store) as stack:
        # pia, in pii-readers, looks up Ann's invoices (the server logs what it does)
        pia = stack.token("pia@example.com", "readonly", "pii-readers")
        async with agent(stack, pia, elicitation_callback=accept) as client:
            await client.call_tool("list_invoices", {"customer": "Ann"})
        theirs = [e for e, _, m in store.events if m is not None and "Ann" in str(m)]
        assert theirs
        # mallory, a reader with a session of her own, resumes her stream from pia's event
        mallory = stack.token("mallory@example.com", "readonly")
        status, headers, text = await post(stack, mallory, rpc(1, "initialize", SDK_INIT))
        assert status == 200
        session_id = headers["mcp-session-id"]
        mine = re.findall(r"^id: ?(\S+)", text, re.M)
        status, resumed = await _resume(stack, mallory, session_id, str(int(theirs[0]) - 1))
        assert "Ann" not in resumed and "invoices" not in resumed, resumed[:400]
        assert status == 400
        assert "Last-Event-ID" in resumed
        # her own events resume
        assert mine
        status, _ = await _resume(stack, mallory, session_id, mine[-1])
        assert status == 200
        # and a pii-reader's, whose answers pass unread (their event ids noted all the same)
        status, headers, text = await post(stack, pia, rpc(1, "initialize", SDK_INIT))
        hers = re.findall(r"^id: ?(\S+)", text, re.M)
        assert status == 200 and hers
        status, _ = await _resume(stack, pia, headers["mcp-session-id"], hers[-1])
        assert status == 200


ODD_URIS = (
    "invoice://7/../../etc/passwd",
    "invoice://7/%2e%2e/%2E%2E/secret",
    "invoice://public%2F..%2Fprivate",
    "invoice://%70rivate/7",  # an escaped letter: the server may read invoice://private/7
    "invoice://7%252e%252e",  # escaped twice
    "invoice://7/./8",
    "invoice://7\\..\\secret",
    "invoice://7 8",
    "invoice://7/\u0430",  # not an RFC 3986 URI (an IRI)
)


async def test_a_resource_uri_is_decided_in_the_form_a_server_resolves(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        sent = {}
        for n, uri in enumerate(("invoice://7", *ODD_URIS)):
            for method in ("resources/read", "resources/subscribe"):
                outcome = await mallory.send("POST", _rpc(60 + n, method, uri=uri))
                sent[(method, uri)] = outcome
                if isinstance(outcome, Forward):
                    outcome.abandon()
    forwarded = sorted({uri for (_, uri), o in sent.items() if isinstance(o, Forward)})
    assert forwarded == ["invoice://7"]
    for (_, uri), outcome in sent.items():
        if uri != "invoice://7":
            assert isinstance(outcome, Reply) and outcome.status == 400
            assert b"resource URI" in await read(outcome)
    # the PDP reads the same rule from the message itself: such a URI is malformed there
    for uri in ODD_URIS:
        raw = json.dumps({"endpoint": "/mcp", "method": "resources/read", "params": {"uri": uri}})
        assert mcp_command("mcp.call", raw, {}).get("malformed") is True, uri
    clean = json.dumps(
        {"endpoint": "/mcp", "method": "resources/read", "params": {"uri": "invoice://7"}}
    )
    assert "malformed" not in mcp_command("mcp.call", clean, {})


def _complete_ref(id_: int, ref: dict[str, str]) -> dict[str, Any]:
    return _rpc(id_, "completion/complete", ref=ref, argument={"name": "email", "value": "a"})


async def test_a_completion_is_decided_by_what_it_completes(tmp_path: Path) -> None:
    refs = {
        "listed prompt": {"type": "ref/prompt", "name": "summarize_invoice"},
        "listed template": {"type": "ref/resource", "uri": "invoice://{id}"},
        "unlisted prompt": {"type": "ref/prompt", "name": "export_customers"},
        "unlisted template": {"type": "ref/resource", "uri": "secrets://{name}"},
        "no ref": {"type": "ref/tool", "name": "get_invoice"},
    }
    async with mcp_stack(tmp_path) as stack:
        dba = await agent_of(stack, "dan@example.com", "dba", "pii-readers")
        await dba.start("sid-d")
        outcomes = {}
        for n, (name, ref) in enumerate(refs.items()):
            outcome = await dba.send("POST", _complete_ref(80 + n, ref))
            outcomes[name] = outcome
            if isinstance(outcome, Forward):
                outcome.abandon()
    forwarded = [name for name, o in outcomes.items() if isinstance(o, Forward)]
    assert forwarded == ["listed prompt", "listed template"]
    denied = json.loads(await read(outcomes["unlisted prompt"]))
    assert 'completion for prompt "export_customers"' in denied["error"]["message"]


async def test_prompt_and_resource_lists_show_only_what_the_caller_may_use(
    tmp_path: Path,
) -> None:
    prompts = {
        "prompts": [
            {"name": "summarize_invoice", "description": "a summary"},
            {"name": "export_customers", "description": "every customer, with cards"},
        ]
    }
    resources = {
        "resources": [
            {"uri": "invoice://7", "name": "invoice 7"},
            {"uri": "secrets://db-password", "name": "the database's password"},
            {"uri": "invoice://7/../../secrets", "name": "a way round"},
        ],
        "nextCursor": "c-2",
    }
    templates = {
        "resourceTemplates": [
            {"uriTemplate": "invoice://{id}", "name": "an invoice"},
            {"uriTemplate": "secrets://{name}", "name": "a secret"},
        ]
    }
    async with mcp_stack(tmp_path) as stack:
        shown = {}
        for who in ("mallory", "dan"):
            agent = await agent_of(
                stack, f"{who}@example.com", *(("dba", "pii-readers") if who == "dan" else ())
            )
            await agent.start(f"sid-{who}")
            for n, (method, result) in enumerate(
                (
                    ("prompts/list", prompts),
                    ("resources/list", resources),
                    ("resources/templates/list", templates),
                )
            ):
                sent = await agent.send("POST", _rpc(90 + n, method))
                assert isinstance(sent, Forward)
                data = await read(
                    await sent.response(200, list(SSE), chunks(_answer(90 + n, result=result)))
                )
                shown[(who, method)] = sse_messages(data)[0]["result"]
    for who in ("mallory", "dan"):
        assert [p["name"] for p in shown[(who, "prompts/list")]["prompts"]] == ["summarize_invoice"]
        listed = shown[(who, "resources/list")]
        assert [r["uri"] for r in listed["resources"]] == ["invoice://7"]
        assert listed["nextCursor"] == "c-2"
        templated = shown[(who, "resources/templates/list")]["resourceTemplates"]
        assert [t["uriTemplate"] for t in templated] == ["invoice://{id}"]


async def test_an_elicitation_form_keeps_its_properties_under_a_mask(tmp_path: Path) -> None:
    """Not a leak, the other way round: a reader's elicitation form lost its `email`
    property to the field rule (`"email": "[REDACTED]"`, no schema a client can render)."""
    form = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": "confirm the address ann@example.com",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "format": "email", "default": "ann@example.com"}
                },
            },
        },
    }
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        stream = await mallory.send("GET")
        assert isinstance(stream, Forward)
        data = await read(await stream.response(200, list(SSE), chunks(event(form))))
    [shown] = sse_messages(data)
    assert b"ann@example.com" not in data
    email = shown["params"]["requestedSchema"]["properties"]["email"]
    assert email["type"] == "string" and email["format"] == "email"
    assert shown["params"]["message"] == "confirm the address a***@example.com"
