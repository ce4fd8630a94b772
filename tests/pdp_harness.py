"""Starts a real PDP (gRPC server, embedded OPA workers, real store) for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from pdp.app import Parts, PDPApp
from pdp.domain.identity import DevIssuer
from portcullis.config import Config, parse_config
from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
from portcullis.wire import CREDENTIAL_METADATA

REPO = Path(__file__).resolve().parent.parent
REGO = REPO / "rego"


# Below the kernel's ephemeral range (32768-60999 here): a port the kernel handed out by
# bind(0) is in that range, where every outgoing connection of a busy test run also takes
# its local port, so between this call and the server's bind a client could take it
# (a CI run failed so: "address already in use"). A port below it is never handed out.
_LISTEN_PORTS = (20000, 32767)
# A port handed out is often bound seconds later (a configuration written first): it is
# never handed out again by this process, and each pytest-xdist worker draws from its own
# share of the range, so two workers never hand out the same one (a CI run failed so:
# "address already in use" on a port two tests were given).
_HANDED: set[int] = set()


def _share() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker[:2] == "gw" and worker[2:].isdigit() else 0
    low, high = _LISTEN_PORTS
    span = (high - low + 1) // max(count, 1)
    start = low + (index % max(count, 1)) * span
    return start, start + span - 1


def free_port() -> int:
    """A port nothing listens on now, for a server a test starts next."""
    low, high = _share()
    if len(_HANDED) > (high - low) // 2:
        _HANDED.clear()  # (a long run: the oldest were bound or dropped long ago)
    for _ in range(64):
        port = random.randint(low, high)
        if port in _HANDED:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A test PDP's own engine has one worker: each worker is an interpreter of its own that
# loads and compiles the whole policy, the most of a PDP's start (2 workers: ~2.2 s of wall
# per start on a loaded 2-core VM, 1 worker: ~1.1 s; the suite starts hundreds). Tests that
# need a pool of several (worker replacement, evaluations side by side) give their engine.
def pdp_raw(
    tmp: Path,
    *,
    listen: str | None = None,
    policies: Path = REGO,
    store: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None,
    session_timeout: int = 30,
    **extra: Any,
) -> dict[str, Any]:
    """A test PDP's configuration as portcullis.yaml holds it (to write, or to parse)."""
    raw: dict[str, Any] = {
        "pdp": {
            "listen": listen or f"127.0.0.1:{free_port()}",
            "engine": engine
            or {"type": "embedded", "policies": str(policies), "workers": 1, "timeout_ms": 3000},
            "store": store or {"type": "sqlite", "path": str(tmp / "audit.db")},
            "signing_key": str(tmp / "signing.key"),
            "session_timeout_seconds": session_timeout,
        },
        "identity": {"dev": True, "dev_key": str(tmp / "dev.key")},
        "connections": [
            {
                "name": "orders-db",
                "type": "postgres",
                "listen": f"127.0.0.1:{free_port()}",
                "upstream": "127.0.0.1:5432",
                "zone": "eu-prod",
                "credentials": {"provider": "static", "username": "app", "password": "x"},
            },
        ],
    }
    for key, value in extra.items():
        raw[key] = value
    engine_raw = raw.get("pdp", {}).get("engine")
    if isinstance(engine_raw, dict) and engine_raw.get("type", "embedded") == "embedded":
        # a test's own engine without a deadline: not the 250 ms default, which denies a
        # cold first evaluation on a loaded machine (a test that times evaluations out
        # gives its own)
        raw["pdp"]["engine"] = {"timeout_ms": 2000, **engine_raw}
    return raw


def pdp_config(tmp: Path, **kwargs: Any) -> Config:
    return parse_config(pdp_raw(tmp, **kwargs), base_dir=tmp)


# the proxy credential each running test PDP issued to the tests, by address: a test that
# calls the gRPC API directly plays a proxy, as the real ones do (pdp/api/proxy_auth.py)
ISSUED: dict[str, str] = {}


@contextlib.asynccontextmanager
async def running_pdp(config: Config, parts: Parts | None = None) -> AsyncIterator[PDPApp]:
    app = PDPApp(config, parts)
    await app.start()
    ISSUED[app.address] = app.issue_proxy_credential("pytest", ["*"])
    try:
        yield app
    finally:
        ISSUED.pop(app.address, None)
        await app.stop(grace=2)


# the key each session a test opened through a keyed stub was opened with (what a proxy
# holds in memory: OpenSessionRequest.session_key), for every keyed stub's later calls
SESSION_KEYS: dict[str, str] = {}
# the calls about one session, whose request carries its key
_KEYED_CALLS = ("Decide", "CloseSession", "RecordEvents", "AwaitApproval", "WithdrawApproval")


def hand_over_keys(client: Any) -> Any:
    """client (a PDPClient) holding, in the memory where it keeps its own sessions' keys,
    the keys of the sessions tests opened through keyed stubs: the same proxy, opening by
    hand and going on through its client."""
    client._session_keys.update(SESSION_KEYS)
    return client


