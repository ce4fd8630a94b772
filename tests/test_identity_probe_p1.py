"""Probes of token verification, first round (helper identity): one token in two
spellings, members named twice, short HMAC secrets, and date claims that are no dates.

Attacks, each against a real local OIDC issuer or a running PDP:

- a padded signature segment (`<token>==`): PyJWT accepts trailing '=' on a segment, so
  the same signed token had two texts. The HTTP proxy keys its sessions on the token's
  text (a second session, with its own limits, per spelling) and anything that remembers
  tokens by text misses the other spelling. RFC 7515 §2 compact JWS has no padding.
- a member named twice in the header or payload (PyJWT keeps the last; an issuer or
  another reader may take the first): refused.
- an HMAC shared secret shorter than its hash (RFC 7518 §3.2): refused, not warned about.
- `exp`/`nbf`/`iat` that are no NumericDate: PyJWT reads them through int(), so a string
  "exp": "1893456000" passed, and an `exp` of 10**30 gave a session that never expires
  and an OpenSession that failed inside the PDP (its int64 `expires_at` cannot hold it)
  after the decision was made, instead of a refusal naming the token.
"""

from __future__ import annotations

import base64
import json
import math
import time
import warnings

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain.identity import DevIssuer, TokenRejected, TokenVerifier
from tests.oidc_issuer import OIDCIssuer


async def reason(verifier: TokenVerifier, tok: str) -> str:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(tok)
    return info.value.reason


# -- one token, one text -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_padded_signature_is_not_a_second_spelling(idp, verifier, alg):
    good = idp.token(alg=alg)
    assert (await verifier.verify(good)).subject == "alice@example.com"
    head, body, signature = good.split(".")
    assert len(signature) % 4 != 0  # a spelling with '=' exists for PyJWT
    padded = f"{head}.{body}.{signature}{'=' * (-len(signature) % 4)}"
    assert await reason(verifier, padded) == "malformed token"


async def test_a_padded_dev_token_is_refused_at_the_pdp(tmp_path):
    config = pdp_config(tmp_path)
    good = token(config)
    padded = good + "=" * (-len(good.rsplit(".", 1)[1]) % 4)
    assert padded != good
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        assert (await open_session(stub, good)).session_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, padded)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- dates that are dates ------------------------------------------------------------------

NOW = int(time.time())


@pytest.mark.parametrize(
    "claim,value",
    [
        ("exp", str(NOW + 300)),
        ("exp", 10**30),
        ("exp", 2**63),
        ("exp", -1),
        ("exp", math.inf),
        ("exp", math.nan),
        ("exp", [NOW + 300]),
        ("nbf", str(NOW - 10)),
        ("nbf", -(10**30)),
        ("iat", str(NOW)),
        ("iat", -5),
    ],
    # ids of their own: the values hold the time of collection, and pytest-xdist's workers
    # each collect and must name the same tests (a second ticking between the two made
    # the run stop with "Different tests were collected between gw0 and gw1")
    ids=[
        "exp-text",
        "exp-1e30",
        "exp-2**63",
        "exp-negative",
        "exp-inf",
        "exp-nan",
        "exp-list",
        "nbf-text",
        "nbf--1e30",
        "iat-text",
        "iat-negative",
    ],
)
async def test_date_claims_must_be_numbers_of_seconds(idp, verifier, claim, value):
    assert await reason(verifier, idp.token(**{claim: value}))


@pytest.mark.parametrize("ahead", [300, 300.5])
async def test_integer_and_fractional_dates_stay_accepted(idp, verifier, ahead):
    # the time the test runs, not the module's import: a suite run collects every file
    # first, and this test may run minutes later
    now = int(time.time())
    exp = now + ahead
    identity = await verifier.verify(idp.token(exp=exp, nbf=now - 1.5, iat=now))
    assert identity.expires_at == int(exp)


async def test_an_expiry_past_int64_is_a_refused_token_not_a_failed_open(tmp_path):
    config = pdp_config(tmp_path)
    dev = DevIssuer(config.identity)
    claims = jwt.decode(token(config), options={"verify_signature": False})
    claims["exp"] = 10**30
    forever = jwt.encode(
        claims, dev._key, algorithm=dev.algorithm, headers={"kid": dev.kid, "typ": "JWT"}
    )
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, forever)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
        assert "exp is not a date" in str(refused.value.details())


# -- one member, one value -----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rs256(idp: OIDCIssuer, header: bytes, payload: bytes) -> str:
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    key = idp.private_key(idp._current["RSA"])
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize(
    "tail",
    [
        ', "sub": "mallory@example.com"}',  # the subject twice: PyJWT kept the last
        ', "groups": ["dba"]}',
        ', "realm": {"roles": ["x"], "roles": ["dba"]}}',  # nested
    ],
)
async def test_a_claim_named_twice_rejects_the_token(idp, verifier, tail):
    """An issuer that writes a member twice (a template, a user attribute spliced in)
    means one thing to a reader keeping the first and another to PyJWT, which keeps the
    last: the payload signed for alice read as mallory."""
    kid = idp._current["RSA"]
    header = json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode()
    claims = idp.claims(groups=["readonly"])
    payload = (json.dumps(claims)[:-1] + tail).encode()
    assert await reason(verifier, _rs256(idp, header, payload)) == "malformed token"
    assert (await verifier.verify(_rs256(idp, header, json.dumps(claims).encode()))).groups


async def test_a_header_member_named_twice_rejects_the_token(idp, verifier):
    kid = idp._current["RSA"]
    header = f'{{"alg": "none", "kid": "{kid}", "alg": "RS256"}}'.encode()
    tok = _rs256(idp, header, json.dumps(idp.claims()).encode())
    assert await reason(verifier, tok) == "malformed token"


# -- an HMAC secret long enough not to be guessed -----------------------------------------


@pytest.mark.parametrize("alg,size", [("HS256", 32), ("HS384", 48), ("HS512", 64)])
async def test_a_shared_secret_shorter_than_its_hash_verifies_nothing(idp, alg, size):
    """A short identity.shared_secret ('secret', a word) is found offline from any token
    it signed (one agent's own), and then signs a dba token: PyJWT only warns."""
    for secret, accepted in (("s" * (size - 1), False), ("s" * size, True)):
        verifier = TokenVerifier(idp.settings(shared_secret=secret, algorithms=[alg]))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tok = jwt.encode(idp.claims(sub="svc"), secret, algorithm=alg)
            if accepted:
                assert (await verifier.verify(tok)).subject == "svc"
            else:
                assert await reason(verifier, tok) == f"algorithm {alg} not accepted"
        finally:
            await verifier.close()
