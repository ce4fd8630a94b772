"""Probing the HTTP proxy's WebSocket masks (P30, helper webmask14): values split across
messages.

Real PDP with the shipped policy, the HTTP proxy, an aiohttp upstream (and a raw one, for
frames aiohttp does not write), aiohttp's client: a reader outside pii-readers (cards,
e-mails partly masked by the detectors) on a socket the connection declares read-only.
Each message towards a masked client was masked apart (websocket.MaskedFrames), so a
value the server sent in pieces went whole to a client putting the messages together (an
LLM's tokens over a WebSocket, OpenAI's Realtime `response.text.delta` events): `card 4111
1111`, then ` 1111 1111`; `write to bob`, then `@example.com`; four messages of a card's
groups. The messages are now also read as the pieces of one text, as an event stream's
events are (bodies.BodyMask.released): one whose end may go on as a value in the next is
held for it (at most HELD_SECONDS, 32 messages, 64 KiB: a client that waits for a message
before it sends again gets it late, not never), and a value found across them is masked
into the first, the others sent empty.

(Held already, pinned here: the frames of one fragmented message are masked as the one
message they are; a compressed frame (RSV1), which no extension negotiated through the
proxy allows, ends the socket; the client's offer of permessage-deflate does not reach
the upstream.)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from http_upstream import http_stack, raw_server
from test_http_probe_p5 import app_upstream, bearer

from portcullis.verdict import MaskRule
from proxies.http.bodies import masker_for
from proxies.http.websocket import HELD_SECONDS, MaskedFrames, _frame_bytes

pytestmark = pytest.mark.integration

CARD, MAIL = "4111 1111 1111 1111", "bob@example.com"


def _delta(text: str) -> str:
    return json.dumps({"type": "response.text.delta", "delta": text})


SENT = {
    "two": ["card 4111 1111", " 1111 1111 ok"],
    "groups": ["4111", " 1111", " 1111", " 1111"],
    "address": ["write to bob", "@example.com now"],
    "deltas": [_delta("my card 4111 11"), _delta("11 1111 1"), _delta("111 thanks")],
}


def _shown(case: str, got: list[str]) -> str:
    if case == "deltas":
        return "".join(json.loads(m)["delta"] for m in got)
    return "".join(got)


def _sending_app() -> web.Application:
    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.headers.get("Sec-WebSocket-Extensions") is None
        if request.query["case"] == "echo":
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await ws.send_str("echo: " + message.data)
            return ws
        for message in SENT[request.query["case"]]:
            await ws.send_str(message)
        await asyncio.sleep(0.2)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    return app


async def test_a_value_split_across_messages_is_masked(tmp_path: Path) -> None:
    got: dict[str, list[str]] = {}
    async with (
        app_upstream(_sending_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession() as client,
    ):
        for case in SENT:
            url = f"{s.url}/ws?case={case}"
            async with client.ws_connect(url, headers=bearer(s), compress=15) as ws:
                assert not ws.compress  # (the offer did not reach the upstream)
                got[case] = [m.data async for m in ws if m.type == WSMsgType.TEXT]
    for case, messages in got.items():
        shown = _shown(case, messages)
        assert len(messages) == len(SENT[case]), (case, messages)
        assert CARD not in shown and MAIL not in shown, (case, messages)
        assert "4111" not in shown and "bob@" not in shown, (case, messages)
    assert _shown("two", got["two"]).endswith("1111 ok")
    assert "@example.com now" in _shown("address", got["address"])


async def test_an_interactive_socket_answers_within_the_hold(tmp_path: Path) -> None:
    async with (
        app_upstream(_sending_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession() as client,
        client.ws_connect(f"{s.url}/ws?case=echo", headers=bearer(s)) as ws,
    ):
        answers = []
        for said in ("hello bob", "42", "thanks."):
            began = time.monotonic()
            await ws.send_str(said)
            message = await ws.receive(timeout=10)
            answers.append((message.data, time.monotonic() - began))
    assert [text for text, _ in answers] == ["echo: hello bob", "echo: 42", "echo: thanks."]
    assert all(took < HELD_SECONDS + 2 for _, took in answers), answers


async def _raw_socket(tmp_path: Path, frames: bytes) -> list[tuple[str, Any]]:
    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" + frames
        )
        await writer.drain()
        await asyncio.sleep(1)

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession() as client,
        client.ws_connect(f"{s.url}/ws", headers=bearer(s)) as ws,
    ):
        return [(m.type.name, m.data) async for m in ws]


async def test_fragments_are_one_message_and_compressed_frames_end_the_socket(
    tmp_path: Path,
) -> None:
    fragmented = bytes([0x01, 12]) + b"card 4111 11" + bytes([0x80, 12]) + b"11 1111 1111"
    got = await _raw_socket(tmp_path / "fragments", fragmented)
    assert got == [("TEXT", "card **** **** **** 1111")], got
    compressed = bytes([0xC1, 5]) + b"\x01\x02\x03\x04\x05"
    got = await _raw_socket(tmp_path / "compressed", fragmented + compressed)
    assert not any(CARD in str(data) or "4111" in str(data) for _, data in got), got
    assert "TEXT" not in [kind for kind, _ in got]


def test_held_messages_go_in_order_when_the_hold_runs_out() -> None:
    now = [0.0]
    frames = MaskedFrames(
        masker_for([MaskRule(detector="credit_card", strategy="partial")], b"k" * 32),
        clock=lambda: now[0],
    )
    assert frames.due() is None
    assert frames.feed(_frame_bytes(1, b"card 4111 1111")) == b""
    assert frames.due() == HELD_SECONDS
    now[0] = 0.1
    assert frames.feed(_frame_bytes(2, b" 1111 1111")) == b""
    assert frames.due() == pytest.approx(HELD_SECONDS - 0.1)
    now[0] = HELD_SECONDS
    out = frames.release()
    assert out == _frame_bytes(1, b"card **** **** **** 1111") + _frame_bytes(2, b"")
    assert frames.due() is None
    # (a message whose end goes on as no value goes at once; a close lets what is held go)
    assert frames.feed(_frame_bytes(1, b"total: 42 EUR!")) == _frame_bytes(1, b"total: 42 EUR!")
    held = frames.feed(_frame_bytes(1, b"4111 1111"))
    closing = frames.feed(_frame_bytes(8, b"\x03\xe8"))
    assert held == b"" and closing == _frame_bytes(1, b"4111 1111") + _frame_bytes(8, b"\x03\xe8")
