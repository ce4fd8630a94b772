"""Where the SSH proxy's time goes while it streams an exec's output: cProfile of one `cat`.

Owns the stream's view inside the proxy (bench_ssh.py prints its MB/s and CPU per MB):
sshd, the PDP and the SSH proxy as bench_ssh.py starts them (`cat` of a file of random
bytes an allowed command, a pii-readers token: nothing masked), the proxy under
bench/http/profiled_proxy.py. One warm `cat`, then the profile switched on (SIGUSR1) for
`--rounds` `cat`s of `--megabytes` MB read to the end, and off (SIGUSR2). Prints the MB/s,
the proxy's CPU per MB (bench/cpu_meter.py: every thread, asyncssh's ciphers and the
kernel's work for its sockets included) and the functions of its event loop's thread by
own CPU time (cProfile in thread CPU time: what the other load on the machine does not
move much). Not a test: nothing asserts.

    python -u bench/ssh/stream_profile.py [--megabytes 30] [--rounds 2] [--top 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from bench_ssh import (  # noqa: E402
    bench_policies,
    portcullis_config,
    stream,
    wait_port,
)
from ssh_harness import Sshd  # noqa: E402

# only now, the project imported: bench/ on the path holds a directory named pdp/
sys.path.append(str(HERE.parent))
from cpu_meter import CPUMeter  # noqa: E402
from processes import stop_all  # noqa: E402
from stage import mint, run_in_tmp  # noqa: E402

PROFILED = HERE.parent / "http" / "profiled_proxy.py"


async def run(args: argparse.Namespace, tmp: Path) -> None:
    big = tmp / "big.bin"
    size = args.megabytes * 1_000_000
    with big.open("wb") as out:
        for _ in range(args.megabytes):
            out.write(os.urandom(1_000_000))
    sshd = Sshd(tmp / "sshd").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = portcullis_config(tmp, bench_policies(tmp, big), sshd)
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        token = mint(cli)
        pdp_log = tmp / "pdp.log"
        pdp = subprocess.Popen([*cli, "pdp"], cwd=tmp, stderr=pdp_log.open("w"))
        procs.append(pdp)
        wait_port(int(config["pdp"]["listen"].rsplit(":", 1)[1]), pdp, pdp_log)
        listen = int(config["connections"][0]["listen"].rsplit(":", 1)[1])
        log = tmp / "proxy.log"
        prefix = tmp / "stream"
        proxy = subprocess.Popen(
            [sys.executable, str(PROFILED), str(prefix), "ssh", "-c", str(path)],
            cwd=tmp, stderr=log.open("w"),
        )  # fmt: skip
        procs.append(proxy)
        wait_port(listen, proxy, log)
        conn = await asyncssh.connect(
            host="127.0.0.1", port=listen, username="bench", password=token,
            client_keys=None, preferred_auth="password", known_hosts=None,
            agent_path=None, config=None, compression_algs=None,
        )  # fmt: skip
        try:
            await stream(conn, big, size)  # warm: the line decided, its answer reused after
            proxy.send_signal(signal.SIGUSR1)
            await asyncio.sleep(0.2)
            meter = CPUMeter({"proxy": proxy.pid})
            started = time.perf_counter()
            for _ in range(args.rounds):
                await stream(conn, big, size)
            wall = time.perf_counter() - started
            figures = meter.per(args.megabytes * args.rounds)
            proxy.send_signal(signal.SIGUSR2)
            await asyncio.sleep(1.0)
        finally:
            conn.close()
        megabytes = args.megabytes * args.rounds
        print(
            f"{megabytes} MB streamed through the proxy: {megabytes / wall:.1f} MB/s; proxy "
            f"CPU {figures['proxy_us']:.0f} us per MB (every thread)"
        )
        stats = pstats.Stats(str(prefix) + ".0.prof")
        print(f"the proxy's event-loop thread, by own CPU time (of {stats.total_tt:.2f} s):")
        stats.sort_stats("tottime").print_stats(args.top)
    finally:
        stop_all(procs)
        sshd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    run_in_tmp("portcullis-stream-ssh-", run, args)


if __name__ == "__main__":
    main()
