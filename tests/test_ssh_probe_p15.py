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

from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import (
    TABBED,
    held_for_readers,
    quoted_past_the_detector,
    stack_fixture,
    tabbed_card_held,
)
from test_ssh_probe_exec import ALLOWED, verdict
from test_ssh_probe_p7 import BASH
from test_ssh_proxy import Stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)

QUOTED = [
    'df "$(cat /var/log/syslog)"',
    'df -- "$(journalctl -o cat -n 1)"',
    'uptime "`cat /var/log/syslog`"',
    'free "$(cat /var/log/syslog)"',
    'df "$(uptime)$(cat /var/log/syslog)"',
    "sh -c 'df \"$(journalctl -o cat -n 1)\"'",
]
STILL_ALLOWED = [
    "df $(uptime) `free`",
    'df "$(uptime -p)"',
    "printf '%s\\n' \"$(cat /var/log/syslog)\"",
    'df "$HOME"',
]


@pytest.mark.parametrize("line", QUOTED)
def test_a_substitution_given_to_a_quoting_command_needs_approval(engine: Any, line: str) -> None:
    held_for_readers(engine, line)


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
    quoted_past_the_detector(f'df "$(cat {logged})"')


stack = stack_fixture()


@pytest.mark.integration
async def test_a_tabbed_card_never_leaves_quoted(stack: Stack) -> None:
    """Through the proxy and sshd: the line waits for approval, nothing reaches sshd."""
    await tabbed_card_held(stack, "p15", 'df "$(cat {log})"')
