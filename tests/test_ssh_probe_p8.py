"""SSH probe, part 8: commands run through another (env inside xargs), here-documents with
a quoted delimiter, and the wrappers an operator types before a command (timeout, nice,
nohup, ...), each line compared with what the upstream's bash runs.

xargs appends the words of its input to the command it runs, and the parts say so
(more_args), so that `cat /var/log/*` takes no appended word and journalctl's appended
words need approval. Through env the flag was dropped: `xargs env cat /var/log/x` was the
allowed `cat /var/log/x`, and the words the client wrote on the channel (its stdin, here
`/etc/shadow`) were read by cat as the upstream's account.

A word of env's or xargs's options that the shell makes into several words moves the
command: `env -u /tmp/p/* uptime` was the allowed `uptime` (env's `-u` takes one value),
and bash, expanding the glob, ran `env -u /tmp/p/a /tmp/p/b uptime`: /tmp/p/b, planted by
any local user (or a masked dba's SFTP upload to /tmp, allowed without approval), as the
upstream's account. `env -u $X df` (X='A touch') and `xargs -I /tmp/p/* df` the same.
A computed word or one holding a glob character among their options is now unreadable.

The wrappers an operator types before a command — timeout, nice, nohup, stdbuf, ionice,
setsid, and the builtins command and exec — made the part the wrapper itself, which no
list holds: `timeout --foreground 3s df` was denied. The walker now reads their options as
their getopt_long does (`+` optstrings: options up to the first word not one or `--`,
clusters, a value attached or the next word, long options by unique prefix, nice's
obsolete `-5`, timeout's DURATION) and decides the command they run (the wrapper in
`via`): `timeout -s KILL 5 rm -rf /x` needs approval as rm -rf does, `nohup sh -c '...'`
is its script. An option not understood (help, version, ionice -p, exec -a, an ambiguous
prefix), a computed word or a glob among the options is unreadable. chrt (real-time
scheduling, other processes) and bash's `time` keyword (bashlex does not read it; to dash
it is /usr/bin/time, whose -o writes) are not seen through.

`cat -- /var/log/x` (getopt's end of options before a file name) was denied: `cat
/var/log/*` asks each further word to match its glob, `--` among them. ssh.rego: a listed
command ending in a glob takes one `--` right after its listed words, then at least one
argument, each matching the glob.

Process substitution was already read as the task asked (`diff <(ls /a) <(ls /b)`: each
inner command a part of its own); with diff and ls in an operator's list the line is
allowed and an inner rm -rf, sudo or touch decides it (checked here, and by the
differential run of mixed lines: no command bash ran that no part names).

A here-document whose delimiter is quoted (`sh <<'EOF'`, `<<"EOF"`, `<<\\EOF`, `<<-'EOF'`:
its body then taken as written, `$` and all) was a parse error, the whole line denied:
bashlex compared each line with the delimiter as written, quotes included. Its reader is
replaced (ssh_input._read_heredoc): the delimiter's quotes removed as bash and dash remove
them (a delimiter they read otherwise, `$'E'`, is not read), and the lines taken as
written; bashlex joined a line ending in a backslash to the next, which bash does only
under an unquoted delimiter, so after `cat <<'E'`, `x\\`, `E` it would have read the
command after the here-document as a line of it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from policy_harness import REGO, shipped_engine
from ssh_probe_stack import stack_fixture
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_probe_p7 import BASH, differences, ran_by_bash, stubs  # noqa: F401
from test_ssh_proxy import Stack, ssh_policy, ssh_stack

from pdp.engine.bundle import PolicyBundle, load_bundle
from pdp.engine.opa import new_engine

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)

# xargs's appended words pass through env to the command env runs
THROUGH_ENV = [
    "xargs env cat /var/log/syslog",
    "xargs -n1 env journalctl",
    "xargs env -i cat /var/log/syslog",
    "xargs env A=1 env cat /var/log/syslog",
]


@pytest.mark.parametrize("line", THROUGH_ENV)
def test_words_xargs_appends_reach_the_command_env_runs(engine: Any, line: str) -> None:
    (part,) = reading(line)["parts"]
    assert part["more_args"] is True, part
    assert verdict(engine, line)["verdict"] not in ALLOWED, (line, reading(line))


# a here-document with a quoted delimiter: its body is the shell's script, as written
QUOTED_HEREDOCS = [
    ("sh <<'EOF'\ndf -h $HOME\nuptime\nEOF\n", [["df", "-h", "$HOME"], ["uptime"]]),
    ('sh <<"EOF"\ndf\nEOF\n', [["df"]]),
    ("sh <<\\EOF\ndf\nEOF\n", [["df"]]),
    ("sh <<-'EOF'\n\tdf\n\tEOF\n", [["df"]]),
    ("sh <<'E'\"O\"F\nuptime\nEOF", [["uptime"]]),
    ("bash <<'A' && sh <<'B'\ndf\nA\nuptime\nB\n", [["df"], ["uptime"]]),
    ("cat <<'EOF' >/dev/null\n`id` $(id) \\\nEOF\ndf\n", [["cat"], ["df"]]),
]


@pytest.mark.parametrize(("line", "parts"), QUOTED_HEREDOCS)
def test_a_here_document_with_a_quoted_delimiter_is_read(line: str, parts: list[Any]) -> None:
    assert [p["argv"] for p in reading(line)["parts"]] == parts, reading(line)


@pytest.mark.parametrize(
    "line", [line for line, _ in QUOTED_HEREDOCS if line.startswith(("sh", "bash"))]
)
def test_a_shell_fed_a_quoted_here_document_is_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


# after a quoted delimiter, a line ending in a backslash is a line of the body as it stands
# (bashlex joined it to the next, and read the delimiter after it as a line of the body)
AFTER_A_BACKSLASH = [
    "cat <<'E'\nx\\\nE\ntouch /tmp/portcullis-p8\nE\n",
    "cat <<\\E >/dev/null\nx \\\nE\ntouch /tmp/portcullis-p8\nE\n",
]


@pytest.mark.parametrize("line", AFTER_A_BACKSLASH)
def test_the_command_after_a_quoted_here_document_is_a_part(engine: Any, line: str) -> None:
    assert ["touch", "/tmp/portcullis-p8"] in [p["argv"] for p in reading(line)["parts"]]
    assert verdict(engine, line)["verdict"] == "deny"


@pytest.mark.parametrize(
    "line",
    ["cat <<$'E'\nx\nE\n", 'cat <<"$E"\nx\n$E\n', "cat <<`E`\nx\n`E`\n", "cat <<'E'\nx\n"],
)
def test_a_delimiter_the_shells_read_otherwise_or_never_meet_is_not_read(line: str) -> None:
    assert "here-document" in reading(line).get("malformed", ""), reading(line)


HEREDOC_DIFFERENTIAL = [
    *(line for line, _ in QUOTED_HEREDOCS if line.startswith(("sh", "bash"))),
    "sh <<'E'\ndf\nE\nuptime\n",
    "sh <<-\\E\n\tuptime\n\t\tE\ndf\n",
    "sh <<'E' >/dev/null; sh <<\"F\"\ndf\nE\nuptime\nF\n",
]


# a glob or a computed word among env's or xargs's options: the command may be another word
MOVED_COMMANDS = [
    "env -u /tmp/p/* uptime",
    "env -u /tmp/p/? df",
    "env -u$X df",
    "env -u $X df",
    "env -i -- A=/tmp/* df",
    "xargs -I /tmp/p/* df",
    "xargs -E /tmp/p/[ab] df",
    "xargs -n $N df",
]


@pytest.mark.parametrize("line", MOVED_COMMANDS)
def test_a_word_the_shell_may_split_before_the_command_is_not_read(engine: Any, line: str) -> None:
    assert reading(line).get("malformed"), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


@pytest.mark.parametrize("line", ["env -u HOME df", "xargs -I{} df {} </dev/null", "env -i df"])
def test_plain_options_of_env_and_xargs_stay_read(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


# a wrapper is seen through: the command it runs is the part, its options skipped
WRAPPED = [
    ("timeout -s KILL 5 rm -rf /x", ["rm", "-rf", "/x"], "require_approval"),
    ("timeout -k1 -sKILL 5 rm -rf /x", ["rm", "-rf", "/x"], "require_approval"),
    ("nice -n 5 sudo id", ["sudo", "id"], "require_approval"),
    ("nice -5 sudo id", ["sudo", "id"], "require_approval"),
    ("nohup sh -c 'touch /m'", ["touch", "/m"], "deny"),
    ("timeout --foreground 3s df", ["df"], "mask"),
    ("timeout --sig=TERM -- 1m df -h", ["df", "-h"], "mask"),
    ("nice --5 uptime", ["uptime"], "deny"),  # a raised priority (test_ssh_probe_p24)
    ("nice -n 5 -- free -m", ["free", "-m"], "mask"),
    (
        "nice --adj=3 journalctl --vacuum-time=1s",
        ["journalctl", "--vacuum-time=1s"],
        "require_approval",
    ),
    ("nohup -- uptime", ["uptime"], "mask"),
    ("stdbuf -oL -e 0 journalctl -f", ["journalctl", "-f"], "mask"),
    ("ionice -c3 -t df", ["df"], "mask"),
    ("setsid -fw df", ["df"], "deny"),  # detached: test_ssh_probe_p18
    ("command -p df", ["df"], "mask"),
    ("exec df", ["df"], "mask"),
    ("nice timeout 5 nohup setsid stdbuf -o0 ionice -c2 command exec uptime", ["uptime"], "deny"),
    ("nice timeout 5 nohup stdbuf -o0 ionice -c2 command exec uptime", ["uptime"], "mask"),
    ("timeout 5 env PATH=/tmp df", ["df"], "deny"),
    ("PATH=/tmp nice df", ["df"], "deny"),
    ("echo x | xargs timeout 5 cat /var/log/syslog", ["cat", "/var/log/syslog"], "deny"),
    ("timeout 5 -- df", ["--", "df"], "deny"),  # DURATION 5: timeout runs `--`
    ("timeout 5", ["timeout", "5"], "deny"),
    ("chrt -f 99 df", ["chrt", "-f", "99", "df"], "deny"),
]


@pytest.mark.parametrize(("line", "argv", "expected"), WRAPPED)
def test_a_wrapper_is_seen_through(engine: Any, line: str, argv: list[str], expected: str) -> None:
    assert reading(line)["parts"][-1]["argv"] == argv, reading(line)
    assert verdict(engine, line)["verdict"] == expected, (line, reading(line))


# what a wrapper would read otherwise than the walker, or not run a command at all
UNREAD_WRAPPERS = [
    "timeout --v 5 df",  # ambiguous: --verbose, --version
    "timeout --help",
    "timeout -x 5 df",
    "timeout --foreground=1 5 df",
    "timeout $T df",
    "timeout -s $S 5 df",
    "nice -n * df",
    "nice -n",
    "nohup --version",
    "ionice -p 1",
    "ionice -c3 --pid=1",
    "setsid --bogus df",
    "command -v df",
    "command -pv df",
    "exec -a sudo df",
    "exec -- df",  # dash runs a command named `--`
    "exec -c df",
]


@pytest.mark.parametrize("line", UNREAD_WRAPPERS)
def test_a_wrapper_not_understood_is_not_read(engine: Any, line: str) -> None:
    assert reading(line).get("malformed"), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


WRAPPER_DIFFERENTIAL = [
    "timeout 5 df -h",
    "timeout -s KILL -k 1 -- 5 uptime -p",
    "timeout -vsKILL 5 df --total",
    "nice -5 df; nice -n 3 uptime",
    "nice --adjustment 2 free -m",
    "nohup df -h",
    "stdbuf -oL -- uptime",
    "ionice -c 3 -- df",
    "command -- df",
    "exec df -h",
    "timeout 5 sh -c 'nice -n 1 df'",
]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("line", HEREDOC_DIFFERENTIAL + WRAPPER_DIFFERENTIAL)
def test_bash_runs_what_the_parts_of_a_quoted_here_document_or_a_wrapper_say(
    stubs: Path,  # noqa: F811 (test_ssh_probe_p7's fixture)
    tmp_path: Path,
    engine: Any,
    line: str,
) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))
    runs, seen = ran_by_bash(stubs, line, tmp_path)
    assert runs, (line, seen)
    assert differences(line, runs, seen) == [], line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("cat -- /var/log/syslog", ALLOWED),
        ("cat -- /var/log/syslog /var/log/auth.log", ALLOWED),
        ("timeout 5 cat -- /var/log/syslog", ALLOWED),
        ("cat -- -- /var/log/syslog", ("deny",)),  # the second `--` is a file in $HOME
        ("cat -- /etc/shadow", ("deny",)),
        ("cat --", ("deny",)),
        ("cat /var/log/syslog -- /etc/shadow", ("deny",)),
        ("cat -- /var/log/$X", ("deny",)),
        ("xargs cat -- /var/log/syslog", ("deny",)),
    ],
)
def test_a_glob_pattern_takes_the_end_of_options(
    engine: Any, line: str, expected: tuple[str, ...]
) -> None:
    assert verdict(engine, line)["verdict"] in expected, (line, reading(line))


@pytest.fixture(scope="module")
def diffing_engine() -> Iterator[Any]:
    """The shipped policy with diff and ls allowed, as an operator may list them, and
    commands run detached (a process substitution's: test_ssh_probe_p18) allowed."""
    shipped = load_bundle(REGO).without_tests()
    data = copy.deepcopy(shipped.data)
    data["portcullis"]["ssh"]["allowed_commands"].extend(["diff", "ls"])
    data["portcullis"]["ssh"]["detached"] = True
    eng = new_engine(PolicyBundle(shipped.modules, data, shipped.revision, shipped.root))
    yield eng
    eng.close()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("diff <(ls /a) <(ls /b)", "mask"),
        ("diff -u <(ls -la /etc) <(journalctl -u nginx)", "mask"),
        ("diff <(ls /a) <(rm -rf /x)", "require_approval"),
        ("diff <(ls /a) <(timeout 5 sudo ls /root)", "require_approval"),
        ("diff <(ls /a) <(touch /tmp/portcullis-p8)", "deny"),
        ("diff <(ls /a) >(touch /tmp/portcullis-p8)", "deny"),
    ],
)
def test_each_command_of_a_process_substitution_is_decided(
    diffing_engine: Any, line: str, expected: str
) -> None:
    assert verdict(diffing_engine, line)["verdict"] == expected, (line, reading(line))


