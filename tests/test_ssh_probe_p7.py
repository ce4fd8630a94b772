"""SSH probe, part 7: exec lines the upstream's bash runs otherwise than the PDP read them,
found by a differential fuzzer (tests below: each line the policy would let a reader run is
run by bash with stub commands that log their argv, and a DEBUG trap naming every command
bash runs, builtins included; what ran is compared with the parts the policy judged).

`{fd}>/dev/null` is to bash a redirection that assigns the descriptor it opens to the
variable `fd` (bash 4.1+); to bashlex the word `{fd}` is an argument of the command. On a
simple command bash restores the variable once the redirection is done (neither the command
nor what follows sees `{PATH}>`'s value), but an array element's subscript is evaluated as
arithmetic, and ran what `$_` named (`df 'a[$(cmd)]'; df {a[_]}>/dev/null` ran cmd while the
approver was shown two df); and the parts held a word bash never passed. A backslash
ending the line after `&`, `;` or a newline is a word to bash (a command named `\\`);
bashlex dropped it.

A `for` loop assigns its variable as an assignment does, for the commands after it, and
keeps it exported if it was: `for PATH in /tmp; do df; done` ran /tmp/df as the upstream's
root, while the policy denies any part that sets a variable and saw none (a masked dba may
upload /tmp/df by SFTP without approval: the shell it was refused). The parser now lists a
line's loop variables and the policy allows only lowercase names (letters and digits).

A shell run without -c reads its script from its standard input, and the parser read the
script of its here-document: whatever the fd of that here-document and whatever else set
fd 0 after it. `sh 3<<E<newline>df<newline>E` ran what the client wrote on the channel,
`sh <<E <<<'cmd'` ran cmd, as root, the parts a df. A here-document is now read as the
shell's script only when it is the command's one redirection of fd 0.

And the commands of a shell's script (`sh -c SCRIPT`, `sh <<E`) were judged without the
shell's own assignments and redirections: `PATH=/tmp sh -c df` ran /tmp/df,
`LD_PRELOAD=... sh -c df` loaded a library into it, `sh -c 'df x' 2>/etc/x` wrote (or
truncated) any file root may, with what the command prints, all allowed as a df. Each command of the
script now has them, as a compound's commands have its redirections. A login shell
(`bash -lc df`) runs its startup files before its script, commands no part names: its
option is no longer understood (denied).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import BASH, READER, decided_as, ran_by_bash, stack_fixture, stubs_fixture

# tests/test_ssh_probe_p11.py imports the stubs from here (until it imports ssh_probe_stack)
from ssh_probe_stack import STUB as STUB
from ssh_probe_stack import STUB_NAMES as STUB_NAMES
from ssh_probe_stack import TRAP as TRAP
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_proxy import Stack

from pdp.domain.ssh_input import RESERVED

engine = pytest.fixture(scope="module")(shipped_engine)

# `{name}` or `{name[subscript]}` right before a redirection: the variable bash assigns
FD_VARIABLES = [
    "df {fd}>/dev/null",
    "df {PATH}>/dev/null; df",
    "uptime {HOME}</dev/null; df ~",
    "df {fd}>>/dev/null",
    "df {fd}<>/dev/null",
    "df {fd}>&2",
    "{fd}>/dev/null df",
    "df 'a[$(touch /tmp/portcullis-p7)]' >/dev/null; df {a[_]}>/dev/null",
    "df {x}<<<y",
]


@pytest.mark.parametrize("line", FD_VARIABLES)
def test_a_redirections_descriptor_variable_is_an_assignment(engine: Any, line: str) -> None:
    decided = decided_as(engine, line, "deny")
    assert any(" sets {" in reason for reason in decided["reasons"]), decided


@pytest.mark.parametrize(
    "line", ["df {fd} >/dev/null", "df '{fd}'>/dev/null", "df {1}>/dev/null", "df {fd}2>/dev/null"]
)
def test_a_brace_word_bash_passes_as_a_word_stays_a_word(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


TRAILING_BACKSLASHES = ["df;\\", "uptime &\\", "df\n\\", "free && uptime\n\\"]


@pytest.mark.parametrize("line", TRAILING_BACKSLASHES)
def test_a_backslash_ending_the_line_is_not_read(engine: Any, line: str) -> None:
    assert "backslash at the end" in reading(line).get("malformed", ""), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


@pytest.mark.parametrize("line", ["df 'x\\\\'", "df \\\\", "df ;\\\n"])
def test_an_escaped_backslash_or_a_continuation_at_the_end_is_read(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


# A `for` loop assigns its variable (exported if it was) for the commands in it and after it
LOOP_ASSIGNMENTS = [
    "for PATH in /tmp; do df; done",
    "for PATH in /tmp; do uptime; done; df",
    "for PATH; do df; done",
    "sh -c 'for PATH in /tmp; do df; done'",
    "sh <<E\nfor PATH in /tmp; do df; done\nE\n",
    "for x in a; do for HOME in /tmp; do journalctl; done; done",
    "for IFS in /; do df $HOME; done",
    "for http_proxy in x; do df; done",
]


@pytest.mark.parametrize("line", LOOP_ASSIGNMENTS)
def test_a_loop_setting_what_the_shell_reads_is_denied(engine: Any, line: str) -> None:
    decided = decided_as(engine, line, "deny")
    assert any(reason.startswith("a loop sets ") for reason in decided["reasons"]), decided


@pytest.mark.parametrize(
    "line", ['for x in a b; do df "$x"; done', "for host2 in a; do uptime; done; df"]
)
def test_a_loop_over_a_lowercase_name_stays_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


# A shell without -c reads its script from its standard input: the walker read the script
# of any here-document it was given, while bash gives the shell another stdin
SHELL_STDIN = [
    "sh 3<<E\ndf\nE\n",  # fd 3; stdin is the channel, the client's data
    "sh <<E <<<'touch /tmp/portcullis-p7'\ndf\nE\n",  # the last redirection of fd 0
    "bash <<E 0<<<'touch /tmp/portcullis-p7'\nuptime\nE\n",
    "env sh <<E <<<'touch /tmp/portcullis-p7'\ndf\nE\n",
    "sh <<E 0</dev/null\ndf\nE\n",
    "sh <<E <&4 4<<<'touch /tmp/portcullis-p7'\ndf\nE\n",
]


@pytest.mark.parametrize("line", SHELL_STDIN)
def test_a_shell_reading_other_than_its_here_document_is_denied(engine: Any, line: str) -> None:
    decided_as(engine, line, "deny")
    assert [p["argv"][0] for p in reading(line)["parts"]] in (["sh"], ["bash"]), reading(line)


@pytest.mark.parametrize("line", ["sh <<E\ndf\nE\n", "sh 0<<E >/dev/null\ndf\nE\n"])
def test_a_shell_reading_its_here_document_stays_read(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


# A shell's own assignments and redirections: every command of its script has them
AROUND_A_SHELL = [
    "sh -c df >/tmp/portcullis-p7",
    "sh -c 'df x' 2>>/etc/cron.d/portcullis-p7",
    "LD_PRELOAD=/tmp/x.so sh -c df",
    "PATH=/tmp bash -c df",
    "env PATH=/tmp sh -c df",
    "sh <<E >/tmp/portcullis-p7\ndf\nE\n",
    "PATH=/tmp sh <<E\ndf\nE\n",
    "sh -c 'sh -c df' </etc/shadow",
]


@pytest.mark.parametrize("line", AROUND_A_SHELL)
def test_what_a_shell_sets_or_opens_is_judged_on_its_script(engine: Any, line: str) -> None:
    decided_as(engine, line, "deny")
    part = reading(line)["parts"][0]
    assert part["assignments"] or part["redirects"], part


# A login shell runs its startup files (/etc/profile, /etc/profile.d/*, ~/.profile) first
@pytest.mark.parametrize(
    "line", ["bash -lc df", "sh -l -c df", "bash --login -c df", "bash -lec df", "sh -cl df"]
)
def test_a_login_shell_is_not_read(engine: Any, line: str) -> None:
    assert "not understood" in reading(line).get("malformed", ""), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


stack = stack_fixture()


@pytest.mark.integration
async def test_what_bash_reads_otherwise_never_reaches_the_upstream(stack: Stack) -> None:
    """Before: allowed; the upstream's bash took `{PATH}` for a redirection's variable
    (df was not given it) and ran a command named `\\`."""
    async with await stack.connect(READER) as conn:
        for line in ["df {PATH}>/dev/null; df", "df;\\", "uptime &\\"]:
            result = await conn.run(line)
            assert result.exit_status == 1, (line, result.stdout, result.stderr)
            assert result.stderr.startswith("portcullis: denied: "), (line, result.stderr)
    assert stack.sshd.sessions_started() == 0


@pytest.mark.integration
async def test_a_program_planted_where_a_loop_points_path_never_runs(stack: Stack) -> None:
    """Before: allowed, the upstream's bash ran the planted df (here a marker; anyone who
    may write /tmp, or a masked dba's SFTP upload there, chooses what) as its account."""
    planted, marker = stack.tmp / "bin", stack.tmp / "ran"
    planted.mkdir()
    (planted / "df").write_text(f"#!/bin/sh\n: > {marker}\n")
    (planted / "df").chmod(0o755)
    async with await stack.connect(READER) as conn:
        result = await conn.run(f"for PATH in {planted}; do df; done")
    assert result.exit_status == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("portcullis: denied: "), result.stderr
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 0


