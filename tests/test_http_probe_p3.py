"""Probing the HTTP proxy's request side as a reader (brief P3): what reached the upstream
other than as it was decided, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, the aiohttp upstream of http_upstream.py,
raw sockets for a client (the bytes are the attack). Each test is one way around a
decision that worked before its fix:

- a JSON body read one way by the policy and another by the upstream: a name given twice
  (`{"_method": "DELETE", "_method": "GET"}`: the policy was shown the last, a parser
  keeping the first acts on DELETE), a UTF-8 BOM or UTF-16 text (the proxy read them, the
  PDP's re-reading of the recorded text did not: the policy was shown no body at all),
  text typed as JSON that is not JSON, numbers the policy's input cannot hold (1e400 and
  NaN failed the PDP: 503; 9007199254740993 was shown as ...992), a lone surrogate (502);
  likewise a form in UTF-16 (its charset named:
  Django and ASP.NET decode it so, the policy was shown NUL-separated pairs);
- a body on a GET sent on a kept upstream connection: a server that reads no body on a
  GET (CL.0: a static file handler, a redirect) took `DELETE /admin HTTP/1.1` + `X: `
  from it as the start of the next request, and the proxy's next request on that
  connection (any client's) completed it — with the upstream credential in its headers;
- a body typed twice (`Content-Type: application/x-www-form-urlencoded` and
  `Content-Type: text/plain`, or both in one value): the policy was shown no body (the
  types joined name no form), the upstream (aiohttp: the first) read the form.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h11
import pytest
from http_upstream import SECRET, exchange, http_stack, raw_server, request, status
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mcp_exchange import RESULT, SSE, agent_of, chunks, event, read, tool_call
from test_mcp_proxy import mcp_stack

from portcullis.http_target import TargetRefused, normalise
from proxies.http import messages
from proxies.http.codec import BadRequest, Body, End, Head, RequestReader
from proxies.http.mcp import Forward, Reply
from proxies.http.upstream import request_head

pytestmark = pytest.mark.integration


JSON_BODIES = {
    "duplicate": ("application/json", b'{"_method": "DELETE", "_method": "GET"}'),
    "escaped duplicate": ("application/json", b'{"_method": "DELETE", "\\u005fmethod": "GET"}'),
    "nested duplicate": ("application/vnd.api+json", b'{"a": {"role": "admin", "role": "x"}}'),
    "bom": ("application/json", '\ufeff{"_method": "DELETE"}'.encode()),
    "utf-16": ("application/json; charset=utf-16", '{"_method": "DELETE"}'.encode("utf-16-le")),
    "utf-16 untold": ("application/json", '{"_method": "DELETE"}'.encode("utf-16-le")),
    "latin-1": ("application/json; charset=iso-8859-1", b'{"r\xf4le": "admin"}'),
    "not json": ("application/json", b'{"_method": "DELETE"}\x00'),
    "deep": ("application/json", b"[" * 60000),
    # the policy's input holds doubles: 503 (the PDP failed on them), or another number
    "infinite": ("application/json", b'{"amount": 1e400}'),
    "nan": ("application/json", b'{"amount": NaN}'),
    "past 2**53": ("application/json", b'{"id": 9007199254740993}'),
    # no UTF-8 text: a generic 502 (UnicodeEncodeError) before
    "lone surrogate": ("application/json", b'{"name": "\\ud800"}'),
    # (not JSON: a form in the charset it names, as Django and ASP.NET decode it)
    "utf-16 form": (
        "application/x-www-form-urlencoded; charset=utf-16le",
        "_method=DELETE".encode("utf-16-le"),
    ),
}


@pytest.mark.parametrize("case", sorted(JSON_BODIES))
async def test_a_json_body_read_more_than_one_way_is_refused(tmp_path, case):
    content_type, body = JSON_BODIES[case]
    async with http_stack(tmp_path) as s:
        answer = await exchange(
            s.proxy.port,
            request(s, "GET /echo/a HTTP/1.1", f"Content-Type: {content_type}\r\n", body),
        )
        # the same connection's reader still gets a JSON body read one way only
        plain = await exchange(
            s.proxy.port,
            request(s, "GET /echo/b HTTP/1.1", "Content-Type: application/json\r\n", b'{"a": 1}'),
        )
    assert status(answer) == 400, answer[:200]
    assert b"application/problem+json" in answer
    assert status(plain) == 200
    assert [r["raw_path"] for r in s.upstream.seen] == ["/echo/b"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


def escaped(name: str) -> str:
    """A JSON string of `name` with every character written as \\uXXXX (UTF-16 units)."""
    units = name.encode("utf-16-be")
    return (
        '"' + "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)) + '"'
    )


@given(json_values, st.text(max_size=3))
def test_json_body_reads_every_text_without_a_repeated_name_as_json_does(value, name):
    text = json.dumps({"v": value}, ensure_ascii=False)
    assert messages.json_body("application/json", text.encode()) == {"v": value}
    # the same object with a name given twice is refused, however the second is spelled
    doubled = "{" + json.dumps(name) + ": " + json.dumps(value) + ", " + escaped(name) + ": 1}"
    assert json.loads(doubled) == {name: 1}  # (what a last-wins reader shows the policy)
    with pytest.raises(BadRequest):
        messages.json_body("application/json; charset=utf-8", doubled.encode())


@pytest.mark.parametrize(
    "types",
    [
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Type: text/plain\r\n",
        "Content-Type: application/x-www-form-urlencoded, text/plain\r\n",
        "Content-Type: text/plain\r\nContent-Type: application/json\r\n",
    ],
    ids=["two-fields", "one-field", "json-second"],
)
async def test_a_body_typed_more_than_once_is_refused(tmp_path, types):
    async with http_stack(tmp_path) as s:
        answer = await exchange(
            s.proxy.port, request(s, "GET /echo/a HTTP/1.1", types, b"role=admin&n=1")
        )
    # the proxy's own problem: before, the bytes went upstream (aiohttp refuses two
    # Content-Type fields itself, with a text/plain 400; Node's parser keeps the first)
    assert status(answer) == 400 and b"application/problem+json" in answer, answer[:300]
    assert s.upstream.seen == []


async def test_a_request_id_equal_in_value_to_one_in_flight_does_not_unmask_it(
    tmp_path: Path,
) -> None:
    """JSON-RPC says 5 and "5" are two ids; a server keying its requests by text (a
    JavaScript object, a map of strings) takes them for one and may answer the call with
    "5". The ping "5" (read without a mask) must not be the handling that answer meets."""
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        call = await mallory.send("POST", tool_call(5, "find_customer", name="Ann"))
        assert isinstance(call, Forward) and call.reads
        for second in (
            {"jsonrpc": "2.0", "id": "5", "method": "ping"},
            [{"jsonrpc": "2.0", "id": "5", "method": "ping"}],
        ):
            reused = await mallory.send("POST", second)
            if isinstance(reused, Forward):
                answer = event({"jsonrpc": "2.0", "id": "5", "result": RESULT})
                got = await read(await reused.response(200, list(SSE), chunks(answer)))
                assert b"ann@example.com" not in got and b"4111 1111" not in got, got
            else:
                assert isinstance(reused, Reply)
        # a batch naming both spellings is refused whole
        both = [
            {"jsonrpc": "2.0", "id": 7, "method": "ping"},
            {"jsonrpc": "2.0", "id": "7", "method": "ping"},
        ]
        assert isinstance(await mallory.send("POST", both), Reply)


@contextlib.asynccontextmanager
async def cl0_upstream(seen: list[tuple[str, bool]]) -> AsyncIterator[int]:
    """An upstream that reads no body on a GET or a POST (Content-Length ignored, as CL.0
    back-ends do on static files and redirects): what follows the head is read as the next
    request (empty lines before it skipped, RFC 9112 §2.2). `seen`: each request line it
    reads and whether the upstream credential came with it."""

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.strip(b"\r\n"):
                continue  # (the empty lines a request line may follow)
            lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
            method = lines[0].split(" ")[0]
            seen.append((lines[0], any(SECRET in line for line in lines[1:])))
            length = next(
                (int(v) for n, _, v in (x.partition(":") for x in lines[1:])
                 if n.strip().lower() == "content-length"),
                0,
            )  # fmt: skip
            if method not in ("GET", "POST") and length:
                await reader.readexactly(length)
            close = any(x.lower() == "connection: close" for x in lines[1:])
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
                + (b"connection: close\r\n" if close else b"")
                + b"\r\nok"
            )
            await writer.drain()
            if close:
                break

    async with raw_server(converse) as port:
        yield port


@pytest.mark.parametrize(
    ("method", "groups", "smuggled"),
    [
        ("GET", ("readonly",), b"DELETE /admin HTTP/1.1\r\nX-Ignore: "),
        ("HEAD", ("readonly",), b"DELETE /admin HTTP/1.1\r\nX-Ignore: "),
        # a POST allowed (here: a dba's; a reader's once approved) whose body is a request
        ("POST", ("dba",), b"DELETE /admin HTTP/1.1\r\nX-Ignore: "),
        ("POST", ("dba",), b"\r\n\r\nDELETE /admin HTTP/1.0\r\nX: "),
    ],
    ids=["get", "head", "post", "post-leading-crlf"],
)
async def test_a_body_cannot_prefix_the_next_request_upstream(tmp_path, method, groups, smuggled):
    seen: list[tuple[str, bool]] = []
    async with (
        cl0_upstream(seen) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        line = f"{method} /static.css HTTP/1.1"
        first = await exchange(s.proxy.port, request(s, line, body=smuggled, groups=groups))
        # the next request (another connection; the same upstream connection if kept)
        second = await exchange(s.proxy.port, request(s, "GET /next HTTP/1.1"))
    assert status(first) == 200 and status(second) == 200
    assert not any(line.startswith("DELETE") for line, _ in seen), seen
    assert seen[-1] == ("GET /next HTTP/1.1", True)


FIELD_NAMES = [
    "X-A", "x_a", "Content-Type", "Accept", "Content-Length", "Transfer-Encoding",
    "Connection", "Host", "Te", "Trailer", "Expect", "X-HTTP-Method-Override", "Upgrade",
    "Keep-Alive", "Content-Encoding", "Authorization", "X-Forwarded-Host",
]  # fmt: skip
VALUE_PARTS = [
    *"abc ,;=\t\"5-01", "\x80", "\xff", "identity", "chunked", "ChUnKeD", "close",
    "keep-alive", "0", " 5", "5 ",
]  # fmt: skip
TAILS = [
    b"",
    b"hello",
    b"0\r\n\r\n",
    b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
]


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]),
    st.sampled_from(["/a", "/a?b=1&b=2", "/%2e%2e/a", "//a/./b", "http://h/a", "*", "/a;b"]),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
    st.lists(
        st.tuples(st.sampled_from(FIELD_NAMES), st.lists(st.sampled_from(VALUE_PARTS), max_size=5)),
        max_size=6,
    ),
    st.sampled_from([None, "length", "chunked", " ChUnKeD"]),
    st.integers(0, 6),
    st.booleans(),
    st.one_of(st.sampled_from(TAILS), st.binary(max_size=12)),
)
def test_what_the_codec_accepts_h11_reads_alike_and_the_upstream_gets_what_was_read(
    method, target, version, fields, framing, at, host, tail
):
    """Differential (h11, a strict HTTP/1.1 reader, as the reference): any request the
    proxy's codec reads, h11 reads as the same method and body, ending at the same byte;
    and the bytes the proxy sends upstream for it (upstream_request_headers, request_head)
    are read by h11 as exactly the normalised target, the headers and the body decided,
    with nothing after them — no request of its own for the upstream to find."""
    lines = [("Host", "h")] if host else []
    lines += [(name, "".join(parts)) for name, parts in fields]
    if framing == "length":
        lines.insert(min(at, len(lines)), ("Content-Length", "5"))
        tail = b"hello" + tail
    elif framing:
        lines.insert(min(at, len(lines)), ("Transfer-Encoding", framing))
        tail = b"5;a=b\r\nhello\r\n0\r\nAuthorization: x\r\n\r\n" + tail
    data = f"{method} {target} {version}\r\n".encode() + b"".join(
        f"{n}: {v}\r\n".encode("latin-1") for n, v in lines
    ) + b"\r\n" + tail  # fmt: skip
    codec = RequestReader()
    try:
        events = codec.feed(data)
    except BadRequest:
        return
    if not any(isinstance(e, End) for e in events):
        return  # (waiting for more)
    head = events[0]
    assert isinstance(head, Head)
    body = b"".join(e.data for e in events if isinstance(e, Body))

    def read(wire: bytes) -> tuple[Any, bytes, bytes]:
        reader = h11.Connection(h11.SERVER)
        reader.receive_data(wire)
        request, got = reader.next_event(), b""
        while not isinstance(event := reader.next_event(), h11.EndOfMessage):
            got += bytes(event.data)
        return request, got, bytes(reader.trailing_data[0])

    request, got, after = read(data)
    assert (request.method.decode(), got) == (head.method, body)
    assert after == codec.take_buffered()  # the next request starts at the same byte
    try:
        decided = normalise(head.target)
    except TargetRefused:
        return  # (answered 400 by the proxy, nothing sent)
    headers = [*messages.upstream_request_headers(head, "192.0.2.1", "http"), ("host", "up")]
    sent = body if body or head.method in ("POST", "PUT", "PATCH") else None
    request, got, after = read(request_head(head.method, decided.forward, headers, sent) + body)
    assert request.target.decode() == decided.forward
    read_fields = [
        (n.decode().lower(), v.decode("latin-1")) for n, v in request.headers.raw_items()
    ]
    assert [f for f in read_fields if f[0] != "content-length"] == [
        (n.lower(), v) for n, v in headers
    ]
    assert got == body and after == b""


CLIENT_ADDRESS_HEADERS = [
    "Client-IP", "X-Client-IP", "True-Client-IP", "X-Cluster-Client-IP", "CF-Connecting-IP",
    "Fastly-Client-IP", "X-Originating-IP", "X-Remote-IP", "X-Remote-Addr", "X-Forwarded",
    "Forwarded-For", "X-Forwarded-Server", "X-ProxyUser-Ip", "X_Client_IP", "True_Client_IP",
]  # fmt: skip


async def test_the_client_does_not_name_its_own_address_to_the_upstream(tmp_path):
    """The upstream trusts the proxy's connection: an address header on it is the proxy's
    word. A reader's True-Client-IP: 127.0.0.1 (an upstream's admin allow-list) went as
    sent; only X-Forwarded-For and Forwarded, which the proxy sets, may say it."""
    fields = "".join(f"{name}: 127.0.0.1\r\n" for name in CLIENT_ADDRESS_HEADERS)
    async with http_stack(tmp_path) as s:
        answer = await exchange(s.proxy.port, request(s, "GET /echo/a HTTP/1.1", fields))
    assert status(answer) == 200
    (seen,) = s.upstream.seen
    got = {name.decode().lower(): value.decode() for name, value in seen["headers"]}
    assert not {n.lower() for n in CLIENT_ADDRESS_HEADERS} & set(got), got
    assert got["x-forwarded-for"] == "127.0.0.1"  # (the test's own client address)


async def test_trailers_and_an_expected_body_go_nowhere_undecided(tmp_path):
    """Regression guards (held before this probe): a chunked body's trailer section
    (X-HTTP-Method-Override: DELETE, Authorization) is dropped, not decided and not sent;
    a DELETE announced with Expect: 100-continue is refused after its body came, and the
    body goes nowhere."""
    trailers = b"5\r\nhello\r\n0\r\nX-HTTP-Method-Override: DELETE\r\nAuthorization: x\r\n\r\n"
    async with http_stack(tmp_path) as s:
        chunked = request(s, "GET /echo/t HTTP/1.1", "Transfer-Encoding: chunked\r\n")
        trailed = await exchange(s.proxy.port, chunked + trailers)
        expected = await exchange(
            s.proxy.port,
            request(s, "DELETE /echo/x HTTP/1.1", "Expect: 100-continue\r\n", b"hello"),
        )
    assert status(trailed) == 200
    assert expected.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 ")
    (seen,) = s.upstream.seen
    assert (seen["method"], seen["raw_path"], seen["body"]) == ("GET", "/echo/t", b"hello")
    names = {name.decode().lower() for name, _ in seen["headers"]}
    assert not names & {"x-http-method-override", "authorization", "expect", "trailer"}


async def test_an_absolute_form_target_is_decided_as_the_path_it_names(tmp_path):
    """GET http://<Host>/echo/abs was denied (403) for everyone: the PDP re-reads the path
    from the recorded request line and reads no absolute-form. It is decided (and sent)
    as /echo/abs; one naming another host than Host is still a 400."""
    async with http_stack(tmp_path) as s:
        same = await exchange(
            s.proxy.port, request(s, "GET http://127.0.0.1/echo/abs?x=1 HTTP/1.1")
        )
        other = await exchange(s.proxy.port, request(s, "GET http://other-host/echo/a HTTP/1.1"))
        dots = await exchange(
            s.proxy.port, request(s, "GET http://127.0.0.1/a/%2e%2e/echo/d HTTP/1.1")
        )
    assert (status(same), status(other), status(dots)) == (200, 400, 200)
    assert [r["raw_path"] for r in s.upstream.seen] == ["/echo/abs?x=1", "/echo/d"]
