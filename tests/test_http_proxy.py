"""The HTTP proxy end to end: real clients (curl, aiohttp, httpx) through the proxy to a real
upstream (an aiohttp app; nginx in test_http_nginx.py), against a real PDP running the
shipped policy (GET/HEAD for members, writes through approval, DELETE for dba only, JSON
fields named like sensitive columns masked).

Each test is named for the property it tries to break: the token never goes upstream, the
credential never comes back, a path is decided the way it is forwarded, a verdict's answer
is what the client gets, streams are not held, the PDP gone means 503 and nothing sent."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import httpx2 as httpx
import pytest
from http_upstream import INVOICE, SECRET, http_stack
from pdp_harness import token

from pdp.domain.recordings import session_events
from pdp.domain.timeline import build_timeline, render_text

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
APPROVER = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}


def bearer(
    stack: Any, sub: str = "ann@example.com", groups: tuple[str, ...] = ("readonly",)
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.config, sub, groups)}"}


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send bytes as they are; read until the proxy closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"connection: close" in out.lower():
                head, _, body = out.partition(b"\r\n\r\n")
                length = [
                    ln for ln in head.lower().split(b"\r\n") if ln.startswith(b"content-length:")
                ]
                if length and len(body) >= int(length[0].split(b":")[1]):
                    break
    except TimeoutError:
        pass
    writer.close()
    return out


def get(target: str, headers: dict[str, str]) -> bytes:
    """A GET as bytes on the wire, the connection closed after it."""
    auth = headers["Authorization"]
    head = f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
    return (head + "Connection: close\r\n\r\n").encode()


async def decisions(stack: Any, kind: str = "http.request") -> list[dict[str, Any]]:
    found = await stack.pdp.store.query(kind="decision")
    return [d.body for d in found if d.body.get("kind") == kind]


async def test_a_read_round_trips_masked_for_curl_aiohttp_and_httpx(tmp_path):
    async with http_stack(tmp_path) as s:
        headers = bearer(s)
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            client.get(s.url + "/v1/invoices/7", headers=headers) as r,
        ):
            assert r.status == 200
            body = await r.read()
            assert int(r.headers["Content-Length"]) == len(body)
        async with httpx.AsyncClient(timeout=60) as client:
            via_httpx = await client.get(s.url + "/v1/invoices/7", headers=headers)
        curl = await asyncio.create_subprocess_exec(
            "curl",
            "-sS",
            "-i",
            "-H",
            f"Authorization: {headers['Authorization']}",
            s.url + "/v1/invoices/7",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await curl.communicate()
    doc = json.loads(body)
    assert doc["email"] == "[REDACTED]" and doc["customer"]["card_number"] == "[REDACTED]"
    assert doc["customer"]["name"] == "Ann" and doc["note"] == "paid by a***@example.com"
    assert doc["items"][0]["token"] == "[REDACTED]"
    assert via_httpx.status_code == 200 and via_httpx.json() == doc
    assert out.startswith(b"HTTP/1.1 200") and json.loads(out.partition(b"\r\n\r\n")[2]) == doc
    assert INVOICE["email"].encode() not in body + via_httpx.content + out


async def test_the_token_is_stripped_and_the_credential_injected(tmp_path):
    async with http_stack(tmp_path) as s:
        jwt = bearer(s)["Authorization"].split()[1]
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            sent = {
                "Proxy-Authorization": f"Bearer {jwt}",
                "Authorization": "Basic Zm9vOmJhcg==",
                "X-Api-Key": "client-chosen-key",
                "X-Forwarded-For": "10.9.9.9",
                "Forwarded": "for=10.9.9.9",
                "Connection": "keep-alive, X-Drop-Me",
                "X-Drop-Me": "hop",
            }
            async with client.get(s.url + "/echo/a", headers=sent) as r:
                assert r.status == 200
        seen = s.upstream.seen[-1]
    headers = {n.decode().lower(): v.decode() for n, v in seen["headers"]}
    names = [n.decode().lower() for n, _ in seen["headers"]]
    assert "authorization" not in headers and "proxy-authorization" not in headers
    assert all(jwt not in v for v in headers.values())
    assert headers["x-api-key"] == SECRET and names.count("x-api-key") == 1
    assert headers["x-forwarded-for"] == "127.0.0.1" and "10.9.9.9" not in headers["forwarded"]
    assert "x-drop-me" not in headers


async def test_a_path_is_decided_as_it_is_forwarded(tmp_path):
    async with http_stack(tmp_path) as s:
        headers = bearer(s)
        answers = {}
        targets = (
            "/a/%2e%2e/echo/x",
            "//echo//y/./z/..",
            "/echo/%7Euser",
            "/echo%2f..%2fadmin",
            "/echo/..;/admin",
            "/echo/%5c..%5cadmin",
        )
        for target in targets:
            answers[target] = await raw_exchange(s.proxy.port, get(target, headers))
        seen = [r["raw_path"] for r in s.upstream.seen]
        # the policy's reason names input.command.http.path as the PDP derived it
        decided = [d["reasons"][0].split(" ")[1] for d in await decisions(s)]
    assert seen == ["/echo/x", "/echo/y/", "/echo/~user"]
    assert decided == seen
    for refused in ("/echo%2f..%2fadmin", "/echo/..;/admin", "/echo/%5c..%5cadmin"):
        assert answers[refused].startswith(b"HTTP/1.1 400"), answers[refused][:200]


async def test_delete_is_denied_403_problem_and_nothing_is_forwarded(tmp_path):
    async with http_stack(tmp_path) as s:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.delete(s.url + "/echo/1", headers=bearer(s)) as r:
                status, kind, problem = (
                    r.status,
                    r.headers["Content-Type"],
                    await r.json(content_type=None),
                )
            async with client.delete(
                s.url + "/echo/1", headers=bearer(s, "dee@example.com", ("dba",))
            ) as r:
                dba_status = r.status
        seen = [r["method"] for r in s.upstream.seen]
    assert status == 403 and kind == "application/problem+json"
    assert problem["reasons"] == ["DELETE is reserved to dba"] and problem["decision_id"]
    assert dba_status == 200 and seen == ["DELETE"]


async def test_non_members_and_bad_tokens_are_refused(tmp_path):
    async with http_stack(tmp_path) as s:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.get(s.url + "/echo") as r:
                missing = r.status, r.headers.get("WWW-Authenticate")
            async with client.get(s.url + "/echo", headers={"Authorization": "Bearer nope"}) as r:
                forged = r.status
            async with client.get(
                s.url + "/echo", headers=bearer(s, "eve@example.com", ("marketing",))
            ) as r:
                outsider = r.status, await r.json(content_type=None)
        assert s.upstream.seen == []
    assert missing == (401, "Bearer") and forged == 401
    assert outsider[0] == 403 and outsider[1]["decision_id"]


async def test_a_write_waits_for_approval_then_goes_once_approved(tmp_path):
    async with http_stack(tmp_path) as s:
        headers = {**bearer(s), "Content-Type": "application/json"}
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            body = json.dumps({"amount": 12})
            async with client.post(s.url + "/echo/pay", data=body, headers=headers) as r:
                assert r.status == 202
                location, retry = r.headers["Location"], r.headers["Retry-After"]
                pending = await r.json(content_type=None)
            approval_id = pending["approval_id"]
            async with client.get(s.url + location, headers=headers) as r:
                polled = await r.json()
            assert s.upstream.seen == []
            # another body is another command: not what is being approved
            await s.pdp.approvals.decide(approval_id, APPROVER, True, "ok")
            async with client.post(
                s.url + "/echo/pay", data=json.dumps({"amount": 9999}), headers=headers
            ) as r:
                other = r.status
            async with client.get(s.url + location, headers=headers) as r:
                polled_after = await r.json()
            async with client.post(s.url + "/echo/pay", data=body, headers=headers) as r:
                approved = r.status, await r.json()
        request = s.pdp.approvals.requests[approval_id]
    assert retry.isdigit() and polled["approval"]["state"] == "pending"
    assert polled_after["approval"]["state"] == "approved"
    assert other == 202
    assert approved[0] == 200 and approved[1]["body"] == body
    # (the Content-Type, which says how the body is read, is bound and shown too)
    assert request.command.startswith(
        "POST /echo/pay HTTP/1.1\ncontent-type: application/json\nbody: 14 bytes sha256:"
    )
    assert [r["method"] for r in s.upstream.seen] == ["POST"]


async def test_prefer_wait_holds_until_a_person_decides(tmp_path):
    async with http_stack(tmp_path) as s:
        headers = {**bearer(s), "Prefer": "wait=60"}
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:

            async def put() -> tuple[int, Any]:
                async with client.put(s.url + "/echo/held", data=b"x", headers=headers) as r:
                    return r.status, await r.read()

            held = asyncio.ensure_future(put())
            while not any(r.state == "pending" for r in s.pdp.approvals.requests.values()):
                await asyncio.sleep(0.05)
            assert not held.done() and s.upstream.seen == []
            (request,) = s.pdp.approvals.requests.values()
            await s.pdp.approvals.decide(request.id, APPROVER, True, "fine")
            status, _ = await held
            async with client.patch(
                s.url + "/echo/x", data=b"y", headers={**bearer(s), "Prefer": "wait=1"}
            ) as r:
                ran_out = r.status, r.headers.get("Preference-Applied")
            denied_later = [r for r in s.pdp.approvals.requests.values() if r.state == "pending"]
            await s.pdp.approvals.decide(denied_later[0].id, {**APPROVER}, False, "no")
            async with client.patch(
                s.url + "/echo/x", data=b"y", headers={**bearer(s), "Prefer": "wait=5"}
            ) as r:
                after_denial = r.status
    assert status == 200
    assert ran_out == (202, "wait=1")
    assert after_denial == 202  # a denied request is not reused: the same command asks anew


async def test_streams_are_masked_per_record_and_never_held_whole(tmp_path):
    async with http_stack(tmp_path) as s:
        headers = bearer(s)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.get(s.url + "/stream/ndjson", headers=headers) as r:
                lines = (await r.text()).strip().split("\n")
                ndjson_framing = r.headers.get("Transfer-Encoding")
            async with client.get(s.url + "/stream/sse", headers=headers) as r:
                events = (await r.text()).strip().split("\n\n")
            async with client.get(s.url + "/gated?type=text/event-stream", headers=headers) as r:
                first = await r.content.readuntil(b"\n\n")
                s.upstream.gate.set()
                rest = await r.read()
            s.upstream.gate.clear()
            # a binary stream is never held whole either (unmasked: a reader's is withheld)
            pii = bearer(s, "pia@example.com", ("readonly", "pii-readers"))
            async with client.get(s.url + "/gated", headers=pii) as r:
                start = await r.content.readexactly(300_000)
                s.upstream.gate.set()
                tail = await r.read()
            async with client.get(s.url + "/page", headers=headers) as r:
                page = await r.text()
    assert ndjson_framing == "chunked"
    assert [json.loads(line)["email"] for line in lines] == ["[REDACTED]"] * 3
    assert all('"ssn":"[REDACTED]"' in e and "a***@example.com" in e for e in events[:3])
    assert events[3] == "data: plain card **** **** **** 1111"
    assert first == b'data: {"email":"[REDACTED]"}\n\n' and b'"n":2' in rest
    assert start == b"a" * 300_000 and tail == b"b" * 10
    assert page == "<p>a***@example.com</p>"  # other text: by the detectors


async def test_a_large_download_streams_through(tmp_path):
    # (a reader's answers are masked, and a download is nothing the masker reads: withheld,
    # test_http_probe_p2; a pii-reader's is streamed as it comes)
    pii = ("readonly", "pii-readers")
    async with http_stack(tmp_path) as s:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            client.get(s.url + "/download?mb=24", headers=bearer(s, groups=pii)) as r,
        ):
            size = 0
            async for chunk in r.content.iter_any():
                size += len(chunk)
            length = int(r.headers["Content-Length"])
        await s.proxy.stop()
        (recorded,) = [e for e in await session_events(s.pdp.store) if e["type"] == "command"]
    assert size == length == 24 * 1024 * 1024
    assert recorded["details"]["bytes"] == size


async def test_the_credential_never_reaches_the_client_the_logs_or_the_recordings(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with http_stack(tmp_path) as s:
        headers = bearer(s)
        got = b""
        for target in ("/v1/invoices/1", "/echo/x", "/leak", "/stream/sse", "/nope"):
            got += await raw_exchange(s.proxy.port, get(target, headers))
        async with httpx.AsyncClient(timeout=60) as client:
            leak = None
            try:
                leak = await client.get(s.url + "/leak", headers=headers)
            except httpx.HTTPError:
                pass
        await s.proxy.stop()
        store = s.pdp.store
        everything = json.dumps([r.body for r in await store.query()], default=str)
        events = json.dumps(await session_events(store))
        closes = [c.body for c in await store.query(kind="session.close")]
    assert got.count(b"HTTP/1.1 200") == 3
    for haystack in (got, everything.encode(), events.encode(), caplog.text.encode()):
        assert SECRET.encode() not in haystack
        assert SECRET[:12].encode() not in haystack
    assert leak is None or SECRET not in leak.text
    assert "credential_in_response" in events
    assert all(c["summary"].get("credential_exposed") in (0, None) for c in closes)


async def test_one_session_per_token_closed_when_idle(tmp_path):
    async with http_stack(tmp_path, session_idle_seconds=0.3) as s:
        ann, bob = bearer(s), bearer(s, "bob@example.com")
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            for h in (ann, ann, bob, ann):
                async with client.get(s.url + "/echo", headers=h) as r:
                    assert r.status == 200
        opened = await s.pdp.store.query(kind="session.open")
        assert len(opened) == 2
        closes: list[Any] = []
        while len(closes) < 2:
            await asyncio.sleep(0.1)
            closes = await s.pdp.store.query(kind="session.close")
    assert {c.body["reason"] for c in closes} == {"idle_timeout"}


async def test_a_repeated_read_is_reused_and_a_write_is_decided_each_time(tmp_path):
    """A GET's verdict is reused for the exact same request of the same session (the
    shipped policy's cache hint); another query, another person or a write asks the PDP."""
    async with http_stack(tmp_path) as s:
        ann, bob = bearer(s), bearer(s, "bob@example.com")
        dee = bearer(s, "dee@example.com", ("dba",))
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            for headers, target in (
                (ann, "/echo?a=1"),
                (ann, "/echo?a=1"),
                (ann, "/echo?a=2"),
                (bob, "/echo?a=1"),
                (ann, "/echo?a=1"),
            ):
                async with client.get(s.url + target, headers=headers) as r:
                    assert r.status == 200
                    await r.read()
            for _ in range(2):
                async with client.post(s.url + "/echo", headers=dee, json={"x": 1}) as r:
                    assert r.status == 200
                    await r.read()
        raws = sorted(d["raw"].split("\n")[0] for d in await decisions(s))
        upstream = [r["raw_path"] for r in s.upstream.seen]
    # one decision per distinct (session, request): ann's repeats were answered from it
    assert [r for r in raws if r.startswith("GET")] == sorted(
        ["GET /echo?a=1 HTTP/1.1", "GET /echo?a=2 HTTP/1.1", "GET /echo?a=1 HTTP/1.1"]
    ), raws
    assert len([r for r in raws if r.startswith("POST")]) == 2
    assert len(upstream) == 7  # every request went upstream, cached or not


