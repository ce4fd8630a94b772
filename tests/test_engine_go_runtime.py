"""The Go runtime settings of an evaluator loaded in a process of its own (a benchmark
measuring the evaluator as the PDP's workers run it): the runtime inside the evaluator's
library reads the environment the process was started with, so GO_RUNTIME must be there at
its start (pdp.engine.embedded.restart_with_go_runtime), not set in os.environ later."""

from __future__ import annotations

import os
import subprocess
import sys

from pdp_harness import REGO

from pdp.engine.embedded import GO_RUNTIME

LOAD = (
    "from pdp.engine.bundle import load_bundle\n"
    "from pdp.engine.opa import new_engine\n"
    f"new_engine(load_bundle({str(REGO)!r}).without_tests())\n"
)


def collections_of(code: str) -> list[str]:
    """The Go collector's trace lines (GODEBUG=gctrace=1, set at start) of `code` run in
    a fresh interpreter whose environment starts without GO_RUNTIME's settings."""
    env = {k: v for k, v in os.environ.items() if k not in GO_RUNTIME}
    env["GODEBUG"] = "gctrace=1"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if line.startswith("gc ")]


def test_an_evaluator_loaded_after_a_restart_runs_with_one_scheduler_thread():
    restarted = collections_of(
        "from pdp.engine.embedded import restart_with_go_runtime\n"
        "restart_with_go_runtime()\n" + LOAD
    )
    assert restarted, "loading the shipped policy ran no collection"
    assert all(line.endswith(" 1 P") for line in restarted), restarted[:3]


def test_settings_put_in_os_environ_after_the_start_are_not_what_the_runtime_reads():
    # why the restart: the way the benchmarks set them before (on these 2-core machines
    # the runtime then takes a P per core)
    changed = collections_of(
        "import os\n"
        "from pdp.engine.embedded import GO_RUNTIME\n"
        "os.environ.update(GO_RUNTIME)\n" + LOAD
    )
    assert changed and not all(line.endswith(" 1 P") for line in changed)
