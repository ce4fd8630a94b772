"""pgbench -S through Portcullis, beside a direct connection and pgbouncer, in one run.

Starts, as their own processes: pgbouncer (session pooling; the Debian package), a bare
uvloop TCP relay (bench/postgres/relay.py: the floor of any Python proxy here), the PDP
(`portcullis pdp`, embedded OPA, SQLite decision log) and the Postgres proxy
(`portcullis proxy postgres`) with two listeners — decision cache off and on. Then runs
`pgbench -S` (select-only) in simple and `-M prepared` mode against each and prints TPS,
average latency and the ratios Portcullis/direct, /pgbouncer and /relay, with each run's
CPU per transaction (proxy, PDP, whole machine) and the share the hypervisor stole; the
recording's cost (recording on vs off, also as the median of on/off pairs whose order
flips every other pair, in TPS and in CPU per statement); the target's ratio, cache on
against pgbouncer, measured the same way; the added per-statement latency at p50 from a
one-client run (also against a second PDP whose decision log commits without fsync,
`pdp.store.synchronous: normal`); and the proxy's memory per idle session with 500
sessions open (against a throwaway cluster allowing that many connections). Not a test:
nothing here asserts.

    python bench/postgres/bench_pgbench.py [--seconds 20] [--clients 8] [--scale 10]
        [--pairs 7] [--pair-seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from pdp_harness import free_port  # noqa: E402
from pg_cluster import throwaway_cluster  # noqa: E402

# only now: a bench/pdp directory on the path must not stand for the pdp package
sys.path.append(str(REPO / "bench"))
from cpu_meter import CPUMeter  # noqa: E402
from portcullis_yaml import pdp_and_identity, postgres_connection  # noqa: E402
from processes import stop_all  # noqa: E402

NORMAL_SYNC = "portcullis (cache off, synchronous=normal)"
ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtX", "-c"]


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def scratch_names(prefix: str) -> tuple[str, str, str]:
    """A scratch database's name, its owner role's and the role's password (made fresh)."""
    return (
        f"{prefix}_{secrets.token_hex(3)}",
        f"{prefix}_{secrets.token_hex(3)}",
        secrets.token_urlsafe(16),
    )


def create_scratch(db: str, role: str, password: str) -> None:
    """The role (LOGIN, with its password) and the database it owns, on the local server."""
    sh([*ADMIN, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"])
    sh([*ADMIN, f"CREATE DATABASE {db} OWNER {role}"])


def drop_scratch(db: str, role: str) -> None:
    """What create_scratch made, gone (whatever of it was made; errors ignored)."""
    subprocess.run([*ADMIN, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], capture_output=True)
    subprocess.run([*ADMIN, f"DROP ROLE IF EXISTS {role}"], capture_output=True)


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_pgbouncer(
    tmp: Path,
    db: str,
    role: str,
    password: str,
    pool_mode: str,
    max_clients: int,
    pool_size: int,
    ignored: tuple[str, ...] = (),
) -> tuple[subprocess.Popen, int]:
    """pgbouncer (the Debian package, as the postgres user) in front of db on the local
    server, on a free port, its configuration under tmp (which postgres must be able to
    read); `ignored`: start-up parameters it drops besides extra_float_digits."""
    port = free_port()
    home = tmp / "pgbouncer"
    home.mkdir()
    (home / "users.txt").write_text(f'"{role}" "{password}"\n')
    (home / "pgbouncer.ini").write_text(
        f"[databases]\n{db} = host=127.0.0.1 port=5432 dbname={db}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"auth_type = trust\nauth_file = {home}/users.txt\npool_mode = {pool_mode}\n"
        f"max_client_conn = {max_clients}\ndefault_pool_size = {pool_size}\n"
        "unix_socket_dir =\n"
        f"ignore_startup_parameters = {', '.join(('extra_float_digits', *ignored))}\n"
    )
    shutil.chown(home, "postgres")
    # setpriv, not runuser: runuser's PAM session caps open files at 1024, and a pgbouncer
    # holding thousands of clients needs this process's limit
    command = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
               "pgbouncer", str(home / "pgbouncer.ini")]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def pgbench(
    port: int,
    db: str,
    user: str,
    mode: str,
    clients: int,
    seconds: float,
    password: str = "",
    log_dir: Path | None = None,
) -> dict[str, float]:
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "disable"}
    cmd = [
        "pgbench",
        "-S",
        "-n",
        "-M",
        mode,
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(int(seconds)),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        user,
        db,
    ]
    if log_dir is not None:
        cmd[1:1] = ["-l", "--log-prefix", str(log_dir / "tx")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=log_dir)
    if out.returncode != 0:
        return {"tps": 0.0, "latency_ms": 0.0, "error": out.stderr.strip()[-200:]}  # type: ignore
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", out.stdout).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    return {"tps": tps, "latency_ms": latency}


