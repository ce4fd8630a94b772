"""The MCP codec as transcripts (bytes in → messages out) and under Hypothesis, no sockets.

What an attacker with a valid reader token would try on the message codec: two readings
of one body (repeated keys, lone surrogates, a BOM, NaN, numbers that overflow), a tool
name hidden where the proxy does not look, batches mixing requests with answers or
repeating an id, routing headers that disagree with the body, an event stream cut
anywhere. The properties: parse_request answers a RequestBody or Refused, nothing else;
what is forwarded reads back as exactly what was decided; an event stream reads the same
however it is cut; session ids never cross owners.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.domain.mcp_input import mcp_command
from pdp.domain.policy_input import command_input
from portcullis import protocols
from portcullis.mcp import params_problem
from proxies.http import mcp_codec as codec
from proxies.http.mcp import prefer_wait
from proxies.http.mcp_sessions import SessionBinding, owner_of

JSON = "application/json"


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def call(tool: str = "get_invoice", id_: Any = 1, **arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": id_,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def refused(data: bytes, content_type: str = JSON) -> codec.Refused:
    with pytest.raises(codec.Refused) as caught:
        codec.parse_request(data, content_type)
    return caught.value


# -- requests as transcripts -------------------------------------------------------------


def test_a_tool_call_is_read_and_decided_without_its_id_or_meta() -> None:
    message = call(id_=7, invoice_id=3)
    message["params"]["_meta"] = {"progressToken": "p-1"}
    parsed = codec.parse_request(body(message), "application/json; charset=utf-8")
    assert not parsed.batch
    (read,) = parsed.messages
    assert (read.kind, read.id, read.method, read.target) == (
        "request",
        7,
        "tools/call",
        "get_invoice",
    )
    raw = read.command("/mcp")
    assert raw == (
        '{"endpoint":"/mcp","method":"tools/call",'
        '"params":{"arguments":{"invoice_id":3},"name":"get_invoice"}}'
    )
    # the same call with another id and progress token is the same command (approvals)
    other = call(id_="x", invoice_id=3)
    assert codec.parse_request(body(other), JSON).messages[0].command("/mcp") == raw
    # the PDP reads the same thing from that text
    assert mcp_command("mcp.call", raw, {}) == {
        "message": "request",
        "method": "tools/call",
        "endpoint": "/mcp",
        "tool": "get_invoice",
        "arguments": {"invoice_id": 3},
    }
    # the endpoint is part of the command: another path is another command
    assert mcp_command("mcp.call", read.command("/admin?x=1"), {})["endpoint"] == "/admin?x=1"


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "refund", "arguments": {}}},
        {"jsonrpc": "2.0", "method": "resources/read", "params": {"uri": "invoice://1"}},
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "id": 3, "method": "notifications/cancelled", "params": {}},
    ],
)
def test_a_request_without_an_id_or_a_notification_with_one_is_refused(
    message: dict[str, Any],
) -> None:
    """A tools/call sent as a notification is run by a generic JSON-RPC server and answered
    to nobody: one message read two ways (the proxy's: a notification; the server's: a
    call). MCP names its notifications notifications/..., and only they go without an id."""
    with pytest.raises(codec.Refused) as refused:
        codec.parse_request(body(message), JSON)
    assert refused.value.status == 400


def test_notifications_responses_and_batches() -> None:
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    (read,) = codec.parse_request(body(note), JSON).messages
    assert read.kind == "notification" and read.attributes == {"notification": True}
    seen = mcp_command("mcp.call", read.command("/mcp"), read.attributes)
    assert seen["message"] == "notification"
    answer = {"jsonrpc": "2.0", "id": 4, "result": {"roots": []}}
    (read,) = codec.parse_request(body(answer), JSON).messages
    raw = read.command("/mcp", "roots/list")
    assert read.kind == "response"
    assert raw == '{"answers":"roots/list","endpoint":"/mcp","result":{"roots":[]}}'
    assert mcp_command("mcp.call", raw, {}) == {
        "message": "response",
        "method": "",
        "endpoint": "/mcp",
        "answers": "roots/list",
    }
    # (what it answers is part of the text: without it, the text is malformed)
    bare = '{"endpoint":"/mcp","result":{"roots":[]}}'
    assert mcp_command("mcp.call", bare, {})["message"] == "malformed"
    for method, meaning in (("GET", "stream"), ("DELETE", "end")):
        raw = codec.canonical({"endpoint": "/mcp", "http": method})
        assert mcp_command("mcp.call", raw, {})["message"] == meaning
    batch = codec.parse_request(body([call(id_=1), call("find_customer", id_=2), note]), JSON)
    assert batch.batch and [m.id for m in batch.requests] == [1, 2]


R = b'{"jsonrpc":"2.0","id":1,'  # the start of a request
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (R + b'"method":"tools/call","params":{"name":"a","name":"b"}}', "repeats a key"),
        (b'{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}', "repeats a key"),
        (R + b'"method":"tools/call","params":{"name":"a\\ud800"}}', "lone surrogate"),
        (b"\xef\xbb\xbf" + PING, "byte order mark"),
        (R + b'"method":"ping","params":{"n":NaN}}', "not JSON"),
        (R + b'"method":"ping","params":{"n":1e999}}', "out of range"),
        (PING[:-1], "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'"ping"', "an object"),
        (b"[]", "empty batch"),
        (R + b'"method":"ping","extra":true}', "does not define"),
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', '"jsonrpc": "2.0"'),
        (b'{"id":1,"method":"ping"}', '"jsonrpc": "2.0"'),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', "string or an integer"),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', "string or an integer"),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', "string or an integer"),
        (R + b'"method":"ping","params":[1]}', "params are an object"),
        (R + b'"method":"tools/call","params":{}}', "names its name"),
        (R + b'"method":"tools/call","params":{"name":7}}', "names its name"),
        (R + b'"method":"tools/call","params":{"name":"a","arguments":[]}}', "an object"),
        (R + b'"method":"resources/read","params":{"uri":null}}', "names its uri"),
        (R + b'"method":"tools/ca ll"}', "visible ASCII"),
        (R + b'"method":""}', "visible ASCII"),
        (R + b'"result":{},"error":{}}', "neither"),
        (R + b'"method":"ping","result":{}}', "does not define"),
        (b"[" + PING + b',{"jsonrpc":"2.0","id":2,"result":{}}]', "mixes"),
        (b"[" + PING + b"," + PING + b"]", "repeats a request id"),
    ],
)
def test_what_could_be_read_two_ways_is_refused(data: bytes, why: str) -> None:
    assert why in str(refused(data))


def test_ids_of_different_types_are_different_ids() -> None:
    ping = {"jsonrpc": "2.0", "method": "ping"}
    batch = codec.parse_request(body([{**ping, "id": 1}, {**ping, "id": "1"}]), JSON)
    assert [m.id for m in batch.messages] == [1, "1"]


def test_limits() -> None:
    assert refused(b"{}" + b" " * codec.MAX_BODY_BYTES).status == 413
    deep = (
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":' + b"[" * 100 + b"]" * 100 + b"}}"
    )
    assert "deeper" in str(refused(deep))
    many = [dict(call(id_=i)) for i in range(codec.MAX_BATCH + 1)]
    assert "more than" in str(refused(body(many)))
    assert refused(body(call()), "text/plain").status == 415
    assert refused(body(call()), "application/json; charset=latin-1").status == 415


def test_what_is_forwarded_is_what_was_decided() -> None:
    message = call(invoice_id=3, note="caf\u00e9 \U0001f600")
    parsed = codec.parse_request(body(message), JSON)
    sent = codec.encode(parsed.messages[0].body)
    assert sent.isascii() and json.loads(sent) == message


# -- routing headers (2026-07-28) -----------------------------------------------------


def test_routing_headers_must_say_what_the_body_says() -> None:
    parsed = codec.parse_request(body(call("get_invoice", invoice_id=7, region="eu")), JSON)
    fine = [("Mcp-Method", "tools/call"), ("Mcp-Name", "get_invoice"), ("Mcp-Param-Region", "eu")]
    codec.check_routing_headers(fine, parsed)
    codec.check_routing_headers([("Mcp-Name", "=?base64?Z2V0X2ludm9pY2U=?=")], parsed)
    for wrong in (
        [("Mcp-Method", "tools/list")],
        [("Mcp-Name", "delete_customer")],
        [("Mcp-Name", "=?base64?ZGVsZXRlX2N1c3RvbWVy?=")],
        [("Mcp-Name", "=?base64?Z2V0X2ludm9pY2U?=")],  # not canonical base64
        [("Mcp-Name", "get_invoice"), ("mcp-name", "get_invoice")],
        [("Mcp-Param-Region", "us")],
    ):
        with pytest.raises(codec.Refused):
            codec.check_routing_headers(wrong, parsed)
    batch = codec.parse_request(body([call(id_=1), call(id_=2)]), JSON)
    with pytest.raises(codec.Refused):
        codec.check_routing_headers([("Mcp-Method", "tools/call")], batch)


def test_prefer_wait() -> None:
    assert prefer_wait([("Prefer", "wait=10")]) == 10
    assert prefer_wait([("prefer", "respond-async, wait=5")]) == 5
    assert prefer_wait([("Prefer", "handling=lenient")]) is None
    assert prefer_wait([("Prefer", "wait=-1")]) is None
    assert prefer_wait([]) is None


# -- the PDP's reading ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"method":"tools/call","params":{"name":"a"}}',
        '{"endpoint":7,"method":"ping"}',
        '{"endpoint":"/mcp","method":"tools/call","params":{"name":"a"},"extra":1}',
        '{"endpoint":"/mcp","method":"tools/call","params":{"name":"a"},"listing":"yes"}',
        '{"endpoint":"/mcp","method":"tools/list","params":{},"listing":true}',
        '{"endpoint":"/mcp","method":"tools/call","params":{"name":"a","name":"b"}}',
        '{"endpoint":"/mcp","endpoint":"/","method":"ping"}',
        '{"endpoint":"/mcp","method":7}',
        '{"endpoint":"/mcp","result":{},"error":{}}',
        '{"endpoint":"/mcp","http":"POST"}',
        '{"endpoint":"/mcp","http":"GET","method":"ping"}',
    ],
)
def test_the_pdp_hands_unreadable_commands_to_the_policy_as_malformed(raw: str) -> None:
    assert mcp_command("mcp.call", raw, {})["malformed"] is True


def test_the_kind_lands_under_input_command_mcp() -> None:
    """mcp.call is the `mcp` protocol's kind (entry point), so the PDP's command_input puts
    what mcp_input reads under input.command.mcp, whatever the proxy's connection type."""
    assert protocols.protocol_of("mcp.call").name == "mcp"  # type: ignore[union-attr]
    raw = codec.parse_request(body(call("refund_order", amount=5)), JSON).messages[0]
    command = command_input("mcp.call", raw.command("/mcp"), {"tool": "get_invoice"})
    assert command["kind"] == "mcp.call" and "http" not in command
    assert command["mcp"]["tool"] == "refund_order"  # read from the text, not the attributes
    assert command["mcp"]["arguments"] == {"amount": 5}


