"""Session set-up through the Postgres proxy: a dynamic Vault credential vs a static one.

Starts the real OpenBao dev server (tests/openbao.py), a scratch database with the database
secrets engine pointed at it, one PDP, and two Postgres proxies in front of the same
database — one with `{provider: static}`, one with `{provider: vault, ref:
database/creds/...}`. Then, alternating the two so drift hits both alike, it times a client
session from TCP connect until the first query (`SELECT 1`) answers, N times each, and
prints p50/p95 and the ratio. The Vault path adds a `database/creds` read (Vault runs
CREATE ROLE + GRANT on Postgres) before the upstream login; revocation happens after the
client has gone and is timed separately. Not a test: nothing here asserts.

    python bench/vault/bench_session_setup.py [-n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import statistics
import sys
import time
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from openbao import (  # noqa: E402
    configure_database,
    drop_dynamic_roles,
    running_openbao,
    vault_admin_role,
)
from pdp_harness import free_port, pdp_config, running_pdp, token  # noqa: E402
from pg_harness import scratch_database  # noqa: E402

from proxies.postgres.proxy import PostgresProxy  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def one_session(port: int, database: str, tok: str) -> tuple[float, str]:
    started = time.perf_counter()
    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, user="agent", password=tok, database=database, ssl=False
    )
    user = await conn.fetchval("SELECT current_user")
    elapsed = time.perf_counter() - started
    await conn.close()
    return elapsed * 1000, user


async def run(n: int, tmp: Path) -> None:
    role = "bench" + secrets.token_hex(3)
    with (
        running_openbao() as bao,
        vault_admin_role() as admin,
        scratch_database() as (database, app_role, app_password),
    ):
        try:
            await asyncio.to_thread(configure_database, bao.client(), database, admin, role)
            common = {
                "type": "postgres",
                "upstream": "127.0.0.1:5432",
                "database": database,
                "zone": "eu-prod",
            }
            # both proxies front the policy's `orders-db`; the PDP does not see credentials
            static_conn = {
                "name": "orders-db",
                "listen": f"127.0.0.1:{free_port()}",
                **common,
                "credentials": {
                    "provider": "static",
                    "username": app_role,
                    "password": app_password,
                },
            }
            vault_conn = {
                **static_conn,
                "listen": f"127.0.0.1:{free_port()}",
                "credentials": {"provider": "vault", "ref": f"database/creds/{role}"},
            }
            config = pdp_config(tmp, connections=[static_conn], vault=bao.vault_config())
            vault_config = pdp_config(tmp, connections=[vault_conn], vault=bao.vault_config())
            async with running_pdp(config) as pdp:
                proxies = [
                    PostgresProxy(config.connections[0], config, pdp.address),
                    PostgresProxy(vault_config.connections[0], vault_config, pdp.address),
                ]
                for proxy in proxies:
                    await proxy.start()
                try:
                    await measure(n, proxies, database, token(config, groups=("dba",)))
                finally:
                    for proxy in proxies:
                        await proxy.stop()
        finally:
            drop_dynamic_roles(role)


async def measure(n: int, proxies: list[PostgresProxy], database: str, tok: str) -> None:
    static, vault = proxies
    timings: dict[str, list[float]] = {"static": [], "vault": []}
    for _ in range(3):  # warm-up: PDP workers, Vault's connection pool to Postgres
        await one_session(static.port, database, tok)
        await one_session(vault.port, database, tok)
    users = set()
    for _ in range(n):
        timings["static"].append((await one_session(static.port, database, tok))[0])
        ms, user = await one_session(vault.port, database, tok)
        timings["vault"].append(ms)
        users.add(user)
    # revocation cost, off the client's path: the provider's release of one fresh lease
    provider = vault.runtime.provider
    release_ms = []
    for i in range(min(n, 10)):
        lease = await provider.acquire(vault.connection.credentials["ref"], f"bench-{i}")
        started = time.perf_counter()
        await provider.release(lease)
        release_ms.append((time.perf_counter() - started) * 1000)

    print(f"session set-up (connect → first query answered), N={n} each, same run")
    print(f"{'credential':<12}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for name, values in timings.items():
        print(
            f"{name:<12}{pct(values, 50):>10.1f}{pct(values, 95):>10.1f}"
            f"{statistics.mean(values):>10.1f}"
        )
    ratio50 = pct(timings["vault"], 50) / pct(timings["static"], 50)
    ratio95 = pct(timings["vault"], 95) / pct(timings["static"], 95)
    print(
        f"vault/static: p50 x{ratio50:.2f}, p95 x{ratio95:.2f}; "
        f"{len(users)} distinct dynamic roles for {n} vault sessions"
    )
    print(
        f"lease revocation at session end (after the client left): "
        f"p50 {pct(release_ms, 50):.1f} ms, p95 {pct(release_ms, 95):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="sessions per credential kind")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-vault-") as tmp:
        asyncio.run(run(args.n, Path(tmp)))


if __name__ == "__main__":
    main()
