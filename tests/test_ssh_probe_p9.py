"""SSH probe, part 9: the filters and systemctl's options before its verb, attacked.

ssh.rego allows filters by the shape of their argv (ssh_default_filters) and reads
systemctl's options before its verb as getopt_long does (tests/test_ssh_usability.py: the
ordinary lines). Each shape is an allow-list; what the probes tried against it:

- a filter reading or writing a file through an operand or an option: `grep x /etc/shadow`,
  `grep -e x F` (with -e every operand is a file), `grep -f F`, `grep -r x` (no operand:
  the working directory), `sort -o F`, `sort --compress-program=sh`, `uniq in out`,
  `wc --files0-from=F`, `cat -`, `cat < F` (a redirection: only /dev/null);
- a filter cutting a line's characters apart, so the detectors (which read values whole)
  miss them: `head -c`, `tail -c`, `grep -o .`, `grep --color=always`; one that never
  ends: `tail -f`;
- output that continues the next command's first line (a card's digits glued to one
  more: 17 digits, no card to the detectors): `echo -n 1; journalctl -o cat`, `echo
  'x\\c'` (dash's echo), `printf 1`, and a computed word whose value may be any of those
  (only `$?` is taken);
- bash's `printf -v PATH /tmp; df` (sets the variable: /tmp/df would run);
- words xargs appends (`xargs cat`: file names from the input), a computed command name
  (`$(echo rm) -rf /`), a computed word (`grep "$X"`: `-f/etc/shadow`);
- grep, sort and uniq over masked output answer which lines match (their order, which
  repeat): outside pii-readers approval, as journalctl --grep;
- `set` prints every variable, sets `$1` (`set -- /root/*; df $1`: a positional
  parameter the parser takes for glob-free in the login's shell), `-k` makes `NAME=value`
  arguments assignments: only e, u, x and -o pipefail, errexit, nounset, xtrace;
- `LANG=C` is allowed by its value, which bashlex's quote removal misread: `LANG=C'"'` was
  LANG=C to it, `C"` to bash (ssh_input now reads an assignment twice, as a word);
- systemctl's options before the verb: an option whose value is the next word takes the
  word the reading would call the verb (`-n status stop nginx` stops nginx, `--state
  status stop nginx` too); only options of known arity are read there.

Differential runs: random lines of allowed commands and filters, joined and wrapped, run by
bash with stub programs logging their argv (test_ssh_probe_p7's): no program ran that no
part names, with other words, and no filter wrote a file. And systemctl itself: for each
option prefix the policy reads before `status`, the real systemctl, given `zzverb` in its
place, says that is its verb (or refuses an option's value, running nothing).
"""

from __future__ import annotations

import random
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import stack_fixture
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_probe_p7 import BASH, TRAP, differences, ran_by_bash
from test_ssh_proxy import Stack

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)
PII = ("pii-readers",)

DENIED = [
    "journalctl -n 5 | grep x /etc/shadow",
    "grep -e x /etc/shadow",
    "grep -ie x /etc/shadow",
    "grep -f /etc/shadow x",
    "grep --file=/etc/shadow",
    "grep -r x",
    "grep -R x",
    "grep -o .",
    "grep --color=always 1",
    "grep -e -x",
    'grep "$X"',
    "sort -o /tmp/portcullis-p9",
    "sort /etc/shadow",
    "sort --compress-program=sh",
    "sort -T /tmp",
    "uniq /etc/hostname /tmp/portcullis-p9",
    "wc --files0-from=/etc/shadow",
    "wc /etc/shadow",
    "cat -",
    "cat < /etc/shadow",
    "cat 0</etc/shadow",
    "{ cat; } < /etc/shadow",
    "head -c 5",
    "tail -c 5",
    "head -n -1 /etc/shadow",
    "tail -f",
    "tail -n 5 /etc/shadow",
    "echo -n 1; journalctl -o cat",
    "echo -e 'a\\c'",
    "echo 'a\\c'",
    "sh -c 'echo \"1\\c\"'; journalctl",
    "echo $HOME\\$?",
    "echo $X",
    "echo x > /tmp/portcullis-p9",
    "printf 1",
    "printf '%b\\n' x",
    "printf '%999999999d\\n' 1",
    "printf -v PATH /tmp; df",
    "printf -- -v",
    'printf "$F" x',
    "echo /etc/shadow | xargs cat",
    "echo /etc/shadow | xargs",
    "find / | xargs head",
    "$(echo rm) -rf /",
    "true x",
    "cat() { id; }; cat",
    "hash -p /bin/sh cat; cat",
    "builtin echo x",
    "enable -n echo; echo x",
    "alias cat=id; cat",
    "PATH=/tmp cat",
    "command -v cat",
    "set",
    "set -- /root/*; df $1",
    "set -k; uptime LD_PRELOAD=/tmp/x.so",
    "set +B; df {/root,/tmp}",
    "set -o posix",
    "LANG=/tmp/x df",
    "LANGUAGE=C df",
    "LOCPATH=/tmp LANG=C df",
    "LANG=C'\"' df",
    "LANG='\\C' df",
    'LANG="\\C" df',
    "systemctl --state status stop nginx",
    "systemctl --lines status stop nginx",
    "systemctl --no-p status ssh",
    "systemctl -n -n stop status",
    "systemctl -H host status ssh",
    "systemctl -- status ssh",
    "systemctl $X status ssh",
]

