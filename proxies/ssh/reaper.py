"""Ending an upstream command when sshd will not signal it: the session report and the reap.

sshd takes a channel's signal request only for a login with privilege separation, which it
skips for root ("session signalling requires privilege separation"): the KILL the proxy
sends when a command must end (its client left, its output cannot be masked, its time ran
out: proxies/ssh/channel.py) is refused for a root upstream account, and a command whose
output goes nowhere it would write to (`free -s 1 >/dev/null`, `while :; do :; done`) ran
on for ever after its client, its session and its token were gone.

What sshd does for every channel: it forks, calls setsid(), and runs the account's shell
with `-c LINE`; everything that shell runs stays in that session (process id = session id)
unless it makes a session of its own: setsid(1), daemon(3), a double fork with setsid,
start-stop-daemon --background, a tmux or screen server. An exec's line may not (the
shipped policy denies setsid, `&`: a part's `via`); a dba's shell may type anything. So
the proxy sends upstream one line of its own before the client's:

    { printf %s "${EUID:-$(<the effective uid: /proc/self/status>)}" >/proc/self/loginuid
    } 2>/dev/null
    printf '<nonce> %s %s\n' "$$" "$(a=; read -r a 2>/dev/null </proc/self/sessionid;
      if [ "${a:-4294967295}" = 4294967295 ]; then echo -;
      elif p=; read -r p 2>/dev/null </proc/$PPID/sessionid; [ "$a" = "$p" ]; then
        <the audit session of sshd's listener, $PPID's grandparent, as l>;
        [ -n "$l" ] && [ "$l" != "$a" ] && echo "=$a" || echo -;
      else echo "$a"; fi)" >&2
    <the client's line, byte for byte>

The shell first gives itself an audit session of its own: writing a uid (the account's
own) to /proc/self/loginuid is allowed once to a process whose login uid is unset, and
draws a fresh audit session id (/proc/PID/sessionid, readable by all) that every process
it starts inherits — through setsid, double forks and a reparent to init — and that no
process without CAP_AUDIT_CONTROL may change or drop again. The shell's audit session is
reported when it is not its parent's (sshd's): drawn by this write, or by the account's
startup file before it (a ~/.bashrc writing it first: still the shell's alone). On an
account whose login uid PAM already set (pam_loginuid: one audit session for the
connection, its sshd processes and every channel) an unprivileged shell cannot draw one
(root can, a fresh id per channel, unless the kernel makes login uids immutable); it
reports the connection's as `=ID` when sshd's listener (the grandparent of the shell's
parent) is not in it: drawn for this upstream connection alone (one per client
connection, none shared). An audit session the listener holds too (sshd started from an
administrator's login, no pam_loginuid) is that login's, with whatever else it started
(a database server of the same account): `-`, never swept. The reap sweeps `=ID`,
sparing only what is still the connection's: sshd's two processes (the reap's parent and
the parent's parent, the privileged monitor) and every process of a session whose leader
is a child of that sshd (a live channel's shell, the reap's own) other than the channel
reaped. What left a channel's session (setsid, a daemon, a tmux server) is in no such
session, and ends at the next reap of that connection (a shell's end, the client's
leaving), whichever channel it came from. (A cgroup per channel would mark it as well,
but only sshd or a PAM module, as root, can place a channel in one: sshd_config and PAM,
not the proxy.) `-` (no audit session, or the listener's) leaves the session alone to
reap, as before. Then the same shell (the session's leader: its pid is the session's
id) reports its pid and its audit session on
stderr (on the terminal when the channel has one), under a nonce drawn for the channel
that the line cannot know, and then runs the client's line as it would have: the same
shell, the same $0, startup files, environment and exec of its last command; only
$BASH_EXECUTION_STRING holds the first line too and $LINENO counts more. The proxy takes
the report off the stream before anything else reads it (SessionReport: the client never
sees it), and the channel's command event records that the line ran so (WRAPPED). To end
the command, the proxy runs REAP on another channel of the same upstream connection: KILL
to every process of that audit session (rounds until a scan of /proc finds none alive:
what one forked while it was scanned is found by the next), then to every process of
that session, once the session's leader is known to be this connection's (its parent is
the reap's own parent, the connection's sshd) or gone (a session id stays taken while a
process of the session lives: no other session can hold it).

Not reached: what the session hands to a daemon that starts it (at, batch, cron,
systemd-run, an ssh to another host), which no mark of the session's follows; and root,
which may write its login uid again. Nor the account's own startup files: sshd runs
~/.ssh/rc (PermitUserRC) and then `$SHELL -c LINE`, and bash reads BASH_ENV and, run by
sshd (Debian's SSH_SOURCE_BASHRC, SHLVL below 2), ~/.bashrc before the first byte of
LINE; there a function may take the name of every builtin (`builtin`, `command`, `exec`,
`unset`, `enable`, printf) and a DEBUG trap runs before each command, so no line the
proxy sends can check or undo what they did: they may forge this report (`-`, another
id) or change what a decided command runs. Keeping them the account's is the upstream
host's part: dotfiles the account cannot write, PermitUserRC no, no AcceptEnv, or an
account whose shell is dash (which reads no startup file for `-c`).

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
# the report in shell builtins alone (read, printf, echo, [): it runs before every exec on
# a root account, and the `id -u` and `cat`s it was written with started a program each
# (an exec of uptime measured 8.5 ms bare, 23.6 ms with them, 12.6 ms without); bash's
# own $EUID (read-only: an environment cannot set it) spares its uid a command
# substitution's fork (15.3 -> 11.0 ms, bare 9.2 ms), the one left being the report's; a
# shell without it (dash) reads /proc/self/status in a subshell, and would take an
# EUID from its environment, which sshd passes only by the host's own configuration
# (AcceptEnv, PermitUserEnvironment; the proxy sends no env request upstream); a /proc
# file without a newline is read whole, read failing at its end
_REPORT = (
    '{ printf %s "${EUID:-$(while read -r k r e _; do [ "$k" = Uid: ] && break; done'
    ' 2>/dev/null </proc/self/status; echo "$e")}" >/proc/self/loginuid; } 2>/dev/null;'
    ' printf \'{tag} %s %s\\n\' "$$" "$(a=; read -r a 2>/dev/null </proc/self/sessionid;'
    ' if [ "${a:-4294967295}" = 4294967295 ]; then echo -;'
    ' elif p=; read -r p 2>/dev/null </proc/$PPID/sessionid; [ "$a" = "$p" ]; then l=;'
    " read -r st 2>/dev/null </proc/$PPID/stat && set -- ${st##*') '} &&"
    " read -r st 2>/dev/null </proc/$2/stat && set -- ${st##*') '} &&"
    " read -r l 2>/dev/null </proc/$2/sessionid;"
    ' [ -n "$l" ] && [ "$l" != "$a" ] && echo "=$a" || echo -;'
    ' else echo "$a"; fi)" >&2'
)
WRAPPED = (
    "run after the proxy's line giving the shell an audit session of its own (its login"
    " uid written) and reporting its pid and that audit session under a nonce: sshd sends"
    " no signal to a root account's session, so the proxy learns which processes are the"
    " command's to end them by other means"
)
# a shell, on any account: asked of sshd as an exec of this line (after the report), the
# account's shell run again as a login shell in the same process (the session's leader
# stays the one reported), so its session, background and `nohup` jobs included, is ended
# with the shell (sshd, asked for a shell, runs the account's shell as a login shell too;
# its KILL, where it sends one, reaches only the shell's process group, and an interactive
# shell puts each job in a group of its own)
SHELL_LINE = 'exec "${SHELL:-/bin/sh}" -l'
WRAPPED_SHELL = (
    "run after the proxy's line giving the shell an audit session of its own (its login"
    " uid written) and reporting its pid and that audit session under a nonce, as"
    f" `{SHELL_LINE}` (the account's login shell): the proxy learns which processes are"
    " the shell's to end what it left running (its jobs, what left its session) with it"
)
_DIGITS = re.compile(rb"[0-9]{1,10}")
# what the report says after the pid: the audit session's id, `=` and the connection's
# (its own could not be drawn), or `-` (none at all)
_AUDIT = re.compile(rb" (=?[0-9]{1,10}|-)")
# the audit session id of a process that has none (AUDIT_SID_UNSET): never a mark
UNSET_AUDIT = 4294967295
# a scan of /proc that still finds processes of the audit session after this many rounds of
# KILL (a fork bomb outrunning it, or a process the account may not signal): the reap fails
REAP_ROUNDS = 50


def nonce() -> str:
    """A channel's nonce: what names its report, unknown to the line it runs."""
    return "portcullis-" + secrets.token_hex(12)


