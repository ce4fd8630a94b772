"""The embedded engine's worker pool keeps its size: reloads never leave extra processes."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from pdp_harness import REGO

from pdp.engine import EngineError
from pdp.engine.embedded import EmbeddedEngine
from portcullis.config import EngineSettings


def worker_pids() -> set[int]:
    """Live `python -m pdp.engine.worker` children of this process, from /proc."""
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], fields[1]
        if ppid == me and state != "Z" and b"pdp.engine.worker" in cmdline:
            found.add(int(entry.name))
    return found


async def test_reloads_keep_exactly_the_configured_number_of_workers(tmp_path):
    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies, ignore=shutil.ignore_patterns("*_test.rego"))
    engine = EmbeddedEngine(EngineSettings(policies=policies, workers=2, reload=False))
    await engine.start()
    try:
        assert len(worker_pids()) == 2
        for i in range(5):
            (policies / "zz_reload.rego").write_text(
                f"package portcullis\n\nreload_marker := {i}\n"
            )
            assert await engine.reload()
            result = await engine.evaluate({"command": {"kind": "session.open"}})
            assert result.revision == engine.revision
        for _ in range(50):  # retired workers are reaped in the background
            if len(worker_pids()) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(worker_pids()) == 2
        assert engine.live_workers == 2
    finally:
        await engine.close()
    assert worker_pids() == set()


RELOAD_BESIDE_GRPC = """
import asyncio, sys
from pathlib import Path
import grpc, uvloop
from portcullis.config import EngineSettings
from pdp.engine import EngineError
from pdp.engine.embedded import EmbeddedEngine

async def main():
    server = grpc.aio.server()
    server.add_insecure_port("127.0.0.1:0")
    await server.start()
    policies = Path(sys.argv[1])
    engine = EmbeddedEngine(EngineSettings(policies=policies, workers=1, reload=False))
    await engine.start()
    for i in range(3):
        (policies / "zz.rego").write_text(f"package portcullis\\n\\nmarker := {i}\\n")
        assert await engine.reload()
    await engine.close()
    await server.stop(0)
    print("reloaded")

uvloop.run(main())
"""


def test_workers_are_spawned_not_forked_beside_grpc(tmp_path):
    """The PDP runs on uvloop beside gRPC's threads; a worker started through the loop's
    subprocess support is a fork() of the PDP (gRPC then logs fork_posix.cc lines)."""
    import subprocess
    import sys

    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies, ignore=shutil.ignore_patterns("*_test.rego"))
    done = subprocess.run(
        [sys.executable, "-c", RELOAD_BESIDE_GRPC, str(policies)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "GRPC_VERBOSITY": "INFO"},
    )
    assert done.returncode == 0, done.stderr
    assert "reloaded" in done.stdout
    assert "fork" not in done.stderr, done.stderr


ECHO_POLICY = """package portcullis

slow if {
  some i in numbers.range(1, 1000)
  some j in numbers.range(1, 1000)
  i * j == -1
}

decision := {"verdict": "allow", "reasons": [input.n]} if not input.slow

decision := {"verdict": "allow", "reasons": ["slow"]} if {
  input.slow
  not slow
}
"""


def echo_engine(tmp_path: Path, workers: int = 1, timeout_ms: int = 500) -> EmbeddedEngine:
    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "policy.rego").write_text(ECHO_POLICY)
    return EmbeddedEngine(
        EngineSettings(
            policies=tmp_path / "echo", workers=workers, timeout_ms=timeout_ms, reload=False
        )
    )


async def test_evaluations_sent_to_a_worker_together_each_get_their_own_answer(tmp_path):
    """Evaluations that wait for a worker together go to it in one write and come back in
    order: each caller gets the answer to its own input, never a neighbour's."""
    engine = echo_engine(tmp_path, workers=2)
    await engine.start()
    trips: list[int] = []
    for worker in engine._all:  # counts what each write carried; the write itself runs
        send = worker.channel.send

        def counted(data, waiters, then=None, send=send):
            waiters = list(waiters)
            trips.append(len(waiters))
            send(data, waiters, then)

        worker.channel.send = counted
    try:
        for _ in range(3):
            numbers = list(range(300))
            results = await asyncio.gather(*(engine.evaluate({"n": n}) for n in numbers))
            assert [r.result["reasons"] for r in results] == [[n] for n in numbers]
        assert max(trips) > 1  # they did go together
        assert max(trips) <= engine.batch_limit
        assert sum(trips) == 900
    finally:
        await engine.close()


