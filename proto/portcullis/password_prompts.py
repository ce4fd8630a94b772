"""What is typed at a password prompt of a recorded terminal: never in the recording.

Owns one sans-IO rule (no sockets, no asyncio), used by the SSH proxy as it records a
terminal (proxies/ssh/channel.py) and by the PDP as it reads a recording back
(pdp/cli/terminal_replay.recorded: replay, export, the console; pdp.domain.timeline: the
session's timeline, `replay --format json`), which covers recordings made before the
proxy kept the rule.

A program asking for a secret turns the terminal's echo off (sudo, `read -s`, passwd,
`mysql -p`, ssh's own password prompt), so the secret is on no screen; the recording's
input events ("i") held it as typed, for anyone who replays or exports the recording.
The proxy cannot see the upstream's terminal modes, and a line typed with echo off is
not a secret by that alone (`stty -echo`, then commands: pdp.domain.casts.Unechoed shows
those in the replay on purpose). The rule: a line typed while the screen's current line
ends in a prompt naming a secret (PROMPT: `[sudo] password for ann: `, `Enter passphrase
for key '...': `, `Token: `, `Verification code: `) is recorded as MARKER and its line
end, none of its keys: the keys up to the next Enter (CR or LF), Ctrl-C or Ctrl-D.
bash's `read -s` may show no prompt at all: the line typed after a line that runs it
(SILENT_READ) is left out too, if typed on a line of the screen left empty (the shell's
prompt is not back). A line end answers the prompt: a line typed after it, before the
screen shows another prompt (type-ahead), is recorded as typed. What the screen shows is
the output as sent to the client, its control sequences taken out, from its last line
end or carriage return. A secret typed ahead of its prompt (`sudo x` and its password in
one paste) is not caught: the proxy recorded it before any prompt came. A prompt is text
the upstream prints, and a shell can print one (PS1='Password: ', `stty -echo`): lines
typed there are not recorded either, so the channel's command event counts the lines
left out (typed_at_password_prompts) and the replay shows MARKER where each was typed;
their output is recorded as ever.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "[portcullis: typed at a password prompt, not recorded]"
CAST_KIND = "ssh.asciicast"  # a terminal recording's events (pdp.domain.casts.KIND)
LINE_ENDS = frozenset("\r\n\x03\x04")  # Enter (CR or LF), Ctrl-C, Ctrl-D
_PIECES = re.compile("[^\r\n\x03\x04]+[\r\n\x03\x04]?|[\r\n\x03\x04]")  # keys to a line end
# what of the screen's current line is kept to read its prompt: more than any prompt
PROMPT_TAIL = 512
# a prompt for a secret: a word naming one, then at most a few words (`for ann`, `for
# key '/home/ann/.ssh/id_ed25519'`, `(again)`), ending in a colon or a question mark and
# spaces (or a full-width colon): the shape getpass(3), PAM, sudo, ssh, mysql, openssl and
# `read -p` give it
_ASKED_FOR = (
    r"pass(?:word|wd|phrase|[ -]phrase|code|key)?|pin|secret|token|otp|totp|one[- ]time"
    r"|verification code|security code|auth(?:entication)? code|2fa|mfa|credentials?"
    r"|api[ _-]?key|private key"
    # the same prompts in the upstream's language (sudo, PAM and passwd follow LANG)
    r"|passwort|kennwort|mot de passe|contrase[ñn]a|senha|wachtwoord|lösenord|passord"
    r"|adgangskode|salasana|hasło|heslo|parola|jelszó|пароль|密码|密碼|パスワード|암호|비밀번호"
)
PROMPT = re.compile(rf"(?i)\b(?:{_ASKED_FOR})\b[^\r\n]{{0,300}}[:?\uff1a]\s*\Z")
# a line running bash's `read -s` (its -s among its options) with no prompt (no -p): the
# line typed after it is read with echo off, no prompt shown
SILENT_READ = re.compile(
    r"(?:^|[;&|({!]\s*)read\s+(?:-[A-Za-rt-z]*\s+|-[a-z]\s+\S+\s+)*-[A-Za-z]*s"
)
# control sequences a terminal acts on rather than shows (stream.py's _ESCAPES), and other
# controls but those that end or restart a line
_SEQUENCES = re.compile(
    "(?:\x1b\\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b[\\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[ -/]*[0-~]"
    "|[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]"
)


class SecretInput:
    """A terminal's input as recorded: lines typed at a secret's prompt replaced by MARKER.

    Fed, in the order they happened, the output as the client got it (`shown`) and the
    input (`typed`, which returns what to record of it). Text is str; the proxy hands
    bytes as Latin-1 (one character a byte: every byte the rule reads is ASCII)."""

    def __init__(self) -> None:
        self._screen = ""  # the screen's current line (its last PROMPT_TAIL characters)
        self._in_line = False  # keys of a line typed since its line end
        self._secret = False  # that line is typed at a secret's prompt
        self._keys = ""  # of a line recorded, its start (SILENT_READ reads it)
        self._silent = False  # the line before ran `read -s` with no prompt, not yet answered
        self.lines = 0  # lines not recorded

    def shown(self, text: str) -> None:
        """Output the client was sent."""
        self._screen = (self._screen + text[-PROMPT_TAIL:])[-PROMPT_TAIL:]
        end = self._screen.rfind("\n")
        if end >= 0:
            self._screen = self._screen[end + 1 :]

    def typed(self, text: str) -> str:
        """What of this input the recording keeps."""
        kept: list[str] = []
        for piece in _PIECES.findall(text):
            if not self._in_line:
                self._in_line = True
                # after `read -s`, a line typed on a line of the screen left empty (the shell's
                # prompt not back: the read is on, or an `echo Password:` before it)
                self._secret = self.at_prompt() or (self._silent and not self._shown().strip())
                self._silent = False
                if self._secret:
                    self.lines += 1
                    kept.append(MARKER)
            ended = piece[-1] in LINE_ENDS
            if not self._secret:
                kept.append(piece)
                self._keys = (self._keys + piece)[:PROMPT_TAIL]
            elif ended:
                kept.append(piece[-1])  # the line end, so the replay's lines stay lines
            if ended:
                self._silent = not self._secret and SILENT_READ.search(self._keys) is not None
                self._in_line = self._secret = False
                self._keys = ""
                self._screen = ""  # the prompt is answered: another must be shown
        return "".join(kept)

    def at_prompt(self) -> bool:
        """Whether the screen's current line asks for a secret."""
        return PROMPT.search(self._shown()) is not None

    def _shown(self) -> str:
        """The screen's current line as shown: its text since its last carriage return."""
        line = _SEQUENCES.sub("", self._screen)
        return line[line.rfind("\r") + 1 :] or line.rstrip("\r")


