"""Instructions of the evaluation hop, counted by callgrind: the worker's side and the PDP's.

What an evaluated decision costs outside the policy itself. Three counts, each per
evaluation, on the same inputs (policy_profile's agent postgres.query inputs with the
session's standing, encoded once):

  floor   the evaluator alone: raw_evaluate in one process, as policy_ir counts it;
  worker  a real evaluation worker (`python -m pdp.engine.worker FD`, started here under
          callgrind with --instr-atstart=no), sent the inputs as evaluation frames in
          trips of --trip frames (1: one evaluation per wake-up, as at a low rate; 8: a
          busy PDP's batches), counted from the first trip to the last answer with
          callgrind_control: the worker's loop, framing and system calls' user side, and
          the evaluator. worker - floor is the hop's part in the worker;
  pdp     EmbeddedEngine.evaluate in this side's process under callgrind on uvloop, as
          the PDP runs (its workers, children, are not traced), --callers evaluations at
          a time: the input's
          encoding, the frame, the dispatch, the answer's read (whose documents are
          remembered by their bytes: the same few answers come again and again).

The Go runtime runs as pdp.engine.embedded starts it (GOMAXPROCS=1) with its collector off
(GOGC=off: how often it runs in N evaluations moves counts by several percent between
runs) and asynchronous preemption off (its signals stop callgrind). With --gc-trace the
worker instead runs with the PDP's own GOGC, uninstrumented, and the collections per
evaluation are counted from GODEBUG=gctrace=1 (the collector's work: a cause callgrind
with GOGC=off leaves out). Not a test: nothing here asserts.

    python bench/pdp/engine_hop.py [--evaluations 800] [--trip 1 --trip 8] [--callers 32]
                                   [--only floor,worker,pdp] [--gc-trace]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: bench/pdp must not stand for the pdp package
    sys.path.insert(0, str(REPO))
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path.pop(0)


def _sibling(name: str) -> Any:
    """bench/pdp/<name>.py as a module (bench/pdp is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the client requests, the Go settings under callgrind and a dump's total: policy_ir's
_POLICY_IR = _sibling("policy_ir")
CLIENT_REQUESTS = _POLICY_IR.CLIENT_REQUESTS
GO_UNDER_CALLGRIND = _POLICY_IR.GO_UNDER_CALLGRIND
TOTAL = _POLICY_IR.DUMP_TOTAL
MEASURED = re.compile(r"^desc: Trigger: .*measured", re.M)


def _profile() -> Any:
    return _sibling("policy_profile")


def write_inputs(path: Path) -> None:
    """The agent inputs with their standing, one JSON line each (as policy_ir writes them)."""
    from pdp.engine.bundle import load_bundle
    from pdp.engine.opa import new_engine

    profile = _profile()
    engine = new_engine(load_bundle(REPO / "rego").without_tests())
    inputs = [profile.with_standing(engine, i) for i in profile.agent_inputs()]
    path.write_text("\n".join(json.dumps(i, separators=(",", ":")) for i in inputs) + "\n")


def read_inputs(path: Path) -> list[bytes]:
    return [line.encode() for line in path.read_text().splitlines() if line]


def helper(workdir: Path) -> Path:
    return _POLICY_IR.client_requests(workdir)  # type: ignore[no-any-return]


def dumped_total(workdir: Path, stem: str) -> int:
    """The instructions of the one dump whose trigger names "measured" (all dumps removed)."""
    totals = []
    for dump in sorted(workdir.glob(stem + "*")):
        text = dump.read_text(errors="replace")
        match = TOTAL.search(text)
        if match and MEASURED.search(text):
            totals.append(int(match.group(1)))
        dump.unlink()
    if len(totals) != 1:
        raise RuntimeError(f"expected one measured dump, found {len(totals)}")
    return totals[0]


# -- floor: the evaluator alone ---------------------------------------------------------


def floor_child(so: str, inputs: Path, passes: int) -> None:
    import gc

    from pdp.engine.bundle import load_bundle
    from pdp.engine.opa import DECISION_PATH, new_engine, raw_evaluate

    requests = ctypes.CDLL(so)
    engine = new_engine(load_bundle(REPO / "rego").without_tests())
    encoded = read_inputs(inputs)
    for _ in range(2):
        for raw in encoded:
            raw_evaluate(engine, DECISION_PATH, raw)
    gc.collect()
    gc.disable()
    requests.policy_ir_zero()
    for _ in range(passes):
        for raw in encoded:
            raw_evaluate(engine, DECISION_PATH, raw)
    requests.policy_ir_dump(b"measured")


def floor(workdir: Path, inputs: Path, passes: int) -> float:
    return counted_child(workdir, "floor.out", "--floor-child", inputs, passes, GO_UNDER_CALLGRIND)


def counted_child(
    workdir: Path, stem: str, role: str, inputs: Path, passes: int, env: dict[str, str], *more: str
) -> float:
    """Instructions per evaluation of this script run as `role` under callgrind, in the
    block its client requests mark "measured"."""
    so = helper(workdir)
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={workdir / stem}.%p",
            sys.executable,
            str(Path(__file__).resolve()),
            role,
            str(so),
            str(inputs),
            str(passes),
            *more,
        ],
        env={**os.environ, **env},
        capture_output=True,
        check=True,
        cwd=REPO,
    )
    return dumped_total(workdir, stem) / (passes * len(read_inputs(inputs)))


