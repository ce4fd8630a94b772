"""What the HTTP proxy keys an agent's session by: the token's one canonical text.

Owns `session_key`. An ECDSA signature (r, s) verifies as (r, n - s) too, so a holder of
one ES256/384/512 token holds a second valid text of it, which keyed by its text was a
second session with its own limits. The PDP accepts both (issuers sign with either s by
chance) and keys by the low-s form (pdp.domain.identity.canonical_token); this is the same
reading, sans-IO, for a proxy, which imports nothing of pdp/.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

# the order n of each ECDSA curve's group (SEC 2 §2.4.2, §2.5.1, §2.6.1)
_EC_ORDERS = {
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


def canonical_token(token: str) -> str:
    """The token with an ECDSA signature's s in its low form; any other text as given."""
    try:
        head, body, signature = token.split(".")
        alg = json.loads(_decode(head)).get("alg")
        raw = _decode(signature)
    except (ValueError, TypeError, AttributeError, RecursionError, binascii.Error):
        return token
    order = _EC_ORDERS.get(alg) if isinstance(alg, str) else None
    if order is None or len(raw) % 2:
        return token
    size = len(raw) // 2
    s = int.from_bytes(raw[size:], "big")
    if not 0 < s < order or s <= order // 2:
        return token
    low = raw[:size] + (order - s).to_bytes(size, "big")
    return f"{head}.{body}.{base64.urlsafe_b64encode(low).rstrip(b'=').decode('ascii')}"


def session_key(token: str) -> str:
    """The SHA-256 (hex) of the token's canonical text."""
    return hashlib.sha256(canonical_token(token).encode("utf-8", "surrogatepass")).hexdigest()
