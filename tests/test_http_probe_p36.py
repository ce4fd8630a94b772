"""Probing the HTTP proxy's streams (P36, helper webmask19): a value split across the
records of a stream.

Real PDP with the shipped policy and the HTTP proxy before a raw upstream that streams
its answer as it goes, read by a reader outside pii-readers. Before the fix:

- a card number cut across the same string of two NDJSON lines or two JSON SSE events
  (`{"line": "card 4111 1111"}`, then `{"line": "1111 1111"}`: a log's tail, a feed a
  client shows line by line) came through whole to whoever read the lines together:
  each record was masked alone, and only an LLM's pieces of text were held for the next.
  Now a record whose string ends in digits (what a card's, an SSN's, an IBAN's groups
  may go on from) is held, and read with the same string of the records after it
  (bodies._doc_texts, at SHOWN places);
- so that a live stream is not kept waiting on a next record that may come in hours,
  what is held goes HELD_SECONDS after it came (BodyMask.due, forwarding._held_timed):
  the client has the first record while the upstream still waits for it to;
- a WebSocket's JSON messages so split (websocket.MaskedFrames reads its messages as
  events) came through whole too, and are now held and read together the same way.

What is read across records is only a value cut as a reader cuts one (values.cut_as_split:
a card's groups of one size, an SSN's 3|2|4), from a string more than a bare number: a
stream's ids, codes, times and references stay as they came.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from http_upstream import http_stack, raw_server, reader_get, unchunked
from streamed_answers import answering
from test_http_probe_p5 import app_upstream, bearer

from portcullis.verdict import MaskRule
from proxies.http.bodies import BodyMask, masker_for

FIRST = {"line": "card on file 4111 1111", "n": 1}
SECOND = {"line": "1111 1111 thanks", "n": 2}
SSN_FIRST = {"msg": "ssn 078-05"}
SSN_SECOND = {"msg": "1120 noted"}


def _ndjson(*docs: Mapping[str, object]) -> list[bytes]:
    return [json.dumps(d).encode() + b"\n" for d in docs]


def _sse(*docs: Mapping[str, object]) -> list[bytes]:
    return [b"data: " + json.dumps(d).encode() + b"\n\n" for d in docs]


@pytest.mark.parametrize(
    ("kind", "records"),
    [
        ("application/x-ndjson", _ndjson(FIRST, SECOND, SSN_FIRST, SSN_SECOND)),
        ("text/event-stream", _sse(FIRST, SECOND, SSN_FIRST, SSN_SECOND)),
    ],
)
@pytest.mark.integration
async def test_a_card_split_across_stream_records_is_masked(
    tmp_path: Path, kind: str, records: list[bytes]
) -> None:
    async with (
        raw_server(answering(kind, records)) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as stack,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.proxy.port)
        writer.write(reader_get(stack, 1, "GET /feed"))
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], answer
    text = unchunked(body).decode()
    shown = [json.loads(line.removeprefix("data: ")) for line in text.split("\n") if line]
    assert [doc.get("n") for doc in shown[:2]] == [1, 2], text
    digits = "".join(c for doc in shown for c in json.dumps(doc) if c.isdigit())
    assert "4111111111111111" not in digits and "11111111" not in digits, text
    assert "078051120" not in digits, text


@pytest.mark.integration
async def test_a_held_record_goes_while_the_stream_waits(tmp_path: Path) -> None:
    # the upstream sends the second record only once the client has the first (held
    # while it ends in digits): a proxy holding it for the next would wait forever
    shown = asyncio.Event()

    async def client_has_it(n: int) -> None:
        if n == 0:
            await shown.wait()

    records = _ndjson({"line": "order 1234"}, {"line": "done"})
    async with (
        raw_server(answering("application/x-ndjson", records, client_has_it)) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as stack,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.proxy.port)
        writer.write(reader_get(stack, 1, "GET /tail"))
        got = b""
        while b"order 1234" not in got:
            more = await asyncio.wait_for(reader.read(4096), 30)
            assert more, got
            got += more
        shown.set()
        got += await asyncio.wait_for(reader.read(), 30)
        writer.close()
    assert b'"done"' in unchunked(got.partition(b"\r\n\r\n")[2]), got


# -- a WebSocket's JSON messages (websocket.MaskedFrames reads them as events are)


def _json_sending_app() -> web.Application:
    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for doc in (FIRST, SECOND, SSN_FIRST, SSN_SECOND):
            await ws.send_str(json.dumps(doc))
        await asyncio.sleep(0.2)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    return app


@pytest.mark.integration
async def test_a_card_split_across_json_messages_is_masked(tmp_path: Path) -> None:
    async with (
        app_upstream(_json_sending_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession() as client,
        client.ws_connect(f"{s.url}/ws", headers=bearer(s)) as ws,
    ):
        got = [json.loads(m.data) async for m in ws if m.type == WSMsgType.TEXT]
    assert [doc.get("n") for doc in got[:2]] == [1, 2], got
    digits = "".join(c for doc in got for c in json.dumps(doc) if c.isdigit())
    assert "11111111" not in digits and "078051120" not in digits, got


def test_ordinary_records_are_not_read_as_a_split_value() -> None:
    # (one record after another holding ids, codes, times, references: none is a card's
    # piece, and each record comes as it was)
    masker = masker_for(
        [MaskRule(detector=d, strategy="partial") for d in ("credit_card", "ssn", "iban")],
        b"k" * 32,
    )
    rng = random.Random(36)
    streams = {
        "ids": [{"id": str(4000 + n)} for n in range(300)],
        "codes": [{"code": str(rng.randint(1000, 99999))} for _ in range(300)],
        "times": [{"ts": f"2024-01-01 10:{n // 60:02d}:{n % 60:02d}"} for n in range(300)],
        "refs": [{"ref": f"{rng.randint(100, 999)} {rng.randint(1000, 9999)}"} for _ in range(300)],
    }
    for name, docs in streams.items():
        mask = BodyMask(masker, "lines", media="application/x-ndjson")
        body = b"".join(json.dumps(d).encode() + b"\n" for d in docs)
        out = mask.feed(body) + mask.finish()
        assert not mask.counts, (name, mask.counts)
        assert [json.loads(line) for line in out.splitlines()] == docs, name
