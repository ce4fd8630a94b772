"""Probing the HTTP proxy's credential guard (P25): the upstream credential the proxy
injects, handed back in the forms the runtime's scanner knows, cut in one-byte chunks
and compressed.

Real PDP with the shipped policy, the HTTP proxy, a raw upstream of the test's own
that echoes the X-Api-Key the proxy injected, and raw clients: a dba in pii-readers,
whose answers are not masked (only the guard stands). The guard takes its forms from
proxies/runtime/secrets_scan.py (`_patterns`, one list for both): UTF-16 (LE, BE, with
a BOM), every byte percent-encoded (%73%33..., either case of hex), base64 (standard
and URL-safe at each alignment), hex (either case), in the body (identity, chunked a
byte a chunk, gzip, deflate, `br`) and in a field's value. Each is cut (502, or a
stream ended before its last chunk) and no form reaches the client; the same answers
without the key go through whole.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from http_upstream import SECRET, exchange, http_stack, raw_server, status
from pdp_harness import token

from proxies.http.guard import secret_patterns
from proxies.runtime.secrets_scan import _patterns

pytestmark = pytest.mark.integration

PII = ("dba", "pii-readers")


def _percent_every(key: bytes, spell: bytes = b"%%%02X") -> bytes:
    return b"".join(spell % c for c in key)


def _b64_at(offset: int, alphabet: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    return lambda key: alphabet(b"p" * offset + key + b"q")


FORMS: dict[str, Callable[[bytes], bytes]] = {
    "utf-16-le": lambda key: key.decode().encode("utf-16-le"),
    "utf-16-be": lambda key: key.decode().encode("utf-16-be"),
    "utf-16 bom": lambda key: ("key=" + key.decode()).encode("utf-16"),
    "percent every byte": _percent_every,
    "percent every byte lower": lambda key: _percent_every(key, b"%%%02x"),
    "base64 0": _b64_at(0, base64.b64encode),
    "base64 1": _b64_at(1, base64.b64encode),
    "base64 2": _b64_at(2, base64.b64encode),
    "base64url 1": _b64_at(1, base64.urlsafe_b64encode),
    "base64url unpadded 2": _b64_at(2, lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")),
    "hex": lambda key: key.hex().encode(),
    "hex upper": lambda key: key.hex().upper().encode(),
}

# how the body is carried: (Transfer-Encoding chunked a byte a chunk?, Content-Encoding)
CARRIED = {
    "identity": (False, None),
    "chunked by the byte": (True, None),
    "gzip chunked": (True, "gzip"),
    "deflate": (False, "deflate"),
    "raw deflate chunked": (True, "raw-deflate"),
    "br": (False, "br"),
}


def _coded(body: bytes, coding: str | None) -> tuple[bytes, str]:
    if coding == "gzip":
        return gzip.compress(body), "Content-Encoding: gzip\r\n"
    if coding == "deflate":
        return zlib.compress(body), "Content-Encoding: deflate\r\n"
    if coding == "raw-deflate":
        packer = zlib.compressobj(wbits=-15)
        return packer.compress(body) + packer.flush(), "Content-Encoding: deflate\r\n"
    if coding == "br":  # (not brotli: the proxy refuses the coding before reading a byte)
        return body, "Content-Encoding: br\r\n"
    return body, ""


def answer(form: str, carried: str, key: bytes) -> bytes:
    """The upstream's answer: a text with the key in `form` (none: no key) in its middle,
    carried as `carried` says; `field` puts it in a field's value instead."""
    middle = FORMS[form](key) if form in FORMS else b"nothing of it"
    body = b"a" * 300 + b" " + middle + b" " + b"z" * 300
    by_byte, coding = CARRIED[carried]
    body, fields = _coded(body, coding)
    fields += "Content-Type: application/octet-stream\r\n"
    if not by_byte:
        fields += f"Content-Length: {len(body)}\r\n"
        return f"HTTP/1.1 200 OK\r\n{fields}\r\n".encode() + body
    chunks = b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body)))
    return f"HTTP/1.1 200 OK\r\n{fields}Transfer-Encoding: chunked\r\n\r\n".encode() + (
        chunks + b"0\r\n\r\n"
    )


