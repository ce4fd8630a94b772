"""SSH probe, part 47: a password typed at a prompt was kept in the terminal's recording.

A program asking for a secret turns its terminal's echo off (sudo, `read -s`, passwd,
`mysql -p`, ssh to another host), so the screen never shows it; the proxy recorded every
key typed into a shell as the asciicast's input events, the password among them, and
`portcullis replay` printed it as `[typed, not echoed: S3cret]` (the replay shows lines
the terminal did not echo, part 38), as did the export and the console's download.

The proxy cannot see the upstream's terminal modes. It now leaves out of the recording
every line typed while the screen's current line (the output as the client got it) ends
in a prompt naming a secret: the keys up to the next Enter, Ctrl-C or Ctrl-D become one
marker (portcullis/password_prompts.py). A line typed after that Enter is recorded as typed
until another prompt is shown, so a command typed with echo off at a shell prompt stays in
the replay (part 38). Replay, export and the console apply the same rule to what they read
(a recording made before this holds the keys).

Real components: sshd (bash, the account's shell), the mysql client, python's getpass (the
tty prompt sudo and passwd use), a PDP, the SSH proxy, the OpenSSH client (`ssh -tt`).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from ssh_harness import askpass, client_options
from test_ssh_proxy import ssh_stack

from pdp.cli.terminal_replay import after_timeline, export, recorded
from pdp.domain.casts import Cast, casts_of
from pdp.domain.recordings import session_events
from pdp.domain.timeline import build_timeline
from pdp.store import AuditRecord
from portcullis.password_prompts import MARKER, SecretInput, without_secrets

DBA = ("dba", "pii-readers")  # a shell is theirs (ssh.rego)
# the shell's prompt (`$ `, or root's `# `) at the screen's end (bracketed paste's after it)
SHELL_PROMPT = re.compile(r"[$#] (?:\x1b\[[0-9;?]*[A-Za-z])*\Z")
SECRETS = ("S3cret-p47-read", "S3cret-p47-mysql", "S3cret-p47-sudo", "S3cret-p47-silent")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Screen:
    """The OpenSSH client's output, read as it comes."""

    def __init__(self, stdout: asyncio.StreamReader) -> None:
        self.stdout = stdout
        self.text = ""

    async def prompt(self) -> None:
        """Until the shell's prompt ends the screen."""
        await self.until(SHELL_PROMPT)

    async def until(self, done: str | re.Pattern[str], at_end: bool = False) -> None:
        """Until the screen shows `done` (at its end, if `at_end`), or matches it."""
        while not (
            done.search(self.text)
            if isinstance(done, re.Pattern)
            else self.text.endswith(done)
            if at_end
            else done in self.text
        ):
            try:
                chunk = await asyncio.wait_for(self.stdout.read(4096), 30)
            except TimeoutError:
                chunk = b""
            assert chunk, (done, self.text)
            self.text += chunk.decode(errors="replace")


async def dba_shell(stack: Any) -> tuple[asyncio.subprocess.Process, Screen]:
    """OpenSSH's `ssh -tt` logged in as a dba through the proxy, at the shell's prompt
    (no controlling terminal: askpass answers with the token)."""
    env = askpass(stack.tmp, stack.token(DBA))
    argv = ["ssh", *client_options(stack.port), "-tt", "-p", str(stack.port), "ann@127.0.0.1"]
    client = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    screen = Screen(client.stdout)
    await screen.prompt()
    return client, screen


def _replayed(casts: list[Cast], raw: bool) -> str:
    out = _Terminal()
    after_timeline(casts, argparse.Namespace(speed=100.0, raw=raw), out, sleep=lambda _: None)
    return out.getvalue()


def _exported(casts: list[Cast]) -> str:
    out = io.StringIO()
    assert export(casts, argparse.Namespace(channel=None), out) == 0
    return out.getvalue()


