"""Signing-key rotation: the record that hands the PDP's signing from one key to the next,
and the key history a verifier reads out of the chain.

A rotation is one audit record of kind `signing_key.rotated` whose body is a signed
document (pdp.evidence.signing) made by the OLD key, with a second signature by the NEW
key over the same payload:

    {"payload": {"type": "key_rotation", "seq", "hash",          the head it follows
                 "old_key_id", "old_public_key", "new_key_id", "new_public_key", (PEM)
                 "reason", "time"},
     "signature": old key's, "key_id": old_key_id, "alg": "Ed25519",
     "new_signature": new key's}

So the old key says "from here on, this key signs for me", and the new key says "I take
over from that key at this head" — an auditor who trusts the key in use now learns the
one before from the chain itself, and records signed by the old key keep verifying after
it is destroyed. Each key is in force from the seq
after the rotation that brought it in to the rotation that retires it: a signature made
by a key outside its range (a retired key still held by a PDP, or stolen) fails.

Trust runs backwards only. An auditor who pins an old key learns from the chain when it
was retired, never that the key after it is the PDP's (`trusted_retired_problem`): the
old key's thief could have signed that hand-over, to a key of their own, as well. So a
verifier pins the PDP's current key, announced out of band, and the bundle or store must
end at it.

`KeyHistory` walks the rotations from the key the verifier trusts, backwards and
forwards; a rotation record outside that walk (made with a key of one's own, or by a
retired key again) is named as a problem. No IO here.
"""

from __future__ import annotations

import base64
import binascii
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdp.evidence.signing import (
    Signer,
    key_id_of,
    load_public_pem,
    public_pem,
    signature_problem,
    signed_bytes,
)

ROTATION_KIND = "signing_key.rotated"
ROTATION_TYPE = "key_rotation"


def rotation_body(old: Signer, new: Signer, head: tuple[int, str], reason: str) -> dict[str, Any]:
    """The body of the rotation record appended after `head` (seq, hash)."""
    payload = {
        "type": ROTATION_TYPE,
        "seq": head[0],
        "hash": head[1],
        "old_key_id": old.key_id,
        "old_public_key": old.public_pem().decode(),
        "new_key_id": new.key_id,
        "new_public_key": new.public_pem().decode(),
        "reason": reason,
        "time": time.time(),
    }
    doc = old.sign(payload)
    doc["new_signature"] = new.sign(payload)["signature"]
    return doc


def lost_key_rotation_body(
    old_public: Ed25519PublicKey, new: Signer, head: tuple[int, str], reason: str
) -> dict[str, Any]:
    """The body of a rotation from a key that is lost (no private key left to sign the
    hand-over): signed by the new key alone, naming the old key and the head it follows.
    Whoever trusts the new key learns the old one from it (the walk backwards); whoever
    trusts only the old key learns nothing from it (the walk forwards needs the old key's
    signature), so what the new key signs is not vouched for by the old one."""
    payload = {
        "type": ROTATION_TYPE,
        "seq": head[0],
        "hash": head[1],
        "old_key_id": key_id_of(old_public),
        "old_public_key": public_pem(old_public).decode(),
        "old_key_lost": True,
        "new_key_id": new.key_id,
        "new_public_key": new.public_pem().decode(),
        "reason": reason,
        "time": time.time(),
    }
    return new.sign(payload)


@dataclass(frozen=True)
class Rotation:
    """A rotation record whose two signatures verify (who may make one is the walk's)."""

    seq: int  # the record's
    old: Ed25519PublicKey
    new: Ed25519PublicKey
    old_id: str
    new_id: str
    named: int  # the head it follows (payload seq)
    named_hash: str
    lost: bool = False  # made without the old key (declared lost): signed by the new alone


def read_rotation(seq: int, body: Any) -> tuple[Rotation | None, str]:
    """The rotation a record's body makes, or None and why it makes none."""
    if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
        return None, "key rotation is not a signed document"
    p = body["payload"]
    if p.get("type") != ROTATION_TYPE:
        return None, "key rotation payload is not a key rotation"
    try:
        old = load_public_pem(str(p.get("old_public_key", "")).encode())
        new = load_public_pem(str(p.get("new_public_key", "")).encode())
    except ValueError:
        return None, "key rotation names a key that is not an Ed25519 public key"
    old_id, new_id = key_id_of(old), key_id_of(new)
    if p.get("old_key_id") != old_id or p.get("new_key_id") != new_id or old_id == new_id:
        return None, "key rotation names key ids that are not its keys'"
    lost = p.get("old_key_lost") is True
    if lost:  # the old key is gone: the new one alone signs (lost_key_rotation_body)
        bad = signature_problem(body, new)
        if bad:
            return None, f"key rotation (old key lost): {bad}"
    else:
        bad = signature_problem(body, old)
        if bad:
            return None, f"key rotation: {bad}"
        try:
            signature = base64.b64decode(str(body.get("new_signature", "")), validate=True)
            new.verify(signature, signed_bytes(p))
        except (binascii.Error, ValueError, TypeError):
            return None, "key rotation: the new key's signature is not valid base64"
        except InvalidSignature:
            return None, "key rotation: the new key's signature does not verify"
    named, named_hash = p.get("seq"), p.get("hash")
    if type(named) is not int or not isinstance(named_hash, str) or named >= seq:
        return None, "key rotation names no head before it"
    return Rotation(seq, old, new, old_id, new_id, named, named_hash, lost), ""


