"""Ending an upstream command when sshd will not signal it: the session report and the reap.

sshd takes a channel's signal request only for a login with privilege separation, which it
skips for root ("session signalling requires privilege separation"): the KILL the proxy
sends when a command must end (its client left, its output cannot be masked, its time ran
out: proxies/ssh/channel.py) is refused for a root upstream account, and a command whose
output goes nowhere it would write to (`free -s 1 >/dev/null`, `while :; do :; done`) ran
on for ever after its client, its session and its token were gone.

What sshd does for every channel: it forks, calls setsid(), and runs the account's shell
with `-c LINE`; everything that shell runs stays in that session (process id = session id)
unless it calls setsid itself, which the shipped policy denies (a part's `via`). So, for
such an account, the proxy sends upstream one line of its own before the client's:

    printf '<nonce> %s\\n' "$$" >&2
    <the client's line, byte for byte>

The same shell (the session's leader: its pid is the session's id) reports its pid on
stderr (on the terminal when the channel has one), under a nonce drawn for the channel
that the line cannot know, and then runs the client's line as it would have: the same
shell, the same $0, startup files, environment and exec of its last command; only
$BASH_EXECUTION_STRING holds the first line too and $LINENO counts one more. The proxy
takes the report off the stream before anything else reads it (SessionReport: the client
never sees it), and the channel's command event records that the line ran so
(WRAPPED). To end the command, the proxy runs REAP on another channel of the same
upstream connection: KILL to every process of that session, once the session's leader
is known to be this connection's (its parent is the reap's own parent, the connection's
sshd) or gone (a session id stays taken while a process of the session lives: no other
session can hold it).

An account whose shell does not run the report (not a POSIX shell) never sends it: the
command is ended as soon as it is known not to come (fail closed).

Sans-IO: text and bytes only; the asyncio side is in channel.py and proxy.py.
"""

from __future__ import annotations

import re
import secrets

# how much of the stream may come before the report (a startup file's output): past it
# the report is not coming
REPORT_WITHIN = 64 * 1024
WRAPPED = (
    "run as the proxy's line `printf '<nonce> %s\\n' \"$$\" >&2` and then the command as"
    " sent: sshd sends no signal to a root account's session, so the proxy learns the"
    " session's id to end it by other means"
)
# a shell, on any account: asked of sshd as an exec of this line (after the report), the
# account's shell run again as a login shell in the same process (the session's leader
# stays the one reported), so its session, background and `nohup` jobs included, is ended
# with the shell (sshd, asked for a shell, runs the account's shell as a login shell too;
# its KILL, where it sends one, reaches only the shell's process group, and an interactive
# shell puts each job in a group of its own)
SHELL_LINE = 'exec "${SHELL:-/bin/sh}" -l'
WRAPPED_SHELL = (
    "run as the proxy's line `printf '<nonce> %s\\n' \"$$\" >&2` and then"
    f" `{SHELL_LINE}` (the account's login shell): the proxy learns the session's id to"
    " end what the shell left running (its jobs) with the shell"
)
_DIGITS = re.compile(rb"[0-9]{1,10}")


def nonce() -> str:
    """A channel's nonce: what names its report, unknown to the line it runs."""
    return "portcullis-" + secrets.token_hex(12)


def wrapped(raw: str, tag: str) -> str:
    """The line sent upstream for `raw` (the client's exec line, as decided)."""
    return f"printf '{tag} %s\\n' \"$$\" >&2\n{raw}"


def reap_command(sid: int) -> str:
    """The line that ends session `sid` of the connection it runs on (exit 3: the session's
    leader is another connection's, a pid taken again: nothing is signalled)."""
    s = int(sid)
    return (
        f"s={s}; if read -r st 2>/dev/null </proc/$s/stat; then set -- ${{st##*') '}};"
        ' [ "$2" = "$PPID" ] && [ "$4" = "$s" ] || exit 3; fi;'
        " pkill -KILL -s $s || kill -KILL -- -$s 2>/dev/null; exit 0"
    )


class SessionReport:
    """The wrapper's report read off one upstream stream: feed() returns what of the stream
    goes on (the report line removed, and nothing held but a tail that may begin it);
    `sid` once read, `failed` once it cannot come (the stream ended, REPORT_WITHIN passed,
    or a report line that is no pid)."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"{tag} ".encode()
        self.sid: int | None = None
        self.failed = ""
        self._held = b""
        self._passed = 0

    @property
    def waiting(self) -> bool:
        return self.sid is None and not self.failed

    def feed(self, data: bytes) -> bytes:
        if not self.waiting:
            return data
        held = self._held + data
        at = held.find(self.prefix)
        if at < 0:
            keep = min(len(held), len(self.prefix) - 1)
            out, self._held = held[: len(held) - keep], held[len(held) - keep :]
            return self._passing(out)
        end = held.find(b"\n", at)
        if end < 0:
            if len(held) - at > len(self.prefix) + 16:
                self.failed = "the command's session report is malformed"
                out, self._held = held, b""
                return out
            out, self._held = held[:at], held[at:]
            return self._passing(out)
        line = held[at + len(self.prefix) : end].rstrip(b"\r")
        if not _DIGITS.fullmatch(line) or int(line) < 2:
            self.failed = "the command's session report is malformed"
            self._held = b""
            return held
        self.sid = int(line)
        self._held = b""
        return held[:at] + held[end + 1 :]

    def _passing(self, out: bytes) -> bytes:
        self._passed += len(out)
        if self._passed > REPORT_WITHIN:
            self.failed = "the upstream did not report the command's session"
        return out

    def end(self) -> bytes:
        """The stream ended: what is held goes on; a report never read has failed."""
        if self.waiting:
            self.failed = "the upstream did not report the command's session"
        held, self._held = self._held, b""
        return held