async def test_an_overrun_fails_the_evaluations_sent_after_it_and_only_those(tmp_path):
    """One worker, four evaluations at once: the first goes alone (the worker is free),
    the other three wait and go together. The slow one overruns its deadline: its worker
    is replaced, and the one sent after it on that worker is denied with it (an
    EngineError), never answered by the next worker's evaluations; the one before it is
    answered, or denied with it when its answer was still held (pdp.engine.worker's
    HOLD_SECONDS), never given another's answer; the pool recovers."""
    engine = echo_engine(tmp_path, workers=1, timeout_ms=300)
    await engine.start()
    try:
        (first,) = engine._all
        outcomes = await asyncio.gather(
            engine.evaluate({"n": 1}),
            engine.evaluate({"n": 2}),
            engine.evaluate({"slow": True}),
            engine.evaluate({"n": 3}),
            return_exceptions=True,
        )
        assert outcomes[0].result["reasons"] == [1]
        assert isinstance(outcomes[1], EngineError) or outcomes[1].result["reasons"] == [2]
        assert isinstance(outcomes[2], EngineError) and "deadline" in str(outcomes[2])
        # denied with it: its worker failed, or its own deadline (the same) came first
        assert isinstance(outcomes[3], EngineError)
        for _ in range(100):
            if engine.live_workers == 1 and first not in engine._all:
                break
            await asyncio.sleep(0.1)
        assert first not in engine._all and engine.live_workers == 1
        again = await engine.evaluate({"n": 4})
        assert again.result["reasons"] == [4]
    finally:
        await engine.close()


async def test_a_cancelled_call_frees_its_worker_unless_it_overruns(tmp_path):
    """A caller that leaves (its call cancelled) no longer costs a worker: the answer is
    passed over when it comes. But an evaluation still running at its deadline has its
    worker replaced all the same: an input that never ends cannot hold a worker for good
    by being cancelled."""
    engine = echo_engine(tmp_path, workers=1, timeout_ms=300)
    await engine.start()
    try:
        (first,) = engine._all
        quick = asyncio.ensure_future(engine.evaluate({"n": 1}))
        await asyncio.sleep(0)  # sent
        quick.cancel()
        assert (await engine.evaluate({"n": 2})).result["reasons"] == [2]
        await asyncio.sleep(0.5)  # past the cancelled one's deadline
        assert engine._all == {first}

        stuck = asyncio.ensure_future(engine.evaluate({"slow": True}))
        await asyncio.sleep(0.05)
        stuck.cancel()
        for _ in range(100):
            if first not in engine._all and engine.live_workers == 1:
                break
            await asyncio.sleep(0.1)
        assert first not in engine._all and engine.live_workers == 1
        assert (await engine.evaluate({"n": 3})).result["reasons"] == [3]
    finally:
        await engine.close()


async def test_evaluations_that_never_found_a_worker_are_not_kept(tmp_path):
    """Evaluations whose deadline passes while they wait for a worker are denied and
    forgotten: a pool that cannot answer (here its one worker held by an overrun) must not
    pile up every input sent to it meanwhile."""
    engine = echo_engine(tmp_path, workers=1, timeout_ms=300)
    await engine.start()
    try:
        outcomes = await asyncio.gather(
            engine.evaluate({"slow": True}),
            *(engine.evaluate({"n": n}) for n in range(50)),
            return_exceptions=True,
        )
        assert all(isinstance(o, EngineError) for o in outcomes)
        assert "no evaluation worker free" in str(outcomes[-1])
        assert not engine._waiting
        for _ in range(100):
            if engine.live_workers == 1:
                break
            await asyncio.sleep(0.1)
        assert (await engine.evaluate({"n": 1})).result["reasons"] == [1]
    finally:
        await engine.close()
