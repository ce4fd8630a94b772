"""Probing the HTTP proxy's credential guard (brief P9): what carried the upstream
credential to a client that puts pieces together, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, and an upstream of the test's own (an
aiohttp app handing back the key the proxy injected); a real client (aiohttp). Each test
is one way around the guard that worked before its fix (and the last, an answer the
masks refused):

- the key in two halves with other words between them (`first half: ... and then, after
  some words, the rest: ...`), in one body: the guard followed pieces only at the edges
  of the head's texts and the body, or parted by punctuation alone; a client reads the
  whole answer;
- the halves in two answers on one keep-alive connection (`/half/1`, then `/half/2`),
  or in a redirect's Location and its body: the guard reads each answer alone;
- the key upper-cased, lower-cased or with its case swapped, as it is or then encoded
  (base64, hex, percent-encoded, JSON `\\u` escapes, HTML character references): the
  guard looked for the forms of the key as it was set, case and all;
- the key with every other character escaped, by turns as JSON, HTML and a URL write
  one (`s\\u0033c&#51;...`): a form escapes every character or none but the
  punctuation. Text is now also read with its escapes undone (guard._unescaped);
- the key in fullwidth letters and digits, which a reader (a model, NFKC) reads as the
  key: text that is not ASCII is now also read as NFKC (guard._compatible).

The guard now treats any piece of a form of the key (raw, hex, base64, the escapes) of a
third of it, 10 bytes at least, in any case, as the key (guard._Pieces): two or three
pieces put together anywhere hold one so long. And the encodings of the key upper-cased,
lower-cased and case-swapped are forms of their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from http_upstream import SECRET, http_stack
from pdp_harness import token
from test_http_probe_p5 import app_upstream

from proxies.http.guard import CredentialInResponse, ResponseGuard, secret_patterns
from proxies.runtime.exposure import ClientOutput

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=30)
PII = ("dba", "pii-readers")  # nothing of the answer masked: only the guard stands


def _spelled(key: str, spelling: str) -> str:
    case, _, coding = spelling.partition(" ")
    key = {"upper": key.upper(), "lower": key.lower(), "swapped": key.swapcase()}.get(case, key)
    if coding == "base64":
        return base64.b64encode(key.encode()).decode()
    if coding == "hex":
        return key.encode().hex().upper()
    if coding == "percent":
        return "".join(f"%{b:02x}" for b in key.encode())
    if coding == "json":
        return "".join(f"\\u{ord(c):04X}" for c in key)
    if coding == "entities":
        return "".join(f"&#X{ord(c):X};" for c in key)
    if coding == "html":
        return html.escape(key)
    if coding == "fullwidth":  # (as NFKC reads it: the key)
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in key)
    if coding == "mixed":  # every other character escaped, by turns as JSON, HTML, a URL
        spells = ("\\u{:04x}", "&#{};", "%{:02x}", "&#x{:x};")
        return "".join(spells[n // 2 % 4].format(ord(c)) if n % 2 else c for n, c in enumerate(key))
    return key


def pieces_app() -> web.Application:
    """/words?spelling=..: the X-Api-Key the proxy injected (spelled so) cut in two with
    words between; /half/<n>: its n-th half alone; /redirect: a 302 whose Location ends
    with the first half and whose body holds the second; /whole?spelling=..: all of it."""

    def key_of(request: web.Request) -> str:
        return _spelled(request.headers["X-Api-Key"], request.query.get("spelling", "raw"))

    async def words(request: web.Request) -> web.Response:
        key = key_of(request)
        first, second = key[: len(key) // 2], key[len(key) // 2 :]
        text = f"first half: {first} and then, after some words, the rest: {second} end"
        return web.Response(text=text)

    async def half(request: web.Request) -> web.Response:
        key = key_of(request)
        n = int(request.match_info["n"])
        return web.Response(text="part " + (key[: len(key) // 2], key[len(key) // 2 :])[n - 1])

    async def redirect(request: web.Request) -> web.Response:
        key = key_of(request)
        first, second = key[: len(key) // 2], key[len(key) // 2 :]
        return web.Response(
            status=302, headers={"Location": f"/next?t={first}"}, text=f"moved; also {second}"
        )

    async def whole(request: web.Request) -> web.Response:
        return web.Response(text="key: " + key_of(request))

    app = web.Application()
    app.router.add_get("/words", words)
    app.router.add_get("/half/{n}", half)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/whole", whole)
    return app


async def _read(client: aiohttp.ClientSession, url: str, bearer: str) -> tuple[int, str]:
    """(status, every header value and the body as a client reads them, joined) — 0 for an
    answer cut before its end."""
    try:
        async with client.get(
            url, headers={"Authorization": f"Bearer {bearer}"}, allow_redirects=False
        ) as response:
            values = "".join(response.headers.values())
            return response.status, values + await response.text()
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        return 0, str(exc)


SPELLINGS = [
    "raw",
    "upper",
    "lower",
    "swapped",
    "upper base64",
    "lower hex",
    "upper percent",
    "upper json",
    "swapped entities",
    "upper html",
    "raw mixed",
    "upper mixed",
    "raw fullwidth",
]


async def test_the_credential_in_pieces_a_client_puts_together_is_cut(tmp_path: Any) -> None:
    got: dict[str, tuple[int, str]] = {}
    async with (
        app_upstream(pieces_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        bearer = token(s.config, "mallory@example.com", PII)
        base = f"http://127.0.0.1:{s.proxy.port}"
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            for spelling in SPELLINGS:
                got[f"words {spelling}"] = await _read(
                    client, f"{base}/words?spelling={quote(spelling)}", bearer
                )
                got[f"whole {spelling}"] = await _read(
                    client, f"{base}/whole?spelling={quote(spelling)}", bearer
                )
            got["redirect"] = await _read(client, f"{base}/redirect", bearer)
            # two answers on one keep-alive connection: the client reads both
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as one:
                first = await _read(one, f"{base}/half/1", bearer)
                second = await _read(one, f"{base}/half/2", bearer)
            got["two answers"] = (first[0] or second[0], first[1] + " " + second[1])
    leaked = {}
    for case, (code, text) in got.items():
        spelling = case.partition(" ")[2] or "raw"
        key = _spelled(SECRET, spelling if case.startswith(("words", "whole")) else "raw")
        first, second = key[: len(key) // 2], key[len(key) // 2 :]
        if (first in text and second in text) or code not in (0, 502):
            leaked[case] = (code, text[:200])
    assert not leaked, sorted(leaked)


def test_a_short_run_of_the_keys_letters_is_not_a_piece_of_it() -> None:
    # (sans-IO) nine bytes of the key, or the words it is made of, are no credential:
    # ordinary text goes
    written: list[bytes] = []
    guard = ResponseGuard(ClientOutput(written.append), secret_patterns([SECRET]))
    text = f"the upstream key of {SECRET[:9]}: see the upstream keys docs".encode()
    guard.answer(b"HTTP/1.1 200 OK\r\n\r\n", text)
    assert b"".join(written).endswith(text)
    guard = ResponseGuard(ClientOutput(written.append), secret_patterns([SECRET]))
    with pytest.raises(CredentialInResponse):
        guard.answer(b"HTTP/1.1 200 OK\r\n\r\n", b"a " + SECRET[-10:].upper().encode())


def empty_object_app() -> web.Application:
    """/record: a JSON record holding an empty object (`"tags": {}`) beside an e-mail."""

    async def record(request: web.Request) -> web.Response:
        return web.json_response({"id": 7, "tags": {}, "email": "ann@example.com"})

    app = web.Application()
    app.router.add_get("/record", record)
    return app


async def test_a_masked_answer_holding_an_empty_object_is_masked_not_refused(
    tmp_path: Any,
) -> None:
    # the masks read `{}` for a map from values to fields and asked for its first key:
    # StopIteration inside the proxy's coroutine (a RuntimeError), 502 for any reader's
    # JSON answer holding an empty object anywhere
    async with (
        app_upstream(empty_object_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        bearer = token(s.config, "mallory@example.com", ("readonly",))
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            client.get(
                f"http://127.0.0.1:{s.proxy.port}/record",
                headers={"Authorization": f"Bearer {bearer}"},
            ) as response,
        ):
            assert response.status == 200
            assert await response.json() == {"id": 7, "tags": {}, "email": "[REDACTED]"}


def _jwt(claims: dict[str, Any], key: bytes) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    return head + "." + part(hmac.new(key, head.encode(), hashlib.sha256).digest())


def test_another_jwt_is_no_piece_of_a_jwt_credential() -> None:
    # (sans-IO) a JWT's header is the same in every HS256 JWT: an answer handing the
    # client a token of its own goes; a third of the credential's signature does not
    credential = _jwt({"sub": "svc-billing", "scope": "read"}, b"k" * 32)
    other = _jwt({"sub": "ann", "exp": 1}, b"o" * 32)
    written: list[bytes] = []
    guard = ResponseGuard(ClientOutput(written.append), secret_patterns([credential]))
    body = json.dumps({"access_token": other}).encode()
    guard.answer(b"HTTP/1.1 200 OK\r\n\r\n", body)
    assert b"".join(written).endswith(body)
    signature = credential.rsplit(".", 1)[1]
    guard = ResponseGuard(ClientOutput(written.append), secret_patterns([credential]))
    with pytest.raises(CredentialInResponse):
        guard.answer(b"HTTP/1.1 200 OK\r\n\r\n", b"sig " + signature[:36].encode())
