"""A request target as the policy sees it and as the upstream gets it: one normal form.

Owns the normalisation both sides apply (the proxy before it asks and forwards, the PDP
when it re-derives the path from the recorded request line, pdp.domain.policy_input):
RFC 3986 §6.2.2 — percent-encodings of unreserved characters decoded, the others' hex
upper-cased, dot-segments removed (§5.2.4), runs of slashes made one. `/a/%2e%2e/admin`
is `/admin`. What an upstream could still read another way is refused (`TargetRefused`)
instead of guessed: an encoded slash or backslash (`%2F`, `%5C`), an encoded NUL, a
malformed escape, a double encoding (`%252e`), escaped bytes that are not UTF-8 (an
overlong `%C0%AE`, a `.` to lenient decoders), a path parameter (`;` in the path: Tomcat
and Spring drop what follows it in a segment, so `/admin;x` and `/ad;x/min` would be
decided as paths the upstream serves as `/admin`; other servers keep it — refused rather
than guessed; an encoded `%3B` is data to every server and stays), a fragment. The
forwarded target is exactly `Target.forward`, the form that was decided.

Shared vocabulary (the neutral package): the HTTP proxy and the PDP's http.request input
builder both import it. No IO, no imports beyond the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# pchar without "%" (RFC 3986 §3.3): unreserved / sub-delims / ":" / "@", plus "/"
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_ESCAPE = re.compile(r"%(..)?")
_REFUSED_ESCAPES = {
    "2F": "an encoded slash (%2F)",
    "5C": "an encoded backslash (%5C)",
    "00": "an encoded NUL (%00)",
}


_DOUBLE_ESCAPE = re.compile(r"%25[0-9A-Fa-f]{2}")


class TargetRefused(ValueError):
    """The target cannot be normalised to one meaning; the message is safe to show."""


@dataclass(frozen=True)
class Target:
    path: str  # normalised, still percent-encoded where needed
    query: str  # as received (validated), without "?"

    @property
    def forward(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def query_params(self) -> dict[str, str | list[str]]:
        """name → value (a list when a name repeats: the policy sees every value)."""
        out: dict[str, str | list[str]] = {}
        if not self.query:
            return out
        for pair in self.query.split("&"):
            if not pair:
                continue
            name, _, value = pair.partition("=")
            key = unquote(name.replace("+", " "), errors="replace")
            val = unquote(value.replace("+", " "), errors="replace")
            seen = out.get(key)
            if seen is None:
                out[key] = val
            elif isinstance(seen, list):
                seen.append(val)
            else:
                out[key] = [seen, val]
        return out


def _escapes(text: str) -> str:
    """Every %XX checked; unreserved ones decoded, the rest upper-cased."""

    def one(match: re.Match[str]) -> str:
        hexits = match.group(1)
        if hexits is None or not re.fullmatch(r"[0-9A-Fa-f]{2}", hexits):
            raise TargetRefused("malformed percent-encoding in the target")
        hexits = hexits.upper()
        if hexits in _REFUSED_ESCAPES:
            raise TargetRefused(f"{_REFUSED_ESCAPES[hexits]} in the path is refused")
        byte = int(hexits, 16)
        return chr(byte) if byte in _UNRESERVED else "%" + hexits

    return _ESCAPE.sub(one, text)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on a path whose slashes are already single."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for n, segment in enumerate(segments):
        last = n == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def normalise(target: str) -> Target:
    """The one form of an origin-form target (RFC 9112 §3.2.1) that is decided and sent."""
    if target == "*":
        raise TargetRefused("asterisk-form (OPTIONS *) is not forwarded")
    if "#" in target:
        raise TargetRefused("a fragment in the request target")
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        raise TargetRefused("the path does not start with /")
    if not _PATH_CHARS.fullmatch(path) or not _QUERY_CHARS.fullmatch(query):
        raise TargetRefused("a character the target may not carry unencoded")
    if ";" in path:
        raise TargetRefused("a path parameter (;) in the path is refused")
    if "%" in query:
        for match in _ESCAPE.finditer(query):
            if match.group(1) is None or not re.fullmatch(r"[0-9A-Fa-f]{2}", match.group(1)):
                raise TargetRefused("malformed percent-encoding in the target")
    if "%" not in path and "//" not in path and "/." not in path:
        return Target(path, query)  # already in normal form (the usual request)
    path = _escapes(path)
    if _DOUBLE_ESCAPE.search(path):
        # %252e: a `.` to an upstream (or a framework behind it) that decodes twice
        raise TargetRefused("a double percent-encoding (%25XX) in the path is refused")
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        # %C0%AE: an overlong `.` to a lenient decoder; no UTF-8 reading is the one sent
        raise TargetRefused("percent-encoded bytes in the path that are not UTF-8") from None
    path = re.sub(r"/{2,}", "/", path)
    return Target(_remove_dot_segments(path), query)