# -- worker: a real worker process, driven by frames --------------------------------------


def _answers(sock: socket.socket, count: int, buffer: bytearray) -> None:
    from pdp.engine import frames

    size = frames.HEADER.size
    while count:
        while len(buffer) < size or len(buffer) < size + frames.decode_length(bytes(buffer[:size])):
            data = sock.recv(1 << 16)
            if not data:
                raise RuntimeError("the worker closed its socket")
            buffer += data
        length = frames.decode_length(bytes(buffer[:size]))
        body = bytes(buffer[size : size + length])
        del buffer[: size + length]
        _, _, envelope = body.partition(b"\n")
        if b'"error"' in envelope[:20]:
            raise RuntimeError(f"the worker answered an error: {envelope[:300]!r}")
        count -= 1


def drive_worker(
    inputs: list[bytes], passes: int, trip: int, runner: list[str], env: dict[str, str], on: Any
) -> subprocess.Popen[bytes]:
    """Start a worker under `runner`, load rego/, warm it, call on(pid, True), send every
    input `passes` times in trips of `trip` frames (each trip answered before the next is
    sent), on(pid, False); returns the worker's process, its socket closed."""
    from pdp.engine import DECISION_PATH, frames
    from pdp.engine.bundle import load_bundle

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [*runner, sys.executable, "-m", "pdp.engine.worker", str(child.fileno())],
        pass_fds=(child.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    child.close()
    buffer = bytearray()
    bundle = load_bundle(REPO / "rego").without_tests()
    parent.sendall(frames.encode({"op": "load", "bundle": bundle.to_wire()}))
    _answers(parent, 1, buffer)
    evaluations = [frames.encode_eval(DECISION_PATH, raw) for raw in inputs]
    for _ in range(2):  # warm: the query prepared, the pages touched
        for frame in evaluations:
            parent.sendall(frame)
            _answers(parent, 1, buffer)
    on(proc.pid, True)
    sequence = evaluations * passes
    for start in range(0, len(sequence), trip):
        chunk = sequence[start : start + trip]
        parent.sendall(b"".join(chunk))
        _answers(parent, len(chunk), buffer)
    on(proc.pid, False)
    parent.close()
    return proc


def worker_count(workdir: Path, inputs: list[bytes], passes: int, trip: int) -> float:
    stem = f"worker{trip}.out"
    runner = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={workdir / stem}.%p",
    ]

    def control(pid: int, on: bool) -> None:
        steps = (("-i", "on"),) if on else (("--dump=measured",), ("-i", "off"))
        for args in steps:
            subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)

    proc = drive_worker(inputs, passes, trip, runner, {**os.environ, **GO_UNDER_CALLGRIND}, control)
    proc.wait(timeout=600)
    return dumped_total(workdir, stem) / (passes * len(inputs))


