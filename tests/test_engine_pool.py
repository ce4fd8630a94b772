"""The embedded engine's worker pool keeps its size: reloads never leave extra processes."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from pdp_harness import REGO

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