NEEDS_APPROVAL = [
    "systemctl -n status stop nginx",
    "systemctl --no-pager restart nginx",
    "journalctl -n 20 | grep -i error",
    "journalctl -o cat | sort",
    "journalctl -o cat | uniq -c",
    "echo *",
    "grep 'a.*'",
]


@pytest.mark.parametrize("line", DENIED)
def test_a_filter_or_verb_shape_outside_the_allow_list_is_denied(engine: Any, line: str) -> None:
    assert verdict(engine, line, PII)["verdict"] == "deny", (line, reading(line))


@pytest.mark.parametrize("line", NEEDS_APPROVAL)
def test_what_may_tell_more_needs_approval(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] == "require_approval", (line, reading(line))


stack = stack_fixture()


@pytest.mark.integration
async def test_a_filter_never_reads_or_writes_a_file_upstream(stack: Stack) -> None:
    """Files named to a filter by an operand, an option or a redirection are never read or
    written upstream: each line is denied at the proxy, no session is opened."""
    secret, out = stack.tmp / "secret", stack.tmp / "out"
    secret.write_text("portcullis-p9-not-for-readers\n")
    planted = stack.tmp / "bin"
    planted.mkdir()
    (planted / "df").write_text(f"#!/bin/sh\n: > {out}\n")
    (planted / "df").chmod(0o755)
    lines = [
        f"journalctl -n 1 | grep portcullis {secret}",
        f"grep -e portcullis {secret}",
        f"grep -f {secret} x",
        f"cat < {secret}",
        f"head -n 1 < {secret}",
        f"sort -o {out}",
        f"uniq {secret} {out}",
        f"wc --files0-from={secret}",
        f"echo x > {out}",
        f"printf -v PATH {planted}; df",
        f"echo {secret} | xargs cat",
        f"systemctl --state status stop nginx; df > {out}",
        "set",
        f"LANG={planted} df",
        "LANG=C'\"' df",
    ]
    async with await stack.connect(PII) as conn:
        for line in lines:
            result = await conn.run(line, input="")
            assert result.exit_status == 1, (line, result.stdout, result.stderr)
            assert result.stderr.startswith("portcullis: denied: "), (line, result.stderr)
            assert "portcullis-p9-not-for-readers" not in result.stdout
    assert not out.exists()
    assert stack.sshd.sessions_started() == 0


@pytest.mark.integration
async def test_no_output_continues_the_next_commands_line(stack: Stack) -> None:
    """`echo -n 1` (or printf without a newline) glued before a card makes it 17 digits,
    which the detectors do not read: denied; `echo 1` then the card is masked."""
    async with await stack.connect(READER) as conn:
        for line in ["echo -n 1; uptime", "printf 1; uptime", "echo 'x\\c'; uptime"]:
            result = await conn.run(line)
            assert result.exit_status == 1 and result.stderr.startswith("portcullis: denied: ")
        masked = await conn.run("echo 1; echo 4111111111111111")
    assert masked.exit_status == 0, masked.stderr
    assert "4111111111111111" not in masked.stdout and masked.stdout.startswith("1\n")
    assert stack.sshd.sessions_started() == 1


# -- differential: what bash runs against the parts of lines the policy allows ----------

