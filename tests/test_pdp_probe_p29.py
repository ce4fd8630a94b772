"""PDP probe 29 (helper auditsec5): a stolen proxy credential speaks for no session.

Attack (someone who read a proxy's credential, `pdp.proxy_credential_file` or the
metadata of its calls, and can reach the PDP's gRPC port): the credential named the
proxy, and every call about a session was checked only against the proxy that opened
it, so the thief could ask decisions, record events, wait on and withdraw approvals and
close any open session of that proxy, writing evidence (and a signed "credential never
exposed" statement) for sessions it never carried. Now each session is bound to the key
its proxy made for it at OpenSession (held in that proxy's memory only; the PDP keeps an
HMAC of it): a call without it, or with another, is refused (PERMISSION_DENIED) and
recorded, the key itself never; after a PDP restart too.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store); a real Postgres proxy with
its real PDP client and a real psycopg client for the live session.
"""

from __future__ import annotations

import json

import grpc
import pytest
from pdp_harness import (
    SESSION_KEYS,
    open_session,
    pdp_config,
    pdp_raw,
    pdp_stub,
    running_pdp,
    token,
)
from test_proxy_auth import _code, _events, _forged_close, _stream_code, pdp_for_a_database

from pdp.domain.recordings import EVENTS_KIND
from portcullis.config import parse_config
from portcullis.v1 import pdp_pb2

DENIED = grpc.StatusCode.PERMISSION_DENIED
SERVED = (pdp_pb2.ALLOW, pdp_pb2.MASK)  # a reader's select: masked by the value detectors


def _decide(sid: str, sql: str, key: str = "") -> pdp_pb2.DecideRequest:
    command = pdp_pb2.Command(kind="postgres.query", raw=sql)
    return pdp_pb2.DecideRequest(session_id=sid, command=command, session_key=key)


async def _thief_refused_everywhere(address: str, sid: str, approval_id: str, key: str) -> None:
    """Every call about session sid from the proxy's own credential, with `key` (none, or
    another): each refused, none of them stored."""
    async with pdp_stub(address, keys=False) as thief:
        assert await _code(thief.Decide(_decide(sid, "select 1", key))) == DENIED
        call = pdp_pb2.DecideCall(call_id=3, request=_decide(sid, "select 1", key))
        answers = [answer async for answer in thief.DecideStream(iter([call]))]
        assert answers[0].code == DENIED.value[0]
        assert await _code(thief.RecordEvents(_events(sid, "DROP TABLE x", key))) == DENIED
        batches = pdp_pb2.RecordBatchesRequest(batches=[_events(sid, "forged", key)])
        assert "key" in (await thief.RecordBatches(batches)).results[0].error
        wait = pdp_pb2.AwaitApprovalRequest(
            session_id=sid, approval_id=approval_id, timeout_seconds=1, session_key=key
        )
        assert await _stream_code(thief.AwaitApproval(wait)) == DENIED
        withdraw = pdp_pb2.WithdrawApprovalRequest(
            session_id=sid, approval_id=approval_id, session_key=key, reason="forged"
        )
        assert await _code(thief.WithdrawApproval(withdraw)) == DENIED
        assert await _code(thief.CloseSession(_forged_close(sid, key))) == DENIED


async def test_a_stolen_proxy_credential_speaks_for_none_of_its_sessions(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as proxy:
        sid = (await open_session(proxy, token(config))).session_id
        key = SESSION_KEYS[sid]
        # a pending approval of the session, for the thief to wait on and withdraw
        asked = await proxy.Decide(_decide(sid, "insert into orders values (1)"))
        approval_id = asked.decision.approval_id
        assert asked.decision.verdict == pdp_pb2.REQUIRE_APPROVAL and approval_id

        for presented in ("", "x" * 43, key[:-1] + ("A" if key[-1] != "A" else "B")):
            await _thief_refused_everywhere(app.address, sid, approval_id, presented)

        refused = [r.body for r in await app.store.query(kind="proxy.refused")]
        assert {r["rpc"] for r in refused} >= {
            "Decide",
            "RecordEvents",
            "AwaitApproval",
            "WithdrawApproval",
            "CloseSession",
        }
        assert not await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert not await app.store.query(kind="session.close", session_id=sid)
        assert app.approvals.requests[approval_id].state == "pending"
        # the key is in no record (its HMAC is, in the session's open record)
        for record in await app.store.query(limit=10_000):
            assert key not in json.dumps(record.body)

        # the proxy that holds the key goes on, and its close is the one recorded
        assert (await proxy.Decide(_decide(sid, "select 1"))).decision.verdict in SERVED
        assert (await proxy.RecordEvents(_events(sid, "select 1"))).recorded == 1
        await proxy.CloseSession(_forged_close(sid))
        assert await app.store.query(kind="session.close", session_id=sid)


async def test_an_open_without_a_usable_key_is_refused(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address, keys=False) as proxy:
        for key in ("", "short", "k" * 129, "é" * 40, "a b" * 16):
            request = pdp_pb2.OpenSessionRequest(
                token=token(config),
                connection=pdp_pb2.Connection(name="orders-db", type="postgres"),
                client_addr="127.0.0.1:5",
                session_key=key,
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await proxy.OpenSession(request)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith("session_key:")
        assert not await app.store.query(kind="session.open")


async def test_the_key_still_binds_the_session_after_a_pdp_restart(tmp_path):
    raw = pdp_raw(tmp_path)
    config = parse_config(raw, base_dir=tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as proxy:
        sid = (await open_session(proxy, token(config))).session_id
    # the same store, keys and address: the session is found again from its record
    async with running_pdp(parse_config(raw, base_dir=tmp_path)) as app:
        async with pdp_stub(app.address, keys=False) as thief:
            assert await _code(thief.Decide(_decide(sid, "select 1"))) == DENIED
            assert await _code(thief.CloseSession(_forged_close(sid))) == DENIED
        async with pdp_stub(app.address) as proxy:
            decided = await proxy.Decide(_decide(sid, "select 1"))
            assert decided.decision.verdict in SERVED
            await proxy.CloseSession(_forged_close(sid))


async def test_a_live_proxy_session_cannot_be_closed_or_recorded_by_the_thief(tmp_path):
    async with pdp_for_a_database(tmp_path, pdp_raw(tmp_path)) as db:
        app = db.app
        async with db.client() as conn:
            assert await (await conn.execute("select 1")).fetchone() == (1,)
            (opened,) = await app.store.query(kind="session.open")
            sid = opened.session_id
            # the thief holds the very credential the proxy's calls carry
            stolen = db.config.pdp.proxy_credential_file.read_text().strip()
            assert opened.body["session"]["proxy"] == "credential:local"
            async with pdp_stub(app.address, stolen, keys=False) as thief:
                assert await _code(thief.CloseSession(_forged_close(sid))) == DENIED
                events = _events(sid, "select pg_sleep(0) -- forged")
                assert await _code(thief.RecordEvents(events)) == DENIED
            # the client's session goes on at the PDP, decided and recorded
            assert await (await conn.execute("select 2")).fetchone() == (2,)
        closes = await app.store.query(kind="session.close", session_id=sid)
        assert [c.body["closed_by"] for c in closes] == ["proxy"]
        recorded = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert recorded and "forged" not in json.dumps([r.body for r in recorded])
