"""One client connection to the HTTP proxy, request after request: what the proxy keeps
between a connection's requests never carries one token's rights to another, and a
connection that stops sending is closed without an answer and without anything
forwarded (the read deadline, one timer per connection: proxies/http/proxy.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_upstream import http_stack
from pdp_harness import token

from proxies.http import proxy as http_proxy

pytestmark = pytest.mark.integration


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response of a kept-alive connection: its status and body (Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        (int(ln.split(":", 1)[1]) for ln in lines if ln.lower().startswith("content-length:")), 0
    )
    return int(lines[0].split(" ")[1]), await reader.readexactly(length)


def request(target: str, authorization: str = "") -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()


async def test_each_request_is_decided_under_its_own_token_on_one_connection(tmp_path):
    """A connection keeps its last token's session to find it again cheaply: another
    token on the same connection is a session of its own, a bad or an outsider's token
    is refused, and the first token's session is found again after them."""
    async with http_stack(tmp_path) as s:
        ann = f"Bearer {token(s.config, 'ann@example.com', ('readonly',))}"
        bob = f"Bearer {token(s.config, 'bob@example.com', ('readonly',))}"
        eve = f"Bearer {token(s.config, 'eve@example.com', ('marketing',))}"
        reader, writer = await asyncio.open_connection("127.0.0.1", s.proxy.port)
        statuses = []
        for target, authorization in (
            ("/echo?n=1", ann),
            ("/echo?n=2", bob),
            ("/echo?n=3", "Bearer nope"),
            ("/echo?n=4", eve),
            ("/echo?n=5", ""),
            ("/echo?n=6", ann),
        ):
            writer.write(request(target, authorization))
            statuses.append((await answer(reader))[0])
        writer.close()
        found = await s.pdp.store.query(kind="decision")
        decided = {
            d.body["raw"].split(" ")[1]: d.body["subject"]
            for d in found
            if d.body.get("kind") == "http.request"
        }
        forwarded = [r["raw_path"] for r in s.upstream.seen]
    assert statuses == [200, 200, 401, 403, 401, 200]
    assert decided == {
        "/echo?n=1": "ann@example.com",
        "/echo?n=2": "bob@example.com",
        "/echo?n=6": "ann@example.com",
    }
    assert forwarded == ["/echo?n=1", "/echo?n=2", "/echo?n=6"]


async def closed_without_answer(reader: asyncio.StreamReader) -> bytes:
    """What the proxy sends before it closes the connection (the guard: 30 s)."""
    return await asyncio.wait_for(reader.read(), 30)


async def test_a_stalled_head_or_body_ends_the_connection_unanswered(tmp_path, monkeypatch):
    monkeypatch.setattr(http_proxy, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(http_proxy, "BODY_TIMEOUT", 0.3)
    async with http_stack(tmp_path) as s:
        ann = f"Bearer {token(s.config, 'ann@example.com', ('readonly',))}"
        # half a head, then nothing
        reader, writer = await asyncio.open_connection("127.0.0.1", s.proxy.port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        half_head = await closed_without_answer(reader)
        writer.close()
        # a whole head whose body never comes
        reader, writer = await asyncio.open_connection("127.0.0.1", s.proxy.port)
        writer.write(
            f"POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: {ann}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{}".encode()
        )
        half_body = await closed_without_answer(reader)
        writer.close()
        # a kept-alive connection answered, then idle: closed after the head deadline,
        # and a request on a connection that stays busy is not cut by an earlier deadline
        reader, writer = await asyncio.open_connection("127.0.0.1", s.proxy.port)
        statuses: list[Any] = []
        for n in range(3):
            writer.write(request(f"/echo?n={n}", ann))
            statuses.append((await answer(reader))[0])
            await asyncio.sleep(0.2)  # within the deadline each time, past it in sum
        idle = await closed_without_answer(reader)
        writer.close()
        forwarded = [r["raw_path"] for r in s.upstream.seen]
    assert half_head == b"" and half_body == b""
    assert statuses == [200, 200, 200] and idle == b""
    assert forwarded == ["/echo?n=0", "/echo?n=1", "/echo?n=2"]
