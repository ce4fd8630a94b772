"""Probing the HTTP proxy (P33, helper webmask16): chunk lines ended by a bare LF, and the
upstream credential handed back in forms made in two steps.

Real PDP with the shipped policy, the HTTP proxy, a raw upstream (or the aiohttp app), a
raw client. Before the fixes:

- a chunked request body whose chunk-size line, the CRLF after a chunk's data or a
  trailer line ended in a bare LF (`5\\nhello\\n0\\n\\n`) was never answered: the reader
  waited for a CRLF the client would not send, until the body's read timeout (300 s)
  ended the connection; a head ended by bare LFs was refused at once already. Such a
  line is refused with 400 as soon as its LF (or a CR not followed by LF) arrives
  (codec.RequestReader._line, and the CRLF after a chunk's data).

- the guard knew the credential raw, escaped and encoded once (hex, base64, base32,
  base85, reversed), but an upstream echoing it through its platform's own steps handed
  it over whole: base64 of its UTF-16 text (PowerShell's `-EncodedCommand`, .NET's
  `Encoding.Unicode`), hex of its UTF-16 text (SQL Server's `0x7300...`), base64 of its
  base64 (a Kubernetes Secret holding a value that is base64 already), hex of its base64,
  base64 of its hex, its base64 reversed, uuencoded, ROT13, its bytes as decimal numbers
  (Node's `Buffer.toJSON()`: `{"type":"Buffer","data":[115,51,...]}`, Java's
  `Arrays.toString(byte[])`), as octal escapes (PostgreSQL's bytea escape format, a C
  string) and as `%u0073` escapes (JavaScript's escape()). Each is a form the guard
  looks for now (guard.layered_forms, bare_numbers, escaped_forms): the answer is cut.

(Held already, pinned here: base64 at each alignment, base85, quoted-printable-like
`=73=33`, every character as `&#x73;`, a head ended by bare LFs.)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import json
from pathlib import Path
from typing import Any

import pytest
from http_upstream import SECRET, exchange, http_stack, raw_server, request, status
from pdp_harness import token

from proxies.http.codec import BadRequest, RequestReader

pytestmark = pytest.mark.integration

HEAD = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
BARE = {
    "size-line": b"5\nhello\r\n0\r\n\r\n",
    "after-data": b"5\r\nhello\n0\r\n\r\n",
    "last-chunk": b"5\r\nhello\r\n0\n\n",
    "trailer": b"5\r\nhello\r\n0\r\nX-Note: y\n\n",
    "bare-cr": b"5;ext\rhello",
}


def _first_bare(body: bytes) -> int:
    """Where body's first LF without a CR before it, or CR without an LF after, is."""
    for at, byte in enumerate(body):
        if byte == 10 and body[at - 1 : at] != b"\r":
            return at
        if byte == 13 and body[at + 1 : at + 2] not in (b"", b"\n"):
            return at
    raise AssertionError(body)


@pytest.mark.parametrize("name", list(BARE))
def test_a_chunk_line_ended_by_a_bare_lf_is_refused_when_it_arrives(name: str) -> None:
    body = BARE[name]
    reader = RequestReader()
    reader.feed(HEAD)
    with pytest.raises(BadRequest) as refused:
        for at in range(len(body)):
            reader.feed(body[at : at + 1])
    assert refused.value.status == 400
    # (refused by the byte that makes it bare, or the one after a CR: nothing after it
    # is waited for, as a bare-LF client sends no CRLF)
    assert at <= _first_bare(body) + 1, (name, at)


def test_a_well_framed_chunked_body_still_reads() -> None:
    reader = RequestReader()
    got = reader.feed(HEAD)
    for byte in b"5;x=1\r\nhello\r\n0\r\nX-Note: y\r\n\r\n":
        got += reader.feed(bytes([byte]))
    assert b"".join(getattr(e, "data", b"") for e in got) == b"hello"


async def test_the_proxy_answers_a_bare_lf_chunked_body_at_once(tmp_path: Path) -> None:
    async with http_stack(tmp_path) as s:
        for name, body in BARE.items():
            fields = "Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n"
            raw = request(s, "POST /echo HTTP/1.1", fields).replace(b"Connection: close\r\n", b"")
            reader, writer = await asyncio.open_connection("127.0.0.1", s.proxy.port)
            try:
                # (the connection stays open: the proxy answers what it has, or waits)
                writer.write(raw + body)
                await writer.drain()
                got = await asyncio.wait_for(reader.read(), 60)
            finally:
                writer.close()
            assert status(got) == 400, (name, got)
        assert not [seen for seen in s.upstream.seen if seen["method"] == "POST"]


S = SECRET.encode()
WIDE = SECRET.encode("utf-16-le")
FORMS = {
    "b64-utf16": base64.b64encode(WIDE),
    "b64-utf16-be": base64.b64encode(SECRET.encode("utf-16-be")),
    "hex-utf16": b"0x" + WIDE.hex().upper().encode(),
    "b64-b64": base64.b64encode(b'{"auth":"' + base64.b64encode(b"u:" + S) + b'"}'),
    "hex-b64": base64.b64encode(S).hex().encode(),
    "b64-hex": base64.b64encode(S.hex().encode()),
    "b64-reversed": base64.b64encode(S)[::-1],
    "uu": binascii.b2a_uu(S),
    "uu-backtick": binascii.b2a_uu(S, backtick=True),
    "rot13": codecs.encode(SECRET, "rot13").encode(),
    "node-buffer": json.dumps({"type": "Buffer", "data": list(S)}).encode(),
    "java-bytes": str(list(S)).encode(),
    "octal": "".join(f"\\{b:03o}" for b in S).encode(),
    "percent-u": "".join(f"%u{b:04x}" for b in S).encode(),
}
HELD = {
    "b64-offset": base64.b64encode(b"xy" + S),
    "b85": base64.b85encode(S),
    "qp": "".join(f"={b:02X}" for b in S).encode(),
    "html-hex": "".join(f"&#x{b:x};" for b in S).encode(),
}
# (ordinary answers holding numbers, base64 and escapes go as they came)
KEPT = {
    "numbers": json.dumps({"data": list(range(200))}).encode(),
    "b64-text": base64.b64encode(("an ordinary sentence " * 20).encode("utf-16-le")),
    "octal-text": "".join(f"\\{b:03o}" for b in b"plain words, nothing more").encode(),
}


async def _answers(tmp_path: Path, bodies: dict[str, bytes]) -> dict[str, bytes]:
    async def converse(reader: Any, writer: Any) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = b"echo: " + bodies[head.split(b" ")[1].decode().strip("/")] + b"\n"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()

    got = {}
    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for n, name in enumerate(bodies):
            # (a pii-reader: no mask, the guard alone reads the answer)
            bearer = token(s.config, f"pii{n}@example.com", ("readonly", "pii-readers"))
            got[name] = await exchange(
                s.proxy.port,
                f"GET /{name} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {bearer}\r\n"
                "Connection: close\r\n\r\n".encode(),
            )
    return got


async def test_the_credential_in_two_step_forms_is_cut(tmp_path: Path) -> None:
    got = await _answers(tmp_path, {**FORMS, **HELD, **KEPT})
    for name, sent in {**FORMS, **HELD}.items():
        assert status(got[name]) == 502, (name, got[name])
        assert sent not in got[name], name
    for name, sent in KEPT.items():
        assert status(got[name]) == 200, (name, got[name])
        assert sent in got[name], name
