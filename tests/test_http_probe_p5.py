"""Probing the HTTP proxy as a reader (brief P5): what got past a mask or the credential
guard, kept as tests.

Real PDP with the shipped policy (a reader's answers are masked), the HTTP proxy, and an
upstream of the test's own that answers exactly what each case needs; real clients
(aiohttp, raw sockets). Each test is one way around a guardrail that worked before its
fix:

- a reader's WebSocket messages from the upstream went past the field rules: a binary
  message that is not UTF-8 (MessagePack, CBOR, gzip-ed JSON) went as it came unless a
  detector found something in it read as Latin-1 (`phone`, `password`: no detector), a
  binary message of UTF-16 text was read with a NUL beside every letter, and a text
  message that is not one JSON document (socket.io's `42["row", {...}]`, `phone=...`)
  was read by the detectors alone. Under a mask a message is now read as an HTTP answer
  of text is (field rules and detectors, NULs refused), and binary that is not UTF-8 ends
  the socket (an allow-list, as an HTTP answer's binary body is withheld);
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from http_upstream import http_stack
from pdp_harness import free_port, token

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
HIDDEN = (b"hunter2", b"5550100", b"DE89370400440532013000")


def bearer(
    stack: Any, sub: str = "mallory@example.com", groups: tuple[str, ...] = ("readonly",)
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, sub, groups)}"}


@contextlib.asynccontextmanager
async def app_upstream(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


# what a socket's server sends a client, message by message (str: text, bytes: binary)
SOCKET_MESSAGES: dict[str, str | bytes] = {
    # MessagePack {"phone": "5550100"}: not UTF-8 (0x81), no detector finds a phone
    "msgpack": b"\x81\xa5phone\xa75550100",
    "utf-16 in binary": _utf16('{"password": "hunter2"}'),
    "socket.io event": '42["row",{"id":7,"phone":"5550100"}]',
    "pairs": "id=7&password=hunter2",
    "named by a value": json.dumps({"name": "iban", "value": "DE89370400440532013000"}),
}


@pytest.mark.parametrize("case", sorted(SOCKET_MESSAGES))
async def test_a_readers_websocket_message_is_masked_as_an_answer_is(tmp_path, case):
    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        message = SOCKET_MESSAGES[case]
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_str(message)
        await ws.send_str("done")
        await ws.receive()  # (until the client goes)
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    got: list[bytes] = []
    async with (
        app_upstream(app) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.ws_connect(s.url + "/ws", headers=bearer(s)) as ws,
    ):
        while True:
            message = await ws.receive(timeout=20)
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            data = message.data
            got.append(data.encode() if isinstance(data, str) else data)
            if data == "done":
                break
    for data in got:
        readable = data.replace(b"\x00", b"")
        assert not any(value in readable for value in HIDDEN), (case, got)
