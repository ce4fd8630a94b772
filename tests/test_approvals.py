"""Approvals end to end: an agent's UPDATE waits, a person decides, never their own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import yaml
from aiohttp import web
from pg_harness import running_gateway

from pdp.domain.recordings import session_events

SECURITY = ("security",)


@contextlib.asynccontextmanager
async def webhook_at(port: int, received: list[dict[str, Any]]) -> AsyncIterator[None]:
    """An approvals webhook at http://127.0.0.1:{port}/hook: each JSON body posted to it
    is appended to `received`."""

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    runner = web.AppRunner(web.Application())
    runner.app.router.add_post("/hook", hook)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def approvals_cli(gw, tmp_path, token: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "approver.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "pdp": {
                    "listen": gw.pdp.address,
                    "engine": {"policies": str(gw.config.pdp.engine.policies)},
                },
                "identity": {"dev": True, "dev_key": str(gw.config.identity.dev_key)},
            }
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "-c", str(path), "approvals", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PORTCULLIS_TOKEN": token},
    )


async def sam_runs(gw, tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`portcullis approvals ARGS` run by sam@example.com, a security approver."""
    return await asyncio.to_thread(
        approvals_cli, gw, tmp_path, gw.token("sam@example.com", SECURITY), *args
    )


async def pending_id(gw, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [r for r in gw.pdp.approvals.requests.values() if r.state == "pending"]
        if pending:
            return pending[0].id
        await asyncio.sleep(0.1)
    raise AssertionError("no approval request appeared")


async def test_update_waits_for_a_security_approver_then_runs(tmp_path):
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 60}) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", ("readonly",))))
        notices: list[str] = []
        conn.add_log_listener(lambda c, m: notices.append(m.message))
        update = asyncio.ensure_future(
            conn.execute(
                "/* justification: fix Bob's name, ticket 42 */ "
                "UPDATE customers SET name = 'Robert' WHERE id = 2"
            )
        )
        approval_id = await pending_id(gw)
        request = gw.pdp.approvals.requests[approval_id]
        assert request.justification == "fix Bob's name, ticket 42"
        # the requester cannot approve, even holding an approver group
        own = await asyncio.to_thread(
            approvals_cli,
            gw,
            tmp_path,
            gw.token("alice@example.com", ("readonly", "security")),
            "approve",
            approval_id,
            "--reason",
            "trust me",
        )
        assert own.returncode != 0 and "own request" in own.stderr
        # someone outside the approver groups cannot either
        outsider = await asyncio.to_thread(
            approvals_cli,
            gw,
            tmp_path,
            gw.token("eve@example.com", ("readonly",)),
            "approve",
            approval_id,
            "--reason",
            "why not",
        )
        assert outsider.returncode != 0
        listed = await sam_runs(gw, tmp_path, "list", "--pending")
        assert approval_id in listed.stdout
        approved = await sam_runs(
            gw, tmp_path, "approve", approval_id, "--reason", "ticket 42 checked"
        )
        assert approved.returncode == 0, approved.stderr
        assert await asyncio.wait_for(update, 15) == "UPDATE 1"
        assert any(approval_id in n for n in notices)
        with gw.admin() as admin:
            assert (
                admin.execute("SELECT name FROM customers WHERE id = 2").fetchone()[0] == "Robert"
            )
        # the same identity may re-run exactly that command within the TTL without asking
        assert (
            await conn.execute(
                "/* justification: fix Bob's name, ticket 42 */ "
                "UPDATE customers SET name = 'Robert' WHERE id = 2"
            )
            == "UPDATE 1"
        )
        assert len(gw.pdp.approvals.requests) == 1
        # the approved write ran with the reader's read-only default lifted for it alone:
        # the session is read-only again, at the server, for whatever comes next
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        await conn.close()
        await asyncio.sleep(0.5)
        events = [r.body["event"] for r in await gw.pdp.store.query(kind="approval")]
        assert events[0] == "requested" and "approved" in events
        assert events.count("executed") == 2
        assert any(
            e["type"] == "command" and "UPDATE" in e["command"]
            for e in await session_events(gw.pdp.store)
        )


