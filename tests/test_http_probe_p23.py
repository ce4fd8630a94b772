"""Probing the HTTP proxy's masks (brief P23, helper webattack9): rows that nothing names.

Real PDP with the shipped policy, the HTTP proxy, an aiohttp upstream of the test's own,
a real client (aiohttp); the reader outside pii-readers (the fields `phone` and
`password` masked; 5550100 and hunter2 are no detector's). Field masks find a value by
its name, and a table can come with none: `SELECT *` over an SQL-over-HTTP API answering
`[[7, "5550100", "hunter2"]]`, a CSV export without its header line, NDJSON or SSE
rows, one per line. Before the fix every such value went whole.

Now (bodies.BodyMask._nameless, _values_first) a table nothing names, neither a column
list, a row of names over it, a header, nor an answer the request follows, has each cell
that may be a masked field's value masked by the strictest field rule: an integer of
seven digits or more, a string holding a digit or `@` other than a short number or a
date. Tables whose columns are named (by names no rule masks too), time series and
coordinates stay as they were.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from http_upstream import http_stack
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream, bearer

from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masker_for

TIMEOUT = aiohttp.ClientTimeout(total=60)
P, W = "5550100", "hunter2"


def _leaks(out: bytes) -> bool:
    return P.encode() in out or W.encode() in out


BODIES = {
    "/sql": ("application/json", json.dumps([[7, P, W], [8, "5550101", "pa55"]])),
    "/sql/wrapped": ("application/json", json.dumps({"data": [[7, P, W]], "rowCount": 1})),
    "/sql/numbers": ("application/json", json.dumps({"rows": [[7, 5550100]]})),
    "/sql/plain-first": ("application/json", json.dumps([[8, "x", "y"], [7, P, W]])),
    "/sql/keyed": ("application/json", json.dumps({"0": [7, P], "1": [8, W]})),
    "/sql/deep": ("application/json", json.dumps({"a": {"b": [{"c": [[7, P, W]]}]}})),
    "/sql/one-row": ("application/json", json.dumps([7, P, W])),
    "/export.csv": ("text/csv", f"7,{P},{W}\n8,5550101,x\n"),
    "/rows.ndjson": ("application/x-ndjson", f"[7,{json.dumps(P)},{json.dumps(W)}]\n"),
    "/rows.sse": ("text/event-stream", f"data: [7,{json.dumps(P)},{json.dumps(W)}]\n\n"),
}


def _app() -> web.Application:
    def answer(kind: str, body: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body.encode(), content_type=kind)

        return handler

    app = web.Application()
    for path, (kind, body) in BODIES.items():
        app.router.add_get(path, answer(kind, body))
    return app


@pytest.mark.integration
async def test_rows_nothing_names_are_masked(tmp_path: Path) -> None:
    async with (
        app_upstream(_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = {}
        for path in BODIES:
            async with client.get(s.url + path, headers=bearer(s)) as r:
                got[path] = (r.status, await r.read())
    for path, (code, out) in got.items():
        assert code in (200, 502), (path, code)
        assert not _leaks(out), (path, out)
        assert code == 502 or b"7" in out, (path, out)


def _masked(kind: str, body: str) -> bytes:
    shown_kind, shown = answer_kind([kind])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), shown_kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


@pytest.mark.parametrize("path", sorted(BODIES))
def test_each_shape_is_masked(path: str) -> None:
    kind, body = BODIES[path]
    try:
        out = _masked(kind, body)
    except Unmaskable:
        return
    assert not _leaks(out), out


# answers whose tables are named, or hold nothing a masked field would
KEPT = {
    "named by columns no rule masks": {"columns": ["id", "name"], "rows": [[7, "ann"]]},
    "a row of names over them": [["id", "name"], [7, "ann"]],
    "a time series": {"values": [[1435781430.781, "1"], [1435781445.781, "2.5"]]},
    "coordinates": {"type": "LineString", "coordinates": [[102.0, 0.5], [103.0, 1.0]]},
    "dates and amounts": {"data": [["2024-01-05", "12.50", 3], ["2024-01-06T10:00:00Z", "-1", 4]]},
    "words": {"data": [["gold", "active"], ["silver", "closed"]]},
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_tables_with_names_or_no_values_stay(case: str) -> None:
    doc = KEPT[case]
    assert json.loads(_masked("application/json", json.dumps(doc))) == doc


def test_a_csv_said_to_have_its_header_or_a_stream_with_a_column_list_stays() -> None:
    """A first line naming no masked column may as well be a row whose cells hold no
    digit (`Ann,Smith`, P27): the rows under it are masked as rows nothing names are,
    unless the Content-Type says `header=present` (RFC 4180) or a column list names
    them (fail closed)."""
    assert _masked("text/csv", f"id,name\n7,{P}\n") == b"id,name\n7,[REDACTED]\n"
    said = BodyMask(masker_for(READER_MASKS, b"k" * 32), "csv", media="text/csv", csv_header=True)
    body = f"id,name\n7,{P}\n".encode()
    assert said.feed(body) + said.finish() == body
    text = f'{{"columns":["id","name"]}}\n[7,"{P}"]\n'
    assert _masked("application/x-ndjson", text) == text.encode()
    text = f'["id","name"]\n[7,"{P}"]\n'
    assert _masked("application/x-ndjson", text) == b'["id","name"]\n[7,"[REDACTED]"]\n'