async def test_the_pdp_gone_means_503_and_nothing_forwarded(tmp_path):
    async with http_stack(tmp_path) as s:
        headers = bearer(s)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.get(s.url + "/echo/before", headers=headers) as r:
                assert r.status == 200
            await s.pdp.stop(grace=0)
            async with client.get(s.url + "/echo/during", headers=headers) as r:
                during = r.status, r.headers["Content-Type"]
            async with client.get(s.url + "/echo/new", headers=bearer(s, "new@example.com")) as r:
                new_session = r.status
        seen = [r["raw_path"] for r in s.upstream.seen]
    assert during == (503, "application/problem+json") and new_session == 503
    assert seen == ["/echo/before"]


ATTACKS = [
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
    b"{auth}\r\n\r\n0\r\n\r\nGET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n{auth}\r\n"
    b"\r\nGET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\n{auth}\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n",
    b"GET http://elsewhere.example/echo HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n{auth}\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\n{auth}\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n",
    b"G\x00T /echo HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{auth}\r\n\r\n"
    b"1g\r\nx\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n{auth}\r\n\r\n0\r\n\r\n",
]


async def test_smuggling_and_malformed_requests_get_400_and_nothing_forwarded(tmp_path):
    """Each attack on a connection of its own, against one running proxy."""
    async with http_stack(tmp_path) as s:
        auth = b"Authorization: " + bearer(s, "dee@example.com", ("dba",))["Authorization"].encode()
        for attack in ATTACKS:
            answer = await raw_exchange(s.proxy.port, attack.replace(b"{auth}", auth))
            assert answer.split(b" ")[1] in (b"400", b"431", b"405"), (attack[:60], answer[:100])
            assert answer.count(b"HTTP/1.1") == 1
        assert s.upstream.seen == []
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            client.get(s.url + "/echo", headers=bearer(s)) as r,
        ):
            assert r.status == 200  # the proxy is still up


