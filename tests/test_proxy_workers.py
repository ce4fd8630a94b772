"""`workers: N` (issue 27 §1): a connection's proxy processes share its listen port, and a
Postgres CancelRequest cancels the right backend whichever worker the kernel hands it to.

End to end: `portcullis up` as a process of its own with `workers: 2` on a Postgres
connection, real asyncpg clients; the key a client is given names its worker, sessions
land on both, and raw CancelRequests (each on a new connection, so on either worker)
cancel running statements. In process: the cancel route hands a key to its worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import yaml
from pdp_harness import REGO, free_port, pdp_raw
from pg_harness import scratch_database

from portcullis.config import ConnectionSettings
from portcullis.protocols import protocol
from proxies.runtime.workers import CancelRoute, key_worker, worker_key

pytestmark = pytest.mark.integration

CANCEL_CODE = 80877102


def test_a_key_names_its_worker() -> None:
    for worker in (0, 1, 7, 63):
        keys = {worker_key(worker) for _ in range(200)}
        assert len(keys) == 200
        assert {key_worker(k) for k in keys} == {worker}
        assert all(0 < pid < 2**31 and 0 < secret < 2**31 for pid, secret in keys)
    with pytest.raises(ValueError):
        worker_key(64)


def test_workers_is_a_checked_option(tmp_path: Path) -> None:
    postgres = protocol("postgres")
    assert postgres is not None
    assert postgres.validated({"workers": 3}, tmp_path)["workers"] == 3
    assert postgres.validated({}, tmp_path)["workers"] == 1
    for bad in (-1, 65, "two"):
        with pytest.raises(ValueError):
            postgres.validated({"workers": bad}, tmp_path)


async def test_the_route_hands_a_key_to_the_worker_that_issued_it() -> None:
    options = {"workers": 2}
    taken: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    routes = []
    name = f"route-{free_port()}"
    for worker in (0, 1):
        connection = ConnectionSettings(
            name,
            "postgres",
            "127.0.0.1:1",
            "127.0.0.1:5432",
            options=options,
            worker=worker,
            cancel_routes=(f"{name}-0", f"{name}-1"),
        )

        async def cancel(key: tuple[int, int], worker: int = worker) -> None:
            taken[worker].append(key)

        route = CancelRoute(connection, cancel)
        await route.start()
        routes.append(route)
    try:
        key = worker_key(1)
        await routes[0].hand_on(key)  # worker 0 was handed worker 1's key
        await routes[0].hand_on(worker_key(5))  # no such worker: dropped
        deadline = time.monotonic() + 10
        while not taken[1] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert taken == {0: [], 1: [key]}
    finally:
        for route in routes:
            await route.stop()


def _wait_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = process.stderr.read().decode(errors="replace")[-4000:] if process.stderr else ""
            raise AssertionError(f"portcullis up exited {process.returncode}:\n{said}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the proxy never listened")


async def _cancel(port: int, pid: int, secret: int) -> None:
    """A CancelRequest on a connection of its own, as libpq sends it."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(struct.pack("!iiii", 16, CANCEL_CODE, pid, secret))
    await writer.drain()
    writer.close()


async def test_two_workers_share_the_port_and_cancel_each_others_statements(
    tmp_path: Path,
) -> None:
    with scratch_database() as (database, role, password):
        port = free_port()
        raw = pdp_raw(
            tmp_path,
            engine={"type": "embedded", "policies": str(REGO), "workers": 1},
            connections=[
                {
                    "name": "orders-db",
                    "type": "postgres",
                    "listen": f"127.0.0.1:{port}",
                    "upstream": "127.0.0.1:5432",
                    "database": database,
                    "credentials": {"provider": "static", "username": role, "password": password},
                    "spool_dir": str(tmp_path / "spool"),
                    "workers": 2,
                }
            ],
        )
        path = tmp_path / "portcullis.yaml"
        path.write_text(yaml.safe_dump(raw))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        token = subprocess.run(
            [*cli, "token", "--sub", "dana@example.com", "--groups", "dba"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # a local user who binds the route names the workers used to derive (connection,
        # listen address, directory) kept worker 1, and so the proxy, from starting
        squatted = []
        for worker in (0, 1):
            place = "\x00".join(("orders-db", f"127.0.0.1:{port}", str(Path.cwd()))).encode()
            digest = hashlib.sha256(place).hexdigest()[:24]
            held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.bind(f"\0portcullis-cancel-{digest}-{worker}")
            squatted.append(held)
        up = subprocess.Popen([*cli, "up"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_port(port, up)
            dsn = f"postgresql://agent:{token}@127.0.0.1:{port}/{database}?sslmode=disable"
            # worker 1 starts once worker 0 listens: sessions reach both from then on
            seen: set[int] = set()
            deadline = time.monotonic() + 60
            while seen != {0, 1}:
                assert time.monotonic() < deadline, f"every session landed on worker {seen}"
                conn = await asyncpg.connect(dsn)
                seen.add(key_worker((conn._protocol.backend_pid, 0)))
                assert await conn.fetchval("SELECT 1") == 1
                await conn.close()
            conns = [await asyncpg.connect(dsn) for _ in range(8)]
            # each cancel on a new connection: the kernel picks the worker, so about half
            # of them reach the worker that did not issue the key and must be handed on
            for conn in conns[:8]:
                running = asyncio.ensure_future(conn.fetch("SELECT pg_sleep(30)"))
                await asyncio.sleep(0.3)
                protocol_ = conn._protocol
                await _cancel(port, protocol_.backend_pid, protocol_.backend_secret)
                with pytest.raises(asyncpg.QueryCanceledError):
                    await asyncio.wait_for(running, 20)
                assert await conn.fetchval("SELECT 2") == 2
            for conn in conns:
                await conn.close()
        finally:
            for held in squatted:
                held.close()
            up.send_signal(signal.SIGTERM)
            try:
                _, err = up.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                _, err = up.communicate()
        assert up.returncode == 0, err.decode(errors="replace")[-2000:]
        # no worker left behind
        left = subprocess.run(
            ["pgrep", "-f", f"proxies postgres -c {path}"], capture_output=True, text=True
        )
        assert left.stdout.strip() == ""
