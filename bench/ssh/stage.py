"""The stage the SSH benches that look inside one exec share: sshd, a configuration of one
SSH connection through Portcullis with `echo` an allowed command, a token, and the PDP.

Owns what callgrind_exec, exec_steps, syscalls_exec and decide_wait each started alike
(and the tree a --tree names, tree_at):
sshd (bench_ssh.Sshd) on a free port, this checkout's policy with `echo` allowed (the
phase whose every exec is decided), the configuration written to portcullis.yaml, a
pii-readers token minted by the CLI, and `portcullis pdp` started and waited for (or left
to the caller, which starts its own: decide_wait runs it under a profiler). Everything
started is stopped on the way out, newest first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import REPO, Sshd, portcullis_config, wait_port  # noqa: E402

sys.path.append(str(HERE.parent))
from processes import stop_all  # noqa: E402
from revision import tree_of  # noqa: E402


def tree_at(ref: str, into: Path) -> Path:
    """The tree a bench's --tree/--old/--new names: a directory holding one (a copy under
    /tmp with a change not committed yet, beside one of the commit before), or a commit
    unpacked into `into` (bench/revision.py)."""
    return Path(ref) if Path(ref).is_dir() else tree_of(ref, into)


def tree_label(ref: str) -> str:
    """A --tree's name in a bench's output and file names: a directory's last part."""
    return Path(ref).name if Path(ref).is_dir() else ref


def policies(into: Path) -> Path:
    """This checkout's policy with `echo` an allowed command (the decided phase)."""
    target = into / "rego"
    shutil.copytree(REPO / "rego", target)
    data = json.loads((target / "data.json").read_text())
    data["portcullis"]["ssh"]["allowed_commands"].append("echo")
    (target / "data.json").write_text(json.dumps(data))
    return target


def mint(cli: list[str], groups: str = "pii-readers") -> str:
    """A two-hour token for bench@example.com in `groups`, from the CLI of `cli`."""
    return subprocess.run(
        [*cli, "token", "--sub", "bench@example.com", "--groups", groups, "--ttl", "2h"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@dataclass
class Stage:
    sshd: Sshd
    config: dict[str, Any]
    path: Path  # the configuration, written
    cli: list[str]  # `portcullis -c portcullis.yaml`, as a command line
    token: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)  # stopped at the end

    @property
    def pdp_port(self) -> int:
        return int(self.config["pdp"]["listen"].rsplit(":", 1)[1])


@contextlib.contextmanager
def ssh_stage(
    tmp: Path, start_pdp: bool = True, pdp_timeout_seconds: float | None = None
) -> Iterator[Stage]:
    """sshd, the configuration and a token; the PDP too unless start_pdp is False."""
    sshd = Sshd(tmp / "sshd").start()
    stage: Stage | None = None
    try:
        config = portcullis_config(tmp, policies(tmp), sshd)
        if pdp_timeout_seconds is not None:
            config["connections"][0]["pdp_timeout_seconds"] = pdp_timeout_seconds
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        stage = Stage(sshd, config, path, cli, mint(cli))
        if start_pdp:
            pdp_log = tmp / "pdp.log"
            pdp = subprocess.Popen([*cli, "pdp"], cwd=tmp, stderr=pdp_log.open("w"))
            stage.procs.append(pdp)
            wait_port(stage.pdp_port, pdp, pdp_log)
        yield stage
    finally:
        if stage is not None:
            stop_all(stage.procs)
        sshd.stop()


def run_in_tmp(
    prefix: str,
    run: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, None]],
    args: argparse.Namespace,
) -> None:
    """A bench's `run(args, tmp)` on its own event loop, in a directory removed after."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        asyncio.run(run(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
