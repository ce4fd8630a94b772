"""The PDP's work per SSH exec in instructions, beside its work per Decide called directly.

Owns the deterministic answer to "what does one exec through the SSH proxy cost the PDP,
beyond its Decide?". sshd (tests/ssh_harness.py) and the proxy run as in bench_ssh.py;
the PDP's own process (`portcullis pdp`, its event loop, gRPC's C threads and its store;
not its evaluation workers, which are processes of their own and evaluate once per
decision whoever asks) runs under `valgrind --tool=callgrind --instr-atstart=no`, counting
only once everything is up and warm. Phases, each counted on its own (callgrind_control:
zero, run, dump) and divided by its operations:

- reused:  execs of `uptime` through the proxy (its answer reused after the first: no
  Decide at all; what remains is the exec's recording);
- decided: execs of `echo <n>`, a new line each (each decided by the PDP, then recorded);
- decide:  Decide of a new `echo <n>` line over a DecideStream from this process, as the
  proxy asks it and as bench_ssh's "evaluated Decide p50" does (no exec, no recording);
  `--line` another shape of line (`{n}` the new number; every command in it `echo`, the
  one the bench's policy allows), e.g. "echo 'a {n}' | echo b && echo c": a line the
  PDP reads with a shell parser rather than as plain words;
- idle:    nothing asked for `--idle-ms` per operation: the PDP's time-based work
  (approval follow, reapers, flush timers) that any phase pays per second it lasts;
- spaced:  (named with --phases; --cpu's default) a Decide of a new line every
  `--idle-ms`: a PDP idle between, woken once per exec's length, as a decided exec wakes
  it (its instructions: a Decide's plus the idle time's; its CPU: much more, see below).

`--tree REF` runs the PDP of a commit (bench/revision.py: unpacked beside the checkout,
which others may be editing; the policy stays this checkout's, the proxy this checkout's)
for an A/B of the PDP's code; runs of two trees are two invocations (name the commit by
its id: HEAD~1 moves when someone commits between them).
With `--cpu` the PDP runs as it is and each phase is measured in CPU time instead: the
time its process and its evaluation workers (every thread of each) ran, read from
/proc/PID/task/*/schedstat (nanoseconds, where bench/cpu_meter.py counts 10 ms ticks),
over `--rounds` rounds of the phases, medians per operation, the process and its workers
apart. Where the instructions of `spaced` are a `decide`'s and the idle time's, its CPU is
about twice a `decide`'s: the same work, on a PDP and a worker woken cold.
`--annotate N` prints the N functions (inclusive) that cost most per operation in each
phase. The PDP's Go-free main process runs Python: counts repeat within a few per cent.
With `--profile` the PDP runs under cProfile instead (bench/ssh/profiled_pdp.py: its
event loop's thread, in CPU time), and each phase prints its functions with their calls
per operation: which RPCs, records and parses an operation causes.

    python -u bench/ssh/callgrind_pdp.py [--ops 60] [--idle-ms 80] [--annotate 30]
                                         [--phases reused,decided,decide,idle] [--profile]
                                         [--tree REF] [--cpu [--rounds 3]] [--line L]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pstats
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ssh import Sshd, execs, portcullis_config, wait_port  # noqa: E402
from callgrind_exec import control, dumped, top_functions, total  # noqa: E402
from stage import policies, run_in_tmp  # noqa: E402

sys.path.append(str(HERE.parent))
from cpu_meter import descendants  # noqa: E402
from processes import stop_all  # noqa: E402
from revision import tree_of  # noqa: E402

PROFILED = HERE / "profiled_pdp.py"  # SIGUSR1 on, SIGUSR2 written

PHASES = ("reused", "decided", "decide", "idle")
CPU_PHASES = ("reused", "decided", "decide", "spaced", "idle")


def cpu_ns(pid: int) -> tuple[int, int]:
    """Nanoseconds the process has run (every thread), and its descendants (the PDP's
    evaluation workers)."""
    counts = [0, 0]
    for i, p in enumerate((pid, *descendants(pid))):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                counts[min(i, 1)] += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):  # ended meanwhile
                continue
    return counts[0], counts[1]


class DirectDecides:
    """Decide over a DecideStream from this process, on a web-1 session of its own."""

    def __init__(
        self, address: str, credential: str, token: str, line: str = "echo decide-{n}"
    ) -> None:
        self.address, self.credential, self.token = address, credential, token
        self.line = line
        self.n = 0

    async def __aenter__(self) -> DirectDecides:
        import grpc

        from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
        from portcullis.wire import CREDENTIAL_METADATA
        from proxies.runtime.decide_calls import DecideCalls

        self.pb = pdp_pb2
        self.metadata = ((CREDENTIAL_METADATA, self.credential),)
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = pdp_pb2_grpc.DecisionServiceStub(self.channel)
        self.key = secrets.token_urlsafe(32)  # the session's, as a proxy makes one
        opened = await self.stub.OpenSession(
            pdp_pb2.OpenSessionRequest(
                token=self.token,
                connection=pdp_pb2.Connection(name="web-1", type="ssh"),
                client_addr="127.0.0.1:1",
                client="bench",
                session_key=self.key,
            ),
            metadata=self.metadata,
            timeout=600,
        )
        self.session_id = opened.session_id
        self.calls = DecideCalls(self.stub, self.metadata)
        return self

    async def run(self, n: int) -> None:
        for _ in range(n):
            self.n += 1
            request = self.pb.DecideRequest(
                session_id=self.session_id,
                session_key=self.key,
                command=self.pb.Command(kind="ssh.exec", raw=self.line.format(n=self.n)),
                timeout_ms=600_000,
            )
            answer = await self.calls.decide(request, timeout=600)
            if answer.decision.verdict != self.pb.ALLOW:
                raise RuntimeError(f"Decide answered {answer}")

    async def __aexit__(self, *exc: Any) -> None:
        await self.calls.close()
        await self.channel.close()


async def written(path: Path, timeout: float = 60) -> Path:
    for _ in range(int(timeout * 5)):
        if path.exists():
            await asyncio.sleep(0.5)  # (dump_stats writes it at once, but give it time)
            return path
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no profile {path}")


def per_operation(path: Path, ops: int, top: int) -> str:
    """The profiled phase's functions by cumulative CPU, each with its calls and its µs
    per operation; then the ones by own time."""
    stats = pstats.Stats(str(path))
    rows = stats.stats  # type: ignore[attr-defined]
    lines = [f"    profiled {stats.total_tt / ops * 1e6:,.0f} µs per operation"]  # type: ignore[attr-defined]
    for title, column in (("cumulative", 3), ("own time", 2)):
        lines.append(f"    by {title}:")
        ranked = sorted(rows.items(), key=lambda kv: kv[1][column], reverse=True)[:top]
        for (file, line, name), values in ranked:
            where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
            lines.append(
                f"      {values[column] / ops * 1e6:8,.0f} µs {values[1] / ops:8.2f} calls"
                f"  {name}  ({where})"
            )
    return "\n".join(lines)


async def run_phase(
    phase: str, args: argparse.Namespace, conn: Any, direct: DirectDecides | None
) -> None:
    if phase == "reused":
        await execs(conn, args.ops)
    elif phase == "decided":
        await execs(conn, args.ops, f"p{os.getpid()}-{time.monotonic_ns()}")
    elif phase in ("decide", "spaced"):
        assert direct is not None
        for _ in range(args.ops if phase == "spaced" else 1):
            await direct.run(1 if phase == "spaced" else args.ops)
            if phase == "spaced":
                await asyncio.sleep(args.idle_ms / 1000)
    else:
        await asyncio.sleep(args.ops * args.idle_ms / 1000)


async def cpu_phases(
    args: argparse.Namespace, pid: int, conn: Any, decides: tuple[str, str, str]
) -> None:
    """CPU time (schedstat) of the PDP and its workers per operation of each phase, the
    phases in turn over args.rounds rounds; medians. A Decide phase opens a session of its
    own first (one silent through the exec phases would be reaped), outside the count."""
    spent: dict[str, list[tuple[float, float]]] = {phase: [] for phase in args.phases}
    for r in range(args.rounds):
        for phase in args.phases if r % 2 == 0 else list(reversed(args.phases)):
            async with DirectDecides(*decides, args.line) as direct:
                if phase in ("decide", "spaced"):
                    await direct.run(3)
                main, workers = cpu_ns(pid)
                await run_phase(phase, args, conn, direct)
                main_after, workers_after = cpu_ns(pid)
                per = 1000 * args.ops
                spent[phase].append(((main_after - main) / per, (workers_after - workers) / per))
        print(f"round {r}: " + ", ".join(f"{p} {sum(v[-1]):,.0f}" for p, v in spent.items())
              + " µs per operation", flush=True)  # fmt: skip
    print("median µs of CPU per operation (the PDP's process + its evaluation workers):")
    for phase, values in spent.items():
        own = statistics.median(v[0] for v in values)
        theirs = statistics.median(v[1] for v in values)
        whole = statistics.median(sum(v) for v in values)
        print(f"  {phase:8} {whole:8,.0f}  ({own:,.0f} + {theirs:,.0f})")


async def measure_cpu(
    args: argparse.Namespace, tmp: Path, config: dict[str, Any], cli: list[str], token: str
) -> None:
    """--cpu: the PDP as it runs, measured by schedstat (cpu_phases)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pdp_log = tmp / "pdp.log"
        env = dict(os.environ)
        if args.tree:
            tree = tree_of(args.tree, tmp / "tree")
            env["PYTHONPATH"] = f"{tree}:{tree / 'proto'}"
        pdp = subprocess.Popen([*cli, "pdp"], cwd=tmp, env=env, stderr=pdp_log.open("w"))
        procs.append(pdp)
        address = config["pdp"]["listen"]
        wait_port(int(address.rsplit(":", 1)[1]), pdp, pdp_log)
        proxy_log = tmp / "proxy.log"
        path = tmp / "portcullis.yaml"
        proxy = subprocess.Popen(
            [sys.executable, "-m", "proxies", "ssh", "-c", str(path)],
            cwd=tmp, stderr=proxy_log.open("w"),
        )  # fmt: skip
        procs.append(proxy)
        listen = int(config["connections"][0]["listen"].rsplit(":", 1)[1])
        wait_port(listen, proxy, proxy_log)
        target = dict(host="127.0.0.1", port=listen, username="bench", password=token,
                      client_keys=None, preferred_auth="password", known_hosts=None,
                      agent_path=None, config=None, compression_algs=None)  # fmt: skip
        credential = (tmp / "var" / "proxy.credential").read_text().strip()
        async with asyncssh.connect(**target) as conn:
            await execs(conn, 5)
            await execs(conn, 5, "warm")
            await cpu_phases(args, pdp.pid, conn, (address, credential, token))
    finally:
        stop_all(procs)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    sshd = Sshd(tmp / "sshd").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = portcullis_config(tmp, policies(tmp), sshd)
        config["connections"][0]["pdp_timeout_seconds"] = 600
        config["pdp"]["engine"]["timeout_ms"] = 600_000
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        token = subprocess.run(
            [*cli, "token", "--sub", "bench@example.com", "--groups", "pii-readers",
             "--ttl", "2h"], capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        out = tmp / ("pdp" if args.profile else "callgrind.pdp")
        if args.cpu and not args.profile:
            await measure_cpu(args, tmp, config, cli, token)
            return
        pdp_log = tmp / "pdp.log"
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", GODEBUG="asyncpreemptoff=1")
        if args.tree:
            tree = tree_of(args.tree, tmp / "tree")
            env["PYTHONPATH"] = f"{tree}:{tree / 'proto'}"
        under = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out}", *cli]  # fmt: skip
        if args.profile:
            under = [sys.executable, str(PROFILED), str(out), *cli[3:]]
        pdp = subprocess.Popen([*under, "pdp"], cwd=tmp, env=env, stderr=pdp_log.open("w"))
        procs.append(pdp)
        address = config["pdp"]["listen"]
        wait_port(int(address.rsplit(":", 1)[1]), pdp, pdp_log, timeout=900)
        proxy_log = tmp / "proxy.log"
        proxy = subprocess.Popen(
            [sys.executable, "-m", "proxies", "ssh", "-c", str(path)],
            cwd=tmp, stderr=proxy_log.open("w"),
        )  # fmt: skip
        procs.append(proxy)
        listen = int(config["connections"][0]["listen"].rsplit(":", 1)[1])
        wait_port(listen, proxy, proxy_log, timeout=900)
        target = dict(host="127.0.0.1", port=listen, username="bench", password=token,
                      client_keys=None, preferred_auth="password", known_hosts=None,
                      agent_path=None, config=None, compression_algs=None,
                      login_timeout=900)  # fmt: skip
        credential = (tmp / "var" / "proxy.credential").read_text().strip()
        got: dict[str, float] = {}
        dumps: dict[str, Path] = {}
        async with contextlib.AsyncExitStack() as stack:
            conn = await stack.enter_async_context(asyncssh.connect(**target))
            await execs(conn, 5)
            await execs(conn, 5, "warm")
            if not args.profile:
                control(pdp.pid, "-i", "on")
            direct: DirectDecides | None = None
            for n, phase in enumerate(args.phases):
                if phase in ("decide", "spaced"):
                    # a session of its own, opened (and its standing worked out) now: one
                    # silent through the other phases (no proxy's heartbeats) is reaped
                    direct = DirectDecides(address, credential, token, args.line)
                    await stack.enter_async_context(direct)
                    await direct.run(5)
                if args.profile:
                    os.kill(pdp.pid, signal.SIGUSR1)
                else:
                    control(pdp.pid, "-z")
                await run_phase(phase, args, conn, direct)
                if args.profile:
                    os.kill(pdp.pid, signal.SIGUSR2)
                    print(f"-- {phase}, per operation:")
                    print(per_operation(await written(tmp / f"pdp.{n}.prof"), args.ops, 40))
                    continue
                before = set(tmp.glob(out.name + "*"))
                control(pdp.pid, "-d")
                dumps[phase] = await dumped(out, before)
                got[phase] = total(dumps[phase]) / args.ops
                print(f"{phase}: {got[phase]:,.0f} instructions per operation", flush=True)
            if not args.profile:
                control(pdp.pid, "-i", "off")
        if args.annotate:
            for phase, dump in dumps.items():
                print(f"-- {phase}: inclusive instructions per operation, top {args.annotate}")
                print(top_functions(dump, args.annotate, args.ops))
    finally:
        stop_all(procs)
        sshd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=60, help="operations per phase")
    parser.add_argument("--idle-ms", type=float, default=80.0, help="idle time per operation")
    parser.add_argument("--annotate", type=int, default=0, metavar="N")
    parser.add_argument("--profile", action="store_true", help="cProfile, not callgrind")
    parser.add_argument("--tree", default="", help="the PDP of this commit")
    parser.add_argument("--cpu", action="store_true", help="CPU time (schedstat), not callgrind")
    parser.add_argument("--rounds", type=int, default=3, help="--cpu: rounds of the phases")
    parser.add_argument("--line", default="echo decide-{n}", help="decide: the line, {n} new")
    parser.add_argument(
        "--phases", type=lambda s: s.split(","), default=list(PHASES), help=",".join(PHASES)
    )
    args = parser.parse_args()
    if args.cpu and args.phases == list(PHASES):
        args.phases = list(CPU_PHASES)
    run_in_tmp("portcullis-cg-pdp-", run, args)


if __name__ == "__main__":
    main()
