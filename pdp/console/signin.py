"""Signing in to the console: OIDC authorization code with PKCE (RFC 6749 §4.1, RFC 7636).

Owns the console's side of the login — `/console/login` starts it (state, nonce, an S256
code challenge; the login in a short-lived cookie, signed by this PDP, that binds it to
this browser), `/console/callback` finishes it (the state checked against that cookie, the code
exchanged with the verifier, the ID token verified by the PDP's own TokenVerifier — the
same issuer, audience, keys and algorithms as every proxy's token — and its nonce
checked), `/console/logout` ends it — and the two providers a login can go to:

- `OIDCProvider`: the configured issuer, its endpoints read from OIDC discovery;
- `DevProvider`: the dev issuer of the embedded default (identity.dev with no issuer), an
  authorize form served by this PDP to loopback clients only — of a console whose public
  URL is this host's, in requests no proxy relayed — which asks who you are as
  `portcullis token` does and signs with the same dev key. Never on in production.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from pdp.console.markup import Html, render
from pdp.console.settings import ConsoleSettings
from pdp.console.websession import (
    LOGIN_SECONDS,
    WEB_SESSION,
    WebSessions,
    cookie_name,
    login_cookie,
)
from pdp.domain.identity import DevIssuer, TokenRejected, TokenVerifier
from pdp.plumbing.downloads import read_capped
from portcullis.network_path import cleartext_remote, names_this_host

if TYPE_CHECKING:
    from pdp.console.app import Console

MAX_DOCUMENT = 256 * 1024
FETCH_TIMEOUT = 5.0
DISCOVERY_SECONDS = 3600.0  # how long a fetched discovery document is used
DISCOVERY_RETRY_SECONDS = 30.0  # how long a failed fetch answers every sign-in at once
CODE_SECONDS = 60
# what a proxy relaying a request adds: the browser behind it is elsewhere, however near
# the proxy is (the dev issuer signs in browsers at this machine only)
RELAYED = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


class SignInFailed(Exception):
    """A login cannot complete; the message is safe to show."""


class Provider(Protocol):
    async def authorize_url(self, params: dict[str, str]) -> str: ...

    async def exchange(self, code: str, verifier: str) -> str: ...


class OIDCProvider:
    """An OIDC issuer, found by discovery; the console is a public client using PKCE.

    The discovery document is kept for DISCOVERY_SECONDS (an issuer that moves its
    endpoints is followed within that), and a failure to fetch it is kept for
    DISCOVERY_RETRY_SECONDS: while the issuer is down each sign-in fails at once with the
    reason, instead of every one waiting out the fetch's timeout."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self._document: dict[str, Any] | None = None
        self._fetched_at = 0.0  # time.monotonic() of the document, or of the failure
        self._failure: SignInFailed | None = None
        self._fetching: asyncio.Future[dict[str, Any]] | None = None

    async def _discovery(self) -> dict[str, Any]:
        age = time.monotonic() - self._fetched_at
        if self._document is not None and age < DISCOVERY_SECONDS:
            return self._document
        if self._failure is not None and age < DISCOVERY_RETRY_SECONDS:
            raise SignInFailed(f"{self._failure} (tried again after {DISCOVERY_RETRY_SECONDS:g} s)")
        if self._fetching is None:  # one fetch for every sign-in that waits on it
            self._fetching = asyncio.ensure_future(self._fetch_discovery())
            self._fetching.add_done_callback(self._fetched)
        return await asyncio.shield(self._fetching)

    def _fetched(self, work: asyncio.Future[dict[str, Any]]) -> None:
        self._fetching = None
        self._fetched_at = time.monotonic()
        failure = None if work.cancelled() else work.exception()
        if work.cancelled() or failure is not None:
            self._document = None
            self._failure = (
                failure
                if isinstance(failure, SignInFailed)
                else SignInFailed("the issuer's discovery failed")
            )
        else:
            self._document, self._failure = work.result(), None

    async def _fetch_discovery(self) -> dict[str, Any]:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await _fetch_json("GET", url)
        if (
            document.get("issuer") != self.settings.issuer.rstrip("/")
            and document.get("issuer") != self.settings.issuer
        ):
            raise SignInFailed("the issuer's discovery document names another issuer")
        for key in ("authorization_endpoint", "token_endpoint"):
            if not str(document.get(key, "")).startswith(("https://", "http://")):
                raise SignInFailed(f"the issuer publishes no {key}")
            if (
                cleartext_remote(str(document[key]))
                and not self.settings.insecure_plain_http_to_remote_idp
            ):
                # the person's password goes to one, the ID token (a bearer token
                # every proxy takes) comes from the other
                raise SignInFailed(f"the issuer's {key} is plain HTTP to another host")
        return document

    async def authorize_url(self, params: dict[str, str]) -> str:
        endpoint = str((await self._discovery())["authorization_endpoint"])
        sep = "&" if "?" in endpoint else "?"
        return f"{endpoint}{sep}{urlencode(params)}"

    async def exchange(self, code: str, verifier: str) -> str:
        endpoint = str((await self._discovery())["token_endpoint"])
        answer = await _fetch_json(
            "POST",
            endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.settings.redirect_uri,
                "client_id": self.settings.client_id,
                "code_verifier": verifier,
            },
        )
        token = answer.get("id_token")
        if not isinstance(token, str) or not token:
            raise SignInFailed("the issuer returned no ID token")
        return token


