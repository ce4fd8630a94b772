"""What thousands of idle Postgres sessions cost the proxy and the PDP (issue 27: 10,000
idle sessions in one worker within 250 MiB in all). Not a test.

Each idle session through Portcullis holds a client connection and an upstream one; ten
thousand upstream connections are more than one PostgreSQL here can have, so the
upstream is pgbouncer in transaction mode (the Debian package, its own process) in front
of the local server — how a deployment with many idle agents would run it anyway, and a
set-up the proxy must work behind. Starts `portcullis pdp` and `portcullis proxy postgres`
as their own processes, opens one session and reads both processes' RSS (the baseline),
opens `--sessions` more with asyncpg (`--concurrency` at a time, each running `SELECT 1`
so it is open end to end), reads the RSS again, closes them all and reads it once more.
Prints MiB and KiB per session for each process and the proxy's figure scaled to 10,000
sessions against the target. File descriptors bound the count: the proxy holds two per
session, so the default stays under this machine's limit of 20,000 per process.

    python bench/postgres/bench_idle.py [--sessions 9000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from bench_pgbench import (  # noqa: E402  (this folder)
    create_scratch,
    drop_scratch,
    rss_kib,
    scratch_names,
    sh,
    start_pgbouncer,
    wait_port,
)
from pdp_harness import free_port  # noqa: E402

# pgbouncer 1.18 refuses start-up parameters it does not track, and the proxy pins these
# at start-up (portcullis's lexing pins and the policy's session settings): this bench,
# which measures memory only, has pgbouncer drop them. A deployment must not (the pins
# would silently not hold): behind a transaction pooler they belong on the upstream role.
DROPPED_PINS = ("backslash_quote", "default_transaction_read_only", "statement_timeout",
                "idle_in_transaction_session_timeout", "search_path")  # fmt: skip
TARGET_MIB = 250
REFUSED: list[int] = []
TARGET_SESSIONS = 10_000


async def open_idle(port: int, db: str, token: str, n: int, concurrency: int) -> list:
    """n sessions through the proxy, each with one statement run, held open."""
    import asyncpg

    gate = asyncio.Semaphore(concurrency)
    dsn = f"postgresql://agent:{token}@127.0.0.1:{port}/{db}"

    async def one() -> asyncpg.Connection:
        async with gate:
            for attempt in range(5):
                try:
                    conn = await asyncpg.connect(
                        dsn, ssl=False, statement_cache_size=0, timeout=120
                    )
                except asyncpg.InvalidAuthorizationSpecificationError:
                    # refused while the PDP's evaluators were all busy (it fails closed):
                    # counted and tried again, this bench measures memory, not admission
                    REFUSED.append(attempt)
                    await asyncio.sleep(0.5)
                    continue
                await conn.execute("SELECT 1")
                return conn
            raise SystemExit("a session was refused five times: is the PDP overloaded?")

    return list(await asyncio.gather(*(one() for _ in range(n))))


def mib(kib: int) -> float:
    return kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=9000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-bench-idle-"))
    tmp.chmod(0o755)  # pgbouncer runs as postgres and reads its config below
    db, role, password = scratch_names("portcullis_idle")
    procs: list[subprocess.Popen] = []
    try:
        create_scratch(db, role, password)

        bouncer, bouncer_port = start_pgbouncer(
            tmp, db, role, password, "transaction", args.sessions + 100, 20, DROPPED_PINS
        )
        procs.append(bouncer)

        policies = tmp / "rego"
        shutil.copytree(REPO / "rego", policies)
        data = json.loads((policies / "data.json").read_text())
        connections = data["portcullis"]["connections"]
        connections["bench-idle"] = connections["orders-db"]
        # one identity holds every session here: past the shipped per-identity cap
        data["portcullis"]["max_sessions_per_identity"] = args.sessions + 16
        (policies / "data.json").write_text(json.dumps(data))

        port, pdp_port = free_port(), free_port()
        config = {
            "pdp": {
                "listen": f"127.0.0.1:{pdp_port}",
                "engine": {"type": "embedded", "policies": str(policies), "reload": False},
                "store": {"type": "sqlite", "path": str(tmp / "audit.db")},
                "signing_key": str(tmp / "signing.key"),
            },
            "identity": {"dev": True, "dev_key": str(tmp / "dev.key")},
            "connections": [
                {
                    "name": "bench-idle",
                    "type": "postgres",
                    "listen": f"127.0.0.1:{port}",
                    "upstream": f"127.0.0.1:{bouncer_port}",
                    "database": db,
                    "credentials": {"provider": "static", "username": role, "password": password},
                    "spool_dir": str(tmp / "spool"),
                }
            ],
        }
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        token = sh(
            [*cli, "token", "--sub", "idle@example.com", "--groups", "dba", "--ttl", "4h"]
        ).stdout.strip()
        pdp = subprocess.Popen([*cli, "pdp"], stderr=subprocess.DEVNULL)
        procs.append(pdp)
        wait_port(pdp_port)
        proxy = subprocess.Popen([*cli, "proxy", "postgres"], stderr=subprocess.DEVNULL)
        procs.append(proxy)
        wait_port(port)

        async def run() -> tuple[dict[str, int], dict[str, int], dict[str, int], float]:
            first = await open_idle(port, db, token, 1, 1)
            await asyncio.sleep(1)
            before = {"proxy": rss_kib(proxy.pid), "pdp": rss_kib(pdp.pid)}
            started = time.monotonic()
            held = await open_idle(port, db, token, args.sessions, args.concurrency)
            took = time.monotonic() - started
            await asyncio.sleep(3)
            during = {"proxy": rss_kib(proxy.pid), "pdp": rss_kib(pdp.pid)}
            await asyncio.gather(*(c.close() for c in held + first))
            await asyncio.sleep(10)  # sessions close at the PDP, their records land
            after = {"proxy": rss_kib(proxy.pid), "pdp": rss_kib(pdp.pid)}
            return before, during, after, took

        before, during, after, took = asyncio.run(run())
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop_scratch(db, role)
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.sessions
    print(f"{n} idle sessions through Portcullis → pgbouncer (transaction pooling) → "
          f"PostgreSQL, opened in {took:.1f} s ({n / took:.0f}/s, "
          f"{args.concurrency} at a time; {len(REFUSED)} refused while the PDP was busy and "
          "tried again)")  # fmt: skip
    for name in ("proxy", "pdp"):
        grown = during[name] - before[name]
        print(f"  {name:5s}: {mib(before[name]):7.1f} MiB with 1 session → {mib(during[name]):7.1f}"
              f" MiB with {n + 1} ({grown / n:5.1f} KiB per session) → {mib(after[name]):7.1f} MiB"
              f" once closed ({after[name] / before[name]:.2f}x the baseline)")  # fmt: skip
    per = (during["proxy"] - before["proxy"]) / n
    scaled = mib(before["proxy"] + per * TARGET_SESSIONS)
    print(f"  proxy with {TARGET_SESSIONS} idle sessions (scaled from {n}): {scaled:.0f} MiB in"
          f" all (target <= {TARGET_MIB} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
