"""A compressed answer is checked as what it says, not as the bytes it is sent in.

An upstream may answer `Content-Encoding: gzip` whatever the request asked (pre-compressed
files, a misbehaving API). The credential guard searches bytes, and a mask reads JSON: in
gzip the upstream's key and every sensitive field would pass both unseen. The proxy
undoes gzip and deflate (proxies/http/codings.py) and sends the decoded body on; a coding
it cannot undo is refused with 502. The same for WebSockets: the proxy offers no
extension upstream (permessage-deflate would compress frames past the guard) and ends a
WebSocket whose upstream picks one anyway. Real PDP (the shipped policy), the HTTP proxy,
an aiohttp upstream; clients curl, aiohttp and raw sockets.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import zlib
from typing import Any

import aiohttp
import pytest
from http_upstream import SECRET, encode_body, http_stack
from hypothesis import given, settings
from hypothesis import strategies as st
from pdp_harness import free_port, token

from proxies.http.codings import PIECE, ContentDecoder, Undecodable, codings, decode_whole

TIMEOUT = aiohttp.ClientTimeout(total=60)


def decoded(applied: list[str], data: bytes, step: int = 1000) -> bytes:
    decoder = ContentDecoder(applied)
    out = b""
    for start in range(0, len(data), step):
        out += b"".join(decoder.feed(data[start : start + step]))
    return out + b"".join(decoder.finish())


# -- the decoder, no IO ----------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "gzip-twice", "deflate", "raw-deflate"])
def test_every_coding_the_proxy_undoes_round_trips(coding):
    body = os.urandom(50_000) + b"z" * 100_000
    coded, named = encode_body(body, coding)
    assert decoded(codings([named]), coded) == body
    assert decoded(codings([named]), coded, step=1) == body


@given(st.binary(max_size=3000), st.integers(1, 700), st.sampled_from(["gzip", "deflate"]))
@settings(max_examples=60, deadline=None)
def test_any_body_in_any_chunking_decodes_to_itself(body, step, coding):
    coded, named = encode_body(body, coding)
    assert decoded([named], coded, step) == body


@pytest.mark.parametrize(
    "applied, data",
    [
        (["br"], b"\x0b\x02\x80hello\x03"),
        (["compress"], b"\x1f\x9d"),
        (["zstd"], b"(\xb5/\xfd"),
        (["gzip"], b"not gzip at all"),
        (["gzip"], gzip.compress(b"hello" * 100, mtime=0)[:-9]),  # cut short
        (["gzip"], gzip.compress(b"hello", mtime=0) + b"junk"),  # bytes after the member
        (["deflate"], zlib.compress(b"hello") + b"more"),
        (["deflate"], b"x"),
    ],
    ids=[
        "br",
        "compress",
        "zstd",
        "not-gzip",
        "gzip-cut-short",
        "gzip-junk-after",
        "deflate-junk-after",
        "deflate-cut",
    ],
)
def test_what_cannot_be_undone_is_refused(applied, data):
    with pytest.raises(Undecodable):
        decoded(applied, data)


def test_codings_are_read_from_every_field_last_applied_last():
    assert codings(["gzip, identity", " Deflate "]) == ["gzip", "deflate"]
    assert codings(["identity", ""]) == []


def test_a_bomb_is_decoded_a_bounded_piece_at_a_time():
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB from about 64 KiB
    decoder = ContentDecoder(["gzip"])
    largest = max(len(p) for p in decoder.feed(bomb))
    assert largest <= PIECE
    assert len(decode_whole(["gzip"], bomb, 1000)) == 1001


# -- through the proxy -----------------------------------------------------------------


def bearer(stack: Any, groups: tuple[str, ...] = ("readonly",)) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, 'ann@example.com', groups)}"}


async def fetch(stack: Any, path: str, groups: tuple[str, ...] = ("readonly",)) -> bytes:
    """Raw bytes of the proxy's answer (the head and whatever body came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.proxy.port)
    auth = bearer(stack, groups)["Authorization"]
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        "Accept-Encoding: gzip, deflate, br\r\nConnection: close\r\n\r\n".encode()
    )
    out = b""
    while chunk := await asyncio.wait_for(reader.read(1 << 16), 30):
        out += chunk
    writer.close()
    return out


def leaked(answer: bytes) -> bool:
    """The credential anywhere in the answer, in the clear or in any coding it carries."""
    if SECRET.encode() in answer:
        return True
    body = answer.partition(b"\r\n\r\n")[2]
    for start in range(len(body)):
        for wbits in (31, 15, -15):
            try:
                plain = zlib.decompressobj(wbits=wbits).decompress(body[start:])
            except zlib.error:
                continue
            if SECRET.encode() in plain:
                return True
        if start > 64:
            break
    return False


