"""Attacks on the upstream credential (probe p13, helper auditsec8): a per-session Vault
token that is the proxy's own Vault identity.

`auth/token/create/<role>` issues a token per session for an HTTP upstream that checks
Vault tokens. A token role without `allowed_policies` (Vault's default for a new role:
`bao write auth/token/roles/agent` with nothing else) gives the token the policies of
the token that created it: the proxy's own. The session's upstream, and anyone who reads
the header it was sent in, then held a token that reads every database role's credential
(`database/creds/*`) and every KV secret the proxy may fetch for any connection, and can
create tokens in turn; with a proxy logged in as root, as in a quick start, the session's
token was a root token. The proxy now refuses (and revokes at once) a session token that
carries `root` or any policy of its own besides `default`: the session is refused
(CredentialUnavailable) naming the role to fix. A role with its own `allowed_policies`
is served as before. The same holds for a proxy that logs in as an identity entity (jwt,
kubernetes, userpass): a token it creates inherits the entity and its policies whatever
the role allows, unless the role makes orphans. And a batch token (no accessor) could not
be revoked at the session's end: it outlived its session by its whole TTL; it is refused.

Real components: OpenBao's token store (tests/openbao.py), the Vault provider in process.
"""

from __future__ import annotations

from pathlib import Path

import hvac
import pytest
from openbao import OpenBao
from test_vault import vault_connection

from portcullis.config import VaultSettings
from proxies.runtime.credentials import CredentialUnavailable
from proxies.runtime.vault import VaultProvider

pytestmark = pytest.mark.integration

PROXY_POLICY = """
path "auth/token/create/*" { capabilities = ["create", "update"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }
path "auth/token/renew" { capabilities = ["update"] }
path "database/creds/*" { capabilities = ["read"] }
path "secret/data/*" { capabilities = ["read"] }
"""


def _provider(bao: OpenBao, tmp_path: Path, role: str, token: str) -> VaultProvider:
    connection = vault_connection(ref=f"auth/token/create/{role}", header="X-Vault-Token")
    object.__setattr__(connection, "options", {"spool_dir": str(tmp_path / "spool")})
    settings = VaultSettings(addr=bao.addr, auth={"method": "token", "token": token})
    return VaultProvider(connection, settings)


def _proxy_token(bao: OpenBao) -> str:
    admin = bao.client()
    admin.sys.create_or_update_policy("portcullis-proxy", PROXY_POLICY)
    created = admin.auth.token.create(policies=["portcullis-proxy"], ttl="1h")
    return str(created["auth"]["client_token"])


def _accessors(bao: OpenBao) -> set[str]:
    listed = bao.client().auth.token.list_accessors()
    return set(listed["data"]["keys"])


async def test_a_session_token_carrying_the_proxys_own_policies_is_refused_and_revoked(
    tmp_path: Path, bao: OpenBao
) -> None:
    bao.client().auth.token.create_or_update_role("p13-agent")  # no allowed_policies
    provider = _provider(bao, tmp_path, "p13-agent", _proxy_token(bao))
    try:
        before = _accessors(bao)
        with pytest.raises(CredentialUnavailable) as refused:
            await provider.acquire("auth/token/create/p13-agent", "s-p13")
        assert "allowed_policies" in str(refused.value)
        assert "portcullis-proxy" in str(refused.value)
        # nothing issued is left alive
        assert _accessors(bao) == before
    finally:
        await provider.close()


async def test_a_proxy_logged_in_as_root_hands_no_session_a_root_token(
    tmp_path: Path, bao: OpenBao
) -> None:
    bao.client().auth.token.create_or_update_role("p13-agent")
    provider = _provider(bao, tmp_path, "p13-agent", bao.root_token)
    try:
        before = _accessors(bao)
        with pytest.raises(CredentialUnavailable) as refused:
            await provider.acquire("auth/token/create/p13-agent", "s-p13")
        assert "root" in str(refused.value) and bao.root_token not in str(refused.value)
        assert _accessors(bao) == before
    finally:
        await provider.close()


