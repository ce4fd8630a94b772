"""SSH probe, part 20: xtrace prints a command's words in a quoting the detectors miss.

`set -x` (and `set -o xtrace`, `set -eux`, `sh -x -c`) is allowed to a reader: bash then
prints each command's words on stderr before running it, the values of computed ones
included, in its own quoting — `$'...'` with octal escapes for every byte its locale does
not print, which in the C locale (sshd's for an exec, without PAM's locale) is any byte
past ASCII. p15 held a substitution given to a command whose messages quote it (df names
its operand in coreutils' quoting) for approval outside pii-readers, but printf, a
filter, prints its words as they are: `set -x; printf '%s\\n' "$(cat /var/log/x)"
>/dev/null` of a card logged with en dashes between its groups (a card to the detector
as logged) sent the reader `+ printf '%s\\n' $'4111\\342\\200\\2231111...'`, which no
detector reads. Once the line turns xtrace on, every command's printed value counts as
requoted (ssh.rego ssh_requoted, ssh_xtrace; a shell's -x is in its part's via as `sh -x
-c`): outside pii-readers it needs approval.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ssh_probe_stack import BASH, held_for_readers, stack_fixture, tabbed_card_held
from test_ssh_probe_exec import ALLOWED, engine, reading, verdict  # noqa: F401

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

# a card logged with en dashes between its groups, which the card detector reads
DASHED = "4111\u20131111\u20131111\u20131111"

TRACED = [
    "set -x; printf '%s\\n' \"$(cat {log})\" >/dev/null",
    "set -o xtrace; printf '%s\\n' \"$(cat {log})\" >/dev/null",
    "set -eux; printf '%s\\n' \"$(cat {log})\" 2>/dev/null >/dev/null",
    "set -o pipefail -x; printf '%s\\n' \"`cat {log}`\" >/dev/null",
    "printf '%s\\n' \"$(cat {log})\" >/dev/null; set -x; printf '%s\\n' \"$_\" >/dev/null",
    'sh -xc \'printf "%s\\n" "$(cat {log})" >/dev/null\'',
    'bash -e -x -c \'printf "%s\\n" "$(cat {log})" >/dev/null\'',
    'set -x; for v in "$(cat {log})"; do printf \'%s\\n\' "$v" >/dev/null; done',
]


def _masker() -> Masker:
    return Masker([MaskRule(detector="credit_card", strategy="redact")], b"k" * 32)


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("line", TRACED[:3])
def test_bash_traces_the_card_past_the_detector(tmp_path: Path, line: str) -> None:
    logged = tmp_path / "x.log"
    logged.write_text(DASHED + "\n")
    assert _masker().mask_text(logged.read_text())[1]  # as logged: a card to the detector
    env = {"PATH": os.defpath, "LANG": "C"}
    ran = subprocess.run([BASH, "-c", line.format(log=logged)], env=env, capture_output=True,
                         text=True, timeout=10, check=False)  # fmt: skip
    assert "$'4111\\342\\200\\2231111" in ran.stderr, ran.stderr
    assert not _masker().mask_text(ran.stderr)[1], ran.stderr


@pytest.mark.parametrize("line", TRACED)
def test_a_traced_printed_value_needs_approval_outside_pii_readers(
    engine: Any,  # noqa: F811 (test_ssh_probe_exec's fixture)
    line: str,
) -> None:
    held_for_readers(engine, line.format(log="/var/log/syslog"))


@pytest.mark.parametrize(
    "line",
    [
        "printf '%s\\n' \"$(cat /var/log/syslog)\"",  # no trace: printed as it is, masked
        "set -x; df -h",
        "set -euxo pipefail; journalctl -n 5 | tail -n 1",
        'set -x; df "$(uptime)"',
        "set -e; printf '%s\\n' \"$(cat /var/log/syslog)\"",
        'sh -c \'printf "%s\\n" "$(cat /var/log/syslog)"\'',
    ],
)
def test_untraced_or_quiet_lines_stay_allowed(
    engine: Any,  # noqa: F811
    line: str,
) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


def test_a_shells_trace_is_in_its_parts_via() -> None:
    parts = reading("sh -exc 'df' && bash -c 'df'")["parts"]
    assert [p["via"] for p in parts] == [["sh -x -c"], ["bash -c"]]


stack = stack_fixture()


async def test_the_traced_card_never_reaches_the_reader(stack: Any) -> None:
    await tabbed_card_held(stack, "p20", TRACED[0], card=DASHED)
