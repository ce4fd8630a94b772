"""Which proxy is calling: the PDP's half of "only proxies speak for sessions".

Owns proxy identities and how a call proves one:

- **mTLS** (`pdp.tls.client_ca_file`): the client certificate, verified by the TLS
  handshake against that CA, names the proxy (its subject's common name) and the
  connections it may serve (subjectAltName URIs `urn:portcullis:connection:NAME`, or
  `urn:portcullis:connection:*` for every one). `portcullis certs` mints such certificates.
- **a proxy credential** (the embedded default): `pcp1.<claims>.<mac>` in the call
  metadata `portcullis-proxy-credential`, where the claims name the proxy and its
  connections and the MAC is HMAC-SHA256 under the PDP's proxy key (`pdp.proxy_key`, 32
  random bytes, 0600, created on first start). The PDP issues them: `portcullis up` hands
  each of its proxies one for its connection, and at every start the PDP writes one for
  every configured connection to `pdp.proxy_credential_file` (0600), which a proxy started
  alone with the same configuration reads.

A verified certificate wins over a credential. This module decides nothing about sessions
(pdp.api.service binds them) and never logs a credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from portcullis.config_keyfiles import check_key_file
from portcullis.wire import CREDENTIAL_METADATA

log = logging.getLogger("portcullis.proxy_auth")

CONNECTION_URI = "urn:portcullis:connection:"
ANY_CONNECTION = "*"
CREDENTIAL_PREFIX = "pcp1"  # how a credential begins (a bearer token that is one)
_CACHE_LIMIT = 1024


@dataclass(frozen=True)
class ProxyIdentity:
    """A proxy the PDP has authenticated: its name, how it proved it, what it may serve."""

    name: str
    method: str  # mtls | credential
    connections: frozenset[str]

    @property
    def key(self) -> str:
        """What a session is bound to."""
        return f"{self.method}:{self.name}"

    def serves(self, connection: str) -> bool:
        return ANY_CONNECTION in self.connections or connection in self.connections

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "connections": sorted(self.connections)}


class ProxyKey:
    """The PDP's secret behind proxy credentials."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("a proxy key has at least 32 bytes")
        self._secret = secret

    @classmethod
    def load_or_create(cls, path: Path, allow_readable: bool = False) -> ProxyKey:
        """Read the key at path, or create it 0600 (parents 0700) if it does not exist; a
        key others may read is a ConfigError unless allow_readable (then a warning)."""
        if not path.exists():
            write_private(path, secrets.token_bytes(32).hex().encode() + b"\n", replace=False)
            log.info("created proxy key %s", path)
        check_key_file(path, "pdp.proxy_key", allow_readable)
        return cls(bytes.fromhex(path.read_text().strip()))

    def _mac(self, claims: str) -> str:
        return hmac.new(self._secret, claims.encode(), hashlib.sha256).hexdigest()

    def derive(self, purpose: str) -> bytes:
        """A key for another use of this secret (it never MACs a credential: claims are
        base64url, which has no ':')."""
        return hmac.new(self._secret, f"derive:{purpose}".encode(), hashlib.sha256).digest()

    def issue(self, name: str, connections: list[str] | tuple[str, ...]) -> str:
        """A credential for proxy `name` serving `connections` (the same every time)."""
        body = json.dumps({"name": name, "connections": sorted(connections)}, sort_keys=True)
        claims = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return f"{CREDENTIAL_PREFIX}.{claims}.{self._mac(claims)}"

    def verify(self, credential: str) -> ProxyIdentity | None:
        if not credential.isascii():  # compare_digest refuses other text (TypeError)
            return None
        prefix, _, rest = credential.partition(".")
        claims, _, mac = rest.partition(".")
        if prefix != CREDENTIAL_PREFIX or not hmac.compare_digest(mac, self._mac(claims)):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
            name, connections = str(body["name"]), frozenset(map(str, body["connections"]))
        except (ValueError, KeyError, TypeError):
            return None
        return ProxyIdentity(name, "credential", connections)


def identity_from_certificate(pem: bytes) -> ProxyIdentity | None:
    """The proxy a verified client certificate names; None without a common name."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not names:
        return None
    connections: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(CONNECTION_URI):
                connections.add(uri[len(CONNECTION_URI) :])
    return ProxyIdentity(str(names[0].value), "mtls", frozenset(connections))


class ProxyAuthenticator:
    """Finds the proxy identity of a gRPC call (None: not a proxy)."""

    def __init__(self, key: ProxyKey | None) -> None:
        self.key = key
        self._certs: dict[bytes, ProxyIdentity | None] = {}
        self._credentials: dict[str, ProxyIdentity | None] = {}

    def identify(self, context: Any) -> ProxyIdentity | None:
        try:
            auth = context.auth_context() or {}
        except (AttributeError, NotImplementedError):
            auth = {}
        pems = auth.get("x509_pem_cert") or ()
        if pems:
            pem = bytes(pems[0])
            if pem not in self._certs:
                _bounded(self._certs)
                self._certs[pem] = identity_from_certificate(pem)
            return self._certs[pem]
        credential = _metadata_value(context, CREDENTIAL_METADATA)
        if not credential or self.key is None:
            return None
        if credential not in self._credentials:
            _bounded(self._credentials)
            self._credentials[credential] = self.key.verify(credential)
        return self._credentials[credential]


def _metadata_value(context: Any, name: str) -> str:
    try:
        metadata = context.invocation_metadata() or ()
    except (AttributeError, NotImplementedError):
        return ""
    for entry in metadata:
        key, value = entry[0], entry[1]
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def _bounded(cache: dict[Any, Any]) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()


def write_private(path: Path, data: bytes, replace: bool = True) -> None:
    """Write a secret file 0600 (parents 0700), whole or not at all: through a temporary
    file that is renamed (replace) or hard-linked (first writer wins) into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
    finally:
        tmp.unlink(missing_ok=True)
