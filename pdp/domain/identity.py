"""Who is asking: verifies the client's OIDC JWT and turns it into an `Identity`.

Owns: token verification (DESIGN.md data flow step 2), the JWKS cache (OIDC discovery,
a configured JWKS URL or file, refetch on an unknown key id, rate-limited and shared by
concurrent misses), the local dev issuer behind `portcullis token`, and `parse_ttl`.

Every failure is a `TokenRejected` with a short reason that is safe to show the client;
nothing here lets a token through on a guess. Only an ID or access token is an identity:
another kind the issuer signs (`typ` logout+jwt, a token carrying `events`) is refused.
The algorithm comes from the token header only after it has been checked against the
key the `kid` selects: `none` is never accepted, an RSA/EC/OKP public key is never used
as an HMAC secret, and HMAC is accepted only when a shared secret is configured
explicitly. The keys come over https, or plain HTTP from this host only: a configured
jwks_url or issuer in clear to another host stops the start (ConfigError), a discovered
jwks_uri in clear to another host is no key source (whoever answers such a fetch on the
path would publish a key of their own); a jwks_file others may write is no key source
either (pdp.plumbing.trusted_files). A token is ours only when issued to us: with
several audiences it must name us as its authorized party (`azp`), and an `azp` naming
another client is refused (OIDC Core §3.1.3.7). An ECDSA token has a twin text (s and
n - s both verify): both are accepted and keyed as one, by `token_key` of the low-s text
(canonical_token).
This module makes no policy decision; it only says who the caller is.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.utils import base64url_decode

from pdp.plumbing.keys import load_or_create_ed25519
from pdp.plumbing.trusted_files import others_may_write
from portcullis.config import IDP_CLEARTEXT_OPT_OUT, ConfigError, IdentitySettings
from portcullis.network_path import cleartext_remote
from portcullis.token_text import token_key

if TYPE_CHECKING:  # imported where a key is fetched: `portcullis audit` needs none
    import aiohttp

log = logging.getLogger("portcullis.identity")

DEV_ISSUER = "portcullis-dev"
MAX_TOKEN_BYTES = 16 * 1024  # longer tokens are rejected before any parsing
REFETCH_INTERVAL = 10.0  # at most one JWKS fetch per this many seconds per verifier
KEYS_MAX_AGE = 600.0  # refresh the JWKS this often so removed keys stop being trusted
KEYS_HARD_EXPIRY = 24 * 3600.0  # keys not refreshed for this long are dropped (fail closed)
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 1024 * 1024
MIN_RSA_BITS = 2048
# NumericDate claims past the year 9999 are no date (and overflow an int64 on the wire)
MAX_NUMERIC_DATE = 253402300799
_DATE_CLAIMS = ("exp", "nbf", "iat")
# claims naming the token's person besides `sub` (OIDC Core §5.1 email and
# preferred_username; Entra ID's upn): one person's two accounts (a daily one and an admin
# one, an account at each of two connections of one IdP) differ in `sub`, not in these
PERSON_CLAIMS = ("email", "preferred_username", "upn")
MAX_PERSON_NAME = 1024

# C0 and C1 controls and DEL, and what prints as something else or breaks a line: format
# characters (bidi overrides and isolates, zero-width ones, BOM), surrogates, line and
# paragraph separators. Never part of a subject or a group
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# what would split one string into several groups if anything split it
_GROUP_SEPARATOR = re.compile(r"[\s,]")
# RFC 7515 §2 / RFC 4648 §5: a compact JWS segment, unpadded
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# the `typ` headers of the tokens that say who someone is: an ID token (JWT, RFC 7519
# §5.1; JOSE, RFC 7515 §4.1.9) and an access token (RFC 9068 §2.1); any other type the
# issuer signs (an OIDC back-channel logout token, `logout+jwt`; a security event,
# `secevent+jwt`) is not one
IDENTITY_TOKEN_TYPES = frozenset(
    {"jwt", "application/jwt", "jose", "application/jose", "at+jwt", "application/at+jwt"}
)

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
# RFC 7518 §3.2: an HMAC key at least as long as the hash; a shorter shared secret can be
# found offline from any one token it signed, and then signs any identity
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# Which token algorithms each JWK type may verify; EC keys are further tied to a curve.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})


@dataclass(frozen=True)
class Identity:
    """A verified caller. `claims` is the whole verified payload."""

    subject: str
    groups: tuple[str, ...]
    issuer: str
    claims: dict[str, Any] = field(hash=False)
    token_id: str = ""
    expires_at: int = 0  # unix seconds; 0 when the token has no exp
    # the SHA-256 of the token's one canonical text (canonical_token): what anything that
    # remembers a token keys it by, never the text as presented
    token_key: str = ""

    @cached_property
    def key(self) -> str:
        """Who every count, cap, budget and pause is kept under (identity_key); read on
        every decision, so made once."""
        return identity_key(self.subject)

    @property
    def names(self) -> tuple[str, ...]:
        """The other names the token gives its person (person_names)."""
        return person_names(self.claims)

    def to_input(self) -> dict[str, Any]:
        """The `identity` object of the policy input (DESIGN.md, policy contract)."""
        return {
            "subject": self.subject,
            "groups": list(self.groups),
            "issuer": self.issuer,
            "claims": dict(self.claims),
            "token_id": self.token_id,
        }


class TokenRejected(Exception):
    """The token does not prove an identity; `reason` is short and safe to show the client.

    `detail` carries what only operators should see (e.g. why a JWKS fetch failed).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def parse_ttl(text: str | int) -> int:
    """`"1h"`, `"30m"`, `"45s"`, `"2d"`, `"1h30m"` or plain seconds → seconds (> 0)."""
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = text
    else:
        value = str(text).strip().lower()
        if value.isdigit():
            seconds = int(value)
        elif re.fullmatch(r"(?:\d+[smhd])+", value):
            units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
            seconds = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", value))
        else:
            raise ValueError(f"{text!r} is not a duration such as 45s, 30m, 1h, 2d or 3600")
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK (RSA, EC or OKP)."""
    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _set_path(claims: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for name in parents:
        claims = claims.setdefault(name, {})
    claims[last] = value


class DevIssuer:
    """The local dev issuer: one Ed25519 key in `settings.dev_key`, created on first use.

    Only for `identity.dev: true`; a production deployment trusts its OIDC provider.
    """

    issuer = DEV_ISSUER
    algorithm = "EdDSA"

    def __init__(self, settings: IdentitySettings) -> None:
        self.key_path = Path(settings.dev_key)
        self.groups_claim = settings.groups_claim or "groups"
        self._key = load_or_create_ed25519(
            self.key_path, "identity.dev_key", getattr(settings, "readable_key_files", False)
        )
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        public = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
        self.kid = jwk_thumbprint(public)
        self._public_jwk = {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    @property
    def public_key(self) -> Any:
        return self._key.public_key()

    def issue(
        self,
        subject: str,
        groups: Iterable[str],
        ttl_seconds: int,
        audience: str = "portcullis",
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """A signed token for `subject` in `groups`, valid for `ttl_seconds` from now.

        A ttl of zero or less gives an already expired token, which tests use; the CLI
        only passes what `parse_ttl` accepts.
        """
        if not subject:
            raise ValueError("a token needs a subject")
        now = int(time.time())
        registered = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl_seconds),
            "jti": str(uuid.uuid4()),
        }
        extra = dict(extra_claims or {})
        clash = sorted(set(extra) & set(registered))
        if clash:
            raise ValueError(f"extra_claims may not set {', '.join(clash)}")
        claims = {**extra, **registered}
        _set_path(claims, self.groups_claim, list(groups))
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._public_jwk)]}


@dataclass(frozen=True)
class _Key:
    kid: str
    kty: str  # RSA | EC | OKP
    crv: str
    alg: str  # the JWK's own alg, "" when it names none
    key: Any  # a cryptography public key

    def mismatch(self, alg: str) -> str:
        """Why this key may not verify a token signed with `alg` ("" when it may)."""
        if self.alg and self.alg != alg:
            return f"algorithm {alg} does not match key {self.kid!r} (which is for {self.alg})"
        fits = (
            (self.kty == "RSA" and alg in _RSA_ALGORITHMS)
            or (self.kty == "EC" and _EC_CURVES.get(alg) == self.crv)
            or (self.kty == "OKP" and alg == "EdDSA")
        )
        return "" if fits else f"algorithm {alg} does not match the {self.kty} key {self.kid!r}"


class _FetchError(Exception):
    pass


def parse_jwks(document: Any) -> dict[str, _Key]:
    """Usable public signing keys of a JWKS by kid ("" for a key without kid).

    Symmetric (`oct`) keys, private keys, encryption keys, unknown curves and RSA keys
    shorter than 2048 bits are skipped: none of them may ever verify a token.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _FetchError("JWKS document has no 'keys' list")
    keys: dict[str, _Key] = {}
    for jwk in document["keys"]:
        try:
            key = _parse_jwk(jwk)
        except (ValueError, TypeError, KeyError, jwt.PyJWTError) as exc:
            log.warning("skipping unusable JWKS key: %s", exc)
            continue
        if key is None:
            continue
        if key.kid in keys:
            log.warning("JWKS lists key id %r twice; using the first", key.kid)
            continue
        keys[key.kid] = key
    if not keys:
        raise _FetchError("JWKS has no usable signing key")
    return keys


