"""SSH usability: ordinary lines an agent writes run through the proxy as they run locally.

The usability corpus (tests/test_usability_corpus.py) found lines denied that mean no harm:
`systemctl --no-pager status ssh` (the options before the verb; `status ssh --no-pager` ran),
`df -h || true`, `uptime && echo ok`, `journalctl -n 20 | cat` (true, echo and a bare cat in
no list). ssh.rego now reads systemctl's options before its verb as getopt_long does, and
allows filters by the shape of their argv (ssh_default_filters: true, false, `:`, echo
without options, printf with a format ending in a newline, cat, head, tail, wc, grep, sort
and uniq over their standard input only, `set` with the options e, u, x, -o pipefail), and a
C locale set before a command (`LANG=C df -h`); grep, sort and uniq need approval outside
pii-readers (which lines match, their order, tell what the mask hides). The attacks on
these shapes are tests/test_ssh_probe_p9.py.

Each line runs through the proxy to the test's sshd (this machine, this account) and with
the local bash; exit statuses agree, and outputs where they are deterministic.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_proxy import Stack, ssh_stack

pytestmark = pytest.mark.integration

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)
PII = ("pii-readers",)

# (line, stdout compared with the local run's): allowed to readers (their output masked)
EVERYONE = [
    ("systemctl --no-pager status ssh", True),
    ("systemctl -l --no-pager status ssh -n 5", True),
    ("systemctl -n 5 --full status ssh", True),
    ("df -h || true", False),
    ("uptime && echo ok", False),
    ("journalctl -n 20 | cat", True),
    ("journalctl -n 20 --no-pager | head -n 5", True),
    ("journalctl -n 20 | tail -3", True),
    ("journalctl -n 20 | wc -l", True),
    ("df -h / 2>&1 | tail -n 1", False),
    ("free -m 2>/dev/null | head -1", True),
    ("df -h; echo $?", False),
    ('df -h /; echo "exit=$?"', False),
    ("false || echo failed", True),
    ("printf '%s\\n' done", True),
    ("true", True),
    (": && uptime -p >/dev/null", True),
    ("set -o pipefail; journalctl -n 20 | head -n 5", True),
    ("set -euo pipefail; df -h /", False),
    ("LANG=C df -h /", False),
    ("LC_ALL=C.UTF-8 free -m | head -n 1", True),
]

# for pii-readers (whose output is not masked); outside them they need approval
PII_ONLY = [
    ("journalctl -n 20 | grep -i error || true", True),
    ("df -h | grep -v tmpfs", False),
    ("df -h | grep -c /", True),
    ("free -m | sort -r | uniq -c", False),
    ("df --output=source / | sort -u", True),
]


def local(line: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.parametrize(("line", "_"), EVERYONE)
def test_an_ordinary_line_is_allowed_to_readers(engine: Any, line: str, _: bool) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


@pytest.mark.parametrize(("line", "_"), PII_ONLY)
def test_a_searching_filter_is_allowed_to_pii_readers_only(engine: Any, line: str, _: bool) -> None:
    assert verdict(engine, line, PII)["verdict"] == "allow", (line, reading(line))
    assert verdict(engine, line, READER)["verdict"] == "require_approval", line


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with ssh_stack(tmp_path) as s:
        yield s


async def runs_as_locally(conn: Any, line: str, same_output: bool) -> None:
    through = await conn.run(line)
    here = local(line)
    assert "portcullis" not in str(through.stderr), (line, through.stderr)
    assert through.exit_status == here.returncode, (line, through.stderr, here.stderr)
    if same_output:
        assert through.stdout == here.stdout, line
    else:  # the first line's first two words, digits aside (a clock, a disk's use)
        assert head(str(through.stdout)) == head(here.stdout), line


def head(out: str) -> list[str]:
    return re.sub(r"[0-9]", "0", (out.splitlines() or [""])[0]).split()[:2]


async def test_ordinary_lines_run_for_a_reader_as_they_run_locally(stack: Stack) -> None:
    """Before: each denied (`systemctl --no-pager status ssh` not an allowed command; `true`,
    `echo ok`, `cat`, `head -n 5`, ... not allowed commands)."""
    async with await stack.connect(READER) as conn:
        for line, same in EVERYONE:
            await runs_as_locally(conn, line, same)
    assert stack.sshd.sessions_started() == len(EVERYONE)


async def test_searching_filters_run_for_a_pii_reader_as_they_run_locally(stack: Stack) -> None:
    """Before: each denied (grep, sort, uniq in no list)."""
    async with await stack.connect(PII) as conn:
        for line, same in PII_ONLY:
            await runs_as_locally(conn, line, same)
    assert stack.sshd.sessions_started() == len(PII_ONLY)
