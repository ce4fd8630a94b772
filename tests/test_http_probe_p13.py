"""Probing the HTTP proxy's masks (brief P13, helper webattack3): what a reader got past
them, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, an upstream of the test's own (aiohttp),
a real client (aiohttp); the reader outside pii-readers (the field `phone` masked, the
email detector partial). Each came to the reader whole before its fix:

- a field's name of two words spelt out letter by letter (`p-h-o-n-e n-u-m-b-e-r:`,
  `P H O N E  N U M B E R`): bodies.as_read joined the whole run into one word
  (`phonenumber`), which names no field `phone`. A gap unlike the one between most of
  the run's letters now parts its words (`phone_number`);
- an object naming its field by a label of words beside the value (`{"name": "Phone
  Number", "value": ...}`, `{"label": "Mobile phone", ...}`: custom fields of a CRM, a
  form's answers) or a pair `["Phone number", ...]`: only a string that is a field's name
  as one word named it (the MCP exchange read such labels, mcp._pair_name). A label of up
  to three words naming a field (BodyMask._phrase) now names it too;
- a named attribute's value held in an object or a list of them (`{"name": "phone",
  "value": {"raw": ...}}`, `{"type": "Phone", "details": {"number": ...}}`): only
  scalars beside the name were masked; an object of scalars (or a list of such) is now;
- a text of several lines in a JSON string (a note, an export): read line by line alone
  (a value on the line after its label, a Markdown or HTML table's cells under their
  header, CSV, went whole); now read as a text body is, withheld when it cannot be masked.
  And a string that is also MIME base64 (`phone\n5550100`: letters and digits, lines of
  4n) was taken for base64 only: read as the string it is too when its bytes hide nothing;
- a CSV whose first line is a pair (`phone,5550100`: a file of keys and values): its
  first line was read as the column names and the value beside `phone` went; a header
  cell that reads as a value (an `@`, more digits than letters) is now masked as the
  field named before it;
- names and values in turn in a list (`["name", "Ann", "phone", "+1 555 0100"]`: Redis'
  HGETALL over HTTP, a logger's attributes): only a list of two was read as a pair;
- a response header named spelt out (`X-P-H-O-N-E: 5550100`) or holding a value after
  a label spelt out (`X-Data: p-h-o-n-e n-u-m-b-e-r 5550100`): header names and values
  are now read as bodies.as_read gives them too, as a body's text lines are;
- an event stream's `id:` or `event:` holding a field's name and its value (`id:
  phone/5550100`: the client's lastEventId; the data after it was masked, the id went
  whole): withheld when a word of it names a masked field and it holds a digit or `@`;
- an upstream answering 206 (a range it chose: the proxy drops Range under a mask): a
  bare value cut out of its field went as a text line; a part of a representation is
  now refused under a mask (502), whole answers alone are read;
- base64 in a text body (`data=eyJwaG9uZSI6...` on a line, a CSV or HTML cell, an
  event's data that is no JSON): only base64 in a JSON string was decoded; each run in
  a text line now is (and a run after `=` too), masked and written back or withheld;
- a value its reader decodes from percent-escapes or character references
  (`filter=%7B%22phone%22%3A%225550100%22%7D`): only the detectors read the unescaped
  text; a text the field rules mask nothing in as written, but find a value in once
  unescaped, is now refused (as the detectors' finds were);
- text written as hex (`70686f6e653a...`, in a JSON string or a text line): read as the
  text it is, masked and written back as hex;
- a request filtering or ordering by a masked field's other name (`?mobile=like.555*`,
  `?pwd=like.h*`: the answer masks `mobile` as `phone`): a plain read, as the policy read
  a field's own words only; http.rego now reads its other names too
  (data.portcullis.field_aliases, kept equal to masking.FIELD_ALIASES by a test);
- text whose bytes are no UTF-8 (Latin-1 or Windows-1252, no charset named: what
  Python's requests and a browser read such a body as): read as UTF-8 with invalid bytes
  replaced, so `ann.smith@ex\\xe4mple.com` was no email to the detector and went whole
  (`anné.smith@...` showed `ann`, the partial mask shows one letter). Such text is now
  masked as Latin-1 and carried so, and withheld when a detector still finds anything
  in its UTF-8 or Windows-1252 reading; a compressed file's text is read each way too.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_upstream import http_stack, raw_server
from test_http_probe_p4 import READER_MASKS
from test_http_probe_p5 import app_upstream, bearer
from test_http_probe_p12 import readers_answers

from portcullis.masking import FIELD_ALIASES
from proxies.http.bodies import BodyMask, Unmaskable, answer_kind, masked_headers, masker_for

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
# (what a reader must not see: the number, the email's local part; the partial mask shows
# the domain)
HIDDEN = ("5550100", "555 0100", "ann.smith", "smith@", "nn\xe9", "nn\ufffd", "nn\u0160")

ANSWERS: dict[str, tuple[str, bytes]] = {
    "two words spelt with hyphens": ("text/plain", b"p-h-o-n-e n-u-m-b-e-r: 5550100\n"),
    "two words spelt with spaces": ("text/plain", b"P H O N E  N U M B E R: 5550100\n"),
    "two words spelt with dots, in prose": (
        "text/plain",
        b"her p.h.o.n.e n.u.m.b.e.r is 5550100\n",
    ),
    "two words spelt, keyed": ("text/plain", b"P.H.O.N.E N.U.M.B.E.R = 5550100\n"),
    "two words spelt in a json string": (
        "application/json",
        json.dumps({"note": "p-h-o-n-e n-u-m-b-e-r: 5550100"}).encode(),
    ),
    "a pair named by a label of words": (
        "application/json",
        json.dumps({"name": "Phone Number", "value": "5550100"}).encode(),
    ),
    "custom fields named by labels": (
        "application/json",
        json.dumps({"fields": [{"label": "Mobile phone", "value": "555 0100"}]}).encode(),
    ),
    "a pair listed under a label": (
        "application/json",
        json.dumps({"attrs": [["Phone number", "5550100"]]}).encode(),
    ),
    "a pair named by words spelt": (
        "application/x-ndjson",
        json.dumps({"key": "P-H-O-N-E n-u-m-b-e-r", "v": "5550100"}).encode() + b"\n",
    ),
    "a named value in an object": (
        "application/json",
        json.dumps({"name": "phone", "value": {"raw": "5550100"}}).encode(),
    ),
    "a named value in a list of objects": (
        "application/json",
        json.dumps([{"name": "phone", "values": [{"raw": "5550100"}]}]).encode(),
    ),
    "a typed contact's details": (
        "application/json",
        json.dumps({"contact": {"type": "Phone", "details": {"number": "5550100"}}}).encode(),
    ),
    "a label and its value on two lines of a string": (
        "application/json",
        json.dumps({"note": "phone\n5550100"}).encode(),
    ),
    "a markdown table in a string": (
        "application/json",
        json.dumps({"note": "| Phone | Plan |\n|---|---|\n| 5550100 | gold |"}).encode(),
    ),
    "csv in a string": (
        "application/json",
        json.dumps({"export": "name,phone\nAnn,5550100"}).encode(),
    ),
    "html rows in a string": (
        "application/json",
        json.dumps({"html": "<tr><th>phone</th></tr>\n<tr><td>5550100</td></tr>"}).encode(),
    ),
    "an event id holding a name and its value": (
        "text/event-stream",
        b"id: phone/5550100\ndata: {}\n\nevent: 5550100-P-H-O-N-E\ndata: {}\n\n",
    ),
    "base64 on a text line": (
        "text/plain",
        b"data=" + base64.b64encode(b'{"phone": "5550100"}') + b"\n",
    ),
    "base64 in a csv cell": (
        "text/csv",
        b"id,blob\n1," + base64.b64encode(b"phone: 5550100") + b"\n",
    ),
    "base64 in an html cell": (
        "text/html",
        b"<td>" + base64.b64encode(b'{"phone": "5550100"}') + b"</td>\n",
    ),
    "base64 in an event": (
        "text/event-stream",
        b"data: " + base64.b64encode(b"phone: 5550100") + b"\n\n",
    ),
    "percent-escaped json in a link": (
        "application/json",
        json.dumps({"next": "/c?filter=%7B%22phone%22%3A%225550100%22%7D"}).encode(),
    ),
    "percent-escaped json on a text line": (
        "text/plain",
        b"filter=%7B%22phone%22%3A%225550100%22%7D\n",
    ),
    "hex of text": ("application/json", json.dumps({"d": b"phone: 5550100".hex()}).encode()),
    "hex on a text line": ("text/plain", b"payload=" + b"phone: 5550100".hex().encode() + b"\n"),
    "names and values in turn": (
        "application/json",
        json.dumps({"HGETALL": ["name", "Ann", "phone", "+1 555 0100"]}).encode(),
    ),
    "csv of keys and values": ("text/csv", b"phone,5550100\nplan,gold\n"),
    "csv of labels and values": ("text/csv", b"Phone Number,+1 555 0100\nplan,gold\n"),
    "latin-1 domain": ("text/plain", "contact: ann.smith@exämple.com\n".encode("latin-1")),
    "latin-1 local part": ("text/plain", "contact: anné.smith@example.com\n".encode("latin-1")),
    "latin-1 in html": ("text/html", "<td>anné.smith@exämple.com</td>\n".encode("latin-1")),
    "latin-1 in csv": ("text/csv", "id,contact\n1,anné.smith@example.com\n".encode("latin-1")),
    "latin-1 in ndjson": (
        "application/x-ndjson",
        '{"n": "anné.smith@exämple.com"}\n'.encode("latin-1"),
    ),
    "latin-1 in an event stream": (
        "text/event-stream",
        "data: anné.smith@example.com\n\n".encode("latin-1"),
    ),
    "windows-1252 local part": ("text/plain", "contact: annŠsmith@example.com\n".encode("cp1252")),
    "latin-1 beside utf-8": (
        "text/plain",
        b"\xff " + "anné.smith@exämple.com\n".encode(),
    ),
    "gzip of latin-1 in base64": (
        "application/json",
        json.dumps(
            {"export": base64.b64encode(gzip.compress("ann.smith@exämple.com".encode("latin-1")))
             .decode()}
        ).encode(),
    ),
}  # fmt: skip


def _masked(content_type: str, body: bytes) -> bytes:
    kind, shown = answer_kind([content_type])
    mask = BodyMask(masker_for(READER_MASKS, b"k" * 32), kind, media=shown)
    return mask.feed(body) + mask.finish()


def _leaks(out: bytes) -> bool:
    texts = [out.decode("latin-1"), out.decode("utf-8", "replace")]
    try:
        texts.append(json.dumps(json.loads(out), ensure_ascii=False))
    except ValueError:
        pass
    if any(value in text for text in texts for value in HIDDEN):
        return True
    # (base64 or hex of it, a compressed file in base64)
    for text in texts:
        for run in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
            decoded = []
            with contextlib.suppress(ValueError):
                decoded.append(base64.b64decode(run + "=" * (-len(run) % 4)))
            with contextlib.suppress(ValueError, OSError, EOFError):
                decoded.append(gzip.decompress(decoded[0]))
            with contextlib.suppress(ValueError):
                decoded.append(bytes.fromhex(run))
            if any(value.encode() in data for data in decoded for value in HIDDEN):
                return True
    return False


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_a_value_the_masks_did_not_read_is_masked(case: str) -> None:
    try:
        out = _masked(*ANSWERS[case])
    except Unmaskable:
        return
    assert not _leaks(out), out


STAYS: dict[str, tuple[str, bytes]] = {
    "latin-1 prose": ("text/plain", "Café crème, 3 ¤ le matin\n".encode("latin-1")),
    "windows-1252 prose": (
        "text/plain",
        "\u201cQuoted\u201d \u2013 5 \u20ac \u2026 ok\n".encode("cp1252"),
    ),
    "letters in groups": ("text/plain", b"grades: a b c  d e f\n"),
    "spelt words naming nothing": ("text/plain", b"x-y-z a-b-c: 5550100\n"),
    "event ids naming nothing": ("text/event-stream", b"id: 42\nevent: message\ndata: {}\n\n"),
    "hex naming nothing": (
        "application/json",
        b'{"sha": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}',
    ),
    "a link with escapes naming nothing": (
        "application/json",
        b'{"next": "/c?page=2&q=foo%20bar", "t": "caf&eacute; cr&egrave;me"}',
    ),
    "a list of column names": ("application/json", b'["id", "phone", "email", "name"]'),
    "csv headers with digits": ("text/csv", b"id,q1_2024,total\n1,3,4\n"),
    "lines in a string naming nothing": (
        "application/json",
        b'{"note": "line one\\nline two", "n": 5550100}',
    ),
    "a label beside objects holding more": (
        "application/json",
        b'{"title": "Phone support", "items": [{"id": 5550100, "tags": {"a": {"b": 1}}}]}',
    ),
    "a pair labelled by words naming nothing": (
        "application/json",
        b'{"name": "Plan tier", "value": "5550100"}',
    ),
}


@pytest.mark.parametrize("case", sorted(STAYS))
def test_what_names_no_field_stays_as_it_came(case: str) -> None:
    content_type, body = STAYS[case]
    out = _masked(content_type, body)
    if content_type == "application/json":
        assert json.loads(out) == json.loads(body)
    else:
        assert out == body


def test_text_in_a_legacy_charset_is_masked_as_the_same_text_in_utf_8() -> None:
    text = "Zoé, ann.smith@exämple.com, née à Köln\n"
    out = _masked("text/plain", text.encode("latin-1"))
    assert out == _masked("text/plain", text.encode("utf-8")).decode().encode("latin-1")
    assert b"a***@" in out


# a header field named spelt out, or holding a value after a label spelt out (only the
# name as written was read, and a value's words as written)
HEADERS = {
    "X-P-H-O-N-E": "5550100",
    "P-H-O-N-E-Number": "5550100",
    "X-Data": "p-h-o-n-e n-u-m-b-e-r 5550100",
    "X-Note": "P H O N E: 5550100",
}


def test_a_header_named_or_labelled_otherwise_is_masked() -> None:
    out, _ = masked_headers(masker_for(READER_MASKS, b"k" * 32), list(HEADERS.items()))
    assert not [(n, v) for n, v in out if "5550100" in v], out
    kept = [("X-Request-Id", "abc-123"), ("X-A-B-C", "5550100")]
    assert masked_headers(masker_for(READER_MASKS, b"k" * 32), kept)[0] == kept


def _app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        content_type, body = ANSWERS[sorted(ANSWERS)[int(request.query["n"])]]
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def headers(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, headers=HEADERS)

    app = web.Application()
    app.router.add_get("/answer", answer)
    app.router.add_get("/headers", headers)
    return app


async def test_a_readers_answers_are_masked_end_to_end(tmp_path: Path) -> None:
    async with (
        app_upstream(_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = await readers_answers(s, client, sorted(ANSWERS))
        async with client.get(s.url + "/headers", headers=bearer(s, sub="hilda@example.com")) as r:
            assert r.status == 200
            shown = list(r.headers.items())
    assert not [(n, v) for n, v in shown if "5550100" in v], shown
    # (each answer relayed, or withheld as one the masks cannot read: 502)
    odd = {case: got[case] for case in got if got[case][0] not in (200, 502)}
    assert not odd, odd
    leaked = {
        case: out[:200] for case, (status, out) in got.items() if status == 200 and _leaks(out)
    }
    assert not leaked, leaked
    # (text in a legacy charset holding no value comes whole, in its bytes)
    assert got["latin-1 domain"] == (200, b"contact: a***@example.com\n")


async def test_a_part_of_an_answer_is_not_relayed_under_a_mask(tmp_path: Path) -> None:
    """An upstream answering 206 with a range it chose (the proxy asks for none under a
    mask): the bare value cut out of its field (`5550100`) was relayed as a text line the
    detectors find nothing in."""
    piece = b"HTTP/1.1 206 Partial Content\r\nContent-Type: text/plain\r\n"
    piece += b"Content-Range: bytes 10-16/40\r\nContent-Length: 7\r\n\r\n5550100"

    async def converse(reader: Any, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(piece)
        await writer.drain()
        await reader.read()

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        async with client.get(s.url + "/doc", headers=bearer(s)) as r:
            status, body = r.status, await r.read()
        pia = bearer(s, sub="pia@example.com", groups=("readonly", "pii-readers"))
        async with client.get(s.url + "/doc", headers=pia) as r:
            assert (r.status, await r.read()) == (206, b"5550100")
    assert status == 502 and b"5550100" not in body, body


# a field's other names, by which the masks name it in an answer (masking.FIELD_ALIASES)
ALIASED_FILTERS = ("mobile=like.555*", "pwd=like.h*", "tel=gt.5", "order=mobile.desc")


async def test_a_filter_on_a_field_by_another_name_needs_approval(tmp_path: Path) -> None:
    """An answer's `mobile` is masked as `phone`, but `?mobile=like.555*` was a plain read:
    which rows match (or come first) answered the masked value a guess at a time. The
    policy now reads a field's other names as it reads its own (http.rego
    http_field_names, data.portcullis.field_aliases)."""
    async with (
        http_stack(tmp_path) as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = {}
        for query in (*ALIASED_FILTERS, "plan=gold"):
            for _ in range(5):  # (asked again while the PDP has no evaluation worker free)
                async with client.get(s.url + "/echo/c?" + query, headers=bearer(s)) as r:
                    got[query] = r.status, await r.read()
                if got[query][0] != 403 or b"no evaluation worker" not in got[query][1]:
                    break
    assert {q: got[q][0] for q in ALIASED_FILTERS} == dict.fromkeys(ALIASED_FILTERS, 202), got
    assert got["plan=gold"][0] == 200


def test_the_policy_knows_every_other_name_the_masks_know() -> None:
    shipped = json.loads((Path(__file__).parent.parent / "rego" / "data.json").read_text())
    written = {
        " ".join(words): sorted({" ".join(alias) for alias in aliases if " ".join(alias).isascii()})
        for words, aliases in FIELD_ALIASES.items()
    }
    assert shipped["portcullis"]["field_aliases"] == written