async def test_a_websocket_is_decided_at_the_upgrade_and_recorded_per_frame(tmp_path):
    async with http_stack(tmp_path) as s:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.ws_connect(s.url + "/ws", headers=bearer(s)) as ws:
                await ws.send_str("hello")
                reply = await ws.receive_str()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(
                    s.url + "/ws", headers=bearer(s, "eve@example.com", ("marketing",))
                )
        await s.proxy.stop()
        upgrades = await decisions(s, "http.upgrade")
        events = await session_events(s.pdp.store)
    assert reply == "echo: hello" and refused.value.status == 403
    assert upgrades[0]["verdict"] in ("allow", "mask")
    frames = [e["details"] for e in events if e.get("details", {}).get("kind") == "http.frame"]
    assert {"direction": "client", "frame": "text", "text": "hello"}.items() <= frames[0].items()
    assert any(f["direction"] == "server" and f["text"] == "echo: hello" for f in frames)


async def test_a_readers_websocket_needs_approval_unless_its_path_is_declared_read_only(tmp_path):
    """A WebSocket's frames are not decided one by one: a reader's socket could carry writes
    (a GraphQL mutation) that as requests need approval. Undeclared, it needs approval (the
    upgrade answered 202, nothing upstream); a dba's opens."""
    async with http_stack(tmp_path, labels={}) as s:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            with pytest.raises(aiohttp.WSServerHandshakeError) as asked:
                await client.ws_connect(s.url + "/ws", headers=bearer(s))
            async with client.ws_connect(
                s.url + "/ws", headers=bearer(s, "dan@example.com", ("dba", "pii-readers"))
            ) as ws:
                await ws.send_str("hello")
                reply = await ws.receive_str()
        upgrades = await decisions(s, "http.upgrade")
    assert asked.value.status == 202 and reply == "echo: hello"
    assert [u["verdict"] for u in upgrades] == ["require_approval", "allow"]