class KeyHistory:
    """The PDP's signing keys in the order they signed, each with the first seq it signs
    for: built by `key_history` from the chain's rotation records and a trusted key."""

    def __init__(self, trusted: Ed25519PublicKey, rotations: Sequence[Rotation] = ()) -> None:
        self.trusted = trusted
        self.rotations = list(rotations)  # the walk's, in seq order
        keys = [rotations[0].old if rotations else trusted]
        keys += [r.new for r in rotations]
        self._keys = keys
        self._starts = [1] + [r.seq + 1 for r in rotations]
        self.rotation_seqs = {r.seq: r for r in rotations}
        self.rotation_hashes: dict[int, str] = {}  # record hashes, where a reader knows them

    @property
    def current(self) -> Ed25519PublicKey:
        return self._keys[-1]

    def key_at(self, seq: int) -> Ed25519PublicKey:
        """The key in force for a signed record at `seq` (a rotation record: the old one)."""
        return self._keys[max(bisect_right(self._starts, seq) - 1, 0)]

    def key_named(self, key_id: Any) -> tuple[Ed25519PublicKey | None, int, int | None]:
        """The key of the history with this id, the first seq it signs for and the seq of
        the rotation that retired it (None: in force still)."""
        for n, key in enumerate(self._keys):
            if key_id_of(key) == key_id:
                end = self.rotations[n].seq if n < len(self.rotations) else None
                return key, self._starts[n], end
        return None, 0, None

    def trusted_retired(self) -> Rotation | None:
        """The rotation that retired the trusted key, or None when it is the newest key.

        A verifier follows such a rotation only to learn the trusted key's range (what it
        signed after being retired fails), never to trust the key it names: a holder of a
        retired key, kept or stolen, signs a hand-over to a key of their own as easily as
        the real one, and all the new key signs after it. Only the key the history ends at,
        announced out of band, vouches for what the chain holds past a rotation."""
        trusted_id = key_id_of(self.trusted)
        for n, key in enumerate(self._keys[:-1]):
            if key_id_of(key) == trusted_id:
                return self.rotations[n]
        return None

    def describe(self) -> str:
        """For the report: each key and the seqs it signed for."""
        parts = []
        for n, key in enumerate(self._keys):
            end = f"..{self.rotations[n].seq}" if n < len(self.rotations) else " on"
            lost = ""
            if n:
                lost = (
                    "; the key before declared LOST by this one: what it signs is not"
                    " vouched for by the key before"
                    if self.rotations[n - 1].lost
                    else "; handed over by a rotation both keys signed"
                )
            parts.append(f"{key_id_of(key)} (seq {self._starts[n]}{end}{lost})")
        return ", then ".join(parts)


def trusted_retired_problem(keys: KeyHistory) -> tuple[int, str] | None:
    """(seq, why) when the key a verifier trusts is not the newest of the history: what
    the keys after it signed is vouched for by nobody the verifier trusts."""
    r = keys.trusted_retired()
    if r is None:
        return None
    return (
        r.seq,
        f"the key trusted, {r.old_id}, was retired at seq {r.seq} (rotated to {r.new_id},"
        " a hand-over it signed): a holder of a retired key, kept or stolen, signs such a"
        f" hand-over to a key of their own as easily, so what {r.new_id} and any key after"
        " it signed is not vouched for; give --public-key with the PDP's current key,"
        " announced out of band",
    )


def as_history(keys: Ed25519PublicKey | KeyHistory) -> KeyHistory:
    return keys if isinstance(keys, KeyHistory) else KeyHistory(keys)


def key_history(
    trusted: Ed25519PublicKey, records: list[tuple[int, Any]]
) -> tuple[KeyHistory, list[tuple[int, str]]]:
    """The key history the rotation records (seq, body), in seq order, make from the
    trusted key, and a (seq, why) for each rotation record outside it.

    Backwards: the rotation that brought the trusted key in (signed by it) names the key
    before, and so on. Forwards: the first rotation by the key in force retires it. A key
    never comes back (a walk cannot loop)."""
    valid: list[Rotation] = []
    problems: list[tuple[int, str]] = []
    for seq, body in records:
        rotation, why = read_rotation(seq, body)
        if rotation is None:
            problems.append((seq, why))
        else:
            valid.append(rotation)
    trusted_id = key_id_of(trusted)
    walk: list[Rotation] = []
    seen = {trusted_id}
    key_id, before = trusted_id, None  # backwards: the rotation into key_id, before `before`
    while True:
        into = [
            r
            for r in valid
            if r.new_id == key_id and (before is None or r.seq < before) and r.old_id not in seen
        ]
        if not into:
            break
        r = into[0]  # the first: a copy of it (anyone may INSERT one) can only come later
        walk.insert(0, r)
        seen.add(r.old_id)
        key_id, before = r.old_id, r.seq
    key_id = trusted_id
    after = walk[-1].seq if walk else 0
    while True:
        # only a rotation the key in force signed hands over from it
        out = [
            r
            for r in valid
            if r.old_id == key_id and r.seq > after and r.new_id not in seen and not r.lost
        ]
        if not out:
            break
        r = out[0]
        walk.append(r)
        seen.add(r.new_id)
        key_id, after = r.new_id, r.seq
    used = {r.seq for r in walk}
    for r in valid:
        if r.seq not in used:
            problems.append(
                (
                    r.seq,
                    f"key rotation from key {r.old_id} to {r.new_id} is not in the PDP's key"
                    " history (made with another key, or by a key already retired)",
                )
            )
    problems.sort()
    return KeyHistory(trusted, walk), problems
