"""The SSH proxy's own work per exec in instructions: the proxy process under callgrind.

Owns the deterministic figure a change to the SSH proxy's per-exec path is judged by on
a shared machine, where CPU time per exec moves with the other tenants. sshd
(tests/ssh_harness.py) and the PDP run as in bench_ssh.py; the proxy (`python -m proxies
ssh`, of this checkout or of `--tree REF`: a commit unpacked by bench/revision.py, or a
tree's directory) runs under `valgrind --tool=callgrind --instr-atstart=no`: nothing is
counted until the client has logged in and run its warm-up execs. Then, over one
connection, `--execs` execs of the same `uptime` (its answer reused after the first) and
as many of `echo <n>` (each decided by the PDP), each phase counted on its own
(callgrind_control: zero, run, dump). Prints instructions per exec of each phase, the
proxy's every thread included (gRPC's C threads too), and with `--annotate N` the N
functions (inclusive) that cost most per exec. A phase's total moves by a few per cent
with timing (how often the event loop wakes); runs of two trees alternate with
`--rounds`.

    python -u bench/ssh/callgrind_exec.py [--execs 100] [--tree REF ...] [--rounds 1]
                                          [--annotate 25]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import (  # noqa: E402
    REPO,
    execs,
    free_port,
    wait_port,
)

# only now, the project imported: bench/ on the path holds a directory named pdp/
sys.path.append(str(HERE.parent))
from processes import stop_all  # noqa: E402
from stage import run_in_tmp, ssh_stage, tree_at, tree_label  # noqa: E402

PHASES = ("reused", "decided")


def control(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def total(path: Path) -> int:
    found = re.search(r"^(?:totals|summary): (\d+)", path.read_text(errors="replace"), re.M)
    if found is None:
        raise RuntimeError(f"no totals in {path}")
    return int(found.group(1))


async def dumped(out: Path, before: set[Path], timeout: float = 1800) -> Path:
    """The dump callgrind_control asked for, once written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = set(out.parent.glob(out.name + "*")) - before
        done = [p for p in new if re.search(r"^totals: ", p.read_text(errors="replace"), re.M)]
        if done:
            return done[0]
        await asyncio.sleep(0.5)
    raise RuntimeError(f"no dump: {sorted(p.name for p in out.parent.iterdir())}")


async def measure_tree(
    tree: Path, label: str, config: dict[str, Any], tmp: Path, args: argparse.Namespace,
    token: str, annotate: dict[str, Path],
) -> dict[str, float]:  # fmt: skip
    listen = free_port()
    own = {**config["connections"][0], "listen": f"127.0.0.1:{listen}",
           "spool_dir": str(tmp / f"spool-{label}")}  # fmt: skip
    path = tmp / f"portcullis-{label}.yaml"
    path.write_text(yaml.safe_dump({**config, "connections": [own]}))
    # a name of its own per run: a tree's second round would write dumps of the first
    # round's names, which dumped() does not take for new (it waited its 30 minutes)
    out = tmp / f"callgrind.{label}.{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'proto'}")
    log = tmp / f"proxy-{label}.log"
    proxy = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, "-m", "proxies", "ssh", "-c", str(path)],
        cwd=tmp, env=env, stderr=log.open("w"),
    )  # fmt: skip
    try:
        wait_port(listen, proxy, log, timeout=600)
        target = dict(host="127.0.0.1", port=listen, username="bench", password=token,
                      client_keys=None, preferred_auth="password", known_hosts=None,
                      agent_path=None, config=None, compression_algs=None,
                      login_timeout=600)  # fmt: skip
        got: dict[str, float] = {}
        async with asyncssh.connect(**target) as conn:
            await execs(conn, 5)
            await execs(conn, 5, "warm")
            control(proxy.pid, "-i", "on")
            for phase in PHASES:
                control(proxy.pid, "-z")
                distinct = f"{label}-{time.monotonic_ns()}" if phase == "decided" else ""
                await execs(conn, args.execs, distinct)
                before = set(tmp.glob(out.name + "*"))
                control(proxy.pid, "-d")  # (`-d HINT` would take HINT for a process name)
                dump = await dumped(out, before)
                got[phase] = total(dump) / args.execs
                annotate[f"{label} {phase}"] = dump
            control(proxy.pid, "-i", "off")
        return got
    finally:
        stop_all([proxy])


def top_functions(dump: Path, n: int, per: int) -> str:
    shown = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", str(dump)], capture_output=True, text=True
    ).stdout
    lines = []
    for line in shown.splitlines():
        found = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
        if found:
            count = int(found.group(1).replace(",", ""))
            lines.append(f"{count / per:12,.0f}  {found.group(2)[:150]}")
        if len(lines) >= n:
            break
    return "\n".join(lines)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    trees = {tree_label(ref): tree_at(ref, tmp / f"tree-{i}") for i, ref in enumerate(args.tree)}
    if not trees:
        trees = {"checkout": REPO}
    with ssh_stage(tmp, pdp_timeout_seconds=60) as stage:
        config, token = stage.config, stage.token
        results: dict[str, dict[str, list[float]]] = {t: {p: [] for p in PHASES} for t in trees}
        dumps: dict[str, Path] = {}
        for r in range(args.rounds):
            for label in list(trees) if r % 2 == 0 else list(reversed(trees)):
                got = await measure_tree(trees[label], label, config, tmp, args, token, dumps)
                for phase in PHASES:
                    results[label][phase].append(got[phase])
                print(f"round {r} {label}: " + ", ".join(
                    f"{p} {got[p]:,.0f}" for p in PHASES) + " instructions per exec",
                    flush=True)  # fmt: skip
        for label, phases in results.items():
            print(f"{label}: " + ", ".join(
                f"{p} {statistics.median(v):,.0f}" for p, v in phases.items())
                + " instructions per exec (median)")  # fmt: skip
        if len(trees) == 2:
            a, b = list(trees)
            for p in PHASES:
                ratio = statistics.median(results[b][p]) / statistics.median(results[a][p])
                print(f"{p}: {b} / {a} = {ratio:.3f}")
        if args.annotate:
            for name, dump in dumps.items():
                print(f"-- {name}: inclusive instructions per exec, top {args.annotate}")
                print(top_functions(dump, args.annotate, args.execs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=100)
    parser.add_argument("--tree", action="append", default=[], help="a commit (twice: A/B)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--annotate", type=int, default=0, metavar="N")
    args = parser.parse_args()
    run_in_tmp("portcullis-cg-ssh-", run, args)


if __name__ == "__main__":
    main()
