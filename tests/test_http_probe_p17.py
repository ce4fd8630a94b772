"""Probing the HTTP proxy (brief P17, helper web5): rows whose columns a map of names to
positions names, and a query naming a charset its words are not read in, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, an aiohttp upstream of the test's own,
a real client (aiohttp); the reader outside pii-readers. Each came to the reader whole
(or went upstream as a plain read) before its fix:

- a columnar answer whose header is a map of column names to positions (`{"headers":
  {"phone": 0}, "rows": [["5550100"]]}`, `{"columns": {"id": 0, "phone": 1}}`, positions
  as digit strings, positions to names `{"0": "phone"}`) or whose column descriptors give
  their position (`[{"name": "phone", "index": 1}, ...]`, Databricks' `position`, SQL's
  1-based `ordinal_position`) away from their place in the list: the rows went whole (a
  list of names masked its rows by place only); now masked by position
  (bodies._column_positions), in an MCP result's structured content too, and in a
  stream (NDJSON, events) whose header document comes before its rows; a square table's
  lists, which may be its columns (ES SQL's columnar `values`, Arrow's JSON `columns`:
  lists as many and as long as its columns were read as rows only), are read both ways;
  rows that are objects keyed by position (`{"0": 7, "1": ...}`) are masked so too;
- `GET /echo/search?%2BAHA-hone=555&_charset_=utf-7` (and a form body's `_charset_`):
  the query's words were read as UTF-8, where `+AHA-hone` names nothing; an upstream
  reading `_charset_` (Sling, Tomcat) reads `phone=555`. Now unread, which needs
  approval for anyone masked (202), as a body declaring such a charset does; likewise a
  query beside a Content-Type naming such a charset and no body (Tomcat's
  useBodyEncodingForURI reads the query in it).
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from http_upstream import exchange, http_stack, request, status
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream
from test_http_probe_p12 import readers_answers

from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masker_for

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)

ANSWERS: dict[str, object] = {
    "a header map": {"headers": {"phone": 0}, "rows": [["5550100"]]},
    "a header map of two": {"headers": {"id": 0, "phone": 1}, "rows": [[7, "5550100"]]},
    "a columns map beside data": {"columns": {"phone": 0}, "data": [["5550100"]]},
    "a map under meta": {"meta": {"columns": {"phone": 1, "id": 0}}, "rows": [[7, "5550100"]]},
    "positions as digits": {"header": {"phone": "0"}, "rows": [["5550100"]]},
    "positions to names": {"columns": {"0": "phone"}, "rows": [["5550100"]]},
    "a column index map": {"columnIndex": {"phone": 0}, "values": [["5550100"]]},
    "a wider row": {"headers": {"phone": 0}, "rows": [["5550100", 7, "x"]]},
    "descriptors with an index": {
        "columns": [{"name": "phone", "index": 1}, {"name": "id", "index": 0}],
        "rows": [[7, "5550100"]],
    },
    "descriptors by position": {
        "schema": {"columns": [{"name": "phone", "position": 1}, {"name": "id", "position": 0}]},
        "data": [["7", "5550100"]],
    },
    "descriptors by ordinal position": {
        "cols": [
            {"column_name": "phone", "ordinal_position": 2},
            {"column_name": "id", "ordinal_position": 1},
        ],
        "rows": [[7, "5550100"]],
    },
    # SQL over HTTP as its engines answer it (masked before too; kept)
    "trino": {"columns": [{"name": "phone", "type": "varchar"}], "data": [["5550100"]]},
    "clickhouse": {"meta": [{"name": "phone", "type": "String"}], "data": [["5550100"]]},
    "bigquery": {
        "schema": {"fields": [{"name": "phone", "type": "STRING"}]},
        "rows": [{"f": [{"v": "5550100"}]}],
    },
    "elasticsearch sql": {"columns": [{"name": "phone", "type": "text"}], "rows": [["5550100"]]},
    "snowflake": {
        "resultSetMetaData": {"rowType": [{"name": "PHONE", "type": "text"}]},
        "data": [["5550100"]],
    },
    "databricks": {
        "manifest": {
            "schema": {"columns": [{"name": "id", "position": 0}, {"name": "phone", "position": 1}]}
        },
        "result": {"data_array": [["7", "5550100"]]},
    },
    "fields and data": {"fields": [{"name": "phone"}], "data": [["5550100"]]},
    # a square table's lists, which may be its columns (ES SQL's columnar `values`,
    # Arrow's JSON `columns`), and cells that are objects
    "elasticsearch sql columnar": {
        "columns": [{"name": "id"}, {"name": "phone"}],
        "values": [[1, 2], ["5550100", "5550101"]],
    },
    "arrow's json columns": {
        "schema": {"fields": [{"name": "id"}, {"name": "phone"}]},
        "columns": [[1, 2], ["5550100", "5550101"]],
    },
    "a header map over columns": {
        "headers": {"id": 0, "phone": 1},
        "columns": [[1, 2], ["5550100", "5550101"]],
    },
    "a header map over object cells": {"headers": {"phone": 0}, "rows": [[{"value": "5550100"}]]},
    # rows as objects keyed by position (PHP's json_encode of an array not numbered from 0)
    "rows keyed by position": {"columns": ["id", "phone"], "rows": [{"0": 7, "1": "5550100"}]},
    "rows keyed by position, a header map": {"headers": {"phone": "0"}, "rows": [{"0": "5550100"}]},
}


def _masked(doc: object) -> bytes:
    kind, shown = answer_kind(["application/json"])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    return mask.feed(json.dumps(doc).encode()) + mask.finish()


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_rows_named_by_position_are_masked(case: str) -> None:
    try:
        out = _masked(ANSWERS[case])
    except Unmaskable:
        return
    assert b"5550100" not in out and b"5550101" not in out, out


def test_what_a_position_map_does_not_name_stays() -> None:
    doc = {"headers": {"id": 0, "plan": 1}, "rows": [[7, "gold 5550100"]]}
    assert json.loads(_masked(doc)) == doc
    out = json.loads(_masked({"headers": {"phone": 1, "id": 0}, "rows": [[7, "5550100"]]}))
    assert out["rows"] == [[7, "[REDACTED]"]], out


# a stream's header document, then its rows in the documents after it (ClickHouse's
# JSONCompactEachRowWithNamesAndTypes, a header event then row events)
STREAMS = {
    "a header map, then a row line": (
        "application/x-ndjson",
        '{"headers": {"phone": 0}}\n["5550100"]\n',
    ),
    "names, types, then rows": (
        "application/x-ndjson",
        '["id", "phone"]\n["UInt32", "String"]\n[7, "5550100"]\n',
    ),
    "a columns map, then rows": (
        "application/x-ndjson",
        '{"columns": {"phone": 0}}\n{"rows": [["5550100"]]}\n',
    ),
    "a header event, then a row event": (
        "text/event-stream",
        'data: {"headers": {"phone": 0}}\n\ndata: ["5550100"]\n\n',
    ),
}


@pytest.mark.parametrize("case", sorted(STREAMS))
def test_rows_after_their_header_in_a_stream_are_masked(case: str) -> None:
    content_type, body = STREAMS[case]
    kind, shown = answer_kind([content_type])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    try:
        out = mask.feed(body.encode()) + mask.finish()
    except Unmaskable:
        return
    assert b"5550100" not in out, out


def test_a_stream_naming_nothing_stays() -> None:
    kind, shown = answer_kind(["application/x-ndjson"])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    body = b'["id", "plan"]\n[7, "gold"]\n'
    out = mask.feed(body) + mask.finish()
    assert [json.loads(n) for n in out.splitlines()] == [["id", "plan"], [7, "gold"]], out


def _app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(ANSWERS[sorted(ANSWERS)[int(request.query["n"])]])

    app = web.Application()
    app.router.add_get("/answer", answer)
    return app


async def test_rows_named_by_position_are_masked_end_to_end(tmp_path: Path) -> None:
    async with (
        app_upstream(_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = await readers_answers(s, client, sorted(ANSWERS))
    odd = {case: got[case] for case in got if got[case][0] not in (200, 502)}
    assert not odd, odd
    leaked = {c: out[:200] for c, (code, out) in got.items() if code == 200 and b"5550100" in out}
    assert not leaked, leaked
    assert got["a header map"][0] == 200, got["a header map"]


# a query (or a form body) whose `_charset_` names a charset its words are not read in
CHARSET_QUERIES = {
    "query _charset_ utf-7": ("GET /echo/search?%2BAHA-hone=555&_charset_=utf-7 HTTP/1.1", "", b""),
    "query _CHARSET_ first": ("GET /echo/search?_CHARSET_=UTF-7&q=%2BAHA-hone HTTP/1.1", "", b""),
    "a query beside a content type in utf-7": (
        "GET /echo/search?%2BAHA-hone=555 HTTP/1.1",
        "Content-Type: application/x-www-form-urlencoded; charset=UTF-7\r\n",
        b"",
    ),
    "form _charset_ utf-7": (
        "POST /echo/search HTTP/1.1",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"_charset_=utf-7&%2BAHA-hone=555",
    ),
}


async def test_a_query_naming_a_charset_not_read_needs_approval(tmp_path: Path) -> None:
    async with http_stack(tmp_path) as s:
        got = {}
        for case, (line, fields, body) in CHARSET_QUERIES.items():
            answer = await exchange(s.proxy.port, request(s, line, fields, body))
            got[case] = status(answer)
        plain = await exchange(
            s.proxy.port, request(s, "GET /echo/search?q=gold&_charset_=utf-8 HTTP/1.1", "", b"")
        )
    assert got == dict.fromkeys(CHARSET_QUERIES, 202), got
    assert status(plain) == 200, plain[:300]