def gc_trace(inputs: list[bytes], passes: int, trip: int) -> tuple[float, float]:
    """Collections per evaluation and the worker's CPU per evaluation (µs, /proc), with the
    PDP's own Go runtime settings and no instrumentation."""
    from pdp.engine.embedded import GO_RUNTIME

    marks: dict[str, float] = {}

    def cpu(pid: int, on: bool) -> None:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        marks["on" if on else "off"] = (int(fields[11]) + int(fields[12])) / os.sysconf(
            "SC_CLK_TCK"
        )

    env = {**os.environ, **GO_RUNTIME, "GODEBUG": "gctrace=1"}
    proc = drive_worker(inputs, passes, trip, [], env, cpu)
    _, err = proc.communicate(timeout=600)
    count = passes * len(inputs)
    collections = sum(
        1 for line in err.decode(errors="replace").splitlines() if line.startswith("gc ")
    )
    return collections / count, (marks["off"] - marks["on"]) * 1e6 / count


# -- pdp: EmbeddedEngine.evaluate in this process -----------------------------------------


def pdp_child(so: str, inputs_path: Path, passes: int, callers: int) -> None:
    import gc

    from pdp.engine.embedded import EmbeddedEngine
    from portcullis.config import EngineSettings

    requests = ctypes.CDLL(so)
    inputs = [json.loads(raw) for raw in read_inputs(inputs_path)]
    settings = EngineSettings(
        type="embedded", policies=REPO / "rego", workers=2, reload=False, timeout_ms=600_000
    )

    async def run() -> None:
        engine = EmbeddedEngine(settings)
        await engine.start()
        try:
            sequence = inputs * passes

            async def caller(share: list[dict[str, Any]]) -> None:
                for policy_input in share:
                    result = await engine.evaluate(policy_input)
                    if result.result is None:
                        raise RuntimeError("undefined decision")

            async def block(items: list[dict[str, Any]]) -> None:
                await asyncio.gather(*(caller(items[k::callers]) for k in range(callers)))

            await block(inputs * 2)
            gc.collect()
            gc.disable()
            requests.policy_ir_zero()
            await block(sequence)
            requests.policy_ir_dump(b"measured")
        finally:
            await engine.close()

    import uvloop  # the PDP's event loop (portcullis.process)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


def pdp_count(workdir: Path, inputs: Path, passes: int, callers: int) -> float:
    return counted_child(
        workdir,
        f"pdp{callers}.out",
        "--pdp-child",
        inputs,
        passes,
        {"PYTHONDONTWRITEBYTECODE": "1"},
        str(callers),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=800)
    parser.add_argument("--trip", type=int, action="append", default=[])
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--only", default="floor,worker,pdp")
    parser.add_argument("--gc-trace", action="store_true")
    parser.add_argument("--floor-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--pdp-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(args.floor_child[0], Path(args.floor_child[1]), int(args.floor_child[2]))
        return
    if args.pdp_child:
        so, path, passes, callers = args.pdp_child
        pdp_child(so, Path(path), int(passes), int(callers))
        return
    if shutil.which("valgrind") is None and not args.gc_trace:
        sys.exit("valgrind is not installed")
    trips = args.trip or [1, 8]
    workdir = Path(tempfile.mkdtemp(prefix="engine-hop-"))
    try:
        path = workdir / "inputs.jsonl"
        write_inputs(path)
        inputs = read_inputs(path)
        passes = max(1, -(-args.evaluations // len(inputs)))
        count = passes * len(inputs)
        if args.gc_trace:
            for trip in trips:
                started = time.monotonic()
                per_gc, cpu_us = gc_trace(inputs, passes, trip)
                print(
                    f"trip {trip}: {per_gc:.4f} collections per evaluation, worker CPU "
                    f"{cpu_us:.0f} µs per evaluation ({count} evaluations, "
                    f"{time.monotonic() - started:.1f} s)"
                )
            return
        only = set(args.only.split(","))
        print(f"instructions per evaluation ({count} evaluations of {len(inputs)} inputs)")
        if "floor" in only:
            print(f"  floor (raw_evaluate in one process)   {floor(workdir, path, passes):>12,.0f}")
        if "worker" in only:
            for trip in trips:
                ir = worker_count(workdir, inputs, passes, trip)
                print(f"  worker, trips of {trip:<3d}               {ir:>12,.0f}")
        if "pdp" in only:
            ir = pdp_count(workdir, path, passes, args.callers)
            print(f"  pdp side, {args.callers} callers               {ir:>12,.0f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
