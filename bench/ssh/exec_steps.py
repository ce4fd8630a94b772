"""The SSH proxy's own steps on an exec's way, in its own process, two trees alternating.

Owns the figure exec_timeline.py cannot give: there the client, the PDP and the proxy
share one event loop, so whatever the proxy does is on the client's way whatever its
order; here each runs in its own process, as deployed, and the proxy's work that
overlaps the client's or sshd's is seen to. sshd and the PDP run as in bench_ssh.py; one
SSH proxy per tree (`--tree REF`, twice for A/B, unpacked by bench/revision.py, or a
directory holding one; none: this checkout), each with exec_steps_prelude.py
(bench/http/profiled_proxy.py's PORTCULLIS_BENCH_PRELUDE) recording the moments of each
exec inside the proxy. Then
`--rounds` rounds of `--execs` execs of `uptime` (its answer reused) on one connection
to each proxy, the order alternating; with `--distinct`, of `echo <n>`, a new line each
time (every one decided); with `--terminal`, each exec with a terminal (a pty request
first: the terminal's ssh.shell Decide besides the command's; the token a dba's in
pii-readers, the shipped policy's shells). Prints per tree the median of: the client's
channel confirmed to its exec request read (the client's turn, and whatever the proxy was busy with
meanwhile), the exec request to the exec written upstream, and the upstream's end (EOF
and exit status) to the client's exit status written; and the wall time per exec. A
decided line's way in is also told in three: the exec request to its Decide asked of the
PDP client, the Decide's wait, and its answer to the exec written upstream; and every
moment the prelude marks, after the exec request (when the Decide was written to the
decision stream, when the next channel's upstream channel was opened ahead, ...), and
the median time from each step of a decided exec's way to the next within each exec
(ANSWER_PATH: the Decide's moments, its answer read, handed on, returned; with
`--terminal` also the terminal's request written upstream before the exec).

    python -u bench/ssh/exec_steps.py [--tree REF [--tree REF]] [--execs 25] [--rounds 8]
                                      [--distinct] [--terminal]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import REPO, execs, free_port, wait_port  # noqa: E402

# only now, the project imported: bench/ on the path holds a directory named pdp/
sys.path.append(str(HERE.parent))
from stage import mint, run_in_tmp, ssh_stage, tree_at, tree_label  # noqa: E402

PROFILED = HERE.parent / "http" / "profiled_proxy.py"
PRELUDE = HERE / "exec_steps_prelude.py"
STEPS = ("open", "exec_request", "exec_sent", "exit_status", "eof", "exit_sent")


# the prelude's moments after the exec request, in the order they usually come
MOMENTS = ("session_started", "run", "decide_or_wait", "decide_asked", "decide_write",
           "decide_written", "decide_read", "ask_done", "calls_done", "spare", "decided",
           "pty_sent", "exec_sent", "exit_status", "eof", "exit_sent")  # fmt: skip


# a decided exec's way from the exec request to the exec written upstream, step by step
ANSWER_PATH = ("exec_request", "decide_asked", "decide_write", "decide_read", "ask_done",
               "calls_done", "decided", "exec_sent")  # fmt: skip


def moments(path: Path) -> str:
    """Each moment's median after the exec request read, in microseconds (those seen)."""
    rows = [
        {k: float(v) for k, v in (pair.split("=") for pair in line.split())}
        for line in path.read_text().splitlines()
    ]
    seen = []
    for step in MOMENTS:
        after = [r[step] - r["exec_request"] for r in rows if step in r and "exec_request" in r]
        if after:
            seen.append(f"{step} +{statistics.median(after) * 1e6:.0f}")
    return "; ".join(seen)


def gaps(path: Path, chain: tuple[str, ...]) -> str:
    """The median time from each moment of `chain` to the next, within each exec (those
    that have them all), in microseconds: a difference of medians of moments after a
    varying wait (the Decide's) says little of the steps between."""
    rows = [
        {k: float(v) for k, v in (pair.split("=") for pair in line.split())}
        for line in path.read_text().splitlines()
    ]
    rows = [r for r in rows if all(step in r for step in chain)]
    if not rows:
        return ""
    spans = [
        f"{a} -> {b} {statistics.median(r[b] - r[a] for r in rows) * 1e6:.0f}"
        for a, b in itertools.pairwise(chain)
    ]
    return f"{'; '.join(spans)} ({len(rows)} execs)"


