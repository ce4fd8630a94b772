"""MCP through the HTTP proxy, end to end: the real `mcp` SDK on both ends.

An MCPServer (FastMCP) upstream over streamable HTTP, started by the test (uvicorn in this
loop), the HTTP proxy with `mcp: true` before it, a real PDP with the shipped policy
(billing-api's tools in rego/data.json: get_invoice, find_customer read; refund_order
write; delete_customer, run_sql dangerous), and the SDK's client with a dev token — both
eras of the protocol (the initialize handshake with Mcp-Session-Id, and 2026-07-28's
per-request envelope) — plus curl. Each test tries to break one property: a tool the
policy does not allow runs, a tool list shows one, a tool result leaks a sensitive field,
an approval is skipped, a session id works for another token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from pdp_harness import free_port, pdp_raw, running_pdp, token
from pydantic import BaseModel

from pdp.domain.recordings import session_events
from pdp.domain.timeline import build_timeline, render_text
from portcullis.config import parse_config
from proxies.http.mcp_codec import APPROVAL_REQUIRED, DENIED
from proxies.http.proxy import HttpProxy
from proxies.launcher import handed_credential

SECRET = "mcp-upstream-key-0c9d8e7f6a5b"
CUSTOMER = {
    "id": 7,
    "name": "Ann",
    "email": "ann@example.com",
    "card_number": "4111 1111 1111 1111",
    "note": "call ann@example.com after 5",
}


@dataclass
class Upstream:
    port: int
    calls: list[str] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    elicited: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)  # MCP-Protocol-Version headers seen


def mcp_server(up: Upstream) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def get_invoice(invoice_id: int) -> str:
        up.calls.append("get_invoice")
        return f"invoice {invoice_id}: 120 EUR, paid"

    @server.tool()
    def find_customer(name: str) -> dict[str, Any]:
        up.calls.append("find_customer")
        return dict(CUSTOMER, name=name)

    class Confirm(BaseModel):
        go: bool

    @server.tool()
    async def list_invoices(customer: str, ctx: Context) -> str:
        up.calls.append("list_invoices")
        await ctx.info(f"looking up invoices of {customer} <ann@example.com>")
        answer = await ctx.elicit("list them all?", Confirm)
        up.elicited.append(answer.action)
        return f"3 invoices of {customer}, contact ann@example.com"

    @server.tool()
    def refund_order(order_id: int, amount: int) -> str:
        up.calls.append("refund_order")
        return f"refunded {amount} on order {order_id}"

    @server.tool()
    def delete_customer(customer_id: int) -> str:
        up.calls.append("delete_customer")
        return f"deleted {customer_id}"

    @server.tool()
    def shadow_tool() -> str:  # listed by the server, in no class of the policy
        up.calls.append("shadow_tool")
        return "should never run"

    return server


@contextlib.asynccontextmanager
async def running_mcp_upstream(
    json_response: bool = False, event_store: Any = None
) -> AsyncIterator[Upstream]:
    up = Upstream(free_port())
    app = mcp_server(up).streamable_http_app(json_response=json_response, event_store=event_store)

    async def keyed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            up.keys.append((headers.get(b"x-api-key") or b"").decode() or None)
            up.versions.add((headers.get(b"mcp-protocol-version") or b"").decode())
        await app(scope, receive, send)

    server = uvicorn.Server(
        uvicorn.Config(keyed, host="127.0.0.1", port=up.port, log_level="warning", lifespan="on")
    )
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield up
    finally:
        server.should_exit = True
        await task


@dataclass
class Stack:
    pdp: Any
    proxy: HttpProxy
    upstream: Upstream
    config: Any

    http_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}/mcp"

    def token(self, sub: str = "alice@example.com", *groups: str) -> str:
        return token(self.config, sub, groups or ("readonly",))


@contextlib.asynccontextmanager
async def mcp_stack(
    tmp_path: Path, json_response: bool = False, kind: str = "http", event_store: Any = None
) -> AsyncIterator[Stack]:
    async with running_mcp_upstream(json_response, event_store) as up:
        connection = {
            "name": "billing-api",
            "type": kind,
            **({"mcp": True} if kind == "http" else {}),
            "listen": f"127.0.0.1:{free_port()}",
            "upstream": f"http://127.0.0.1:{up.port}",
            "credentials": {"provider": "static", "header": "X-Api-Key", "value": SECRET},
            "spool_dir": str(tmp_path / "spool"),
        }
        raw = pdp_raw(tmp_path, connections=[connection], approvals={"timeout_seconds": 30})
        http_port = free_port()
        raw["pdp"]["http_listen"] = f"127.0.0.1:{http_port}"
        config = parse_config(raw, base_dir=tmp_path)
        async with running_pdp(config) as pdp:
            served = handed_credential(config, "billing-api", pdp.issue_proxy_credential)
            proxy = HttpProxy(served.connections[0], served, pdp.address)
            await proxy.start()
            try:
                yield Stack(pdp, proxy, up, config, http_port)
            finally:
                await proxy.stop()


@contextlib.asynccontextmanager
async def agent(
    stack: Stack, tok: str, mode: str = "legacy", **options: Any
) -> AsyncIterator[Client]:
    """The SDK's client through the proxy, its token as the bearer."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tok}"}, timeout=30)
    transport = streamable_http_client(stack.url, http_client=http)
    async with http, Client(transport, mode=mode, cache=None, **options) as client:
        yield client


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_allowed_tool_runs_and_its_result_is_masked(tmp_path: Path, mode: str) -> None:
    async with mcp_stack(tmp_path) as stack, agent(stack, stack.token(), mode) as client:
        result = await client.call_tool("get_invoice", {"invoice_id": 7})
        assert text_of(result) == "invoice 7: 120 EUR, paid"
        found = await client.call_tool("find_customer", {"name": "Ann"})
        text = text_of(found)
        assert "ann@example.com" not in text and "4111" not in text
        assert json.loads(text)["email"] == "[REDACTED]"
        if found.structured_content is not None:
            assert found.structured_content["email"] == "[REDACTED]"
            assert "ann@example.com" not in json.dumps(found.structured_content)
        assert stack.upstream.calls == ["get_invoice", "find_customer"]
        # legacy: the initialize handshake; auto: the 2026-07-28 per-request envelope
        modern = "2026-07-28" in stack.upstream.versions
        assert modern == (mode == "auto"), stack.upstream.versions
        # the upstream got the injected credential on every request; the client never sees it
        assert stack.upstream.keys and set(stack.upstream.keys) == {SECRET}


