"""Attacks on the upstream credential (probe p3): an upstream that asks for the password.

The Postgres proxy answered AuthenticationCleartextPassword whatever the connection: on a
plain TCP connection whoever answers at the upstream's address (a local user holding
127.0.0.1:5432 while the server restarts, anyone on the path) had the session's password
(Vault-issued or static) for the asking. It now goes in clear only over TLS to a verified
server; SCRAM and md5 prove it without sending it.

Real components: a PDP and the Postgres proxy in process (pg_harness); the upstream is
the hostile party itself (a few lines of the wire protocol below), the client raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pg_harness import gateway_on, scratch_database
from test_creds_probe_p2 import _error, _everything_sent

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _asking_upstream() -> AsyncIterator[tuple[int, list[str]]]:
    """A server that asks for the password in clear (AuthenticationCleartextPassword) and
    refuses the session; yields its port and the passwords it was given."""
    given: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            await reader.readexactly(length - 4)  # the StartupMessage
            writer.write(b"R" + struct.pack("!ii", 8, 3))
            await writer.drain()
            tag = await reader.readexactly(1)
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            if tag == b"p":
                given.append(body.rstrip(b"\x00").decode())
                writer.write(_error("thanks"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], given
    finally:
        server.close()
        await server.wait_closed()


async def test_a_plain_upstream_asking_the_password_in_clear_is_not_given_it(
    tmp_path: Path,
) -> None:
    with scratch_database() as (name, role, password):
        async with (
            _asking_upstream() as (port, given),
            gateway_on(tmp_path, name, role, password, f"127.0.0.1:{port}") as gw,
        ):
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, gw.token())
    assert given == []
    assert b"in clear" in sent and password.encode() not in sent
