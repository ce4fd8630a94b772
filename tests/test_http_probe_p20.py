"""Probing the HTTP proxy's request side (brief P20, helper webattack8): a method named
in the query or a form under a name the policy did not judge, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, the aiohttp upstream of
http_upstream.py that records what reaches it; a real client (aiohttp). A reader may read
(GET) and write through approval (POST), never DELETE. Before the fix each of these went
upstream as the read or the approvable POST the policy judged, to a framework that acts
on the DELETE it names:

- Play 1's router reads `x-http-method-override=DELETE` anywhere in the raw query string,
  whatever the request line's method (its pattern `^.*x-http-method-override=(GET|PUT|
  POST|PATCH|DELETE).*$`, even inside another pair's value): a reader's GET was a read;
- ASP.NET MVC (System.Web.Mvc GetHttpMethodOverride) reads `X-HTTP-Method-Override` from
  a POST's form or query string as it reads the header; Salesforce's REST API reads
  `_HttpMethod` in a POST's query; Restlet's TunnelService a POST's `method` query
  parameter: a reader's POST needed approval as a POST, the approver was shown no DELETE,
  which no approval may allow a reader.

The policy (http.rego) now reads a method named under each of those names, in any case
and with `_` for `-`, as it read `_method`; the proxy flags what the policy's view of the
pairs does not show (a name inside another pair, a `;`-separated pair, PHP's rewrites, a
body it could not read naming one).

- a batch: a POST whose body carries requests the upstream carries out as its own
  (Microsoft Graph's `$batch` and Facebook's `batch=` of `{"method", "url"}` objects,
  Salesforce's composite, OData's multipart batch of request lines) needed approval as
  the POST; a reader's batch carrying a DELETE now is the DELETE (denied), its methods
  read by the proxy (messages.embedded_methods) and judged by http.rego.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from http_upstream import http_stack
from pdp_harness import token

from proxies.http import messages

TIMEOUT = aiohttp.ClientTimeout(total=60)
READER = ("ann@example.com", ("readonly",))
DBA = ("dee@example.com", ("dba", "pii-readers"))
FORM = "application/x-www-form-urlencoded"

# (method, target, body, content type)
OVERRIDES = {
    # Play 1: anywhere in the raw query, any request line
    "play_get": ("GET", "/echo/1?x-http-method-override=DELETE", None, None),
    "play_inside_a_value": ("GET", "/echo/1?q=x-http-method-override=DELETE", None, None),
    "play_after_a_prefix": ("GET", "/echo/1?ax-http-method-override=DELETE", None, None),
    # ASP.NET MVC: a POST's query or form
    "aspnet_query": ("POST", "/echo/1?X-HTTP-Method-Override=DELETE", b"", None),
    "aspnet_form": ("POST", "/echo/1", b"a=1&X-HTTP-Method-Override=DELETE", FORM),
    "aspnet_query_underscores": ("POST", "/echo/1?x_http_method_override=delete", b"", None),
    "x_http_method_query": ("POST", "/echo/1?X-HTTP-Method=DELETE", b"", None),
    "x_method_override_query": ("POST", "/echo/1?x-method-override=DELETE", b"", None),
    # Salesforce's REST API
    "salesforce": ("POST", "/echo/1?_HttpMethod=DELETE", b"", None),
    # Restlet's TunnelService
    "restlet": ("POST", "/echo/1?method=DELETE", b"", None),
    # the names as the policy's view of the pairs does not show them
    "semicolon_pair": ("POST", "/echo/1?a=1;X-HTTP-Method-Override=DELETE", b"", None),
    "php_dots": ("POST", "/echo/1?X.HTTP.Method.Override=DELETE", b"", None),
    "multipart": (
        "POST",
        "/echo/1",
        b'--b\r\nContent-Disposition: form-data; name="X-HTTP-Method-Override"\r\n\r\n'
        b"DELETE\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    ),
}

# what names no method stays as it was judged
PLAIN = {
    "rpc_method": ("GET", "/echo/1?method=flickr.photos.search", None, None, 200),
    "method_word": ("GET", "/echo/1?sort=method&payment_method=card", None, None, 200),
    "override_get": ("GET", "/echo/1?X-HTTP-Method-Override=GET", None, None, 200),
    "post_plain": ("POST", "/echo/1?method=POST", b"", None, 202),
}


def bearer(stack: Any, who: tuple[str, tuple[str, ...]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, who[0], who[1])}"}


async def send(
    stack: Any,
    method: str,
    target: str,
    body: bytes | None,
    content_type: str | None,
    who: tuple[str, tuple[str, ...]],
) -> tuple[int, Any]:
    headers = bearer(stack, who)
    if content_type:
        headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.request(
            method, stack.url + target, headers=headers, data=body, allow_redirects=False
        ) as r,
    ):
        return r.status, await r.json(content_type=None)


@pytest.mark.integration
async def test_a_method_named_in_the_query_or_form_otherwise_is_judged(tmp_path):
    async with http_stack(tmp_path) as s:
        got = {}
        for case, (method, target, body, content_type) in OVERRIDES.items():
            status, _ = await send(s, method, target, body, content_type, READER)
            got[case] = status
        assert got == dict.fromkeys(OVERRIDES, 403)
        assert s.upstream.seen == []


@pytest.mark.integration
async def test_what_names_no_method_is_judged_as_before(tmp_path):
    async with http_stack(tmp_path) as s:
        for case, (method, target, body, content_type, expected) in PLAIN.items():
            status, answer = await send(s, method, target, body, content_type, READER)
            assert status == expected, (case, status, answer)


@pytest.mark.integration
async def test_a_dba_naming_delete_so_may_delete(tmp_path):
    async with http_stack(tmp_path) as s:
        for target in ("/echo/1?X-HTTP-Method-Override=DELETE", "/echo/1?_HttpMethod=delete"):
            status, answer = await send(s, "POST", target, b"", None, DBA)
            assert status == 200, (target, status, answer)


ODATA_BATCH = (
    b"--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    b"DELETE Customers(7) HTTP/1.1\r\nHost: api\r\n\r\n\r\n--batch_1--\r\n"
)
# requests a batch carries, which the upstream carries out as its own
BATCHES = {
    "graph_json": (
        "/echo/$batch",
        b'{"requests": [{"id": "1", "method": "GET", "url": "/me"},'
        b' {"id": "2", "method": "DELETE", "url": "/users/7"}]}',
        "application/json",
    ),
    "salesforce_composite": (
        "/echo/composite",
        b'{"compositeRequest": [{"method": "delete", "url": "/sobjects/Account/7",'
        b' "referenceId": "r1"}]}',
        "application/json",
    ),
    "facebook_form": (
        "/echo/",
        b"batch=%5B%7B%22method%22%3A%22DELETE%22%2C%22relative_url%22%3A%227%22%7D%5D",
        FORM,
    ),
    "odata_multipart": ("/echo/$batch", ODATA_BATCH, "multipart/mixed; boundary=batch_1"),
    "odata_merge": (
        "/echo/$batch",
        ODATA_BATCH.replace(b"DELETE Customers(7)", b"MERGE Customers(7)").replace(
            b"Host: api", b"Host: api\r\nX-HTTP-Method: DELETE"
        ),
        "multipart/mixed; boundary=batch_1",
    ),
}


@pytest.mark.integration
async def test_a_method_a_batch_carries_is_judged(tmp_path):
    async with http_stack(tmp_path) as s:
        got = {}
        for case, (target, body, content_type) in BATCHES.items():
            status, _ = await send(s, "POST", target, body, content_type, READER)
            got[case] = status
        assert got == dict.fromkeys(BATCHES, 403)
        assert s.upstream.seen == []
        # a batch of reads is the POST it is (approval); a dba's batch goes
        reads = b'{"requests": [{"id": "1", "method": "GET", "url": "/me"}]}'
        status, _ = await send(s, "POST", "/echo/$batch", reads, "application/json", READER)
        assert status == 202
        target, body, content_type = BATCHES["graph_json"]
        status, answer = await send(s, "POST", target, body, content_type, DBA)
        assert status == 200, answer
        # a method beside no URL, or no method's name, is no request
        plain = b'{"payment": {"method": "card", "url": "/pay"}, "method": "DELETE"}'
        status, _ = await send(s, "POST", "/echo/pay", plain, "application/json", READER)
        assert status == 202


def test_the_methods_a_body_carries():
    carried = messages.embedded_methods
    lines = b"GET /a HTTP/1.1\r\n\r\n  merge /b HTTP/1.1"
    assert carried(lines, None, "multipart/mixed") == ["GET", "PATCH"]
    assert carried(lines, None, "application/http") == ["GET", "PATCH"]
    # (a request line in another body is no batch's: test_http_probe_p3 forwards it on a
    # connection that carries nothing after it)
    assert carried(lines, None, "text/plain") == []
    assert carried(b"", {"batch": '[{"Method": "put", "relative_url": "7"}]'}) == ["PUT"]
    # past what is walked, every method named so counts
    rows = [[n, n] for n in range(60_000)]
    big = json.dumps({"rows": rows, "op": {"method": "DELETE", "url": "/a"}}).encode()
    assert carried(big, None) == ["DELETE"]
    for plain in (
        b"the GET /a HTTP route",
        b'{"method": "card", "url": "/pay"}',
        b'{"method": "DELETE", "name": "x"}',
        b"not json {",
    ):
        assert carried(plain, None) == [], plain
