"""A token's one text: what the PDP and the proxies remember an agent's token by.

Owns `canonical_token` and `token_key`. An ECDSA signature (r, s) verifies as (r, n - s)
too, so anyone holding an ES256/384/512 token holds a second valid text of it. Which of
the two the issuer wrote is chance (OpenSSL, Go, Java and cryptography do not prefer the
low s), so refusing the high one would refuse half of an honest issuer's tokens; instead
every text is read as the one with the low s (s <= n / 2, as Bitcoin's BIP 62 fixes it),
and whatever remembers a token (the PDP's identity, the HTTP proxy's sessions) sees one
token. Any other token, or one that is not a well-formed ECDSA JWS, is its own canonical
text (verification refuses the malformed ones). Sans-IO; imports nothing of pdp/ or
proxies/, which both use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

# the order n of each ECDSA curve's group (SEC 2 §2.4.2, §2.5.1, §2.6.1; FIPS 186-4 D.1.2)
EC_ORDERS = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    "ES512": int(
        "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
        "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}


def _decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def canonical_token(token: str) -> str:
    """The token with an ECDSA signature's s in its low form; any other text as given."""
    try:
        head, body, signature = token.split(".")
        alg = json.loads(_decode(head)).get("alg")
        raw = _decode(signature)
    except (ValueError, TypeError, AttributeError, RecursionError, binascii.Error):
        return token
    order = EC_ORDERS.get(alg) if isinstance(alg, str) else None
    if order is None or len(raw) % 2:
        return token
    size = len(raw) // 2
    r, s = raw[:size], int.from_bytes(raw[size:], "big")
    if not 0 < s < order or s <= order // 2:
        return token
    return f"{head}.{body}.{_encode(r + (order - s).to_bytes(size, 'big'))}"


def token_key(token: str) -> str:
    """What a token is remembered by: the SHA-256 (hex) of its canonical text."""
    return hashlib.sha256(canonical_token(token).encode("utf-8", "surrogatepass")).hexdigest()
