"""Probing the HTTP proxy as a reader and as a dba outside pii-readers (brief P6): what got
past a mask, the credential guard or the decision, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, and an upstream of the test's own (an
aiohttp app, or a raw server answering exactly what a case needs); real clients (aiohttp,
raw sockets). Each test is one way around a guardrail that worked before its fix:

- a masked identity read a masked field's value a bit at a time through the rows a
  filter, an order or a count chose: PostgREST's `?phone=like.555*`, `?or=(phone.like.*1)`,
  `?order=phone`, OData's `$filter=startswith(phone,'555')`, Elasticsearch's `q=phone:555*`
  and a search body naming the field; the answer's phones were masked, but which rows
  came back (and how many, under `Prefer: count=exact`) was the value. http.rego: for
  anyone masked, a request naming a masked field by its words in its query or body needs
  approval (it did for `select`, `sql` and `query` alone);
- a masked answer's ETag is the hash of the unmasked body (Express's, and many
  frameworks'), and If-None-Match and If-Match went upstream under a mask: with the rest
  of the record known, the ETag of each guess at the phone is computable, and a 304 (or
  the absence of a 412) said which guess was right. Under a mask neither goes upstream;
- a field named in the plural (`phones`, `passwords`, `customerIbans`: a list of its
  values) went past the field rules, which matched a rule's words exactly; a word is now
  the rule's word or its plural, in answers (JSON keys, CSV columns, text labels,
  headers) and in the request words the policy reads (`?phones=like.555*`);
- a map from a value to the field it is, of one member (`{"5550100": "phone"}`,
  `[{"hunter2": "password"}]`), or from a value to an object describing it
  (`{"5550100": {"field": "phone"}}`) went with its key in clear: only maps of two or
  more such members were read as inverted. One member is now too, unless its key is a
  word naming a field's role (`{"field": "email"}`, `{"missing": "phone"}`), and a key
  that is no identifier (a digit, `@`) over an object naming a field is masked by it;
- the upstream's key handed back as an upstream's text tools make it (base32, as TOTP
  seeds and some IDs are written, in either alphabet and case; reversed) went past the
  guard, a list of encodings: those forms are now on it, held back from LOOSE_HELD bytes
  on (their first letters are any letter: a stream pausing on one would stall);
- and inside a compressed file (a `.gz` export, a `.zip` or an Office document, bzip2,
  gzip in gzip, labelled as such or as application/octet-stream): with a credential
  injected, such a body (told by its magic number) is held, opened within bounds and
  read file by file, and one the proxy cannot open (zstd, 7z, RAR, encrypted zip members,
  too large) is refused (502) rather than relayed unread;
- a JSON answer labelled `text/csv` (S3's `response-content-type`, a `?format=` that
  only relabels) went in clear: its first line was taken for a CSV header (its cells
  `{"phone":"5550100"` named the field, so the line itself went as a header), and a CSV
  naming no masked column was read by the detectors alone (`phone: ...` lines, JSON
  lines). A header holding a value beside a field's name, or JSON, and every line of a
  CSV naming no masked column, is now read as text is; other cells as a JSON string is;
- a search body typed text/plain, or not typed at all, was not shown to the policy (only
  JSON and form types were), while the upstream reads it as JSON all the same: the
  filter rule never saw `{"wildcard": {"phone": ...}}`. A body that reads as JSON one way
  only is now shown as JSON whatever its type;
- and a body the policy was not shown as a value (multipart, XML, text) was never read
  for a masked field: a masked dba's multipart `name="phone"` filter went. Such a body's
  text (up to 64 KiB) is now shown to the policy (`body_text`) and read for masked fields;
- a body past those 64 KiB (`{"wildcard": {"phone": ...}, "pad": "x" * 70000}`, gzip,
  chunked, a form), one naming the field escaped (`\\u0070hone`, `&#112;hone`, `%70hone`)
  or beside a binary file part, or a binary one (CBOR, protobuf) or in a coding the proxy
  does not undo, went unread. Such a body now reaches the policy as its distinct runs of
  words (`body_words`, escapes undone), and one it cannot read (`body_unread`) needs
  approval for anyone masked, unless a binary upload to a write that is no search;
- a value given in prose after a field's name (`Ann's phone is 5550100`, a JSON note
  `call the phone 5550100`, `<p>IBAN DE89...</p>`) went: no detector finds a phone or
  a password, and the field rules read names with a separator. The next four words after
  a field's name in words that hold a digit or `@` are now masked by that rule (a value
  of letters alone is not told from the sentence), in a header's value too (`Warning:
  199 - "phone 5550100 ..."`);
"""