def _parse_jwk(jwk: Any) -> _Key | None:
    if not isinstance(jwk, dict):
        raise ValueError("a JWK must be an object")
    kty, kid, crv = jwk.get("kty"), jwk.get("kid", ""), jwk.get("crv", "")
    if jwk.get("use", "sig") != "sig" or kty not in ("RSA", "EC", "OKP"):
        return None
    if "d" in jwk:
        raise ValueError(f"key {kid!r} is a private key; a JWKS must publish public keys")
    if not isinstance(kid, str) or not isinstance(jwk.get("alg", ""), str):
        raise ValueError("kid and alg must be strings")
    public: Any
    if kty == "RSA":
        public = RSAAlgorithm.from_jwk(jwk)
        if not isinstance(public, RSAPublicKey) or public.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key {kid!r} is shorter than {MIN_RSA_BITS} bits")
    elif kty == "EC":
        if crv not in _EC_CURVES.values():
            raise ValueError(f"EC key {kid!r} uses unsupported curve {crv!r}")
        public = ECAlgorithm.from_jwk(jwk)
    else:
        if crv not in _OKP_CURVES:
            raise ValueError(f"OKP key {kid!r} uses unsupported curve {crv!r}")
        public = OKPAlgorithm.from_jwk(jwk)
    return _Key(kid=kid, kty=kty, crv=crv, alg=jwk.get("alg", ""), key=public)


