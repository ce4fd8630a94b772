"""Probing the HTTP proxy's masks (P29, helper webmask13): what P28 left of values in
pieces, a body-describing parameter, and bare numbers in JSON arrays.

Real PDP with the shipped policy, the HTTP proxy, a raw upstream (chunked in pieces as a
stream comes, or whole), a raw client: a reader outside pii-readers (the detectors:
cards, e-mails, SSNs partly masked). Before the fixes:

- data as text in an event stream (`data: bob`, `data: @example.com`): only digits or a
  word holding an `@` were held for the next event, so an address split before its `@`
  showed its first part; what may start a value (a word) is now held too, within the
  same bounds (bodies._released);
- a value split by a newline: within one event's `data:` lines (SSE joins them with a
  newline: `data: 4111 1111` / `data: 1111 1111`) or across the lines of a text body
  (`4111 1111\\n1111 1111`) went whole; the lines are now read joined too;
- `Content-Disposition: attachment; filename=...; size=49` told the unmasked size of a
  masked answer: its `size` parameter is now dropped (messages.undescribed_headers);
- (held already, pinned here) a JSON array of bare numbers: a card number among them
  (Luhn-valid, 13-19 digits, as an integer, a float, in NDJSON or an event's data) is
  masked by the detectors, which read numbers as they read text; a phone-shaped number
  (`[5550100, 4155550100]`) goes as it came, as a list of ids does: seven to fifteen
  digits are an id's as well, and the detectors read no phone number in bare digits in
  text either (a field rule masks it by its name, a lone answer as an unnamed cell);
  a card split across HTTP/1.1 chunks, or across gzip-compressed chunks, of a text body.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from http_upstream import (
    exchange,
    http_stack,
    raw_server,
    read_cases,
    reader_get,
    status,
    unchunked,
)

pytestmark = pytest.mark.integration

CARD, MAIL, SSN = "4111 1111 1111 1111", "bob@example.com", "078-05-1120"

CASES = {
    # (data as text: each event a piece the client puts together)
    "sse-word": ("text/event-stream", "data: write to bob\n\ndata: @example.com now\n\n"),
    "sse-lines": ("text/event-stream", "data: card 4111 1111\ndata: 1111 1111 ok\n\n"),
    "text-lines": ("text/plain", "card 4111 1111\n1111 1111 ok\n"),
    "text-column": ("text/plain", "4111\n1111\n1111\n1111"),  # (no newline at its end)
    "sse-unended": ("text/event-stream", "data: to bob\n\ndata: @example.com"),
}
KEPT = {
    "sse-feed": ("text/event-stream", "data: hello there\n\ndata: 42 apples\n\n"),
    "text-plain": ("text/plain", "order 17\n42 apples\n"),
}


def _shown(path: str, body: str) -> str:
    """What a client shows: an event stream's data put together, a text as it is."""
    if not path.startswith("sse"):
        return body
    events = [e for e in body.split("\n\n") if e]
    datas = ["\n".join(ln[6:] for ln in e.split("\n") if ln.startswith("data: ")) for e in events]
    return "".join(datas)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("piece", [0, 7])
async def test_values_split_by_words_and_newlines_are_masked(tmp_path: Path, piece: int) -> None:
    got = await read_cases(tmp_path, {**CASES, **KEPT}, piece=piece)
    assert {p: code for p, (code, _) in got.items()} == {p: 200 for p in {**CASES, **KEPT}}
    for path in CASES:
        shown = _shown(path, got[path][1].decode())
        for value in (CARD, MAIL, SSN, "bob@", "write to bob"):
            assert value not in _flat(shown), (path, shown)
        assert "1111" in shown or "@example.com" in shown or "1120" in shown, (path, shown)
    for path, (_, body) in KEPT.items():
        assert got[path][1].decode() == body


async def _raw_answer(tmp_path: Path, head: bytes, body: bytes, line: str = "GET /f") -> bytes:
    async def converse(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + body)
        await writer.drain()

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        return await exchange(s.proxy.port, reader_get(s, 0, line))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_content_disposition_size_is_dropped_on_masked_answers(
    tmp_path: Path, method: str
) -> None:
    body = b"my card 4111 1111 1111 1111 ok\n"
    head = (
        b"Content-Type: text/plain\r\nContent-Length: %d\r\n"
        b'Content-Disposition: attachment; filename="card.txt"; size=%d;'
        b' modification-date="Wed, 12 Feb 1997 16:29:51 -0500"\r\n' % (len(body), len(body))
    )
    answer = await _raw_answer(tmp_path, head, body, f"{method} /f")
    assert status(answer) == 200
    headers, _, shown = answer.partition(b"\r\n\r\n")
    lowered = headers.lower()
    assert b"content-disposition: attachment" in lowered, headers
    assert b'filename="card.txt"' in lowered, headers
    assert b"size" not in lowered.split(b"content-disposition:")[1].split(b"\r\n")[0], headers
    if method == "GET":
        assert CARD.encode() not in shown and b"1111" in shown, shown


async def test_card_numbers_in_arrays_of_numbers_are_masked_ids_kept(tmp_path: Path) -> None:
    cases = {
        "cards": ("application/json", json.dumps([4111111111111111, 5500000000000004])),
        "nested": ("application/json", json.dumps({"rows": [[7, 4111111111111111]]})),
        "ids": ("application/json", json.dumps([17, 42, 1001, 123456789012])),
        "phones": ("application/json", json.dumps([5550100, 4155550100])),
        "floats": ("application/json", "[4111111111111111.0, 4.111111111111111e15]"),
        "ndjson": ("application/x-ndjson", "[4111111111111111, 7]\n[5500000000000004]\n"),
        "sse": ("text/event-stream", "data: [4111111111111111]\n\ndata: 4111111111111111\n\n"),
    }
    got = await read_cases(tmp_path, cases)
    assert {p: code for p, (code, _) in got.items()} == {p: 200 for p in cases}
    for path in ("cards", "nested", "floats", "ndjson", "sse"):
        text = got[path][1].decode()
        assert "4111111111111111" not in text and "5500000000000004" not in text, (path, text)
    # (numbers that read as no card go as they came: a list of ids; a phone number's
    # seven to fifteen digits read as one as well, and the detectors read none in them,
    # as in text: a field rule masks them by their name)
    assert json.loads(got["ids"][1]) == [17, 42, 1001, 123456789012]
    assert json.loads(got["phones"][1]) == [5550100, 4155550100]


async def test_card_across_chunks_and_gzip_is_masked(tmp_path: Path) -> None:
    text = b"note\nmy card is 4111 1111 1111 1111 thanks\n" * 3
    packed = gzip.compress(text)
    for coded in (False, True):
        data = packed if coded else text
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(data[at : at + 9]), data[at : at + 9])
            for at in range(0, len(data), 9)
        )
        head = b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        if coded:
            head += b"Content-Encoding: gzip\r\n"
        answer = await _raw_answer(tmp_path / str(coded), head, chunks + b"0\r\n\r\n")
        assert status(answer) == 200, answer[:300]
        headers, _, body = answer.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in headers.lower():
            body = unchunked(body)
        if b"content-encoding: gzip" in headers.lower():
            body = gzip.decompress(body)
        assert CARD.encode() not in body and b"4111 1111" not in body, (coded, body)
        assert body.count(b"1111") == 3, (coded, body)
