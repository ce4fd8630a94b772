"""Sans-IO client side of PostgreSQL password authentication: SCRAM-SHA-256 and MD5.

Owns the computations a proxy needs to log in to an upstream server with a credential it
holds (RFC 5802 SCRAM, RFC 7677 SCRAM-SHA-256, as PostgreSQL uses them in its "SASL
Authentication" section; MD5 as in AuthenticationMD5Password), and the order in which a
server may ask for them (UpstreamLogin: the answer to each Authentication request, or the
refusal). IO belongs to the caller.

An impostor at the upstream's address (a local user holding its port while the server
restarts, anyone on the path) must not get a session's worth of trust: once SCRAM is
chosen, AuthenticationOk counts only after an AuthenticationSASLFinal whose server
signature proves the server knows the password; a second authentication request (SCRAM
chosen, then MD5 or the password in clear: a downgrade) is refused, and so is anything out
of order.

Channel binding (RFC 5929 tls-server-end-point, PostgreSQL's SCRAM-SHA-256-PLUS): over TLS
the proxy binds the exchange to the server's certificate when the server offers it, so a
TLS-terminating man in the middle cannot relay the proof; when it does not, the GS2 header
"y,," tells the server the client could have (a server that does support it refuses, so
stripping PLUS from the offer is caught). Without TLS the header is "n,,", as libpq's.

SASLprep: the password is prepared the way PostgreSQL's own ``pg_saslprep`` does it
(RFC 4013 via Python's ``stringprep`` tables): ASCII passes unchanged; otherwise non-ASCII
spaces become U+0020, "commonly mapped to nothing" characters are dropped, the result is
NFKC-normalized; if the mapped string is empty, holds a prohibited or unassigned code point,
or breaks the bidi rule, or the password is not valid UTF-8, the raw bytes are used as they
are — exactly as the server does when it stores the verifier. NFKC uses Python's Unicode
tables rather than the server's; the two differ only on code points unassigned in Unicode
3.2, which are prohibited and so take the raw-bytes path on both sides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from proxies.postgres import codec
from proxies.runtime.credentials import DEFAULT_UPSTREAM_AUTH

MECHANISM = "SCRAM-SHA-256"
MECHANISM_PLUS = "SCRAM-SHA-256-PLUS"
GS2_HEADER = b"n,,"  # the client does not support channel binding (no TLS)
GS2_HEADER_UNOFFERED = b"y,,"  # it does, but the server did not offer it
GS2_HEADER_PLUS = b"p=tls-server-end-point,,"
DEFAULT_MAX_ITERATIONS = 1_000_000  # the server picks the count; bound the work it can ask


class ScramError(ValueError):
    """The server's SCRAM messages are malformed, or it failed to prove the password."""


def md5_password(user: str | bytes, password: str | bytes, salt: bytes) -> bytes:
    """The AuthenticationMD5Password answer: b"md5" + hex(md5(hex(md5(password + user)) + salt)).

    Send it in a PasswordMessage (``PasswordMessage.from_password``)."""
    if len(salt) != 4:
        raise ValueError("the MD5 salt is exactly 4 bytes")
    user_b = user.encode() if isinstance(user, str) else user
    password_b = password.encode() if isinstance(password, str) else password
    inner = hashlib.md5(password_b + user_b, usedforsecurity=False).hexdigest().encode()
    return b"md5" + hashlib.md5(inner + salt, usedforsecurity=False).hexdigest().encode()


def saslprep(password: str | bytes) -> bytes:
    """The password bytes SCRAM hashes, prepared as PostgreSQL's pg_saslprep prepares them."""
    raw = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    if raw.isascii():
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    # The server checks prohibited characters and bidi on the mapped, not yet normalized,
    # string; doing the same keeps our bytes identical to what it hashed.
    if not mapped or any(_prohibited(c) for c in mapped) or not _bidi_ok(mapped):
        return raw
    return unicodedata.normalize("NFKC", mapped).encode("utf-8")


