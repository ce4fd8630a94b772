"""Decide latency and throughput of a real PDP, beside in-process evaluation of the same policy.

First, with nothing else running, what this machine gives any server: how late a 1 kHz
timer wakes (its scheduling noise) and how long an fdatasync takes on the disk the decision
log is on. Then starts `portcullis pdp` (embedded OPA workers, SQLite decision log) as its
own process, and from this process measures:
  1. in-process evaluation time of the shipped policy for the same input (no service);
  2. open-loop Decide at 500 and 1,000 requests/s: p50/p99 latency, the medians of
     `--runs` runs (the VMs measured drift in speed between minutes), as unary calls and
     over one DecideStream (proxies.runtime.decide_calls, what proxies use);
  3. closed-loop Decide with 32 concurrent callers, each an agent of its own (one
     identity above 2,000 statements a second would trip the shipped policy's breaker):
     maximum sustained decisions/s, with
     every decision evaluated (unary and over DecideStream, and open-loop at 200/s beside
     ServerInfo on that server) and with evaluation reuse (the policy declares the SELECT's
     verdict reusable by shape for the session; each decision is still logged), and
     the maximum over DecideStream; the 1,000 requests/s and maximum phases again with
     the decision log's commits unsynced (`pdp.store.synchronous: normal`);
  4. ServerInfo on the same server, open-loop at the same rates and closed-loop with 32
     callers: gRPC's own latency and what it alone sustains here, the floor and the
     ceiling any Decide figure sits between.
Prints the figures, the ratio service/in-process, and each phase's CPU per call (the PDP
with its evaluation workers, of which the PDP's own process, this client, the whole
machine) with the hypervisor's steal:
client and PDP share the machine's cores, so the CPU figures say what the PDP alone would
sustain. Each open-loop figure also shows this client's longest garbage collection in the
phase (a pause of the load generator, not of the PDP; what the client holds after warm-up
is frozen out of its collections). Not a test: nothing here asserts.

With `--callgrind N` it does none of that: it counts the instructions of the PDP's own
process per evaluated decision under valgrind's callgrind instead (callgrind_evaluated),
the figure an A/B of the PDP's code reads on a machine too busy for its times
(`--callgrind-keep FILE` keeps the dump for callgrind_annotate). With `--profile PREFIX`
the same load runs with the PDP's event loop under cProfile (PREFIX.0.prof): where the
Python goes.

With `--tree DIR` given twice or more, each configuration's PDP is started from each
source tree in turn (A B, then B A, then A B: a drift of the machine weighs on both), the
figures are printed tree by tree and the issue 27 ratios side by side: a change's before
and after from the same run (copy the checkout before the change; the client side, this
process, is this checkout's in both).

    python bench/pdp/bench_decide.py [--seconds 10] [--workers 2] [--runs 3]
    python bench/pdp/bench_decide.py --tree /tmp/before --tree . [--seconds 3 --runs 2]
    python bench/pdp/bench_decide.py --callgrind 640 [--callgrind-keep out.cg]
    python bench/pdp/bench_decide.py --profile /tmp/pdp [--callgrind 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from pdp_harness import free_port  # noqa: E402

from pdp.domain.identity import DevIssuer  # noqa: E402
from pdp.engine.embedded import restart_with_go_runtime  # noqa: E402
from portcullis.config import load_config  # noqa: E402
from portcullis.heap import freeze_startup_heap  # noqa: E402
from portcullis.v1 import pdp_pb2, pdp_pb2_grpc  # noqa: E402

# only now: a bench/pdp directory on the path must not stand for the pdp package
sys.path.append(str(REPO / "bench"))
from cpu_meter import CPUMeter  # noqa: E402

from portcullis.wire import CREDENTIAL_METADATA  # noqa: E402
from proxies.runtime.decide_calls import CallFailed, DecideCalls  # noqa: E402

SQL = "SELECT id, email, total FROM orders WHERE customer_id = 42"
# the pace of the open-loop phase with every decision evaluated: well under what an
# evaluating PDP sustains on a shared 2-core machine (at 500/s under a neighbour's load it
# queued, and its p50 measured the queue, not a decision)
EVALUATED_RATE = 200


def in_process_eval_us(
    iterations: int = 3000, policies: Path = REPO / "rego"
) -> tuple[float, float]:
    """Median and p99 µs of classify + evaluate in this process (what the service wraps)."""
    from pdp.domain.decisions import STANDING_PATH
    from pdp.domain.policy_input import query_flags, statement_flags, statement_types
    from pdp.engine.bundle import load_bundle
    from pdp.engine.opa import evaluate, new_engine
    from pdp.sql import classify

    engine = new_engine(load_bundle(policies).without_tests())
    policy_input: dict[str, Any] = {
        "identity": {
            "subject": "bench@example.com",
            "groups": ["readonly"],
            "issuer": "dev",
            "claims": {},
            "token_id": "t",
        },
        "connection": {"name": "orders-db", "type": "postgres", "zone": "eu-prod", "labels": {}},
        "session": {
            "id": "s",
            "started_at": "2026-01-01T00:00:00Z",
            "client_addr": "x",
            "client": "bench",
        },
        "command": {"kind": "postgres.query", "raw": SQL},
        "now": "2026-01-01T00:00:00Z",
    }
    # as the PDP evaluates a session's command: with the session's standing, worked out
    # once per session (pdp.domain.decisions), and the statements' types
    about = {k: policy_input[k] for k in ("identity", "connection", "session")}
    standing = evaluate(engine, about, STANDING_PATH)
    if isinstance(standing, dict):
        policy_input["standing"] = standing
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        statements = classify(SQL)  # not the PDP's cache of classified texts
        policy_input["command"]["postgres"] = {
            "statements": statements,
            "types": statement_types(statements),
            "has": query_flags({}, statement_flags(statements)),
            "protocol": "simple",
        }
        evaluate(engine, policy_input)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def machine_floor(directory: str, seconds: float = 5.0) -> dict[str, float]:
    """What this machine gives anything, with no PDP running: how late a 1 kHz timer wakes
    this process (the VM's scheduling noise, which no server here gets under), and how long
    an fdatasync of a 4 KiB append takes on the disk the decision log is on (the log waits
    for one per batch before its decisions are answered). Milliseconds."""
    late = []
    start = time.perf_counter()
    for i in range(int(seconds * 1000)):
        due = start + (i + 1) / 1000
        time.sleep(max(0.0, due - time.perf_counter()))
        late.append((time.perf_counter() - due) * 1000)
    synced = []
    fd = os.open(Path(directory) / "fdatasync.probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(2000):
            os.write(fd, b"\0" * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            synced.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
    return {
        "wake_p50": pct(late, 0.5),
        "wake_p99": pct(late, 0.99),
        "wake_p999": pct(late, 0.999),
        "wake_max": max(late),
        "sync_p50": pct(synced, 0.5),
        "sync_p99": pct(synced, 0.99),
        "sync_max": max(synced),
    }


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def open_loop(call, rate: int, seconds: float) -> dict[str, float]:
    """call() issued `rate` times a second for `seconds`, whatever the answers' pace."""
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            await call()
        except (grpc.aio.AioRpcError, CallFailed):
            errors += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)

    # only the calls in flight: a list of every call made would grow the heap that the
    # client's collector walks
    in_flight: set[asyncio.Future[None]] = set()
    interval = 1 / rate
    start = time.perf_counter()
    n = int(rate * seconds)
    with ClientPauses() as pauses:
        for i in range(n):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one())
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    achieved = len(latencies) / (time.perf_counter() - start)
    return {
        "p50": pct(latencies, 0.5),
        "p90": pct(latencies, 0.9),
        "p99": pct(latencies, 0.99),
        # the share of calls over the 2 ms target: a p99 over it by a few calls in a
        # thousand (stalls of the VM) or a whole distribution too wide
        "over_2ms": sum(latency > 2 for latency in latencies) / max(1, len(latencies)),
        "achieved": achieved,
        "errors": errors,
        "client_gc_ms": pauses.longest_ms,
    }


