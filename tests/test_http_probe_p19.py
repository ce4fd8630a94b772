"""Probing the HTTP proxy's masks (brief P19, helper webattack7): columns named apart from
their rows, whole rows written as one composite, and the session's memory of columns.

Real PDP with the shipped policy, the HTTP proxy, an aiohttp upstream of the test's own,
a real client (aiohttp); the reader outside pii-readers (the field `phone` masked, a
phone number such as 5550100 no detector's). Before the fixes:

- columns named only in a response header (`X-Columns: id,phone`) over rows with no
  names (CSV without its header line, JSON arrays, NDJSON rows): the rows went whole;
- columns named by a schema call (`/tables/customers/schema`, `/schema?table=...`)
  and the rows fetched by another (`/tables/customers/rows`): whole;
- a row written as one composite value (PostgreSQL's record text, `(7,5550100,ann)`,
  as SQL-over-HTTP APIs return `SELECT c FROM customers c`): only the detectors read it,
  so the phone went whole;
- the session's memory of columns read any later table of the same width under them:
  `/orders`' `[7, "gold"]` after `/customers`' `["id", "phone"]` came back
  `[7, "[REDACTED]"]` (the wrong column masked). It now holds for the requests that
  follow the one it was learnt from (proxies/http/table_memory.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from http_upstream import exchange, http_stack, request, status
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream, bearer

from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masker_for
from proxies.http.table_memory import Asked, TableMemory, http_asked

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
P, P2 = "5550100", "5550101"


def _leaks(out: bytes) -> bool:
    return P.encode() in out or P2.encode() in out


def _app() -> web.Application:
    async def header_csv(request: web.Request) -> web.Response:
        body = f"7,{P}\n8,{P2}\n"
        return web.Response(text=body, content_type="text/csv", headers={"X-Columns": "id,phone"})

    async def header_json(request: web.Request) -> web.Response:
        return web.json_response([[7, P], [8, P2]], headers={"X-Column-Names": "id, phone"})

    async def header_ndjson(request: web.Request) -> web.StreamResponse:
        body = f"[7,{json.dumps(P)}]\n[8,{json.dumps(P2)}]\n"
        headers = {"X-Fields": '["id","phone"]'}
        return web.Response(text=body, content_type="application/x-ndjson", headers=headers)

    async def schema(request: web.Request) -> web.Response:
        return web.json_response({"table": "customers", "columns": ["id", "phone"]})

    async def rows(request: web.Request) -> web.Response:
        return web.json_response([[7, P], [8, P2]])

    async def csv_rows(request: web.Request) -> web.Response:
        return web.Response(text=f"7,{P}\n8,{P2}\n", content_type="text/csv")

    async def orders(request: web.Request) -> web.Response:
        return web.json_response([[7, "gold"], [8, "silver"]])

    async def customers(request: web.Request) -> web.Response:
        return web.json_response({"columns": ["id", "phone"], "rows": [[7, P]]})

    async def composite(request: web.Request) -> web.Response:
        rows = [{"c": f"(7,{P},ann)"}, {"c": f'(8,"{P2}","ann, b")'}]
        return web.json_response(rows)

    app = web.Application()
    app.router.add_get("/header/csv", header_csv)
    app.router.add_get("/header/json", header_json)
    app.router.add_get("/header/ndjson", header_ndjson)
    app.router.add_get("/tables/customers/schema", schema)
    app.router.add_get("/tables/customers/rows", rows)
    app.router.add_get("/tables/customers/rows.csv", csv_rows)
    app.router.add_get("/schema", schema)
    app.router.add_get("/rows", rows)
    app.router.add_get("/orders", orders)
    app.router.add_get("/customers", customers)
    app.router.add_get("/composite", composite)
    return app


async def _answers(tmp_path: Path, paths: list[str]) -> list[tuple[int, bytes]]:
    async with (
        app_upstream(_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        reader = bearer(s, sub="mallory@example.com")
        got = []
        for path in paths:
            async with client.get(s.url + path, headers=reader) as r:
                got.append((r.status, await r.read()))
        return got


@pytest.mark.parametrize("path", ["/header/csv", "/header/json", "/header/ndjson"])
async def test_columns_named_in_a_header_mask_their_rows(tmp_path: Path, path: str) -> None:
    ((code, out),) = await _answers(tmp_path, [path])
    assert code in (200, 502), (code, out)
    assert not _leaks(out), out
    assert code == 200 and b"7" in out, out


@pytest.mark.parametrize(
    "schema, rows",
    [
        ("/tables/customers/schema", "/tables/customers/rows"),
        ("/tables/customers/schema", "/tables/customers/rows.csv"),
        ("/schema?table=customers", "/rows?table=customers"),
    ],
)
async def test_columns_a_schema_call_named_mask_the_rows_fetched_apart(
    tmp_path: Path, schema: str, rows: str
) -> None:
    got = await _answers(tmp_path, [schema, rows])
    assert [code for code, _ in got] == [200, 200], got
    assert not _leaks(got[1][1]), got
    assert b"7" in got[1][1], got


async def test_a_table_of_the_same_width_elsewhere_is_not_masked(tmp_path: Path) -> None:
    got = await _answers(tmp_path, ["/customers", "/orders", "/schema?table=customers"])
    assert [code for code, _ in got] == [200, 200, 200], got
    assert not _leaks(got[0][1]), got
    assert json.loads(got[1][1]) == [[7, "gold"], [8, "silver"]], got


async def test_a_whole_row_as_one_composite_is_masked(tmp_path: Path) -> None:
    ((code, out),) = await _answers(tmp_path, ["/composite"])
    assert code in (200, 502), (code, out)
    assert not _leaks(out), out


def test_the_memory_holds_for_the_requests_that_follow() -> None:
    memory = TableMemory()
    memory.learn(http_asked("/v1/statements", ""), ["id", "phone"], frozenset({"01ab-77c"}))
    memory.learn(http_asked("/tables/t/schema", ""), ["a", "phone", "b"])
    follows = [
        http_asked("/v1/statements", "page=2"),
        http_asked("/v1/statements/01ab-77c", ""),
        http_asked("/v1/next", "cursor=01ab-77c"),
        http_asked("/tables/t/rows", ""),
    ]
    for asked in follows:
        assert memory.known(asked), asked
    for asked in (http_asked("/v1/other", ""), http_asked("/tables/u/rows", "")):
        assert not memory.known(asked), asked
    assert memory.known(Asked("tool:x")) == {}


def _masked(kind: str, body: str, columns: list[str] | None = None) -> bytes:
    shown_kind, shown = answer_kind([kind])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), shown_kind, media=shown, columns=columns)
    return mask.feed(body.encode()) + mask.finish()


COMPOSITES = {
    "a record in a json string": ("application/json", json.dumps({"c": f"(7,{P},ann)"})),
    "quoted fields": ("application/json", json.dumps([f'(7,"{P}","a, b")'])),
    "a record in a csv cell": ("text/csv", f'c\n"(7,{P},ann)"\n'),
    "an array of records": ("application/json", json.dumps({"c": f'{{"(7,{P})","(8,{P2})"}}'})),
    "nested": ("application/json", json.dumps({"c": f'(7,"(1,{P})")'})),
}


@pytest.mark.parametrize("case", sorted(COMPOSITES))
def test_a_composite_text_is_masked(case: str) -> None:
    kind, body = COMPOSITES[case]
    try:
        out = _masked(kind, body)
    except Unmaskable:
        return
    assert not _leaks(out), out


def test_text_in_parentheses_stays() -> None:
    doc = {"note": "(see below)", "point": "(1.5,2)", "range": "[1,5)", "n": "(555) 0100"}
    assert json.loads(_masked("application/json", json.dumps(doc))) == doc


# columns named in shapes the masks did not read as names (each row went whole)
NAMED_OTHERWISE = {
    "descriptors under a key of their own": {
        "cols": [{"n": "id"}, {"n": "phone"}],
        "data": [[7, P]],
    },
    "a datatable's ids": {
        "cols": [{"id": "A", "type": "number"}, {"id": "phone", "type": "string"}],
        "rows": [[7, P]],
    },
    "a map of names to types": {"schema": {"id": "int", "phone": "text"}, "data": [[7, P]]},
    "a map of names to descriptors": {
        "columns": {"id": {"type": "int"}, "phone": {"type": "text"}},
        "data": [[7, P]],
    },
    "rows in a json string beside them": {
        "columns": ["id", "phone"],
        "data": json.dumps([[7, P]]),
    },
}


@pytest.mark.parametrize("case", sorted(NAMED_OTHERWISE))
def test_columns_named_otherwise_mask_their_rows(case: str) -> None:
    try:
        out = _masked("application/json", json.dumps(NAMED_OTHERWISE[case]))
    except Unmaskable:
        return
    assert not _leaks(out), out


def test_a_yaml_alias_under_a_masked_field_is_refused() -> None:
    # (its value stood on an earlier line under another name: `phone: *a` masked nothing)
    for body in (f"x: &a {P}\nphone: *a\n", f"x: &a {P}\n- phone: [*a]\n"):
        with pytest.raises(Unmaskable):
            _masked("application/yaml", body)
    for body in ("x: &a gold\nplan: *a\n", "phone: *see below*\n"):
        out = _masked("application/yaml", body)
        assert b"gold" in out or b"REDACTED" in out, out


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# a label written in base64, short (below the 16 characters base64 in a text is read
# from): key-value stores' JSON APIs write both names and values so
CODED_LABELS = {
    "hbase rest's cells": {
        "Row": [{"key": _b64("row1"), "Cell": [{"column": _b64("cf:phone"), "$": _b64(P)}]}]
    },
    "etcd's keys": {"kvs": [{"key": _b64("customers/7/phone"), "value": _b64(P)}]},
}


@pytest.mark.parametrize("case", sorted(CODED_LABELS))
def test_a_label_in_base64_masks_its_value(case: str) -> None:
    out = _masked("application/json", json.dumps(CODED_LABELS[case]))
    assert not _leaks(out) and _b64(P).encode() not in out, out
    plain = {"kvs": [{"key": _b64("customers/7/plan"), "value": _b64("gold")}]}
    assert json.loads(_masked("application/json", json.dumps(plain))) == plain


# columns aligned under a header, as text (`column -t`, sqlcmd, a CLI's report): the MCP
# exchange read them (mcp_columns), an HTTP text answer did not
ALIGNED = {
    "under an underline": "id  phone\n--  -------\n7   5550100\n",
    "two spaces apart": "name   phone    plan\nann    5550100  gold\n",
    "single-spaced over an underline": "id phone\n-- -----\n7 5550100\n",
}


@pytest.mark.parametrize("case", sorted(ALIGNED))
def test_aligned_columns_in_text_are_masked(case: str) -> None:
    try:
        out = _masked("text/plain", ALIGNED[case])
    except Unmaskable:
        return
    assert not _leaks(out), out
    assert b"phone" in out, out


# a stream whose first document names the columns, its later ones holding a row under a
# member (or keyed by position after a line of names, which prose's carry cut apart)
STREAMS = {
    "events, a row under a member": (
        "text/event-stream",
        'data: {"columns": ["id", "phone"]}\n\ndata: {"row": [7, "5550100"]}\n\n',
    ),
    "ndjson, a header record then row records": (
        "application/x-ndjson",
        '{"type": "header", "names": ["id", "phone"]}\n{"type": "row", "values": [7, "5550100"]}\n',
    ),
    "ndjson, names then a row keyed by position": (
        "application/x-ndjson",
        '["id", "phone"]\n{"0": 7, "1": "5550100"}\n',
    ),
}


@pytest.mark.parametrize("case", sorted(STREAMS))
def test_rows_of_a_stream_under_its_header_document_are_masked(case: str) -> None:
    kind, body = STREAMS[case]
    out = _masked(kind, body)
    assert not _leaks(out), out
    for line in out.decode().split("\n"):
        if line.strip():
            json.loads(line.removeprefix("data: "))  # (each record still JSON)


def test_braces_nested_deep_are_read_in_bounded_passes() -> None:
    # (each level of an array text was read again as a composite: 5,000 levels raised
    # RecursionError out of a CSV body's masking, and the reading was quadratic)
    deep = "{" * 5000 + "}" * 5000
    assert _masked("text/csv", f"c\n{deep}\n") == f"c\n{deep}\n".encode()
    assert json.loads(_masked("application/json", json.dumps({"c": deep}))) == {"c": deep}


def test_a_row_an_error_gives_in_prose_is_masked() -> None:
    # (PostgreSQL's detail of a NOT NULL or CHECK violation, as PostgREST hands it on)
    detail = f"Failing row contains (7, ann, {P})."
    for kind, body in (
        ("application/json", json.dumps({"code": "23502", "details": detail})),
        ("text/plain", detail + "\n"),
    ):
        out = _masked(kind, body)
        assert not _leaks(out) and b"(7, " in out, out
    kept = {"details": "Failing row contains (7, null, 12)."}
    assert json.loads(_masked("application/json", json.dumps(kept))) == kept


async def test_a_prefix_or_scheme_claim_does_not_reach_the_upstream(tmp_path: Path) -> None:
    # (Flask's ReverseProxied recipe and Tornado's xheaders read X-Script-Name and
    # X-Scheme: the app routes the path past the prefix the client named)
    fields = "X-Script-Name: /echo\r\nX-Scheme: https\r\n"
    async with http_stack(tmp_path) as s:
        answer = await exchange(s.proxy.port, request(s, "GET /echo/a HTTP/1.1", fields))
    assert status(answer) == 200, answer[:300]
    [seen] = s.upstream.seen
    got = {n.decode().lower() for n, _ in seen["headers"]}
    assert not {"x-script-name", "x-scheme"} & got, got