async def test_denied_and_expired_requests_fail_naming_the_request(tmp_path):
    # 5 s: the approver's CLI (a Python process started here) must deny before the request
    # expires, which took past 2 s on a loaded 2-core machine
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 5}) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", ("readonly",))))
        update = asyncio.ensure_future(conn.execute("DELETE FROM orders WHERE id = 10"))
        approval_id = await pending_id(gw)
        denied = await sam_runs(
            gw, tmp_path, "deny", approval_id, "--reason", "not during the freeze"
        )
        assert denied.returncode == 0, denied.stderr
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as err:
            await asyncio.wait_for(update, 15)
        assert approval_id in str(err.value) and "sam@example.com" in str(err.value)
        assert "not during the freeze" in str(err.value)
        # nobody decides: the wait ends and the request expires; the client is told so at
        # once, and how to ask again (not "still pending", which it no longer is)
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as err:
            await conn.execute("DELETE FROM orders WHERE id = 11")
        assert "a-" in str(err.value)
        assert "expired" in str(err.value) and "run the command again" in str(err.value)
        assert "still pending" not in str(err.value)
        expired_id = str(err.value).split("request ", 1)[1].split()[0]
        assert gw.pdp.approvals.requests[expired_id].state == "expired"
        await asyncio.sleep(1.5)
        states = {r.state for r in gw.pdp.approvals.requests.values()}
        assert states == {"denied", "expired"}
        await conn.close()
        with gw.admin() as admin:
            assert admin.execute("SELECT count(*) FROM orders").fetchone()[0] == 2


async def test_http_api_and_webhook_with_retry_until_delivered(tmp_path):
    import aiohttp
    from pdp_harness import free_port

    received: list[dict] = []
    hook_port, http_port = free_port(), free_port()

    async with running_gateway(
        tmp_path,
        approvals={"timeout_seconds": 60, "webhook": f"http://127.0.0.1:{hook_port}/hook"},
        pdp={
            "listen": f"127.0.0.1:{free_port()}",
            "http_listen": f"127.0.0.1:{http_port}",
            "engine": {"type": "embedded", "policies": str(gw_rego()), "workers": 2},
            "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
            "signing_key": str(tmp_path / "signing.key"),
        },
    ) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", ("readonly",))))
        update = asyncio.ensure_future(conn.execute("UPDATE orders SET total = 0 WHERE id = 11"))
        approval_id = await pending_id(gw)
        await asyncio.sleep(1.0)  # the webhook receiver is down: delivery keeps retrying
        assert received == []
        async with webhook_at(hook_port, received):
            deadline = time.monotonic() + 20
            while not received and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert received and approval_id in received[0]["text"]
            assert received[0]["approval"]["requester"]["subject"] == "alice@example.com"
            base = f"http://127.0.0.1:{http_port}/v1/approvals"
            async with aiohttp.ClientSession() as http:
                own = gw.token("alice@example.com", ("security",))
                async with http.post(
                    f"{base}/{approval_id}/approve",
                    json={"reason": "mine"},
                    headers={"Authorization": f"Bearer {own}"},
                ) as response:
                    assert response.status == 403
                async with http.post(
                    f"{base}/{approval_id}/approve", json={"reason": "fine"}
                ) as response:
                    assert response.status == 401
                approver = gw.token("sam@example.com", SECURITY)
                headers = {"Authorization": f"Bearer {approver}"}
                async with http.get(f"{base}?pending=1", headers=headers) as response:
                    assert approval_id in str(await response.json())
                async with http.post(
                    f"{base}/{approval_id}/approve", json={"reason": "fine"}, headers=headers
                ) as response:
                    assert response.status == 200
            assert await asyncio.wait_for(update, 15) == "UPDATE 1"
        await conn.close()
        events = [r.body["event"] for r in await gw.pdp.store.query(kind="approval")]
        assert "notified" in events


def gw_rego():
    from pdp_harness import REGO

    return REGO