class ClientPauses:
    """The longest garbage collection this client made while the block ran: a pause of
    the load generator, which its callers' latencies would show as the PDP's."""

    def __init__(self) -> None:
        self.longest_ms = 0.0
        self._started = 0.0

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - self._started) * 1000)

    def __enter__(self) -> ClientPauses:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._observe)


async def saturate(call, callers: int, seconds: float) -> float:
    """Calls per second that `callers` concurrent callers sustain for `seconds`; `call` is
    one call for all of them, or a list of one per caller."""
    done = 0
    stop_at = time.perf_counter() + seconds
    calls = call if isinstance(call, list) else [call] * callers

    async def caller(call) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(calls[i]) for i in range(callers)))
    return done / (time.perf_counter() - started)


async def metered(pids: dict[str, int], phase: Any) -> dict[str, float]:
    """Run a phase (its result: a calls/s figure or a dict with "achieved") and add what
    it cost per call (bench/cpu_meter.py)."""
    # the PDP is the client's child; "pdp_process" is the PDP without its workers
    meter = CPUMeter(pids, alone=frozenset({"client", "pdp_process"}))
    started = time.monotonic()
    outcome = await phase
    result = outcome if isinstance(outcome, dict) else {"rate": outcome}
    rate = float(result.get("achieved", result.get("rate", 0.0)) or 0.0)
    return {**result, **meter.per(rate * (time.monotonic() - started))}


