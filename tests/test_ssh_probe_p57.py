"""SSH probe, part 57: a password typed ahead while the screen showed work under way with
no line end (`Downloading...`, then sudo's prompt) was recorded as typed.

Part 51 held a line typed ahead on a line of the screen left empty or at a progress line
(redrawn by a carriage return) until the screen decided it; a line typed at any other
text was read as answering it (a prompt with no space after it), and recorded at once.
A line showing work under way, ending in an ellipsis (`Downloading...`, `Connecting…`),
asks nothing: what is typed there is typed ahead of what comes next. It is now held as
one typed on an empty line: a secret's prompt next leaves it out (and its echo); a line
typed at a screen showing anything else, the recording's end, or part 51's bounds (10 s,
64 KiB) record it as typed. Lines typed at other text are recorded at once as before, so
live recordings wait no more than they did (a shell's prompt never ends in an ellipsis).

Real components: sshd (bash), a PDP, the SSH proxy, the OpenSSH client (`ssh -tt`).
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
from portcullis.password_prompts import MARKER, HeldFrames

SECRET = "S3cret-p57-ahead"
# work under way shown with no line end, then a password read (sudo's way: echo off)
BUSY = (
    "echo p57-resolved; printf 'Downloading...'; until read -t 0; do :; done; stty -echo;"
    " printf ' done\\r\\n[sudo] password for ann: '; read -r pw; stty echo; echo; echo p57-${{#pw}}"
)


@pytest.mark.integration
async def test_a_password_typed_ahead_at_work_under_way_is_not_recorded(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        assert client.stdin is not None
        client.stdin.write(BUSY.format().encode() + b"\r")
        await screen.until(re.compile(r"(?<!')Downloading\.\.\.\Z"))  # (not the echo)
        client.stdin.write(f"{SECRET}\r".encode())  # before sudo's prompt
        await screen.until(f"p57-{len(SECRET)}")
        await screen.prompt()
        client.stdin.write(b"echo p57-$((6*7))-after\r")
        await screen.until("p57-42-after\r\n")
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await client.wait() == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
        assert SECRET in screen.text  # the terminal echoed it before the prompt
    assert SECRET not in json.dumps(events)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 1 and "echo p57-$((6*7))-after\r" in typed, typed


def _typed(frames: list[list[object]]) -> str:
    return "".join(str(f[2]) for f in frames if f[1] == "i")


def test_only_work_under_way_holds_a_line_typed_at_text() -> None:
    for busy in ("Downloading...", "Connecting to db-1 \u2026", "Building... "):
        held = HeldFrames()
        kept = held.output(0.1, f"$ make\r\n{busy}") + held.input(0.2, "hunter2\r")
        assert not _typed(kept), busy  # held
        kept += held.output(0.3, "hunter2\r\n") + held.output(0.4, "[sudo] password: ")
        kept += held.close()
        assert _typed(kept) == MARKER + "\r" and "hunter2" not in json.dumps(kept), busy
    # other text: answered at once (a prompt with no space after it), as before
    for shown in ("Continue [y/N]", "~/src$", "Loading.. 45%"):
        held = HeldFrames()
        kept = held.output(0.1, f"$ x\r\n{shown}") + held.input(0.2, "y\r")
        assert _typed(kept) == "y\r", shown
    # work under way, then anything but a secret's prompt: recorded as typed
    held = HeldFrames()
    kept = held.output(0.1, "Downloading...") + held.input(0.2, "ls\r")
    kept += held.output(0.3, "ls\r\n done\r\n$ ") + held.input(0.4, "pwd\r") + held.close()
    assert _typed(kept) == "ls\rpwd\r"
