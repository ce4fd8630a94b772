"""Attacks on the upstream credential (probe p2): an upstream that hands it back.

An upstream that holds the session's password (it asked for it in clear, which the proxy
now answers only over verified TLS: tests/test_creds_probe_p3.py; or its operator is the
hostile party) and refuses the session with it in its message: the proxy relays what the
server says to the client, and the refusal's text went to the client as it came, the
password in it, raw or encoded. The scanner behind `credential_exposed` saw it and the
evidence said so, but the client had it. Every byte to a client goes through
ClientOutput: a chunk holding the session's secret in any form the scanner knows is
withheld, and the client's connection ends.

Real components: a PDP and the Postgres proxy in process (pg_harness); the upstream is
the hostile party itself (a few lines of the wire protocol below), the client raw bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pg_harness import gateway_on, scratch_database

from proxies.runtime.exposure import ClientOutput

pytestmark = pytest.mark.integration


def _error(text: str) -> bytes:
    fields = b"SFATAL\x00C28P01\x00M" + text.encode() + b"\x00\x00"
    return b"E" + struct.pack("!i", 4 + len(fields)) + fields


@contextlib.asynccontextmanager
async def serving(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A hostile upstream: `serve` answers each connection on a free 127.0.0.1 port (a
    connection the proxy drops is no failure); yields the port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            await reader.readexactly(length - 4)  # the StartupMessage
            await serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _refusing(
    answer: str,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A server that refuses every session at its start-up with `answer` as its message
    (the session's password in it)."""

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_error(answer))
        await writer.drain()

    return serve


def _startup(user: str, database: str) -> bytes:
    params = f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!ii", 8 + len(params), 196608) + params


def _password(text: str) -> bytes:
    body = text.encode() + b"\0"
    return b"p" + struct.pack("!i", 4 + len(body)) + body


def _everything_sent(port: int, database: str, token: str) -> bytes:
    """Every byte the proxy sends a client that starts up with `token` (blocking)."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_startup("agent", database))
        sent_password = False
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
            if not sent_password and b"R\x00\x00\x00\x08\x00\x00\x00\x03" in received:
                sock.sendall(_password(token))
                sent_password = True
    return bytes(received)


ECHOES: dict[str, Callable[[str], str]] = {
    "raw": lambda p: f'password authentication failed: you sent "{p}"',
    "base64": lambda p: "debug " + base64.b64encode(p.encode()).decode(),
    "hex": lambda p: "debug " + p.encode().hex(),
    "upper-cased": lambda p: "debug " + p.upper(),
}


@pytest.mark.parametrize("form", sorted(ECHOES))
async def test_a_hostile_upstreams_refusal_does_not_hand_the_client_the_password(
    tmp_path: Path, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with scratch_database() as (name, role, password):
        async with (
            serving(_refusing(ECHOES[form](password))) as port,
            gateway_on(tmp_path, name, role, password, f"127.0.0.1:{port}") as gw,
        ):
            tok = gw.token("alice@example.com", ("readonly",))
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, tok)
            stored = await gw.pdp.store.query()
    assert stored  # the session's events were read
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    recorded = "".join(repr(e.body) for e in stored)
    assert sent  # the proxy answered the client (its start-up, then the end)
    for forbidden in (
        password.encode(),
        base64.b64encode(password.encode())[:16],
        password.encode().hex().encode(),
        password.upper().encode(),
    ):
        assert forbidden not in sent
        assert forbidden.decode() not in logged
        assert forbidden.decode() not in recorded


def test_a_chunk_holding_the_secret_is_withheld_and_nothing_after_it_goes() -> None:
    written: list[bytes] = []
    ended: list[bool] = []

    class Transport:
        def write(self, data: bytes) -> None:
            written.append(data)

        def abort(self) -> None:
            ended.append(True)

    transport = Transport()
    out = ClientOutput(transport.write)
    out.write(b"before ")
    out.guard(["s3cr3t-value"])
    out.write(b"fine ")
    out.write(b"here: s3cr3t-value!")
    out.write(b"after")
    assert written == [b"before ", b"fine "]
    assert ended == [True]
    assert out.exposed and out.withheld
    assert out.sent == len(b"before fine ")
