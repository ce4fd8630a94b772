"""Probes of the terminal replays, helper idsec6: a recording that rewrites what the
auditor reads.

Attack (a shell user whose terminal is recorded, or the server it reaches): the recorded
output printed a secret and then erased or overwrote it, `\\r` and new text over it,
cursor up and erase line (CSI 1 A, CSI 2 K), or hid bytes in an OSC string (a clipboard
write, OSC 52; a title). `portcullis replay` on the auditor's terminal and the console's
player drew it as a terminal does: the auditor read the screen the user wanted read, not
what the shell printed. Now both show every byte as text by default, control characters
as inert escapes and line breaks only where a line feed was; playing it as a terminal
draws it is a choice (`replay --raw`, the console's "Draw as a terminal").
"""

from __future__ import annotations

import asyncio

from pdp_harness import replay_on_a_terminal, running_pdp
from test_console_probe_p1 import _browser_page, _recorded_session, console_pdp_fixture

pdp = console_pdp_fixture()

# what a user's shell printed, then took back from the screen
RECORDING = [
    [0.1, "o", "$ cat /srv/keys/prod.pem\r\nSECRET-ONE\r\n"],
    [0.2, "o", "\x1b[1A\x1b[2K$ ls\r\n"],  # cursor up, erase the line, write over it
    [0.3, "o", "SECRET-TWO\r"],  # a frame ending in CR: the overwrite follows
    [0.4, "o", "XXXXXXXXXXXXXXX\r\n"],
    [0.5, "o", "\x1b]52;c;U0VDUkVULVRIUkVF\x07\x1b]0;harmless title\x07done\r\n"],
]
WHOLE = "".join(frame[2] for frame in RECORDING)


def test_every_byte_is_text_and_nothing_erases():
    from pdp.cli.terminal_replay import Visible

    shown = Visible()
    text = "".join(shown.feed(frame[2]) for frame in RECORDING) + shown.end()
    assert "\x1b" not in text and "\r" not in text
    lines = text.split("\n")
    assert lines[:4] == [
        "$ cat /srv/keys/prod.pem",
        "SECRET-ONE",
        "\\x1b[1A\\x1b[2K$ ls",
        "SECRET-TWO\\rXXXXXXXXXXXXXXX",
    ]
    assert lines[4] == "\\x1b]52;c;U0VDUkVULVRIUkVF\\x07\\x1b]0;harmless title\\x07done"
    # fed whole or byte by byte: the same text (a CR LF cut between frames is one break)
    bytewise = Visible()
    assert "".join(bytewise.feed(c) for c in WHOLE) + bytewise.end() == text
    trailing = Visible()
    assert trailing.feed("x\r") + trailing.end() == "x\\r"


async def test_replay_on_the_auditors_terminal_shows_what_was_erased(tmp_path):
    from test_evidence import make_env

    env = make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    async with running_pdp(env.config) as app:
        sid = await _recorded_session(app, RECORDING)
    shown = await asyncio.to_thread(replay_on_a_terminal, env.config_path, sid, 30)
    played = shown.split(b"--- terminal, channel 0", 1)[1].split(b"--- end of recording", 1)[0]
    assert b"\x1b" not in played and b"\x9b" not in played  # no sequence reaches the terminal
    lines = [line.rstrip(b"\r") for line in played.split(b"\n")]
    assert b"SECRET-ONE" in lines
    assert b"\\x1b[1A\\x1b[2K$ ls" in lines
    assert b"SECRET-TWO\\rXXXXXXXXXXXXXXX" in lines
    assert b"\\x1b]52;c;U0VDUkVULVRIUkVF\\x07\\x1b]0;harmless title\\x07done" in lines


async def test_the_console_player_shows_what_was_erased(pdp):
    from playwright.async_api import expect

    sid = await _recorded_session(pdp, RECORDING)
    pw, browser, page = await _browser_page(pdp, f"/console/sessions/{sid}")
    try:
        screen = page.get_by_role("log", name="Terminal output, channel 0")
        await expect(screen).to_contain_text("done")
        text = await screen.inner_text()
        lines = text.split("\n")
        assert "SECRET-ONE" in lines
        assert "\\x1b[1A\\x1b[2K$ ls" in lines
        assert "SECRET-TWO\\x0dXXXXXXXXXXXXXXX" in lines  # the player writes CR so
        assert "\\x1b]52;c;U0VDUkVULVRIUkVF\\x07\\x1b]0;harmless title\\x07done" in lines
        assert "\x1b" not in text
        # drawn as a terminal on request: then the erase acts, and the OSC is listed apart
        await page.get_by_label("Draw as a terminal (cursor moves, erasing)").check()
        await expect(screen).not_to_contain_text("SECRET-TWO")
        await expect(page.get_by_label("Output not drawn, channel 0")).to_contain_text(
            "U0VDUkVULVRIUkVF"
        )
    finally:
        await browser.close()
        await pw.stop()
