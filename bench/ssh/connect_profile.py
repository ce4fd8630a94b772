"""Where the SSH proxy's CPU goes for a fresh connection: its event-loop thread under cProfile.

Owns the view into what a client's `ssh host cmd` (a new connection each time: login, the
session opened at the PDP, the upstream connection, one exec, the close) costs the proxy,
which ab_exec --connects times from outside. sshd and the PDP as the other SSH benches
start them (stage.py); the proxy of this checkout (or `--tree`) under
bench/http/profiled_proxy.py, profiled only while `--connects` fresh connections each run
one `uptime` and leave, one after the other. Prints the proxy's CPU per connection
(bench/cpu_meter.py: all its threads, gRPC's included; 10 ms ticks) and the profile's top
functions by own and cumulative time.

    python -u bench/ssh/connect_profile.py [--connects 40] [--tree REF] [--top 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import REPO, CPUMeter, free_port, wait_port  # noqa: E402

# only now, the project imported: bench/ on the path holds a directory named pdp/
sys.path.append(str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "http"))
from bench_wrk import profile_summary  # noqa: E402
from processes import stop_all  # noqa: E402
from stage import run_in_tmp, ssh_stage, tree_at  # noqa: E402

PROFILED = REPO / "bench" / "http" / "profiled_proxy.py"  # SIGUSR1 on, SIGUSR2 written


async def run(args: argparse.Namespace, tmp: Path) -> None:
    tree = tree_at(args.tree, tmp / "tree") if args.tree else REPO
    with ssh_stage(tmp, pdp_timeout_seconds=60) as stage:
        listen = free_port()
        config = stage.config
        own = {**config["connections"][0], "listen": f"127.0.0.1:{listen}"}
        path = tmp / "portcullis-profiled.yaml"
        path.write_text(yaml.safe_dump({**config, "connections": [own]}))
        env = dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'proto'}")
        log = tmp / "proxy.log"
        proxy = subprocess.Popen(
            [sys.executable, str(PROFILED), str(tmp / "proxy"), "ssh", "-c", str(path)],
            cwd=tmp, env=env, stderr=log.open("w"),
        )  # fmt: skip
        try:
            wait_port(listen, proxy, log)
            target: dict[str, Any] = dict(
                host="127.0.0.1", port=listen, username="bench", password=stage.token,
                client_keys=None, preferred_auth="password", known_hosts=None,
                agent_path=None, config=None, compression_algs=None,
            )  # fmt: skip
            for _ in range(3):  # warm-up
                async with asyncssh.connect(**target) as conn:
                    await conn.run("uptime", check=True)
            os.kill(proxy.pid, signal.SIGUSR1)
            meter = CPUMeter({"proxy": proxy.pid})
            started = time.perf_counter()
            for _ in range(args.connects):
                async with asyncssh.connect(**target) as conn:
                    await conn.run("uptime", check=True)
            wall = (time.perf_counter() - started) / args.connects * 1000
            used = meter.per(args.connects)
            os.kill(proxy.pid, signal.SIGUSR2)
            written = tmp / "proxy.0.prof"
            for _ in range(100):
                if written.exists():
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            print(f"{args.connects} fresh connections (login, one uptime, leave): "
                  f"{wall:.1f} ms each (profiled), proxy CPU {used['proxy_us']:.0f} us per "
                  "connection")  # fmt: skip
            print(profile_summary(written, top=args.top))
        finally:
            stop_all([proxy])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=40)
    parser.add_argument("--tree", default="", help="a commit (or a tree's directory)")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    run_in_tmp("portcullis-connect-profile-", run, args)


if __name__ == "__main__":
    main()