async def test_two_replicas_share_approvals_through_postgres(tmp_path, pg_database):
    """A request made at one PDP replica is approved through another; LISTEN/NOTIFY wakes
    the first, which releases the waiting proxy."""
    from pdp_harness import free_port, pdp_config

    second_listen = f"127.0.0.1:{free_port()}"
    store = {"type": "postgres", "dsn": pg_database}
    async with running_gateway(tmp_path, store=store, approvals={"timeout_seconds": 60}) as gw:
        other = pdp_config(tmp_path / "replica", listen=second_listen, store=store)
        (tmp_path / "replica").mkdir(exist_ok=True)
        config_path = tmp_path / "replica.yaml"
        config_path.write_text(
            yaml.safe_dump(
                {
                    "pdp": {
                        "listen": second_listen,
                        "store": store,
                        "engine": {"type": "embedded", "policies": str(gw_rego()), "workers": 1},
                        # replicas of one store sign with one key (a replica that
                        # makes its own over signed evidence is refused at start)
                        "signing_key": str(gw.config.pdp.signing_key),
                    },
                    "identity": {"dev": True, "dev_key": str(gw.config.identity.dev_key)},
                }
            )
        )
        replica = subprocess.Popen(
            [sys.executable, "-m", "pdp.cli", "-c", str(config_path), "pdp"],
            stderr=subprocess.DEVNULL,
        )
        assert other.pdp.listen == second_listen
        try:
            conn = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", ("readonly",))))
            update = asyncio.ensure_future(
                conn.execute("UPDATE orders SET total = 5 WHERE id = 10")
            )
            approval_id = await pending_id(gw)
            deadline = time.monotonic() + 30
            while True:
                approved = await asyncio.to_thread(
                    subprocess.run,
                    [
                        sys.executable,
                        "-m",
                        "pdp.cli",
                        "-c",
                        str(config_path),
                        "approvals",
                        "approve",
                        approval_id,
                        "--reason",
                        "via the other replica",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env={**os.environ, "PORTCULLIS_TOKEN": gw.token("sam@example.com", SECURITY)},
                )
                if approved.returncode == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)  # the replica is still starting
            assert approved.returncode == 0, approved.stderr
            assert await asyncio.wait_for(update, 10) == "UPDATE 1"
            await conn.close()
        finally:
            replica.terminate()
            replica.wait(timeout=30)


JIT_POLICY = """package portcullis

# contractors get sessions only through a just-in-time grant of 3 seconds
decision := {"verdict": "require_approval", "reasons": ["contractors need a grant"],
             "approval": {"approvers": ["group:security"], "ttl_seconds": 3}} if {
  input.command.kind == "session.open"
  not input.approval
}

decision := {"verdict": "allow", "reasons": ["granted"]} if {
  input.command.kind == "session.open"
  input.approval.state == "approved"
  input.approval.approver != input.identity.subject
}

decision := {"verdict": "allow", "reasons": ["reads"]} if input.command.kind == "postgres.query"

approvers := {"allowed": true, "reasons": ["security"]} if {
  "security" in input.approver.groups
  lower(input.approver.subject) != lower(input.request.requester.subject)
} else := {"allowed": false, "reasons": ["not an approver"]}
"""


async def test_just_in_time_session_grant_expires_and_closes_the_session(tmp_path):
    policies = tmp_path / "jit"
    policies.mkdir()
    (policies / "policy.rego").write_text(JIT_POLICY)
    async with running_gateway(tmp_path, policies=policies, approvals={"timeout_seconds": 8}) as gw:
        contractor = gw.token("carl@example.com", ("contractors",))
        connecting = asyncio.ensure_future(asyncpg.connect(gw.dsn(contractor)))
        approval_id = await pending_id(gw)
        assert gw.pdp.approvals.requests[approval_id].command_kind == "session.open"
        approved = await sam_runs(gw, tmp_path, "approve", approval_id, "--reason", "on-call fix")
        assert approved.returncode == 0, approved.stderr
        conn = await asyncio.wait_for(connecting, 15)
        assert await conn.fetchval("SELECT count(*) FROM orders") == 2
        # within the grant, a new session opens without asking again
        second = await asyncpg.connect(gw.dsn(contractor))
        await second.close()
        await asyncio.sleep(4)  # the 3 s grant runs out: the open session is ended
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await conn.fetchval("SELECT 1")
        # and a new session needs a new approval (none comes: refused after the wait)
        with pytest.raises(asyncpg.PostgresError):
            await asyncio.wait_for(asyncpg.connect(gw.dsn(contractor)), 60)
        closes = await gw.pdp.store.query(kind="session.close")
        assert any(c.body["reason"] == "grant_expired" for c in closes)


async def _approve(gw, approval_id: str) -> None:
    approver = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
    await gw.pdp.approvals.decide(approval_id, approver, True, "checked the values")


