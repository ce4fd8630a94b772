"""Reuse of verdicts the policy declared reusable: the table both decision caches share.

Owns the rule a policy author relies on when a verdict carries `cache_ttl_seconds`:
the same command kind with the same key — the exact command text, or the statement's
shape (portcullis.shape: literal values ignored) when the verdict says `cache_key: shape` —
may be answered from the earlier evaluation until the TTL runs out or the policy
revision changes. Denies and approval requests are never reused (only allowing verdicts
are stored). The proxy keeps one table per session; the PDP keeps one table whose keys
carry the session id, so neither widens what the policy allowed.
"""

from __future__ import annotations

import functools
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from portcullis.verdict import Verdict

T = TypeVar("T")
ShapeOf = Callable[[str], "str | None"]

DEFAULT_MAX_ENTRIES = 1024


def reuse_key(kind: str, attributes: Mapping[str, Any] | None) -> str:
    """What an answer is filed under besides its text: the command kind and, in a
    canonical form, its attributes (a Postgres statement's protocol, say), so two commands
    that differ in anything the policy sees besides the text never share an entry."""
    if not attributes:
        return kind
    frozen = _frozen(attributes)
    if frozen is not None:
        # remembered only for strings (and dicts and lists of them: an HTTP request's
        # query and headers): as a cache key 1, 1.0 and True are one value
        return _text_key(kind, frozen)
    return _json_key(kind, attributes)


_Frozen = tuple[Any, ...]


def _frozen(value: Mapping[str, Any]) -> _Frozen | None:
    """A hashable form of a mapping of strings, mappings and lists of strings (each kind
    tagged, keys sorted), or None for anything else."""
    items: list[tuple[str, Any]] = []
    for key, item in value.items():
        if type(key) is not str:
            return None
        kind = type(item)
        if kind is str:
            items.append((key, item))
        elif kind is dict:
            inner = _frozen(item)
            if inner is None:
                return None
            items.append((key, ("dict", inner)))
        elif kind is list and all(type(v) is str for v in item):
            items.append((key, ("list", tuple(item))))
        else:
            return None
    items.sort(key=lambda pair: pair[0])
    return tuple(items)


def _thawed(frozen: _Frozen) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in frozen:
        if type(item) is str:
            out[key] = item
        elif item[0] == "dict":
            out[key] = _thawed(item[1])
        else:
            out[key] = list(item[1])
    return out


@functools.lru_cache(maxsize=256)
def _text_key(kind: str, frozen: _Frozen) -> str:
    return _json_key(kind, _thawed(frozen))


def _json_key(kind: str, attributes: Mapping[str, Any]) -> str:
    return f"{kind}\x00{json.dumps(attributes, sort_keys=True, separators=(',', ':'))}"


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    revision: str
    expires_at: float


class ReuseTable(Generic[T]):
    """A bounded LRU of reusable answers, keyed by (scope, kind, exact text or shape)."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        scoped: bool = True,
    ) -> None:
        """scoped: the keys of each scope are filed, so forget() drops a scope at once (the
        PDP's table, one scope per session); a table of one scope (a proxy session's own
        cache) keeps no such index: its forget() looks through the entries."""
        self._exact: OrderedDict[tuple[Hashable, str, str], _Entry[T]] = OrderedDict()
        self._shape: OrderedDict[tuple[Hashable, str, str], _Entry[T]] = OrderedDict()
        # the keys each scope holds in either table, so forget() drops a scope at once
        self._scopes: dict[Hashable, set[tuple[Hashable, str, str]]] = {}
        self._scoped = scoped
        self._max = max_entries
        self._clock = clock
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._exact) + len(self._shape)

    def clear(self) -> None:
        self._exact.clear()
        self._shape.clear()
        self._scopes.clear()

    def forget(self, scope: Hashable) -> int:
        """Drop every entry of a scope (a session that closed: nothing can hit them
        again); returns how many."""
        if not self._scoped:
            keys: set[tuple[Hashable, str, str]] = {
                key for table in (self._exact, self._shape) for key in table if key[0] == scope
            }
        else:
            keys = self._scopes.pop(scope, set())
        for key in keys:
            self._exact.pop(key, None)
            self._shape.pop(key, None)
        return len(keys)

    def _unfiled(self, key: tuple[Hashable, str, str]) -> None:
        held = self._scopes.get(key[0])
        if held is not None:
            held.discard(key)
            if not held:
                del self._scopes[key[0]]

    def lookup(
        self, scope: Hashable, kind: str, raw: str, revision: str, shape_of: ShapeOf
    ) -> T | None:
        table, key = self._exact, (scope, kind, raw)
        entry = table.get(key)
        if entry is None and self._shape:
            found = shape_of(raw)
            if found is not None:
                table, key = self._shape, (scope, kind, found)
                entry = table.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.expires_at <= self._clock() or entry.revision != revision:
            del table[key]
            if key not in self._exact and key not in self._shape:
                self._unfiled(key)
            self.misses += 1
            return None
        table.move_to_end(key)
        self.hits += 1
        return entry.value

    def store(
        self,
        scope: Hashable,
        kind: str,
        raw: str,
        verdict: Verdict,
        revision: str,
        value: T,
        shape_of: ShapeOf,
    ) -> None:
        ttl = verdict.cache_ttl_seconds
        if ttl <= 0 or not verdict.allowed or not revision:
            return
        if verdict.cache_key == "shape":
            found = shape_of(raw)
            if found is None:
                return
            table, key = self._shape, (scope, kind, found)
        else:
            table, key = self._exact, (scope, kind, raw)
        table[key] = _Entry(value, revision, self._clock() + ttl)
        table.move_to_end(key)
        if self._scoped:
            self._scopes.setdefault(scope, set()).add(key)
        if len(table) > self._max:
            evicted, _ = table.popitem(last=False)
            if evicted not in self._exact and evicted not in self._shape:
                self._unfiled(evicted)
