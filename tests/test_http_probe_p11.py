"""Probing the HTTP proxy's masks (brief P11, helper httpattack): what a reader got past
them, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, an upstream of the test's own (aiohttp),
a real client (aiohttp); the reader outside pii-readers. Each came to the reader whole
before its fix:

- a WebSocket's control frames: under a mask each data message was masked, but a close
  frame's reason (`phone: 5550100`, which aiohttp hands the application as `extra`) and a
  ping's application data (which a client reads with autoping off) went as they came.
  They are now masked as a message is (websocket.MaskedFrames._control); one that cannot
  be, or grows past 125 bytes, goes empty (a close keeps its code); a control frame that
  is fragmented or longer than 125 bytes (RFC 6455 §5.5) ends the socket, and so does a
  server's frame that is masked (§5.1: its payload went XORed past the credential guard,
  which reads the bytes as they go);
- a JSON value keyed by itself (`{"+1 555 0100": "phone", "seen": 3}`): a map was
  inverted only when every member named a field; `{"5550100": "Phone number"}` and
  `{"5550100": ["phone"]}` not at all. A key that is no identifier whose member labels a
  field is now that field's value (bodies.BodyMask.value_key_field);
- a key a map elsewhere names as a field: Jira's `expand=names` (`"names":
  {"customfield_10010": "Phone"}` beside `"fields": {"customfield_10010": ...}`), an
  alias map: the value under the id passed (bodies.BodyMask.aliased);
- a columnar table (`{"names": ["id", "phone"], "columns": [[7, 8, 9], [...]]}`: one
  list per name): the names were read as a row's, position by position;
- a value carried coded: a JSON string that is base64 without its padding (a JWT's
  payload, a cookie's value, `eyJwaG9uZSI6IjU1NTAxMDAifQ`: only padded base64, or
  base64url holding `-` or `_`, was decoded); an answer's header whose value, decoded
  as its reader decodes it, says what the mask hides: a cookie of base64 JSON
  (`Set-Cookie: prefs=eyJwaG9uZSI6...`, Flask's session), percent-encoded JSON in a
  Location's query (`?p=%7B%22phone%22%3A...`): only the detectors read the
  percent-decoded value, nothing read base64 there. Such a header is now `[REDACTED]`
  (bodies._coded_clear);
- an event stream's comment (`: phone 5550100`) read by the detectors only, and a
  `retry:` line passed whatever its digits: a raw client (curl) shows both. A comment
  is now read as a line of text is, and `retry:` passes only as a delay of up to six
  digits;
- prose naming a field at a line's end, its value opening the next (`Ann's phone
  is` / `555 0100`, `Phone (mobile):` / `5550100`): the prose rule read one line. A
  field named with fewer than four words after it and no value among them now has the
  next line's first words read as its value (BodyMask._carried);
- a field's name in a text line split by characters no one sees (`ph<U+200B>one:
  5550100`, a soft hyphen, a word joiner): JSON keys were read without them, text
  lines not. A line holding them is read without them too, and shown so when that
  masks anything;
- text naming a field whose value is on the next line, in shapes the withholding rule
  did not know: a YAML list item (`- phone:`), a YAML comment where the value would be
  (`phone:  # mobile`, the comment masked and the value below it passed), a label alone
  on its line (`Phone Number:`). Such text is now withheld (502), as a YAML block was.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from http_upstream import http_stack
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream, bearer

from proxies.http.bodies import (
    REDACTED_VALUE,
    BodyMask,
    Unmaskable,
    answer_kind,
    masked_headers,
    masker_for,
)
from proxies.http.websocket import FrameReader, FrameRefused, MaskedFrames, _frame_bytes

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
HIDDEN = ("5550100", "555 0100", "ann@example.com", "hunter2")


def _socket_app() -> web.Application:
    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await ws.ping(b"for ann@example.com, phone: 5550100")
        await ws.send_str("done")
        await ws.close(message=b"phone: 5550100")
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    return app


async def _connected(client: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    """The socket, asked again while the PDP, on a loaded machine, has no evaluation worker
    free (a 403 for an upgrade the shipped policy opens for a reader on /ws)."""
    for _ in range(5):
        try:
            return await client.ws_connect(url, headers=headers, autoping=False)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status != 403:
                raise
            await asyncio.sleep(1)
    return await client.ws_connect(url, headers=headers, autoping=False)


async def test_a_readers_websocket_control_frames_are_masked(tmp_path: Any) -> None:
    got: list[tuple[str, str]] = []
    async with (
        app_upstream(_socket_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        ws = await _connected(client, s.url + "/ws", bearer(s))
        async with ws:
            while True:
                message = await ws.receive(timeout=20)
                data = message.data
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                got.append((message.type.name, text + str(message.extra or "")))
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
    kinds = [kind for kind, _ in got]
    assert "PING" in kinds and "TEXT" in kinds, got  # (the socket was relayed)
    assert not any(value in text for _, text in got for value in HIDDEN), got


def test_control_frames_past_the_rfc_or_masked_by_a_server_end_the_socket() -> None:
    frames = MaskedFrames(masker_for(READER_MASKS, b"k" * 32))
    with pytest.raises(FrameRefused):
        frames.feed(_frame_bytes(9, b"x" * 126))
    with pytest.raises(FrameRefused):
        MaskedFrames(masker_for(READER_MASKS, b"k" * 32)).feed(b"\x09\x01x")  # no FIN
    key = b"\x01\x02\x03\x04"
    masked_ping = b"\x89\x84" + key + bytes(b ^ k for b, k in zip(b"abcd", key, strict=True))
    with pytest.raises(FrameRefused):
        MaskedFrames(masker_for(READER_MASKS, b"k" * 32)).feed(masked_ping)
    with pytest.raises(FrameRefused):
        FrameReader(from_server=True).feed(masked_ping)
    assert FrameReader().feed(masked_ping)[0].preview == b"abcd"  # (a client's: masked)
    # a close's code stays, a reason that cannot be masked goes
    out = MaskedFrames(masker_for(READER_MASKS, b"k" * 32)).feed(
        _frame_bytes(8, b"\x03\xe8<th>phone</th>")
    )
    assert out == _frame_bytes(8, b"\x03\xe8")


def _masked(content_type: str, body: str) -> bytes:
    kind, shown = answer_kind([content_type])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


ANSWERS = {
    "inverted among others": ("application/json", '{"+1 555 0100": "phone", "seen": 3}'),
    "inverted in words": ("application/json", '{"5550100": "Phone number"}'),
    "inverted to a list": ("application/json", '{"5550100": ["phone"]}'),
    "inverted, nested": ("application/json", '{"a": [{"ann@x.org": "email", "n": 1}]}'),
    "unpadded base64": ("application/json", '{"prefs": "eyJwaG9uZSI6IjU1NTAxMDAifQ"}'),
    "sse comment": ("text/event-stream", ": phone 5550100\n\ndata: {}\n\n"),
    "sse comment of json": ("text/event-stream", ':{"phone": "5550100"}\n\n'),
    "sse retry": ("text/event-stream", "retry: 5550100\ndata: {}\n\n"),
    "jira names": (
        "application/json",
        '{"fields": {"customfield_10010": "5550100", "summary": "x"},'
        ' "names": {"customfield_10010": "Phone", "summary": "Summary"}}',
    ),
    "graphql alias map": (
        "application/json",
        '{"data": {"c": {"x": "5550100"}}, "extensions": {"aliases": {"x": "phone"}}}',
    ),
    "prose over a line break": ("text/plain", "Ann's phone is\n555 0100\n"),
    "prose label over a line break": ("text/plain", "Ann's phone number:\n555 0100\n"),
    "prose, a blank line between": ("text/markdown", "Call her on the phone\n\n5550100\n"),
    "label with a note over a line break": ("text/plain", "Phone (mobile):\n5550100\n"),
    "a name split by a zero-width space": ("text/plain", "ph\u200bone: 5550100\n"),
    "a name split by a soft hyphen": ("text/plain", "pho\u00adne: 5550100\n"),
    "columnar": (
        "application/json",
        '{"names": ["id", "phone"], "columns": [[7, 8, 9], ["5550100", "5550101", "5550102"]]}',
    ),
    "yaml list item": ("application/yaml", "customer:\n  - phone:\n      5550100\n"),
    "yaml comment": ("application/yaml", "phone:  # mobile\n  5550100\n"),
    "label alone": ("text/plain", "Ann\nPhone Number:\n5550100\n"),
    "label alone, bulleted": ("text/markdown", "- Mobile phone:\n  5550100\n"),
}


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_a_value_named_otherwise_is_masked_or_withheld(case: str) -> None:
    try:
        out = _masked(*ANSWERS[case])
    except Unmaskable:
        return
    shown = (*HIDDEN, "ann@x.org", "eyJwaG9uZSI6IjU1NTAxMDAifQ")  # (the last: coded)
    assert not any(value.encode() in out for value in shown), out


STAYS = {
    "a date keying a count": ("application/json", '{"2026-12-06": 3, "2026-12-05": "call"}'),
    "a yaml item": ("application/yaml", "- name: Ann\n- plan: gold\n"),
    "a label alone": ("text/plain", "Plan:\ngold\n"),
}


@pytest.mark.parametrize("case", sorted(STAYS))
def test_what_names_no_field_stays(case: str) -> None:
    content_type, body = STAYS[case]
    assert _masked(content_type, body).decode() == body or case.startswith("a date")


CODED_HEADERS = {
    "base64 json cookie": ("Set-Cookie", "prefs=eyJwaG9uZSI6IjU1NTAxMDAifQ; Path=/"),
    "base64 pairs": ("X-Data", "cGhvbmU9NTU1MDEwMA=="),
    "percent json location": ("Location", "/c?p=%7B%22phone%22%3A%225550100%22%7D"),
    "twice percent-encoded": ("Link", "</c?p=%257B%2522phone%2522%253A%25225550100%2522%257D>"),
}


@pytest.mark.parametrize("case", sorted(CODED_HEADERS))
def test_a_header_whose_decoded_value_holds_a_masked_field_is_redacted(case: str) -> None:
    [(_, value)], counts = masked_headers(
        masker_for(READER_MASKS, b"k" * 32), [CODED_HEADERS[case]]
    )
    assert value == REDACTED_VALUE and counts, value


def test_a_header_decoding_to_nothing_masked_stays() -> None:
    headers = [
        ("Set-Cookie", "sid=Zm9vYmFyYmF6cXV4eHl6; HttpOnly"),
        ("Set-Cookie", "sid=8f14e45fceea167a5a36dedd4bea2543; Secure"),
        ("Location", "/files/report%202024.pdf"),
        ("X-Request-Id", "a1b2c3d4-e5f6-7890-abcd-ef1234567890"),
    ]
    assert masked_headers(masker_for(READER_MASKS, b"k" * 32), headers)[0] == headers
