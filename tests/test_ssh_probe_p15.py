"""SSH probe, part 15: what a command printed, quoted otherwise by the command it is given to.

df, uptime and free name an operand they refuse, in coreutils' shell quoting: a tab or
another control character in it is written `'$'\\t''`. `df "$(cat /var/log/x)"` of a card
logged with tabs between its groups (a TSV log: `4111<TAB>1111<TAB>1111<TAB>1111`, which
the detectors read as a card) came back as `df: '4111'$'\\t''1111'$'\\t''1111'$'\\t''1111'`,
which they do not: the value printed otherwise, as printf's `%x` did (test_ssh_probe_p10).
It was allowed (masked) to readers. Outside pii-readers a command substitution given to a
command that is no filter now needs approval (ssh.rego ssh_substituted); `$(uptime)` and
`$(free)`, numbers, are not what the mask hides; printf's `%s` prints the value as it is.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import denied_when_asked, stack_fixture
from test_ssh_probe_exec import ALLOWED, verdict
from test_ssh_probe_p7 import BASH
from test_ssh_proxy import Stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)
TABBED = "4111\t1111\t1111\t1111"

QUOTED = [
    'df "$(cat /var/log/syslog)"',
    'df -- "$(journalctl -o cat -n 1)"',
    'uptime "`cat /var/log/syslog`"',
    'free "$(cat /var/log/syslog)"',
    'df "$(uptime)$(cat /var/log/syslog)"',
    "sh -c 'df \"$(journalctl -o cat -n 1)\"'",
]
STILL_ALLOWED = [
    "df $(uptime) `free` <(uptime)",
    'df "$(uptime -p)"',
    "printf '%s\\n' \"$(cat /var/log/syslog)\"",
    'df "$HOME"',
]


@pytest.mark.parametrize("line", QUOTED)
def test_a_substitution_given_to_a_quoting_command_needs_approval(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] == "require_approval", line
    assert verdict(engine, line, ("pii-readers",))["verdict"] in ALLOWED, line


@pytest.mark.parametrize("line", STILL_ALLOWED)
def test_numbers_and_printed_values_stay_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_why_the_detectors_miss_the_quoted_value(tmp_path: Path) -> None:
    """The reason, with the real bash and df: the tabbed card is a card to the detector
    as logged, not once df quoted it."""
    logged = tmp_path / "cards.log"
    logged.write_text(TABBED + "\n")
    masker = Masker([MaskRule(detector="credit_card", strategy="redact")], b"k" * 32)
    assert masker.mask_text(TABBED + "\n")[1]
    assert BASH is not None
    run = subprocess.run([BASH, "-c", f'df "$(cat {logged})"'], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert "'4111'$'\\t''1111'" in run.stderr
    assert not masker.mask_text(run.stderr)[1], run.stderr


stack = stack_fixture()


@pytest.mark.integration
async def test_a_tabbed_card_never_leaves_quoted(stack: Stack) -> None:
    """Through the proxy and sshd: the line waits for approval, nothing reaches sshd."""
    logged = Path("/var/log") / f"portcullis-p15-{os.getpid()}-{stack.tmp.name}.log"
    logged.write_text(TABBED + "\n")
    try:
        async with await stack.connect(READER) as conn:
            process = await conn.create_process(f'df "$(cat {logged})"')
            await denied_when_asked(stack, process)
            refused = await process.wait()
    finally:
        logged.unlink()
    assert refused.exit_status == 1
    assert "1111" not in str(refused.stdout) + str(refused.stderr)
    assert stack.sshd.sessions_started() == 0
