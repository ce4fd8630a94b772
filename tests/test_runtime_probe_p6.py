"""Runtime probe 6 (helper auditsec6): a CancelRequest through a proxy of `workers: 2`.

Attack (an agent with an ordinary reader token, or none: a CancelRequest carries no
token): cancel another identity's running statement by sending keys it guessed, the
server's own pid of that session (which pg_stat_activity shows) with secrets guessed, or
keys naming either worker; or flood the server with cancel connections. What holds: the
keys clients are given are drawn at random per session, unrelated to the server's pid and
secret; a key never handed out is dropped without a connection to the server; a key
handed out cancels its own session's statement only, within its budget, whichever worker
the kernel gives the request to.

End to end: `portcullis up` as a process of its own with `workers: 2` on a Postgres
connection whose upstream is a counting relay in front of the real server (it counts the
CancelRequests that reach the server); real psycopg clients, raw CancelRequests as libpq
sends them, and psycopg's own cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import psycopg
import pytest
import yaml
from pdp_harness import REGO, free_port, pdp_raw
from pg_harness import ADMIN_DSN, scratch_database

from proxies.postgres.proxy import KEY_CANCEL_BURST, KEY_CANCELS_PER_SECOND
from proxies.runtime.workers import key_worker

pytestmark = pytest.mark.integration

CANCEL = struct.pack("!ii", 16, 80877102)


class CountingRelay:
    """A TCP relay in front of the real server that counts the CancelRequests it carries."""

    def __init__(self) -> None:
        self.cancels = 0
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(8)
        except (asyncio.IncompleteReadError, OSError):
            writer.close()
            return
        if first == CANCEL:
            self.cancels += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
        up_writer.write(first)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CountingRelay]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()


async def _cancel(port: int, pid: int, secret: int) -> None:
    """A CancelRequest on a connection of its own, as libpq sends it."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(CANCEL + struct.pack("!ii", pid, secret))
    await writer.drain()
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _cli(path: Path, *args: str) -> str:
    argv = [sys.executable, "-m", "pdp.cli", "-c", str(path), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


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


async def _running_sleep(database: str) -> int:
    """The server pid of the session of `database` that runs pg_sleep, once it does."""
    deadline = time.monotonic() + 30
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as admin:
        while time.monotonic() < deadline:
            cur = await admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
                " AND query LIKE '%%pg_sleep%%'",
                (database,),
            )
            row = await cur.fetchone()
            if row is not None:
                return int(row[0])
            await asyncio.sleep(0.05)
    raise AssertionError("the statement never ran")


async def test_no_key_but_the_sessions_own_cancels_it_on_either_worker(tmp_path: Path) -> None:
    with scratch_database() as (database, role, password):
        relay = CountingRelay()
        async with relay.running():
            port = free_port()
            raw = pdp_raw(
                tmp_path,
                engine={"type": "embedded", "policies": str(REGO), "workers": 1},
                connections=[
                    {
                        "name": "orders-db",
                        "type": "postgres",
                        "listen": f"127.0.0.1:{port}",
                        "upstream": f"127.0.0.1:{relay.port}",
                        "database": database,
                        "credentials": {
                            "provider": "static",
                            "username": role,
                            "password": password,
                        },
                        "spool_dir": str(tmp_path / "spool"),
                        "workers": 2,
                    }
                ],
            )
            path = tmp_path / "portcullis.yaml"
            path.write_text(yaml.safe_dump(raw))
            dana = _cli(path, "token", "--sub", "dana@example.com", "--groups", "dba")
            reader = _cli(path, "token", "--sub", "rita@example.com", "--groups", "readonly")
            up = subprocess.Popen(
                [sys.executable, "-m", "pdp.cli", "-c", str(path), "up"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                await asyncio.to_thread(_wait_port, port, up)
                dsn = f"host=127.0.0.1 port={port} dbname={database} sslmode=disable user=agent"
                victim = await psycopg.AsyncConnection.connect(
                    f"{dsn} password={dana}", autocommit=True
                )
                attacker = await psycopg.AsyncConnection.connect(
                    f"{dsn} password={reader}", autocommit=True
                )
                key = (victim.info.backend_pid, 0)
                own = attacker.info.backend_pid
                running = asyncio.ensure_future(victim.execute("SELECT pg_sleep(60)"))
                server_pid = await _running_sleep(database)
                # the key the client holds is the proxy's, not the server's
                assert victim.info.backend_pid != server_pid
                assert key_worker(key) in (0, 1)

                # the reader's guesses: the server's pid with secrets guessed, keys naming
                # either worker, its own key's pid with other secrets (each on a new
                # connection: the kernel picks the worker, so both see some)
                guesses = [(server_pid, secrets.randbelow(2**31)) for _ in range(20)]
                for worker in (0, 1):
                    for _ in range(20):
                        pid = (worker << 24) | secrets.randbelow(1 << 24)
                        guesses.append((pid, secrets.randbelow(2**31)))
                guesses += [(victim.info.backend_pid, secrets.randbelow(2**31)) for _ in range(5)]
                guesses += [(own, secrets.randbelow(2**31)) for _ in range(5)]
                for pid, secret in guesses:
                    await _cancel(port, pid, secret)
                # the reader's own session answers after its guesses were all taken in
                cur = await attacker.execute("SELECT 1")
                assert (await cur.fetchone()) == (1,)
                await asyncio.sleep(0.5)  # what a dropped request would have started
                assert relay.cancels == 0, "a key never handed out reached the server"
                assert not running.done()
                assert await _running_sleep(database) == server_pid

                # the session's own client cancels it (psycopg's cancel: the key it was given)
                await victim.cancel_safe()
                with pytest.raises(psycopg.errors.QueryCanceled):
                    await asyncio.wait_for(running, 30)
                assert relay.cancels == 1
                cur = await victim.execute("SELECT 2")
                assert (await cur.fetchone()) == (2,)

                # a key that leaked, flooded: the server sees a bounded number of cancels
                # (asyncpg shows the secret it was given, which libpq keeps to itself)
                leaky = await asyncpg.connect(
                    f"postgresql://agent:{dana}@127.0.0.1:{port}/{database}?sslmode=disable"
                )
                again = asyncio.ensure_future(leaky.fetch("SELECT pg_sleep(60)"))
                await _running_sleep(database)
                pid, secret = leaky._protocol.backend_pid, leaky._protocol.backend_secret
                started = time.monotonic()
                for _ in range(100):
                    await _cancel(port, pid, secret)
                with pytest.raises(asyncpg.QueryCanceledError):
                    await asyncio.wait_for(again, 30)
                elapsed = time.monotonic() - started
                await asyncio.sleep(0.5)  # what the last requests started
                # at most the key's burst and its refill while the flood lasted
                bound = KEY_CANCEL_BURST + KEY_CANCELS_PER_SECOND * (elapsed + 0.5) + 1
                assert 1 <= relay.cancels - 1 <= bound, (relay.cancels, elapsed)
                await leaky.close()
                for conn in (victim, attacker):
                    await conn.close()
            finally:
                up.send_signal(signal.SIGTERM)
                try:
                    _, err = up.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    up.kill()
                    _, err = up.communicate()
            assert up.returncode == 0, err.decode(errors="replace")[-2000:]
