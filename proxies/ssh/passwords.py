"""asyncssh's SASLprep of a login's password, paid for only when it can change the text.

Owns one change to asyncssh in the proxy's process. asyncssh runs every password a client
sends (here: the JWT, 1-2 KB of base64url) through SASLprep (RFC 4013, asyncssh/saslprep.py)
before the server sees it: a dozen Python table lookups per character, some 3-5 ms of the
event loop's CPU per login for a JWT, on every fresh connection's way to its session, and
100 ms for a 32 KB password any client may send before logging in. For text of printable
ASCII alone (a JWT is base64url and dots) SASLprep is the identity: no such character is
unassigned, mapped (table B.1, non-ASCII spaces), changed by NFKC, prohibited (tables
C.1.2-C.9: ASCII's are its control characters, which are not printable) or bidirectional
(RandALCat), so `saslprep_quick` returns it as it is. Anything else goes to asyncssh's own
SASLprep, unchanged, unless it is longer than MAX_OTHER_PASSWORD characters: refused as
SASLprep refuses a prohibited character (asyncssh ends the login as a protocol error). Such
text is no token (a JWT is printable ASCII; the PDP refuses it after the work anyway), and
SASLprep costs ~5 µs a character: a client not logged in may try three times per
connection, so the bound keeps that to a few ms of the event loop, not 100 ms.

`quick_saslprep()` installs it where asyncssh's authentication calls SASLprep
(asyncssh.auth.saslprep: a password, a new password, a host-based login's user); usernames
(asyncssh.connection) are bounded by asyncssh already. Applied once per process; with an
asyncssh without that name, nothing is changed.
"""

from __future__ import annotations

from typing import Any

import asyncssh.auth
from asyncssh.saslprep import SASLPrepError

MAX_PASSWORD = 16 * 1024  # characters: the PDP's bound on a token (MAX_TOKEN_BYTES)
MAX_OTHER_PASSWORD = 1024  # characters of text that is not printable ASCII (no token)

_APPLIED = "_portcullis_quick"


def saslprep_with(original: Any) -> Any:
    """SASLprep as `original` does it, returning printable ASCII as it is at once."""

    def saslprep_quick(text: str) -> str:
        if text.isascii() and text.isprintable():
            return text
        if len(text) > MAX_OTHER_PASSWORD:
            raise SASLPrepError(f"not a token: longer than {MAX_OTHER_PASSWORD} characters")
        return original(text)  # type: ignore[no-any-return]

    setattr(saslprep_quick, _APPLIED, True)
    return saslprep_quick


def quick_saslprep() -> None:
    """asyncssh's authentication takes printable ASCII without SASLprep's work."""
    original = getattr(asyncssh.auth, "saslprep", None)
    if original is None or getattr(original, _APPLIED, False):
        return
    asyncssh.auth.saslprep = saslprep_with(original)  # type: ignore[attr-defined]
