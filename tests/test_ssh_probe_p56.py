"""SSH probe, part 56: a password typed into whiptail's or dialog's --passwordbox was kept
in the recording.

Scripts ask a password so (installers, `cryptsetup` front-ends, Debian's debconf): a box
with the label on a row of its own (`Enter password`, no colon), the field on a row below
it, the cursor placed at the field's start. The screen grid (part 52) read the cursor's
row, left of the cursor: the box's border and blanks, no prompt; what was typed went into
the recording as typed.

Now a field in a box (left of the cursor: its border, blanks, a field's own box, what
echoes a key) is read with its label: the box's text on the rows above it, within the
same border; a label naming a secret in a few words is the field's prompt
(portcullis/password_prompts_grid.Grid.label_above, password_prompts._LABEL).

Real components: sshd (bash), whiptail and dialog (Debian's), a PDP, the SSH proxy, the
OpenSSH client (`ssh -tt`).
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
from portcullis.password_prompts import MARKER, SecretInput

# the box drawn, then the cursor placed in its field (only attributes and modes after)
IN_FIELD = re.compile(r"ancel[\s\S]*\x1b\[\d+;\d+H(?:\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0B])*\Z")
BOXES = {
    "whiptail": "TERM=xterm whiptail --passwordbox 'Enter password' 8 40 2>{out}",
    "dialog": "TERM=xterm dialog --passwordbox 'Enter the vault password' 10 40 2>{out}",
}


@pytest.mark.integration
@pytest.mark.parametrize("program", sorted(BOXES))
async def test_a_password_typed_into_a_dialog_box_is_not_recorded(
    tmp_path: Path, program: str
) -> None:
    secret = f"S3cret-p56-{program}"
    out = tmp_path / "answer"
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)
        assert client.stdin is not None
        command = BOXES[program].format(out=out) + "; echo p56-got-$(wc -c < " + str(out) + ")"
        client.stdin.write(command.encode() + b"\r")
        await screen.until(IN_FIELD)
        for key in secret:  # typed, a key at a time
            client.stdin.write(key.encode())
            await client.stdin.drain()
        client.stdin.write(b"\r")
        await screen.until(f"p56-got-{len(secret)}")
        await screen.prompt()
        client.stdin.write(b"echo p56-$((6*7))-after\r")
        await screen.until("p56-42-after\r\n")
        await screen.prompt()
        client.stdin.write(b"exit\r")
        assert await client.wait() == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    assert out.read_text() == secret
    assert secret not in json.dumps(events)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 1 and "echo p56-$((6*7))-after\r" in typed, typed


# whiptail's box as drawn (Unicode lines), the cursor at its field's start
WHIPTAIL = (
    "\x1b[?1049h\x1b[1;24r\x1b[H\x1b[2J\x1b[9;21H\u250c" + "\u2500" * 38 + "\u2510"
    "\x1b[10;21H\u2502 {label}" + " " * 20 + "\u2502 \x1b[11;21H\u2502" + " " * 38 + "\u2502 "
    "\x1b[12;21H\u2502 " + "_" * 36 + " \u2502 \x1b[14;21H\u2502       <Ok>      <Cancel>  \u2502"
    "\x1b[12;23H"
)


def test_a_boxed_fields_label_is_its_prompt() -> None:
    for label in ("Enter password", "Passphrase:", "Please enter the LUKS passphrase"):
        rule = SecretInput()
        rule.shown("$ x\r\n" + WHIPTAIL.format(label=label))
        assert rule.typed("hunter2\r") == MARKER + "\r", label
    # a label naming no secret, or a sentence about one: what is typed is recorded
    for label in ("Enter your name", "Your password was changed, and mailed to you today"):
        rule = SecretInput()
        rule.shown("$ x\r\n" + WHIPTAIL.format(label=label))
        assert rule.typed("ann\r") == "ann\r", label
    # a field with no box around it, or text left of the cursor: no label read
    rule = SecretInput()
    rule.shown("\x1b[1;1HPassword\x1b[2;1H\x1b[2;1H")
    assert rule.typed("ls\r") == "ls\r"
    rule = SecretInput()
    rule.shown("\x1b[1;1H| Password\x1b[2;1H| $ \x1b[2;5H")
    assert rule.typed("ls\r") == "ls\r"
