"""Probing the HTTP proxy as a reader (brief P4): what reached the upstream, or came back
to the client, other than as it was decided, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, the aiohttp upstream of
http_upstream.py (or a raw upstream of the test's own), raw sockets for a client (the
bytes are the attack). Each test is one way around a decision that worked before its fix:

- routing claims the client chose: its Host reached the upstream as X-Forwarded-Host and
  Forwarded `host=`, and X-Forwarded-Prefix / -Uri / -Path / -Scheme, X-Original-Host,
  X-Host, X-HTTP-Host-Override, X-Override-URL, Envoy's x-envoy-original-path and
  Next.js' x-middleware-subrequest went as sent — an upstream routing by one (virtual
  hosts, a tenant per host, a prefix) served another site or path than the one decided;
- a write naming a read: a reader's DELETE, POST, PUT or PATCH with
  `X-HTTP-Method-Override: GET` (or X-HTTP-Method, X-Method-Override, `_method=GET` in the
  query or body) was judged as the GET it names and allowed as a read; the upstream,
  like most servers (aiohttp, FastAPI, Django, Go), reads no override and ran the DELETE
  or the POST without the approval a write needs;
- the credential reflected in an encoding the guard did not know: an upstream echoing
  the key it was sent (a debug or echo endpoint, an error page) as PHP's json_encode
  writes it (`/` as `\\/`), percent-encoded in lower-case hex or as encodeURI leaves it
  (`/`, `+` and `=` plain) reached a client whose answers are not masked (a dba in
  pii-readers) whole;
- masked fields read in another representation: a reader asking for text instead of JSON
  got `phone`, `password`, `iban` (fields no detector finds) whole where the line-by-line
  masking could not tie a value to its name: an HTML or Markdown table (`<th>phone</th>`
  then `<td>...`), TSV, `;`-separated CSV or a CSV field across lines, an XML element
  whose text is on the next line, in CDATA or nested, `<input name="password"
  value=...>`, JSON pretty-printed under text/plain or text/json (`"password":` then the
  value on the next line), a YAML block (`password: |`); and in JSON, a string holding a
  document or pairs of its own (`"event": "{\\"phone\\": ...}"`, `"query": "password=..."`),
  or a field named by a value (`{"name": "phone", "value": ...}`, `{"columns": ["id",
  "phone"], "rows": [[7, ...]]}` as SQL-over-HTTP APIs answer);
- a JSON body naming an integer past 2**53 as a float (`9007199254740993.0`,
  `9.007199254740993e15`): the integer form is refused since 9372fae, this one was read
  by the policy as the double ...992 while a parser keeping decimals (Jackson's
  BigDecimal, Python's parse_float=Decimal) reads ...993;
- a WebSocket upgrade's answer head went to a reader as the upstream wrote it: a 101's
  fields, or another status's (a redirect whose Location names `phone=...`, an
  `X-Customer-Phone`) unmasked, with a Content-Length for a body never relayed; and a
  `phone=...` pair in any answer's Location passed the header masks.
"""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote

import pytest
from http_upstream import exchange, http_stack, raw_server, request, status

from portcullis.verdict import MaskRule
from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masker_for

pytestmark = pytest.mark.integration


ROUTING_CLAIMS = {
    "X-Forwarded-Prefix": "/admin",
    "X-Forwarded-Uri": "/admin",
    "X-Forwarded-Path": "/admin",
    "X-Forwarded-Scheme": "https",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Server": "tenant-b.example",
    "X_Forwarded_Prefix": "/admin",
    "X-Original-Host": "tenant-b.example",
    "X-Host": "tenant-b.example",
    "X-HTTP-Host-Override": "tenant-b.example",
    "X-Override-URL": "/admin",
    "X-Envoy-Original-Path": "/admin",
    "X-Middleware-Subrequest": "middleware:middleware:middleware:middleware:middleware",
    "X-Invoke-Path": "/admin",
    "Front-End-Https": "on",
    "X-Url-Scheme": "https",
}