def test_a_listing_question_is_read_from_the_text_alone() -> None:
    asked = {"listing": True, "method": "tools/call", "params": {"name": "t"}}
    raw = codec.canonical({"endpoint": "/mcp", **asked})
    assert mcp_command("mcp.call", raw, {}) == {
        "message": "request",
        "method": "tools/call",
        "endpoint": "/mcp",
        "tool": "t",
        "listing": True,
    }
    # a proxy's attributes cannot make a call a listing
    call_raw = codec.parse_request(body(call("t")), JSON).messages[0].command("/mcp")
    assert "listing" not in mcp_command("mcp.call", call_raw, {"listing": True})


# -- server-sent events ---------------------------------------------------------------


def test_sse_events_with_every_line_ending() -> None:
    stream = (
        b'\xef\xbb\xbf: comment\r\nid: 1\r\nevent: message\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        b"id: 2\rdata: x\r\rdata: y\nretry: 5\nunknown: z\n\n"
    )
    events = codec.SseReader().feed(stream)
    assert [(e.data, e.fields) for e in events] == [
        ('{"a":\n1}', [("id", "1"), ("event", "message")]),
        ("x", [("id", "2")]),
        ("y", [("retry", "5")]),
    ]
    assert events[0].encode() == b'id: 1\nevent: message\ndata: {"a":\ndata: 1}\n\n'
    # a priming event has an id and no data
    (priming,) = codec.SseReader().feed(b"id: abc\ndata:\n\n")
    assert priming.data == "" and priming.encode() == b"id: abc\ndata: \n\n"


