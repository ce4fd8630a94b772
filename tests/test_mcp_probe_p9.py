"""Probing the MCP exchange's masks (brief P9, helper httpattack): tables in a tool's
result, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy. The
reader is outside pii-readers: tool results are masked (the field `phone` among the
sensitive columns; a phone number is no detector's). A SQL tool answers as SQL-over-HTTP
APIs do: rows of cells, and the names of their columns somewhere else than in the cells.
Each of these came back whole before its fix (MCP's JSON masks read keys, and objects
naming a field, only; the HTTP proxy's masks read rows beside their columns, not the rest):

- `{"columns": ["id", "phone"], "rows": [[7, ...]]}` (Trino, ClickHouse, D1, pandas'
  split), one row beside its columns, and a pair `["phone", ...]`;
- rows under a row of names (`[["id", "phone"], [7, ...]]`: Google Sheets' `values`);
- columns named away from the rows: BigQuery (`schema.fields`, rows of `{"f": [{"v":
  ...}]}`), Snowflake (`resultSetMetaData.rowType`, `data`), Databricks
  (`manifest.schema.columns`, `result.data_array`);
- each of them as the text of a text content (JSON a tool returns as a string);

and a tool list, which a masked session reads by the detectors alone (a field rule would
take a schema's `phone` property, a name): a tool's description (`The owner's phone:
...`) and what its input schema says of a property's values (`default`, `examples`,
`enum`, a property's own description) came to a reader whole. A tool list's descriptions
and titles are now read as prose under the session's field rules, and a property's
values as the values of the field it names (mcp._schema_values); its names stay.

And a blob that is a compressed file (a `.zip` export, an Office document, a
`.csv.gz`): its bytes as they are hold nothing a detector reads, so a customer table in
it came to a reader whole. What it holds is now read (proxies/http/packed.py), and the
blob withheld when a file in it holds what the masks would change or names a masked
field (the `Phone` column of a spreadsheet), or it cannot be opened; a clean one goes.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import zipfile
from pathlib import Path
from typing import Annotated, Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp.types import BlobResourceContents, EmbeddedResource
from pydantic import Field
from test_mcp_proxy import agent, mcp_stack

pytestmark = pytest.mark.integration

PHONE = "+1 555 0100"
TABLES: dict[str, Any] = {
    "beside": {"columns": ["id", "phone"], "rows": [[7, PHONE]]},
    "pair": {"contact": ["phone", PHONE]},
    "one row": {"keys": ["id", "phone"], "values": [7, PHONE]},
    "sheets": {"range": "A1:B2", "values": [["Name", "Phone"], ["Ann", PHONE]]},
    "bigquery": {
        "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "phone"}]},
        "rows": [{"f": [{"v": "7"}, {"v": PHONE}]}],
    },
    "snowflake": {
        "resultSetMetaData": {"rowType": [{"name": "ID"}, {"name": "PHONE"}]},
        "data": [["7", PHONE]],
    },
    "databricks": {
        "manifest": {"schema": {"columns": [{"name": "id"}, {"name": "phone"}]}},
        "result": {"data_array": [["7", PHONE]]},
    },
}


def _sql_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> dict[str, Any]:
        up.calls.append(name)
        return TABLES[name.removesuffix(" as text")]

    @server.tool()
    def list_invoices(name: str) -> str:  # (JSON as text: a str result)
        up.calls.append(name)
        return json.dumps(TABLES[name])

    return server


async def test_a_tables_cells_are_masked_by_the_columns_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _sql_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        shown: dict[str, str] = {}
        async with agent(stack, reader) as client:
            for name in TABLES:
                result = await client.call_tool("find_customer", {"name": name})
                shown[name] = json.dumps(
                    [result.structured_content, [c.model_dump() for c in result.content]]
                )
                result = await client.call_tool("list_invoices", {"name": name})
                shown[f"{name} as text"] = json.dumps(
                    [result.structured_content, [c.model_dump() for c in result.content]]
                )
    assert len(stack.upstream.calls) == 2 * len(TABLES)
    leaked = {name: text[:300] for name, text in shown.items() if PHONE in text}
    assert not leaked, leaked
    # what is not a masked column's stays: the names, the other cells
    assert '"Ann"' in shown["sheets"] and '"Phone"' in shown["sheets"], shown["sheets"]
    assert '"7"' in shown["bigquery"] and "[REDACTED]" in shown["bigquery"]


def _described_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool(description=f"Finds a customer. The owner's phone: {PHONE}, plan: gold")
    def find_customer(
        phone: Annotated[
            str,
            Field(default=PHONE, examples=[PHONE], description=f"for example phone {PHONE}"),
        ],
        plan: Annotated[str, Field(default="gold", examples=["gold", "silver"])],
    ) -> str:
        up.calls.append(phone)
        return "found"

    return server


async def test_a_tool_lists_descriptions_and_schema_values_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _described_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            (tool,) = (await client.list_tools()).tools
        pii = stack.token("ann@example.com", "readonly", "pii-readers")
        async with agent(stack, pii) as client:
            (whole,) = (await client.list_tools()).tools
    shown = json.dumps(tool.model_dump())
    assert PHONE not in shown, shown
    properties = tool.input_schema["properties"]
    assert properties["phone"]["default"] == "[REDACTED]"
    assert properties["phone"]["examples"] == ["[REDACTED]"]  # (a list still)
    assert properties["plan"] == whole.input_schema["properties"]["plan"]  # (not a field)
    assert tool.description is not None and tool.description.startswith("Finds a customer.")
    assert PHONE in json.dumps(whole.model_dump())  # (a pii-reader's list is the server's)


def _zipped(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


CSV = f"name,phone,plan\nAnn,{PHONE},gold\n"
FILES = {
    "zip": _zipped({"customers.csv": CSV}),
    "gzip": gzip.compress(CSV.encode()),
    # (an .xlsx: the cells' text in sharedStrings.xml, the column's name among them)
    "xlsx": _zipped(
        {"xl/sharedStrings.xml": f"<sst><si><t>Phone</t></si><si><t>{PHONE}</t></si></sst>"}
    ),
    "broken": b"\x1f\x8b\x08" + b"not gzip at all" * 4,
    "clean": _zipped({"readme.txt": "plans: gold, silver"}),
}


def _files_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> list[EmbeddedResource]:
        up.calls.append(name)
        blob = base64.b64encode(FILES[name]).decode()
        resource = BlobResourceContents(uri=f"file:///{name}", blob=blob, mime_type="x/y")
        return [EmbeddedResource(type="resource", resource=resource)]

    return server


async def test_a_compressed_file_holding_data_is_withheld(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _files_server)
    blobs: dict[str, str] = {}
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            for name in FILES:
                result = await client.call_tool("find_customer", {"name": name})
                (content,) = result.content
                assert isinstance(content, EmbeddedResource)
                assert isinstance(content.resource, BlobResourceContents)
                blobs[name] = content.resource.blob
    assert stack.upstream.calls == list(FILES)
    shown = {name: blob for name, blob in blobs.items() if blob}
    assert shown == {"clean": base64.b64encode(FILES["clean"]).decode()}, sorted(shown)