stack = stack_fixture()


@pytest.mark.integration
async def test_a_file_named_on_stdin_is_not_read_through_xargs_env(stack: Stack) -> None:
    """Before: allowed (masked, the part `cat /var/log/syslog` via xargs, env), and the
    upstream's cat printed the file whose name the client wrote on stdin."""
    secret = stack.tmp / "secret"
    secret.write_text("portcullis-p8-not-for-readers\n")
    async with await stack.connect(READER) as conn:
        result = await conn.run("xargs env cat /var/log/portcullis-none", input=f"{secret}\n")
    assert "portcullis-p8-not-for-readers" not in result.stdout
    assert result.exit_status == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("portcullis: denied: "), result.stderr
    assert stack.sshd.sessions_started() == 0


@pytest.mark.integration
async def test_a_program_a_glob_puts_where_the_command_was_never_runs(stack: Stack) -> None:
    """Before: allowed (masked, the part an uptime via env), and the upstream's bash ran
    `env -u <dir>/a <dir>/b uptime`: the planted b, as its account."""
    planted, marker = stack.tmp / "p", stack.tmp / "ran"
    planted.mkdir()
    (planted / "a").write_text("")
    (planted / "b").write_text(f"#!/bin/sh\n: > {marker}\n")
    (planted / "b").chmod(0o755)
    async with await stack.connect(READER) as conn:
        result = await conn.run(f"env -u {planted}/* uptime")
    assert result.exit_status == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("portcullis: denied: "), result.stderr
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 0


