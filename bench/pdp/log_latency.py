"""How long a decision waits for the decision log, tree by tree: the append's latency.

Owns the wall-time half of the record phase (bench/pdp/log_append.py counts its CPU):
with `synchronous: full` (the PDP's default) a decision is answered only once its record
is committed and the WAL fdatasynced, and at 1,000 decisions/s that wait is most of a
reused decision's time in the PDP (bench_decide's `record` share; the disk's sync, not
CPU). For each `--tree` in turn (A B B A for two trees, `--rounds` times) a process of
that tree (its pdp.store on PYTHONPATH, uvloop as the PDP runs) appends a decision
record as pdp.domain.decisions does (log_append's body, MACs on) open-loop at each
`--rate`, for `--seconds`, to a fresh SQLite log, and reports each append's latency
(p50, p90, p99) and the syncs asked per record; then the medians over rounds, tree
beside tree. Latency is wall time on a shared machine: read the trees against each
other, not the figures alone. Not a test: nothing here asserts.

    python bench/pdp/log_latency.py --tree /tmp/before --tree . [--rate 200 --rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def paced(rate: int, seconds: float, folder: Path, synchronous: str) -> dict[str, float]:
    """Appends at `rate` a second to a fresh log for `seconds`: latency in µs."""
    # log_append puts this checkout on sys.path, but the tree's pdp is imported already
    # (child), so pdp.store below is the tree's (run_tree checks)
    from log_append import MAC_KEY, STATEMENTS, body

    from pdp.store import disksync
    from pdp.store.chain import canonical_json
    from pdp.store.sqlite import SQLiteAuditStore

    syncs = [0]
    real = disksync.AioSync.fdatasync

    def counted(self: Any, fd: int) -> Any:
        syncs[0] += 1
        return real(self, fd)

    disksync.AioSync.fdatasync = counted  # type: ignore[method-assign]
    store = SQLiteAuditStore(folder / f"log-{rate}.db", synchronous=synchronous)
    store.record_key = MAC_KEY
    await store.start()
    encoded = {"statements": canonical_json(STATEMENTS)}
    latencies: list[float] = []

    async def one() -> None:
        b = body("s-bench")
        started = time.perf_counter()
        await store.append(
            "decision",
            b,
            id=b["decision_id"],
            session_id="s-bench",
            subject="agent@example.com",
            plain=True,
            encoded=encoded,
        )
        latencies.append((time.perf_counter() - started) * 1e6)

    try:
        for _ in range(50):  # warm: the file, the schema's pages
            await one()
        latencies.clear()
        syncs[0] = 0
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
    finally:
        await store.close()
    return {
        "p50": pct(latencies, 0.5),
        "p90": pct(latencies, 0.9),
        "p99": pct(latencies, 0.99),
        "syncs": syncs[0] / max(1, len(latencies)),
    }


def child(rates: list[int], seconds: float, synchronous: str) -> None:
    """In a tree's process: measure every rate, print the figures as one JSON line."""
    sys.path[:0] = [str(HERE)]
    import uvloop

    import pdp.store

    out: dict[str, Any] = {"store": pdp.store.__file__}
    with tempfile.TemporaryDirectory() as tmp:
        for rate in rates:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                out[str(rate)] = runner.run(paced(rate, seconds, Path(tmp), synchronous))
    print(json.dumps(out))


def run_tree(tree: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "proto")])}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--seconds"]
    argv += [str(args.seconds), "--synchronous", args.synchronous]
    for rate in args.rate:
        argv += ["--rate", str(rate)]
    done = subprocess.run(argv, env=env, cwd=str(tree), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{tree}: {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if not figures.pop("store").startswith(str(tree.resolve())):
        raise RuntimeError(f"{tree}: measured another tree's pdp.store")
    return dict(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", default=[])
    parser.add_argument("--rate", type=int, action="append", default=[])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--synchronous", choices=("normal", "full"), default="full")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rate = args.rate or [200, 1000, 2000]
    if args.child:
        child(args.rate, args.seconds, args.synchronous)
        return
    trees = args.tree or [REPO]
    runs: dict[Path, list[dict[str, dict[str, float]]]] = {t: [] for t in trees}
    for n in range(args.rounds):
        for tree in trees if n % 2 == 0 else trees[::-1]:
            runs[tree].append(run_tree(tree, args))
    print(
        f"decision log append latency, open loop, synchronous: {args.synchronous} "
        f"(µs, medians of {args.rounds} rounds; {args.seconds:g}s per rate; "
        f"load {os.getloadavg()[0]:.1f})"
    )
    for rate in args.rate:
        for tree in trees:
            med = {
                k: statistics.median(r[str(rate)][k] for r in runs[tree])
                for k in ("p50", "p90", "p99", "syncs")
            }
            print(
                f"  @ {rate:>5}/s  p50 {med['p50']:7.0f}  p90 {med['p90']:7.0f}  "
                f"p99 {med['p99']:7.0f}   syncs per record {med['syncs']:4.2f}   {tree}"
            )


if __name__ == "__main__":
    main()
