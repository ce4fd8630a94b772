"""PDP probe 11 (helper evidence): what a replay says of a proxy's word.

A replay marks an event that lets a command through under a decision the PDP recorded as
a deny or a mask (`!! the PDP recorded deny for this decision`, p8), or under an id the
PDP recorded no decision of in the session. A compromised proxy went around both by
naming the id of another decision of the same session, one the PDP allowed: its DROP
TABLE, denied, read `[allow d-…]` under the id of the SELECT beside it, unmarked. The
PDP's decision record holds the text it decided; an event whose command is not within
it (a statement of a multi-statement text, a text cut by either record) is now marked,
except under a decision the policy let be reused for statements of its shape.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time

import asyncpg
import pytest
from pdp_harness import decide_sql, free_port, open_session, pdp_stub, running_pdp, token
from pg_harness import running_gateway
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli

from pdp.domain.recordings import EVENTS_KIND
from pdp.domain.timeline import OTHER_COMMAND, build_timeline
from pdp.evidence.checkpoints import verify_store
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2

DBA = ("dba", "pii-readers")


async def test_a_denied_command_under_an_allowed_decisions_id_is_marked(tmp_path):
    """Attack (the session's proxy, compromised): the PDP denies DROP TABLE orders and
    allows SELECT id FROM orders; the proxy runs the DROP and records it as `allow` under
    the SELECT's decision id. The replay showed it allowed, no mark, no count."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        denied = await decide_sql(stub, opened.session_id, "DROP TABLE orders")
        assert denied.verdict == pdp_pb2.DENY
        allowed = await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        assert allowed.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK)
        said = pdp_pb2.Verdict.Name(allowed.verdict).lower()
        # the proxy's own Decide of a text holding the denied one (a comment decides nothing)
        holder = await decide_sql(stub, opened.session_id, "SELECT 1 -- DROP TABLE orders")
        assert holder.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK)
        now = time.time()  # (a time the PDP's clock rules out is marked too: p12)
        events = [
            {"time": now + 0.1, "direction": "client", "type": "command",
             "command": "SELECT id FROM orders", "decision_id": allowed.decision_id,
             "verdict": said},
            {"time": now + 0.2, "direction": "client", "type": "command",
             "command": "DROP TABLE orders",
             "decision_id": allowed.decision_id, "verdict": said},
            {"time": now + 0.3, "direction": "client", "type": "command",
             "command": "DROP TABLE orders",
             "decision_id": holder.decision_id,
             "verdict": pdp_pb2.Verdict.Name(holder.verdict).lower()},
        ]  # fmt: skip
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(events)
            )
        )
    replay = await asyncio.to_thread(_cli, config_path, "replay", opened.session_id)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    lines = replay.stdout.splitlines()
    drops = [line for line in lines if "DROP TABLE orders" in line]
    assert len(drops) == 2, replay.stdout
    assert all("!! the PDP recorded this decision of another command" in d for d in drops)
    select = next(line for line in lines if "SELECT id FROM orders" in line)
    assert "!!" not in select, replay.stdout
    assert "!! 2 command(s)" in replay.stdout, replay.stdout


async def _timeline_of(store, session_id: str):
    opened = (await store.query(kind="session.open", session_id=session_id))[0]
    closed = await store.query(kind="session.close", session_id=session_id)
    events = await store.query(kind=EVENTS_KIND, session_id=session_id)
    decisions = await store.query(kind="decision", session_id=session_id)
    return build_timeline(opened, closed[0] if closed else None, events, decisions, [])