async def test_replay_renders_an_agents_requests(tmp_path):
    async with http_stack(tmp_path) as s:
        ann = bearer(s)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            for method, path in (
                ("GET", "/v1/invoices/3"),
                ("DELETE", "/echo/3"),
                ("POST", "/echo"),
            ):
                body = b'{"a": 1}' if method == "POST" else None
                async with client.request(method, s.url + path, headers=ann, data=body) as r:
                    await r.read()
        await s.proxy.stop()
        (opened,) = await s.pdp.store.query(kind="session.open")
        sid, store = opened.body["session_id"], s.pdp.store
        (closed,) = await store.query(kind="session.close", session_id=sid)
        timeline = build_timeline(
            opened,
            closed,
            await store.query(kind="session.events", session_id=sid),
            await store.query(kind="decision", session_id=sid),
        )
    text = render_text(timeline)
    assert "GET /v1/invoices/3 HTTP/1.1  [mask" in text and "→ HTTP 200" in text
    assert "DELETE /echo/3 HTTP/1.1  [deny" in text and "→ HTTP 403" in text
    assert "POST /echo HTTP/1.1  (+8 B body)  [require_approval" in text and "→ HTTP 202" in text
    assert "\\n" not in text  # one line per request
    assert "masked field:" in text or "field:email" in text


