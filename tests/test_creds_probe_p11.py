"""Attacks on the upstream credential (probe p11): a lease Vault revoked under its session.

An operator who revokes a session's dynamic credential in Vault (an incident:
`bao lease revoke -prefix database/creds/orders-readonly`; or the proxy's own token
revoked, which takes its leases with it) meant the login to end. With Vault's default
PostgreSQL revocation (DROP ROLE, no pg_terminate_backend) the upstream connection lives
on, and the proxy, told at its next renewal that the lease was not found, only logged
"retrying" and kept relaying until the expiry it had last known: a reader went on querying
as a role that no longer existed for up to a whole lease TTL (credentials.lease_ttl, 15
minutes by default) after the revocation. A renewal Vault refuses as of a lease (or token)
it no longer holds now ends the session at once (credential_expired); an outage is still
retried while the lease lasts.

Real components: OpenBao's database secrets engine and token store (tests/openbao.py), the
machine's PostgreSQL, a PDP and the Postgres proxy in process, asyncpg as the client.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
import requests
from openbao import OpenBao, configure_database
from pg_harness import running_gateway, scratch_database
from test_creds_probe_p6 import CREATION, REVOCATION, _ended
from test_vault import role_exists, vault_connection

from portcullis.config import VaultSettings
from proxies.runtime.credentials import CredentialUnavailable
from proxies.runtime.vault import ISSUING_AT_ONCE, ISSUING_HELD, VaultProvider

pytestmark = pytest.mark.integration

TTL = 24  # renewed at 16 s; the expiry the proxy last knew is at 24 s


async def test_a_lease_revoked_in_vault_ends_its_readers_session_at_the_next_renewal(
    tmp_path: Path, bao: OpenBao, vault_admin: tuple[str, str], dyn_role: str
) -> None:
    ref = f"database/creds/{dyn_role}"
    options = {"credentials": {"provider": "vault", "ref": ref}}
    async with running_gateway(tmp_path, options, vault=bao.vault_config()) as gw:
        client = bao.client()
        await asyncio.to_thread(
            configure_database, client, gw.database, vault_admin, dyn_role, f"{TTL}s", "1h"
        )
        await asyncio.to_thread(
            client.secrets.database.create_role,
            name=dyn_role,
            db_name=gw.database,
            creation_statements=CREATION,
            revocation_statements=REVOCATION,
            default_ttl=f"{TTL}s",
            max_ttl="1h",
        )
        opened = time.monotonic()
        conn = await asyncpg.connect(gw.dsn(gw.token()))  # a reader (group readonly)
        try:
            login = await conn.fetchval("SELECT current_user")
            assert login.startswith("v-") and role_exists(login)
            # the operator revokes every lease of the role
            await asyncio.to_thread(client.sys.revoke_prefix, prefix=ref)
            assert not role_exists(login)
            ended = await _ended(
                conn, gw.proxy.runtime.sessions, TTL * 2 / 3 + 5 - (time.monotonic() - opened)
            )
            took = time.monotonic() - opened
            assert ended, "the session outlived the revocation of its lease"
            assert took < TTL - 1, f"ended only at the lease's old expiry ({took:.1f}s)"
        finally:
            await conn.close()
        closes = await gw.pdp.store.query(kind="session.close")
    assert [c.body["reason"] for c in closes] == ["credential_expired"]


def _token_provider(bao: OpenBao, tmp_path: Path) -> VaultProvider:
    """Per-session Vault tokens (an HTTP upstream that checks them) leased for 9 s."""
    bao.client().auth.token.create_or_update_role("p11", allowed_policies=["default"])
    connection = vault_connection(ref=TOKEN_REF, header="X-Vault-Token", lease_ttl=9)
    object.__setattr__(connection, "options", {"spool_dir": str(tmp_path / "spool")})
    return VaultProvider(connection, VaultSettings(**bao.vault_config()))  # type: ignore[arg-type]


TOKEN_REF = "auth/token/create/p11"


async def test_a_revoked_per_session_token_is_lost_at_its_renewal(
    tmp_path: Path, bao: OpenBao
) -> None:
    provider = _token_provider(bao, tmp_path)
    try:
        issued = time.monotonic()
        lease = await provider.acquire(TOKEN_REF, "s-p11")
        assert lease.lost is not None
        await asyncio.to_thread(bao.client().auth.token.revoke, lease.value)
        await asyncio.wait_for(asyncio.shield(lease.lost), 20)
        # at the renewal (2/3 of 9 s), not at the 9 s the proxy last knew
        assert time.monotonic() - issued < 8.5
        await provider.release(lease)
    finally:
        await provider.close()


async def test_an_outage_at_the_renewal_is_still_retried(tmp_path: Path, bao: OpenBao) -> None:
    """Not every failed renewal ends the lease: Vault unreachable is retried while it lasts."""
    provider = _token_provider(bao, tmp_path)
    try:
        lease = await provider.acquire(TOKEN_REF, "s-p11")
        assert lease.lost is not None
        real = provider._client.auth.token.renew
        calls: list[int] = []

        def flaky(token: str, increment: int) -> object:
            calls.append(increment)
            if len(calls) == 1:
                raise requests.exceptions.ConnectionError("Vault away")
            return real(token, increment=increment)

        provider._client.auth.token.renew = flaky  # type: ignore[method-assign]
        await asyncio.sleep(9)  # past the 9 s: only the retried renewal keeps it
        assert len(calls) >= 2 and not lease.lost.done()
        assert bao.client().auth.token.lookup(lease.value)["data"]["ttl"] > 0
        await provider.release(lease)
    finally:
        await provider.close()


async def test_clients_leaving_at_once_cannot_queue_issuings_without_bound(
    tmp_path: Path, bao: OpenBao, vault_admin: tuple[str, str], dyn_role: str
) -> None:
    """A reader's clients that leave as soon as the PDP allows them (connect, start-up,
    close) each left an issuing running to its end, then its revocation: nothing held the
    count, so a loop of them queued Vault calls without bound in the worker threads that
    also renew every other session's lease (a renewal queued past its lease's end ends
    that session). At most ISSUING_AT_ONCE issue at a time, the others wait their turn
    and are never issued if their client left meanwhile; past ISSUING_HELD a session is
    refused at once. A burst of clients that stay is served whole."""
    ref = f"database/creds/{dyn_role}"
    connection = vault_connection(ref=ref)
    object.__setattr__(connection, "options", {"spool_dir": str(tmp_path / "spool")})
    provider = VaultProvider(connection, VaultSettings(**bao.vault_config()))  # type: ignore[arg-type]
    with scratch_database() as (name, _, _):
        await asyncio.to_thread(
            configure_database, bao.client(), name, vault_admin, dyn_role, "1h", "8h"
        )
        try:
            first = await provider.acquire(ref, "s-first")  # logged in
            await provider.release(first)
            issued: list[str] = []
            generate = provider._client.secrets.database.generate_credentials

            def counted(**kwargs: object) -> dict[str, object]:
                issued.append(str(kwargs.get("name")))
                return generate(**kwargs)  # type: ignore[no-any-return]

            provider._client.secrets.database.generate_credentials = counted  # type: ignore[method-assign]
            asks = [
                asyncio.ensure_future(provider.acquire(ref, f"s{i}"))
                for i in range(ISSUING_HELD + 44)
            ]
            await asyncio.sleep(0)
            for ask in asks:
                ask.cancel()  # every client gone
            outcomes = await asyncio.gather(*asks, return_exceptions=True)
            refused = [o for o in outcomes if isinstance(o, CredentialUnavailable)]
            assert len(refused) == 44
            assert "try again" in str(refused[0]) and dyn_role in str(refused[0])
            while provider._issuing or provider._orphans:
                await asyncio.sleep(0.1)
            assert len(issued) == ISSUING_AT_ONCE
            # all given back; a burst of clients that stay is served whole, in turns
            provider._client.secrets.database.generate_credentials = generate  # type: ignore[method-assign]
            leases = await asyncio.gather(
                *(provider.acquire(ref, f"s-stays{i}") for i in range(ISSUING_AT_ONCE + 8))
            )
            assert all(role_exists(lease.username) for lease in leases[:3])
            await asyncio.gather(*(provider.release(lease) for lease in leases))
        finally:
            await provider.close()
