"""An evaluation worker's timer slack lets the Go runtime's monitor sleep through the gaps
between evaluations at a low pace (pdp.engine.worker.TIMER_SLACK_NS): at 2 ms it woke
within a 5 ms gap, handed the runtime to another thread for the goroutine each evaluation
leaves behind, and the worker slept and woke 5.7-7 times per evaluation instead of about
2. Read back from /proc, where the system has it; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_engine_pool import echo_engine, worker_pids

GAP_OF_A_LOW_PACE_NS = 5_000_000  # evaluations 5 ms apart: 200/s, bench_decide's lone pace

# these tests count the evaluation worker processes this process started
pytestmark = pytest.mark.cold_workers


async def test_a_workers_timer_slack_outlasts_the_gap_between_evaluations_at_a_low_pace(
    tmp_path,
):
    engine = echo_engine(tmp_path, workers=1)
    await engine.start()
    try:
        (pid,) = worker_pids()
        slack = Path(f"/proc/{pid}/timerslack_ns")
        if not slack.exists():  # pragma: no cover - not Linux, or before 4.6
            pytest.skip("no /proc/PID/timerslack_ns here")
        assert int(slack.read_text()) > GAP_OF_A_LOW_PACE_NS
        assert (await engine.evaluate({"n": 3})).result["reasons"] == [3]
    finally:
        await engine.close()
