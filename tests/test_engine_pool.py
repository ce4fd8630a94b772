"""The embedded engine's worker pool keeps its size: reloads never leave extra processes."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from pdp_harness import REGO

from pdp.config import EngineSettings
from pdp.engine.embedded import EmbeddedEngine


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
                f'package portcullis\n\nreload_marker := {i}\n'
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
