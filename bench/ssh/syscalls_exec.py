"""The SSH proxy's system calls and CPU per exec, by thread: what callgrind does not count.

Owns the figure a change to the proxy's kernel work is judged by (fewer send()s, fewer
wake-ups): callgrind_exec.py counts user-space instructions only, and a write() to a
loopback socket, which runs the peer's side of TCP in the sender's time, is one
instruction there. sshd (tests/ssh_harness.py) and the PDP run as in bench_ssh.py; one
SSH proxy per tree (`--tree REF`, twice for A/B, unpacked by bench/revision.py or a
directory; none: this checkout), the trees alternating over `--rounds`. Over one
connection, after warm-up execs, each phase — `--execs` execs of the same `uptime` (its
answer reused after the first), then as many of `echo <n>` (each decided) — is run
twice: once under `strace -c -f` (system calls per exec, by name: a count, so nearly
deterministic) and once without it (CPU per exec of each of the proxy's threads, user
and system, from /proc/PID/task: clock ticks, so take many execs).

    python -u bench/ssh/syscalls_exec.py [--execs 100] [--tree REF ...] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import asyncssh
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import REPO, execs, free_port, wait_port  # noqa: E402
from callgrind_exec import PHASES  # noqa: E402

# only now, the project imported: bench/ on the path holds a directory named pdp/
sys.path.append(str(HERE.parent))
from processes import stop_all  # noqa: E402
from stage import run_in_tmp, ssh_stage, tree_at, tree_label  # noqa: E402

SHOWN = ("write", "read", "sendmsg", "recvmsg", "recvfrom", "epoll_wait", "epoll_pwait",
         "futex", "getrandom", "getpid")  # fmt: skip


def thread_ticks(pid: int) -> dict[str, tuple[str, int, int]]:
    """Each thread of `pid`: its name, user and system clock ticks so far."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks[tid] = (name, int(fields[11]), int(fields[12]))
    return ticks


def cpu_by_thread(before: dict[str, tuple[str, int, int]], after: dict[str, tuple[str, int, int]],
                  n: int) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Microseconds of user and system CPU per exec, summed by thread name (the event
    loop's thread is the process's own name)."""
    per_tick = 1e6 / os.sysconf("SC_CLK_TCK") / n
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for tid, (name, user, system) in after.items():
        _, user0, system0 = before.get(tid, (name, 0, 0))
        out[name][0] += (user - user0) * per_tick
        out[name][1] += (system - system0) * per_tick
    return {name: (u, s) for name, (u, s) in out.items() if u or s}


def syscalls(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        found = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if found and found.group(2) != "total":
            counts[found.group(2)] += int(found.group(1))
    return counts


async def measure_tree(tree: Path, label: str, config: dict, tmp: Path, n: int,
                       token: str) -> dict[str, dict[str, float]]:  # fmt: skip
    listen = free_port()
    own = {**config["connections"][0], "listen": f"127.0.0.1:{listen}",
           "spool_dir": str(tmp / f"spool-{label}")}  # fmt: skip
    path = tmp / f"portcullis-{label}.yaml"
    path.write_text(yaml.safe_dump({**config, "connections": [own]}))
    env = dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'proto'}")
    log = tmp / f"proxy-{label}.log"
    proxy = subprocess.Popen([sys.executable, "-m", "proxies", "ssh", "-c", str(path)],
                             cwd=tmp, env=env, stderr=log.open("w"))  # fmt: skip
    got: dict[str, dict[str, float]] = {}
    try:
        wait_port(listen, proxy, log)
        target = dict(host="127.0.0.1", port=listen, username="bench", password=token,
                      client_keys=None, preferred_auth="password", known_hosts=None,
                      agent_path=None, config=None, compression_algs=None)  # fmt: skip
        async with asyncssh.connect(**target) as conn:
            await execs(conn, 5)
            await execs(conn, 5, "warm")
            for phase in PHASES:
                distinct = f"{label}-{time.monotonic_ns()}" if phase == "decided" else ""
                before = thread_ticks(proxy.pid)
                await execs(conn, n, distinct)
                cpu = cpu_by_thread(before, thread_ticks(proxy.pid), n)
                out = tmp / f"strace-{label}-{phase}"
                tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proxy.pid), "-o",
                                           str(out)], stderr=subprocess.DEVNULL)  # fmt: skip
                await asyncio.sleep(1.0)  # attached to every thread
                await execs(conn, n, distinct + "-traced" if distinct else "")
                tracer.send_signal(signal.SIGINT)
                tracer.wait()
                counts = syscalls(out)
                figures = {f"{name} per exec": counts[name] / n for name in SHOWN}
                figures["syscalls per exec"] = sum(counts.values()) / n
                for name, (user, system) in cpu.items():
                    figures[f"cpu {name} us"] = user + system
                    figures[f"cpu {name} sys us"] = system
                got[phase] = figures
        return got
    finally:
        stop_all([proxy])


async def run(args: argparse.Namespace, tmp: Path) -> None:
    trees = {tree_label(ref): tree_at(ref, tmp / f"tree-{i}") for i, ref in enumerate(args.tree)}
    if not trees:
        trees = {"checkout": REPO}
    with ssh_stage(tmp) as stage:
        config, token = stage.config, stage.token
        for r in range(args.rounds):
            for label in list(trees) if r % 2 == 0 else list(reversed(trees)):
                got = await measure_tree(trees[label], label, config, tmp, args.execs, token)
                for phase, figures in got.items():
                    shown = ", ".join(f"{k} {v:.2f}" if "cpu" not in k else f"{k} {v:.0f}"
                                      for k, v in figures.items())  # fmt: skip
                    print(f"round {r} {label} {phase}: {shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=100)
    parser.add_argument("--tree", action="append", default=[], help="a commit (twice: A/B)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    run_in_tmp("portcullis-syscalls-ssh-", run, args)


if __name__ == "__main__":
    main()