class _KeyCache:
    """The OIDC provider's signing keys, fetched lazily and refreshed under a rate limit."""

    def __init__(self, settings: IdentitySettings, http: Any, refetch_interval: float) -> None:
        self._settings = settings
        self._http = http  # () -> aiohttp.ClientSession
        self._interval = refetch_interval
        self._jwks_uri = settings.jwks_url
        self._keys: dict[str, _Key] = {}
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._error = ""
        self._inflight: asyncio.Future[None] | None = None
        self.fetches = 0

    async def find(self, kid: str) -> _Key | None:
        """The key named `kid`, refetching the JWKS once (rate-limited) if it is unknown."""
        await self._ensure_fresh()
        if kid not in self._keys:
            await self._refresh()
        self._fail_if_unavailable()
        return self._keys.get(kid)

    async def all(self) -> list[_Key]:
        await self._ensure_fresh()
        self._fail_if_unavailable()
        return list(self._keys.values())

    async def _ensure_fresh(self) -> None:
        now = time.monotonic()
        if self._loaded_at is not None and now - self._loaded_at > KEYS_HARD_EXPIRY:
            self._keys = {}
        if self._loaded_at is None or now - self._loaded_at > KEYS_MAX_AGE:
            await self._refresh()

    def _fail_if_unavailable(self) -> None:
        if not self._keys:
            raise TokenRejected("cannot fetch keys from the identity provider", self._error)

    async def _refresh(self) -> None:
        """Fetch the keys unless the rate limit says no; callers during a fetch share it."""
        if self._inflight is None:
            # Without any keys, retry sooner: every token is being rejected meanwhile.
            interval = self._interval if self._keys else min(1.0, self._interval)
            last = self._attempted_at
            if last is not None and time.monotonic() - last < interval:
                return
            self._attempted_at = time.monotonic()
            self._inflight = asyncio.ensure_future(self._load())
        # shield: one caller giving up must not cancel the fetch the others wait for
        await asyncio.shield(self._inflight)

    async def _load(self) -> None:
        try:
            self._keys = parse_jwks(await self._fetch())
            self._loaded_at = time.monotonic()
            self._error = ""
        except _FetchError as exc:
            self._error = str(exc)
            log.warning("cannot fetch the identity provider's keys: %s", exc)
        finally:
            self._inflight = None

    async def _fetch(self) -> Any:
        self.fetches += 1
        if self._settings.jwks_file:
            path = Path(self._settings.jwks_file)
            try:
                problem = others_may_write(str(path))
                if problem:
                    # whoever may write it publishes a key of their own: any identity
                    raise _FetchError(f"identity.jwks_file: {problem}")
                return json.loads(await asyncio.to_thread(path.read_bytes))
            except (OSError, ValueError, RecursionError) as exc:
                raise _FetchError(f"{path}: {exc}") from None
        if not self._jwks_uri:
            self._jwks_uri = await self._discover()
        try:
            return await self._get_json(self._jwks_uri)
        except _FetchError:
            if not self._settings.jwks_url:
                self._jwks_uri = ""  # the provider may have moved it: rediscover next time
            raise

    async def _discover(self) -> str:
        issuer = self._settings.issuer
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = await self._get_json(url)
        if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
            raise _FetchError(f"{url} names issuer {doc.get('issuer')!r}, expected {issuer!r}")
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise _FetchError(f"{url} has no usable jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        import aiohttp

        in_clear_allowed = _opted_into_cleartext(self._settings)
        if cleartext_remote(url) and not in_clear_allowed:
            raise _FetchError(
                f"{url} is plain HTTP to another host: the identity provider's keys must "
                f"come over https (or from this host; identity.{IDP_CLEARTEXT_OPT_OUT})"
            )
        try:
            async with self._http().get(
                url, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            ) as resp:
                hops = [str(hop.url) for hop in (*resp.history, resp)]
                if not in_clear_allowed and any(cleartext_remote(hop) for hop in hops):
                    # a redirect through plain HTTP: whoever answered that hop chose the rest
                    raise _FetchError(f"GET {url} was redirected in plain HTTP to another host")
                if resp.status != 200:
                    raise _FetchError(f"GET {url} answered HTTP {resp.status}")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise _FetchError(f"GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _FetchError(f"GET {url} failed: {type(exc).__name__} {exc}") from None
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise _FetchError(f"GET {url}: not JSON") from None
        if not isinstance(doc, dict):
            raise _FetchError(f"GET {url}: not a JSON object")
        return doc


_PYJWT_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidIssuedAtError, "iat is not a number"),
    (jwt.exceptions.InvalidSubjectError, "no subject"),
    (jwt.exceptions.InvalidJTIError, "jti is not a string"),
    (jwt.DecodeError, "malformed token"),
)
_MISSING_CLAIM_REASONS = {
    "exp": "token has no expiry",
    "aud": "wrong audience",
    "iss": "wrong issuer",
}


