"""The HTTP proxy's CPU per cached request, old code against new, alternating on one machine.

Owns the comparison a change to the proxy's per-request path is judged by on a shared
machine: one upstream (bench/http/upstream.py) and one PDP, and two proxy processes with
the decision cache on (the bench-cache connection of bench_wrk.py and its twin) — one
running the proxy as committed at `--old` (default HEAD, unpacked with `git archive` into
a temporary directory, so the checkout is not touched), one running this checkout — then
`wrk` against each in turn, A B A B ..., each run's CPU of that proxy process divided by
its requests (bench/cpu_meter.py). Throughput moves with the other tenants of the
machine; CPU per request moves much less, and alternating keeps a drift from favouring
either side. Prints each pair and the medians, and the new/old ratio of the medians.

    python -u bench/http/ab_cpu.py [--old REF] [--rounds 6] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
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

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_wrk import (  # noqa: E402
    REPO,
    CPUMeter,
    bench_policies,
    fetch,
    free_port,
    portcullis_config,
    profile_summary,
    wait_port,
    wrk,
)

# only now, the project imported: bench/ on the path holds a directory named pdp/
sys.path.append(str(Path(__file__).resolve().parents[1]))
from processes import stop_all  # noqa: E402
from revision import tree_of  # noqa: E402

TWIN = "bench-cache-b"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="HEAD", help="the commit the checkout is compared with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--path", default="/doc.json")
    parser.add_argument(
        "--profile", action="store_true", help="then one run of the new side under cProfile"
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="both proxies under valgrind's callgrind: instructions per request (user space; "
        "the same on a loaded machine as on a quiet one), not CPU time",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-ab-http-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        old_tree = tree_of(args.old, tmp / "old")
        upstream_port = free_port()
        upstream = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), str(upstream_port)])
        procs.append(upstream)
        wait_port(upstream_port)
        policies = bench_policies(tmp, old_tree / "rego")  # as committed
        decision = policies / "portcullis" / "decision.rego"
        text = decision.read_text()
        decision.write_text(
            text.replace(
                'input.connection.name == "bench-cache"',
                f'input.connection.name in {{"bench-cache", "{TWIN}"}}',
            )
        )
        config = portcullis_config(tmp, policies, upstream_port)
        cache = next(c for c in config["connections"] if c["name"] == "bench-cache")
        config["connections"] = [
            cache,
            {**cache, "name": TWIN, "listen": f"127.0.0.1:{free_port()}"},
        ]
        data_file = policies / "data.json"
        data = json.loads(data_file.read_text())
        data["portcullis"]["connections"][TWIN] = data["portcullis"]["connections"]["bench-cache"]
        data_file.write_text(json.dumps(data))
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        token = subprocess.run(
            [*cli, "token", "--sub", "bench@example.com", "--groups", "dba,pii-readers"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        pdp = subprocess.Popen([*cli, "pdp"], cwd=tmp, stderr=(tmp / "pdp.log").open("w"))
        procs.append(pdp)
        wait_port(int(config["pdp"]["listen"].rsplit(":", 1)[1]), pdp, tmp / "pdp.log")
        sides: dict[str, tuple[str, int]] = {}
        for side, tree, name in (("old", old_tree, "bench-cache"), ("new", REPO, TWIN)):
            env = dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'proto'}")
            cmd = [sys.executable, "-m", "proxies", "http", "--connection", name, "-c", str(path)]
            if args.profile and side == "new":
                cmd[1:3] = [str(HERE / "profiled_proxy.py"), str(tmp / "proxy")]
            if args.callgrind:
                cmd[:0] = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                           f"--callgrind-out-file={tmp}/callgrind.{side}"]  # fmt: skip
            log = tmp / f"proxy-{side}.log"
            proxy = subprocess.Popen(cmd, cwd=tree, env=env, stderr=log.open("w"))
            procs.append(proxy)
            listen = next(c["listen"] for c in config["connections"] if c["name"] == name)
            wait_port(int(listen.rsplit(":", 1)[1]), proxy, log, 60 * (20 if args.callgrind else 1))
            sides[side] = (f"http://{listen}{args.path}", proxy.pid)
        auth = {"Authorization": f"Bearer {token}"}
        expected = fetch(f"http://127.0.0.1:{upstream_port}{args.path}", {})
        for side, (url, _) in sides.items():
            for attempt in range(6):  # (under valgrind a first request can be slow)
                try:
                    if fetch(url, auth) == expected:
                        break
                except OSError:
                    pass
                if attempt == 5:
                    raise RuntimeError(f"the {side} proxy does not answer as the upstream does")
            wrk(url, 2, args.connections, 1, auth)  # warm-up
        costs: dict[str, list[float]] = {"old": [], "new": []}
        served = {"old": 0.0, "new": 0.0}
        rates: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            cells = {}
            for side in order:
                url, pid = sides[side]
                meter = CPUMeter({"proxy": pid})
                if args.callgrind:
                    subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True,
                                   capture_output=True)  # fmt: skip
                result = wrk(url, args.seconds, args.connections, 1, auth)
                if args.callgrind:
                    subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True,
                                   capture_output=True)  # fmt: skip
                    served[side] += result["requests"]
                used = meter.per(result["requests"])
                if not result["requests"]:
                    raise RuntimeError(f"wrk got no answer from the {side} proxy in time")
                costs[side].append(used["proxy_us"])
                rates[side].append(result["rps"])
                cells[side] = (
                    f"{used['proxy_us']:6.1f} µs {result['rps']:7.0f} req/s"
                    f" steal {100 * used['steal']:3.0f}%"
                )
            print(f"round {r}: old {cells['old']}   new {cells['new']}", flush=True)
        if args.callgrind:
            per = {}
            for _, pid in sides.values():
                os.kill(pid, signal.SIGTERM)  # valgrind writes its counts as the process ends
            for proc in procs[-2:]:
                proc.wait(timeout=300)
            for side in sides:
                text = (tmp / f"callgrind.{side}").read_text(errors="replace")
                totals = [line for line in text.splitlines() if line.startswith("totals:")]
                per[side] = int(totals[0].split()[1]) / max(1.0, served[side])
            print(
                f"instructions per request (callgrind, user space): old {per['old']:.0f}, "
                f"new {per['new']:.0f}, new/old {per['new'] / per['old']:.3f}"
            )
        old, new = statistics.median(costs["old"]), statistics.median(costs["new"])
        print(
            f"proxy CPU per cached request (median of {args.rounds}): old ({args.old}) "
            f"{old:.1f} µs, new {new:.1f} µs, new/old {new / old:.3f}; req/s medians "
            f"{statistics.median(rates['old']):.0f} / {statistics.median(rates['new']):.0f}"
        )
        if args.profile:
            url, pid = sides["new"]
            os.kill(pid, signal.SIGUSR1)
            wrk(url, args.seconds, args.connections, 1, auth)
            os.kill(pid, signal.SIGUSR2)
            written = tmp / "proxy.0.prof"
            for _ in range(100):
                if written.exists():
                    break
                time.sleep(0.2)
            time.sleep(1)  # dump_stats finishing its write
            kept = Path(tempfile.gettempdir()) / f"portcullis-ab-http-{os.getpid()}.prof"
            shutil.copy(written, kept)
            print(f"profile of the new side (kept in {kept}):")
            print(profile_summary(written, top=40))
    finally:
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
