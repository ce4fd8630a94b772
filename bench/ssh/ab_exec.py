"""The SSH proxy's cost per exec, old code against new, alternating on one machine.

Owns the comparison a change to the SSH proxy's per-channel path is judged by on a
shared machine: one sshd (tests/ssh_harness.py) and one PDP, and two SSH proxy processes
for the same connection — one running the proxy as committed at `--old` (default HEAD,
unpacked with `git archive` into a temporary directory, so the checkout is not touched),
one running this checkout (or the commit `--new`, unpacked alike: files others are
editing stay out; either may name a directory holding a tree instead) — then, over one
connection to each in turn (A B B A ...), and to sshd directly beside them, `--execs`
sequential execs of `uptime`: the wall time per exec and the CPU per exec of that proxy
and of the PDP (bench/cpu_meter.py). Wall time moves with the other tenants of the
machine; CPU per exec much less, and alternating keeps a drift from favouring either
side. The PDP and the policy are the old tree's (another engineer's edit in progress to
rego/ or pdp/ cannot stop the run), unless `--pdp new`. Prints each round and the
medians; `--profile` then runs the new side once more under cProfile (the top of it
printed; with `--distinct`, execs of a new line each, every one decided). `--terminal`:
the interleaved turns' execs ask for a terminal (`ssh -t host cmd`: the command's Decide
and the terminal's ssh.shell one), as a dba in pii-readers (the shipped policy's shells).
`--connects N`: then N turns of a fresh connection on each target, each running one
`uptime` and leaving (`ssh host uptime`: login, session opening, upstream connection), and
the proxy's CPU per connection (10 ms ticks: a mean over many). `--relay`: those turns
also reach sshd through a bare uvloop TCP relay (bench/postgres/relay.py), the floor of
one more process on an exec's way, with no SSH of its own.

    python -u bench/ssh/ab_exec.py [--old REF] [--new REF] [--rounds 6] [--execs 200]
                                   [--pdp old|new] [--interleave N [--distinct] [--terminal]]
                                   [--connects N] [--relay] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import (  # noqa: E402
    REPO,
    CPUMeter,
    Sshd,
    execs,
    free_port,
    portcullis_config,
    wait_port,
)

# only now, the project imported: bench/ on the path holds a directory named pdp/
sys.path.append(str(Path(__file__).resolve().parents[1]))
from processes import stop_all  # noqa: E402

sys.path.insert(0, str(HERE.parent / "http"))
from bench_wrk import profile_summary  # noqa: E402
from stage import run_in_tmp, tree_at  # noqa: E402

RELAY = REPO / "bench" / "postgres" / "relay.py"  # a bare uvloop TCP relay
PROFILED = REPO / "bench" / "http" / "profiled_proxy.py"  # SIGUSR1 on, SIGUSR2 written


def policies_of(tree: Path, into: Path) -> Path:
    """The tree's policy, with `echo` an allowed command (the --distinct lines)."""
    policies = into / "rego"
    shutil.copytree(tree / "rego", policies)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["ssh"]["allowed_commands"].append("echo")
    (policies / "data.json").write_text(json.dumps(data))
    return policies