LEAKS = [
    "/coded/leak?coding=gzip",
    "/coded/leak?coding=x-gzip",
    "/coded/leak?coding=deflate",
    "/coded/leak?coding=raw-deflate",
    "/coded/leak?coding=gzip-twice",
    "/coded/leak?coding=gzip&chunked=1",
    "/coded/leak?coding=gzip&pad=400000",  # compressed beyond the whole-body bound
    "/coded/leak?coding=deflate&pad=400000&chunked=1",
    "/coded/leak?coding=br",
]


@pytest.mark.integration
async def test_the_credential_in_a_compressed_answer_never_reaches_the_client(tmp_path):
    async with http_stack(tmp_path) as s:
        answers = {path: await fetch(s, path) for path in LEAKS}
        curl = await asyncio.to_thread(
            subprocess.run,
            ["curl", "-s", "--compressed", "-H", _auth(s), s.url + "/coded/leak?coding=gzip"],
            capture_output=True,
            timeout=60,
        )
        plain = await fetch(s, "/coded/plain?coding=gzip&pad=100")
    for path, answer in answers.items():
        assert not leaked(answer), path
        if "pad" not in path and "chunked" not in path:
            assert answer.startswith(b"HTTP/1.1 502"), path  # refused before its head
    assert SECRET.encode() not in curl.stdout
    # a compressed answer without the secret goes on, decoded
    head, _, body = plain.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-encoding" not in head.lower()
    assert body.endswith(b"x" * 5000 + b"y")


@pytest.mark.integration
async def test_a_compressed_json_answer_is_masked(tmp_path):
    async with http_stack(tmp_path) as s:
        plain = await fetch(s, "/v1/invoices/7")
        coded = await fetch(s, "/coded/invoice?coding=gzip")
        streamed = await fetch(s, "/coded/invoice?coding=deflate&chunked=1")
    assert b"ann@example.com" not in plain  # the shipped policy masks a reader's invoices
    for answer in (coded, streamed):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"content-encoding" not in head.lower()
        if b"transfer-encoding: chunked" in head.lower():
            body = b"".join(_chunks(body))
        document = json.loads(body)
        assert "ann@example.com" not in json.dumps(document)
        assert document["id"] == 7


def _chunks(body: bytes) -> list[bytes]:
    out = []
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out.append(body[:size])
        body = body[size + 2 :]
    return out


@pytest.mark.integration
async def test_no_websocket_extension_is_negotiated_through_the_proxy(tmp_path):
    async with http_stack(tmp_path) as s:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            client.ws_connect(s.url + "/ws", headers=bearer(s), compress=15) as ws,
        ):
            assert ws.compress == 0  # asked for permessage-deflate, got none
            await ws.send_str("hello")
            assert (await ws.receive_str()) == "echo: hello"
        upgrade = [r for r in s.upstream.seen if r["raw_path"] == "/ws"][-1]
        names = {name.lower() for name, _ in upgrade["headers"]}
    assert b"sec-websocket-extensions" not in names


@pytest.mark.integration
async def test_an_upstream_that_picks_an_extension_anyway_is_refused(tmp_path):
    """An upstream answering 101 with permessage-deflate that was never offered, then a
    compressed (RSV1) frame carrying the credential: the client gets a 502 and no frame."""
    frame_payload = zlib.compressobj(wbits=-15)
    payload = frame_payload.compress(SECRET.encode()) + frame_payload.flush(zlib.Z_SYNC_FLUSH)
    frame = bytes([0xC1, len(payload)]) + payload  # FIN, RSV1, text

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: x\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            + frame
        )
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    port = free_port()
    server = await asyncio.start_server(upstream, "127.0.0.1", port)
    try:
        async with http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.proxy.port)
            writer.write(
                (
                    f"GET /ws HTTP/1.1\r\nHost: x\r\n{_auth(s)}\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                ).encode()
            )
            answer = b""
            try:
                while chunk := await asyncio.wait_for(reader.read(1 << 16), 5):
                    answer += chunk
            except TimeoutError:
                pass
            writer.close()
    finally:
        server.close()
    assert answer.startswith(b"HTTP/1.1 502"), answer[:200]
    assert payload not in answer and not leaked(answer)


def _auth(stack: Any) -> str:
    return "Authorization: " + bearer(stack)["Authorization"]
