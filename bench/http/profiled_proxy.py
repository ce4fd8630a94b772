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

import cProfile
import os
import runpy
import signal
import sys
import time
from types import FrameType

profile: cProfile.Profile | None = None
written = 0
prefix = ""


def start(_signum: int, _frame: FrameType | None) -> None:
    global profile
    if profile is None:
        # CPU time of this thread, not wall time: on a shared machine a process is often
        # preempted inside a send() that woke its peer, and wall time would charge the wait
        # for a core to whatever function was running
        profile = cProfile.Profile(time.thread_time)
        profile.enable()


def stop(_signum: int, _frame: FrameType | None) -> None:
    global profile, written
    if profile is not None:
        profile.disable()
        profile.dump_stats(f"{prefix}.{written}.prof")
        written += 1
        profile = None


if __name__ == "__main__":
    prefix = sys.argv[1]
    prelude = os.environ.get("PORTCULLIS_BENCH_PRELUDE")
    if prelude:
        runpy.run_path(prelude, run_name="prelude")
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["proxies", *sys.argv[2:]]
    runpy.run_module("proxies", run_name="__main__", alter_sys=True)