async def run(args: argparse.Namespace, tmp: Path) -> None:
    old_tree = tree_at(args.old, tmp / "old")
    # --new: a commit, not the checkout (whose files others may be editing right now)
    new_tree = tree_at(args.new, tmp / "new") if args.new else REPO
    pdp_tree = old_tree if args.pdp == "old" else new_tree
    sshd = Sshd(tmp / "sshd").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = portcullis_config(tmp, policies_of(pdp_tree, tmp), sshd)
        base = config["connections"][0]
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        pdp_env = dict(os.environ, PYTHONPATH=f"{pdp_tree}:{pdp_tree / 'proto'}")
        groups = "dba,pii-readers" if args.terminal else "pii-readers"
        token = subprocess.run(
            [*cli, "token", "--sub", "bench@example.com", "--groups", groups, "--ttl", "2h"],
            capture_output=True, text=True, check=True, env=pdp_env,
        ).stdout.strip()  # fmt: skip
        pdp_log = tmp / "pdp.log"
        pdp = subprocess.Popen([*cli, "pdp"], cwd=tmp, env=pdp_env, stderr=pdp_log.open("w"))
        procs.append(pdp)
        wait_port(int(config["pdp"]["listen"].rsplit(":", 1)[1]), pdp, pdp_log)
        common: dict[str, Any] = {"known_hosts": None, "agent_path": None, "config": None,
                                  "compression_algs": None}  # fmt: skip
        targets: dict[str, dict[str, Any]] = {
            "direct": dict(host="127.0.0.1", port=sshd.port, username=sshd.user,
                           client_keys=[str(sshd.user_key)], **common),
        }  # fmt: skip
        pids: dict[str, int] = {}
        for side, tree in (("old", old_tree), ("new", new_tree)):
            # the same connection on its own port and spool, beside the other side's
            listen = free_port()
            own = {**base, "listen": f"127.0.0.1:{listen}", "spool_dir": str(tmp / side)}
            side_path = tmp / f"portcullis-{side}.yaml"
            side_path.write_text(yaml.safe_dump({**config, "connections": [own]}))
            env = dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'proto'}")
            cmd = [sys.executable, "-m", "proxies", "ssh", "-c", str(side_path)]
            if args.profile and side == "new":
                cmd[1:3] = [str(PROFILED), str(tmp / "proxy")]
            log = tmp / f"proxy-{side}.log"
            proxy = subprocess.Popen(cmd, cwd=tmp, env=env, stderr=log.open("w"))
            procs.append(proxy)
            wait_port(listen, proxy, log)
            pids[side] = proxy.pid
            targets[side] = dict(host="127.0.0.1", port=listen, username="bench",
                                 password=token, client_keys=None,
                                 preferred_auth="password", **common)  # fmt: skip
        walls: dict[str, list[float]] = {name: [] for name in targets}
        cpu: dict[str, dict[str, list[float]]] = {s: {"proxy": [], "pdp": []} for s in pids}
        conns = {name: await asyncssh.connect(**target) for name, target in targets.items()}
        for conn in conns.values():
            await execs(conn, 5)  # warm-up
        order = ["direct", "old", "new"]
        if args.relay:
            # sshd through a bare uvloop TCP relay (bench/postgres/relay.py: bytes in, bytes
            # out): what one more process on the way costs, with no SSH of its own
            relay_port = free_port()
            relay_log = tmp / "relay.log"
            relay = subprocess.Popen(
                [sys.executable, str(RELAY), str(relay_port), str(sshd.port)],
                cwd=tmp, stderr=relay_log.open("w"),
            )  # fmt: skip
            procs.append(relay)
            wait_port(relay_port, relay, relay_log)
            targets["relay"] = {**targets["direct"], "port": relay_port}
            conns["relay"] = await asyncssh.connect(**targets["relay"])
            await execs(conns["relay"], 5)
        for r in range(args.rounds):
            cells = []
            for name in order if r % 2 == 0 else reversed(order):
                watched = {"proxy": pids.get(name, pdp.pid), "pdp": pdp.pid}
                meter = CPUMeter(watched)
                walls[name].append(await execs(conns[name], args.execs) * 1000)
                used = meter.per(args.execs)
                cell = f"{name} {walls[name][-1]:6.1f} ms"
                if name in cpu:
                    cpu[name]["proxy"].append(used["proxy_us"])
                    cpu[name]["pdp"].append(used["pdp_us"])
                    cell += f" (proxy {used['proxy_us']:5.0f} µs, PDP {used['pdp_us']:5.0f} µs)"
                cells.append(cell)
            print(f"round {r}: " + "   ".join(sorted(cells)), flush=True)
        med = {name: statistics.median(v) for name, v in walls.items()}
        out: dict[str, Any] = {"old_ref": args.old, "execs": args.execs, "rounds": args.rounds,
                               "exec_ms": med}  # fmt: skip
        for side in pids:
            out[f"{side}_added_ms"] = med[side] - med["direct"]
            out[f"{side}_proxy_us"] = statistics.median(cpu[side]["proxy"])
            out[f"{side}_pdp_us"] = statistics.median(cpu[side]["pdp"])
        print(
            f"per exec (median of {args.rounds}): direct {med['direct']:.1f} ms; "
            f"old +{out['old_added_ms']:.1f} ms, proxy {out['old_proxy_us']:.0f} µs, PDP "
            f"{out['old_pdp_us']:.0f} µs; new +{out['new_added_ms']:.1f} ms, proxy "
            f"{out['new_proxy_us']:.0f} µs, PDP {out['new_pdp_us']:.0f} µs; new/old proxy CPU "
            f"{out['new_proxy_us'] / out['old_proxy_us']:.3f}"
        )
        turns = order + (["relay"] if args.relay else [])
        if args.interleave:
            out["interleaved"] = await interleaved(
                conns, turns, args.interleave, args.distinct, args.terminal
            )
        if args.connects:
            out["connects"] = await connects(targets, turns, args.connects, pids, pdp.pid)
        print(json.dumps(out))
        if args.profile:
            os.kill(pids["new"], signal.SIGUSR1)
            await execs(conns["new"], args.execs, "profiled" if args.distinct else "")
            os.kill(pids["new"], signal.SIGUSR2)
            written = tmp / "proxy.0.prof"
            for _ in range(100):
                if written.exists():
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            kept = Path(tempfile.gettempdir()) / f"portcullis-ab-ssh-{os.getpid()}.prof"
            shutil.copy(written, kept)
            print(f"profile of the new side, {args.execs} execs (kept in {kept}):")
            print(profile_summary(written, top=30))
        for conn in conns.values():
            conn.close()
    finally:
        stop_all(procs)
        sshd.stop()


