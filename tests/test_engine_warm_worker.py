"""The embedded engine's pool gives an evaluation the worker that evaluated last.

A worker idle for a while runs its next evaluation cold: its evaluator's code and policy
out of the core's caches (bench/ssh/cold_evaluator.py: the same instructions at ~2.3x
the CPU after 5 ms). The pool keeps its free workers as a stack (EmbeddedEngine._free:
released onto the end, taken from the end), so at a low pace one worker takes every
evaluation and the others stay out of the way; a free list taken in turn would hand each
evaluation the worker idle the longest, the coldest.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pdp.engine.embedded import EmbeddedEngine
from portcullis.config import EngineSettings

POLICY = """package portcullis

decision := {"verdict": "allow", "reasons": [input.n]}
"""


def pool(tmp_path: Path, workers: int) -> EmbeddedEngine:
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "policy.rego").write_text(POLICY)
    return EmbeddedEngine(
        EngineSettings(policies=tmp_path / "policy", workers=workers, reload=False)
    )


def counting_sends(engine: EmbeddedEngine) -> list[int]:
    """The pid of the worker each write went to, in order (the write itself runs)."""
    sent: list[int] = []
    for worker in engine._all:
        send = worker.channel.send

        def counted(data, waiters, then=None, send=send, pid=worker.proc.pid):
            sent.append(pid)
            send(data, waiters, then)

        worker.channel.send = counted  # type: ignore[method-assign]
    return sent


async def test_one_evaluation_at_a_time_goes_to_the_worker_that_answered_last(tmp_path):
    engine = pool(tmp_path, workers=3)
    await engine.start()
    try:
        sent = counting_sends(engine)
        for n in range(12):
            assert (await engine.evaluate({"n": n})).result["reasons"] == [n]
            await asyncio.sleep(0.005)  # idle between, as at one exec each
        assert len(sent) == 12
        assert set(sent) == {sent[0]}  # the warm one every time, not each in turn
    finally:
        await engine.close()


async def test_after_a_burst_the_worker_that_answered_last_is_taken_first(tmp_path):
    """Two evaluations at once keep two workers busy; the next one, alone, goes to the one
    of them that answered last (the end of the stack), not to the one idle all along."""
    engine = pool(tmp_path, workers=3)
    await engine.start()
    try:
        sent = counting_sends(engine)
        idle_all_along = set()
        for _ in range(5):
            sent.clear()
            await asyncio.gather(engine.evaluate({"n": 1}), engine.evaluate({"n": 2}))
            busy = set(sent)
            assert len(busy) == 2
            idle_all_along = {w.proc.pid for w in engine._all} - busy
            last = engine._free[-1].proc.pid
            assert last in busy
            sent.clear()
            assert (await engine.evaluate({"n": 3})).result["reasons"] == [3]
            assert sent == [last]
        assert idle_all_along and not idle_all_along & {last}
    finally:
        await engine.close()
