"""Who is signed in to the console: server-side sessions behind an opaque cookie.

Owns the console's sign-in state — a `WebSession` per browser, found by a random id that
is all the cookie carries (HttpOnly, SameSite=Strict, Secure and __Host- when the console
is served over TLS), with its CSRF token, an absolute lifetime capped by the ID token's
own expiry and an idle timeout — and the logins under way (state, nonce, PKCE verifier). A login
under way lives in a short-lived cookie of the browser that started it (__Host- over TLS),
signed with a key of this PDP, not in the PDP's memory: nobody else's requests can push
it out, however many logins they start; one that signed someone in is remembered until
its cookie would expire, so it is used once. Sessions live in this PDP's memory: a
restart signs everyone out, which fails closed.
No IO (the request key is aiohttp's).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

COOKIE = "portcullis_console"
SECURE_COOKIE = "__Host-portcullis_console"  # a __Host- cookie needs Secure and Path=/
LOGIN_COOKIE = "portcullis_login"
# over TLS the login cookie is a __Host- one too: a plain cookie can be set for the console
# by any site of the same registrable domain (Domain=example.com, "cookie tossing"), which
# could plant its own login — state, verifier and all — in a victim's browser and send it
# to the callback with a code it got for itself, signing the victim in as the attacker
SECURE_LOGIN_COOKIE = "__Host-portcullis_login"
LOGIN_PATH = "/console/callback"
LOGIN_SECONDS = 600
MAX_FINISHED = 100_000  # finished logins remembered (each needed a sign-in at the issuer)
MAX_SESSIONS = 10000
MAX_PER_PERSON = 32  # sign-ins of one (issuer, subject): their oldest goes beyond this


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def login_cookie(secure: bool) -> tuple[str, str]:
    """The login cookie's name and path: __Host- (so Path=/) over TLS."""
    return (SECURE_LOGIN_COOKIE, "/") if secure else (LOGIN_COOKIE, LOGIN_PATH)


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
    # the token's other names of its person (pdp.domain.identity.person_names): an
    # approver's second account is told from the requester's by them (approvals.one_person)
    names: tuple[str, ...] = ()

    @property
    def who(self) -> dict[str, Any]:
        """The identity as the approvals rules take it (pdp.api.approval_rpc)."""
        return {
            "subject": self.subject,
            "groups": list(self.groups),
            "issuer": self.issuer,
            "names": list(self.names),
        }

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
        self._login_key = secrets.token_bytes(32)
        self._finished: dict[str, float] = {}  # state -> when its cookie expires

    def begin_login(self, next_path: str) -> tuple[PendingLogin, str, str]:
        """A new login: its state, nonce and PKCE verifier; returns it, the challenge and
        the value of the login cookie that carries it."""
        verifier, challenge = pkce_pair()
        login = PendingLogin(secrets.token_urlsafe(24), secrets.token_urlsafe(24), verifier,
                             next_path)  # fmt: skip
        payload = json.dumps([login.state, login.nonce, login.verifier, login.next_path,
                              login.started], separators=(",", ":")).encode()  # fmt: skip
        body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")
        return login, challenge, f"{body}.{self._sign(body)}"

    def finish_login(self, state: str, cookie: str) -> PendingLogin | None:
        """The login `state` names, from the cookie of the browser that started it, once."""
        body, _, mac = cookie.partition(".")
        if not state or not body or not hmac.compare_digest(mac, self._sign(body)):
            return None
        try:
            fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            state_, nonce, verifier, next_path = (str(f) for f in fields[:4])
            login = PendingLogin(state_, nonce, verifier, next_path, float(fields[4]))
        except (ValueError, TypeError, IndexError, binascii.Error):
            return None
        if not hmac.compare_digest(state, login.state):
            return None
        if login.started + LOGIN_SECONDS < time.time():
            return None
        return None if login.state in self._finished else login

    def login_done(self, login: PendingLogin) -> None:
        """A login that signed someone in: its cookie finishes nothing more. Only logins
        that passed the issuer are remembered (a failed attempt adds nothing), the oldest
        forgotten first beyond MAX_FINISHED (its code is spent at the issuer anyway)."""
        now = time.time()
        if len(self._finished) >= MAX_FINISHED:
            self._finished = {s: t for s, t in self._finished.items() if t > now}
        while len(self._finished) >= MAX_FINISHED:
            del self._finished[next(iter(self._finished))]
        self._finished[login.state] = login.started + LOGIN_SECONDS

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._login_key, body.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def open(
        self,
        subject: str,
        groups: tuple[str, ...],
        issuer: str,
        token_exp: int,
        names: tuple[str, ...] = (),
    ) -> WebSession:
        now = time.time()
        expires = now + self.lifetime
        if token_exp:
            expires = min(expires, float(token_exp))
        # one person's sign-ins make room among their own: with the oldest of anyone's
        # dropped first, one identity signing in MAX_SESSIONS times signed everyone out
        mine = [sid for sid, w in self._sessions.items()
                if w.subject == subject and w.issuer == issuer]  # fmt: skip
        for sid in mine[: max(len(mine) - MAX_PER_PERSON + 1, 0)]:
            del self._sessions[sid]
        if len(self._sessions) >= MAX_SESSIONS:
            self._drop_expired()
        session = WebSession(secrets.token_urlsafe(32), subject, groups, issuer,
                             secrets.token_urlsafe(32), expires, now, names)  # fmt: skip
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

    def _drop_expired(self) -> None:
        now = time.time()
        for sid in [s for s, w in self._sessions.items() if w.expires_at <= now]:
            del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
