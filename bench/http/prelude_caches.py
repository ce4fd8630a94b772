"""An experiment for `bench_wrk.py --prelude`: two per-request costs of the proxy made once.

Owns one measurement, not a design: what the HTTP proxy would gain if (1) the forms of an
upstream secret the scanners search for were built once per secret, not for every
response (as ResponseGuard did until the proxy began keeping them per session, commit
a8bcba8; the runtime's SecretScanner still builds them per scanner), and (2) the decision
cache's key took a fast
path for attributes whose values are strings or flat dicts of strings (portcullis.reuse's
reuse_key serialises the HTTP attributes with json.dumps on every request, the query and
headers being dicts). Patched into the proxy process before it starts. With
prelude_raw_upstream.py as well: `--prelude bench/http/prelude_both.py`. Never for
production.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from portcullis import reuse
from proxies.runtime import secrets_scan, session

secrets_scan._patterns = functools.lru_cache(maxsize=64)(secrets_scan._patterns)  # type: ignore[assignment]
original_key = reuse.reuse_key


@functools.lru_cache(maxsize=1024)
def _flat_key(kind: str, items: tuple[tuple[str, Any], ...]) -> str:
    attributes = {k: dict(v) if isinstance(v, tuple) else v for k, v in items}
    return reuse._json_key(kind, attributes)


def reuse_key(kind: str, attributes: Mapping[str, Any] | None) -> str:
    if not attributes:
        return kind
    items: list[tuple[str, Any]] = []
    for name, value in attributes.items():
        if type(value) is str:
            items.append((name, value))
        elif type(value) is dict and all(type(v) is str for v in value.values()):
            items.append((name, tuple(sorted(value.items()))))
        else:
            return original_key(kind, attributes)
    return _flat_key(kind, tuple(sorted(items)))


reuse.reuse_key = reuse_key
session.reuse_key = reuse_key  # type: ignore[attr-defined]
