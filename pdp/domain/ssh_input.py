"""input.command.ssh for the SSH command kinds: what the policy sees of an exec request.

Owns the rule that the PDP reads an exec's command line itself, from the raw text the
proxy sent (exactly the bytes the upstream's shell will run), with a real shell parser
(bashlex), and never takes a proxy's argv. The line becomes `parts`: one entry per simple
command the shell would run — each side of `;`, `&&`, `||`, `|`, `&`, the commands inside
`$(...)`, backticks and `<(...)`, inside `if`/`for`/`while` bodies and subshells, the
script of `sh -c '...'` / `bash -c` (and of a shell fed a here-document), and the command
`env` or `xargs` would run, or a wrapper (WRAPPERS: timeout, nice, nohup, stdbuf, ionice,
setsid, and the builtins command and exec, their options read as they read them) — each
with its argv (quotes removed, as the shell passes it), what runs it (`via`: a shell's
`-c`, env, xargs, a wrapper; DETACHED's `&`, `<(...)`, `>(...)` and setsid for what the
shell does not wait for),
the words whose value is computed at run time (`$X`, `$(...)`, `~user`, `{a,b}`, a word
holding xargs's replace string), its assignments (a redirection's `{fd}>` among them) and
redirections (a compound's — `{ ...; } > f`, `for ... done > f` — on each command inside
it; the file `xargs -a` reads is a read). What cannot be read for sure — a parse error,
arithmetic (`$((...))`, and `((...))`, which bashlex reads as two subshells), `case`, a
function definition, an `env`/`xargs`/shell option not understood (or, for env and
xargs, computed or holding a glob: `env -u /tmp/p/* df` runs what the glob names), a NUL byte, a
backslash ending the line (a word to bash), a here-document with expansions (its delimiter
unquoted: `<<'EOF'` keeps its body as written), one whose delimiter holds more than
letters, digits, `_.:+-` and quotes, or whose delimiter never comes, a command
substitution (`$(...)`, backquotes, `<(...)`) of more than one line or with a comment
(bashlex reads only its first line), backquotes holding a backslash (bash removes it
before reading their command), nesting deeper than MAX_DEPTH, a parameter expansion other
than `$name` / `${name}` (bashlex never reads inside the braces: `${x:-$(cmd)}`), what
bash and a POSIX sh (dash, /bin/sh on Debian) read differently (`&>`, `$'...'`,
`$"..."`), a script of zsh, ksh or mksh, a `for` loop's list or an argument of `sh -c
SCRIPT` that bash expands into file names (a glob, a computed word: the variable or `$1`
then holds the names), a line longer than MAX_SHELL_READ that the fast readings below do
not read — is `malformed` with the reason, which the shipped policy denies (fail closed).
A computed word outside quotes whose value may hold a glob character (any but the
parameters sshd and bash set, `~user`, `$(uptime)`) is listed in the part's `globbed`.

A line of plain words (plain_words(): letters, digits and `_./=:,+-` only, single spaces
between, no assignment before its command, no reserved word, not a shell, `env`,
`xargs` or a wrapper) is one simple command whose words the shell passes as written: it is read
without bashlex (~140 µs of CPU per line, about half of the PDP process's instructions
for a new line's Decide), into exactly what bashlex reads. A line of such commands joined
by `|`, `||`, `&&` or `;` whose words may also hold '...' or "..." runs of quiet
characters (simple_commands(): no `$`, backquote, backslash, `!`, `~`, brace or other
quote inside; each command's first word plain and unquoted) is read without bashlex too:
bashlex spends 1.3-2.1 M instructions on such a line, the reading here ~0.1 M.
tests/test_ssh_input.py holds both equal to bashlex's reading with Hypothesis. Anything
else, and anything the fast readings are not sure of, goes to bashlex.

For ssh.shell, ssh.forward and ssh.subsystem the proxy's attributes (terminal, target host
and port, subsystem name) are what the request said on the wire; they pass as sent, in a
fixed set of keys. A forward's host is the one spelling the proxy read it as (an IP
literal canonical, also given as `address`; a name lower-cased: proxies/ssh/
destinations.py), which is what the upstream receives. For ssh.sftp (one SFTP request
of an allowed sftp subsystem) they are the operation, the path and a rename's / link's
second path (`target`), normalised by the proxy (absolute, `.`, `..` and duplicate
slashes resolved), an open's flags (`read` among them where the server opens for reading:
proxies/ssh/sftp_codec.open_access), the mode bits and owner ("uid:gid") its ATTRS
set (`mode`, `owner`), and the upstream account's `homes` (the server's start
directory, the account's home as the server names it: ssh.rego holds writes to the
login files there). The proxy then resolves symlinks on the server (REALPATH) and asks
again with the resolved paths where they differ; the upstream receives the resolved
paths.

No IO here; called by the PDP's command_input() through the `ssh` protocol declaration.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import bashlex  # type: ignore[import-untyped]

# what may be a brace expansion: a `{` with a `,` or `..` anywhere after it (`{}` is not).
# Not only up to the next `}`: bash skips a quoted or escaped `}` and a nested `{a}`
# (`{x\},--vacuum-time=1s}` and `{{x},-H,host}` are two or three words to bash)
BRACES = re.compile(r"\{.*(,|\.\.)", re.S)
MAX_DEPTH = 8  # sh -c 'sh -c "..."' nested deeper than this: malformed
# the longest line bashlex reads: it spends 20-30 us of the PDP's CPU a byte (a 1 MiB line,
# 20 s with every other decision waiting), and each line read is remembered (_exec_input's
# cache); longer lines are read only as plain words or simple commands (their regular
# readings take milliseconds), else malformed
MAX_SHELL_READ = 16 * 1024
# a line longer than this that only bashlex reads is read in a process of its own
# (pdp/api/shell_reading.py) before its decision, and its reading kept here for exec_input:
# on the PDP's event loop a 16 KiB line held every other decision 0.3-0.5 s
READ_APART = 2048
READ_APART_KEPT = 256  # readings kept (the oldest goes first)
# the most words a line's parts may hold: the policy walks every word of every part in
# several rules (130 us a word for journalctl: a 1 MiB line of 500,000 words held the
# PDP 65 s); a line of more is malformed
MAX_WORDS = 1024
MAX_PARTS = 256
SHELLS = frozenset({"sh", "bash", "dash", "ksh", "zsh", "ash", "mksh", "busybox-sh"})
# shells whose grammar is not bash's nor POSIX sh's (zsh's parameter flags and glob
# qualifiers, ksh's own expansions): nothing they run is read for sure
FOREIGN_SHELLS = frozenset({"ksh", "zsh", "mksh"})
DYNAMIC_NODES = frozenset(
    {"parameter", "commandsubstitution", "processsubstitution", "tilde", "arithmetic"}
)
WRITES = frozenset({">", ">>", ">|", "<>"})
BASH_ONLY_REDIRECTS = frozenset({"&>", "&>>"})
READS = frozenset({"<"})
STDIN_DATA = frozenset({"<<", "<<-", "<<<"})
HEREDOC_OPS = frozenset({"<<", "<<-"})
# what a here-document's delimiter may be once its quotes are removed: bash and dash remove
# them alike from such a word (not from `$'E'`: `E` to bash, `$E` to dash)
HEREDOC_DELIMITER = re.compile(r"[A-Za-z0-9_.:+-]+")
# redirections that set fd 0 when no fd is written before them
STDIN_OPS = frozenset({"<", "<&", "<>", "<<", "<<-", "<<<"})
# options of env(1) and xargs(1) understood; the ones after `:` take a value
ENV_FLAGS = frozenset({"-i", "-", "--ignore-environment", "-0", "--null"})
ENV_VALUED = frozenset({"-u", "--unset"})
XARGS_FLAGS = frozenset({"-0", "--null", "-r", "--no-run-if-empty", "-t", "--verbose", "-x",
                         "--exit", "-p", "--interactive"})  # fmt: skip
# options of GNU xargs whose value is the next word (or, short, the rest of the word)
XARGS_VALUED = frozenset({"-I", "-n", "-L", "-d", "-P", "-s", "-E", "-a", "--arg-file",
                          "--delimiter", "--max-args", "--max-procs", "--max-chars"})  # fmt: skip
# long options of GNU xargs whose value is optional: given only after `=`, never the next
# word (`xargs --replace touch df` runs `touch df`)
XARGS_OPTIONAL = frozenset({"--replace", "--eof", "--max-lines"})
XARGS_REPLACE = frozenset({"-I", "-i", "--replace"})  # the input replaces this string
XARGS_FILE = frozenset({"-a", "--arg-file"})  # the input is read from this file
# single-letter shell options that take no value; not -l nor --login: a login shell runs
# /etc/profile, /etc/profile.d/*, ~/.profile (and what they source) before the script,
# commands no part names
SHELL_FLAGS = frozenset("euxvfhnpBCHP")
SHELL_LONG = frozenset({"--norc", "--noprofile", "--posix", "--noediting"})
# a line of plain words: no quoting, expansion, globbing, redirection or operator can be in
# it; its first word has no `=` (no assignment can lead it)
PLAIN_LINE = re.compile(r"[A-Za-z0-9_./:,+-]+(?: [A-Za-z0-9_./=:,+-]+)*")
# a line of simple commands of plain and quoted words joined by `|`, `||`, `&&`, `;`
# (simple_commands): inside quotes only what no shell, nor bashlex, reads as anything but
# itself (no quote, `\\`, `$`, backquote, `!`, `~` or brace; printable ASCII), nor `<`
# or `>` (bashlex reads `x'<('` as an unclosed process substitution)
_QUIET = r"[ #%&()*+,\-./0-9:;=?@A-Z\[\]^_a-z|]"
# a word: plain characters around at most one quoted run (bashlex's quote removal slips
# on some words of two: `'a''b'`, `"a"'b'`)
_PLAIN = "[A-Za-z0-9_./=:,+-]"
_WORD = rf"(?:{_PLAIN}*(?:'{_QUIET}*'|\"{_QUIET}*\"){_PLAIN}*|{_PLAIN}+)"
_OP = r"(?:\|\||&&|[|;])"
SIMPLE_LINE = re.compile(rf"{_WORD}(?: +{_WORD})*(?: *{_OP} *{_WORD}(?: +{_WORD})*)*")
SIMPLE_TOKEN = re.compile(rf"({_OP})|{_WORD}")
QUOTED_RUN = re.compile(r"'([^']*)'|\"([^\"]*)\"")
# words the shell may read as syntax, not as a command's word (bash's reserved words)
RESERVED = frozenset({
    "if", "then", "else", "elif", "fi", "case", "esac", "for", "select", "while", "until",
    "do", "done", "in", "function", "time", "coproc",
})  # fmt: skip
# nice's obsolete adjustment: `-N`, `--N`, `-+N` (nice.c reads it before getopt)
NICE_NUMBER = re.compile(r"-[-+]?[0-9].*", re.S)
# what a parameter expansion the walker reads may hold: a name, positional digits, or one
# special parameter (bashlex's node value, without `$`, `{` and `}`)
PLAIN_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[-$#?!*@]")
NAMED_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# what a tilde prefix bashlex reads may be: `~`, `~+`, `~-` or `~login` (a portable user
# name). bashlex's tilde node takes the word up to its first `/`, expansions and all: to
# it `~$(id)` and `~\`id\`` were a tilde, to bash a failed login lookup, then `id` run
PLAIN_TILDE = re.compile(r"~(?:[+-]|[A-Za-z0-9_.][A-Za-z0-9_.-]*)?")
# Parameters whose value bash splits and globs when unquoted, known to hold no glob
# character: set by sshd or bash from what the line cannot steer (HOME, USER, the flags in
# `$-`, ...). Any other (BASH_EXECUTION_STRING is the line itself, a comment included;
# `$_` a word of the command before; a `for` loop's variable its list) may hold `*`,
# which bash expands into the names of files anywhere (Part.globbed).
GLOB_FREE_PARAMETERS = frozenset({"HOME", "USER", "LOGNAME", "SHELL", "PWD", "PATH",
                                  "-", "?", "$", "!", "#"})  # fmt: skip
# and the positional ones, in the login's own `bash -c` only (none are given to it); in a
# nested `sh -c SCRIPT NAME ARGS...` they are the line's words
POSITIONAL = re.compile(r"[0-9]+|[@*]")
# a name a `for` loop may assign (it may be HOME: `for HOME in '/root/.*'`)
LOOP_VARIABLE = re.compile(r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)")
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# commands whose output, substituted unquoted (`df $(uptime)`), holds no glob character:
# run alone, without arguments (`uptime --help` prints `[options]`)
GLOB_FREE_OUTPUT = frozenset({"uptime", "free"})
GLOB_CHARACTERS = re.compile(r"[*?\[]")
# a word that reads as an assignment (`a=~`, `x=y:~root/z`): bash expands a `~` after its
# `=` or a `:` into a home directory though it is a command's argument, and bashlex marks
# no tilde there (a quoted `~` too counts: more is computed, never less)
ASSIGNMENT_TILDE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=(?:[^:]*:)*~")
# a word bash reads as the variable a redirection right after it assigns its descriptor to
# (`{fd}>/dev/null`, `{a[i]}<&0`), unquoted; bash evaluates an array's subscript
FD_VARIABLE = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*(?:\[.*\])?\}", re.S)
# what may follow the command of a `$(...)` (or `<(...)`, `>(...)`) or of backquotes:
# blanks, then its closing (_Walker._substitution)
SUBSTITUTION_END = {")": re.compile(r"[ \t]*\)"), "`": re.compile(r"[ \t]*`")}
ATTRIBUTE_KEYS = {
    "ssh.shell": ("term", "cols", "rows"),
    "ssh.forward": ("direction", "host", "address", "port", "origin"),
    "ssh.subsystem": ("subsystem",),
    "ssh.sftp": ("operation", "path", "target", "flags", "homes", "mode", "owner"),
}


class Unreadable(Exception):
    """The line cannot be read for sure; the message says why (safe to show)."""


@dataclass(frozen=True)
class Word:
    text: str
    dynamic: bool
    globbed: bool = False  # an unquoted expansion whose value is not known glob-free


@dataclass
class Part:
    argv: list[str]
    dynamic: list[int] = field(default_factory=list)  # indexes of computed words
    assignments: list[str] = field(default_factory=list)
    redirects: list[dict[str, Any]] = field(default_factory=list)
    via: list[str] = field(default_factory=list)  # sh -c, env, xargs around it
    more_args: bool = False  # xargs appends words from its input
    # indexes of computed words whose value bash splits and globs, not known glob-free
    globbed: list[int] = field(default_factory=list)

    def to_input(self) -> dict[str, Any]:
        return {
            "argv": self.argv,
            "command": " ".join(self.argv),
            "dynamic": self.dynamic,
            "globbed": self.globbed,
            "assignments": self.assignments,
            "redirects": self.redirects,
            "via": self.via,
            "more_args": self.more_args,
        }


@dataclass(frozen=True)
class Wrapper:
    """A command that runs the command after its options (and `operands` words more), as
    getopt_long reads them when its optstring begins with `+` (GNU coreutils, util-linux):
    options up to the first word not one (or `--`), short ones clustered (`-vsKILL`), a
    value attached or the next word, a long option by any unique prefix of its name
    (`--sig=KILL`, `--fore`), its value after `=` or the next word."""

    flags: str = ""  # short options without a value
    valued: str = ""  # short options whose value follows
    long_flags: frozenset[str] = frozenset()
    long_valued: frozenset[str] = frozenset()
    # long options it has that run no command, or act on other processes (--help, --pid):
    # not understood, but a prefix of them is no prefix of another option alone
    long_other: frozenset[str] = frozenset({"--help", "--version"})
    operands: int = 0  # timeout's DURATION
    numbered: bool = False  # nice's obsolete `-N` / `--N` / `-+N` adjustment
    builtin: bool = False  # a shell builtin: no long options, no clusters, `--` if flags


# wrappers seen through: the command each runs is the part decided (the wrapper in `via`).
# Not chrt (a real-time policy lets a looping command hold a core; -p acts on another
# process) nor `time` (bash's keyword, which bashlex does not read; to dash /usr/bin/time,
# whose -o writes a file); ionice's -p/-P/-u act on running processes, not understood.
WRAPPERS = {
    "timeout": Wrapper(
        flags="vfp",  # -f, -p: coreutils 9.6's short --foreground / --preserve-status
        valued="ks",
        long_flags=frozenset({"--foreground", "--preserve-status", "--verbose"}),
        long_valued=frozenset({"--kill-after", "--signal"}),
        operands=1,
    ),
    "nice": Wrapper(valued="n", long_valued=frozenset({"--adjustment"}), numbered=True),
    "nohup": Wrapper(),
    "stdbuf": Wrapper(valued="ioe", long_valued=frozenset({"--input", "--output", "--error"})),
    "ionice": Wrapper(
        flags="t",
        valued="cn",
        long_flags=frozenset({"--ignore"}),
        long_valued=frozenset({"--class", "--classdata"}),
        long_other=frozenset({"--pid", "--pgid", "--uid", "--help", "--version"}),
    ),
    "setsid": Wrapper(flags="cfw", long_flags=frozenset({"--ctty", "--fork", "--wait"})),
    # bash's and dash's builtins: `command -p` (a default PATH); `exec` with no option at
    # all (bash's -a, -c, -l are names of commands to dash)
    "command": Wrapper(flags="p", long_other=frozenset(), builtin=True),
    "exec": Wrapper(long_other=frozenset(), builtin=True),
}


# a first word whose words the walker reads further (a script, a command inside)
READ_FURTHER = SHELLS | {"env", "xargs"} | WRAPPERS.keys()


def ssh_command(kind: str, raw: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command.ssh: for ssh.exec {command, parts, argv (the only part's), malformed?};
    for the other kinds the request's attributes under their known keys."""
    if kind != "ssh.exec":
        keys = ATTRIBUTE_KEYS.get(kind, ())
        return {k: attributes[k] for k in keys if k in attributes}
    return dict(exec_input(raw))