async def _echoing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    key = next(
        line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"x-api-key:")
    )
    target = lines[0].split(b" ")[1].decode()
    _, form, carried = (part.replace("_", " ") for part in target.split("/"))
    if carried == "field":
        value = FORMS[form](key).decode("latin-1") if form in FORMS else "nothing"
        body = b"ok"
        writer.write(
            f"HTTP/1.1 200 OK\r\nX-Debug: k={value}\r\nContent-Length: {len(body)}\r\n\r\n".encode(
                "latin-1"
            )
            + body
        )
    else:
        writer.write(answer(form, carried, key))
    await writer.drain()


async def _through_proxy(tmp_path: Any, paths: list[str]) -> dict[str, bytes]:
    got = {}
    async with (
        raw_server(_echoing) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for n, path in enumerate(paths):
            # (one dba each: a session whose answers keep being cut is ended)
            bearer = token(s.config, f"dba{n}@example.com", PII)
            raw = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bearer}\r\n"
                "Accept-Encoding: gzip, deflate, br\r\nConnection: close\r\n\r\n"
            ).encode()
            got[path] = await exchange(s.proxy.port, raw)
    return got


def _path(form: str, carried: str) -> str:
    return f"/{form.replace(' ', '_')}/{carried.replace(' ', '_')}"


def _cut(reply: bytes) -> bool:
    head = reply.partition(b"\r\n\r\n")[0].lower()
    return b"transfer-encoding: chunked" in head and not reply.endswith(b"\r\n0\r\n\r\n")


def _read(reply: bytes) -> bytes:
    """The answer as its client reads it: the head, and the body de-chunked."""
    head, _, body = reply.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        joined, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            joined, rest = joined + rest[:n], rest[n + 2 :]
        body = joined
    return head + b"\r\n\r\n" + body


def _leaked(reply: bytes) -> list[str]:
    """The forms of the key the client's bytes hold."""
    text = _read(reply)
    return [name for name, form in FORMS.items() if FORMS[name](SECRET.encode()) in text] + [
        form for pattern, form in _patterns(SECRET.encode()).items() if pattern in text
    ]


async def test_the_key_in_the_scanners_forms_is_cut_however_carried(tmp_path: Any) -> None:
    paths = [_path(form, carried) for form in FORMS for carried in CARRIED]
    paths += [_path(form, "field") for form in FORMS]
    got = await _through_proxy(tmp_path, paths)
    # refused (502), or a stream cut before its last chunk (its head had gone: a client
    # reads a broken answer)
    whole = {p: status(r) for p, r in got.items() if status(r) != 502 and not _cut(r)}
    assert whole == {}, whole
    leaked = {p: _leaked(r) for p, r in got.items() if _leaked(r)}
    assert leaked == {}, leaked


async def test_the_same_answers_without_the_key_go_through(tmp_path: Any) -> None:
    paths = [_path("none", carried) for carried in CARRIED if carried != "br"]
    paths.append(_path("none", "field"))
    got = await _through_proxy(tmp_path, paths)
    assert {p: status(r) for p, r in got.items()} == dict.fromkeys(paths, 200)
    for path, reply in got.items():
        assert b"nothing" in _read(reply), (path, reply[:300])


def test_the_guard_looks_for_every_form_the_scanner_knows() -> None:
    # one list of forms (the scanner's), not a copy kept apart
    scanner = set(_patterns(SECRET.encode()))
    assert scanner <= set(secret_patterns([SECRET]))
    for form, spell in FORMS.items():
        spelled = spell(SECRET.encode())
        assert any(p in spelled for p in scanner), form
