"""The set-up the SSH probe tests (tests/test_ssh_probe_p*.py) share: a proxy stack per
test (tests/test_ssh_proxy.py), the decision on one command line checked with its reading,
the stub programs the differential runs give bash (each logs its argv; a DEBUG trap logs
every command bash runs), and the checks of the tabbed card probes (held for approval
outside pii-readers, quoted by df past the detector, refused through sshd). Set-up and
shared checks only: what each probe attacks stays in its file. Fixtures come from
factories (`stack = stack_fixture()`), so a test module names each one it uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_proxy import Stack, ssh_stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

READER = ("readonly",)


def stack_fixture() -> Any:
    """A `stack` fixture: the SSH proxy stack (sshd upstream, PDP, proxy), one per test."""

    @pytest.fixture
    async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
        async with ssh_stack(tmp_path) as s:
            yield s

    return stack


async def denied_when_asked(stack: Stack, process: Any) -> None:
    """`process`'s line waits for approval with nothing sent to sshd; the one request it
    opened is then denied by a security approver."""
    said = await process.stderr.readuntil("--reason '...'")
    assert "waiting for request" in said
    assert stack.sshd.sessions_started() == 0
    (request,) = stack.pdp.approvals.requests.values()
    await stack.pdp.approvals.decide(
        request.id, {"subject": "sam@example.com", "groups": ["security"]}, False, "no"
    )


def decided_as(engine: Any, line: str, expected: str) -> dict[str, Any]:
    """The policy's decision on `line`, checked to be `expected` (its reading said if not)."""
    decided = verdict(engine, line)
    assert decided["verdict"] == expected, (line, reading(line), decided)
    return decided


def held_for_readers(engine: Any, line: str) -> None:
    """`line` waits for approval outside pii-readers and is allowed to a pii-reader."""
    assert verdict(engine, line, READER)["verdict"] == "require_approval", line
    assert verdict(engine, line, ("pii-readers",))["verdict"] in ALLOWED, line


BASH = shutil.which("bash")
STUB_NAMES = ("df", "uptime", "free", "journalctl", "cat", "systemctl", "touch", "id")
# each stub logs its name and argv (unit and record separators between them); dash, so the
# DEBUG trap of the bash that runs it is not inherited through BASH_ENV
STUB = """#!/bin/sh
{ printf '%s' "${0##*/}"; for a in "$@"; do printf '\\037%s' "$a"; done; printf '\\036'; } \\
  >> "$PORTCULLIS_RAN"
"""
TRAP = 'set -T\ntrap \'printf "%s\\036" "$BASH_COMMAND" >> "$PORTCULLIS_TRAPPED"\' DEBUG\n'


def stubs_fixture(names: tuple[str, ...] = STUB_NAMES, stub: str = STUB) -> Any:
    """A module's `stubs` fixture: a folder with bin/ (`stub` under each of `names`) and
    trap.sh (the DEBUG trap)."""

    @pytest.fixture(scope="module")
    def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
        where = tmp_path_factory.mktemp("stubs")
        (where / "bin").mkdir()
        for name in names:
            path = where / "bin" / name
            path.write_text(stub)
            path.chmod(0o755)
        (where / "trap.sh").write_text(TRAP)
        return where

    return stubs


def ran_by_bash(stubs: Path, line: str, tmp: Path) -> tuple[list[list[str]], list[str]]:
    """The stubs bash ran for the line (argv each) and the commands its DEBUG trap saw."""
    ran, trapped = tmp / "ran", tmp / "trapped"
    ran.write_bytes(b"")
    trapped.write_bytes(b"")
    env = {"PATH": f"{stubs / 'bin'}:{os.defpath}", "HOME": str(tmp),
           "BASH_ENV": str(stubs / "trap.sh"), "PORTCULLIS_RAN": str(ran),
           "PORTCULLIS_TRAPPED": str(trapped)}  # fmt: skip
    assert BASH is not None
    subprocess.run([BASH, "-c", line], cwd=tmp, env=env, capture_output=True, timeout=10,
                   stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    runs = [r.split("\x1f") for r in ran.read_bytes().decode().split("\x1e") if r]
    seen = [c for c in trapped.read_bytes().decode(errors="replace").split("\x1e") if c]
    return runs, seen


# a card logged with tabs between its groups (a TSV log), which the detectors read as a card
TABBED = "4111\t1111\t1111\t1111"


def quoted_past_the_detector(line: str) -> None:
    """With the real bash and df: `line` makes df name the tabbed card in coreutils' shell
    quoting (`'4111'$'\\t''1111'...`), which the card detector no longer reads."""
    masker = Masker([MaskRule(detector="credit_card", strategy="redact")], b"k" * 32)
    assert BASH is not None
    run = subprocess.run([BASH, "-c", line], capture_output=True, text=True, check=False)
    assert "'4111'$'\\t''1111'" in run.stderr
    assert not masker.mask_text(run.stderr)[1], run.stderr


async def tabbed_card_held(stack: Stack, probe: str, line: str, card: str = TABBED) -> None:
    """Through the proxy and sshd: `line` ({log}: a log under /var/log holding `card`, the
    tabbed one unless named) waits for approval, is denied, and nothing reaches sshd or the
    reader."""
    logged = Path("/var/log") / f"portcullis-{probe}-{os.getpid()}-{stack.tmp.name}.log"
    logged.write_text(card + "\n")
    try:
        async with await stack.connect(READER) as conn:
            process = await conn.create_process(line.format(log=logged))
            await denied_when_asked(stack, process)
            refused = await process.wait()
    finally:
        logged.unlink()
    assert refused.exit_status == 1
    assert "1111" not in str(refused.stdout) + str(refused.stderr)
    assert stack.sshd.sessions_started() == 0