async def test_credential_as_a_query_parameter(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    credential = {"provider": "static", "query": "api_key", "value": SECRET}
    async with http_stack(tmp_path, {"key_query": "api_key"}, credentials=credential) as s:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            # (a dba in pii-readers: for anyone masked, a query naming the masked field
            # api_key needs approval, http.rego)
            client.get(
                s.url + "/echo/q?a=1&api_key=mine&api%5Fkey=mine2&api_key",
                headers=bearer(s, groups=("dba", "pii-readers")),
            ) as r,
        ):
            status, doc = r.status, await r.json()
        (seen,) = s.upstream.seen
    assert status == 200 and seen["raw_path"].endswith(f"a=1&api_key={SECRET}")
    assert doc["path"] == "/echo/q?a=1&api_key=KEY"  # (the echo's own stand-in)
    # the upstream's own access log (aiohttp.access, in this process) does name it
    proxy_side = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    assert all(SECRET not in line for line in proxy_side)


async def test_uploads_chunked_or_expecting_100_continue_and_head(tmp_path):
    async with http_stack(tmp_path) as s:
        dba = bearer(s, "dee@example.com", ("dba",))

        async def parts():
            for n in range(3):
                yield b"part%d-" % n

        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.post(s.url + "/echo/chunked", data=parts(), headers=dba) as r:
                chunked = r.status, (await r.json())["body"]
            async with client.head(s.url + "/v1/invoices/1", headers=dba) as r:
                head = r.status, await r.read()
        upload = tmp_path / "upload.bin"
        upload.write_bytes(b"z" * (2 * 1024 * 1024))
        curl = await asyncio.create_subprocess_exec(
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-H",
            f"Authorization: {dba['Authorization']}",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            f"@{upload}",
            s.url + "/echo/upload",
            stdout=asyncio.subprocess.PIPE,
        )
        code, _ = await curl.communicate()
        sizes = [len(r["body"]) for r in s.upstream.seen if r["method"] == "PUT"]
    assert chunked == (200, "part0-part1-part2-")
    assert head == (200, b"")
    assert code == b"200" and sizes == [2 * 1024 * 1024]


