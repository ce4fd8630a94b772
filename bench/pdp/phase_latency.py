"""Where a decision's wall time goes in a real PDP at a pace, tree by tree.

Owns the wall-time split issue 27 asks for (bench_phases.py splits CPU, in one process):
for each `--tree` in turn (A B B A for two trees, `--rounds` times) starts `portcullis
pdp` of that tree (bench_decide's configuration: 2 workers, SQLite decision log,
`synchronous: full`) with bench/ssh/pdp_stages_prelude.py timing each Decide's stages
inside it, and drives, open-loop for `--seconds` at each pace:

  evaluated   DecideStream at `--evaluated-rate`/s, every decision evaluated (evaluation
              reuse off), beside ServerInfo at the same pace on the same server;
  reused      DecideStream at `--reused-rate`/s, the evaluation reused (what a cached
              shape costs the PDP), beside ServerInfo likewise.

Prints per tree and pace: the client's p50/p99 of DecideStream and of ServerInfo and their
ratios (issue 27's targets: p50 and p99 <= 1.3x ServerInfo's), and the PDP's stages, p50
and p90: `decide` (the handler whole), `evaluate` (the worker's round trip with the
evaluation; 0 when reused), `record` (the decision log's commit and sync, which the
answer waits for); what the handler spends around them is decide - evaluate - record at
p50, and the transport (gRPC both ways, this client) is the client's p50 less the
handler's. Wall time on a shared machine: read the trees against each other. Not a test:
nothing here asserts.

    python bench/pdp/phase_latency.py --tree /tmp/before --tree . [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

from bench_decide import (  # noqa: E402
    open_loop,
    open_session,
    pct,
    pdp_config,
    query_request,
    tree_env,
)
from pdp_harness import free_port  # noqa: E402

from portcullis.v1 import pdp_pb2, pdp_pb2_grpc  # noqa: E402
from portcullis.wire import CREDENTIAL_METADATA  # noqa: E402
from proxies.runtime.decide_calls import DecideCalls  # noqa: E402

STAGES = ("decide", "evaluate", "record")
PRELUDE = REPO / "bench" / "ssh" / "pdp_stages_prelude.py"
PROFILED = REPO / "bench" / "ssh" / "profiled_pdp.py"


async def drive(listen: str, credential: str, token: str, rate: int, seconds: float) -> Any:
    metadata = ((CREDENTIAL_METADATA, credential),)
    async with grpc.aio.insecure_channel(listen) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        request = query_request(await open_session(stub, metadata, token))
        calls = DecideCalls(stub, metadata)
        info = pdp_pb2.ServerInfoRequest()
        for _ in range(200):  # warm: the standing, the caches, the workers
            await calls.decide(request, timeout=5)
        stream = await open_loop(lambda: calls.decide(request, timeout=5), rate, seconds)
        server_info = await open_loop(
            lambda: stub.ServerInfo(info, timeout=5, metadata=metadata), rate, seconds
        )
        await calls.close()
        return stream, server_info, request.session_id


def measure(tree: Path, reuse: bool, rate: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        listen = f"127.0.0.1:{free_port()}"
        path, token, _ = pdp_config(tmp, listen, 2, reuse, "full", tree / "rego")
        stages = Path(tmp) / "stages"
        env = {
            **tree_env(tree),
            "PORTCULLIS_BENCH_PRELUDE": str(PRELUDE),
            "PORTCULLIS_PDP_STAGES": str(stages),
        }
        argv = [sys.executable, str(PROFILED), f"{tmp}/unused", "-c", str(path), "pdp"]
        pdp = subprocess.Popen(argv, env=env, cwd=str(tree), stderr=subprocess.DEVNULL)
        try:
            grpc.channel_ready_future(grpc.insecure_channel(listen)).result(timeout=60)
            credential = (Path(tmp) / "var" / "proxy.credential").read_text().strip()
            stream, info, session = asyncio.run(drive(listen, credential, token, rate, seconds))
        finally:
            pdp.terminate()
            pdp.wait(timeout=30)
        timed: dict[str, list[float]] = {s: [] for s in STAGES}
        lines = stages.read_text().splitlines() if stages.exists() else []
        for line in lines[-int(rate * seconds) * len(STAGES) :]:  # the paced phase's
            stage, sid, ms = line.split()
            if sid == session and stage in timed:
                timed[stage].append(float(ms) * 1000)
    out = {
        "stream_p50": stream["p50"] * 1000,
        "stream_p99": stream["p99"] * 1000,
        "info_p50": info["p50"] * 1000,
        "info_p99": info["p99"] * 1000,
    }
    decided = len(timed["decide"])
    for stage, samples in timed.items():
        # a stage most decisions skip (the evaluation, reused) counts as none
        kept = samples if len(samples) * 2 > decided else []
        out[f"{stage}_p50"] = pct(kept, 0.5) if kept else 0.0
        out[f"{stage}_p90"] = pct(kept, 0.9) if kept else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", default=[])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--evaluated-rate", type=int, default=200)
    parser.add_argument("--reused-rate", type=int, default=1000)
    args = parser.parse_args()
    trees = args.tree or [REPO]
    paces = (("evaluated", False, args.evaluated_rate), ("reused", True, args.reused_rate))
    runs: dict[tuple[str, Path], list[dict[str, float]]] = {}
    for n in range(args.rounds):
        for name, reuse, rate in paces:
            for tree in trees if n % 2 == 0 else trees[::-1]:
                runs.setdefault((name, tree), []).append(measure(tree, reuse, rate, args.seconds))
    print(
        f"Decide's wall time by phase, DecideStream open loop (µs, medians of {args.rounds} "
        f"rounds, {args.seconds:g}s each; load {os.getloadavg()[0]:.1f})"
    )
    for name, _, rate in paces:
        for tree in trees:
            m = {
                k: statistics.median(r[k] for r in runs[(name, tree)])
                for k in runs[(name, tree)][0]
            }
            around = m["decide_p50"] - m["evaluate_p50"] - m["record_p50"]
            print(
                f"  {name} @ {rate}/s  {tree}\n"
                f"    client: DecideStream p50 {m['stream_p50']:6.0f} p99 {m['stream_p99']:7.0f}"
                f" | ServerInfo p50 {m['info_p50']:6.0f} p99 {m['info_p99']:7.0f}"
                f" | ratios p50 {m['stream_p50'] / m['info_p50']:4.2f}x"
                f" p99 {m['stream_p99'] / m['info_p99']:4.2f}x\n"
                f"    PDP: decide p50 {m['decide_p50']:6.0f} (p90 {m['decide_p90']:6.0f})"
                f" = evaluate {m['evaluate_p50']:5.0f} (p90 {m['evaluate_p90']:6.0f})"
                f" + record {m['record_p50']:5.0f} (p90 {m['record_p90']:6.0f})"
                f" + around {around:5.0f};  transport {m['stream_p50'] - m['decide_p50']:5.0f}"
            )


if __name__ == "__main__":
    main()