def figures(r: dict[str, float], achieved: bool = True) -> str:
    """An open-loop phase's latency (p50, p90, p99 and the runs' p99 range, the share of
    calls over 2 ms), what it achieved and the client's longest collection in it."""
    text = (
        f"p50 {r['p50']:7.3f} ms   p90 {r['p90']:6.3f}   p99 {r['p99']:7.3f} ms "
        f"[{r['p99_low']:.3f}-{r['p99_high']:.3f}]   >2 ms {r['over_2ms']:5.1%}"
    )
    if achieved:
        text += f"   achieved {r['achieved']:7.1f}/s   errors {r['errors']:.0f}"
    return text + f"   client GC <= {r['client_gc_max']:.1f} ms"


def combined(runs: list[dict[str, float]]) -> dict[str, float]:
    """Runs of one open-loop phase as one: the median of each figure, errors summed, and
    the lowest and highest p99 (`p99_low`, `p99_high`)."""
    out = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    out["errors"] = sum(r["errors"] for r in runs)
    out["p99_low"] = min(r["p99"] for r in runs)
    out["p99_high"] = max(r["p99"] for r in runs)
    out["client_gc_max"] = max(r["client_gc_ms"] for r in runs)
    out["runs"] = len(runs)
    return out


# each session's key, as a proxy makes one at the open (OpenSessionRequest.session_key):
# the PDP takes no later call about a session without it
SESSION_KEYS: dict[str, str] = {}


async def open_session(stub: Any, metadata: Any, token: str, timeout: float | None = None) -> str:
    """A session on orders-db opened as a proxy opens one (the proxy credential's
    metadata, a session key of its own, kept in SESSION_KEYS); its id."""
    key = secrets.token_urlsafe(32)
    opened = await stub.OpenSession(
        pdp_pb2.OpenSessionRequest(
            token=token,
            connection=pdp_pb2.Connection(name="orders-db", type="postgres"),
            client_addr="127.0.0.1:1",
            client="bench",
            session_key=key,
        ),
        metadata=metadata,
        timeout=timeout,
    )
    SESSION_KEYS[opened.session_id] = key
    return str(opened.session_id)


def query_request(session_id: str, raw: str = SQL) -> pdp_pb2.DecideRequest:
    """A Decide of the postgres.query `raw` in a session open_session opened, with its key."""
    return pdp_pb2.DecideRequest(
        session_id=session_id,
        session_key=SESSION_KEYS.get(session_id, ""),
        command=pdp_pb2.Command(kind="postgres.query", raw=raw),
    )


