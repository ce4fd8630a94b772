"""SSH probe, part 10: output the upstream read, printed by an allowed filter in a form the
detectors do not read.

A reader's exec output is masked by the value detectors (cards, e-mails, SSNs, tokens) as
it passes the proxy. printf was allowed by the shape of its format (ssh.rego
ssh_default_filters) whatever its arguments, and an argument may be computed from what the
upstream read: `printf '%x\\n' "$(cat /var/log/x)"` printed a card logged there in hex
(4111111111111111 is e9b08a568f1c7), `%o` in octal, `%d` of `'X` a character's code,
`%c` or `%.8s` a value's first characters: nothing a detector reads, and any reader turns
it back. With a computed argument printf's conversions must now print it whole (%s,
padded at most); literal arguments, the client's own words, keep every conversion."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import stack_fixture
from test_ssh_probe_exec import ALLOWED, verdict
from test_ssh_probe_p7 import BASH
from test_ssh_proxy import Stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)
CARD = "4111111111111111"

# printf over a value read upstream, through a conversion that prints it otherwise
TRANSFORMED = [
    "printf '%x\\n' \"$(cat /var/log/cards.log)\"",
    "printf '%X\\n' \"$(cat /var/log/cards.log)\"",
    "printf '%o\\n' \"$(journalctl -o cat -n 1)\"",
    "printf '%d\\n' \"'$(cat /var/log/cards.log)\"",
    "printf '%c\\n' \"$(cat /var/log/cards.log)\"",
    "printf '%.8s\\n' \"$(cat /var/log/cards.log)\"",
    "printf '%s %u\\n' a \"$(cat /var/log/cards.log)\"",
    "cat /var/log/cards.log >/dev/null; printf '%x\\n' \"$_\"",
    'sh -c \'printf "%x\\n" "$(cat /var/log/cards.log)"\'',
]

# printf printing what it is given whole, or transforming the client's own words
STILL_ALLOWED = [
    "printf '%s\\n' \"$(cat /var/log/cards.log)\"",
    "printf '%-12s|%5s %%\\n' a \"$(cat /var/log/cards.log)\"",
    "printf '%x %o %c %.2s\\n' 10 8 ab abc",
    "printf 'x %d\\n' 3",
]


@pytest.mark.parametrize("line", TRANSFORMED)
def test_a_computed_argument_printed_otherwise_is_denied(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] == "deny", line


@pytest.mark.parametrize("line", STILL_ALLOWED)
def test_printf_printing_its_arguments_whole_stays_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_why_the_detectors_miss_a_value_printf_converted(tmp_path: Path) -> None:
    """The reason, with the real bash and the proxy's detectors: the hex of a card is no
    card to them, its %s is."""
    logged = tmp_path / "cards.log"
    logged.write_text(CARD + "\n")
    masker = Masker([MaskRule(detector="credit_card", strategy="redact")], b"k" * 32)

    def printed(conversion: str) -> str:
        assert BASH is not None
        run = subprocess.run([BASH, "-c", f"printf '{conversion}\\n' \"$(cat {logged})\""],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return run.stdout

    assert int(printed("%x"), 16) == int(CARD)
    assert masker.mask_text(printed("%x"))[0] == printed("%x")  # passes the detectors as is
    assert CARD not in masker.mask_text(printed("%s"))[0]


stack = stack_fixture()


@pytest.mark.integration
async def test_a_card_never_leaves_in_hex(stack: Stack) -> None:
    """Through the proxy and sshd: the hex line is denied before sshd sees it; the same
    value printed whole comes back masked."""
    logged = Path("/var/log") / f"portcullis-p10-{os.getpid()}-{stack.tmp.name}.log"
    logged.write_text(CARD + "\n")
    try:
        async with await stack.connect(READER) as conn:
            hexed = await conn.run(f"printf '%x\\n' \"$(cat {logged})\"")
            whole = await conn.run(f"printf '%s\\n' \"$(cat {logged})\"")
    finally:
        logged.unlink()
    assert hexed.exit_status == 1 and hexed.stderr.startswith("portcullis: denied: ")
    assert format(int(CARD), "x") not in str(hexed.stdout)
    assert whole.exit_status == 0, whole.stderr
    assert CARD not in whole.stdout and whole.stdout.strip()
    assert stack.sshd.sessions_started() == 1
