"""Probes of the PDP's evidence and API surfaces, ninth round (helper E): approvals decided
by a namesake, decisions answered just before a kill -9, /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import pytest
import yaml
from pdp_harness import (
    REGO,
    connection,
    decide_sql,
    open_session,
    pdp_config,
    pdp_raw,
    pdp_stub,
    running_pdp,
    token,
)
from test_pdp_kill_under_load import start_pdp

from pdp.api.proxy_auth import ProxyKey
from pdp.store import open_store
from portcullis.config import StoreSettings, load_config
from portcullis.v1 import pdp_pb2
from portcullis.wire import CREDENTIAL_METADATA
from proxies.runtime.pdp_client import PDPClient

# -- approvals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "namesake",
    [
        "\uff41lice@example.com",  # fullwidth a: NFKC makes it alice
        "ali\u200bce@example.com",  # a zero-width space inside
        "alice@example.com\u00a0",  # a no-break space after
        "ALICE@EXAMPLE.COM",  # case (refused before: the control)
    ],
    ids=["fullwidth", "zero-width", "no-break-space", "case"],
)
async def test_nobody_approves_their_own_request_under_a_variant_of_their_name(tmp_path, namesake):
    """Attack (a requester who can get a token whose subject is their own written
    otherwise, e.g. an IdP that keeps a username as typed): the self-approval check
    compared subjects lowered only, so alice's request was approved by
    '\\uff41lice@example.com' (a fullwidth a), 'ali\\u200bce@...' (an invisible character) or
    'alice@example.com\\u00a0'. Subjects are now compared as one reads them (NFKC,
    case folded, format characters and surrounding spaces dropped)."""
    config = pdp_config(tmp_path)
    alice = token(config, "alice@example.com", ("readonly",))
    twin = token(config, namesake, ("security",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        asked = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (1)")
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ResolveApproval(
                pdp_pb2.ResolveApprovalRequest(
                    token=twin, approval_id=asked.approval_id, approve=True, reason="me"
                )
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "own request" in str(refused.value.details())
        assert pdp.approvals.requests[asked.approval_id].state == "pending"


# -- a kill -9 under load ----------------------------------------------------------------


async def test_every_decision_answered_before_a_kill_9_is_in_the_chain(tmp_path):
    """Attack on "every decision is written before it answers" (DESIGN.md): the PDP as its
    own process, 16 sessions deciding SELECTs (distinct, so none is reused) over the
    proxies' DecideStream, killed -9 mid-load. Every decision a proxy was told — its id
    and verdict — is in the chain read after the kill, and so is every session open it
    was answered; the chain verifies. (Found to hold: the store commits, and with
    synchronous: full fdatasyncs, before a decision is answered.)"""
    raw = pdp_raw(tmp_path, engine={"type": "embedded", "policies": str(REGO), "workers": 1})
    path = tmp_path / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    pdp = start_pdp(path, config.pdp.listen)
    credential = ProxyKey.load_or_create(config.pdp.proxy_key).issue("probe", ["*"])
    client = PDPClient(config.pdp.listen, metadata=((CREDENTIAL_METADATA, credential),))
    await client.start()
    reader = token(config, "alice@example.com", ("readonly",))
    told: dict[str, str] = {}  # decision id -> the verdict the proxy was told
    opened: list[str] = []
    stop = asyncio.Event()

    async def session(n: int) -> None:
        grant = await client.open_session(reader, connection(), f"127.0.0.1:{n}", "probe")
        opened.append(grant.session_id)
        i = 0
        while not stop.is_set():
            i += 1
            ruling = await client.decide(grant.session_id, "postgres.query", f"SELECT {n}, {i}")
            if ruling.decision_id:
                told[ruling.decision_id] = ruling.kind.wire

    sessions = [asyncio.create_task(session(n)) for n in range(16)]
    try:
        deadline = time.monotonic() + 60
        while len(told) < 300:  # under load: a bound on a hung run, not a timing assertion
            assert time.monotonic() < deadline and pdp.poll() is None
            await asyncio.sleep(0.02)
        os.kill(pdp.pid, signal.SIGKILL)
        pdp.wait()
    finally:
        stop.set()
        await asyncio.gather(*sessions, return_exceptions=True)
        await client.close()
        if pdp.poll() is None:
            pdp.kill()
            pdp.wait()
    store = open_store(StoreSettings(type="sqlite", path=tmp_path / "audit.db"))
    await store.start()
    try:
        recorded = {r.id: r.body.get("verdict") for r in await store.query(kind="decision")}
        opens = {r.session_id for r in await store.query(kind="session.open")}
        assert (await store.verify()).ok
    finally:
        await store.close()
    assert len(told) >= 300 and len(opened) == 16
    missing = {i: v for i, v in told.items() if i not in recorded}
    assert not missing, f"{len(missing)} decisions answered and not in the chain"
    assert {i: recorded[i] for i in told} == told
    assert set(opened) <= opens
