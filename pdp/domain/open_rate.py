"""How fast one identity may open sessions: a token bucket per identity.

Owns `OpenRate`. The policy caps the sessions an identity holds open at once
(max_sessions_per_identity, rego/portcullis/session.rego), but not how often it opens
them: a token opening and closing sessions in a loop had each open evaluated, recorded
in the chain and kept in the session ledger, without bound. Each identity has a bucket
of `per_minute` opens that refills at per_minute/60 a second; an open with the bucket
empty is refused before any evaluation. At most MAX_IDENTITIES buckets are kept (the
full ones go first: a full bucket is what a new one would be). No IO.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_PER_MINUTE = 600
MAX_IDENTITIES = 65536


class OpenRate:
    """Per-identity session-open budget; `take(key)` spends one open or says how long to wait."""

    def __init__(
        self, per_minute: int = DEFAULT_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = max(1, int(per_minute))
        self._refill = self.per_minute / 60.0  # opens a second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.per_minute), now))
        return min(float(self.per_minute), tokens + max(0.0, now - at) * self._refill)

    def take(self, key: str) -> float:
        """0.0: the open may go on (one spent); else the seconds until one is left."""
        now = self._clock()
        tokens = self._level(key, now)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._refill
        if key not in self._buckets and len(self._buckets) >= MAX_IDENTITIES:
            self._forget(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def _forget(self, now: float) -> None:
        """Drop the buckets that have refilled; failing that, the oldest half."""
        full = [k for k in self._buckets if self._level(k, now) >= self.per_minute]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= MAX_IDENTITIES:
            for k in list(self._buckets)[: MAX_IDENTITIES // 2]:
                del self._buckets[k]
