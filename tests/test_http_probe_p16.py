"""Probing the HTTP proxy's masks (brief P16, helper webattack4): a label after its value,
and an event stream's later ids, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, an aiohttp upstream of the test's own,
a real client (aiohttp); the reader outside pii-readers (the fields `password`, `phone`,
`email`, `card_number`, `ssn`, `api_key`, `iban`, `token` masked). Each came to the
reader whole before its fix:

- a label after its value: prose (`5550100 is the phone`, `hunter2 (password)`, `5550100
  : phone`: only the words after a field's name were read for its value), a list of
  scalars (`["5550100", "phone"]`, `["Ann", "name", "hunter2", "password"]`, a row `[7,
  "phone", "5550100"]`: only `[name, value]` was read as a pair), pairs on a line
  (`value=5550100&name=phone`, `{value: 5550100, name: phone}`: the object `{"name":
  "phone", "value": ...}` was read so in JSON only), and a record's label on the line
  after its value (`- value: 5550100` then `  name: phone`, YAML; now refused, 502);
- an event stream's `id:` or `event:` carrying a value beside a name the stream gave in
  another line or event (`event: phone` + `id: 5550100` in one event; `id: phone`, then
  a later event's `id: 5550100`: the client's lastEventId): now masked; a name given
  after such a value went (`id: 5550100`, then `id: phone`) is refused (a short stream
  whole, 502; a long one ends there);
- a value beside a path of segments ending in its field (`{"loc": ["body", "phone"],
  "input": ...}`: FastAPI's validation errors echo the input; GraphQL's `{"path": [...,
  "phone"], "extensions": ...}`): only a path written as one string named a field;
- an event whose data is a label alone (`data: {"field": "phone"}`): the next event's
  data (and later ids) are now masked as that field; one after an event whose data or
  id may be the value is refused;
- a card or an e-mail a detector finds only as its reader reads it, in a JSON string
  (fullwidth or Arabic-Indic digits, soft hyphens between the groups, a fullwidth at
  sign) or a text line (Arabic-Indic digits): bodies.as_read now reads digits of other
  scripts as digits, and a JSON string's reading goes through the detectors too;
- a request body in a charset whose words are not read as UTF-8 reads them (`text/plain;
  charset=utf-7` holding `+AHA-hone:555`, an XML declaration's `encoding="UTF-7"`, a
  multipart part's `charset=utf-7` or its `_charset_` field): a reader's GET naming
  `phone` so went upstream as a plain read; such a body's words are now unread, which
  needs approval for anyone masked (request_words.foreign_charset);
- a field's id named by its descriptor (`{"fields": [{"id": "f1", "label": "Phone"}],
  "values": {"f1": ...}}`: a form's or a CRM's custom fields, Airtable's field ids) or a
  JSON-LD context's term (`"@context": {"p": "http://schema.org/telephone"}`, then `"p":
  ...`, which JSON-LD reads as that IRI): only a map of ids to labels named such keys.
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from http_upstream import exchange, http_stack, request, status
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream, bearer
from test_http_probe_p12 import readers_answers

from proxies.http.bodies import (
    BodyMask,
    Unmaskable,
    answer_kind,
    as_read,
    masked_headers,
    masker_for,
)

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
HIDDEN = ("5550100", "hunter2", "ann.smith", "078-05-1120")

ARABIC_CARD = "".join(chr(0x660 + int(c)) for c in "4111111111111111")
ANSWERS: dict[str, tuple[str, str]] = {
    # prose, the value before the name
    "value is the phone": ("text/plain", "5550100 is the phone\n"),
    "value is a name's phone number": ("text/plain", "5550100 is Ann's phone number\n"),
    "value then (password)": ("text/plain", "hunter2 (password)\n"),
    "value then (passwort)": ("text/plain", "hunter2 (Passwort)\n"),
    "value : phone": ("text/plain", "5550100 : phone\n"),
    "value is the password in json": ("application/json", '{"note": "hunter2 is the password"}'),
    "value (mobile) in an event": ("text/event-stream", "data: call 5550100 (mobile)\n\n"),
    "phone is value in an event": ("text/event-stream", "data: Ann's phone is 5550100\n\n"),
    # lists of scalars, the label after the value
    "pair, label second": ("application/json", '["5550100", "phone"]'),
    "pairs, label second": ("application/json", '[["hunter2", "password"], ["5550100", "tel"]]'),
    "values and labels in turn": ("application/json", '["Ann", "name", "5550100", "phone"]'),
    "a row with its label inside": ("application/json", '{"rows": [[7, "phone", "5550100"]]}'),
    "pair, label second, ndjson": ("application/x-ndjson", '["5550100", "Phone Number"]\n'),
    "pair, label second, as text": ("text/plain", '["5550100", "phone"]\n'),
    # pairs on one line, the label a value of its own
    "query pairs, label after": ("text/plain", "value=5550100&name=phone\n"),
    "flow mapping, label after": ("text/plain", "{value: 5550100, name: phone}\n"),
    "logfmt, label after": ("text/plain", "level=info v=hunter2 key=password\n"),
    # a field's id or term named away from its value
    "a descriptor's id": (
        "application/json",
        '{"fields": [{"id": "f1", "label": "Phone"}], "values": {"f1": "5550100"}}',
    ),
    "a json-ld term": (
        "application/ld+json",
        '{"@context": {"p": "http://schema.org/telephone"}, "p": "5550100"}',
    ),
    "a json-ld term by @id": (
        "application/ld+json",
        '{"@context": {"p": {"@id": "schema:telephone"}}, "p": {"@value": "5550100"}}',
    ),
    # a path of segments ending in the field, beside its value
    "a validation error's input": (
        "application/json",
        '{"detail": [{"loc": ["body", "phone"], "msg": "bad", "input": "5550100"}]}',
    ),
    "a graphql error's extensions": (
        "application/graphql-response+json",
        '{"errors": [{"path": ["user", 0, "phone"], "extensions": {"value": "5550100"}}]}',
    ),
    # a value and its name joined otherwise
    "value=name": ("text/plain", "5550100=phone\n"),
    "value;name in a csv header": ("text/csv", "5550100;phone\n"),
    "name;value in a csv header": ("text/csv", "phone;5550100\n"),
    "value, then the label alone in marks": ("text/plain", "5550100\n(phone)\n"),
    # what a detector finds only as its reader reads it
    "a card in fullwidth digits in json": (
        "application/json",
        '{"note": "pay with \uff14\uff11\uff11\uff11-\uff11\uff11\uff11\uff11-'
        '\uff11\uff11\uff11\uff11-\uff11\uff11\uff11\uff11"}',
    ),
    "a card in arabic-indic digits": ("text/plain", "pay " + ARABIC_CARD + "\n"),
    "a card in arabic-indic digits in json": ("application/json", json.dumps({"n": ARABIC_CARD})),
    "a card parted by soft hyphens in json": (
        "application/json",
        '{"note": "4111\\u00ad1111\\u00ad1111\\u00ad1111"}',
    ),
    "an e-mail with a fullwidth at sign in json": (
        "application/json",
        '{"note": "ann.smith\\uff20example.com"}',
    ),
    # a record's label on the line after its value
    "yaml, label after": ("application/x-yaml", "- value: 5550100\n  name: phone\n"),
    "properties, label after": ("text/plain", "attr.value=hunter2\nattr.name=password\n"),
    # an event stream's ids and event names
    "event named, then its id": ("text/event-stream", "event: phone\nid: 5550100\ndata: x\n\n"),
    "id, then its event name": ("text/event-stream", "id: 5550100\nevent: phone\n\n"),
    "a later id": ("text/event-stream", "id: phone\ndata: x\n\nid: 5550100\ndata: y\n\n"),
    "a later id after an event name": (
        "text/event-stream",
        "event: password\ndata: x\n\nid: hunter2\ndata: y\n\n",
    ),
    "a later event name": ("text/event-stream", "id: phone\ndata: x\n\nevent: 5550100\n\n"),
    "ids one digit at a time": (
        "text/event-stream",
        "id: phone\n\n" + "".join(f"id: {d}\ndata: .\n\n" for d in "5550100"),
    ),
    "an event's data labelling the next": (
        "text/event-stream",
        'data: {"field": "phone"}\n\ndata: "5550100"\n\nid: 5550100\ndata: x\n\n',
    ),
    "an event's data labelling the one before": (
        "text/event-stream",
        'data: {"v": "5550100"}\n\ndata: {"field": "phone"}\n\n',
    ),
    "a value's id before its name": (
        "text/event-stream",
        "id: 5550100\ndata: x\n\nid: phone\ndata: y\n\n",
    ),
}


# header values a detector finds only as their reader reads them (a soft hyphen is no
# character a reader sees)
HEADERS = {
    "X-Card": "4111\u00ad1111\u00ad1111\u00ad1111",
    "X-Note": "5550100 is the phone",
}


def test_a_header_read_otherwise_is_masked() -> None:
    out, _ = masked_headers(masker_for(READER_MASKS, b"k" * 32), list(HEADERS.items()))
    assert not [(n, v) for n, v in out if _leaks("", v.encode())], out


def _masked(content_type: str, body: str) -> bytes:
    kind, shown = answer_kind([content_type])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


def _leaks(case: str, out: bytes) -> bool:
    text = out.decode("utf-8", "replace")
    try:
        text += json.dumps(json.loads(text), ensure_ascii=False)  # (its escapes undone)
    except ValueError:
        pass
    read = re.sub(r"\d", lambda d: str(unicodedata.decimal(d[0])), as_read(text))
    if "41111111" in re.sub(r"[^0-9]", "", read) or "ann.smith" in read:
        return True
    if case == "ids one digit at a time":
        ids = [ln[4:] for ln in text.split("\n") if ln.startswith("id: ")]
        return any(i.isdigit() for i in ids)
    return any(value in text for value in HIDDEN)


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_a_label_after_its_value_masks_it(case: str) -> None:
    try:
        out = _masked(*ANSWERS[case])
    except Unmaskable:
        return
    assert not _leaks(case, out), out


MASKED = {
    "5550100 is the phone\n": "[REDACTED] is the phone\n",
    "hunter2 (password)\n": "[REDACTED] (password)\n",
    "value=5550100&name=phone\n": "value=[REDACTED]&name=phone\n",
    "{value: 5550100, name: phone}\n": "{value: [REDACTED], name: phone}\n",
    # (a number before a name that is a key is another pair's value)
    '"id": 7, "phone": "x"\n': '"id": 7, "phone": "[REDACTED]"\n',
}


@pytest.mark.parametrize("body", sorted(MASKED))
def test_the_value_alone_is_masked(body: str) -> None:
    assert _masked("text/plain", body).decode() == MASKED[body]


def test_lists_and_events_keep_their_shape() -> None:
    out = _masked("application/json", '{"a": ["5550100", "phone"], "b": ["id", "phone"]}')
    assert json.loads(out) == {"a": ["[REDACTED]", "phone"], "b": ["id", "phone"]}
    out = _masked("text/event-stream", "event: phone\nid: 5550100\ndata: x\n\n")
    assert out == b"event: phone\nid: [REDACTED]\ndata: [REDACTED]\n\n"


STAYS: dict[str, tuple[str, str]] = {
    "a uri ending in a field": (
        "application/json",
        '{"link": "see customer://7/phone", "n": 2}',
    ),
    "csv headers numbered": ("text/csv", "id,phone2,q1_2024\n"),
    "a list of column names": ("application/json", '["id", "phone", "email", "name"]'),
    "a list of numbers": ("application/json", '{"tags": ["vip", "gold"], "n": [1, 2, 3]}'),
    "a descriptor naming nothing": (
        "application/json",
        '{"fields": [{"id": "f1", "label": "Plan"}], "values": {"f1": "gold 7"}}',
    ),
    "a json-ld context naming nothing": (
        "application/ld+json",
        '{"@context": {"n": "http://schema.org/name"}, "n": "Ann 2"}',
    ),
    "prose naming nothing": ("text/plain", "5550100 is the order number\n"),
    "pairs naming nothing": ("text/plain", "value=5550100&name=plan\n"),
    "yaml naming nothing": ("application/x-yaml", "- value: 5550100\n  name: plan\n"),
    "numbered events naming nothing": (
        "text/event-stream",
        "id: 1\nevent: tick\ndata: 5\n\nid: 2\ndata: 6\n\n",
    ),
}


@pytest.mark.parametrize("case", sorted(STAYS))
def test_what_names_no_field_stays(case: str) -> None:
    content_type, body = STAYS[case]
    out = _masked(content_type, body)
    if content_type.endswith("json"):
        assert json.loads(out) == json.loads(body)
    else:
        assert out.decode() == body


def _app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        content_type, body = ANSWERS[sorted(ANSWERS)[int(request.query["n"])]]
        return web.Response(body=body.encode(), headers={"Content-Type": content_type})

    async def stream(request: web.Request) -> web.StreamResponse:
        # a long-lived stream (no length: relayed event by event as it passes); the
        # label comes in the first event, the value in a later one's id
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in (
            b"data: hello\n\n",
            b"id: phone\ndata: ann\n\n",
            b"id: 5550100\ndata: later\n\n",
        ):
            await response.write(event)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    async def headers(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, headers=HEADERS)

    app = web.Application()
    app.router.add_get("/answer", answer)
    app.router.add_get("/headers", headers)
    app.router.add_get("/stream", stream)
    return app


async def test_a_readers_answers_are_masked_end_to_end(tmp_path: Path) -> None:
    async with (
        app_upstream(_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = await readers_answers(s, client, sorted(ANSWERS))
        async with client.get(s.url + "/stream", headers=bearer(s)) as r:
            streamed = r.status, await r.read()
        async with client.get(s.url + "/headers", headers=bearer(s)) as r:
            shown = [(n, v) for n, v in r.headers.items() if n.startswith("X-")]
    # (each answer relayed, or withheld as one the masks cannot read: 502)
    odd = {case: got[case] for case in got if got[case][0] not in (200, 502)}
    assert not odd, odd
    leaked = {c: out[:200] for c, (code, out) in got.items() if code == 200 and _leaks(c, out)}
    assert not leaked, leaked
    assert got["yaml, label after"][0] == 502
    assert got["a value's id before its name"][0] == 502
    assert streamed[0] == 200 and b"5550100" not in streamed[1], streamed
    assert not [(n, v) for n, v in shown if _leaks("", v.encode())], shown
    assert [n for n, _ in shown] == list(HEADERS)
    assert b"id: phone\ndata: [REDACTED]" in streamed[1], streamed


# request bodies whose upstream may read `phone` where UTF-8 reads `+AHA-hone`
CHARSET_BODIES = {
    "text in utf-7": ("text/plain; charset=utf-7", b"+AHA-hone:555+ACo-"),
    "xml declaring utf-7": (
        "application/xml",
        b'<?xml version="1.0" encoding="UTF-7"?><q><+AHA-hone>555</+AHA-hone></q>',
    ),
    "a multipart part in utf-7": (
        "multipart/form-data; boundary=XX",
        b'--XX\r\nContent-Disposition: form-data; name="+AHA-hone"\r\n'
        b"Content-Type: text/plain; charset=utf-7\r\n\r\n555\r\n--XX--\r\n",
    ),
    "a multipart _charset_ field": (
        "multipart/form-data; boundary=XX",
        b'--XX\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\nutf-7\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="+AHA-hone"\r\n\r\n555\r\n--XX--\r\n',
    ),
}


async def test_a_body_in_a_charset_not_read_needs_approval(tmp_path: Path) -> None:
    async with http_stack(tmp_path) as s:
        got = {}
        for case, (content_type, body) in CHARSET_BODIES.items():
            fields = f"Content-Type: {content_type}\r\n"
            answer = await exchange(
                s.proxy.port, request(s, "GET /echo/search HTTP/1.1", fields, body)
            )
            got[case] = status(answer)
        plain = await exchange(
            s.proxy.port,
            request(
                s,
                "GET /echo/search HTTP/1.1",
                "Content-Type: text/plain; charset=utf-8\r\n",
                b"plan:gold",
            ),
        )
    assert got == dict.fromkeys(CHARSET_BODIES, 202), got
    assert status(plain) == 200, plain[:300]
