"""The PDP's HTTP listener (health, metrics, approvals, console) caps the connections it holds.

Attack (anyone who reaches pdp.http_listen; no token): open connections and send half a
request head (`GET /healthz HTTP/1.1\r\nX-a: `) on each. aiohttp keeps such a connection
until its idle timeout, so a client opening them faster than they time out held as many
as it liked: every one a file descriptor of the PDP process, whose gRPC listener (every
proxy's decisions), audit store and JWKS/webhook clients share the same limit. Now the
listener holds at most HTTP_CONNECTIONS_PER_PEER from one address (and HTTP_CONNECTIONS in
all); one past the cap is closed as it is accepted, and others are still served.
"""

from __future__ import annotations

import asyncio
import contextlib

from pdp_harness import free_port, pdp_raw, running_pdp

from pdp.app import HTTP_CONNECTIONS_PER_PEER
from portcullis.config import parse_config
from portcullis.connection_gate import ConnectionGate

HALF_A_HEAD = b"GET /healthz HTTP/1.1\r\nHost: pdp\r\nX-a: "


async def _get_healthz(host: str, port: int, source: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: pdp\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Whether the server ended the connection (EOF or reset) within two seconds."""
    try:
        return await asyncio.wait_for(reader.read(1), 2) == b""
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    except TimeoutError:
        return False


async def test_half_open_requests_from_one_peer_cannot_hold_the_listener(tmp_path):
    raw = pdp_raw(tmp_path)
    port = free_port()
    raw["pdp"]["http_listen"] = f"127.0.0.1:{port}"
    config = parse_config(raw, base_dir=tmp_path)
    held: list[asyncio.StreamWriter] = []
    try:
        async with running_pdp(config) as pdp:
            for _ in range(HTTP_CONNECTIONS_PER_PEER):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(HALF_A_HEAD)
                held.append(writer)
            await asyncio.sleep(0.2)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append(writer)
            writer.write(HALF_A_HEAD)
            assert await _closed_by_peer(reader), "a connection past the cap was held"
            # another address is still served, and so is this one once its own are gone
            answer = await _get_healthz("127.0.0.1", port, "127.0.0.2")
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
            assert pdp.http_gate.refused >= 1
            for writer in held:
                writer.close()
            held.clear()
            for _ in range(50):
                if pdp.http_gate.total == 0:
                    break
                await asyncio.sleep(0.05)
            answer = await _get_healthz("127.0.0.1", port, "127.0.0.1")
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    finally:
        for writer in held:
            with contextlib.suppress(Exception):
                writer.close()


def test_the_gate_counts_in_all_and_per_peer() -> None:
    gate = ConnectionGate(per_peer=2, in_all=3)
    a1, a2 = gate.admit("a"), gate.admit("a")
    assert a1 is not None and a2 is not None
    assert gate.admit("a") is None
    b = gate.admit("b")
    assert b is not None
    assert gate.admit("c") is None  # three held in all
    a1.leave()
    a1.leave()  # a place is given back once
    c = gate.admit("c")
    assert c is not None
    assert gate.total == 3 and gate.refused == 2
    for place in (a2, b, c):
        place.leave()
    assert gate.total == 0 and not gate.held
