"""`portcullis pdp` under cProfile, switched on and off by signals (bench/ssh/callgrind_pdp).

Owns the PDP's side of a profiled phase: SIGUSR1 starts profiling the thread of the PDP's
event loop (in CPU time: on a shared machine a wait for a core is not the function's),
SIGUSR2 stops it and writes `<prefix>.<n>.prof`. Its evaluation workers, gRPC's C threads
and the store's thread are outside the profile (callgrind_pdp.py counts the C threads).
With PORTCULLIS_BENCH_PRELUDE naming a Python file, that file runs first, in this
process, before the PDP's modules load (bench/ssh/decide_wait's stage timers). Never for
production.

    python bench/ssh/profiled_pdp.py PREFIX -c portcullis.yaml pdp
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _shared() -> object:
    """bench/profiled.py, loaded by its path: bench/ on sys.path would let bench/pdp stand
    for the pdp package."""
    spec = importlib.util.spec_from_file_location(
        "profiled", Path(__file__).resolve().parents[1] / "profiled.py"
    )
    assert spec is not None and spec.loader is not None
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)
    return shared


if __name__ == "__main__":
    _shared().run("pdp.cli", sys.argv[1], sys.argv[2:])  # type: ignore[attr-defined]
