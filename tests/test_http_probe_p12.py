"""Probing the HTTP proxy's masks (brief P12, helper mcpmask2): what a reader got past
them, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, an upstream of the test's own (aiohttp),
a real client (aiohttp); the reader outside pii-readers (the field `phone` masked; a
phone number is no detector's). Each came to the reader whole before its fix:

- a field named by an object of labels one or more levels down: `{"field": {"name":
  "phone"}, "value": ...}` (only a string member named the field), a value keyed by
  itself whose label is two levels down (`{"+1 555 0100": {"meta": {"type":
  "phone"}}}`: only a string, a list of them or an object's strings labelled the key).
  An object of labels alone under keys naming a role (bodies.labelled_field) now names
  its field, nested up to three objects;
- a field's name in a text line as a reader reads it but not as the masks did: with a
  combining mark (`ph\u0307one: 5550100`), spelt out (`P-H-O-N-E:`, `p h o n e:`), a
  fullwidth colon or letters, a control character inside it. A line is now read as
  bodies.as_read gives it too (NFKD without combining marks, controls and invisible
  characters dropped, a word spelt letter by letter joined) and shown so when that masks
  anything;
- base64 in a JSON string whose bytes are no UTF-8 (Latin-1 text, or text among control
  bytes): read as nothing. Now read as Latin-1 (masked and written back so), and bytes
  holding control characters read between them and withheld (`[REDACTED]`) when that
  holds what the mask hides;
- base64 inside a text in a JSON string (`see eyJwaG9uZSI6...`), base64 in MIME lines, and
  base64 of UTF-16 text: only a whole string of unbroken base64 was decoded (the latter
  read with its NULs as nothing). Each run of 16 or more is now read as a whole string
  is, MIME lines joined, UTF-16's NULs dropped;
- an event stream's `id:` naming a field (`id: phone`): the client's lastEventId names the
  data of that event and every later one, as `event: phone` names its event's; the data
  went whole. An `id:` naming a field now masks the data of the events after it until an
  `id:` names another.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_upstream import http_stack
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream, bearer

from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masker_for

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
HIDDEN = ("5550100", "555 0100", "5550101", "ann@example.com")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


ANSWERS: dict[str, tuple[str, str]] = {
    "label one level down": (
        "application/json",
        json.dumps({"field": {"name": "phone"}, "value": "+1 555 0100"}),
    ),
    "label two levels down": (
        "application/json",
        json.dumps({"attr": {"meta": {"type": "Phone number"}}, "data": "+1 555 0100"}),
    ),
    "keyed by itself, label two levels down": (
        "application/json",
        json.dumps({"+1 555 0100": {"meta": {"type": "phone"}}}),
    ),
    "keyed by itself, in a list": (
        "application/json",
        json.dumps({"rows": [{"+1 555 0100": {"meta": {"kind": "PHONE"}}}]}),
    ),
    "objects of such in an array": (
        "application/json",
        json.dumps([{"field": {"label": "Phone"}, "v": "5550100"}, {"field": {"name": "plan"}}]),
    ),
    "a label listed": ("application/json", json.dumps({"field": ["phone"], "value": "5550100"})),
    "a marked label one level down": (
        "application/json",
        json.dumps({"field": {"name": "ph\u0307one"}, "value": "5550100"}),
    ),
    "a label four levels down": (
        "application/json",
        json.dumps({"a": {"b": {"c": {"d": {"type": "phone"}}}}, "value": "5550100"}),
    ),
    "a descriptor with its id": (
        "application/json",
        json.dumps({"meta": {"type": "phone", "id": 3}, "value": "5550100"}),
    ),
    "upper-case descriptor": (
        "application/json",
        json.dumps({"FIELD": {"NAME": "PHONE"}, "VALUE": "5550100"}),
    ),
    "a key with a combining mark": ("application/json", json.dumps({"ph\u0307one": "5550100"})),
    "a key spelt out": ("application/json", json.dumps({"P-H-O-N-E": "5550100"})),
    "a key spelt with spaces": ("application/json", json.dumps({"p h o n e": "5550100"})),
    "a pair named with a mark": (
        "application/json",
        json.dumps({"name": "ph\u0307one", "value": "5550100"}),
    ),
    "a column named with a mark": (
        "application/json",
        json.dumps({"columns": ["id", "ph\u0307one"], "rows": [[1, "5550100"]]}),
    ),
    "combining mark": ("text/plain", "ph\u0307one: 5550100\n"),
    "a label with a mark": ("text/plain", "Phone\u0301 Number: 5550100\n"),
    "spelt in a query": ("text/plain", "x=1&p-h-o-n-e=5550100\n"),
    "enclosed letters": ("text/plain", "\u24df\u24d7\u24de\u24dd\u24d4: 5550100\n"),
    "spelt with hyphens": ("text/plain", "P-H-O-N-E: 5550100\n"),
    "spelt with spaces": ("text/plain", "p h o n e: 5550100\n"),
    "spelt with dots, in prose": ("text/plain", "her p.h.o.n.e is 5550100\n"),
    "fullwidth colon": ("text/plain", "PHONE\uff1a5550100\n"),
    "fullwidth letters": ("text/plain", "\uff50\uff48\uff4f\uff4e\uff45: 5550100\n"),
    "a control character inside": ("text/plain", "pho\x01ne: 5550100\n"),
    "combining marks in a json string": (
        "application/json",
        json.dumps({"note": "ph\u0307one: 5550100"}),
    ),
    "latin-1 base64": (
        "application/json",
        json.dumps({"blob": _b64("Téléphone de Zoé, phone: 5550100".encode("latin-1"))}),
    ),
    "latin-1 base64 of json": (
        "application/json",
        json.dumps({"blob": _b64('{"phone": "5550100", "nom": "Zoé"}'.encode("latin-1"))}),
    ),
    "binary base64 holding text": (
        "application/json",
        json.dumps({"blob": _b64(b"\x89\x01\x02phone: 5550100\x00\xff\xfe")}),
    ),
    "utf-16 base64": (
        "application/json",
        json.dumps({"blob": _b64("Zoé phone: 5550100".encode("utf-16"))}),
    ),
    "base64 inside a text": (
        "application/json",
        json.dumps({"note": "see " + _b64(b'{"phone": "5550100"}')}),
    ),
    "latin-1 base64 inside a text": (
        "application/json",
        json.dumps({"note": "see " + _b64("Zoé, phone: 5550100".encode("latin-1"))}),
    ),
    "base64 in mime lines": (
        "application/json",
        json.dumps({"blob": base64.encodebytes(b"a" * 60 + b" phone: 5550100").decode()}),
    ),
    "sse id naming the next event": (
        "text/event-stream",
        "id: phone\ndata: x\n\ndata: 5550100\n\n",
    ),
    "sse id in its event": ("text/event-stream", "id: Phone Number\ndata: 5550100\n\n"),
    "sse id spelt": ("text/event-stream", "id: P-H-O-N-E\ndata: 5550100\n\n"),
}


def _masked(content_type: str, body: str) -> bytes:
    kind, shown = answer_kind([content_type])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _leaks(out: bytes) -> bool:
    """Whether `out` shows a hidden value, as written or in a base64 run of it (a JSON
    answer read string by string: MIME lines joined)."""
    texts = [out.decode("utf-8", "replace")]
    try:
        texts += _strings(json.loads(out))
    except ValueError:
        pass
    for text in texts:
        if any(value in text for value in HIDDEN):
            return True
        for run in re.findall(r"[A-Za-z0-9+/\n]{16,}", text):
            run = run.replace("\n", "")
            try:
                data = base64.b64decode(run + "=" * (-len(run) % 4))
            except binascii.Error:
                continue
            if any(value.encode() in data.replace(b"\x00", b"") for value in HIDDEN):
                return True
    return False


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_a_field_named_otherwise_is_masked_or_withheld(case: str) -> None:
    try:
        out = _masked(*ANSWERS[case])
    except Unmaskable:
        return
    assert not _leaks(out), out


STAYS = {
    "accented prose": ("text/plain", "Café crème, 3 € le matin\n"),
    "single letters": ("text/plain", "grades: a b c\n"),
    "an object of labels naming nothing": (
        "application/json",
        '{"field": {"name": "plan"}, "value": "gold"}',
    ),
    "a descriptor beside a count": ("application/json", '{"meta": {"type": "call"}, "n": 5550100}'),
    "sse id naming nothing": ("text/event-stream", "id: 42\ndata: 5550100\n\n"),
    "binary base64": ("application/json", json.dumps({"png": _b64(bytes(range(256)))})),
    "long words in a text": (
        "application/json",
        json.dumps({"note": "internationalization and abcdefghijklmnopqrstuvwx stay"}),
    ),
    "base64 of text naming nothing": (
        "application/json",
        json.dumps({"note": "see " + _b64(b"plan: gold, seats: 5550100")}),
    ),
}


@pytest.mark.parametrize("case", sorted(STAYS))
def test_what_names_no_field_stays(case: str) -> None:
    content_type, body = STAYS[case]
    out = _masked(content_type, body).decode()
    if content_type == "application/json":
        assert json.loads(out) == json.loads(body)
    else:
        assert out == body


def test_an_id_naming_another_field_ends_the_naming() -> None:
    out = _masked("text/event-stream", "id: phone\ndata: 5550100\n\nid: 7\ndata: 5550101\n\n")
    # (the later id itself is masked: it may carry the value, test_http_probe_p16)
    assert out.decode() == "id: phone\ndata: [REDACTED]\n\nid: [REDACTED]\ndata: 5550101\n\n"


def _app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        # (the case by its number: a query naming a field is refused before the answer)
        content_type, body = ANSWERS[sorted(ANSWERS)[int(request.query["n"])]]
        return web.Response(text=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/answer", answer)
    return app


async def readers_answers(
    s: Any, client: aiohttp.ClientSession, cases: list[str]
) -> dict[str, tuple[int, bytes]]:
    """Each case asked of the upstream's `/answer` by its number, as a reader: (status, body)."""
    got: dict[str, tuple[int, bytes]] = {}
    for n, case in enumerate(cases):
        for _ in range(5):  # (asked again while the PDP has no evaluation worker free)
            params: Any = {"n": n}
            # (a caller holds at most 16 sessions: a reader of another name each 12)
            reader = bearer(s, sub=f"mallory{n // 12}@example.com")
            async with client.get(s.url + "/answer", params=params, headers=reader) as r:
                got[case] = r.status, await r.read()
            if got[case][0] != 403 or b"no evaluation worker" not in got[case][1]:
                break
    return got


async def test_a_readers_answers_are_masked_end_to_end(tmp_path: Path) -> None:
    async with (
        app_upstream(_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = await readers_answers(s, client, sorted(ANSWERS))
    # (each answer relayed, or withheld as one the masks cannot read: 502)
    odd = {case: got[case] for case in got if got[case][0] not in (200, 502)}
    assert not odd, odd
    leaked = {
        case: out[:200] for case, (status, out) in got.items() if status == 200 and _leaks(out)
    }
    assert not leaked, leaked
