"""Probing the HTTP proxy as a reader (brief P1): what got past a guardrail, kept as tests.

Real PDP with the shipped policy, the HTTP proxy, the aiohttp upstream of http_upstream.py,
real clients (aiohttp). Each test is one way around a guardrail that worked before its fix:

- an approval bound to the request line and body only, so a header that changes the
  method the upstream acts on (X-HTTP-Method-Override) rode on an approval given for
  another method;
- a WebSocket's frames relayed unmasked to a reader, for whom every other answer is masked;
- a JSON answer under a media type that names JSON without ending in it
  (`application/x-amz-json-1.1`) passed unmasked, as binary;
- a `Range` header went upstream under a mask: a server that honours it (nginx, S3, a
  static file) answered a piece of the document — a bare value no field rule names, or
  `multipart/byteranges`, which passed as binary;
- the same record in another representation (`?format=csv|yaml|xml`, JSON pretty-printed
  as text/plain): only the detectors read it, so a value a field rule names and no
  detector finds (a phone number, an IBAN, a password) went as it was.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_upstream import INVOICE, http_stack
from pdp_harness import token
from test_http_probe_p5 import app_upstream

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
APPROVER = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
RAW = ("ann@example.com", "4111 1111 1111 1111")


def bearer(
    stack: Any, sub: str = "mallory@example.com", groups: tuple[str, ...] = ("readonly",)
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, sub, groups)}"}


async def test_an_approval_does_not_cover_a_method_override_it_was_not_shown(tmp_path):
    async with http_stack(tmp_path) as s:
        headers = {**bearer(s), "Content-Type": "application/json"}
        body = json.dumps({"amount": 12})
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.post(s.url + "/echo/pay", data=body, headers=headers) as r:
                assert r.status == 202
                approval_id = (await r.json(content_type=None))["approval_id"]
            await s.pdp.approvals.decide(approval_id, APPROVER, True, "a POST, fine")
            statuses = []
            for name in ("X-HTTP-Method-Override", "X-Method-Override", "X_HTTP_Method"):
                overridden = {**headers, name: "PUT"}
                async with client.post(s.url + "/echo/pay", data=body, headers=overridden) as r:
                    statuses.append(r.status)
            # the approved request itself still goes
            async with client.post(s.url + "/echo/pay", data=body, headers=headers) as r:
                approved = r.status
        # a request asking for approval with an override shows it to the approver
        pending = [r for r in s.pdp.approvals.requests.values() if r.state == "pending"]
    assert statuses == [202, 202, 202]
    assert approved == 200
    assert [r["method"] for r in s.upstream.seen] == ["POST"]
    shown = sorted(r.command.split("\n")[1] for r in pending)
    assert shown == ["x-http-method-override: PUT", "x-method-override: PUT", "x_http_method: PUT"]


async def test_a_readers_websocket_frames_are_masked(tmp_path):
    async with http_stack(tmp_path) as s, aiohttp.ClientSession(timeout=TIMEOUT) as client:
        async with client.ws_connect(s.url + "/ws", headers=bearer(s)) as ws:
            await ws.send_str("mail ann@example.com card 4111 1111 1111 1111")
            short = await ws.receive_str(timeout=10)
            await ws.send_str("plain words.")
            plain = await ws.receive_str(timeout=10)
            # ending in the credential's first letter: not held back for more (it stalled)
            await ws.send_str("plain words")
            ending = await ws.receive_str(timeout=10)
            # a message in more than one read of the upstream's socket
            await ws.send_str("ann@example.com " * 1000)
            large = await ws.receive_str(timeout=10)
        pii = bearer(s, "pia@example.com", ("readonly", "pii-readers"))
        async with client.ws_connect(s.url + "/ws", headers=pii) as ws:
            await ws.send_str("mail ann@example.com")
            unmasked = await ws.receive_str(timeout=10)
    for text in (short, large):
        assert not any(value in text for value in RAW), text[:200]
    assert "a***@example.com" in short and "**** **** **** 1111" in short
    assert large.startswith("echo: a***@example.com")
    assert plain == "echo: plain words."
    assert ending == "echo: plain words"
    assert unmasked == "echo: mail ann@example.com"


@pytest.mark.parametrize(
    "kind", ["application/x-amz-json-1.1", "application/x-json", "application/json-seq"]
)
async def test_json_under_another_json_media_type_is_not_passed_unmasked(tmp_path, kind):
    async with (
        http_stack(tmp_path) as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.get(s.url + "/represented", params={"type": kind}, headers=bearer(s)) as r,
    ):
        body = await r.text()
    assert not any(value in body for value in RAW), body


DOCUMENT = json.dumps(INVOICE).encode()


@contextlib.asynccontextmanager
async def ranged_upstream() -> AsyncIterator[int]:
    """A static JSON document served as a file server serves it: Range honoured (one range
    as 206 of the same type, several as multipart/byteranges)."""

    async def document(request: web.Request) -> web.Response:
        asked = request.headers.get("Range", "")
        if not asked.startswith("bytes="):
            return web.Response(body=DOCUMENT, content_type="application/json")
        spans = [
            (int(part.split("-")[0]), int(part.split("-")[1])) for part in asked[6:].split(",")
        ]
        total = len(DOCUMENT)
        if len(spans) == 1:
            start, end = spans[0]
            return web.Response(
                status=206,
                body=DOCUMENT[start : end + 1],
                headers={
                    "Content-Type": "application/json",
                    "Content-Range": f"bytes {start}-{end}/{total}",
                },
            )
        parts = b"".join(
            b"--cut\r\nContent-Type: application/json\r\n"
            + f"Content-Range: bytes {a}-{b}/{total}\r\n\r\n".encode()
            + DOCUMENT[a : b + 1]
            + b"\r\n"
            for a, b in spans
        )
        return web.Response(
            status=206,
            body=parts + b"--cut--\r\n",
            headers={"Content-Type": "multipart/byteranges; boundary=cut"},
        )

    async def customer(request: web.Request) -> web.Response:
        shown = request.query.get("format", "pretty")
        if shown == "csv":
            text = "id,name,phone,iban\r\n7,Ann,+1 555 0100,DE89 3704 0044 0532 0130 00\r\n"
            kind = "text/csv"
        elif shown == "yaml":
            text = "id: 7\nname: Ann\nphone: '+1 555 0100'\niban: DE89 3704 0044 0532 0130 00\n"
            kind = "application/yaml"
        elif shown == "xml":
            text = (
                "<customer>\n  <phone>+1 555 0100</phone>\n"
                '  <iban type="de">DE89 3704 0044 0532 0130 00</iban>\n</customer>\n'
            )
            kind = "application/xml"
        else:
            record = {"id": 7, "phone": "+1 555 0100", "iban": "DE89 3704 0044 0532 0130 00"}
            text, kind = json.dumps(record, indent=2), "text/plain"
        return web.Response(text=text, content_type=kind)

    app = web.Application()
    app.router.add_get("/invoice.json", document)
    app.router.add_get("/customer", customer)
    async with app_upstream(app) as port:
        yield port


def span_of(text: str) -> str:
    start = DOCUMENT.index(json.dumps(text).encode())
    return f"{start}-{start + len(json.dumps(text)) - 1}"


async def test_a_range_cannot_cut_a_value_out_from_under_its_mask(tmp_path):
    phone = str(INVOICE["customer"]["phone"])  # type: ignore[index]
    email = str(INVOICE["email"])
    async with (
        ranged_upstream() as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
    ):
        got = []
        for ranges in (span_of(phone), f"{span_of(email)},{span_of(phone)}"):
            headers = {**bearer(s), "Range": f"bytes={ranges}"}
            async with client.get(s.url + "/invoice.json", headers=headers) as r:
                got.append((r.status, await r.text()))
    for status, body in got:
        assert phone not in body and email not in body, body
        assert status in (200, 502), status


@pytest.mark.parametrize("shown", ["csv", "yaml", "xml", "pretty"])
async def test_a_field_rule_holds_in_every_text_representation(tmp_path, shown):
    async with (
        ranged_upstream() as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.get(s.url + "/customer", params={"format": shown}, headers=bearer(s)) as r,
    ):
        body = await r.text()
    assert r.status == 200
    assert "555 0100" not in body and "3704 0044" not in body, body
    assert "Ann" in body or shown != "csv", body  # what no rule names still reads
