"""Readiness that means something: a proxy is ready only while its PDP answers (a proxy
without one would deny every command), and the PDP only while its audit store takes
writes (a PDP that cannot record would deny every decision).

Real processes for the proxy (`portcullis proxy postgres`, `portcullis pdp`); the PDP's
store test runs the PDP in process on the machine's PostgreSQL, closed to connections
by the server itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import pytest
from pdp_harness import decide_sql, free_port, open_session, pdp_config, pdp_stub, running_pdp
from pdp_harness import token as dev_token
from test_metrics_proxy import eventually, http_get, proxy_stack, until, value
from test_store import refusing_connections

from portcullis.v1 import pdp_pb2

pytestmark = pytest.mark.integration


def test_proxy_readiness_follows_its_pdp(tmp_path):
    with proxy_stack(tmp_path) as stack:
        status, body = stack.ready()
        assert status == 200 and body["ready"] is True
        assert body["connection"] == "orders-db" and body["worker"] == 0
        assert http_get(stack.url("/healthz"))[0] == 200

        stack.stop_pdp()
        status, body = eventually(
            lambda: (r := stack.ready()) and r[0] == 503 and r, "not ready without its PDP"
        )
        assert body["ready"] is False and "unreachable" in body["reason"]
        assert http_get(stack.url("/healthz"))[0] == 200  # alive: only not ready
        assert value(stack.scrape(), "portcullis_proxy_pdp_up", connection="orders-db") == 0
        # what readiness promised: a client gets nothing through now
        refused = stack.psql(stack.token("readonly"), "select 1")
        assert refused.returncode != 0

        stack.start_pdp()
        status, body = eventually(
            lambda: (r := stack.ready()) and r[0] == 200 and r, "ready again with its PDP"
        )
        assert body["ready"] is True
        assert value(stack.scrape(), "portcullis_proxy_pdp_up", connection="orders-db") == 1
        assert stack.psql(stack.token("readonly"), "select 1").stdout.strip() == "1"


def test_a_proxy_whose_pdp_never_answered_is_not_ready(tmp_path):
    """Started before its PDP: alive, listening, and not ready."""
    with proxy_stack(tmp_path) as stack:
        stack.stop_pdp()
        assert stack.proxy is not None
        stack.proxy.terminate()
        stack.proxy.wait(timeout=60)
        stack.proxy = None
        stack.proxy = subprocess.Popen(
            [sys.executable, "-m", "proxies", "postgres", "-c", str(stack.path)],
            stdout=subprocess.DEVNULL, stderr=stack.proxy_log.open("a"), text=True,
            env=stack.env, cwd=stack.tmp,
        )  # fmt: skip
        status, body = eventually(
            lambda: (r := stack.ready()) and r[0] != 0 and r, "the health endpoint answers"
        )
        assert status == 503 and body["ready"] is False
        assert "not answered" in body["reason"] or "unreachable" in body["reason"]
        stack.start_pdp()
        eventually(lambda: stack.ready()[0] == 200, "ready once the PDP answers")


async def test_pdp_is_not_ready_while_its_store_refuses_writes(tmp_path, pg_database):
    http = f"127.0.0.1:{free_port()}"
    base = pdp_config(tmp_path)
    config = pdp_config(
        tmp_path,
        store={"type": "postgres", "dsn": pg_database},
        pdp={
            "listen": base.pdp.listen,
            "http_listen": http,
            "engine": {"type": "embedded", "policies": str(base.pdp.engine.policies), "workers": 1},
            "store": {"type": "postgres", "dsn": pg_database},
            "signing_key": str(tmp_path / "signing.key"),
        },
    )

    async def readyz(session: aiohttp.ClientSession) -> tuple[int, dict]:
        async with session.get(f"http://{http}/readyz") as response:
            return response.status, json.loads(await response.text())

    async with (
        running_pdp(config) as app,
        pdp_stub(app.address) as stub,
        aiohttp.ClientSession() as client,
    ):
        assert (await readyz(client))[0] == 200
        opened = await open_session(stub, dev_token(config, groups=("dba",)))
        async with refusing_connections(pg_database):
            denied = await decide_sql(stub, opened.session_id, "select 1")
            assert denied.verdict == pdp_pb2.DENY
            status, body = await readyz(client)
            assert status == 503 and body["ready"] is False
            assert "audit store refuses writes" in body["reason"]
            # it stays so while the store refuses (the readiness probe cannot write either)
            await asyncio.sleep(2.5)  # past one probe interval: the probe runs, and fails
            assert (await readyz(client))[0] == 503

        # no decision comes (a load balancer sends none to a PDP that is not ready): the
        # probe finds the store writable again, and leaves a record of the outage
        async def ready_again() -> bool:
            return (await readyz(client))[0] == 200

        deadline = asyncio.get_running_loop().time() + 60
        while not await ready_again():
            assert asyncio.get_running_loop().time() < deadline, "never ready again"
            await asyncio.sleep(0.3)
        recovered = await app.store.query(kind="store.recovered")
        assert recovered and "refused_before" in recovered[-1].body
        assert (await app.store.verify()).ok
        allowed = await decide_sql(stub, opened.session_id, "select 1")
        assert allowed.verdict != pdp_pb2.DENY  # (a dba outside pii-readers: mask)


async def test_async_helpers_are_importable():
    """(until is the async twin of eventually, shared with the drain tests)"""
    assert await until(lambda: True, "true") is True