def _psql(gw, tok: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", gw.dsn(tok), "-At", "-v", "ON_ERROR_STOP=0"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_genuine_postgres_session_has_no_disputed_command(tmp_path):
    """What the real proxy records is never marked: a multi-statement text, statements of
    one shape answered from the cache, asyncpg's prepared statements (extended protocol)
    and a long statement cut in its record and its event."""
    async with running_gateway(tmp_path) as gw:
        tok = gw.token("dana", DBA)
        script = (
            "select 1 as one; select 2 as two;\n"
            + "".join(f"select id from orders where id = {n};\n" for n in range(5))
            + "select '"
            + "x" * 70000
            + "' as long;\n"
        )
        run = await asyncio.to_thread(_psql, gw, tok, script)
        assert run.returncode == 0, run.stderr
        conn = await asyncpg.connect(gw.dsn(tok))
        statement = await conn.prepare("SELECT id FROM orders WHERE id = $1")
        for n in range(3):
            await statement.fetch(n)
        await conn.fetch("SELECT name FROM customers WHERE id = $1", 2)
        await conn.close()
        await asyncio.sleep(1.0)  # the recorder's last flush
        opened = await gw.pdp.store.query(kind="session.open")
        assert opened
        for record in opened:
            timeline = await _timeline_of(gw.pdp.store, record.session_id)
            commands = [e for e in timeline.entries if e.type == "command"]
            assert commands
            disputed = [(e.command[:80], e.pdp_verdict) for e in commands if e.pdp_verdict]
            assert not disputed, disputed
            assert all(e.pdp_verdict != OTHER_COMMAND for e in timeline.entries)
        # and audit verify weighs every command against its own decision's text
        # (tests/test_evidence_probe_p2.py), naming none
        report = await verify_store(gw.pdp.store, gw.pdp.signer.public_key)
    assert report.ok, report.problems
    assert report.counted.verdicts.startswith(
        "every command recorded as let through names a decision of its session that let"
        " that very command through"
    ), report.counted.verdicts


# -- the approval webhook ----------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_the_webhook_does_not_follow_a_redirect(status: int) -> None:
    """Attack (whoever answers at the webhook's URL: a receiver taken over, a DNS name
    that lapsed): answer the notice with a redirect to an address inside the PDP's
    network. The PDP followed it (aiohttp's default), POSTing the notice there (307,
    308) or a GET (301-303): a request from the PDP to an address of the answerer's
    choosing. Now a redirect is a refusal: not followed, counted, logged, not delivered."""
    from aiohttp import web
    from test_console_probe_p2 import _request

    from pdp.api.webhooks import WebhookNotifier

    inside: list[str] = []
    delivered: list[str] = []

    async def hook(_: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": "/inside"})

    async def reached(request: web.Request) -> web.Response:
        inside.append(request.method)
        return web.Response(status=200)

    async def noted(r) -> None:
        delivered.append(r.id)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_route("*", "/inside", reached)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    notifier = WebhookNotifier(f"http://127.0.0.1:{port}/hook", noted)
    try:
        notifier(_request())
        await asyncio.gather(*list(notifier._tasks))  # its one delivery, to its end
    finally:
        await notifier.close()
        await runner.cleanup()
    assert inside == [], inside
    assert delivered == [] and notifier.refused == 1


async def test_a_webhook_notice_is_signed_by_the_pdps_key() -> None:
    """Attack (anyone who learns the hook's URL: it sits in chat integrations' settings,
    proxies' logs): POST a notice of one's own to the receiver ('approval needed: ...
    approve a-…'), which had no way to tell it from the PDP's. With the PDP's signer each
    notice carries an Ed25519 signature over a fixed prefix, its timestamp and its exact
    body, by the key the evidence bundles hold; a changed body or timestamp fails it."""
    from aiohttp import web
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from test_console_probe_p2 import _request

    from pdp.api import webhooks
    from pdp.api.webhooks import WebhookNotifier
    from pdp.evidence.signing import Signer, notice_message

    got: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    async def noted(_r) -> None:
        return None

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    signer = Signer(Ed25519PrivateKey.generate())
    notifier = WebhookNotifier(f"http://127.0.0.1:{port}/hook", noted, signer=signer)
    try:
        notifier(_request())
        await asyncio.gather(*list(notifier._tasks))
    finally:
        await notifier.close()
        await runner.cleanup()
    [(headers, body)] = got
    assert "a-hook" in json.loads(body)["text"]
    assert headers[webhooks.KEY_ID_HEADER] == signer.key_id
    timestamp = headers[webhooks.TIMESTAMP_HEADER]
    signature = base64.b64decode(headers[webhooks.SIGNATURE_HEADER])
    signer.public_key.verify(signature, notice_message(timestamp, body))
    with pytest.raises(InvalidSignature):
        signer.public_key.verify(signature, notice_message(timestamp, body + b" "))
    with pytest.raises(InvalidSignature):
        signer.public_key.verify(signature, notice_message(str(int(timestamp) + 1), body))
    assert not notice_message(timestamp, body).startswith(b"{")  # never a signed document


# -- approvals ---------------------------------------------------------------------------


async def test_a_request_of_a_session_its_proxy_closed_cannot_be_approved(tmp_path):
    """Attack (a requester, and an approver talked into it later): ask for an UPDATE, end
    the session, then get the request approved ('it was only pending, just click'). The
    approval bound to that session could run nothing, yet the evidence held an approved
    UPDATE, and approvers were asked about a session long gone. Approving it is refused
    now (denying it is still recorded); a session.open request has no session to end."""
    import grpc

    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        asked = await decide_sql(
            stub, opened.session_id, "UPDATE orders SET total = 0 WHERE id = 1"
        )
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason="client closed")
        )
        approver = token(config, "sam@example.com", ("security",))
        try:
            await stub.ResolveApproval(
                pdp_pb2.ResolveApprovalRequest(
                    token=approver, approval_id=asked.approval_id, approve=True, reason="ok"
                )
            )
            refused = ""
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
            refused = exc.details() or ""
        # withdrawn as the session ended (evidence6: tests/test_pdp_probe_p16.py)
        assert "already withdrawn" in refused, refused
        assert app.approvals.requests[asked.approval_id].state == "withdrawn"
