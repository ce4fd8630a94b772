"""PDP probe 14 (helper evidence4): forwarding to a SIEM, and the PDP's own APIs.

The HTTP forwarder followed redirects (aiohttp's default): whoever answers at the
collector's URL (a collector taken over, a DNS name that lapsed) could answer 307/308
and the PDP POSTed the whole audit stream, with the collector's credential headers
(`X-Splunk-Token`, any but Authorization), to an address of the answerer's choice,
inside the PDP's network too; a 301-303 made the POST a GET, whose 200 there counted the
batch delivered though the collector never took it. The approval webhook refused
redirects already (p11); the forwarder now does too: a 3xx is a refusal, the batch is
kept and sent again to the configured URL alone.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from pdp_harness import free_port, open_session, pdp_config, pdp_stub, running_pdp, token


class _Collector:
    """Answers every POST at /ingest with `status` (a redirect to `location`), or takes
    it (status 200); keeps what it was sent."""

    def __init__(self, status: int = 200, location: str = "") -> None:
        self.port = free_port()
        self.status, self.location = status, location
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self._runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.Response:
        self.posts.append((request.method, dict(request.headers), await request.read()))
        if self.status != 200:
            return web.Response(status=self.status, headers={"Location": self.location})
        return web.json_response({"ok": True})

    async def __aenter__(self) -> _Collector:
        app = web.Application()
        app.router.add_route("*", "/ingest", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ingest"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_the_forwarder_does_not_follow_a_redirect(tmp_path, status: int) -> None:
    """Attack (whoever answers at the collector's URL): redirect the PDP's batches to an
    internal address. The records and the collector's token reached it."""
    async with _Collector() as inside, _Collector(status, inside.url) as collector:
        forwarding = [{"type": "http", "url": collector.url,
                       "headers": {"X-Splunk-Token": "siem-secret"}}]  # fmt: skip
        config = pdp_config(tmp_path, forwarding=forwarding)
        async with running_pdp(config) as app, pdp_stub(app.address) as stub:
            await open_session(stub, token(config))
            deadline = time.monotonic() + 30
            # followed (it reaches inside), or refused and sent again (a refusal keeps it)
            while not inside.posts and len(collector.posts) < 2:
                assert time.monotonic() < deadline, "the forwarder never sent a batch"
                await asyncio.sleep(0.1)
    assert not inside.posts, "the PDP followed the collector's redirect"
    assert all(method == "POST" for method, _, _ in collector.posts)


# -- a proxy speaking in the PDP's voice at close ------------------------------------------


async def test_a_proxy_cannot_close_its_session_as_lost_by_the_pdp(tmp_path) -> None:
    """Attack (the session's proxy): close the session with reason `proxy_lost`, the
    reason only the PDP's reaper gives. The record read as the PDP having lost the proxy
    (replay: 'events it had not sent yet are missing'; verify: closed by the PDP), and,
    the session counted as reaped, the PDP went on taking the proxy's events for it after
    its own close. A proxy's close is its own now: its events after it are refused and
    nothing reads it as the PDP's."""
    import json

    import grpc

    from pdp.domain.sessions import REAPED_REASONS
    from portcullis.v1 import pdp_pb2

    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        for reason in sorted(REAPED_REASONS):
            opened = await open_session(stub, token(config))
            await stub.CloseSession(
                pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason=reason)
            )
            (closed,) = await app.store.query(kind="session.close", session_id=opened.session_id)
            assert closed.body["reason"] != "proxy_lost", closed.body
            late = [{"time": time.time(), "direction": "client", "type": "command",
                     "command": "DROP TABLE orders", "verdict": "allow"}]  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordEvents(
                    pdp_pb2.RecordEventsRequest(
                        session_id=opened.session_id, events_json=json.dumps(late)
                    )
                )
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, reason
