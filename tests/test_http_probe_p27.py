"""Probing the HTTP proxy's masks (P27, helper webmask12): a first row of letters read as
names, answers that are one bare value, and what a HEAD's head tells of the body.

Real PDP with the shipped policy, the HTTP proxy, an upstream of the test's own, raw
clients and aiohttp: a reader outside pii-readers (`phone`, `password`, `ssn` masked by
name; 5550100, 078051120 and a password of letters are no detector's). Before the fixes:

- CSV, TSV, JSON rows and NDJSON rows whose first row holds letters alone (`Ann,Smith`,
  a customer ordered first whose phone is empty or spelt out) read that row as names
  over the rest, and the rest went unmasked (`Bob,5550100`); so did the cells of other
  columns under a first row holding a masked field's name as a value (`phone,unlisted`,
  a kind of contact and its value). A first row is now shown as it came and the cells
  under it that no masked name heads are masked as rows nothing names are (fail closed:
  it may be a row of data); only a Content-Type saying `header=present` (RFC 4180)
  makes it names alone. Under columns an answer the request
  follows named (a schema call, then its rows as CSV), a first row of letters was read
  as names of its own and every password of letters under it went whole; it is a row.
- An answer that is one bare value (`"5550100"`, `5550100`, a text/plain `078051120`,
  a line of it; an element's text, `<td>5550100</td>`) went as it came: no name, no
  row, and no detector reads it. It is masked as a cell of rows nothing names is.
- A HEAD (and a GET) on a masked route passed the headers that describe the upstream's
  unmasked bytes under other names than Content-Length and ETag: `Content-Range: bytes
  */49`, `X-Content-Length`, `x-goog-stored-content-length`, an object store's hash of
  them (`x-goog-hash`, `x-amz-checksum-sha256`): the unmasked length of a secret, and an
  oracle for a guessed body. They are dropped on masked answers (messages.describes_body).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_upstream import exchange, http_stack, raw_server, read_cases, reader_get, status
from test_http_probe_p5 import app_upstream, bearer

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
TSV = "text/tab-separated-values"
HIDDEN = ("5550100", "5550101", "078051120", "swordfish", "hunter")

# path: (Content-Type, body); each comes back 200 without HIDDEN
LEAKED_BEFORE = {
    "csv-letters-first": ("text/csv", "Ann,Smith\nBob,5550100\nCy,078051120\n"),
    "csv-letters-first-header-absent": ("text/csv; header=absent", "Ann,Smith\nBob,5550100\n"),
    "tsv-letters-first": (TSV, "Ann\tSmith\nBob\t5550100\n"),
    # (a first row holding a masked field's name as a value: a kind of contact, `phone`,
    # beside a value of letters; the other column's values under it went whole)
    "csv-letters-first-naming-a-field": ("text/csv", "phone,unlisted\nphone,5550101\n"),
    "json-rows-letters-first": (
        "application/json",
        json.dumps({"rows": [["Ann", "Smith"], ["Bob", "5550100"]]}),
    ),
    "ndjson-letters-first": ("application/x-ndjson", '["Ann","Smith"]\n["Bob","5550101"]\n'),
    "json-bare-string": ("application/json", '"5550100"'),
    "json-bare-number": ("application/json", "5550100"),
    "json-bare-escaped": ("application/json", '"\\u0035550100"'),
    "text-bare": ("text/plain", "078051120"),
    "text-bare-line": ("text/plain; charset=utf-8", "5550100\n"),
    "text-bare-lines": ("text/plain", "5550100\n5550101\n"),
    "html-bare-cell": ("text/html", "<tr><td>Ann</td><td>5550100</td></tr>\n"),
    "xml-bare-element": ("application/xml", "<r><v>078051120</v></r>\n"),
}
KEPT = {
    "csv-header-present": ("text/csv; header=present", "No,Order\n1,ORD-2024-0001\n"),
    "csv-names-no-values": ("text/csv", "id,name,city\n7,Ann,Paris\n"),
    "json-rows-names": ("application/json", '[["id","name"],[7,"ann"]]'),
    "json-bare-small": ("application/json", "42"),
    "json-bare-word": ("application/json", '"ok"'),
    "text-words": ("text/plain", "v1.2.3\nhello\n2024-01-05\n"),
    "html-cells": ("text/html", "<td>12</td><td>2024-01-05</td><td>v1.2.3</td>\n"),
}
CASES = {**LEAKED_BEFORE, **KEPT}


async def test_rows_under_a_first_row_of_letters_and_bare_values_are_masked(
    tmp_path: Path,
) -> None:
    got = await read_cases(tmp_path, CASES)
    leaked = {p: body for p, (_, body) in got.items() if any(h.encode() in body for h in HIDDEN)}
    assert leaked == {}, leaked
    assert {p: code for p, (code, _) in got.items()} == {p: 200 for p in CASES}
    # the first row as it came, the value under it masked
    assert got["csv-letters-first"][1] == b"Ann,Smith\nBob,[REDACTED]\nCy,[REDACTED]\n"
    assert got["tsv-letters-first"][1] == b"Ann\tSmith\nBob\t[REDACTED]\n"
    assert json.loads(got["json-rows-letters-first"][1]) == {
        "rows": [["Ann", "Smith"], ["Bob", "[REDACTED]"]]
    }
    assert got["ndjson-letters-first"][1] == b'["Ann","Smith"]\n["Bob","[REDACTED]"]\n'
    assert json.loads(got["json-bare-number"][1]) == "[REDACTED]"
    assert got["text-bare-lines"][1] == b"[REDACTED]\n[REDACTED]\n"
    assert got["html-bare-cell"][1] == b"<tr><td>Ann</td><td>[REDACTED]</td></tr>\n"
    for path in KEPT:
        assert got[path][1] == CASES[path][1].encode(), path


def _schema_app() -> web.Application:
    async def schema(request: web.Request) -> web.Response:
        return web.json_response({"table": "customers", "columns": ["name", "password"]})

    async def rows(request: web.Request) -> web.Response:
        body = "Ann,hunter\nBob,swordfish\n"
        return web.Response(text=body, content_type="text/csv")

    app = web.Application()
    app.router.add_get("/tables/customers/schema", schema)
    app.router.add_get("/tables/customers/rows.csv", rows)
    return app


async def test_letters_under_columns_a_schema_call_named_are_a_row(tmp_path: Path) -> None:
    """Rows whose columns the schema call the request follows named (`name,password`):
    a first line of letters (`Ann,hunter`) is a row under them, not names of its own."""
    async with (
        app_upstream(_schema_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        reader = bearer(s, sub="mallory@example.com")
        got = []
        for path in ("/tables/customers/schema", "/tables/customers/rows.csv"):
            async with client.get(s.url + path, headers=reader) as r:
                got.append((r.status, await r.read()))
    assert [code for code, _ in got] == [200, 200], got
    assert got[1][1] == b"Ann,[REDACTED]\nBob,[REDACTED]\n", got


BODY = b'{"name":"Ann","password":"hunter2hunter2hunter2"}'
# fields an upstream (an object store, a file server) gives beside its body, describing it
DESCRIBING = (
    b'ETag: "e-1"\r\nContent-MD5: bWQ1\r\nX-Content-Length: 49\r\n'
    b"x-goog-stored-content-length: 49\r\nx-goog-hash: crc32c=n03x6A==, md5=bWQ1\r\n"
    b"x-amz-checksum-sha256: c2hh\r\nRepr-Digest: sha-256=:c2hh:\r\nOC-FileSize: 49\r\n"
)


async def _object_store(method_seen: list[str]) -> Any:
    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method = head.split(b" ")[0]
        method_seen.append(method.decode())
        ranged = b"Content-Range: bytes */49\r\n" if b"range" in head.split(b" ")[1] else b""
        out = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Accept-Ranges: bytes\r\nX-Request-Id: r-7\r\n%s%s\r\n"
            % (len(BODY), DESCRIBING, ranged)
        )
        writer.write(out if method == b"HEAD" else out + BODY)
        await writer.drain()

    return raw_server(converse)


async def test_a_heads_fields_tell_nothing_of_the_unmasked_body(tmp_path: Path) -> None:
    seen: list[str] = []
    heads = {}
    async with (
        await _object_store(seen) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for n, line in enumerate(["HEAD /o", "HEAD /o-range", "GET /o", "GET /o-range"]):
            answer = await exchange(s.proxy.port, reader_get(s, n, line))
            heads[line] = answer
    assert seen == ["HEAD", "HEAD", "GET", "GET"]
    for line, answer in heads.items():
        head, _, body = answer.partition(b"\r\n\r\n")
        fields = {f.split(b":")[0].strip().lower() for f in head.split(b"\r\n")[1:]}
        assert b"49" not in head, (line, head)  # (the unmasked length, nowhere)
        if line == "GET /o-range":
            # (a body the upstream says is a range of its bytes is masked as nothing)
            assert status(answer) == 502, answer
            continue
        assert status(answer) == 200, answer
        assert not fields & {
            b"etag",
            b"content-md5",
            b"x-content-length",
            b"x-goog-stored-content-length",
            b"x-goog-hash",
            b"x-amz-checksum-sha256",
            b"repr-digest",
            b"oc-filesize",
            b"content-range",
            b"accept-ranges",
        }, (line, head)
        assert b"x-request-id" in fields  # (the rest as it came)
        if line.startswith("HEAD"):
            assert b"content-length" not in fields and body == b"", (line, answer)
        else:
            assert json.loads(body) == {"name": "Ann", "password": "[REDACTED]"}
            assert f"content-length: {len(body)}".encode() in head
