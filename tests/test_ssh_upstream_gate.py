"""The upstream session channel opened ahead of its decision (proxies/ssh/upstream.py),
against a real sshd: open, it carries nothing until the gate says allowed; denied, the
server never starts a session (its log, a marker file); allowed, the command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from ssh_harness import Sshd

from proxies.ssh import upstream

pytestmark = pytest.mark.integration


class Collect(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    def __init__(self) -> None:
        self.out = b""
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: Any, datatype: Any) -> None:
        self.out += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@contextlib.asynccontextmanager
async def connected(tmp_path: Path) -> AsyncIterator[tuple[Sshd, asyncssh.SSHClientConnection]]:
    """A real sshd under `tmp_path` and a client connection to it, stopped after."""
    sshd = Sshd(tmp_path / "sshd").start()
    try:
        async with asyncssh.connect(
            "127.0.0.1", sshd.port, username=sshd.user, client_keys=[str(sshd.user_key)],
            known_hosts=None, config=None, agent_path=None,
        ) as conn:  # fmt: skip
            yield sshd, conn
    finally:
        sshd.stop()


def collecting(sessions: list[Collect]) -> Callable[[], Collect]:
    """A session factory appending each session it makes to `sessions`."""

    def factory() -> Collect:
        sessions.append(Collect())
        return sessions[-1]

    return factory


async def test_the_installed_asyncssh_takes_the_gated_channel() -> None:
    # a newer asyncssh whose channel changed shape falls back (no overlap): say so here
    assert upstream.GATED


async def test_a_gated_channel_sends_its_request_only_when_allowed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with connected(tmp_path) as (sshd, conn):
        loop = asyncio.get_running_loop()
        sessions: list[Collect] = []
        factory = collecting(sessions)
        command = f"touch {marker}; echo ran"
        denied: asyncio.Future[upstream.Request | None] = loop.create_future()
        opening = asyncio.ensure_future(upstream.open_session(conn, denied))
        await asyncio.sleep(0.5)  # the open is confirmed long before this
        assert not opening.done() and sessions == []  # open, waiting, nothing sent
        denied.set_result(None)
        with pytest.raises(asyncssh.ChannelOpenError):
            await opening
        assert sshd.sessions_started() == 0 and not marker.exists()

        allowed: asyncio.Future[upstream.Request | None] = loop.create_future()
        opening = asyncio.ensure_future(upstream.open_session(conn, allowed))
        await asyncio.sleep(0.2)
        allowed.set_result(upstream.Request(factory, command=command))
        await opening
        await sessions[-1].closed
        assert sessions[-1].out == b"ran\n"
        assert sshd.sessions_started() == 1 and marker.exists()


async def test_a_channel_opened_ahead_sends_its_request_only_when_allowed(tmp_path: Path) -> None:
    # session_ahead: the open sent before the client's request is even known (the proxy
    # keeps one for a connection's next channel); denied, it closes having sent the open
    marker = tmp_path / "marker"
    async with connected(tmp_path) as (sshd, conn):
        loop = asyncio.get_running_loop()
        sessions: list[Collect] = []
        factory = collecting(sessions)
        command = f"touch {marker}; echo ran"
        ahead = upstream.session_ahead(conn)
        assert ahead is not None
        await asyncio.sleep(0.5)  # opened, nothing asked
        assert ahead._ahead is not None and ahead._ahead.done()
        assert not ahead.opening_failed()
        denied: asyncio.Future[upstream.Request | None] = loop.create_future()
        opening = asyncio.ensure_future(upstream.open_session(conn, denied, ahead))
        await asyncio.sleep(0.2)
        assert not opening.done() and sessions == []
        denied.set_result(None)
        with pytest.raises(asyncssh.ChannelOpenError):
            await opening
        await asyncio.sleep(0.2)
        assert sshd.sessions_started() == 0 and not marker.exists()

        ahead = upstream.session_ahead(conn)
        allowed: asyncio.Future[upstream.Request | None] = loop.create_future()
        allowed.set_result(upstream.Request(factory, command=command))
        await upstream.open_session(conn, allowed, ahead)
        await sessions[-1].closed
        assert sessions[-1].out == b"ran\n"
        assert sshd.sessions_started() == 1 and marker.exists()