def p50_latency_us(
    port: int, db: str, user: str, mode: str, seconds: float, password: str = ""
) -> float:
    with tempfile.TemporaryDirectory() as logs:
        pgbench(port, db, user, mode, 1, seconds, password, Path(logs))
        samples = []
        for log in Path(logs).glob("tx*"):
            samples += [int(line.split()[2]) for line in log.read_text().splitlines()]
    return statistics.median(samples) if samples else float("nan")


def measured(pids: dict[str, int], *args: Any) -> dict[str, float]:
    """pgbench(*args) with what it cost (bench/cpu_meter.py): CPU µs per transaction of
    each named process and of the whole machine, and the hypervisor's steal."""
    meter = CPUMeter(pids)
    started = time.monotonic()
    result = pgbench(*args)
    return {**result, **meter.per(result["tps"] * (time.monotonic() - started))}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def open_sessions(port: int, token: str, n: int) -> list:
    import asyncpg

    conns = []
    for _ in range(n):
        conns.append(
            await asyncpg.connect(
                f"postgresql://agent:{token}@127.0.0.1:{port}/postgres", ssl=False
            )
        )
    return conns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=7, help="recording on/off pairs")
    parser.add_argument("--pair-seconds", type=float, default=6)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-bench-"))
    tmp.chmod(0o755)  # pgbouncer runs as postgres and reads its config below
    db, role, password = scratch_names("portcullis_bench")
    procs: list[subprocess.Popen] = []
    try:
        create_scratch(db, role, password)
        sh(["pgbench", "-i", "-q", "-s", str(args.scale), "-h", "127.0.0.1", "-U", role, db])

        # pgbouncer: the peer (session pooling, so -M prepared works as it does direct)
        bouncer, bouncer_port = start_pgbouncer(tmp, db, role, password, "session", 1000, 50)
        procs.append(bouncer)

        relay_port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("relay.py")), str(relay_port), "5432"]
            )
        )

        # the policy library, with the benchmark's connections declared like orders-db
        policies = tmp / "rego"
        shutil.copytree(REPO / "rego", policies)
        data = json.loads((policies / "data.json").read_text())
        template = data["portcullis"]["connections"]["orders-db"]
        for name in ("bench-nocache", "bench-cache", "bench-norecord", "bench-memory"):
            data["portcullis"]["connections"][name] = template
        # the memory phase holds many sessions of one identity: past the shipped cap
        cap = data["portcullis"].get("max_sessions_per_identity", 0)
        data["portcullis"]["max_sessions_per_identity"] = max(cap, args.sessions + 16)
        (policies / "data.json").write_text(json.dumps(data))

        pdp_port = free_port()
        ports = {
            "bench-nocache": free_port(),
            "bench-cache": free_port(),
            "bench-norecord": free_port(),
            "bench-memory": free_port(),
        }
        with throwaway_cluster(
            "host all all 127.0.0.1/32 trust\n", {"max_connections": str(args.sessions + 50)}
        ) as (mem_port, _):

            def scratch(name: str, **options: Any) -> dict[str, Any]:
                """A connection to the scratch database on the server at 5432."""
                return postgres_connection(
                    name, ports[name], "127.0.0.1:5432", db, role, password, **options
                )

            config = {
                **pdp_and_identity(tmp, policies, pdp_port),
                "connections": [
                    scratch("bench-nocache", decision_cache=False),
                    scratch("bench-cache", decision_cache=True),
                    scratch("bench-norecord", decision_cache=True, recording=False),
                    postgres_connection(
                        "bench-memory",
                        ports["bench-memory"],
                        f"127.0.0.1:{mem_port}",
                        "postgres",
                        "postgres",
                        "unused",
                    ),
                ],
            }
            # one identity opens every session of the memory phase in a few seconds: past
            # the shipped rate of session opens per identity
            config["pdp"]["session_opens_per_minute"] = args.sessions + 16
            path = tmp / "portcullis.yaml"
            path.write_text(yaml.safe_dump(config))
            cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
            token = sh(
                [
                    *cli,
                    "token",
                    "--sub",
                    "bench@example.com",
                    "--groups",
                    "dba,pii-readers",
                    "--ttl",
                    "2h",
                ]
            ).stdout.strip()
            pdp = subprocess.Popen([*cli, "pdp"], stderr=subprocess.DEVNULL)
            procs.append(pdp)
            wait_port(pdp_port)
            proxy = subprocess.Popen([*cli, "proxy", "postgres"], stderr=subprocess.DEVNULL)
            procs.append(proxy)
            # the same PDP and proxy again, with the decision log's commits left unsynced
            # (pdp.store.synchronous: normal), for the cache-off latency beside the default
            fast = json.loads(json.dumps(config, default=str))
            fast["pdp"]["listen"] = f"127.0.0.1:{free_port()}"
            fast["pdp"]["store"] = {
                "type": "sqlite",
                "path": str(tmp / "audit-normal.db"),
                "synchronous": "normal",
            }
            # its own proxy key and credential: the main PDP's credential names every
            # connection, and a second PDP writing the same file would narrow it
            fast["pdp"]["proxy_key"] = str(tmp / "proxy-normal.key")
            fast["pdp"]["proxy_credential_file"] = str(tmp / "proxy-normal.credential")
            nocache_normal = free_port()
            fast["connections"] = [
                {**c, "listen": f"127.0.0.1:{nocache_normal}"}
                for c in config["connections"]
                if c["name"] == "bench-nocache"
            ]
            fast_path = tmp / "portcullis-normal.yaml"
            fast_path.write_text(yaml.safe_dump(fast))
            fast_cli = [sys.executable, "-m", "pdp.cli", "-c", str(fast_path)]
            procs.append(subprocess.Popen([*fast_cli, "pdp"], stderr=subprocess.DEVNULL))
            wait_port(int(fast["pdp"]["listen"].rsplit(":", 1)[1]))
            procs.append(
                subprocess.Popen([*fast_cli, "proxy", "postgres"], stderr=subprocess.DEVNULL)
            )
            for port in (*ports.values(), bouncer_port, relay_port, nocache_normal):
                wait_port(port)

            targets = {
                "direct": (5432, role, ""),
                "pgbouncer": (bouncer_port, role, ""),
                "python relay (no parsing)": (relay_port, role, ""),
                "portcullis (cache off)": (ports["bench-nocache"], "agent", token),
                "portcullis (cache on)": (ports["bench-cache"], "agent", token),
                "portcullis (cache on, recording off)": (ports["bench-norecord"], "agent", token),
            }
            watched = {"proxy": proxy.pid, "pdp": pdp.pid}
            results: dict[tuple[str, str], dict[str, float]] = {}
            for mode in ("simple", "prepared"):
                for name, (port, user, secret) in targets.items():
                    results[(mode, name)] = measured(
                        watched, port, db, user, mode, args.clients, args.seconds, secret
                    )

            # a ratio of two noisy figures (minutes apart, on a shared VM) is measured as
            # pairs, the order flipped every other pair (so a drift in the machine favours
            # neither side), and reported as the median of the pairs' ratios: the target's
            # (cache on against pgbouncer) and the recording's cost (on against off)
            def pairs(first: str, second: str, mode: str) -> list[tuple[dict, dict]]:
                measured_pairs = []
                for i in range(args.pairs):
                    pair = {}
                    for name in (first, second)[:: 1 if i % 2 == 0 else -1]:
                        port, user, secret = targets[name]
                        pair[name] = measured(
                            watched, port, db, user, mode, args.clients, args.pair_seconds,
                            secret,
                        )  # fmt: skip
                    if pair[first]["tps"] and pair[second]["tps"]:
                        measured_pairs.append((pair[first], pair[second]))
                return measured_pairs

            against_bouncer: dict[str, list[float]] = {}
            recording_pairs: dict[str, list[float]] = {}
            recording_cpu: dict[str, list[float]] = {}
            for mode in ("simple", "prepared"):
                against_bouncer[mode] = [
                    on["tps"] / bouncer["tps"]
                    for on, bouncer in pairs("portcullis (cache on)", "pgbouncer", mode)
                ]
                recorded = pairs(
                    "portcullis (cache on)", "portcullis (cache on, recording off)", mode
                )
                recording_pairs[mode] = [1 - on["tps"] / off["tps"] for on, off in recorded]
                recording_cpu[mode] = [
                    on["proxy_us"] + on["pdp_us"] - off["proxy_us"] - off["pdp_us"]
                    for on, off in recorded
                ]
            p50 = {
                name: p50_latency_us(
                    targets[name][0],
                    db,
                    targets[name][1],
                    "simple",
                    min(args.seconds, 5),
                    targets[name][2],
                )
                for name in ("direct", "portcullis (cache off)")
            }
            p50[NORMAL_SYNC] = p50_latency_us(
                nocache_normal, db, "agent", "simple", min(args.seconds, 5), token
            )

            rss_before = rss_kib(proxy.pid)
            rss_after, opened = asyncio.run(
                hold_sessions(ports["bench-memory"], token, args.sessions, proxy.pid)
            )

    finally:
        stop_all(procs)
        drop_scratch(db, role)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"pgbench -S, {args.clients} clients, {args.seconds:g}s each, scale {args.scale}, "
        f"{os.cpu_count()} cores (every process on the same machine)"
    )
    for mode in ("simple", "prepared"):
        direct = results[(mode, "direct")]
        bouncer = results[(mode, "pgbouncer")]
        relay = results[(mode, "python relay (no parsing)")]
        print(f"  -M {mode}")
        for name in targets:
            r = results[(mode, name)]
            line = (
                f"    {name:<36} tps {r['tps']:9.0f}   latency avg {r['latency_ms']:7.3f} ms"
                f"   steal {100 * r.get('steal', 0):3.0f}%"
            )
            if name.startswith("portcullis") and r["tps"]:
                line += (
                    f"   /direct {r['tps'] / direct['tps']:5.2f}"
                    f"   /pgbouncer {r['tps'] / bouncer['tps']:5.2f}"
                    f"   /relay {r['tps'] / relay['tps']:5.2f}"
                )
            if "error" in r:
                line += f"   ERROR {r['error']}"
            print(line)
        print("    CPU per transaction (µs): proxy / PDP / whole machine")
        for name in targets:
            r = results[(mode, name)]
            if "machine_us" in r:
                own = (
                    f"{r['proxy_us']:6.1f} / {r['pdp_us']:5.1f} / "
                    if name.startswith("portcullis")
                    else " " * 17
                )
                print(f"      {name:<36} {own}{r['machine_us']:6.1f}")
        # sizing a proxy host (`workers`): the cores a rate needs is CPU per transaction times TPS
        print("    cores needed for 10,000 TPS (CPU per transaction times rate): proxy / PDP")
        for name in targets:
            r = results[(mode, name)]
            if name.startswith("portcullis") and "proxy_us" in r:
                print(f"      {name:<36} {r['proxy_us'] / 100:6.2f} / {r['pdp_us'] / 100:5.2f}")
    for mode in ("simple", "prepared"):
        ratios = sorted(against_bouncer[mode])
        if ratios:
            print(
                f"  cache on / pgbouncer, -M {mode}: median of {len(ratios)} alternating "
                f"{args.pair_seconds:g}s pairs {statistics.median(ratios):.2f}"
                f" (pairs: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.50)"
            )
    for mode in ("simple", "prepared"):
        on = results[(mode, "portcullis (cache on)")]["tps"]
        off = results[(mode, "portcullis (cache on, recording off)")]["tps"]
        pairs = sorted(recording_pairs[mode])
        if off and pairs:
            print(
                f"  recording cost, -M {mode}: {100 * (1 - on / off):.1f}% of TPS in the table;"
                f" median of {len(pairs)} alternating {args.pair_seconds:g}s pairs"
                f" {100 * statistics.median(pairs):.1f}%"
                f" (pairs: {', '.join(f'{100 * c:.1f}%' for c in pairs)}; target <= 15%)"
            )
        if recording_cpu[mode]:
            print(
                f"    its CPU, proxy + PDP: {statistics.median(recording_cpu[mode]):.1f} µs per"
                " statement (median of the pairs)"
            )
    added = p50["portcullis (cache off)"] - p50["direct"]
    print(
        f"  p50 latency, 1 client, simple: direct {p50['direct']:.0f} µs, "
        f"portcullis cache off {p50['portcullis (cache off)']:.0f} µs → added {added:.0f} µs"
    )
    print(
        f"    with pdp.store.synchronous: normal (no fsync per decision-log commit): "
        f"{p50[NORMAL_SYNC]:.0f} µs → added {p50[NORMAL_SYNC] - p50['direct']:.0f} µs"
    )
    print(
        f"  proxy memory: {rss_before / 1024:.1f} MiB idle → {rss_after / 1024:.1f} MiB with "
        f"{opened} idle sessions = {(rss_after - rss_before) / max(opened, 1):.1f} KiB "
        "per session"
    )
    print("  targets: cache on >= 0.50 x pgbouncer in both modes; cache off added p50 <= 1 ms")


async def hold_sessions(port: int, token: str, n: int, pid: int) -> tuple[int, int]:
    """Open n sessions through the proxy, read the proxy's RSS, close them."""
    conns = await open_sessions(port, token, n)
    await asyncio.sleep(2)
    rss = rss_kib(pid)
    for conn in conns:
        await conn.close()
    return rss, len(conns)


if __name__ == "__main__":
    main()
