"""What the PDP's own process spends per decision at a steady pace, counted by cause.

Owns the steady-pace measurements of issue 27 §3: starts `portcullis pdp` (the bench's
configuration, bench_decide.pdp_config), then
  1. idle for `--idle` seconds: each thread's CPU (utime+stime ticks) and context switches
     (voluntary + involuntary, /proc/PID/task/TID) per second: background work and wakeups;
  2. open loop over one DecideStream (what proxies use) at `--rate` decisions a second for
     `--seconds`, reused (`--reuse`, the default) or every one evaluated: per decision,
     each thread's CPU and context switches, and with `--strace` the PDP's system calls by
     thread and name (strace -f; strace slows the PDP: its latency is not the PDP's then);
  3. with `--callgrind N`: instead, N decisions one at a time (one caller, each sent a few
     milliseconds after the last answer, so every one meets an idle PDP as at a low pace)
     under valgrind's callgrind: the PDP's own instructions per lone decision, idle
     background work in between included (the figure an A/B reads, A-B-B-A).
Context switches are the counted cause of latency here (each is a thread woken); the
figures are counts, not times, so they hold on a busy machine. Not a test.

    python bench/pdp/bench_steady.py [--rate 1000] [--seconds 10] [--idle 20] [--strace]
    python bench/pdp/bench_steady.py --evaluated --rate 200
    python bench/pdp/bench_steady.py --callgrind 300 [--evaluated]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decide import drive_pdp, open_session, pct, pdp_config, query_request  # noqa: E402
from pdp_harness import free_port  # noqa: E402

from portcullis.v1 import pdp_pb2, pdp_pb2_grpc  # noqa: E402
from portcullis.wire import CREDENTIAL_METADATA  # noqa: E402
from proxies.runtime.decide_calls import DecideCalls  # noqa: E402


def this_tree() -> dict[str, str]:
    """The environment for a PDP of this bench's tree (a copy of the repository run for
    an A/B): its pdp package first on the path, whatever runs it (a script's own
    directory would otherwise leave the installed tree's)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def threads(pid: int) -> dict[str, list[int]]:
    """Each thread of pid by name (tid appended when names repeat): [user ticks, system
    ticks, voluntary switches, involuntary switches]."""
    out: dict[str, list[int]] = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
        try:
            stat = (task / "stat").read_text()
            status = (task / "status").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rpartition(")")[2].split()
        vol = invol = 0
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                vol = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                invol = int(line.split()[1])
        key = name if name not in out else f"{name}/{task.name}"
        out[key] = [int(fields[11]), int(fields[12]), vol, invol]
    return out


def tids(pid: int) -> dict[str, int]:
    """Each thread's name as threads() gives it → its tid."""
    out: dict[str, int] = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        out[name if name not in out else f"{name}/{task.name}"] = int(task.name)
    return out


def delta(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, list[int]]:
    return {
        k: [a - b for a, b in zip(v, before.get(k, [0, 0, 0, 0]), strict=True)]
        for k, v in after.items()
    }


def show(title: str, moved: dict[str, list[int]], per: float, unit: str) -> None:
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    print(f"  {title}")
    total = [0.0] * 4
    for name, counts in sorted(moved.items(), key=lambda kv: -sum(kv[1])):
        if not any(counts):
            continue
        row = [counts[0] * tick_us / per, counts[1] * tick_us / per]
        row += [counts[2] / per, counts[3] / per]
        total = [t + r for t, r in zip(total, row, strict=True)]
        print(f"    {name:<24} " + figures(row) + f"  {unit}")
    print(f"    {'all threads':<24} " + figures(total) + f"  {unit}")


def figures(row: list[float]) -> str:
    user, system, vol, invol = row
    return (
        f"cpu {user + system:8.1f} µs (sys {system:7.1f})  wakeups {vol:7.3f}"
        f"  preempted {invol:6.3f}"
    )


async def paced(
    listen: str,
    credential: str,
    token: str,
    rate: float,
    seconds: float,
    evaluated: bool,
    pid: int,
    strace: bool,
    info: bool = False,
) -> None:
    """One open-loop phase: Decide over DecideStream, or (info) unary ServerInfo, gRPC's
    own cost at that pace on the same server."""
    metadata = ((CREDENTIAL_METADATA, credential),)
    async with grpc.aio.insecure_channel(listen) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        calls = DecideCalls(stub, metadata)

        async def request() -> Any:
            # evaluated or reused as the PDP is configured (bench_decide's two PDPs)
            return query_request(session)

        session = await open_session(stub, metadata, token)
        for _ in range(200):  # warm
            await calls.decide(await request(), timeout=5)
        latencies: list[float] = []

        async def one() -> None:
            started = time.perf_counter()
            if info:
                await stub.ServerInfo(pdp_pb2.ServerInfoRequest(), timeout=5, metadata=metadata)
            else:
                await calls.decide(await request(), timeout=5)
            latencies.append((time.perf_counter() - started) * 1000)

        tracer = None
        if strace:
            out = Path(tempfile.mkstemp(suffix=".strace")[1])
            tracer = subprocess.Popen(
                ["strace", "-f", "-qq", "-o", str(out), "-p", str(pid)],
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1.0)
        before = threads(pid)
        tasks = set()
        start = time.perf_counter()
        count = int(rate * seconds)
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        after = threads(pid)
        if tracer is not None:
            tracer.send_signal(2)
            tracer.wait(timeout=30)
        await calls.close()
    kind = "evaluated" if evaluated else "reused"
    what = "ServerInfo (unary), calls" if info else f"over DecideStream, {kind}, decisions"
    print(
        f"  paced {rate:g}/s {what} {count}: "
        f"p50 {pct(latencies, 0.5):.3f} ms  p99 {pct(latencies, 0.99):.3f} ms"
        + ("  (under strace)" if strace else "")
    )
    show("per call, by thread of the PDP's own process", delta(before, after), count, "/call")
    if tracer is not None:
        names = {
            tid: "event loop" if tid == pid else name.split("/")[0]
            for name, tid in tids(pid).items()
        }
        by: dict[tuple[str, str], int] = {}
        for line in out.read_text().splitlines():
            tid, _, rest = line.partition(" ")
            call = rest.lstrip().partition("(")[0]
            if not call.isidentifier() or not tid.isdigit():
                continue  # "<... resumed>" and exits: counted at their start
            key = (names.get(int(tid), "?"), call)
            by[key] = by.get(key, 0) + 1
        print(f"  system calls per call, by thread (strace -f, {count} calls):")
        for (name, call), n in sorted(by.items(), key=lambda kv: -kv[1]):
            if n / count >= 0.01:
                print(f"    {name:<16} {call:<18} {n / count:8.3f}")
        if os.environ.get("BENCH_STEADY_KEEP_STRACE"):
            print(f"  strace kept: {out}")
        else:
            out.unlink()


def callgrind_lone(tmp: str, decisions: int, evaluated: bool, keep: Path | None) -> float:
    """Instructions of the PDP's own process per decision made alone (one caller, each
    sent 5 ms after the last answer), under callgrind; evaluation workers not counted."""
    out = Path(tmp) / "callgrind.out"
    runner = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]

    def control(pid: int, on: bool) -> None:
        for args in (("-i", "on"),) if on else (("--dump=measured",), ("-i", "off")):
            subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True)

    lone(tmp, decisions, evaluated, [*runner, sys.executable, "-m", "pdp.cli"], control)
    for dump in Path(tmp).glob("callgrind.out.*"):
        if keep is not None:
            keep.write_bytes(dump.read_bytes())
        for line in dump.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]) / decisions
    raise RuntimeError("callgrind wrote no dump of the measured decisions")


