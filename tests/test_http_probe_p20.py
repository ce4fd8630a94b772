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
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from http_upstream import http_stack
from pdp_harness import token

pytestmark = pytest.mark.integration

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


async def test_a_method_named_in_the_query_or_form_otherwise_is_judged(tmp_path):
    async with http_stack(tmp_path) as s:
        got = {}
        for case, (method, target, body, content_type) in OVERRIDES.items():
            status, _ = await send(s, method, target, body, content_type, READER)
            got[case] = status
        assert got == dict.fromkeys(OVERRIDES, 403)
        assert s.upstream.seen == []


async def test_what_names_no_method_is_judged_as_before(tmp_path):
    async with http_stack(tmp_path) as s:
        for case, (method, target, body, content_type, expected) in PLAIN.items():
            status, answer = await send(s, method, target, body, content_type, READER)
            assert status == expected, (case, status, answer)


async def test_a_dba_naming_delete_so_may_delete(tmp_path):
    async with http_stack(tmp_path) as s:
        for target in ("/echo/1?X-HTTP-Method-Override=DELETE", "/echo/1?_HttpMethod=delete"):
            status, answer = await send(s, "POST", target, b"", None, DBA)
            assert status == 200, (target, status, answer)
