"""What the policy decides of an exec line against what the real bash runs for it.

Hypothesis writes shell lines from the commands a reader may run (df, uptime, journalctl,
the filters...) joined, nested and wrapped as agents and attackers write them (`;`, `&&`,
`|`, `{ }`, `( )`, `if`, `for`, `sh -c`, `env`, `timeout`, here-documents), with words
from the corners where a parser and bash part ways (quotes of every kind, `$'...'`, `{a,b}`,
`~user`, `$(...)`, backquotes, `<(...)`, `{fd}>`, comments, backslash-newlines, CR, tabs,
non-ASCII blanks), and then edits some at random, a character run at a time. Each line the
shipped policy lets a reader run (allow or mask) is run by bash with every program a stub
that logs its argv and a DEBUG trap that names each command bash runs, builtins included
(test_ssh_probe_p7's harness): anything bash ran that no part of the decision names — a
program, a program with other words, a builtin — is a bypass, and so is a file written.

Found this way: a tilde prefix holding an expansion (`df ~$(id)`: tests/test_ssh_probe_p11.py).
The runs are derandomized (the same lines every run); `PORTCULLIS_DIFFERENTIAL_EXAMPLES`
raises their number for a longer search.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_harness import shipped_engine
from ssh_probe_stack import stubs_fixture
from test_ssh_probe_exec import ALLOWED, reading, verdict

from pdp.domain.ssh_input import RESERVED

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)
EXAMPLES = int(os.environ.get("PORTCULLIS_DIFFERENTIAL_EXAMPLES", "400"))

# programs the stubs stand for: the allowed ones, the filters, and what an attack runs
STUB_NAMES = ("df", "uptime", "free", "journalctl", "systemctl", "cat", "head", "tail", "wc",
              "grep", "sort", "uniq", "id", "touch")  # fmt: skip
# one write per run (a process substitution's stub runs beside its command's)
STUB = """#!/bin/sh
us=$(printf '\\037')
r="${0##*/}"
for a in "$@"; do r="$r$us$a"; done
printf '%s\\036' "$r" >> "$PORTCULLIS_RAN"
"""

COMMANDS = ["df", "df -h", "uptime", "uptime -p", "free -m", "journalctl -n 1",
            "systemctl status ssh", "cat /var/log/syslog", "cat", "head -n 1", "tail -n 2",
            "wc -l", "echo ok", "printf '%s\\n' a", 'printf "%s\\n" a', "true", ":", "false",
            "set -e", "LANG=C df"]  # fmt: skip
WORDS = ["x", "'a b'", '"q"', "$'\\x41'", '$"t"', "{a,b}", "{a..c}", "~", "~root", "~/x",
         "~$(id)", "~`id`", "$HOME", "$?", "$(uptime)", "`uptime`", "<(uptime)", ">(uptime)",
         "\\#", "#c", "a#b", "'$(id)'", '"$(uptime)"', "${HOME}", "\\$(id)", '"\\$(id)"',
         "'\\''", "-h", "--", "{fd}>/dev/null", ">/dev/null", "2>&1", "<&0", "<<<x", "\r",
         "\t", "\u00a0", "${x:-$(id)}", "$1", "$_", "*", "[a]", "'*'", "$((1))", "\\\\",
         '"\\\\"', '"%s\\n"', '"$?\\c"', "x=y", "{", "}", "!", "<>/dev/null", "&>/dev/null",
         "\\\nx", "$BASH_EXECUTION_STRING"]  # fmt: skip
# words of ordinary lines, drawn as often as all the others (most of which are denied)
PLAIN = ["x", "-h", "'a b'", '"q"', "a", "--", "~", "$?", "$HOME", ">/dev/null", "2>&1"]
JOINS = ["; ", " && ", " || ", " | ", " |& ", " & ", "\n", " &\n"]
WRAPPERS = ["env ", "timeout 5 ", "nice ", "nohup ", "command ", "exec ", "! ", "xargs ",
            "stdbuf -o0 ", "setsid "]  # fmt: skip
EDITS = [" ", "\t", "\n", "'", '"', "\\", "$", "`", "(", ")", "{", "}", ";", "&", "|", "<", ">",
         "#", "!", "~", "*", "=", "id", ";id", "$(id)", "`id`", "~$(", "${", "<(", "\\\n",
         "{fd}", "\r", "\u00a0"]  # fmt: skip


def simple() -> st.SearchStrategy[str]:
    return st.builds(
        lambda c, ws: " ".join([c, *ws]),
        st.sampled_from(COMMANDS),
        st.lists(st.one_of(st.sampled_from(PLAIN), st.sampled_from(WORDS)), max_size=2),
    )


def compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        st.builds(lambda ab, j: ab[0] + j + ab[1], pair, st.sampled_from(JOINS)),
        inner.map(lambda a: "{ " + a + "; } >/dev/null"),
        inner.map(lambda a: "(" + a + ")"),
        pair.map(lambda ab: f"if {ab[0]}; then {ab[1]}; fi"),
        inner.map(lambda a: f"for x in a b; do {a}; done"),
        st.builds(
            lambda s, a: s + "'" + a.replace("'", "'\\''") + "'",
            st.sampled_from(["sh -c ", "bash -c "]),
            inner,
        ),
        st.builds(lambda w, a: w + a, st.sampled_from(WRAPPERS), inner),
        inner.map(lambda a: "sh <<'E'\n" + a + "\nE"),
    )


@st.composite
def edited(draw: st.DrawFn, lines: st.SearchStrategy[str]) -> str:
    """A line, then up to three random edits: an insertion, a deletion, a replacement."""
    line = draw(lines)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        at = draw(st.integers(0, len(line)))
        cut = at + draw(st.integers(0, 3))
        line = line[:at] + draw(st.sampled_from(EDITS)) + line[cut:]
    return line


LINES = edited(st.recursive(simple(), compound, max_leaves=4))


stubs = stubs_fixture(STUB_NAMES, STUB)


def run_by_bash(stubs: Path, line: str, cwd: Path) -> tuple[list[list[str]], list[str]]:
    """The stubs bash ran (argv each) and the commands its DEBUG trap saw, in cwd."""
    ran, trapped = stubs / "ran", stubs / "trapped"
    ran.write_bytes(b"")
    trapped.write_bytes(b"")
    env = {"PATH": f"{stubs / 'bin'}:{os.defpath}", "HOME": str(cwd),
           "BASH_ENV": str(stubs / "trap.sh"), "PORTCULLIS_RAN": str(ran),
           "PORTCULLIS_TRAPPED": str(trapped)}  # fmt: skip
    assert BASH is not None
    subprocess.run([BASH, "-c", line], cwd=cwd, env=env, capture_output=True, timeout=10,
                   stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    runs = [r.split("\x1f") for r in ran.read_bytes().decode().split("\x1e") if r]
    seen = [c for c in trapped.read_bytes().decode(errors="replace").split("\x1e") if c]
    return runs, seen


ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
GLOB = re.compile(r"[*?\[]")


def _as_run(argv: list[str]) -> list[str]:
    """A part's argv as the program receives it: a glob word expanded as bash expands it."""
    out = [argv[0]]
    for word in argv[1:]:
        out.extend(sorted(glob.glob(word)) or [word] if GLOB.search(word) else [word])
    return out


