"""A real upstream for the HTTP proxy's tests (an aiohttp app) and a running proxy before it.

The app answers what the tests ask of an API: JSON with fields named like sensitive
columns, NDJSON and SSE streams, a large download, a WebSocket echo, an echo of what it
received (minus the credential: a real API does not hand its own key back) and, on
purpose, an endpoint that does hand the credential back (`/leak`), to prove the proxy
cuts it. It refuses every request that lacks the upstream credential, so a test sees
that the proxy injected it. `seen` keeps every request as the upstream got it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from pdp_harness import free_port, pdp_raw, running_pdp, token

from portcullis.config import parse_config
from proxies.http.proxy import HttpProxy
from proxies.launcher import handed_credential

SECRET = "s3cr3t-upstream-key-7f1c2e9a"
CREDENTIAL = {"provider": "static", "header": "X-Api-Key", "value": SECRET}
INVOICE = {
    "id": 7,
    "email": "ann@example.com",
    "customer": {"name": "Ann", "card_number": "4111 1111 1111 1111", "phone": "+1 555 0100"},
    "note": "paid by ann@example.com",
    "items": [{"sku": "a", "token": "tok_live_abcdef0123456789"}],
}


@dataclass
class Upstream:
    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)
    key_header: str = "X-Api-Key"
    key_query: str = ""
    # /gated sends half its body, then waits for this: a client that has the first half
    # before it is set proves the proxy did not hold the body whole
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    # how the credential is checked (default: equal to SECRET), e.g. a Vault token lookup
    accept: Callable[[str], bool] | None = None


def upstream_app(up: Upstream) -> web.Application:
    @web.middleware
    async def credential(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        up.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": list(request.raw_headers),
                "body": body,
            }
        )
        given = (
            request.query.get(up.key_query) if up.key_query else request.headers.get(up.key_header)
        )
        if not (up.accept(given or "") if up.accept else given == SECRET):
            return web.json_response({"error": "no credential"}, status=401)
        return await handler(request)

    async def invoice(request: web.Request) -> web.Response:
        return web.json_response({**INVOICE, "id": request.match_info["id"]})

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != up.key_header.lower()}
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path.replace(SECRET, "KEY"),
                "headers": headers,
                "body": body.decode("utf-8", "replace"),
            }
        )

    async def leak(request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000 + SECRET + "y" * 10, content_type="text/plain")

    async def ndjson(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for n in range(3):
            line = json.dumps({"n": n, "email": f"user{n}@example.com", "ok": True})
            await response.write(line.encode() + b"\n")
        await response.write_eof()
        return response

    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n in range(3):
            data = json.dumps({"n": n, "ssn": "123-45-6789", "text": "mail ann@example.com"})
            await response.write(f"id: {n}\nevent: tick\ndata: {data}\n\n".encode())
        await response.write(b"data: plain card 4111 1111 1111 1111\n\n")
        await response.write_eof()
        return response

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("mb", "4")) * 1024 * 1024
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        block = bytes(range(256)) * 256
        for _ in range(size // len(block)):
            await response.write(block)
        await response.write_eof()
        return response

    async def gated(request: web.Request) -> web.StreamResponse:
        kind = request.query.get("type", "application/octet-stream")
        response = web.StreamResponse(headers={"Content-Type": kind})
        await response.prepare(request)
        if kind == "text/event-stream":
            await response.write(b'data: {"email": "ann@example.com"}\n\n')
        else:
            await response.write(b"a" * 300_000)
        await up.gate.wait()
        await response.write(b'data: {"n": 2}\n\n' if kind == "text/event-stream" else b"b" * 10)
        await response.write_eof()
        return response

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<p>ann@example.com</p>", content_type="text/html")

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str("echo: " + message.data)
        return ws

    async def coded(request: web.Request) -> web.StreamResponse:
        # compressed whatever the request's Accept-Encoding says (as a server handing out
        # pre-compressed files does): ?what=leak|invoice|plain, ?coding=gzip|x-gzip|
        # deflate|raw-deflate|gzip-twice|br, ?pad=N bytes of noise first, ?chunked=1
        what = request.match_info["what"]
        pad = os.urandom(int(request.query.get("pad", "0"))).hex()
        if what == "invoice":
            body = json.dumps({**INVOICE, "pad": pad}).encode()
            kind = "application/json"
        else:
            body = (pad + ("x" * 5000) + (SECRET if what == "leak" else "") + "y").encode()
            kind = "text/plain"
        coding = request.query.get("coding", "gzip")
        coded, named = encode_body(body, coding)
        headers = {"Content-Type": kind, "Content-Encoding": named}
        if request.query.get("chunked"):
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            for start in range(0, len(coded), 4096):
                await response.write(coded[start : start + 4096])
            await response.write_eof()
            return response
        return web.Response(body=coded, headers=headers)

    async def represented(request: web.Request) -> web.Response:
        # the invoice in another representation than JSON: ?type=text/csv&charset=utf-16
        kind = request.query.get("type", "text/plain")
        charset = request.query.get("charset", "utf-8")
        card = INVOICE["customer"]["card_number"]  # type: ignore[index]
        text = f"id,email,card\n7,{INVOICE['email']},{card}\n<td>ssn 123-45-6789</td>\n"
        return web.Response(
            body=text.encode(charset), headers={"Content-Type": f"{kind}; charset={charset}"}
        )

    app = web.Application(middlewares=[credential], client_max_size=16 * 1024 * 1024)
    app.router.add_get("/coded/{what}", coded)
    app.router.add_get("/represented", represented)
    app.router.add_route("*", "/v1/invoices/{id}", invoice)
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_get("/leak", leak)
    app.router.add_get("/stream/ndjson", ndjson)
    app.router.add_get("/stream/sse", sse)
    app.router.add_get("/download", download)
    app.router.add_get("/page", html)
    app.router.add_get("/gated", gated)
    app.router.add_get("/ws", websocket)
    return app


def encode_body(body: bytes, coding: str) -> tuple[bytes, str]:
    """(body in `coding`, the Content-Encoding value naming it); `br` is not brotli but
    bytes labelled so (the proxy refuses the coding before reading a byte)."""
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(body), coding
    if coding == "gzip-twice":  # two members (RFC 1952 §2.2), then gzipped again
        half = len(body) // 2
        return gzip.compress(gzip.compress(body[:half]) + gzip.compress(body[half:])), "gzip, gzip"
    if coding == "deflate":
        return zlib.compress(body), "deflate"
    if coding == "raw-deflate":
        packer = zlib.compressobj(wbits=-15)
        return packer.compress(body) + packer.flush(), "deflate"
    return body, coding


@contextlib.asynccontextmanager
async def running_upstream(
    tls: ssl.SSLContext | None = None, **kwargs: Any
) -> AsyncIterator[Upstream]:
    up = Upstream(free_port(), **kwargs)
    runner = web.AppRunner(upstream_app(up))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", up.port, ssl_context=tls)
    await site.start()
    try:
        yield up
    finally:
        await runner.cleanup()


# The test app's WebSocket /ws only echoes: declared read-only, a reader opens it without
# approval (rego/portcullis/http.rego; labels={} to leave it undeclared)
READ_ONLY_SOCKETS = {"websocket_read_only_paths": "/ws"}


def http_connection(upstream: str, name: str = "billing-api", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "http",
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": upstream,
        "credentials": extra.pop("credentials", CREDENTIAL),
        "labels": extra.pop("labels", READ_ONLY_SOCKETS),
        **extra,
    }


@dataclass
class Stack:
    pdp: Any
    proxy: HttpProxy
    upstream: Upstream
    config: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"


@contextlib.asynccontextmanager
async def http_stack(
    tmp_path: Any,
    upstream_kwargs: dict[str, Any] | None = None,
    upstream_tls: ssl.SSLContext | None = None,
    pdp_extra: dict[str, Any] | None = None,
    pdp_http: bool = False,
    **options: Any,
) -> AsyncIterator[Stack]:
    """A real PDP (the shipped policy), the upstream app, and the proxy before it."""
    async with running_upstream(upstream_tls, **(upstream_kwargs or {})) as up:
        options.setdefault("spool_dir", str(tmp_path / "spool"))
        scheme, host = ("https", "localhost") if upstream_tls else ("http", "127.0.0.1")
        # (upstream_url: another upstream than the app, e.g. a raw server of a test's own)
        url = options.pop("upstream_url", None) or f"{scheme}://{host}:{up.port}"
        connection = http_connection(url, **options)
        raw = pdp_raw(
            tmp_path,
            connections=[connection],
            approvals={"timeout_seconds": 30},
            **(pdp_extra or {}),
        )
        if pdp_http:  # the PDP's HTTP API (approvals, health) on a port of its own
            raw["pdp"]["http_listen"] = f"127.0.0.1:{free_port()}"
        config = parse_config(raw, base_dir=tmp_path)
        async with running_pdp(config) as pdp:
            served = handed_credential(config, connection["name"], pdp.issue_proxy_credential)
            proxy = HttpProxy(served.connections[0], served, pdp.address)
            await proxy.start()
            try:
                yield Stack(pdp, proxy, up, config)
            finally:
                await proxy.stop()
                await asyncio.sleep(0)


Conversation = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(converse: Conversation) -> AsyncIterator[int]:
    """A TCP server on a free local port whose every connection is `converse`d with, byte by
    byte as a test writes it: a connection that ends mid-read is over, and each is closed
    after. Yields the port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await converse(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def exchange(port: int, data: bytes) -> bytes:
    """What the proxy answers to `data` sent whole on a new connection (it is closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


def request(
    stack: Any,
    line: str,
    fields: str = "",
    body: bytes = b"",
    groups: tuple[str, ...] = ("readonly",),
    host: str = "127.0.0.1",
) -> bytes:
    """A raw HTTP/1.1 request of mallory (in `groups`) to the stack's proxy: `line`, the
    Host and bearer token, `fields` as written, a Content-Length for `body`, and
    Connection: close."""
    bearer = token(stack.config, "mallory@example.com", groups)
    head = f"{line}\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\n{fields}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "Connection: close\r\n\r\n").encode("latin-1") + body


def status(answer: bytes) -> int:
    """The status code of a raw answer's status line."""
    return int(answer.split(b" ", 2)[1])


Cases = dict[str, tuple[str, str]]  # path -> (Content-Type, body)


def canned_server(cases: Cases, piece: int = 0) -> contextlib.AbstractAsyncContextManager[int]:
    """A raw upstream answering `GET /<path>` with that case's Content-Type and body: whole
    with a Content-Length, or (piece > 0) chunked in pieces of that many bytes, each
    written on its own as a stream's would be. Yields the port."""

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        kind, body = cases[head.split(b" ")[1].decode().strip("/")]
        data = body.encode()
        if not piece:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (kind.encode(), len(data), data)
            )
            await writer.drain()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
            % kind.encode()
        )
        for at in range(0, len(data), piece):
            chunk = data[at : at + piece]
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return raw_server(converse)


def reader_get(stack: Any, n: int, line: str) -> bytes:
    """`line` as reader number n (one reader each: a session whose answers keep being
    refused is ended), with Connection: close."""
    bearer = token(stack.config, f"reader{n}@example.com", ("readonly",))
    return (
        f"{line} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bearer}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


async def read_cases(tmp: Any, cases: Cases, piece: int = 0) -> dict[str, tuple[int, bytes]]:
    """Each case of canned_server(cases, piece) read through an HTTP stack's proxy by a
    reader of its own: its status and body (a chunked one put together)."""
    got = {}
    async with (
        canned_server(cases, piece) as port,
        http_stack(tmp, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for n, path in enumerate(cases):
            answer = await exchange(s.proxy.port, reader_get(s, n, f"GET /{path}"))
            head, _, body = answer.partition(b"\r\n\r\n")
            chunked = b"transfer-encoding: chunked" in head.lower()
            got[path] = (status(answer), unchunked(body) if chunked else body)
    return got


def unchunked(body: bytes) -> bytes:
    """A chunked body's data, put together (trailers dropped)."""
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, body = out + rest[:n], rest[n + 2 :]
    return out
