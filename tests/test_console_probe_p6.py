"""The console probed again (p6): a reader's own session replayed, and signing out over TLS.

Each test names the attack it tries; they run against a real PDP (dev issuer sign-in,
code + PKCE), with the session's events sent as a proxy records them (RecordEvents).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from html import unescape
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from pdp_harness import free_port, open_session, pdp_config, pdp_stub, running_pdp
from pdp_harness import token as dev_token
from test_console_probe_p1 import _http, sign_in

from pdp.console.app import CSP
from portcullis.v1 import pdp_pb2


@pytest.fixture
async def pdp(tmp_path):
    port = free_port()
    config = pdp_config(tmp_path, session_timeout=600)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    async with running_pdp(config) as app:
        app.base = f"http://127.0.0.1:{port}"
        yield app


async def _recorded(pdp, who: str, events: list[dict]) -> str:
    """A session of `who` (a reader) whose proxy recorded `events`: its id."""
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, dev_token(pdp.config, who, ("readonly",)))
        for at in range(0, len(events), 10):  # under gRPC's 4 MiB a message
            batch = json.dumps(events[at : at + 10])
            await stub.RecordEvents(
                pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events_json=batch)
            )
    return opened.session_id


def _statement(text: str) -> dict:
    details = {"tag": "SELECT 1", "rows": 1, "protocol": "simple"}
    return {"time": time.time(), "direction": "client", "type": "command", "verdict": "allow",
            "command": text, "details": details}  # fmt: skip


async def test_a_reader_s_own_long_session_is_replayed_in_bounded_pages(pdp):
    """Attack (reader token, then the console on their own session): statements of up to
    64 KB (what a proxy records of one) whose literal is words mixing scripts, each one
    marked and its right-to-left run isolated: the replay page drew every entry's text
    whole, about 22 characters of markup per character, and 500 entries a page. 500
    statements of 60 KB had the PDP build one page past 4.6 GB of memory and growing
    (killed); a reader may load their own replay, two at once. Each entry's client text
    is cut to ENTRY_CHARS on the page now (27 MB and 310 MB of memory for those 500),
    saying how much it leaves out, with a link to that entry alone, drawn whole."""
    words = "\u05d0a\u043e " * 4_000
    sid = await _recorded(pdp, "rita@example.com", [
        _statement(f"SELECT '{n} {words} end-of-{n}'") for n in range(20)
    ])  # fmt: skip
    async with _http() as http:
        await sign_in(http, pdp.base, "rita@example.com", "readonly")
        async with http.get(f"{pdp.base}/console/sessions/{sid}") as r:
            assert r.status == 200
            page = await r.text()
        assert len(page) < 2_000_000, len(page)  # was 8,651,252
        assert "end-of-7" not in page and "more characters]" in page
        links = re.findall(r'href="(/console/sessions/[^"]*\?entry=\d+)"', page)
        assert len(links) == 20, links
        entry = unescape(links[7])
        async with http.get(f"{pdp.base}{entry}") as r:
            assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
            whole = await r.text()
        assert "end-of-7" in whole and "more characters]" not in whole
        assert "end-of-6" not in whole and "end-of-8" not in whole
    async with _http() as http:  # nobody else's: not even one entry
        await sign_in(http, pdp.base, "bob@example.com", "readonly")
        async with http.get(f"{pdp.base}{entry}") as r:
            assert r.status == 404 and "end-of-7" not in await r.text()


async def test_a_request_path_does_not_read_as_the_answer(pdp):
    """Attack (reader token, HTTP): `GET /x; status 200` answered 403. The timeline's
    Result cell listed the client's method and path among the answer's facts, `path /x;
    status 200; status 403`: the auditor read a status the proxy never gave. The request
    line is in the Command column; the Result cell holds what the answer was."""
    path = "/x; status 200; 100 bytes"
    sid = await _recorded(pdp, "rita@example.com", [{
        "time": time.time(), "direction": "client", "type": "command", "verdict": "deny",
        "command": f"GET {path}",
        "details": {"kind": "http.request", "method": "GET", "path": path, "status": 403,
                    "bytes": 0, "request_bytes": 0},
    }])  # fmt: skip
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor")
        async with http.get(f"{pdp.base}/console/sessions/{sid}") as r:
            page = unescape(await r.text())
    assert f"GET {path}" in page  # the command, as the client sent it
    row = page[page.index(f"GET {path}") :]
    result = row[: row.index("</tr>")]
    assert "status 403" in result
    assert "status 200" not in result.replace(f"GET {path}", ""), result


async def test_signing_out_over_tls_clears_the_host_cookie(tmp_path):
    """Attack (someone at the browser after its person signed out): over TLS the session
    cookie is __Host-portcullis_console, and the sign-out answered its deletion without
    Secure, which a browser refuses for a __Host- cookie: the cookie of the closed session
    stayed in the browser. The deletion is Secure, Path=/ now."""
    from pdp.app import Parts
    from pdp.console.settings import ConsoleSettings

    port = free_port()
    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    base = f"http://127.0.0.1:{port}"
    settings = ConsoleSettings(public_url="https://localhost")
    async with running_pdp(config, Parts(console=settings)), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/console/login", allow_redirects=False) as r:
            login = r.headers["Set-Cookie"].split(";")[0]
            query = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}
        query.update(subject="sam@example.com", groups="security")
        async with http.post(f"{base}/console/dev-issuer/authorize", data=query,
                             allow_redirects=False) as r:  # fmt: skip
            callback = urlsplit(r.headers["Location"])
        async with http.get(f"{base}{callback.path}?{callback.query}",
                            headers={"Cookie": login}, allow_redirects=False) as r:  # fmt: skip
            session = next(c for c in r.headers.getall("Set-Cookie")
                           if c.startswith("__Host-portcullis_console="))  # fmt: skip
        cookie = session.split(";")[0]
        async with http.get(f"{base}/console/approvals/", headers={"Cookie": cookie}) as r:
            csrf = unescape(re.search(r'name="csrf-token" content="([^"]*)"', await r.text())[1])
        async with http.post(f"{base}/console/logout", data={"csrf": csrf},
                             headers={"Cookie": cookie}, allow_redirects=False) as r:  # fmt: skip
            assert r.status == 303
            gone = next(c for c in r.headers.getall("Set-Cookie")
                        if c.startswith("__Host-portcullis_console="))  # fmt: skip
        assert "Max-Age=0" in gone and "Secure" in gone and "Path=/" in gone, gone
        async with http.get(f"{base}/console/approvals/", headers={"Cookie": cookie},
                            allow_redirects=False) as r:  # fmt: skip
            assert r.status == 302  # and the session is closed at the PDP
