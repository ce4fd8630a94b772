"""The SSH proxy reaching its upstream with a per-session key that Vault's SSH CA signs
(real OpenBao, real sshd trusting that CA): each session has a key and certificate of its
own, valid for the role's TTL only, held in the proxy's memory and never sent to a client."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity
from openbao import OpenBao, ssh_ca_role
from pdp_harness import pdp_raw
from ssh_harness import Sshd
from test_ssh_proxy import ssh_connection, ssh_stack

from portcullis.config import VaultSettings, parse_config
from proxies.runtime.vault import VaultProvider

pytestmark = pytest.mark.integration
TTL_SECONDS = 300


def ssh_ca(bao: OpenBao, user: str) -> str:
    return ssh_ca_role(bao, user, ttl=f"{TTL_SECONDS}s", default_extensions={"permit-pty": ""})


async def test_a_vault_signed_key_per_session(bao: OpenBao, tmp_path: Path) -> None:
    user = "root"
    ca_public = ssh_ca(bao, user)
    credentials = {"provider": "vault", "ref": "ssh/sign/web", "username": user}
    started = time.time()
    async with ssh_stack(
        tmp_path, trusted_ca=ca_public, extra={"vault": bao.vault_config()}, credentials=credentials
    ) as stack:
        outputs = []
        for _ in range(2):
            async with await stack.connect() as conn:
                result = await conn.run("uptime")
                assert result.exit_status == 0, result.stderr
                outputs.append(result.stdout)
        await stack.proxy.settled()
        closes = await stack.pdp.store.query(kind="session.close")
        log = stack.sshd.log_text()
    assert all("load average" in out for out in outputs)
    # sshd names each certificate it accepted: two sessions, two serials, the CA's ID
    accepted = re.findall(r"Accepted publickey for root .* ED25519-CERT .*\(serial (\d+)\)", log)
    assert len(accepted) == 2 and accepted[0] != accepted[1], log
    summaries = [c.body.get("summary", {}) for c in closes]
    assert [s.get("credential_ref") for s in summaries] == ["ssh/sign/web"] * 2
    assert all(s.get("credential_exposed") == 0 for s in summaries)
    assert time.time() - started < TTL_SECONDS  # the certificates were valid: within the TTL


async def test_the_certificate_lives_only_for_the_roles_ttl(bao: OpenBao, tmp_path: Path) -> None:
    ssh_ca(bao, "root")
    credentials = {"provider": "vault", "ref": "ssh/sign/web", "username": "root"}
    raw = pdp_raw(tmp_path, connections=[ssh_connection(Sshd(tmp_path / "sshd"), tmp_path,
                                                        credentials)])  # fmt: skip
    connection = parse_config(raw, base_dir=tmp_path).connections[0]
    auth = {"method": "token", "token": bao.root_token}
    provider = VaultProvider(connection, VaultSettings(bao.addr, auth))
    try:
        before = time.time()
        lease = await provider.acquire("ssh/sign/web", "s1")
        certificate = load_ssh_public_identity(lease.extra["certificate"].encode())
        await provider.release(lease)
    finally:
        await provider.close()
    assert isinstance(certificate, SSHCertificate)
    assert certificate.valid_principals == [b"root"]
    assert before - 60 <= certificate.valid_after
    assert certificate.valid_before <= before + TTL_SECONDS + 60