async def test_a_role_with_its_own_policies_still_issues_session_tokens(
    tmp_path: Path, bao: OpenBao
) -> None:
    admin = bao.client()
    admin.sys.create_or_update_policy(
        "billing", 'path "secret/data/billing" { capabilities = ["read"] }'
    )
    admin.auth.token.create_or_update_role("p13-billing", allowed_policies=["billing"])
    provider = _provider(bao, tmp_path, "p13-billing", _proxy_token(bao))
    try:
        lease = await provider.acquire("auth/token/create/p13-billing", "s-p13")
        looked = admin.auth.token.lookup(lease.value)["data"]
        assert sorted(looked["policies"]) == ["billing", "default"]
        await provider.release(lease)
        with pytest.raises(hvac.exceptions.VaultError):
            admin.auth.token.lookup(lease.value)
    finally:
        await provider.close()


async def test_a_session_token_nothing_can_revoke_is_refused(tmp_path: Path, bao: OpenBao) -> None:
    """A token role of token_type batch (orphan, not renewable, as Vault requires of one):
    its tokens have no accessor, so the revocation at the session's end failed (logged,
    `InvalidRequest`) and the upstream's token stayed valid for its whole lease_ttl after
    the session ended. Such a token is now refused when issued: nothing reaches an
    upstream that outlives its session."""
    bao.client().write_data(
        "auth/token/roles/p13-batch",
        data={
            "allowed_policies": ["default"],
            "token_type": "batch",
            "orphan": True,
            "renewable": False,
        },
    )
    provider = _provider(bao, tmp_path, "p13-batch", bao.root_token)
    try:
        with pytest.raises(CredentialUnavailable) as refused:
            await provider.acquire("auth/token/create/p13-batch", "s-p13")
        assert "batch" in str(refused.value)
    finally:
        await provider.close()


async def test_a_session_token_inheriting_the_proxys_entity_is_refused(
    tmp_path: Path, bao: OpenBao
) -> None:
    """A proxy whose Vault identity is an entity (a jwt, kubernetes or userpass login,
    its powers in the entity's policies): every token it creates inherits the entity,
    and with it those policies, however its role limits the token's own. The session's
    token could then issue any role's database credential. Such a token is refused; an
    orphan role's token (no entity) is served."""
    admin = bao.client()
    admin.sys.create_or_update_policy("portcullis-proxy", PROXY_POLICY)
    admin.sys.enable_auth_method("userpass")
    admin.write_data("auth/userpass/users/px", data={"password": "pw-p13-entity"})
    accessor = admin.sys.list_auth_methods()["userpass/"]["accessor"]
    entity = admin.secrets.identity.create_or_update_entity(
        name="portcullis-proxy", policies=["portcullis-proxy"]
    )
    admin.secrets.identity.create_or_update_entity_alias(
        name="px", canonical_id=entity["data"]["id"], mount_accessor=accessor
    )
    proxy = hvac.Client(url=bao.addr)
    proxy.auth.userpass.login("px", "pw-p13-entity")
    admin.auth.token.create_or_update_role("p13-scoped", allowed_policies=["default"])
    admin.write_data(
        "auth/token/roles/p13-orphan", data={"allowed_policies": ["default"], "orphan": True}
    )
    inheriting = _provider(bao, tmp_path, "p13-scoped", proxy.token)
    orphaned = _provider(bao, tmp_path, "p13-orphan", proxy.token)
    try:
        before = _accessors(bao)
        with pytest.raises(CredentialUnavailable) as refused:
            await inheriting.acquire("auth/token/create/p13-scoped", "s-p13")
        assert "portcullis-proxy" in str(refused.value) and "orphan" in str(refused.value)
        assert _accessors(bao) == before
        lease = await orphaned.acquire("auth/token/create/p13-orphan", "s-p13")
        assert admin.auth.token.lookup(lease.value)["data"]["policies"] == ["default"]
        await orphaned.release(lease)
    finally:
        await inheriting.close()
        await orphaned.close()
