"""Probing the HTTP proxy's request side (P38, helper webmask21): a multipart part named
in RFC 2231's forms.

Real PDP with the shipped policy, the proxy before the upstream app, a reader's raw
requests. A multipart body is not shown to the policy as a value: the proxy reads its
text for a part naming the method (`_method`: messages.names_method) and for words
naming a masked field (request_words.body_runs). Both read a part's name as written
(`name="_method"`, its escapes undone). But a Content-Disposition may give the name in
RFC 2231's forms, which Go's mime.ParseMediaType (so net/http's FormValue, which
gorilla/handlers' and Echo's method overrides read), Werkzeug's parse_options_header,
busboy and Python's email join and decode: `name*0="_me"; name*1="thod"` and
`name*=UTF-8''%5Fme%74hod` are `_method` there, and in no reading of the text here.
Before the fix a reader's POST naming DELETE so was judged a POST (an approval away)
instead of the DELETE reserved to the privileged, and a part named `phone` in pieces
filtered by it unseen. Now the names are read as those parsers read them
(request_words.disposition_names), encoded words (RFC 2047) too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from http_upstream import exchange, http_stack, request, status
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from proxies.http import messages, request_words

pytestmark = pytest.mark.integration

DISPOSITIONS = [
    "form-data; name*=UTF-8''%5Fme%74hod",
    'form-data; name*0="_me"; name*1="thod"',
    "form-data; name*0*=UTF-8''%5Fme; name*1=\"thod\"",
    'form-data;\r\n name*0="_me";\r\n name*1="thod"',
    'form-data; name="=?utf-8?B?X21ldGhvZA==?="',
]


def _multipart(disposition: str, value: str) -> bytes:
    return (f"--XX\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n--XX--\r\n").encode()


FIELDS = "Content-Type: multipart/form-data; boundary=XX\r\n"


def test_the_parsers_read_these_names_as_the_method() -> None:
    for disposition in DISPOSITIONS[:4]:
        env = EnvironBuilder(
            method="POST",
            data=_multipart(disposition, "DELETE"),
            content_type="multipart/form-data; boundary=XX",
        ).get_environ()
        _, form, _ = parse_form_data(env)
        assert form.get("_method") == "DELETE", disposition


@pytest.mark.parametrize("disposition", DISPOSITIONS)
async def test_a_method_named_in_rfc_2231_forms_is_judged(tmp_path: Path, disposition: str) -> None:
    async with http_stack(tmp_path) as s:
        body = _multipart(disposition, "DELETE")
        answer = await exchange(s.proxy.port, request(s, "POST /customers HTTP/1.1", FIELDS, body))
        assert status(answer) == 403, answer
        assert not s.upstream.seen


async def test_a_masked_field_named_in_pieces_is_judged(tmp_path: Path) -> None:
    async with http_stack(tmp_path) as s:
        for n, disposition in enumerate(
            ['form-data; name*0="ph"; name*1="one"', "form-data; name*=UTF-8''ph%6Fne"]
        ):
            body = _multipart(disposition, "555*")
            line = "GET /customers HTTP/1.1"
            answer = await exchange(s.proxy.port, request(s, line, FIELDS, body))
            assert status(answer) == 202, (n, answer)
            assert b"masked field phone" in answer, answer
        plain = _multipart('form-data; name="note"', "hello")
        answer = await exchange(s.proxy.port, request(s, "GET /customers HTTP/1.1", FIELDS, plain))
        assert status(answer) not in (202, 403), answer  # (forwarded: the app has no such path)
        assert len(s.upstream.seen) == 1


# -- a method override under a name of another framework's or recipe's own: Flask's
# MethodRewriteMiddleware recipe reads `__METHOD_OVERRIDE__` in the query; others
# `httpMethod`, `method_override`, a `Method-Override` header. Judged by the names
# http.rego listed only, each went as the GET it was written as; now any field or header
# whose name holds `method` and whose value names a method is judged as naming it.
OVERRIDES = [
    ("GET /customers?__METHOD_OVERRIDE__=DELETE HTTP/1.1", ""),
    ("GET /customers?httpMethod=delete HTTP/1.1", ""),
    ("GET /customers?method_override=DELETE HTTP/1.1", ""),
    ("GET /customers HTTP/1.1", "Method-Override: DELETE\r\n"),
    ("GET /customers HTTP/1.1", "X-Requested-Method: GET, DELETE\r\n"),
]


@pytest.mark.parametrize(("line", "fields"), OVERRIDES)
async def test_an_override_under_another_name_is_judged(
    tmp_path: Path, line: str, fields: str
) -> None:
    async with http_stack(tmp_path) as s:
        answer = await exchange(s.proxy.port, request(s, line, fields))
        assert status(answer) == 403, answer
        assert not s.upstream.seen


async def test_a_field_naming_no_method_is_no_override(tmp_path: Path) -> None:
    async with http_stack(tmp_path) as s:
        for line, fields in [
            ("GET /customers?payment_method=card HTTP/1.1", ""),
            ("GET /customers HTTP/1.1", "X-Auth-Method: token\r\n"),
        ]:
            answer = await exchange(s.proxy.port, request(s, line, fields))
            assert status(answer) not in (202, 403), answer
        assert len(s.upstream.seen) == 2


def test_dispositions_too_long_to_read_are_judged_unread() -> None:
    # (Python's email splits a header's parameters in time quadratic in its length: a
    # body of such headers is not read, and is judged as naming a method)
    long = "Content-Disposition: form-data; name*=x" + '; a="b' * 20_000 + "\r\n"
    with pytest.raises(request_words.Unread):
        request_words.disposition_names(long)
    assert messages.names_method(long.encode(), None)
    assert request_words.disposition_names('Content-Disposition: form-data; name="a"') == []
