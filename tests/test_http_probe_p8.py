"""Probing the HTTP proxy's credential guard and framing (brief P8): what carried the
upstream credential to the client in pieces, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, and an upstream of the test's own (an
aiohttp app echoing the key the proxy injected); a real client (aiohttp) that puts
together what it got. Each test is one way around a guardrail that worked before its fix:

- the upstream's key handed back in two pieces — the first half in one response header
  and the second in another, in a header and the body's start, or across a boundary of
  a chunked body (two writes of a streamed answer, re-chunked by the proxy) — reached
  the client: the guard searched the bytes on the wire, where a field's name, `: ` and
  CRLF, or a chunk's size line, stood between the pieces. It now reads the answer as a
  client does: the body de-chunked (the framing added after the guard), and the head's
  field values joined in order and on into the body, and any two of them (a value's
  end and another's start, or the body's) put together;
- and in two cookies (`session.0=<first half>; HttpOnly`, `session.1=<second half>`, as
  frameworks cut a large cookie into chunks): the pieces sat between a value's
  separators, not at its edges. The parts of a value between `;`, `,`, `=`, spaces,
  quotes, `&` and `<>` are now texts of the head too;
- and in two strings of a JSON array (`{"parts": ["s3cr3t-upstrea", "m-key-7f1c2e9a"]}`)
  or two cells of a CSV line: quotes, commas and spaces stood between the pieces. A text
  (no NUL in it) is now also read with only its letters and digits, for the raw, hex and
  base64 forms read so (Patterns.bare);
- and in two files of a zip archive (`env.1` ending with the first half, `env.2`
  beginning with the second): the guard read each file the archive holds alone. It now
  reads them one after another as one text; and of a tar archive (`.tar`, `.tar.gz`),
  which the guard did not open: a 512-byte header stood between the pieces. Tar
  archives are now opened as zip archives are (a download of known length is sniffed as
  far as a tar's mark, 262 bytes, before its head goes);
- and in two WebSocket messages (`key s3cr3t-upstre`, then `am-key-7f1c2e9a end`): a
  frame's header stood between the pieces on the wire. The server's data frames'
  payloads are now read as one text too (the client's application reads them so) before
  their frames go;
- and range by range: `Range: bytes=19-32` then `bytes=33-46` of a file holding the key
  (an `.env` served as static files are) gave two 206 answers of one half each, each
  passing the guard, which reads an answer alone. Range and If-Range no longer go
  upstream when the answer is checked for a credential: the answer is the whole file;
- and by `Request-Range`, which Apache httpd's byterange filter reads when there is no
  `Range` (for Netscape 2-3): it went upstream under a mask too, and a reader got the
  phone cut out of its field (`"+1 555 0100"`, 206), a pii-reader the key half by half.
  It is dropped wherever `Range` is;
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import os
import tarfile
import zipfile
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_upstream import SECRET, http_stack
from pdp_harness import token
from test_http_probe_p5 import app_upstream

from proxies.http import guard as guard_module
from proxies.http.guard import CredentialInResponse, ResponseGuard, secret_patterns
from proxies.runtime.exposure import ClientOutput

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=30)
PII = ("dba", "pii-readers")  # nothing of the answer masked: only the guard stands


def _spelled(key: str, spelling: str) -> str:
    if spelling == "base64":
        return base64.b64encode(key.encode()).decode()
    if spelling == "hex":
        return key.encode().hex()
    return key


def split_key_app() -> web.Application:
    """/split/<how>?spelling=raw|base64|hex: the X-Api-Key the proxy injected, handed back
    cut in two (`how`): two headers (in order, reversed, or three pieces), a header and
    the body's start (whole or streamed), the body's end and a header, or two writes of a
    chunked body."""

    async def split(request: web.Request) -> web.StreamResponse:
        key = _spelled(request.headers["X-Api-Key"], request.query.get("spelling", "raw"))
        first, second = key[: len(key) // 2], key[len(key) // 2 :]
        how = request.match_info["how"]
        if how == "two headers":
            return web.Response(text="ok", headers={"X-Part-1": first, "X-Part-2": second})
        if how == "two headers reversed":
            return web.Response(text="ok", headers={"X-Part-2": second, "X-Part-1": first})
        if how == "a header and the body":
            return web.Response(text=second + " end", headers={"X-Part-1": first})
        if how == "a header among others and the body":
            headers = {
                "X-Part-1": "id " + first,
                "X-Request-Id": "r-7",
                "Cache-Control": "no-store",
            }
            return web.Response(text=second + " end", headers=headers)
        if how == "a json array":
            return web.json_response({"parts": [first, second]})
        if how == "two csv cells":
            return web.Response(text=f"id,a,b\n7,{first},{second}\n", content_type="text/csv")
        if how == "two cookies":  # (as a framework cuts a large cookie into chunks)
            response = web.Response(text="ok")
            response.set_cookie("session.0", first, httponly=True)
            response.set_cookie("session.1", second, httponly=True)
            return response
        if how == "three headers":
            third = len(key) // 3
            parts = [key[:third], key[third : 2 * third], key[2 * third :]]
            return web.Response(text="ok", headers={f"X-Part-{n}": p for n, p in enumerate(parts)})
        if how == "the body and a header":
            return web.Response(text="start " + first, headers={"X-Part-2": second})
        if how == "a header and a streamed body":
            response = web.StreamResponse(headers={"X-Part-1": first})
            await response.prepare(request)
            await asyncio.sleep(0.2)
            await response.write(second[:3].encode())
            await asyncio.sleep(0.2)
            await response.write(second[3:].encode() + b" end")
            await response.write_eof()
            return response
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(b"x" * 100 + first.encode())
        await asyncio.sleep(0.2)  # (read by the proxy as a piece of its own)
        await response.write(second.encode() + b"y" * 100)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/split/{how}", split)
    return app


SPLITS = [
    ("two headers", "raw"),
    ("two headers", "base64"),
    ("two headers reversed", "raw"),
    ("three headers", "raw"),
    ("two cookies", "raw"),
    ("a json array", "raw"),
    ("a json array", "base64"),
    ("two csv cells", "hex"),
    ("a header and the body", "raw"),
    ("a header among others and the body", "hex"),
    ("the body and a header", "raw"),
    ("a header and a streamed body", "raw"),
    ("a chunked body", "raw"),
    ("a chunked body", "base64"),
]


async def _got(port: int, path: str, groups: tuple[str, ...], config: Any) -> tuple[int, str]:
    """(status, every header value and the body as a client reads them, joined) — 0 for an
    answer cut before its end."""
    bearer = token(config, "mallory@example.com", groups)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
        try:
            async with client.get(
                f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {bearer}"}
            ) as response:
                values = "".join(response.headers.values())
                body = await response.text()
                return response.status, values + body
        except aiohttp.ClientPayloadError as exc:
            return 0, str(exc)


@pytest.mark.parametrize(("how", "spelling"), SPLITS)
async def test_the_credential_handed_back_in_two_pieces_is_cut(
    tmp_path: Any, how: str, spelling: str
) -> None:
    async with (
        app_upstream(split_key_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        path = f"/split/{how.replace(' ', '%20')}?spelling={spelling}"
        code, got = await _got(s.proxy.port, path, PII, s.config)
    key = _spelled(SECRET, spelling)
    first, second = key[: len(key) // 2], key[len(key) // 2 :]
    assert first not in got or second not in got, (code, got[:400])
    assert code in (0, 502), (code, got[:400])


def test_a_head_ending_in_a_piece_of_the_credential_goes_with_a_body_that_does_not_end_it() -> None:
    # (sans-IO) the head waits for the body's first bytes, then goes with them, framed
    written: list[bytes] = []
    guard = ResponseGuard(ClientOutput(written.append), secret_patterns([SECRET]))
    # (8 bytes: a third of the key, 10, would be the credential alone: guard._Pieces)
    head = b"HTTP/1.1 200 OK\r\nX-Part-1: " + SECRET[:8].encode() + b"\r\n\r\n"
    guard.write_head(head, chunked=True)
    assert written == []
    guard.write(b"hello")
    guard.flush()
    assert b"".join(written) == head + b"5\r\nhello\r\n0\r\n\r\n"
    # and a body completing it is cut before any of the answer goes
    written.clear()
    guard = ResponseGuard(ClientOutput(written.append), secret_patterns([SECRET]))
    guard.write_head(head, chunked=True)
    with pytest.raises(CredentialInResponse):
        guard.write(SECRET[8:10].encode())
        guard.write(SECRET[10:].encode())
    assert written == []


def split_socket_app() -> web.Application:
    """/ws: the X-Api-Key of the upgrade handed back cut in two messages (or a message and
    the next one's start), then `done`."""

    async def socket(request: web.Request) -> web.WebSocketResponse:
        key = request.headers["X-Api-Key"]
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("key " + key[:14])
        await asyncio.sleep(0.2)  # (read by the proxy as data of its own)
        await ws.send_str(key[14:] + " end")
        await ws.send_str("done")
        await ws.receive()  # (until the client goes)
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    return app


async def test_the_credential_handed_back_in_two_socket_messages_is_cut(tmp_path: Any) -> None:
    got: list[str] = []
    async with (
        app_upstream(split_socket_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        bearer = {"Authorization": f"Bearer {token(s.config, 'mallory@example.com', PII)}"}
        async with client.ws_connect(s.url + "/ws", headers=bearer) as ws:
            while True:
                message = await ws.receive(timeout=20)
                if message.type is not aiohttp.WSMsgType.TEXT or message.data == "done":
                    break
                got.append(message.data)
    assert SECRET not in "".join(got).replace("key ", "").replace(" ", ""), got


def file_app(path: Any) -> web.Application:
    """/files/env.txt: a file holding the upstream's own key, served as static files are
    (Range honoured: 206 with the bytes asked for); the credential required."""

    async def env(request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Api-Key") != SECRET:
            return web.json_response({"error": "no credential"}, status=401)
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/files/env.txt", env)
    return app


async def test_the_credential_in_a_file_is_not_handed_over_range_by_range(tmp_path: Any) -> None:
    prefix = b"# settings\nAPI_KEY="
    (tmp_path / "env.txt").write_bytes(prefix + SECRET.encode() + b"\nDEBUG=0\n")
    start, half = len(prefix), len(SECRET) // 2
    ranges = [f"bytes={start}-{start + half - 1}", f"bytes={start + half}-{start + 2 * half}"]
    got = []
    async with (
        app_upstream(file_app(tmp_path / "env.txt")) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        bearer = f"Bearer {token(s.config, 'mallory@example.com', PII)}"
        for asked in ranges:
            headers = {"Authorization": bearer, "Range": asked}
            async with client.get(s.url + "/files/env.txt", headers=headers) as response:
                got.append((response.status, await response.read()))
    pieces = b"".join(body for _, body in got)
    assert SECRET[:half].encode() not in pieces or SECRET[half:].encode() not in pieces, got
    assert [status for status, _ in got] == [502, 502], got  # the whole file: the key in it


def apache_like_app(document: bytes) -> web.Application:
    """/doc: `document` served as Apache httpd serves a file: a range asked by `Range` or,
    when there is none, by `Request-Range` (byterange_filter.c, for Netscape 2-3) answered
    206 with those bytes only; the credential required."""

    async def doc(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != SECRET:
            return web.json_response({"error": "no credential"}, status=401)
        asked = request.headers.get("Range") or request.headers.get("Request-Range", "")
        if not asked.startswith("bytes="):
            return web.Response(body=document, content_type="application/json")
        start, end = (int(n) for n in asked[6:].split("-"))
        headers = {"Content-Range": f"bytes {start}-{end}/{len(document)}"}
        return web.Response(
            status=206,
            body=document[start : end + 1],
            content_type="application/json",
            headers=headers,
        )

    app = web.Application()
    app.router.add_get("/doc", doc)
    return app


async def test_a_request_range_cuts_nothing_out_of_an_answer(tmp_path: Any) -> None:
    phone = "+1 555 0100"
    document = json.dumps({"id": 7, "phone": phone, "key": SECRET}).encode()
    at = document.index(json.dumps(phone).encode())
    cut = f"bytes={at}-{at + len(json.dumps(phone)) - 1}"
    key_at, half = document.index(SECRET.encode()), len(SECRET) // 2
    halves = [
        f"bytes={key_at}-{key_at + half - 1}",
        f"bytes={key_at + half}-{key_at + len(SECRET) - 1}",
    ]
    got: dict[str, tuple[int, bytes]] = {}
    async with (
        app_upstream(apache_like_app(document)) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        asked = [("reader", ("readonly",), cut)] + [(h, PII, h) for h in halves]
        for name, groups, span in asked:
            bearer = f"Bearer {token(s.config, 'mallory@example.com', groups)}"
            headers = {"Authorization": bearer, "Request-Range": span}
            async with client.get(s.url + "/doc", headers=headers) as response:
                got[name] = (response.status, await response.read())
    # a reader's answer is the whole document, masked: not the phone cut out of its field
    assert phone.encode() not in got["reader"][1] and got["reader"][0] in (200, 502), got
    # a pii-reader's is the whole too, which holds the key: refused, not half by half
    pieces = b"".join(body for name, (_, body) in got.items() if name != "reader")
    assert SECRET[:half].encode() not in pieces or SECRET[half:].encode() not in pieces, got


def test_a_head_of_many_reflected_fields_is_read_in_one_pass_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (sans-IO) 200 values ending and beginning with a run of an escaped form of the key
    # (`\u00`), as an endpoint reflecting a client's headers answers: every two of them
    # were once searched together (40,000 searches, seconds of the event loop)
    searched = []
    search = guard_module._search

    def counted(*args: Any) -> None:
        searched.append(1)
        search(*args)

    monkeypatch.setattr(guard_module, "_search", counted)
    fields = b"".join(b"X-E%d: \\u00%d text \\u00\r\n" % (n, n) for n in range(200))
    guard = ResponseGuard(ClientOutput([].append), secret_patterns([f"Bearer {SECRET}"]))
    guard.answer(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n", b"ok")
    assert len(searched) < 20


def archive_app(archive: bytes) -> web.Application:
    """/export.zip: `archive` as a download (any archive: the proxy goes by its bytes);
    the credential required."""

    async def export(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != SECRET:
            return web.json_response({"error": "no credential"}, status=401)
        return web.Response(body=archive, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/export.zip", export)
    return app


def _archive(kind: str, files: dict[str, bytes]) -> bytes:
    packed = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in files.items():
                archive.writestr(name, content)
        return packed.getvalue()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(packed.getvalue()) if kind == "tar.gz" else packed.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar", "large tar"])
async def test_the_credential_cut_across_two_files_of_an_archive_is_cut(
    tmp_path: Any, kind: str
) -> None:
    half = len(SECRET) // 2
    files = {
        "readme.txt": b"settings\n",
        "env.1": b"API_KEY=" + SECRET[:half].encode(),
        "env.2": SECRET[half:].encode() + b"\n",
    }
    if kind == "large tar":  # (past what is checked whole before its head: streamed)
        files, kind = {"data.bin": os.urandom(300_000), **files}, "tar"
    async with (
        app_upstream(archive_app(_archive(kind, files))) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        bearer = f"Bearer {token(s.config, 'mallory@example.com', PII)}"
        async with client.get(s.url + "/export.zip", headers={"Authorization": bearer}) as response:
            code, got = response.status, await response.read()
    assert code == 502, (code, got[:300])
