"""SIGTERM drains an HTTP proxy: no new connections, the request in flight is answered
whole (curl gets its 200), a request that arrives on a kept connection meanwhile gets
503 with Connection: close, and idle kept connections are closed between requests —
never a request cut off.

Real processes (`portcullis pdp`, `portcullis proxy http`), curl, a real upstream."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from pdp_harness import free_port
from test_metrics_proxy import proxy_stack, until, value

pytestmark = pytest.mark.integration

KEY = "upstream-key-d41f0e"


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, rest = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(rest.strip())
    return head + await reader.readexactly(length)


async def test_sigterm_answers_the_request_in_flight_and_turns_late_ones_away(tmp_path):
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response({"slow": "done"})

    async def fast(request: web.Request) -> web.Response:
        assert request.headers.get("X-Api-Key") == KEY
        return web.json_response({"fast": True})

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    connection = {
        "name": "billing-api",
        "type": "http",
        "upstream": f"http://127.0.0.1:{port}",
        "credentials": {"provider": "static", "header": "X-Api-Key", "value": KEY},
        "spool_dir": str(tmp_path / "spool"),
    }
    try:
        with proxy_stack(tmp_path, kind="http", connection=connection, drain_seconds=120) as stack:
            tok = stack.token("readonly")
            host, _, listen_port = stack.listen.rpartition(":")
            request = (
                f"GET /fast HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tok}\r\n\r\n"
            ).encode()
            # a kept connection that has had its answer and sits idle
            kept_r, kept_w = await asyncio.open_connection(host, int(listen_port))
            kept_w.write(request)
            first = await read_response(kept_r)
            assert first.startswith(b"HTTP/1.1 200")
            # a connection whose next request is half sent
            late_r, late_w = await asyncio.open_connection(host, int(listen_port))
            late_w.write(f"GET /fast HTTP/1.1\r\nHost: {host}\r\n".encode())
            await late_w.drain()
            # curl's request, held by the upstream
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sS", "-i", "-H", f"Authorization: Bearer {tok}",
                f"http://{stack.listen}/slow",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await asyncio.wait_for(arrived.wait(), 60)

            stack.sigterm_proxy()
            _, body = await until(
                lambda: (r := stack.ready()) and r[0] == 503 and r, "readiness turns off"
            )
            assert "draining" in body["reason"]
            assert value(stack.scrape(), "portcullis_proxy_draining") == 1
            # the idle kept connection is closed, nothing written on it
            assert await asyncio.wait_for(kept_r.read(), 60) == b""
            # the half-sent request, finished now: 503 and Connection: close, then the end
            late_w.write(f"Authorization: Bearer {tok}\r\n\r\n".encode())
            answer = await asyncio.wait_for(late_r.read(), 60)
            head, _, problem = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503")
            assert b"connection: close" in head.lower()
            assert "shutting down" in json.loads(problem)["detail"]
            # a new client finds nobody listening
            with pytest.raises(OSError):
                await asyncio.open_connection(host, int(listen_port))
            # the request in flight is answered whole
            release.set()
            out, err = await asyncio.wait_for(curl.communicate(), 60)
            assert curl.returncode == 0, err
            assert out.startswith(b"HTTP/1.1 200")
            assert json.loads(out.partition(b"\r\n\r\n")[2]) == {"slow": "done"}
            assert stack.proxy is not None
            assert await asyncio.to_thread(stack.proxy.wait, 120) == 0
            for writer in (kept_w, late_w):
                writer.close()
    finally:
        await runner.cleanup()
