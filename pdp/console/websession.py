"""Who is signed in to the console: server-side sessions behind an opaque cookie.

Owns the console's sign-in state — a `WebSession` per browser, found by a random id that
is all the cookie carries (HttpOnly, SameSite=Strict, Secure when the console is served
over TLS), with its CSRF token, an absolute lifetime capped by the ID token's own expiry
and an idle timeout — and the logins under way (state, nonce, PKCE verifier), each bound
to the browser that started it by a short-lived cookie of its own. Sessions live in this
PDP's memory: a restart signs everyone out, which fails closed.
No IO (the request key is aiohttp's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

COOKIE = "portcullis_console"
SECURE_COOKIE = "__Host-portcullis_console"  # a __Host- cookie needs Secure and Path=/
LOGIN_COOKIE = "portcullis_login"
LOGIN_SECONDS = 600
MAX_LOGINS = 1000  # logins under way; the oldest is dropped beyond this
MAX_SESSIONS = 10000


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class WebSession:
    id: str
    subject: str
    groups: tuple[str, ...]
    issuer: str
    csrf: str
    expires_at: float
    last_seen: float

    @property
    def who(self) -> dict[str, Any]:
        """The identity as the approvals rules take it (pdp.api.approval_rpc)."""
        return {"subject": self.subject, "groups": list(self.groups), "issuer": self.issuer}

    def csrf_ok(self, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, presented)


@dataclass
class PendingLogin:
    state: str
    nonce: str
    verifier: str
    next_path: str
    started: float = field(default_factory=time.time)


WEB_SESSION: web.RequestKey[WebSession | None] = web.RequestKey("web_session", object)  # type: ignore[arg-type]


def signed_in(request: web.Request) -> WebSession:
    """The session of a request the guard let through to a page that needs one."""
    session = request.get(WEB_SESSION)
    if session is None:  # the guard sends these to the login: never reached
        raise web.HTTPUnauthorized(text="sign in first")
    return session


class WebSessions:
    """Every console sign-in of this PDP, and the logins under way."""

    def __init__(self, lifetime: float, idle: float) -> None:
        self.lifetime = lifetime
        self.idle = idle
        self._sessions: dict[str, WebSession] = {}
        self._logins: dict[str, PendingLogin] = {}

    def begin_login(self, next_path: str) -> tuple[PendingLogin, str]:
        """A new login: its state, nonce and PKCE verifier; returns it and the challenge."""
        self._drop_stale_logins()
        verifier, challenge = pkce_pair()
        login = PendingLogin(secrets.token_urlsafe(24), secrets.token_urlsafe(24), verifier,
                             next_path)  # fmt: skip
        self._logins[login.state] = login
        return login, challenge

    def finish_login(self, state: str, bound_state: str) -> PendingLogin | None:
        """The login `state` names, once, only in the browser that started it."""
        if not state or not bound_state or not hmac.compare_digest(state, bound_state):
            return None
        login = self._logins.pop(state, None)
        if login is None or login.started + LOGIN_SECONDS < time.time():
            return None
        return login

    def open(
        self, subject: str, groups: tuple[str, ...], issuer: str, token_exp: int
    ) -> WebSession:
        now = time.time()
        expires = now + self.lifetime
        if token_exp:
            expires = min(expires, float(token_exp))
        if len(self._sessions) >= MAX_SESSIONS:
            self._drop_expired()
        session = WebSession(secrets.token_urlsafe(32), subject, groups, issuer,
                             secrets.token_urlsafe(32), expires, now)  # fmt: skip
        self._sessions[session.id] = session
        return session

    def find(self, session_id: str, touch: bool = True) -> WebSession | None:
        """The live session of that id; `touch` counts this as activity (a person's
        request does, a page's open event stream does not, so an idle tab still expires)."""
        session = self._sessions.get(session_id) if session_id else None
        if session is None:
            return None
        now = time.time()
        if session.expires_at <= now or session.last_seen + self.idle <= now:
            self._sessions.pop(session.id, None)
            return None
        if touch:
            session.last_seen = now
        return session

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _drop_stale_logins(self) -> None:
        cutoff = time.time() - LOGIN_SECONDS
        for state in [s for s, login in self._logins.items() if login.started < cutoff]:
            del self._logins[state]
        while len(self._logins) >= MAX_LOGINS:
            del self._logins[next(iter(self._logins))]

    def _drop_expired(self) -> None:
        now = time.time()
        for sid in [s for s, w in self._sessions.items() if w.expires_at <= now]:
            del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
