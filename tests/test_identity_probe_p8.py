"""Probes of token verification, eighth round (helper idsec6): the malleable twin of an
ECDSA-signed token.

Attack (anyone holding one ES256 token): an ECDSA signature (r, s) verifies as (r, n - s)
too, so the holder has a second valid text of the token, which anything keyed by the
token's text (a cache of tokens seen, the HTTP proxy's sessions) took for another token.
Decision (pdp.domain.identity.canonical_token): both texts verify, since issuers sign
with either s by chance and refusing the high one would refuse half of an honest
issuer's tokens, and every text is keyed by its low-s form: `Identity.token_key` is one
for both twins, as it is for the same token presented twice.
"""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.utils import base64url_decode, base64url_encode

from portcullis.token_text import EC_ORDERS, canonical_token, token_key


def twin(token: str, alg: str) -> str:
    """The other valid text of an ECDSA token: s replaced by n - s."""
    head, body, signature = token.split(".")
    raw = base64url_decode(signature)
    size = len(raw) // 2
    s = int.from_bytes(raw[size:], "big")
    other = (EC_ORDERS[alg] - s).to_bytes(size, "big")
    return f"{head}.{body}.{base64url_encode(raw[:size] + other).decode()}"


@pytest.mark.parametrize("signed", range(4))  # each signature's s is high or low by chance
async def test_both_texts_of_an_es256_token_are_one_token(idp, verifier, signed):
    token = idp.token(alg="ES256", jti=f"t-{signed}")
    other = twin(token, "ES256")
    assert other != token
    first, second = await verifier.verify(token), await verifier.verify(other)
    assert first.subject == second.subject == "alice@example.com"
    assert first.token_key == second.token_key == token_key(token) == token_key(other)
    assert canonical_token(token) == canonical_token(other)
    assert canonical_token(canonical_token(other)) == canonical_token(other)


async def test_tokens_differ_in_their_keys(idp, verifier):
    one, two = idp.token(alg="ES256"), idp.token(alg="ES256")
    rsa = idp.token()
    keys = {(await verifier.verify(t)).token_key for t in (one, two, rsa)}
    assert len(keys) == 3
    assert canonical_token(rsa) == rsa  # RSA signatures have no twin


def test_a_malformed_token_is_its_own_text():
    for text in ("", "a.b", "x.y.z", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "...."):
        assert canonical_token(text) == text


@pytest.mark.parametrize(
    ("alg", "curve"),
    [("ES256", ec.SECP256R1()), ("ES384", ec.SECP384R1()), ("ES512", ec.SECP521R1())],
)
def test_every_curves_twin_is_read_as_one(alg, curve):
    """The twin verifies (so the curve's order is right) and both read as one text."""
    key = ec.generate_private_key(curve)
    for n in range(8):
        token = jwt.encode({"n": n}, key, algorithm=alg)
        other = twin(token, alg)
        jwt.decode(other, key.public_key(), algorithms=[alg])
        assert canonical_token(token) == canonical_token(other)
