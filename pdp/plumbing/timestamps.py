"""The one way a time is written for people and machines: RFC 3339, UTC, milliseconds.

Owns `rfc3339()` (every CLI table and JSON, the HTTP API, webhooks, replays and the
envelope of exported records write times with it: `2026-12-03T14:37:20.123Z`) and
`outward()`, which turns a stored or protobuf-shaped mapping into that form on the way
out: snake_case keys, and every time (a key named `time` or ending in `_at`) held as unix
seconds written as RFC 3339, with 0 or absent meaning "not yet" (null).

Stored records keep what they were written with (the hash chain covers them): times are
converted when they are shown, never rewritten in the store. No IO here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def rfc3339(seconds: float) -> str:
    """Unix seconds as RFC 3339 UTC with milliseconds (truncated), e.g. ...T14:37:20.123Z.
    A time no calendar date holds (a session event's time is the proxy's word: 1e300,
    NaN) reads as `out-of-range time <seconds>` instead of failing whatever shows it."""
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return f"out-of-range time {seconds!r}"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def snake_case(key: str) -> str:
    """`createdAt` → `created_at`; a snake_case key is left as it is."""
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), key)


def is_time_key(key: str) -> bool:
    return key == "time" or key.endswith("_at")


def outward(value: Any) -> Any:
    """A mapping (or list) as it leaves the PDP: snake_case keys, times in RFC 3339."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = snake_case(str(key))
            out[name] = _time(item) if is_time_key(name) else outward(item)
        return out
    if isinstance(value, list):
        return [outward(item) for item in value]
    return value


def _time(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value  # already text (RFC 3339), or null
    return rfc3339(value) if value > 0 else None
