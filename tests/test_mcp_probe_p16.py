"""Probing the MCP exchange's masks (brief P16, helper webattack7): columns a tool's
output schema names, the session's memory of columns, whole rows as one value.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy; the
reader outside pii-readers (the field `phone` masked; 5550100 is no detector's). Before
the fixes:

- a tool whose outputSchema names its rows' columns (pydantic's tuple items titled
  `id`, `phone`: `prefixItems`), returning rows with no names of their own: the phone
  went whole in the structured content and the text item; the tool list the session
  read now names them for its results (table_memory.schema_columns);
- the session's memory of columns read any later result of the same width under them:
  `list_invoices`' `[7, "paid"]` after `find_customer`'s `["id", "phone"]` came back
  `[7, "[REDACTED]"]`; it now holds for later calls of the same tool, or calls naming a
  reference (a cursor) the result gave;
- a row written as one value (PostgreSQL's record text, `(7,5550100,ann)`, a
  `run_sql`-like tool's `SELECT c FROM customers c`): only the detectors read it.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field
from test_mcp_proxy import agent, mcp_stack

from portcullis.masking import Masker, MaskRule
from proxies.http import mcp
from proxies.http import mcp_codec as codec
from proxies.http.table_memory import TableMemory, schema_columns

pytestmark = pytest.mark.integration

P = "5550100"


class Rows(BaseModel):
    rows: list[tuple[Annotated[int, Field(title="id")], Annotated[str, Field(title="phone")]]]


def _server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> Any:
        up.calls.append(name)
        if name == "typed":
            return Rows(rows=[(7, P), (8, "5550101")])
        if name == "composite":
            return {"rows": [{"c": f"(7,{P},ann)"}]}
        return {"columns": ["id", "phone"], "rows": [[7, P]], "cursor": "page-2"}

    @server.tool()
    def list_invoices(status: str) -> dict[str, Any]:
        return {"rows": [[7, "paid"], [8, "open"]]}

    @server.tool()
    def get_invoice(invoice_id: str) -> dict[str, Any]:
        return {"rows": [[9, "5550102"]]}

    return server


def _typed_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> Rows:
        up.calls.append(name)
        return Rows(rows=[(7, P), (8, "5550101")])

    return server


def _shown(result: Any) -> str:
    return repr([c.model_dump() for c in result.content]) + repr(result.structured_content)


async def test_columns_an_output_schema_names_mask_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _typed_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            await client.list_tools()
            found = await client.call_tool("find_customer", {"name": "Ann"})
    shown = _shown(found)
    assert P not in shown and "5550101" not in shown, shown
    assert found.structured_content is not None
    assert found.structured_content["rows"][0][0] == 7, shown


async def test_a_result_of_another_tool_as_wide_is_not_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            first = await client.call_tool("find_customer", {"name": "Ann"})
            other = await client.call_tool("list_invoices", {"status": "any"})
            linked = await client.call_tool("get_invoice", {"invoice_id": "page-2"})
            whole = await client.call_tool("find_customer", {"name": "composite"})
    assert P not in _shown(first), _shown(first)
    assert other.structured_content == {"rows": [[7, "paid"], [8, "open"]]}, _shown(other)
    # (a call naming the cursor the first result gave follows it)
    assert "5550102" not in _shown(linked), _shown(linked)
    assert P not in _shown(whole), _shown(whole)


def test_the_columns_a_schema_names() -> None:
    schema = Rows.model_json_schema()
    assert ["id", "phone"] in schema_columns(schema)
    assert schema_columns({"properties": {"columns": {"const": ["id", "phone"]}}}) == [
        ["id", "phone"]
    ]
    assert schema_columns({"type": "object", "properties": {"n": {"type": "integer"}}}) == []


def test_a_composite_in_a_result_is_masked() -> None:
    masker = Masker([MaskRule(field="phone")], b"k" * 32)
    for value in (
        {"structuredContent": {"c": f"(7,{P},ann)"}},
        {"content": [{"type": "text", "text": f'{{"(7,{P})","(8,5550101)"}}'}]},
    ):
        out = mcp._mask_tree(value, masker, Counter())
        assert P not in json.dumps(out), out


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# shapes the HTTP answers' masks read (tests/test_http_probe_p19.py) in a tool's result
RESULTS = {
    "a label in base64": {"kvs": [{"key": _b64("customers/7/phone"), "value": _b64(P)}]},
    "hbase cells": {"Cell": [{"column": _b64("cf:phone"), "$": _b64(P)}]},
    "rows in a string beside their columns": {
        "columns": ["id", "phone"],
        "data": json.dumps([[7, P]]),
    },
    "descriptors under a key of their own": {
        "cols": [{"n": "id"}, {"n": "phone"}],
        "data": [[7, P]],
    },
    "a map of names to types": {"schema": {"id": "int", "phone": "text"}, "data": [[7, P]]},
}


@pytest.mark.parametrize("case", sorted(RESULTS))
@pytest.mark.parametrize("where", ["structured content", "a text item"])
def test_tables_and_labels_in_a_result_are_masked(case: str, where: str) -> None:
    masker = Masker([MaskRule(field="phone")], b"k" * 32)
    doc = RESULTS[case]
    value = (
        {"structuredContent": doc}
        if where == "structured content"
        else {"content": [{"type": "text", "text": json.dumps(doc)}]}
    )
    out = json.dumps(mcp._mask_tree(value, masker, Counter()))
    assert P not in out and _b64(P) not in out, out


def test_a_resource_read_and_its_next_page_follow_one_another() -> None:
    # (c628bb3 gave only tools/call an Asked: a resource's next page lost the memory the
    # width-keyed one had given every result)
    memory = TableMemory()

    def read(uri: str) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}}
        return mcp._asked(codec.read_message(body))

    memory.learn(read("db://customers/rows?page=1"), ["id", "phone"])
    assert memory.known(read("db://customers/rows?page=2")) == {2: ["id", "phone"]}
    assert memory.known(read("db://orders/rows")) == {}
