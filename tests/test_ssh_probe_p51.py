"""SSH probe, part 51: passwords typed at a progress line, or at a prompt ending in `>`,
were kept in the terminal's recording.

Part 50 holds a line typed ahead of its prompt only when typed on a line of the screen left
empty. A command that shows progress before asking for a password (a download's
percentage redrawn with a carriage return, then sudo's prompt) leaves the screen's line
showing that progress: the password typed ahead there was recorded as typed, and its echo
as output. Part 47's prompts end in a colon or a question mark: `Enter passphrase>` or
`Password>` (ssh-agent front-ends, network gear, some REPLs) named no secret to it.

A line typed while the screen's line is a progress line (redrawn: it ends in a carriage
return, or shows text no prompt ends in, no space after it) is now held as one typed on an
empty line; a prompt naming a secret may end in `>`.

Real components: sshd (bash, the account's shell; stty), a PDP, the SSH proxy, the OpenSSH
client (`ssh -tt`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_ssh_probe_p47 import dba_shell
from test_ssh_proxy import ssh_stack

from pdp.domain.casts import casts_of
from pdp.domain.recordings import session_events
from portcullis.password_prompts import MARKER, HeldFrames, SecretInput

SECRETS = ("S3cret-p51-progress", "S3cret-p51-ahead-cr", "S3cret-p51-angle", "S3cret-p51-pw")
# progress redrawn by a carriage return, then sudo's way (part 50's READ): echo off, the
# prompt once the password typed ahead is waiting, a line read
PROGRESS = (
    "printf 'p51 fetching %d%%' $((5*2)); printf '\\rp51 fetching %d%%' $((9*11));"
    " until read -t 0; do :; done; stty -echo; printf '[sudo] password for ann: ';"
    " read -r pw; stty echo; echo; echo p51-read-${{#pw}}-{n}"
)
# the same, the progress line left with the cursor at its start
PROGRESS_CR = PROGRESS.replace("%%' $((9*11));", "%%\\r' $((9*11));")


@pytest.mark.integration
async def test_passwords_typed_at_a_progress_line_or_a_prompt_in_angle_are_left_out(
    tmp_path: Path,
) -> None:
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        assert client.stdin is not None
        for n, (command, secret) in enumerate(((PROGRESS, SECRETS[0]),
                                               (PROGRESS_CR, SECRETS[1]))):  # fmt: skip
            client.stdin.write(command.format(n=n).encode() + b"\r")
            await screen.until(f"p51 fetching 99%{chr(13) if n else ''}")
            client.stdin.write(f"{secret}\r".encode())  # typed ahead of sudo's prompt
            await screen.until(f"p51-read-{len(secret)}-{n}\r\n")
            await screen.prompt()
        for prompt, secret in (("Enter passphrase> ", SECRETS[2]), ("Password>", SECRETS[3])):
            client.stdin.write(f"read -rs -p '{prompt}' pw; echo; echo p51-b-${{#pw}}\r".encode())
            await screen.until(re.compile(re.escape(prompt) + r"\Z"))
            client.stdin.write(f"{secret}\r".encode())
            await screen.until(f"p51-b-{len(secret)}\r\n")
            await screen.prompt()
        client.stdin.write(b"echo p51-$((6*7))-after\r")
        await screen.until("p51-42-after\r\n")
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await client.wait() == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    recorded = json.dumps(events)
    assert not [secret for secret in SECRETS if secret in recorded], recorded
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 4 and "echo p51-$((6*7))-after\r" in typed, typed
    shown = "".join(str(e[2]) for e in cast.events if e[1] == "o")
    assert "p51 fetching 99%" in shown and "p51-42-after" in shown


def _kept(frames: list[list[object]]) -> tuple[str, str, HeldFrames]:
    held = HeldFrames()
    out: list[list[object]] = []
    for at, code, text in frames:
        assert isinstance(at, float) and isinstance(text, str)
        out += held.output(at, text) if code == "o" else held.input(at, text)
    out += held.close()
    typed = "".join(str(f[2]) for f in out if f[1] == "i")
    return typed, "".join(str(f[2]) for f in out if f[1] == "o"), held


def test_a_line_typed_at_a_progress_line_is_held_until_the_screen_decides_it() -> None:
    for progress in ("10%\r 99% [=====>]", "10%\r99%\r", "\x1b[2K\r45%|##  |", "\r 99%  \r"):
        typed, shown, held = _kept([[0.1, "o", "$ "], [0.2, "i", "sudo apt update\r"],
                                    [0.3, "o", "sudo apt update\r\n" + progress],
                                    [0.4, "i", "hunter2\r"], [0.5, "o", "hunter2\r\n"],
                                    [0.6, "o", "[sudo] password for ann: "],
                                    [0.7, "o", "\r\n$ "], [0.8, "i", "ls\r"]])  # fmt: skip
        assert typed == f"sudo apt update\r{MARKER}\rls\r" and held.lines == 1, progress
        assert "hunter2" not in shown, progress
    # typed at a progress line that no secret's prompt follows: recorded as typed, in order
    typed, shown, held = _kept([[0.1, "o", "$ "], [0.2, "i", "make\r"],
                                [0.3, "o", "make\r\n 10%\r 99%"], [0.4, "i", "ls\r"],
                                [0.5, "o", "ls\r\n\r\n$ ls\r\na.c\r\n$ "],
                                [0.6, "i", "df\r"]])  # fmt: skip
    assert typed == "make\rls\rdf\r" and held.lines == 0 and "ls\r\n\r\n$ ls" in shown


def test_lines_typed_at_a_shell_prompt_are_recorded_as_they_come() -> None:
    for prompt in ("$ ", "ann@db-2:~$ \x1b[?2004h", "% ", "\u276f ", "mysql> ", ">>> "):
        held = HeldFrames()
        held.output(0.1, prompt)
        assert held.input(0.2, "ls\r") == [[0.2, "i", "ls\r"]], prompt


def test_prompts_ending_in_an_angle_bracket() -> None:
    rule = SecretInput()
    for prompt in ("Enter passphrase> ", "Password>", "PIN > ", "\x1b[1mToken>\x1b[0m ",
                   "Password >> ", "Enter passphrase for key 'id'> "):  # fmt: skip
        rule.shown("\r\n" + prompt)
        assert rule.typed("x y\r") == MARKER + "\r", prompt
    for prompt in ("mysql> ", "> ", "passwords=> ", "ann@host ~/passwords> ", "<password>",
                   "<td>secret</td>", "Password -> see the vault > "):  # fmt: skip
        rule.shown("\r\n" + prompt)
        assert rule.typed("x y\r") == "x y\r", prompt


def test_a_line_typed_ahead_of_a_prompt_in_angle_is_left_out_with_its_echo() -> None:
    typed, shown, held = _kept(
        [
            [0.1, "o", "$ "],
            [0.2, "i", "vpn-up\r"],
            [0.3, "o", "vpn-up\r\n"],
            [0.4, "i", "hunter2\r"],
            [0.5, "o", "hunter2\r\nconnecting\r\n\x1b[1mPassword>\x1b[0m "],
        ]
    )
    # the prompt, the answer's end and more in one output
    assert typed == f"vpn-up\r{MARKER}\r" and "hunter2" not in shown and held.lines == 1
    typed, shown, held = _kept([[0.1, "o", "$ "], [0.2, "i", "vpn-up\r"],
                                [0.3, "o", "vpn-up\r\n"], [0.4, "i", "hunter2\r"],
                                [0.5, "o", "hunter2\r\nPassword> \r\nup\r\n$ "]])  # fmt: skip
    assert typed == f"vpn-up\r{MARKER}\r" and "hunter2" not in shown and held.lines == 1
