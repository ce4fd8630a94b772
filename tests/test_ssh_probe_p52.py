"""SSH probe, part 52: passwords typed inside tmux, into pinentry-curses, or at vim's
encryption prompts, were kept in the recording.

gpg, gpg-agent (ssh-add, git signing) and other programs ask a passphrase through
pinentry-curses, which draws a box by placing the cursor (`ESC [ row ; col H`) and waits
with the cursor in its entry field: no line end between the rows it drew, so the screen's
"current line" the prompt rule read (part 47: the output since its last line end) was
the whole drawing run together, ending in the box's border, not in `Passphrase: `. tmux
(screen, any multiplexer) draws every window so: sudo's prompt on its row, the status
line last, then the cursor put back after the prompt. What was typed there was recorded
as typed, for anyone who replays or exports the recording. vim's `-x` (and ccrypt) ask
`Enter encryption key: `, a word the rule did not read as naming a secret.

The rule now reads a screen drawn by placing the cursor as rows (portcullis/
password_prompts_grid.Grid): the current line is what its row shows left of the cursor;
an encryption key's prompt names a secret.

Real components: sshd (bash, the account's shell), pinentry-curses (the Assuan protocol
on its stdin, its dialog on the terminal, as gpg-agent runs it), tmux, vim, a PDP, the SSH
proxy, the OpenSSH client (`ssh -tt`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ssh_probe_p47 import dba_shell
from test_ssh_proxy import ssh_stack

from pdp.domain.casts import casts_of
from pdp.domain.recordings import session_events
from portcullis.password_prompts import MARKER, HeldFrames, SecretInput
from portcullis.password_prompts_grid import Grid

PIN = "S3cret-p52-pin"
# gpg-agent's requests, the PIN's answer (`D ...`) to a file; the dialog on the terminal
ASK = (
    "t=$(tty); printf 'SETDESC Unlock the p52 key\\nSETPROMPT Passphrase:\\nGETPIN\\nBYE\\n' |"
    " pinentry-curses --ttyname $t --ttytype xterm > {out}; echo p52-got-$(grep -c '^D ' {out})"
)
# pinentry-curses' drawing as it came through the proxy (part of it)
DRAWN = (
    "\x1b[?1049h\x1b[22;0;0t\x1b[1;24r\x1b(B\x1b[m\x1b[4l\x1b[?7h\x1b[H\x1b[2J\x1b[J\x1b(B\x1b[m"
    "\x1b[9;13H\x1b(0\x1b[0mlq\x1b[53bk\x1b(B\x1b[m\x1b[10;13H\x1b(0\x1b[0mx\x1b(B\x1b[0m Unlock"
    " the p52 key\x1b[10;68H\x1b(0\x1b[0mx\x1b(B\x1b[m\x1b[11;13H\x1b(0\x1b[0mx\x1b(B\x1b[0m"
    " Passphrase: " + "_" * 40 + " \x1b(0\x1b[0mx\x1b(B\x1b[m\x1b[12;13H\x1b(0\x1b[0mx"
    "\x1b(B\x1b[m\x1b[13;21G<OK>\x1b[13;55H<Cancel>\x1b[14;13H\x1b(0\x1b[0mmqqqqj\x1b(B\x1b[m"
    "\x1b[11;27H\x1b(0\x1b[0m\x1b(B\x1b(B\x1b[m"
)
# the drawing's end: the cursor placed (in the entry field), then only attributes set
FIELD = re.compile(r"<Cancel>.*\x1b\[\d+;\d+H(?:\x1b[()][0B]|\x1b\[[0-9;]*m)*\Z", re.S)
LEFT = "*\x1b(B\x1b[m" * 5 + "\x1b[24;1H\x1b[?1049l\x1b[23;0;0t\r\x1b[?1l\x1b>"


@pytest.mark.integration
async def test_a_passphrase_typed_into_pinentry_curses_is_not_recorded(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        assert client.stdin is not None
        client.stdin.write(ASK.format(out=tmp_path / "pin.out").encode() + b"\r")
        await screen.until("Passphrase: _")
        await screen.until(FIELD)  # the cursor placed in the entry field
        for key in PIN:  # typed, a key at a time
            client.stdin.write(key.encode())
            await client.stdin.drain()
        client.stdin.write(b"\r")
        await screen.until("p52-got-1\r\n")  # pinentry-curses read it
        await screen.prompt()
        client.stdin.write(b"echo p52-$((6*7))-after\r")
        await screen.until("p52-42-after\r\n")
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await client.wait() == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    assert PIN not in json.dumps(events)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 1 and "echo p52-$((6*7))-after\r" in typed, typed
    commands = [e for e in events if e.get("type") == "command"]
    assert [c["details"].get("typed_at_password_prompts") for c in commands] == [1]


TMUX_SECRET = "S3cret-p52-tmux"
# the prompt drawn (not the command's echo), the cursor after it at the screen's end, or
# put back there after tmux's status line
AT_PROMPT = re.compile(
    r"password for ann: (?!')(?:[\s\S]*\x1b\[1;26H)?(?:\x1b\[[0-9;?]*[A-Za-z]|\x1b\(B)*\Z"
)
# a password read inside tmux, which draws its window by placing the cursor (its status
# line last, the cursor then put back after the prompt); its own server, gone at its end
TMUX = (
    "TERM=xterm tmux -L p52-{n} -f /dev/null new-session"
    " \"read -rs -p '[sudo] password for ann: ' pw; echo p52-tmux-\\${{#pw}}; sleep 1\""
)


@pytest.mark.integration
async def test_a_password_typed_inside_tmux_is_not_recorded(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        assert client.stdin is not None
        client.stdin.write(TMUX.format(n=os.getpid()).encode() + b"\r")
        await screen.until(AT_PROMPT)
        for key in TMUX_SECRET:
            client.stdin.write(key.encode())
            await client.stdin.drain()
        client.stdin.write(b"\r")
        await screen.until(f"p52-tmux-{len(TMUX_SECRET)}")
        await screen.until("[exited]")
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await client.wait() == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    assert TMUX_SECRET not in json.dumps(events)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 1 and typed.endswith("exit\r"), typed


AHEAD_SECRET = "S3cret-p52-tmux-ahead"
# sudo's way inside tmux (part 50's READ): the prompt once the password typed ahead waits,
# its line ended once read (getpass(3) and sudo print the line end echo off did not)
TMUX_AHEAD = (
    'TERM=xterm tmux -L p52-{n} -f /dev/null new-session "echo p52-ready; until read -t 0;'
    " do :; done; stty -echo; printf '[sudo] password for ann: '; read -r pw; stty echo; echo;"
    ' echo p52-ahead-\\${{#pw}}; sleep 1"'
)


@pytest.mark.integration
async def test_a_password_typed_ahead_inside_tmux_is_not_recorded(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        assert client.stdin is not None
        client.stdin.write(TMUX_AHEAD.format(n=os.getpid()).encode() + b"\r")
        await screen.until(re.compile(r"(?<!echo )p52-ready"))  # (not the command's echo)
        client.stdin.write(f"{AHEAD_SECRET}\r".encode())  # before sudo's prompt
        await screen.until(f"p52-ahead-{len(AHEAD_SECRET)}")
        await screen.until("[exited]")
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await client.wait() == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
        assert AHEAD_SECRET in screen.text  # the terminal echoed it before sudo's prompt
    assert AHEAD_SECRET not in json.dumps(events)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 1 and typed.endswith("exit\r"), typed


VIM_KEY = "S3cret-p52-vim"


@pytest.mark.integration
async def test_a_key_typed_at_vims_encryption_prompts_is_not_recorded(tmp_path: Path) -> None:
    # `vim -x`: its prompts drawn on the screen's last row (`Enter encryption key: `, then
    # `Enter same key again: `), which named no secret to the rule
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        assert client.stdin is not None
        client.stdin.write(f"TERM=xterm vim -u NONE -N -x {tmp_path / 'notes'}\r".encode())
        for prompt in ("Enter encryption key: ", "Enter same key again: "):
            await screen.until(prompt)
            client.stdin.write(f"{VIM_KEY}\r".encode())
        await screen.until("[New]")
        client.stdin.write(b"ip52-notes\x1b:wq\r")
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await client.wait() == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    assert (tmp_path / "notes").read_bytes().startswith(b"VimCrypt~")
    assert VIM_KEY not in json.dumps(events)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 2 and "ip52-notes" in typed, typed


def test_the_row_the_cursor_stands_on_is_read_as_the_line() -> None:
    rule = SecretInput()
    rule.shown("$ gpg -d notes.gpg\r\n")
    rule.shown(DRAWN)
    assert rule.typed("hunter2\r") == MARKER + "\r"
    rule.shown(LEFT + "$ ")  # the alternate screen left: lines again
    assert rule.typed("ls\r") == "ls\r" and rule.lines == 1
    # in pieces, the field drawn last
    rule = SecretInput()
    for at in range(0, len(DRAWN), 37):
        rule.shown(DRAWN[at : at + 37])
    assert rule.typed("h") == MARKER and rule.typed("unter2\r") == "\r"


def test_a_cleared_screen_is_still_read_as_lines_and_an_editor_as_rows() -> None:
    rule = SecretInput()
    rule.shown("$ clear\r\n\x1b[H\x1b[2J\x1b[3J$ ")
    assert rule.typed("sudo id\r") == "sudo id\r"
    rule.shown("sudo id\r\n\x1b[1m[sudo] password for ann:\x1b[0m ")
    assert rule.typed("hunter2\r") == MARKER + "\r"
    rule.shown("\r\nuid=0(root)\r\n$ ")
    assert rule.typed("ls\r") == "ls\r"
    # a full-screen editor: its lines typed are recorded, whatever it drew before
    rule.shown("\x1b[1;1HPassword: \x1b[2;1Hnotes\x1b[24;1H-- INSERT --\x1b[2;6H")
    assert rule.typed("more\r") == "more\r" and rule.lines == 1


def test_the_grid_draws_erases_and_moves_as_a_terminal() -> None:
    grid = Grid()
    grid.feed("\x1b[3;5Habcdef\x1b[3;7H\x1b[K")
    assert grid.rows[2] == "    ab" and grid.left_of_cursor() == "    ab"
    grid.feed("\x1b[2D\x1b[1K")
    assert grid.rows[2] == "     b" and grid.col == 4
    grid.feed("\rxy\tz\x1b7\x1b[10;1Hq\x1b8")
    assert grid.left_of_cursor() == "xy   b  z" and grid.rows[9] == "q"
    assert grid.feed("\x1b[?1049lrest") == len("\x1b[?1049l")
    grid.feed("\x1b[2J")
    assert grid.rows == {} and grid.feed("\x1b[99999;99999H") == len("\x1b[99999;99999H")
    for row in range(400):
        grid.feed(f"\x1b[{row + 1};1Hr")
    assert len(grid.rows) <= 256 and grid.rows[399] == "r"


def test_a_line_redrawn_by_placing_the_cursor_at_its_start() -> None:
    # a progress line redrawn from column 1 (`ESC [ 1 G`, as npm's and apt's), then a
    # password typed ahead of sudo's prompt: held and left out (part 51's rule)
    held = HeldFrames()
    kept = held.output(0.1, "$ ") + held.input(0.2, "make install\r")
    kept += held.output(0.3, "make install\r\nbuilding \x1b[1G\x1b[2K 45% [==>  ]")
    kept += held.input(0.4, "hunter2\r") + held.output(0.5, "hunter2\r\n")
    kept += held.output(0.6, "[sudo] password for ann: ") + held.output(0.7, "\r\n$ ")
    kept += held.close()
    typed = "".join(str(f[2]) for f in kept if f[1] == "i")
    assert typed == f"make install\r{MARKER}\r" and "hunter2" not in json.dumps(kept)
    # the text before the cursor was placed stays on its row
    rule = SecretInput()
    rule.shown("\r\nVault password:\x1b[17G ")
    assert rule.typed("x\r") == MARKER + "\r"


def test_a_row_drawn_with_repeats_and_erases() -> None:
    grid = Grid()
    grid.feed("\x1b[2;1Hx\x1b[4bk\x1b[2;2H\x1b[2X")
    assert grid.rows[1] == "x  xxk" and grid.left_of_cursor() == "x"


def test_an_encryption_keys_prompt_names_a_secret() -> None:
    rule = SecretInput()
    for prompt in ("Enter encryption key: ", "Enter decryption key: ", "Enter same key again: "):
        rule.shown("\r\n" + prompt)
        assert rule.typed("x y\r") == MARKER + "\r", prompt
    for prompt in ("Enter key name: ", "Press any key: ", "Keyboard layout: "):
        rule.shown("\r\n" + prompt)
        assert rule.typed("x y\r") == "x y\r", prompt


_PIECES = st.sampled_from(
    ["\x1b[", "\x9b", "\x1b]0;t\x07", "\x1bP", "\x1b\\", "\x1b7", "\x1b8", "\x1bc", "\x1b[?1049l",
     "\x1b[?1049h", "\x1b[3;4H", "\x1b[99999;0H", "\x1b[;H", "\x1b[5d", "\x1b[12G", "\x1b[1G",
     "\x1b[4b", "\x1b[2X", "\x1b[K", "\x1b[1K", "\x1b[2J", "\x1b[0J", "\x1b[3A", "\x1b[9C",
     "\x1b[s", "\x1b[u", "\r", "\n", "\r\n", "\b", "\t", "Password: ", "$ ", "x", "é",
     "\u5bc6\u7801\uff1a"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.booleans(), st.lists(_PIECES, max_size=12)), max_size=12))
def test_any_output_cut_anywhere_is_read_without_failing(
    steps: list[tuple[bool, list[str]]],
) -> None:
    held = HeldFrames()
    for at, (typed, pieces) in enumerate(steps):
        text = "".join(pieces)
        frames = held.input(at, text) if typed else held.output(at, text)
        assert all(isinstance(f[2], str) for f in frames)
    held.close()
    grid = held.rule._grid
    if grid is not None:
        assert len(grid.rows) <= 256 and all(len(row) <= 1024 for row in grid.rows.values())