def test_sse_end_of_stream() -> None:
    reader = codec.SseReader()
    assert reader.feed(b"data: a\r\r") == []  # the last CR may start a CRLF
    assert [e.data for e in reader.finish()] == ["a"]
    reader = codec.SseReader()
    assert [e.data for e in reader.feed(b"data: a\r\rdata: b\r")] == ["a"]
    assert reader.finish() == []  # "b" has no blank line: discarded
    reader = codec.SseReader()
    assert reader.feed(b"data: c\n") == []
    assert reader.finish() == []


def test_sse_event_too_large() -> None:
    reader = codec.SseReader(limit=64)
    with pytest.raises(codec.SseTooLarge):
        reader.feed(b"data: " + b"x" * 100)
    reader = codec.SseReader(limit=64)
    with pytest.raises(codec.SseTooLarge):
        for _ in range(20):
            reader.feed(b"data: 12345\n")


# -- Hypothesis ---------------------------------------------------------------------------

EXACT = 2**53  # numbers a double holds exactly: the codec refuses others (strict_json)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-EXACT, EXACT)
    | st.floats(-EXACT + 1, EXACT - 1, allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
messages = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "method": st.sampled_from(
            ["tools/call", "ping", "tools/list", "notifications/initialized"]
        ),
    },
    optional={
        "id": st.integers(-EXACT, EXACT) | st.text(max_size=8),
        "params": st.fixed_dictionaries(
            {"name": st.text(max_size=12)},
            optional={"arguments": st.dictionaries(st.text(max_size=8), json_values, max_size=4)},
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_read_or_refused(data: bytes) -> None:
    try:
        parsed = codec.parse_request(data, JSON)
    except codec.Refused as exc:
        assert exc.status in (400, 413, 415) and exc.code in (-32700, -32600)
        return
    for message in parsed.messages:
        raw = message.command("/mcp")
        assert isinstance(mcp_command("mcp.call", raw, message.attributes), dict)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_valid_messages_round_trip_to_what_the_pdp_reads(message: dict[str, Any]) -> None:
    try:
        parsed = codec.parse_request(body(message), JSON)
    except codec.Refused:
        # only what the codec must refuse: a tools/call without a name, a request without
        # an id, a notification with one, params keys MCP does not define for the method
        notification = message["method"].startswith("notifications/")
        undefined = params_problem(message["method"], message.get("params", {})) is not None
        assert (
            (message["method"] == "tools/call" and "params" not in message)
            or notification == ("id" in message)
            or undefined
        )
        return
    (read,) = parsed.messages
    assert json.loads(codec.encode(read.body)) == message
    seen = mcp_command("mcp.call", read.command("/mcp"), read.attributes)
    assert seen["method"] == message["method"]
    if message["method"] == "tools/call":
        assert seen["tool"] == message["params"]["name"]
        assert seen["arguments"] == message["params"].get("arguments", {})


@settings(max_examples=120, deadline=None)
@given(st.lists(messages, min_size=1, max_size=5), st.data())
def test_an_event_stream_reads_the_same_however_it_is_cut(
    items: list[dict[str, Any]], data: st.DataObject
) -> None:
    ending = data.draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    stream = b"".join(
        b"id: %d" % i + ending + b"data: " + json.dumps(m).encode() + ending + ending
        for i, m in enumerate(items)
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = codec.SseReader()
    events = []
    start = 0
    for cut in [*cuts, len(stream)]:
        events.extend(reader.feed(stream[start:cut]))
        start = cut
    events.extend(reader.finish())
    assert [json.loads(e.data) for e in events] == items
    assert [e.fields for e in events] == [[("id", str(i))] for i in range(len(items))]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["s1", "s2", "s3"])), max_size=30)
)
def test_a_session_id_never_crosses_owners(steps: list[tuple[str, str]]) -> None:
    binding = SessionBinding(max_sessions=2, per_identity=1)
    first: dict[str, str] = {}
    for owner, session_id in steps:
        bound = binding.bind(session_id, owner)
        if bound is not None:
            first.setdefault(session_id, owner)
        usable = binding.session(session_id, owner)
        if usable is not None:
            assert usable.owner == owner
        for other in "abc":
            if other != owner and binding.session(session_id, other) is not None:
                # only after the id was forgotten (evicted) and bound again by `other`
                assert binding.session(session_id, owner) is None