def profiled_lone(tmp: str, decisions: int, evaluated: bool, prefix: Path) -> None:
    """The same lone decisions with the PDP's event loop under cProfile (CPU time,
    bench/ssh/profiled_pdp.py): PREFIX.0.prof."""
    runner = [sys.executable, str(REPO / "bench" / "ssh" / "profiled_pdp.py"), str(prefix)]

    def control(pid: int, on: bool) -> None:
        os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)
        if not on:
            time.sleep(1)  # the profile is written before the PDP is stopped

    lone(tmp, decisions, evaluated, runner, control)


def lone(tmp: str, decisions: int, evaluated: bool, runner: list[str], control: Any) -> None:
    """`portcullis pdp` under runner; 48 lone decisions to warm it, control(pid, True),
    `decisions` lone decisions, control(pid, False)."""
    listen = f"127.0.0.1:{free_port()}"
    path, token, _ = pdp_config(tmp, listen, 2, not evaluated, "full", REPO / "rego", 600_000)
    pdp = subprocess.Popen(
        [*runner, "-c", str(path), "pdp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=this_tree(),
    )

    async def decide(credential: str) -> None:
        metadata = ((CREDENTIAL_METADATA, credential),)
        async with grpc.aio.insecure_channel(listen) as channel:
            stub = pdp_pb2_grpc.DecisionServiceStub(channel)
            session = await open_session(stub, metadata, token, timeout=600)
            calls = DecideCalls(stub, metadata)
            request = query_request(session)

            async def one() -> None:
                await calls.decide(request, timeout=600)
                await asyncio.sleep(0.005)

            for _ in range(48):
                await one()
            control(pdp.pid, True)
            for _ in range(decisions):
                await one()
            control(pdp.pid, False)
            await calls.close()

    drive_pdp(pdp, listen, tmp, decide)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--idle", type=float, default=20)
    parser.add_argument("--evaluated", action="store_true")
    parser.add_argument("--strace", action="store_true")
    parser.add_argument(
        "--info", action="store_true", help="then ServerInfo at the same pace (gRPC's floor)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--callgrind", type=int, default=0, metavar="N")
    parser.add_argument("--callgrind-keep", type=Path, default=None, metavar="FILE")
    parser.add_argument("--profile", type=Path, default=None, metavar="PREFIX")
    parser.add_argument(
        "--gc", action="store_true", help="count the PDP's collections (bench/pdp/gc_pdp.py)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            profiled_lone(tmp, args.callgrind or 1000, args.evaluated, args.profile)
            print(f"profile of the PDP's event loop, lone decisions: {args.profile}.0.prof")
            return
        if args.callgrind:
            per = callgrind_lone(tmp, args.callgrind, args.evaluated, args.callgrind_keep)
            kind = "evaluated" if args.evaluated else "reused"
            print(
                f"PDP process, lone decisions ({kind}): {per:,.0f} instructions per decision"
                f" ({args.callgrind} decisions, callgrind)"
            )
            return
        listen = f"127.0.0.1:{free_port()}"
        path, token, _ = pdp_config(
            tmp, listen, args.workers, not args.evaluated, "full", REPO / "rego"
        )
        counted = Path(tmp) / "gc.json"
        runner = (
            [str(Path(__file__).resolve().parent / "gc_pdp.py"), str(counted)]
            if args.gc
            else ["-m", "pdp.cli"]
        )
        pdp = subprocess.Popen(
            [sys.executable, *runner, "-c", str(path), "pdp"],
            stderr=subprocess.DEVNULL,
            env=this_tree(),
        )
        try:
            grpc.channel_ready_future(grpc.insecure_channel(listen)).result(timeout=60)
            credential = (Path(tmp) / "var" / "proxy.credential").read_text().strip()
            time.sleep(2)
            if args.idle:
                before = threads(pdp.pid)
                time.sleep(args.idle)
                show(
                    f"idle {args.idle:g} s, per second",
                    delta(before, threads(pdp.pid)),
                    args.idle,
                    "/s",
                )
            if args.gc:
                os.kill(pdp.pid, signal.SIGUSR1)

            def phase(info: bool = False) -> None:
                asyncio.run(
                    paced(
                        listen,
                        credential,
                        token,
                        args.rate,
                        args.seconds,
                        args.evaluated,
                        pdp.pid,
                        args.strace,
                        info=info,
                    )
                )

            phase()
            if args.gc:
                os.kill(pdp.pid, signal.SIGUSR2)
                time.sleep(0.5)
                collected = json.loads(counted.read_text())
                decisions = int(args.rate * args.seconds) + 200
                print(f"  garbage collections (threshold {collected['threshold']}, warm-up in):")
                for generation, c in collected["generations"].items():
                    print(
                        f"    gen {generation}: {c['count'] / decisions:7.4f} per decision, "
                        f"{c['cpu_us'] / decisions:6.2f} µs CPU per decision, longest "
                        f"{c['max_wall_us']:7.0f} µs ({c['max_cpu_us']:.0f} CPU), "
                        f"{c['count']} in all"
                    )
            if args.info:
                phase(info=True)
        finally:
            pdp.terminate()
            pdp.wait(timeout=30)


if __name__ == "__main__":
    main()
