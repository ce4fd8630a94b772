"""Probing the HTTP proxy's masks (brief P10, helper httpattack): tables in a JSON answer,
kept as tests.

Real PDP with the shipped policy, the HTTP proxy, and an upstream of the test's own (an
aiohttp app answering as SQL-over-HTTP and spreadsheet APIs do); a real client (aiohttp).
The reader is outside pii-readers (the field `phone` masked; a phone number is no
detector's). Each of these came back whole before its fix:

- rows under a row of names (Google Sheets' `values`: `[["Name", "Phone"], ["Ann",
  ...]]`, CSV as JSON; its grid data, cells of `{"formattedValue": ...}`): the masks
  read rows only beside a list of their columns; and one row beside its columns
  (`{"keys": [...], "values": [...]}`);
- columns named away from their rows: BigQuery (`schema.fields`, rows of `{"f": [{"v":
  ...}]}`), Snowflake (`resultSetMetaData.rowType` and `data`), Databricks
  (`manifest.schema.columns` and `result.data_array`), Google's DataTable (`cols` named
  by `label`, rows of `{"c": [{"v": ..., "f": ...}]}`) — as a document, an NDJSON line
  and an SSE event;

and one answer the masks could not read at all: any JSON answer holding a string such as
`find_customer` (letters, digits, `_` or `-`, 4n+1 of them, 13 or more) was a 502 for a
reader: the base64url reader asked b64decode for it, which raises rather than answering
no (bodies._base64_text).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_upstream import http_stack
from pdp_harness import token
from test_http_probe_p5 import app_upstream

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=30)
PHONE = "+1 555 0100"
TABLES: dict[str, Any] = {
    "sheets": {"range": "A1:C3", "values": [["Name", "Phone", "Plan"], ["Ann", PHONE, "gold"]]},
    "bigquery": {
        "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "phone"}]},
        "rows": [{"f": [{"v": "7"}, {"v": PHONE}]}, {"f": [{"v": "8"}, {"v": PHONE}]}],
    },
    "bigquery one column": {
        "schema": {"fields": [{"name": "phone"}]},
        "rows": [{"f": [{"v": PHONE}]}],
    },
    "snowflake": {
        "resultSetMetaData": {"rowType": [{"name": "ID"}, {"name": "PHONE"}]},
        "data": [["7", PHONE]],
    },
    "databricks": {
        "manifest": {"schema": {"columns": [{"name": "id"}, {"name": "phone"}]}},
        "result": {"data_array": [["7", PHONE]]},
    },
    "one row": {"keys": ["id", "phone"], "values": ["7", PHONE]},
    "sheets grid": {
        "sheets": [
            {
                "data": [
                    {
                        "rowData": [
                            {"values": [{"formattedValue": "Name"}, {"formattedValue": "Phone"}]},
                            {"values": [{"formattedValue": "Ann"}, {"formattedValue": PHONE}]},
                        ]
                    }
                ]
            }
        ]
    },
    "datatable": {
        "table": {
            "cols": [{"id": "A", "label": "Name"}, {"id": "B", "label": "Phone Number"}],
            "rows": [{"c": [{"v": "Ann"}, {"v": PHONE, "f": PHONE}]}],
        }
    },
}
NAMES = {"tool": "find_customer", "state": "payment-failed-x", "n": 1}


def tables_app() -> web.Application:
    """/table/<name>: TABLES[name] as JSON, ?as=ndjson (one line) or sse (one event);
    /names: a record of names that are no base64."""

    async def table(request: web.Request) -> web.StreamResponse:
        doc = json.dumps(TABLES[request.match_info["name"]])
        shape = request.query.get("as", "json")
        if shape == "ndjson":
            return web.Response(text=doc + "\n", content_type="application/x-ndjson")
        if shape == "sse":
            return web.Response(text=f"data: {doc}\n\n", content_type="text/event-stream")
        return web.Response(text=doc, content_type="application/json")

    async def names(request: web.Request) -> web.Response:
        return web.json_response(NAMES)

    app = web.Application()
    app.router.add_get("/table/{name}", table)
    app.router.add_get("/names", names)
    return app


async def _get(client: aiohttp.ClientSession, url: str, bearer: str) -> tuple[int, str]:
    async with client.get(url, headers={"Authorization": f"Bearer {bearer}"}) as response:
        return response.status, await response.text()


async def test_a_tables_cells_are_masked_by_the_columns_naming_them(tmp_path: Path) -> None:
    got: dict[str, tuple[int, str]] = {}
    async with (
        app_upstream(tables_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        reader = token(s.config, "mallory@example.com", ("readonly",))
        pii = token(s.config, "ann@example.com", ("readonly", "pii-readers"))
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            for name in TABLES:
                for shape in ("json", "ndjson", "sse"):
                    url = f"{s.url}/table/{name}?as={shape}"
                    got[f"{name} {shape}"] = await _get(client, url, reader)
            whole = await _get(client, f"{s.url}/table/sheets", pii)
    leaked = {
        case: answer for case, answer in got.items() if answer[0] != 200 or PHONE in answer[1]
    }
    assert not leaked, leaked
    # the names and the other cells stay; a pii-reader's answer is the upstream's
    sheets = json.loads(got["sheets json"][1])
    assert sheets["values"] == [["Name", "Phone", "Plan"], ["Ann", "[REDACTED]", "gold"]]
    bigquery = json.loads(got["bigquery json"][1])
    assert bigquery["rows"][1] == {"f": [{"v": "8"}, {"v": "[REDACTED]"}]}
    assert whole == (200, json.dumps(TABLES["sheets"]))


async def test_names_that_are_no_base64_are_read_not_refused(tmp_path: Path) -> None:
    async with (
        app_upstream(tables_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        reader = token(s.config, "mallory@example.com", ("readonly",))
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            status, text = await _get(client, f"{s.url}/names", reader)
    assert status == 200, text
    assert json.loads(text) == NAMES
