"""SSH through Portcullis beside sshd directly, in one run: sequential execs and a stream.

Starts, as their own processes: sshd from Debian (tests/ssh_harness.py: a free port, its
own host key, public-key login with the key Portcullis holds), the PDP (`portcullis pdp`,
embedded OPA, SQLite audit store) and the SSH proxy (`python -m proxies ssh`). The policy
is the shipped library with bench-only lines in its data: `cat <the bench's file>` and
`echo` are allowed commands, so the stream is a command the policy allows as any other. The
token's group is pii-readers: everything allowed, nothing masked (deciding and relaying
alone).

Then, in `--rounds` rounds, over one connection to sshd and one through Portcullis, both
open at once: `--execs` execs of `uptime` on each (through Portcullis the policy lets its
answer be reused after the first), then as many of `echo <n>` with a new n each time
(every one decided by the PDP), interleaved one by one — a pair of one direct exec and one
through Portcullis, the order within a pair alternating (ABBA), so a load that moves the
exec time itself (80-130 ms on a shared VM) weighs on both sides of a pair alike — and
one `cat` of a `--megabytes` file of random bytes read to the end on each (MB/s; which
side first rotates with the round); then `--connects` fresh connections running one exec
each (login and set-up included). Exec figures: the median single exec of each side, and
the median of the paired differences (through Portcullis minus direct, within a pair;
each ABBA turn of two pairs gives the mean of its two, so what going second does to an
exec cancels out), the figure the targets are judged by. Beside them, the CPU the proxy
and the PDP spent per exec through Portcullis and per MB streamed (bench/cpu_meter.py:
steadier than wall time on a shared machine; the PDP's time-based work spreads over the
direct execs of the phase too), and the PDP's own Decide p50 for the same `uptime` exec,
and for a new line each time (back to back, and one per exec's length: the PDP idle
between, as a decided exec finds it), measured from this process over a DecideStream, as
the proxy calls it. With `--sftp`, also an SFTP get of the same file (asyncssh's client, a
dba token: SFTP is reserved to it). Prints the medians, the issue's targets — exec
through Portcullis ≤ direct + 1.5 x Decide p50; stream ≥ 0.5 x direct — and one JSON
line. A decided exec's target is printed against both Decide p50s of a new line, back to
back (the headline and the JSON's decided_exec_added_target_ms: the stricter) and spaced
at the execs' pace (decided_exec_added_target_spaced_ms: the Decide an exec waits for),
with the overhead as a multiple of each. With `--relay`, also `uptime` paired alike with
sshd reached through a bare uvloop TCP relay (bench/postgres/relay.py: bytes in, bytes
out, no SSH of its own): what one more process on an exec's way costs on this machine at
this load, the floor under any proxy's exec overhead. Not a test: nothing here asserts.

    python bench/ssh/bench_ssh.py [--execs 200] [--megabytes 100] [--rounds 3] [--connects 10]
                                  [--sftp] [--relay]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from pdp_harness import free_port  # noqa: E402
from ssh_harness import Sshd  # noqa: E402

# only now: a bench/pdp directory on the path must not stand for the pdp package
sys.path.append(str(REPO / "bench"))
from cpu_meter import CPUMeter  # noqa: E402
from processes import stop_all  # noqa: E402

COMMAND = "uptime"
RELAY = REPO / "bench" / "postgres" / "relay.py"  # a bare uvloop TCP relay, no SSH of its own


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} ended:\n{log.read_text()[-2000:]}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def bench_policies(tmp: Path, big: Path) -> Path:
    policies = tmp / "rego"
    shutil.copytree(REPO / "rego", policies)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["ssh"]["allowed_commands"].extend([f"cat {big}", "echo"])
    (policies / "data.json").write_text(json.dumps(data))
    return policies


def portcullis_config(tmp: Path, policies: Path, sshd: Sshd) -> dict[str, Any]:
    return {
        "pdp": {
            "listen": f"127.0.0.1:{free_port()}",
            # deadlines with room: on a loaded shared machine a late evaluation is a deny
            # (fail closed), which would end the run, not slow it
            "engine": {
                "type": "embedded",
                "policies": str(policies),
                "reload": False,
                "timeout_ms": 3000,
            },
            "store": {"type": "sqlite", "path": str(tmp / "audit.db")},
            "signing_key": str(tmp / "signing.key"),
        },
        "identity": {"dev": True, "dev_key": str(tmp / "dev.key")},
        "connections": [
            {
                "name": "web-1",
                "type": "ssh",
                "listen": f"127.0.0.1:{free_port()}",
                "upstream": f"127.0.0.1:{sshd.port}",
                "spool_dir": str(tmp / "spool"),
                "host_key_dir": str(tmp / "keys"),
                "pdp_timeout_seconds": 10,
                "credentials": {
                    "provider": "static",
                    "username": sshd.user,
                    "private_key_file": str(sshd.user_key),
                },
            }
        ],
    }


async def execs(
    conn: asyncssh.SSHClientConnection, n: int, distinct: str = "", **options: Any
) -> float:
    """Seconds per exec, n back to back on one connection: `uptime` each time (through
    Portcullis its answer is reused after the first: the policy's exact cache hint), or
    with `distinct` a new line each time (`echo <distinct>-<i>`: every one decided).
    options: conn.run's (term_type: with a terminal)."""
    started = time.perf_counter()
    for i in range(n):
        result = await conn.run(f"echo {distinct}-{i}" if distinct else COMMAND, **options)
        if result.exit_status != 0:
            raise RuntimeError(f"{COMMAND} exited {result.exit_status}: {result.stderr!r}")
    return (time.perf_counter() - started) / n


async def exec_once(conn: asyncssh.SSHClientConnection, line: str) -> float:
    """Milliseconds of one exec, from the request to the exit status."""
    started = time.perf_counter()
    result = await conn.run(line)
    if result.exit_status != 0:
        raise RuntimeError(f"{line} exited {result.exit_status}: {result.stderr!r}")
    return (time.perf_counter() - started) * 1000


async def paired_execs(
    direct: asyncssh.SSHClientConnection,
    through: asyncssh.SSHClientConnection,
    n: int,
    distinct: str = "",
) -> tuple[list[float], list[float]]:
    """n pairs of one exec on each connection, the order within a pair alternating (A B,
    B A, ...): each side's single exec times (ms), in pair order. `uptime` each time, or
    with `distinct` a new line for each pair (`echo <distinct>-<i>`, the same on both
    sides: decided by the PDP every time through Portcullis)."""
    sides: tuple[list[float], list[float]] = ([], [])
    for i in range(n):
        line = f"echo {distinct}-{i}" if distinct else COMMAND
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for side in order:
            sides[side].append(await exec_once((direct, through)[side], line))
    return sides


async def first_execs(target: dict[str, Any], n: int) -> float:
    """Seconds per fresh connection that runs one exec (`ssh host uptime`): login, and
    through Portcullis the session's opening and its upstream connection."""
    started = time.perf_counter()
    for _ in range(n):
        async with asyncssh.connect(**target) as conn:
            result = await conn.run(COMMAND)
            if result.exit_status != 0:
                raise RuntimeError(f"{COMMAND} exited {result.exit_status}: {result.stderr!r}")
    return (time.perf_counter() - started) / n


async def sftp_get(target: dict[str, Any], big: Path, size: int, into: Path) -> float:
    """MB/s of one SFTP get of the file (asyncssh's client, its parallel reads)."""
    async with asyncssh.connect(**target) as conn, conn.start_sftp_client() as sftp:
        started = time.perf_counter()
        await sftp.get(str(big), str(into))
        seconds = time.perf_counter() - started
    if into.stat().st_size != size:
        raise RuntimeError(f"got {into.stat().st_size} bytes of {size}")
    into.unlink()
    return size / seconds / 1e6


async def stream(conn: asyncssh.SSHClientConnection, big: Path, size: int) -> float:
    """MB/s of one `cat` of the file, read to the end."""
    started = time.perf_counter()
    process = await conn.create_process(f"cat {big}", encoding=None)
    got = 0
    while chunk := await process.stdout.read(1 << 20):
        got += len(chunk)
    await process.wait()
    if got != size:
        raise RuntimeError(f"read {got} bytes of {size}")
    return size / (time.perf_counter() - started) / 1e6


async def decide_p50(
    address: str,
    credential: str,
    token: str,
    seconds: float,
    distinct: bool = False,
    *,
    pdp_pid: int,
    spacing: float = 0.0,
) -> tuple[float, float]:
    """The PDP's Decide p50 (ms) for the bench's exec on a web-1 session, one caller: the
    same `uptime` each time (the PDP reuses its evaluation), or with `distinct` a new
    `echo <n>` each time (every one evaluated); and the CPU (µs) the PDP (`pdp_pid`, its
    evaluation workers included) spent per such Decide — beside its CPU per exec through
    the proxy, what an exec costs the PDP beyond its Decide. Back to back, or `spacing`
    seconds apart: the PDP idle between, as a decided exec finds it (its CPU then with
    the idle time's work)."""
    import grpc

    from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
    from portcullis.wire import CREDENTIAL_METADATA
    from proxies.runtime.decide_calls import DecideCalls

    metadata = ((CREDENTIAL_METADATA, credential),)
    key = secrets.token_urlsafe(32)  # the session's key, as a proxy makes one
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        opened = await stub.OpenSession(
            pdp_pb2.OpenSessionRequest(
                token=token,
                connection=pdp_pb2.Connection(name="web-1", type="ssh"),
                client_addr="127.0.0.1:1",
                client="bench",
                session_key=key,
            ),
            metadata=metadata,
        )

        def request(n: int) -> Any:
            raw = f"echo decide-{'spaced-' if spacing else ''}{n}" if distinct else COMMAND
            return pdp_pb2.DecideRequest(
                session_id=opened.session_id,
                session_key=key,
                command=pdp_pb2.Command(kind="ssh.exec", raw=raw),
                timeout_ms=5000,
            )

        calls = DecideCalls(stub, metadata)
        for n in range(200):
            await calls.decide(request(n), timeout=5)
        samples = []
        stop_at = time.perf_counter() + seconds
        n = 200
        meter = CPUMeter({"pdp": pdp_pid})
        while time.perf_counter() < stop_at:
            n += 1
            started = time.perf_counter()
            await calls.decide(request(n), timeout=5)
            samples.append((time.perf_counter() - started) * 1000)
            if spacing:
                await asyncio.sleep(spacing)
        pdp_us = meter.per(len(samples))["pdp_us"]
        await calls.close()
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(
                session_id=opened.session_id, session_key=key, reason="client_disconnect"
            ),
            metadata=metadata,
        )
    return statistics.median(samples), pdp_us


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sshd = Sshd(tmp / "sshd").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        size = args.megabytes * 1_000_000
        big = tmp / "big.bin"
        with big.open("wb") as f:
            for _ in range(args.megabytes):
                f.write(os.urandom(1_000_000))
        config = portcullis_config(tmp, bench_policies(tmp, big), sshd)
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        token = subprocess.run(
            [*cli, "token", "--sub", "bench@example.com", "--groups", "pii-readers",
             "--ttl", "2h"], capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dba_token = subprocess.run(
            [*cli, "token", "--sub", "bench@example.com", "--groups", "dba", "--ttl", "2h"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        pdp_log = tmp / "pdp.log"
        pdp = subprocess.Popen([*cli, "pdp"], cwd=tmp, stderr=pdp_log.open("w"))
        procs.append(pdp)
        wait_port(int(config["pdp"]["listen"].rsplit(":", 1)[1]), pdp, pdp_log)
        proxy_log = tmp / "proxy.log"
        proxy = subprocess.Popen(
            [sys.executable, "-m", "proxies", "ssh", "-c", str(path)],
            cwd=tmp, stderr=proxy_log.open("w"),
        )  # fmt: skip
        procs.append(proxy)
        listen = int(config["connections"][0]["listen"].rsplit(":", 1)[1])
        wait_port(listen, proxy, proxy_log)
        common: dict[str, Any] = {"known_hosts": None, "agent_path": None, "config": None,
                                  "compression_algs": None}  # fmt: skip
        relay_port = 0
        if args.relay:
            relay_port = free_port()
            relay_log = tmp / "relay.log"
            relay = subprocess.Popen(
                [sys.executable, str(RELAY), str(relay_port), str(sshd.port)],
                cwd=tmp, stderr=relay_log.open("w"),
            )  # fmt: skip
            procs.append(relay)
            wait_port(relay_port, relay, relay_log)
        targets = {
            "direct": dict(host="127.0.0.1", port=sshd.port, username=sshd.user,
                           client_keys=[str(sshd.user_key)], **common),
            "portcullis": dict(host="127.0.0.1", port=listen, username="bench", password=token,
                               client_keys=None, preferred_auth="password", **common),
        }  # fmt: skip
        rounds: dict[str, dict[str, list[float]]] = {
            name: {
                "exec_ms": [],
                "decided_exec_ms": [],
                "stream_mbps": [],
                "first_exec_ms": [],
                "sftp_mbps": [],
            }
            for name in targets
        }
        paired: dict[str, list[float]] = {"exec_ms": [], "decided_exec_ms": [],
                                          "relay_exec_ms": []}  # fmt: skip
        order_effect: dict[str, list[float]] = {"exec_ms": [], "decided_exec_ms": []}
        sftp_targets = {**targets, "portcullis": {**targets["portcullis"], "password": dba_token}}
        # CPU of the proxy and of the PDP per exec and per MB streamed (through Portcullis):
        # what the proxy adds, much less noisy than wall time on a shared machine
        cpu: dict[str, list[float]] = {}
        watched = {"proxy": proxy.pid, "pdp": pdp.pid}
        decides: list[float] = []
        evaluated: list[float] = []
        spaced: list[float] = []
        order = list(targets)
        for r in range(args.rounds):
            async with (
                asyncssh.connect(**targets["direct"]) as direct_conn,
                asyncssh.connect(**targets["portcullis"]) as through_conn,
            ):
                conns = {"direct": direct_conn, "portcullis": through_conn}
                for conn in conns.values():
                    await execs(conn, 5)  # warm-up
                cpu_of: dict[str, dict[str, float]] = {}
                for key, distinct in (("exec_ms", ""), ("decided_exec_ms", f"r{r}")):
                    meter = CPUMeter(watched)
                    times = await paired_execs(direct_conn, through_conn, args.execs, distinct)
                    cpu_of[key] = meter.per(args.execs)
                    for name, got in zip(order, times, strict=True):
                        rounds[name][key] += got
                    diffs = [b - a for a, b in zip(*times, strict=True)]
                    # a turn of two pairs (A B, then B A): the mean of its two differences,
                    # in which what going second does to an exec cancels out
                    turns = zip(diffs[::2], diffs[1::2], strict=False)
                    paired[key] += [(x + y) / 2 for x, y in turns]
                    # what going second does (direct first minus proxied first): JSON only
                    order_effect[key].append(
                        statistics.median(diffs[::2]) - statistics.median(diffs[1::2])
                    )
                if relay_port:
                    # the same `uptime` paired with sshd reached through a bare TCP relay
                    async with asyncssh.connect(**{**targets["direct"], "port": relay_port}) as up:
                        await execs(up, 5)
                        times = await paired_execs(direct_conn, up, args.execs)
                    diffs = [b - a for a, b in zip(*times, strict=True)]
                    turns = zip(diffs[::2], diffs[1::2], strict=False)
                    paired["relay_exec_ms"] += [(x + y) / 2 for x, y in turns]
                for name in order if r % 2 == 0 else reversed(order):
                    meter = CPUMeter(watched)
                    rounds[name]["stream_mbps"].append(await stream(conns[name], big, size))
                    if name == "portcullis":
                        stream_cpu = meter.per(args.megabytes)
                for key in ("proxy_us", "pdp_us"):
                    cpu.setdefault(f"exec_{key}", []).append(cpu_of["exec_ms"][key])
                    cpu.setdefault(f"decided_exec_{key}", []).append(cpu_of["decided_exec_ms"][key])
                    cpu.setdefault(f"stream_{key}_per_mb", []).append(stream_cpu[key])
            for name in order if r % 2 == 0 else reversed(order):
                if args.connects:
                    first = await first_execs(targets[name], args.connects) * 1000
                    rounds[name]["first_exec_ms"].append(first)
                if args.sftp:
                    mbps = await sftp_get(sftp_targets[name], big, size, tmp / "got.bin")
                    rounds[name]["sftp_mbps"].append(mbps)
            credential = (tmp / "var" / "proxy.credential").read_text().strip()
            p50, pdp_us = await decide_p50(
                config["pdp"]["listen"], credential, token, 3.0, pdp_pid=pdp.pid
            )
            decides.append(p50)
            cpu.setdefault("decide_pdp_us", []).append(pdp_us)
            p50, pdp_us = await decide_p50(
                config["pdp"]["listen"], credential, token, 3.0, distinct=True, pdp_pid=pdp.pid
            )
            evaluated.append(p50)
            cpu.setdefault("evaluated_decide_pdp_us", []).append(pdp_us)
            exec_length = statistics.median(rounds["direct"]["decided_exec_ms"]) / 1000
            p50, pdp_us = await decide_p50(
                config["pdp"]["listen"], credential, token, 3.0, distinct=True,
                pdp_pid=pdp.pid, spacing=exec_length,
            )  # fmt: skip
            spaced.append(p50)
            cpu.setdefault("spaced_decide_pdp_us", []).append(pdp_us)
    finally:
        stop_all(procs)
        sshd.stop()
    # exec_ms, decided_exec_ms: the median single exec over every round's pairs
    med = {n: {k: statistics.median(v) for k, v in m.items() if v} for n, m in rounds.items()}
    decide = statistics.median(decides)
    decide_evaluated = statistics.median(evaluated)
    decide_spaced = statistics.median(spaced)
    direct, through = med["direct"], med["portcullis"]
    return {
        "execs": args.execs,
        "megabytes": args.megabytes,
        "rounds": args.rounds,
        "direct": direct,
        "portcullis": through,
        "decide_p50_ms": decide,
        "evaluated_decide_p50_ms": decide_evaluated,
        "spaced_decide_p50_ms": decide_spaced,
        "exec_added_ms": through["exec_ms"] - direct["exec_ms"],
        "exec_paired_added_ms": statistics.median(paired["exec_ms"]),
        "exec_ratio": through["exec_ms"] / direct["exec_ms"],
        "exec_target_ms": direct["exec_ms"] + 1.5 * decide,
        "exec_added_target_ms": 1.5 * decide,
        "decided_exec_added_ms": through["decided_exec_ms"] - direct["decided_exec_ms"],
        "decided_exec_paired_added_ms": statistics.median(paired["decided_exec_ms"]),
        "decided_exec_target_ms": direct["decided_exec_ms"] + 1.5 * decide_evaluated,
        "decided_exec_added_target_ms": 1.5 * decide_evaluated,
        # the same target against the Decide asked at the execs' pace (the PDP idle an
        # exec's length before each, as a decided exec finds it)
        "decided_exec_added_target_spaced_ms": 1.5 * decide_spaced,
        "turns": len(paired["exec_ms"]),
        # a bare TCP relay in front of sshd, paired alike (--relay): one more process on the
        # way, no SSH of its own
        "relay_exec_paired_added_ms": (
            statistics.median(paired["relay_exec_ms"]) if paired["relay_exec_ms"] else None
        ),
        "order_effect_ms": {k: statistics.median(v) for k, v in order_effect.items()},
        "stream_ratio": through["stream_mbps"] / direct["stream_mbps"],
        "sftp_ratio": through.get("sftp_mbps", 0) / direct.get("sftp_mbps", 1),
        "first_exec_added_ms": through.get("first_exec_ms", 0) - direct.get("first_exec_ms", 0),
        "cpu": {k: statistics.median(v) for k, v in cpu.items()},
    }


def target_lines(out: dict[str, Any]) -> str:
    """Issue 26's target for a decided exec, judged against both Decide p50s, and which
    one the headline (`paired ... met/MISSED` above, the JSON's decided_exec_added_target_ms)
    uses. The issue asks for an exec overhead <= 1.5 x "the PDP's Decide p50" and does not
    say at what pace: asked back to back the PDP stays busy and each Decide is about
    twice as fast as one asked once per exec (the PDP and gRPC's threads idle between);
    the latter is the Decide a decided exec waits for, the former the stricter figure."""
    paired = out["decided_exec_paired_added_ms"]
    lines = ["  target (issue 26: a decided exec's overhead <= 1.5 x the PDP's Decide p50), "
             "with the PDP's Decide p50 for a new line measured two ways:"]  # fmt: skip
    for label, p50 in (
        ("back to back (the issue's target as judged above)", out["evaluated_decide_p50_ms"]),
        ("spaced at the exec pace (the Decide an exec meets)", out["spaced_decide_p50_ms"]),
    ):
        target = 1.5 * p50
        lines.append(
            f"    Decide p50 {label}: {p50:.2f} ms -> target <= +{target:.2f} ms; paired "
            f"{paired:+.2f} ms = {paired / p50:.2f} x Decide p50: "
            f"{'met' if paired <= target else 'MISSED'}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--execs", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connects", type=int, default=10, help="fresh connections, one exec each")
    parser.add_argument("--sftp", action="store_true", help="also an SFTP get of the file")
    parser.add_argument(
        "--relay", action="store_true",
        help="also `uptime` paired with sshd through a bare TCP relay (the floor of a hop)",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as tmp:
        out = asyncio.run(measure(args, Path(tmp)))
    d, p = out["direct"], out["portcullis"]
    turns = out["turns"]
    paired, target = out["exec_paired_added_ms"], out["exec_added_target_ms"]
    print(f"execs ({out['execs']} sequential `{COMMAND}` per round, one connection, its answer "
          f"reused after the first; each interleaved with a direct one (ABBA), "
          f"{out['rounds']} rounds; medians of single execs):")  # fmt: skip
    print(f"  direct      {d['exec_ms']:8.2f} ms/exec")
    print(f"  portcullis  {p['exec_ms']:8.2f} ms/exec  ({out['exec_added_ms']:+.2f} ms, "
          f"{out['exec_ratio']:.2f}x)")  # fmt: skip
    print(f"  paired      {paired:+8.2f} ms/exec  (median over {turns} ABBA turns of the "
          "differences within a pair)")  # fmt: skip
    print(f"  PDP Decide p50 {out['decide_p50_ms']:.2f} ms; target: portcullis <= direct + "
          f"1.5 x Decide p50 = {out['exec_target_ms']:.2f} ms, i.e. added <= {target:.2f} ms; "
          f"paired {paired:+.2f} ms: {'met' if paired <= target else 'MISSED'}")  # fmt: skip
    paired = out["decided_exec_paired_added_ms"]
    print(
        f"execs of a new line each ({out['execs']} sequential `echo <n>` per round: every one "
        f"decided, interleaved alike; the PDP's Decide p50 for such lines "
        f"{out['evaluated_decide_p50_ms']:.2f} ms back to back, "
        f"{out['spaced_decide_p50_ms']:.2f} ms one per exec's length, the PDP idle between, "
        "as an exec finds it):"
    )
    print(f"  direct      {d['decided_exec_ms']:8.2f} ms/exec")
    print(
        f"  portcullis  {p['decided_exec_ms']:8.2f} ms/exec  "
          f"({out['decided_exec_added_ms']:+.2f} ms; target, Decide p50 back to back: <= "
          f"{out['decided_exec_target_ms']:.2f} ms)"
    )  # fmt: skip
    print(f"  paired      {paired:+8.2f} ms/exec  (median over {turns} ABBA turns of the "
          "differences within a pair)")  # fmt: skip
    print(target_lines(out))
    if out["relay_exec_paired_added_ms"] is not None:
        relay = out["relay_exec_paired_added_ms"]
        print(f"  sshd through a bare TCP relay (one more process on the way, no SSH of its "
              f"own; paired alike, `uptime`): {relay:+.2f} ms/exec")  # fmt: skip
    print(f"stream (`cat` of {out['megabytes']} MB):")
    print(f"  direct      {d['stream_mbps']:8.1f} MB/s")
    print(f"  portcullis  {p['stream_mbps']:8.1f} MB/s  ({out['stream_ratio']:.2f}x direct; "
          f"target >= 0.5x: {'met' if out['stream_ratio'] >= 0.5 else 'MISSED'})")  # fmt: skip
    if d.get("first_exec_ms"):
        print(f"a fresh connection and one exec: direct {d['first_exec_ms']:.1f} ms, portcullis "
              f"{p['first_exec_ms']:.1f} ms (+{out['first_exec_added_ms']:.1f} ms)")  # fmt: skip
    if d.get("sftp_mbps"):
        print(f"sftp get: direct {d['sftp_mbps']:.1f} MB/s, portcullis {p['sftp_mbps']:.1f} MB/s "
              f"({out['sftp_ratio']:.2f}x direct)")  # fmt: skip
    c = out["cpu"]
    print(f"CPU through Portcullis: proxy {c['exec_proxy_us']:.0f} µs + PDP "
          f"{c['exec_pdp_us']:.0f} µs per repeated exec, proxy {c['decided_exec_proxy_us']:.0f} "
          f"µs + PDP {c['decided_exec_pdp_us']:.0f} µs per decided exec; "
          f"proxy {c['stream_proxy_us_per_mb']:.0f} µs "
          "per MB streamed")  # fmt: skip
    print(f"CPU of the PDP per Decide called directly (its p50 above): "
          f"{c['decide_pdp_us']:.0f} µs per repeated line, {c['evaluated_decide_pdp_us']:.0f} "
          f"µs per new line (evaluated), {c['spaced_decide_pdp_us']:.0f} µs per new line one "
          "per exec's length (with the idle time's work)")  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