async def test_an_approval_binds_to_the_parameter_values_and_the_session(tmp_path):
    """Approving `UPDATE ... SET note = $1 WHERE id = $2` with ('VIP', 1) approves those
    values in that session: other values, or another session, ask again (issue 22 §2)."""
    sql = "UPDATE customers SET note = $1 WHERE id = $2"
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 3}) as gw:
        reader = gw.token("alice@example.com", ("readonly",))
        conn = await asyncpg.connect(gw.dsn(reader))
        update = asyncio.ensure_future(conn.execute(sql, "VIP", 1))
        first = await pending_id(gw)
        request = gw.pdp.approvals.requests[first]
        assert request.parameters == ["VIP", "1"]  # the approver sees the values
        await _approve(gw, first)
        assert await asyncio.wait_for(update, 15) == "UPDATE 1"
        # the same values again in this session: the approval is reused
        assert await conn.execute(sql, "VIP", 1) == "UPDATE 1"
        # other values: a new request, which nobody decides, so the update is refused
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(sql, "wiped", 2)
        others = [r for r in gw.pdp.approvals.requests.values() if r.id != first]
        assert [r.parameters for r in others] == [["wiped", "2"]]
        await conn.close()
        # the same values in another session of the same identity: asked again
        conn2 = await asyncpg.connect(gw.dsn(reader))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn2.execute(sql, "VIP", 1)
        await conn2.close()
        assert len(gw.pdp.approvals.requests) == 3
        with gw.admin() as admin:
            notes = dict(admin.execute("SELECT id, note FROM customers").fetchall())
        assert notes[1] == "VIP" and notes[2] != "wiped"


async def test_a_cancel_during_the_wait_ends_it_at_once_and_withdraws_the_request(tmp_path):
    """psql's Ctrl-C sends a CancelRequest on a new connection with the proxy-issued key."""
    from proxies.postgres import codec

    async with running_gateway(tmp_path, approvals={"timeout_seconds": 60}) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
        parser = codec.BackendParser()
        pending: list = []

        async def until(kind):
            seen = []
            while True:
                while not pending:
                    pending.extend(parser.feed(await asyncio.wait_for(reader.read(65536), 15)))
                message = pending.pop(0)
                seen.append(message)
                if isinstance(message, kind):
                    return seen

        startup = {"user": "agent", "database": gw.database}
        writer.write(codec.StartupMessage(codec.PROTOCOL_VERSION, startup).encode())
        await until(codec.AuthenticationCleartextPassword)
        token = gw.token("alice@example.com", ("readonly",))
        writer.write(codec.PasswordMessage.from_password(token).encode())
        greeting = await until(codec.ReadyForQuery)
        key = next(m for m in greeting if isinstance(m, codec.BackendKeyData))
        writer.write(codec.Query("UPDATE customers SET name = 'x' WHERE id = 1").encode())
        approval_id = await pending_id(gw)
        started = time.monotonic()
        _, cancel = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
        cancel.write(codec.CancelRequest(key.pid, key.secret).encode())
        await cancel.drain()
        answer = await until(codec.ReadyForQuery)
        cancel.close()
        assert time.monotonic() - started < 10  # not the 60 s wait
        errors = [m.fields for m in answer if isinstance(m, codec.ErrorResponse)]
        assert errors and errors[0]["C"] == "57014", errors
        assert approval_id in errors[0]["M"] and "withdrawn" in errors[0]["M"]
        request = gw.pdp.approvals.requests[approval_id]
        assert request.state == "withdrawn" and "withdrawn" in request.events
        writer.write(codec.Query("SELECT 1").encode())  # the session goes on
        rows = [m for m in await until(codec.ReadyForQuery) if isinstance(m, codec.DataRow)]
        assert rows and rows[0].values == [b"1"]
        writer.close()


async def test_the_requester_withdraws_and_shows_their_own_request(tmp_path):
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 60}) as gw:
        requester = gw.token("alice@example.com", ("readonly",))
        conn = await asyncpg.connect(gw.dsn(requester))
        update = asyncio.ensure_future(
            conn.execute("UPDATE customers SET note = 'x' WHERE id = 1; DELETE FROM orders")
        )
        approval_id = await pending_id(gw)
        shown = await asyncio.to_thread(approvals_cli, gw, tmp_path, requester, "show", approval_id)
        assert shown.returncode == 0, shown.stderr
        assert "2 statements" in shown.stdout and "DELETE FROM orders" in shown.stdout
        assert "history: requested" in shown.stdout
        other = await asyncio.to_thread(
            approvals_cli, gw, tmp_path, gw.token("eve@example.com", ("readonly",)),
            "withdraw", approval_id,
        )  # fmt: skip
        assert other.returncode != 0
        withdrawn = await asyncio.to_thread(
            approvals_cli, gw, tmp_path, requester, "withdraw", approval_id, "--reason", "oops"
        )
        assert withdrawn.returncode == 0, withdrawn.stderr
        assert "withdrawn" in withdrawn.stdout
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncio.wait_for(update, 15)
        await conn.close()
        assert gw.pdp.approvals.requests[approval_id].state == "withdrawn"