# test_ssh_probe_p7's stub, its record written at once: the commands of a pipeline run
# together, and records written piecewise interleave (`grepwc`)
STUB = """#!/bin/sh
r="${0##*/}"; for a in "$@"; do r="$r$(printf '\\037')$a"; done
printf '%s\\036' "$r" >> "$PORTCULLIS_RAN"
"""
FILTER_STUBS = (
    "df", "uptime", "free", "journalctl", "cat", "systemctl", "touch", "id",
    "head", "tail", "wc", "grep", "sort", "uniq", "printf", "echo", "true", "false",
)  # fmt: skip
COMMANDS = [
    "df", "df -h", "uptime", "free -m", "journalctl -n 5", "journalctl --no-pager -n 2",
    "systemctl --no-pager status ssh", "systemctl -n 5 status ssh", "systemctl -ln 3 status x",
    "cat", "cat /var/log/syslog", "head -n 2", "head -3", "head", "tail -n +2", "tail -1",
    "wc -l", "wc", "grep -i x", "grep -c -e a", "grep -v 'a b'", "grep -ie x -A 2", "sort -rn",
    "sort -t , -k2", "sort", "uniq -c", "uniq", "echo ok", 'echo "$?"', "echo $?", "echo rc=$?",
    "printf '%s\\n' a b", "printf 'x %d\\n' 3", "true", "false", ":", "echo 'a b' c",
    "grep -e -x", "head -c 3", "sort -o out", "uniq a b", "grep x y", "cat -", "echo -n x",
    "printf x", "grep -- x", "echo $HOME", "tail -f", "sort -k 1 -u", "grep -m1 x",
    "head --lines=1", "wc --lines", "echo", "echo '' -n", "echo x -e", "grep '-i' x",
    'grep "x" -n',
]  # fmt: skip
OPERATORS = [" | ", " || ", " && ", "; ", "\n", " |& ", " & "]
SUFFIXES = ["", "", "", " 2>&1", " 2>/dev/null", " >/dev/null", " </dev/null", " <<< 'x y'",
            " 1>&2"]  # fmt: skip
WRAPPERS = ["", "", "", "", "timeout 5 ", "nice ", "env ", "command ", "nohup ", "stdbuf -oL "]


def random_line(r: random.Random, depth: int = 0) -> str:
    def simple() -> str:
        return r.choice(WRAPPERS) + r.choice(COMMANDS) + r.choice(SUFFIXES)

    line = simple()
    for _ in range(r.randint(0, 2)):
        line += r.choice(OPERATORS) + simple()
    if depth < 2:
        k = r.random()
        if k < 0.1:
            line = f"( {line} )"
        elif k < 0.2:
            line = f"{{ {line}; }}"
        elif k < 0.27 and "'" not in line:
            line = f"sh -c '{line}'"
        elif k < 0.32 and '"' not in line and "$" not in line:
            line = f'bash -c "{line}"'
        elif k < 0.4:
            line = f'echo "$({line})"'
        elif k < 0.45:
            line = f"if {line}; then {simple()}; fi"
    if depth == 0 and r.random() < 0.4:
        line += r.choice(OPERATORS[:4]) + random_line(r, 1)
    return line


@pytest.fixture(scope="module")
def filter_stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("stubs")
    (where / "bin").mkdir()
    for name in FILTER_STUBS:
        path = where / "bin" / name
        path.write_text(STUB)
        path.chmod(0o755)
    (where / "trap.sh").write_text(TRAP)
    return where


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("seed", range(6))
def test_bash_runs_what_the_parts_of_allowed_filter_lines_say(
    filter_stubs: Path, tmp_path: Path, engine: Any, seed: int
) -> None:
    r = random.Random(9000 + seed)
    allowed = 0
    for i in range(250):
        line = random_line(r)
        if verdict(engine, line, PII)["verdict"] not in ALLOWED:
            continue
        allowed += 1
        where = tmp_path / str(i)
        where.mkdir()
        runs, seen = ran_by_bash(filter_stubs, line, where)
        assert differences(line, runs, seen) == [], line
        written = sorted(p.name for p in where.iterdir() if p.name not in ("ran", "trapped"))
        assert written == [], (line, written)
    assert allowed > 50


SYSTEMCTL = shutil.which("systemctl")
PREFIX_WORDS = [
    "--no-pager", "-l", "-n", "5", "-n5", "--lines=5", "--state", "-q", "--full", "-ln",
    "--legend", "-o", "cat", "-ocat", "--output=cat", "-a", "-t", "service", "-p", "Id",
    "--value", "-H", "--", "-5", "-lq", "-qn", "--lines", "--plain", "--all", "-P", "-h0",
    "--type=service", "--failed", "x", "-",
]  # fmt: skip