def without_secrets(events: list[list[Any]]) -> list[list[Any]]:
    """A recording's `[time, "o"|"i"|"r", data]` events as SecretInput keeps them: each
    line typed at a secret's prompt is MARKER; an input event left empty is left out."""
    return _kept_frames(SecretInput(), events)


def events_without_secrets(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A session's events (pdp.domain.recordings' shape, in recorded order), each terminal
    recording's batch (`details.kind` ssh.asciicast) as without_secrets keeps its frames,
    read across its channel's batches (a prompt in one batch, what was typed in the next)."""
    rules: dict[Any, SecretInput] = {}
    kept: list[dict[str, Any]] = []
    for event in events:
        details = event.get("details")
        frames = details.get("events") if isinstance(details, dict) else None
        if not isinstance(details, dict) or details.get("kind") != CAST_KIND:
            kept.append(event)
            continue
        if not isinstance(frames, list):
            kept.append(event)
            continue
        rule = rules.setdefault(details.get("channel"), SecretInput())
        kept.append({**event, "details": {**details, "events": _kept_frames(rule, frames)}})
    return kept


def _kept_frames(rule: SecretInput, frames: list[Any]) -> list[Any]:
    kept: list[Any] = []
    for frame in frames:
        if isinstance(frame, list) and len(frame) == 3 and frame[1] == "o":
            rule.shown(str(frame[2]))
        elif isinstance(frame, list) and len(frame) == 3 and frame[1] == "i":
            data = rule.typed(str(frame[2]))
            if not data:
                continue
            frame = [frame[0], "i", data]
        kept.append(frame)
    return kept
