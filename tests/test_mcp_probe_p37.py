"""Probing the MCP exchange's resource templates (P37, helper webmask24): a template whose
variable is a masked field, filled in and read, is a lookup by that field.

Real PDP with the shipped policy (its data with `customers://` among billing-api's
resource prefixes beside `invoice://`, as a deployment serving customers would list it)
and the HTTP proxy with `mcp: true`, before a real MCPServer (the `mcp` SDK, streamable
HTTP) whose templates are `customers://{email}`, `customers://{id}/orders` and
`invoice://{id}`. Before the fix a reader outside pii-readers read
`customers://ann@example.com` unasked: no word of the URI names a field (mcp.rego read
only `by-email/...`, `?email=...`), yet the answer, found or not, says who has that
email. Now the proxy remembers the templates the server listed on the connection
(proxies/http/mcp_templates.py), the PDP is shown the variables a read's URI fills
(`template_variables`), and a variable naming a masked field needs approval: for a
client that listed the templates and for another on the connection that did not; on a
connection where none listed them, the proxy asks the server for them before the first
read (both eras of the protocol). `{id}` templates read as before, and pii-readers are
not asked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx2
import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from pdp_harness import REGO
from test_mcp_proxy import agent, mcp_stack

from pdp.domain.mcp_input import mcp_command
from proxies.http.mcp_codec import APPROVAL_REQUIRED
from proxies.http.mcp_templates import ResourceTemplates, compile_template

pytestmark = pytest.mark.integration

ANN = "customers://ann@example.com"


def customers_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.resource("customers://{email}")
    def customer_by_email(email: str) -> str:
        up.calls.append(f"customer {email}")
        return "found" if email == "ann@example.com" else "none"

    @served.resource("customers://{id}/orders")
    def orders(id: str) -> str:
        up.calls.append(f"orders {id}")
        return "3 orders"

    @served.resource("invoice://{id}")
    def invoice(id: str) -> str:
        up.calls.append(f"invoice {id}")
        return "120 EUR, paid"

    return served


@pytest.fixture
def customers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["mcp"]["resources"]["billing-api"].append("customers://")
    (policies / "data.json").write_text(json.dumps(data))
    raw = test_mcp_proxy.pdp_raw
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", customers_server)
    monkeypatch.setattr(
        test_mcp_proxy, "pdp_raw", lambda *a, **k: raw(*a, **{"policies": policies, **k})
    )


async def _read(client: Any, uri: str) -> str:
    try:
        got = await client.read_resource(uri)
    except MCPError as error:
        return "approval" if error.code == APPROVAL_REQUIRED else f"error {error.message}"
    return "".join(getattr(c, "text", "") for c in got.contents)


async def test_a_template_filled_with_a_masked_field_needs_approval(
    tmp_path: Path, customers: None
) -> None:
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            # (the reader is shown `customers://{email}` as [REDACTED]: the masks read
            # a URI ending in a field's name as that field's value)
            listed = await client.list_resource_templates()
            assert len(listed.resource_templates) == 3
            got = {uri: await _read(client, uri) for uri in (ANN, "invoice://7")}
            got["orders"] = await _read(client, "customers://7/orders")
            got["subscribe"] = await _subscribe(client, "customers://bob@example.com")
        # another client of the connection, which never listed them
        async with agent(stack, stack.token("eve@example.com", "readonly")) as other:
            got["unlisted"] = await _read(other, "customers://bob@example.com")
        async with agent(stack, stack.token("pat@example.com", "readonly", "pii-readers")) as pii:
            got["pii"] = await _read(pii, ANN)
    assert got == {
        ANN: "approval",
        "invoice://7": "120 EUR, paid",
        "orders": "3 orders",
        "subscribe": "approval",
        "unlisted": "approval",
        "pii": "found",
    }
    assert stack.upstream.calls == ["invoice 7", "orders 7", "customer ann@example.com"]


async def _subscribe(client: Any, uri: str) -> str:
    try:
        await client.subscribe_resource(uri)
    except MCPError as error:
        return "approval" if error.code == APPROVAL_REQUIRED else f"error {error.message}"
    return "subscribed"


def test_templates_are_matched_anchored_by_what_each_expression_stands_for() -> None:
    known = ResourceTemplates()
    for text in [
        "customers://{email}",
        "customers://{id}/orders",
        "files://{+path}",
        "people{/dept,name}",
        "logs://{service}{?email,level}",
        "bad://{unclosed",
        "plain://resource",
    ]:
        known.learn(text)
    assert len(known) == 5  # (an unbalanced brace, and a resource with no expression: none)
    assert known.variables("customers://ann@example.com") == ["email"]
    assert known.variables("customers://ann@example.com?x=1") == ["email"]
    assert known.variables("customers://7/orders") == ["id"]
    assert known.variables("customers://7/orders/x") == []
    assert known.variables("xcustomers://ann@example.com") == []
    assert known.variables("files://a/b/c.txt") == ["path"]
    assert known.variables("people/sales/ann") == ["dept", "name"]
    assert known.variables("people") == ["dept", "name"]
    # a query expression's names are the URI's own to say (`?email=`): not reported
    assert known.variables("logs://api?email=ann") == ["service"]


def test_matching_is_linear_and_the_memory_bounded() -> None:
    template = compile_template("a://{x}.{y}.{z}.{w}!")
    assert template is not None
    assert not template.filled_by("a://" + "." * 60000)  # (a backtracking regex: hours)
    assert template.filled_by("a://" + "." * 60000 + "!")
    # past the scan budget, a template met at both ends counts as filled (approval)
    many = ResourceTemplates()
    for n in range(8):
        many.learn(f"c://{{v{n}}}.{{email}}!")
    # (four scanned, and not filled: no `.`; the other four past the budget)
    assert many.variables("c://" + "x" * 60000 + "!") == ["email", "v4", "v5", "v6", "v7"]
    assert many.variables("c://" + "x" * 60000 + "?") == []
    known = ResourceTemplates(limit=3)
    for n in range(5):
        known.learn(f"t{n}://{{email}}")
    assert len(known) == 3
    assert known.variables("t0://ann") == [] and known.variables("t4://ann") == ["email"]


async def test_an_approved_read_of_a_filled_template_goes_through_once_approved(
    tmp_path: Path, customers: None
) -> None:
    async with (
        mcp_stack(tmp_path) as stack,
        agent(stack, stack.token("mallory@example.com", "readonly")) as client,
    ):
        await client.list_resource_templates()
        with pytest.raises(MCPError) as needs:
            await client.read_resource(ANN)
        assert needs.value.code == APPROVAL_REQUIRED
        assert "fills template variable email" in needs.value.message
        approval_id = needs.value.data["approval_id"]
        base = f"http://127.0.0.1:{stack.http_port}/v1/approvals"
        approver = stack.token("sam@example.com", "security")
        async with httpx2.AsyncClient() as http:
            response = await http.post(
                f"{base}/{approval_id}/approve",
                json={"reason": "ticket 7"},
                headers={"Authorization": f"Bearer {approver}"},
            )
            assert response.status_code == 200, response.text
        # the same read (its template variables bound into what was approved) goes
        assert await _read(client, ANN) == "found"
        assert await _read(client, "customers://bob@example.com") == "approval"
    assert stack.upstream.calls == ["customer ann@example.com"]


def test_the_pdp_takes_template_variables_of_a_read_only_as_names() -> None:
    def shown(variables: Any, method: str = "resources/read", **more: Any) -> dict[str, Any]:
        params = {"uri": ANN} if method.startswith("resources/") else {"name": "x"}
        text = {"endpoint": "/mcp", "method": method, "params": params, **more}
        text["template_variables"] = variables
        return mcp_command("mcp.call", json.dumps(text), {})

    assert shown(["email", "id"])["template_variables"] == ["email", "id"]
    assert shown(["email"], "resources/subscribe")["template_variables"] == ["email"]
    many = [f"v{n:02d}" for n in range(65)]
    assert shown(many[:64])["template_variables"] == many[:64]
    for bad in [[], ["id", "email"], ["email", "email"], "email", [7], ["e mail"], many]:
        assert shown(bad).get("malformed") is True, bad
    assert shown(["email"], "tools/call").get("malformed") is True
    assert shown(["email"], "resources/unsubscribe").get("malformed") is True
    assert shown(["email"], listing=True).get("malformed") is True
    answer = {"endpoint": "/mcp", "result": {}, "answers": "ping", "template_variables": ["a"]}
    assert mcp_command("mcp.call", json.dumps(answer), {}).get("malformed") is True


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_first_read_before_any_listing_is_decided_with_the_servers_templates(
    tmp_path: Path, customers: None, mode: str
) -> None:
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader, mode) as client:
            got = {uri: await _read(client, uri) for uri in (ANN, "invoice://7", ANN)}
        async with agent(stack, stack.token("pat@example.com", "readonly", "pii-readers")) as pii:
            got["pii"] = await _read(pii, ANN)
    assert got == {ANN: "approval", "invoice://7": "120 EUR, paid", "pii": "found"}
    assert stack.upstream.calls == ["invoice 7", "customer ann@example.com"]