from __future__ import annotations

import asyncio
import base64
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import zipfile
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_upstream import SECRET, exchange, http_stack, raw_server, request, status
from pdp_harness import token
from test_http_probe_p5 import app_upstream, ok, proxied

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
CUSTOMERS = [
    {"id": 1, "name": "Ann", "phone": "5550100", "email": "ann@example.com"},
    {"id": 2, "name": "Bob", "phone": "5559999", "email": "bob@example.com"},
]


def bearer(stack: Any, groups: tuple[str, ...] = ("readonly",)) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, 'mallory@example.com', groups)}"}


def _matches(row: dict[str, Any], field: str, op: str, value: str) -> bool:
    have = str(row.get(field, ""))
    if op == "like":
        return have.startswith(value.rstrip("*"))
    if op == "gt":
        return have > value
    return have == value


def postgrest_app() -> web.Application:
    """A PostgREST-like /customers: `?field=op.value` filters, `?order=field`, and the
    count in Content-Range under `Prefer: count=exact`; the upstream credential required."""

    async def customers(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != SECRET:
            return web.json_response({"error": "no credential"}, status=401)
        rows = list(CUSTOMERS)
        for name, given in request.query.items():
            if name in ("order", "select"):
                continue
            op, _, value = given.partition(".")
            rows = [r for r in rows if _matches(r, name, op, value)]
        if "order" in request.query:
            rows.sort(key=lambda r: str(r.get(request.query["order"], "")))
        if request.method == "POST":  # a search body: {"wildcard": {field: prefix*}}
            search = (await request.json()).get("wildcard", {})
            for name, value in search.items():
                rows = [r for r in rows if _matches(r, name, "like", value)]
        headers = {"Content-Range": f"0-{len(rows) - 1}/{len(rows)}"}
        return web.json_response(rows, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/customers", customers)
    return app


ORACLES = [
    "/customers?phone=like.5550*",
    "/customers?phone=gt.5555",
    "/customers?Phone=eq.5550100",
    "/customers?order=phone",
    "/customers?or=(phone.like.*1)",
    "/customers?%24filter=startswith(phone,%275550%27)",
    "/customers?q=phone:5550*",
]


async def test_a_filter_or_order_on_a_masked_field_needs_approval(tmp_path):
    got: list[tuple[str, int, bytes]] = []
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        reader = bearer(s)
        for auth in (reader, bearer(s, ("dba",))):
            for path in ORACLES:
                headers = {**auth, "Prefer": "count=exact"}
                async with client.get(s.url + path, headers=headers) as r:
                    got.append((path, r.status, await r.read()))
            # a search body naming the field (a masked dba's POST is otherwise allowed)
            search = {"wildcard": {"phone": "5550*"}}
            async with client.post(s.url + "/customers", json=search, headers=auth) as r:
                got.append(("POST search", r.status, await r.read()))
        async with client.get(s.url + "/customers?order=id", headers=reader) as r:
            plain = (r.status, await r.json())
        async with client.get(
            s.url + ORACLES[0], headers=bearer(s, ("readonly", "pii-readers"))
        ) as r:
            pii = (r.status, await r.json())
    for path, code, body in got:
        assert code == 202, (path, code, body)
        assert b"Ann" not in body, (path, body)
    assert plain[0] == 200 and [r["phone"] for r in plain[1]] == ["[REDACTED]"] * 2
    assert pii == (200, [CUSTOMERS[0]])


async def test_a_read_naming_no_masked_field_is_still_a_read(tmp_path):
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        answer = await exchange(
            s.proxy.port, request(s, "GET /customers?name=eq.Ann&order=id HTTP/1.1")
        )
    assert status(answer) == 200, answer
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body == [{**CUSTOMERS[0], "phone": "[REDACTED]", "email": "[REDACTED]"}]


def etag_app() -> web.Application:
    """/customers/1 with a strong ETag that is the SHA-256 of its body (as Express's and
    many frameworks' are a hash of it), answering 304 to a matching If-None-Match and 412
    to an If-Match that does not match."""

    async def customer(request: web.Request) -> web.Response:
        body = json.dumps(CUSTOMERS[0]).encode()
        etag = f'"{hashlib.sha256(body).hexdigest()}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        given = request.headers.get("If-Match")
        if given is not None and given != etag:
            return web.Response(status=412)
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

    app = web.Application()
    app.router.add_get("/customers/1", customer)
    return app


def _etag_of(phone: str) -> str:
    body = json.dumps({**CUSTOMERS[0], "phone": phone}).encode()
    return f'"{hashlib.sha256(body).hexdigest()}"'


async def test_a_validator_of_the_unmasked_body_does_not_go_upstream(tmp_path):
    # the masked answer's other fields are known (the reader sees them), so the ETag of
    # each guess at the phone is computable: a 304 (or no 412) said the guess was right
    got = {}
    async with (
        app_upstream(etag_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        reader = bearer(s)
        for guess in ("5550100", "5550101"):
            for name in ("If-None-Match", "If-Match"):
                headers = {**reader, name: _etag_of(guess)}
                async with client.get(s.url + "/customers/1", headers=headers) as r:
                    got[guess, name] = (r.status, await r.read())
        pii = {**bearer(s, ("readonly", "pii-readers")), "If-None-Match": _etag_of("5550100")}
        async with client.get(s.url + "/customers/1", headers=pii) as r:
            unmasked = r.status
    for key, (code, body) in got.items():
        assert code == 200 and b'"[REDACTED]"' in body, (key, code, body)
    assert unmasked == 304


async def _read_as(tmp_path: Any, kind: str, body: bytes, groups: tuple[str, ...]) -> bytes:
    return await proxied(tmp_path, ok(kind, body), groups=groups)


HIDDEN = (b"5550100", b"hunter2", b"DE89370400440532013000")
PLURALS = {
    "json phones": ("application/json", b'{"id": 1, "phones": ["5550100", "5550101"]}'),
    "json passwords": ("application/json", b'[{"passwords": ["hunter2"]}]'),
    "json camelCase plural": ("application/json", b'{"customerIbans": ["DE89370400440532013000"]}'),
    "csv": ("text/csv", b"id,phones\n1,5550100\n"),
    "text": ("text/plain", b"passwords: hunter2\n"),
}


@pytest.mark.parametrize("case", sorted(PLURALS))
async def test_a_field_named_in_the_plural_is_masked(tmp_path, case):
    kind, body = PLURALS[case]
    answer = await _read_as(tmp_path, kind, body, ("readonly",))
    assert status(answer) == 200 and not any(v in answer for v in HIDDEN), answer


INVERTED = {
    "value to field": ("application/json", b'{"5550100": "phone"}'),
    "in a list": ("application/json", b'[{"hunter2": "password"}]'),
    "value to descriptor": ("application/json", b'{"5550100": {"field": "phone", "ok": true}}'),
    "ndjson": ("application/x-ndjson", b'{"DE89370400440532013000": "iban"}\n'),
}


@pytest.mark.parametrize("case", sorted(INVERTED))
async def test_a_one_member_map_from_a_value_to_its_field_is_masked(tmp_path, case):
    kind, body = INVERTED[case]
    answer = await _read_as(tmp_path, kind, body, ("readonly",))
    assert status(answer) == 200 and not any(v in answer for v in HIDDEN), answer


async def test_a_one_member_map_naming_a_fields_role_is_kept(tmp_path):
    body = b'{"errors": [{"field": "email"}, {"missing": "phone"}], "sortBy": "phone"}'
    answer = await _read_as(tmp_path, "application/json", body, ("readonly",))
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == json.loads(body)


# Python's b85 alphabet to ZeroMQ's Z85, digit for digit
_B85_AS_Z85 = bytes.maketrans(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~",
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#",
)


def _transformed(what: str, key: bytes) -> tuple[str, bytes]:
    """(media type, body) of an upstream handing its own key back transformed."""
    if what == "base32":
        return "text/plain", b"seed: " + base64.b32encode(b"k=" + key)
    if what == "base32 lower, hex alphabet":
        return "text/plain", base64.b32hexencode(b"abc" + key).lower()
    if what == "reversed":
        return "application/json", b'{"debug": "%s"}' % key[::-1]
    # base85 in its three alphabets (guard.base85_cores; was let through before c098305)
    if what == "base85":
        return "text/plain", b"seed: " + base64.b85encode(b"k=" + key)
    if what == "ascii85":
        return "text/plain", b"<~" + base64.a85encode(b"key " + key) + b"~>"
    if what == "z85":
        return "text/plain", base64.b85encode(b"abc" + key).translate(_B85_AS_Z85)
    if what == "gzip file":
        return "application/gzip", gzip.compress(b"log line: key=" + key + b"\n")
    if what == "gzip file, unlabelled":
        return "application/octet-stream", gzip.compress(b"x" * 300 + key)
    if what == "gzip file in a gzip file":
        return "application/x-gzip", gzip.compress(gzip.compress(key))
    if what == "zip file":
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("readme.txt", "hello")
            archive.writestr("env.txt", b"API_KEY=" + key)
        return "application/zip", packed.getvalue()
    if what == "xz file":
        return "application/x-xz", lzma.compress(b"key " + key)
    if what == "bzip2 file":
        return "application/x-bzip2", bz2.compress(b"key " + key)
    if what == "large gzip file":  # (streamed: past what is checked whole before its head)
        return "application/octet-stream", gzip.compress(os.urandom(400_000) + key)
    if what == "zstd file":  # (a format the proxy cannot open: refused unread)
        return "application/zstd", b"\x28\xb5\x2f\xfd" + b"\x00" * 64
    raise AssertionError(what)


TRANSFORMED = [
    "base32",
    "base32 lower, hex alphabet",
    "reversed",
    "base85",
    "ascii85",
    "z85",
    "gzip file",
    "gzip file, unlabelled",
    "gzip file in a gzip file",
    "zip file",
    "xz file",
    "bzip2 file",
    "large gzip file",
    "zstd file",
]


@pytest.mark.parametrize("what", TRANSFORMED)
async def test_the_credential_handed_back_transformed_is_cut(tmp_path, what):
    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = head.split(b"X-Api-Key: ", 1)[1].split(b"\r\n", 1)[0]
        kind, body = _transformed(what, key)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (kind.encode(), len(body), body)
        )
        await writer.drain()

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        # a dba in pii-readers: nothing of the answer is masked, only the guard stands
        answer = await exchange(
            s.proxy.port, request(s, "GET /export HTTP/1.1", groups=("dba", "pii-readers"))
        )
    assert status(answer) == 502, answer
    assert _transformed(what, SECRET.encode())[1] not in answer


async def test_a_compressed_file_without_the_credential_goes_whole(tmp_path):
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", "x" * 100_000)
    bodies = {"/a.zip": packed.getvalue(), "/a.gz": gzip.compress(os.urandom(300_000))}

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = bodies[head.split(b" ")[1].decode()]
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    got = {}
    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for path in bodies:
            got[path] = await exchange(
                s.proxy.port, request(s, f"GET {path} HTTP/1.1", groups=("dba", "pii-readers"))
            )
    for path, body in bodies.items():
        assert status(got[path]) == 200 and got[path].partition(b"\r\n\r\n")[2] == body, path


# what an upstream answers under a type the client chose (S3's response-content-type,
# a ?format= that only relabels): text of another kind labelled CSV
RELABELLED = {
    "json": b'{"id": 1, "phone": "5550100", "password": "hunter2"}\n',
    "json lines": b'{"id": 1, "phone": "5550100"}\n{"id": 2, "password": "hunter2"}\n',
    "name: value": b"phone: 5550100\npassword: hunter2\n",
    "a cell holding pairs": b"id,data\n8,password=hunter2\n",
}


@pytest.mark.parametrize("case", sorted(RELABELLED))
async def test_text_labelled_csv_is_masked_as_what_it_is(tmp_path, case):
    answer = await _read_as(tmp_path, "text/csv", RELABELLED[case], ("readonly",))
    assert status(answer) in (200, 502) and not any(v in answer for v in HIDDEN), answer


async def test_a_search_body_typed_otherwise_than_json_is_read_as_json(tmp_path):
    # Elasticsearch (and Flask's get_json(force=True), body-parser with type */*) reads a
    # body as JSON whatever its Content-Type says
    search = b'{"wildcard": {"phone": "5550*"}}'
    got = []
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for fields in ("Content-Type: text/plain\r\n", ""):
            for groups in (("dba",), ("readonly",)):
                line = "POST /customers HTTP/1.1" if groups == ("dba",) else "GET /c HTTP/1.1"
                got.append(
                    await exchange(s.proxy.port, request(s, line, fields, search, groups=groups))
                )
    for answer in got:
        assert status(answer) == 202 and b"Ann" not in answer, answer


async def test_a_body_the_policy_cannot_read_as_a_value_is_read_for_masked_fields(tmp_path):
    multipart = (
        b'--b\r\nContent-Disposition: form-data; name="phone"\r\n\r\nlike.5550*\r\n--b--\r\n'
    )
    cases = [
        ("Content-Type: multipart/form-data; boundary=b\r\n", multipart),
        ("Content-Type: application/xml\r\n", b'<search><like field="Phone">5550</like></search>'),
    ]
    got = []
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for fields, body in cases:
            line = "POST /customers HTTP/1.1"
            got.append(await exchange(s.proxy.port, request(s, line, fields, body, ("dba",))))
        plain = await exchange(
            s.proxy.port,
            request(
                s, "POST /customers HTTP/1.1", "Content-Type: text/csv\r\n", b"id\n7\n", ("dba",)
            ),
        )
    for answer in got:
        assert status(answer) == 202, answer
    assert status(plain) != 202, plain


PROSE = {
    "text": ("text/plain", b"Ann's phone is 5550100 and her password is hunter2.\n"),
    "json note": ("application/json", b'{"note": "call the phone 5550100 after 5"}'),
    "html": ("text/html", b"<p>Phone 5550100</p>\n<p>IBAN DE89370400440532013000</p>"),
}


@pytest.mark.parametrize("case", sorted(PROSE))
async def test_a_value_named_in_prose_is_masked(tmp_path, case):
    kind, body = PROSE[case]
    answer = await _read_as(tmp_path, kind, body, ("readonly",))
    assert status(answer) == 200 and not any(v in answer for v in HIDDEN), answer


async def test_a_value_named_in_prose_in_a_header_is_masked(tmp_path):
    answer = await proxied(
        tmp_path,
        b'HTTP/1.1 200 OK\r\nWarning: 199 - "phone 5550100 is unverified"\r\n'
        b"X-Debug: password was hunter2\r\nContent-Length: 0\r\n\r\n",
        "GET /customers/7 HTTP/1.1",
    )
    assert status(answer) == 200 and not any(v in answer for v in HIDDEN), answer


PAD = "x" * 70000  # past the 64 KiB the policy is shown as a value


def _chunked(body: bytes, at: bytes) -> bytes:
    """`body` in two chunks, split inside `at`."""
    cut = body.index(at) + len(at) // 2
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:cut], body[cut:])) + b"0\r\n\r\n"


