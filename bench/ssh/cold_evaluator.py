"""Is the evaluator's extra CPU after an idle spell more work, or the same work run cold?

Owns the evaluator's half of the question decide_cold.py asks (issue 26's decided-exec
target compares a Decide of a PDP idle an exec's length with one of a busy PDP): the
shipped policy loaded in this process with the workers' Go runtime (GOMAXPROCS/GOGC,
their timer slack), one policy input (a file: decide_cold.py passes the PDP's own),
evaluated at three paces, each pace a median over `--n` evaluations:

  back to back   one evaluation right after the other;
  asleep         `--spacing` ms asleep before each (the PDP's pace at one exec each);
  spinning       `--spacing` ms of a busy loop in this thread before each: no sleep, no
                 idle core, no wake-up; only time passing, in which the machine's other
                 processes get the core as they get it during a sleep.

For each: the CPU of the calling thread (the evaluator runs there: a cgo call), the CPU
of the process's other threads (the Go runtime's sysmon and Ms), and minor page faults
of the process (the Go heap's pages given back by its scavenger and touched again).
With `--instructions`, the same input back to back and asleep in runs of this file under
callgrind (valgrind; GODEBUG=asyncpreemptoff=1, as callgrind aborts on the runtime's
preemption signals), differing only in the pace: instructions per evaluation of every
thread of the process, the idle spells' own included. Not a test: nothing asserts.

    python -u bench/ssh/cold_evaluator.py POLICIES INPUT [--n 100] [--spacing 5]
                                          [--instructions]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PACES = ("back to back", "asleep", "spinning")
COUNTED = 50  # evaluations before the counted ones under callgrind
WARM_UP = 1500  # evaluations before the measured ones: ~1,000 grow the Go heap to its goal
# valgrind runs the real interpreter: a pyenv shim is a shell script that execs it, and
# callgrind would follow the shell
PYTHON = os.path.realpath(sys.executable)


def _threads() -> dict[int, int]:
    """CPU ns of each thread of this process so far (/proc/self/task/*/schedstat)."""
    found = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return found


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def paces(policies: Path, input_json: bytes, n: int, spacing: float) -> dict[str, dict[str, float]]:
    """Per pace: µs of CPU per evaluation of the calling thread and of the others, minor
    faults per evaluation (medians of single evaluations; the others' CPU a mean over the
    pace, their work not being tied to one evaluation). The caller has the workers' Go
    runtime settings in its environment (restart_with_go_runtime)."""
    from pdp.engine.bundle import load_bundle
    from pdp.engine.opa import DECISION_PATH, new_engine, raw_evaluate
    from pdp.engine.worker import relax_timers

    relax_timers()  # the workers' timer slack, before the evaluator's runtime starts

    engine = new_engine(load_bundle(policies).without_tests())
    me = threading.get_native_id()
    before_each = {"back to back": None, "asleep": time.sleep, "spinning": _spin}
    found: dict[str, dict[str, list[float]]] = {p: {} for p in PACES}
    try:
        for _ in range(WARM_UP):  # the heap grown to its goal (no faults left but the
            # scavenger's), the caches as warm as they get
            raw_evaluate(engine, DECISION_PATH, input_json)
        for _round in range(2):
            for pace in PACES:
                wait = before_each[pace]
                own, faults = [], []
                start = _threads()
                for _ in range(n):
                    if wait is not None:
                        wait(spacing)
                    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    t0 = time.thread_time_ns()
                    raw_evaluate(engine, DECISION_PATH, input_json)
                    own.append((time.thread_time_ns() - t0) / 1000)
                    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
                end = _threads()
                others = sum(ns - start.get(tid, 0) for tid, ns in end.items() if tid != me)
                figures = found[pace]
                figures.setdefault("thread_us", []).append(statistics.median(own))
                figures.setdefault("others_us", []).append(others / n / 1000)
                figures.setdefault("minflt", []).append(statistics.mean(faults))
    finally:
        engine.close()
    return {p: {k: statistics.median(v) for k, v in f.items()} for p, f in found.items()}


def _child(policies: Path, input_path: Path, pace: str, n: int, spacing: float) -> None:
    """Under callgrind: COUNTED evaluations back to back, a pause, then n at `pace`."""
    from pdp.engine.bundle import load_bundle
    from pdp.engine.opa import DECISION_PATH, new_engine, raw_evaluate

    engine = new_engine(load_bundle(policies).without_tests())
    input_json = input_path.read_bytes()
    for _ in range(COUNTED):
        raw_evaluate(engine, DECISION_PATH, input_json)
    time.sleep(0.5)
    for _ in range(n):
        if pace == "asleep":
            time.sleep(spacing)
        raw_evaluate(engine, DECISION_PATH, input_json)
    engine.close()


def _callgrind(policies: Path, input_path: Path, pace: str, n: int, spacing: float) -> int:
    """Instructions of the whole process (every thread) for the child run at `pace`."""
    with tempfile.TemporaryDirectory(prefix="cold-evaluator-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "GOMAXPROCS": "1", "GOGC": "800", "GODEBUG": "asyncpreemptoff=1"}
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             PYTHON, str(Path(__file__).resolve()), str(policies), str(input_path),
             "--child", pace, "--n", str(n), "--spacing", str(spacing * 1000)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        collected = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode or not collected:
            raise RuntimeError(f"callgrind run failed: {done.stderr[-2000:]}")
        return int(collected.group(1))


def instructions(policies: Path, input_path: Path, n: int, spacing: float) -> dict[str, float]:
    """Instructions per evaluation at each pace: two runs per pace (n and 3n evaluations),
    their difference over 2n, so loading the interpreter and the policy cancels out."""
    per: dict[str, float] = {}
    for pace in ("back to back", "asleep"):
        short = _callgrind(policies, input_path, pace, n, spacing)
        long = _callgrind(policies, input_path, pace, 3 * n, spacing)
        per[pace] = (long - short) / (2 * n)
    return per


def report(policies: Path, input_path: Path, n: int, spacing: float, counted: bool) -> None:
    input_json = input_path.read_bytes()
    found = paces(policies, input_json, n, spacing)
    print(f"the evaluator alone, this process, one input ({len(input_json)} bytes), "
          f"{spacing * 1000:g} ms before each (but back to back); medians of 2 "
          "rounds:")  # fmt: skip
    for pace, f in found.items():
        ratio = f["thread_us"] / found["back to back"]["thread_us"]
        print(f"  {pace:13} CPU per evaluation: its thread {f['thread_us']:6.0f} µs "
              f"({ratio:.2f}x), the Go runtime's other threads {f['others_us']:5.0f} µs; "
              f"minor faults {f['minflt']:.1f}")  # fmt: skip
    if counted:
        if shutil.which("valgrind") is None:
            print("  instructions: valgrind is not installed")
            return
        per = instructions(policies, input_path, max(n // 2, 20), spacing)
        b2b, asleep = per["back to back"], per["asleep"]
        print(f"  instructions per evaluation (callgrind, every thread): back to back "
              f"{b2b:,.0f}, asleep {asleep:,.0f} ({asleep / b2b:.2f}x)")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from pdp.engine.embedded import restart_with_go_runtime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policies", type=Path)
    parser.add_argument("input", type=Path, help="a policy input, as JSON")
    parser.add_argument("--n", type=int, default=100, help="evaluations per pace and round")
    parser.add_argument("--spacing", type=float, default=5.0, help="ms before each")
    parser.add_argument("--instructions", action="store_true", help="also under callgrind")
    parser.add_argument("--child", choices=("back to back", "asleep"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.policies, args.input, args.child, args.n, args.spacing / 1000)
        return
    restart_with_go_runtime()  # the workers' GOMAXPROCS/GOGC
    report(args.policies, args.input, args.n, args.spacing / 1000, args.instructions)


if __name__ == "__main__":
    main()