@pytest.mark.integration
async def test_quoted_here_documents_run_as_written(tmp_path: Path) -> None:
    """Before: denied (a parse error). A shell's quoted here-document runs its script; a cat
    allowed by the policy prints its body unexpanded; the command after a here-document
    whose line ends in a backslash is judged, and never runs."""
    marker = tmp_path / "ran"
    policies = ssh_policy(tmp_path, "cat")
    async with ssh_stack(tmp_path, extra={"policies": str(policies)}) as stack:
        async with await stack.connect(READER) as conn:
            script = await conn.run("sh <<'EOF'\ndf -h \"$HOME\"\nEOF\n")
            body = await conn.run("cat <<-'EOF'\n\t$HOME `id` \\\n\tEOF\n")
            after = await conn.run(f"cat <<'E'\nx\\\nE\ntouch {marker}\nE\n")
        assert script.exit_status == 0 and "Filesystem" in script.stdout, script.stderr
        assert body.exit_status == 0 and body.stdout == "$HOME `id` \\\n", body.stderr
        assert after.exit_status == 1 and after.stderr.startswith("portcullis: denied: ")
        assert stack.sshd.sessions_started() == 2
    assert not marker.exists()


@pytest.mark.integration
async def test_a_wrapped_command_runs_as_its_command_is_decided(stack: Stack) -> None:
    """Before: every line denied (the part the wrapper, in no list). A wrapped df runs and
    answers; a wrapped shell's script is judged, and its touch never runs."""
    marker = stack.tmp / "ran"
    async with await stack.connect(READER) as conn:
        for line in ["timeout --foreground 3s df", "nice -n 5 df -h", "nohup uptime"]:
            result = await conn.run(line)
            assert result.exit_status == 0, (line, result.stderr)
            assert "Filesystem" in result.stdout or "load average" in result.stdout, line
        denied = await conn.run(f"nohup sh -c 'touch {marker}'")
        assert denied.exit_status == 1 and denied.stderr.startswith("portcullis: denied: ")
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 3


@pytest.mark.integration
async def test_cat_with_the_end_of_options_reaches_the_upstream(stack: Stack) -> None:
    """Before: denied ("cat -- /var/log/..." is not an allowed command)."""
    async with await stack.connect(READER) as conn:
        result = await conn.run("cat -- /var/log/portcullis-no-such-file")
        second = await conn.run("cat -- -- /var/log/portcullis-no-such-file")
    assert result.exit_status == 1 and "No such file or directory" in result.stderr, result
    assert second.exit_status == 1 and second.stderr.startswith("portcullis: denied: ")
    assert stack.sshd.sessions_started() == 1
