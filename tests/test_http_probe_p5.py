"""Probing the HTTP proxy as a reader (brief P5): what got past a mask or the credential
guard, kept as tests.

Real PDP with the shipped policy (a reader's answers are masked), the HTTP proxy, and an
upstream of the test's own that answers exactly what each case needs; real clients
(aiohttp, raw sockets). Each test is one way around a guardrail that worked before its
fix:

- a reader's WebSocket messages from the upstream went past the field rules: a binary
  message that is not UTF-8 (MessagePack, CBOR, gzip-ed JSON) went as it came unless a
  detector found something in it read as Latin-1 (`phone`, `password`: no detector), a
  binary message of UTF-16 text was read with a NUL beside every letter, and a text
  message that is not one JSON document (socket.io's `42["row", {...}]`, `phone=...`)
  was read by the detectors alone. Under a mask a message is now read as an HTTP answer
  of text is (field rules and detectors, NULs refused), and binary that is not UTF-8 ends
  the socket (an allow-list, as an HTTP answer's binary body is withheld);
- a field an API spells otherwise than the rule names it went past the field rules,
  which matched whole names only: `phoneNumber`, `userPassword`, `Phone Number`,
  `customer_phone` in JSON and NDJSON, `id,phoneNumber` in CSV (and `phone` after a
  UTF-8 BOM), `DB_PASSWORD=...` in text, an `X-Customer-Phone-Number` header, a
  `data-phone` attribute; likewise a name percent-encoded in a form or query
  (`pass%77ord=`), an SSE event named for the field (`event: iban` then its value in
  `data:`), a map from values to the fields they are (`{"5550100": "phone", ...}`), a
  `name=value` whose value begins like JSON (`password=2024hunter2`: 2024 was masked,
  `hunter2` went), and text naming a field where its value cannot be told that was not
  withheld (`<password value=...>`, YAML's `? password`, Markdown's `**password**:`);
  a column or field labelled in words (`<th>Phone Number</th>`, `| Phone Number |`,
  `id,Phone Number`, `Phone Number: ...`, `<dt>Mobile phone</dt>`, `name="IBAN
  Number"`: the names were read one word at a time);
  and an SSE event's `id:` (the client's lastEventId) or comment lines, read by the
  detectors alone (`id: {"phone": ...}`, `: password=...`);
- the upstream credential reflected spread out or escaped whole reached a client whose
  answers are not masked (a dba in pii-readers): base64 wrapped at 76 columns (MIME,
  LF or CRLF) or 64 (PEM) with the secret across a line break, hex as spaced bytes (a hex
  dump), UTF-16 JSON (`charset=utf-16`, a NUL beside every letter), and a secret of
  unreserved characters with every character escaped (`&#115;&#51;...`, `\\u0073...`,
  `%73%33...`): the guard looked for contiguous forms, and escaped forms only of secrets
  with a character an encoder must escape. It now also reads the bytes with white space
  and NULs left out (holding back a tail that begins a spread secret), and knows the
  fully escaped forms;
- an answer naming two charsets (`text/plain; charset=utf-8; charset=cp037`) was masked
  as UTF-8 (the first) while Python's requests decodes it by the last: an EBCDIC body
  went past every detector and field rule and read as plain text to the client. Every
  charset named must now be one the masks read;
- a JSON answer carrying records as base64 (Pub/Sub's and Kafka REST's `data`, Kinesis'
  `Data`: `eyJwaG9uZSI6...`) went past field rules and detectors alike, and so did a field
  as a `["phone", "5550100"]` pair (headers lists, Object.entries); a string that is the
  base64 of text is now masked as that text and carried as base64 again, a pair by the
  rule its name names;
- a value written with escapes its reader undoes went past the detectors, which read
  the escapes as written: `ann&#64;example.com` (HTML's obfuscated mailto links, also
  inside a JSON string), a script's `"\\u0034111 1111 1111 1111"`, a link's
  `/c/ann%40example.com`; a browser renders them, a model reads them. Text whose escapes,
  undone, hold what the detectors find is now withheld (a header value such as a
  redirect's `Location: /c/ann%40example.com` is masked whole);
- a read that chooses the names its answer's fields go by: PostgREST's
  `?select=x:phone`, `?sql=select upper(phone) as x ...` (Datasette, ClickHouse), GraphQL's
  `?query={c{x: phone}}`, OData's `$compute=phone as x`, Elasticsearch's GET /_sql with
  `{"query": "SELECT phone AS x ..."}`: the answer carried the phone under no name a
  rule names, and a GET is a read for any member. http.rego: for anyone masked, such a
  read needs approval. And a path ending in the field (`/customers/7/phone`) answered by
  the bare value (`"5550100"`, or text): no name was left to mask it by; the proxy now
  masks a bare answer to such a path as that field;
- the same over a reader's WebSocket on a path declared read-only: a subscription
  choosing the name the field comes back under (`subscription {c {x: phone}}`) was relayed
  as any frame, and the answer `{"x": "5550100"}` passed the mask. Under a mask a client's
  message naming a masked field now ends the socket before it reaches the upstream;
- a multipart field named `"_meth\\od"` (a quoted-pair, read by busboy, and so multer
  and Fastify, as `_method`) in a reader's GET was not seen as naming a method: the GET
  went as a read to an upstream that may act on it as the DELETE it names.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from http_upstream import SECRET, exchange, http_stack, raw_server, request, status
from pdp_harness import free_port, token
from test_http_probe_p4 import READER_MASKS

from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masked_headers, masker_for
from proxies.http.guard import CredentialInResponse, ResponseGuard, secret_patterns
from proxies.runtime.exposure import ClientOutput

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
HIDDEN = (b"hunter2", b"5550100", b"DE89370400440532013000")


def bearer(
    stack: Any, sub: str = "mallory@example.com", groups: tuple[str, ...] = ("readonly",)
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, sub, groups)}"}


@contextlib.asynccontextmanager
async def app_upstream(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


def ok(kind: str, body: bytes) -> bytes:
    """A whole 200 answer holding `body` as `kind`."""
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        kind.encode(),
        len(body),
        body,
    )


@contextlib.asynccontextmanager
async def replying(answer: bytes) -> AsyncIterator[int]:
    """A raw upstream answering every request with the bytes `answer`, as written."""

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    async with raw_server(converse) as port:
        yield port


async def proxied(
    tmp_path: Any,
    answer: bytes,
    line: str = "GET /customers HTTP/1.1",
    groups: tuple[str, ...] = ("readonly",),
) -> bytes:
    """What the proxy hands a client sending `line` when the upstream replies `answer`."""
    async with (
        replying(answer) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        return await exchange(s.proxy.port, request(s, line, groups=groups))


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


# what a socket's server sends a client, message by message (str: text, bytes: binary)
SOCKET_MESSAGES: dict[str, str | bytes] = {
    # MessagePack {"phone": "5550100"}: not UTF-8 (0x81), no detector finds a phone
    "msgpack": b"\x81\xa5phone\xa75550100",
    "utf-16 in binary": _utf16('{"password": "hunter2"}'),
    "socket.io event": '42["row",{"id":7,"phone":"5550100"}]',
    "pairs": "id=7&password=hunter2",
    "named by a value": json.dumps({"name": "iban", "value": "DE89370400440532013000"}),
}


@pytest.mark.parametrize("case", sorted(SOCKET_MESSAGES))
async def test_a_readers_websocket_message_is_masked_as_an_answer_is(tmp_path, case):
    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        message = SOCKET_MESSAGES[case]
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_str(message)
        await ws.send_str("done")
        await ws.receive()  # (until the client goes)
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    got: list[bytes] = []
    async with (
        app_upstream(app) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.ws_connect(s.url + "/ws", headers=bearer(s)) as ws,
    ):
        while True:
            message = await ws.receive(timeout=20)
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            data = message.data
            got.append(data.encode() if isinstance(data, str) else data)
            if data == "done":
                break
    for data in got:
        readable = data.replace(b"\x00", b"")
        assert not any(value in readable for value in HIDDEN), (case, got)


# media type, body: a field spelt otherwise than the rule names it
SPELLINGS = {
    "json camelCase": (
        "application/json",
        '{"id": 7, "phoneNumber": "5550100", "userPassword": "hunter2", "IBAN": "x"}',
    ),
    "json words": ("application/json", '{"Phone Number": "5550100", "customer_phone": "1"}'),
    "json fullwidth": (
        "application/json",
        '{"\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44": "hunter2"}',
    ),
    "ndjson camelCase": ("application/x-ndjson", '{"phoneNumber": "5550100"}\n'),
    "csv camelCase": ("text/csv", "id,phoneNumber\n7,5550100\n"),
    "csv after a BOM": ("text/csv", "\ufeffphone,id\n5550100,7\n"),
    "csv spaced": ("text/csv", "id, phone\n7, 5550100\n"),
    "env": ("text/plain", "DB_PASSWORD=hunter2\n"),
    "data attribute": ("text/html", '<span data-phone="5550100"></span>'),
    "form percent-encoded name": ("application/x-www-form-urlencoded", "a=1&pass%77ord=hunter2"),
    "value beginning like json": ("text/plain", "id=7&password=2024hunter2"),
    "sse event name": ("text/event-stream", "event: iban\ndata: DE89370400440532013000\n\n"),
    "sse id and comment": (
        "text/event-stream",
        'id: {"phone": "5550100"}\n: password=hunter2\ndata: 1\n\n',
    ),
    "html table header of words": (
        "text/html",
        "<tr><th>ID</th><th>Phone Number</th></tr>\n<tr><td>7</td><td>5550100</td></tr>",
    ),
    "markdown header of words": (
        "text/markdown",
        "| id | Phone Number |\n|--|--|\n| 7 | 5550100 |",
    ),
    "csv header of words": ("text/csv", "id,Phone Number\n7,5550100\n"),
    "label of words": ("text/plain", "Phone Number: 5550100\n"),
    "definition list of words": ("text/html", "<dt>Mobile phone</dt><dd>5550100</dd>"),
    "attribute naming words": (
        "application/xml",
        '<field name="IBAN Number">DE89370400440532013000</field>',
    ),
    "inverted map": ("application/json", '{"5550100": "phone", "hunter2": "password"}'),
    "xml element with attributes": ("application/xml", '<password value="hunter2"/>'),
    "yaml explicit key": ("application/yaml", "? password\n: hunter2\n"),
    "markdown bold name": ("text/markdown", "**password**: hunter2"),
}


def masked(content_type: str, body: str) -> bytes:
    kind, shown = answer_kind([content_type])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


@pytest.mark.parametrize("case", sorted(SPELLINGS))
def test_a_field_spelt_otherwise_is_masked_or_withheld(case):
    try:
        out = masked(*SPELLINGS[case])
    except Unmaskable:
        return
    assert not any(value in out for value in HIDDEN), out


@pytest.mark.parametrize("name", ["X-Customer-Phone-Number", "X-Phone-Number", "Customer-Phone"])
def test_a_header_spelling_a_field_is_masked(name):
    masker = masker_for(READER_MASKS, b"k" * 32)
    [(_, value)], _ = masked_headers(masker, [(name, "5550100")])
    assert value == "[REDACTED]"


def test_spellings_that_are_not_the_field_stay():
    out = json.loads(
        masked(
            "application/json",
            '{"tokens": 3, "microphone": "on", "errors": [{"field": "email"}], "id": 7}',
        )
    )
    assert out == {"tokens": 3, "microphone": "on", "errors": [{"field": "email"}], "id": 7}


async def test_a_readers_answer_spelling_fields_otherwise_is_masked_through_the_proxy(tmp_path):
    async def converse(reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        case = SPELLINGS_BY_PATH.get(head.split(b" ")[1].decode())
        kind, body = case if case else ("application/json", "{}")
        data = body.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nX-Customer-Phone-Number: 5550100\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (kind.encode(), len(data), data)
        )
        await writer.drain()

    got = {}
    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        for n, path in enumerate(SPELLINGS_BY_PATH):
            # (one reader each: a session whose answers keep being refused is ended)
            reader = bearer(s, f"mallory{n}@example.com")
            async with client.get(s.url + path, headers=reader) as r:
                got[path] = (r.status, str(r.headers).encode() + await r.read())
    for path, (code, answer) in got.items():
        assert code in (200, 502), (path, code)
        assert not any(value in answer for value in HIDDEN), (path, answer)
    assert sum(code == 200 for code, _ in got.values()) >= 10, got


SPELLINGS_BY_PATH = {"/" + case.replace(" ", "-"): SPELLINGS[case] for case in SPELLINGS}


def answer_body(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def _padded(key: bytes) -> bytes:
    return b"x" * 40 + key + b"y" * 40


# the credential as an upstream echoing it may write it, spread out or escaped whole
SPREAD_OUT = {
    "mime base64": lambda key: base64.encodebytes(_padded(key)),
    "mime base64 crlf": lambda key: base64.encodebytes(_padded(key)).replace(b"\n", b"\r\n"),
    "pem base64": lambda key: b"\n".join(
        base64.b64encode(_padded(key))[i : i + 64] for i in range(0, 200, 64)
    ),
    "spaced hex": lambda key: b" ".join(b"%02x" % c for c in key),
    "utf-16 json": lambda key: json.dumps({"key": key.decode()}).encode("utf-16"),
    "html references": lambda key: b"".join(b"&#%d;" % c for c in key),
    "unicode escapes": lambda key: b"".join(b"\\u%04x" % c for c in key),
    "percent-encoded whole": lambda key: b"".join(b"%%%02X" % c for c in key),
}


@pytest.mark.parametrize("form", sorted(SPREAD_OUT))
async def test_the_credential_spread_out_or_escaped_whole_is_cut(tmp_path, form):
    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"x-api-key:")
        )
        body = SPREAD_OUT[form](key)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        answer = await exchange(
            s.proxy.port, request(s, "GET /debug HTTP/1.1", groups=("dba", "pii-readers"))
        )
    assert status(answer) == 502, answer
    assert SPREAD_OUT[form](SECRET.encode()) not in answer


@pytest.mark.parametrize("form", ["mime base64", "spaced hex", "utf-16 json"])
def test_a_spread_out_credential_across_two_chunks_is_held_until_seen(form):
    body = SPREAD_OUT[form](SECRET.encode())
    patterns = secret_patterns([SECRET])
    spread = [p.translate(None, b"\r\n\t \x00") for p in patterns]
    for cut in range(1, len(body)):
        written: list[bytes] = []
        guard = ResponseGuard(ClientOutput(written.append), patterns)
        with pytest.raises(CredentialInResponse):
            guard.write(body[:cut])
            guard.write(body[cut:])
            guard.flush()
        # what went out holds no more of the secret than a form's first letter
        sent = b"".join(written).translate(None, b"\r\n\t \x00")
        longest = max(
            (n for p in spread for n in range(1, len(p) + 1) if sent.endswith(p[:n])), default=0
        )
        assert longest <= 1, (cut, sent[-40:])


def test_text_spread_like_a_credential_but_not_it_passes():
    written: list[bytes] = []
    guard = ResponseGuard(ClientOutput(written.append), secret_patterns([SECRET]))
    text = b"s3cr3t upstream key\n" + base64.encodebytes(b"x" * 200) + b"7 f 1 c 2 e 9 a\n"
    guard.write(text)
    guard.flush()
    assert b"".join(written) == text


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain; charset=utf-8; charset=cp037",
        "text/csv; charset=utf-8; CHARSET=cp500",
        'application/json; charset="utf-8"; charset="utf-16"',
    ],
)
async def test_an_answer_naming_two_charsets_is_not_masked_by_the_first(tmp_path, content_type):
    encoding = content_type.rsplit("=", 1)[1].strip('"')
    text = "id,phone,card\n7,5550100,4111 1111 1111 1111\n"

    import requests  # (the client whose reading the attack counts on: the last charset)

    async with (
        replying(ok(content_type, text.encode(encoding))) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        headers = bearer(s)
        answer = await asyncio.to_thread(requests.get, s.url + "/export", headers=headers)
    assert answer.status_code == 502, answer.text
    assert "5550100" not in answer.text and "4111" not in answer.text


async def test_a_multipart_name_with_a_quoted_pair_naming_method_is_judged(tmp_path):
    body = b'--b\r\nContent-Disposition: form-data; name="_meth\\od"\r\n\r\nDELETE\r\n--b--\r\n'
    fields = "Content-Type: multipart/form-data; boundary=b\r\n"
    async with http_stack(tmp_path) as s:
        answer = await exchange(s.proxy.port, request(s, "GET /echo/a HTTP/1.1", fields, body))
        seen = list(s.upstream.seen)
    assert status(answer) == 403, answer
    assert seen == []


def _b64(text: str, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(text.encode()).decode()


CARRIED = {
    "pubsub message": {
        "receivedMessages": [
            {"message": {"data": _b64(json.dumps({"id": 7, "phone": "5550100"}, indent=2))}}
        ]
    },
    "kinesis record": {"Records": [{"Data": _b64("password=hunter2&id=7")}]},
    "url-safe, unpadded": {
        "payload": _b64('{"iban": "DE89370400440532013000"}???', True).rstrip("=")
    },
    "detectors too": {"data": _b64("mail ann@example.com card 4111 1111 1111 1111")},
    "pairs": {"headers": [["X-Phone", "5550100"], ["password", "hunter2"]]},
}


def _unwrapped(value: object) -> bytes:
    """Every string of a document, and the text of each that is base64, as bytes."""
    if isinstance(value, dict):
        return b"".join(_unwrapped(v) for v in value.values())
    if isinstance(value, list):
        return b"".join(_unwrapped(v) for v in value)
    if not isinstance(value, str):
        return b""
    out = value.encode()
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(ValueError):
            out += decode(value + "=" * (-len(value) % 4))
    return out


@pytest.mark.parametrize("case", sorted(CARRIED))
def test_a_record_carried_as_base64_or_as_a_pair_is_masked(case):
    out = json.loads(masked("application/json", json.dumps(CARRIED[case])))
    seen = _unwrapped(out)
    assert not any(value in seen for value in (*HIDDEN, b"ann@example.com", b"4111 1111")), seen
    plain = json.loads(masked("application/json", json.dumps({"data": _b64("plain words")})))
    assert plain == {"data": _b64("plain words")}


ESCAPED = {
    "html references": (
        "text/html",
        '<a href="mailto:ann&#64;example.com">ann&#64;example.com</a>',
    ),
    "a script's escapes": ("text/html", '<script>var c = "\\u0034111 1111 1111 1111";</script>'),
    "a percent-encoded link": ("text/html", '<a href="/c/ann%40example.com">Ann</a>'),
    "json string": ("application/json", json.dumps({"note": "mail ann&#x40;example.com"})),
}


@pytest.mark.parametrize("case", sorted(ESCAPED))
def test_a_value_behind_escapes_its_reader_undoes_is_withheld(case):
    try:
        out = masked(*ESCAPED[case])
    except Unmaskable:
        return
    shown = html.unescape(unquote(out.decode())).replace("\\u0034", "4")
    assert "ann@example.com" not in shown and "4111 1111" not in shown, out


def test_escapes_that_hide_nothing_pass():
    page = '<p>Tom &amp; Jerry: 50% off &copy; <a href="/s?q=a%20b">mail ann@example.com</a></p>'
    assert masked("text/html", page) == page.replace("ann@", "a***@").encode()


def test_prose_naming_a_field_stays():
    page = "<p>Contact us by phone or email.</p>\n<li>Reset your password</li>"
    assert masked("text/html", page) == page.encode()


PAIR = "svc-billing:Sup3r-S3cret-pass"
PAIR = "svc-billing:Sup3r-S3cret-pass"
AUTHORIZATIONS = {
    "bearer": ("Bearer tok-8f2a-77c1-9d0e-41ab", "tok-8f2a-77c1-9d0e-41ab"),
    "basic pair": ("Basic " + _b64(PAIR), PAIR),
    "basic password": ("Basic " + _b64(PAIR), PAIR.partition(":")[2]),
}


@pytest.mark.parametrize("case", sorted(AUTHORIZATIONS))
async def test_part_of_a_whole_authorization_credential_echoed_is_cut(tmp_path, case):
    value, echoed = AUTHORIZATIONS[case]

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = (
            b'{"active": true, "seen": "%s"}' % echoed.encode() if value.encode() in head else b"{}"
        )
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()

    credential = {"provider": "static", "header": "Authorization", "value": value}
    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}", credentials=credential) as s,
    ):
        answer = await exchange(
            s.proxy.port, request(s, "GET /introspect HTTP/1.1", groups=("dba", "pii-readers"))
        )
    assert status(answer) == 502, answer
    assert echoed.encode() not in answer


RENAMING_READS = [
    "/customers?select=id,x:phone",
    "/sql?sql=select+upper(phone)+as+x+from+customers",
    "/graphql?query=%7Bcustomer(id:7)%7Bx:phone%7D%7D",
]


async def test_a_read_choosing_the_name_a_masked_field_goes_by_needs_approval(tmp_path):
    got = []
    async with (
        replying(ok("application/json", b'[{"id": 7, "x": "5550100"}]')) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for path in RENAMING_READS:
            got.append(await exchange(s.proxy.port, request(s, f"GET {path} HTTP/1.1")))
        # Elasticsearch's SQL: a GET with a JSON body (a read)
        sql = b'{"query": "SELECT phone AS x FROM customers"}'
        fields = "Content-Type: application/json\r\n"
        got.append(await exchange(s.proxy.port, request(s, "GET /_sql HTTP/1.1", fields, sql)))
        plain = await exchange(s.proxy.port, request(s, "GET /customers?select=id HTTP/1.1"))
        pii = await exchange(
            s.proxy.port,
            request(s, f"GET {RENAMING_READS[0]} HTTP/1.1", groups=("readonly", "pii-readers")),
        )
    for path, answer in zip([*RENAMING_READS, "/_sql"], got, strict=True):
        assert status(answer) == 202 and b"5550100" not in answer, (path, answer)
    assert status(plain) == 200 and status(pii) == 200


async def test_a_readers_socket_message_naming_a_masked_field_is_not_relayed(tmp_path):
    received: list[str] = []

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                received.append(message.data)
                # a GraphQL server answering under the alias the subscription chose
                await ws.send_str(json.dumps({"data": {"c": {"x": "5550100"}}}))
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    got: list[str] = []
    async with (
        app_upstream(app) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.ws_connect(s.url + "/ws", headers=bearer(s)) as ws,
    ):
        await ws.send_str('{"type": "subscribe", "query": "subscription {c {id}}"}')
        got.append(await ws.receive_str(timeout=10))
        await ws.send_str('{"type": "subscribe", "query": "subscription {c {x: phone}}"}')
        ended = await ws.receive(timeout=10)
    assert received == ['{"type": "subscribe", "query": "subscription {c {id}}"}']
    assert ended.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR), ended
    assert len(got) == 1  # (the first answer: its x is no field the mask knows)


async def test_a_header_whose_escapes_hide_a_value_is_masked_whole(tmp_path):
    answer = await proxied(
        tmp_path,
        b"HTTP/1.1 302 Found\r\nLocation: /customers/ann%40example.com\r\n"
        b'Content-Disposition: attachment; filename="ann&#64;example.com.csv"\r\n'
        b"Content-Length: 0\r\n\r\n",
        "GET /customers/lookup HTTP/1.1",
    )
    head = html.unescape(unquote(answer.partition(b"\r\n\r\n")[0].decode()))
    assert status(answer) == 302 and "ann@example.com" not in head, head


@pytest.mark.parametrize(
    "path, kind, body",
    [
        ("/customers/7/phone", "application/json", b'"5550100"'),
        ("/customers/7/phoneNumber.txt", "text/plain", b"5550100\n"),
        ("/accounts/7/iban", "application/json", b'"DE89370400440532013000"'),
    ],
)
async def test_a_bare_value_answering_a_path_named_for_a_field_is_masked(
    tmp_path, path, kind, body
):
    async with (
        replying(ok(kind, body)) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        answer = await exchange(s.proxy.port, request(s, f"GET {path} HTTP/1.1"))
        pii = await exchange(
            s.proxy.port, request(s, f"GET {path} HTTP/1.1", groups=("readonly", "pii-readers"))
        )
    assert status(answer) == 200 and b"[REDACTED]" in answer, answer
    assert not any(value in answer for value in HIDDEN), answer
    assert answer_body(pii) == body
