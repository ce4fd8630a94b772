"""The proxies' shared runtime, probed (p1): what anyone who reaches a proxy's port, with
no token or a reader's, can hold of it.

Each test names the attack it tries. Real components: the machine's PostgreSQL, a PDP and
the Postgres proxy in process (pg_harness), raw sockets and asyncpg as the clients.
"""

from __future__ import annotations

import asyncio
import secrets
import struct

import asyncpg
import pytest
from pg_harness import running_gateway

from portcullis.config import ConnectionSettings
from proxies.runtime.workers import CancelRoute, _route_name, worker_key

pytestmark = pytest.mark.integration

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
STARTING_PER_PEER = 256  # what the listener holds in start-up per address (listener.py)


async def _half_open(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that asks for TLS (answered N: no byte of a token follows) and then
    says nothing more, as a client stalling its start-up would."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the proxy serves this connection: an SSLRequest gets its one-byte answer
    (False: the connection was closed or reset instead)."""
    try:
        writer.write(SSL_REQUEST)
        await writer.drain()
        return await reader.read(1) == b"N"
    except (ConnectionResetError, BrokenPipeError):
        return False


async def test_connections_stalled_in_start_up_are_held_only_up_to_a_cap_per_address(tmp_path):
    """Attack (no token): open connections to the proxy's port and never send a token.
    Before, every one was held until the 30 s start-up timeout, so a client opening them
    faster than that held as many file descriptors and tasks of the proxy as it liked
    (the process's whole limit: then no one's session, upstream or Vault connection
    could open). Now the 257th of one address is reset as it is accepted, while another
    address is still served, and the first one's place comes back once its stalled
    connections are gone."""
    async with running_gateway(tmp_path) as gw:
        port = gw.proxy.port
        held = []
        try:
            for _ in range(STARTING_PER_PEER):
                conn = await _half_open(port)
                held.append(conn)
                assert await _answered(*conn)
            extra = await _half_open(port)
            held.append(extra)
            assert not await _answered(*extra), "a connection past the cap was served"
            # another address is not refused for this one's
            other = await _half_open(port, "127.0.0.2")
            held.append(other)
            assert await _answered(*other)
        finally:
            for _, writer in held:
                writer.close()
        # the stalled connections gone, a real session from the same address opens
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                db = await asyncpg.connect(gw.dsn(gw.token()))
                break
            except (ConnectionError, OSError, asyncpg.PostgresError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        try:
            assert await db.fetchval("select 1") == 1
        finally:
            await db.close()


async def test_connections_in_a_session_do_not_count_against_the_start_up_cap(tmp_path):
    """The cap is on connections that have not opened a session: an agent host's open
    sessions never keep its next client out."""
    async with running_gateway(tmp_path) as gw:
        gw.proxy.listener.gate.per_peer = 3
        sessions = [await asyncpg.connect(gw.dsn(gw.token())) for _ in range(3)]
        stalled = []
        try:
            assert gw.proxy.listener.gate.held["127.0.0.1"] == 0
            for _ in range(3):
                stalled.append(await _half_open(gw.proxy.port))
                assert await _answered(*stalled[-1])
            stalled.append(await _half_open(gw.proxy.port))
            assert not await _answered(*stalled[-1])
            for db in sessions:
                assert await db.fetchval("select 1") == 1
        finally:
            for _, writer in stalled:
                writer.close()
            for db in sessions:
                await db.close()


async def test_half_requests_to_the_health_port_are_held_only_up_to_a_cap(tmp_path):
    """Attack (anyone who reaches a proxy's metrics_listen; no token): connections that
    send half a request head (GET /healthz HTTP/1.1, Host: x, and no end) were all held
    until aiohttp's 75 s keep-alive timeout, each a file descriptor of the proxy process
    whose clients, upstream, PDP and Vault connections share the limit. Now the 17th from
    one address is reset as it is accepted, and another address is still answered."""
    from proxies.runtime.health import HealthServer

    async with running_gateway(tmp_path) as gw:
        health = HealthServer(gw.proxy.runtime, "127.0.0.1:0")
        await health.start()
        writers = []
        try:
            for _ in range(16):
                reader, writer = await asyncio.open_connection("127.0.0.1", health.port)
                writers.append(writer)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                await writer.drain()
            # every one of the 16 taken: a 17th's fate is the gate's alone
            await until_held(health, 16)
            reader, writer = await asyncio.open_connection("127.0.0.1", health.port)
            writers.append(writer)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = await reader.read(12)
            except ConnectionResetError:
                answer = b""
            assert answer == b"", "a 17th half-open connection of one address was served"
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", health.port, local_addr=("127.0.0.2", 0)
            )
            writers.append(writer)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
        finally:
            for writer in writers:
                writer.close()
            await health.stop()


async def until_held(health, count: int) -> None:
    """Until the health server has taken `count` connections (on the tree before, which
    has no gate to count them, until it answers a request: they were taken in order)."""
    gate = getattr(health, "gate", None)
    while gate is not None and gate.total < count:
        await asyncio.sleep(0.01)


NOBODY = 65534  # a local user other than the proxy's
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
SEND_KEY = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1].encode().replace(b"@", b"\\0", 1))
try:
    s.sendall(struct.pack("!ii", int(sys.argv[2]), int(sys.argv[3])))
    print(s.recv(1) == b"")  # the route's end: it read the key (or refused it) and closed
except (BrokenPipeError, ConnectionResetError):
    print(True)  # refused before the key was read
"""
SQUAT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1].encode().replace(b"@", b"\\0", 1))
s.listen(1)
print("bound", flush=True)
conn, _ = s.accept()
got = b""
while True:
    data = conn.recv(64)
    if not data:
        break
    got += data
