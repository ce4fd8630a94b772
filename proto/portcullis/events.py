"""The recorded-event contract: the limits a proxy's session events keep and the PDP checks.

Owns what both ends agree on about one recorded event: how long a run of repeats may be,
how much of a command too long to store whole is kept, and the facts an event carries
about the part it cut (size and SHA-256 of the whole text). The proxy's recorder applies
them before it sends; the PDP's recordings check them again before they are stored.
"""

from __future__ import annotations

import hashlib
from typing import Any

MAX_REPEAT = 4096  # the longest run of one event repeated that a batch may carry
TRUNCATED_PREFIX = 4096  # what is kept of a command too long to store whole


def longer_than(text: str, limit: int) -> bytes | None:
    """text's UTF-8 (a lone surrogate kept as written) when it is longer than `limit`
    bytes, else None; a text of at most limit / 4 characters is not encoded (a character
    is at most 4 bytes)."""
    if len(text) <= limit // 4:
        return None
    whole = text.encode("utf-8", "surrogatepass")
    return whole if len(whole) > limit else None


def truncation_facts(command: str) -> dict[str, Any]:
    """What an event says of a command it carries only the start of."""
    whole = command.encode("utf-8", "surrogatepass")
    return {
        "command_truncated": True,
        "command_bytes": len(whole),
        "command_sha256": hashlib.sha256(whole).hexdigest(),
    }


# A statement's masking counts, carried in its command (or response) event as
# `details.masked`: {"field:<column>" | "derived:<column>" | "detector:<name>" | ... → how
# many values}, never a value. Keys and counts are bounded so a batch of them still passes
# the PDP's fast check (a result has at most 1664 columns; a few keys more for detectors).
MASKED = "masked"
MAX_MASKED_KEYS = 2048
MAX_MASKED_KEY = 160  # characters: "field:" and a column name of 63 bytes fit with room
MAX_MASKED_COUNT = 10**15 - 1  # beyond any result's row count times its columns
_MORE = "more"  # keys past MAX_MASKED_KEYS - 1 are counted together under this one


def masked_details(counts: dict[str, int]) -> dict[str, int]:
    """A statement's masking counts as its event carries them: keys in order (so equal
    counts spell equal JSON), each cut to MAX_MASKED_KEY characters, counts capped at
    MAX_MASKED_COUNT, and keys past the bound counted under "more"."""
    out: dict[str, int] = {}
    for key in sorted(counts):
        count = counts[key]
        if type(count) is not int or count <= 0:
            continue
        name = key[:MAX_MASKED_KEY]
        if name not in out and len(out) >= MAX_MASKED_KEYS - 1:
            name = _MORE
        out[name] = min(out.get(name, 0) + count, MAX_MASKED_COUNT)
    return out


def masked_counts_ok(value: Any) -> bool:
    """Whether `details.masked` has the shape masked_details gives: an object of at most
    MAX_MASKED_KEYS keys of at most MAX_MASKED_KEY characters, each a whole number from 0
    to MAX_MASKED_COUNT (the PDP's checks, full and fast, hold an event to this)."""
    if type(value) is not dict or len(value) > MAX_MASKED_KEYS:
        return False
    for key, count in value.items():
        if len(key) > MAX_MASKED_KEY or type(count) is not int:
            return False
        if not 0 <= count <= MAX_MASKED_COUNT:
            return False
    return True
