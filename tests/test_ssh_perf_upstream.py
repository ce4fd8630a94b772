"""The SSH proxy's upstream connection starts when the session opens, and is the session's own.

A fresh client connection through the proxy pays for two logins, the client's to the
proxy and the proxy's to the upstream: the upstream's (TCP, key exchange, login with the
session's credential) now starts as soon as the PDP opened the session, overlapping the
client's first channel, its request and that request's decision (proxies/ssh/proxy.py
ClientConnection._open). Against a real sshd and PDP: a client that has logged in and
opened nothing has its upstream connection up, with one session channel opened ahead
and nothing run; a client refused at login starts nothing upstream; two sessions of one
identity each have an upstream connection of their own; a denied first request still
reaches the upstream with nothing (no session, no marker), and its channel opened ahead
is closed. An exec whose answer the policy lets be reused is not held as an approval wait
of its own (a task and a wait between its request and its write upstream).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from test_ssh_proxy import Stack, ssh_stack

import proxies.ssh.channel as channel_module
from proxies.ssh.proxy import ClientConnection

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(tmp_path: Path) -> Any:
    async with ssh_stack(tmp_path) as s:
        yield s


async def upstream_of(stack: Stack, client: ClientConnection) -> asyncssh.SSHClientConnection:
    """The upstream connection the proxy started for this client, once it is up."""
    assert client._connecting is not None, "no upstream connection was started"
    return await asyncio.wait_for(asyncio.shield(client._connecting), 60)


async def test_the_upstream_connects_once_the_session_opens(stack: Stack) -> None:
    async with await stack.connect():
        (client,) = stack.proxy.clients
        upstream = await upstream_of(stack, client)  # before any channel of the client's
        assert client.upstream is upstream
        assert not client.channels
        assert client._spare is not None and client._spare._ahead is not None
        await asyncio.wait_for(asyncio.shield(client._spare._ahead), 60)
        # opened ahead, carrying nothing (and on a root account the one held for reaps)
        assert len(upstream._channels) == 1 + (client._reserve is not None)
    assert stack.sshd.sessions_started() == 0


async def test_a_refused_login_starts_nothing_upstream(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[ClientConnection] = []
    original = ClientConnection.upstream_soon

    def upstream_soon(self: ClientConnection) -> None:
        started.append(self)
        original(self)

    monkeypatch.setattr(ClientConnection, "upstream_soon", upstream_soon)
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            "127.0.0.1", stack.port, username="ann", password="not-a-token", known_hosts=None,
            client_keys=None, agent_path=None, config=None, preferred_auth="password",
        )  # fmt: skip
    assert all(c.session is not None for c in started)
    assert not [c for c in started if c._connecting is not None]


async def test_each_session_has_its_own_upstream_connection(stack: Stack) -> None:
    async with await stack.connect() as first, await stack.connect() as second:
        clients = list(stack.proxy.clients)
        assert len(clients) == 2
        ups = [await upstream_of(stack, c) for c in clients]
        assert ups[0] is not ups[1]
        sessions = [c.session for c in clients]
        assert sessions[0] is not None and sessions[1] is not None
        assert sessions[0].id != sessions[1].id
        for conn in (first, second):
            assert (await conn.run("uptime")).exit_status == 0
    assert stack.sshd.sessions_started() == 2


async def test_a_denied_first_request_reaches_the_upstream_with_nothing(stack: Stack) -> None:
    marker = stack.tmp / "marker"
    async with await stack.connect() as conn:
        (client,) = stack.proxy.clients
        result = await conn.run(f"touch {marker}")
        assert result.exit_status == 1
        assert result.stderr.startswith("portcullis: denied: ")
        upstream = await upstream_of(stack, client)

        # the one opened ahead for the next channel, and on a root account the one held
        # for reaps (taken by a reap as a command ends, then opened anew)
        def held() -> int:
            return 1 + (client._reserve is not None)

        for _ in range(200):  # the closes are answered by sshd
            if not client._reaps and len(upstream._channels) <= held():
                break
            await asyncio.sleep(0.05)
        assert len(upstream._channels) == held()
        assert (await conn.run("uptime")).exit_status == 0
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 1


async def test_a_reused_answer_is_not_held_as_a_wait(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an exec whose answer the policy lets be reused is answered on its own way: no task of
    # its own and no wait for it (channel.Channel._held_by) between the request and the
    # exec written upstream; nor is one the PDP decides: while it is decided there is no
    # wait to stop, only a request to approve is held as a wait (a client's Ctrl-C or close
    # withdraws it: test_ssh_sessions, test_ssh_exec_path)
    held: list[str] = []
    original = channel_module.Channel._held_by

    async def held_by(self: Any, session: Any, approval_id: str, deciding: Any) -> Any:
        held.append(self.raw)
        return await original(self, session, approval_id, deciding)

    monkeypatch.setattr(channel_module.Channel, "_held_by", held_by)
    marker = stack.tmp / "marker"
    async with await stack.connect() as conn:
        for _ in range(3):
            result = await conn.run("uptime")
            assert result.exit_status == 0 and "load average" in result.stdout
        denied = await conn.run(f"touch {marker}")
        assert denied.exit_status == 1
        assert (await conn.run("uptime")).exit_status == 0  # asked again after a deny
    assert held == []
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 4
    decisions = await stack.pdp.store.query(kind="decision")
    asked = [d.body.get("raw") for d in decisions if d.body.get("kind") == "ssh.exec"]
    assert asked == ["uptime", f"touch {marker}", "uptime"]
