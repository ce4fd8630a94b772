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
for key '...': `, `Token: `, `Verification code: `, `Password>`) is recorded as MARKER and
its line end, none of its keys: the keys up to the next Enter (CR or LF), Ctrl-C or Ctrl-D.
bash's `read -s` may show no prompt at all: the line typed after a line that runs it
(SILENT_READ) is left out too, if typed on a line of the screen left empty (the shell's
prompt is not back). A line end answers the prompt. What the screen shows is the output
as sent to the client, its control sequences taken out, from its last line end or
carriage return; on a screen drawn by placing the cursor (tmux; pinentry-curses, as gpg and
ssh-add ask a passphrase; vim), what the cursor's row shows left of it
(portcullis/password_prompts_grid.py), or, at a field in a dialog box (whiptail's and
dialog's --passwordbox), the box's label above it when it names a secret in a few words.

A secret typed ahead of its prompt (while sudo starts, or pasted with its command) comes
while the screen shows nothing to answer, and the upstream's terminal echoes it back
before sudo turns its echo off. A recording (HeldFrames: the proxy's, and the PDP's
reading of old ones) holds a line typed on a line of the screen left empty, and every
frame after it, until the screen decides it: a secret's prompt shown next makes it, and
every line typed ahead with it (the prompt's reader may read them as one:
SecretInput.answered), MARKER, and takes the terminal's echo of each out of the output
held (once, nothing else: a line typed ahead of a prompt a user printed hides none of
what the screen showed); a line typed at a screen showing anything else, the recording's
end, or HELD_SECONDS, records it as typed, in its place. Unsure (past HELD_CHARS held, or
past PROMPTS_READ lines of one output that may be prompts), the oldest such line is left
out, UNSURE in its place, its echo too (counted: the channel's typed_ahead_not_recorded).
A line typed after `read -s` is held until its line end's echo is shown, and its echo
taken out alike. A line typed at a progress line (redrawn by a carriage return: `10%\\r`,
`\\r 99% [===>]`) or at work under way (`Downloading...`, `Connecting…`: a line ending in an
ellipsis) is held as one typed on an empty line (_answered_here). Not caught: a line typed
ahead while the screen's line shows other output with no line end and no ellipsis is
recorded as typed (read as answering it: a prompt with no space after it).

A prompt is text the upstream prints, and a shell can print one (PS1='Password: ', `stty
-echo`): lines typed there are not recorded either, so the channel's command event counts
the lines left out (typed_at_password_prompts) and the replay shows MARKER where each was
typed; their output is recorded as ever.
"""

from __future__ import annotations

import re
from typing import Any

from portcullis.password_prompts_grid import GRID_READ, PLACES, TO_LINE_START, Grid

MARKER = "[portcullis: typed at a password prompt, not recorded]"
# a line typed ahead that the screen never decided (HeldFrames: too much held)
UNSURE = "[portcullis: typed ahead of a prompt that may ask for a secret, not recorded]"
HELD_CHARS = 1 << 16  # what HeldFrames holds of a recording, at most, while a line is undecided
# and for how long (seconds from the frame held first, read as frames come): a line typed
# ahead that long before any prompt is recorded as typed, so a session's recording is not
# kept from its live viewers for longer (sudo's prompt comes within a second or two)
HELD_SECONDS = 10.0
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
    r"|api[ _-]?key|private key|(?:en|de)cryption key|same key"  # (vim -x, ccrypt)
    # the same prompts in the upstream's language (sudo, PAM and passwd follow LANG)
    r"|passwort|kennwort|mot de passe|contrase[ñn]a|senha|wachtwoord|lösenord|passord"
    r"|adgangskode|salasana|hasło|heslo|parola|jelszó|пароль|密码|密碼|パスワード|암호|비밀번호"
)
# or in `>` (`Enter passphrase>`, `Password>`: agents' front-ends, network gear, REPLs), the
# secret's word close before it and no tag between (`<password>`, `<td>secret</td>`)
PROMPT = re.compile(
    rf"(?i)(?:\b(?:{_ASKED_FOR})\b[^\r\n]{{0,300}}[:?\uff1a]"
    rf"|(?<!<)\b(?:{_ASKED_FOR})\b[^\r\n<>]{{0,40}}>{{1,3}})\s*\Z"
)
# a dialog box's label over its field (password_prompts_grid.Grid.label_above), as
# whiptail and dialog show a --passwordbox's text: a secret's word, a few words at most,
# a colon or nothing after (`Enter password`, `Please enter the LUKS passphrase`)
_LABEL = re.compile(
    rf"(?i)\A(?:[\w'-]+\s+){{0,6}}(?:{_ASKED_FOR})\b(?:\s+[\w'./()-]+){{0,4}}\s*[:?\uff1a]?\Z"
)
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


# the end of a line of output that may be a secret's prompt (PROMPT reads its line as the
# screen shows it): a colon or question mark, then a few characters at most (spaces, the
# sequences that end a bold prompt's bold) to the line's end
_MAY_ASK = re.compile("(?:[:?\uff1a][^\n:?\uff1a]{0,40}|>(?:[ \t\r]|\x1b\\[[0-9;]*m)*)(?:\n|\\Z)")
# a line of output showing work under way, asking nothing (`Downloading...`, `Connecting…`)
_BUSY = re.compile("(?:\\.{3}|\u2026)\\s*\\Z")
PROMPTS_READ = 64  # of one output, the lines that may be a prompt read while one is held


class Ahead:
    """A line typed ahead of what it answers: its keys, whether its line end was typed,
    and how the screen decided it (None: not yet; "secret": a secret's prompt came next;
    "typed": it answered something else; "unsure": never decided, left out)."""

    def __init__(self, decided: str | None = None) -> None:
        self.keys = ""
        self.ended = False
        self.decided = decided
        # decided as soon as typed (after `read -s`, echo maybe still on): its echo may
        # come until its line end's has
        self.echoing = decided is not None
        self.marked = False  # its marker is in the recording
        self.scrubbed = False  # its echo is out of the output held after it


class SecretInput:
    """A terminal's input as recorded: lines typed at a secret's prompt replaced by MARKER.

    Fed, in the order they happened, the output as the client got it (`shown`) and the
    input (`typed`, which returns what to record of it). Text is str; the proxy hands
    bytes as Latin-1 (one character a byte: every byte the rule reads is ASCII)."""

    def __init__(self, ahead: bool = False) -> None:
        self._screen = ""  # the screen's current line (its last PROMPT_TAIL characters)
        self._in_line = False  # keys of a line typed since its line end
        self._secret = False  # that line is typed at a secret's prompt
        self._keys = ""  # of a line recorded, its start (SILENT_READ reads it)
        self._silent = False  # the line before ran `read -s` with no prompt, not yet answered
        self.lines = 0  # lines not recorded
        self.unsure = 0  # of them, lines typed ahead never decided (HeldFrames: UNSURE)
        # lines typed ahead (on a line of the screen left empty), held until decided
        # (HeldFrames; only when `ahead`): oldest first, the line being typed last
        self._ahead = ahead
        self.held: list[Ahead] = []
        self._holding: Ahead | None = None  # the line being typed, when held
        self._grid: Grid | None = None  # a screen drawn by placing the cursor, while it is

    def shown(self, text: str) -> None:
        """Output the client was sent (all of it while a line typed ahead is undecided:
        a prompt may stand on any of its lines)."""
        if "\n" in text:
            for line in self.held:
                line.echoing = line.echoing and not line.ended
        answered = -1  # where a prompt answered by a line typed ahead ends this output
        before = self._screen
        if self.undecided() and self._screen and "\n" in text:
            # the screen's line, ended here: a prompt cut between two outputs
            self._screen = (self._screen + text[: text.index("\n")].rstrip("\r"))[-PROMPT_TAIL:]
            if self.at_prompt():
                self.answered()
        # lines read as prompts: a few, however many the output holds
        for read, found in enumerate(_MAY_ASK.finditer(text) if self.undecided() else ()):
            if read >= PROMPTS_READ:
                # more than a prompt's share of lines that may be one: not read further,
                # the line typed ahead left out, unsure (HeldFrames)
                self.decide_first("unsure")
                break
            start = text.rfind("\n", 0, found.start()) + 1
            asking = text[start : found.end()].rstrip("\r\n")
            self._screen = ((before if start == 0 else "") + asking)[-PROMPT_TAIL:]
            if self.at_prompt():
                self.answered()
                answered = found.end()
            if not self.undecided():
                break
        self._screen = self._current_line(before, text)
        if answered == len(text):
            self._screen = ""  # answered: another must be shown
        elif self.undecided() and self.at_prompt():  # (a prompt cut between two outputs)
            self.answered()
            self._screen = ""

    def _current_line(self, before: str, text: str) -> str:
        """The screen's current line once `text` is shown after `before`: its text since
        its last line end, or, on a screen drawn by placing the cursor (Grid), what is left
        of the cursor on its row."""
        if self._grid is None and (placed := PLACES.search(text)) is not None:
            self._grid = Grid()
            line = (before + text[: placed.start()])[-PROMPT_TAIL:]
            self._grid.feed(line[line.rfind("\n") + 1 :])  # the row it places the cursor on
            before, text = "", text[placed.start() :]
        if self._grid is not None:
            text = text[-GRID_READ:]
            left = self._grid.feed(text)
            if left == len(text):
                # a dialog box's field under a label naming a secret: the label read as
                # its prompt (whiptail's and dialog's --passwordbox)
                label = self._grid.label_above()[-PROMPT_TAIL:]
                if label and _LABEL.search(label):
                    return label.rstrip(" :?\uff1a") + ": "
                return self._grid.left_of_cursor()[-PROMPT_TAIL:]
            self._grid = None  # (the alternate screen left: lines again, what follows)
            before, text = "", text[left:]
        line = (before + TO_LINE_START.sub("\r", text[-PROMPT_TAIL:]))[-PROMPT_TAIL:]
        return line[line.rfind("\n") + 1 :]

    def answered(self) -> None:
        """A secret's prompt is shown after lines were typed ahead: they are its answer.
        All of them: what is typed ahead waits in the terminal's input for whatever reads
        it, and the prompt's reader takes it as it reads a line (a line end typed while
        the shell's line editor held the terminal is no line end to it: `sudo x`, its
        password and `ls` pasted at once gave sudo the password, a CR and `ls`); a line
        the shell reads after all is echoed by it, so its command is still on the screen
        recorded."""
        while self.undecided():
            self.lines += 1
            self.decide_first("secret")

    def undecided(self) -> bool:
        """Whether a line typed ahead waits for the screen to decide it."""
        return any(line.decided is None for line in self.held)

    def waiting(self, line: Ahead) -> bool:
        """Whether the recording after `line` waits: it is not decided, or its echo may
        be yet to come."""
        return line.decided is None or line.echoing

    def typed(self, text: str) -> str:
        """What of this input the recording keeps."""
        return "".join(piece for piece, line in self.typed_pieces(text) if line is None)

    def typed_pieces(self, text: str) -> list[tuple[str, Ahead | None]]:
        """This input in pieces, each what the recording keeps of it now (None) or a piece
        of a line typed ahead, held (only when `ahead`) until the screen decides it."""
        kept: list[tuple[str, Ahead | None]] = []
        for piece in _PIECES.findall(text):
            if not self._in_line:
                self._in_line = True
                # after `read -s`, a line typed on a line of the screen left empty (the shell's
                # prompt not back: the read is on, or an `echo Password:` before it)
                prompted = self.at_prompt()
                self._secret = prompted or (self._silent and not self._shown().strip())
                self._silent = False
                if self._secret:
                    self.lines += 1
                if self._secret and self._ahead and not prompted:
                    # no prompt turned the echo off: what the terminal echoes of it until
                    # its line end is echoed is held with it, and taken out (HeldFrames)
                    self._holding = Ahead("secret")
                    self.held.append(self._holding)
                elif self._secret:
                    kept.append((MARKER, None))
                elif self._ahead and self._answered_here():
                    # typed at a screen that shows something else: the lines typed ahead
                    # before it answered no secret's prompt (one would have decided them)
                    self._decide_held("typed")
                if (
                    not self._secret
                    and self._ahead
                    and (self.undecided() or not self._answered_here())
                ):
                    self._holding = Ahead()
                    self.held.append(self._holding)
            ended = piece[-1] in LINE_ENDS
            if self._holding is not None:
                self._holding.keys += piece
                self._holding.ended = ended
                kept.append((piece, self._holding))
            elif not self._secret:
                kept.append((piece, None))
            elif ended:
                kept.append((piece[-1], None))  # the line end, so the replay's lines stay lines
            if not self._secret:
                self._keys = (self._keys + piece)[:PROMPT_TAIL]
            if ended:
                self._silent = not self._secret and SILENT_READ.search(self._keys) is not None
                self._in_line = self._secret = False
                self._holding = None
                self._keys = ""
                self._screen = ""  # the prompt is answered: another must be shown
        return kept

    def _decide_held(self, how: str) -> None:
        for line in self.held:
            if line.decided is None:
                line.decided = how

    def decide_first(self, how: str) -> None:
        """The oldest line typed ahead and not yet decided is decided `how`."""
        for line in self.held:
            if line.decided is None:
                line.decided = how
                self.unsure += how == "unsure"
                if line is self._holding:  # the rest of the line is left out as well
                    self._holding = None
                    self._secret = True
                return

    def at_prompt(self) -> bool:
        """Whether the screen's current line asks for a secret."""
        return PROMPT.search(self._shown()) is not None

    def _answered_here(self) -> bool:
        """Whether a line typed now answers what the screen's line shows (a shell's or a
        program's prompt), rather than being typed ahead of what is to come: on a line
        left empty, or a progress line (redrawn by a carriage return, and the cursor back
        at its start or after text ending in no space, as a prompt's does), nor one of
        work under way (ending in an ellipsis: `Downloading...`, asking nothing). A zsh
        prompt (drawn after `\\r \\r`) ends in a space; a line of other text ending with
        no line end (`Continue [y/N]`) is answered."""
        shown = self._shown()
        if not shown.strip():
            return False
        if self._grid is not None:
            return not self._grid.returned or shown[-1].isspace()
        if _BUSY.search(shown):
            return False  # work under way (`Downloading...`): what is typed is typed ahead
        line = _SEQUENCES.sub("", self._screen)
        return not line.endswith("\r") and ("\r" not in line or shown[-1].isspace())

    def _shown(self) -> str:
        """The screen's current line as shown: its text since its last carriage return."""
        line = _SEQUENCES.sub("", self._screen)
        return line[line.rfind("\r") + 1 :] or line.rstrip("\r")


class HeldFrames:
    """A terminal recording's frames (`[time, "o"|"i", text]`, and any other kind) as
    recorded: SecretInput's rule, and a line typed ahead held with every frame after it
    until the screen decides it (SecretInput.shown: a secret's prompt shown next makes it
    MARKER, and what the terminal echoed of it before the prompt turned its echo off is
    taken out of the output; a line typed at a screen showing anything else, or the
    recording's end, records it as typed). Past HELD_CHARS held, the oldest undecided
    line is left out (UNSURE), its echo too, and counted in `unsure`.

    Text is str; the proxy hands bytes as Latin-1, and the text the rule reads of an
    output (`shown`) decoded as the screen shows it."""

    def __init__(self) -> None:
        self.rule = SecretInput(ahead=True)
        self._frames: list[list[Any]] = []  # held, each with the Ahead it is part of
        self._chars = 0

    @property
    def lines(self) -> int:
        return self.rule.lines

    @property
    def unsure(self) -> int:
        return self.rule.unsure

    @property
    def holding(self) -> bool:
        return bool(self._frames)

    def input(self, time: float, text: str) -> list[list[Any]]:
        out: list[list[Any]] = []
        for piece, line in self.rule.typed_pieces(text):
            if line is None and not self._frames:
                _add(out, [time, "i", piece])
            else:
                self._hold([time, "i", piece, line])
        return out + self._release(time)

    def output(self, time: float, data: str, shown: str | None = None) -> list[list[Any]]:
        self.rule.shown(data if shown is None else shown)
        if not self._frames:
            return [[time, "o", data]]
        self._hold([time, "o", data, None])
        return self._release(time)

    def other(self, frame: list[Any]) -> list[list[Any]]:
        if not self._frames:
            return [frame]
        self._hold([*frame, None])
        return self._release(frame[0])

    def close(self) -> list[list[Any]]:
        """The recording ends: what is still held, each line not decided as typed."""
        self.rule._decide_held("typed")
        for line in self.rule.held:
            line.echoing = False
        return self._release(None)

    def _hold(self, frame: list[Any]) -> None:
        self._frames.append(frame)
        self._chars += len(str(frame[2]))

    def _release(self, now: float | None) -> list[list[Any]]:
        out = self._released()
        while self._frames and now is not None and now - self._frames[0][0] > HELD_SECONDS:
            line = self._frames[0][3]  # (the first frame held is a line's)
            if line is None or not self.rule.waiting(line):
                break
            if line.decided is None:
                line.decided = "typed"
            line.echoing = False
            out += self._released()
        while self._chars > HELD_CHARS and self._frames:
            echoing = [line for line in self.rule.held if line.echoing]
            if echoing:  # (an echo this far after its line is none)
                echoing[0].echoing = False
            elif self.rule.undecided():
                self.rule.decide_first("unsure")
            else:
                break
            out += self._released()
        return out

    def _released(self) -> list[list[Any]]:
        for i, frame in enumerate(self._frames):
            line = frame[3]
            if line is not None and line.decided in ("secret", "unsure") and not line.echoing:
                if line.scrubbed:
                    continue
                line.scrubbed = True
                _scrub(self._frames[i + 1 :], line)
                self._chars = sum(len(str(f[2])) for f in self._frames)
        out: list[list[Any]] = []
        while self._frames:
            line = self._frames[0][3]
            if line is not None and self.rule.waiting(line):
                break
            time, code, text, _ = self._frames.pop(0)
            self._chars -= len(str(text))
            if line is not None and line.decided != "typed":
                # its keys left out: a marker where the line began, its line end kept
                if not line.marked:
                    line.marked = True
                    _add(out, [time, "i", MARKER if line.decided == "secret" else UNSURE])
                text = text[-1] if text and text[-1] in LINE_ENDS else ""
            if text:
                _add(out, [time, code, text])
        self.rule.held = [h for h in self.rule.held if self.rule.waiting(h)]
        return out


def _add(out: list[list[Any]], frame: list[Any]) -> None:
    """`frame` after `out`'s, joined to the last when both are input of the same time."""
    if out and out[-1][1] == frame[1] == "i" and out[-1][0] == frame[0]:
        out[-1][2] += frame[2]
    else:
        out.append(frame)


def _scrub(frames: list[list[Any]], line: Ahead) -> None:
    """Takes out of the output frames after a line left out what the terminal echoed of
    it: the first run of its keys as typed, or as a terminal echoes them with an erase
    (`\b \b` for DEL or BS), whichever comes first. Nothing else: the output left out
    for a line is never more than its echo (a line typed ahead of a prompt the user
    printed does not take out what the screen showed around it)."""
    keys = line.keys.rstrip("".join(LINE_ENDS))
    if not _SEQUENCES.sub("", keys).strip():
        return
    outputs = [f for f in frames if f[1] == "o"]
    joined = "".join(str(f[2]) for f in outputs)
    runs = [(found, len(echo)) for echo in {keys, _ERASES.sub("\b \b", keys)}
            if (found := joined.find(echo)) >= 0]  # fmt: skip
    if not runs:
        return
    lo, length = min(runs)
    hi = lo + length
    at = 0
    for frame in outputs:  # each frame keeps its own text but the run's characters
        text = str(frame[2])
        end = at + len(text)
        if lo < end and hi > at:
            frame[2] = text[: max(lo - at, 0)] + text[min(hi, end) - at :]
        at = end


_ERASES = re.compile("[\x08\x7f]")  # DEL or BS typed: a terminal echoes `\b \b`


def without_secrets(events: list[list[Any]]) -> list[list[Any]]:
    """A recording's `[time, "o"|"i"|"r", data]` events as SecretInput keeps them: each
    line typed at a secret's prompt is MARKER; an input event left empty is left out."""
    rule = HeldFrames()
    return _kept_frames(rule, events) + rule.close()


def events_without_secrets(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A session's events (pdp.domain.recordings' shape, in recorded order), each terminal
    recording's batch (`details.kind` ssh.asciicast) as without_secrets keeps its frames,
    read across its channel's batches (a prompt in one batch, what was typed in the next;
    frames held for a line typed ahead go in the batch that decides it, or the channel's
    last)."""
    rules: dict[Any, HeldFrames] = {}
    last: dict[Any, dict[str, Any]] = {}
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
        channel = details.get("channel")
        rule = rules.setdefault(channel, HeldFrames())
        last[channel] = {**event, "details": {**details, "events": _kept_frames(rule, frames)}}
        kept.append(last[channel])
    for channel, rule in rules.items():
        last[channel]["details"]["events"].extend(rule.close())
    return kept


def _kept_frames(rule: HeldFrames, frames: list[Any]) -> list[Any]:
    kept: list[Any] = []
    for frame in frames:
        if isinstance(frame, list) and len(frame) == 3 and frame[1] == "o":
            kept.extend(rule.output(frame[0], str(frame[2])))
        elif isinstance(frame, list) and len(frame) == 3 and frame[1] == "i":
            for released in rule.input(frame[0], str(frame[2])):
                if released[1] != "i" or released[2]:
                    kept.append(released)
        else:
            kept.extend(rule.other(frame))
    return [f for f in kept if f[1] != "i" or f[2]]
