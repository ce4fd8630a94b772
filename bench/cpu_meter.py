"""What one benchmark phase cost: CPU of named processes, of the machine, and the steal.

Read from /proc, so it measures any process on this machine (a PDP with its evaluation
workers, a proxy, pgbench's peers). On a shared VM the hypervisor's steal says how far a
phase's throughput can be trusted; CPU per operation moves much less with it than
throughput does, so the benchmarks print both.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def process_ticks(pid: int, with_descendants: bool = True) -> int:
    """User + system CPU of a process (and of its living descendants) so far, in ticks."""
    total = 0
    for p in (pid, *(descendants(pid) if with_descendants else ())):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, steal) ticks of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq, steal


class CPUMeter:
    """Started before a phase; `per(n)` after it: µs of CPU per operation of each named
    process (`<name>_us`; with its descendants, unless it is named in `alone`) and of the
    whole machine (`machine_us`), and `steal`, the share of the machine's cores the
    hypervisor took during the phase."""

    def __init__(self, processes: dict[str, int], alone: frozenset[str] = frozenset()) -> None:
        self.processes = processes
        self.alone = alone
        self._before = {name: self._ticks(name) for name in processes}
        self._busy, self._steal = machine_ticks()
        self._started = time.monotonic()

    def per(self, operations: float) -> dict[str, float]:
        elapsed = time.monotonic() - self._started
        busy, steal = machine_ticks()
        cores_ticks = elapsed * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
        figures = {"steal": (steal - self._steal) / cores_ticks if cores_ticks else 0.0}
        if operations:
            for name in self.processes:
                spent = self._ticks(name) - self._before[name]
                figures[f"{name}_us"] = spent * TICK_US / operations
            figures["machine_us"] = (busy - self._busy) * TICK_US / operations
        return figures

    def _ticks(self, name: str) -> int:
        return process_ticks(self.processes[name], with_descendants=name not in self.alone)


def cpu_ns(pid: int) -> int:
    """CPU time of a process's threads so far, in ns (/proc/PID/task/TID/schedstat: the
    scheduler's own count, not 10 ms ticks; threads that ended are not counted)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # ended meanwhile
            continue
    return total