def step_medians(path: Path) -> dict[str, float]:
    """Microseconds (medians) of each span, from the prelude's lines."""
    rows = []
    for line in path.read_text().splitlines():
        row = {k: float(v) for k, v in (pair.split("=") for pair in line.split())}
        if all(step in row for step in STEPS):
            rows.append(row)

    def median(values: list[float]) -> float:
        return statistics.median(values) * 1e6

    def span(start: str, end: str) -> float:
        """A decided line's span (0: no line was decided)."""
        decided = [r[end] - r[start] for r in rows if "decide_asked" in r and "decided" in r]
        return median(decided) if decided else 0.0

    return {
        "execs": len(rows),
        "request_to_asked_us": span("exec_request", "decide_asked"),
        "decide_wait_us": span("decide_asked", "decided"),
        "decided_to_upstream_us": span("decided", "exec_sent"),
        "open_to_request_us": median([r["exec_request"] - r["open"] for r in rows]),
        "request_to_upstream_us": median([r["exec_sent"] - r["exec_request"] for r in rows]),
        "end_to_exit_us": median([r["exit_sent"] - max(r["eof"], r["exit_status"]) for r in rows]),
    }


async def run(args: argparse.Namespace, tmp: Path) -> None:
    trees = {tree_label(ref): tree_at(ref, tmp / f"tree-{i}") for i, ref in enumerate(args.tree)}
    if not trees:
        trees = {"checkout": REPO}
    conns: dict[str, Any] = {}
    with ssh_stage(tmp) as stage:
        config, token, procs = stage.config, stage.token, stage.procs
        if args.terminal:
            token = mint(stage.cli, "dba,pii-readers")
        pty: dict[str, Any] = {"term_type": "xterm", "term_size": (80, 24)} if args.terminal else {}
        try:
            files: dict[str, Path] = {}
            for i, (label, tree) in enumerate(trees.items()):
                listen = free_port()
                own = {**config["connections"][0], "listen": f"127.0.0.1:{listen}",
                       "spool_dir": str(tmp / f"spool-{i}")}  # fmt: skip
                side = tmp / f"portcullis-{i}.yaml"
                side.write_text(yaml.safe_dump({**config, "connections": [own]}))
                files[label] = tmp / f"steps-{i}.txt"
                env = dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'proto'}",
                           PORTCULLIS_BENCH_PRELUDE=str(PRELUDE),
                           PORTCULLIS_EXEC_STEPS=str(files[label]))  # fmt: skip
                log = tmp / f"proxy-{i}.log"
                proxy = subprocess.Popen(
                    [sys.executable, str(PROFILED), str(tmp / "unused"), "ssh", "-c", str(side)],
                    cwd=tmp, env=env, stderr=log.open("w"),
                )  # fmt: skip
                procs.append(proxy)
                wait_port(listen, proxy, log)
                conns[label] = await asyncssh.connect(
                    host="127.0.0.1", port=listen, username="bench", password=token,
                    client_keys=None, preferred_auth="password", known_hosts=None,
                    agent_path=None, config=None, compression_algs=None,
                )  # fmt: skip
                await execs(conns[label], 5, "warm" if args.distinct else "", **pty)
            for steps in files.values():
                steps.open("w").close()  # the warm-up's lines (the prelude appends)
            walls: dict[str, list[float]] = {label: [] for label in trees}
            for r in range(args.rounds):
                for label in list(trees) if r % 2 == 0 else list(reversed(trees)):
                    line = f"{label}-{r}" if args.distinct else ""
                    walls[label].append(await execs(conns[label], args.execs, line, **pty) * 1000)
            for label in trees:
                got = step_medians(files[label])
                print(
                    f"{label}: {got['execs']:.0f} execs, wall {statistics.median(walls[label]):.1f}"
                    f" ms per exec; confirmed -> exec request read {got['open_to_request_us']:.0f}"
                    f" us; exec request -> exec written upstream "
                    f"{got['request_to_upstream_us']:.0f} us; upstream's end -> client's exit "
                    f"status written {got['end_to_exit_us']:.0f} us (medians)"
                )
                if args.distinct:
                    print(
                        f"  decided: exec request -> Decide asked {got['request_to_asked_us']:.0f}"
                        f" us; Decide's wait {got['decide_wait_us']:.0f} us; answer -> exec "
                        f"written upstream {got['decided_to_upstream_us']:.0f} us (medians)"
                    )
                    print(f"  after the exec request (us): {moments(files[label])}")
                    print(f"  within each exec (us): {gaps(files[label], ANSWER_PATH)}")
                    if args.terminal:
                        chain = ("decided", "pty_sent", "exec_sent")
                        print(f"  the terminal's request (us): {gaps(files[label], chain)}")
        finally:
            for conn in conns.values():
                conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], help="a commit (twice: A/B)")
    parser.add_argument("--execs", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--distinct", action="store_true", help="a new line each exec (decided)")
    parser.add_argument("--terminal", action="store_true", help="each exec with a terminal")
    args = parser.parse_args()
    run_in_tmp("portcullis-steps-ssh-", run, args)


if __name__ == "__main__":
    main()
