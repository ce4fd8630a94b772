"""An expired token opens nothing, and a session ends when the token that opened it expires.

The PDP refuses an expired token at OpenSession, with the same small clock-skew leeway
(identity.leeway_seconds) there as for every command of a session. Past that, the PDP
refuses every command of a session, but what is not decided command by command went on
under an identity nobody vouched for any more: an SSH shell (or a WebSocket) opened a
minute before its token's end ran whatever was typed into it hours later. Now the proxy
ends the session then (the same leeway after the token's expiry), says why, and records
the close as token_expired. Real sshd, PostgreSQL, an aiohttp upstream, the PDP, real clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import asyncpg
import asyncssh
import grpc
import pytest
from http_upstream import http_stack
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token
from pg_harness import running_gateway
from test_ssh_proxy import ssh_stack

from portcullis.config import ConfigError, IdentitySettings, parse_config
from portcullis.v1 import pdp_pb2


async def test_a_token_expired_three_seconds_ago_is_refused_at_open(tmp_path):
    config = pdp_config(tmp_path)
    assert config.identity.leeway_seconds <= 5
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, token(config, groups=("dba",), ttl=-3))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in refused.value.details()


async def test_the_leeway_is_the_same_at_open_and_during_the_session(tmp_path):
    # a token's exp is whole seconds (int(now) + ttl): ttl=-1 has expired 1 to 2 s before
    # it is minted, which leaves the first Decide 2 to 3 s inside a 4 s leeway
    config = pdp_config(tmp_path, identity={"dev": True, "dev_key": str(tmp_path / "dev.key"),
                                            "leeway_seconds": 4})  # fmt: skip
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        # expired 1-2 s ago, inside the 4 s leeway: opens, and its commands are decided
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers"), ttl=-1))
        assert (await decide_sql(stub, opened.session_id, "select 1")).verdict == pdp_pb2.ALLOW
        await asyncio.sleep(3.5)  # now at least 4.5 s past expiry: beyond the leeway
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await decide_sql(stub, opened.session_id, "select 1")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError):  # 5-6 s past: refused at open too
            await open_session(stub, token(config, groups=("dba",), ttl=-5))


def test_the_leeway_is_small_by_default_and_bounded(tmp_path):
    (tmp_path / "rego").mkdir()
    assert IdentitySettings().leeway_seconds <= 5
    with pytest.raises(ConfigError) as err:
        parse_config({"identity": {"dev": True, "leeway_seconds": 3600}}, base_dir=tmp_path)
    assert err.value.key == "identity.leeway_seconds"


TTL = 4  # seconds: long enough to open a session on a loaded machine


async def _closes(store) -> list[str]:
    return [c.body["reason"] for c in await store.query(kind="session.close")]


@pytest.mark.integration
async def test_a_shell_ends_when_its_token_expires(tmp_path: Path) -> None:
    marker = tmp_path / "typed-after-expiry"
    async with ssh_stack(tmp_path) as stack:
        short = token(stack.config, "ann@x.org", ("dba", "pii-readers"), ttl=TTL)
        conn = await asyncssh.connect(
            "127.0.0.1", stack.port, username="ann", password=short, known_hosts=None,
            client_keys=None, agent_path=None, config=None, preferred_auth="password",
        )  # fmt: skip
        process = await conn.create_process(term_type="xterm", term_size=(100, 30))
        process.stdin.write("echo $((6*7))-alive\n")
        await asyncio.wait_for(process.stdout.readuntil("42-alive"), 30)
        await asyncio.sleep(TTL + stack.config.identity.leeway_seconds + 1)
        # typed after the token's end: nothing runs, the connection is gone
        try:
            process.stdin.write(f"touch {marker}; echo $((6*7))-late\n")
        except (asyncssh.Error, OSError, BrokenPipeError):
            pass
        with pytest.raises((asyncssh.Error, asyncio.IncompleteReadError, ConnectionError)):
            await asyncio.wait_for(process.stdout.readuntil("42-late"), 10)
        await asyncio.wait_for(conn.wait_closed(), 10)
        await stack.proxy.settled()
        assert not marker.exists()
        assert "token_expired" in await _closes(stack.pdp.store)


@pytest.mark.integration
async def test_a_postgres_session_ends_when_its_token_expires(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        short = token(gw.config, "alice@example.com", ("readonly",), ttl=TTL)
        conn = await asyncpg.connect(gw.dsn(short))
        try:
            assert await conn.fetchval("SELECT count(*) FROM orders") == 2
            await asyncio.sleep(TTL + gw.config.identity.leeway_seconds + 1)
            with pytest.raises(
                (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)
            ) as ended:
                await conn.fetchval("SELECT 1")
            assert "token" in str(ended.value) or conn.is_closed()
        finally:
            await conn.close()
        for _ in range(50):
            if "token_expired" in await _closes(gw.pdp.store):
                break
            await asyncio.sleep(0.1)
        assert "token_expired" in await _closes(gw.pdp.store)


@pytest.mark.integration
async def test_a_websocket_ends_when_its_token_expires(tmp_path: Path) -> None:
    async with http_stack(tmp_path) as s:
        short = token(s.config, "ann@example.com", ("readonly",), ttl=TTL)
        headers = {"Authorization": f"Bearer {short}"}
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            async with client.ws_connect(s.url + "/ws", headers=headers) as ws:
                await ws.send_str("hello")
                assert await ws.receive_str() == "echo: hello"
                await asyncio.sleep(TTL + s.config.identity.leeway_seconds + 1)
                # the upgrade was decided under a token nobody vouches for any more
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    await ws.send_str("late")
                message = await asyncio.wait_for(ws.receive(), 10)
                ended = ("CLOSE", "CLOSED", "CLOSING", "ERROR")
                assert message.type in {aiohttp.WSMsgType[name] for name in ended}
            # and the token opens nothing now
            async with client.get(s.url + "/v1/invoices/3", headers=headers) as answer:
                assert answer.status == 401
        for _ in range(50):
            if "token_expired" in await _closes(s.pdp.store):
                break
            await asyncio.sleep(0.1)
        assert "token_expired" in await _closes(s.pdp.store)