def approver_refusal(reason: str, approvals_audience: str) -> str:
    """Why an approval API refused a token, naming the audience approvers need when
    approvals.audience is set (a session token, which proxies see, is refused)."""
    if approvals_audience and reason == "wrong audience":
        return (
            f"wrong audience: approving takes a token issued for {approvals_audience!r}"
            " (approvals.audience); tokens for sessions through proxies are refused"
        )
    return reason


class TokenVerifier:
    """Verifies tokens against the configured OIDC provider (and the dev issuer in dev mode)."""

    def __init__(
        self,
        settings: IdentitySettings,
        dev_issuer: DevIssuer | None = None,
        *,
        refetch_interval: float = REFETCH_INTERVAL,
    ) -> None:
        self.settings = settings
        # identity.authorized_parties: read where the configuration defines it
        parties = getattr(settings, "authorized_parties", ())
        self._parties = tuple(p for p in parties if isinstance(p, str) and p)
        self.dev_issuer = (dev_issuer or DevIssuer(settings)) if settings.dev else None
        self._session: aiohttp.ClientSession | None = None
        has_keys = settings.jwks_url or settings.jwks_file
        _refuse_keys_in_clear(settings)
        self._oidc = (
            _KeyCache(settings, self._http, refetch_interval)
            if settings.issuer or has_keys
            else None
        )

    @property
    def jwks_fetches(self) -> int:
        """How many times the OIDC keys were fetched (for tests and metrics)."""
        return self._oidc.fetches if self._oidc else 0

    def _http(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, token: str, audience: str = "") -> Identity:
        """The identity `token` proves, or TokenRejected with the reason it proves none.
        audience: the `aud` it must carry ("": identity.audience; an approver's token is
        checked against approvals.audience, which proxies never see, when one is set)."""
        identity = await self._verified(token, audience)
        return replace(identity, token_key=token_key(token))

    async def _verified(self, token: str, audience: str) -> Identity:
        header = _read_header(token)
        alg, kid = header["alg"], header.get("kid")
        if alg.lower() == "none":
            raise TokenRejected("alg none is never accepted")
        if alg in HMAC_ALGORITHMS:
            return self._verify_hmac(token, alg, kid, audience)
        if self.dev_issuer is not None and kid == self.dev_issuer.kid:
            if alg != DevIssuer.algorithm:
                raise TokenRejected(f"algorithm {alg} does not match the dev issuer's key")
            return self._decode(token, self.dev_issuer.public_key, alg, DEV_ISSUER, audience)
        if alg not in self.settings.algorithms:
            raise TokenRejected(f"algorithm {alg} not accepted")
        key = await self._oidc_key(alg, kid)
        problem = key.mismatch(alg)
        if problem:
            raise TokenRejected(problem)
        return self._decode(token, key.key, alg, self.settings.issuer, audience)

    async def _oidc_key(self, alg: str, kid: str | None) -> _Key:
        if self._oidc is None or not self.settings.issuer:
            raise TokenRejected(f"unknown key id {kid!r}" if kid else "token has no key id")
        if kid is not None:
            key = await self._oidc.find(kid)
            if key is None:
                raise TokenRejected(f"unknown key id {kid!r}")
            return key
        # A token without kid is usable only when exactly one published key fits its alg.
        fitting = [k for k in await self._oidc.all() if not k.mismatch(alg)]
        if len(fitting) != 1:
            raise TokenRejected("token has no key id")
        return fitting[0]

    def _verify_hmac(self, token: str, alg: str, kid: Any, audience: str = "") -> Identity:
        secret = self.settings.shared_secret
        listed = [a for a in self.settings.algorithms if a in HMAC_ALGORITHMS]
        if not secret or not self.settings.issuer or (listed and alg not in listed):
            raise TokenRejected(f"algorithm {alg} not accepted")
        if kid is not None:
            # A kid names a published (asymmetric) key; HMAC with one is key confusion.
            raise TokenRejected(f"algorithm {alg} not accepted for a token with a key id")
        if len(secret.encode()) < _HMAC_MIN_BYTES[alg]:
            log.warning("identity.shared_secret is shorter than %s bytes: %s refused",
                        _HMAC_MIN_BYTES[alg], alg)  # fmt: skip
            raise TokenRejected(
                f"algorithm {alg} not accepted",
                f"identity.shared_secret is shorter than {_HMAC_MIN_BYTES[alg]} bytes",
            )
        return self._decode(token, secret.encode(), alg, self.settings.issuer, audience)

    def _decode(self, token: str, key: Any, alg: str, issuer: str, audience: str = "") -> Identity:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience or self.settings.audience,
                issuer=issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(
                _MISSING_CLAIM_REASONS.get(exc.claim, f"missing claim {exc.claim!r}")
            ) from None
        except jwt.InvalidTokenError as exc:
            reason = next((r for t, r in _PYJWT_REASONS if isinstance(exc, t)), "invalid token")
            raise TokenRejected(reason, str(exc)) from None
        except (RecursionError, ValueError, TypeError) as exc:  # hostile JSON nesting or types
            raise TokenRejected("malformed token", type(exc).__name__) from None
        named = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        # an approver's token also issued for identity.audience: proxies accept it, so a
        # proxy may replay it
        if audience and audience != self.settings.audience and self.settings.audience in named:
            raise TokenRejected("wrong audience", "also issued for identity.audience")
        # identity.authorized_parties (when the configuration has it): the other clients
        # whose tokens for our audience a session may use (a CLI that asks the IdP for a
        # token to the portcullis resource); never for an approver's own audience
        others = () if audience and audience != self.settings.audience else self._parties
        _check_party(claims, named, audience or self.settings.audience, others)
        return self._identity(claims, issuer)

    def _identity(self, claims: dict[str, Any], issuer: str) -> Identity:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise TokenRejected("no subject")
        if subject != subject.strip():
            # as a group with blanks is refused: ' rita@example.com' is another identity
            # to everything counted or granted per subject (sessions, budgets, grants)
            raise TokenRejected("the subject has blanks at either end")
        if "events" in claims:
            # RFC 8417 §2.2: a Security Event Token, such as an OIDC back-channel logout
            # token the issuer signs for this audience with the person's sub and an exp,
            # says something happened to someone; it proves nobody is asking now
            raise TokenRejected("a security event token is no identity")
        if unprintable(subject):
            # every record names the subject in a column of its own: PostgreSQL text
            # refuses a NUL (failing the whole group-commit batch, everyone's decisions
            # in it), and a line break or escape forges lines where it is printed; a
            # right-to-left override or zero-width character shows another's name
            raise TokenRejected("the subject holds a control character")
        for name in _DATE_CLAIMS:
            value = claims.get(name)
            if name in claims and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= MAX_NUMERIC_DATE
            ):
                # RFC 7519 §2: a JSON number of seconds. PyJWT reads "exp": "1e99"-like
                # strings and any magnitude through int(): a string or 10**30 expiry is
                # no expiry this PDP can keep (OpenSession's int64 cannot carry it)
                raise TokenRejected(f"{name} is not a date")
        jti = claims.get("jti")
        return Identity(
            subject=subject,
            groups=groups_from_claims(claims, self.settings.groups_claim),
            issuer=issuer,
            claims=claims,
            token_id=jti if isinstance(jti, str) else "",
            expires_at=int(claims.get("exp") or 0),
        )