@functools.lru_cache(maxsize=4096)
def _exec_input(raw: str) -> tuple[tuple[str, Any], ...]:
    out: dict[str, Any] = {"command": raw}
    try:
        walker = _walked(raw, 0, frozenset())
    except Unreadable as exc:
        out.update(parts=[], argv=[], malformed=str(exc))
        return tuple(out.items())
    parts = walker.parts
    out["parts"] = [p.to_input() for p in parts]
    out["argv"] = parts[0].argv if len(parts) == 1 else []
    if walker.loop_variables:
        out["loop_variables"] = list(dict.fromkeys(walker.loop_variables))
    return tuple(out.items())


Reading = tuple[tuple[str, Any], ...]
_read_apart: dict[str, Reading] = {}
# lines kept as not read for a reason of the moment (not read in time, the worker busy with
# other lines): their decision's input says so, and the next exec of the same line is read
# again. Kept for good, an exec line anyone sent while the worker was held (a reader's
# flood of long lines) was denied as unread to everyone sending it after.
_read_for_now: set[str] = set()


def read_apart(raw: str) -> bool:
    """Whether this exec line is one to read in a process of its own: longer than
    READ_APART, not read yet (or not read for now), and not one the fast readings read."""
    return (
        len(raw) > READ_APART
        and (raw not in _read_apart or raw in _read_for_now)
        and plain_words(raw) is None
        and simple_commands(raw) is None
    )