BIG_SEARCHES = {
    "json": (
        "Content-Type: application/json\r\n",
        json.dumps({"wildcard": {"phone": "5550*"}, "pad": PAD}).encode(),
    ),
    "json escaped": (
        "Content-Type: application/json\r\n",
        b'{"pad": "%s", "wildcard": {"\\u0070hone": "5550*"}}' % PAD.encode(),
    ),
    "nested key": (
        "Content-Type: application/json\r\n",
        json.dumps({"q": [{"a": {"customerPhoneNumber": "5550*"}}], "pad": PAD}).encode(),
    ),
    "gzip": (
        "Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
        gzip.compress(json.dumps({"pad": PAD, "wildcard": {"phone": "5550*"}}).encode()),
    ),
    "form": (
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"pad=" + PAD.encode() + b"&%70hone=like.5550*",
    ),
    "xml entity": (
        "Content-Type: application/xml\r\n",
        b'<search><like field="&#112;hone">5550</like></search>',
    ),
    "multipart with a file": (
        "Content-Type: multipart/form-data; boundary=b\r\n",
        b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n\x00\xff\xfe'
        + PAD.encode()
        + b'\r\n--b\r\nContent-Disposition: form-data; name="phone"\r\n\r\nlike.5550*\r\n--b--\r\n',
    ),
}