async def run(
    address: str,
    tokens: list[str],
    seconds: float,
    rates: tuple[int, ...],
    info: bool,
    pdp_pid: int,
    runs: int = 1,
    credential: str = "",
) -> dict[str, dict[str, float]]:
    """tokens: the open-loop phases' identity first, then one per caller of the 32-caller
    phases (the shipped policy's runaway-loop breaker pauses one identity above 2,000
    statements a second, which 32 callers of reused decisions pass: 32 agents at the same
    total measure the PDP, not the breaker)."""
    # this client plays a proxy: it presents the proxy credential the PDP wrote at start
    metadata = ((CREDENTIAL_METADATA, credential),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)

        async def session_decide(token: str) -> Any:
            return query_request(await open_session(stub, metadata, token))

        decide = await session_decide(tokens[0])
        agents: list[Any] = []  # opened just before the phases that use them (an idle
        # session is closed by the PDP's reaper while the open-loop phases run)
        server_info = pdp_pb2.ServerInfoRequest()

        def decide_call():
            return stub.Decide(decide, timeout=5, metadata=metadata)

        def info_call():
            return stub.ServerInfo(server_info, timeout=5, metadata=metadata)

        calls = DecideCalls(stub, metadata)  # what a proxy uses: one DecideStream

        def stream_call():
            return calls.decide(decide, timeout=5)

        def each_agent(call_for):
            return [call_for(request) for request in agents]

        def unary_for(request):
            return lambda: stub.Decide(request, timeout=5, metadata=metadata)

        def stream_for(request):
            return lambda: calls.decide(request, timeout=5)

        await saturate(decide_call, 8, 1.0)  # warm up
        # as the PDP does once listening: without it a full collection of this client
        # took 27-36 ms in about one phase in three (2026-11-26), a pause of the load
        # generator that its figures would have charged to the PDP
        freeze_startup_heap()
        pids = {"pdp": pdp_pid, "pdp_process": pdp_pid, "client": os.getpid()}
        results: dict[str, dict[str, float]] = {}
        for rate in rates:
            # `runs` times each, Decide and ServerInfo (the same pace with a call that does
            # nothing: gRPC's own latency) alternating, so a drift of the machine's speed
            # shows as spread instead of favouring one of them
            decided, streamed, answered = [], [], []
            for _ in range(runs):
                decided.append(await metered(pids, open_loop(decide_call, rate, seconds)))
                if info:
                    streamed.append(await metered(pids, open_loop(stream_call, rate, seconds)))
                    answered.append(await metered(pids, open_loop(info_call, rate, seconds)))
            results[f"open_{rate}"] = combined(decided)
            if info:
                results[f"stream_{rate}"] = combined(streamed)
                results[f"info_{rate}"] = combined(answered)
        agents.extend([await session_decide(t) for t in tokens[1:]])
        if info:
            results["info_32"] = await metered(pids, saturate(info_call, 32, seconds))
            results["stream_32"] = await metered(
                pids, saturate(each_agent(stream_for), 32, seconds)
            )
        results["max_32"] = await metered(pids, saturate(each_agent(unary_for), 32, seconds))
        await calls.close()
        return results


def run_pdp(
    tmp: str,
    workers: int,
    seconds: float,
    reuse: bool,
    rates: tuple[int, ...] = (),
    info: bool = False,
    synchronous: str = "full",
    runs: int = 1,
    policies: Path = REPO / "rego",
    tree: Path = REPO,
) -> dict[str, dict[str, float]]:
    """Start a PDP (evaluation reuse on or off, the decision log's sync mode) of the
    source tree `tree` and run the open-loop rates, the ServerInfo ceiling if asked, and
    the 32-caller maximum."""
    listen = f"127.0.0.1:{free_port()}"
    path, token, agents = pdp_config(tmp, listen, workers, reuse, synchronous, policies)
    cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
    pdp = subprocess.Popen(
        [*cli, "pdp"], stderr=subprocess.DEVNULL, env=tree_env(tree), cwd=str(tree)
    )
    try:
        grpc.channel_ready_future(grpc.insecure_channel(listen)).result(timeout=60)
        credential = (Path(tmp) / "var" / "proxy.credential").read_text().strip()
        return asyncio.run(
            run(
                listen,
                [token, *agents],
                seconds,
                rates,
                info,
                pdp_pid=pdp.pid,
                runs=runs,
                credential=credential,
            )
        )
    finally:
        pdp.terminate()
        pdp.wait(timeout=30)


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that runs `python -m pdp.cli` from the source tree `tree` (a copy of
    this checkout as it was before a change, say: `--tree`)."""
    path = [str(tree), str(tree / "proto")]
    if os.environ.get("PYTHONPATH"):
        kept = [p for p in os.environ["PYTHONPATH"].split(os.pathsep) if not _in_a_tree(p)]
        path += kept
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _in_a_tree(entry: str) -> bool:
    """Whether a PYTHONPATH entry is a source tree's root or proto directory (this
    checkout's, as the README sets it): the tree being measured takes its place."""
    p = Path(entry or ".").resolve()
    return (p / "pdp" / "cli").is_dir() or (p.name == "proto" and (p.parent / "pdp").is_dir())


