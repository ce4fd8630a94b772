"""An experiment for `bench_wrk.py --prelude`: the HTTP proxy forwarding over bare streams.

Owns one measurement, not a design: what the proxy would gain if its upstream requests
went over a keep-alive pool of plain asyncio streams instead of aiohttp's ClientSession.
Patched into the proxy process before it starts (bench/http/profiled_proxy.py), it takes
over the proxy's `forward` (UpstreamExchange.forward in proxies/http/forwarding.py) for
body-less requests whose answer carries a Content-Length (the benchmark's GETs) and hands
relay_response an object with the few attributes it reads; anything else goes through
aiohttp as before. No chunked answers, no TLS, no upstream timeouts, no error handling
worth the name: a real change would parse responses with a sans-IO reader beside
proxies/http/codec.py. Never for production.

    python bench/http/bench_wrk.py --prelude bench/http/prelude_raw_upstream.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from multidict import CIMultiDict

from proxies.http.forwarding import UpstreamExchange

aiohttp_forward = UpstreamExchange.forward
IDLE: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}


class _Content:
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def iter_any(self) -> AsyncIterator[bytes]:
        yield self._body


class _Response:
    """What relay_response reads of an aiohttp ClientResponse."""

    def __init__(
        self,
        status: int,
        reason: str,
        raw_headers: tuple[tuple[bytes, bytes], ...],
        body: bytes,
        release: Any,
    ) -> None:
        self.status = status
        self.reason = reason
        self.raw_headers = raw_headers
        self.headers = CIMultiDict(
            (n.decode("latin-1"), v.decode("latin-1")) for n, v in raw_headers
        )
        self.content = _Content(body)
        self.release = release


async def forward(
    self: Any,
    request: Any,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    masking: bool = False,
) -> Any:
    payload = request.body if body is None else body
    if payload or request.head.method not in ("GET", "HEAD"):
        return await aiohttp_forward(self, request, body, headers, masking)
    url = self.upstream_url(request)
    sent = headers if headers is not None else self.upstream_headers(request)
    if masking:
        sent = [(n, v) for n, v in sent if n.lower() != "accept-encoding"]
        sent.append(("accept-encoding", "identity"))
    where = (url.host or "127.0.0.1", url.port or 80)
    idle = IDLE.setdefault(where, [])
    reader, writer = idle.pop() if idle else await asyncio.open_connection(*where)
    lines = [f"{request.head.method} {url.raw_path_qs} HTTP/1.1"]
    lines += [f"{n}: {v}" for n, v in sent]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *fields = head[:-4].split(b"\r\n")
    _, status, reason = [*status_line.split(b" ", 2), b""][:3]
    raw_headers = tuple(
        (name.strip().lower(), value.strip())
        for name, _, value in (field.partition(b":") for field in fields)
    )
    length = int(dict(raw_headers).get(b"content-length", b"0"))
    data = await reader.readexactly(length) if request.head.method != "HEAD" else b""
    return _Response(
        int(status), reason.decode("latin-1"), raw_headers, data,
        lambda: idle.append((reader, writer)),
    )  # fmt: skip


UpstreamExchange.forward = forward  # type: ignore[method-assign]
