"""SSH probe, part 16: what a command printed, carried to a quoting command by a variable.

Part 15 made `df "$(cat /var/log/x)"` ask for approval outside pii-readers: df names an
operand it refuses in coreutils' shell quoting, a tabbed card `'4111'$'\\t''1111'...`,
which no detector reads. The same value reached df without a substitution in its word:
through `$_`, the last word of the command before (`printf '%s\\n' "$(cat /var/log/x)";
df "$_"`), and through a `for` loop's variable, its list a substitution (`for x in
"$(cat /var/log/x)"; do df "$x"; done`). Both were allowed (masked) to a reader, and
df's message carried the card past the detectors. Such a word now counts as a
substitution (ssh.rego ssh_printed_value).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import (
    STUB,
    TABBED,
    held_for_readers,
    quoted_past_the_detector,
    stack_fixture,
    stubs_fixture,
    tabbed_card_held,
)
from test_ssh_probe_exec import ALLOWED, verdict
from test_ssh_probe_p7 import BASH
from test_ssh_proxy import Stack

engine = pytest.fixture(scope="module")(shipped_engine)
stack = stack_fixture()

READER = ("readonly",)

CARRIED = [
    'printf \'%s\\n\' "$(cat /var/log/syslog)"; df "$_"',
    'printf \'%s\\n\' "$(cat /var/log/syslog)" >/dev/null; df -- "${_}"',
    'printf \'%s\\n\' "`journalctl -o cat -n 1`"; uptime "$_"',
    'for x in "$(cat /var/log/syslog)"; do df "$x"; done',
    'for x in "$(journalctl -o cat -n 1)"; do free "${x}"; done',
    'sh -c \'for v in "$(cat /var/log/syslog)"; do df "$v"; done\'',
]
STILL_ALLOWED = [
    'for x in a b; do df "$x"; done',
    'printf \'%s\\n\' "$(uptime)"; df "$_"',
    "printf '%s\\n' \"$(cat /var/log/syslog)\"",
    'for x in "$(cat /var/log/syslog)"; do printf \'%s\\n\' "$x"; done',
]


@pytest.mark.parametrize("line", CARRIED)
def test_a_printed_value_carried_by_a_variable_needs_approval(engine: Any, line: str) -> None:
    held_for_readers(engine, line)


@pytest.mark.parametrize("line", STILL_ALLOWED)
def test_literal_loops_and_quiet_values_stay_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


CARRIED_BY_BASH = [
    'printf \'%s\\n\' "$(cat {log})" >/dev/null; df -- "$_"',
    'for x in "$(cat {log})"; do df "$x"; done',
]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("line", CARRIED_BY_BASH)
def test_why_the_detectors_miss_the_carried_value(tmp_path: Path, line: str) -> None:
    """The reason, with the real bash and df: `$_` and the loop's variable hold the
    tabbed card, which df names quoted, past the detector."""
    logged = tmp_path / "cards.log"
    logged.write_text(TABBED + "\n")
    quoted_past_the_detector(line.format(log=logged))


# The class, with stubs: `cat` and `journalctl` print a tabbed marker, every other program
# logs its argv. No line a reader may run without approval hands df, uptime or free (which
# quote what they refuse) a word holding the marker, whatever carries it there.
SOURCE = "printf 'TAINT\\tX\\n'\n"
SOURCES = ["cat /var/log/syslog", "journalctl -o cat -n 1", "cat"]
QUOTING = ["df", "df --", "uptime", "free"]
CARRIERS = [
    'printf \'%s\\n\' "$({src})"; {sink} "$_"',
    'for x in "$({src})"; do {sink} "$x"; done',
    'for x in a "`{src}`"; do :; done; {sink} "$_"',
    'for x in "$({src})"; do :; done; {sink} "${{x}}"',
    'for x in "$({src})"; do for y in "$x"; do {sink} "$y"; done; done',
    '{sink} "$({src})"',
    "{src} | xargs -d '\\n' {sink}",
    '{src} | while read -r x; do {sink} "$x"; done',
    'command printf \'%s\\n\' "$({src})"; {sink} "$_"',
    'env printf \'%s\\n\' "$({src})"; nice {sink} "x$_"',
    'timeout 5 printf \'%s\\n\' "$({src})" >/dev/null && {{ {sink} -- "${{_}}"; }}',
    'printf \'%s\\n\' "$({src})"; sh -c \'{sink} "$1"\' x "$_"',
    'printf \'%s\\n\' "$({src})"; ( exec {sink} "$_" )',
]
stubs = stubs_fixture(("df", "uptime", "free", "id", "touch"))


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_no_allowed_line_hands_a_quoting_command_what_a_command_printed(
    engine: Any, stubs: Path, tmp_path: Path
) -> None:
    for name in ("cat", "journalctl"):
        (stubs / "bin" / name).write_text(STUB + SOURCE)
        (stubs / "bin" / name).chmod(0o755)
    handed = []
    for carrier in CARRIERS:
        for src in SOURCES:
            for sink in QUOTING:
                line = carrier.format(src=src, sink=sink)
                if verdict(engine, line, READER)["verdict"] not in ALLOWED:
                    continue
                handed += [line for argv in _ran(stubs, line, tmp_path) if _tainted(argv)]
    assert handed == []


def _tainted(argv: list[str]) -> bool:
    return argv[0] in ("df", "uptime", "free") and any("TAINT\tX" in a for a in argv[1:])


def _ran(stubs: Path, line: str, tmp: Path) -> list[list[str]]:
    """What bash ran of the line (argv each), without ran_by_bash's DEBUG trap: a trap's
    command sets `$_` itself."""
    ran = tmp / "ran"
    ran.write_bytes(b"")
    env = {"PATH": f"{stubs / 'bin'}:{os.defpath}", "HOME": str(tmp), "PORTCULLIS_RAN": str(ran)}
    assert BASH is not None
    subprocess.run([BASH, "-c", line], cwd=tmp, env=env, capture_output=True, timeout=10,
                   stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    return [r.split("\x1f") for r in ran.read_bytes().decode().split("\x1e") if r]


@pytest.mark.integration
async def test_a_carried_card_never_leaves_quoted(stack: Stack) -> None:
    """Through the proxy and sshd: the line waits for approval, nothing reaches sshd."""
    line = 'printf \'%s\\n\' "$(cat {log})" >/dev/null; df -- "$_"'
    await tabbed_card_held(stack, "p16", line)