@pytest.mark.integration
async def test_a_shells_script_from_elsewhere_never_runs(stack: Stack) -> None:
    """Before: allowed (masked, the parts a df), and the upstream's sh ran `touch` read from
    the here-string, or from the client's stdin when the here-document was on fd 3."""
    marker = stack.tmp / "ran"
    async with await stack.connect(READER) as conn:
        for line, data in [
            (f"sh <<E <<<'touch {marker}'\ndf\nE\n", ""),
            ("sh 3<<E\ndf\nE\n", f"touch {marker}\n"),
        ]:
            result = await conn.run(line, input=data)
            assert result.exit_status == 1, (line, result.stdout, result.stderr)
            assert result.stderr.startswith("portcullis: denied: "), (line, result.stderr)
            assert not marker.exists(), line
    assert stack.sshd.sessions_started() == 0


@pytest.mark.integration
async def test_a_shells_redirection_or_assignment_never_reaches_the_upstream(
    stack: Stack,
) -> None:
    """Before: allowed (masked, the part a df without them): the upstream's root wrote the
    file named (df's error), and ran the df planted in the directory PATH named."""
    written, planted, marker = stack.tmp / "written", stack.tmp / "bin", stack.tmp / "ran"
    planted.mkdir()
    (planted / "df").write_text(f"#!/bin/sh\n: > {marker}\n")
    (planted / "df").chmod(0o755)
    async with await stack.connect(READER) as conn:
        for line in [f"sh -c 'df x' 2>{written}", f"PATH={planted} sh -c df"]:
            result = await conn.run(line)
            assert result.exit_status == 1, (line, result.stdout, result.stderr)
            assert result.stderr.startswith("portcullis: denied: "), (line, result.stderr)
    assert not written.exists() and not marker.exists()
    assert stack.sshd.sessions_started() == 0