def with_session_key(request: Any) -> Any:
    """request with the key its session was opened with, unless it names one already."""
    if not request.session_key and request.session_id in SESSION_KEYS:
        request.session_key = SESSION_KEYS[request.session_id]
    return request


def _keyed_calls(calls: Any) -> Any:
    """A DecideStream's calls (an iterable or async iterable), each keyed."""

    def keyed(call: pdp_pb2.DecideCall) -> pdp_pb2.DecideCall:
        with_session_key(call.request)
        for more in call.more:
            keyed(more)
        return call

    if hasattr(calls, "__aiter__"):

        async def each() -> AsyncIterator[pdp_pb2.DecideCall]:
            async for call in calls:
                yield keyed(call)

        return each()
    return (keyed(call) for call in calls)


class _KeyedStream:
    """A DecideStream call whose written calls are keyed."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def write(self, call: pdp_pb2.DecideCall) -> None:
        await self._call.write(_keyed_calls([call]).__next__())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    def __aiter__(self) -> Any:
        return self._call.__aiter__()


class _ProxyStub:
    """A DecisionService stub whose every call carries a proxy credential, and (keys) the
    key of the session it is about, as a proxy's do; keys=False: a stolen credential alone."""

    def __init__(
        self, stub: pdp_pb2_grpc.DecisionServiceStub, credential: str, keys: bool = True
    ) -> None:
        self._stub = stub
        self._entry = (CREDENTIAL_METADATA, credential)
        self._keys = keys

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(*args: Any, metadata: Any = (), **kwargs: Any) -> Any:
            if self._keys and args:
                args = (self._keyed(name, args[0]), *args[1:])
            sent = method(*args, metadata=(*tuple(metadata or ()), self._entry), **kwargs)
            if self._keys and name == "OpenSession":
                return _remember_key(sent, args[0].session_key)
            if self._keys and name == "DecideStream" and not args:
                return _KeyedStream(sent)
            return sent

        return call

    @staticmethod
    def _keyed(name: str, request: Any) -> Any:
        if name == "OpenSession" and not request.session_key:
            request.session_key = SESSION_KEYS.get(request.session_id) or secrets.token_urlsafe(32)
        elif name in _KEYED_CALLS:
            with_session_key(request)
        elif name == "RecordBatches":
            for batch in request.batches:
                with_session_key(batch)
        elif name == "DecideStream":
            return _keyed_calls(request)
        return request


async def _remember_key(sent: Any, key: str) -> pdp_pb2.OpenSessionResponse:
    """An OpenSession's answer, its session's key kept for the calls about it."""
    response = await sent
    if response.session_id:
        SESSION_KEYS[response.session_id] = key
    return response  # type: ignore[no-any-return]


def proxy_metadata(address: str) -> tuple[tuple[str, str], ...]:
    """PDPClient(metadata=...) for a proxy of the test PDP at address."""
    return ((CREDENTIAL_METADATA, ISSUED.get(address, "")),)


@contextlib.asynccontextmanager
async def pdp_stub(
    address: str, credential: str | None = None, keys: bool = True
) -> AsyncIterator[pdp_pb2_grpc.DecisionServiceStub]:
    """A stub that speaks as a proxy: with `credential`, else the one the test PDP at
    `address` issued to the tests; credential="" speaks as nobody (a user's own client).
    keys=False: the credential alone, without the keys of the sessions it opened (a thief's)."""
    credential = ISSUED.get(address, "") if credential is None else credential
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        yield _ProxyStub(stub, credential, keys) if credential else stub  # type: ignore[misc]


def token(
    config: Config,
    sub: str = "alice@example.com",
    groups: tuple[str, ...] = ("readonly",),
    ttl: int = 3600,
) -> str:
    return DevIssuer(config.identity).issue(sub, list(groups), ttl)


def connection(name: str = "orders-db") -> pdp_pb2.Connection:
    return pdp_pb2.Connection(name=name, type="postgres", zone="eu-prod")


async def open_session(
    stub: pdp_pb2_grpc.DecisionServiceStub, tok: str, name: str = "orders-db"
) -> pdp_pb2.OpenSessionResponse:
    return await stub.OpenSession(
        pdp_pb2.OpenSessionRequest(
            token=tok, connection=connection(name), client_addr="127.0.0.1:50000", client="pytest"
        )
    )


async def decide_sql(
    stub: pdp_pb2_grpc.DecisionServiceStub, session_id: str, sql: str
) -> pdp_pb2.Decision:
    response = await stub.Decide(
        pdp_pb2.DecideRequest(
            session_id=session_id, command=pdp_pb2.Command(kind="postgres.query", raw=sql)
        )
    )
    return response.decision


def replay_on_a_terminal(
    config_path: Path, session_id: str, rows: int | None = None, *options: str
) -> bytes:
    """`portcullis replay SESSION [options]` with its output on a pseudo-terminal (of
    `rows` lines when given), as an auditor runs it: what the auditor's terminal is sent."""
    import fcntl
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    if rows is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 100, 0, 0))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'proto'}", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "-c", str(config_path), "replay", session_id,
         "--speed", "1000", *options],
        stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    os.close(slave)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the replay ended and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    return bytes(out)