def read_line(raw: str) -> Reading:
    """The line's reading, as exec_input takes it (what the other process runs)."""
    return _exec_input(raw)


def unread(raw: str, why: str) -> Reading:
    """The reading of a line that could not be read: malformed, with the reason."""
    return (("command", raw), ("parts", []), ("argv", []), ("malformed", why))


def keep_reading(raw: str, reading: Reading, for_now: bool = False) -> None:
    """A line's reading made elsewhere, for exec_input (the oldest of READ_APART_KEPT goes);
    `for_now`: a line not read for a reason of the moment, read again when sent again."""
    if raw not in _read_apart and len(_read_apart) >= READ_APART_KEPT:
        oldest = next(iter(_read_apart))
        del _read_apart[oldest]
        _read_for_now.discard(oldest)
    _read_apart[raw] = reading
    if for_now:
        _read_for_now.add(raw)
    else:
        _read_for_now.discard(raw)


def exec_input(raw: str) -> dict[str, Any]:
    """The exec's policy input, a fresh copy (the parse of a line is remembered); a line
    of plain words read without bashlex, into the same. A line of more than MAX_WORDS
    words is malformed, however read."""
    reading = _read_apart.get(raw)
    if reading is not None:  # read elsewhere: the fast readings already passed it by
        return {key: _copied(value) for key, value in reading}
    words = plain_words(raw)
    if words is not None:
        if len(words) > MAX_WORDS:
            return _too_many_words(raw, len(words))
        part = Part(words).to_input()
        return {"command": raw, "parts": [part], "argv": list(words)}
    commands = simple_commands(raw)
    if commands is not None:
        count = sum(map(len, commands))
        if count > MAX_WORDS:
            return _too_many_words(raw, count)
        parts = [Part(argv).to_input() for argv in commands]
        return {"command": raw, "parts": parts,
                "argv": list(commands[0]) if len(commands) == 1 else []}  # fmt: skip
    return {key: _copied(value) for key, value in _exec_input(raw)}


def _too_many_words(raw: str, count: int) -> dict[str, Any]:
    why = f"{count} words, more than the {MAX_WORDS} a command line may hold"
    return {"command": raw, "parts": [], "argv": [], "malformed": why}


def plain_words(raw: str) -> list[str] | None:
    """The words of a line that is one simple command of plain words, as the shell passes
    them (the line split at its spaces); None for any other line (bashlex reads it).

    Sure because of what cannot be in such a line: no quote, `\\`, `$`, backquote, glob,
    `~`, brace, `#`, redirection, operator, newline or other blank (PLAIN_LINE); no `=`
    in the first word, so nothing is an assignment (after the command's name bash reads
    `a=b` as a word); no reserved word anywhere; and a first word that is not a shell,
    `env` or `xargs`, whose further words the walker would read for a command inside."""
    if PLAIN_LINE.fullmatch(raw) is None:
        return None
    words = raw.split(" ")
    if words[0] in READ_FURTHER or not RESERVED.isdisjoint(words):
        return None
    return words


def simple_commands(raw: str) -> list[list[str]] | None:
    """The argv of each command of a line of simple commands joined by `|`, `||`, `&&` or
    `;`, in order, as the shell passes them; None for any other line (bashlex reads it).

    Sure because of what cannot be in such a line (SIMPLE_LINE): outside quotes only
    plain_words' characters, spaces and those four operators (no redirection, `&`,
    subshell, glob, expansion, comment or newline); in a word one '...' or "..." run at
    most, holding no quote, `\\`, `$`, backquote, `!`, `~` or brace, so nothing in it is
    expanded and quote removal is dropping the quotes; each command's first word plain,
    unquoted, without `=` (no assignment), not a shell, `env` or `xargs`; no unquoted
    reserved word; at most MAX_PARTS commands. The tokens read must cover the line (but
    its spaces), or the line goes to bashlex."""
    if SIMPLE_LINE.fullmatch(raw) is None:
        return None
    commands: list[list[str]] = []
    argv: list[str] = []
    end = 0
    for token in SIMPLE_TOKEN.finditer(raw):
        if raw[end : token.start()].strip(" "):
            return None  # something between tokens not a space: not this reading's line
        end = token.end()
        if token.group(1) is not None:  # an operator ends a command
            commands.append(argv)
            argv = []
            continue
        word = token.group()
        if "'" in word or '"' in word:
            if not argv:
                return None  # a quoted command name: bashlex reads it
            word = QUOTED_RUN.sub(_unquoted, word)
        elif word in RESERVED or (not argv and ("=" in word or word in READ_FURTHER)):
            return None
        argv.append(word)
    commands.append(argv)
    if raw[end:] or len(commands) > MAX_PARTS:
        return None
    return commands


def _unquoted(run: re.Match[str]) -> str:
    single = run.group(1)
    return single if single is not None else run.group(2)


def _copied(value: Any) -> Any:
    """A copy of a remembered input (dicts, lists and immutable scalars, as to_input and
    _redirect make them) that no caller's change can reach back into."""
    if type(value) is list:
        return [_copied(v) for v in value]
    if type(value) is dict:
        return {k: _copied(v) for k, v in value.items()}
    return value


def parse(raw: str, depth: int = 0, bound: frozenset[str] = frozenset()) -> list[Part]:
    """The simple commands of a command line, in order (bound: names a `for` loop of an
    enclosing line may have assigned). Raises Unreadable."""
    return _walked(raw, depth, bound).parts


def _walked(
    raw: str, depth: int, bound: frozenset[str], enclosing: tuple[str, ...] = ()
) -> _Walker:
    if depth > MAX_DEPTH:
        raise Unreadable(f"commands nested more than {MAX_DEPTH} deep")
    if len(raw) > MAX_SHELL_READ:
        raise Unreadable(
            f"a command line of {len(raw)} characters, longer than the {MAX_SHELL_READ} the"
            " PDP's shell parser reads (longer lines only as plain words or simple commands)"
        )
    if "\x00" in raw:
        raise Unreadable("a NUL byte in the command")
    if not raw.strip():
        raise Unreadable("an empty command")
    if (len(raw) - len(raw.rstrip("\\"))) % 2:
        # bash keeps a backslash that ends the line as a word of its own (`df &\\` runs a
        # command named `\\`); bashlex drops it after `&`, `;` or a newline
        raise Unreadable("a backslash at the end of the line, which bash reads as a word")
    try:
        trees = bashlex.parse(raw)
    except Unreadable:
        raise
    except NotImplementedError as exc:
        raise Unreadable(f"shell syntax not understood ({_short(exc)})") from None
    except Exception as exc:  # bashlex raises its own ParsingError and MatchedPairError
        raise Unreadable(f"the shell would not parse it ({_short(exc)})") from None
    walker = _Walker(raw, depth, bound | frozenset(LOOP_VARIABLE.findall(raw)), enclosing)
    try:
        for tree in trees:
            walker.walk(tree)
    except Unreadable:
        raise
    except Exception as exc:  # a tree shape this walker does not know: not read for sure
        raise Unreadable(f"shell syntax not understood ({_short(exc)})") from None
    if not walker.parts:
        raise Unreadable("no command in it")
    _read_in_its_loop(walker)
    count = sum(len(p.argv) for p in walker.parts)
    if depth == 0 and count > MAX_WORDS:
        raise Unreadable(f"{count} words, more than the {MAX_WORDS} a command line may hold")
    if count + walker.expanded > MAX_WORDS:
        raise Unreadable(
            f"brace expansions of up to {count + walker.expanded} words, more than the"
            f" {MAX_WORDS} a command line may hold (bash would make them all in memory)"
        )
    return walker