def pdp_config(
    tmp: str,
    listen: str,
    workers: int,
    reuse: bool,
    synchronous: str,
    policies: Path,
    timeout_ms: int = 250,
) -> tuple[Path, str, list[str]]:
    """The PDP's configuration file, the open-loop phases' token and the 32 agents' own."""
    config = {
        "pdp": {
            "listen": listen,
            "engine": {
                "type": "embedded",
                "policies": str(policies),
                "workers": workers,
                "reload": False,
                "timeout_ms": timeout_ms,
            },
            "store": {
                "type": "sqlite",
                "path": f"{tmp}/audit-{int(reuse)}-{synchronous}.db",
                "synchronous": synchronous,
            },
            "signing_key": f"{tmp}/signing.key",
            "reuse_evaluations": reuse,
        },
        "identity": {"dev": True, "dev_key": f"{tmp}/dev.key"},
        "connections": [
            {
                "name": "orders-db",
                "type": "postgres",
                "listen": "127.0.0.1:15432",
                "upstream": "127.0.0.1:5432",
                "credentials": {"provider": "static", "username": "app", "password": "x"},
            }
        ],
    }
    path = Path(tmp) / "portcullis.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
    token = subprocess.run(
        [*cli, "token", "--sub", "bench@example.com", "--groups", "readonly"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the 32 callers' own identities, minted with the key that command made
    issuer = DevIssuer(load_config(path).identity)
    agents = [issuer.issue(f"agent-{i}@example.com", ["readonly"], 3600) for i in range(32)]
    return path, token, agents


def callgrind_evaluated(
    tmp: str, decisions: int, workers: int, policies: Path, keep: Path | None = None
) -> float:
    """Instructions of the PDP's own process (its event loop, gRPC's threads, the decision
    log's writer; not the evaluation workers, processes of their own) per decision, every
    one evaluated, 32 agents over one DecideStream: `portcullis pdp` under valgrind's
    callgrind, counting only `decisions` decisions after 96 to warm it. Deterministic
    within a few per cent (the batches the load makes vary), so an A/B of the PDP's code
    on a busy machine. With `keep`, the measured part's dump is copied there (for
    callgrind_annotate)."""
    out = Path(tmp) / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]

    def control(pid: int, on: bool) -> None:
        for args in (("-i", "on"),) if on else (("--dump=measured",), ("-i", "off")):
            subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True)

    measured_decisions(
        tmp, decisions, workers, policies, [*valgrind, f"--callgrind-out-file={out}"], control
    )
    for dump in Path(tmp).glob("callgrind.out.*"):  # the dump of the measured part
        if keep is not None:
            keep.write_bytes(dump.read_bytes())
        for line in dump.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]) / decisions
    raise RuntimeError("callgrind wrote no dump of the measured decisions")


def profiled_evaluated(
    tmp: str, decisions: int, workers: int, policies: Path, prefix: Path
) -> None:
    """The same decisions as callgrind_evaluated with the PDP's event loop under cProfile
    (bench/ssh/profiled_pdp.py, CPU time): `<prefix>.0.prof`, where the Python goes."""
    profiled = [sys.executable, str(REPO / "bench" / "ssh" / "profiled_pdp.py"), str(prefix)]

    def control(pid: int, on: bool) -> None:
        os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)
        if not on:
            time.sleep(1)  # the profile is written before the PDP is stopped

    measured_decisions(tmp, decisions, workers, policies, profiled, control, python=False)


def drive_pdp(pdp: subprocess.Popen[bytes], listen: str, tmp: str, decide: Any) -> None:
    """Once the PDP at `listen` is ready, run `decide(credential)` (the proxy credential it
    wrote in tmp/var) to its end; the PDP is stopped after, whatever happened."""
    try:
        grpc.channel_ready_future(grpc.insecure_channel(listen)).result(timeout=600)
        credential = (Path(tmp) / "var" / "proxy.credential").read_text().strip()
        asyncio.run(decide(credential))
    finally:
        pdp.terminate()
        pdp.wait(timeout=120)


