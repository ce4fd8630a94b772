"""CPU of the PDP with its evaluation workers per evaluated Decide at a low pace, tree by tree.

Owns the low-rate A/B of issue 26/27's engine work: for each `--tree` in turn (A B B A
for two trees, `--rounds` times), starts `portcullis pdp` of that tree (bench_decide's
configuration: embedded OPA, 2 workers, SQLite decision log synced; `--engine KEY=VALUE`
adds settings to pdp.engine, for the tree after the first `--engine-from` trees) and
measures, one Decide of a new SQL text at a time (each evaluated, none reused):
  paced   unary Decide open-loop at `--rate` a second for `--seconds` (bench_decide's
          @200/s evaluated phase);
  spaced  `--spaced` Decides over one DecideStream (as the SSH proxy asks), each sent
          `--gap` ms after the last answer (an exec's length: the PDP idle between, as a
          decided exec finds it).
Prints, per phase and tree: the p50 latency (the machine is shared: read it as a hint)
and the CPU per decision of the PDP with its workers and of its own process alone (read
from /proc/PID/task/*/schedstat: nanoseconds, not ticks), then the medians over
rounds. Not a test: nothing here asserts.

    python bench/pdp/lone_decides.py --tree /tmp/before --tree . [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))
sys.path.append(str(REPO / "bench"))

from bench_decide import open_session, pct, pdp_config, query_request  # noqa: E402
from cpu_meter import cpu_ns, descendants  # noqa: E402
from pdp_harness import free_port  # noqa: E402

from portcullis.v1 import pdp_pb2_grpc  # noqa: E402
from portcullis.wire import CREDENTIAL_METADATA  # noqa: E402
from proxies.runtime.decide_calls import DecideCalls  # noqa: E402

_counter = iter(range(10**9))


class Meter:
    """CPU per decision from its start: the PDP's own process, and with its workers."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.main, self.all = self._read()

    def _read(self) -> tuple[int, int]:
        main = cpu_ns(self.pid)
        return main, main + sum(cpu_ns(p) for p in descendants(self.pid))

    def per(self, n: int) -> dict[str, float]:
        main, every = self._read()
        return {"main_us": (main - self.main) / n / 1000, "pdp_us": (every - self.all) / n / 1000}


def request(session: str) -> Any:
    """A Decide of a SQL text never asked before: evaluated, never reused."""
    n = next(_counter)
    sql = f"SELECT o.id, o.total FROM orders o WHERE o.id = {n} AND o.status = 'open'"
    return query_request(session, sql)


async def measure(
    listen: str, credential: str, token: str, pid: int, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    metadata = ((CREDENTIAL_METADATA, credential),)
    found: dict[str, dict[str, float]] = {}
    async with grpc.aio.insecure_channel(listen) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        calls = DecideCalls(stub, metadata)
        session = await open_session(stub, metadata, token)
        for _ in range(200):  # warm
            await stub.Decide(request(session), metadata=metadata, timeout=5)
            await calls.decide(request(session), timeout=5)
        # paced: unary Decide, open loop
        latencies: list[float] = []

        async def one() -> None:
            started = time.perf_counter()
            await stub.Decide(request(session), metadata=metadata, timeout=5)
            latencies.append((time.perf_counter() - started) * 1000)

        meter = Meter(pid)
        count = int(args.rate * args.seconds)
        tasks = set()
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        found["paced"] = {"p50": pct(latencies, 0.5), **meter.per(count)}
        # spaced: DecideStream, one at a time, a gap after each answer
        latencies = []
        meter = Meter(pid)
        for _ in range(args.spaced):
            await asyncio.sleep(args.gap / 1000)
            started = time.perf_counter()
            await calls.decide(request(session), timeout=5)
            latencies.append((time.perf_counter() - started) * 1000)
        found["spaced"] = {"p50": pct(latencies, 0.5), **meter.per(args.spaced)}
        await calls.close()
    return found


def run_tree(tree: Path, engine: dict[str, Any], args: argparse.Namespace) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        listen = f"127.0.0.1:{free_port()}"
        path, token, _ = pdp_config(tmp, listen, 2, False, "full", tree / "rego")
        if engine:
            config = yaml.safe_load(path.read_text())
            config["pdp"]["engine"].update(engine)
            path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'proto'}"}
        # the PDP's log, appended to LONE_DECIDES_LOG when set
        with open(os.environ.get("LONE_DECIDES_LOG", os.devnull), "ab") as log:
            pdp = subprocess.Popen(
                [sys.executable, "-m", "pdp.cli", "-c", str(path), "pdp"],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                cwd=tmp,
            )
        try:
            grpc.channel_ready_future(grpc.insecure_channel(listen)).result(timeout=120)
            credential = (Path(tmp) / "var" / "proxy.credential").read_text().strip()
            time.sleep(1)
            return asyncio.run(measure(listen, credential, token, pdp.pid, args))
        finally:
            pdp.terminate()
            pdp.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--spaced", type=int, default=150)
    parser.add_argument("--gap", type=float, default=95, help="ms between spaced decides")
    parser.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--engine-from", type=int, default=1, metavar="N")
    args = parser.parse_args()
    engine = {k: yaml.safe_load(v) for k, v in (e.split("=", 1) for e in args.engine)}
    trees = [t.resolve() for t in args.tree]
    order: list[int] = []
    for r in range(args.rounds):
        turn = list(range(len(trees)))
        order += turn if r % 2 == 0 else turn[::-1]
    results: dict[int, list[Any]] = {i: [] for i in range(len(trees))}
    for i in order:
        found = run_tree(trees[i], engine if i >= args.engine_from else {}, args)
        results[i].append(found)
        for phase, f in found.items():
            print(
                f"{trees[i]} {phase:6s} p50 {f['p50']:6.3f} ms  PDP+workers {f['pdp_us']:7.0f}"
                f" µs  main {f['main_us']:7.0f} µs per decision",
                flush=True,
            )
    print("medians over rounds:")
    for i, tree in enumerate(trees):
        for phase in ("paced", "spaced"):
            rows = [r[phase] for r in results[i]]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            print(
                f"  {tree} {phase:6s} p50 {med['p50']:6.3f} ms  PDP+workers "
                f"{med['pdp_us']:7.0f} µs  main {med['main_us']:7.0f} µs"
            )


if __name__ == "__main__":
    main()
