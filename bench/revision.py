"""A commit's tree written out beside the checkout, for the A/B benches (bench/*/ab_*.py):
an old proxy run against this checkout's on the same machine, alternately.

`git archive` into a directory: no worktree is registered in the repository and the
checkout itself is not touched, so helpers working in it are not disturbed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_of(commit: str, into: Path) -> Path:
    """The tree of `commit`, written into the new directory `into`."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into