def _trapped_command(command: str) -> str | None:
    """The command word of what the DEBUG trap saw, past assignments; None: none (a
    redirection alone, `> /dev/null`)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    while words and ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words or re.fullmatch(r"[0-9]*[<>]&?[0-9-]*|[0-9]*[<>]+.*", words[0]):
        return None
    return words[0]


def differences(line: str, runs: list[list[str]], seen: list[str]) -> list[str]:
    parts: list[dict[str, Any]] = reading(line)["parts"]
    names = {p["argv"][0] for p in parts if p["argv"]}
    names |= {via.split()[0] for p in parts for via in p["via"]}  # sh -c, env, xargs
    found = []
    for argv in runs:
        mine = [p for p in parts if p["argv"] and p["argv"][0] == argv[0]]
        if not any(p["dynamic"] or p["more_args"] or _as_run(p["argv"]) == argv for p in mine):
            found.append(f"ran {argv}, parts {[p['argv'] for p in parts]}")
    for command in seen:
        name = _trapped_command(command)
        if name and name not in names | RESERVED and not name.startswith(("(", "[")):
            found.append(f"trapped {command!r}, parts {[p['argv'] for p in parts]}")
    return found


def check(engine: Any, stubs: Path, cwd: Path, line: str) -> None:
    if verdict(engine, line, READER)["verdict"] not in ALLOWED:
        return
    for leftover in cwd.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    runs, seen = run_by_bash(stubs, line, cwd)
    assert differences(line, runs, seen) == [], (line, reading(line))
    assert not [r for r in runs if r[0] in ("id", "touch")], (line, runs)
    assert not list(cwd.iterdir()), (line, "wrote", sorted(p.name for p in cwd.iterdir()))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(line=LINES)
def test_bash_runs_only_what_the_decision_names(
    engine: Any, stubs: Path, tmp_path: Path, line: str
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    check(engine, stubs, cwd, line)


# lines the search met that bash reads otherwise than bashlex (now denied), and ordinary
# ones: each either denied, or run by bash as decided
KNOWN = [
    "df ~$(id)",
    "df ~`id`",
    "df ~root`id`/x",
    "for x in ~`id`; do df; done",
    "sh -c 'echo \"$?\\c\"; df'",
    'printf "%s\\n" a b',
    "df ~ ~root ~/x; uptime | head -n 1",
    "df <(uptime) && echo $?",
]


@pytest.mark.parametrize("line", KNOWN)
def test_known_lines(engine: Any, stubs: Path, tmp_path: Path, line: str) -> None:
    check(engine, stubs, tmp_path, line)
