"""A method override is judged as the method it names (rego/portcullis/http.rego).

Web frameworks act on another method than the request line's when a request names one:
the X-HTTP-Method-Override, X-HTTP-Method and X-Method-Override headers (Rack and Rails,
Express's method-override, Symfony, Laravel, Google's APIs) and a `_method` parameter in
the query, a form or a JSON body (Rails, Laravel). A reader, who may not DELETE, sending a
GET or POST that names DELETE would otherwise get a read or an approved POST that the
upstream carries out as a DELETE, with evidence saying otherwise. Real PDP (the shipped
policy), the HTTP proxy, an aiohttp upstream that records what reaches it; clients curl
and aiohttp.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import aiohttp
import pytest
from http_upstream import http_stack
from pdp_harness import token

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
READER = ("ann@example.com", ("readonly",))
DBA = ("dee@example.com", ("dba", "pii-readers"))


def bearer(stack: Any, who: tuple[str, tuple[str, ...]] = READER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, who[0], who[1])}"}


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

# (method, path, extra headers, body, content type)
OVERRIDES = {
    "get_header": ("GET", "/echo/1", {"X-HTTP-Method-Override": "DELETE"}, None, None),
    "post_header": ("POST", "/echo/1", {"X-HTTP-Method": "delete"}, b"{}", "application/json"),
    "post_x_method": ("POST", "/echo/1", {"X-Method-Override": "Delete"}, b"", None),
    "post_query": ("POST", "/echo/1?_method=DELETE", {}, b"", None),
    "get_query_encoded": ("GET", "/echo/1?%5Fmethod=DELETE", {}, None, None),
    "post_form": (
        "POST",
        "/echo/1",
        {},
        b"a=1&_method=DELETE",
        "application/x-www-form-urlencoded",
    ),
    "post_json": ("POST", "/echo/1", {}, b'{"_method": "DELETE"}', "application/json"),
    "post_multipart": (
        "POST",
        "/echo/1",
        {},
        b'--b\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    # names a framework reads as `_method`: PHP (Laravel, Symfony) reads `.` and ` ` as
    # `_` and `_method[x]` as `_method`; Rack 2 splits pairs on `;` as well as `&`
    "post_query_dot": ("POST", "/echo/1?.method=DELETE", {}, b"", None),
    "post_query_space": ("POST", "/echo/1?%20_method=DELETE", {}, b"", None),
    "post_query_array": ("POST", "/echo/1?_method%5B%5D=DELETE", {}, b"", None),
    # a name read as a C string ends at its NUL
    "post_query_nul": ("POST", "/echo/1?_method%00=DELETE", {}, b"", None),
    "post_form_nul": ("POST", "/echo/1", {}, b"a=1&_method%00x=DELETE", FORM),
    "post_query_semicolon": ("POST", "/echo/1?a=1;_method=DELETE", {}, b"", None),
    "post_form_semicolon": ("POST", "/echo/1", {}, b"a=1;_method=DELETE", FORM),
    "post_form_dot": ("POST", "/echo/1", {}, b"a=1&.method=DELETE", FORM),
    # a form too large for the policy to be shown, naming it as PHP reads it
    "post_large_form_dot": (
        "POST",
        "/echo/1",
        {},
        b"a=" + b"x" * 70_000 + b"&%2Emethod=DELETE",
        FORM,
    ),
    "post_multipart_dot": (
        "POST",
        "/echo/1",
        {},
        b'--b\r\nContent-Disposition: form-data; name=".method"\r\n\r\nDELETE\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    # a JSON body the policy cannot read (a trailing comma) with the name JSON-escaped
    "post_json_escaped": ("POST", "/echo/1", {}, b'{"\\u005fmethod": "DELETE",}', JSON),
    # bodies the framework inflates (Express's body-parser does): read decoded
    "post_json_gzip": (
        "POST",
        "/echo/1",
        {"Content-Encoding": "gzip"},
        gzip.compress(b'{"_method": "DELETE"}', mtime=0),
        JSON,
    ),
    "post_form_deflate": (
        "POST",
        "/echo/1",
        {"Content-Encoding": "deflate"},
        zlib.compress(b"a=1&_method=DELETE"),
        FORM,
    ),
    # a coding the proxy cannot undo could name anything
    "post_br": ("POST", "/echo/1", {"Content-Encoding": "br"}, b"\x0b\x02\x80{}\x03", JSON),
    # CGI, WSGI and PHP read `_` in a header's name as `-`
    "get_header_underscore": ("GET", "/echo/1", {"X_HTTP_Method_Override": "DELETE"}, None, None),
    "two_overrides": (
        "GET",
        "/echo/1",
        {"X-HTTP-Method-Override": "GET", "X-HTTP-Method": "DELETE"},
        None,
        None,
    ),
}


async def send(stack: Any, case: str, who: tuple[str, tuple[str, ...]]) -> tuple[int, Any]:
    method, path, extra, body, content_type = OVERRIDES[case]
    headers = {**bearer(stack, who), **extra}
    if content_type:
        headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.request(method, stack.url + path, headers=headers, data=body) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_a_readers_override_naming_delete_is_denied_and_nothing_is_forwarded(tmp_path):
    async with http_stack(tmp_path) as s:
        for case in OVERRIDES:
            status, problem = await send(s, case, READER)
            assert status == 403, (case, status, problem)
            assert problem["decision_id"], case
        assert s.upstream.seen == []


async def test_curl_sends_the_override_header_and_is_refused(tmp_path):
    async with http_stack(tmp_path) as s:
        auth = bearer(s)["Authorization"]
        curl = await asyncio.create_subprocess_exec(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
            "-H", f"Authorization: {auth}", "-H", "X-HTTP-Method-Override: DELETE",
            s.url + "/echo/1",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await curl.communicate()
        assert out == b"403"
        assert s.upstream.seen == []


async def test_a_dba_may_override_and_an_override_to_the_same_method_is_a_read(tmp_path):
    async with http_stack(tmp_path) as s:
        for case in ("post_header", "post_query", "post_form", "post_json"):
            status, _ = await send(s, case, DBA)
            assert status == 200, case
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            headers = {**bearer(s), "X-HTTP-Method-Override": "GET"}
            async with client.get(s.url + "/echo/2", headers=headers) as r:
                assert r.status == 200
        assert len(s.upstream.seen) == 5
        # a compressed JSON body naming POST is the POST a dba may send
        headers = {**bearer(s, DBA), "Content-Encoding": "gzip", "Content-Type": JSON}
        plain = b'{"_method": "POST", "payment_method": "card"}'
        body = gzip.compress(plain)
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT, auto_decompress=False) as client,
            client.post(s.url + "/echo/3", headers=headers, data=body) as r,
        ):
            assert r.status == 200
        assert s.upstream.seen[-1]["body"] == plain  # (aiohttp inflates request bodies too)


def test_names_read_as_method_and_what_is_left_alone():
    from proxies.http.messages import hides_method, reads_as_method

    for name in (
        "_method",
        ".method",
        " _method",
        "_METHOD",
        "_method[]",
        "_method[x]",
        " .method",
        "_method\x00",
        "_method\x00x",
    ):
        assert reads_as_method(name), name
    for name in ("payment_method", "method", "_methods", "x_method", "_method_"):
        assert not reads_as_method(name), name
    assert not hides_method("_method=DELETE")  # shown to the policy as it is
    assert not hides_method("payment_method=card&a=1")
    assert hides_method("a=1;_method=DELETE")
    assert hides_method("_method=GET;_method=DELETE")
    assert hides_method("%2Emethod=DELETE")


async def test_headers_that_route_or_spoof_by_another_spelling_do_not_reach_the_upstream(tmp_path):
    """X-Original-URL and X-Rewrite-URL name a path some servers route by (IIS URL Rewrite,
    older Symfony): the path decided is the path sent, so they are not forwarded. A
    header the proxy replaces or injects (X-Forwarded-For, the credential's X-Api-Key)
    spelled with `_` is dropped as the header itself is."""
    async with http_stack(tmp_path) as s:
        headers = {
            **bearer(s),
            "X-Original-URL": "/admin/delete",
            "X-Rewrite-URL": "/admin/delete",
            "X_Original_URL": "/admin/delete",
            "X_Forwarded_For": "10.0.0.1",
            "X_Api_Key": "someone-elses-key",
        }
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            client.get(s.url + "/echo/1", headers=headers) as r,
        ):
            assert r.status == 200
        (seen,) = s.upstream.seen
    names = {name.lower().replace(b"_", b"-") for name, _ in seen["headers"]}
    assert not names & {b"x-original-url", b"x-rewrite-url"}
    forwarded = [
        v for n, v in seen["headers"] if n.lower().replace(b"_", b"-") == b"x-forwarded-for"
    ]
    assert forwarded == [b"127.0.0.1"]
    keys = [v for n, v in seen["headers"] if n.lower().replace(b"_", b"-") == b"x-api-key"]
    assert len(keys) == 1 and keys[0] != b"someone-elses-key"
