"""Probing the MCP exchange (brief P5): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP, the SDK's client through the proxy) or, where
the server's answer must be exact, a transcript (test_mcp_exchange's Agent). The attacker
is a reader (outside pii-readers: tool results masked):

- a tool printing a table with its columns aligned with spaces (`column -t`, a report),
  or `name   value` lines, under a header naming a masked column: the password and phone
  cells came back whole (only `name: value`, `name=value`, CSV and XML were read for the
  field rules, and no detector finds a password).
- a client's answer (a JSON-RPC response) went upstream whatever it answered: one to no
  request of the server's, or to one the proxy had dropped (the server's stream refused,
  or its id naming data), answered blind; and the policy, seeing only `response`, could
  not tell an answer to an elicitation from one to anything else the server asked.
- sessions were bounded per token (64) and 10,000 in all, the oldest forgotten: a subject
  holding fresh tokens began sessions without end (each one kept by the upstream too), and
  past 10,000 forgot other identities' sessions under them.
- an event stream's lines were cut by copying what followed each line, and a line not yet
  ended was searched again with every chunk: a server sending one event of many short
  lines, or a long line in small chunks, held the proxy's loop for seconds to minutes.
- the answer to a DELETE (the end of a session) was passed unread, in a masked session
  too: a server putting its own messages in it, or the answer still owed to a masked
  call (its event store replaying the stream), handed the reader the data in clear.

And what held, kept so it stays so: subscriptions/listen (2026-07-28) is denied cleanly
and the session goes on; the server's notifications on its GET stream (progress,
resources/updated, logging, elicitation/complete, tasks/status) are masked, field
names, detectors and space tables alike.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from test_mcp_exchange import (
    LEAK,
    SSE,
    Agent,
    agent_of,
    chunks,
    event,
    read,
    sse_messages,
    tool_call,
)
from test_mcp_proxy import INIT, agent, initialize, mcp_stack, messages_of, post, rpc, text_of

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.http.mcp import Forward, Reply, _mask_tree
from proxies.http.mcp_codec import DENIED, INVALID_REQUEST, TOO_MANY_SESSIONS, SseReader
from proxies.http.mcp_columns import masked_columns
from proxies.http.mcp_sessions import SessionBinding

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
        # values short of the column they belong to: not an empty password
        ("name          password\nBob hunter2", ""),
        ("name          password note\nBob hunter2", ""),
        ("password    name    note\nhunter 2    Ann", ""),
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


def test_long_lines_and_wide_tables_are_read_in_linear_time() -> None:
    """(A tool result may echo what a reader sends it: a line of spaces, a header of many
    columns must not cost the proxy the square of their length: about 0.2 s each on a
    loaded machine, minutes before 3484fad. No time is asserted — timings belong in
    bench/ — but a quadratic reader makes this test take minutes.)"""
    texts = [
        "password" + " " * 400_000,
        "a" + " " * 400_000,
        "id  " + "password  " * 40_000 + "\n" + "x   " * 40_001,
        ("password " + "x" * 20 + "\n") * 20_000,
    ]
    for text in texts:
        masked_columns(text, READER_MASK, Counter())


async def test_an_answer_goes_only_to_a_request_the_server_sent_this_client(
    tmp_path: Path,
) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, mallory)
        seen = len(stack.upstream.keys)
        for answer in (
            {"jsonrpc": "2.0", "id": 0, "result": {"action": "accept", "content": {"go": True}}},
            {"jsonrpc": "2.0", "id": "x", "error": {"code": -1, "message": "no"}},
            [{"jsonrpc": "2.0", "id": 1, "result": {}}, {"jsonrpc": "2.0", "id": 2, "result": {}}],
        ):
            status, _, text = await post(stack, mallory, answer, session_id)
            assert status == 400, text
            assert messages_of(text)[0]["error"]["code"] == INVALID_REQUEST
            assert "no request the server sent" in text
        assert len(stack.upstream.keys) == seen
        # the SDK's elicitation round trip: the answer goes, decided as what it answers
        asked: list[str] = []

        async def on_elicit(context: Any, params: Any) -> Any:
            asked.append(params.message)
            return mcp_types.ElicitResult(action="accept", content={"go": True})

        async with agent(stack, mallory, elicitation_callback=on_elicit) as client:
            result = await client.call_tool("list_invoices", {"customer": "Ann"})
        assert text_of(result).startswith("3 invoices of Ann")
        assert asked == ["list them all?"] and stack.upstream.elicited == ["accept"]
        decisions = [d.body for d in await stack.pdp.store.query(kind="decision")]
        answers = [json.loads(d["raw"]) for d in decisions if '"answers"' in d["raw"]]
        assert [a["answers"] for a in answers] == ["elicitation/create"]


async def _server_asks(mallory: Agent, request: dict[str, Any]) -> list[dict[str, Any]]:
    """A tools/call whose stream carries the server's request, then the call's answer."""
    call = await mallory.send("POST", {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                       "params": {"name": "find_customer",
                                                  "arguments": {"name": "Ann"}}})  # fmt: skip
    assert isinstance(call, Forward)
    done = {"jsonrpc": "2.0", "id": 5, "result": {"content": []}}
    return sse_messages(
        await read(await call.response(200, list(SSE), chunks(event(request), event(done))))
    )


async def test_a_request_the_proxy_dropped_is_not_answered_blind(tmp_path: Path) -> None:
    accept = {"action": "accept", "content": {"go": True}}
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        # an elicitation whose id names a customer: dropped in a masked session
        form = {"message": "refund?", "requestedSchema": {"type": "object"}}
        named = {"jsonrpc": "2.0", "id": "ann@example.com", "method": "elicitation/create",
                 "params": form}  # fmt: skip
        got = await _server_asks(mallory, named)
        assert [m.get("method") for m in got] == [None]
        refused = await mallory.send("POST", {"jsonrpc": "2.0", "id": "ann@example.com",
                                              "result": accept})  # fmt: skip
        assert isinstance(refused, Reply) and refused.status == 400
        # an elicitation passed: answered once
        asked = {**named, "id": 41}
        got = await _server_asks(mallory, asked)
        assert [m.get("method") for m in got] == ["elicitation/create", None]
        answer = {"jsonrpc": "2.0", "id": 41, "result": accept}
        assert isinstance(await mallory.send("POST", answer), Forward)
        again = await mallory.send("POST", answer)
        assert isinstance(again, Reply) and again.status == 400
        # a request no client answers (the server asking the client to call a tool)
        odd = {"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "x"}}
        got = await _server_asks(mallory, odd)
        assert [m.get("method") for m in got] == ["tools/call", None]
        denied = await mallory.send("POST", {"jsonrpc": "2.0", "id": 42, "result": {}})
        assert isinstance(denied, Reply) and denied.status == 403
        assert json.loads(await read(denied))["error"]["code"] == DENIED


async def test_an_identity_holds_a_bounded_number_of_sessions(tmp_path: Path) -> None:
    now = [0.0]
    async with mcp_stack(tmp_path) as stack:
        assert stack.proxy.mcp is not None
        stack.proxy.mcp.bindings = SessionBinding(per_identity=3, idle=60, clock=lambda: now[0])
        tokens = [stack.token("mallory@example.com", "readonly") for _ in range(4)]
        assert len(set(tokens)) == 4  # (fresh tokens of one subject: other owners)
        began = [await initialize(stack, tok) for tok in tokens[:3]]
        seen = len(stack.upstream.keys)
        for tok in tokens:  # a fourth, with any of its tokens: refused, nothing forwarded
            status, headers, text = await post(stack, tok, rpc(1, "initialize", INIT))
            assert status == 429 and headers["retry-after"] == "60", text
            error = messages_of(text)[0]["error"]
            assert error["code"] == TOO_MANY_SESSIONS and "DELETE" in error["message"]
        assert len(stack.upstream.keys) == seen
        # another identity is not held back
        await initialize(stack, stack.token("pia@example.com", "readonly"))
        # one ended: room for one more
        async with httpx2.AsyncClient(timeout=10) as http:
            ended = await http.delete(stack.url, headers={
                "Authorization": f"Bearer {tokens[0]}", "Mcp-Session-Id": began[0]})  # fmt: skip
        assert ended.status_code < 300
        began.append(await initialize(stack, tokens[3]))
        status, _, _ = await post(stack, tokens[1], rpc(1, "initialize", INIT))
        assert status == 429
        # one left idle gives way to the next, and is gone
        now[0] += 30
        await post(stack, tokens[2], rpc(5, "ping"), began[2])
        await post(stack, tokens[3], rpc(5, "ping"), began[3])
        now[0] += 45  # began[1] idle 75 s, the others 45 s
        began.append(await initialize(stack, tokens[1]))
        status, _, text = await post(stack, tokens[1], rpc(6, "ping"), began[1])
        assert status == 404, text
        status, _, text = await post(stack, tokens[2], rpc(6, "ping"), began[2])
        assert status == 200, text


async def test_the_answer_to_a_delete_is_read_in_a_masked_session(tmp_path: Path) -> None:
    note = {"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "data": LEAK}}  # fmt: skip
    owed = {"jsonrpc": "2.0", "id": 3, "result": {"content": [{"type": "text", "text": "x"}],
                                                  "structuredContent": LEAK}}  # fmt: skip
    stray = {"jsonrpc": "2.0", "id": 99, "result": {"structuredContent": LEAK}}
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        call = await mallory.send("POST", tool_call(3, "find_customer", name="Ann"))
        assert isinstance(call, Forward)  # its stream ends before its answer
        await read(await call.response(200, list(SSE), chunks(b"id: e-1\ndata: \n\n")))
        end = await mallory.send("DELETE", None)
        assert isinstance(end, Forward) and end.body is None
        events = chunks(event(note, "e-2"), event(owed, "e-3"), event(stray, "e-4"))
        data = (await read(await end.response(200, list(SSE), events))).decode()
        as_json = await mallory.send("DELETE", None)  # (the session is gone: 404 here)
        assert isinstance(as_json, Reply) and as_json.status == 404
    assert "ann@example.com" not in data and "4111 1111" not in data
    got = sse_messages(data.encode())
    assert [m.get("method") or m["id"] for m in got] == ["notifications/message", 3]
    assert got[1]["result"]["structuredContent"]["email"] == "[REDACTED]"


async def test_listen_is_denied_cleanly_and_stream_notifications_are_masked(
    tmp_path: Path,
) -> None:
    notes = [
        {"method": "notifications/progress", "params": {"progressToken": 1, "progress": 1,
         "message": "password   hunter2\nphone      +1 555 0100"}},
        {"method": "notifications/resources/updated",
         "params": {"uri": "invoice://ann@example.com/4111111111111111"}},
        {"method": "notifications/message", "params": {"level": "info",
         "logger": "password=hunter2",
         "data": {"password": "hunter2", "note": "name  phone\nAnn   +1 555 0100"}}},
        {"method": "notifications/elicitation/complete",
         "params": {"elicitationId": "ann@example.com"}},
        {"method": "notifications/tasks/status", "params": {"taskId": "t", "status": "completed",
         "statusMessage": "token: sk-live-abcdefghijklmnop"}},
    ]  # fmt: skip
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader, "auto") as client:
            with pytest.raises(MCPError) as denied:
                async with client.listen(resource_subscriptions=["invoice://1"]):
                    pass
            assert denied.value.code == DENIED and "subscriptions/listen" in denied.value.message
            assert text_of(await client.call_tool("get_invoice", {"invoice_id": 1})).startswith(
                "invoice 1"
            )
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        stream = await mallory.send("GET", None)
        assert isinstance(stream, Forward)
        sent = [event({"jsonrpc": "2.0", **n}, f"e-{i}") for i, n in enumerate(notes)]
        data = (await read(await stream.response(200, list(SSE), chunks(*sent)))).decode()
    assert len(sse_messages(data.encode())) == len(notes)
    for plain in ("hunter2", "555 0100", "ann@example.com", "4111111111111111", "sk-live-abc"):
        assert plain not in data, plain


def test_an_event_stream_is_read_in_linear_time() -> None:
    """(43 s of the proxy's loop for the first event before 6c60171, about 1 s now; no
    time is asserted — timings belong in bench/ — but a quadratic reader makes this test
    take minutes.)"""
    many = b"data: x\n" * 400_000 + b"\n"  # one event of 400,000 lines (3.2 MB)
    (one,) = SseReader().feed(many)
    assert len(one.data) == 2 * 400_000 - 1
    bare = b"data: x\r" * 400_000 + b"\r\r"  # CR line ends
    assert len(SseReader().feed(bare)) == 1
    long = b"data: " + b"x" * (12 << 20) + b"\n\n"  # one line, 512 bytes at a time
    reader, events = SseReader(), []
    for at in range(0, len(long), 512):
        events += reader.feed(long[at : at + 512])
    assert len(events) == 1
