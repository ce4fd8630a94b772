"""What an open, idle Postgres session holds (issue 27: 10,000 idle sessions in one worker
within 250 MiB; bench/postgres/bench_idle.py --trace).

Once the session's relay owns the sockets, the start-up's stream objects (asyncio's
StreamReader, StreamReaderProtocol and StreamWriter, about 1.5 KiB a socket) are let go:
nothing of the client's socket's streams stays alive, and the upstream's only while the
relay keeps asyncio's own StreamWriter (one that would close the socket when collected).
Its expiry is a place in the runtime's Deadlines, no timer of its own. The session still
works, and still ends as before when the client leaves.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import asyncpg
from pg_harness import running_gateway

from proxies.postgres.proxy import ClientConnection


def _streams_of(transport: object) -> list[object]:
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, asyncio.StreamReader | asyncio.StreamWriter)
        and getattr(o, "_transport", None) is transport
    ]


async def test_an_idle_session_holds_no_stream_objects_of_its_client(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), statement_cache_size=0)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            held = [c for c in gw.proxy.runtime.drain._ends if isinstance(c, ClientConnection)]
            assert len(held) == 1
            client = held[0]
            relay = client._relay
            assert relay is not None
            assert client.reader is None and client.writer is None and client.upstream is None
            gc.collect()
            assert _streams_of(relay._client.transport) == []
            if relay._server.kept is None:  # a RelayWriter upstream: let go as well
                assert _streams_of(relay._server.transport) == []
            # its expiry (the token's) is the runtime's one timer's, none of its own
            assert len(gw.proxy.runtime.deadlines) == 1
            # the session goes on as before
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()
        for _ in range(600):  # (its close reaches the PDP first: a loaded machine is slow)
            if not gw.proxy.runtime.sessions:
                break
            await asyncio.sleep(0.05)
        assert not gw.proxy.runtime.sessions
        assert len(gw.proxy.runtime.deadlines) == 0


async def test_sessions_of_one_identity_share_their_settings(tmp_path: Path) -> None:
    """Start-up parameters, pins and settings are read, never changed, and alike for the
    sessions of one identity: one dict each for all of them, not one per session."""
    async with running_gateway(tmp_path) as gw:
        tok = gw.token()
        conns = [await asyncpg.connect(gw.dsn(tok), statement_cache_size=0) for _ in range(3)]
        try:
            for conn in conns:
                assert await conn.fetchval("SELECT 1") == 1
            held = [c for c in gw.proxy.runtime.drain._ends if isinstance(c, ClientConnection)]
            assert len(held) == 3
            first, *others = held
            assert first._relay is not None
            for other in others:
                assert other._relay is not None
                assert other._params is first._params
                assert other._watch_params is first._watch_params
                assert other.session_settings is first.session_settings
                assert other._relay.tracker.pinned is first._relay.tracker.pinned
        finally:
            for conn in conns:
                await conn.close()
