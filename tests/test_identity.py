"""Token verification against a real local OIDC issuer: every forgery must be rejected."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import stat
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pdp.domain.identity import (
    MAX_TOKEN_BYTES,
    DevIssuer,
    Identity,
    TokenRejected,
    TokenVerifier,
    jwk_thumbprint,
    parse_jwks,
    parse_ttl,
)
from portcullis.config import IdentitySettings

SECRET = "a-shared-secret-long-enough-for-hs512-" + "0123456789abcdef" * 2


@pytest.fixture
async def make_verifier(tmp_path):
    made: list[TokenVerifier] = []

    def make(settings, **kwargs) -> TokenVerifier:
        if settings.dev and str(settings.dev_key) == "var/dev-issuer.key":
            raise AssertionError("tests must keep the dev key under tmp_path")
        verifier = TokenVerifier(settings, **kwargs)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.close()


def b64(data: bytes | dict) -> str:
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(claims)}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


async def rejected(verifier: TokenVerifier, token) -> str:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(token)
    return info.value.reason


# -- accepted tokens ---------------------------------------------------------------------


async def test_rs256_token_gives_identity(idp, make_verifier):
    verifier = make_verifier(idp.settings())
    token = idp.token(sub="alice@example.com", groups=["dba", "pii-readers"], jti="t-1")
    identity = await verifier.verify(token)
    assert identity.subject == "alice@example.com"
    assert identity.groups == ("dba", "pii-readers")
    assert identity.issuer == idp.issuer
    assert identity.token_id == "t-1"
    assert identity.expires_at == jwt.decode(token, options={"verify_signature": False})["exp"]
    assert identity.to_input() == {
        "subject": "alice@example.com",
        "groups": ["dba", "pii-readers"],
        "issuer": idp.issuer,
        "claims": identity.claims,
        "token_id": "t-1",
    }
    assert identity.claims["aud"] == "portcullis"


@pytest.mark.parametrize("alg", ["ES256", "PS256", "RS512"])
async def test_other_asymmetric_algorithms_accepted(idp, make_verifier, alg):
    verifier = make_verifier(idp.settings(algorithms=("RS256", "RS512", "PS256", "ES256")))
    identity = await verifier.verify(idp.token(sub="bob", groups=["readonly"], alg=alg))
    assert (identity.subject, identity.groups) == ("bob", ("readonly",))


async def test_audience_list_containing_ours_accepted(idp, make_verifier):
    # OIDC Core 3.1.3.7: with several audiences the token names us as its azp
    # (tests/test_identity_probe_p7.py: without it, or naming another client, refused)
    verifier = make_verifier(idp.settings())
    identity = await verifier.verify(idp.token(aud=["other-api", "portcullis"], azp="portcullis"))
    assert identity.subject == "alice@example.com"


async def test_expiry_within_leeway_accepted(idp, make_verifier):
    verifier = make_verifier(idp.settings(leeway_seconds=30))
    await verifier.verify(idp.token(exp=int(time.time()) - 10))


@pytest.mark.parametrize(
    ("groups_claim", "claims", "expected"),
    [
        ("groups", {"groups": "dba"}, ("dba",)),
        ("groups", {"groups": ["dba", "analyst", "dba"]}, ("dba", "analyst")),
        ("groups", {"groups": ["dba", " ", "analyst"]}, ("dba", "analyst")),
        ("realm_access.roles", {"realm_access": {"roles": ["dba"]}}, ("dba",)),
        ("https://example.com/groups", {"https://example.com/groups": ["sec"]}, ("sec",)),
        ("groups", {}, ()),
        ("realm_access.roles", {"realm_access": "dba"}, ()),
    ],
)
async def test_groups_claim_forms(idp, make_verifier, groups_claim, claims, expected):
    verifier = make_verifier(idp.settings(groups_claim=groups_claim))
    token = idp.sign({**idp.claims(groups=None), **claims})
    assert (await verifier.verify(token)).groups == expected


@pytest.mark.parametrize(
    "groups",
    [[1, 2], {"dba": True}, ["dba", None], 7, "x,dba", "readers dba", ["x", " dba"], ["a\nb"]],
)
async def test_groups_of_another_shape_reject_the_token(idp, make_verifier, groups):
    verifier = make_verifier(idp.settings())
    assert "groups claim" in await rejected(verifier, idp.token(groups=groups))


async def test_jwks_url_skips_discovery(idp, make_verifier):
    verifier = make_verifier(idp.settings(jwks_url=idp.jwks_url))
    await verifier.verify(idp.token())
    assert idp.requests["/.well-known/openid-configuration"] == 0
    assert idp.requests["/jwks"] == 1


async def test_jwks_file(idp, make_verifier, tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(idp.jwks()))
    verifier = make_verifier(idp.settings(jwks_file=path))
    assert (await verifier.verify(idp.token(alg="ES256"))).subject == "alice@example.com"
    assert sum(idp.requests.values()) == 0


async def test_keys_are_cached(idp, make_verifier):
    verifier = make_verifier(idp.settings())
    for _ in range(5):
        await verifier.verify(idp.token())
        await verifier.verify(idp.token(alg="ES256"))
    assert idp.requests["/jwks"] == 1
    assert idp.requests["/.well-known/openid-configuration"] == 1


# -- rejected tokens ---------------------------------------------------------------------


async def test_expired(idp, make_verifier):
    verifier = make_verifier(idp.settings(leeway_seconds=30))
    now = int(time.time())
    token = idp.token(exp=now - 60, iat=now - 3600, nbf=now - 3600)
    assert await rejected(verifier, token) == "token expired"


async def test_missing_exp(idp, make_verifier):
    verifier = make_verifier(idp.settings())
    assert await rejected(verifier, idp.token(exp=None)) == "token has no expiry"


@pytest.mark.parametrize("aud", ["other-api", ["a", "b"], None])
async def test_wrong_audience(idp, make_verifier, aud):
    verifier = make_verifier(idp.settings())
    assert await rejected(verifier, idp.token(aud=aud)) == "wrong audience"


@pytest.mark.parametrize("iss", ["https://evil.example.com", None, "portcullis-dev"])
async def test_wrong_issuer(idp, make_verifier, iss):
    verifier = make_verifier(idp.settings())
    assert await rejected(verifier, idp.token(iss=iss)) == "wrong issuer"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_not_yet_valid(idp, make_verifier, claim):
    verifier = make_verifier(idp.settings(leeway_seconds=30))
    token = idp.token(**{claim: int(time.time()) + 600})
    assert await rejected(verifier, token) == "token not yet valid"


@pytest.mark.parametrize("sub", [None, "", "   ", 42])
async def test_no_subject(idp, make_verifier, sub):
    verifier = make_verifier(idp.settings())
    assert await rejected(verifier, idp.token(sub=sub)) == "no subject"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2ln"])
async def test_alg_none_is_never_accepted(idp, make_verifier, alg, signature):
    verifier = make_verifier(idp.settings(shared_secret=SECRET))
    for header in ({"alg": alg, "typ": "JWT"}, {"alg": alg, "kid": idp.rsa_kid}):
        token = f"{b64(header)}.{b64(idp.claims())}.{signature}"
        assert await rejected(verifier, token) == "alg none is never accepted"


async def test_hs256_signed_with_rsa_public_key_is_rejected(idp, make_verifier):
    """The classic key confusion: the RSA public key PEM used as an HMAC secret."""
    verifier = make_verifier(idp.settings())
    await verifier.verify(idp.token())  # load the JWKS so the kid is known
    pem = idp.public_pem(idp.rsa_kid)
    with_kid = hs256({"alg": "HS256", "kid": idp.rsa_kid}, idp.claims(), pem)
    without_kid = hs256({"alg": "HS256"}, idp.claims(), pem)
    assert await rejected(verifier, with_kid) == "algorithm HS256 not accepted"
    assert await rejected(verifier, without_kid) == "algorithm HS256 not accepted"
    # Even with a shared secret configured, the public key is not the secret, and an
    # HMAC token naming a published key id is refused outright.
    with_secret = make_verifier(idp.settings(shared_secret=SECRET))
    assert await rejected(with_secret, without_kid) == "bad signature"
    assert "not accepted" in await rejected(with_secret, with_kid)


async def test_hs256_only_with_configured_shared_secret(idp, make_verifier):
    token = hs256({"alg": "HS256", "typ": "JWT"}, idp.claims(sub="svc"), SECRET.encode())
    without = make_verifier(idp.settings())
    assert await rejected(without, token) == "algorithm HS256 not accepted"
    with_secret = make_verifier(idp.settings(shared_secret=SECRET))
    assert (await with_secret.verify(token)).subject == "svc"
    wrong = hs256({"alg": "HS256"}, idp.claims(), b"another-secret-of-sufficient-length-000000")
    assert await rejected(with_secret, wrong) == "bad signature"
    # HS512 with the same secret works too, unless algorithms restricts HMAC.
    hs512 = jwt.encode(idp.claims(sub="svc"), SECRET, algorithm="HS512")
    assert (await with_secret.verify(hs512)).subject == "svc"
    only_hs256 = make_verifier(idp.settings(shared_secret=SECRET, algorithms=("HS256", "RS256")))
    assert await rejected(only_hs256, hs512) == "algorithm HS512 not accepted"


async def test_key_type_must_match_algorithm(idp, make_verifier):
    verifier = make_verifier(idp.settings())
    # Signed with the EC key but naming the RSA key id, and the reverse.
    ec_as_rsa = idp.token(alg="ES256", kid=idp.ec_kid, headers={"kid": idp.rsa_kid})
    assert "does not match the RSA key" in await rejected(verifier, ec_as_rsa)
    rsa_as_ec = idp.token(alg="RS256", kid=idp.rsa_kid, headers={"kid": idp.ec_kid})
    assert "does not match the EC key" in await rejected(verifier, rsa_as_ec)


async def test_algorithm_outside_settings_rejected(idp, make_verifier):
    verifier = make_verifier(idp.settings(algorithms=("ES256",)))
    assert await rejected(verifier, idp.token(alg="RS256")) == "algorithm RS256 not accepted"


async def test_tampered_payload(idp, make_verifier):
    verifier = make_verifier(idp.settings())
    for alg in ("RS256", "ES256"):
        header, _, signature = idp.token(groups=["readonly"], alg=alg).split(".")
        forged = idp.claims(groups=["dba"])
        token = f"{header}.{b64(forged)}.{signature}"
        assert await rejected(verifier, token) == "bad signature"


async def test_unknown_kid_rejected_after_one_refetch(idp, make_verifier):
    verifier = make_verifier(idp.settings(), refetch_interval=0)
    await verifier.verify(idp.token())
    assert idp.requests["/jwks"] == 1
    rogue = idp.rotate("RSA", publish=False)
    assert await rejected(verifier, idp.token(kid=rogue)) == f"unknown key id {rogue!r}"
    assert idp.requests["/jwks"] == 2
    # A forged header claiming a published kid but signed with the rogue key.
    forged = idp.token(kid=rogue, headers={"kid": idp.rsa_kid})
    assert await rejected(verifier, forged) == "bad signature"


async def test_rotated_key_accepted_after_refetch(idp, make_verifier):
    verifier = make_verifier(idp.settings(), refetch_interval=0)
    await verifier.verify(idp.token())
    new_kid = idp.rotate("RSA")
    identity = await verifier.verify(idp.token(sub="carol"))
    assert identity.subject == "carol"
    assert idp.requests["/jwks"] == 2
    await verifier.verify(idp.token(kid=idp.rsa_kid))  # the old key still works
    await verifier.verify(idp.token(kid=new_kid))
    assert idp.requests["/jwks"] == 2


async def test_refetch_is_rate_limited(idp, make_verifier):
    verifier = make_verifier(idp.settings())  # default window: one fetch per 10 s
    rogue = idp.rotate("RSA", publish=False)
    tokens = [idp.token(kid=rogue, jti=str(i)) for i in range(20)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, TokenRejected) for r in results)
    for token in tokens:
        assert await rejected(verifier, token) == f"unknown key id {rogue!r}"
    assert idp.requests["/jwks"] == 1
    # Even a key published meanwhile waits for the window: no fetch storm.
    idp.publish(rogue)
    assert await rejected(verifier, tokens[0]) == f"unknown key id {rogue!r}"
    assert idp.requests["/jwks"] == 1


async def test_concurrent_misses_share_one_fetch(idp, make_verifier):
    verifier = make_verifier(idp.settings(), refetch_interval=0)
    await verifier.verify(idp.token())
    new_kid = idp.rotate("EC")
    tokens = [idp.token(alg="ES256", kid=new_kid, jti=str(i)) for i in range(25)]
    identities = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert len(identities) == 25
    assert idp.requests["/jwks"] == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_issuer_unreachable_fails_closed(idp, make_verifier):
    token = idp.token()
    verifier = make_verifier(idp.settings(issuer=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(token)
    assert info.value.reason == "cannot fetch keys from the identity provider"
    assert info.value.detail  # the operator's log gets the cause


async def test_jwks_unreachable_after_discovery_fails_closed(idp, make_verifier):
    verifier = make_verifier(idp.settings(jwks_url=f"http://127.0.0.1:{free_port()}/jwks"))
    reason = await rejected(verifier, idp.token())
    assert reason == "cannot fetch keys from the identity provider"


async def test_jwks_error_fails_closed_then_recovers(idp, make_verifier):
    verifier = make_verifier(idp.settings(), refetch_interval=0)
    idp.jwks_status = 500
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(idp.token())
    assert info.value.reason == "cannot fetch keys from the identity provider"
    assert "HTTP 500" in info.value.detail
    idp.jwks_status = 200
    assert (await verifier.verify(idp.token())).subject == "alice@example.com"


async def test_stale_keys_survive_a_failed_refresh(idp, make_verifier):
    verifier = make_verifier(idp.settings(), refetch_interval=0)
    await verifier.verify(idp.token())
    await idp.stop()
    rogue = idp.rotate("RSA", publish=False)
    assert await rejected(verifier, idp.token(kid=rogue)) == f"unknown key id {rogue!r}"
    assert (await verifier.verify(idp.token(kid=idp.rsa_kid))).subject == "alice@example.com"


MALFORMED = [
    "",
    "abc",
    "a.b",
    "a.b.c",
    "...",
    "not a token at all",
    "eyJhbGciOiJSUzI1NiJ9.e30.sig.extra.parts",
    "ëyJ.ëyJ.ëyJ",
    "x" * (MAX_TOKEN_BYTES + 1),
    None,
    b"bytes.are.not",
]


@pytest.mark.parametrize("token", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_tokens(idp, make_verifier, token):
    verifier = make_verifier(idp.settings())
    assert await rejected(verifier, token) == "malformed token"


@pytest.mark.parametrize("header", [{}, {"alg": ""}, {"alg": ["RS256"]}, {"alg": None}])
async def test_header_without_algorithm(idp, make_verifier, header):
    verifier = make_verifier(idp.settings())
    token = f"{b64(header)}.{b64(idp.claims())}.c2ln"
    assert await rejected(verifier, token) == "token header names no algorithm"


async def test_truncated_tokens(idp, make_verifier):
    verifier = make_verifier(idp.settings())
    token = idp.token()
    for cut in (10, len(token) // 2, token.rindex(".") + 5, len(token) - 3):
        reason = await rejected(verifier, token[:cut])
        assert reason in ("malformed token", "bad signature")


async def test_deeply_nested_json_is_malformed_not_a_crash(idp, make_verifier):
    verifier = make_verifier(idp.settings())
    nested = "[" * 5000 + "]" * 5000
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","x":' + nested.encode() + b"}")
    token = f"{header.rstrip(b'=').decode()}.e30.c2ln"
    assert await rejected(verifier, token) == "malformed token"
    # Deep nesting in the payload of a correctly signed token.
    claims = json.dumps(idp.claims())[:-1] + ', "deep": ' + nested + "}"
    signed = jwt.api_jws.encode(
        claims.encode(),
        idp.private_key(idp.rsa_kid),
        algorithm="RS256",
        headers={"kid": idp.rsa_kid},
    )
    assert len(signed) <= MAX_TOKEN_BYTES
    assert await rejected(verifier, signed) == "malformed token"


async def test_huge_token_rejected_without_parsing(idp, make_verifier):
    verifier = make_verifier(idp.settings())
    token = idp.token(groups=[f"group-{i}" for i in range(2000)])
    assert len(token) > MAX_TOKEN_BYTES
    assert await rejected(verifier, token) == "malformed token"
    assert sum(idp.requests.values()) == 0  # no key was even looked up


# -- the dev issuer ----------------------------------------------------------------------


def dev_settings(tmp_path, **overrides):
    return IdentitySettings(dev=True, dev_key=tmp_path / "var" / "dev" / "issuer.key", **overrides)


async def test_dev_tokens_accepted_only_in_dev_mode(idp, make_verifier, tmp_path):
    settings = dev_settings(tmp_path)
    dev = DevIssuer(settings)
    token = dev.issue("alice", ["dba", "pii-readers"], 300)
    identity = await make_verifier(settings, dev_issuer=dev).verify(token)
    assert (identity.subject, identity.groups, identity.issuer) == (
        "alice",
        ("dba", "pii-readers"),
        "portcullis-dev",
    )
    assert identity.token_id
    # The same token against a production verifier (dev off) is rejected.
    production = make_verifier(idp.settings(dev_key=settings.dev_key), dev_issuer=dev)
    assert await rejected(production, token) == f"unknown key id {dev.kid!r}"


async def test_dev_mode_alongside_oidc(idp, make_verifier, tmp_path):
    settings = idp.settings(dev=True, dev_key=tmp_path / "dev.key")
    verifier = make_verifier(settings)  # creates the dev key itself
    dev = DevIssuer(settings)
    assert (await verifier.verify(dev.issue("dev-user", [], 60))).issuer == "portcullis-dev"
    assert (await verifier.verify(idp.token())).issuer == idp.issuer


async def test_dev_tokens_are_still_checked(make_verifier, tmp_path):
    settings = dev_settings(tmp_path)
    dev = DevIssuer(settings)
    verifier = make_verifier(settings, dev_issuer=dev)
    wrong_aud = dev.issue("alice", ["dba"], 60, audience="elsewhere")
    assert await rejected(verifier, wrong_aud) == "wrong audience"
    token = dev.issue("alice", ["dba"], 60)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] = int(time.time()) - 3600
    expired_forged = f"{header}.{b64(claims)}.{signature}"
    assert await rejected(verifier, expired_forged) == "bad signature"
    other = DevIssuer(dev_settings(tmp_path / "other"))
    assert "unknown key id" in await rejected(verifier, other.issue("alice", ["dba"], 60))


async def test_dev_issuer_expired_token(make_verifier, tmp_path):
    settings = dev_settings(tmp_path, leeway_seconds=30)
    dev = DevIssuer(settings)
    token = dev.issue("alice", ["dba"], -120)
    assert await rejected(make_verifier(settings, dev_issuer=dev), token) == "token expired"


def test_dev_issuer_key_file(tmp_path):
    settings = dev_settings(tmp_path)
    first = DevIssuer(settings)
    assert stat.S_IMODE(os.stat(settings.dev_key).st_mode) == 0o600
    assert settings.dev_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = DevIssuer(settings)
    assert again.kid == first.kid
    assert [p.name for p in settings.dev_key.parent.iterdir()] == ["issuer.key"]
    jwks = first.jwks()
    (jwk,) = jwks["keys"]
    assert jwk["kid"] == first.kid == jwk_thumbprint(jwk)
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert "d" not in jwk


def test_dev_issuer_rejects_a_key_of_another_kind(tmp_path):
    path = tmp_path / "rsa.key"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="not an Ed25519"):
        DevIssuer(IdentitySettings(dev=True, dev_key=path))


def test_dev_issuer_claims(tmp_path):
    dev = DevIssuer(dev_settings(tmp_path, groups_claim="realm_access.roles"))
    token = dev.issue("alice", ("dba",), 3600, extra_claims={"email": "a@example.com"})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": dev.kid, "typ": "JWT"}
    claims = jwt.decode(token, dev.public_key, algorithms=["EdDSA"], audience="portcullis")
    assert claims["realm_access"] == {"roles": ["dba"]}
    assert claims["iss"] == "portcullis-dev"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] == claims["iat"]
    assert claims["email"] == "a@example.com"
    assert len(claims["jti"]) == 36
    with pytest.raises(ValueError, match="sub"):
        dev.issue("alice", [], 60, extra_claims={"sub": "root"})
    with pytest.raises(ValueError):
        dev.issue("", [], 60)


# -- helpers -----------------------------------------------------------------------------


def test_rfc7638_and_rfc8037_thumbprints():
    rsa_jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
        "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
        "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(rsa_jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    okp_jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(okp_jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_jwks_parsing_skips_keys_that_must_never_verify(idp):
    published = idp.jwks()["keys"]
    oct_key = {"kty": "oct", "kid": "sym", "k": b64(b"secret")}
    enc_key = {**published[0], "kid": "enc", "use": "enc"}
    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(idp.private_key(idp.rsa_kid)))
    private_key = {**private, "kid": "priv"}
    keys = parse_jwks({"keys": [*published, oct_key, enc_key, private_key, "junk"]})
    assert set(keys) == {idp.rsa_kid, idp.ec_kid}
    with pytest.raises(Exception, match="no usable"):
        parse_jwks({"keys": [oct_key]})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h", 3600),
        ("30m", 1800),
        ("45s", 45),
        ("2d", 172800),
        ("3600", 3600),
        ("1h30m", 5400),
        (" 10M ", 600),
        (90, 90),
    ],
)
def test_parse_ttl(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "1x", "h", "1.5h", "1h 30m", "0s", True])
def test_parse_ttl_rejects(text):
    with pytest.raises(ValueError):
        parse_ttl(text)


def test_identity_input_is_a_copy():
    identity = Identity("alice", ("dba",), "iss", {"sub": "alice"}, "jti", 0)
    data = identity.to_input()
    data["claims"]["sub"] = "mallory"
    data["groups"].append("admin")
    assert identity.claims == {"sub": "alice"} and identity.groups == ("dba",)
