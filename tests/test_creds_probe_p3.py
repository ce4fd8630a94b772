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
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pg_harness import gateway_on, scratch_database
from test_creds_probe_p2 import _error, _everything_sent, serving

pytestmark = pytest.mark.integration


def _asking(
    given: list[str],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A server that asks for the password in clear (AuthenticationCleartextPassword),
    keeps it in `given` and refuses the session."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"R" + struct.pack("!ii", 8, 3))
        await writer.drain()
        tag = await reader.readexactly(1)
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        body = await reader.readexactly(length - 4)
        if tag == b"p":
            given.append(body.rstrip(b"\x00").decode())
            writer.write(_error("thanks"))
            await writer.drain()

    return serve


async def test_a_plain_upstream_asking_the_password_in_clear_is_not_given_it(
    tmp_path: Path,
) -> None:
    given: list[str] = []
    with scratch_database() as (name, role, password):
        async with (
            serving(_asking(given)) as port,
            gateway_on(tmp_path, name, role, password, f"127.0.0.1:{port}") as gw,
        ):
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, gw.token())
    assert given == []
    assert b"in clear" in sent and password.encode() not in sent
