"""SSH probe, part 6: what the upstream's bash makes of an exec line that the policy
judged otherwise, found by the differential fuzzer of part 5 (each allowed line run by
bash with stub commands and a DEBUG trap) extended to the words the stubs received.

A computed word outside quotes is split and globbed by bash once its value is known. The
policy asked for approval of a glob character in a word's text only (part 5), so a value
that holds one was globbed unseen: `$BASH_EXECUTION_STRING` is the line itself, a comment
included; a `for` loop's variable holds its list's names; `$(journalctl ...)` whatever
was logged; `sh -c 'df "$@"' x /root/.*` the names the login's bash globbed into the
script's arguments. Each lists a directory the reader cannot list (df --output=file
prints the names it was given).

A dba outside pii-readers (no shell: its output could not be masked) wrote by SFTP anywhere
but the approval paths: root's crontab (/var/spool/cron/crontabs/root), a unit under
/run/systemd, /proc/sys/kernel/core_pattern — a program the server runs, `base64` over what
the mask hides, read back with `cat /var/log/x`: the shell it was refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_harness import run_client
from ssh_probe_stack import READER, decided_as, stack_fixture
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_proxy import Stack, ssh_policy, ssh_stack
from test_ssh_sftp import deny_every_approval, openssh_sftp, sftp_decisions

engine = pytest.fixture(scope="module")(shipped_engine)

GLOBBED_VALUES = [
    "df --output=file $BASH_EXECUTION_STRING # /root/.*",
    "df --output=file ${BASH_EXECUTION_STRING} # /root/.*",
    "df --output=file $BASH_EXECUTION_STRING <<E\n/root/.*\nE\n",
    "df --output=file $(journalctl -o cat -n 1)",
    "df --output=file $(cat /var/log/x)",
    "df --output=file `cat /var/log/x`",
    "df --output=file x$(cat /var/log/x)",
    'df --output=file "x"$(cat /var/log/x)',
    "uptime; df --output=file $_",
]


@pytest.mark.parametrize("line", GLOBBED_VALUES)
def test_a_computed_word_bash_globs_needs_approval(engine: Any, line: str) -> None:
    decided = decided_as(engine, line, "require_approval")
    assert any("names of files" in reason for reason in decided["reasons"]), decided


@pytest.mark.parametrize(
    "line",
    [
        "uptime $HOME",
        "uptime ${HOME} $USER $#",
        'df "$BASH_EXECUTION_STRING"',
        # (df "$(cat /var/log/x)" needs approval outside pii-readers: test_ssh_probe_p15)
        "printf '%s\\n' \"$(cat /var/log/x)\"",
        'df "x$_"',
        "df ~root",
        "df $(uptime)",
        "df `free`",
        "df $(uptime | free)",
    ],
)
def test_computed_words_that_cannot_glob_stay_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


def test_the_parts_say_which_words_bash_globs() -> None:
    part = reading('df "$X" $X x$(uptime) $(uptime -p) ~ <(free) \'$X\' "$(id)"$Y')["parts"][-1]
    assert part["dynamic"] == [1, 2, 3, 4, 5, 6, 8], part
    assert part["globbed"] == [2, 4, 8], part


# The words after `sh -c SCRIPT` are its $0, $1, ...: the login's bash globs them before sh
# runs, and a script quoting them ("$@": not globbed there) passes the names on; the parts
# held the script's commands only, never those words.
SCRIPT_ARGUMENTS = [
    "sh -c 'df --output=file \"$@\"' x /root/.*",
    "bash -c 'df --output=file \"$0\"' /root/.b*",
    "sh -ec 'df --output=file \"$1\"' x /ro?t/.ssh/*",
    "sh -c 'df --output=file \"$1\"' x $BASH_EXECUTION_STRING",
    "sh -c 'df \"$1\"' x {a,b}",
    # unquoted in the script, quoted in the line: not read either (more is refused)
    "sh -c 'df --output=file $0' '/root/.*'",
    "sh -c 'df --output=file $@' x '/root/.*'",
    "bash -c 'df --output=file $1' x '/root/.*'",
]


@pytest.mark.parametrize("line", SCRIPT_ARGUMENTS)
def test_a_script_argument_bash_expands_is_not_read(engine: Any, line: str) -> None:
    assert "its script's $0, $1" in reading(line).get("malformed", ""), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


# A `for` loop's list is globbed too, and its variable holds each name matched, quoted or
# not where it is used: the list's words were never judged.
LOOP_LISTS = [
    'for x in /root/.*; do df --output=file "$x"; done',
    "for x in /root/.*; do df --output=file $x; done",
    'for x in $BASH_EXECUTION_STRING; do df --output=file "$x"; done # /root/.*',
    'for x in $(cat /var/log/x); do df --output=file "$x"; done',
    "for HOME in '/root/.*'; do df --output=file $HOME; done",
    "for HOME in '/root/.*'; do sh -c 'df --output=file $HOME'; done",
]


@pytest.mark.parametrize("line", LOOP_LISTS)
def test_a_loop_list_bash_expands_is_not_read(engine: Any, line: str) -> None:
    assert "a loop's list" in reading(line).get("malformed", ""), reading(line)
    assert verdict(engine, line)["verdict"] == "deny"


def test_a_loop_over_plain_words_stays_allowed(engine: Any) -> None:
    line = 'for x in a $HOME $(uptime); do df "$x"; done'
    assert verdict(engine, line)["verdict"] in ALLOWED, reading(line)
    # its variable, unquoted, may be globbed: asks
    line = "for x in a; do df $x; done"
    assert verdict(engine, line)["verdict"] == "require_approval", reading(line)
    # a loop setting HOME (a variable the shell reads) is denied (test_ssh_probe_p7)
    line = "for HOME in a; do df $HOME; done"
    assert verdict(engine, line)["verdict"] == "deny", reading(line)


@pytest.mark.parametrize("line", ["sh -c 'df \"$1\"' x y", "sh -c df x", "bash -c 'uptime'"])
def test_a_script_with_plain_arguments_stays_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


stack = stack_fixture()


@pytest.mark.integration
async def test_a_listing_through_the_lines_own_text_waits_for_a_person(stack: Stack) -> None:
    """Before: allowed (masked), the upstream's df printed each name the comment's glob
    matched in a directory of root's."""
    hidden = stack.tmp / "private"
    hidden.mkdir()
    (hidden / ".name-nobody-said").write_text("")
    line = f"df --output=file $BASH_EXECUTION_STRING # {hidden}/.n*"
    async with await stack.connect(READER) as conn:
        process = await conn.create_process(line)
        said = await process.stderr.readuntil("--reason '...'")
        assert "names of files" in said, said
        process.close()
        hidden_names = f"sh -c 'df --output=file \"$@\"' x {hidden}/.n*"
        result = await conn.run(hidden_names)
        assert result.exit_status == 1, (result.stdout, result.stderr)
        assert result.stderr.startswith("portcullis: denied: "), result.stderr
        assert "name-nobody-said" not in result.stdout
        looped = f'for x in {hidden}/.n*; do df --output=file "$x"; done'
        result = await conn.run(looped)
        assert result.exit_status == 1, (result.stdout, result.stderr)
        assert result.stderr.startswith("portcullis: denied: "), result.stderr
    assert stack.sshd.sessions_started() == 0


