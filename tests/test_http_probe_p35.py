"""Probing the HTTP proxy's masks (P35, helper webmask16): a large answer masked on the
event loop every session shares.

Real PDP with the shipped policy, the HTTP proxy, a raw upstream, raw clients: readers
outside pii-readers (`phone` masked). Before the fix:

- a JSON answer of a few megabytes (a listing of 20,000 customers: 2.8 MB, under the
  8 MiB the proxy masks whole) was masked on the proxy's event loop, in one call: for
  the 20 seconds it took, no other request of any session was read, decided or
  answered (another reader's one-line answer waited 19.6 s), the PDP heartbeats were
  late, and a reader asking for that listing again and again held the proxy for
  everyone. So did a long text stream, masked a read of the upstream at a time (128
  KiB of CSV: over a second each). A document of 16 KiB or more, and each piece of a
  stream that long, is masked in a thread now (forwarding._masked,
  MASKED_IN_THREAD): other requests are served meanwhile.

The test holds the masking of a large answer until another reader's request has been
answered through the same proxy (bounded: on the loop, the hold would stall that request,
and it gives up after a minute); the large answer then goes, masked.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from http_upstream import exchange, http_stack, raw_server, reader_get, status

from proxies.http import bodies

pytestmark = pytest.mark.integration

ROWS = [{"id": n, "name": f"Customer {n}", "phone": f"555{n:04d}"} for n in range(4000)]
LISTING = json.dumps({"rows": ROWS}).encode()
SMALL = b'{"ok": true}'


def _answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


async def test_other_requests_are_answered_while_a_large_answer_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, served = threading.Event(), threading.Event()
    seen: list[bool] = []
    feed, finish = bodies.BodyMask.feed, bodies.BodyMask.finish
    fed: dict[int, int] = {}

    def counted(self: Any, data: bytes) -> bytes:
        fed[id(self)] = fed.get(id(self), 0) + len(data)
        return feed(self, data)

    def held(self: Any) -> bytes:
        # (the listing's mask alone: a header's value is masked by a BodyMask too)
        if fed.get(id(self), 0) >= len(LISTING) and not entered.is_set():
            entered.set()
            # (the other reader's request is answered meanwhile, or this gives up)
            seen.append(served.wait(60))
        return finish(self)

    monkeypatch.setattr(bodies.BodyMask, "feed", counted)
    monkeypatch.setattr(bodies.BodyMask, "finish", held)

    async def converse(reader: Any, writer: Any) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(_answer(LISTING if b" /customers " in head else SMALL))
        await writer.drain()

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        large = asyncio.ensure_future(exchange(s.proxy.port, reader_get(s, 0, "GET /customers")))
        assert await asyncio.to_thread(entered.wait, 120)
        other = await exchange(s.proxy.port, reader_get(s, 1, "GET /status"))
        served.set()
        got = await large
    assert status(other) == 200 and other.endswith(b'{"ok":true}'), other
    assert seen == [True]
    assert status(got) == 200, got[:300]
    rows = json.loads(got.partition(b"\r\n\r\n")[2])["rows"]
    assert len(rows) == len(ROWS) and {r["phone"] for r in rows} == {"[REDACTED]"}
