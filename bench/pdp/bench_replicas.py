"""Decisions/s of one PDP and of two PDP replicas on one port and one PostgreSQL store.

Starts `portcullis pdp` (embedded OPA workers, the PostgreSQL audit store in a database
made for the run on the machine's server, `pdp.reuse_port: true`) and drives it from
client processes playing proxies: each holds its own gRPC connections (one per channel,
no shared subchannel), opens a session on each and calls Decide over DecideStream (what
proxies use) from closed-loop callers. Phase 1: one replica. Phase 2, in the same run: a
second replica started on the same port; fresh client connections are spread between the
two by the kernel (SO_REUSEPORT), and how many each replica holds is printed. The two
phases alternate for --rounds rounds (the second replica stopped between them). Every
decision is recorded in the ONE hash chain both replicas extend (the advisory lock of
pdp/store/postgres.py); the chain is verified at the end. Prints decisions/s of each phase
and the ratio 2-replica/1-replica, with the machine's cores and load (on a shared machine
the ratio says what is left for a second replica, not what a second host would add).
Not a test: nothing here asserts.

    python bench/pdp/bench_replicas.py [--seconds 6] [--rounds 3] [--clients 2]
                                       [--connections 4] [--callers 8] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from pdp_harness import free_port  # noqa: E402

ADMIN_DSN = os.environ.get("PORTCULLIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SQL = "SELECT id, email, total FROM orders WHERE customer_id = 42"
LISTEN, ESTABLISHED = "0A", "01"


# -- a client process: a proxy's worth of connections ---------------------------------


async def drive(
    address: str, token: str, credential: str, seconds: float, connections: int, callers: int
) -> dict[str, float]:
    import grpc

    from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
    from portcullis.wire import CREDENTIAL_METADATA
    from proxies.runtime.decide_calls import CallFailed, DecideCalls

    metadata = ((CREDENTIAL_METADATA, credential),)
    # its own subchannel pool: each channel is a TCP connection of its own, so the kernel
    # places each on a replica independently
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(address, options) for _ in range(connections)]
    done = errors = 0
    reasons: dict[str, int] = {}
    try:
        lanes = []
        for channel in channels:
            stub = pdp_pb2_grpc.DecisionServiceStub(channel)
            key = secrets.token_urlsafe(32)  # the session's, as a proxy makes one
            opened = await stub.OpenSession(
                pdp_pb2.OpenSessionRequest(
                    token=token,
                    connection=pdp_pb2.Connection(name="orders-db", type="postgres"),
                    client_addr="127.0.0.1:1",
                    client="bench_replicas",
                    session_key=key,
                ),
                metadata=metadata,
                timeout=10,
            )
            request = pdp_pb2.DecideRequest(
                session_id=opened.session_id,
                session_key=key,
                command=pdp_pb2.Command(kind="postgres.query", raw=SQL),
            )
            lanes.append((DecideCalls(stub, metadata), request))
        stop_at = time.perf_counter() + seconds

        async def caller(calls: DecideCalls, request: pdp_pb2.DecideRequest) -> None:
            nonlocal done, errors
            while time.perf_counter() < stop_at:
                try:
                    answer = await calls.decide(request, timeout=5)
                except CallFailed as exc:
                    errors += 1
                    why = f"{exc.code.name}: {exc.details}"[:120]
                    reasons[why] = reasons.get(why, 0) + 1
                    continue
                if answer.decision.verdict == pdp_pb2.DENY:
                    errors += 1  # denied: the decision log refused, or the policy
                    why = "deny: " + "; ".join(answer.decision.reasons)[:120]
                    reasons[why] = reasons.get(why, 0) + 1
                else:
                    done += 1

        started = time.perf_counter()
        await asyncio.gather(
            *(caller(calls, request) for calls, request in lanes for _ in range(callers))
        )
        elapsed = time.perf_counter() - started
        for calls, _ in lanes:
            await calls.close()
    finally:
        for channel in channels:
            await channel.close()
    return {"decisions": done, "errors": errors, "seconds": elapsed, "reasons": reasons}


def client_main(args: argparse.Namespace) -> None:
    result = asyncio.run(
        drive(
            args.address,
            os.environ["BENCH_TOKEN"],
            os.environ["BENCH_CREDENTIAL"],
            args.seconds,
            args.connections,
            args.callers,
        )
    )
    print(json.dumps(result))


# -- the run --------------------------------------------------------------------------


def tcp_sockets(pid: int) -> list[tuple[int, str]]:
    """(local port, state) of every TCP socket process pid holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((int(fields[1].rsplit(":", 1)[1], 16), fields[3]))
    return found


