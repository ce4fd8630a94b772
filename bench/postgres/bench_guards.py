"""What the guards of issue 30 cost: pgbench through Portcullis with a row filter, with an
egress budget (and the readers' breaker) counted, and with neither, in one run (target:
each costs at most 10% of TPS).

Starts `portcullis up` (PDP and two Postgres proxies, embedded OPA, decision cache on)
in front of one scratch database, on a copy of the shipped rego/ whose data.json adds a
`bench` group (no budget, no breaker) and a row filter on `accounts` by the token's
`tenant` claim for the connection `filtered-db` only. The same pgbench script (one
account by a random id) runs for N clients in `-M simple` and `-M prepared`:

    plain     plain-db,    group bench     no row filter, no budget
    filtered  filtered-db, group bench     every statement rewritten by the PDP
    budgeted  plain-db,    group readonly  rows and bytes counted and reported, the
                                           shipped readonly budget and breaker

alternating the order per round. Prints TPS per variant, each guarded/plain ratio and
their medians, and the CPU of `portcullis up` (PDP and proxies) per transaction, which
moves much less than TPS on a shared machine. Not a test.

    python bench/postgres/bench_guards.py [--seconds 6] [--rounds 3] [--clients 8]
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
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from bench_masking import pgbench, up_config  # noqa: E402  (this folder's own)
from bench_pgbench import create_scratch, drop_scratch, scratch_names, sh, wait_port  # noqa: E402
from pdp_harness import free_port  # noqa: E402

# only now: a bench/pdp directory on the path must not stand for the pdp package
sys.path.append(str(REPO / "bench"))
from cpu_meter import CPUMeter  # noqa: E402
from processes import stop_all  # noqa: E402

SCRIPT = """\\set id random(1, :rows)
SELECT id, name, total FROM accounts WHERE id = :id;
"""


def policies(tmp: Path) -> Path:
    target = tmp / "rego"
    shutil.copytree(REPO / "rego", target)
    path = target / "data.json"
    data = json.loads(path.read_text())
    portcullis = data["portcullis"]
    for name in ("plain-db", "filtered-db"):
        portcullis["connections"][name] = {"type": "postgres", "groups": ["bench", "readonly"]}
    portcullis["row_filters"] = {
        "filtered-db": {"accounts": {"column": "tenant_id", "claim": "tenant"}}
    }
    path.write_text(json.dumps(data))
    return target


def guards_gateway(
    tmp: Path,
    scratch: tuple[str, str, str],
    rows: int,
    extra: dict[str, dict[str, Any]] | None = None,
) -> tuple[int, int, Path, str, str]:
    """The bench's scratch database (db, role, password: an accounts table of `rows`,
    half of them tenant acme's) and a portcullis.yaml serving it twice: plain-db and
    filtered-db (the same connection, a row filter on accounts). extra: more keys per
    section ("pdp", "plain-db", "filtered-db"). (plain port, filtered port, config path,
    the bench token of tenant acme, a reader token)."""
    extra = extra or {}
    db, role, password = scratch
    create_scratch(db, role, password)
    sh(["psql", "-h", "127.0.0.1", "-U", role, "-d", db, "-qAtX", "-c",
        "CREATE TABLE accounts (id int PRIMARY KEY, tenant_id text, name text, total int);"
        "INSERT INTO accounts SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END,"
        f" 'account ' || g, g % 1000 FROM generate_series(1, {rows}) g"],
       env={**os.environ, "PGPASSWORD": password})  # fmt: skip
    plain_port, filtered_port = free_port(), free_port()
    config = up_config(tmp, plain_port, db, role, password)
    config["pdp"]["engine"]["policies"] = str(policies(tmp))
    config["pdp"].update(extra.get("pdp", {}))
    [plain] = config["connections"]
    plain["name"] = "plain-db"
    filtered = {**plain, "name": "filtered-db", "listen": f"127.0.0.1:{filtered_port}",
                "spool_dir": str(tmp / "spool-filtered")}  # fmt: skip
    plain.update(extra.get("plain-db", {}))
    filtered.update(extra.get("filtered-db", {}))
    config["connections"].append(filtered)
    path = tmp / "portcullis.yaml"
    path.write_text(yaml.safe_dump(config))

    from pdp.domain.identity import DevIssuer
    from portcullis.config import load_config

    issuer = DevIssuer(load_config(path).identity)
    bench = issuer.issue("bench@example.com", ["bench"], 7200, extra_claims={"tenant": "acme"})
    reader = issuer.issue("reader@example.com", ["readonly"], 7200)
    return plain_port, filtered_port, path, bench, reader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rows", type=int, default=10000)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-bench-guards-"))
    db, role, password = scratch_names("portcullis_guards")
    up: subprocess.Popen | None = None
    try:
        plain_port, filtered_port, path, bench, reader = guards_gateway(
            tmp, (db, role, password), args.rows
        )
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        up = subprocess.Popen([*cli, "up"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_port(plain_port)
        wait_port(filtered_port)
        script = tmp / "read.sql"
        script.write_text(SCRIPT)
        variants = {
            "plain": (plain_port, bench),
            "filtered": (filtered_port, bench),
            "budgeted": (plain_port, reader),
        }
        print(f"pgbench, {args.clients} clients, {args.seconds:g}s per run, one account by id")
        for mode in ("simple", "prepared"):
            warm = argparse.Namespace(**{**vars(args), "seconds": 2})
            for port, tok in variants.values():
                pgbench(port, db, tok, mode, warm, script)
            runs: list[dict[str, float]] = []
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            for n in range(args.rounds):
                names = list(variants)
                names = names[n % 3 :] + names[: n % 3]
                run = {}
                for name in names:
                    port, tok = variants[name]
                    meter = CPUMeter({"up": up.pid})
                    started = time.monotonic()
                    run[name] = pgbench(port, db, tok, mode, args, script)
                    spent = meter.per(run[name] * (time.monotonic() - started))
                    cpu[name].append(spent.get("up_us", float("nan")))
                runs.append(run)
            print(f"  -M {mode}")
            for n, run in enumerate(runs):
                print(f"    round {n + 1}: plain {run['plain']:8.0f} tps, filtered "
                      f"{run['filtered']:8.0f} ({run['filtered'] / run['plain']:.2f}), budgeted "
                      f"{run['budgeted']:8.0f} ({run['budgeted'] / run['plain']:.2f})")  # fmt: skip
            for name in ("filtered", "budgeted"):
                ratio = statistics.median(r[name] / r["plain"] for r in runs)
                print(f"    median {name}/plain {ratio:.2f} (target >= 0.90)")
            print("    CPU of portcullis up per transaction (median): " + ", ".join(
                f"{name} {statistics.median(cpu[name]):.0f} µs" for name in variants))  # fmt: skip
    finally:
        if up is not None:
            stop_all([up])
        drop_scratch(db, role)


if __name__ == "__main__":
    main()