MASKED_DBA = ("dba",)


@pytest.mark.integration
async def test_a_masked_dbas_write_outside_the_write_paths_waits_for_a_person(
    tmp_path: Path,
) -> None:
    """Before: allowed, the file landed (here a stand-in for root's crontab, outside the
    policy's write_paths; /var/spool/cron/crontabs/root itself is not an approval path)."""
    drop, cron = tmp_path / "drop", tmp_path / "crontabs"
    drop.mkdir()
    cron.mkdir()
    policies = ssh_policy(tmp_path, sftp={"approval_paths": ["/etc"], "write_paths": [str(drop)]})
    local = tmp_path / "job"
    local.write_text("* * * * * root base64 /root/.secret > /var/log/x\n")
    async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
        argv, env = openssh_sftp(stack, tmp_path, MASKED_DBA)
        script = f"put {local} {drop / 'fine'}\nput {local} {cron / 'root'}\n"
        client = asyncio.ensure_future(run_client(argv, env, script.encode()))
        denied = await deny_every_approval(stack, 1, client)
        code, _, err = await client
        decisions = await sftp_decisions(stack)
    assert code != 0 and b"approval required" in err, err
    assert len(denied) == 1
    assert (drop / "fine").exists()
    assert not (cron / "root").exists()
    verdicts = {d["attributes"]["path"]: d["verdict"] for d in decisions}
    assert verdicts[str(cron / "root")] == "require_approval", verdicts
    assert verdicts[str(drop / "fine")] == "allow", verdicts


# A word that reads as an assignment: bash expands a `~` after its `=` or a `:` though it
# is an argument (`df a=~` gives df `a=/root`); the parts said `a=~`, known before it runs.
@pytest.mark.parametrize("line", ["df a=~", "df x=y:~root/z", "journalctl _EXE=~root/x"])
def test_a_tilde_in_an_assignment_like_word_is_computed(engine: Any, line: str) -> None:
    assert reading(line)["parts"][0]["dynamic"] == [1], reading(line)


def test_a_journal_match_with_such_a_tilde_needs_approval(engine: Any) -> None:
    assert verdict(engine, "journalctl _EXE=~root/x")["verdict"] == "require_approval"
    assert verdict(engine, "df /var/log/x=~")["verdict"] in ALLOWED  # not an assignment
