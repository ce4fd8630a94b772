"""Prelude for the PDP in bench/ssh/decide_cold.py: the moments inside each Decide, and one
policy input as the engine got it.

Appends `n mark ns` lines (perf_counter_ns) to PORTCULLIS_DECIDE_MARKS, n counting the
Decides: `decide>`/`decide<` (the Decide handler), `eval>`/`eval<` (the engine's
evaluation: the worker's round trip), `record>`/`record<` (the decision record's append,
which the answer waits for), inside it `commit>`/`commit<` (SQLite's commit on the loop's
thread) and `sync>`/`sync<` (the wait for the disk's fdatasync). Writes the policy input of
the KEPT_INPUT-th ssh.exec the engine evaluates (a session's standing in it by then), as
JSON, to PORTCULLIS_DECIDE_INPUT. Run by
bench/ssh/profiled_pdp.py before the PDP's modules load; wraps, changing nothing done.
Never for production.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pdp.api.service import DecisionService
from pdp.domain.decisions import Decider
from pdp.engine.embedded import EmbeddedEngine, input_to_json
from pdp.store.sqlite import SQLiteAuditStore

_marks = open(os.environ["PORTCULLIS_DECIDE_MARKS"], "a", buffering=1)  # noqa: SIM115
_input = Path(os.environ["PORTCULLIS_DECIDE_INPUT"])
_count = [0]
KEPT_INPUT = 20
_execs = [0]


def _mark(name: str) -> None:
    _marks.write(f"{_count[0]} {name} {time.perf_counter_ns()}\n")


def _marked(name: str, original: Callable[..., Any], first: bool = False) -> Callable[..., Any]:
    @functools.wraps(original)
    async def marked(*args: Any, **kwargs: Any) -> Any:
        if first:
            _count[0] += 1
        _mark(name + ">")
        try:
            return await original(*args, **kwargs)
        finally:
            _mark(name + "<")

    return marked


def _committing(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def committing(*args: Any, **kwargs: Any) -> Any:
        _mark("commit>")
        try:
            return original(*args, **kwargs)
        finally:
            _mark("commit<")

    return committing


_evaluate = EmbeddedEngine.evaluate


@functools.wraps(_evaluate)
async def _keep_input(self: Any, policy_input: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    if _execs[0] < KEPT_INPUT and policy_input.get("command", {}).get("kind") == "ssh.exec":
        _execs[0] += 1
        if _execs[0] == KEPT_INPUT:
            _input.write_bytes(input_to_json(policy_input))
    return await _evaluate(self, policy_input, *args, **kwargs)


EmbeddedEngine.evaluate = _marked("eval", _keep_input)  # type: ignore[method-assign]
DecisionService.Decide = _marked("decide", DecisionService.Decide, first=True)  # type: ignore[method-assign]
Decider._record = _marked("record", Decider._record)  # type: ignore[method-assign]
SQLiteAuditStore._await_sync = _marked("sync", SQLiteAuditStore._await_sync)  # type: ignore[method-assign]
SQLiteAuditStore._write_sync = _committing(SQLiteAuditStore._write_sync)  # type: ignore[method-assign]