async def test_no_host_or_routing_claim_of_the_client_reaches_the_upstream(tmp_path):
    fields = "".join(f"{name}: {value}\r\n" for name, value in ROUTING_CLAIMS.items())
    async with http_stack(tmp_path) as s:
        answer = await exchange(
            s.proxy.port, request(s, "GET /echo/a HTTP/1.1", fields, host="tenant-b.example")
        )
        upstream_port = s.upstream.port
    assert status(answer) == 200, answer[:300]
    [seen] = s.upstream.seen
    got = {n.decode().lower(): v.decode() for n, v in seen["headers"]}
    leaked = {n: v for n, v in got.items() if "tenant-b" in v or v == "/admin"}
    assert not leaked, leaked
    assert not {n.lower() for n in ROUTING_CLAIMS} & set(got), got
    assert "x-forwarded-host" not in got
    assert got["forwarded"] == "for=127.0.0.1;proto=http"
    assert got["host"] == f"127.0.0.1:{upstream_port}"


WRITES_NAMING_READS = {
    "delete, header": ("DELETE /echo/7 HTTP/1.1", "X-HTTP-Method-Override: GET\r\n", b"", 403),
    "delete, x-http-method": ("DELETE /echo/7 HTTP/1.1", "X-HTTP-Method: head\r\n", b"", 403),
    "delete, query": ("DELETE /echo/7?_method=GET HTTP/1.1", "", b"", 403),
    "post, header": (
        "POST /echo/refunds HTTP/1.1",
        "X-HTTP-Method-Override: GET\r\nContent-Type: application/json\r\n",
        b'{"amount": 500}',
        202,
    ),
    "post, json": (
        "POST /echo/refunds HTTP/1.1",
        "Content-Type: application/json\r\n",
        b'{"_method": "GET", "amount": 500}',
        202,
    ),
    "post, form": (
        "POST /echo/refunds HTTP/1.1",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"_method=GET&amount=500",
        202,
    ),
    "put": ("PUT /echo/7 HTTP/1.1", "X-Method-Override: GET\r\n", b"x=1", 202),
    "patch": ("PATCH /echo/7 HTTP/1.1", "X-HTTP-Method-Override: get\r\n", b"{}", 202),
}


@pytest.mark.parametrize("case", sorted(WRITES_NAMING_READS))
async def test_a_readers_write_naming_a_read_is_judged_as_the_write(tmp_path, case):
    line, fields, body, expected = WRITES_NAMING_READS[case]
    async with http_stack(tmp_path) as s:
        answer = await exchange(s.proxy.port, request(s, line, fields, body))
        # a read naming the other read is still a read
        head = await exchange(
            s.proxy.port, request(s, "HEAD /echo/h HTTP/1.1", "X-HTTP-Method-Override: GET\r\n")
        )
    assert status(answer) == expected, answer[:400]
    assert status(head) == 200
    assert [(r["method"], r["raw_path"]) for r in s.upstream.seen] == [("HEAD", "/echo/h")]


SLASHED = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY="  # (an AWS-style secret key)
REFLECTIONS = {
    "php json": json.dumps({"key": SLASHED}).replace("/", "\\/"),
    "lower-case percent": re.sub("%..", lambda m: m.group(0).lower(), quote(SLASHED, safe="")),
    "path-safe percent": quote(SLASHED),
    "html references": "<p>"
    + "".join(c if c.isalnum() else f"&#x{ord(c):x};" for c in SLASHED)
    + "</p>",
    "unicode-escaped json": json.dumps({"key": SLASHED}).replace("/", "\\u002f"),
}


def reflected(form: str) -> bytes:
    """An upstream answer carrying the key in one of REFLECTIONS' encodings."""
    body = REFLECTIONS[form].encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


