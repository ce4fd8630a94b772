"""A connection's proxy processes: with `workers: N`, N processes share its listen port.

Owns starting and stopping a connection's other worker processes and the route between
them. Each other worker is `python -m proxies KIND --connection NAME --worker I`, started
by exec (never a fork of a process that may hold the PDP's Go runtime), reading the same
configuration file; the proxy credential `portcullis up` issued goes to it over a pipe,
never in its argv or environment. The kernel spreads accepted connections over the
workers (SO_REUSEPORT); each worker has its own runtime, PDP stream and decision cache.

A Postgres CancelRequest lands on whichever worker the kernel picks, not the one serving
the session it cancels: the key a client is given names its worker (`worker_key`), and a
worker handed another's key passes the request to that worker over a local socket
(`CancelRoute`), which cancels as if the request had come to it. An abstract socket has
no file mode: any local user may connect to one, or bind a name before its worker does;
so each end checks the other's user (SO_PEERCRED): a worker takes keys only from a
process of its own user, and hands a key only to one; and the names are drawn at random
by worker 0 at start (`new_cancel_routes`) and handed to the others over their stdin, so
no one can bind a worker's name before it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace

from portcullis.config import Config, ConnectionSettings
from portcullis.protocols import MAX_WORKERS, workers_of

log = logging.getLogger("portcullis.workers")

READY = "portcullis proxy worker ready"  # what a worker prints once it is listening
START_SECONDS = 30.0
STOP_SECONDS = 15.0
_WORKER_SHIFT = 24  # a key's pid: worker in bits 24-30, a random number below them
_KEY = struct.Struct("!ii")
_PEER = struct.Struct("3i")  # struct ucred: pid, uid, gid

CancelKey = tuple[int, int]


def worker_key(worker: int) -> CancelKey:
    """A fresh BackendKeyData key (pid, secret) that names its worker."""
    if not 0 <= worker < MAX_WORKERS:
        raise ValueError(f"worker {worker} out of range")
    pid = (worker << _WORKER_SHIFT) | (secrets.randbelow((1 << _WORKER_SHIFT) - 1) + 1)
    return pid, secrets.randbelow(2**31 - 1) + 1


def key_worker(key: CancelKey) -> int:
    """The worker a key was issued by (any other number: no worker's, ignored)."""
    return (key[0] >> _WORKER_SHIFT) & 0x7F


def new_cancel_routes(connection: ConnectionSettings) -> ConnectionSettings:
    """The connection with fresh cancel route names, one per worker: random, so another
    local user can neither bind a worker's name before it does (which would keep that
    worker, and the proxy, from starting) nor tell it before it is bound."""
    workers = workers_of(connection.options)
    nonce = secrets.token_hex(12)
    return replace(
        connection, cancel_routes=tuple(f"portcullis-cancel-{nonce}-{i}" for i in range(workers))
    )


def _route_name(connection: ConnectionSettings, worker: int) -> str:
    """The abstract socket (Linux: no file, gone with the process) of one worker's route."""
    if not connection.cancel_routes:
        raise RuntimeError(f"connection {connection.name}: no cancel routes drawn")
    return "\0" + connection.cancel_routes[worker]


def _same_user(sock: socket.socket) -> bool:
    """Whether the process at the other end of a Unix socket runs as this process's user."""
    try:
        _, uid, _ = _PEER.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER.size))
    except OSError:
        return False
    return uid == os.geteuid()


class CancelRoute:
    """One worker's end of the cancel route: it takes the keys other workers were handed
    for its sessions, and hands on the keys it was handed for theirs."""

    def __init__(
        self, connection: ConnectionSettings, cancel: Callable[[CancelKey], Awaitable[None]]
    ) -> None:
        self.connection = connection
        self.cancel = cancel
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(_route_name(self.connection, self.connection.worker))
        except OSError:
            sock.close()
            raise
        self._server = await asyncio.start_unix_server(self._take, sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def hand_on(self, key: CancelKey) -> None:
        """A key of another worker's session, to that worker (like the server, a key no
        worker holds is dropped silently)."""
        worker = key_worker(key)
        if worker >= workers_of(self.connection.options):
            return
        with contextlib.suppress(OSError):
            # the socket made here: uvloop takes no abstract name as a path
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(
                    sock, _route_name(self.connection, worker)
                )
            except OSError:
                sock.close()
                raise
            if not _same_user(sock):
                sock.close()
                log.warning("cancel route of worker %d is held by another user's process", worker)
                return
            _, writer = await asyncio.open_unix_connection(sock=sock)
            writer.write(_KEY.pack(*key))
            await writer.drain()
            writer.close()

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is None or not _same_user(sock):
            writer.close()
            return
        try:
            data = await asyncio.wait_for(reader.readexactly(_KEY.size), 5.0)
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            return
        finally:
            writer.close()
        key = _KEY.unpack(data)
        if key_worker(key) == self.connection.worker:
            await self.cancel(key)


class WorkerProcesses:
    """A connection's workers 1..N-1, started beside the process that serves worker 0."""

    def __init__(self, connection: ConnectionSettings, config: Config, pdp_address: str) -> None:
        self.connection = connection
        self.config = config
        self.pdp_address = pdp_address
        self.processes: list[asyncio.subprocess.Process] = []

    def argv(self, worker: int) -> list[str]:
        if self.config.path is None:
            raise RuntimeError("a proxy's other workers read its configuration file: none")
        argv = [sys.executable, "-m", "proxies", self.connection.type, "-c", str(self.config.path)]
        argv += ["--connection", self.connection.name, "--worker", str(worker)]
        argv += ["--pdp", self.pdp_address]
        if self.config.proxies.pdp.credential:
            argv.append("--credential-stdin")
        argv.append("--routes-stdin")
        return argv

    async def start(self) -> None:
        try:
            for worker in range(1, workers_of(self.connection.options)):
                await self._start_one(worker)
        except BaseException:
            await self.stop()
            raise

    async def _start_one(self, worker: int) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.argv(worker),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.processes.append(process)
        assert process.stdin is not None and process.stdout is not None
        credential = self.config.proxies.pdp.credential
        if credential:
            process.stdin.write(credential.encode() + b"\n")
        process.stdin.write(" ".join(self.connection.cancel_routes).encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_SECONDS)
        except TimeoutError:
            line = b""
        if line.decode(errors="replace").strip() != READY:
            raise RuntimeError(
                f"connection {self.connection.name}: proxy worker {worker} did not start "
                "(its log says why)"
            )
        log.info("connection %s: worker %d is pid %d", self.connection.name, worker, process.pid)

    async def drain(self, grace: float) -> None:
        """SIGTERM to each worker: each drains itself (proxies.runtime.drain) with the same
        grace, beside worker 0; stop() waits for them."""
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    async def stop(self) -> None:
        """Each worker drains as on SIGTERM; one that does not end in time is killed."""
        await self.drain(self.config.proxies.drain_seconds)
        for process in self.processes:
            try:
                # its drain's grace, the forced end, then its own stop
                limit = self.config.proxies.drain_seconds + STOP_SECONDS
                await asyncio.wait_for(process.wait(), limit)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self.processes.clear()
