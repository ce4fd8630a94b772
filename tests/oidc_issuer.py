"""A real, local OIDC issuer for tests: discovery and JWKS over HTTP on 127.0.0.1.

    async with OIDCIssuer() as idp:
        settings = idp.settings()            # IdentitySettings trusting this issuer
        token = idp.token(sub="alice", groups=["dba"])
        kid = idp.rotate()                   # a new RSA key, published, now the signer

It serves `/.well-known/openid-configuration` and `/jwks` for freshly generated RSA
(RS256/PS256) and EC P-256 (ES256) keys and counts every request by path in `requests`,
so tests can assert how often a verifier fetched keys.
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from portcullis.config import IdentitySettings


def new_key(kind: str = "RSA") -> Any:
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(kind)


def _kind(alg: str) -> str:
    return "EC" if alg.startswith("ES") else "RSA"


class OIDCIssuer:
    def __init__(self, audience: str = "portcullis", groups_claim: str = "groups") -> None:
        self.audience = audience
        self.groups_claim = groups_claim
        self.requests: collections.Counter[str] = collections.Counter()
        self.jwks_status = 200  # set to e.g. 500 to make the JWKS endpoint fail
        self._keys: dict[str, Any] = {}  # kid -> private key
        self._published: list[str] = []
        self._current: dict[str, str] = {}  # "RSA"/"EC" -> kid used by default
        self.rsa_kid = self.rotate("RSA")
        self.ec_kid = self.rotate("EC")
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- server --------------------------------------------------------------------
    async def start(self) -> OIDCIssuer:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OIDCIssuer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    async def _discovery(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        return web.json_response(
            {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_url,
                "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        if self.jwks_status != 200:
            return web.Response(status=self.jwks_status, text="unavailable")
        return web.json_response(self.jwks())

    # -- keys ----------------------------------------------------------------------
    def rotate(self, kind: str = "RSA", publish: bool = True) -> str:
        """Add a new key of `kind` ("RSA" or "EC"), make it the signer, return its kid."""
        kid = f"{kind.lower()}-{uuid.uuid4().hex[:8]}"
        self._keys[kid] = new_key(kind)
        self._current[kind] = kid
        if publish:
            self._published.append(kid)
        return kid

    def publish(self, kid: str) -> None:
        if kid not in self._published:
            self._published.append(kid)

    def private_key(self, kid: str) -> Any:
        return self._keys[kid]

    def public_pem(self, kid: str | None = None) -> bytes:
        key = self._keys[kid or self.rsa_kid].public_key()
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self._published:
            public = self._keys[kid].public_key()
            algo = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
            jwk = json.loads(algo.to_jwk(public))
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    # -- tokens --------------------------------------------------------------------
    def claims(self, sub: Any = "alice@example.com", groups: Any = ("dba",), **overrides: Any):
        """Claims of a valid token; an override of None removes that claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            self.groups_claim: list(groups) if isinstance(groups, list | tuple) else groups,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        sub: Any = "alice@example.com",
        groups: Any = ("dba",),
        *,
        alg: str = "RS256",
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        """A token signed by this issuer's current key for `alg` (or by key `kid`)."""
        return self.sign(self.claims(sub, groups, **overrides), alg=alg, kid=kid, headers=headers)

    def sign(
        self,
        claims: dict[str, Any],
        *,
        alg: str = "RS256",
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Sign exactly `claims`; `headers` may override the kid the header names."""
        kid = kid or self._current[_kind(alg)]
        return jwt.encode(
            claims, self._keys[kid], algorithm=alg, headers={"kid": kid, **(headers or {})}
        )

    def settings(self, **overrides: Any) -> IdentitySettings:
        """IdentitySettings that trust this issuer through OIDC discovery."""
        base: dict[str, Any] = {
            "issuer": self.issuer,
            "audience": self.audience,
            "groups_claim": self.groups_claim,
        }
        base.update(overrides)
        return IdentitySettings(**base)
