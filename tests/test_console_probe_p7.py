"""The console probed again (p7): a recorded session of many terminal channels, played in
Debian's Chromium against a real PDP (dev issuer sign-in, code + PKCE), its recordings
sent as a proxy records them (RecordEvents).
"""

from __future__ import annotations

import json
import re
import time
from html import unescape
from urllib.parse import parse_qs, urlsplit

import aiohttp
from pdp_harness import open_session, pdp_stub
from pdp_harness import token as dev_token
from test_console_probe_p1 import _browser_page
from test_console_probe_p6 import pdp  # noqa: F401  (the fixture)

from portcullis.v1 import pdp_pb2

CHANNELS = 6


async def _channels(app, lines: int) -> str:
    """A reader's session with CHANNELS terminal recordings, each ending `channel-N-end`."""
    reader = dev_token(app.config, "rita@example.com", ("readonly",))
    async with pdp_stub(app.address) as stub:
        opened = await open_session(stub, reader)
        for channel in range(CHANNELS):
            output = [[0.01 * i, "o", "x" * 70 + "\r\n"] for i in range(lines)]
            output.append([100.0, "o", f"channel-{channel}-end\r\n"])
            event = {"time": time.time(), "direction": "upstream", "type": "response",
                     "details": {"kind": "ssh.asciicast", "channel": channel, "decision_id": "d",
                                 "header": {"version": 2, "width": 80, "height": 24},
                                 "events": output}}  # fmt: skip
            await stub.RecordEvents(pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps([event])))  # fmt: skip
    return opened.session_id


async def test_every_channel_plays_when_the_pdp_makes_two_at_a_time(pdp):  # noqa: F811
    """Attack (a reader's session of many channels, replayed by an auditor): the replay
    page asks for every channel's recording at once, and the PDP makes two of one person's
    session pages at a time (429 for the others). The player took the 429 page for a
    recording: channels 2 and up played an empty screen and said "(no input recorded)",
    as if nothing had run there. A 429 is asked again now; every channel plays."""
    from playwright.async_api import expect

    sid = await _channels(pdp, 5000)
    pw, browser, page = await _browser_page(pdp, "/console/approvals/")
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/terminal/" in r.url else None)
    try:
        await page.goto(f"{pdp.base}/console/sessions/{sid}")
        for channel in range(CHANNELS):
            screen = page.get_by_role("log", name=f"Terminal output, channel {channel}")
            await expect(screen).to_contain_text(f"channel-{channel}-end", timeout=60_000)
        assert statuses.count(200) == CHANNELS, statuses  # and the 429s were asked again
    finally:
        await browser.close()
        await pw.stop()


async def test_a_recording_that_cannot_be_loaded_says_so(pdp):  # noqa: F811
    """The same player when the recording does not arrive (the network fails, the sign-in
    ended and the fetch lands on the login form): every pane said nothing, an empty
    recording. Each pane now says the recording could not be loaded."""
    from playwright.async_api import expect

    sid = await _channels(pdp, 3)
    pw, browser, page = await _browser_page(pdp, "/console/approvals/")
    try:
        await page.route("**/terminal/*", lambda route: route.abort())
        await page.goto(f"{pdp.base}/console/sessions/{sid}")
        for label in ("Terminal output", "Typed input", "Output not drawn"):
            pane = page.get_by_label(f"{label}, channel 1")
            await expect(pane).to_contain_text("could not be loaded")
        await expect(page.locator(".player .play").first).to_be_disabled()
    finally:
        await browser.close()
        await pw.stop()


async def test_an_approver_s_other_account_is_their_own_in_the_console(tmp_path):
    """Attack (one person, two accounts of one issuer: alice's agent token, sub alice,
    asks; her admin account alice-admin, in security, approves; both tokens say
    email alice@example.com): the book tells one person by any name either token gives
    (approvals.one_person, approvals4), but the console built its approver from the
    subject, groups and issuer alone: approving in the browser went through. The console
    keeps the ID token's names with the sign-in now, and the book refuses; the card says
    it is the person's own."""
    from oidc_issuer import OIDCIssuer
    from pdp_harness import decide_sql, free_port, pdp_raw, running_pdp

    from portcullis.config import parse_config

    emails = {"alice": "alice@example.com", "alice-admin": "alice@example.com"}
    async with OIDCIssuer() as idp:
        signed = idp.token
        idp.token = lambda sub, groups, **kw: signed(sub, groups, email=emails.get(sub), **kw)
        idp.users["alice-admin"] = ["security"]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        idp.redirect_uris.add(f"{base}/console/callback")
        raw = pdp_raw(tmp_path, session_timeout=600,
                      identity={"issuer": idp.issuer, "audience": idp.audience})  # fmt: skip
        raw["pdp"]["http_listen"] = f"127.0.0.1:{port}"
        async with running_pdp(parse_config(raw, base_dir=tmp_path)) as app:
            async with pdp_stub(app.address) as stub:
                opened = await open_session(stub, idp.token("alice", ["readonly"]))
                asked = await decide_sql(stub, opened.session_id, "DELETE FROM orders WHERE id = 9")
            assert asked.approval_id
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get(f"{base}/console/login", allow_redirects=False) as r:
                    authorize = r.headers["Location"]
                form = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
                form.update(username="alice-admin", password="x")
                async with http.post(f"{idp.issuer}/authorize", data=form,
                                     allow_redirects=False) as r:  # fmt: skip
                    callback = r.headers["Location"]
                async with http.get(callback, allow_redirects=False) as r:
                    assert r.status == 200, await r.text()
                async with http.get(f"{base}/console/approvals/list") as r:
                    card = await r.text()
                assert asked.approval_id in card and "You asked for this" in card
                async with http.get(f"{base}/console/approvals/") as r:
                    csrf = unescape(re.search(r'name="csrf-token" content="([^"]*)"',
                                              await r.text())[1])  # fmt: skip
                async with http.post(f"{base}/console/approvals/{asked.approval_id}/decide",
                                     data={"csrf": csrf, "action": "approve", "reason": "ok"},
                                     allow_redirects=False) as r:  # fmt: skip
                    assert r.status == 403, r.status
            assert app.approvals.requests[asked.approval_id].state == "pending"
