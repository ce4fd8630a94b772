"""Probing the value detectors (P10, helper webmask18): a card number, an SSN or an IBAN
split across sibling JSON values.

Real PDP with the shipped policy, the HTTP proxy before a raw upstream, and with `mcp:
true` before a real MCPServer (the `mcp` SDK), and the Postgres proxy (a json, jsonb,
text column), for readers outside pii-readers. Before the fix:

- a card number cut into the values beside each other of one object or array (`{"a":
  "4111", "b": "1111", "c": "1111", "d": "1111"}`: substr() of it as four columns;
  `{"card": [4111, 1111, 1111, 1111]}`; other values between the parts), an SSN as its
  groups (`{"p1": "078", "p2": "05", "p3": "1120"}`), an IBAN as its groups of four,
  came through unmasked in a JSON answer, an NDJSON line, a json column and a tool's
  result (its structured content, its JSON text, its text items): every detector read
  one value at a time, and no value held the whole. Short sibling values (an object's in order, an
  array's items) are read together now (values.masked_split_values: the card's check
  digit, an issued card's prefix and length; the SSN's groups; the IBAN's check), and
  every part of a value found is masked;
- so did one cut into strings a client shows as lines (`{"lines": ["card on file: 4111
  1111", "1111 1111"]}`): the strings of an object or array are read together as lines
  too where a value may go on from one into the next (values._lines_found).

Ordinary numbers beside each other (ids, counts, a date's parts) stay as they came.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from adversary import RawClient
from http_upstream import read_cases
from mcp.server.mcpserver import MCPServer
from pg_probe_stack import arena_fixture, reader_fixture
from test_mcp_proxy import agent, mcp_stack, text_of

pytestmark = pytest.mark.integration

CARD_COLUMNS = {
    "id": 7,
    "a": "4111",
    "name": "Ann",
    "b": "1111",
    "paid": True,
    "c": "1111",
    "d": "1111",
}
CARD_NUMBERS = {"card": [4111, 1111, 1111, 1111]}
CARD_HALVES = ["4111 1111", "1111 1111"]
SSN_GROUPS = {"p1": "078", "p2": "05", "p3": "1120"}
IBAN_GROUPS = ["DE89", "3704", "0044", "0532", "0130", "00"]
CARD_LINES = {"lines": ["card on file: 4111 1111", "1111 1111", "thanks"]}
ORDINARY = {"ids": [4, 8, 15, 16, 23, 42], "date": ["2024", "01", "15"], "qty": 3, "year": 2024}
SPLIT = {
    "columns": CARD_COLUMNS,
    "numbers": CARD_NUMBERS,
    "halves": CARD_HALVES,
    "ssn": SSN_GROUPS,
    "iban": IBAN_GROUPS,
    "lines": CARD_LINES,
}


def _shown(doc: Any) -> str:
    """The digits and letters of every string and number of doc, in order, as one text."""
    if isinstance(doc, dict):
        return "".join(_shown(v) for v in doc.values())
    if isinstance(doc, list):
        return "".join(_shown(v) for v in doc)
    return "".join(c for c in str(doc) if c.isalnum())


SECRETS = ("4111111111111111", "078051120", "DE89370400440532013000")


def _hidden(doc: Any) -> bool:
    shown = _shown(doc)
    return not any(secret in shown for secret in SECRETS)


async def test_a_value_split_across_siblings_is_masked_in_http_answers(tmp_path: Path) -> None:
    cases = {
        **{f"json-{k}": ("application/json", json.dumps(v)) for k, v in SPLIT.items()},
        "ndjson": ("application/x-ndjson", "".join(json.dumps(v) + "\n" for v in SPLIT.values())),
        "ordinary": ("application/json", json.dumps(ORDINARY)),
    }
    got = await read_cases(tmp_path, cases)
    for name, (code, body) in got.items():
        assert code == 200, (name, body)
        if name == "ndjson":
            docs = [json.loads(line) for line in body.splitlines()]
            assert len(docs) == len(SPLIT) and all(_hidden(d) for d in docs), body
        elif name == "ordinary":
            assert json.loads(body) == ORDINARY, body
        else:
            doc = json.loads(body)
            assert _hidden(doc), (name, body)
    # (the id and the name beside the card's columns are no part of it)
    columns = json.loads(got["json-columns"][1])
    assert (columns["id"], columns["name"], columns["paid"]) == (7, "Ann", True)


def split_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    # (tools the shipped policy's classes name, returning the splits)
    @served.tool()
    def find_customer(name: str) -> dict[str, Any]:
        up.calls.append("find_customer")
        return CARD_COLUMNS

    @served.tool()
    def list_invoices(customer: str) -> dict[str, Any]:
        up.calls.append("list_invoices")
        return {"rows": [CARD_NUMBERS, CARD_HALVES, SSN_GROUPS, IBAN_GROUPS], "other": ORDINARY}

    @served.tool()
    def get_invoice(invoice_id: int) -> list[str]:
        # (the SDK makes a text item of each element)
        up.calls.append("get_invoice")
        return ["4111", "1111", "1111", "1111"]

    return served


@pytest.fixture
def splitting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", split_server)


@pytest.mark.parametrize("json_response", [True, False])
async def test_a_value_split_across_siblings_is_masked_in_tool_results(
    tmp_path: Path, splitting: None, json_response: bool
) -> None:
    async with (
        mcp_stack(tmp_path, json_response=json_response) as stack,
        agent(stack, stack.token("mallory@example.com")) as client,
    ):
        columns = await client.call_tool("find_customer", {"name": "ann"})
        split = await client.call_tool("list_invoices", {"customer": "ann"})
        cells = await client.call_tool("get_invoice", {"invoice_id": 1})
    assert not columns.is_error and not split.is_error and not cells.is_error
    for result in (columns, split):
        assert result.structured_content is not None
        assert _hidden(result.structured_content), result.structured_content
        assert _hidden(json.loads(text_of(result))), text_of(result)
    assert split.structured_content is not None
    assert split.structured_content["other"] == ORDINARY
    assert "4111111111111111" not in _shown([getattr(c, "text", "") for c in cells.content])


# -- a json or jsonb column through the Postgres proxy (tests/adversary.py's arena: the
# upstream credential a superuser's, the reader outside pii-readers)

arena = arena_fixture(
    "CREATE TABLE public.mp10_docs (id int, doc jsonb, js json, t text);"
    " INSERT INTO public.mp10_docs VALUES (1,"
    ' \'{"a": "4111", "b": "1111", "c": "1111", "d": "1111"}\','
    ' \'["4111 1111", "1111 1111"]\', \'{"p1": "078", "p2": "05", "p3": "1120"}\')',
    "DROP TABLE public.mp10_docs",
)
reader = reader_fixture("mp10")


def test_a_value_split_across_siblings_is_masked_in_json_columns(reader: RawClient) -> None:
    answer = reader.query("SELECT doc, js, t FROM mp10_docs WHERE id = 1")
    assert not answer.errors, answer.errors
    [row] = answer.rows
    assert all(cell is not None for cell in row), row
    for cell in row:
        assert cell is not None and _hidden(json.loads(cell)), row
