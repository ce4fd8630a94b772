"""A real, local OIDC issuer for tests: discovery and JWKS over HTTP on 127.0.0.1.

    async with OIDCIssuer() as idp:
        settings = idp.settings()            # IdentitySettings trusting this issuer
        token = idp.token(sub="alice", groups=["dba"])
        kid = idp.rotate()                   # a new RSA key, published, now the signer

It serves `/.well-known/openid-configuration` and `/jwks` for freshly generated RSA
(RS256/PS256) and EC P-256 (ES256) keys and counts every request by path in `requests`,
so tests can assert how often a verifier fetched keys.

It is also an authorization server for browser sign-in (OIDC authorization code flow
with PKCE, RFC 6749 §4.1 and RFC 7636): `/authorize` shows a sign-in form for the people
in `users` (username → groups; any password is taken), redirects back to the client's
redirect_uri with a code, and `/token` exchanges that code once, for the client and
redirect URI it was issued to and the verifier of its S256 challenge, for an ID token
whose audience is the client id and which carries the nonce.

        idp.users["sam@example.com"] = ["security"]
        idp.redirect_uris.add("http://127.0.0.1:7001/console/callback")
"""

from __future__ import annotations

import base64
import collections
import hashlib
import html
import json
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

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
        self.users: dict[str, list[str]] = {}  # who may sign in at /authorize, with groups
        self.redirect_uris: set[str] = set()  # registered clients' redirect URIs
        self._codes: dict[str, dict[str, Any]] = {}

    # -- server --------------------------------------------------------------------
    async def start(self) -> OIDCIssuer:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize_form)
        app.router.add_post("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
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
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        if self.jwks_status != 200:
            return web.Response(status=self.jwks_status, text="unavailable")
        return web.json_response(self.jwks())

    # -- authorization code + PKCE ----------------------------------------------------
    _KEPT = ("client_id", "redirect_uri", "state", "nonce", "code_challenge",
             "code_challenge_method")  # fmt: skip

    def _check_client(self, params: Any) -> None:
        if params.get("client_id") != self.audience:
            raise web.HTTPBadRequest(text="unknown client_id")
        if params.get("redirect_uri") not in self.redirect_uris:
            raise web.HTTPBadRequest(text="redirect_uri is not registered")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise web.HTTPBadRequest(text="PKCE S256 required")

    async def _authorize_form(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        q = request.query
        if q.get("response_type") != "code":
            raise web.HTTPBadRequest(text="response_type must be code")
        self._check_client(q)
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(q.get(k, ""))}">'
            for k in self._KEPT
        )
        page = (
            '<!doctype html><html lang="en"><head><title>Test IdP sign-in</title></head><body>'
            '<main><h1>Test identity provider</h1><form method="post" action="/authorize">'
            f"{hidden}"
            '<p><label for="username">Username</label> <input id="username" name="username"></p>'
            '<p><label for="password">Password</label> '
            '<input id="password" name="password" type="password"></p>'
            '<p><button type="submit">Sign in</button></p></form></main></body></html>'
        )
        return web.Response(text=page, content_type="text/html")

    async def _authorize(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        form = await request.post()
        self._check_client(form)
        user = str(form.get("username", ""))
        if user not in self.users:
            return web.Response(status=403, text="unknown user", content_type="text/plain")
        code = secrets.token_urlsafe(24)
        self._codes[code] = {
            "sub": user,
            "groups": list(self.users[user]),
            "client_id": form["client_id"],
            "redirect_uri": form["redirect_uri"],
            "nonce": str(form.get("nonce", "")),
            "challenge": str(form["code_challenge"]),
            "issued": time.time(),
        }
        query = urlencode({"code": code, "state": str(form.get("state", ""))})
        raise web.HTTPSeeOther(f"{form['redirect_uri']}?{query}")

    async def _token(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        form = await request.post()
        granted = self._codes.pop(str(form.get("code", "")), None)

        def refuse(error: str) -> web.Response:
            return web.json_response({"error": error}, status=400)

        if form.get("grant_type") != "authorization_code" or granted is None:
            return refuse("invalid_grant")
        if granted["issued"] + 60 < time.time():
            return refuse("invalid_grant")
        if (
            form.get("client_id") != granted["client_id"]
            or form.get("redirect_uri") != granted["redirect_uri"]
        ):
            return refuse("invalid_grant")
        verifier = str(form.get("code_verifier", "")).encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if not secrets.compare_digest(challenge.decode(), granted["challenge"]):
            return refuse("invalid_grant")
        id_token = self.token(granted["sub"], granted["groups"], nonce=granted["nonce"] or None)
        return web.json_response({"id_token": id_token, "token_type": "Bearer", "expires_in": 300})

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