def measured_decisions(
    tmp: str,
    decisions: int,
    workers: int,
    policies: Path,
    runner: list[str],
    control: Any,
    python: bool = True,
) -> None:
    """Start `portcullis pdp` under `runner` (the interpreter follows it when `python`),
    warm it with 96 decisions, then `control(pid, True)`, `decisions` decisions, every one
    evaluated, 32 agents over one DecideStream, and `control(pid, False)`."""
    listen = f"127.0.0.1:{free_port()}"
    # deadlines far away: under callgrind the PDP runs ~50x slower than its workers
    path, _, agents = pdp_config(tmp, listen, workers, False, "full", policies, 600_000)
    interpreter = [sys.executable, "-m", "pdp.cli"] if python else []
    pdp = subprocess.Popen(
        [*runner, *interpreter, "-c", str(path), "pdp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def decide(credential: str) -> None:
        metadata = ((CREDENTIAL_METADATA, credential),)
        async with grpc.aio.insecure_channel(listen) as channel:
            stub = pdp_pb2_grpc.DecisionServiceStub(channel)
            requests = []
            for token in agents:
                requests.append(
                    query_request(await open_session(stub, metadata, token, timeout=600))
                )
            calls = DecideCalls(stub, metadata)

            async def each(count: int) -> None:
                left = [count]

                async def agent(request: Any) -> None:
                    while left[0] > 0:
                        left[0] -= 1
                        await calls.decide(request, timeout=600)

                await asyncio.gather(*(agent(r) for r in requests))

            await each(96)
            control(pdp.pid, True)
            await each(decisions)
            control(pdp.pid, False)
            await calls.close()

    drive_pdp(pdp, listen, tmp, decide)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument(
        "--policies",
        type=Path,
        default=None,
        help="the policy directory the PDP loads (a policy change's before and after; "
        "default: each tree's rego/)",
    )
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        default=[],
        help="a source tree whose PDP is measured (repeat: each configuration runs tree "
        "after tree, alternating, and the issue 27 ratios are printed side by side; "
        "default: this checkout). The client side (this process) is this checkout's",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="open-loop runs per rate (medians are printed)"
    )
    parser.add_argument(
        "--callgrind",
        type=int,
        default=0,
        metavar="N",
        help="only count the PDP's instructions per evaluated decision over N decisions "
        "(32 agents over DecideStream, under valgrind's callgrind)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="PREFIX",
        help="the --callgrind load with the PDP's event loop under cProfile: PREFIX.0.prof",
    )
    parser.add_argument(
        "--callgrind-keep",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --callgrind, keep the measured part's dump in FILE (callgrind_annotate)",
    )
    args = parser.parse_args()
    restart_with_go_runtime()  # its in-process evaluation as the PDP's workers run it
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            profiled_evaluated(
                tmp,
                args.callgrind or 640,
                args.workers or 2,
                args.policies or REPO / "rego",
                args.profile,
            )
        print(f"profile of the PDP's event loop: {args.profile}.0.prof")
        return
    if args.callgrind:
        with tempfile.TemporaryDirectory() as tmp:
            per = callgrind_evaluated(
                tmp,
                args.callgrind,
                args.workers or 2,
                args.policies or REPO / "rego",
                args.callgrind_keep,
            )
        print(
            f"PDP process, every decision evaluated, 32 agents over DecideStream: "
            f"{per:,.0f} instructions per decision ({args.callgrind} decisions, callgrind)"
        )
        return

    eval_p50, eval_p99 = in_process_eval_us(policies=args.policies or REPO / "rego")
    trees = args.tree or [REPO]
    measured: dict[Path, dict[str, dict[str, dict[str, float]]]] = {t: {} for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        floor = machine_floor(tmp)
        # each configuration's PDPs tree after tree, the order turned round from one
        # configuration to the next (A B, B A, A B), so a drift of the machine's speed
        # weighs on every tree alike
        configurations = (
            # evaluation reused: open loop at 500 and 1,000/s beside ServerInfo, 32 callers
            ("results", True, (500, 1000), True, "full"),
            # every decision evaluated: open loop beside ServerInfo on the same server (the
            # uncached decision's latency against gRPC's own) at EVALUATED_RATE, and 32
            # callers unary and over DecideStream
            ("evaluated", False, (EVALUATED_RATE,), True, "full"),
            ("unsynced", True, (1000,), False, "normal"),
        )
        for turn, (name, reuse, rates, info, synchronous) in enumerate(configurations):
            for tree in trees if turn % 2 == 0 else trees[::-1]:
                measured[tree][name] = run_pdp(
                    tmp,
                    args.workers,
                    args.seconds,
                    reuse,
                    rates,
                    info=info,
                    synchronous=synchronous,
                    runs=args.runs,
                    policies=args.policies or tree / "rego",
                    tree=tree,
                )
    ratios = {}
    for tree in trees:
        if len(trees) > 1:
            print(f"== tree {tree}")
        ratios[tree] = report(args, floor, eval_p50, eval_p99, **measured[tree])
    if len(trees) > 1:
        print(
            "issue 27 ratios, tree by tree (same run; targets: >= 0.5, <= 1.3x, <= 1.3x, <= 1.3x)"
        )
        for name in ratios[trees[0]]:
            print(f"  {name:<58} " + "  ".join(f"{ratios[t][name]:6.2f}" for t in trees))
        print("  trees: " + ", ".join(str(t) for t in trees))


def report(
    args: argparse.Namespace,
    floor: dict[str, float],
    eval_p50: float,
    eval_p99: float,
    results: dict[str, dict[str, float]],
    evaluated: dict[str, dict[str, float]],
    unsynced: dict[str, dict[str, float]],
) -> dict[str, float]:
    """Print one tree's figures (`results`: evaluation reused); returns its issue 27
    ratios by name."""
    print(
        f"PDP Decide benchmark ({os.cpu_count()} cores, {args.seconds:g}s per phase, "
        f"SQLite decision log, readonly SELECT → mask)"
    )
    print(
        f"  this machine, nothing running: a 1 kHz timer wakes p50 {floor['wake_p50']:.3f}"
        f"  p99 {floor['wake_p99']:.3f}  p99.9 {floor['wake_p999']:.3f}"
        f"  max {floor['wake_max']:.3f} ms late"
    )
    print(
        f"  fdatasync of a 4 KiB append: p50 {floor['sync_p50']:.3f}  p99 {floor['sync_p99']:.3f}"
        f"  max {floor['sync_max']:.3f} ms   (one per decision-log batch, before its answers)"
    )
    print(f"  in-process classify+evaluate   p50 {eval_p50:7.1f} µs   p99 {eval_p99:7.1f} µs")
    print(f"  open loop: medians of {args.runs} runs apiece, p99 range in brackets")
    for rate in (500, 1000):
        r = results[f"open_{rate}"]
        print(
            f"  Decide @ {rate:>5} req/s (open)  {figures(r)}"
            f"   p50 ratio service/in-process {r['p50'] * 1000 / eval_p50:5.1f}x"
        )
    for rate in (500, 1000):
        r = results[f"stream_{rate}"]
        print(f"  Decide over DecideStream @ {rate:>5}/s  {figures(r)}   (what proxies use)")
    for rate in (500, 1000):
        r = results[f"info_{rate}"]
        print(
            f"    gRPC alone: ServerInfo @ {rate:>5}/s  {figures(r, achieved=False)}"
            "   (the floor under Decide at that pace)"
        )
    r = unsynced["open_1000"]
    print(f"    with pdp.store.synchronous: normal   {figures(r)}")
    info, reused, every = results["info_32"], results["max_32"], evaluated["max_32"]
    print(f"  max sustained, 32 callers, evaluation reused      {reused['rate']:8.0f} decisions/s")
    print(f"  max sustained, 32 callers, every one evaluated    {every['rate']:8.0f} decisions/s")
    streamed = results["stream_32"]["rate"]
    print(f"  max sustained, 32 callers, reused, over DecideStream {streamed:6.0f} decisions/s")
    normal = unsynced["max_32"]["rate"]
    print(f"  max sustained, 32 callers, reused, synchronous: normal {normal:5.0f} decisions/s")
    print(
        f"  gRPC ceiling: ServerInfo, 32 callers, same server {info['rate']:8.0f} calls/s"
        f"   (unary Decide reaches {reused['rate'] / info['rate']:4.0%} of it, "
        f"DecideStream {streamed / info['rate']:4.0%}, its messages carrying several decisions)"
    )
    every_streamed = evaluated["stream_32"]["rate"]
    print(
        f"  max sustained, 32 callers, every one evaluated, over DecideStream "
        f"{every_streamed:6.0f} decisions/s"
    )
    uncached = evaluated[f"open_{EVALUATED_RATE}"]
    floor_info = evaluated[f"info_{EVALUATED_RATE}"]
    print(f"  every one evaluated @ {EVALUATED_RATE}/s (open)  {figures(uncached)}")
    print(
        f"    gRPC alone on that server @ {EVALUATED_RATE}/s  {figures(floor_info, achieved=False)}"
    )
    print("  issue 27 ratios (same run):")
    print(
        f"    every decision evaluated / DecideStream reused, 32 callers: unary "
        f"{every['rate'] / streamed:4.2f}, over DecideStream {every_streamed / streamed:4.2f}"
        "   (target >= 0.5)"
    )
    print(
        f"    evaluated Decide p50 / ServerInfo p50 @ {EVALUATED_RATE}/s, same server: "
        f"{uncached['p50'] / floor_info['p50']:4.2f}x   (target <= 1.3x)"
    )
    streamed_uncached = evaluated[f"stream_{EVALUATED_RATE}"]
    print(
        f"    evaluated, over DecideStream (what proxies use), p50 / ServerInfo p50 "
        f"@ {EVALUATED_RATE}/s: {streamed_uncached['p50'] / floor_info['p50']:4.2f}x"
        "   (target <= 1.3x)"
    )
    stream_1000, info_1000 = results["stream_1000"], results["info_1000"]
    print(
        f"    DecideStream p99 / ServerInfo p99 @ 1000/s, same server: "
        f"{stream_1000['p99'] / info_1000['p99']:4.2f}x   (target <= 1.3x)"
    )
    print(
        "  CPU per call (µs): PDP incl. evaluation workers (of which its own process) / "
        "this client / whole machine"
    )
    phases = {
        "Decide @ 500 req/s": results["open_500"],
        "Decide @ 1000 req/s": results["open_1000"],
        "Decide, 32 callers, reused": reused,
        "DecideStream @ 1000 req/s": results["stream_1000"],
        "DecideStream, 32 callers, reused": results["stream_32"],
        "Decide, 32 callers, evaluated": every,
        f"Decide @ {EVALUATED_RATE} req/s, evaluated": uncached,
        "DecideStream, 32 callers, evaluated": evaluated["stream_32"],
        "Decide @ 1000, synchronous normal": unsynced["open_1000"],
        "Decide, 32 callers, reused, normal": unsynced["max_32"],
        "ServerInfo @ 1000 req/s": results["info_1000"],
        "ServerInfo, 32 callers": info,
    }
    for name, r in phases.items():
        if "machine_us" in r:
            print(
                f"    {name:<30} {r['pdp_us']:7.0f} ({r['pdp_process_us']:5.0f}) / "
                f"{r['client_us']:5.0f} / "
                f"{r['machine_us']:5.0f}   steal {100 * r['steal']:3.0f}%"
            )
    print(
        "  targets (issue 27, ratios): evaluated/reused >= 0.5; the p50 and p99 ratios to "
        "ServerInfo above <= 1.3x"
    )
    return {
        "evaluated / DecideStream reused, 32 callers, DecideStream": every_streamed / streamed,
        f"evaluated Decide p50 / ServerInfo p50 @ {EVALUATED_RATE}/s": uncached["p50"]
        / floor_info["p50"],
        f"evaluated DecideStream p50 / ServerInfo p50 @ {EVALUATED_RATE}/s": streamed_uncached[
            "p50"
        ]
        / floor_info["p50"],
        "DecideStream p99 / ServerInfo p99 @ 1000/s (reused)": stream_1000["p99"]
        / info_1000["p99"],
    }


if __name__ == "__main__":
    main()
