"""SSH probe, part 12: a value the upstream read, cut into pieces by xargs, each printed
apart by an allowed command.

A reader's exec output is masked by the value detectors, which read a value whole on one
line. xargs splits its input into words — at blanks, or at any character `-d` names — and
the command it runs prints each word apart: df, uptime and free name every operand they
refuse (`df: 4111: No such file or directory`). `journalctl -o cat | xargs df` gave a card
logged as `4111 1111 1111 1111` back as four lines of four digits, `cat /var/log/x | xargs
-d 5 df` cut 4532015112830366 at each 5 (`4`, `3201`, `112830366`): no detector reads
them, any reader joins them. All were allowed (masked) to readers, as `xargs -n1 df` was
(tests/test_ssh_probe_exec.py held it so). Outside pii-readers a command xargs runs now
needs approval (ssh.rego), unless xargs reads nothing (/dev/null).
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
PII = ("pii-readers",)
CARD = "4532015112830366"

SPLIT = [
    "journalctl -o cat | xargs df",
    "journalctl -o cat | xargs -n1 df",
    "journalctl -o cat | xargs -d 5 df",
    "cat /var/log/syslog | xargs -d - uptime",
    "cat /var/log/syslog | xargs -0 free",
    "cat /var/log/syslog | xargs -L1 df",
    "cat /var/log/syslog | xargs -I{} df {}",
    "cat /var/log/syslog | xargs -n1 env df",
    "cat /var/log/syslog | xargs sh -c 'df \"$@\"' x",
    "journalctl -n 5 | xargs -d 5 -n 1 timeout 5 df --",
    "cat /var/log/syslog | xargs df </dev/stdin",
]

# xargs reading nothing, and the same lines for pii-readers (nothing is masked for them)
STILL_ALLOWED = [
    ("xargs -a /dev/null uptime", READER),
    ("xargs -n1 df </dev/null", READER),
    ("{ xargs df; } </dev/null", READER),
    ("journalctl -o cat | xargs -d 5 df", PII),
    ("cat /var/log/syslog | xargs -n1 df", PII),
]


@pytest.mark.parametrize("line", SPLIT)
def test_words_xargs_cuts_need_approval_outside_pii_readers(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] in ("require_approval", "deny"), line
    assert verdict(engine, line, ("dba",))["verdict"] in ("require_approval", "deny"), line


@pytest.mark.parametrize(("line", "groups"), STILL_ALLOWED)
def test_xargs_reading_nothing_or_unmasked_stays_allowed(
    engine: Any, line: str, groups: tuple[str, ...]
) -> None:
    assert verdict(engine, line, groups)["verdict"] in ALLOWED, line


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_why_the_detectors_miss_the_pieces(tmp_path: Path) -> None:
    """The reason, with the real bash, df and xargs: the card cut at each 5 and spaced
    groups one per line pass the credit_card detector; the line whole does not."""
    masker = Masker([MaskRule(detector="credit_card", strategy="redact")], b"k" * 32)
    assert BASH is not None
    for text, xargs, piece in [
        (f"paid {CARD} ok\n", "xargs -d 5 df", "112830366"),  # 4 5 3201 5 112830366
        ("x 4111 1111 1111 1111 y\n", "xargs df", "1111"),
    ]:
        logged = tmp_path / "cards.log"
        logged.write_text(text)
        assert masker.mask_text(text)[1], text  # whole, the detector finds it
        run = subprocess.run([BASH, "-c", f"cat {logged} | {xargs}"], capture_output=True,
                             text=True, check=False)  # fmt: skip
        masked, found = masker.mask_text(run.stderr)
        assert piece in run.stderr and masked == run.stderr and not found, (xargs, run.stderr)


stack = stack_fixture()


@pytest.mark.integration
async def test_a_card_never_leaves_in_pieces(stack: Stack) -> None:
    """Through the proxy and sshd: the line waits for approval (nothing reaches sshd), and
    denied it ends with the card in no piece; the file read whole comes back masked."""
    logged = Path("/var/log") / f"portcullis-p12-{os.getpid()}-{stack.tmp.name}.log"
    logged.write_text(f"paid {CARD} ok\n")
    try:
        async with await stack.connect(READER) as conn:
            process = await conn.create_process(f"cat {logged} | xargs -d 5 df")
            await denied_when_asked(stack, process)
            cut = await process.wait()
            whole = await conn.run(f"cat {logged}")
    finally:
        logged.unlink()
    assert cut.exit_status == 1
    assert "3201" not in str(cut.stdout) + str(cut.stderr)
    assert whole.exit_status == 0, whole.stderr
    assert CARD not in whole.stdout and "paid" in whole.stdout
    assert stack.sshd.sessions_started() == 1