async def test_an_approval_is_for_its_requester_only(tmp_path):
    async with http_stack(tmp_path) as s:
        ann, bob = bearer(s), bearer(s, "bob@example.com")
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.patch(s.url + "/echo/7", data=b"x", headers=ann) as r:
                approval_id = (await r.json(content_type=None))["approval_id"]
            await s.pdp.approvals.decide(approval_id, APPROVER, True, "ok for ann")
            async with client.patch(s.url + "/echo/7", data=b"x", headers=bob) as r:
                bob_status = r.status
            async with client.get(
                s.url + "/.well-known/portcullis/approvals/" + approval_id, headers=bob
            ) as r:
                bob_poll = r.status
            async with client.patch(s.url + "/echo/7", data=b"x", headers=ann) as r:
                ann_status = r.status
    assert bob_status == 202 and bob_poll == 404 and ann_status == 200


async def test_a_poll_url_answers_the_token_it_was_made_for_only(tmp_path):
    """The 202's Location is bound to the session and token that made the request: the
    same URL with another token (even the same person's other token), without its binding
    or with a changed one is a 404 that says nothing of the request."""
    async with http_stack(tmp_path) as s:
        ann, bob = bearer(s), bearer(s, "bob@example.com")
        ann_again = {
            "Authorization": f"Bearer {token(s.config, 'ann@example.com', ('readonly',), 3500)}"
        }
        assert ann_again != ann
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.patch(s.url + "/echo/7", data=b"x", headers=ann) as r:
                assert r.status == 202
                location = r.headers["Location"]
            path, _, bound = location.partition("?for=")
            assert bound
            polls = {}
            for name, url, headers in (
                ("ann", location, ann),
                ("bob", location, bob),
                ("ann's other token", location, ann_again),
                ("unbound", path, ann),
                ("changed", path + "?for=" + ("0" * len(bound)), ann),
                ("another's binding", path + "?for=" + bound + "&for=" + bound, ann),
            ):
                async with client.get(s.url + url, headers=headers) as r:
                    polls[name] = r.status, await r.text()
    assert polls.pop("ann")[0] == 200
    approval_id = path.rsplit("/", 1)[1]
    for name, (status, text) in polls.items():
        assert status == 404, name
        assert "pending" not in text and "ann@example.com" not in text
    assert approval_id not in "".join(text for _, text in polls.values())
    assert s.upstream.seen == []


