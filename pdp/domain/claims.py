"""Which of a token's claims a session.open record keeps in the clear, and the rest committed.

Owns the split of a verified token's payload (Identity.claims) between what the PDP decides
on, written in the clear in the session.open record (the registered JWT claims, the groups
claim and those `identity.evidence_claims` names), and every other claim the IdP put in
the token (an email, a name, a phone number: personal data no decision needed), written
there as a salted commitment `{"$commit": sha256_hex(salt || canonical_json(value))}`. The
values and their salts are a `session.claims` record of the same session (a kind a bundle
withholding values withholds whole: pdp.evidence.bundle), so such a bundle still verifies
offline while it names no claim beyond those, and the holder of the full bundle proves any
one to its holder with the value and its salt. A session found again in the store (a
restart, another replica) takes each value back only where it re-derives its commitment.
No IO here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

from pdp.store.chain import canonical_json

COMMIT = "$commit"
CLAIMS_KIND = "session.claims"
# RFC 7519 §4.1, OIDC Core §2 (azp, auth_time, acr, amr), RFC 8693 (scope, client_id):
# what says which token this was and for whom, never who the person is
REGISTERED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "azp",
        "auth_time",
        "acr",
        "amr",
        "scope",
        "client_id",
        # the fingerprint of the SSH key that proved an ssh-publickey identity
        # (pdp.domain.ssh_identity): what the identity was decided on, no one's name
        "ssh_key",
    }
)
SALT_BYTES = 16


def commitment(salt: str, value: Any) -> str:
    """sha256_hex(salt bytes || canonical_json(value)); salt is hex."""
    return hashlib.sha256(bytes.fromhex(salt) + canonical_json(value).encode()).hexdigest()


def kept_claims(groups_claim: str, also: Iterable[str] = ()) -> frozenset[str]:
    """The claims kept in the clear: the registered ones, the groups claim (its first name
    when it is a path, `realm_access.roles`: the policy reads groups through it) and those
    the configuration names besides (identity.evidence_claims: a row filter's tenant)."""
    name = groups_claim or "groups"
    return REGISTERED_CLAIMS | {name, name.split(".", 1)[0]} | frozenset(also)


def committed(
    claims: dict[str, Any], kept: frozenset[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the claims as a session.open record keeps them, {name: {value, salt}} of each one
    committed). A claim that cannot be encoded is committed as its repr (the store would
    refuse the record otherwise, and the token verified all the same)."""
    shown: dict[str, Any] = {}
    opened: dict[str, dict[str, Any]] = {}
    for name, value in claims.items():
        if name in kept:
            shown[name] = value
            continue
        salt = secrets.token_hex(SALT_BYTES)
        try:
            digest = commitment(salt, value)
        except (TypeError, ValueError, RecursionError):
            value = repr(value)
            digest = commitment(salt, value)
        shown[name] = {COMMIT: digest}
        opened[name] = {"value": value, "salt": salt}
    return shown, opened


def is_commitment(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {COMMIT} and isinstance(value[COMMIT], str)


def revealed(shown: dict[str, Any], opened: Any) -> dict[str, Any]:
    """The claims of a session.open record with each commitment replaced by its value from
    a session.claims body (or any of a list of them: an open asked twice, a grant's
    request and its approved re-run), where value and salt re-derive it; a commitment left
    without (no record, another value) is dropped: a claim the policy reads as absent."""
    bodies = opened if isinstance(opened, list) else [opened]
    claims: dict[str, Any] = {}
    for name, value in shown.items():
        if not is_commitment(value):
            claims[name] = value
            continue
        for body in bodies:
            held = _held(body, name)
            if held is not None and hmac.compare_digest(held[0], value[COMMIT]):
                claims[name] = held[1]
                break
    return claims


def _held(body: Any, name: str) -> tuple[str, Any] | None:
    """(the commitment its value and salt make, the value) of one claim a session.claims
    body holds, or None."""
    values = body.get("claims") if isinstance(body, dict) else None
    held = values.get(name) if isinstance(values, dict) else None
    if not isinstance(held, dict) or not isinstance(held.get("salt"), str):
        return None
    try:
        return commitment(held["salt"], held.get("value")), held.get("value")
    except (TypeError, ValueError, RecursionError):
        return None
