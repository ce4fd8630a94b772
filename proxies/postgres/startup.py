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
  default_transaction_read_only=on for readers), pinned the same way; a session policy
  bounds per statement (statement_timeout) is bounded idle in a transaction too
  (session_pins: idle_in_transaction_session_timeout, the policy's or the statement
  bound), so a reader's BEGIN cannot hold its snapshot and locks on the database for ever;
- the client's own parameters: user and database name the session; client_encoding and
  standard_conforming_strings are accepted only when they ask for what is pinned (the
  answer is then honest), anything else is refused by name; `options` (`-c name=value`)
  and every other parameter become requested settings, which the policy judges at
  session.open like SET (a refusal names the parameter); `replication` and protocol
  extensions are refused;
- behind a transaction pooler (connection option `upstream_pooler: transaction`, e.g.
  pgbouncer with pool_mode = transaction): which pins go in the start-up packet (only the
  parameters the pooler keeps per client and applies to whichever server connection runs
  the client's transaction), which must hold through the upstream role's own
  configuration instead (ALTER ROLE ... SET), and how the proxy checks them at session
  start (pooler_settings_sql, unheld_pins).
"""

from __future__ import annotations

import re

LEXING_PINS = {
    "client_encoding": "UTF8",
    "standard_conforming_strings": "on",
    "backslash_quote": "safe_encoding",
}

# How values are written where the value detectors read them, for every session unless
# the client asks otherwise (which policy judged: readers and masked dbas only 1-3 and
# hex): a database, role or server configured with bytea_output = escape or
# extra_float_digits = 0 (older servers' habits) wrote bytes holding a card as
# `4111\0001111\000...` in a text cast and a double holding one as `4.11111111111111e+15`,
# which no detector reads, and RESET ALL returned there. lc_monetary is left to the
# database: money's units are its locale's (test_pg_probe_p48).
WRITING_DEFAULTS = {"bytea_output": "hex", "extra_float_digits": "1"}

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


# The bounds a client may ask to tighten in its start-up packet (never lift: never none,
# never longer than the pin).
TIGHTENED = ("statement_timeout", "idle_in_transaction_session_timeout")
IDLE_IN_TRANSACTION = "idle_in_transaction_session_timeout"


# What policy may bound that the proxy keeps itself, never sent upstream:
# transaction_timeout (PostgreSQL 17's name; older servers refuse it in a start-up packet)
# bounds how long one transaction stays open. A reader that says something every minute
# kept one transaction, its snapshot (vacuum waits for it everywhere) and its locks for as
# long as it liked, each wait shorter than the idle bound; the relay ends the session at
# the first message of a transaction older than the bound (proxy._Relay).
PROXY_KEPT = frozenset({"transaction_timeout"})


def session_pins(session_settings: dict[str, str], pooler: str = "") -> dict[str, str]:
    """The settings the proxy pins for a session: what policy chose, and for a session it
    bounds per statement (a statement_timeout), a transaction left idle bounded as well:
    the policy's idle_in_transaction_session_timeout, else the statement bound. An open
    transaction holds its snapshot (vacuum waits for it everywhere) and its locks (every
    ALTER, and the writers queued behind it, wait) as long as the client says nothing.
    Behind a pooler, only what policy chose (each pin must hold through the role's own
    configuration there, role_pins)."""
    pins = {k: v for k, v in session_settings.items() if k.lower() not in PROXY_KEPT}
    lowered = {name.lower() for name in pins}
    bound = {k.lower(): v for k, v in pins.items()}.get("statement_timeout")
    if bound is not None and IDLE_IN_TRANSACTION not in lowered and not pooler:
        pins[IDLE_IN_TRANSACTION] = bound
    return pins


def upstream_params(
    username: str,
    database: str,
    requested: dict[str, str],
    session_settings: dict[str, str],
    pooler: str = "",
) -> dict[str, str]:
    """The start-up packet the proxy sends upstream: the credential's user, the database,
    WRITING_DEFAULTS the client does not ask to change, the settings policy admitted, then
    the pins (policy's and the lexing ones), which win (but for a statement_timeout the
    client asks to be shorter than the policy's).

    Behind a pooler only the pins it tracks go (role_pins must hold the others); what the
    client asked for goes as asked, and the pooler refuses, by name, what it cannot keep
    (pgbouncer: "unsupported startup parameter", unless its ignore_startup_parameters
    drops it)."""
    params = {"user": username, "database": database}
    pinned = {**session_settings, **LEXING_PINS}
    lowered = {name.lower() for name in pinned}
    named = {name.lower() for name in requested}
    if not pooler:
        params.update({k: v for k, v in WRITING_DEFAULTS.items() if k not in named})
    for name, value in requested.items():
        if name.lower() not in lowered:
            params[name] = value
    if pooler:
        params.update({k: v for k, v in LEXING_PINS.items() if k in POOLER_TRACKED})
        return params
    params.update(pinned)
    # a bound the client asks to tighten: its own value when it is shorter than the
    # policy's (never none, never longer)
    asking = {name.lower(): value for name, value in requested.items()}
    for name in TIGHTENED:
        asked, bound = asking.get(name), session_settings.get(name)
        if asked is not None and bound is not None:
            asked_s, bound_s = (
                statement_limit({name: asked}, name),
                statement_limit({name: bound}, name),
            )
            if 0 < asked_s <= bound_s:
                params[name] = asked
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


def statement_limit(session_settings: dict[str, str], name: str = "statement_timeout") -> float:
    """Seconds the proxy lets a statement run (the policy's statement_timeout, in ms as
    the server reads a bare number, or with the server's units); 0 for no limit. Any
    other timeout setting (`name`) read the same way."""
    raw = session_settings.get(name, "").strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?", raw)
    if not match:
        return 0.0
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
    return float(match.group(1)) * scale[match.group(2) or "ms"]


# -- behind a transaction pooler ---------------------------------------------------------

# The start-up parameters pgbouncer keeps per client and sets on whichever server
# connection runs that client's transaction (1.18: its varcache, src/varcache.c), lower
# case; it refuses every other one ("unsupported startup parameter") unless told to drop it.
POOLER_TRACKED = frozenset(
    {"client_encoding", "datestyle", "timezone", "standard_conforming_strings", "application_name"}
)

# Where a setting's value comes from (pg_settings.source) when every new server
# connection of the role starts with it: the server's default or configuration, ALTER
# ROLE / ALTER DATABASE ... SET. Not `session` (a SET, which a transaction pooler leaves
# on its server connection for whichever client comes next), `client`, `override` or
# `interactive`.
HELD_SOURCES = frozenset(
    {
        "default",
        "environment variable",
        "configuration file",
        "command line",
        "global",
        "database",
        "user",
        "database user",
    }
)


# The pins every session behind a pooler needs from the upstream role's configuration,
# whatever policy chose for it: WRITING_DEFAULTS, which no start-up packet can carry there
# (a database configured with bytea_output = escape showed a reader's pooled session the
# escape form, test_pg_probe_p52), and the lexing pins pgbouncer does not track. Nobody may
# SET or set_config them there: rego/portcullis/postgres_pooler.rego's
# pg_pooler_role_pins is this set, which tests/test_pg_probe_p58.py holds equal to it.
POOLER_ROLE_PINS = {
    **WRITING_DEFAULTS,
    **{name: value for name, value in LEXING_PINS.items() if name not in POOLER_TRACKED},
}


def role_pins(session_settings: dict[str, str], pooler: str) -> dict[str, str]:
    """The pins that must hold through the upstream role's configuration, by lower-case
    name: behind a pooler, POOLER_ROLE_PINS and every pin policy chose that the pooler
    does not track; none otherwise (the start-up packet carries them all)."""
    if not pooler:
        return {}
    pins = {**POOLER_ROLE_PINS, **pinned_settings(session_settings)}
    return {name: value for name, value in pins.items() if name not in POOLER_TRACKED}


def pooler_settings_sql(pins: dict[str, str]) -> str:
    """One row per pinned setting the server knows: `name<TAB>setting<TAB>source`, asked
    on the session's own connection before the client is let in (no side connection)."""
    names = ", ".join(_quoted_literal(name) for name in sorted(pins))
    return (
        "SELECT name || E'\\t' || setting || E'\\t' || source FROM pg_catalog.pg_settings "
        f"WHERE name IN ({names})"
    )


def unheld_pins(pins: dict[str, str], rows: list[str]) -> list[str]:
    """Each pin the server does not hold for every connection of the role (wrong value,
    or right only because of a SET on this server connection), as `name (wants X, is Y
    from SOURCE)`; empty when all hold. A pin the server does not know is unheld."""
    seen: dict[str, tuple[str, str]] = {}
    for row in rows:
        name, _, rest = row.partition("\t")
        setting, _, source = rest.partition("\t")
        seen[name.lower()] = (setting, source)
    unheld = []
    for name, wanted in sorted(pins.items()):
        setting, source = seen.get(name, ("", "nowhere"))
        if _held_value(name, setting, wanted) and source in HELD_SOURCES:
            continue
        unheld.append(f"{name} (wants {wanted}, is {setting or 'unset'} from {source})")
    return unheld


def _held_value(name: str, setting: str, wanted: str) -> bool:
    if name in TIGHTENED:  # pg_settings says milliseconds; policy may give units
        return statement_limit({name: setting}, name) == statement_limit({name: wanted}, name)
    return same_value(name, setting, wanted)


def pooler_refusal_message(
    unheld: list[str], pins: dict[str, str], role: str, database: str
) -> str:
    """The error a session gets when pins do not hold behind a pooler: each setting
    named, and the ALTER ROLE that makes it hold."""
    fixes = "; ".join(
        f"ALTER ROLE {_quoted_identifier(role)} IN DATABASE {_quoted_identifier(database)} "
        f"SET {name} = {_quoted_literal(pins[name])}"
        for name in sorted(pins)
        if any(entry.startswith(f"{name} (") for entry in unheld)
    )
    return (
        "the upstream is a transaction pooler, so these pinned settings must come from the "
        f"upstream role's configuration, and do not: {', '.join(unheld)}. An administrator "
        f"fixes it with: {fixes} (then reconnects the pooler's server connections, e.g. "
        "pgbouncer RECONNECT)"
    )


def _quoted_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quoted_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
