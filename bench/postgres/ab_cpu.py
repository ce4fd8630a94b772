"""Old code against new on a shared machine: the Postgres proxy of a base commit and of this
checkout, side by side behind one PDP, pgbench -S alternated between them (and the bare
relay), CPU per transaction of each proxy process.

A loaded VM moves one pgbench run's TPS by half and its CPU per transaction by a third;
two versions measured minutes apart cannot be compared. Here both proxies run at once
(the base commit's tree from `git archive`, each proxy its own process with its own code on
PYTHONPATH, the same configuration but for the port), their runs alternate, the order
flipped every round, and the medians are printed with every round's figures, beside the
bare uvloop relay (bench/postgres/relay.py) as the floor. The PDP and the policy are the
base commit's for both. Decision cache on, or off with --cache off (every statement decided
by the PDP: the uncached path's CPU per statement). Not a test: nothing asserts.

    python -u bench/postgres/ab_cpu.py --base c7b4652 [--rounds 4] [--seconds 8]
        [--modes simple,prepared] [--clients 8] [--new DIR] [--cache on|off] [--pgbouncer]

(--base: a commit, or a directory holding a tree; --new: a tree to run as "new" instead of
this checkout, e.g. one with a patch applied; --pgbouncer: pgbouncer in the rounds too.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from bench_pgbench import (  # noqa: E402
    create_scratch,
    drop_scratch,
    free_port,
    measured,
    scratch_names,
    sh,
    start_pgbouncer,
    wait_port,
)

# only now, the project imported: bench/ on the path holds a directory named pdp/
sys.path.append(str(Path(__file__).resolve().parents[1]))
from portcullis_yaml import pdp_and_identity, postgres_connection  # noqa: E402
from revision import tree_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base",
        required=True,
        help="the commit to compare against, or a directory holding a tree (e.g. a copy of "
        "this checkout before a change)",
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--modes", default="simple,prepared")
    parser.add_argument("--cache", choices=("on", "off"), default="on")
    parser.add_argument("--new", type=Path, default=REPO, help="the tree to run as new")
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="pgbouncer (session pooling) in the rounds too, and each tree's TPS against it",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-ab-"))
    tmp.chmod(0o755)  # pgbouncer runs as postgres and reads its configuration here
    base = Path(args.base)
    trees = {
        "base": base.resolve() if base.is_dir() else tree_of(args.base, tmp / "base"),
        "new": args.new.resolve(),
    }
    db, role, password = scratch_names("portcullis_ab")
    procs: list[subprocess.Popen] = []
    try:
        create_scratch(db, role, password)
        sh(["pgbench", "-i", "-q", "-s", "10", "-h", "127.0.0.1", "-U", role, db])
        policies = tmp / "rego"  # the base's, with the bench's connection declared
        shutil.copytree(trees["base"] / "rego", policies)
        data = json.loads((policies / "data.json").read_text())
        connections = data["portcullis"]["connections"]
        connections["bench-cache"] = connections["orders-db"]
        (policies / "data.json").write_text(json.dumps(data))
        pdp_port = free_port()
        ports = {name: free_port() for name in trees}
        configs = {}
        for name in trees:
            config = {
                **pdp_and_identity(
                    tmp,
                    policies,
                    pdp_port,
                    proxy_key=str(tmp / "proxy.key"),
                    proxy_credential_file=str(tmp / "proxy.credential"),
                ),
                "connections": [
                    postgres_connection(
                        "bench-cache",
                        ports[name],
                        "127.0.0.1:5432",
                        db,
                        role,
                        password,
                        decision_cache=args.cache == "on",
                    )
                ],
            }
            configs[name] = tmp / f"{name}.yaml"
            configs[name].write_text(yaml.safe_dump(config))
        base_env = {**os.environ, "PYTHONPATH": f"{trees['base']}/proto:{trees['base']}"}
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(configs["base"])]
        token = sh(
            [*cli, "token", "--sub", "bench@example.com", "--groups", "dba,pii-readers",
             "--ttl", "2h"],
            cwd=trees["base"], env=base_env,
        ).stdout.strip()  # fmt: skip
        pdp = subprocess.Popen(
            [*cli, "pdp"], cwd=trees["base"], env=base_env, stderr=subprocess.DEVNULL
        )
        procs.append(pdp)
        wait_port(pdp_port)
        pids = {}
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": f"{tree}/proto:{tree}"}
            proxy = subprocess.Popen(
                [sys.executable, "-m", "proxies", "postgres", "-c", str(configs[name])],
                cwd=tree, env=env, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proxy)
            pids[name] = proxy.pid
        relay_port = free_port()
        relay = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("relay.py")), str(relay_port), "5432"]
        )
        procs.append(relay)
        pids["relay"] = relay.pid
        targets = {name: (ports[name], "agent", token) for name in trees}
        targets["relay"] = (relay_port, role, "")
        if args.pgbouncer:
            bouncer, bouncer_port = start_pgbouncer(tmp, db, role, password, "session", 100, 20)
            procs.append(bouncer)
            pids["pgbouncer"] = bouncer.pid
            targets["pgbouncer"] = (bouncer_port, role, "")
        for port, _, _ in targets.values():
            wait_port(port)
        print(
            f"base {args.base} against this checkout, decision cache {args.cache}; "
            f"load {os.getloadavg()[0]:.1f}"
        )
        for mode in args.modes.split(","):
            for port, user, secret in targets.values():  # warm each up
                measured({}, port, db, user, mode, args.clients, 2, secret)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for i in range(args.rounds):
                for name in list(targets)[:: 1 if i % 2 == 0 else -1]:
                    port, user, secret = targets[name]
                    watched = {"proxy": pids[name], "pdp": pdp.pid}
                    run = measured(watched, port, db, user, mode, args.clients, args.seconds,
                                   secret)  # fmt: skip
                    runs[name].append(run)
                    proxy_us, pdp_us = run.get("proxy_us", 0), run.get("pdp_us", 0)
                    print(
                        f"  {mode:8} {name:5} {run['tps']:7.0f} tps  proxy {proxy_us:6.1f}"
                        f" µs/tx  PDP {pdp_us:5.1f}  machine {run.get('machine_us', 0):6.1f}"
                        f"  steal {run['steal']:.0%}"
                        + (f"  ERROR {run['error']}" if "error" in run else ""),
                        flush=True,
                    )
            for name, done in runs.items():
                print(
                    f"{mode:8} {name:5} median: {statistics.median(r['tps'] for r in done):7.0f}"
                    f" tps, proxy {statistics.median(r.get('proxy_us', 0) for r in done):6.1f}"
                    f" µs/tx, PDP {statistics.median(r.get('pdp_us', 0) for r in done):5.1f}"
                )
            for name in trees:
                for peer in ("relay", "pgbouncer")[: 2 if args.pgbouncer else 1]:
                    ratios = [
                        a["tps"] / b["tps"]
                        for a, b in zip(runs[name], runs[peer], strict=True)
                        if a["tps"] and b["tps"]  # (a failed run: its error is printed)
                    ]
                    if ratios:
                        print(f"{mode:8} {name:5} / {peer}, TPS of the round's pair: median "
                              f"{statistics.median(ratios):.2f}")  # fmt: skip
        print(f"load {os.getloadavg()[0]:.1f}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop_scratch(db, role)


if __name__ == "__main__":
    main()