async def test_a_session_the_pdp_ended_is_opened_anew(tmp_path):
    async with http_stack(tmp_path) as s:
        ann = bearer(s)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.get(s.url + "/echo/1", headers=ann) as r:
                assert r.status == 200
            (first,) = list(s.proxy.sessions.values())
            ended = await s.pdp.sessions.find(first.session.id)
            await s.pdp.reaper.reap(ended, "proxy_lost")  # as if its proxy had gone silent
            async with client.get(s.url + "/echo/2", headers=ann) as r:
                again = r.status
        opened = await s.pdp.store.query(kind="session.open")
        (second,) = list(s.proxy.sessions.values())
    assert again == 200 and len(opened) == 2 and second is not first
    assert [r["raw_path"] for r in s.upstream.seen] == ["/echo/1", "/echo/2"]


async def test_an_http_1_0_client_gets_streams_close_delimited(tmp_path):
    async with http_stack(tmp_path) as s:
        auth = bearer(s)["Authorization"].encode()
        out = await raw_exchange(
            s.proxy.port, b"GET /stream/ndjson HTTP/1.0\r\nAuthorization: " + auth + b"\r\n\r\n"
        )
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.lower().count(b"connection: close") == 1
    assert b"transfer-encoding" not in head.lower()
    assert [json.loads(line)["email"] for line in body.split()] == ["[REDACTED]"] * 3


async def test_an_approver_decides_through_the_pdps_http_api(tmp_path):
    async with http_stack(tmp_path, pdp_http=True) as s:
        ann = bearer(s)
        sam = {"Authorization": f"Bearer {token(s.config, 'sam@example.com', ('security',))}"}
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            async with client.put(s.url + "/echo/9", data=b"v", headers=ann) as r:
                pending = await r.json(content_type=None)
            async with client.post(
                pending["approve_api"] + "/approve", json={"reason": "checked"}, headers=ann
            ) as r:
                by_requester = r.status
            async with client.post(
                pending["approve_api"] + "/approve", json={"reason": "checked"}, headers=sam
            ) as r:
                by_approver = r.status
            async with client.put(s.url + "/echo/9", data=b"v", headers=ann) as r:
                retried = r.status
    assert pending["approve_api"].endswith("/v1/approvals/" + pending["approval_id"])
    assert by_requester == 403 and by_approver == 200 and retried == 200