def _prohibited(c: str) -> bool:
    return (
        stringprep.in_table_c12(c)
        or stringprep.in_table_c21_c22(c)
        or stringprep.in_table_c3(c)
        or stringprep.in_table_c4(c)
        or stringprep.in_table_c5(c)
        or stringprep.in_table_c6(c)
        or stringprep.in_table_c7(c)
        or stringprep.in_table_c8(c)
        or stringprep.in_table_c9(c)
        or stringprep.in_table_a1(c)
    )


def _bidi_ok(text: str) -> bool:
    if not any(stringprep.in_table_d1(c) for c in text):
        return True
    if any(stringprep.in_table_d2(c) for c in text):
        return False
    return stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


def _attributes(message: bytes, what: str) -> dict[str, str]:
    """Split "a=1,b=2" into {"a": "1", "b": "2"}; SCRAM attribute names are one letter."""
    try:
        text = message.decode("ascii")
    except UnicodeDecodeError:
        raise ScramError(f"{what} is not ASCII") from None
    attrs: dict[str, str] = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha():
            raise ScramError(f"{what}: malformed attribute {part!r}")
        if part[0] in attrs:
            raise ScramError(f"{what}: attribute {part[0]!r} appears twice")
        attrs[part[0]] = part[2:]
    return attrs


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise ScramError(f"{what} is not valid base64") from None


class ScramClient:
    """One SCRAM-SHA-256 exchange as the client (RFC 5802 section 3, RFC 7677).

    Use: ``first_message()`` → SASLInitialResponse(``mechanism``, it);
    ``final_message(AuthenticationSASLContinue.data)`` → SASLResponse(it);
    ``verify_server_final(AuthenticationSASLFinal.data)`` — raises ScramError unless the
    server proved it knows the password too. Then wait for AuthenticationOk.

    PostgreSQL ignores the SCRAM user name (the startup ``user`` counts); it is sent
    escaped for other servers' sake. ``nonce`` is for test vectors only.

    channel_binding: the tls-server-end-point data of the connection's TLS (the mechanism
    is then SCRAM-SHA-256-PLUS); tls without it: the connection is TLS but the server did
    not offer binding ("y,,").
    """

    def __init__(
        self,
        username: str,
        password: str | bytes,
        *,
        nonce: str | None = None,
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
        channel_binding: bytes | None = None,
        tls: bool = False,
    ) -> None:
        self._password = saslprep(password)
        self._channel_binding = channel_binding or b""
        if channel_binding is not None:
            self.mechanism, self._gs2_header = MECHANISM_PLUS, GS2_HEADER_PLUS
        elif tls:
            self.mechanism, self._gs2_header = MECHANISM, GS2_HEADER_UNOFFERED
        else:
            self.mechanism, self._gs2_header = MECHANISM, GS2_HEADER
        if nonce is None:
            nonce = base64.b64encode(secrets.token_bytes(18)).decode("ascii")
        if not nonce.isascii() or not nonce.isprintable() or not nonce or "," in nonce:
            raise ValueError("a SCRAM nonce is printable ASCII without commas")
        self._nonce = nonce
        name = username.replace("=", "=3D").replace(",", "=2C")
        self._client_first_bare = f"n={name},r={self._nonce}".encode()
        self._max_iterations = max_iterations
        self._expected_server_signature: bytes | None = None
        self.completed = False

    def first_message(self) -> bytes:
        """client-first-message: GS2 header + "n=<user>,r=<client nonce>"."""
        return self._gs2_header + self._client_first_bare

    def final_message(self, server_first: bytes) -> bytes:
        """client-final-message (with the proof) for the server-first-message received."""
        if self._expected_server_signature is not None:
            raise ScramError("final_message() already called for this exchange")
        attrs = _attributes(server_first, "server-first-message")
        if "m" in attrs:
            raise ScramError("server requires an unsupported SCRAM extension")
        missing = {"r", "s", "i"} - attrs.keys()
        if missing:
            raise ScramError(f"server-first-message lacks {', '.join(sorted(missing))}")
        nonce = attrs["r"]
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("server nonce does not extend the client nonce")
        salt = _b64decode(attrs["s"], "salt")
        if not salt:
            raise ScramError("empty salt")
        if not attrs["i"].isdigit():
            raise ScramError(f"iteration count {attrs['i']!r} is not a number")
        iterations = int(attrs["i"])
        if not 1 <= iterations <= self._max_iterations:
            raise ScramError(f"iteration count {iterations} is outside 1..{self._max_iterations}")

        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        # "biws" for "n,,"; with PLUS the header and the certificate's hash
        channel_binding = base64.b64encode(self._gs2_header + self._channel_binding).decode()
        without_proof = f"c={channel_binding},r={nonce}".encode()
        auth_message = self._client_first_bare + b"," + server_first + b"," + without_proof
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = _hmac(salted, b"Server Key")
        self._expected_server_signature = _hmac(server_key, auth_message)
        return without_proof + b",p=" + base64.b64encode(proof)

    def verify_server_final(self, server_final: bytes) -> None:
        """Check the server-final-message; raise ScramError on an error or a bad signature."""
        if self._expected_server_signature is None:
            raise ScramError("verify_server_final() before final_message()")
        attrs = _attributes(server_final, "server-final-message")
        if "e" in attrs:
            raise ScramError(f"server rejected the authentication: {attrs['e']}")
        if "v" not in attrs:
            raise ScramError("server-final-message lacks the server signature")
        signature = _b64decode(attrs["v"], "server signature")
        if not hmac.compare_digest(signature, self._expected_server_signature):
            raise ScramError(
                "server signature does not match: the server does not know the "
                "password (or the exchange was tampered with)"
            )
        self.completed = True