def idp_in_clear(settings: IdentitySettings) -> str:
    """The URL the configuration has the IdP's keys fetched from in clear off this host (the
    jwks_url, else the issuer's discovery; a jwks_file is read from disk), or ""."""
    if settings.jwks_file:
        return ""
    url = settings.jwks_url or settings.issuer
    return url if url and cleartext_remote(url) else ""


def _opted_into_cleartext(settings: IdentitySettings) -> bool:
    return getattr(settings, IDP_CLEARTEXT_OPT_OUT, False) is True


def _refuse_keys_in_clear(settings: IdentitySettings) -> None:
    """ConfigError for keys the configuration has fetched in clear from another host,
    unless identity.insecure_plain_http_to_remote_idp says so: then a warning, at every
    start (a TokenVerifier is made once per PDP start)."""
    url = idp_in_clear(settings)
    if not url:
        return
    key = "jwks_url" if settings.jwks_url else "issuer"
    if not _opted_into_cleartext(settings):
        raise ConfigError(
            f"identity.{key}",
            f"{url} is plain HTTP to another host: whoever answers on the network path "
            "would publish keys of their own and sign any identity; use https:// (or, on a"
            f" closed network and knowing that, set identity.{IDP_CLEARTEXT_OPT_OUT}: true)",
        )
    log.warning(
        "INSECURE: the identity provider's keys come from %s, plain HTTP to another host"
        " (identity.%s: true): whoever answers on the network path can sign any identity;"
        " use https://",
        url,
        IDP_CLEARTEXT_OPT_OUT,
    )