def unquote(source: str, escapes: str = '$`"\\\n') -> str | None:
    """POSIX quote removal of one word's source text ('...', "...", backslashes); None
    for what it does not read (an unquoted or double-quoted `$` or backquote, $'...').
    `escapes`: what a backslash escapes inside double quotes (POSIX: `$`, backquote, `"`,
    backslash, newline; elsewhere there it stays: `"%s\\n"` is `%s\\n`)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "'":
            end = source.find("'", i + 1)
            if end < 0:
                return None
            out.append(source[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while i < n and source[i] != '"':
                if source[i] in "$`":
                    return None
                if source[i] == "\\" and i + 1 < n and (not escapes or source[i + 1] in escapes):
                    if source[i + 1] != "\n":
                        out.append(source[i + 1])
                    i += 2
                    continue
                out.append(source[i])
                i += 1
            if i >= n:
                return None
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                return None
            if source[i + 1] != "\n":
                out.append(source[i + 1])
            i += 2
        elif c in "$`":
            return None
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _dquote_slip(source: str, read: str) -> bool:
    """Whether bashlex's reading of a word differs from POSIX quote removal's by its one
    known slip inside double quotes: it removes a backslash before any character, where the
    shell removes it only before `$`, backquote, `"`, backslash and newline (`printf
    "%s\\n"` was `%sn` to it, `%s\\n` to bash). Such a word is read as unquote() reads it,
    which is the shell's reading."""
    return unquote(source, escapes="") == read


