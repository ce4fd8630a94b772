"""Identity probe 10 (helper auditsec8): the identity provider's keys fetched in clear.

Attack (on the network path between the PDP and its OIDC provider, holding nothing but a
reader's place on that network): every token is verified against the keys the PDP
fetches, and `identity.jwks_url`, `identity.issuer` (discovery) and the `jwks_uri` a
discovery document names were fetched over plain HTTP to any host. Whoever answers such a
fetch in the provider's place (ARP or DNS spoofing, a rogue hop) publishes a key of their
own, and a token they sign with it is anyone in any group (dba, the auditors, the
approvers) to every proxy and the console. A discovery document fetched over https could
also name an http:// jwks_uri. Vault (vault.addr) and the PDP (proxies.pdp) already refuse
plain HTTP beyond this host; the identity keys now do too: a configured jwks_url or issuer
that is plain HTTP to another host stops the start (ConfigError), and a discovered
jwks_uri, or a console sign-in endpoint, in clear to another host is refused (no keys:
every token rejected, fail closed; no sign-in). Loopback (the tests' issuer, a sidecar)
stays allowed.

Real components: aiohttp servers on this host's loopback and non-loopback addresses, the
PDP's TokenVerifier and the console's OIDC provider; tokens signed with PyJWT.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from pdp.console.settings import ConsoleSettings
from pdp.console.signin import OIDCProvider, SignInFailed
from pdp.domain.identity import TokenRejected, TokenVerifier
from portcullis.config import ConfigError, IdentitySettings

ISSUER = "https://idp.example.com"


def _outward_address() -> str:
    """An address of this host that is not loopback (the route out), else skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = str(s.getsockname()[0])
        except OSError:
            address = ""
    if not address or ipaddress.ip_address(address).is_loopback:
        pytest.skip("this host has no address but loopback")
    return address


@contextlib.asynccontextmanager
async def _serving(host: str, routes: dict[str, Any]) -> AsyncIterator[str]:
    """An HTTP server on host answering each path with its JSON; yields its base URL."""
    app = web.Application()
    for path, body in routes.items():

        async def answer(request: web.Request, body: Any = body) -> web.Response:
            return web.json_response(body() if callable(body) else body)

        app.router.add_get(path, answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def _forger() -> tuple[Any, dict[str, Any]]:
    """The on-path attacker's own key and the JWKS publishing it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return key, {"keys": [{**jwk, "kid": "k1", "use": "sig"}]}


def _forged(key: Any, issuer: str) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": "mallory@example.com", "aud": "portcullis",
              "iat": now, "exp": now + 300, "groups": ["dba", "security"]}  # fmt: skip
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


async def test_a_jwks_url_in_clear_to_another_host_stops_the_start() -> None:
    key, jwks = _forger()
    async with _serving(_outward_address(), {"/jwks": jwks}) as base:
        settings = IdentitySettings(issuer=ISSUER, jwks_url=f"{base}/jwks")
        with pytest.raises(ConfigError) as refused:
            verifier = TokenVerifier(settings)
            try:  # (before: the forged dba token was an identity)
                await verifier.verify(_forged(key, ISSUER))
            finally:
                await verifier.close()
        assert refused.value.key == "identity.jwks_url" and "https" in refused.value.problem


async def test_an_issuer_in_clear_to_another_host_stops_the_start() -> None:
    key, jwks = _forger()
    discovery: dict[str, Any] = {}
    routes = {"/.well-known/openid-configuration": discovery, "/jwks": jwks}
    async with _serving(_outward_address(), routes) as issuer:
        discovery.update(issuer=issuer, jwks_uri=f"{issuer}/jwks")
        with pytest.raises(ConfigError) as refused:
            verifier = TokenVerifier(IdentitySettings(issuer=issuer))
            try:
                await verifier.verify(_forged(key, issuer))
            finally:
                await verifier.close()
        assert refused.value.key == "identity.issuer"


async def test_a_discovered_jwks_uri_in_clear_to_another_host_gives_no_keys() -> None:
    key, jwks = _forger()
    async with _serving(_outward_address(), {"/jwks": jwks}) as remote:
        discovery: dict[str, Any] = {"jwks_uri": f"{remote}/jwks"}
        async with _serving("127.0.0.1", {"/.well-known/openid-configuration": discovery}) as idp:
            discovery["issuer"] = idp
            verifier = TokenVerifier(IdentitySettings(issuer=idp))
            try:
                with pytest.raises(TokenRejected) as rejected:
                    await verifier.verify(_forged(key, idp))
                assert rejected.value.reason == "cannot fetch keys from the identity provider"
                assert "plain HTTP" in rejected.value.detail
            finally:
                await verifier.close()


async def test_keys_from_this_host_over_http_are_still_fetched() -> None:
    key, jwks = _forger()
    async with _serving("127.0.0.1", {"/jwks": jwks}) as base:
        verifier = TokenVerifier(IdentitySettings(issuer=ISSUER, jwks_url=f"{base}/jwks"))
        try:
            identity = await verifier.verify(_forged(key, ISSUER))
        finally:
            await verifier.close()
    assert identity.groups == ("dba", "security")


async def test_the_console_signs_in_at_no_endpoint_in_clear_to_another_host() -> None:
    """The authorize endpoint takes the person's password, the token endpoint answers
    the ID token (a bearer token every proxy takes): neither in clear off this host."""
    async with _serving(_outward_address(), {}) as remote:
        discovery: dict[str, Any] = {
            "authorization_endpoint": f"{remote}/authorize",
            "token_endpoint": f"{remote}/token",
        }
        async with _serving("127.0.0.1", {"/.well-known/openid-configuration": discovery}) as idp:
            discovery["issuer"] = idp
            provider = OIDCProvider(ConsoleSettings(public_url="http://127.0.0.1:1", issuer=idp))
            with pytest.raises(SignInFailed) as refused:
                await provider.authorize_url({"state": "s"})
            assert "plain HTTP" in str(refused.value)


async def test_a_redirect_through_plain_http_to_another_host_gives_no_keys() -> None:
    """The configured URL is fine, the document is not: a redirect (which the provider, or
    whoever answers an http:// hop, sends) to plain HTTP on another host is refused."""
    key, jwks = _forger()
    async with _serving(_outward_address(), {"/jwks": jwks}) as remote:
        app = web.Application()

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"{remote}/jwks")

        app.router.add_get("/jwks", moved)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        settings = IdentitySettings(issuer=ISSUER, jwks_url=f"http://127.0.0.1:{port}/jwks")
        verifier = TokenVerifier(settings)
        try:
            with pytest.raises(TokenRejected) as rejected:
                await verifier.verify(_forged(key, ISSUER))
            assert "redirected in plain HTTP" in rejected.value.detail
        finally:
            await verifier.close()
            await runner.cleanup()
