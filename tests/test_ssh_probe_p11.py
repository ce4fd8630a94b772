"""SSH probe, part 11: words bashlex reads otherwise than bash, found by a mutation fuzzer
(random edits of allowed lines, each allowed one run by bash with stub programs and a DEBUG
trap: test_ssh_probe_p7's harness, tests/test_ssh_shell_differential.py).

A tilde prefix: bashlex's tilde node takes a word's text up to its first `/` whole, and the
parser never read inside it. `df ~$(id)`, `df ~\\`id\\``, `df ~root$(id)`, `df ~$x`, `df
~<(id)` were a df of a home directory to the policy (a reader's line, allowed and masked);
bash looks up the login name `$(id)`, finds none, leaves the word, and then expands it:
id ran as the upstream's account. (`df ~$BASH_EXECUTION_STRING` also handed df the line's
words, globbed.) A tilde prefix is now read only as `~`, `~+`, `~-` or `~login`.

A backslash inside double quotes: bashlex removes it before any character, the shell only
before `$`, a backquote, `"`, a backslash or a newline. `printf "%s\\n" a b` (an agent's
everyday line) was denied as a word that does not read the same twice; a word with nothing
computed in it is now read as POSIX quote removal reads it (the shell's reading). A
computed word keeps bashlex's text, which lacked the backslash: `echo "$?\\c"` was an echo
of `$?c` to the policy (allowed: no backslash), and dash's echo (`sh -c`) ends at `\\c`
without its newline, the next command's output glued to it (what the echo rule forbids).
Such a computed word is now unreadable (denied).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import BASH, READER, ran_by_bash, stack_fixture, stubs_fixture
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_proxy import Stack

engine = pytest.fixture(scope="module")(shipped_engine)

stubs = stubs_fixture()


# a tilde prefix holding what bash expands after the login lookup fails
TILDE_LINES = [
    "df ~$(id)",
    "df ~`id`",
    "df ~root$(id)",
    "df ~root`id`/x",
    "df ~+`id`",
    "df ~-$(id)",
    "df ~:`id`",
    "df ~$x",
    "df ~${x}",
    "df ~$BASH_EXECUTION_STRING",
    "df ~<(id)",
    "df ~*",
    "for x in ~`id`; do df; done",
    "sh -c 'df ~`id`'",
    "uptime && df ~$(id) | head -n 1",
]

TILDES_READ = ["df ~", "df ~root", "df ~/x", "df ~root/x", "df ~+", "df ~-", "df ~a.b-c"]


@pytest.mark.parametrize("line", TILDE_LINES)
def test_a_tilde_prefix_holding_an_expansion_is_not_read(engine: Any, line: str) -> None:
    assert "tilde prefix" in reading(line).get("malformed", ""), reading(line)
    assert verdict(engine, line, READER)["verdict"] == "deny", line


@pytest.mark.parametrize("line", TILDES_READ)
def test_a_plain_tilde_prefix_is_still_read(engine: Any, line: str) -> None:
    assert "malformed" not in reading(line), reading(line)
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_why_bash_runs_what_a_tilde_prefix_holds(stubs: Path, tmp_path: Path) -> None:
    """The reason, with the real bash: the stub `id` runs for `df ~$(id)` and `df ~\\`id\\``."""
    for line in ["df ~$(id)", "df ~`id`", "df ~root$(id)"]:
        runs, _ = ran_by_bash(stubs, line, tmp_path)
        assert ["id"] in runs, (line, runs)


# a backslash inside double quotes that the shell keeps
DQUOTE_READ = [
    ('printf "%s\\n" a b', ["printf", "%s\\n", "a", "b"]),
    ('printf "%s\\n" \'a\' "b"', ["printf", "%s\\n", "a", "b"]),
    ('printf "%s: %s\\n" a b', ["printf", "%s: %s\\n", "a", "b"]),
    ('printf "x\\$y\\n"', ["printf", "x$y\\n"]),
    ('printf "%s\\n" "a\\\\b"', ["printf", "%s\\n", "a\\b"]),
]


@pytest.mark.parametrize(("line", "argv"), DQUOTE_READ)
def test_a_kept_backslash_in_double_quotes_is_read_as_the_shell_reads_it(
    engine: Any, line: str, argv: list[str]
) -> None:
    parts = reading(line)["parts"]
    assert [p["argv"] for p in parts] == [argv], reading(line)
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize(("line", "argv"), DQUOTE_READ)
def test_bash_passes_the_words_read(
    stubs: Path, tmp_path: Path, line: str, argv: list[str]
) -> None:
    """The real bash's argv for the same words (a stub printf: the words it is given)."""
    stub = stubs / "bin" / "printf"
    if not stub.exists():
        stub.write_text((stubs / "bin" / "df").read_text())
        stub.chmod(0o755)
    runs, _ = ran_by_bash(stubs, "command " + line.replace("printf", str(stub), 1), tmp_path)
    assert [r[1:] for r in runs] == [argv[1:]], runs


# a computed word whose kept backslash bashlex's text lacks
DQUOTE_COMPUTED = [
    "sh -c 'echo \"$?\\c\"; journalctl -o cat -n 1'",
    'echo "$?\\c"',
    'printf "%s\\n" "$?\\c"',
    'df "$HOME\\x"',
]


@pytest.mark.parametrize("line", DQUOTE_COMPUTED)
def test_a_computed_word_with_a_kept_backslash_is_not_read(engine: Any, line: str) -> None:
    assert "backslash inside double quotes" in reading(line).get("malformed", ""), reading(line)
    assert verdict(engine, line, READER)["verdict"] == "deny", line


def test_why_dash_echo_glues_the_next_output() -> None:
    """The reason: dash's echo ends at `\\c` without a newline."""
    run = subprocess.run(["sh", "-c", 'echo "$?\\c"; echo next'], capture_output=True, text=True)
    assert run.stdout == "0next\n"


stack = stack_fixture()


@pytest.mark.integration
async def test_a_tilde_prefixs_command_never_runs(stack: Stack) -> None:
    """Before: allowed (masked, a df), and the upstream's bash ran the touch."""
    marker = stack.tmp / "ran"
    async with await stack.connect(READER) as conn:
        for line in [f"df ~$(touch {marker})", f"df ~root`touch {marker}`"]:
            result = await conn.run(line)
            assert result.exit_status == 1, (line, result.stdout, result.stderr)
            assert result.stderr.startswith("portcullis: denied: "), (line, result.stderr)
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 0


@pytest.mark.integration
async def test_printf_with_a_double_quoted_format_runs(stack: Stack) -> None:
    """Before: denied (`"%s\\n"` did not read the same twice); now it runs as locally."""
    line = 'printf "%s\\n" a b'
    async with await stack.connect(READER) as conn:
        result = await conn.run(line)
    assert result.exit_status == 0, result.stderr
    assert BASH is not None
    local = subprocess.run([BASH, "-c", line], capture_output=True, text=True, check=True)
    assert result.stdout == local.stdout == "a\nb\n"
