"""Probing the HTTP proxy's masks (brief P10, helper httpattack): tables in a JSON answer,
kept as tests.

Real PDP with the shipped policy, the HTTP proxy, and an upstream of the test's own (an
aiohttp app answering as SQL-over-HTTP and spreadsheet APIs do); a real client (aiohttp).
The reader is outside pii-readers (the field `phone` masked; a phone number is no
detector's). Each of these came back whole before its fix:

- rows under a row of names (Google Sheets' `values`: `[["Name", "Phone"], ["Ann",
  ...]]`, CSV as JSON; its grid data, cells of `{"formattedValue": ...}`): the masks
  read rows only beside a list of their columns; and one row beside its columns
  (`{"keys": [...], "values": [...]}`); and a table in JSON pretty-printed as text
  (text/plain: read line by line, `{"columns": [..., "phone"], "rows": [[...]]}` put the
  column's name and its cells on lines of their own; such a text is now read as the
  JSON document it is);
- columns named away from their rows: BigQuery (`schema.fields`, rows of `{"f": [{"v":
  ...}]}`), Snowflake (`resultSetMetaData.rowType` and `data`), Databricks
  (`manifest.schema.columns` and `result.data_array`), Kusto (`Columns` named by
  `ColumnName`, `Rows`), Google's DataTable (`cols` named
  by `label`, rows of `{"c": [{"v": ..., "f": ...}]}`) — as a document, an NDJSON line
  and an SSE event;

and an archive or compressed file carried in base64 in a JSON string (an API's export):
its bytes hold nothing the masks read, so a customer table zipped came to a reader whole;
what it holds is now read, and the string masked when that holds what the masks would
change or names a masked field, or cannot be opened (bodies._packed_base64);

a record holding a lone surrogate's escape (`"\\ud83d"`: text cut mid-emoji) was a 502
for a reader, as JSON, NDJSON or SSE: the masks wrote it back as UTF-8 (bodies._dump);

a document json.loads reads but deeper than the masks' walks go (850 arrays) ended in a
RecursionError: now the masks' own 502 ("cannot be masked");

and one answer the masks could not read at all: any JSON answer holding a string such as
`find_customer` (letters, digits, `_` or `-`, 4n+1 of them, 13 or more) was a 502 for a
reader: the base64url reader asked b64decode for it, which raises rather than answering
no (bodies._base64_text).

And the credential guard (only the guard stands: the client is a pii-reader): a text
holding one NUL byte anywhere was read as the raw and spread-out forms alone, so the key
in two halves with words between (the piece rule), with its characters escaped by turns
(the unescaped view) or in fullwidth letters (NFKC) went through beside a NUL; and so did
the halves in UTF-16 or UTF-32. Text with NULs is now read without them, by every view
(guard._check), a binary file's (other control bytes in it) by its runs of ASCII text.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_upstream import SECRET, http_stack
from pdp_harness import token
from test_http_probe_p5 import app_upstream

from proxies.http.guard import CredentialInResponse, ResponseGuard, secret_patterns
from proxies.runtime.exposure import ClientOutput

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
    "beside": {"columns": ["id", "phone"], "rows": [[7, PHONE]]},
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
    "kusto": {
        "Tables": [
            {
                "Columns": [{"ColumnName": "id"}, {"ColumnName": "phone"}],
                "Rows": [[7, PHONE]],
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
    """/table/<name>: TABLES[name] as JSON, ?as=ndjson (one line), sse (one event) or
    text (pretty-printed text/plain);
    /names: a record of names that are no base64."""

    async def table(request: web.Request) -> web.StreamResponse:
        doc = json.dumps(TABLES[request.match_info["name"]])
        shape = request.query.get("as", "json")
        if shape == "ndjson":
            return web.Response(text=doc + "\n", content_type="application/x-ndjson")
        if shape == "sse":
            return web.Response(text=f"data: {doc}\n\n", content_type="text/event-stream")
        if shape == "text":  # (pretty-printed, typed as text)
            pretty = json.dumps(TABLES[request.match_info["name"]], indent=2)
            return web.Response(text=pretty, content_type="text/plain")
        return web.Response(text=doc, content_type="application/json")

    async def names(request: web.Request) -> web.Response:
        return web.json_response(NAMES)

    app = web.Application()
    app.router.add_get("/table/{name}", table)
    app.router.add_get("/names", names)
    return app


async def _get(client: aiohttp.ClientSession, url: str, bearer: str) -> tuple[int, str]:
    # (asked again while the PDP, on a loaded machine, has no evaluation worker free: a
    # refusal that says nothing of the masks)
    for _ in range(5):
        async with client.get(url, headers={"Authorization": f"Bearer {bearer}"}) as response:
            got = response.status, await response.text()
        if got[0] != 403 or "no evaluation worker" not in got[1]:
            break
    return got


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
                for shape in ("json", "ndjson", "sse", "text"):
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


CUT = '{"note": "gold plan \\ud83d", "phone": "+1 555 0100"}'  # (a text cut mid-emoji)


def cut_app() -> web.Application:
    """/cut?as=json|ndjson|sse: CUT, a record holding a lone surrogate's escape."""

    async def cut(request: web.Request) -> web.Response:
        shape = request.query.get("as", "json")
        if shape == "sse":
            return web.Response(text=f"data: {CUT}\n\n", content_type="text/event-stream")
        kind = "application/x-ndjson" if shape == "ndjson" else "application/json"
        return web.Response(text=CUT + "\n", content_type=kind)

    app = web.Application()
    app.router.add_get("/cut", cut)
    return app


