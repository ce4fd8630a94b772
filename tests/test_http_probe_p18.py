"""Probing the HTTP proxy's masks (brief P18, helper web6): phone numbers and e-mails
carried in URIs, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, an aiohttp upstream of the test's own,
a real client (aiohttp); the reader outside pii-readers (the field `phone` masked, a
phone number no detector's). Each came to the reader whole before its fix:

- a URI whose scheme dials or texts a number (`sms:+15550100`, `SMSTO:5550100:hi`,
  `mms:`, `callto://`, `facetime:`, `fax:`, `skype:...?call`, `wtai://wp/mc;...`, a
  viber link's `number=`), under any member (`link`, `href`) or in a text line: only
  `tel:` was read (its scheme is an alias of `phone`); now its number is masked as the
  `phone` field's value wherever it stands (bodies._PHONE_URI);
- a `data:` URI whose base64 is short (`data:text/plain;base64,dGVsOjU1NTAxMDA=`, the
  text `tel:5550100`): base64 inside a text was read from 16 characters on; a data: URI's
  payload is base64 by its own word and is read whatever its length;
- columns named in one place and rows by position in another (see TABLES), a later page
  of rows under the columns an earlier answer named, and a JSON object naming a member
  twice (refused);
- a zlib stream (RFC 1950: Python's zlib.compress, PHP's gzcompress, Java's Deflater; a
  file or a base64 blob in a JSON string or an MCP resource): packed.py opened gzip, zip,
  bzip2, xz and tar only, so the upstream's credential inside one went past the guard to
  anyone, and a masked field's value inside a blob to a reader.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
import zlib
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from http_upstream import SECRET, exchange, http_stack, raw_server, request, status
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream, bearer
from test_http_probe_p12 import readers_answers

from proxies.http import mcp
from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masker_for

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


URIS: dict[str, str] = {
    "sms": "sms:+15550100",
    "sms with a body": "sms:+15550100?body=hello",
    "smsto of a qr code": "SMSTO:5550100:hello",
    "mms": "mms:5550100",
    "callto": "callto://+15550100",
    "facetime": "facetime:+15550100",
    "facetime audio": "facetime-audio:5550100",
    "fax": "fax:+15550100",
    "skype": "skype:+15550100?call",
    "wtai make call": "wtai://wp/mc;5550100",
    "viber number": "viber://chat?number=%2B15550100",
    "a data uri of a short text": "data:text/plain;base64," + _b64("tel:5550100"),
    "a data uri of an sms link": "data:text/plain;base64," + _b64("sms:5550100"),
}


def _leaks(out: bytes) -> bool:
    """Whether `out` shows the number, as written or as its reader decodes it."""
    text = out.decode("utf-8", "replace")
    seen = [text, urllib.parse.unquote(text)]
    for run in text.replace('"', " ").replace(",", " ").split():
        try:
            seen.append(base64.b64decode(run + "==").decode("utf-8", "replace"))
        except ValueError:
            pass
    return any("5550100" in s for s in seen)


def _masked(kind: str, body: str) -> bytes:
    shown_kind, shown = answer_kind([kind])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), shown_kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


@pytest.mark.parametrize("case", sorted(URIS))
@pytest.mark.parametrize("where", ["a link member", "an href in text", "a text line"])
def test_a_number_in_a_uri_is_masked(case: str, where: str) -> None:
    uri = URIS[case]
    kind, body = {
        "a link member": ("application/json", json.dumps({"link": uri})),
        "an href in text": ("application/json", json.dumps({"note": f'<a href="{uri}">x</a>'})),
        "a text line": ("text/plain", f"reach us at {uri} today\n"),
    }[where]
    try:
        out = _masked(kind, body)
    except Unmaskable:
        return
    assert not _leaks(out), out


def test_other_uris_stay() -> None:
    doc = {"link": "https://example.com/smsto/5", "skype": "skyper:x", "n": "mms-5"}
    assert json.loads(_masked("application/json", json.dumps(doc))) == doc


def _app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        uri = URIS[sorted(URIS)[int(request.query["n"])]]
        return web.json_response({"id": 7, "contact": uri, "html": f'<a href="{uri}">'})

    app = web.Application()
    app.router.add_get("/answer", answer)
    return app


async def test_a_number_in_a_uri_is_masked_end_to_end(tmp_path: Path) -> None:
    async with (
        app_upstream(_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = await readers_answers(s, client, sorted(URIS))
    odd = {case: got[case] for case in got if got[case][0] not in (200, 502)}
    assert not odd, odd
    leaked = {c: out[:200] for c, (code, out) in got.items() if code == 200 and _leaks(out)}
    assert not leaked, leaked
    assert got["sms"][0] == 200, got["sms"]


# columns named in one place, rows by position in another, in shapes the masks did not
# pair (each came whole; a phone number is no detector's)
P = "5550100"
TABLES: dict[str, object] = {
    "names in a descriptor object, rows apart": {
        "meta": {"fields": ["id", "phone"]},
        "payload": {"items": [[7, P]]},
    },
    "columns as name and type pairs": {
        "columns": [["id", "Int32"], ["phone", "String"]],
        "rows": [[7, P]],
    },
    "columns as one delimited string": {"columns": "id,phone", "rows": [[7, P]]},
    "a header as one tab-delimited string": {"header": "id\tphone", "data": [[7, P]]},
    "rows as delimited strings": {"columns": ["id", "phone"], "rows": ["7," + P, "8,5550101"]},
    "rows as quoted csv strings": {"columns": ["id", "phone"], "rows": ['7,"' + P + '"']},
    "rows keyed by their number": {"columns": ["id", "phone"], "rows": {"0": [7, P]}},
    "columns keyed as key": {"columns": [{"key": "id"}, {"key": "phone"}], "rows": [[7, P]]},
    "columns keyed as field": {"fields": [{"field": "id"}, {"field": "phone"}], "data": [[7, P]]},
}


@pytest.mark.parametrize("case", sorted(TABLES))
def test_rows_named_elsewhere_are_masked(case: str) -> None:
    try:
        out = _masked("application/json", json.dumps(TABLES[case]))
    except Unmaskable:
        return
    assert P not in out.decode() and b"5550101" not in out, out


@pytest.mark.parametrize("case", sorted(TABLES))
def test_rows_named_elsewhere_are_masked_in_mcp_results(case: str) -> None:
    masker = masker_for(READER_MASKS, b"k" * 32)
    out = mcp._mask_tree({"structuredContent": TABLES[case]}, masker, Counter())
    assert P not in json.dumps(out) and "5550101" not in json.dumps(out), out


def test_tables_naming_nothing_stay() -> None:
    for doc in (
        {"columns": "id,plan", "rows": [[7, "gold 1"]]},
        {"columns": ["id", "plan"], "rows": ["7,gold", "8,silver"]},
        {"columns": [["id", "Int32"], ["plan", "String"]], "rows": {"0": [7, "gold"]}},
    ):
        assert json.loads(_masked("application/json", json.dumps(doc))) == doc


# a JSON object naming a member twice: clients read the first, the last or both; the
# masks read the last (`columns` naming `name`) and the rows went whole under it
DUPLICATES = {
    "columns twice, the masked first": '{"columns": ["id", "phone"], "rows": [[7, "P"]], '
    '"columns": ["id", "name"]}',
    "a key twice, one escaped": '{"ph\\u006fne": "P", "phone": "x"}',
    "in a stream's line": '{"a": 1, "a": 2, "phone": "P"}',
}


def test_a_member_named_twice_is_not_passed() -> None:
    for case, body in DUPLICATES.items():
        kind = "application/x-ndjson" if "stream" in case else "application/json"
        with pytest.raises(Unmaskable):
            _masked(kind, body.replace('"P"', json.dumps(P)) + "\n")


def _pages_app() -> web.Application:
    # Databricks' statement API: the first answer names the columns and holds the first
    # chunk; the next chunks hold rows alone (`/statements/{id}/result/chunks/{n}`)
    async def statement(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "statement_id": "s1",
                "manifest": {"schema": {"columns": [{"name": "id"}, {"name": "phone"}]}},
                "result": {"chunk_index": 0, "data_array": [["7", P]]},
            }
        )

    async def chunk(request: web.Request) -> web.Response:
        rows = [["8", "5550101"], ["9", "5550102"]]
        return web.json_response({"chunk_index": 1, "row_offset": 1, "data_array": rows})

    async def sql(request: web.Request) -> web.Response:
        return web.json_response({"columns": ["p"], "rows": [[P]]})

    app = web.Application()
    app.router.add_get("/statements/s1", statement)
    app.router.add_get("/statements/s1/result/chunks/1", chunk)
    app.router.add_get("/sql", sql)
    return app


async def test_a_later_page_of_rows_is_masked_under_the_columns_named_first(
    tmp_path: Path,
) -> None:
    async with (
        app_upstream(_pages_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        reader = bearer(s, sub="mallory@example.com")
        got = []
        for path in ("/statements/s1", "/statements/s1/result/chunks/1"):
            async with client.get(s.url + path, headers=reader) as r:
                got.append((r.status, await r.read()))
        # a column renamed in the query (`SELECT phone AS p`): the request names the field
        async with client.get(
            s.url + "/sql", params={"query": "SELECT phone AS p FROM customers"}, headers=reader
        ) as r:
            renamed = r.status, await r.read()
    assert [status for status, _ in got] == [200, 200], got
    leaked = [body for _, body in got if any(n.encode() in body for n in (P, "5550101"))]
    assert not leaked, leaked
    assert json.loads(got[1][1])["data_array"][0][0] == "8"
    assert renamed[0] == 202 and P.encode() not in renamed[1], renamed


@pytest.mark.parametrize("level", [1, 3, 6, 9])
async def test_the_credential_in_a_zlib_stream_is_cut(tmp_path: Path, level: int) -> None:
    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = head.split(b"X-Api-Key: ", 1)[1].split(b"\r\n", 1)[0]
        body = zlib.compress(b"export: key=" + key + b"\n", level)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
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
    assert zlib.compress(b"export: key=" + SECRET.encode() + b"\n", level) not in answer


def test_a_zlib_blob_in_an_answer_is_masked() -> None:
    blob = base64.b64encode(zlib.compress(json.dumps({"phone": P}).encode())).decode()
    out = _masked("application/json", json.dumps({"id": 7, "export": blob}))
    shown = json.loads(out)["export"]
    assert shown != blob, shown  # (withheld: the masks cannot rewrite a compressed file)
    masker = masker_for(READER_MASKS, b"k" * 32)
    read = mcp._mask_tree({"contents": [{"uri": "invoice://7", "blob": blob}]}, masker, Counter())
    (content,) = read["contents"]
    assert content["blob"] != blob, content
    assert P.encode() not in base64.b64decode(content["blob"] + "==")


def test_text_opening_like_a_zlib_header_stays_text() -> None:
    for text in ("x^2 + 3 = 5", "x^y"):
        assert json.loads(_masked("application/json", json.dumps({"f": text}))) == {"f": text}
        assert _masked("text/plain", text + "\n") == (text + "\n").encode()


def test_a_file_opening_like_zlib_is_read_as_written_not_refused() -> None:
    # (a zlib header is two bytes a binary file opens with one time in about 2,000: what
    # does not inflate is read as written, and what inflates before the error too)
    from proxies.http.packed import packed_kind, unpacked

    opening = zlib.compress(b"hello")[:6]
    data = opening + bytes(range(256)) * 4
    assert packed_kind(data) == "zlib"
    (read,) = unpacked(data)
    assert read.endswith(data)
    cut = zlib.compress(b"key=" + SECRET.encode() * 50)[:-8]
    (read,) = unpacked(cut)
    assert SECRET.encode() in read