async def interleaved(
    conns: dict[str, asyncssh.SSHClientConnection],
    order: list[str],
    n: int,
    distinct: bool,
    terminal: bool = False,
) -> dict[str, float]:
    """One exec on each target in turn, n times (the order rotating): the median single
    exec of each, and the medians of the differences within each turn — a load that
    drifts over seconds weighs on all three alike. `uptime` each time, or with `distinct`
    a new line each turn (`echo turn-<i>`: decided by the PDP on every side); `terminal`:
    each exec with a terminal (a pty request before it)."""
    pty: dict[str, Any] = {"term_type": "xterm", "term_size": (80, 24)} if terminal else {}
    times: dict[str, list[float]] = {name: [] for name in order}
    for i in range(n):
        turn = order[i % len(order) :] + order[: i % len(order)]
        for name in turn:
            started = time.perf_counter()
            result = await conns[name].run(f"echo turn-{i}" if distinct else "uptime", **pty)
            times[name].append((time.perf_counter() - started) * 1000)
            if result.exit_status != 0:
                raise RuntimeError(f"exec exited {result.exit_status} through {name}")
    med = {f"{name}_ms": statistics.median(v) for name, v in times.items()}
    for side in [name for name in order if name != "direct"]:
        pairs = zip(times[side], times["direct"], strict=True)
        med[f"{side}_added_ms"] = statistics.median(a - b for a, b in pairs)
    pairs = zip(times["new"], times["old"], strict=True)
    med["new_minus_old_ms"] = statistics.median(a - b for a, b in pairs)
    relay = f", a bare TCP relay +{med['relay_added_ms']:.2f} ms" if "relay" in times else ""
    print(
        f"interleaved, {n} turns{' of new lines' if distinct else ''}"
        f"{' with a terminal' if terminal else ''}: single exec medians "
        f"direct {med['direct_ms']:.1f} ms, old "
        f"{med['old_ms']:.1f} ms, new {med['new_ms']:.1f} ms; added within a turn (median): "
        f"old +{med['old_added_ms']:.2f} ms, new +{med['new_added_ms']:.2f} ms, new - old "
        f"{med['new_minus_old_ms']:+.2f} ms{relay}",
        flush=True,
    )
    return med


