"""`portcullis pdp` with its garbage collections counted (bench/pdp/bench_steady.py --gc).

Owns the PDP's side of a gc-counted phase: every collection, by generation, its count,
total and longest duration (wall and the thread's CPU time). SIGUSR1 starts counting
afresh, SIGUSR2 writes what was counted since to OUT (JSON) and goes on. Never for
production.

    python bench/pdp/gc_pdp.py OUT -c portcullis.yaml pdp
"""

from __future__ import annotations

import gc
import json
import runpy
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any


class Collections:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.counts: dict[int, list[float]] = {}
        self._started = (0.0, 0.0)

    def observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
            return
        wall = (time.perf_counter() - self._started[0]) * 1e6
        cpu = (time.thread_time() - self._started[1]) * 1e6
        held = self.counts.setdefault(info["generation"], [0, 0.0, 0.0, 0.0, 0])
        held[0] += 1
        held[1] += cpu
        held[2] = max(held[2], wall)
        held[3] = max(held[3], cpu)
        held[4] += info.get("collected", 0)

    def reset(self, _signum: int, _frame: FrameType | None) -> None:
        self.counts = {}

    def write(self, _signum: int, _frame: FrameType | None) -> None:
        self.out.write_text(
            json.dumps(
                {
                    "threshold": gc.get_threshold(),
                    "generations": {
                        str(g): dict(
                            zip(
                                ("count", "cpu_us", "max_wall_us", "max_cpu_us", "freed"),
                                v,
                                strict=True,
                            )
                        )
                        for g, v in sorted(self.counts.items())
                    },
                }
            )
        )


if __name__ == "__main__":
    collections = Collections(Path(sys.argv[1]))
    gc.callbacks.append(collections.observe)
    signal.signal(signal.SIGUSR1, collections.reset)
    signal.signal(signal.SIGUSR2, collections.write)
    sys.argv = ["pdp.cli", *sys.argv[2:]]
    runpy.run_module("pdp.cli", run_name="__main__", alter_sys=True)
