"""SSH probe, part 50: a password typed ahead of its prompt was kept in the recording.

Part 47 leaves out of a terminal's recording a line typed while the screen ends in a
prompt naming a secret. A line typed before its prompt is shown (typed while sudo is still
starting, or pasted with its command) reaches the terminal while its echo is still on: the
proxy recorded it as typed input, and the upstream's terminal echoed it back, recorded as
output, before sudo turned the echo off, printed its prompt and read it. `portcullis replay`
printed the password twice.

The proxy now holds a line typed on a line of the screen left empty, and the recording
after it, until the screen decides it (portcullis/password_prompts.HeldFrames): a prompt
naming a secret shown next makes it MARKER and takes its echo out of the output held; a
line typed at a screen that shows anything else (the shell's prompt), or the terminal's
end, records it as typed. Past 64 KiB held, the oldest undecided line is left out (UNSURE
in its place, its echo too) and counted (typed_ahead_not_recorded).

Real components: sshd (bash, the account's shell; stty), a PDP, the SSH proxy, the OpenSSH
client (`ssh -tt`).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_ssh_probe_p47 import dba_shell
from test_ssh_proxy import ssh_stack

from pdp.domain.casts import casts_of
from pdp.domain.recordings import session_events
from portcullis.password_prompts import (
    CAST_KIND,
    HELD_CHARS,
    HELD_SECONDS,
    MARKER,
    UNSURE,
    HeldFrames,
    events_without_secrets,
    without_secrets,
)

SECRET = "S3cret-p50-ahead"
SILENT = "S3cret-p50-quiet"
# sudo's way: echo off (stty, as sudo's tcsetattr, keeps what was typed before: getpass(3)
# and python's getpass flush it), the prompt, a line read; the prompt is shown once the
# password typed ahead is waiting (`read -t 0`), as a slow sudo's would be
READ = (
    "echo p50-$((1+1))-ready; until read -t 0; do :; done; stty -echo;"
    " printf '[sudo] password for ann: '; read -r pw; stty echo; echo; echo p50-read-${#pw}"
)


@pytest.mark.integration
async def test_a_password_pasted_with_its_command_is_not_recorded(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        client.stdin.write(f"{READ}\r".encode())
        await screen.until("p50-2-ready\r\n")  # the shell runs it, the terminal its own
        # the password typed before its prompt is shown
        client.stdin.write(f"{SECRET}\r".encode())
        await screen.until("p50-read-16\r\n")
        await screen.prompt()
        # bash's `read -s` with no prompt (part 47's rule leaves out the line after it),
        # typed before it turned the echo off: the echo goes too
        client.stdin.write(b"echo p50-$((2+1))-ready; until read -t 0; do :; done; read -rs pw;"
                           b" echo p50-silent-${#pw}\r")  # fmt: skip
        await screen.until("p50-3-ready\r\n")
        client.stdin.write(f"{SILENT}\r".encode())
        await screen.until("p50-silent-16\r\n")
        await screen.prompt()
        client.stdin.write(b"echo p50-$((6*7))-after\r")
        await screen.until("p50-42-after\r\n")
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await asyncio.wait_for(client.wait(), 30) == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
        assert SILENT in screen.text  # the client's terminal showed it, as the upstream echoed
    assert SECRET not in json.dumps(events) and SILENT not in json.dumps(events)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 2, typed
    assert "echo p50-$((6*7))-after\r" in typed and "read -r pw" in typed
    commands = [e for e in events if e.get("type") == "command"]
    assert [c["details"].get("typed_at_password_prompts") for c in commands] == [2]


PASTED = "S3cret-p50-pasted"
ASKS = "stty -echo; printf '[sudo] password for ann: '; read -r pw; stty echo; echo; echo n=${#pw}"


@pytest.mark.integration
async def test_a_password_pasted_with_its_command_and_more_is_not_recorded(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        # one paste: the command, its password, another line; bash's line editor held the
        # terminal as they came, so their CRs end no line for the prompt's reader
        client.stdin.write(f"{ASKS}\r{PASTED}\rp50-more\r".encode())
        await screen.until(re.compile(r"password for ann: \Z"))
        client.stdin.write(b"\r")  # nothing happens: the user presses Enter
        await screen.until("n=27\r\n")  # the password, a CR, the next line, a CR: one line
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await asyncio.wait_for(client.wait(), 30) == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    assert PASTED not in json.dumps(events) and "p50-more" not in json.dumps(events)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    # the two lines pasted answered the prompt (the Enter after them, no secret, is kept)
    assert typed == f"{ASKS}\r{MARKER}\r{MARKER}\r\rexit\r", typed
    commands = [e for e in events if e.get("type") == "command"]
    assert [c["details"].get("typed_at_password_prompts") for c in commands] == [2]


def _frames(held: HeldFrames, frames: list[list[Any]]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for at, code, text in frames:
        out += held.output(at, text) if code == "o" else held.input(at, text)
    return out + held.close()


def _typed(frames: list[list[Any]]) -> str:
    return "".join(str(f[2]) for f in frames if f[1] == "i")


def _shown(frames: list[list[Any]]) -> str:
    return "".join(str(f[2]) for f in frames if f[1] == "o")


def test_a_line_typed_ahead_of_a_secrets_prompt_is_left_out_with_its_echo() -> None:
    # typed a key at a time, echoed a key at a time, before sudo's prompt
    keys = [[0.3 + i / 100, code, key] for i, key in enumerate("hunter2\r") for code in "io"]
    keys[-1][2] = "\r\n"
    frames = [[0.1, "o", "$ "], [0.2, "i", "sudo id\r"], [0.25, "o", "sudo id\r\n"], *keys,
              [0.5, "o", "[sudo] password for ann: "], [0.6, "o", "\r\nuid=0(root)\r\n$ "],
              [0.7, "i", "ls\r"], [0.8, "o", "ls\r\nnotes\r\n$ "]]  # fmt: skip
    held = HeldFrames()
    kept = _frames(held, frames)
    assert _typed(kept) == f"sudo id\r{MARKER}\rls\r"
    assert "hunter" not in _shown(kept) and "[sudo] password for ann: " in _shown(kept)
    assert held.lines == 1 and held.unsure == 0
    assert [f[0] for f in kept] == sorted(f[0] for f in kept)  # in the order they came
    # pasted with its command and the next one, prompt and answer in one output: every
    # line typed before the prompt waits in the terminal's input for what reads it (the
    # prompt's reader may take them all as one line: a CR typed while the shell's line
    # editor held the terminal ends none), so none is recorded; one the shell reads after
    # all, it echoes (`$ id -u`)
    held = HeldFrames()
    kept = _frames(held, [[0.1, "o", "$ "], [0.2, "i", "sudo id\rhunter2\rid -u\r"],
                          [0.3, "o", "sudo id\r\nhunter2\r\nid -u\r\n[sudo] password "
                                     "for ann: \r\nuid=0\r\n$ id -u\r\n0\r\n$ "]])  # fmt: skip
    assert _typed(kept) == f"sudo id\r{MARKER}\r{MARKER}\r" and held.lines == 2
    assert "hunter" not in _shown(kept) and _shown(kept).endswith("$ id -u\r\n0\r\n$ ")
    # edited as typed: its echo as the terminal echoes an erase
    kept = _frames(HeldFrames(), [[0.1, "o", "$ "], [0.2, "i", "sudo id\r"],
                                  [0.3, "o", "sudo id\r\n"], [0.4, "i", "huntx\x7fer2\r"],
                                  [0.5, "o", "huntx\b \ber2\r\n"],
                                  [0.6, "o", "[sudo] password for ann: "]])  # fmt: skip
    assert "hunt" not in _shown(kept) + _typed(kept)
    assert _shown(kept).endswith("[sudo] password for ann: ")


def test_a_line_left_out_takes_out_its_echo_and_nothing_else() -> None:
    # a dba's line prints what it reads, then a prompt of its own; a line typed ahead of it,
    # edited (DEL) and its keys in the output too: only the echo goes, once
    frames = [[0.1, "o", "$ "], [0.2, "i", "sleep 1; cat /etc/shadow; printf 'Password: '\r"],
              [0.3, "o", "sleep 1; cat /etc/shadow; printf 'Password: '\r\n"],
              [0.4, "i", "a\x7froot\r"], [0.5, "o", "a\b \broot\r\n"],
              [0.6, "o", "root:$y$j9T$:19000:0:99999:7:::\r\nPassword: "]]  # fmt: skip
    held = HeldFrames()
    kept = _frames(held, frames)
    assert held.lines == 1 and MARKER in _typed(kept)
    assert _shown(kept).endswith("\r\n\r\nroot:$y$j9T$:19000:0:99999:7:::\r\nPassword: ")
    assert "a\b \broot" not in _shown(kept)


def test_lines_typed_ahead_of_anything_else_are_recorded_as_typed() -> None:
    # typed while a command ran, read by the shell after it: recorded in their place
    frames = [[0.1, "o", "$ "], [0.2, "i", "make\r"], [0.3, "o", "make\r\ncc -c a.c\r\n"],
              [0.4, "i", "ls\r"], [0.5, "o", "ls\r\ncc -o a a.o\r\n$ ls\r\na  a.c\r\n$ "],
              [0.6, "i", "df\r"], [0.7, "o", "df\r\n/dev/sda1\r\n$ "]]  # fmt: skip
    held = HeldFrames()
    kept = _frames(held, frames)
    assert _typed(kept) == "make\rls\rdf\r" and _shown(kept) == _shown(frames)
    assert [f[0] for f in kept] == [f[0] for f in frames]
    # into cat, each line on an empty line of the screen, to the end
    frames = [[0.1, "o", "$ "], [0.2, "i", "cat > notes\r"], [0.3, "o", "cat > notes\r\n"],
              [0.4, "i", "one\r"], [0.5, "o", "one\r\n"], [0.6, "i", "two\r"],
              [0.7, "o", "two\r\n"], [0.8, "i", "\x04"], [0.9, "o", "$ "]]  # fmt: skip
    kept = _frames(HeldFrames(), frames)
    assert _typed(kept) == "cat > notes\rone\rtwo\r\x04" and _shown(kept) == _shown(frames)


def test_past_the_bound_a_line_never_decided_is_left_out_and_counted() -> None:
    held = HeldFrames()
    kept = held.output(0.1, "$ ") + held.input(0.2, "make\r") + held.output(0.3, "make\r\n")
    kept += held.input(0.4, "hunter2\r") + held.output(0.5, "hunter2\r\n")
    for i in range(HELD_CHARS // 1000 + 1):
        kept += held.output(1 + i / 100, "x" * 999 + "\n")
    assert held.unsure == 1 and not held.holding
    assert UNSURE in _typed(kept) and "hunter2" not in _typed(kept) + _shown(kept)


def test_a_recording_made_before_is_read_with_the_same_rule() -> None:
    frames: list[list[Any]] = [[0.1, "o", "$ "], [0.2, "i", "sudo id\r"],
                               [0.3, "o", "sudo id\r\n"], [0.4, "i", "hunter2\r"],
                               [0.5, "o", "hunter2\r\n"]]  # fmt: skip
    later: list[list[Any]] = [[0.6, "o", "[sudo] password for ann: "], [0.7, "o", "\r\n$ "]]
    kept = without_secrets(frames + later)
    assert "hunter2" not in json.dumps(kept) and MARKER in _typed(kept)
    # across a channel's batches: what the second decides goes in it
    events = [{"type": "response", "details": {"kind": CAST_KIND, "channel": 1, "events": f}}
              for f in (frames, later)]  # fmt: skip
    kept_events = events_without_secrets(events)
    assert "hunter2" not in json.dumps(kept_events) and MARKER in json.dumps(kept_events)
    assert [len(e["details"]["events"]) for e in kept_events] == [3, 4]


def test_the_echo_of_a_line_after_a_silent_read_is_left_out() -> None:
    frames = [[0.1, "o", "$ "], [0.2, "i", "read -rs pw; echo ok\r"],
              [0.3, "o", "read -rs pw; echo ok\r\n"], [0.4, "i", "hunter2"],
              [0.5, "o", "hunter2"], [0.6, "i", "\r"], [0.7, "o", "\r\n"],
              [0.8, "o", "ok\r\n$ "], [0.9, "i", "ls\r"]]  # fmt: skip
    held = HeldFrames()
    kept = _frames(held, frames)
    assert _typed(kept) == f"read -rs pw; echo ok\r{MARKER}\rls\r" and held.lines == 1
    assert "hunter" not in _shown(kept) and _shown(kept).endswith("\r\n\r\nok\r\n$ ")


def test_a_prompt_cut_between_outputs_or_after_many_lines() -> None:
    start = [[0.1, "o", "$ "], [0.2, "i", "sudo id\r"], [0.3, "o", "sudo id\r\n"],
             [0.4, "i", "hunter2\r"], [0.5, "o", "hunter2\r\n[sudo] pass"]]  # fmt: skip
    for rest in ([[0.6, "o", "word for ann: "]], [[0.6, "o", "word for ann: \r\nuid=0\r\n$ "]]):
        held = HeldFrames()
        kept = _frames(held, start + rest)
        assert "hunter2" not in json.dumps(kept) and held.lines == 1, rest
    # more lines that may be a prompt than a prompt has before it (PROMPTS_READ): the line
    # typed ahead is left out, unsure, and no more of them read
    held = HeldFrames()
    kept = _frames(held, [*start[:4], [0.5, "o", "hunter2\r\n" + "a:\r\n" * 100]])
    assert held.unsure == 1 and UNSURE in _typed(kept) and "hunter2" not in _shown(kept)


def test_a_line_typed_ahead_is_held_for_a_few_seconds_at_most() -> None:
    held = HeldFrames()
    kept = held.output(0.1, "$ ") + held.input(0.2, "make\r") + held.output(0.3, "make\r\n")
    kept += held.input(0.4, "ls\r") + held.output(0.5, "ls\r\ncc -c a.c\r\n")
    assert held.holding and _typed(kept) == "make\r"
    kept += held.output(0.4 + HELD_SECONDS + 0.1, "cc -o a a.o\r\n")  # no prompt came
    assert not held.holding and _typed(kept) == "make\rls\r"
    assert _shown(kept).endswith("ls\r\ncc -c a.c\r\ncc -o a a.o\r\n")
