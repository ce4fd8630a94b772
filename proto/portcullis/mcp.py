"""What an MCP message names, as the proxy checks it and the PDP shows it to the policy.

Shared vocabulary (the neutral package): the method → the params key naming what it
acts on (a tool, a prompt, a resource) and the name the policy sees it under, and the
methods that carry arguments, and which resource URIs are read one way only. No IO.
"""

from __future__ import annotations

import re

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


def uri_problem(uri: str) -> str | None:
    """Why a resource URI is not read one way only, or None. A policy matches a URI by
    prefix (rego/portcullis/mcp.rego), so the URI must be the one a server resolves: an
    RFC 3986 URI with a scheme, in which no segment is a dot segment (`.`, `..`, which a
    server's URL parser or path join removes with the segment before) and no octet is
    percent-encoded that a server may decode into a separator, a dot, a NUL or another
    escape, nor one its normal form leaves unescaped (%2F, %5C, %2E, %00, %25, %41...)."""
    if not _URI.fullmatch(uri) or not _SCHEME.match(uri):
        return "a resource URI is an RFC 3986 URI with a scheme"
    if any(chr(int(code, 16)) in _NOT_ESCAPED for code in _ESCAPE.findall(uri)):
        return "a resource URI escapes a character its normal form does not"
    if any(part in (".", "..") for part in re.split(r"[/?#;]", uri)):
        return "a resource URI holds a dot segment"
    return None