def _short_text(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


class _Walker:
    def __init__(
        self, source: str, depth: int, bound: frozenset[str], enclosing: tuple[str, ...] = ()
    ) -> None:
        self.source = source
        self.depth = depth
        self.bound = bound  # names a `for` loop of this line (or an enclosing one) assigns
        # the variables of the `for` loops whose body is being walked (an enclosing line's
        # too), and the names read outside such a loop of theirs (_read_in_its_loop)
        self.enclosing = list(enclosing)
        self.free_reads: list[str] = []
        # the words brace expansions may add, at most (_brace_bound): `df {1..100000000}`
        # is 17 bytes the upstream's bash makes 10^8 words of, gigabytes in its memory
        self.expanded = 0
        self.parts: list[Part] = []
        # the variables `for` loops assign (any depth): `for PATH in /tmp; do df; done`
        # runs /tmp/df, though no part sets anything
        self.loop_variables: list[str] = []

    def walk(self, node: Any) -> None:
        kind = node.kind
        if kind == "function":
            raise Unreadable("it defines a shell function")
        if kind == "command":
            self._command(node)
            return
        if kind in ("commandsubstitution", "processsubstitution"):
            self._substitution(node)
            return
        if kind == "word":
            # a word outside a simple command (a `for` loop's list): read as a command's
            # words are (bashlex's reading of a word wholly in '...' skips what follows)
            word = self._word(node, self._inner(node))
            for child in getattr(node, "parts", None) or ():
                # the loop's variable is the line's own to the policy (loop_variables):
                # its value must be too (or what sshd sets, $HOME...), not a variable of
                # the upstream's environment (`for x in "$DB_PASSWORD"; do printf '%s\n'
                # "$x"; done`)
                value = str(getattr(child, "value", ""))
                named = NAMED_PARAMETER.fullmatch(value) is not None
                known = value in self.bound or value in GLOB_FREE_PARAMETERS
                if child.kind == "parameter" and named and not known:
                    raise Unreadable(
                        f"a loop's list reads the variable {_short_text(value)}: what its"
                        " variable holds is not read"
                    )
            if word.globbed or GLOB_CHARACTERS.search(word.text):
                # bash globs it, and the loop's variable holds each name it matches: `for x
                # in /root/.*; do df "$x"; done` (quoted there: the part's word not globbed)
                raise Unreadable(
                    f"a loop's list the shell expands into the names of files"
                    f" ({_short_text(word.text)}): what its variable holds is not read"
                )
            return
        if kind == "compound":
            self._compound(node)
            return
        if kind == "list":
            self._list(node)
            return
        if kind == "for":
            self._for(node)
            return
        for child in _children(node):
            self.walk(child)

    def _for(self, node: Any) -> None:
        """A `for` loop: its variable is the loop's own in its body (after `do`), not in its
        list, which is expanded before the loop assigns it (_read_in_its_loop)."""
        name = _loop_variable(self.source, node)
        self.loop_variables.append(name)
        inside = False
        for child in _children(node):
            if not inside and child.kind == "reservedword" and child.word == "do":
                inside = True
                self.enclosing.append(name)
            self.walk(child)
        if inside:
            self.enclosing.pop()

    def _list(self, node: Any) -> None:
        """A list's commands, each and-or list (`a && b || c`, bashlex's parts up to the
        next `;`, `&` or newline) ended by `&` run in the background: its parts are
        `detached` (DETACHED's "&" first in their via), since the shell does not wait for
        them and they may outlive the line, its channel and its session."""
        start = len(self.parts)
        for child in _children(node):
            if child.kind != "operator":
                self.walk(child)
                continue
            if child.op == "&":
                _detached(self.parts[start:], "&")
            if child.op not in ("&&", "||"):
                start = len(self.parts)

    def _compound(self, node: Any) -> None:
        """`{ ...; }`, `( ... )`, `if`, `for`, `while`, `until`: the commands inside, and the
        compound's own redirections (`{ uptime; } > /etc/x`) on each of them, as if each
        command had them (they are what the shell opens around every one)."""
        start = len(self.parts)
        for child in _children(node):
            if child.kind == "reservedword" and child.word == "(":
                _not_arithmetic(self.source, child)
            self.walk(child)
        redirects: list[dict[str, Any]] = []
        for redirect in getattr(node, "redirects", None) or ():
            out, _ = self._redirect(redirect)
            redirects.append(out)
        if not redirects:
            return
        if len(self.parts) == start:
            self._add(Part([], [], [], redirects))
        for part in self.parts[start:]:
            part.redirects.extend(dict(r) for r in redirects)

    def _add(self, part: Part) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise Unreadable(f"more than {MAX_PARTS} commands")
        self.parts.append(part)

    def _command(self, node: Any) -> None:
        words: list[Word] = []
        assignments: list[str] = []
        redirects: list[dict[str, Any]] = []
        heredoc: str | None = None
        children = list(node.parts)
        for index, child in enumerate(children):
            if self._fd_variable(child, children[index + 1 : index + 2]):
                # `{fd}>/dev/null`: bash assigns the fd it opens to the variable (an array
                # subscript evaluated as arithmetic: `{a[_]}>` runs what `$_` names); to
                # bashlex a word of the command
                assignments.append(self.source[child.pos[0] : child.pos[1]])
                continue
            if child.kind == "assignment":
                self._inner(child)
                assignments.append(self._assignment(child))
            elif child.kind == "word":
                glob_free = self._inner(child)
                words.append(self._word(child, glob_free))
            elif child.kind == "redirect":
                redirect, body = self._redirect(child)
                redirects.append(redirect)
                if body is not None:
                    heredoc = body
            else:
                self.walk(child)
        if not words:
            # only assignments or redirections (`X=1`, `> file`): a part with no command
            self._add(Part([], [], assignments, redirects))
            return
        if heredoc is not None and not _stdin_is_the_heredoc(redirects):
            heredoc = None  # a shell then reads what the walker does not: not its script
        self._emit(words, assignments, redirects, [], heredoc)

    def _assignment(self, node: Any) -> str:
        """An assignment's text, read twice as a word's is (_word): the policy allows some
        by their value (`LANG=C`), which bashlex's quote removal must not misread."""
        if _dynamic(node):
            return str(node.word)
        source = self.source[node.pos[0] : node.pos[1]]
        if unquote(source) != node.word:
            raise Unreadable(f"the assignment {_short_text(source)} does not read the same twice")
        return str(node.word)

    def _fd_variable(self, node: Any, after: list[Any]) -> bool:
        """Whether a word is the `{varname}` (or `{name[subscript]}`) bash reads as the
        variable a redirection right after it assigns its file descriptor to."""
        if node.kind != "word" or not after or after[0].kind != "redirect":
            return False
        start, end = node.pos
        if after[0].pos[0] != end:
            return False
        return FD_VARIABLE.fullmatch(self.source, start, end) is not None

    def _word(self, node: Any, glob_free: frozenset[int] = frozenset()) -> Word:
        """A word as the shell passes it. Its text is read twice — by bashlex and by
        unquote() from the source — and must read the same (bashlex's quote removal has
        known slips: `'a'\\''b'`); a word whose value is computed keeps its source text,
        and is `globbed` when an expansion in it outside quotes may give a glob character
        (glob_free: the positions of its command substitutions known not to)."""
        dynamic = _dynamic(node)
        source = self.source[node.pos[0] : node.pos[1]]
        if not dynamic:
            mine = unquote(source)
            if mine is None or (mine != node.word and not _dquote_slip(source, node.word)):
                raise Unreadable(f"the word {_short_text(source)} does not read the same twice")
            return Word(mine, False)
        kept, unquoted = _quoting(self.source, node)
        if kept:
            # bashlex's text of it lacks a backslash the shell passes (`"$?\\c"` was `$?c`:
            # dash's echo then ends its output without a newline), and a computed word
            # keeps that text
            raise Unreadable(
                f"the word {_short_text(source)} holds a backslash inside double quotes"
                " that the PDP's shell parser drops"
            )
        globbed = any(not self._glob_free(child, glob_free) for child in unquoted)
        if BRACES.search(node.word):
            self.expanded += _brace_bound(str(node.word)) - 1
        return Word(node.word, True, globbed)

    def _glob_free(self, expansion: Any, glob_free: frozenset[int]) -> bool:
        """Whether an unquoted expansion's value is known to hold no glob character: a
        parameter of GLOB_FREE_PARAMETERS no `for` of the line assigns (a positional one
        in the login's shell only), `~user` (a home directory), `<(...)` (a /dev/fd name),
        a command substitution of GLOB_FREE_OUTPUT's commands alone."""
        kind = expansion.kind
        if kind in ("tilde", "processsubstitution"):
            return True
        if kind == "commandsubstitution":
            return expansion.pos[0] in glob_free
        value = str(getattr(expansion, "value", ""))
        if POSITIONAL.fullmatch(value):
            return self.depth == 0
        return value in GLOB_FREE_PARAMETERS and value not in self.bound

    def _inner(self, node: Any) -> frozenset[int]:
        """Commands inside a word: $(...), backticks, <(...). A parameter expansion other
        than `$name` / `${name}` (`${x:-$(cmd)}`, `${x[$(cmd)]}`, `${x/a/$(cmd)}`) is
        not read: bashlex keeps the braces' text whole, never the commands in it. Returns
        the positions of the command substitutions whose output holds no glob character
        (each of their commands one of GLOB_FREE_OUTPUT, alone)."""
        glob_free: set[int] = set()
        for child in getattr(node, "parts", None) or ():
            if child.kind in ("commandsubstitution", "processsubstitution"):
                start = len(self.parts)
                self._substitution(child)
                if all(_glob_free_output(part) for part in self.parts[start:]):
                    glob_free.add(child.pos[0])
            elif child.kind == "arithmetic":
                raise Unreadable("arithmetic expansion")
            elif child.kind == "parameter":
                _plain_parameter(child)
                value = str(getattr(child, "value", ""))
                if NAMED_PARAMETER.fullmatch(value) and value not in self.enclosing:
                    self.free_reads.append(value)
            elif child.kind == "tilde":
                _plain_tilde(child)
        return frozenset(glob_free)

    def _substitution(self, node: Any) -> None:
        """The commands of a `$(...)`, backquotes, `<(...)` or `>(...)`, which bashlex reads
        only up to their first line's end: `$(uptime<newline>id)` was `uptime` alone (its
        parser takes one top-level command there, and a comment, `$(uptime #)<newline>id
        <newline>)`, ends that line too), while the shell runs all of it. Read only when
        its command is all there is between the opening and the closing: blanks around it
        (a newline only before it), else Unreadable."""
        start = node.pos[0]
        inner = node.command
        opener = "`" if self.source.startswith("`", start) else self.source[start : start + 2]
        closer = "`" if opener == "`" else ")"
        head = self.source[start + len(opener) : inner.pos[0]]
        if (
            opener not in ("`", "$(", "<(", ">(")
            or head.strip(" \t\n")
            or SUBSTITUTION_END[closer].match(self.source, inner.pos[1]) is None
        ):
            raise Unreadable(
                "a command substitution of more than one line, or with a comment: the"
                " PDP's shell parser reads only its first line"
            )
        if opener == "`" and "\\" in self.source[start : node.pos[1]]:
            # bash takes `\$`, `\``, `\\` inside backquotes for what they escape before it
            # reads the command (`uptime "\$(id)"` there is `uptime "$(id)"`, id run);
            # bashlex reads the text as it stands, `\$(id)` a quoted `$`
            raise Unreadable("a backslash inside backquotes, which bash reads once more")
        start = len(self.parts)
        self.walk(inner)
        if opener in ("<(", ">("):
            # bash runs a process substitution's commands without waiting for them: they
            # may outlive the line (`df <(free -s 1 >/dev/null)` ran free for ever)
            _detached(self.parts[start:], f"{opener}...)")

    def _redirect(self, node: Any) -> tuple[dict[str, Any], str | None]:
        op = node.type
        target = node.output
        fd = node.input if isinstance(node.input, int) else None
        out: dict[str, Any] = {"op": op, "fd": fd}
        if isinstance(target, int):
            out.update(kind="fd", target=f"&{target}", dynamic=False)
            return out, None
        if op in HEREDOC_OPS:
            # its delimiter is a word bash only removes the quotes of (_read_heredoc); a
            # quote anywhere in it keeps the body from being expanded
            out.update(kind="stdin", target="", dynamic=False)
            body = _heredoc_body(node)
            delimiter = self.source[target.pos[0] : target.pos[1]]
            quoted = any(q in delimiter for q in "'\"\\")
            if not quoted and any(c in body for c in "$`\\"):
                raise Unreadable("a here-document with expansions in it")
            return out, body
        word = self._word(target)
        text, dynamic = word.text, word.dynamic
        self._inner(target)
        if op in STDIN_DATA:
            out.update(kind="stdin", target="", dynamic=dynamic)
            return out, None
        if op in (">&", "<&") and (text.isdigit() or text == "-"):
            out.update(kind="fd", target=f"&{text}", dynamic=False)
            return out, None
        if op in BASH_ONLY_REDIRECTS:
            # `a &> f` is a redirection to bash; to a POSIX sh (dash: `sh -c`) `a &` then
            # `> f`, and what follows the redirection is a command of its own
            raise Unreadable(f"redirection {op!r}, which bash and a POSIX sh read differently")
        kind = "read" if op in READS or op == "<&" else "write"
        if op not in WRITES | READS | {">&", "<&"}:
            raise Unreadable(f"redirection {op!r} not understood")
        out.update(kind=kind, target=text, dynamic=dynamic)
        return out, None

    def _emit(
        self,
        words: list[Word],
        assignments: list[str],
        redirects: list[dict[str, Any]],
        via: list[str],
        heredoc: str | None,
        more_args: bool = False,
    ) -> None:
        name = words[0]
        if not name.dynamic:
            base = name.text
            if base in FOREIGN_SHELLS:
                raise Unreadable(f"{base} runs what bash's grammar does not read")
            if base in SHELLS:
                script = _shell_script(words)
                around = (assignments, redirects)
                if script is not None:
                    how = f"{base} -x -c" if _traced(words, script) else f"{base} -c"
                    self._nested(script, [*via, how], name, around)
                    return
                if heredoc is not None and len(words) == 1:
                    self._nested(Word(heredoc, False), [*via, f"{base} <<"], name, around)
                    return
            wrapper = WRAPPERS.get(base)
            if wrapper is not None:
                inner = _wrapped_command(base, wrapper, words[1:])
                if inner:
                    through = [*via, base]
                    if base == "timeout" and _timeout_detached(words[1 : len(words) - len(inner)]):
                        through.append(TIMEOUT_DETACHED)
                    if _raised_priority(base, words[1 : len(words) - len(inner)]):
                        through.append(RAISED_PRIORITY)
                    self._emit(inner, assignments, redirects, through, heredoc, more_args)
                    return
            if base == "env":
                rest, more = _env_args(words[1:])
                if rest:
                    # under xargs, the words it appends are the command's that env runs
                    self._emit(rest, assignments + more, redirects, [*via, "env"], heredoc,
                               more_args)  # fmt: skip
                    return
                assignments = assignments + more
            elif base == "xargs":
                rest, replace, arg_file = _xargs_args(words[1:])
                if replace is not None:
                    # each word holding the replace string is computed from the input
                    # (`xargs -I df df x` runs what the input names)
                    rest = [Word(w.text, True) if replace in w.text else w for w in rest]
                if arg_file is not None:
                    # its input read from a file: a read of that file, as `< file` is
                    redirects = [*redirects, {"op": "xargs -a", "fd": None, "kind": "read",
                                              "target": arg_file, "dynamic": False}]  # fmt: skip
                self._emit(rest or [Word("echo", False)], assignments, redirects,
                           [*via, "xargs"], None, more_args=True)  # fmt: skip
                return
        self._add(
            Part(
                argv=[w.text for w in words],
                dynamic=[i for i, w in enumerate(words) if w.dynamic],
                globbed=[i for i, w in enumerate(words) if w.globbed],
                assignments=assignments,
                redirects=redirects,
                via=via,
                more_args=more_args,
            )
        )

    def _nested(
        self,
        script: Word,
        via: list[str],
        shell: Word,
        around: tuple[list[str], list[dict[str, Any]]],
    ) -> None:
        """The parts of a shell's script, each with the shell's own assignments and
        redirections (around): what `PATH=/tmp sh -c df` or `sh -c df >/etc/x` sets and
        opens, every command of the script inherits."""
        if script.dynamic:
            raise Unreadable(f"{shell.text} runs a script computed at run time")
        inner = _walked(script.text, self.depth + 1, self.bound, tuple(self.enclosing))
        self.loop_variables.extend(inner.loop_variables)
        self.free_reads.extend(inner.free_reads)
        self.expanded += inner.expanded
        assignments, redirects = around
        for part in inner.parts:
            part.via = via + part.via
            part.assignments = [*assignments, *part.assignments]
            part.redirects = [*(dict(r) for r in redirects), *part.redirects]
            self._add(part)


# what runs a command the shell does not wait for (a part's via): a list's `&`, a process
# substitution; and setsid (a wrapper), whose command runs in a session of its own, out of
# the reach of the signal that ends the line's process group (proxies/ssh/channel.py)
DETACHED = frozenset({"&", "<(...)", ">(...)", "setsid"})
# and timeout without --foreground (its own process group) for longer than TIMEOUT_BOUND
# seconds, DURATION and -k's together: the signal misses it, and it lives on that long
TIMEOUT_DETACHED = "timeout past 60 s"
TIMEOUT_BOUND = 60.0
DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([smhd]?)")
DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _timeout_detached(options: list[Word]) -> bool:
    """Whether timeout, given these words before its command (options, then DURATION, as
    _wrapped_command read them), runs it out of the line's process group for longer than
    TIMEOUT_BOUND: timeout puts itself and its command in a group of their own unless
    --foreground (-f), and the KILL the proxy has sshd send to the line's group when its
    client leaves (proxies/ssh/channel.py) misses them; `timeout 1000d free -s 1
    >/dev/null` ran on after the session. A DURATION of 0 (no timeout), or one not read
    as a plain number with an s/m/h/d suffix, counts as longer. So does a signal (`-s`)
    that may not end the command (TIMEOUT_ENDING: `-s WINCH`, `-s CONT`, `-s 0` or `-s
    STOP` is sent and the command, ignoring or stopped by it, is waited for without end)
    unless a KILL follows it (`-k` past 0)."""
    if not options:
        return True
    *opts, duration = [word.text for word in options]
    total = 0.0
    ending = True  # the signal sent at DURATION ends the command (TERM unless -s)
    killed = False  # a KILL follows it (-k past 0)
    i = 0
    while i < len(opts):
        text = opts[i]
        i += 1
        name, eq, attached = text.partition("=")
        if text.startswith("--"):
            # (a prefix _wrapped_command took is one option's alone)
            if len(name) > 2 and "--foreground".startswith(name):
                return False
            if len(name) > 2 and "--kill-after".startswith(name):
                after = _seconds(attached if eq else opts[i] if i < len(opts) else "")
                total += after
                killed = killed or after > 0
                i += 0 if eq else 1
            elif len(name) > 2 and "--signal".startswith(name):
                ending = _ending_signal(attached if eq else opts[i] if i < len(opts) else "")
                i += 0 if eq else 1
            continue
        for j, letter in enumerate(text[1:], start=1):
            if letter == "f":  # coreutils 9.6's short --foreground
                return False
            if letter in "ks":
                value = text[j + 1 :]
                if not value:
                    value = opts[i] if i < len(opts) else ""
                    i += 1
                if letter == "k":
                    total += _seconds(value)
                    killed = killed or _seconds(value) > 0
                else:
                    ending = _ending_signal(value)
                break
    seconds = _seconds(duration)
    if not ending and not killed:
        return True
    return seconds == 0 or seconds + total > TIMEOUT_BOUND


# the signals timeout may send at its DURATION that end the commands it runs (their
# default action terminates; the wrapped commands a line may hold do not catch them), as
# coreutils reads a signal's name (upper-cased, SIG prefix dropped) or number. Not HUP:
# nohup, a wrapper a line may hold, has its command ignore it (`timeout -s HUP 10 nohup
# free -s 1 >/dev/null` ran on as -s WINCH did)
TIMEOUT_ENDING = frozenset({"INT", "KILL", "TERM", "ALRM", "2", "9", "14", "15"})


def _ending_signal(text: str) -> bool:
    name = text.upper()
    return (name[3:] if name.startswith("SIG") else name) in TIMEOUT_ENDING


# what runs a command at a priority above the account's default (a part's via): nice with a
# negative adjustment (`nice -n -20`, `nice --20`: only root may, and a root upstream
# account does), ionice's real-time class (`-c1`, `--class realtime`): a loop at the top of
# the scheduler's or the disk's queue. An adjustment or class not read as a plain number
# (or class name) counts as raised.
RAISED_PRIORITY = "raised priority"
IONICE_CLASSES = {"0": False, "none": False, "1": True, "realtime": True, "2": False,
                  "best-effort": False, "3": False, "idle": False}  # fmt: skip
NICE_ADJUSTMENT = re.compile(r"[-+]?[0-9]+")


def _raised_priority(name: str, options: list[Word]) -> bool:
    """Whether nice or ionice, given these words before its command (as _wrapped_command
    read them), runs it above the default priority."""
    if name not in ("nice", "ionice"):
        return False
    texts = [word.text for word in options]
    values: list[str] = []
    i = 0
    while i < len(texts):
        text = texts[i]
        i += 1
        if text == "--":
            break
        given, eq, attached = text.partition("=")
        if name == "nice" and NICE_NUMBER.fullmatch(text):
            # -N, -+N: +N; --N: -N (nice.c's obsolete forms)
            values.append("-" + text[2:] if text.startswith("--") else text[1:])
            continue
        long_name = "--adjustment" if name == "nice" else "--class"
        if text.startswith("--") and len(given) > 2 and long_name.startswith(given):
            values.append(attached if eq else texts[i] if i < len(texts) else "")
            i += 0 if eq else 1
            continue
        if text.startswith("--"):
            if len(given) > 2 and "--classdata".startswith(given) and not eq:
                i += 1  # ionice's level within its class: its value
            continue
        letter = "n" if name == "nice" else "c"
        for j, c in enumerate(text[1:], start=1):
            if c in "nc":
                value = text[j + 1 :]
                if not value:
                    value = texts[i] if i < len(texts) else ""
                    i += 1
                if c == letter:
                    values.append(value)
                break
    if name == "nice":
        return any(not NICE_ADJUSTMENT.fullmatch(v) or int(v) < 0 for v in values)
    return any(IONICE_CLASSES.get(v.lower(), True) for v in values)


def _seconds(text: str) -> float:
    read = DURATION.fullmatch(text)
    if read is None:
        return float("inf")
    return float(read[1]) * DURATION_UNITS[read[2]]


def _detached(parts: list[Part], how: str) -> None:
    for part in parts:
        part.via = [how, *part.via]


# a sequence expression of a brace expansion: `{1..10}`, `{a..z}`, `{0..100..5}`
BRACE_SEQUENCE = re.compile(r"\{(-?[0-9]+|[A-Za-z])\.\.(-?[0-9]+|[A-Za-z])(?:\.\.(-?[0-9]+))?\}")


def _brace_bound(text: str) -> int:
    """At most how many words bash makes of a word by brace expansion (its text, quotes
    removed: quoted braces, which bash leaves, count too — more is refused, never less):
    the product of each sequence's length and of each `{...}`'s comma-separated items,
    nested ones multiplied as if side by side (`{a,{b,c}}` counts 4, bash makes 3)."""
    bound = 1
    for found in BRACE_SEQUENCE.finditer(text):
        first, last, step = found[1], found[2], found[3]
        if first.isdigit() or first.startswith("-"):
            if not (last.isdigit() or last.startswith("-")):
                continue  # `{1..z}`: no sequence to bash
            span = abs(int(last) - int(first))
        elif last.isalpha():
            span = abs(ord(last) - ord(first))
        else:
            continue
        bound *= span // max(abs(int(step or 1)), 1) + 1
    items: list[int] = []
    for c in text:
        if c == "{":
            items.append(1)
        elif c == "," and items:
            items[-1] += 1
        elif c == "}" and items:
            bound *= items.pop()
    return bound


def _read_in_its_loop(walker: _Walker) -> None:
    """Raises Unreadable for a `for` loop's variable read outside that loop's body: before
    it (`printf '%s\\n' "$x"; for x in a; do :; done`), in its own list (`for x in "$x"`),
    or after it, where a loop that did not run (`for x; do`, with no `$@`; one in a branch
    not taken) left it as it was. There its value is the upstream environment's (an account's
    startup files may export lower-case names), which the policy takes for the line's own
    (loop_variables: a variable it does not ask about)."""
    for name in walker.free_reads:
        if name in walker.loop_variables:
            raise Unreadable(
                f"the variable {_short_text(name)} is read outside the `for` loop that sets"
                " it: there it may hold what the upstream's environment gives it"
            )


def _loop_variable(source: str, node: Any) -> str:
    """The name a `for` loop assigns (`for NAME in ...`, `for NAME; do`): the word after
    `for` as written (bash refuses a quoted one)."""
    words = [child for child in _children(node) if child.kind == "word"]
    name = source[words[0].pos[0] : words[0].pos[1]] if words else ""
    if VARIABLE_NAME.fullmatch(name) is None:
        raise Unreadable(f"a loop whose variable is not a name ({_short_text(name)})")
    return str(name)


def _glob_free_output(part: Part) -> bool:
    return len(part.argv) == 1 and part.argv[0] in GLOB_FREE_OUTPUT and not part.dynamic


def _quoting(source: str, word: Any) -> tuple[bool, list[Any]]:
    """One scan of a word's source as the shell quotes it: whether it holds, inside double
    quotes and outside its expansions, a backslash the shell keeps (before a character
    other than `$`, backquote, `"`, backslash, newline: bashlex's text of the word drops
    it, _dquote_slip), and the expansions (bashlex's parts: parameters, substitutions,
    tildes) that stand outside quotes, where bash splits and globs their value; one the
    scan does not meet where bashlex placed it counts as outside."""
    children = list(getattr(word, "parts", None) or ())
    starts = {child.pos[0]: child for child in children}
    met: set[int] = set()
    found: list[Any] = []
    kept = False
    double = False
    i, end = word.pos
    while i < end:
        child = starts.get(i)
        if child is not None:
            met.add(id(child))
            if not double:
                found.append(child)
            i = max(child.pos[1], i + 1)
            continue
        c = source[i]
        if c == "\\":
            if double and source[i + 1 : i + 2] not in ("$", "`", '"', "\\", "\n"):
                kept = True
            i += 2
            continue
        if c == '"':
            double = not double
        elif c == "'" and not double:
            close = source.find("'", i + 1)
            i = end if close < 0 else close
        i += 1
    return kept, found + [child for child in children if id(child) not in met]


def _plain_parameter(node: Any) -> None:
    """A parameter expansion the walker reads: `$name`, `${name}`, `$1`, `$#`... Raises
    Unreadable for any other: an operator in braces (bashlex does not read into them:
    `${x:-$(cmd)}` runs cmd), and `$'...'` / `$"..."` (node value empty), whose quoting
    bash and a POSIX sh (dash: `sh -c`) read differently (`$'\\';cmd;'` is one word to
    bash, `$\\` then `;cmd` to dash)."""
    value = str(getattr(node, "value", ""))
    if PLAIN_PARAMETER.fullmatch(value) is None:
        shown = _short_text(value)
        raise Unreadable(
            f"a parameter expansion not read ({shown}): only $name and ${{name}} are"
            if value
            else "$'...' or $\"...\" quoting, which bash and a POSIX sh read differently"
        )


def _plain_tilde(node: Any) -> None:
    """A tilde prefix the walker reads: `~`, `~+`, `~-`, `~login`. Raises Unreadable for
    any other: bashlex's tilde node holds the prefix's text whole, a command substitution,
    backquotes, a parameter or `<(...)` in it never read (`df ~$(id)` ran id while its
    part was a df of a home directory), and its value is not a home directory either."""
    value = str(getattr(node, "value", ""))
    if PLAIN_TILDE.fullmatch(value) is None:
        raise Unreadable(
            f"a tilde prefix not read ({_short_text(value)}): only ~, ~+, ~- and ~login are"
        )


def _not_arithmetic(source: str, paren: Any) -> None:
    """Raises Unreadable for a subshell's `(` followed at once by another `(`: to bashlex
    two subshells, to bash an arithmetic command `((...))` whose names are variables
    evaluated as expressions in turn (`df 'a[$(id)]'; ((df - _))`: `$_`, the last word of
    the command before, evaluated, its subscript's command run). `( (`, with a space, is
    two subshells to both."""
    end = paren.pos[1]
    if source[end : end + 1] == "(":
        raise Unreadable("`((`, which bash reads as an arithmetic command")


def _children(node: Any) -> list[Any]:
    for attribute in ("parts", "list"):
        value = getattr(node, attribute, None)
        if value:
            return list(value)
    return []


def _dynamic(word: Any) -> bool:
    if any(p.kind in DYNAMIC_NODES for p in getattr(word, "parts", None) or ()):
        return True
    if ASSIGNMENT_TILDE.match(word.word):
        return True
    # brace expansion ({a,b}, {1..3}) turns one word into others; quoted braces count too
    return BRACES.search(word.word) is not None


def _stdin_is_the_heredoc(redirects: list[dict[str, Any]]) -> bool:
    """Whether a command's standard input is its here-document: the one redirection of fd
    0. A shell reads its script there: `sh 3<<E` reads the client's data (the channel),
    `sh <<E <<<'cmd'` and `sh <<E 0<file` what comes last."""
    stdin = [r for r in redirects if r["fd"] == 0 or (r["fd"] is None and r["op"] in STDIN_OPS)]
    return len(stdin) == 1 and stdin[0]["op"] in HEREDOC_OPS


def _heredoc_body(node: Any) -> str:
    """The body _read_heredoc read ("" when the line ends before it: none to read)."""
    heredoc = getattr(node, "heredoc", None)
    return str(getattr(heredoc, "value", "") or "")


def _read_heredoc(tokenizer: Any, redirect: Any, lineno: int, strip_tabs: bool) -> str:
    """The body of a here-document, read from the line after its redirection's up to the
    line that is its delimiter, as bash and dash read it; installed in place of bashlex's
    own reader (bashlex.heredoc.makeheredoc), which compares the lines with the delimiter
    as written, quotes and all (`cat <<'EOF'` never ended: a parse error), and joins a
    line ending in a backslash to the next, as bash does only when the delimiter is not
    quoted (`cat <<'E'`, `x\\`, `E`, `touch M`: to bash `touch M` is a command after
    the here-document, to bashlex a line in it). The lines are kept as written, the
    leading tabs of each dropped for `<<-`; the walker refuses an unquoted delimiter's
    body holding a backslash (or `$`, a backquote). Raises Unreadable for a delimiter
    holding anything but HEREDOC_DELIMITER's characters and quotes, and for a body the
    line ends in before its delimiter (bash runs it with a warning)."""
    written = str(redirect.output.word)
    delimiter = None if any(c in written for c in "$`") else unquote(written)
    if delimiter is None or HEREDOC_DELIMITER.fullmatch(delimiter) is None:
        raise Unreadable(f"a here-document's delimiter not read ({_short_text(written)})")
    if tokenizer._eol_ungetc_lookahead is not None:
        raise Unreadable("a here-document the PDP's shell parser would not read")
    text: str = tokenizer._shell_input_line
    start = at = tokenizer._shell_input_line_index
    lines: list[str] = []
    while True:
        if at >= len(text):
            raise Unreadable(
                f"a here-document not ended by its delimiter ({_short_text(delimiter)})"
            )
        end = text.find("\n", at)
        end = len(text) if end < 0 else end + 1
        line = text[at:end]
        at = end
        if strip_tabs:
            line = line.lstrip("\t")
        if line.removesuffix("\n") == delimiter:
            break
        lines.append(line)
    tokenizer._shell_input_line_index = at
    body = "".join(lines)
    redirect.heredoc = bashlex.ast.node(kind="heredoc", value=body, pos=(start, at - 1))
    if redirect.pos[1] + 1 == start:  # as bashlex's: the redirection spans its body
        redirect.pos = (redirect.pos[0], at - 1)
    return body


bashlex.heredoc.makeheredoc = _read_heredoc


def _shell_script(words: list[Word]) -> Word | None:
    """The script of `sh [options] -c SCRIPT [name args...]`; None when there is no -c.
    Raises Unreadable for an option not understood."""
    for i, word in enumerate(words[1:], start=1):
        text = word.text
        if word.dynamic:
            raise Unreadable(f"{words[0].text} takes a computed option")
        if text in SHELL_LONG:
            continue
        if text.startswith("-") and len(text) > 1 and not text.startswith("--"):
            letters = set(text[1:])
            if letters <= SHELL_FLAGS | {"c"}:
                if "c" in letters:
                    if i + 1 >= len(words):
                        raise Unreadable(f"{words[0].text} -c without a script")
                    _script_arguments(words[0].text, words[i + 2 :])
                    return words[i + 1]
                continue
            raise Unreadable(f"{words[0].text} option {text!r} not understood")
        if text.startswith("-") or text.startswith("+"):
            raise Unreadable(f"{words[0].text} option {text!r} not understood")
        return None  # a script file: the part itself (`bash file.sh`)
    return None


def _traced(words: list[Word], script: Word) -> bool:
    """Whether `sh [options] -c SCRIPT` turns xtrace on (-x among its options): the shell
    then prints each command's words, computed ones' values in its own quoting (the part's
    via says `sh -x -c`; ssh.rego ssh_xtrace)."""
    for word in words[1:]:
        if word is script:
            return False
        if word.text.startswith("-") and not word.text.startswith("--") and "x" in word.text:
            return True
    return False


def _script_arguments(shell: str, arguments: list[Word]) -> None:
    """Raises Unreadable for arguments of `sh -c SCRIPT NAME ARGS...` that the shell
    running the line expands into other words: a glob (`sh -c 'df "$@"' x /root/.*` gives
    df the names it matches, quoted in the script: not globbed there) or a computed word.
    They are the script's $0, $1, ..., whose values the walker does not follow."""
    for word in arguments:
        if word.dynamic or GLOB_CHARACTERS.search(word.text):
            raise Unreadable(
                f"{shell} -c takes an argument the shell expands ({_short_text(word.text)}):"
                " its script's $0, $1, ... are not read"
            )


def _env_args(words: list[Word]) -> tuple[list[Word], list[str]]:
    """env's command and the assignments it makes. Raises Unreadable."""
    assignments: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        _no_glob_before_the_command("env", word)
        text = word.text
        if text == "--":
            i += 1
            break
        if text in ENV_FLAGS:
            i += 1
        elif text in ENV_VALUED:
            if i + 1 < len(words):
                _no_glob_before_the_command("env", words[i + 1])
            i += 2
        elif text.startswith("--unset=") or (text.startswith("-u") and len(text) > 2):
            i += 1
        elif text.startswith("-"):
            raise Unreadable(f"env option {text!r} not understood")
        elif "=" in text:
            assignments.append(text)
            i += 1
        else:
            break
    while i < len(words) and "=" in words[i].text and not words[i].dynamic:
        _no_glob_before_the_command("env", words[i])
        assignments.append(words[i].text)
        i += 1
    return words[i:], assignments


def _no_glob_before_the_command(name: str, word: Word) -> None:
    """Raises Unreadable for a word of a command's options (env's, xargs's, a wrapper's)
    computed when it runs, or holding a glob character (quoted or not: more is refused,
    never less): the shell may make it several words or none, and the command run is then
    another word than the one read (`env -u /tmp/p/* df` runs /tmp/p/b when /tmp/p holds a
    and b, df its argument)."""
    if word.dynamic:
        raise Unreadable(f"{name} takes a computed word")
    if GLOB_CHARACTERS.search(word.text):
        raise Unreadable(
            f"{name} takes {_short_text(word.text)}, a glob the shell may expand into the"
            " names of files, one of which it would run"
        )


def _xargs_args(words: list[Word]) -> tuple[list[Word], str | None, str | None]:
    """The command xargs runs (without the words it appends), the string its input
    replaces (-I, -i, --replace) and the file it reads its input from (-a, --arg-file),
    as GNU xargs reads its options (optstring `+0a:d:E:e::hI:i::l::L:n:oprs:txP:`).
    Raises Unreadable."""
    replace: str | None = None
    arg_file: str | None = None
    i = 0
    while i < len(words):
        word = words[i]
        text = word.text
        if text == "--":
            return words[i + 1 :], replace, arg_file
        if not word.dynamic and (not text.startswith("-") or text == "-"):
            return words[i:], replace, arg_file
        _no_glob_before_the_command("xargs", word)
        name, eq, attached = text.partition("=")
        value: str | None
        if text in XARGS_FLAGS:
            i += 1
            continue
        if text in XARGS_VALUED:
            if i + 1 >= len(words) or words[i + 1].dynamic:
                raise Unreadable(f"xargs option {text!r} without a value known before it runs")
            _no_glob_before_the_command("xargs", words[i + 1])
            option, value = text, words[i + 1].text
            i += 2
        elif text.startswith("--") and eq and (name in XARGS_VALUED or name in XARGS_OPTIONAL):
            option, value = name, attached
            i += 1
        elif text in XARGS_OPTIONAL:
            option, value = text, None
            i += 1
        elif not text.startswith("--") and text[:2] in XARGS_VALUED:
            option, value = text[:2], text[2:]  # -n5, -I{}, -a/etc/x
            i += 1
        elif text.startswith("-i"):
            option, value = "-i", text[2:] or None
            i += 1
        else:
            raise Unreadable(f"xargs option {text!r} not understood")
        if option in XARGS_REPLACE:
            replace = "{}" if value is None else value  # an empty one: every word
        elif option in XARGS_FILE:
            arg_file = value
    return [], replace, arg_file


def _wrapped_command(name: str, wrapper: Wrapper, words: list[Word]) -> list[Word]:
    """The command a wrapper runs, after its options and operands (none: []). Raises
    Unreadable for an option not understood, and for a computed word or a glob among its
    options and operands (_no_glob_before_the_command)."""
    i = 0
    while i < len(words):
        text = words[i].text
        if not words[i].dynamic and (not text.startswith("-") or text == "-"):
            break
        _no_glob_before_the_command(name, words[i])
        i += 1
        if text == "--":
            if wrapper.builtin and not wrapper.flags:
                raise Unreadable(f"{name} option '--', which bash and a POSIX sh read apart")
            break
        if wrapper.numbered and NICE_NUMBER.fullmatch(text):
            continue
        if text.startswith("--"):
            i += _long_option(name, wrapper, text, words[i:])
            continue
        i += _short_options(name, wrapper, text, words[i:])
    for _ in range(wrapper.operands):
        if i >= len(words):
            return []
        _no_glob_before_the_command(name, words[i])
        i += 1
    return words[i:]


def _long_option(name: str, wrapper: Wrapper, text: str, after: list[Word]) -> int:
    """How many words after it a long option's value takes (0 or 1); Unreadable if it is
    not understood. Its name matches exactly or as the unique prefix of one."""
    given, eq, _ = text.partition("=")
    known = wrapper.long_flags | wrapper.long_valued | wrapper.long_other
    matches = [given] if given in known else [o for o in known if o.startswith(given)]
    if wrapper.builtin or len(matches) != 1 or matches[0] in wrapper.long_other:
        raise Unreadable(f"{name} option {_short_text(text)} not understood")
    if matches[0] in wrapper.long_flags:
        if eq:
            raise Unreadable(f"{name} option {_short_text(text)} not understood")
        return 0
    if eq:
        return 0
    return _value_after(name, text, after)


def _short_options(name: str, wrapper: Wrapper, text: str, after: list[Word]) -> int:
    """How many words after a cluster of short options its last one's value takes."""
    if wrapper.builtin and text[1:] not in wrapper.flags:
        raise Unreadable(f"{name} option {_short_text(text)} not understood")
    for j, letter in enumerate(text[1:], start=1):
        if letter in wrapper.valued:
            return 0 if j + 1 < len(text) else _value_after(name, text, after)
        if letter not in wrapper.flags:
            raise Unreadable(f"{name} option {_short_text(text)} not understood")
    return 0


def _value_after(name: str, option: str, after: list[Word]) -> int:
    if not after:
        raise Unreadable(f"{name} option {_short_text(option)} without its value")
    _no_glob_before_the_command(name, after[0])
    return 1
