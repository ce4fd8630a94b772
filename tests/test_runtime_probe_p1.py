"""The proxies' shared runtime, probed (p1): what anyone who reaches a proxy's port, with
no token or a reader's, can hold of it.

Each test names the attack it tries. Real components: the machine's PostgreSQL, a PDP and
the Postgres proxy in process (pg_harness), raw sockets and asyncpg as the clients.
"""

from __future__ import annotations

import asyncio
import struct

import asyncpg
import pytest
from pg_harness import running_gateway

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
            assert gw.proxy.listener.gate.starting["127.0.0.1"] == 0
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
