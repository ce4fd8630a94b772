"""The Vault credential provider against the real OpenBao server and the machine's PostgreSQL.

Every test starts its own OpenBao dev server (tests/openbao.py); the database secrets engine
creates real `v-...` roles through a superuser made for the test; sessions go through the
real Postgres proxy and the real PDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import jwt as pyjwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_ssh_private_key,
    load_ssh_public_identity,
    load_ssh_public_key,
)
from openbao import (
    ADMIN_DSN,
    OpenBao,
    configure_database,
    ssh_ca_role,
)
from pg_harness import Gateway, running_gateway
from test_pg_proxy import Tap

from portcullis.config import ConnectionSettings, VaultSettings
from proxies.runtime.credentials import CredentialUnavailable, provider_for
from proxies.runtime.vault import VaultProvider, parse_ref

pytestmark = pytest.mark.integration

DBA = ("dba", "pii-readers")  # no masking: `current_user` comes back as written


@contextlib.asynccontextmanager
async def vault_gateway(
    tmp: Path,
    bao: OpenBao,
    admin: tuple[str, str],
    role: str,
    default_ttl: str = "1h",
    max_ttl: str = "8h",
) -> AsyncIterator[Gateway]:
    options = {"credentials": {"provider": "vault", "ref": f"database/creds/{role}"}}
    async with running_gateway(tmp, options, vault=bao.vault_config()) as gw:
        await asyncio.to_thread(
            configure_database, bao.client(), gw.database, admin, role, default_ttl, max_ttl
        )
        yield gw


def role_exists(name: str) -> bool:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        return (
            admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            is not None
        )


async def wait_gone(name: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await asyncio.to_thread(role_exists, name):
            return True
        await asyncio.sleep(0.1)
    return False


def session_secrets(gw: Gateway) -> list[str]:
    return [
        s for session in gw.proxy.runtime.sessions if session.lease for s in session.lease.secrets()
    ]


def vault_connection(**credentials: object) -> ConnectionSettings:
    return ConnectionSettings(
        name="t",
        type="http",
        listen="127.0.0.1:1",
        upstream="http://127.0.0.1:2",
        credentials={"provider": "vault", **credentials},
    )


# -- through the Postgres proxy -----------------------------------------------------------


async def test_each_session_gets_its_own_dynamic_role_revoked_at_disconnect(
    tmp_path, bao, vault_admin, dyn_role, caplog
):
    caplog.set_level(logging.DEBUG)
    async with vault_gateway(tmp_path, bao, vault_admin, dyn_role) as gw, Tap(gw.proxy.port) as tap:
        dsn = gw.dsn(gw.token(groups=DBA)).replace(f":{gw.proxy.port}/", f":{tap.port}/")
        first, second = await asyncio.gather(asyncpg.connect(dsn), asyncpg.connect(dsn))
        users = [await c.fetchval("SELECT current_user") for c in (first, second)]
        assert all(u.startswith("v-") and dyn_role in u for u in users), users
        assert users[0] != users[1]
        assert all(role_exists(u) for u in users)
        # the grant from the creation statement is what lets the session read
        assert [r["name"] for r in await first.fetch("SELECT name FROM customers ORDER BY id")] == [
            "Ada",
            "Bob",
        ]
        leaked = session_secrets(gw)
        assert len(leaked) == 2 and all(len(s) >= 16 for s in leaked)
        session_ids = [s.id for s in gw.proxy.runtime.sessions]
        await first.close()
        assert await wait_gone(users[0]), "the lease was not revoked at disconnect"
        assert role_exists(users[1])  # the other session's role is untouched
        assert await second.fetchval("SELECT count(*) FROM orders") == 2
        await second.close()
        assert await wait_gone(users[1])
        await asyncio.sleep(0.3)  # let the recorder flush and CloseSession land
        records = await gw.pdp.store.query()
    assert {r.session_id for r in records} >= set(session_ids)
    audit = json.dumps([r.body for r in records], default=str)
    for secret in [*leaked, bao.root_token]:
        assert secret not in caplog.text
        assert secret not in audit
        assert secret.encode() not in bytes(tap.to_client)
    closes = [r.body for r in records if r.kind == "session.close"]
    assert len(closes) == 2 and f"database/creds/{dyn_role}" in json.dumps(closes)


async def test_proxy_shutdown_revokes_open_sessions(tmp_path, bao, vault_admin, dyn_role):
    async with vault_gateway(tmp_path, bao, vault_admin, dyn_role) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token(groups=DBA)))
        user = await conn.fetchval("SELECT current_user")
        assert role_exists(user)
    # running_gateway stopped the proxy: drain closed the session and revoked its lease
    assert await wait_gone(user)
    with contextlib.suppress(Exception):
        await conn.close(timeout=1)


async def test_vault_outage_refuses_new_sessions_and_spares_open_ones(
    tmp_path, bao, vault_admin, dyn_role, caplog
):
    async with vault_gateway(tmp_path, bao, vault_admin, dyn_role) as gw:
        tok = gw.token(groups=DBA)
        conn = await asyncpg.connect(gw.dsn(tok))
        user = await conn.fetchval("SELECT current_user")
        await asyncio.to_thread(bao.stop)
        started = time.monotonic()
        with pytest.raises(asyncpg.PostgresError) as err:
            await asyncpg.connect(gw.dsn(tok))
        assert time.monotonic() - started < 6
        message = str(err.value)
        assert "Vault" in message and "unreachable" in message, message
        assert bao.root_token not in message and bao.root_token not in caplog.text
        # the open session holds its credential already: Vault being away changes nothing
        assert await conn.fetchval("SELECT count(*) FROM customers") == 2
        assert role_exists(user)
        await conn.close()  # revocation fails (logged); the role expires with its TTL


async def test_lease_shorter_than_the_session_is_renewed(tmp_path, bao, vault_admin, dyn_role):
    async with vault_gateway(
        tmp_path, bao, vault_admin, dyn_role, default_ttl="3s", max_ttl="60s"
    ) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token(groups=DBA)))
        user = await conn.fetchval("SELECT current_user")
        (session,) = gw.proxy.runtime.sessions
        assert session.lease is not None
        lease_id = session.lease.lease_id
        assert session.lease.extra["lease_duration"] == 3
        for _ in range(8):  # 8 s: well past the 3 s TTL, Vault would have dropped the role
            await asyncio.sleep(1)
            assert await conn.fetchval("SELECT 1") == 1
        assert role_exists(user)
        lookup = await asyncio.to_thread(bao.client().sys.read_lease, lease_id)
        assert lookup["data"]["last_renewal"]  # renewed, not merely young
        await conn.close()
        assert await wait_gone(user)


# -- the provider directly: KV v2, SSH certificates, auth methods -------------------------


async def test_kv_v2_value_and_errors_that_hold_no_secret(bao):
    client = bao.client()
    api_token = "tok-" + secrets.token_urlsafe(24)
    client.secrets.kv.v2.create_or_update_secret(path="billing-api", secret={"token": api_token})
    provider = provider_for(
        vault_connection(ref="secret/data/billing-api#token", header="Authorization"),
        VaultSettings(bao.addr, {"method": "token", "token": bao.root_token}),
    )
    assert isinstance(provider, VaultProvider)
    try:
        lease = await provider.acquire("secret/data/billing-api#token", "s1")
        assert lease.value == api_token and lease.header == "Authorization"
        assert api_token not in repr(lease) and bao.root_token not in repr(provider)
        with pytest.raises(CredentialUnavailable) as err:
            await provider.acquire("secret/data/billing-api#nope", "s2")
        assert "nope" in str(err.value) and api_token not in str(err.value)
        with pytest.raises(CredentialUnavailable, match="nothing at"):
            await provider.acquire("secret/data/missing#token", "s3")
        with pytest.raises(CredentialUnavailable, match="not one the Vault provider"):
            await provider.acquire("database/nope", "s4")
        await provider.release(lease)
    finally:
        await provider.close()


async def test_ssh_certificate_signed_for_a_per_session_key(bao, tmp_path):
    ca_public = ssh_ca_role(bao, ttl="5m", default_extensions={"permit-pty": ""})
    provider = VaultProvider(
        vault_connection(ref="ssh/sign/web", username="deploy"),
        VaultSettings(bao.addr, {"method": "token", "token": bao.root_token}),
    )
    try:
        one = await provider.acquire("ssh/sign/web", "s1")
        two = await provider.acquire("ssh/sign/web", "s2")
    finally:
        await provider.close()
    assert one.private_key != two.private_key  # a key pair per session
    assert one.private_key not in repr(one)
    cert = load_ssh_public_identity(one.extra["certificate"].encode())
    key = load_ssh_private_key(one.private_key.encode(), None)
    assert isinstance(key, Ed25519PrivateKey)
    raw = Encoding.Raw, PublicFormat.Raw
    assert cert.public_key().public_bytes(*raw) == key.public_key().public_bytes(*raw)
    assert cert.valid_principals == [b"deploy"]
    cert.verify_cert_signature()
    assert cert.signature_key().public_bytes(*raw) == load_ssh_public_key(
        ca_public.encode()
    ).public_bytes(*raw)
    # and OpenSSH itself reads it
    path = tmp_path / "id-cert.pub"
    path.write_text(one.extra["certificate"] + "\n")
    listing = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "ssh-ed25519-cert-v01@openssh.com user certificate" in listing and "deploy" in listing


async def test_approle_login_renews_its_own_token(bao, caplog):
    caplog.set_level(logging.DEBUG)
    client = bao.client()
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "value-1"})
    client.sys.create_or_update_policy(
        name="proxy", policy='path "secret/data/app" { capabilities = ["read"] }'
    )
    client.sys.enable_auth_method("approle")
    client.auth.approle.create_or_update_approle(
        "proxy", token_policies=["proxy"], token_ttl="5s", token_max_ttl="60s"
    )
    role_id = client.auth.approle.read_role_id("proxy")["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id("proxy")["data"]["secret_id"]
    provider = VaultProvider(
        vault_connection(ref="secret/data/app#v"),
        VaultSettings(bao.addr, {"method": "approle", "role_id": role_id, "secret_id": secret_id}),
    )
    try:
        assert (await provider.acquire("secret/data/app#v", "s1")).value == "value-1"
        await asyncio.sleep(10)  # two token TTLs: only renew-self keeps the login alive
        assert (await provider.acquire("secret/data/app#v", "s2")).value == "value-1"
        token = provider._client.token
        info = await asyncio.to_thread(client.auth.token.lookup, token)
        assert info["data"]["ttl"] > 0 and info["data"]["last_renewal_time"]
        # least privilege holds: the policy grants nothing else
        with pytest.raises(CredentialUnavailable, match="permission denied"):
            await provider.acquire("secret/data/other#v", "s3")
    finally:
        await provider.close()
    # close gave the login token back
    with pytest.raises(Exception):  # noqa: B017
        await asyncio.to_thread(client.auth.token.lookup, token)
    for secret in (secret_id, token):
        assert secret not in caplog.text and secret not in repr(provider)


async def test_jwt_login(bao):
    key = Ed25519PrivateKey.generate()
    public_pem = (
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    )
    client = bao.client()
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "value-2"})
    client.sys.create_or_update_policy(
        name="proxy", policy='path "secret/data/app" { capabilities = ["read"] }'
    )
    client.sys.enable_auth_method("jwt")
    client.auth.jwt.configure(jwt_validation_pubkeys=[public_pem], bound_issuer="https://zone")
    client.auth.jwt.create_role(
        "proxy",
        role_type="jwt",
        user_claim="sub",
        allowed_redirect_uris=[],
        bound_audiences=["vault"],
        token_policies=["proxy"],
        path="jwt",
    )
    now = int(time.time())
    token = pyjwt.encode(
        {
            "sub": "proxy-eu-prod",
            "aud": "vault",
            "iss": "https://zone",
            "iat": now,
            "exp": now + 300,
        },
        key,
        algorithm="EdDSA",
    )
    provider = VaultProvider(
        vault_connection(ref="secret/data/app#v"),
        VaultSettings(bao.addr, {"method": "jwt", "role": "proxy", "jwt": token}),
    )
    try:
        assert (await provider.acquire("secret/data/app#v", "s1")).value == "value-2"
    finally:
        await provider.close()


async def test_unreachable_vault_and_missing_config_fail_clearly(caplog):
    settings = VaultSettings("http://127.0.0.1:9", {"method": "token", "token": "s.secret"})
    provider = VaultProvider(vault_connection(ref="database/creds/x"), settings)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="portcullis.vault"),
            pytest.raises(CredentialUnavailable) as err,
        ):
            await provider.acquire("database/creds/x", "s1")
    finally:
        await provider.close()
    assert "unreachable" in str(err.value) and "s.secret" not in str(err.value)
    # what a refused client is told leaves Vault's address out (the operator's log has it)
    assert "127.0.0.1:9" not in str(err.value) and "Vault at http://127.0.0.1:9" in caplog.text
    with pytest.raises(CredentialUnavailable, match="no vault: section"):
        provider_for(vault_connection(ref="database/creds/x"))


def test_parse_ref():
    assert parse_ref("database/creds/orders-ro").kind == "database"
    assert parse_ref("kv/prod/data/billing/api#token").mount == "kv/prod"
    assert parse_ref("kv/prod/data/billing/api#token").name == "billing/api"
    assert parse_ref("ssh-client/sign/web").mount == "ssh-client"
    for bad in ("database/creds/", "secret/data/x", "secret/data/#k", "nothing", "a/b/c"):
        with pytest.raises(CredentialUnavailable):
            parse_ref(bad)
