"""Where a guarded transaction's CPU goes (issue 30): the PDP, the proxy and PostgreSQL's
backends measured apart, per pgbench transaction, for the plain, filtered and budgeted
variants of bench_guards.py.

bench_guards.py runs `portcullis up`, one process for the PDP and both proxies; here the
PDP (`portcullis pdp`) and each connection's proxy (`portcullis proxy postgres
--connection NAME`) are processes of their own, and the backends serving the scratch
database (postmaster's children whose title names it) are sampled every 50 ms while
pgbench runs (a backend's CPU is read until it exits; what it spends in its last 50 ms is
lost alike in every variant). pgbench itself is the rest of the machine. Variants
alternate per round; CPU per transaction moves less than TPS on a loaded machine.

    python bench/postgres/guards_split.py [--seconds 6] [--rounds 3] [--modes simple,prepared]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from bench_guards import SCRIPT, guards_gateway  # noqa: E402  (this folder's own)
from bench_masking import pgbench  # noqa: E402
from bench_pgbench import drop_scratch, scratch_names, sh, wait_port  # noqa: E402
from pdp_harness import free_port  # noqa: E402

sys.path.append(str(REPO / "bench"))
from cpu_meter import TICK_US, process_ticks  # noqa: E402
from processes import stop_all  # noqa: E402


def system_ticks(pid: int) -> int:
    """The kernel's share of a process's CPU (its sockets' work) so far, in ticks."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[12])


def asked(port: int) -> tuple[float, float]:
    """(Decides answered by the PDP, decision cache hits) a proxy counted so far."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    counts = [0.0, 0.0]
    for line in text.splitlines():
        if line.startswith("portcullis_proxy_decision_seconds_count"):
            counts[0] += float(line.rpartition(" ")[2])
        elif line.startswith("portcullis_proxy_decision_cache_hits_total"):
            counts[1] += float(line.rpartition(" ")[2])
    return counts[0], counts[1]


def postmaster() -> int:
    out = sh(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qAtX", "-c",
              "SHOW data_directory"]).stdout  # fmt: skip
    return int((Path(out.strip()) / "postmaster.pid").read_text().split()[0])


class Backends:
    """The CPU ticks of the scratch database's backends, sampled while a phase runs."""

    def __init__(self, parent: int, db: str) -> None:
        self.parent, self.marker = parent, f" {db} ".encode()
        self.seen: dict[int, tuple[int, int]] = {}  # pid: (first, last) ticks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.05)

    def sample(self) -> None:
        try:
            children = Path(f"/proc/{self.parent}/task/{self.parent}/children").read_text()
        except OSError:
            return
        for pid in map(int, children.split()):
            try:
                if self.marker not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
            except OSError:
                continue
            ticks = process_ticks(pid, with_descendants=False)
            first = self.seen.get(pid, (ticks, ticks))[0]
            self.seen[pid] = (first, ticks)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        # a backend first seen mid-run started from nothing: its first sample counts
        return sum(last for _first, last in self.seen.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--modes", default="simple,prepared")
    parser.add_argument("--variants", default="plain,filtered,budgeted")
    parser.add_argument("--profile", default="", help="run each proxy under cProfile, to DIR")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-guards-split-"))
    db, role, password = scratch_names("portcullis_split")
    procs: list[subprocess.Popen] = []
    try:
        metrics = {"plain-db": free_port(), "filtered-db": free_port()}
        plain_port, filtered_port, path, bench, reader = guards_gateway(
            tmp,
            (db, role, password),
            args.rows,
            {
                "pdp": {"proxy_credential_file": str(tmp / "proxy.credential")},
                **{n: {"metrics_listen": f"127.0.0.1:{port}"} for n, port in metrics.items()},
            },
        )
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        quiet = {"stderr": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
        pdp = subprocess.Popen([*cli, "pdp"], **quiet)  # type: ignore[call-overload]
        procs.append(pdp)
        wait_port(int(yaml.safe_load(path.read_text())["pdp"]["listen"].rpartition(":")[2]))
        for _ in range(100):
            if (tmp / "proxy.credential").exists():
                break
            time.sleep(0.1)
        proxy = {}
        for name in ("plain-db", "filtered-db"):
            profiled = (
                ["-m", "cProfile", "-o", f"{args.profile}/{name}.prof"] if args.profile else []
            )
            argv = [sys.executable, *profiled, "-m", "proxies", "postgres", "-c", str(path),
                    "--connection", name]  # fmt: skip
            proc = subprocess.Popen(argv, **quiet)  # type: ignore[call-overload]
            procs.append(proc)
            proxy[name] = proc.pid
        wait_port(plain_port)
        wait_port(filtered_port)
        script = tmp / "read.sql"
        script.write_text(SCRIPT)
        variants = {
            "plain": ("plain-db", plain_port, bench),
            "filtered": ("filtered-db", filtered_port, bench),
            "budgeted": ("plain-db", plain_port, reader),
        }
        variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
        master = postmaster()
        print(f"pgbench, {args.clients} clients, {args.seconds:g}s per run, one account by id;"
              f" load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        for mode in args.modes.split(","):
            warm = argparse.Namespace(**{**vars(args), "seconds": 2})
            for _conn, port, tok in variants.values():
                pgbench(port, db, tok, mode, warm, script)
            figures: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
            for n in range(args.rounds):
                names = list(variants)
                names = names[n % len(names) :] + names[: n % len(names)]
                for name in names:
                    conn, port, tok = variants[name]
                    before = {
                        "pdp": process_ticks(pdp.pid),
                        "proxy": process_ticks(proxy[conn]),
                        "sys": system_ticks(proxy[conn]),
                    }
                    asked_before = asked(metrics[conn])
                    backends = Backends(master, db)
                    started = time.monotonic()
                    tps = pgbench(port, db, tok, mode, args, script)
                    n_tx = tps * (time.monotonic() - started)
                    pg = backends.stop()
                    row = {
                        "tps": tps,
                        "pdp": (process_ticks(pdp.pid) - before["pdp"]) * TICK_US / n_tx,
                        "proxy": (process_ticks(proxy[conn]) - before["proxy"]) * TICK_US / n_tx,
                        "sys": (system_ticks(proxy[conn]) - before["sys"]) * TICK_US / n_tx,
                        "postgres": pg * TICK_US / n_tx,
                    }
                    asked_after = asked(metrics[conn])
                    row["asked"] = (asked_after[0] - asked_before[0]) / n_tx
                    row["hits"] = (asked_after[1] - asked_before[1]) / n_tx
                    figures[name].append(row)
            print(f"  -M {mode}: median per transaction (µs of CPU), load {os.getloadavg()[0]:.1f}")
            for name, rows in figures.items():
                med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                print(f"    {name:9s} tps {med['tps']:7.0f}  proxy {med['proxy']:6.1f} "
                      f"({med['sys']:5.1f} in the kernel)  pdp {med['pdp']:6.1f}  postgres "
                      f"{med['postgres']:6.1f}  asked {med['asked']:.3f} reused "
                      f"{med['hits']:.3f} per tx")  # fmt: skip
    finally:
        stop_all(procs)
        drop_scratch(db, role)


if __name__ == "__main__":
    main()