def _check_party(
    claims: dict[str, Any], named: list[Any], client_id: str, others: tuple[str, ...] = ()
) -> None:
    """OIDC Core §3.1.3.7 (steps 4 and 5) and §2 `azp`: a token is ours only when it was
    issued to us. Our client id is the audience we check (identity.audience, or
    approvals.audience for an approver's token). A token naming several audiences is one
    another client of the same issuer asked for and had ours added to: it must name the
    party it was issued to, `azp`, and that must be us; an `azp` naming anyone else is
    another client's token, whatever its audience says, unless the operator named that
    client in identity.authorized_parties (`others`: DESIGN.md names no such list, so it
    is empty unless configured)."""
    if "azp" in claims:
        azp = claims["azp"]
        if not isinstance(azp, str) or (azp != client_id and azp not in others):
            raise TokenRejected("token issued to another client (azp)", f"azp {azp!r}")
    elif len(named) > 1:
        raise TokenRejected(
            "token for several audiences names no authorized party (azp)",
            "OIDC Core 3.1.3.7: azp is required with more than one audience",
        )


def _read_header(token: Any) -> dict[str, Any]:
    """The unverified JOSE header, with `alg` checked to be a string; sizes bounded first."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("malformed token")
    if not token.isascii() or token.count(".") != 2 or "=" in token:
        # RFC 7515 §2: base64url with the '=' padding omitted. PyJWT also takes a padded
        # signature, which made one token two texts: two sessions of an HTTP proxy
        # (keyed on the token's text) and a miss for anything that remembers tokens
        raise TokenRejected("malformed token")
    try:
        header, claims = (
            # one member named twice: PyJWT keeps the last, another reader the first
            json.loads(_canonical_segment(segment), object_pairs_hook=_unique)
            for segment in token.split(".")[:2]
        )
        _canonical_segment(token.rsplit(".", 1)[1])
    except (RecursionError, ValueError, TypeError):
        raise TokenRejected("malformed token") from None
    if not isinstance(header, dict) or not _carriable(header) or not _carriable(claims):
        # NaN, 1e400, a lone surrogate: OpenSession failed inside the PDP (records are
        # JSON without NaN, the wire UTF-8), an internal error where the token proves nothing
        raise TokenRejected("malformed token")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in IDENTITY_TOKEN_TYPES):
        # RFC 8725 §3.11: explicit typing keeps one kind of token from being taken for
        # another (a logout token, logout+jwt, carries the person's sub, aud and exp)
        raise TokenRejected("the token is not an identity token (typ)")
    if "crit" in header:
        # RFC 7515 §4.1.11: a token naming an extension its reader must understand is
        # refused by a reader that understands none (PyJWT 2.10.1 read past it)
        raise TokenRejected("token header names a critical extension")
    if any(name in header for name in _ENCRYPTION_HEADERS) or _nested(header.get("cty")):
        # RFC 7516 §4.1.2-3: `enc` and `zip` belong to an encrypted token (a reader that
        # honours `zip` inflates the payload first); RFC 7519 §5.2: `cty` JWT says the
        # payload is another token, to verify in turn. Either is another reading of the
        # same signed bytes than the claims this reads, so neither is an identity here
        raise TokenRejected("token header names an encryption or a nested token")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise TokenRejected("token header names no algorithm")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenRejected("malformed token")
    return header


_ENCRYPTION_HEADERS = ("enc", "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c")


def _nested(cty: Any) -> bool:
    """Whether a `cty` header says the payload is a JWT (RFC 7519 §5.2; RFC 7515 §4.1.10
    lets it omit the application/ prefix, compared case-insensitively)."""
    return cty is not None and (
        not isinstance(cty, str) or cty.lower().removeprefix("application/") == "jwt"
    )


def _canonical_segment(segment: str) -> bytes:
    """The bytes of a segment that is their one base64url text (else ValueError).

    Python's base64 skips characters outside the alphabet and ignores the unused low
    bits of the last character, and PyJWT 2.10.1 decoded segments with it: the
    signature, which does not cover its own segment, then had many texts ('!' anywhere,
    a last character differing in unused bits), each a token of its own to whatever
    remembers tokens by text (the HTTP proxy's sessions)."""
    if not _BASE64URL.fullmatch(segment):
        raise ValueError("not base64url")
    decoded = base64url_decode(segment)
    if _b64url(decoded) != segment:
        raise ValueError("not the canonical base64url text of its bytes")
    return decoded


def unprintable(text: str) -> bool:
    """Whether text holds a control, format, surrogate or separator character."""
    if text.isascii():
        return not text.isprintable()  # printable ASCII: 0x20-0x7e
    return any(unicodedata.category(c) in _UNPRINTABLE_CATEGORIES for c in text)


def _carriable(value: Any) -> bool:
    """Whether a parsed payload is JSON every reader reads alike and UTF-8 carries: no
    NaN or infinity (Python's json reads NaN, Infinity, 1e400), no lone surrogate."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose members are named once each (else ValueError)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a JSON member is named twice")
    return out


def subject_as_read(subject: str) -> str:
    """A subject as a person reads it: NFKC (a fullwidth or compatibility letter is the
    letter), case folded, format characters (zero-width, bidi marks) and the spaces at
    either end dropped. Only for telling one person under two spellings; a subject is
    stored and shown as the token gave it."""
    folded = unicodedata.normalize("NFKC", subject).casefold()
    kept = "".join(c for c in folded if unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFKC", kept).strip()


def identity_key(subject: str) -> str:
    """The one key of an identity for everything counted or limited per identity (open
    sessions, approval requests waiting, egress budgets, the breaker's rates and pauses):
    the subject as read (subject_as_read), an address's mailbox without its `+tag`
    (rita+x@example.com is delivered to rita@example.com, who alone can verify it).
    'RITA@example.com' and 'rita@example.com' are one identity to every limit; what is
    shown and recorded stays the subject as the token wrote it.

    Not the issuer: the PDP trusts one OIDC issuer, and its other issuers (the dev issuer,
    which mints any subject; ssh-publickey, whose subjects the operator maps to people)
    name the same people; merging namesakes only ever shares a limit, never lifts one,
    and the store's records (read back by pdp.domain.guard_sync) name the subject alone.
    Not the token's other names (email, preferred_username: person_names): an IdP may let
    a person set them, and one who set another's name would fill that person's limits.
    Grants are not kept under it: an approval binds to the subject and issuer exactly."""
    # ASCII (nearly every subject) reads as its lower case: NFKC leaves it, and it holds
    # no format character
    read = subject.lower().strip() if subject.isascii() else subject_as_read(subject)
    local, at, domain = read.rpartition("@")
    if at and "+" in local and local.split("+", 1)[0]:
        return f"{local.split('+', 1)[0]}@{domain}"
    return read


def person_names(claims: dict[str, Any]) -> tuple[str, ...]:
    """The names a token gives its person besides `sub` (PERSON_CLAIMS, those that are
    text), as the token wrote them: for telling one person under two subjects apart from
    two people (pdp.domain.approvals.one_person), never for who the caller is."""
    names = (claims.get(claim) for claim in PERSON_CLAIMS)
    return tuple(
        dict.fromkeys(
            n for n in names if isinstance(n, str) and n.strip() and len(n) <= MAX_PERSON_NAME
        )
    )


def groups_from_claims(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    """Groups from `claim`: a list of strings, or one string naming one group.

    `claim` is first looked up literally (namespaced claims like
    `https://example.com/groups` contain dots), then as a dotted path such as
    `realm_access.roles`. A missing claim means no groups. A group is taken exactly as
    the provider wrote it, never split: a string holding a space or a comma ("readers
    dba", "x,dba"), an entry with a control character or surrounding blanks, and a claim
    of any other shape reject the token rather than guess at membership. A provider that
    lets people name groups would otherwise let one named "x,dba" make its members dba.
    Entries that are wholly blank are skipped.
    """
    value: Any = claims.get(claim)
    if claim not in claims:
        value = claims
        for name in claim.split("."):
            value = value.get(name) if isinstance(value, dict) else None
    if value is None:
        return ()
    if isinstance(value, str):
        if _GROUP_SEPARATOR.search(value.strip()):
            raise TokenRejected(f"groups claim {claim!r} is a string naming several groups")
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise TokenRejected(f"groups claim {claim!r} is not a list of strings")
    items = [g for g in value if g.strip()]
    if any(g != g.strip() or unprintable(g) for g in items):
        raise TokenRejected(f"groups claim {claim!r} holds a group with blanks or controls")
    return tuple(dict.fromkeys(items))
