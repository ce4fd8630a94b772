"""Where the PDP's own CPU per decision goes by pace: thread by thread, user and system,
and how often each thread slept and was woken, beside the evaluation workers' CPU.

Owns the question issue 27's "PDP CPU per evaluated decision" row leaves open: is the
PDP's own process slow per decision, or made slow by what runs beside it? Starts
`portcullis pdp` (bench_decide's configuration: embedded OPA, `--workers`, SQLite decision
log synced) and measures one phase, after warming it:

  busy    32 agents over one DecideStream, every decision evaluated (bench_decide's
          callgrind load), or with `--reuse` the policy's reusable verdicts reused;
  lone    one agent, one Decide over DecideStream at a time, `--gap` ms after the last
          answer (an idle PDP woken for each, as a proxy at a low pace finds it);
          `--new-text` makes every statement a text never asked before (classified).

Prints CPU per decision of the PDP's process (from /proc/PID/task/*/schedstat, ns) and
of its workers, and for the PDP's busiest threads their user and system CPU (10 ms ticks)
and voluntary context switches per decision. Read against callgrind's instruction count
for the same load (bench_decide.py --callgrind): on 2026-12-06, busy and evaluated, the
PDP's process took 232-256 us for ~800k instructions, reused 110-115 us for ~640k: a
fifth more instructions, twice the time, with 2.2 against 0.75 sleeps per decision
(the workers share the cores); lone, one decision at a time, 740 us back to back, 830-940
us at 5 ms gaps, 1,360 us at 20 ms: a decision alone pays a gRPC message each way, a worker
trip and a decision-log commit of its own (`--profile PREFIX`: the lone phase with the
PDP's event loop under cProfile, PREFIX.0.prof; the commit's SQLite work runs on the loop
thread, about a third of it). CPU time, not wall time: a
shared machine moves it much less. Not a test.

    python bench/pdp/pace_cpu.py busy [--reuse] [--decisions 6000] [--workers 2]
    python bench/pdp/pace_cpu.py lone [--decisions 400] [--gap 5] [--new-text] [--profile P]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))
sys.path.append(str(REPO / "bench"))

from bench_decide import (  # noqa: E402
    measured_decisions,
    open_session,
    pct,
    pdp_config,
    query_request,
)
from cpu_meter import cpu_ns, descendants  # noqa: E402
from pdp_harness import free_port  # noqa: E402

from portcullis.v1 import pdp_pb2, pdp_pb2_grpc  # noqa: E402
from portcullis.wire import CREDENTIAL_METADATA  # noqa: E402
from proxies.runtime.decide_calls import DecideCalls  # noqa: E402

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")

Threads = dict[str, tuple[str, int, int, int, int]]


def threads(pid: int) -> Threads:
    """{tid: (name, CPU ns, user ticks, system ticks, voluntary switches)} of a process."""
    found: Threads = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text().rpartition(")")[2].split()
            ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text().splitlines()
            name = (task / "comm").read_text().strip()
        except OSError:  # ended meanwhile
            continue
        switches = next(
            (int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt")), 0
        )
        found[task.name] = (name, ns, int(stat[11]), int(stat[12]), switches)
    return found


class Phase:
    """Started before a phase; report(n) after it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = threads(pid)
        self.workers = sum(cpu_ns(p) for p in descendants(pid))
        self.started = time.monotonic()

    def report(self, n: int) -> None:
        after = threads(self.pid)
        workers = sum(cpu_ns(p) for p in descendants(self.pid)) - self.workers
        rows = []
        for tid, (name, ns, user, system, switches) in after.items():
            _, ns0, user0, system0, switches0 = self.before.get(tid, (name, 0, 0, 0, 0))
            rows.append((ns - ns0, name, user - user0, system - system0, switches - switches0))
        total = sum(r[0] for r in rows)
        elapsed = time.monotonic() - self.started
        print(
            f"{n} decisions in {elapsed:.2f} s: PDP process {total / 1e3 / n:.1f} us per"
            f" decision, its evaluation workers {workers / 1e3 / n:.1f} us"
        )
        for ns, name, user, system, switches in sorted(rows, reverse=True)[:5]:
            print(
                f"  thread {name:16s} {ns / 1e3 / n:7.1f} us (user {user * TICK_US / n:6.1f},"
                f" system {system * TICK_US / n:6.1f})  sleeps {switches / n:.2f}"
            )