@pytest.mark.parametrize("form", sorted(REFLECTIONS))
async def test_the_credential_reflected_in_another_encoding_is_cut(tmp_path, form):
    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reflected(form))
        await writer.drain()

    credential = {"provider": "static", "header": "X-Api-Key", "value": SLASHED}
    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}", credentials=credential) as s,
    ):
        answer = await exchange(
            s.proxy.port, request(s, "GET /debug HTTP/1.1", groups=("dba", "pii-readers"))
        )
    assert status(answer) == 502, answer
    assert REFLECTIONS[form].encode() not in answer


# what the shipped policy masks for a reader (pii_masks.rego)
READER_MASKS = [
    *(MaskRule(field=f) for f in ("api_key", "card_number", "email", "iban", "password")),
    *(MaskRule(field=f) for f in ("phone", "ssn", "token")),
    *(MaskRule(detector=d, strategy="partial") for d in ("credit_card", "email", "ssn", "token")),
]
HIDDEN = ("hunter2", "5550100", "DE89370400440532013000")
TEXT_TABLES = {
    "html table": (
        "text/html",
        "<tr><th>id</th><th>phone</th></tr>\n<tr><td>7</td><td>5550100</td></tr>",
    ),
    "markdown table": ("text/markdown", "| id | phone |\n|----|-------|\n| 7 | 5550100 |"),
    "html dl": ("text/html", "<dl><dt>password</dt><dd>hunter2</dd></dl>"),
    "html input": ("text/html", '<input name="password" value="hunter2">'),
    "tsv": ("text/tab-separated-values", "id\tiban\n7\tDE89370400440532013000"),
    "csv by semicolons": ("text/csv", "id;phone\n7;5550100"),
    "csv field across lines": ("text/csv", 'id,note,phone\n7,"a\nb",5550100'),
    "xml text on the next line": ("application/xml", "<c>\n<password>\nhunter2\n</password>\n</c>"),
    "xml cdata": ("application/xml", "<password><![CDATA[hunter2]]></password>"),
    "xml nested": ("application/xml", "<password><v>hunter2</v></password>"),
    "xml namespaced": ("application/xml", "<a:password>hunter2</a:password>"),
    "json pretty in text": ("text/plain", '{\n  "password":\n    "hunter2"\n}'),
    "text/json": ("text/json", '{"password":\n"hunter2"}'),
    "ndjson member across lines": ("application/x-ndjson", '{"password":\n"hunter2"}'),
    "yaml block": ("application/yaml", "user:\n  password: |\n    hunter2\n"),
    "text tab": ("text/plain", "password\thunter2"),
    "json array across lines in text": ("text/plain", '{\n  "phone": [\n    "5550100"\n  ]\n}'),
    "json object across lines in text": ("text/plain", '"phone": {\n  "home": "5550100"\n}'),
    # a JSON answer whose string holds a document or pairs of its own (an event's
    # payload, a logged request): the field rules reach the names written in it
    "json string holding json": (
        "application/json",
        json.dumps({"event": json.dumps({"user": {"phone": "5550100"}})}),
    ),
    "json string holding pairs": ("application/json", '{"query": "id=7&password=hunter2"}'),
    # fields named by a value, not a key: attribute lists, SQL over HTTP
    "attribute list": (
        "application/json",
        '{"attributes": [{"name": "phone", "value": "5550100"}, {"key": "Password", '
        '"values": ["hunter2"]}]}',
    ),
    "columns and rows": (
        "application/json",
        '{"columns": ["id", "iban"], "rows": [[7, "DE89370400440532013000"]]}',
    ),
    "meta and data": (
        "application/json",
        '{"meta": [{"name": "id"}, {"name": "phone"}], "data": [[7, "5550100"]]}',
    ),
    "sse data holding json text": (
        "text/event-stream",
        'data: "{\\"password\\":\\"hunter2\\"}"\n\n',
    ),
}


def masked(content_type: str, body: str) -> bytes:
    kind, shown = answer_kind([content_type])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


