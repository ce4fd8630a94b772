"""Classifying long SQL texts off the PDP's event loop.

Owns the one step of a Postgres decision that can take the PDP's CPU for seconds: pdp.sql
reads a statement at about 3 µs a byte, twice per decision (the policy's input, then the
effects the proxy applies), so a reader's INSERT naming 120,000 columns (850 KB) held the
event loop ~5 s and every other session's decision with it (their audit writes timed out
and were answered deny). A text longer than READ_APART characters is classified here, in
one thread of its own: texts wait their turn for it, so only those who send them wait,
and the loop shares the interpreter with one reader at most. The hard limit on a
command's size (pdp.api.recording_rpc.MAX_COMMAND_BYTES, 1 MiB) is checked before: a
larger one is refused unread. What the reading gives is exactly what the loop would have
made (pdp.domain.policy_input.command_input, pdp.domain.effects.command_effects).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from pdp.domain.effects import command_effects
from pdp.domain.policy_input import command_input

# longer texts are classified off the loop (below it, a reading takes a few ms at most)
READ_APART = 16 * 1024
SQL_KIND = "postgres.query"


def read_apart(kind: str, raw: str) -> bool:
    """Whether this command's classification is made by StatementReader."""
    return kind == SQL_KIND and len(raw) > READ_APART


def _read(
    kind: str, raw: str, attributes: dict[str, Any]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    return command_input(kind, raw, attributes), command_effects(kind, raw)


class StatementReader:
    """The PDP's reader of long SQL texts (one thread, started on first use)."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def read(
        self, kind: str, raw: str, attributes: dict[str, Any]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(input.command, effects) of a command read_apart() names."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="portcullis-sql-reader"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _read, kind, raw, attributes)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
