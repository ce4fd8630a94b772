"""PDP probe 19 (helper approvals4): what an approver reads of a request's reasons.

An approver's view of a request masks the values in its command (pdp.domain.approver_view:
every detector runs over the text, whatever the requester's own masks), so a card
number, an email or an SSN in an HTTP path or an SSH line never reaches the approvers'
listing, the HTTP API or the webhook's chat message. But the request's `reasons` are the
policy's, and they quote the command: `POST /customers/4111111111111111/notes needs
approval`, `"sudo" needs approval ("sudo useradd -c 4111111111111111 bob")`. They were
shown as the policy gave them, beside the masked command, in every one of those views
(and the console's). They are now masked as the command is; the request keeps the
policy's own reasons apart (`asked_reasons`, never shown), which a re-run compares.

And the view of a command that is not SQL ran the detectors alone, while a Postgres
statement's values are also masked by the field rules of the columns they meet: a
password (no detector knows one) in an HTTP request's JSON body, form or query, or in an
MCP call's arguments, was shown whole. The values under a name a field rule masks are
now masked whole, as the requester's own answers are; a body that is neither JSON nor a
form and names a masked field is withheld.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

import aiohttp
import grpc
import pytest
from google.protobuf import struct_pb2
from pdp_harness import free_port, pdp_raw, pdp_stub, running_pdp, token

from pdp.api.webhooks import notice
from pdp.domain.approver_view import approver_masker, approver_view
from portcullis.config import parse_config
from portcullis.v1 import pdp_pb2
from portcullis.verdict import MaskRule

CARD = "4111111111111111"
SSN = "123-45-6789"
CONNECTIONS = [
    {
        "name": "billing-api",
        "type": "http",
        "listen": "127.0.0.1:1",
        "upstream": "http://127.0.0.1:2",
        "credentials": {"provider": "static", "header": "X", "value": "v"},
    },
    {
        "name": "web-1",
        "type": "ssh",
        "listen": "127.0.0.1:3",
        "upstream": "127.0.0.1:4",
        "credentials": {"provider": "static", "username": "deploy", "password": "x"},
    },
]
COMMANDS = [
    (
        "billing-api",
        "http.request",
        f"POST /customers/{CARD}/notes HTTP/1.1",
        {"method": "POST", "path": "/x", "query": {}, "headers": {}},
    ),
    ("web-1", "ssh.exec", f"sudo useradd -c {CARD} bob", {}),
    ("web-1", "ssh.exec", f"systemctl restart app-{SSN}", {}),
]


async def _decide(stub, session_id: str, kind: str, raw: str, attributes) -> pdp_pb2.Decision:
    values = struct_pb2.Struct()
    values.update(attributes)
    answer = await stub.Decide(
        pdp_pb2.DecideRequest(
            session_id=session_id,
            command=pdp_pb2.Command(kind=kind, raw=raw, attributes=values),
        )
    )
    return answer.decision


async def _open(stub, tok: str, name: str, kind: str) -> str:
    opened = await stub.OpenSession(
        pdp_pb2.OpenSessionRequest(
            token=tok,
            connection=pdp_pb2.Connection(name=name, type=kind),
            client_addr="127.0.0.1:50000",
            client="pytest",
        )
    )
    return opened.session_id


@pytest.mark.parametrize("name,kind,raw,attributes", COMMANDS, ids=["http", "sudo", "systemctl"])
async def test_an_approver_reads_no_value_the_reasons_quote(tmp_path, name, kind, raw, attributes):
    """Attack (reader, through the HTTP or SSH proxy; the approvers, and everyone in the
    chat channel the webhook posts to, are not pii-readers): ask for a write whose path or
    command line holds a card number. The command was masked for approvers, its reasons
    were not."""
    port = free_port()
    raw_config = pdp_raw(tmp_path, connections=CONNECTIONS)
    raw_config["pdp"]["http_listen"] = f"127.0.0.1:{port}"
    config = parse_config(raw_config, base_dir=tmp_path)
    rita = token(config, "rita@example.com", ("readonly",))
    sam = token(config, "sam@example.com", ("security",))
    secret = CARD if CARD in raw else SSN
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        session_id = await _open(stub, rita, name, kind.split(".")[0])
        asked = await _decide(stub, session_id, kind, raw, attributes)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        assert any(secret in r for r in asked.reasons)  # the requester's own answer: whole
        listed = await stub.ListApprovals(pdp_pb2.ListApprovalsRequest(token=sam))
        (shown,) = [a for a in listed.approvals if a.id == asked.approval_id]
        assert shown.reasons and secret not in shown.command
        assert not any(secret in r for r in shown.reasons), list(shown.reasons)
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{port}/v1/approvals",
                headers={"Authorization": f"Bearer {sam}"},
            ) as answer,
        ):
            assert answer.status == 200
            body = await answer.text()
        assert asked.approval_id in body and secret not in body
        chat = json.dumps(notice(pdp.approvals.requests[asked.approval_id]))
        assert secret not in chat
        # the approval still binds to the command, and its re-run to the policy's reasons
        approved = await stub.ResolveApproval(
            pdp_pb2.ResolveApprovalRequest(
                token=sam, approval_id=asked.approval_id, approve=True, reason="ticket 7"
            )
        )
        assert approved.approval.state == "approved"
        rerun = await _decide(stub, session_id, kind, raw, attributes)
        assert rerun.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), list(rerun.reasons)
        assert any(asked.approval_id in r for r in rerun.reasons)
        with pytest.raises(grpc.aio.AioRpcError):  # nothing left to decide
            await stub.ResolveApproval(
                pdp_pb2.ResolveApprovalRequest(token=sam, approval_id=asked.approval_id)
            )


# -- what a field rule masks in an HTTP request's body or query ----------------------------

PASSWORD = "Tr0ub4dor&3xyz"


def _http_raw(target: str, body: str = "") -> str:
    """The command text the HTTP proxy sends (proxies.http.messages.command_text)."""
    raw = f"POST {target} HTTP/1.1"
    if body:
        data = body.encode()
        raw += f"\nbody: {len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()}\n\n{body}"
    return raw


@pytest.mark.parametrize(
    "target,body,content_type",
    [
        ("/users", json.dumps({"user": "bob", "password": PASSWORD}), "application/json"),
        ("/users", f"user=bob&password={quote(PASSWORD)}", "application/x-www-form-urlencoded"),
        (f"/users?user=bob&userPassword={quote(PASSWORD)}", "", ""),
        ("/users", f"set the password of bob to {PASSWORD}", "text/plain"),
    ],
    ids=["json", "form", "query", "text"],
)
async def test_an_approver_reads_no_value_a_field_rule_masks(tmp_path, target, body, content_type):
    """Attack (reader, through the HTTP proxy): POST a password (a field every reader's
    answers mask: data.portcullis.sensitive_columns) in a JSON body, a form or the query.
    The approver's view ran the detectors alone over an HTTP command, and no detector
    knows a password: approvers and the webhook's chat read it whole, where the same
    value in `UPDATE users SET password = '...'` was masked."""
    config = parse_config(pdp_raw(tmp_path, connections=CONNECTIONS[:1]), base_dir=tmp_path)
    rita = token(config, "rita@example.com", ("readonly",))
    sam = token(config, "sam@example.com", ("security",))
    raw = _http_raw(target, body)
    headers = {"content-type": content_type} if content_type else {}
    attributes = {"method": "POST", "path": "/users", "query": {}, "headers": headers}
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        session_id = await _open(stub, rita, "billing-api", "http")
        asked = await _decide(stub, session_id, "http.request", raw, attributes)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        assert any(m.field == "password" for m in asked.mask)  # what rita's answers hide
        listed = await stub.ListApprovals(pdp_pb2.ListApprovalsRequest(token=sam))
        (shown,) = [a for a in listed.approvals if a.id == asked.approval_id]
        for secret in (PASSWORD, quote(PASSWORD), "Tr0ub4dor"):
            assert secret not in shown.command, shown.command
            assert secret not in json.dumps(notice(pdp.approvals.requests[asked.approval_id]))
        if content_type == "text/plain":  # no value can be told apart: withheld
            assert "body withheld" in shown.command and "bob" not in shown.command
        else:
            assert "bob" in shown.command  # what no rule masks is read as sent
        approved = await stub.ResolveApproval(
            pdp_pb2.ResolveApprovalRequest(
                token=sam, approval_id=asked.approval_id, approve=True, reason="ticket 8"
            )
        )
        assert approved.approval.state == "approved"
        rerun = await _decide(stub, session_id, "http.request", raw, attributes)
        assert rerun.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK), list(rerun.reasons)


def test_an_mcp_calls_arguments_are_masked_by_the_field_rules():
    """The same for an MCP tool call (its command text is the call's canonical JSON)."""
    masker = approver_masker([MaskRule(field="password", strategy="redact")])
    command = json.dumps(
        {
            "endpoint": "/mcp",
            "method": "tools/call",
            "params": {"name": "reset", "arguments": {"user": "bob", "password": PASSWORD}},
        }
    )
    shown = approver_view("mcp.call", command, [], "", masker).command
    assert PASSWORD not in shown and "bob" in shown and "reset" in shown