@pytest.mark.parametrize("case", sorted(TEXT_TABLES))
def test_a_masked_field_in_text_the_masks_cannot_read_is_withheld(case):
    content_type, body = TEXT_TABLES[case]
    try:
        out = masked(content_type, body)
    except Unmaskable:
        return
    assert not any(value.encode() in out for value in HIDDEN), out


PROSE = {
    "a sentence": ("text/html", "<p>Reach ann@example.com by email or phone.</p>"),
    "a path": ("text/html", '<a href="/password/reset">Reset your password</a>'),
    "keyed values": ("text/plain", "phone: 5550100\npassword = hunter2"),
    "one-line elements": ("application/xml", "<c><phone>5550100</phone></c>"),
    "a named csv column": ("text/csv", "id,phone\n7,5550100"),
    "pretty json": ("application/json", '{\n  "password":\n    "hunter2"\n}'),
}


@pytest.mark.parametrize("case", sorted(PROSE))
def test_text_whose_named_values_are_told_is_still_masked_and_passed(case):
    out = masked(*PROSE[case])
    assert not any(value.encode() in out for value in HIDDEN), out
    assert b"example.com" in out or b"[REDACTED]" in out or b"password" in out


async def test_a_readers_html_table_of_phones_is_withheld_through_the_proxy(tmp_path):
    page = TEXT_TABLES["html table"][1].encode()

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page)
            + page
        )
        await writer.drain()

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        reader = await exchange(s.proxy.port, request(s, "GET /customers.html HTTP/1.1"))
        pii = await exchange(
            s.proxy.port,
            request(s, "GET /customers.html HTTP/1.1", groups=("readonly", "pii-readers")),
        )
    assert status(reader) == 502 and b"5550100" not in reader, reader
    assert status(pii) == 200 and b"5550100" in pii  # (unmasked for pii-readers)


WS_ANSWERS = {
    "redirect": b"HTTP/1.1 302 Found\r\nLocation: /c?email=ann@example.com&phone=5550100\r\n"
    b"X-Customer-Phone: 5550100\r\nContent-Length: 0\r\n\r\n",
    "switched": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\nX-Customer-Phone: 5550100\r\n"
    b"Set-Cookie: who=ann@example.com\r\n\r\n",
}


@pytest.mark.parametrize("case", [*sorted(WS_ANSWERS), "plain redirect"])
async def test_a_readers_websocket_answer_head_is_masked(tmp_path, case):
    plain = case == "plain redirect"
    case = "redirect" if plain else case

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(WS_ANSWERS[case])
        await writer.drain()
        await asyncio.sleep(0.5)

    upgrade = (
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        data = request(s, "GET /ws HTTP/1.1", "" if plain else upgrade)
        if not plain:
            data = data.replace(b"Connection: close\r\n", b"")
        answer = await exchange(s.proxy.port, data)
    head = answer.partition(b"\r\n\r\n")[0]
    assert status(answer) == int(WS_ANSWERS[case].split(b" ")[1]), answer
    for value in (b"5550100", b"ann@example.com"):
        assert value not in head, head


@pytest.mark.parametrize("number", ["9007199254740993.0", "9.007199254740993e15"])
async def test_an_integer_past_2_53_written_as_a_float_is_refused(tmp_path, number):
    from pdp.domain.policy_input import http_command

    body = f'{{"id": {number}}}'.encode()
    async with http_stack(tmp_path) as s:
        answer = await exchange(
            s.proxy.port,
            request(s, "GET /echo/a HTTP/1.1", "Content-Type: application/json\r\n", body),
        )
    assert status(answer) == 400, answer[:300]
    assert s.upstream.seen == []
    # and the PDP, re-reading the body from the command text, shows the policy no path
    raw = f"GET /echo/a HTTP/1.1\nbody: x\n\n{body.decode()}"
    attributes = {"headers": {"content-type": "application/json"}}
    assert "path" not in http_command("http.request", raw, attributes)
