"""Attacks on the upstream credential (probe p8): the leases a killed proxy leaves live.

A proxy killed before it could revoke (SIGKILL, the OOM killer, a lost node) left every
session's dynamic credential live in Vault, and in the database, for up to its TTL
(credentials.lease_ttl, 15 minutes by default): a superuser-made login nobody holds any
more, for whoever had read it (a core dump, the killed process's memory). The restarted
proxy knew nothing of it. The provider now keeps the ids of the leases it holds in a
ledger beside the spool (0600, locked while it lives); the next provider of the
connection revokes what the ledgers of gone processes still hold, at its first Vault
login.

Real components: OpenBao's database secrets engine (tests/openbao.py), the machine's
PostgreSQL; the killed proxy is a process of its own, ended with os._exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openbao import OpenBao, configure_database
from pg_harness import scratch_database
from test_vault import role_exists, wait_gone

from portcullis.config import ConnectionSettings, VaultSettings
from proxies.runtime.vault import VaultProvider

pytestmark = pytest.mark.integration

# a proxy that takes a lease and dies before it can revoke it
KILLED = """
import asyncio, json, os, sys
from portcullis.config import ConnectionSettings, VaultSettings
from proxies.runtime.vault import VaultProvider
connection = ConnectionSettings(**json.loads(sys.argv[1]))
settings = VaultSettings(**json.loads(sys.argv[2]))
async def main():
    lease = await VaultProvider(connection, settings).acquire(sys.argv[3], "s-killed")
    print(lease.username, flush=True)
    os._exit(9)
asyncio.run(main())
"""


async def test_a_restarted_proxy_revokes_the_leases_its_killed_predecessor_held(
    tmp_path: Path, bao: OpenBao, vault_admin: tuple[str, str], dyn_role: str
) -> None:
    ref = f"database/creds/{dyn_role}"
    fields = {
        "name": "orders-db",
        "type": "postgres",
        "listen": "127.0.0.1:1",
        "upstream": "127.0.0.1:5432",
        "credentials": {"provider": "vault", "ref": ref},
        "options": {"spool_dir": str(tmp_path / "spool")},
    }
    vault = bao.vault_config()
    with scratch_database() as (name, _, _):
        await asyncio.to_thread(
            configure_database, bao.client(), name, vault_admin, dyn_role, "1h", "8h"
        )
        killed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", KILLED, json.dumps(fields), json.dumps(vault), ref],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ},
        )
        assert killed.returncode == 9, killed.stderr
        orphan = killed.stdout.strip()
        assert orphan.startswith("v-") and role_exists(orphan)
        # the connection's proxy starts again, and its first session logs in to Vault
        restarted = VaultProvider(ConnectionSettings(**fields), VaultSettings(**vault))  # type: ignore[arg-type]
        try:
            lease = await restarted.acquire(ref, "s-after")
            assert await wait_gone(orphan), "the killed proxy's lease is still live"
            assert role_exists(lease.username)  # its own is untouched
            await restarted.release(lease)
            assert await wait_gone(lease.username)
        finally:
            await restarted.close()
    assert not list((tmp_path / "spool").glob("*.leases"))  # all let go: no ledger left