@pytest.mark.integration
async def test_passwords_typed_at_prompts_never_reach_the_recording(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        client, screen = await dba_shell(stack)

        async def answer(command: str, prompt: str, secret: str, done: str) -> None:
            assert client.stdin is not None
            client.stdin.write(command.encode() + b"\r")
            await screen.until(prompt, at_end=True)
            for key in secret:  # typed, a key at a time
                client.stdin.write(key.encode())
                await client.stdin.drain()
            client.stdin.write(b"\r")
            await screen.until(done)
            await screen.prompt()  # the shell reads the next line (no key typed ahead)

        await answer("read -rs -p 'Password: ' pw; echo; echo p47-read-${#pw}",
                     "Password: ", SECRETS[0], "p47-read-15")  # fmt: skip
        await answer("mysql -h 127.0.0.1 -P 9 -u p47 -p", "Enter password: ", SECRETS[1],
                     "ERROR")  # fmt: skip
        await answer(
            'python3 -c \'import getpass; getpass.getpass("[sudo] password for ann: ");'
            ' print("p47-" + "sudo-ok")\'',
            "[sudo] password for ann: ",
            SECRETS[2],
            "p47-sudo-ok",
        )
        # `read -s` with no prompt at all: the line typed after it (echo off before the
        # marker: no key typed after it is echoed, however soon read runs)
        await answer("stty -echo; echo p47-$((2+2))-ready; read -rs pw2; stty echo;"
                     " echo p47-silent-${#pw2}", "p47-4-ready\r\n", SECRETS[3],
                     "p47-silent-17")  # fmt: skip
        # after an answered prompt, lines are recorded as typed
        assert client.stdin is not None
        client.stdin.write(b"echo p47-$((6*7))-after\rexit\r")
        await screen.until("p47-42-after")
        assert await asyncio.wait_for(client.wait(), 30) == 0
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
        records = await stack.pdp.store.query(kind="session.events")
    assert not any(secret in json.dumps(events) for secret in SECRETS)
    (cast,) = casts_of(events)
    typed = "".join(str(e[2]) for e in cast.events if e[1] == "i")
    assert typed.count(MARKER) == 4, typed
    assert "echo p47-$((6*7))-after\r" in typed and "read -rs -p" in typed
    commands = [e for e in events if e.get("type") == "command"]
    assert [c["details"].get("typed_at_password_prompts") for c in commands] == [4]
    casts = recorded(records)
    for shown in (_replayed(casts, False), _replayed(casts, True), _exported(casts)):
        assert not any(secret in shown for secret in SECRETS)


def _record(events: list[list[object]]) -> AuditRecord:
    batch = {"kind": "ssh.asciicast", "channel": 1, "decision_id": "d", "events": events}
    body = {"events": [{"time": 1.0, "direction": "upstream", "type": "response",
                        "details": batch}]}  # fmt: skip
    return AuditRecord(1, "r", "session.events", 1.0, "s", "ann", body, "", "")


def test_a_recording_made_before_is_replayed_and_exported_without_the_password() -> None:
    events: list[list[object]] = [
        [0.1, "o", "$ "],
        [0.2, "i", "sudo -k id\r"],
        [0.3, "o", "sudo -k id\r\n[sudo] password for ann: "],
        [0.4, "i", "S3cret-"],
        [0.5, "i", "p47-old\r"],
        [0.6, "o", "\r\nuid=0(root)\r\n$ "],
        [0.7, "i", "stty -echo\r"],
        [0.8, "o", "stty -echo\r\n$ "],
        [0.9, "i", "rm -f /tmp/p47\r"],
        [1.0, "o", "$ "],
    ]
    casts = recorded([_record(events)])
    for shown in (_replayed(casts, False), _replayed(casts, True), _exported(casts)):
        assert "S3cret" not in shown and "p47-old" not in shown, shown
    # a command typed with echo off at the shell's prompt is still shown as typed
    assert "[typed, not echoed: rm -f /tmp/p47]" in _replayed(casts, False)


def test_a_recording_made_before_is_in_the_timeline_without_the_password() -> None:
    # (needs /work/notes/patches/sshsec16-2.patch: pdp/domain/timeline.py)
    opened = AuditRecord(0, "o", "session.open", 1.0, "s", "ann", {"verdict": "allow"}, "", "")
    prompt: list[object] = [0.3, "o", "sudo -k id\r\n[sudo] password for ann: "]
    first = _record([[0.1, "o", "$ "], [0.2, "i", "sudo -k id\r"], prompt])
    # the password in the next batch: the rule reads a channel's batches as one
    second = _record([[0.4, "i", "S3cret-p47-timeline\r"], [0.5, "o", "\r\nuid=0\r\n$ "]])
    second = AuditRecord(2, "r2", "session.events", 2.0, "s", "ann", second.body, "", "")
    shown = json.dumps(build_timeline(opened, None, [first, second]).to_dict())
    assert "S3cret" not in shown and MARKER in shown and "sudo -k id" in shown


def test_only_the_line_at_the_prompt_is_left_out() -> None:
    rule = SecretInput()
    rule.shown("$ sudo ls\r\n\x1b[1m[sudo] password for ann:\x1b[0m ")
    # typed ahead with its Enter: the next line is no answer to that prompt
    assert rule.typed("hunter2\rls\r") == MARKER + "\rls\r"
    rule.shown("\r\nSorry, try again.\r\n[sudo] password for ann: ")
    assert rule.typed("abc\x03") == MARKER + "\x03"  # Ctrl-C ends it too
    rule.shown("^C\r\nann@host:~/passwords$ ")
    assert rule.typed("cat notes\r") == "cat notes\r"
    for prompt in ("Enter passphrase for key '/home/ann/.ssh/id_ed25519': ", "Token: ",
                   "ann@db-2's password: ", "Verification code: ", "Enter PEM pass phrase:",
                   "New password: ", "Password (again): ", "PIN? ",
                   "[sudo] Passwort für ann: ", "密码\uff1a", "Пароль: "):  # fmt: skip
        rule.shown("\r\n" + prompt)
        assert rule.typed("x y\r") == MARKER + "\r", prompt
    for prompt in ("$ ", "Continue? [y/N] ", "File name: ", "root@passwd-host:~# "):
        rule.shown("\r\n" + prompt)
        assert rule.typed("x y\r") == "x y\r", prompt
    assert rule.lines == 13
    # bash's `read -s` shows no prompt: the line after the one running it is left out,
    # unless the shell's prompt came back first (the read is over, or never ran)
    for line, after, kept in (("read -rs pw\r", "\r\n", MARKER + "\r"),
                              ("read -s x\r", "\r\nbash: x: readonly\r\n$ ", "ls\r"),
                              ("echo Password; read -s x\r", "\r\nPassword\r\n", MARKER + "\r"),
                              ("read x\r", "\r\n", "ls\r")):  # fmt: skip
        assert rule.typed(line) == line
        rule.shown(after)
        assert rule.typed("ls\r") == kept, line


def test_events_left_empty_are_left_out() -> None:
    events: list[list[object]] = [[0.1, "o", "Password: "], [0.2, "i", "ab"], [0.3, "i", "c\r"]]
    assert without_secrets(events) == [[0.1, "o", "Password: "], [0.2, "i", MARKER],
                                       [0.3, "i", "\r"]]  # fmt: skip
