"""Probing the HTTP proxy as a reader and as a dba outside pii-readers (brief P7): what got
past a mask, the credential guard or the decision, or held every other session up, kept
as tests.

Real PDP with the shipped policy, the HTTP proxy, and an upstream of the test's own (an
aiohttp app, or a raw server answering exactly what a case needs); real clients (raw
sockets: the bytes are the attack). Each test is one way around a guardrail that worked
before its fix:

- a large request body was read for the policy (decoded, split into words, each escape
  undone: request_words) on the event loop that serves every session of the process: 8
  MiB of `a&amp;%41\\u0041` held it for 14 s of CPU, a few KiB of gzip that decode to
  megabytes of words alike, and every other client (any identity) waited. Such a body is
  now read in a thread, and its reading is bounded (MAX_WORDS_READ over every reading:
  past that it is unread, which needs approval for anyone masked);
- a filter or search on a masked field carried in base64 (`?filter=eyJwaG9uZSI6...`, a
  JSON body's `{"query": "<base64 of {"wildcard": {"phone": "5550*"}}>"}`, base64url, a
  path segment, a form value, a large body's string): the policy read names in the query
  and body as written, the upstream decoded them and answered which rows match. A string
  that is base64 as a whole and decodes to text is now read as that text (coded_words;
  in a large body, body_words), and naming a masked field there needs approval for
  anyone masked; and in a text body (an XML element's base64Binary, `order=cGhvbmU=` in
  a line, a multipart value): a run of base64 letters that looks coded and decodes to
  text is read decoded too (body_words);
- a masked dba's write in a binary data format (`PUT /customers` typed application/cbor,
  MessagePack or protobuf, carrying `{"wildcard": {"phone": "5550*"}}`): binary sent by a
  write to a path naming no search was taken for a file upload and forwarded unread,
  while the upstream decodes the document (Elasticsearch reads CBOR and Smile on any
  endpoint) and filters by it. A body typed as a binary data format is now unread
  (`structured`), which needs approval for anyone masked whatever the method and path;
  an upload (octet-stream, an image) still goes;
- a bare value answering a path that names its field only as frameworks route it
  (`/customers/7/phone/`, `//`, `/.`, `%20`: Express and Spring serve `/phone` there):
  the proxy took the field from the last segment as written, empty or `phone `, and the
  reader got `5550100` (no detector finds a phone number). The last segment naming
  something, trimmed, is now the field;
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from http_upstream import SECRET, exchange, http_stack, request, status
from test_http_probe_p5 import app_upstream
from test_http_probe_p6 import postgrest_app

from proxies.http import request_words

pytestmark = pytest.mark.integration

# a body past what is read on the loop, plain or as a few KiB of gzip
LARGE_BODIES = {
    "plain": ("Content-Type: text/plain\r\n", b"name Ann " * 20000),
    "gzip": (
        "Content-Type: text/plain\r\nContent-Encoding: gzip\r\n",
        gzip.compress(b"name Ann " * 20000),
    ),
}


@pytest.mark.parametrize("case", sorted(LARGE_BODIES))
async def test_another_session_is_answered_while_a_large_body_is_read(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    fields, body = LARGE_BODIES[case]
    loop = asyncio.get_running_loop()
    reading = asyncio.Event()
    served = threading.Event()
    waited: list[bool] = []
    read_words = request_words.body_runs

    def body_runs(media_type: str, data: bytes) -> list[str]:
        # the reading goes on until another client has been answered meanwhile (or a
        # while has passed: on the loop, nobody else can be)
        loop.call_soon_threadsafe(reading.set)
        waited.append(served.wait(20))
        return read_words(media_type, data)

    monkeypatch.setattr(request_words, "body_runs", body_runs)
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        line = "PUT /customers HTTP/1.1"
        large = asyncio.create_task(
            exchange(s.proxy.port, request(s, line, fields, body, ("dba",)))
        )
        await asyncio.wait_for(reading.wait(), 30)
        other = await exchange(s.proxy.port, request(s, "GET /customers HTTP/1.1"))
        served.set()
        answer = await large
    assert waited == [True]
    assert status(other) == 200, other[:300]
    assert status(answer) == 200, answer[:300]


def test_a_body_too_costly_to_read_is_unread() -> None:
    # 8 MiB of escapes: every reading (as written, JSON, HTML, percent) 4 M words; was
    # read whole (14 s of CPU), now unread past MAX_WORDS_READ
    body = b"a&amp;%41\\u0041 " * (7 * 1024 * 1024 // 17)
    with pytest.raises(request_words.Unread) as unread:
        request_words.body_runs("text/plain", body)
    assert unread.value.kind == "size"
    # a large body of few words is still read
    assert request_words.body_runs("text/plain", b"name Ann " * 200000) == [
        "ann",
        "ann name",
        "ann name ann",
        "name",
        "name ann",
        "name ann name",
    ]


CUSTOMERS = [
    {"id": 1, "name": "Ann", "phone": "5550100"},
    {"id": 2, "name": "Bob", "phone": "5559999"},
]


def _decoded(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def coded_search_app() -> web.Application:
    """/customers answering the rows a base64 filter matches: `?filter=` (base64 or
    base64url JSON `{field: prefix*}`), a path `/customers/by/<base64>`, or a body (JSON
    or form) whose `query` is one; the upstream credential required."""

    async def customers(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != SECRET:
            return web.json_response({"error": "no credential"}, status=401)
        coded = request.query.get("filter") or request.match_info.get("coded")
        if request.can_read_body:
            if request.content_type == "application/json":
                coded = (await request.json())["query"]
            else:
                coded = (await request.post())["query"]  # type: ignore[assignment]
        search = _decoded(str(coded)) if coded else {}
        search = search.get("wildcard", search)
        rows = [
            r
            for r in CUSTOMERS
            if all(str(r[k]).startswith(v.rstrip("*")) for k, v in search.items() if k in r)
        ]
        return web.json_response(rows)

    app = web.Application()
    app.router.add_route("*", "/customers", customers)
    app.router.add_route("*", "/customers/by/{coded}", customers)
    return app


def _b64(value: Any, url: bool = False) -> str:
    data = json.dumps(value).encode()
    return (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()


SEARCH = {"wildcard": {"phone": "5550*"}}
CODED_SEARCHES = {
    "query": ("GET /customers?filter=" + quote(_b64({"phone": "5550*"}), safe=""), "", b""),
    "query base64url unpadded": (
        "GET /customers?filter=" + _b64({"phone": "5550*", "n": "??>"}, url=True).rstrip("="),
        "",
        b"",
    ),
    "path segment": ("GET /customers/by/" + _b64(SEARCH, url=True), "", b""),
    "json body": (
        "POST /customers",
        "Content-Type: application/json\r\n",
        json.dumps({"query": _b64(SEARCH)}).encode(),
    ),
    "form body": (
        "POST /customers",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"query=" + quote(_b64(SEARCH), safe="").encode(),
    ),
    "large json body": (
        "POST /customers",
        "Content-Type: application/json\r\n",
        json.dumps({"query": _b64(SEARCH), "pad": "x" * 70000}).encode(),
    ),
}


@pytest.mark.parametrize("case", sorted(CODED_SEARCHES))
async def test_a_search_on_a_masked_field_in_base64_needs_approval(
    tmp_path: Any, case: str
) -> None:
    line, fields, body = CODED_SEARCHES[case]
    async with (
        app_upstream(coded_search_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        groups = ("readonly",) if line.startswith("GET") else ("dba",)
        line += " HTTP/1.1"
        answer = await exchange(s.proxy.port, request(s, line, fields, body, groups))
        pii = await exchange(s.proxy.port, request(s, line, fields, body, (*groups, "pii-readers")))
        # base64 naming no masked field is still a read
        plain = "GET /customers?filter=" + quote(_b64({"name": "A*"}), safe="") + " HTTP/1.1"
        named = await exchange(s.proxy.port, request(s, plain))
    assert status(answer) == 202 and b"Ann" not in answer, answer[:400]
    assert b"in base64" in answer or b"names the masked field" in answer, answer[:400]
    assert status(pii) == 200 and b"Ann" in pii, pii[:400]
    assert status(named) == 200 and b"Ann" in named, named[:400]


# {"wildcard": {"phone": "5550*"}} in CBOR and in MessagePack; protobuf: field 1 "phone",
# field 2 "5550*" (a search message whose names the schema holds, not the bytes)
STRUCTURED_WRITES = {
    "cbor": ("application/cbor", b"\xa1\x68wildcard\xa1\x65phone\x655550*"),
    "msgpack": ("application/x-msgpack", b"\x81\xa8wildcard\x81\xa5phone\xa55550*"),
    "protobuf": ("application/x-protobuf", b"\x0a\x05phone\x12\x055550*"),
    "utf-8 protobuf": ("application/vnd.google.protobuf", b"\x0a\x05phone"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURED_WRITES))
async def test_a_write_in_a_binary_data_format_needs_approval_for_anyone_masked(
    tmp_path: Any, case: str
) -> None:
    kind, body = STRUCTURED_WRITES[case]
    fields = f"Content-Type: {kind}\r\n"
    png = b"\x89PNG\r\n\x1a\n\xff"
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        line = "PUT /customers HTTP/1.1"
        answer = await exchange(s.proxy.port, request(s, line, fields, body, ("dba",)))
        pii = await exchange(s.proxy.port, request(s, line, fields, body, ("dba", "pii-readers")))
        image = "Content-Type: image/png\r\n"
        upload = await exchange(s.proxy.port, request(s, line, image, png, ("dba",)))
    assert status(answer) == 202 and b"binary data format" in answer, answer[:400]
    assert status(pii) == 200, pii[:400]
    assert status(upload) == 200, upload[:400]


CODED_TEXTS = {
    "xml base64Binary": (
        "application/xml",
        b'<search><q encoding="base64">cGhvbmU6NTU1MCo=</q></search>',
    ),
    "text line": ("text/plain", b"order=cGhvbmU= limit=10"),
    "large text": ("text/plain", b"pad " * 20000 + b"q=cGhvbmU6NTU1MCo="),
    "multipart value": (
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="q"\r\n\r\ncGhvbmU6NTU1MCo=\r\n--b--\r\n',
    ),
}


@pytest.mark.parametrize("case", sorted(CODED_TEXTS))
async def test_base64_in_a_text_body_naming_a_masked_field_needs_approval(
    tmp_path: Any, case: str
) -> None:
    kind, body = CODED_TEXTS[case]
    fields = f"Content-Type: {kind}\r\n"
    prose = b"Something Encoded Differently: the Customers' invoices 2024"
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        line = "PUT /customers HTTP/1.1"
        answer = await exchange(s.proxy.port, request(s, line, fields, body, ("dba",)))
        plain = "Content-Type: text/plain\r\n"
        kept = await exchange(s.proxy.port, request(s, line, plain, prose, ("dba",)))
    assert status(answer) == 202 and b"phone" in answer, answer[:400]
    assert status(kept) == 200, kept[:400]


def bare_value_app() -> web.Application:
    """Any path naming `phone` answers Ann's bare phone number (as Express or Spring
    route `/customers/7/phone/` to the `/customers/7/phone` handler)."""

    async def field(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != SECRET:
            return web.json_response({"error": "no credential"}, status=401)
        return web.Response(text="5550100", content_type="text/plain")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", field)
    return app


@pytest.mark.parametrize(
    "path",
    [
        "/customers/7/phone/",
        "/customers/7/phone//",
        "/customers/7/phone/.",
        "/customers/7/phone/%2e",
        "/customers/7/phone%20",
    ],
)
async def test_a_bare_value_under_a_path_routed_as_its_field_is_masked(
    tmp_path: Any, path: str
) -> None:
    async with (
        app_upstream(bare_value_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        answer = await exchange(s.proxy.port, request(s, f"GET {path} HTTP/1.1"))
        plain = await exchange(s.proxy.port, request(s, "GET /customers/7/phone HTTP/1.1"))
    assert status(plain) == 200 and b"5550100" not in plain, plain
    assert status(answer) == 200 and b"5550100" not in answer, answer
