"""SSH probe, part 4: output masked in pieces (a line sent in parts: a quiet terminal's
flush, a long line's cut), SFTP names under masks, long command lines in the evidence,
and exec lines whose words bash expands otherwise than the PDP read them."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from policy_harness import shipped_engine
from test_ssh_probe_exec import ALLOWED, reading, verdict

engine = pytest.fixture(scope="module")(shipped_engine)

# A brace expansion whose first element holds a `}` (escaped, quoted, or a nested `{a}`)
# was read as one plain word (the PDP's BRACES stopped at the first `}`): no option, no
# glob, nothing computed, so a reader's journalctl / systemctl took it; bash expands it
# into several words, one of them an option the policy asks approval for (or refuses).
HIDDEN_BRACES = [
    # journalctl --vacuum-time=1s: deletes journal files (a write option: approval)
    ("journalctl --grep {x\\},--vacuum-time=1s}", ["--grep", "x}", "--vacuum-time=1s"]),
    ("journalctl --grep {x'}',--vacuum-time=1s}", ["--grep", "x}", "--vacuum-time=1s"]),
    ("journalctl --grep {{x},--vacuum-time=1s}", ["--grep", "{x}", "--vacuum-time=1s"]),
    # journalctl -D: journal files of another directory (not an allowed option)
    ('journalctl {"}",-D/tmp}', ["}", "-D/tmp"]),
    # systemctl -H host: another machine's units (not an allowed option)
    ("systemctl status {\\},-H,host}", ["status", "}", "-H", "host"]),
]


def bash_words(line: str) -> list[str]:
    """The words bash passes to the line's command (its name replaced by printf)."""
    rest = line.partition(" ")[2]
    script = f"set -- {rest}; printf '%s\\0' \"$@\""
    out = subprocess.run(["/bin/bash", "-c", script], capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize(("line", "words"), HIDDEN_BRACES)
def test_a_brace_expansion_hidden_behind_a_brace_is_read_as_computed(
    engine: Any, line: str, words: list[str]
) -> None:
    assert bash_words(line) == words  # what the upstream's bash runs
    part = reading(line)["parts"][0]
    assert part["dynamic"], part  # before: a plain word, nothing computed
    assert verdict(engine, line)["verdict"] not in ALLOWED  # before: allow / mask