async def test_a_lone_surrogate_is_masked_and_passed_escaped(tmp_path: Path) -> None:
    # the masks wrote a document back as UTF-8, which holds no lone surrogate: a
    # UnicodeEncodeError, a 502 for any reader's answer holding text cut mid-emoji
    got = {}
    async with (
        app_upstream(cut_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        reader = token(s.config, "mallory@example.com", ("readonly",))
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            for shape in ("json", "ndjson", "sse"):
                got[shape] = await _get(client, f"{s.url}/cut?as={shape}", reader)
    masked = '{"note":"gold plan \\ud83d","phone":"[REDACTED]"}'
    assert got == {
        "json": (200, masked),
        "ndjson": (200, masked + "\n"),
        "sse": (200, f"data: {masked}\n\n"),
    }, got


def deep_app() -> web.Application:
    """/deep/<n>: a JSON document n arrays deep (json.loads reads it: under ~1000)."""

    async def deep(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        text = "[" * n + '{"phone": "+1 555 0100"}' + "]" * n
        return web.Response(text=text, content_type="application/json")

    app = web.Application()
    app.router.add_get("/deep/{n}", deep)
    return app


async def test_a_document_deeper_than_the_masks_walk_is_a_problem(tmp_path: Path) -> None:
    # json.loads read it, the masks' walks (one frame a level) did not: RecursionError,
    # the request failed unexplained; now the masks' own refusal, and the proxy serves on
    async with (
        app_upstream(deep_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        reader = token(s.config, "mallory@example.com", ("readonly",))
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            deep = await _get(client, f"{s.url}/deep/850", reader)
            shallow = await _get(client, f"{s.url}/deep/3", reader)
    assert deep[0] == 502 and "cannot be masked" in deep[1], deep
    assert shallow == (200, '[[[{"phone":"[REDACTED]"}]]]')


def _zipped(text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("customers.csv", text)
    return out.getvalue()


EXPORTS = {
    "zip": _zipped(f"name,phone\nAnn,{PHONE}\n"),
    "gzip": gzip.compress(f"name,phone\nAnn,{PHONE}\n".encode()),
    "clean": _zipped("plan\ngold\n"),
}


def exports_app() -> web.Application:
    """/export/<name>: a JSON record carrying EXPORTS[name] in base64 (an API's export)."""

    async def export(request: web.Request) -> web.Response:
        data = EXPORTS[request.match_info["name"]]
        return web.json_response({"file": "customers.csv", "data": base64.b64encode(data).decode()})

    app = web.Application()
    app.router.add_get("/export/{name}", export)
    return app


async def test_a_compressed_file_in_base64_holding_data_is_masked(tmp_path: Path) -> None:
    # its bytes hold nothing a detector or a field rule reads: what it holds is read
    got: dict[str, Any] = {}
    async with (
        app_upstream(exports_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        reader = token(s.config, "mallory@example.com", ("readonly",))
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            for name in EXPORTS:
                status, text = await _get(client, f"{s.url}/export/{name}", reader)
                got[name] = (status, json.loads(text)["data"] if status == 200 else text)
    assert got == {
        "zip": (200, "[REDACTED]"),
        "gzip": (200, "[REDACTED]"),
        "clean": (200, base64.b64encode(EXPORTS["clean"]).decode()),
    }


def _spelled(key: str, spelling: str) -> bytes:
    """The key in two halves with words between, as `spelling` says, NUL and all."""
    first, second = key[: len(key) // 2], key[len(key) // 2 :]
    if spelling == "escaped":  # every other character escaped, as JSON or HTML
        first, second = (
            "".join(f"\\u{ord(c):04x}" if n % 2 else c for n, c in enumerate(half))
            for half in (first, second)
        )
    if spelling == "fullwidth":
        first, second = (
            "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in half)
            for half in (first, second)
        )
    text = f"first half: {first} and then, after some words, the rest: {second} end"
    if spelling == "utf-16":
        return text.encode("utf-16-le")
    if spelling == "utf-32":
        return text.encode("utf-32-le")
    return b"\x00" + text.encode()


SPELLINGS = ["raw", "escaped", "fullwidth", "utf-16", "utf-32"]
NOISE = os.urandom(2 * 1024 * 1024)


def nul_app() -> web.Application:
    """/nul/<spelling>: the X-Api-Key the proxy injected in two halves (_spelled);
    /download: 2 MiB of random bytes."""

    async def nul(request: web.Request) -> web.Response:
        key = request.headers["X-Api-Key"]
        body = _spelled(key, request.match_info["spelling"])
        return web.Response(body=body, content_type="text/plain")

    async def download(request: web.Request) -> web.Response:
        return web.Response(body=NOISE, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/nul/{spelling}", nul)
    app.router.add_get("/download", download)
    return app


async def test_a_nul_byte_does_not_turn_the_guards_reading_off(tmp_path: Path) -> None:
    got: dict[str, tuple[int, bytes]] = {}
    async with (
        app_upstream(nul_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        bearer = token(s.config, "mallory@example.com", ("dba", "pii-readers"))
        headers = {"Authorization": f"Bearer {bearer}"}
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            for spelling in SPELLINGS:
                try:
                    async with client.get(f"{s.url}/nul/{spelling}", headers=headers) as r:
                        got[spelling] = (r.status, await r.read())
                except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                    got[spelling] = (0, b"")
            async with client.get(f"{s.url}/download", headers=headers) as r:
                download = (r.status, await r.read())
    # (the upstream answers 200 with the key: cut, 502 or the connection closed)
    passed = {k: v[1][:120] for k, v in got.items() if v[0] == 200}
    assert not passed, passed
    # a binary file holding no piece of the key goes as it came
    assert download == (200, NOISE)


def test_binary_bytes_around_the_key_are_read_as_their_text_runs() -> None:
    # (sans-IO) a binary file (control bytes, NULs) holding the key's halves in runs of
    # ASCII text is cut; one holding the key's first nine bytes (no piece) goes
    blob = bytes(range(256)) * 64
    for body, cut in [
        (blob + f"a {SECRET[:14]} b".encode() + blob + f"c {SECRET[14:]} d".encode(), True),
        (blob + f"the upstream key of {SECRET[:9]}".encode() + blob, False),
    ]:
        written: list[bytes] = []
        guard = ResponseGuard(ClientOutput(written.append), secret_patterns([SECRET]))
        if cut:
            with pytest.raises(CredentialInResponse):
                guard.answer(b"HTTP/1.1 200 OK\r\n\r\n", body)
        else:
            guard.answer(b"HTTP/1.1 200 OK\r\n\r\n", body)
            assert b"".join(written).endswith(body)
