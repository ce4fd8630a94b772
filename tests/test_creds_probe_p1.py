"""Attacks on the proxies' credential handling and operational surfaces (probe p1).

- A Vault SSH role whose default_extensions grant agent / X11 forwarding and ~/.ssh/rc, or
  whose ttl is the mount's (32 days): the proxy must refuse such a certificate, which
  cannot be revoked when the session ends and would grant, leaked with its key, what the
  proxy never lets a session do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity
from openbao import OpenBao, running_openbao

from portcullis.config import ConnectionSettings, VaultSettings
from proxies.runtime.credentials import CredentialUnavailable
from proxies.runtime.vault import VaultProvider


@pytest.fixture
def bao() -> Iterator[OpenBao]:
    with running_openbao() as server:
        yield server


def _ssh_role(bao: OpenBao, **role: object) -> None:
    client = bao.client()
    client.sys.enable_secrets_engine("ssh", path="ssh")
    client.secrets.ssh.submit_ca_information(generate_signing_key=True, key_type="ed25519")
    client.secrets.ssh.create_role(
        name="web",
        key_type="ca",
        allow_user_certificates=True,
        allowed_users="deploy",
        default_user="deploy",
        **role,
    )


def _provider(bao: OpenBao, **credentials: object) -> VaultProvider:
    connection = ConnectionSettings(
        name="t",
        type="ssh",
        listen="127.0.0.1:1",
        upstream="127.0.0.1:2",
        credentials={"provider": "vault", "ref": "ssh/sign/web", **credentials},
    )
    return VaultProvider(connection, VaultSettings(bao.addr, {"method": "token",
                                                             "token": bao.root_token}))  # fmt: skip


@pytest.mark.integration
async def test_ssh_certificate_with_forwarding_extensions_is_refused(bao: OpenBao) -> None:
    _ssh_role(
        bao,
        ttl="5m",
        default_extensions={
            "permit-pty": "",
            "permit-agent-forwarding": "",
            "permit-X11-forwarding": "",
            "permit-user-rc": "",
        },
    )
    provider = _provider(bao, username="deploy")
    try:
        with pytest.raises(CredentialUnavailable) as refused:
            await provider.acquire("ssh/sign/web", "s1")
    finally:
        await provider.close()
    text = str(refused.value)
    assert "permit-agent-forwarding" in text and "permit-X11-forwarding" in text
    assert "permit-user-rc" in text and "BEGIN" not in text


@pytest.mark.integration
async def test_ssh_certificate_for_the_mounts_32_days_is_refused(bao: OpenBao) -> None:
    _ssh_role(bao, default_extensions={"permit-pty": ""})  # no ttl: the mount's default
    provider = _provider(bao, username="deploy")
    try:
        with pytest.raises(CredentialUnavailable, match="valid for longer than 3600s"):
            await provider.acquire("ssh/sign/web", "s1")
    finally:
        await provider.close()


@pytest.mark.integration
async def test_ssh_certificate_ttl_is_asked_for_and_the_principal_kept(bao: OpenBao) -> None:
    _ssh_role(bao, default_extensions={"permit-pty": "", "permit-port-forwarding": ""})
    provider = _provider(bao, certificate_ttl=120)  # no username: the role's default_user
    try:
        before = time.time()
        lease = await provider.acquire("ssh/sign/web", "s1")
    finally:
        await provider.close()
    cert = load_ssh_public_identity(lease.extra["certificate"].encode())
    assert isinstance(cert, SSHCertificate)
    assert cert.valid_principals == [b"deploy"] and lease.username == "deploy"
    assert cert.valid_before <= before + 120 + 60
    assert set(cert.extensions) == {b"permit-pty", b"permit-port-forwarding"}
