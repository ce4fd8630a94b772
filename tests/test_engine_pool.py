"""The embedded engine's worker pool keeps its size: reloads never leave extra processes."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from pdp_harness import REGO

from pdp.engine import EngineError, embedded
from pdp.engine.embedded import EmbeddedEngine
from portcullis.config import EngineSettings

# these tests count the evaluation worker processes this process started
pytestmark = pytest.mark.cold_workers


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


async def test_an_overrun_fails_the_evaluations_sent_after_it_and_only_those(
    tmp_path, monkeypatch
):
    """One worker, four evaluations at once: the first goes alone (the worker is free),
    the other three wait and go together. The slow one overruns its deadline (and here no
    grace): its worker is replaced, and the one sent after it on that worker is denied
    with it (an EngineError), never answered by the next worker's evaluations; the one
    before it is answered, or denied with it when its answer was still held
    (pdp.engine.worker's HOLD_SECONDS), never given another's answer; the pool recovers."""
    monkeypatch.setattr(embedded, "OVERRUN_GRACE_SECONDS", 0.0)
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


async def test_a_cancelled_call_frees_its_worker_unless_it_overruns(tmp_path, monkeypatch):
    """A caller that leaves (its call cancelled) no longer costs a worker: the answer is
    passed over when it comes. But an evaluation still running at its deadline (and here
    no grace) has its worker replaced all the same: an input that never ends cannot hold
    a worker for good by being cancelled."""
    monkeypatch.setattr(embedded, "OVERRUN_GRACE_SECONDS", 0.0)
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


async def test_a_late_answer_within_the_grace_keeps_its_worker(tmp_path, monkeypatch):
    """An evaluation that overruns its deadline is denied at the deadline, but a worker
    that answers within the grace stays in the pool: a load spike that makes a finite
    evaluation late costs its caller a deny, not the pool a worker start (during which
    every other evaluation waits and is denied in turn)."""
    monkeypatch.setattr(embedded, "OVERRUN_GRACE_SECONDS", 120.0)
    engine = echo_engine(tmp_path, workers=1, timeout_ms=300)
    await engine.start()
    try:
        (first,) = engine._all
        with pytest.raises(EngineError, match="deadline"):
            await engine.evaluate({"slow": True})
        for _ in range(600):  # the slow evaluation runs on, then its worker is free again
            if first in engine._free:
                break
            await asyncio.sleep(0.05)
        assert engine._all == {first} and first in engine._free
        assert first.proc.returncode is None
        assert (await engine.evaluate({"n": 5})).result["reasons"] == [5]
        assert engine._all == {first}
    finally:
        await engine.close()


async def test_evaluations_that_never_found_a_worker_are_not_kept(tmp_path, monkeypatch):
    """Evaluations whose deadline passes while they wait for a worker are denied and
    forgotten: a pool that cannot answer (here its one worker held by an overrun, replaced
    at its deadline with no grace) must not pile up every input sent to it meanwhile."""
    monkeypatch.setattr(embedded, "OVERRUN_GRACE_SECONDS", 0.0)
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


STUCK_POLICY = """package portcullis

stuck if {
  some i in numbers.range(1, 100000)
  some j in numbers.range(1, 100000)
  i * j == -1
}

decision := {"verdict": "allow", "reasons": [input.n]} if not input.stuck

decision := {"verdict": "allow", "reasons": ["stuck"]} if {
  input.stuck
  not stuck
}
"""


def stuck_engine(tmp_path: Path, timeout_ms: int) -> EmbeddedEngine:
    """One worker, and a policy whose input.stuck holds that worker for minutes."""
    (tmp_path / "stuck").mkdir()
    (tmp_path / "stuck" / "policy.rego").write_text(STUCK_POLICY)
    return EmbeddedEngine(
        EngineSettings(policies=tmp_path / "stuck", workers=1, timeout_ms=timeout_ms, reload=False)
    )


async def test_evaluations_in_flight_share_one_deadline_timer_and_each_fails_closed(tmp_path):
    """The deadlines of the evaluations in flight are kept by the engine in order, with
    one loop timer for the first of them (not one timer each), and each evaluation still
    ends at its own deadline: sent at two moments behind an evaluation that holds the only
    worker, every one is denied (or, once the replaced worker is back, answered its own
    answer), none waits for good, and the queue of deadlines empties."""
    engine = stuck_engine(tmp_path, timeout_ms=300)
    await engine.start()
    loop = asyncio.get_running_loop()
    try:
        timers = sum(1 for h in getattr(loop, "_scheduled", []) if not h.cancelled())
        calls = [asyncio.ensure_future(engine.evaluate({"stuck": True}))]
        calls += [asyncio.ensure_future(engine.evaluate({"n": n})) for n in range(20)]
        await asyncio.sleep(0.1)
        calls += [asyncio.ensure_future(engine.evaluate({"n": n})) for n in range(20, 40)]
        await asyncio.sleep(0)
        assert len(engine._deadlines) == 41 and engine._deadline_timer is not None
        if hasattr(loop, "_scheduled"):  # asyncio's own loop: one timer more, not 41
            assert sum(1 for h in loop._scheduled if not h.cancelled()) <= timers + 1
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(outcomes[0], EngineError) and "deadline" in str(outcomes[0])
        for n, outcome in enumerate(outcomes[1:]):
            assert isinstance(outcome, EngineError) or outcome.result["reasons"] == [n]
        assert isinstance(outcomes[1], EngineError)  # its deadline came with the stuck one's
        for _ in range(100):  # the stuck worker replaced
            if engine.live_workers == 1 and engine._free:
                break
            await asyncio.sleep(0.1)
        assert (await engine.evaluate({"n": 99})).result["reasons"] == [99]
        await asyncio.sleep(0.4)  # every deadline queued so far has passed
        await engine.evaluate({"n": 100})
        assert len(engine._deadlines) <= 1
    finally:
        await engine.close()


async def test_a_deadline_before_those_queued_gets_a_timer_of_its_own(tmp_path):
    """Deadlines enter the engine's queue in order (one timeout per engine); one that
    would come before the last queued (the timeout shortened) is not queued behind it but
    bounded by a timer of its own: it is denied while the evaluation ahead of it, with its
    later deadline, is still running."""
    engine = stuck_engine(tmp_path, timeout_ms=600_000)
    await engine.start()
    try:
        stuck = asyncio.ensure_future(engine.evaluate({"stuck": True}))
        await asyncio.sleep(0)
        engine.timeout = 0.3
        short = asyncio.ensure_future(engine.evaluate({"n": 1}))
        done, _ = await asyncio.wait({stuck, short}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {short} and not stuck.done()
        assert isinstance(short.exception(), EngineError)
        assert "no evaluation worker free" in str(short.exception())
        stuck.cancel()
    finally:
        await engine.close()


async def test_workers_run_with_the_timer_slack_that_spares_the_go_runtimes_naps(tmp_path):
    """Each worker process sets its timer slack before its evaluator loads (the Go
    runtime's threads inherit it): read back from /proc where the system has it."""
    from pdp.engine.worker import TIMER_SLACK_NS

    engine = echo_engine(tmp_path, workers=2)
    await engine.start()
    try:
        pids = worker_pids()
        assert len(pids) == 2
        for pid in pids:
            slack = Path(f"/proc/{pid}/timerslack_ns")
            if not slack.exists():  # pragma: no cover - not Linux, or before 4.6
                continue
            assert int(slack.read_text()) == TIMER_SLACK_NS
            assert (await engine.evaluate({"n": 7})).result["reasons"] == [7]
    finally:
        await engine.close()
