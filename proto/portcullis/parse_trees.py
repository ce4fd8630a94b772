"""Walking a parser's JSON tree (pglast's and PL/pgSQL's parse trees as plain dicts and lists).

Shared by the PDP's PL/pgSQL reading (pdp/sql/plpgsql.py) and the Postgres proxy's reading
of the database's function bodies (proxies/postgres/session_code.py), which may not import
each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def key_values(tree: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of every object in `tree`, depth first, in document order,
    without recursion (a deeply nested tree cannot exhaust the stack)."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield from item.items()
            stack.extend(reversed(item.values()))
        elif isinstance(item, list):
            stack.extend(reversed(item))
