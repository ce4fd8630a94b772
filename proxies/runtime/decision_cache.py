"""The per-session decision cache: verdicts the policy allowed a proxy to reuse.

Owns reuse of a verdict for the same session, command kind and key — the exact command
text, or the statement's shape (pglast fingerprint, literals ignored) when the verdict
declared `cache_key: shape` — until its `cache_ttl_seconds` run out, the policy revision
changes, or the PDP becomes unreachable. Denies are never cached (pdp.verdict drops
their TTL). A hit still names the decision it came from, so evidence stays complete.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from proxies.runtime.pdp_client import Ruling

MAX_ENTRIES = 1024


@dataclass(frozen=True)
class _Entry:
    ruling: Ruling
    expires_at: float


class DecisionCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._exact: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._shape: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._clock = clock
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._exact.clear()
        self._shape.clear()

    def lookup(self, kind: str, raw: str, revision: str,
               shape_of: Callable[[str], str | None]) -> Ruling | None:
        entry = self._exact.get((kind, raw))
        table, key = self._exact, (kind, raw)
        if entry is None and self._shape:
            shape = shape_of(raw)
            if shape is not None:
                table, key = self._shape, (kind, shape)
                entry = table.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.expires_at <= self._clock() or entry.ruling.policy_revision != revision:
            del table[key]
            self.misses += 1
            return None
        table.move_to_end(key)
        self.hits += 1
        return replace(entry.ruling, cached=True)

    def store(self, kind: str, raw: str, ruling: Ruling,
              shape_of: Callable[[str], str | None]) -> None:
        ttl = ruling.verdict.cache_ttl_seconds
        if ttl <= 0 or not ruling.verdict.allowed or not ruling.decision_id:
            return
        entry = _Entry(ruling, self._clock() + ttl)
        if ruling.verdict.cache_key == "shape":
            shape = shape_of(raw)
            if shape is None:
                return
            table, key = self._shape, (kind, shape)
        else:
            table, key = self._exact, (kind, raw)
        table[key] = entry
        if len(table) > MAX_ENTRIES:
            table.popitem(last=False)
