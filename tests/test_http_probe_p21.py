"""Probing the HTTP proxy's approvals (brief P20, helper webattack8): an approval given
for a request covered it sent with any other headers, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, the aiohttp upstream of
http_upstream.py that records what reaches it; a real client (aiohttp). A reader's POST
needs approval; the approval bound the request line, the method-override headers and the
body (messages.command_text), and the approver was shown those alone. The same request
sent again with headers the approver never saw went upstream on that approval, though
many upstreams act on a header as on the target: AWS's JSON protocol names the
operation in `X-Amz-Target` (DescribeTable and DeleteTable take the same body), S3 copies
another object into the one written under `x-amz-copy-source` and makes it public under
`x-amz-acl`, Stripe acts on another account under `Stripe-Account`, PostgREST turns an
insert into an upsert under `Prefer: resolution=merge-duplicates`, a tenant header or a
cookie chooses whose data is written, a Content-Type or Content-Encoding how the body
is read.

Every header that goes upstream is now part of what is decided, approved and shown
(messages.command_text), but for an allow-list of those that change nothing the
upstream acts on (what the proxy sets itself or drops, content negotiation, tracing ids,
a WebSocket's per-handshake key, the proxy's own `Prefer: wait`); a cookie is bound by
its digest, not shown.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aiohttp
import pytest
from http_upstream import http_stack
from pdp_harness import token

from proxies.http import messages
from proxies.http.codec import parse_head

TIMEOUT = aiohttp.ClientTimeout(total=60)
APPROVER = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
READER = ("ann@example.com", ("readonly",))

# headers the approver of the plain request never saw
UNSEEN = {
    "aws_operation": {"X-Amz-Target": "DynamoDB_20120810.DeleteTable"},
    "s3_copy": {"x-amz-copy-source": "/secrets/payroll.csv"},
    "s3_acl": {"x-amz-acl": "public-read-write"},
    "stripe_account": {"Stripe-Account": "acct_someone_else"},
    "tenant": {"X-Tenant-Id": "other-tenant"},
    "upsert": {"Prefer": "resolution=merge-duplicates"},
    "cookie": {"Cookie": "session=another-users-session"},
    "another_type": {"Content-Type": "application/x-www-form-urlencoded"},
    "if_match": {"If-Match": '"v1"'},
}


def bearer(stack: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, READER[0], READER[1])}"}


@pytest.mark.integration
async def test_an_approval_does_not_cover_headers_it_was_not_shown(tmp_path):
    async with http_stack(tmp_path) as s:
        headers = {**bearer(s), "Content-Type": "application/json"}
        body = json.dumps({"TableName": "customers"})
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.post(s.url + "/echo/pay", data=body, headers=headers) as r:
                assert r.status == 202
                approval_id = (await r.json(content_type=None))["approval_id"]
            await s.pdp.approvals.decide(approval_id, APPROVER, True, "a POST, fine")
            statuses = {}
            for case, extra in UNSEEN.items():
                sent = {**headers, **extra}
                async with client.post(s.url + "/echo/pay", data=body, headers=sent) as r:
                    statuses[case] = r.status
            # the approved request itself still goes, with the proxy's own Prefer: wait
            # and a tracing id of its own
            again = {**headers, "Prefer": "wait=1", "X-Request-Id": "r-2", "traceparent": "00-1"}
            async with client.post(s.url + "/echo/pay", data=body, headers=again) as r:
                approved = r.status
        pending = [r for r in s.pdp.approvals.requests.values() if r.state == "pending"]
    assert statuses == dict.fromkeys(UNSEEN, 202)
    assert approved == 200
    assert len(s.upstream.seen) == 1
    # each request asking for approval shows the approver the header it carries (a
    # cookie by its digest only)
    shown = "\n".join(r.command for r in pending)
    for case, extra in UNSEEN.items():
        ((name, value),) = extra.items()
        if case == "cookie":
            assert "cookie: " in shown and value not in shown
        else:
            assert f"{name.lower()}: {value}" in shown, case


def _head(*fields: str) -> Any:
    lines = ["POST /pay HTTP/1.1", "Host: api", *fields]
    return parse_head("\r\n".join(lines).encode())


def test_what_an_approval_binds_and_shows():
    plain = _head(
        "Authorization: Bearer t",
        "User-Agent: curl/8",
        "Accept: */*",
        "Accept-Encoding: gzip",
        "Content-Length: 2",
        "X-Request-Id: r-1",
        "traceparent: 00-1",
        "Prefer: wait=30",
        "Sec-WebSocket-Key: abc",
        "Sec-Fetch-Mode: cors",
    )
    assert messages.command_text(plain, b"{}").startswith("POST /pay HTTP/1.1\nbody: 2 bytes")
    bound = _head(
        "Stripe-Account: acct_1",
        "X-HTTP-Method-Override: PUT",
        "Prefer: wait=5, resolution=merge-duplicates",
        "Cookie: sid=s3cr3t",
        "X-Api-Key: client-key",
        "X_Tenant_Id: t2",
        "Connection: X-Hop",
        "X-Hop: dropped",
        "X-Forwarded-Host: evil",
        "X-Upstream-Key: guessed",
    )
    text = messages.command_text(bound, b"", credential_header="X-Upstream-Key")
    lines = text.split("\n")
    # the method-override header first, then the others as received
    assert lines[:5] == [
        "POST /pay HTTP/1.1",
        "x-http-method-override: PUT",
        "stripe-account: acct_1",
        "prefer: resolution=merge-duplicates",
        "cookie: sha256:" + hashlib.sha256(b"sid=s3cr3t").hexdigest(),
    ]
    assert lines[5] == "x-api-key: sha256:" + hashlib.sha256(b"client-key").hexdigest()
    assert lines[6:] == ["x_tenant_id: t2"]
    # (what never goes upstream is not bound: a Connection-listed header, a routing
    # claim, the client's own try at the upstream credential's header)
    for gone in ("s3cr3t", "client-key", "dropped", "evil", "guessed", "wait"):
        assert gone not in text
