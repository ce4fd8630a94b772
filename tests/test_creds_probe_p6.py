"""Attacks on the upstream credential (probe p6): a session that outlives its lease.

A dynamic credential's lease that could not be renewed (Vault away past its TTL), or that
reached the role's max_ttl, ended while the session it was issued for went on: the proxy
logged "expired" and kept relaying on the upstream connection the credential had opened.
PostgreSQL does not end a session whose role expires (VALID UNTIL is checked at login)
nor, unless the revocation statements say so, one whose role is dropped: the client kept a
superuser-made connection past what Vault granted, and past Vault's revocation. The
lease's end now ends its session (close reason credential_expired), whatever ended it.

Real components: OpenBao's database secrets engine (tests/openbao.py), the machine's
PostgreSQL, a PDP and the Postgres proxy in process, asyncpg as the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sized
from pathlib import Path

import asyncpg
import pytest
from openbao import OpenBao, configure_database
from pg_harness import running_gateway

pytestmark = pytest.mark.integration

DBA = ("dba", "pii-readers")
# Vault's own default for PostgreSQL: no pg_terminate_backend, so what ends the client's
# session is the proxy, not the revocation
REVOCATION = [
    'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}";'
]
CREATION = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; "
    'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";'
]


async def _ended(conn: asyncpg.Connection, sessions: Sized, within: float) -> bool:
    """Whether the proxy ended the session within `within` seconds: its session gone from
    the runtime and the client's connection closed by the far end.

    No query is sent while waiting: the proxy's FATAL arrives while asyncpg is idle, which
    puts its protocol into "error consume" until the socket closes, and a query issued in
    that gap fails with InternalClientError ("cannot switch to state 12; another operation
    (2) is in progress") instead of saying the session ended (seen once in CI)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not sessions and conn.is_closed():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_lease_at_its_max_ttl_ends_its_session(
    tmp_path: Path, bao: OpenBao, vault_admin: tuple[str, str], dyn_role: str
) -> None:
    options = {"credentials": {"provider": "vault", "ref": f"database/creds/{dyn_role}"}}
    async with running_gateway(tmp_path, options, vault=bao.vault_config()) as gw:
        client = bao.client()
        await asyncio.to_thread(
            configure_database, client, gw.database, vault_admin, dyn_role, "2s", "4s"
        )
        await asyncio.to_thread(
            client.secrets.database.create_role,
            name=dyn_role,
            db_name=gw.database,
            creation_statements=CREATION,
            revocation_statements=REVOCATION,
            default_ttl="2s",
            max_ttl="4s",
        )
        conn = await asyncpg.connect(gw.dsn(gw.token(groups=DBA)))
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert len(gw.proxy.runtime.sessions) == 1
            # renewed at 2/3 of 2 s, then granted what is left of the 4 s: ended by then
            ended = await _ended(conn, gw.proxy.runtime.sessions, 30.0)
            assert ended, "the session outlived its lease's max_ttl"
            # and the connection the credential opened serves nothing more
            with pytest.raises(asyncpg.InterfaceError):
                await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
        assert not gw.proxy.runtime.sessions
        closes = await gw.pdp.store.query(kind="session.close")
    assert [c.body["reason"] for c in closes] == ["credential_expired"]