# -- the differential run: what bash runs against what the parts say ------------------------

stubs = stubs_fixture()


def differences(line: str, runs: list[list[str]], seen: list[str]) -> list[str]:
    """What bash ran that no part says: a stub no part names, a stub's argv other than its
    part's (a part whose words are all known before it runs), a command the trap saw whose
    first word is no part's command."""
    parts = reading(line)["parts"]
    names = {p["argv"][0] for p in parts if p["argv"]}
    names |= {via.split()[0] for p in parts for via in p["via"]}  # sh -c, env, xargs
    found = []
    for argv in runs:
        mine = [p for p in parts if p["argv"] and p["argv"][0] == argv[0]]
        if not any(p["dynamic"] or p["more_args"] or p["argv"] == argv for p in mine):
            found.append(f"ran {argv}, parts {[p['argv'] for p in parts]}")
    for command in seen:
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        if words and words[0] not in names | RESERVED and not words[0].startswith(("(", "[")):
            found.append(f"trapped {command!r}, parts {[p['argv'] for p in parts]}")
    return found


# lines the policy lets a reader run, of the shapes the probes met; each is run by bash
DIFFERENTIAL_LINES = [
    "df; uptime && free || df -h | uptime",
    "df $(uptime) `free`",
    'df "$(uptime)" x"y"z \'a b\'',
    "{ df; uptime; } >/dev/null 2>&1",
    "(df); (uptime)",
    "if df; then uptime; fi",
    'for x in a b; do df "$x"; done',
    "df ;\\\n",
    "df {fd} >/dev/null",
    "df '{fd}'>/dev/null",
    "df x\\\n#y",
    "sh -c 'df; uptime'",
    'bash -c "df -h"',
    "env df -h",
    "xargs -n1 df </dev/null",
    "df <<E\nx\nE\nuptime",
    "! df",
    "df |& uptime",
    "df \\\ny",
]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("line", DIFFERENTIAL_LINES)
def test_bash_runs_what_the_parts_say(stubs: Path, tmp_path: Path, engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))
    runs, seen = ran_by_bash(stubs, line, tmp_path)
    assert runs, (line, seen)
    assert differences(line, runs, seen) == [], line


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_what_a_login_shell_runs_first_is_no_part(stubs: Path, tmp_path: Path) -> None:
    """Why: a login shell runs its startup files (here ~/.profile, which /etc/profile may
    follow; Debian's runs `id -u`) before the script, commands no part of `bash -lc df`
    names."""
    (tmp_path / ".profile").write_text(': > "$HOME/profile-ran"\n')
    runs, _ = ran_by_bash(stubs, "bash -lc df", tmp_path)
    assert (tmp_path / "profile-ran").exists(), runs
