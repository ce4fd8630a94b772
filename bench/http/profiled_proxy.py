"""`python -m proxies ARGS...` under cProfile, switched on and off by signals.

Owns the benchmark's view into the HTTP proxy's own time: SIGUSR1 starts profiling (in
CPU time) the proxy's event-loop thread, SIGUSR2 stops it and writes the profile to the next
`<prefix>.<n>.prof`, so bench_wrk.py profiles exactly one phase (a cache-off run, a
cache-on run) and not start-up. The threads gRPC runs in C are outside any profile; their
CPU shows in bench/cpu_meter.py's figures instead.

With PORTCULLIS_BENCH_PRELUDE naming a Python file, that file runs first, in this process,
before the proxy's modules load: a change proposed to the proxy (a cache, a faster path)
can be measured as a patch of its modules without editing them. Never for production.

    python bench/http/profiled_proxy.py PREFIX http -c portcullis.yaml
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
    _shared().run("proxies", sys.argv[1], sys.argv[2:])  # type: ignore[attr-defined]