def busy(args: argparse.Namespace) -> None:
    phase: list[Phase] = []

    def control(pid: int, on: bool) -> None:
        if on:
            phase.append(Phase(pid))
        else:
            phase[0].report(args.decisions)

    if args.reuse:  # bench_decide's configuration with evaluation reuse on
        import bench_decide

        made = bench_decide.pdp_config

        def with_reuse(tmp: str, listen: str, workers: int, _reuse: bool, *rest: Any) -> Any:
            return made(tmp, listen, workers, True, *rest)

        bench_decide.pdp_config = with_reuse  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        measured_decisions(tmp, args.decisions, args.workers, args.policies, [], control)


def lone(args: argparse.Namespace) -> None:
    texts = iter(range(10**9))

    def request(session: str) -> pdp_pb2.DecideRequest:
        n = next(texts) if args.new_text else 42
        sql = f"SELECT o.id, o.total FROM orders o WHERE o.id = {n} AND o.status = 'open'"
        return query_request(session, sql)

    with tempfile.TemporaryDirectory() as tmp:
        listen = f"127.0.0.1:{free_port()}"
        path, token, _ = pdp_config(tmp, listen, args.workers, False, "full", args.policies)
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path), "pdp"]
        if args.profile is not None:  # bench/ssh/profiled_pdp.py: SIGUSR1 on, SIGUSR2 off
            profiled = REPO / "bench" / "ssh" / "profiled_pdp.py"
            cli = [sys.executable, str(profiled), str(args.profile), *cli[3:]]
        pdp = subprocess.Popen(cli, stderr=subprocess.DEVNULL)
        try:
            grpc.channel_ready_future(grpc.insecure_channel(listen)).result(timeout=60)
            credential = (Path(tmp) / "var" / "proxy.credential").read_text().strip()

            async def run() -> None:
                metadata = ((CREDENTIAL_METADATA, credential),)
                async with grpc.aio.insecure_channel(listen) as channel:
                    stub = pdp_pb2_grpc.DecisionServiceStub(channel)
                    calls = DecideCalls(stub, metadata)
                    session = await open_session(stub, metadata, token)
                    for _ in range(100):  # warm
                        await calls.decide(request(session), timeout=5)
                    if args.profile is not None:
                        os.kill(pdp.pid, signal.SIGUSR1)
                    phase, latencies = Phase(pdp.pid), []
                    for _ in range(args.decisions):
                        await asyncio.sleep(args.gap / 1000)
                        started = time.perf_counter()
                        await calls.decide(request(session), timeout=5)
                        latencies.append((time.perf_counter() - started) * 1000)
                    phase.report(args.decisions)
                    if args.profile is not None:
                        os.kill(pdp.pid, signal.SIGUSR2)
                        await asyncio.sleep(1.5)  # written before the PDP stops
                        print(f"  profile of the PDP's loop: {args.profile}.0.prof")
                    print(f"  p50 {pct(latencies, 0.5):.3f} ms (a shared machine: a hint)")
                    await calls.close()

            asyncio.run(run())
        finally:
            pdp.terminate()
            pdp.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pace", choices=("busy", "lone"))
    parser.add_argument("--decisions", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="busy: verdicts reused")
    parser.add_argument("--gap", type=float, default=5.0, help="lone: ms after each answer")
    parser.add_argument("--new-text", action="store_true", help="lone: a new text each")
    parser.add_argument("--profile", type=Path, help="lone: the PDP's loop under cProfile")
    parser.add_argument("--policies", type=Path, default=REPO / "rego")
    args = parser.parse_args()
    if args.pace == "busy":
        args.decisions = args.decisions or 6000
        busy(args)
    else:
        args.decisions = args.decisions or 400
        lone(args)


if __name__ == "__main__":
    main()
