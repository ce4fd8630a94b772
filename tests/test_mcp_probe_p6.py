"""Probing the MCP exchange (brief P6): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP) or, where the server's answer must be exact, a
transcript (test_mcp_exchange's Agent). The attacker is a reader (outside pii-readers:
tool results masked):

- a session the proxy forgot to make room for another (an identity's least recently used
  past its bound, the oldest past the proxy's 10,000) stayed open upstream: the SDK's
  server keeps a session until DELETE or its idle timeout (30 minutes), and refuses
  everyone's next past its max_sessions, so a reader beginning sessions as fast as the
  proxy let it held three times its bound open upstream, and many identities filled the
  server. The proxy now ends each such session upstream (DELETE with its id, on the
  endpoint it was handed out on);
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from test_mcp_proxy import SECRET, initialize, mcp_stack, post, rpc

from proxies.http.mcp_sessions import SessionBinding

pytestmark = pytest.mark.integration


async def _open_upstream(port: int, session_id: str) -> bool:
    """Whether the upstream server still holds this session (asked directly, with the
    credential: what any client of the server, or its bound on sessions, meets)."""
    async with httpx2.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"http://127.0.0.1:{port}/mcp",
            json=rpc(9, "ping"),
            headers={
                "X-Api-Key": SECRET,
                "Mcp-Session-Id": session_id,
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2025-06-18",
            },
        )
    return answer.status_code == 200


@pytest.mark.parametrize("bound", ["identity", "proxy"])
async def test_a_session_the_proxy_forgets_is_ended_upstream(tmp_path: Path, bound: str) -> None:
    async with mcp_stack(tmp_path) as stack:
        assert stack.proxy.mcp is not None
        if bound == "identity":  # one session an identity, one idle 0 s gives way
            stack.proxy.mcp.bindings = SessionBinding(per_identity=1, idle=0)
        else:  # one session in all
            stack.proxy.mcp.bindings = SessionBinding(max_sessions=1)
        first = await initialize(stack, stack.token("mallory@example.com", "readonly"))
        assert await _open_upstream(stack.upstream.port, first)
        other = "mallory@example.com" if bound == "identity" else "pia@example.com"
        second = await initialize(stack, stack.token(other, "readonly"))
        assert await _open_upstream(stack.upstream.port, second)
        assert not await _open_upstream(stack.upstream.port, first)


async def test_another_session_is_answered_while_a_large_message_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack (reader token; found by the HTTP helper): POST a JSON-RPC message of a few
    MiB (a tools/call whose argument is long). It was parsed strictly and its tree checked
    on the event loop every session of the proxy shares, ~0.4 s of CPU at 4 MiB, during
    which no other client was answered. A body past PARSE_ON_LOOP is now read in a thread:
    here the reading waits until another client was answered meanwhile (on the loop, none
    could be)."""
    import asyncio
    import threading

    from proxies.http import mcp_codec

    loop = asyncio.get_running_loop()
    reading = asyncio.Event()
    served = threading.Event()
    waited: list[bool] = []
    parse = mcp_codec.parse_request

    def parse_request(body: bytes, *args: object) -> object:
        if len(body) > 100_000:
            loop.call_soon_threadsafe(reading.set)
            waited.append(served.wait(10))
        return parse(body, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(mcp_codec, "parse_request", parse_request)
    async with mcp_stack(tmp_path) as stack:
        mallory = stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, mallory)
        large = rpc(2, "tools/call", {"name": "lookup_customer", "arguments": {"q": "a" * 200_000}})
        sent = asyncio.create_task(post(stack, mallory, large, session_id))
        await asyncio.wait_for(reading.wait(), 30)
        other = await initialize(stack, stack.token("pia@example.com", "readonly"))
        served.set()
        status, _, _ = await sent
    assert waited == [True]
    assert other
    assert status in (200, 403), status
