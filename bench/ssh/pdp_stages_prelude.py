"""Prelude for the PDP in bench/ssh/decide_wait.py: how long each stage of a Decide took,
appended to the file PORTCULLIS_PDP_STAGES (`stage session_id ms` per line).

Stages: `decide` (the Decide handler, from its call to its answer), `evaluate` (the
engine's evaluation: the worker's round trip), `record` (the decision record's append:
the store's group commit, which the answer waits for). Run by bench/ssh/profiled_pdp.py
before the PDP's modules load; wraps, changing nothing done. Never for production.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pdp.api.service import DecisionService
from pdp.domain.decisions import Decider

_path = os.environ["PORTCULLIS_PDP_STAGES"]


def _timed(
    stage: str, original: Callable[..., Coroutine[Any, Any, Any]], session_of: Callable[..., str]
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(original)
    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            ms = (time.perf_counter() - started) * 1000
            with open(_path, "a") as out:
                out.write(f"{stage} {session_of(*args, **kwargs) or '-'} {ms:.4f}\n")

    return timed


DecisionService.Decide = _timed(  # type: ignore[method-assign]
    "decide", DecisionService.Decide, lambda request, *_, **__: request.session_id
)
Decider._evaluate = _timed(  # type: ignore[method-assign]
    "evaluate", Decider._evaluate, lambda built, *_, **__: built["session"].get("id", "")
)
Decider._record = _timed(  # type: ignore[method-assign]
    "record", Decider._record, lambda _id, record, *_, **__: record.get("session_id", "")
)