@pytest.mark.parametrize("case", sorted(BIG_SEARCHES))
async def test_a_large_or_escaped_body_naming_a_masked_field_needs_approval(tmp_path, case):
    fields, body = BIG_SEARCHES[case]
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        line = "POST /customers HTTP/1.1"
        answer = await exchange(s.proxy.port, request(s, line, fields, body, ("dba",)))
        chunked = b""
        if "Content-Encoding" not in fields:
            head = request(s, line, fields + "Transfer-Encoding: chunked\r\n", b"", ("dba",))
            split_at = b"phone" if b"phone" in body else b"hone"
            chunked = await exchange(s.proxy.port, head + _chunked(body, split_at))
        pii = await exchange(s.proxy.port, request(s, line, fields, body, ("dba", "pii-readers")))
    assert status(answer) == 202 and b"Ann" not in answer, answer[:300]
    assert not chunked or (status(chunked) == 202 and b"Ann" not in chunked), chunked[:300]
    assert status(pii) != 202, pii[:300]


async def test_a_body_the_proxy_cannot_read_needs_approval_unless_an_upload(tmp_path):
    cbor_search = b"\xa1\x68wildcard\xa1\x65phone\x655550*"  # CBOR, as Elasticsearch reads it
    gated = [
        ("POST /customers/_search HTTP/1.1", "Content-Type: application/cbor\r\n", cbor_search),
        (
            "GET /customers HTTP/1.1",
            "Content-Type: application/x-protobuf\r\n",
            b"\x0a\x05\xff5550*",
        ),
        # a content coding the proxy does not undo: even a write waits
        (
            "POST /customers HTTP/1.1",
            "Content-Encoding: zstd\r\n",
            b"\x28\xb5\x2f\xfd" + os.urandom(64),
        ),
        # JSON past 64 KiB in UTF-16 (Jackson and json.loads read it): no binary upload
        (
            "POST /customers HTTP/1.1",
            "Content-Type: application/json; charset=utf-16\r\n",
            json.dumps({"pad": PAD, "wildcard": {"phone": "5550*"}}).encode("utf-16"),
        ),
        # too many distinct words to hand on
        (
            "POST /customers HTTP/1.1",
            "Content-Type: text/plain\r\n",
            " ".join(f"w{n}x{n * 7}" for n in range(40000)).encode() + b" phone",
        ),
    ]
    goes = [
        (
            "PUT /customers HTTP/1.1",
            "Content-Type: application/octet-stream\r\n",
            os.urandom(2 * 1024 * 1024),
        ),
        (
            "POST /customers HTTP/1.1",
            "Content-Type: application/json\r\n",
            json.dumps({"wildcard": {"name": "A*"}, "pad": PAD}).encode(),
        ),
    ]
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        held = [
            await exchange(s.proxy.port, request(s, line, fields, body, ("dba",)))
            for line, fields, body in gated
        ]
        went = [
            await exchange(s.proxy.port, request(s, line, fields, body, ("dba",)))
            for line, fields, body in goes
        ]
    for answer in held:
        assert status(answer) == 202 and b"could not read" in answer, answer[:400]
    for answer in went:
        assert status(answer) == 200, answer[:400]


def _part(headers: bytes, value: bytes) -> bytes:
    return (
        b"--b\r\nContent-Disposition: form-data; "
        + headers
        + b"\r\n\r\n"
        + value
        + b"\r\n--b--\r\n"
    )


PART_CODINGS = {
    "base64": _part(
        b'name="q"\r\nContent-Transfer-Encoding: base64', base64.b64encode(b"phone:5550*")
    ),
    "quoted-printable": _part(
        b'name="q"\r\nContent-Transfer-Encoding: quoted-printable', b"=70hone:5550*"
    ),
    "rfc 2047 name": _part(b'name="=?utf-8?b?cGhvbmU=?="', b"like.5550*"),
}


@pytest.mark.parametrize("case", sorted(PART_CODINGS))
async def test_a_multipart_part_naming_a_masked_field_in_a_transfer_coding_needs_approval(
    tmp_path, case
):
    # Go's mime/multipart undoes quoted-printable, Python's email base64 and RFC 2047
    fields = "Content-Type: multipart/form-data; boundary=b\r\n"
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        line = "POST /customers HTTP/1.1"
        answer = await exchange(
            s.proxy.port, request(s, line, fields, PART_CODINGS[case], ("dba",))
        )
    assert status(answer) == 202, answer[:300]