def start_replica(cli: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen([*cli, "pdp"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while (port, LISTEN) not in tcp_sockets(process.pid):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("a PDP replica did not start")
        time.sleep(0.1)
    return process


def phase(
    args: argparse.Namespace, address: str, env: dict[str, str], replicas: list[subprocess.Popen]
) -> dict[str, object]:
    """Run the client processes once; decisions/s summed, and the connections per replica."""
    port = int(address.rsplit(":", 1)[1])
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                address,
                "--seconds",
                str(args.seconds),
                "--connections",
                str(args.connections),
                "--callers",
                str(args.callers),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(args.clients)
    ]
    # who holds how many of the clients' connections: the most seen while they run
    held = [0] * len(replicas)
    while any(c.poll() is None for c in clients):
        for i, replica in enumerate(replicas):
            held[i] = max(held[i], tcp_sockets(replica.pid).count((port, ESTABLISHED)))
        time.sleep(0.25)
    results = []
    for client in clients:
        out, _ = client.communicate(timeout=args.seconds + 120)
        if client.returncode != 0:
            raise SystemExit("a client process failed")
        results.append(json.loads(out.strip().splitlines()[-1]))
    rate = sum(r["decisions"] / r["seconds"] for r in results)
    for r in results:
        for why, n in r["reasons"].items():
            print(f"    {n} x {why}", file=sys.stderr)
    return {"rate": rate, "errors": sum(r["errors"] for r in results), "held": held}


async def verify_chain(dsn: str) -> tuple[bool, int, str]:
    from pdp.store import open_store
    from portcullis.config import StoreSettings

    store = open_store(StoreSettings(type="postgres", dsn=dsn), timeout=60)
    await store.start()
    try:
        report = await store.verify()
    finally:
        await store.close()
    return report.ok, report.records, report.problem


def committed_policies(tmp: str) -> str:
    """The policy library as committed (rego/ at HEAD), not a working tree being edited;
    the working tree's when this is no git checkout."""
    out = Path(tmp) / "policies"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "HEAD", "rego"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        return str(REPO / "rego")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return str(out / "rego")


def run(args: argparse.Namespace, tmp: str, dsn: str) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = {
        "pdp": {
            "listen": address,
            "reuse_port": True,
            "engine": {
                "type": "embedded",
                "policies": committed_policies(tmp),
                "workers": args.workers,
                "reload": False,
            },
            "store": {"type": "postgres", "dsn": dsn},
            "signing_key": f"{tmp}/signing.key",
            "proxy_key": f"{tmp}/proxy.key",
            "proxy_credential_file": f"{tmp}/proxy.credential",
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
    first = start_replica(cli, port)
    ones: list[dict[str, object]] = []
    twos: list[dict[str, object]] = []
    try:
        credential = (Path(tmp) / "proxy.credential").read_text().strip()
        env = {**os.environ, "BENCH_TOKEN": token, "BENCH_CREDENTIAL": credential}
        # 1 and 2 replicas alternate, so a drift of the shared machine's speed shows as
        # spread instead of favouring one of them
        for _ in range(args.rounds):
            ones.append(phase(args, address, env, [first]))
            second = start_replica(cli, port)
            try:
                twos.append(phase(args, address, env, [first, second]))
            finally:
                second.terminate()
                second.wait(timeout=60)
    finally:
        first.terminate()
        first.wait(timeout=60)
    ok, records, problem = asyncio.run(verify_chain(dsn))
    load = os.getloadavg()
    print(
        f"PDP replicas on one PostgreSQL store ({os.cpu_count()} cores, load"
        f" {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {args.seconds:g}s per phase,"
        f" {args.rounds} rounds;"
        f" {args.clients} client processes x {args.connections} connections x"
        f" {args.callers} callers over DecideStream; {args.workers} OPA worker(s) per replica;"
        " readonly SELECT -> mask, every decision recorded)"
    )
    for n, phases in ((1, ones), (2, twos)):
        rates = [float(p["rate"]) for p in phases]  # type: ignore[arg-type]
        print(
            f"  {n} replica{'s' if n > 1 else ' '}  median {statistics.median(rates):7.0f}"
            f" decisions/s   runs {' '.join(f'{r:.0f}' for r in rates)}"
            f"   errors {sum(int(p['errors']) for p in phases)}"  # type: ignore[call-overload]
            f"   connections held {' '.join(str(p['held']) for p in phases)}"
        )
    one = statistics.median(float(p["rate"]) for p in ones)  # type: ignore[arg-type]
    two = statistics.median(float(p["rate"]) for p in twos)  # type: ignore[arg-type]
    ratios = [float(b["rate"]) / float(a["rate"]) for a, b in zip(ones, twos, strict=True)]  # type: ignore[arg-type]
    print(
        f"  ratio 2-replica/1-replica   {two / one:5.2f}x (medians)"
        f"   per round {' '.join(f'{r:.2f}' for r in ratios)}"
    )
    verdict = "verifies" if ok else f"BROKEN: {problem}"
    print(f"  the one chain both replicas wrote: {records} records, {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="1- then 2-replica phases")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--connections", type=int, default=4, help="per client process")
    parser.add_argument("--callers", type=int, default=8, help="per connection")
    parser.add_argument("--workers", type=int, default=1, help="OPA workers per replica")
    parser.add_argument("--client", metavar="ADDRESS", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        args.address = args.client
        client_main(args)
        return
    name = f"portcullis_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, tmp, ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