async def connects(
    targets: dict[str, dict[str, Any]],
    order: list[str],
    n: int,
    pids: dict[str, int],
    pdp_pid: int,
) -> dict[str, float]:
    """n turns of a fresh connection on each target (the order rotating) that runs one
    `uptime` and leaves (`ssh host uptime`: the login, and through Portcullis the session's
    opening at the PDP and its upstream connection): the median of each, the medians of
    the differences within a turn, and the CPU per connection of each proxy and of the PDP
    (the PDP's over the turns of both sides)."""
    times: dict[str, list[float]] = {name: [] for name in order}
    used: dict[str, list[float]] = {side: [] for side in pids}
    for i in range(n):
        turn = order[i % len(order) :] + order[: i % len(order)]
        for name in turn:
            meter = CPUMeter({"proxy": pids.get(name, pdp_pid)})
            started = time.perf_counter()
            async with asyncssh.connect(**targets[name]) as conn:
                result = await conn.run("uptime")
            times[name].append((time.perf_counter() - started) * 1000)
            if result.exit_status != 0:
                raise RuntimeError(f"exec exited {result.exit_status} through {name}")
            if name in used:
                used[name].append(meter.per(1)["proxy_us"])
    med = {f"{name}_ms": statistics.median(v) for name, v in times.items()}
    for side in [name for name in order if name != "direct"]:
        pairs = zip(times[side], times["direct"], strict=True)
        med[f"{side}_added_ms"] = statistics.median(a - b for a, b in pairs)
    for side in pids:
        med[f"{side}_proxy_us"] = statistics.mean(used[side])
    pairs = zip(times["new"], times["old"], strict=True)
    med["new_minus_old_ms"] = statistics.median(a - b for a, b in pairs)
    relay = f", a bare TCP relay +{med['relay_added_ms']:.2f} ms" if "relay" in times else ""
    print(
        f"fresh connections, {n} turns (login, one uptime, leave): medians direct "
        f"{med['direct_ms']:.1f} ms, old {med['old_ms']:.1f} ms, new {med['new_ms']:.1f} ms; "
        f"added within a turn (median): old +{med['old_added_ms']:.2f} ms, new "
        f"+{med['new_added_ms']:.2f} ms, new - old {med['new_minus_old_ms']:+.2f} ms; proxy "
        f"CPU per connection (mean) old {med['old_proxy_us']:.0f} us, new "
        f"{med['new_proxy_us']:.0f} us{relay}",
        flush=True,
    )
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--old", default="HEAD", help="the commit (or a directory holding a tree) compared with"
    )
    parser.add_argument(
        "--new", default="", help="a commit (or a tree's directory), not the checkout"
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--execs", type=int, default=200)
    parser.add_argument("--pdp", choices=("old", "new"), default="old")
    parser.add_argument(
        "--interleave", type=int, default=0, metavar="N",
        help="then N turns of one exec on each target (medians of single execs)",
    )  # fmt: skip
    parser.add_argument(
        "--distinct", action="store_true",
        help="the interleaved turns (and --profile) run a new line each",
    )  # fmt: skip
    parser.add_argument(
        "--terminal", action="store_true",
        help="the interleaved turns' execs with a terminal (as a dba in pii-readers)",
    )  # fmt: skip
    parser.add_argument(
        "--connects", type=int, default=0, metavar="N",
        help="then N turns of a fresh connection running one exec on each target",
    )  # fmt: skip
    parser.add_argument(
        "--relay", action="store_true",
        help="the turns of --interleave/--connects also through a bare TCP relay to sshd",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="then the new side under cProfile")
    args = parser.parse_args()
    run_in_tmp("portcullis-ab-ssh-", run, args)


if __name__ == "__main__":
    main()