async def test_server_messages_within_a_masked_call_are_masked_and_answers_decided(
    tmp_path: Path,
) -> None:
    """A log notification the server sends while a masked call runs is masked like its
    result; the server's elicitation reaches the client, whose answer is decided as a
    `response` message and forwarded."""
    logged: list[Any] = []
    asked: list[str] = []

    async def on_log(params: Any) -> None:
        logged.append(params.data)

    async def on_elicit(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return mcp_types.ElicitResult(action="accept", content={"go": True})

    async with mcp_stack(tmp_path, kind="mcp") as stack:
        async with agent(
            stack, stack.token(), logging_callback=on_log, elicitation_callback=on_elicit
        ) as client:
            result = await client.call_tool("list_invoices", {"customer": "Ann"})
        assert text_of(result) == "3 invoices of Ann, contact a***@example.com"
        assert asked == ["list them all?"] and stack.upstream.elicited == ["accept"]
        assert logged and "ann@example.com" not in json.dumps(logged)
        assert "looking up invoices of Ann" in json.dumps(logged)
        decisions = [d.body for d in await stack.pdp.store.query(kind="decision")]
        answers = [d for d in decisions if json.loads(d["raw"]).get("result") is not None]
        assert answers and answers[0]["verdict"] == "allow"


async def test_denied_and_dangerous_tools_never_reach_the_server(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack, agent(stack, stack.token()) as client:
        with pytest.raises(MCPError) as dangerous:
            await client.call_tool("delete_customer", {"customer_id": 7})
        assert dangerous.value.code == DENIED
        assert 'tool "delete_customer" is dangerous: reserved to dba' in dangerous.value.message
        assert dangerous.value.data["decision_id"].startswith("d-")
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("shadow_tool", {})
        assert unknown.value.code == DENIED
        assert 'tool "shadow_tool" is not listed for billing-api' in unknown.value.data["reasons"]
        # the session stays usable after a denial
        assert text_of(await client.call_tool("get_invoice", {"invoice_id": 1})).startswith(
            "invoice 1"
        )
        assert stack.upstream.calls == ["get_invoice"]
    async with mcp_stack(tmp_path / "dba") as stack:
        dba = stack.token("dan@example.com", "dba", "pii-readers")
        async with agent(stack, dba) as client:
            result = await client.call_tool("delete_customer", {"customer_id": 7})
            assert text_of(result) == "deleted 7"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_tools_list_hides_what_the_caller_may_not_call(tmp_path: Path, mode: str) -> None:
    async with mcp_stack(tmp_path) as stack:
        async with agent(stack, stack.token(), mode) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
        # read and write (approval) tools are shown; dangerous and unlisted ones are not
        assert listed == {"get_invoice", "find_customer", "list_invoices", "refund_order"}
        async with agent(stack, stack.token("dan@example.com", "dba"), mode) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
        assert listed == {
            "get_invoice",
            "find_customer",
            "list_invoices",
            "refund_order",
            "delete_customer",
        }


async def test_a_write_tool_waits_for_an_approval_then_runs(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack, agent(stack, stack.token()) as client:
        with pytest.raises(MCPError) as needs:
            await client.call_tool("refund_order", {"order_id": 11, "amount": 5})
        assert needs.value.code == APPROVAL_REQUIRED
        approval_id = needs.value.data["approval_id"]
        assert approval_id.startswith("a-") and approval_id in needs.value.message
        assert stack.upstream.calls == []
        base = f"http://127.0.0.1:{stack.http_port}/v1/approvals"
        async with httpx2.AsyncClient() as http:
            # the requester cannot approve their own call, even in an approver group
            own = stack.token("alice@example.com", "security")
            response = await http.post(
                f"{base}/{approval_id}/approve",
                json={"reason": "mine"},
                headers={"Authorization": f"Bearer {own}"},
            )
            assert response.status_code == 403
            approver = stack.token("sam@example.com", "security")
            response = await http.post(
                f"{base}/{approval_id}/approve",
                json={"reason": "ticket 42"},
                headers={"Authorization": f"Bearer {approver}"},
            )
            assert response.status_code == 200, response.text
        # the same call again (another JSON-RPC id) is the approved one
        result = await client.call_tool("refund_order", {"order_id": 11, "amount": 5})
        assert text_of(result) == "refunded 5 on order 11"
        # other arguments are another call: approval again
        with pytest.raises(MCPError) as other:
            await client.call_tool("refund_order", {"order_id": 11, "amount": 500})
        assert other.value.code == APPROVAL_REQUIRED
        assert stack.upstream.calls == ["refund_order"]


async def test_prefer_wait_holds_the_call_until_approved(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await initialize(stack, alice)
        call = asyncio.ensure_future(
            post(
                stack,
                alice,
                rpc(
                    5,
                    "tools/call",
                    {"name": "refund_order", "arguments": {"order_id": 3, "amount": 1}},
                ),
                session_id,
                {"Prefer": "wait=20"},
            )
        )
        approval_id = ""
        while not approval_id:
            await asyncio.sleep(0.05)
            pending = stack.pdp.approvals.requests.values()
            approval_id = next((r.id for r in pending if r.state == "pending"), "")
        approver = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
        await stack.pdp.approvals.decide(approval_id, approver, True, "fine")
        status, _, answer = await call
        assert status == 200
        assert messages_of(answer)[0]["result"]["content"][0]["text"] == "refunded 1 on order 3"


async def test_a_cancelled_call_stops_waiting_and_its_approval_is_withdrawn(tmp_path: Path) -> None:
    """notifications/cancelled for a call held by Prefer: wait ends the wait at once: the
    call is answered with an error, nothing reaches the server, and the approval request
    is withdrawn (an approver can no longer let it run)."""
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await initialize(stack, alice)
        refund = {"name": "refund_order", "arguments": {"order_id": 4, "amount": 2}}
        call = asyncio.ensure_future(
            post(stack, alice, rpc(9, "tools/call", refund), session_id, {"Prefer": "wait=25"})
        )
        approval_id = ""
        while not approval_id:
            await asyncio.sleep(0.05)
            pending = stack.pdp.approvals.requests.values()
            approval_id = next((r.id for r in pending if r.state == "pending"), "")
        # another token cannot cancel alice's call: its session id is not bob's
        bob_cancel = rpc(None, "notifications/cancelled", {"requestId": 9})
        status, _, _ = await post(stack, stack.token("bob@example.com"), bob_cancel, session_id)
        assert status == 404 and not call.done()
        cancel = rpc(None, "notifications/cancelled", {"requestId": 9, "reason": "user"})
        status, _, _ = await post(stack, alice, cancel, session_id)
        assert status == 202
        status, _, answer = await asyncio.wait_for(call, 10)
        withdrawn = stack.pdp.approvals.requests[approval_id].state
    error = messages_of(answer)[0]["error"]
    assert "withdrawn" in error["message"] or "withdrawn" in json.dumps(error.get("data", ""))
    assert withdrawn == "withdrawn"
    assert "refund_order" not in stack.upstream.calls


# -- raw HTTP: curl and httpx2, the exchange as bytes --------------------------------


def rpc(id_: int | None, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        message["id"] = id_
    if params is not None:
        message["params"] = params
    return message


INIT = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "pytest", "version": "1"},
}


async def post(
    stack: Stack,
    tok: str,
    body: Any,
    session_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], str]:
    sent = {
        "Authorization": f"Bearer {tok}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
        **(headers or {}),
    }
    if session_id:
        sent["Mcp-Session-Id"] = session_id
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(stack.url, content=data, headers=sent)
        return response.status_code, dict(response.headers), response.text


def messages_of(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an answer, JSON or an event stream."""
    text = text.strip()
    if not text:
        return []
    if text[0] in "[{":
        document = json.loads(text)
        return document if isinstance(document, list) else [document]
    out = []
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(
            line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")
        )
        if data.strip():
            out.append(json.loads(data))
    return out


async def initialize(stack: Stack, tok: str) -> str:
    status, headers, _ = await post(stack, tok, rpc(1, "initialize", INIT))
    assert status == 200
    session_id = headers["mcp-session-id"]
    status, _, _ = await post(stack, tok, rpc(None, "notifications/initialized"), session_id)
    assert status == 202
    return session_id


async def test_session_ids_are_kept_apart(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice, mallory = stack.token(), stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, alice)
        listed = rpc(2, "tools/list")
        status, _, text = await post(stack, alice, listed, session_id)
        assert status == 200 and messages_of(text)[0]["result"]["tools"]
        # another token presenting alice's session id: unknown to it
        status, _, text = await post(stack, mallory, listed, session_id)
        assert status == 404
        assert "ann" not in text and session_id not in text
        # the same subject with another token is another client, too
        again = stack.token()
        assert again != alice
        status, _, _ = await post(stack, again, listed, session_id)
        assert status == 404
        # a session id no answer through the proxy handed out
        status, _, _ = await post(stack, alice, listed, "f" * 32)
        assert status == 404
        # ending it (DELETE) by another token fails; by its owner, it ends
        async with httpx2.AsyncClient() as http:
            for tok, expected in ((mallory, 404), (alice, 200)):
                response = await http.delete(
                    stack.url,
                    headers={"Authorization": f"Bearer {tok}", "Mcp-Session-Id": session_id},
                )
                assert response.status_code == expected
        status, _, _ = await post(stack, alice, listed, session_id)
        assert status == 404
        assert stack.upstream.calls == []


async def test_refused_bodies_forward_nothing(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await initialize(stack, alice)
        seen = len(stack.upstream.keys)
        call = rpc(3, "tools/call", {"name": "get_invoice", "arguments": {"invoice_id": 1}})
        refused = [
            b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_invoice","name":"delete_customer","arguments":{"customer_id":1}}}',
            b"{not json",
            b"[]",
            json.dumps([call, {"jsonrpc": "2.0", "id": 9, "result": {}}]).encode(),
            json.dumps([call, call]).encode(),
            json.dumps({**call, "jsonrpc": "1.0"}).encode(),
            json.dumps({**call, "extra": 1}).encode(),
            b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_invoice\\ud800"}}',
            b"\xef\xbb\xbf" + json.dumps(call).encode(),
        ]
        for body in refused:
            status, _, text = await post(stack, alice, body, session_id)
            assert status in (400, 413, 415), (body, status, text)
            assert messages_of(text)[0]["error"]["code"] in (-32700, -32600)
        # a routing header that disagrees with the body (2026-07-28 Mcp-Name)
        status, _, _ = await post(stack, alice, call, session_id, {"Mcp-Name": "delete_customer"})
        assert status == 400
        for odd in ({"Content-Type": "text/plain"}, {"Content-Encoding": "gzip"}):
            status, _, _ = await post(stack, alice, json.dumps(call).encode(), session_id, odd)
            assert status == 415
        assert len(stack.upstream.keys) == seen and stack.upstream.calls == []


async def test_nothing_but_the_mcp_endpoint_is_reachable(tmp_path: Path) -> None:
    """A message the policy allows (ping) posted to another path of the same server, or a
    GET of another path, is refused: the endpoint is part of what is decided."""
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token("dan@example.com", "dba")
        session_id = await initialize(stack, alice)
        seen = len(stack.upstream.keys)
        base = stack.url.removesuffix("/mcp")
        sent = {"Authorization": f"Bearer {alice}", "Mcp-Session-Id": session_id}
        async with httpx2.AsyncClient(timeout=30) as http:
            for url in (f"{base}/", f"{base}/admin", f"{stack.url}?debug=1", f"{base}/mcp/../x"):
                response = await http.post(
                    url,
                    json=rpc(8, "ping"),
                    headers={**sent, "Accept": "application/json, text/event-stream"},
                )
                assert response.status_code in (200, 400), url
                if response.status_code == 200:
                    error = response.json()["error"]
                    assert error["code"] == DENIED and "is not an MCP endpoint" in error["message"]
            response = await http.get(f"{base}/admin", headers=sent)
            assert response.status_code == 403
            # the endpoint itself answers
            response = await http.post(
                stack.url,
                json=rpc(9, "ping"),
                headers={**sent, "Accept": "application/json, text/event-stream"},
            )
            assert response.status_code == 200 and "error" not in response.text
        assert len(stack.upstream.keys) == seen + 1


async def test_a_batch_runs_only_when_every_message_may(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        alice = stack.token()
        session_id = await initialize(stack, alice)
        batch = [
            rpc(10, "tools/call", {"name": "get_invoice", "arguments": {"invoice_id": 2}}),
            rpc(11, "tools/call", {"name": "delete_customer", "arguments": {"customer_id": 2}}),
        ]
        status, _, text = await post(stack, alice, batch, session_id)
        assert status == 200
        answers = {m["id"]: m for m in messages_of(text)}
        assert answers[11]["error"]["code"] == DENIED
        assert answers[10]["error"]["code"] == DENIED
        assert "another message of its batch" in answers[10]["error"]["message"]
        assert stack.upstream.calls == []


async def test_curl_calls_a_tool_and_a_denial_reads_as_json_rpc(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path, json_response=True) as stack:
        alice = stack.token()
        session_id = await initialize(stack, alice)

        def curl(body: dict[str, Any]) -> dict[str, Any]:
            done = subprocess.run(
                [
                    "curl", "-sS", "-X", "POST", stack.url,
                    "-H", f"Authorization: Bearer {alice}",
                    "-H", "Content-Type: application/json",
                    "-H", "Accept: application/json, text/event-stream",
                    "-H", "MCP-Protocol-Version: 2025-06-18",
                    "-H", f"Mcp-Session-Id: {session_id}",
                    "--data-binary", json.dumps(body),
                ],
                capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            return messages_of(done.stdout)[0]

        found = await asyncio.to_thread(
            curl, rpc(4, "tools/call", {"name": "find_customer", "arguments": {"name": "Ann"}})
        )
        text = found["result"]["content"][0]["text"]
        assert "ann@example.com" not in json.dumps(found) and "[REDACTED]" in text
        denied = await asyncio.to_thread(
            curl, rpc(5, "tools/call", {"name": "run_sql", "arguments": {"sql": "drop"}})
        )
        assert denied["id"] == 5 and denied["error"]["code"] == DENIED
        assert "reserved to dba" in denied["error"]["message"]
        assert SECRET not in json.dumps(found) + json.dumps(denied)
        listed = await asyncio.to_thread(curl, rpc(6, "tools/list"))
        names = {t["name"] for t in listed["result"]["tools"]}
        assert names == {"get_invoice", "find_customer", "list_invoices", "refund_order"}


async def test_each_message_is_recorded_with_its_decision(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        async with agent(stack, stack.token()) as client:
            await client.call_tool("get_invoice", {"invoice_id": 9})
            with pytest.raises(MCPError):
                await client.call_tool("run_sql", {"sql": "select 1"})
        await stack.proxy.stop()
        decisions = [d.body for d in await stack.pdp.store.query(kind="decision")]
        calls = [
            (json.loads(d["raw"]), d["verdict"], d["reasons"])
            for d in decisions
            if d["kind"] == "mcp.call"
        ]
        asked = [
            (c.get("params", {}).get("name"), verdict)
            for c, verdict, _ in calls
            if "listing" not in c
        ]
        assert ("get_invoice", "mask") in asked and ("run_sql", "deny") in asked
        # the SDK lists tools first (it checks results against their schemas): every listed
        # tool was a question of its own, recorded as a listing
        listings = {c["params"]["name"]: verdict for c, verdict, _ in calls if c.get("listing")}
        assert listings["shadow_tool"] == "deny" and listings["get_invoice"] == "allow"
        recorded = json.dumps(await session_events(stack.pdp.store))
        assert "mcp.call" in recorded and "run_sql" in recorded
        assert SECRET not in recorded
        # `portcullis replay` renders the session: each message with its verdict and reason
        store = stack.pdp.store
        (opened,) = await store.query(kind="session.open")
        sid = opened.session_id
        timeline = build_timeline(
            opened,
            (await store.query(kind="session.close", session_id=sid, limit=1))[0],
            await store.query(kind="session.events", session_id=sid),
            await store.query(kind="decision", session_id=sid),
        )
        text = render_text(timeline)
        assert 'tool \\"run_sql\\" is dangerous' in text or 'tool "run_sql" is dangerous' in text
        assert "get_invoice" in text and SECRET not in text