print(len(got), flush=True)
"""


def _route_connection(worker: int, name: str) -> ConnectionSettings:
    """Worker `worker` of a connection of two whose route names are derived from its name
    (as worker 0 draws them at random and hands them to the others)."""
    return ConnectionSettings(
        name,
        "postgres",
        "127.0.0.1:1",
        "127.0.0.1:5432",
        options={"workers": 2},
        worker=worker,
        cancel_routes=(f"{name}-0", f"{name}-1"),
    )


async def _as_nobody(code: str, *args: str) -> asyncio.subprocess.Process:
    # the system's interpreter: the tests' may sit where another user cannot read it; the
    # user changed by setpriv after exec, not by this process's fork (user= forks, and a
    # fork runs gRPC's fork handlers, which have crashed the child)
    return await asyncio.create_subprocess_exec(
        *AS_NOBODY, "/usr/bin/python3", "-c", code, *args, stdout=asyncio.subprocess.PIPE
    )


async def test_another_local_user_cannot_hand_a_worker_a_cancel_key():
    """Attack (a local unprivileged user on the proxy host): connect to a worker's cancel
    route (an abstract Unix socket: no file mode guards it, its name is in
    /proc/net/unix) and hand it a key. Before, it was taken as one from another worker."""
    taken: list[tuple[int, int]] = []

    async def cancel(key: tuple[int, int]) -> None:
        taken.append(key)

    connection = _route_connection(1, f"route-probe-{secrets.token_hex(4)}")
    route = CancelRoute(connection, cancel)
    await route.start()
    try:
        key = worker_key(1)
        name = _route_name(connection, 1).replace("\0", "@", 1)
        process = await _as_nobody(SEND_KEY, name, str(key[0]), str(key[1]))
        out, _ = await process.communicate()
        assert out.strip() == b"True"  # the route has read the key, or closed without
        assert taken == [], "a key handed by another user's process was taken"
        # the proxy's own user still hands keys on
        sender = CancelRoute(_route_connection(0, connection.name), cancel)
        await sender.hand_on(key)
        deadline = asyncio.get_running_loop().time() + 10
        while not taken and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert taken == [key]
    finally:
        await route.stop()


async def test_a_cancel_key_is_never_handed_to_another_users_socket():
    """Attack (a local unprivileged user): bind a worker's cancel route name before that
    worker does (or once it is gone) and read the keys the other workers hand on. Before,
    worker 0 wrote the key to whoever held the name."""
    connection = _route_connection(0, f"route-probe-{secrets.token_hex(4)}")
    name = _route_name(connection, 1).replace("\0", "@", 1)
    squatter = await _as_nobody(SQUAT, name)
    assert squatter.stdout is not None
    try:
        assert (await squatter.stdout.readline()).strip() == b"bound"

        async def cancel(key: tuple[int, int]) -> None:
            raise AssertionError("not this worker's key")

        await CancelRoute(connection, cancel).hand_on(worker_key(1))
        out, _ = await squatter.communicate()
        assert out.strip() == b"0", "the squatter read a cancel key"
    finally:
        if squatter.returncode is None:
            squatter.kill()
            await squatter.wait()


async def test_a_tls_handshake_that_never_comes_is_not_held(tmp_path, monkeypatch):
    """Attack (anyone who reaches a proxy's TLS port; no token): open TCP connections and
    send no ClientHello. asyncio holds such a connection for its 60 s handshake timeout
    before the listener (and its gate) sees it, so a client opening them faster than that
    held as many as it liked. A TLS listener's handshake now has TLS_HANDSHAKE_SECONDS
    (10 s; here 0.5 s)."""
    import ssl

    from certs import make_pki

    from proxies.runtime import listener as listener_module

    monkeypatch.setattr(listener_module, "TLS_HANDSHAKE_SECONDS", 0.5, raising=False)
    pki = make_pki(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki["server.pem"], pki["server.key"])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    served = listener_module.Listener("tls-probe", "127.0.0.1:0", handle, tls=tls)
    await served.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            # the server ends it (EOF or reset) well before asyncio's own 60 s
            try:
                ended = await asyncio.wait_for(reader.read(1), 10) == b""
            except (ConnectionResetError, ConnectionAbortedError):
                ended = True
            except TimeoutError:
                ended = False
            assert ended, "a connection that never began its handshake was held"
        finally:
            writer.close()
    finally:
        served.close()
