"""Probing the HTTP proxy's masks (brief P18, helper web6): phone numbers and e-mails
carried in URIs, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, an aiohttp upstream of the test's own,
a real client (aiohttp); the reader outside pii-readers (the field `phone` masked, a
phone number no detector's). Each came to the reader whole before its fix:

- a URI whose scheme dials or texts a number (`sms:+15550100`, `SMSTO:5550100:hi`,
  `mms:`, `callto://`, `facetime:`, `fax:`, `skype:...?call`, `wtai://wp/mc;...`, a
  viber link's `number=`), under any member (`link`, `href`) or in a text line: only
  `tel:` was read (its scheme is an alias of `phone`); now its number is masked as the
  `phone` field's value wherever it stands (bodies._PHONE_URI);
- a `data:` URI whose base64 is short (`data:text/plain;base64,dGVsOjU1NTAxMDA=`, the
  text `tel:5550100`): base64 inside a text was read from 16 characters on; a data: URI's
  payload is base64 by its own word and is read whatever its length.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from http_upstream import http_stack
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream
from test_http_probe_p12 import readers_answers

from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masker_for

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


URIS: dict[str, str] = {
    "sms": "sms:+15550100",
    "sms with a body": "sms:+15550100?body=hello",
    "smsto of a qr code": "SMSTO:5550100:hello",
    "mms": "mms:5550100",
    "callto": "callto://+15550100",
    "facetime": "facetime:+15550100",
    "facetime audio": "facetime-audio:5550100",
    "fax": "fax:+15550100",
    "skype": "skype:+15550100?call",
    "wtai make call": "wtai://wp/mc;5550100",
    "viber number": "viber://chat?number=%2B15550100",
    "a data uri of a short text": "data:text/plain;base64," + _b64("tel:5550100"),
    "a data uri of an sms link": "data:text/plain;base64," + _b64("sms:5550100"),
}


def _leaks(out: bytes) -> bool:
    """Whether `out` shows the number, as written or as its reader decodes it."""
    text = out.decode("utf-8", "replace")
    seen = [text, urllib.parse.unquote(text)]
    for run in text.replace('"', " ").replace(",", " ").split():
        try:
            seen.append(base64.b64decode(run + "==").decode("utf-8", "replace"))
        except ValueError:
            pass
    return any("5550100" in s for s in seen)


def _masked(kind: str, body: str) -> bytes:
    shown_kind, shown = answer_kind([kind])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), shown_kind, media=shown)
    return mask.feed(body.encode()) + mask.finish()


@pytest.mark.parametrize("case", sorted(URIS))
@pytest.mark.parametrize("where", ["a link member", "an href in text", "a text line"])
def test_a_number_in_a_uri_is_masked(case: str, where: str) -> None:
    uri = URIS[case]
    kind, body = {
        "a link member": ("application/json", json.dumps({"link": uri})),
        "an href in text": ("application/json", json.dumps({"note": f'<a href="{uri}">x</a>'})),
        "a text line": ("text/plain", f"reach us at {uri} today\n"),
    }[where]
    try:
        out = _masked(kind, body)
    except Unmaskable:
        return
    assert not _leaks(out), out


def test_other_uris_stay() -> None:
    doc = {"link": "https://example.com/smsto/5", "skype": "skyper:x", "n": "mms-5"}
    assert json.loads(_masked("application/json", json.dumps(doc))) == doc


def _app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        uri = URIS[sorted(URIS)[int(request.query["n"])]]
        return web.json_response({"id": 7, "contact": uri, "html": f'<a href="{uri}">'})

    app = web.Application()
    app.router.add_get("/answer", answer)
    return app


async def test_a_number_in_a_uri_is_masked_end_to_end(tmp_path: Path) -> None:
    async with (
        app_upstream(_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = await readers_answers(s, client, sorted(URIS))
    odd = {case: got[case] for case in got if got[case][0] not in (200, 502)}
    assert not odd, odd
    leaked = {c: out[:200] for c, (code, out) in got.items() if code == 200 and _leaks(out)}
    assert not leaked, leaked
    assert got["sms"][0] == 200, got["sms"]
