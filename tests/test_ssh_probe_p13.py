"""SSH probe, part 13: journal entries cut to a width, a value crossing the cut shown as
its first digits.

`journalctl --no-full` ellipsizes each entry to the output's width — 80 columns when it
writes to a pipe, as an exec's output is — keeping 90% of it before the ellipsis: a card
in a logged message that crosses that column comes back as its first digits
(`4532015112830…`), which no detector reads as a card. Each short output mode has a prefix
of its own length (`-o short`, `short-iso`, `short-precise`, `short-monotonic`,
`short-unix`, ...), so a reader moves the cut: 15 of a card's 16 digits in one of them,
and the last one is the Luhn check digit. `--no-full` was among journalctl's allowed
options; it now needs approval (ssh.rego ssh_default_read_options), as any option not
listed does. (`-o cat` is never ellipsized; systemctl status writes full width to a pipe.)
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import denied_when_asked, stack_fixture
from test_ssh_probe_exec import ALLOWED, verdict
from test_ssh_proxy import Stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)
CARD = "4532015112830366"
JOURNAL_REMOTE = Path("/lib/systemd/systemd-journal-remote")
JOURNALCTL = shutil.which("journalctl")
MODES = ["short", "short-iso", "short-precise", "short-monotonic", "short-unix",
         "short-full", "with-unit", "short-delta"]  # fmt: skip

CUT = [
    "journalctl --no-full",
    "journalctl -n 20 --no-full -o short-monotonic",
    "journalctl -u shop --no-full --no-pager",
    "journalctl --no-full | head -n 5",
]
STILL_ALLOWED = ["journalctl -n 20", "journalctl --full -o short-unix", "journalctl -l -o cat"]


@pytest.mark.parametrize("line", CUT)
def test_entries_cut_to_a_width_need_approval(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] == "require_approval", line


@pytest.mark.parametrize("line", STILL_ALLOWED)
def test_entries_in_full_stay_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


@pytest.mark.skipif(
    JOURNALCTL is None or not JOURNAL_REMOTE.exists(),
    reason="journalctl and systemd-journal-remote (Debian systemd-journal-remote) needed",
)
def test_why_a_cut_entry_passes_the_detectors(tmp_path: Path) -> None:
    """The reason, with the real journalctl over a journal file holding one entry: in full
    the card is masked; cut, some output mode shows its first 15 digits unmasked."""
    message = f"order 12345 paid, card number {CARD} at terminal 7, customer 99887766, all ok"
    export = (
        f"__CURSOR=s=1;i=1\n__REALTIME_TIMESTAMP={int(time.time() * 1e6)}\n"
        "__MONOTONIC_TIMESTAMP=1\n_BOOT_ID=0123456789abcdef0123456789abcdef\n"
        f"_HOSTNAME=web-1\nSYSLOG_IDENTIFIER=shop\n_PID=42\nPRIORITY=6\nMESSAGE={message}\n\n"
    )
    journal = tmp_path / "t.journal"
    subprocess.run([str(JOURNAL_REMOTE), "-o", str(journal), "-"], input=export, text=True,
                   capture_output=True, check=True, timeout=30)  # fmt: skip
    masker = Masker([MaskRule(detector="credit_card", strategy="redact")], b"k" * 32)

    def shown(*options: str) -> str:
        assert JOURNALCTL is not None
        run = subprocess.run([JOURNALCTL, f"--file={journal}", *options], capture_output=True,
                             text=True, check=True, timeout=30)  # fmt: skip
        return run.stdout

    full = shown("-o", "short-monotonic")
    assert CARD in full and CARD not in masker.mask_text(full)[0]
    leaked = {}
    for mode in MODES:
        cut = shown("--no-full", "-o", mode)
        _, found = masker.mask_text(cut)
        if not found and "card number " in cut and "…" in cut:
            digits = cut.split("card number ", 1)[1].split("…", 1)[0]
            leaked[mode] = digits
    assert any(len(d) >= 12 and CARD.startswith(d) for d in leaked.values()), leaked


stack = stack_fixture()


@pytest.mark.integration
async def test_a_cut_journal_waits_for_approval(stack: Stack) -> None:
    """Through the proxy: the line waits for approval, nothing reaches sshd; denied, it
    ends with status 1."""
    async with await stack.connect(READER) as conn:
        process = await conn.create_process("journalctl -n 5 --no-full -o short-monotonic")
        await denied_when_asked(stack, process)
        result = await process.wait()
    assert result.exit_status == 1
    assert stack.sshd.sessions_started() == 0