async def _fetch_json(method: str, url: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.request(method, url, data=data, allow_redirects=False) as response,
        ):
            body = await read_capped(response.content, MAX_DOCUMENT)
            if response.status != 200:
                raise SignInFailed(f"the issuer answered HTTP {response.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SignInFailed(f"the issuer cannot be reached ({type(exc).__name__})") from None
    if len(body) > MAX_DOCUMENT:
        raise SignInFailed("the issuer's answer is too large")
    try:
        document = json.loads(body)
    except ValueError:
        raise SignInFailed("the issuer's answer is not JSON") from None
    if not isinstance(document, dict):
        raise SignInFailed("the issuer's answer is not a JSON object")
    return document


@dataclass
class _Code:
    subject: str
    groups: list[str]
    nonce: str
    challenge: str
    issued: float


class DevProvider:
    """The dev issuer's authorize endpoint, in this PDP, for loopback clients only."""

    AUTHORIZE = "/console/dev-issuer/authorize"

    def __init__(self, settings: ConsoleSettings, issuer: DevIssuer) -> None:
        self.settings = settings
        self.issuer = issuer
        self._codes: dict[str, _Code] = {}

    async def authorize_url(self, params: dict[str, str]) -> str:
        return f"{self.AUTHORIZE}?{urlencode(params)}"

    async def exchange(self, code: str, verifier: str) -> str:
        granted = self._codes.pop(code, None)
        if granted is None or granted.issued + CODE_SECONDS < time.time():
            raise SignInFailed("the authorization code is unknown or used")
        if not hmac.compare_digest(_challenge(verifier), granted.challenge):
            raise SignInFailed("the PKCE verifier does not match the challenge")
        ttl = int(self.settings.session_seconds)
        return self.issuer.issue(
            granted.subject,
            granted.groups,
            ttl,
            audience=self.settings.client_id,
            extra_claims={"nonce": granted.nonce},
        )

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.AUTHORIZE, self.form), web.post(self.AUTHORIZE, self.grant)]

    def _checked(self, request: web.Request, params: Any) -> None:
        if not _loopback(request.remote) or any(h in request.headers for h in RELAYED):
            raise web.HTTPForbidden(text="the dev issuer signs in local browsers only")
        if not names_this_host(self.settings.public_url):
            # reached at another address (PORTCULLIS_CONSOLE_URL, a proxy in front, which
            # connects from loopback): the people there are not at this machine
            raise web.HTTPForbidden(
                text="the dev issuer signs in local browsers only: the console's public URL "
                "is not this host's"
            )
        if params.get("client_id") != self.settings.client_id:
            raise web.HTTPBadRequest(text="unknown client_id")
        if params.get("redirect_uri") != self.settings.redirect_uri:
            raise web.HTTPBadRequest(text="redirect_uri is not the console's")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise web.HTTPBadRequest(text="PKCE with S256 is required")

    async def form(self, request: web.Request) -> web.Response:
        q = request.query
        self._checked(request, q)
        keep = ("client_id", "redirect_uri", "state", "nonce", "code_challenge",
                "code_challenge_method")  # fmt: skip
        hidden = Html("".join(
            render("hidden.html", name=k, value=q.get(k, "")) for k in keep
        ))  # fmt: skip
        return _page(render("dev_authorize.html", hidden=hidden, action=self.AUTHORIZE))

    async def grant(self, request: web.Request) -> web.Response:
        form = await request.post()
        self._checked(request, form)
        subject = str(form.get("subject", "")).strip()
        if not subject or len(subject) > 256:
            raise web.HTTPBadRequest(text="a subject is required")
        groups = [g.strip() for g in str(form.get("groups", "")).split(",") if g.strip()][:32]
        code = secrets.token_urlsafe(24)
        fresh = time.time() - CODE_SECONDS
        self._codes = {k: c for k, c in self._codes.items() if c.issued > fresh}
        self._codes[code] = _Code(subject, groups, str(form.get("nonce", "")),
                                  str(form.get("code_challenge", "")), time.time())  # fmt: skip
        query = urlencode({"code": code, "state": str(form.get("state", ""))})
        return redirect(f"{self.settings.redirect_uri}?{query}")


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _loopback(remote: str | None) -> bool:
    try:
        return ipaddress.ip_address(remote or "").is_loopback
    except ValueError:
        return False


