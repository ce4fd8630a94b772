"""Would an evaluator in the PDP's own process beat the worker pool at a low pace? One process.

Owns the engine-level half of the in-process lane question (issue 26/27): the same
postgres.query input evaluated `--evaluations` times, each `--gap` ms after the last
answer (an idle PDP between, as a lone decision finds it), three ways:

  pool    EmbeddedEngine.evaluate: the frame to a worker process and back (2 workers);
  thread  the shipped policy loaded in this process, evaluated on one thread of its own
          (the evaluator's runtime started from that thread, with the workers' timer
          slack and GOMAXPROCS/GOGC), the event loop handing it the input and woken by
          its answer: an in-process lane that keeps the deadline (the loop stays free);
  loop    the same evaluator called on the event loop's own thread: no hop at all, and
          no deadline either (the loop is blocked until the evaluator returns).

For each: p50 latency of the evaluation as the loop awaits it, and CPU per evaluation of
this process and its workers together (/proc/PID/task/*/schedstat, nanoseconds), the
probe's own sleeps included alike. Run each way in its own process (`--way`), alternating
(A B B A) when comparing on a shared machine. Not a test: nothing here asserts.

    python bench/pdp/inline_probe.py --way pool|thread|loop [--gap 95] [--evaluations 150]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if sys.path[0] == str(HERE):  # bench/pdp must not stand for the pdp package
    sys.path.pop(0)
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "bench"))
sys.path.append(str(HERE))

import uvloop  # noqa: E402
from bench_phases import ATTRIBUTES, SQL, session  # noqa: E402
from cpu_meter import cpu_ns, descendants  # noqa: E402

from pdp.domain.policy_input import build_input, command_input  # noqa: E402
from pdp.engine import DECISION_PATH  # noqa: E402
from pdp.engine.bundle import load_bundle  # noqa: E402
from pdp.engine.embedded import EmbeddedEngine, input_to_json, restart_with_go_runtime  # noqa: E402
from pdp.engine.opa import new_engine, parse_envelope, raw_evaluate  # noqa: E402
from pdp.engine.worker import relax_timers  # noqa: E402
from portcullis.config import EngineSettings  # noqa: E402


class ThreadLane:
    """An evaluator on a thread of its own: one evaluation at a time, answered on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready = threading.Event()
        self.wanted = threading.Condition()
        self.job: tuple[asyncio.Future[bytes], bytes] | None = None
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait()

    def _run(self) -> None:
        relax_timers()  # before the runtime starts from this thread: its threads inherit it
        engine = new_engine(load_bundle(REPO / "rego").without_tests())
        self.ready.set()
        while True:
            with self.wanted:
                while self.job is None:
                    self.wanted.wait()
                answer, input_json = self.job
                self.job = None
            raw = raw_evaluate(engine, DECISION_PATH, input_json)
            self.loop.call_soon_threadsafe(answer.set_result, raw)

    def evaluate(self, input_json: bytes) -> asyncio.Future[bytes]:
        answer = self.loop.create_future()
        with self.wanted:
            self.job = (answer, input_json)
            self.wanted.notify()
        return answer


async def probe(way: str, gap: float, n: int) -> None:
    policy_input = build_input(session(), command_input("postgres.query", SQL, ATTRIBUTES))
    loop = asyncio.get_running_loop()
    evaluate: Callable[[], Awaitable[Any]]
    engine = None
    if way == "pool":
        engine = EmbeddedEngine(
            EngineSettings(policies=REPO / "rego", workers=2, timeout_ms=5000, reload=False)
        )
        await engine.start()

        def evaluate() -> Awaitable[Any]:
            assert engine is not None
            return engine.evaluate(policy_input)

    elif way == "thread":
        lane = ThreadLane(loop)

        async def evaluate() -> Any:
            return parse_envelope(await lane.evaluate(input_to_json(policy_input)))

    else:
        relax_timers()
        local = new_engine(load_bundle(REPO / "rego").without_tests())

        async def evaluate() -> Any:
            return parse_envelope(raw_evaluate(local, DECISION_PATH, input_to_json(policy_input)))

    for _ in range(100):  # warm
        await evaluate()
    me = os.getpid()

    def spent() -> int:
        return cpu_ns(me) + sum(cpu_ns(p) for p in descendants(me))

    latencies = []
    before = spent()
    for _ in range(n):
        await asyncio.sleep(gap / 1000)
        started = time.perf_counter()
        await evaluate()
        latencies.append((time.perf_counter() - started) * 1000)
    cpu = (spent() - before) / n / 1000
    print(
        f"{way:6s} gap {gap:g} ms: p50 {statistics.median(latencies):.3f} ms, "
        f"CPU {cpu:.0f} µs per evaluation (this process and its workers)"
    )
    if engine is not None:
        await engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--way", choices=("pool", "thread", "loop"), required=True)
    parser.add_argument("--gap", type=float, default=95, help="ms after each answer")
    parser.add_argument("--evaluations", type=int, default=150)
    args = parser.parse_args()
    # the workers' Go runtime settings for the evaluator of this process too
    restart_with_go_runtime()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(probe(args.way, args.gap, args.evaluations))


if __name__ == "__main__":
    main()