def wrapped(raw: str, tag: str) -> str:
    """The line sent upstream for `raw` (the client's exec line, as decided)."""
    return _REPORT.replace("{tag}", tag) + "\n" + raw


def sweep_command(audit: int | None, shared_by: int | None = None) -> str:
    """The line (to go before reap_command's) that KILLs every process of audit session
    `audit` (None: the shell could draw none: nothing), in rounds until a scan of /proc
    finds none alive (exit 4: some still are after REAP_ROUNDS rounds). `shared_by`: the
    audit session is the connection's (the report's `=ID`), and this reap is session
    `shared_by`'s: sshd's processes and the sessions of the connection's other live
    channels (a leader whose parent is the reap's parent, sshd) are spared."""
    if audit is None:
        return ""
    a = int(audit)
    if not 0 < a < UNSET_AUDIT:
        raise ValueError(f"no audit session: {a}")
    spared = ""
    if shared_by is not None:
        s = int(shared_by)
        # m: the connection's sshd (the reap's parent), g: its privileged monitor; a
        # process whose session (field 4 after the name) is not the reaped one and whose
        # leader's parent is m is a live channel's (the reap's own included)
        spared = (
            ' case $p in "$m"|"$g") continue;; esac; l=$4;'
            f' if [ "$l" != {s} ] && read -r ls 2>/dev/null <"/proc/$l/stat"; then'
            ' set -- ${ls##*\') \'}; [ "$2" = "$m" ] && continue; fi;'
        )
        head = (
            'm=$PPID; g=; read -r st 2>/dev/null <"/proc/$m/stat" &&'
            " { set -- ${st##*') '}; g=$2; }; "
        )
    else:
        head = ""
    # each round KILLs every live process (not a zombie: Z, X) whose sessionid is a (a
    # file without a newline: read fails having read it); a round that finds none ends it
    return (
        f"{head}a={a}; n=0; while :; do left=; for f in /proc/[0-9]*/sessionid; do"
        ' v=; read -r v 2>/dev/null <"$f"; [ "$v" = "$a" ] || continue; p=${f%/sessionid};'
        ' p=${p#/proc/}; read -r st 2>/dev/null <"/proc/$p/stat" || continue;'
        f" set -- ${{st##*') '}}; case $1 in Z|X) continue;; esac;{spared}"
        ' kill -KILL "$p" 2>/dev/null; left=1; done; [ -n "$left" ] || break;'
        f" n=$((n+1)); [ $n -lt {REAP_ROUNDS} ] || exit 4; sleep 0.1; done; "
    )


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
    `sid` once read, with `audit` (the shell's audit session, None when it drew none) and
    `shared` (the connection's audit session, which the shell's is: None unless it drew
    none), `failed` once it cannot come (the stream ended, REPORT_WITHIN passed, or a report line
    that is no pid and audit session)."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"{tag} ".encode()
        self.sid: int | None = None
        self.audit: int | None = None
        self.shared: int | None = None
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
            if len(held) - at > len(self.prefix) + 24:
                self.failed = "the command's session report is malformed"
                out, self._held = held, b""
                return out
            out, self._held = held[:at], held[at:]
            return self._passing(out)
        line = held[at + len(self.prefix) : end].rstrip(b"\r")
        pid = _DIGITS.match(line)
        audit = _AUDIT.fullmatch(line, pid.end()) if pid is not None else None
        alone = pid is not None and pid.end() == len(line)  # (a pid alone: no audit session)
        if pid is None or int(pid[0]) < 2 or not (alone or (audit and _usable(audit[1]))):
            self.failed = "the command's session report is malformed"
            self._held = b""
            return held
        self.sid = int(pid[0])
        said = b"-" if audit is None else audit[1]
        self.audit = None if said == b"-" or said.startswith(b"=") else int(said)
        self.shared = int(said[1:]) if said.startswith(b"=") else None
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


def _usable(audit: bytes) -> bool:
    """An audit session the report may name: `-`, or an id drawn (neither 0 nor unset),
    the shell's or (`=`) the connection's."""
    return audit == b"-" or 0 < int(audit.removeprefix(b"=")) < UNSET_AUDIT
