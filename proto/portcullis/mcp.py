"""What an MCP message names, as the proxy checks it and the PDP shows it to the policy.

Shared vocabulary (the neutral package): the method → the params key naming what it
acts on (a tool, a prompt, a resource) and the name the policy sees it under, the
methods that carry arguments, the words of an argument's name that make its value a
field's name, which resource URIs are read one way only, and the variable names of the
resource templates a URI fills, as the proxy binds them into a message's text. No IO.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, unquote_to_bytes

# method → the params key that names what it acts on, and the key it is shown under
TARGETS = {
    "tools/call": ("name", "tool"),
    "prompts/get": ("name", "prompt"),
    "resources/read": ("uri", "uri"),
    "resources/subscribe": ("uri", "uri"),
    "resources/unsubscribe": ("uri", "uri"),
}
WITH_ARGUMENTS = frozenset({"tools/call", "prompts/get"})
URI_METHODS = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})

# a client's message → the params keys MCP defines for it (schemas 2025-11-25, 2026-07-28):
# an allow-list, as a server's SDK may read another spelling of a key as the key itself
# (pydantic's populate_by_name: `meta` as `_meta`, `input_responses` as `inputResponses`)
# where the proxy and the policy would read none; a method not named here is not checked
_PAGED = frozenset({"_meta", "cursor"})
_CARRIES_INPUT = frozenset({"_meta", "inputResponses", "requestState"})
PARAMS: dict[str, frozenset[str]] = {
    "initialize": frozenset({"_meta", "protocolVersion", "capabilities", "clientInfo"}),
    "ping": frozenset({"_meta"}),
    "server/discover": frozenset({"_meta"}),
    "tools/list": _PAGED,
    "prompts/list": _PAGED,
    "resources/list": _PAGED,
    "resources/templates/list": _PAGED,
    "tasks/list": _PAGED,
    "tools/call": _CARRIES_INPUT | {"name", "arguments", "task"},
    "prompts/get": _CARRIES_INPUT | {"name", "arguments"},
    "resources/read": _CARRIES_INPUT | {"uri"},
    "resources/subscribe": frozenset({"_meta", "uri"}),
    "resources/unsubscribe": frozenset({"_meta", "uri"}),
    "completion/complete": frozenset({"_meta", "ref", "argument", "context"}),
    "logging/setLevel": frozenset({"_meta", "level"}),
    "subscriptions/listen": frozenset({"_meta", "notifications"}),
    "tasks/get": frozenset({"_meta", "taskId"}),
    "tasks/result": frozenset({"_meta", "taskId"}),
    "tasks/cancel": frozenset({"_meta", "taskId"}),
    "notifications/initialized": frozenset({"_meta"}),
    "notifications/cancelled": frozenset({"_meta", "requestId", "reason"}),
    "notifications/progress": frozenset({"_meta", "progressToken", "progress", "total", "message"}),
    "notifications/roots/list_changed": frozenset({"_meta"}),
}


# the words of an argument's name that say its value names a field (a generic lookup's
# `{"field": "phone", "value": "555"}`): that value is a name as the argument's own is
# (rego/portcullis/mcp.rego's mcp_field_naming_words: the same words)
FIELD_NAMING_WORDS = frozenset(
    {"field", "fields", "column", "columns", "col", "by", "key", "keys", "attribute",
     "attributes", "attr", "property", "properties", "prop"}
)  # fmt: skip


# the variable names of the resource templates a resources/read or subscribe URI fills
# (the proxy's memory of the server's resources/templates/list: proxies/http/mcp_templates.py),
# shown to the policy as `template_variables`: RFC 6570 §2.3's varname (letters, digits,
# `_`, dots between; a `-` as lenient servers take it), bounded in length and number
TEMPLATE_VARIABLE = re.compile(r"[A-Za-z0-9_\-]{1,64}(?:\.[A-Za-z0-9_\-]{1,64}){0,7}")
MAX_TEMPLATE_VARIABLES = 64
TEMPLATE_FILLED_METHODS = frozenset({"resources/read", "resources/subscribe"})


def template_variables_problem(method: str, value: object) -> str | None:
    """Why `template_variables` bound into a message's text is not a list of distinct
    variable names, sorted, of a resources/read or subscribe, or None."""
    if method not in TEMPLATE_FILLED_METHODS:
        return f"{method} fills no resource template"
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= MAX_TEMPLATE_VARIABLES
        or not all(isinstance(v, str) and TEMPLATE_VARIABLE.fullmatch(v) for v in value)
        or value != sorted(set(value))
    ):
        return "template_variables: distinct variable names, sorted"
    return None


def params_problem(method: str, params: dict[str, object]) -> str | None:
    """Why a client message's params are not read one way only (a key MCP does not define
    for its method), or None."""
    known = PARAMS.get(method)
    if known is not None and not params.keys() <= known:
        return f"{method} params hold a key MCP does not define for it"
    return None


# RFC 3986 §2: unreserved, reserved and percent-encoded octets, nothing else
_URI = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# what an escape may not stand for: an unreserved character (RFC 3986 §6.2.2.2: the
# normal form has it unescaped, so a server may decode it before matching), a separator,
# a percent sign (escaped twice), a NUL
_NOT_ESCAPED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/\\%\x00"
)
# what an escaped character may not turn into where a server folds it: a dot, a slash or
# a backslash under NFKC (the fullwidth full stop, solidus and reverse solidus, the one
# dot leader) or a Windows best-fit mapping (the division slash U+2215, fraction slash,
# big solidus, set minus ...)
_SEPARATORS = "./\\"
_LOOKALIKES = frozenset("\u2215\u2044\u29f8\u29f5\u29f9\u2216\ufe68\uff0e\uff0f\uff3c\u2024")
# what a server may strip from a segment's end before it resolves it (Windows drops
# trailing dots and spaces: `..%20` is `..` there)
_STRIPPED = " \t\r\n\x0b\x0c"
# a Windows drive opening a segment (RFC 8089 Appendix E.2: `C:` or the older `C|`)
_DRIVE = re.compile(r"[A-Za-z][:|]")
# RFC 6570 expressions of a URI template (completion/complete names a template)
_EXPRESSION = re.compile(r"\{[^{}]*\}")
# a URI's path: after its scheme and its authority (`//` up to a `/`, `?` or `#`, RFC
# 3986 §3.2), up to its query or fragment
_PATH = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?://[^/?#]*)?([^?#]*)")


def uri_problem(uri: str) -> str | None:
    """Why a resource URI is not read one way only, or None. A policy matches a URI by
    prefix (rego/portcullis/mcp.rego), so the URI must be the one a server resolves: an
    RFC 3986 URI with a scheme, in which no segment is a dot segment (`.`, `..`, `...`,
    `..%20`: which a server's URL parser or path join removes with the segment before)
    and no segment of its path is empty (`file:///srv/public//etc/passwd`: a server
    joining what follows its base reads `/etc/passwd`, an absolute path), and no octet is
    percent-encoded that a server may decode into a separator, a dot, a NUL or another
    escape, nor one its normal form leaves unescaped (%2F, %5C, %2E, %00, %25, %41...),
    nor UTF-8 of a character that folds into a dot or a slash (%EF%BC%8E, %E2%88%95),
    nor a Windows drive (`D:`) but as a `file:` URI's first path segment."""
    if not _URI.fullmatch(uri) or not _SCHEME.match(uri):
        return "a resource URI is an RFC 3986 URI with a scheme"
    if any(chr(int(code, 16)) in _NOT_ESCAPED for code in _ESCAPE.findall(uri)):
        return "a resource URI escapes a character its normal form does not"
    if "%" in uri and not _utf8(uri):
        return "a resource URI escapes bytes that are not UTF-8 (%C0%AE: a dot to some)"
    if "%" in uri and _folds_into_separator(unquote(uri)):
        return "a resource URI escapes a character that reads as a dot or a slash"
    if any(_dot_segment(part) for part in re.split(r"[/?#;]", uri)):
        return "a resource URI holds a dot segment"
    path = _PATH.match(uri)
    if path is not None and "//" in path.group(1):
        return "a resource URI's path holds an empty segment"
    if _names_drive(uri):
        return "a resource URI names a Windows drive (C:) past where a file URI may"
    return None


def _names_drive(uri: str) -> bool:
    """A segment that is, or opens with, a Windows drive (`C:`, `C|`, escaped or not)
    anywhere but as a `file:` URI's first path segment (`file:///C:/data/`): a server on
    Windows joining what follows its base with it (os.path.join, path.resolve, Path /)
    reads an absolute path on that drive: `invoice://billing/D:/secrets` is `D:\\secrets`."""
    scheme, _, rest = re.split(r"[?#]", uri, maxsplit=1)[0].partition(":")
    rest = unquote(rest)
    authority = ""
    if rest.startswith("//"):
        authority, slash, rest = rest[2:].partition("/")
        rest = slash + rest
    segments = re.split(r"[/;]", rest.removeprefix("/"))
    if scheme.lower() == "file":
        segments = segments[1:]  # (its first path segment may be a drive)
    return any(_DRIVE.match(segment) for segment in [authority, *segments])


def template_problem(template: str) -> str | None:
    """Why a URI template (RFC 6570, as completion/complete names one) is not read one
    way only, or None: the URI it is with each expression as a plain word."""
    return uri_problem(_EXPRESSION.sub("x", template))


def _dot_segment(part: str) -> bool:
    core = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), part)
    core = core.strip(_STRIPPED)
    return part != "" and (core == "" or set(core) <= {"."}) and "." in part


def _folds_into_separator(decoded: str) -> bool:
    if any(ch in _LOOKALIKES for ch in decoded):
        return True
    folded = unicodedata.normalize("NFKC", decoded)
    return any(folded.count(ch) != decoded.count(ch) for ch in _SEPARATORS)


def _utf8(uri: str) -> bool:
    try:
        unquote_to_bytes(uri).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
