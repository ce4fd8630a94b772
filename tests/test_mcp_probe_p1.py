"""Probing the MCP exchange as a reader (brief P1): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`; the upstream is
either given as a transcript (test_mcp_exchange's Agent) or a small aiohttp server of the
test's own, so each misbehaviour is exact:

- a request id reused while a masked call with that id was in flight: the second request
  (a ping, read without a mask) took the id's handling, and the tool call's answer then
  came back unmasked;
- an answer in a content coding (gzip) the client did not ask for went to the client
  unread: the credential guard saw compressed bytes, not the upstream credential in them.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from http_upstream import SECRET, http_stack
from pdp_harness import token
from test_http_probe_p5 import app_upstream
from test_mcp_exchange import RESULT, SSE, agent_of, chunks, event, read, tool_call
from test_mcp_proxy import mcp_stack

from proxies.http.mcp import Forward, Reply

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)


async def test_a_reused_request_id_does_not_unmask_a_call_in_flight(tmp_path: Path) -> None:
    async with mcp_stack(tmp_path) as stack:
        mallory = await agent_of(stack, "mallory@example.com", "readonly")
        await mallory.start("sid-m")
        call = await mallory.send("POST", tool_call(5, "find_customer", name="Ann"))
        assert isinstance(call, Forward) and call.reads
        for second in (
            {"jsonrpc": "2.0", "id": 5, "method": "ping"},
            {"jsonrpc": "2.0", "id": 5, "method": "prompts/list"},
            [{"jsonrpc": "2.0", "id": 5, "method": "ping"}],
        ):
            reused = await mallory.send("POST", second)
            if isinstance(reused, Forward):
                # what the upstream may answer it on: the answer to the call, with its id
                answer = event({"jsonrpc": "2.0", "id": 5, "result": RESULT})
                got = await read(await reused.response(200, list(SSE), chunks(answer)))
                assert b"ann@example.com" not in got and b"4111 1111" not in got
            else:
                assert isinstance(reused, Reply)
        # the call's own answer, on its own stream, is masked
        answer = event({"jsonrpc": "2.0", "id": 5, "result": RESULT})
        data = await read(await call.response(200, list(SSE), chunks(answer)))
        assert b"ann@example.com" not in data and b"4111 1111" not in data
        # once answered, the id may be used again
        again = await mallory.send("POST", {"jsonrpc": "2.0", "id": 5, "method": "ping"})
        assert isinstance(again, Forward)


@contextlib.asynccontextmanager
async def coded_mcp_upstream() -> AsyncIterator[int]:
    """An MCP server that answers every POST in gzip, asked for or not, with the key it
    was sent in the result (a debugging echo)."""

    async def answer(request: web.Request) -> web.Response:
        message = await request.json()
        result = {"echo": request.headers.get("X-Api-Key", ""), "pad": "x" * 3000}
        body = json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": result})
        return web.Response(
            body=gzip.compress(body.encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    app = web.Application()
    app.router.add_post("/mcp", answer)
    async with app_upstream(app) as port:
        yield port


@pytest.mark.parametrize("groups", [("readonly",), ("dba", "pii-readers")])
async def test_a_coded_answer_cannot_carry_the_credential_past_the_guard(
    tmp_path: Path, groups: tuple[str, ...]
) -> None:
    async with (
        coded_mcp_upstream() as port,
        http_stack(tmp_path, mcp=True, upstream_url=f"http://127.0.0.1:{port}") as s,
        aiohttp.ClientSession(timeout=TIMEOUT, auto_decompress=True) as client,
    ):
        headers = {
            "Authorization": f"Bearer {token(s.config, 'mallory@example.com', groups)}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "m"}}
        for message in (
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
            {"jsonrpc": "2.0", "id": 2, "method": "ping"},
        ):
            try:
                async with client.post(s.url + "/mcp", json=message, headers=headers) as r:
                    data = await r.read()
            except aiohttp.ClientError:
                continue  # the connection was cut: nothing of the credential went
            assert SECRET.encode() not in data, data[:200]
            assert SECRET.encode() not in gzip_or_raw(data)


def gzip_or_raw(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError):
        return data