def test_session_binding_by_owner_digest() -> None:
    key = b"k" * 32
    alice, mallory = owner_of("token-a", key), owner_of("token-m", key)
    assert alice != mallory and "token-a" not in alice
    binding = SessionBinding()
    assert binding.session("sid-1", alice) is None  # never handed out
    assert binding.bind("sid-1", alice) is not None
    assert binding.session("sid-1", alice) is not None
    assert binding.session("sid-1", mallory) is None
    assert binding.bind("sid-1", mallory) is None  # the upstream cannot hand it over either
    assert binding.bind("bad id", alice) is None
    binding.forget("sid-1")
    assert binding.session("sid-1", alice) is None
    # without an id each owner has its own unnamed session
    assert binding.session(None, alice) is not binding.session(None, mallory)


line_characters = st.sampled_from(" :x\u00e9") | st.characters(
    blacklist_characters="\r\n", blacklist_categories=("Cs",)
)
lines = st.text(line_characters, max_size=20)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(lines, min_size=1, max_size=3),
            st.lists(st.tuples(st.sampled_from(["id", "event", "retry"]), lines), max_size=3),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_an_event_the_proxy_writes_reads_back_as_itself(
    events: list[tuple[list[str], list[tuple[str, str]]]],
) -> None:
    written = b"".join(codec.SseEvent("\n".join(data), fields).encode() for data, fields in events)
    read = codec.SseReader().feed(written)
    expected = [("\n".join(data), fields) for data, fields in events]
    assert [(e.data, e.fields) for e in read] == expected
