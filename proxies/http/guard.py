"""The upstream credential kept from the client: every response byte checked before it goes.

Owns `ResponseGuard`, through which the HTTP proxy writes every response (and WebSocket
bytes) to its client: each chunk is searched for the session's credential in every form
the runtime's SecretScanner knows (raw, hex, base64, JSON- and percent-encoded) and the
escapes an upstream's encoders write (escaped_forms: `\\/`, `\\u00xx`, lower-case
percent-encoding, HTML character references), and a
chunk's end that could begin one waits for the next chunk, so no byte of a secret goes
out before it is recognised. A response carrying it raises `CredentialInResponse`: the
proxy cuts it. No IO of its own: it writes through the connection's ClientOutput.
"""

from __future__ import annotations

import functools
import html
import json
import re
from urllib.parse import quote

from proxies.runtime.exposure import ClientOutput
from proxies.runtime.secrets_scan import MIN_SECRET_BYTES, _patterns


class CredentialInResponse(Exception):
    """The response carried the upstream credential: it stops here."""


class ResponseGuard:
    """A response's bytes on their way to the client, checked for the upstream credential
    (every form the runtime's SecretScanner knows: raw, hex, base64, JSON- and
    percent-encoded) before they are written. A chunk's end that could be the start of one
    waits for the next chunk, so a secret split across two is seen whole before any of it
    goes; anything else goes at once (a stream is not delayed)."""

    def __init__(
        self, output: ClientOutput, patterns: tuple[bytes, ...], least_held: int = 1
    ) -> None:
        self.output = output
        self.patterns = patterns
        # a tail that begins a secret is held back only from this many bytes on: a relay
        # whose peer waits for every message (a WebSocket) would stall on a shorter one
        # (any message ending in a secret's first letter); what goes out is under
        # least_held bytes of it, and the rest, when it comes, is still found (_seen)
        self.least_held = least_held
        self._span, self._firsts, self._marks, self._stretch = _shape(patterns)
        self._seen = b""  # the last bytes checked, so a secret across two chunks is found
        self._tail = b""  # bytes held back: they could begin a secret

    def write(self, data: bytes, final: bool = False) -> None:
        if self.patterns and data:
            window = self._seen + data if self._seen else data
            # a pattern in the window is a run of its bytes at least as long as the shortest
            # pattern: without such a run (one pass in C) none can be there
            if window.translate(self._marks).find(self._stretch) != -1:
                for pattern in self.patterns:
                    if pattern in window:
                        raise CredentialInResponse(
                            "the upstream's response carried the upstream credential"
                        )
            self._seen = window[-self._span :] if self._span else b""
        if final and not self._tail:  # all of it goes
            self.output.write(data)
            return
        data = self._tail + data
        keep = 0 if final else self._prefix_at_end(data)
        if keep < self.least_held:
            keep = 0
        out, self._tail = data[: len(data) - keep], data[len(data) - keep :]
        self.output.write(out)

    def _prefix_at_end(self, data: bytes) -> int:
        """How many of data's last bytes begin some secret pattern (the longest run)."""
        tail = data[-self._span :] if self._span else b""
        for start, byte in enumerate(tail):
            if byte in self._firsts:
                rest = tail[start:]
                if any(p.startswith(rest) for p in self.patterns):
                    return len(rest)
        return 0

    def flush(self) -> None:
        self.write(b"", final=True)


@functools.lru_cache(maxsize=256)
def _shape(patterns: tuple[bytes, ...]) -> tuple[int, frozenset[int], bytes, bytes]:
    """(the longest pattern's length - 1, the bytes a pattern can begin with, a table
    mapping each byte some pattern uses to 1 and every other to 0, and as many 1s as the
    shortest pattern is long)."""
    used = frozenset(b"".join(patterns))
    marks = bytes(1 if value in used else 0 for value in range(256))
    stretch = b"\x01" * min((len(p) for p in patterns), default=1)
    longest = max((len(p) for p in patterns), default=1) - 1
    return longest, frozenset(p[0] for p in patterns), marks, stretch


def secret_patterns(secrets: list[str]) -> tuple[bytes, ...]:
    """Every form of the secrets the scanner looks for (too short ones: none, as there),
    and the forms an upstream's own encoders write them in (escaped_forms)."""
    found: dict[bytes, None] = {}
    for secret in secrets:
        raw = secret.encode("utf-8")
        if len(raw) >= MIN_SECRET_BYTES:
            found.update(dict.fromkeys(_patterns(raw)))
            found.update(dict.fromkeys(escaped_forms(secret)))
    return tuple(found)


_UNESCAPED = re.compile(r"[A-Za-z0-9\-._~]")  # what no encoder below rewrites (RFC 3986)
LONG_RUN = 12  # a run of the secret's letters and digits this long is the secret too


def escaped_forms(secret: str) -> list[bytes]:
    """The secret as an upstream echoing it may write it, beyond the scanner's forms:
    percent-encoded in lower-case hex or with `/` kept (a path), JSON with `/` as `\\/`
    (PHP's json_encode) or every other character as `\\u00xx` (Go's and PHP's
    HEX_ flags), HTML-escaped and as numeric character references; and each run of its
    letters and digits of LONG_RUN or more, which every encoding leaves as it is (a
    mixture of the escapes above)."""
    if all(_UNESCAPED.fullmatch(c) for c in secret):
        return []  # no encoder rewrites it: the raw form is every form
    forms = [
        quote(secret, safe=""),
        quote(secret),
        json.dumps(secret, ensure_ascii=False)[1:-1].replace("/", "\\/"),
        html.escape(secret),
    ]
    forms += [f.lower() if "%" not in f else _lower_escapes(f) for f in forms[:2]]
    for spell in ("\\u%04x", "\\u%04X", "&#x%x;", "&#x%X;", "&#%d;"):
        forms.append("".join(c if _UNESCAPED.fullmatch(c) else spell % ord(c) for c in secret))
    forms += [run for run in re.findall(r"[A-Za-z0-9]+", secret) if len(run) >= LONG_RUN]
    out = [f.encode("utf-8") for f in forms if f != secret]
    return [f for f in dict.fromkeys(out) if len(f) >= MIN_SECRET_BYTES]


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)
