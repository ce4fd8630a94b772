"""The console probed again (p5): a reader's long text in every approver's inbox, a
recorded terminal's OSC string, a login cookie planted by a sibling site, a request's
outcome told to anyone who names it, and the answers to a fault.

Each test names the attack it tries; they run against a real PDP (dev issuer sign-in,
code + PKCE), Chromium for the player, no mocks.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from pdp_harness import decide_sql, free_port, open_session, pdp_config, pdp_stub, running_pdp
from pdp_harness import token as dev_token
from test_console_probe_p1 import _browser_page, _http, _recorded_session, sign_in

from pdp.console.app import CSP
from portcullis.v1 import pdp_pb2


@pytest.fixture
async def pdp(tmp_path):
    """A PDP serving its console at `pdp.base`; its sessions live while a test reads (a
    request of a session that ended is withdrawn)."""
    port = free_port()
    config = pdp_config(tmp_path, session_timeout=600)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    async with running_pdp(config) as app:
        app.base = f"http://127.0.0.1:{port}"
        yield app


async def _waiting(pdp, who: str, sql: str) -> str:
    """`sql` asked by `who` (a reader) through the PDP as a proxy asks: its approval id."""
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, dev_token(pdp.config, who, ("readonly",)))
        asked = await decide_sql(stub, opened.session_id, sql)
    assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id, asked
    return asked.approval_id


async def test_a_long_request_is_read_and_decided_whole_not_in_every_inbox(pdp):
    """Attack (reader token): one DELETE whose literal is a megabyte of words mixing
    scripts (`\u05d0a\u043e`: each marked, each right-to-left run isolated). Every approver's
    inbox drew it in full on every load and on every change its event stream announced:
    22 MB of markup per request, 12 s of the PDP's event loop per load (its /healthz
    waited as long, and every decision with it), and a reader may keep 16 such requests
    waiting. A card now shows the first CARD_CHARS characters, says how much it leaves
    out, and offers no decision on a part: the whole request is read, and decided, on its
    own page (drawn in a worker thread), which only those who may see it can open."""
    words = "\u05d0a\u043e " * 50_000
    sql = f"DELETE FROM orders WHERE note = '{words}the-last-words'"
    approval_id = await _waiting(pdp, "rita@example.com", sql)
    async with _http() as http:
        csrf = await sign_in(http, pdp.base, "sam@example.com", "security")
        for path in ("/console/approvals/list", "/console/approvals/"):
            async with http.get(f"{pdp.base}{path}") as r:
                card = await r.text()
            assert approval_id in card, path
            assert len(card) < 1_000_000, (path, len(card))  # was 5,401,635
            assert "the-last-words" not in card
            assert "more characters]" in card and "the whole request" in card
            assert f'action="/console/approvals/{approval_id}/decide"' not in card
            assert f'href="/console/approvals/{approval_id}"' in card
        async with http.get(f"{pdp.base}/console/approvals/{approval_id}") as r:
            assert r.status == 200
            assert r.headers["Content-Security-Policy"] == CSP
            whole = await r.text()
        assert "the-last-words" in whole and "more characters]" not in whole
        assert f'action="/console/approvals/{approval_id}/decide"' in whole
        async with http.post(f"{pdp.base}/console/approvals/{approval_id}/decide",
                             data={"csrf": csrf, "action": "deny", "reason": "read it all"},
                             allow_redirects=False) as r:  # fmt: skip
            assert r.status == 303, await r.text()
    assert pdp.approvals.requests[approval_id].state == "denied"
    async with _http() as http:  # a reader who may not decide it: no such request
        await sign_in(http, pdp.base, "bob@example.com", "readonly")
        async with http.get(f"{pdp.base}/console/approvals/{approval_id}") as r:
            assert r.status == 404
            assert "the-last-words" not in await r.text()


async def test_a_short_request_is_decided_from_its_card_as_before(pdp):
    """The usual request is untouched: drawn whole on the card, with its buttons."""
    approval_id = await _waiting(pdp, "rita@example.com", "DELETE FROM orders WHERE id = 7")
    async with _http() as http:
        await sign_in(http, pdp.base, "sam@example.com", "security")
        async with http.get(f"{pdp.base}/console/approvals/list") as r:
            card = await r.text()
    assert "DELETE FROM orders WHERE id = 7" in card and "more characters]" not in card
    assert f'action="/console/approvals/{approval_id}/decide"' in card


async def test_an_osc_string_hides_no_output_from_the_player(pdp):
    """Attack (a recorded shell): `printf '\\e]0;'; cat /etc/shadow`. The browser player
    dropped an OSC string up to its BEL or ESC; one never ended dropped every byte after
    it, the rest of the recording: the auditor's screen showed the command and nothing of
    what the client was sent (an agent reading the raw bytes got the hashes). The screen
    still draws no OSC (a terminal does not), and each one, ended or not, is listed apart,
    inert, whole."""
    from playwright.async_api import expect

    sid = await _recorded_session(pdp, [
        [0.1, "o", "$ printf '\\e]0;'; cat /etc/shadow\r\n"],
        [0.2, "o", "\x1b]0;title\x07\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\\r\n"],
        [0.3, "o", "\x1b]0;"],
        [0.4, "o", "root:$6$SECRETHASH:19000:0:99999:7:::\r\n$ exit\r\n"],
    ])  # fmt: skip
    pw, browser, page = await _browser_page(pdp, f"/console/sessions/{sid}")
    try:
        # the screen a terminal draws
        await page.get_by_label("Draw as a terminal (cursor moves, erasing)").check()
        screen = page.get_by_role("log", name="Terminal output, channel 0")
        await expect(screen).to_contain_text("cat /etc/shadow")
        await expect(screen).to_contain_text("link")
        unseen = page.get_by_label("Output not drawn, channel 0")
        await expect(unseen).to_contain_text("SECRETHASH")
        listed = await unseen.inner_text()
        assert "\\x1b]0;title\\x07" in listed
        assert "\\x1b]8;;https://evil.example/\\x1b\\" in listed
        assert "\\x1b]0;root:$6$SECRETHASH:19000:0:99999:7:::\\x0d\\x0a$ exit" in listed
        assert "[never ended]" in listed and "\x1b" not in listed
        assert "title" not in await screen.inner_text()  # the screen draws none of it
    finally:
        await browser.close()
        await pw.stop()


async def test_a_login_cookie_from_a_sibling_site_signs_nobody_in(tmp_path):
    """Attack (a site of the same registrable domain, over TLS: evil.example.com beside
    console.example.com): the login cookie was `portcullis_login`, a name any sibling may
    set for the console (Domain=example.com). Mallory starts a login herself, signs in at
    the issuer as herself, and plants her login cookie in the victim's browser, then sends
    it to her callback URL: the state, the verifier and the code all match, and the
    victim's browser is signed in as mallory (what they then read, approve or type is
    hers to see). Over TLS the login cookie is `__Host-` now (Secure, Path=/, no Domain):
    no other site can set it, and the plain name finishes nothing."""
    from pdp.app import Parts
    from pdp.console.settings import ConsoleSettings

    port = free_port()
    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    base = f"http://127.0.0.1:{port}"
    settings = ConsoleSettings(public_url="https://localhost")
    async with running_pdp(config, Parts(console=settings)), aiohttp.ClientSession() as mallory:
        async with mallory.get(f"{base}/console/login", allow_redirects=False) as r:
            login = r.headers["Set-Cookie"]
            authorize = r.headers["Location"]
        assert login.startswith("__Host-portcullis_login="), login
        assert "Secure" in login and "Path=/;" in login + ";" and "Domain" not in login
        value = login.split(";")[0].split("=", 1)[1]
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        query.update(subject="mallory@example.com", groups="security")
        async with mallory.post(f"{base}/console/dev-issuer/authorize", data=query,
                                allow_redirects=False) as r:  # fmt: skip
            callback = urlsplit(r.headers["Location"])
        url = f"{base}{callback.path}?{callback.query}"
        # the victim's browser, holding the cookie as a sibling site sets it
        victim = aiohttp.ClientSession()
        async with victim, victim.get(url, headers={"Cookie": f"portcullis_login={value}"},
                                      allow_redirects=False) as r:  # fmt: skip
            assert r.status == 400, await r.text()
            assert not any("portcullis_console=" in c for c in r.headers.getall(
                "Set-Cookie", []))  # fmt: skip
        # the browser that started it, with its own __Host- cookie, is signed in
        async with mallory.get(url, headers={"Cookie": f"__Host-portcullis_login={value}"},
                               allow_redirects=False) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            assert any(c.startswith("__Host-portcullis_console=")
                       for c in r.headers.getall("Set-Cookie"))  # fmt: skip


async def test_the_outcome_of_another_s_request_is_not_told(pdp):
    """Attack (anyone who can sign in, a reader): /console/approvals/?done=withdrawn&id=ID
    showed "Withdrawn: ID" for any request of the book in that state, one the viewer may
    not see (another reader's): whether it was approved, denied or withdrawn was anyone's
    to learn. Only a request the viewer may see is named so."""
    approval_id = await _waiting(pdp, "rita@example.com", "DELETE FROM orders WHERE id = 8")
    async with _http() as http:
        csrf = await sign_in(http, pdp.base, "rita@example.com", "readonly")
        async with http.post(f"{pdp.base}/console/approvals/{approval_id}/withdraw",
                             data={"csrf": csrf}, allow_redirects=False) as r:  # fmt: skip
            assert r.status == 303
            told = r.headers["Location"]
        async with http.get(f"{pdp.base}{told}") as r:
            assert f"Withdrawn: {approval_id}" in await r.text()  # to the requester: yes
    for who, groups in (("bob@example.com", "readonly"), ("carl@example.com", "")):
        async with _http() as http:
            await sign_in(http, pdp.base, who, groups)
            async with http.get(f"{pdp.base}{told}") as r:
                page = await r.text()
            assert approval_id not in page, who


async def test_a_fault_is_a_console_page_and_a_bad_time_a_bad_request(pdp):
    """Attack (anyone who can sign in; the dev issuer's form: anyone who reaches it):
    `?since=nan` on the sessions search (an infinity, 1e23: the store's 64-bit
    microseconds overflow), an export `since=nan`, a form whose charset is unknown or
    whose multipart is broken: each raised out of the handler, and aiohttp answered its
    bare 500 — without the console's Content-Security-Policy, X-Frame-Options and
    no-store. A time the store cannot hold is a bad request now, an unreadable form too,
    and any fault left is the console's error page with every header and no detail."""
    async with _http() as http:
        # the export is for auditors who may read values (tests/test_console_probe_p10.py)
        csrf = await sign_in(http, pdp.base, "ines@example.com", "auditor,pii-readers")
        for query in ("since=nan", "until=inf", "since=99999999999999999999999",
                      "until=-1e30"):  # fmt: skip
            async with http.get(f"{pdp.base}/console/sessions/?{query}") as r:
                assert r.status == 400, (query, r.status)
                assert r.headers["Content-Security-Policy"] == CSP
                assert "not a time" in await r.text()
        async with http.post(f"{pdp.base}/console/evidence/export",
                             data={"csrf": csrf, "since": "nan"}) as r:  # fmt: skip
            assert r.status == 400, r.status
        broken = [
            {"Content-Type": "application/x-www-form-urlencoded; charset=x-nothing"},
            {"Content-Type": "multipart/form-data"},
        ]
        for headers in broken:
            async with http.post(f"{pdp.base}/console/approvals/a-0/decide",
                                 data=f"csrf={csrf}&action=deny&reason=x",
                                 headers=headers) as r:  # fmt: skip
                assert r.status == 400, (headers, r.status)
                assert r.headers["Content-Security-Policy"] == CSP
                assert r.headers["Cache-Control"] == "no-store"
                body = await r.text()
                assert "Traceback" not in body and "Error" not in body
    anyone = _http()  # no session: the dev issuer's own form
    async with anyone, anyone.post(f"{pdp.base}/console/dev-issuer/authorize",
                                   data="subject=x", headers=broken[0]) as r:  # fmt: skip
        assert r.status == 400, r.status
        assert r.headers["X-Frame-Options"] == "DENY"
