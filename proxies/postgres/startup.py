"""What a client may ask for in its start-up packet, and what the proxy pins upstream.

Owns the session's server settings at start-up (no IO here):

- the lexing pins: every session runs with client_encoding=UTF8,
  standard_conforming_strings=on and backslash_quote=safe_encoding, the settings the
  policy's parser (pglast, the server's own grammar) assumes. With any other encoding
  (SJIS, BIG5, GBK, UHC, GB18030 let a backslash be the second byte of a character) or
  with standard_conforming_strings off, a string literal ends at another byte for the
  server than for the parser, and what follows it runs unseen. Settings in the start-up
  packet are also what RESET ALL and DISCARD ALL return to;
- the settings policy chose for the session at session.open (`session_settings`, e.g.
  default_transaction_read_only=on for readers), pinned the same way;
- the client's own parameters: user and database name the session; client_encoding and
  standard_conforming_strings are accepted only when they ask for what is pinned (the
  answer is then honest), anything else is refused by name; `options` (`-c name=value`)
  and every other parameter become requested settings, which the policy judges at
  session.open like SET (a refusal names the parameter); `replication` and protocol
  extensions are refused.
"""

from __future__ import annotations

import re

LEXING_PINS = {
    "client_encoding": "UTF8",
    "standard_conforming_strings": "on",
    "backslash_quote": "safe_encoding",
}

# names the server knows for UTF8 (src/common/encnames.c), compared without - and _
_UTF8_NAMES = frozenset({"utf8", "unicode"})
_ON_WORDS = frozenset({"on", "true", "yes", "1"})
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
# parameters that name the session rather than set anything
_IDENTITY_PARAMS = frozenset({"user", "database"})
MAX_VALUE = 1024


class StartupRefused(Exception):
    """A start-up parameter the proxy will not pass on; the message names it."""


def requested_settings(params: dict[str, str]) -> dict[str, str]:
    """The settings a client's start-up packet asks for, `options` unpacked, keyed by the
    name the client gave. Raises StartupRefused for a parameter that cannot be honoured."""
    settings: dict[str, str] = {}
    for name, value in params.items():
        if name in _IDENTITY_PARAMS:
            continue
        if len(value) > MAX_VALUE or "\x00" in value:
            raise StartupRefused(f"start-up parameter {name[:64]!r} is too long")
        if name == "replication":
            raise StartupRefused("start-up parameter 'replication' is refused: no replication")
        if name.startswith("_pq_."):
            raise StartupRefused(f"start-up parameter {name[:64]!r}: no protocol extensions")
        if name == "options":
            settings.update(parse_options(value))
            continue
        if not _SETTING_NAME.fullmatch(name):
            raise StartupRefused(f"start-up parameter {name[:64]!r} is not a setting name")
        settings[name] = value
    for name, value in list(settings.items()):
        pinned = LEXING_PINS.get(name.lower())
        if pinned is None:
            continue
        if not _same_setting(name.lower(), value, pinned):
            raise StartupRefused(
                f"start-up parameter {name} = {value[:64]!r} is refused: every session runs "
                f"with {name.lower()} = {pinned}"
            )
        del settings[name]  # what is pinned is sent anyway
    return settings


def _same_setting(name: str, value: str, pinned: str) -> bool:
    value = value.strip().lower()
    if name == "client_encoding":
        # the server's own rule (encnames.c clean_encoding_name): only letters and digits
        # count, so asyncpg's "'utf-8'" names UTF8 too
        return "".join(c for c in value if c.isalnum()) in _UTF8_NAMES
    if name == "standard_conforming_strings":
        return value in _ON_WORDS
    return value == pinned


def parse_options(options: str) -> dict[str, str]:
    """The settings of a libpq `options` value: `-c name=value` and `--name=value`
    switches separated by whitespace, a backslash escaping the next character. Any other
    switch (e.g. `-d`, `-o`) is refused."""
    words = _split_words(options)
    settings: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c":
            if i + 1 >= len(words):
                raise StartupRefused("start-up parameter options: -c without a setting")
            assignment = words[i + 1]
            i += 2
        elif (word.startswith("-c") and len(word) > 2) or (word.startswith("--") and "=" in word):
            assignment = word[2:]
            i += 1
        else:
            raise StartupRefused(
                f"start-up parameter options: switch {word[:32]!r} is refused (only -c name=value)"
            )
        name, sep, value = assignment.partition("=")
        name = name.replace("-", "_")
        if not sep or not _SETTING_NAME.fullmatch(name):
            raise StartupRefused(
                f"start-up parameter options: {assignment[:64]!r} is not name=value"
            )
        settings[name] = value
    return settings


def _split_words(text: str) -> list[str]:
    """Whitespace-separated words, `\\` escaping the next character (libpq's rule)."""
    words: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def upstream_params(
    username: str,
    database: str,
    requested: dict[str, str],
    session_settings: dict[str, str],
) -> dict[str, str]:
    """The start-up packet the proxy sends upstream: the credential's user, the database,
    the settings policy admitted, then the pins (policy's and the lexing ones), which win
    (but for a statement_timeout the client asks to be shorter than the policy's)."""
    params = {"user": username, "database": database}
    pinned = {**session_settings, **LEXING_PINS}
    lowered = {name.lower() for name in pinned}
    for name, value in requested.items():
        if name.lower() not in lowered:
            params[name] = value
    params.update(pinned)
    # a bound the client asks to tighten: its own statement_timeout when it is shorter
    # than the policy's (never none, never longer)
    asked = {name.lower(): value for name, value in requested.items()}.get("statement_timeout")
    bound = session_settings.get("statement_timeout")
    if asked is not None and bound is not None:
        asked_s, bound_s = statement_limit({"statement_timeout": asked}), statement_limit(
            {"statement_timeout": bound}
        )
        if 0 < asked_s <= bound_s:
            params["statement_timeout"] = asked
    return params


def pinned_settings(session_settings: dict[str, str]) -> dict[str, str]:
    """The reported settings whose value must never change during the session (the
    server reports these in ParameterStatus): the lexing pins, and what policy pinned."""
    return {**{k.lower(): v for k, v in session_settings.items()}, **LEXING_PINS}


def same_value(name: str, reported: str, pinned: str) -> bool:
    """Whether a value the server reports is the pinned one (as the server spells it)."""
    name = name.lower()
    if name in ("client_encoding", "standard_conforming_strings"):
        return _same_setting(name, reported, pinned)
    return reported.strip().lower() == pinned.strip().lower()


def statement_limit(session_settings: dict[str, str]) -> float:
    """Seconds the proxy lets a statement run (the policy's statement_timeout, in ms as
    the server reads a bare number, or with the server's units); 0 for no limit."""
    raw = session_settings.get("statement_timeout", "").strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?", raw)
    if not match:
        return 0.0
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
    return float(match.group(1)) * scale[match.group(2) or "ms"]
