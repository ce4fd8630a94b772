"""Probing the HTTP proxy as a reader (brief P2): what got past a mask, kept as tests.

Real PDP with the shipped policy (a reader's answers are masked), the HTTP proxy, and a
raw upstream of the test's own that answers exactly the bytes each case needs (no
framework adds or fixes a header); real clients (aiohttp, curl). Each test is one way
around the mask that worked before its fix:

- an answer with no Content-Type, or one the masker does not read (octet-stream,
  x-foo, an image, multipart), or two Content-Types, went to the client as it was: the
  masker passed whatever it did not know. Now only what is masked is forwarded under a
  mask (an allow-list of media types); anything else with a body is a 502 naming its type;
- text with no charset whose bytes are UTF-16 (a NUL after every ASCII letter) was read
  by the detectors as text with NULs in it, and every value went past them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from http_upstream import http_stack, raw_server
from pdp_harness import token

from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
LEAK = b"mail ann@example.com card 4111 1111 1111 1111"
RAW = (b"ann@example.com", b"4111 1111 1111 1111")


def bearer(
    stack: Any, sub: str = "mallory@example.com", groups: tuple[str, ...] = ("readonly",)
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, sub, groups)}"}


def length(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def chunked(body: bytes) -> bytes:
    return b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


MULTIPART = (
    b"--cut\r\nContent-Type: application/json\r\n\r\n"
    + json.dumps({"email": "ann@example.com", "card": "4111 1111 1111 1111"}).encode()
    + b"\r\n--cut--\r\n"
)
# path -> the answer after its status line (fields, blank line, body)
ANSWERS: dict[str, bytes] = {
    "/untyped": length(LEAK),
    "/untyped-chunked": chunked(LEAK),
    "/octet": b"Content-Type: application/octet-stream\r\n" + length(LEAK),
    "/x-foo": b"Content-Type: application/x-foo\r\n" + chunked(LEAK),
    "/image": b"Content-Type: image/png\r\n" + length(LEAK),
    "/empty-type": b"Content-Type: \r\n" + length(LEAK),
    "/multipart": b"Content-Type: multipart/mixed; boundary=cut\r\n" + length(MULTIPART),
    # two types: the proxy must not mask by one and the client read by the other
    "/two-types": b"Content-Type: application/octet-stream\r\nContent-Type: text/plain\r\n"
    + length(LEAK),
    "/two-types-json": b"Content-Type: application/json\r\nContent-Type: application/x-foo\r\n"
    + length(json.dumps({"note": LEAK.decode()}).encode()),
    # text in UTF-16 with no charset named: every ASCII letter followed by a NUL
    "/utf16": b"Content-Type: text/plain\r\n" + length(LEAK.decode().encode("utf-16-le")),
    "/utf16-sse": b"Content-Type: text/event-stream\r\n"
    + chunked(b"data: " + LEAK.decode().encode("utf-16-le") + b"\n\n"),
    # what still goes: no body, or a type the masker reads
    "/no-body": b"Content-Length: 0\r\n\r\n",
    "/typed": b"Content-Type: Application/JSON ; charset=UTF-8\r\n"
    + length(json.dumps({"note": LEAK.decode()}).encode()),
}
# a reader's answer whose head carries what its body would: a redirect to the customer's
# page, a header naming the customer, a reason phrase of the server's own
STATUS = {"/redirect": b"302 Found ann@example.com", "/headed": b"200 card 4111 1111 1111 1111"}
ANSWERS["/redirect"] = (
    b"Location: /customers?email=ann@example.com\r\n"
    b'Content-Disposition: attachment; filename="ann@example.com.csv"\r\n'
    b"Content-Length: 0\r\n\r\n"
)
ANSWERS["/headed"] = (
    b"X-Customer-Email: ann@example.com\r\nX-Phone: +1 555 0100\r\n"
    b"Link: <https://x.example/c/4111 1111 1111 1111>; rel=self\r\n"
    b"Content-Type: application/json\r\n" + length(b'{"ok": true}')
)
WITHHELD = [
    "/untyped",
    "/untyped-chunked",
    "/octet",
    "/x-foo",
    "/image",
    "/empty-type",
    "/multipart",
    "/two-types",
    "/two-types-json",
    "/utf16",
]


@contextlib.asynccontextmanager
async def raw_upstream(close_delimited: bool = False) -> AsyncIterator[int]:
    """An upstream answering ANSWERS[path] byte for byte (an unknown path: 404); HEAD gets
    the same fields and no body. `close_delimited`: no framing, the body ends with the
    connection (HTTP/1.0 style)."""

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b" ", 2)
            size = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    size = int(line.split(b":", 1)[1])
            await reader.readexactly(size)
            path = target.split(b"?")[0].decode()
            answer = ANSWERS.get(path, b"Content-Length: 0\r\n\r\n")
            status = STATUS.get(path, b"200 OK" if path in ANSWERS else b"404 Not Found")
            if method == b"HEAD":
                answer = answer.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            if close_delimited:
                fields, _, body = answer.partition(b"\r\n\r\n")
                kept = [
                    f
                    for f in fields.split(b"\r\n")
                    if f and not f.lower().startswith((b"content-length", b"transfer-"))
                ]
                if b"Transfer-Encoding" in fields:
                    body = LEAK
                writer.write(b"HTTP/1.1 %s\r\nConnection: close\r\n" % status)
                writer.write(b"".join(f + b"\r\n" for f in kept) + b"\r\n" + body)
                await writer.drain()
                break
            writer.write(b"HTTP/1.1 %s\r\n%s" % (status, answer))
            await writer.drain()

    async with raw_server(converse) as port:
        yield port


async def fetch_all(
    url: str, headers: dict[str, str], paths: list[str], method: str = "GET"
) -> dict[str, tuple[int, bytes]]:
    got = {}
    async with aiohttp.ClientSession(timeout=TIMEOUT, auto_decompress=False) as client:
        for path in paths:
            try:
                async with client.request(method, url + path, headers=headers) as r:
                    got[path] = (r.status, await r.read())
            except aiohttp.ClientError as exc:  # cut: nothing more came
                got[path] = (-1, str(exc).encode())
    return got


@pytest.mark.parametrize("close_delimited", [False, True])
async def test_an_answer_the_masker_cannot_read_is_withheld_under_a_mask(
    tmp_path: Any, close_delimited: bool
) -> None:
    async with (
        raw_upstream(close_delimited) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        got = await fetch_all(s.url, bearer(s), [*WITHHELD, "/no-body", "/typed"])
        pii = bearer(s, "pia@example.com", ("readonly", "pii-readers"))
        unmasked = await fetch_all(s.url, pii, ["/untyped", "/octet"])
        heads = await fetch_all(s.url, bearer(s), ["/untyped", "/octet"], method="HEAD")
        await s.proxy.stop()  # (its recordings reach the PDP)
        recorded = [
            e["details"]
            for e in await session_events(s.pdp.store)
            if e["type"] == "command" and e["details"].get("path") == "/octet"
        ]
    for path in WITHHELD:
        status, body = got[path]
        assert not any(value in body for value in RAW), (path, body[:200])
        # (an answer with no length, close-delimited, is read as it streams: text found
        # unmaskable once its head went ends the connection instead)
        streamed = close_delimited and path in ("/utf16",)
        assert status == (-1 if streamed else 502), (path, status, body[:200])
        if streamed:
            continue
        assert b"cannot be masked" in body, (path, body)
    assert b"application/octet-stream" in got["/octet"][1]  # the problem names the type
    assert got["/no-body"] == (200, b"")
    status, body = got["/typed"]
    assert status == 200 and b"a***@example.com" in body and b"ann@example.com" not in body
    # no mask, no question: a pii-reader gets the bytes as they came
    assert unmasked["/untyped"] == (200, LEAK) and unmasked["/octet"] == (200, LEAK)
    # a HEAD carries no body: its fields go
    assert heads["/untyped"][0] == 200 and heads["/octet"][0] == 200
    # the evidence says what the client got, and why
    refused = [d for d in recorded if d.get("status") == 502]
    assert len(refused) == 1, recorded
    assert "application/octet-stream" in refused[0]["response_body"]


async def test_utf16_text_without_a_charset_is_not_passed_past_the_detectors(
    tmp_path: Any,
) -> None:
    async with (
        raw_upstream() as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        got = await fetch_all(s.url, bearer(s), ["/utf16", "/utf16-sse"])
        # curl as well: it shows the bytes it got
        curl = await asyncio.create_subprocess_exec(
            *("curl", "-s", "-H", f"Authorization: {bearer(s)['Authorization']}"),
            s.url + "/utf16",
            stdout=asyncio.subprocess.PIPE,
        )
        shown, _ = await curl.communicate()
    for _status, body in [*got.values(), (0, shown)]:
        readable = body.replace(b"\x00", b"")
        assert not any(value in readable for value in RAW), body[:200]
    assert got["/utf16"][0] == 502


async def test_an_answers_head_is_masked_as_its_body_is(tmp_path: Any) -> None:
    async with (
        raw_upstream() as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        heads = []
        for path, method in (("/redirect", "GET"), ("/headed", "GET"), ("/headed", "HEAD")):
            reader, writer = await asyncio.open_connection("127.0.0.1", s.proxy.port)
            auth = bearer(s)["Authorization"]
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            heads.append((await reader.read()).partition(b"\r\n\r\n")[0])
            writer.close()
        pii = bearer(s, "pia@example.com", ("readonly", "pii-readers"))
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            client.get(s.url + "/headed", headers=pii) as r,
        ):
            plain = r.headers.get("X-Customer-Email")
    for head in heads:
        assert not any(value in head for value in RAW), head
        assert b"555 0100" not in head, head
    assert heads[0].startswith(b"HTTP/1.1 302 Found\r\n") and b"Location: " in heads[0]
    assert plain == "ann@example.com"


PHONE = "+1 555 0100"
IBAN = "DE89 3704 0044 0532 0130 00"
# records a client reads apart that the masker read as one, or as text a field rule missed
RECORDS = {
    # SSE lines may end in a lone CR (HTML §9.2.6): two events the masker saw as one
    "/sse-cr": (
        b"text/event-stream",
        b'data: {"phone": "%s"}\r\rdata: {"iban": "%s"}\r\r' % (PHONE.encode(), IBAN.encode()),
    ),
    # JSON texts one after another on a line (jq, ijson's multiple_values read them)
    "/ndjson-run": (
        b"application/x-ndjson",
        b'{"phone": "%s"}{"iban": "%s"}\n' % (PHONE.encode(), IBAN.encode()),
    ),
    # a named value inside a line that opens with another name
    "/nested": (
        b"text/plain",
        b'  "customer": {"name": "Ann", "phone": "%s", "iban": "%s"},\n'
        % (PHONE.encode(), IBAN.encode()),
    ),
    "/pairs": (
        b"text/plain",
        b"id=7&phone=%s&iban=%s\n" % (PHONE.replace(" ", "+").encode(), IBAN.encode()),
    ),
    "/cr-lines": (b"text/plain", b"id: 7\rphone: %s\riban: %s\r" % (PHONE.encode(), IBAN.encode())),
}
for path, (kind, text) in RECORDS.items():
    ANSWERS[path] = b"Content-Type: " + kind + b"\r\n" + chunked(text)
    ANSWERS[path + "-whole"] = b"Content-Type: " + kind + b"\r\n" + length(text)


async def test_a_field_rule_holds_in_every_record_a_client_can_read(tmp_path: Any) -> None:
    paths = [p + tail for p in RECORDS for tail in ("", "-whole")]
    async with (
        raw_upstream() as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        got = await fetch_all(s.url, bearer(s), paths)
    leaked = {}
    for path, (status, body) in got.items():
        text = body.decode("utf-8", "replace").replace("+", " ")
        if status != 502 and ("555 0100" in text or "3704 0044" in text):
            leaked[path] = (status, text)
    assert leaked == {}


ANSWERS["/deep"] = b"Content-Type: application/json\r\n" + length(b"[" * 200_000 + b"]" * 200_000)
ANSWERS["/deep-lines"] = b"Content-Type: application/x-ndjson\r\n" + length(
    b"[" * 200_000 + b"]" * 200_000 + b"\n"
)


async def test_a_json_answer_nested_too_deep_is_a_problem_not_a_crash(tmp_path: Any) -> None:
    async with (
        raw_upstream() as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        got = await fetch_all(s.url, bearer(s), ["/deep", "/deep-lines", "/typed"])
    assert got["/deep"][0] == 502 and b"cannot be masked" in got["/deep"][1]
    assert got["/deep-lines"][0] in (200, 502)
    assert got["/typed"][0] == 200  # the connection and the proxy still serve


SMUGGLED = b'{"note": "an answer to no request"}'
STATUS["/switch"] = b"101 Switching Protocols"
ANSWERS["/switch"] = (
    b"Upgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + length(SMUGGLED)
)


async def test_an_unasked_protocol_switch_does_not_desync_the_upstream_pool(
    tmp_path: Any,
) -> None:
    async with (
        raw_upstream() as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", s.proxy.port)
        auth = bearer(s)["Authorization"]
        writer.write(
            f"GET /switch HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        switched = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        # the next request, another client's: its own answer, not what followed the 101
        pii = bearer(s, "pia@example.com", ("readonly", "pii-readers"))
        got = await fetch_all(s.url, pii, ["/typed"])
    assert switched.startswith(b"HTTP/1.1 502 "), switched[:100]
    status, body = got["/typed"]
    assert status == 200 and SMUGGLED not in body and b"ann@example.com" in body
