"""A Decide of a new exec line back to back and after an idle spell, with no proxy on its way.

Owns the floor under bench_ssh.py's decided-exec target: that target judges a decided
exec's overhead (a Decide asked by a PDP idle since the last exec, plus the proxy's own
steps) against 1.5 x the Decide p50 asked back to back (a PDP kept busy). What is that
ratio for the Decide alone, asked by a client doing nothing else, and where in the PDP
does the difference go? The PDP (`portcullis pdp`, this checkout) runs with
decide_cold_prelude.py marking each Decide's moments (the handler; the evaluation's round
trip to its worker; the record's SQLite commit and its wait for the disk's fdatasync); the
SSH proxy runs only for the credential it registers. Then `--rounds` rounds of `--n`
Decides of a new `echo <n>` over one DecideStream from this process (as the proxy asks
them), back to back, then `--spacing` ms apart (the PDP idle between, as a decided exec
finds it). Prints per pace the client's p50 and the PDP's, step by step, and their ratio;
then the evaluator alone in this process (the policy input the PDP evaluated, the same
shipped policy with `echo` allowed, the workers' Go runtime settings): its CPU per
evaluation back to back and after `--spacing` ms asleep. Not a test: nothing asserts.

    python -u bench/ssh/decide_cold.py [--n 60] [--rounds 2] [--spacing 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import wait_port  # noqa: E402
from callgrind_pdp import DirectDecides  # noqa: E402
from stage import run_in_tmp, ssh_stage  # noqa: E402

PROFILED_PDP = HERE / "profiled_pdp.py"
PRELUDE = HERE / "decide_cold_prelude.py"
# (label, from mark, to mark): the PDP's steps of a Decide, in order
STEPS = (
    ("before the evaluation", "decide>", "eval>"),
    ("evaluation (worker round trip)", "eval>", "eval<"),
    ("evaluation -> record", "eval<", "record>"),
    ("record -> commit", "record>", "commit>"),
    ("SQLite commit", "commit>", "commit<"),
    ("fdatasync wait", "sync>", "sync<"),
    ("record -> answer", "record<", "decide<"),
    ("the handler whole", "decide>", "decide<"),
)


def read_marks(path: Path, after: int) -> dict[int, dict[str, int]]:
    """{decide number: {mark: ns}} of the Decides numbered above `after`."""
    marks: dict[int, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        n, name, ns = line.split()
        if int(n) > after:
            marks.setdefault(int(n), {})[name] = int(ns)
    return marks


def step_medians(marks: dict[int, dict[str, int]]) -> dict[str, float]:
    found = {}
    for label, start, end in STEPS:
        spans = [(m[end] - m[start]) / 1000 for m in marks.values() if start in m and end in m]
        if spans:
            found[label] = statistics.median(spans)
    return found


async def decides(
    direct: DirectDecides, n: int, spacing: float, marks: Path
) -> tuple[float, dict[str, float]]:
    """The client's p50 (ms) of n Decides `spacing` seconds apart, and the PDP's steps."""
    after = max(read_marks(marks, 0), default=0) if marks.exists() else 0
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await direct.run(1)
        times.append((time.perf_counter() - started) * 1000)
        if spacing:
            await asyncio.sleep(spacing)
    await asyncio.sleep(0.2)  # the last marks written
    return statistics.median(times), step_medians(read_marks(marks, after))


def evaluator_alone(
    policies: Path, input_json: bytes, n: int, spacing: float
) -> tuple[float, float]:
    """CPU µs (this thread) of one evaluation of input_json by the shipped policy loaded
    here: back to back, and after `spacing` seconds asleep (medians)."""
    from pdp.engine.bundle import load_bundle
    from pdp.engine.opa import DECISION_PATH, new_engine, raw_evaluate

    engine = new_engine(load_bundle(policies).without_tests())
    try:

        def cpu() -> float:
            started = time.thread_time_ns()
            raw_evaluate(engine, DECISION_PATH, input_json)
            return (time.thread_time_ns() - started) / 1000

        for _ in range(200):
            cpu()
        busy = [cpu() for _ in range(n)]
        idle = []
        for _ in range(n):
            time.sleep(spacing)
            idle.append(cpu())
    finally:
        engine.close()
    return statistics.median(busy), statistics.median(idle)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    with ssh_stage(tmp, start_pdp=False) as stage:
        marks, kept = tmp / "marks.txt", tmp / "input.json"
        env = dict(
            os.environ,
            PORTCULLIS_BENCH_PRELUDE=str(PRELUDE),
            PORTCULLIS_DECIDE_MARKS=str(marks),
            PORTCULLIS_DECIDE_INPUT=str(kept),
        )
        pdp_log = tmp / "pdp.log"
        pdp = subprocess.Popen(
            [sys.executable, str(PROFILED_PDP), str(tmp / "unused"), *stage.cli[3:], "pdp"],
            cwd=tmp, env=env, stderr=pdp_log.open("w"),
        )  # fmt: skip
        stage.procs.append(pdp)
        wait_port(stage.pdp_port, pdp, pdp_log)
        proxy_log = tmp / "proxy.log"  # started for the credential it registers
        proxy = subprocess.Popen(
            [sys.executable, "-m", "proxies", "ssh", "-c", str(stage.path)],
            cwd=tmp, stderr=proxy_log.open("w"),
        )  # fmt: skip
        stage.procs.append(proxy)
        wait_port(int(stage.config["connections"][0]["listen"].rsplit(":", 1)[1]), proxy, proxy_log)
        credential = (tmp / "var" / "proxy.credential").read_text().strip()
        paces: dict[str, list[tuple[float, dict[str, float]]]] = {"back to back": [], "spaced": []}
        async with DirectDecides(stage.config["pdp"]["listen"], credential, stage.token) as direct:
            await direct.run(50)
            for _ in range(args.rounds):
                paces["back to back"].append(await decides(direct, args.n, 0, marks))
                paces["spaced"].append(await decides(direct, args.n, args.spacing / 1000, marks))
        p50: dict[str, float] = {}
        for pace, rounds in paces.items():
            p50[pace] = statistics.median(client for client, _ in rounds)
            steps = {label: statistics.median(r[1].get(label, 0.0) for r in rounds)
                     for label, _, _ in STEPS}  # fmt: skip
            print(f"{pace}{'' if pace != 'spaced' else f' ({args.spacing:g} ms apart)'}: "
                  f"Decide p50 {p50[pace]:.2f} ms at the client; in the PDP (µs): "
                  + ", ".join(f"{label} {us:.0f}" for label, us in steps.items()))  # fmt: skip
        ratio = p50["spaced"] / p50["back to back"]
        print(f"spaced / back to back: {ratio:.2f}x (a proxy costing nothing would show this as "
              "its decided exec's overhead over bench_ssh's back-to-back Decide p50)")  # fmt: skip
        busy, idle = evaluator_alone(tmp / "rego", kept.read_bytes(), args.n, args.spacing / 1000)
        print(f"the evaluator alone, this process, the PDP's input ({len(kept.read_bytes())} "
              f"bytes): {busy:.0f} µs CPU per evaluation back to back, {idle:.0f} µs after "
              f"{args.spacing:g} ms asleep ({idle / busy:.2f}x)")  # fmt: skip


def main() -> None:
    from pdp.engine.embedded import restart_with_go_runtime

    restart_with_go_runtime()  # the workers' GOMAXPROCS/GOGC for the evaluator alone
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="Decides per pace and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=100.0, help="ms between spaced ones")
    args = parser.parse_args()
    run_in_tmp("portcullis-decide-cold-", run, args)


if __name__ == "__main__":
    main()