def tls_server_end_point(certificate: bytes) -> bytes | None:
    """RFC 5929 tls-server-end-point channel binding data of a server's DER certificate:
    its hash by the certificate's signature hash (SHA-256 in place of MD5 and SHA-1), as
    PostgreSQL computes it; None when the signature names no hash (Ed25519, RSA-PSS)."""
    try:
        algorithm = x509.load_der_x509_certificate(certificate).signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm):
        return None
    if algorithm is None:
        return None
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate)
    return digest.finalize()


class LoginRefused(ValueError):
    """The upstream's authentication requests are not ones to answer; the message is safe
    for the client (it names the step, never the secret nor the server's own words)."""


class UpstreamLogin:
    """The proxy's side of one upstream start-up's authentication, request by request.

    ``answer(request)`` for each Authentication request the server sends: the message to
    send back, or None (AuthenticationOk, accepted); raises LoginRefused when the request
    must not be answered. ``authenticated`` once AuthenticationOk was accepted (the caller
    takes no ReadyForQuery before).

    One method per start-up: the first request chooses it (SCRAM-SHA-256, with channel
    binding over TLS when offered; MD5; the password in clear only over TLS to a verified
    server, ``tls_verified``); another request after that is refused. AuthenticationOk
    after SCRAM was chosen counts only once the server's signature was verified.
    ``tls_certificate``: the server's DER certificate when the connection is TLS.
    ``allowed``: the methods the credential may be proven by (libpq's require_auth names,
    proxies.runtime.credentials.UPSTREAM_AUTH_METHODS; "none" is a server that asks for
    nothing); a request for another is refused before anything is sent.
    """

    def __init__(
        self,
        username: str,
        password: str | bytes,
        *,
        tls_certificate: bytes | None = None,
        tls_verified: bool = False,
        allowed: frozenset[str] = DEFAULT_UPSTREAM_AUTH,
    ) -> None:
        self._allowed = allowed
        self._username = username
        self._password = password
        self._tls_certificate = tls_certificate
        self._tls_verified = tls_verified
        self._method: str | None = None
        self._scram: ScramClient | None = None
        self._server_first_answered = False
        self.authenticated = False

    def answer(self, request: codec.Authentication) -> codec.Message | None:
        if self.authenticated:
            raise LoginRefused("upstream asked for authentication after accepting it")
        if isinstance(request, codec.AuthenticationOk):
            if self._scram is not None and not self._scram.completed:
                raise LoginRefused(
                    "upstream accepted the session without proving it knows the password "
                    "(no verified SCRAM server signature): refused"
                )
            if self._method is None:
                self._require("none", "lets the session in without asking for the password")
            self.authenticated = True
            return None
        if isinstance(request, codec.AuthenticationSASLContinue):
            return self._server_first(request.data)
        if isinstance(request, codec.AuthenticationSASLFinal):
            self._server_final(request.data)
            return None  # AuthenticationOk follows
        if self._method is not None:
            raise LoginRefused(
                f"upstream asked for {type(request).__name__} after {self._method} was "
                "chosen (a downgrade): refused"
            )
        if isinstance(request, codec.AuthenticationSASL):
            self._require("scram-sha-256", "asks for SCRAM")
            self._method = "SCRAM"
            return self._choose_scram(request.mechanisms)
        if isinstance(request, codec.AuthenticationMD5Password):
            self._require("md5", "asks for an MD5 hash of the password")
            self._method = "MD5"
            return codec.PasswordMessage.from_password(
                md5_password(self._username, self._password, request.salt)
            )
        if isinstance(request, codec.AuthenticationCleartextPassword):
            self._require("password", "asks for the password in clear")
            if not self._tls_verified:
                raise LoginRefused(
                    "upstream asks for the password in clear over a connection that is "
                    "not TLS to a verified server: refused (have the server use "
                    "scram-sha-256, or connect with verified TLS)"
                )
            self._method = "the password in clear"
            return codec.PasswordMessage.from_password(self._password)
        raise LoginRefused(
            f"upstream asks for {type(request).__name__}, which the proxy does not speak"
        )

    def _require(self, method: str, what: str) -> None:
        if method not in self._allowed:
            raise LoginRefused(
                f"upstream {what} ({method}), which the connection's "
                f"credentials.upstream_auth does not allow: refused (allowed: "
                f"{', '.join(sorted(self._allowed))})"
            )

    def _choose_scram(self, mechanisms: list[str]) -> codec.Message:
        tls = self._tls_certificate is not None
        if tls and MECHANISM_PLUS in mechanisms:
            assert self._tls_certificate is not None
            binding = tls_server_end_point(self._tls_certificate)
            if binding is None:
                raise LoginRefused(
                    "upstream offers channel binding but its certificate's signature names "
                    "no hash to bind to"
                )
            self._scram = ScramClient(self._username, self._password, channel_binding=binding)
        elif MECHANISM in mechanisms:
            self._scram = ScramClient(self._username, self._password, tls=tls)
        else:
            raise LoginRefused("upstream offers no SASL mechanism the proxy speaks")
        return codec.SASLInitialResponse(self._scram.mechanism, self._scram.first_message())

    def _server_first(self, data: bytes) -> codec.Message:
        if self._scram is None or self._server_first_answered:
            raise LoginRefused("upstream sent SASLContinue out of order")
        self._server_first_answered = True
        try:
            return codec.SASLResponse(self._scram.final_message(data))
        except ScramError:
            raise LoginRefused("upstream SCRAM exchange failed") from None

    def _server_final(self, data: bytes) -> None:
        if self._scram is None or not self._server_first_answered or self._scram.completed:
            raise LoginRefused("upstream sent SASLFinal out of order")
        try:
            self._scram.verify_server_final(data)
        except ScramError:
            raise LoginRefused("upstream server signature is wrong") from None