def _page(body: Html, status: int = 200) -> web.Response:
    return web.Response(text=str(body), status=status, content_type="text/html", charset="utf-8")


def redirect(location: str, status: int = 303) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def _local_path(value: str) -> str:
    """Where to go after signing in: a console path of this site, nothing else."""
    if value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


class SignIn:
    """The login, callback and logout routes."""

    def __init__(self, console: Console, provider: Provider, verifier: TokenVerifier) -> None:
        self.console = console
        self.settings = console.settings
        self.sessions: WebSessions = console.sessions
        self.provider = provider
        self.verifier = verifier

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/console/login", self.login),
            web.get("/console/callback", self.callback),
            web.post("/console/logout", self.logout),
        ]

    async def login(self, request: web.Request) -> web.Response:
        login, challenge, cookie = self.sessions.begin_login(
            _local_path(request.query.get("next", ""))
        )
        params = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_uri,
            "scope": "openid profile groups",
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        try:
            url = await self.provider.authorize_url(params)
        except SignInFailed as exc:
            return self.console.error_page(request, 502, f"sign-in unavailable: {exc}")
        response = redirect(url, 302)
        # Lax, not Strict: it must come back with the issuer's (cross-site) redirect
        name, path = login_cookie(self.settings.secure)
        response.set_cookie(name, cookie, max_age=LOGIN_SECONDS, path=path, httponly=True,
                            samesite="Lax", secure=self.settings.secure)  # fmt: skip
        return response

    async def callback(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "")
        name, path = login_cookie(self.settings.secure)
        login = self.sessions.finish_login(state, request.cookies.get(name, ""))
        if login is None:
            return self.console.error_page(
                request,
                400,
                "sign-in failed: this login was not started in this browser, "
                "or it is too old — sign in again",
            )
        if "error" in request.query:
            return self.console.error_page(request, 403, "the issuer refused the sign-in")
        try:
            token = await self.provider.exchange(request.query.get("code", ""), login.verifier)
            identity = await self.verifier.verify(token)
        except SignInFailed as exc:
            return self.console.error_page(request, 403, f"sign-in failed: {exc}")
        except TokenRejected as exc:
            return self.console.error_page(request, 403, f"sign-in failed: {exc.reason}")
        nonce = identity.claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce, login.nonce):
            return self.console.error_page(request, 403, "sign-in failed: the nonce differs")
        self.sessions.login_done(login)
        session = self.sessions.open(identity.subject, identity.groups, identity.issuer,
                                     identity.expires_at, identity.names)  # fmt: skip
        # a page, not a redirect: the Strict cookie is sent on the same-site navigation
        # it starts, where a redirect inside the issuer's cross-site chain would drop it
        response = _page(render("signed_in.html", next=login.next_path))
        response.set_cookie(cookie_name(self.settings.secure), session.id, path="/",
                            httponly=True, samesite="Strict", secure=self.settings.secure,
                            max_age=int(session.expires_at - time.time()))  # fmt: skip
        response.del_cookie(name, path=path, secure=self.settings.secure)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session = request.get(WEB_SESSION)
        if session is not None:
            self.sessions.close(session.id)
        response = redirect("/console/signed-out")
        # a __Host- cookie is only replaced by one that is Secure too: without it the
        # browser kept the cookie of a closed session
        response.del_cookie(cookie_name(self.settings.secure), path="/",
                            secure=self.settings.secure)  # fmt: skip
        return response
