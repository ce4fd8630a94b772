"""A Python module run as `__main__` under cProfile, switched on and off by signals.

Owns what bench/http/profiled_proxy.py (the proxies) and bench/ssh/profiled_pdp.py (the
PDP) share: SIGUSR1 starts profiling, in CPU time, the thread that runs the module (its
event loop), SIGUSR2 stops it and writes the next `<prefix>.<n>.prof`, so a benchmark
profiles exactly one phase and not start-up. Threads gRPC runs in C are outside any
profile (bench/cpu_meter.py and callgrind count them). With PORTCULLIS_BENCH_PRELUDE naming
a Python file, that file runs first, in this process, before the module's own imports: a
change proposed to it, or stage timers, measured as a patch without editing the tree.
Never for production.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
import time
from types import FrameType


class SignalProfiler:
    """Profiles between SIGUSR1 and SIGUSR2, one numbered file per phase."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.profile: cProfile.Profile | None = None
        self.written = 0

    def start(self, _signum: int, _frame: FrameType | None) -> None:
        if self.profile is None:
            # CPU time of this thread, not wall time: on a shared machine a process is
            # often preempted inside a send() that woke its peer, and wall time would
            # charge the wait for a core to whatever function was running
            self.profile = cProfile.Profile(time.thread_time)
            self.profile.enable()

    def stop(self, _signum: int, _frame: FrameType | None) -> None:
        if self.profile is not None:
            self.profile.disable()
            self.profile.dump_stats(f"{self.prefix}.{self.written}.prof")
            self.written += 1
            self.profile = None


def run(module: str, prefix: str, args: list[str]) -> None:
    """Run `python -m module args...` in this process, profiled on the signals."""
    prelude = os.environ.get("PORTCULLIS_BENCH_PRELUDE")
    if prelude:
        runpy.run_path(prelude, run_name="prelude")
    profiler = SignalProfiler(prefix)
    signal.signal(signal.SIGUSR1, profiler.start)
    signal.signal(signal.SIGUSR2, profiler.stop)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
