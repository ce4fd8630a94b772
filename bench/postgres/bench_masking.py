"""What masking costs: pgbench reading sensitive columns through Portcullis, masked against
unmasked, in one run (issue 21's target: masking costs at most 20% of TPS).

Starts `portcullis up` (PDP and Postgres proxy, embedded OPA, decision cache on) in front
of a scratch database holding a table with sensitive columns (email, phone, ssn) beside
plain ones, then runs the same pgbench script — one customer row by a random id, its
plain and sensitive columns and an expression over one (`upper(email)`) — for 8 clients,
in `-M simple` and `-M prepared`, as a `readonly` token (every row masked: plain column
rules, the derived rule for the expression, detectors over text) and as a `pii-readers`
token (nothing masked), alternating the two in pairs: the same query through the same
proxy, only the policy's verdict differs. Prints TPS, the masked/unmasked ratio per pair
and its median, the proxy's CPU per transaction, and for scale the same script run
straight against Postgres (no proxy) once per mode. Then, unless --no-pgbouncer, the
same masked reads through Portcullis in front of pgbouncer in transaction mode
(`upstream_pooler: transaction`, the role pinned with ALTER ROLE) against the same script
straight to that pgbouncer, in alternating pairs (`-M simple` and `-M extended`: named
prepared statements cannot pass a transaction pooler). Not a test.

    python bench/postgres/bench_masking.py [--seconds 8] [--pairs 3] [--clients 8] [--rows 10000]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from bench_pgbench import (  # noqa: E402  (this folder: the script's own)
    create_scratch,
    drop_scratch,
    scratch_names,
    sh,
    start_pgbouncer,
    wait_port,
)
from pdp_harness import free_port  # noqa: E402

# only now: a bench/pdp directory on the path must not stand for the pdp package
sys.path.append(str(REPO / "bench"))
from cpu_meter import CPUMeter  # noqa: E402

ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtX", "-c"]
SCRIPT = """\\set id random(1, :rows)
SELECT id, name, note, email, phone, ssn, upper(email) AS shout FROM customers WHERE id = :id;
"""


def pgbench(
    port: int, db: str, token: str, mode: str, args, script: Path, user: str = "agent"
) -> float:
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable"}
    cmd = ["pgbench", "-n", "-M", mode, "-c", str(args.clients), "-j", "2",
           "-T", str(int(args.seconds)), "-D", f"rows={args.rows}", "-f", str(script),
           "-h", "127.0.0.1", "-p", str(port), "-U", user, db]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"pgbench failed: {out.stderr.strip()[-400:]}")
    return float(re.search(r"tps = ([\d.]+) \(without initial", out.stdout).group(1))


def up_config(tmp: Path, port: int, db: str, role: str, password: str) -> dict:
    """`portcullis up` on the shipped rego/ in front of one scratch database (the SQLite
    store at tmp/audit.db), its proxy on port; also bench_agent_cache's."""
    return {
        "pdp": {
            "listen": f"127.0.0.1:{free_port()}",
            "http_listen": f"127.0.0.1:{free_port()}",
            "engine": {"type": "embedded", "policies": str(REPO / "rego")},
            "store": {"type": "sqlite", "path": str(tmp / "audit.db")},
            "signing_key": str(tmp / "signing.key"),
        },
        "identity": {"dev": True, "dev_key": str(tmp / "dev.key")},
        "connections": [
            {
                "name": "orders-db",
                "type": "postgres",
                "listen": f"127.0.0.1:{port}",
                "upstream": "127.0.0.1:5432",
                "database": db,
                "credentials": {"provider": "static", "username": role, "password": password},
                "spool_dir": str(tmp / "spool"),
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--no-pgbouncer", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-bench-masking-"))
    db, role, password = scratch_names("portcullis_mask")
    up: subprocess.Popen | None = None
    bouncer: subprocess.Popen | None = None
    try:
        create_scratch(db, role, password)
        sh(["psql", "-h", "127.0.0.1", "-U", role, "-d", db, "-qAtX", "-c",
            "CREATE TABLE customers (id int PRIMARY KEY, name text, note text, email text, "
            "phone text, ssn text); INSERT INTO customers SELECT g, 'name ' || g, "
            "'note ' || g, 'user' || g || '@example.com', '+44 20 7946 ' || g, "
            f"'123-45-' || lpad((g % 10000)::text, 4, '0') FROM generate_series(1, {args.rows}) g"],
           env={**os.environ, "PGPASSWORD": password})  # fmt: skip
        port = free_port()
        config = up_config(tmp, port, db, role, password)
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]

        def token(sub: str, groups: str) -> str:
            minted = sh([*cli, "token", "--sub", sub, "--groups", groups, "--ttl", "2h"])
            return minted.stdout.strip()

        masked = token("reader@example.com", "readonly")
        unmasked = token("pii@example.com", "readonly,pii-readers")
        up = subprocess.Popen([*cli, "up"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_port(port)
        script = tmp / "read.sql"
        script.write_text(SCRIPT)
        proxy_pids = {"portcullis up": up.pid}
        print(f"pgbench, {args.clients} clients, {args.seconds:g}s per run, {args.rows} rows: "
              "one customer by id, 3 sensitive columns + upper(email)")  # fmt: skip
        for mode in ("simple", "prepared"):
            for tok in (unmasked, masked):  # warm-up, each identity alike: tables' columns
                pgbench(port, db, tok, mode, argparse.Namespace(**{**vars(args), "seconds": 2}),
                        script)  # learnt, verdicts cached  # fmt: skip
            ratios, rows = [], []
            for pair in range(args.pairs):
                order = [("masked", masked), ("unmasked", unmasked)]
                if pair % 2:
                    order.reverse()
                result: dict[str, tuple[float, float]] = {}
                for name, tok in order:
                    meter = CPUMeter(proxy_pids)
                    started = time.monotonic()
                    tps = pgbench(port, db, tok, mode, args, script)
                    cost = meter.per(tps * (time.monotonic() - started))
                    result[name] = (tps, cost.get("portcullis up_us", float("nan")))
                ratios.append(result["masked"][0] / result["unmasked"][0])
                rows.append(result)
            print(f"  -M {mode}")
            for n, result in enumerate(rows):
                (m_tps, m_cpu), (u_tps, u_cpu) = result["masked"], result["unmasked"]
                print(f"    pair {n + 1}: masked {m_tps:8.0f} tps ({m_cpu:6.1f} µs CPU/tx),"
                      f" unmasked {u_tps:8.0f} tps ({u_cpu:6.1f} µs CPU/tx),"
                      f" masked/unmasked {m_tps / u_tps:.2f}")  # fmt: skip
            print(f"    median masked/unmasked {statistics.median(ratios):.2f}"
                  " (target >= 0.80: masking costs at most 20% of TPS)")  # fmt: skip
            direct = pgbench(5432, db, password, mode, args, script, user=role)
            of_direct = [
                statistics.median(r[name][0] for r in rows) / direct
                for name in ("masked", "unmasked")
            ]
            print(f"    direct to Postgres (no proxy) {direct:8.0f} tps: median masked/direct"
                  f" {of_direct[0]:.2f}, unmasked/direct {of_direct[1]:.2f}")  # fmt: skip
        if args.no_pgbouncer:
            return
        _stop(up)
        # behind pgbouncer in transaction mode: the reader's pins held by the role
        for setting, value in (("default_transaction_read_only", "on"),
                               ("statement_timeout", "60000")):  # fmt: skip
            sh([*ADMIN, f"ALTER ROLE {role} IN DATABASE {db} SET {setting} = '{value}'"])
        os.chmod(tmp, 0o755)  # pgbouncer runs as postgres and reads its files under tmp
        bouncer, bouncer_port = start_pgbouncer(
            tmp, db, role, password, "transaction", 200, args.clients
        )
        config["connections"][0]["upstream"] = f"127.0.0.1:{bouncer_port}"
        config["connections"][0]["upstream_pooler"] = "transaction"
        path.write_text(yaml.safe_dump(config))
        up = subprocess.Popen([*cli, "up"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_port(port)
        proxy_pids = {"portcullis up": up.pid}
        print("  through pgbouncer (pool_mode = transaction, upstream_pooler: transaction)")
        for mode in ("simple", "extended"):
            pgbench(port, db, masked, mode, argparse.Namespace(**{**vars(args), "seconds": 2}),
                    script)  # warm-up  # fmt: skip
            ratios = []
            for pair in range(args.pairs):
                meter = CPUMeter(proxy_pids)
                started = time.monotonic()
                m_tps = pgbench(port, db, masked, mode, args, script)
                m_cpu = meter.per(m_tps * (time.monotonic() - started)).get(
                    "portcullis up_us", float("nan")
                )
                b_tps = pgbench(bouncer_port, db, password, mode, args, script, user=role)
                ratios.append(m_tps / b_tps)
                print(f"    -M {mode} pair {pair + 1}: masked through Portcullis → pgbouncer"
                      f" {m_tps:8.0f} tps ({m_cpu:6.1f} µs CPU/tx), pgbouncer direct"
                      f" {b_tps:8.0f} tps, ratio {m_tps / b_tps:.2f}")  # fmt: skip
            print(f"    -M {mode} median masked-through-Portcullis/pgbouncer-direct"
                  f" {statistics.median(ratios):.2f}")  # fmt: skip
    finally:
        _stop(up)
        if bouncer is not None:
            bouncer.terminate()
            bouncer.wait(30)
        drop_scratch(db, role)


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


if __name__ == "__main__":
    main()
