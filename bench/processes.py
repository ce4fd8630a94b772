"""Stopping what a bench started: its servers and proxies, each its own process.

The newest first (a proxy before the PDP it reports to), each asked with SIGTERM and given
20 s to drain before it is killed, and reaped either way.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


def stop_all(procs: Sequence[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
