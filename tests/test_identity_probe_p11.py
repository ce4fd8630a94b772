"""Identity probe 11 (helper auditsec8): files that say who someone is, others may write.

Attack (a local user on the PDP's host, or anyone who may write where the mapping lives):
an SSH connection's identities come from the PDP's `authorized_keys_file`, lines of
`subject="...",groups="..." <public key>`. The PDP read the file whoever owned it and
whatever its mode: a file writable by all (or another user's, or in a directory all may
write, where it can be replaced) let that user append their own key as
`subject="root@example.com",groups="dba,security"` and log in through the SSH proxy as
anyone in any group. As sshd's StrictModes refuses such an authorized_keys, the PDP now
refuses public-key logins from such a mapping (TokenRejected, the reason for operators in
its detail); an ordinary file (0644 in a directory of the PDP's user, or in a sticky one
like /tmp) maps keys as before. The same held for `identity.jwks_file`, the OIDC keys
read from disk: whoever may write it publishes a key of their own and signs any identity;
such a file is no key source now (every token rejected: fail closed).

Real key files (ssh-keygen through tests/ssh_harness.py), the PDP's KeyIdentities and
TokenVerifier; tokens signed with PyJWT.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from ssh_harness import keygen

from pdp.domain.identity import TokenRejected, TokenVerifier
from pdp.domain.ssh_identity import KeyIdentities
from portcullis.config import IdentitySettings

ISSUER = "https://idp.example.com"


def _mapping(tmp_path: Path) -> tuple[Path, str]:
    keygen(tmp_path / "mallory_key", "mallory")
    public = (tmp_path / "mallory_key.pub").read_text().strip()
    held = tmp_path / "keys"
    held.mkdir()
    mapping = held / "mapped_keys"
    # what the writer appended: their own key as someone else, in every group
    mapping.write_text(f'subject="root@example.com",groups="dba,security" {public}\n')
    return mapping, public


def test_a_mapping_file_every_user_may_write_maps_no_key(tmp_path: Path) -> None:
    mapping, public = _mapping(tmp_path)
    mapping.chmod(0o666)
    with pytest.raises(TokenRejected) as refused:
        KeyIdentities().identify("ssh", str(mapping), public)
    assert refused.value.reason == "public-key login is not available"
    assert "writable by every user" in refused.value.detail


def test_a_mapping_in_a_directory_every_user_may_write_maps_no_key(tmp_path: Path) -> None:
    mapping, public = _mapping(tmp_path)
    mapping.parent.chmod(0o777)
    with pytest.raises(TokenRejected) as refused:
        KeyIdentities().identify("ssh", str(mapping), public)
    assert str(mapping.parent) in refused.value.detail
    # sticky (as /tmp): others may not replace what is ours
    mapping.parent.chmod(0o1777)
    assert KeyIdentities().identify("ssh", str(mapping), public).subject == "root@example.com"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_mapping_file_of_another_user_maps_no_key(tmp_path: Path) -> None:
    mapping, public = _mapping(tmp_path)
    os.chown(mapping, 4242, 4242)
    with pytest.raises(TokenRejected) as refused:
        KeyIdentities().identify("ssh", str(mapping), public)
    assert "another user" in refused.value.detail


def test_an_ordinary_mapping_file_still_maps_keys(tmp_path: Path) -> None:
    mapping, public = _mapping(tmp_path)
    mapping.chmod(0o644)
    mapped = KeyIdentities().identify("ssh", str(mapping), public)
    assert mapped.subject == "root@example.com" and mapped.groups == ("dba", "security")


def _keys_on_disk(tmp_path: Path) -> tuple[Path, str]:
    """A jwks_file holding the writer's own key, and a dba token that key signed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    held = tmp_path / "idp"
    held.mkdir()
    jwks = held / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "mallory@example.com", "aud": "portcullis",
              "iat": now, "exp": now + 300, "groups": ["dba"]}  # fmt: skip
    return jwks, jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


async def test_a_jwks_file_every_user_may_write_is_no_key_source(tmp_path: Path) -> None:
    jwks, forged = _keys_on_disk(tmp_path)
    jwks.chmod(0o666)
    verifier = TokenVerifier(IdentitySettings(issuer=ISSUER, jwks_file=jwks))
    try:
        with pytest.raises(TokenRejected) as rejected:
            await verifier.verify(forged)
        assert rejected.value.reason == "cannot fetch keys from the identity provider"
        assert "writable by every user" in rejected.value.detail
    finally:
        await verifier.close()


async def test_an_ordinary_jwks_file_still_gives_keys(tmp_path: Path) -> None:
    jwks, token = _keys_on_disk(tmp_path)
    jwks.chmod(0o644)
    verifier = TokenVerifier(IdentitySettings(issuer=ISSUER, jwks_file=jwks))
    try:
        assert (await verifier.verify(token)).groups == ("dba",)
    finally:
        await verifier.close()
