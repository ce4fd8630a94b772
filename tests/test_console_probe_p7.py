"""The console probed again (p7): a recorded session of many terminal channels, played in
Debian's Chromium against a real PDP (dev issuer sign-in, code + PKCE), its recordings
sent as a proxy records them (RecordEvents).
"""

from __future__ import annotations

import json
import time

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
