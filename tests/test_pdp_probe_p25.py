"""PDP probe 25 (helper auditsec3): how often one identity may open sessions.

Attack (an agent with an ordinary reader token, straight at a proxy or, with a proxy's
credential, at the PDP): the policy caps the sessions an identity holds open at once
(max_sessions_per_identity), not how often it opens them. Opening and closing in a loop,
one token had every open evaluated, recorded in the chain (session.open and
session.close) and kept in the session ledger, as fast as it could ask: the store and
the PDP's evaluation workers were anyone's to fill. Now each identity may open
`pdp.session_opens_per_minute` sessions a minute (default 600, a bucket refilling at that
rate; pdp/domain/open_rate.py); past it OpenSession is refused before any evaluation
(gRPC RESOURCE_EXHAUSTED, saying when to try again), the refusal recorded as a failed
logon is (auth.rejected, under the same per-connection budget), nothing of a session
recorded. The same person spelt another way is the same identity; another identity
opens as before.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store); and a real Postgres proxy
in front of it, whose client is refused with the PDP's words.
"""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token
from pg_harness import running_gateway

from pdp.domain.open_rate import DEFAULT_PER_MINUTE, OpenRate
from portcullis.v1 import pdp_pb2

RITA = "rita@example.com"


async def _open_and_close(stub, tok: str) -> str:
    opened = await open_session(stub, tok)
    assert opened.session_id, list(opened.decision.reasons)
    await stub.CloseSession(
        pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason="client_disconnect")
    )
    return opened.session_id


def _still() -> float:
    return 0.0  # a clock that does not move: no open comes back while a test runs


async def test_one_identity_opening_in_a_loop_is_refused_past_its_rate(tmp_path):
    config = pdp_config(tmp_path)
    rita = token(config, RITA)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        assert pdp.service.open_rate.per_minute == DEFAULT_PER_MINUTE == 600
        pdp.service.open_rate = OpenRate(5, clock=_still)
        for _ in range(5):
            await _open_and_close(stub, rita)
        opens_before = len(await pdp.store.query(kind="session.open"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, rita)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = refused.value.details() or ""
        assert f"{RITA} opened more than 5 sessions in a minute" in details
        assert "try again in" in details
        # nothing of a session recorded for it; the refusal is
        assert len(await pdp.store.query(kind="session.open")) == opens_before
        rejected = await pdp.store.query(kind="auth.rejected")
        assert [r.subject for r in rejected if "sessions in a minute" in r.body["reason"]] == [RITA]
        # another identity opens as before
        assert (await open_session(stub, token(config, "bob@example.com"))).session_id


async def test_the_same_person_spelt_otherwise_shares_the_budget(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        pdp.service.open_rate = OpenRate(3, clock=_still)
        for _ in range(3):
            await _open_and_close(stub, token(config, RITA))
        for variant in ("RITA@example.com", "rita+x@example.com"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await open_session(stub, token(config, variant))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, variant


async def test_a_client_of_the_postgres_proxy_is_refused_with_the_reason(tmp_path):
    async with running_gateway(tmp_path) as gw:
        gw.pdp.service.open_rate = OpenRate(2, clock=_still)
        tok = gw.token(RITA)
        for _ in range(2):
            conn = await asyncpg.connect(gw.dsn(tok))
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
        with pytest.raises(asyncpg.PostgresError) as refused:
            await asyncpg.connect(gw.dsn(tok))
        assert "session refused" in str(refused.value)
        # another reader is let in
        conn = await asyncpg.connect(gw.dsn(gw.token("bob@example.com")))
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
