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
finds it). Prints per pace the client's p50 and the PDP's, step by step, the CPU and
minor faults per Decide of the PDP's process and of its workers, and the paces' ratio;
then the evaluator alone in this process (bench/ssh/cold_evaluator.py: the policy input
the PDP evaluated, the same shipped policy with `echo` allowed, the workers' Go runtime
settings) back to back, `--spacing` ms asleep and spinning before each, with
`--instructions` also its instructions per evaluation under callgrind. Not a test: nothing asserts.

    python -u bench/ssh/decide_cold.py [--n 60] [--rounds 2] [--spacing 100] [--instructions]
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
from cold_evaluator import report as evaluator_alone  # noqa: E402
from stage import run_in_tmp, ssh_stage  # noqa: E402

sys.path.append(str(HERE.parent))
from cpu_meter import descendants  # noqa: E402

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
# per Decide: the PDP's process and its evaluation workers (usage)
USAGE = ("PDP CPU", "PDP minor faults", "workers' CPU", "workers' minor faults")


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


def usage(pid: int) -> tuple[int, int, int, int]:
    """CPU ns and minor faults so far of the PDP's process (every thread) and of its
    evaluation workers together (/proc/PID/task/*/schedstat, /proc/PID/stat)."""
    found = [0, 0, 0, 0]
    for i, p in enumerate((pid, *descendants(pid))):
        side = 2 * min(i, 1)
        try:
            found[side + 1] += int(
                Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()[7]
            )
        except (OSError, ValueError, IndexError):  # ended meanwhile
            continue
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                found[side] += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return found[0], found[1], found[2], found[3]


async def decides(
    direct: DirectDecides, n: int, spacing: float, marks: Path, pid: int
) -> tuple[float, dict[str, float]]:
    """The client's p50 (ms) of n Decides `spacing` seconds apart, and the PDP's steps;
    among them the CPU (µs) and minor faults per Decide of its process and its workers
    (with `spacing`, the idle time's own work included)."""
    after = max(read_marks(marks, 0), default=0) if marks.exists() else 0
    times = []
    before = usage(pid)
    for _ in range(n):
        started = time.perf_counter()
        await direct.run(1)
        times.append((time.perf_counter() - started) * 1000)
        if spacing:
            await asyncio.sleep(spacing)
    spent = [(b - a) / n for a, b in zip(before, usage(pid), strict=True)]
    await asyncio.sleep(0.2)  # the last marks written
    steps = step_medians(read_marks(marks, after))
    steps.update(zip(USAGE, (spent[0] / 1000, spent[1], spent[2] / 1000, spent[3]), strict=True))
    return statistics.median(times), steps


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
                paces["back to back"].append(await decides(direct, args.n, 0, marks, pdp.pid))
                paces["spaced"].append(
                    await decides(direct, args.n, args.spacing / 1000, marks, pdp.pid)
                )
        p50: dict[str, float] = {}
        for pace, rounds in paces.items():
            p50[pace] = statistics.median(client for client, _ in rounds)
            steps = {label: statistics.median(r[1].get(label, 0.0) for r in rounds)
                     for label in [*(step[0] for step in STEPS), *USAGE]}  # fmt: skip
            print(f"{pace}{'' if pace != 'spaced' else f' ({args.spacing:g} ms apart)'}: "
                  f"Decide p50 {p50[pace]:.2f} ms at the client; in the PDP (µs): "
                  + ", ".join(f"{label} {us:.0f}" for label, us in steps.items()
                              if label not in USAGE)
                  + "; per Decide: " + ", ".join(
                      f"{label} {steps[label]:.0f}{' µs' if 'CPU' in label else ''}"
                      for label in USAGE))  # fmt: skip
        ratio = p50["spaced"] / p50["back to back"]
        print(f"spaced / back to back: {ratio:.2f}x (a proxy costing nothing would show this as "
              "its decided exec's overhead over bench_ssh's back-to-back Decide p50)")  # fmt: skip
        evaluator_alone(tmp / "rego", kept, 2 * args.n, args.spacing / 1000, args.instructions)


def main() -> None:
    from pdp.engine.embedded import restart_with_go_runtime

    restart_with_go_runtime()  # the workers' GOMAXPROCS/GOGC for the evaluator alone
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="Decides per pace and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=100.0, help="ms between spaced ones")
    parser.add_argument(
        "--instructions", action="store_true",
        help="the evaluator alone also under callgrind (cold_evaluator.py)",
    )  # fmt: skip
    args = parser.parse_args()
    run_in_tmp("portcullis-decide-cold-", run, args)


if __name__ == "__main__":
    main()
