"""Ed25519 signatures over canonical JSON: the one signed-document format of Portcullis.

A signed document is

    {"payload": {...}, "signature": base64(ed25519(canonical_json(payload))),
     "key_id": sha256(raw 32-byte public key) hex[:16], "alg": "Ed25519"}

where canonical JSON is the audit chain's (`pdp.store.chain.canonical_json`: sort_keys,
separators (",", ":"), ensure_ascii=False) encoded as UTF-8. Every payload carries a
"type" ("checkpoint", "credential.statement", "chain_head", "manifest") so a signature
made for one purpose cannot be passed off as another. No IO here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pdp.store.chain import canonical_json

ALG = "Ed25519"


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(pem: bytes) -> Ed25519PublicKey:
    """Raises ValueError unless `pem` is an Ed25519 public key (SubjectPublicKeyInfo PEM)."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def signed_bytes(payload: dict[str, Any]) -> bytes:
    return canonical_json(payload).encode()


def notice_message(timestamp: str, body: bytes) -> bytes:
    """What a webhook notice's signature signs: a fixed prefix, the timestamp header's
    value and the body as sent."""
    return b"portcullis-webhook-v1\n" + timestamp.encode() + b"\n" + body


class Signer:
    """Signs payloads with the PDP's key (config.pdp.signing_key)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()
        self.key_id = key_id_of(self.public_key)

    def public_pem(self) -> bytes:
        return public_pem(self.public_key)

    def sign_notice(self, timestamp: str, body: bytes) -> bytes:
        """The signature of an outgoing notice (pdp.api.webhooks): of notice_message, which
        no signed document's canonical JSON can be (it starts with a fixed word, not '{')."""
        return self._key.sign(notice_message(timestamp, body))

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        signature = self._key.sign(signed_bytes(payload))
        return {
            "payload": payload,
            "signature": base64.b64encode(signature).decode(),
            "key_id": self.key_id,
            "alg": ALG,
        }


def signature_problem(doc: Any, public_key: Ed25519PublicKey) -> str:
    """Why `doc` is not a valid signed document of `public_key`; "" when it is."""
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        return "not a signed document (no payload object)"
    if doc.get("alg") != ALG:
        return f"unsupported signature algorithm {doc.get('alg')!r}"
    if doc.get("key_id") != key_id_of(public_key):
        return f"signed by key {doc.get('key_id')!r}, not by {key_id_of(public_key)}"
    try:
        signature = base64.b64decode(str(doc.get("signature", "")), validate=True)
        public_key.verify(signature, signed_bytes(doc["payload"]))
    except (binascii.Error, ValueError, TypeError):
        return "signature is not valid base64 or its payload cannot be serialized"
    except InvalidSignature:
        return "signature does not verify"
    return ""


def verify_signed(doc: Any, public_key: Ed25519PublicKey) -> bool:
    return signature_problem(doc, public_key) == ""
