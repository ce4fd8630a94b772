"""How long a decided exec waits for its Decide, beside a Decide asked directly.

Owns the question why a decided exec through the SSH proxy adds more than the PDP's
Decide p50 (bench_ssh.py's target): is the wait the PDP's, the proxy's, or the moment's?
sshd, the PDP and the SSH proxy run as in bench_ssh.py, the proxy with a prelude that
times each Decide as the proxy awaits it (decide_wait_prelude.py), the PDP with one that
times the stages of each Decide inside it (pdp_stages_prelude.py: the handler whole, the
evaluation's worker round trip, the decision record's commit). Then `--turns` turns,
each: one exec of a new `echo <n>` through the proxy (timed whole; its Decide timed in
the proxy), one direct exec of it on sshd (the paired difference), one Decide of a new
line asked from this process on a session of its own, right after (the PDP idle for as
long as before the exec's own Decide: an exec's length), and a pair of `uptime` execs
(through the proxy, its answer reused; and direct); within a pair the order alternates.
Then `--turns` Decides back to back (bench_ssh's p50 loop: a PDP kept busy). Prints the
medians of each.

    python -u bench/ssh/decide_wait.py [--turns 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncssh

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import COMMAND, exec_once, execs, wait_port  # noqa: E402
from callgrind_pdp import DirectDecides  # noqa: E402
from stage import run_in_tmp, ssh_stage  # noqa: E402

PROFILED = HERE.parent / "http" / "profiled_proxy.py"
PROFILED_PDP = HERE / "profiled_pdp.py"


def stage_medians(path: Path, sessions: dict[str, str]) -> dict[str, dict[str, float]]:
    """{session label: {stage: median ms}} of the stages file, which is then removed."""
    found: dict[str, dict[str, list[float]]] = {}
    for line in path.read_text().splitlines():
        stage, session, ms = line.split()
        if session in sessions:
            found.setdefault(sessions[session], {}).setdefault(stage, []).append(float(ms))
    path.unlink()
    return {k: {s: statistics.median(v) for s, v in m.items()} for k, m in found.items()}


def said(medians: dict[str, float]) -> str:
    return ", ".join(f"{stage} {ms:.2f}" for stage, ms in sorted(medians.items()))


async def timed_decides(direct: DirectDecides, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await direct.run(1)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def run(args: argparse.Namespace, tmp: Path) -> None:
    with ssh_stage(tmp, start_pdp=False) as stage:
        config, token, procs, sshd, cli = (
            stage.config,
            stage.token,
            stage.procs,
            stage.sshd,
            stage.cli,
        )
        path = stage.path
        pdp_log = tmp / "pdp.log"
        stages = tmp / "pdp-stages.txt"
        pdp_env = dict(os.environ, PORTCULLIS_BENCH_PRELUDE=str(HERE / "pdp_stages_prelude.py"),
                       PORTCULLIS_PDP_STAGES=str(stages))  # fmt: skip
        pdp = subprocess.Popen(
            [sys.executable, str(PROFILED_PDP), str(tmp / "unused"), *cli[3:], "pdp"],
            cwd=tmp, env=pdp_env, stderr=pdp_log.open("w"),
        )  # fmt: skip
        procs.append(pdp)
        address = config["pdp"]["listen"]
        wait_port(int(address.rsplit(":", 1)[1]), pdp, pdp_log)
        waits = tmp / "decide-waits.txt"
        env = dict(os.environ, PORTCULLIS_BENCH_PRELUDE=str(HERE / "decide_wait_prelude.py"),
                   PORTCULLIS_DECIDE_TIMES=str(waits))  # fmt: skip
        proxy_log = tmp / "proxy.log"
        proxy = subprocess.Popen(
            [sys.executable, str(PROFILED), str(tmp / "unused"), "ssh", "-c", str(path)],
            cwd=tmp, env=env, stderr=proxy_log.open("w"),
        )  # fmt: skip
        procs.append(proxy)
        listen = int(config["connections"][0]["listen"].rsplit(":", 1)[1])
        wait_port(listen, proxy, proxy_log)
        common = dict(known_hosts=None, agent_path=None, config=None, compression_algs=None)
        credential = (tmp / "var" / "proxy.credential").read_text().strip()
        through_exec: list[float] = []
        direct_exec: list[float] = []
        after_exec: list[float] = []
        reused_through: list[float] = []
        reused_direct: list[float] = []
        async with (
            asyncssh.connect(host="127.0.0.1", port=listen, username="bench", password=token,
                             client_keys=None, preferred_auth="password", **common) as through,
            asyncssh.connect(host="127.0.0.1", port=sshd.port, username=sshd.user,
                             client_keys=[str(sshd.user_key)], **common) as direct,
            DirectDecides(address, credential, token) as decides,
        ):  # fmt: skip
            await execs(through, 5, "warm")
            await decides.run(5)
            waits.unlink(missing_ok=True)
            stages.unlink(missing_ok=True)
            for i in range(args.turns):
                line = f"echo t{os.getpid()}-{i}"
                pair = [(through, through_exec), (direct, direct_exec)]
                for conn, times in pair if i % 2 == 0 else reversed(pair):
                    times.append(await exec_once(conn, line))
                after_exec += await timed_decides(decides, 1)
                pair = [(through, reused_through), (direct, reused_direct)]
                for conn, times in pair if i % 2 == 0 else reversed(pair):
                    times.append(await exec_once(conn, COMMAND))
            in_proxy = [float(v) for v in waits.read_text().split()]
            ids = {line.split()[1] for line in stages.read_text().splitlines()}
            labels = {i: "exec" for i in ids if i != decides.session_id}  # the proxy's
            labels[decides.session_id] = "after an exec"
            turns = stage_medians(stages, labels)
            busy = await timed_decides(decides, args.turns)
            loop = stage_medians(stages, {decides.session_id: "back to back"})
        paired = [a - b for a, b in zip(through_exec, direct_exec, strict=True)]
        reused = [a - b for a, b in zip(reused_through, reused_direct, strict=True)]
        med = statistics.median
        print(
            f"{args.turns} turns: decided exec through the proxy {med(through_exec):.2f} ms, "
            f"direct {med(direct_exec):.2f} ms, paired difference {med(paired):+.2f} ms; "
            f"reused exec {med(reused_through):.2f} ms, direct {med(reused_direct):.2f} ms, "
            f"paired difference {med(reused):+.2f} ms"
        )
        print(
            f"  Decide as the proxy waits for it in an exec: {med(in_proxy):.2f} ms "
            f"({len(in_proxy)} calls); in the PDP: {said(turns.get('exec', {}))}"
        )
        print(
            f"  Decide from here, after an exec (PDP idle an exec's length): "
            f"{med(after_exec):.2f} ms; in the PDP: {said(turns.get('after an exec', {}))}"
        )
        print(
            f"  Decide from here, back to back (bench_ssh's p50): {med(busy):.2f} ms; "
            f"in the PDP: {said(loop.get('back to back', {}))}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    args = parser.parse_args()
    run_in_tmp("portcullis-decide-wait-", run, args)


if __name__ == "__main__":
    main()