@pytest.mark.skipif(SYSTEMCTL is None, reason="systemctl is not installed")
@pytest.mark.parametrize("seed", range(3))
def test_the_verb_the_policy_reads_is_systemctls(engine: Any, seed: int) -> None:
    """For each option prefix read before `status`, the real systemctl (systemd's getopt),
    given `zzverb` there, names zzverb its unknown verb, or refuses an option's value
    before it runs any verb."""
    r = random.Random(900 + seed)
    read = 0
    for _ in range(600):
        prefix = [r.choice(PREFIX_WORDS) for _ in range(r.randint(1, 4))]
        line = " ".join(["systemctl", *prefix, "status", "ssh"])
        if verdict(engine, line, PII)["verdict"] != "allow":
            continue
        read += 1
        assert SYSTEMCTL is not None
        done = subprocess.run([SYSTEMCTL, *prefix, "zzverb", "ssh"], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)  # fmt: skip
        if "Unknown command verb zzverb" in done.stderr:
            continue
        ran_a_verb = done.returncode == 0 or any(
            s in done.stderr for s in ("Unknown command verb", "systemd", "bus")
        )
        assert not ran_a_verb, (line, done.stderr)
    assert read > 20


@pytest.mark.parametrize("line", ["LANG=C'\"' df", "LANG='\\C' df", 'LANG="\\C" df'])
def test_an_assignment_bashlex_misreads_is_not_read(line: str) -> None:
    """bashlex read each as LANG=C (bash: C", \\C, \\C), a value the policy allows."""
    assert "does not read the same twice" in reading(line).get("malformed", ""), reading(line)


@pytest.mark.parametrize("line", ["LANG=C df", "LANG='C' df", 'LC_ALL="C.UTF-8" x=1 df'])
def test_an_assignment_read_alike_stays_read(line: str) -> None:
    assert "malformed" not in reading(line), reading(line)


STRACE = shutil.which("strace")
SHAPE_WORDS = [
    "-i", "-v", "-c", "-n", "-e", "-f", "-r", "-o", "-A", "3", "-m", "1", "x", "a", "out", "-",
    "--", "-k", "2", "-t", ",", "-u", "--lines=2", "-2", "+2", "-l", "-w", "--count",
    "--files0-from=a", "--color=always", "-ie", "-ne", "-s", "-q", "-T", ".", "-z", "-R", "-E",
    "-F", "-h", "-H", "-b", "-d", "-C", "-B", "--max-count=1", "-n2", "-kx", "-x", "-V", "-M",
    "-g", "--lines", "-c2", "-fa", "-ea", "--ignore-case", "-1", "-10", "--unique", "-rn",
]  # fmt: skip
# what a filter may open: the loader's, libc's and the locale's files
LOADED = ("/etc/ld.so.", "/lib/", "/lib64/", "/usr/lib/", "/usr/share/locale", "/etc/localtime",
          "/proc/self", "/sys/", "/dev/null")  # fmt: skip


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
@pytest.mark.parametrize("seed", range(2))
def test_an_allowed_filter_shape_opens_no_file(engine: Any, tmp_path: Path, seed: int) -> None:
    """Random argv of the filters; each the policy allows, run by the real program (GNU
    coreutils, grep) under strace in a directory of files named like its words, with data
    on its stdin: it opens no file but the loader's and the locale's, runs nothing, writes
    no file, prints none of theirs."""
    r = random.Random(90 + seed)
    allowed = 0
    for i in range(2500):
        tool = r.choice(["head", "tail", "wc", "grep", "sort", "uniq", "cat"])
        argv = [tool] + [r.choice(SHAPE_WORDS) for _ in range(r.randint(0, 4))]
        line = " ".join(shlex.quote(a) for a in argv)
        if verdict(engine, line, PII)["verdict"] != "allow":
            continue
        allowed += 1
        where = tmp_path / str(i)
        where.mkdir()
        for name in ("a", "x", "out", "-"):
            (where / name).write_text(f"file-{name}\n")
        log = tmp_path / f"{i}.strace"
        assert STRACE is not None
        done = subprocess.run(
            [STRACE, "-f", "-qq", "-e", "trace=open,openat,creat,execve", "-o", str(log), *argv],
            cwd=where, input=b"b\na\nstdin\n", capture_output=True, timeout=30,
        )  # fmt: skip
        calls = log.read_text().splitlines()
        opened = [c for c in calls if "execve(" not in c and '"' in c]
        paths = [c.split('"')[1] for c in opened]
        assert all(p.startswith(LOADED) for p in paths), (line, paths)
        assert sum("execve(" in c for c in calls) == 1, (line, calls)
        assert sorted(p.name for p in where.iterdir()) == ["-", "a", "out", "x"], line
        assert b"file-" not in done.stdout, line
    assert allowed > 20
