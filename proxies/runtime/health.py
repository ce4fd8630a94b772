"""A proxy's HTTP side for operators: /metrics, /healthz, /readyz at `metrics_listen`.

Owns the small HTTP server of one served connection in one worker process, started by
the launcher once the connection's proxy listens (so "ready" never precedes accepting):

- `/metrics`: the connection's registry (proxies.runtime.metrics), Prometheus text format;
- `/healthz`: 200 while the process serves HTTP at all (liveness);
- `/readyz`: 200 only while the proxy accepts, is not draining, and its PDP answers its
  watch (PDPClient: ServerInfo over the channel the DecideStream uses); 503 otherwise,
  with the reason — a load balancer stops sending clients to a proxy that would deny
  every command.

The address: the connection's `metrics_listen` (host:port). With `workers: N`, worker i
listens on port + i (each worker has its own registry, sessions and PDP stream; Prometheus
scrapes each and sums by connection). Nothing sensitive is served here: no session,
token or command text appears in any answer.

Nobody needs a token to connect, and an HTTP server holds a connection that has sent half
a request head until its keep-alive timeout, each a file descriptor of the process whose
clients, upstream, PDP and Vault connections share the limit: at most MAX_PER_PEER
connections per peer address and MAX_IN_ALL in all are held (a scraper or a load
balancer keeps a few), one past either is reset as it is accepted, and one idle for
IDLE_SECONDS is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxies.runtime.listener import Starting, StartupGate, peer_of, split_address

if TYPE_CHECKING:
    from proxies.runtime.session import ProxyRuntime

log = logging.getLogger("portcullis.health")

MAX_PER_PEER = 16
MAX_IN_ALL = 256
IDLE_SECONDS = 15.0  # (aiohttp's default keeps an idle connection 75 s)


def health_address(listen: str, worker: int) -> tuple[str, int]:
    """Where one worker of a connection serves: the configured port + its worker number."""
    host, port = split_address(listen)
    return host, port + worker if port else 0


class HealthServer:
    """/metrics, /healthz and /readyz of one connection's runtime."""

    def __init__(self, runtime: ProxyRuntime, listen: str) -> None:
        self.runtime = runtime
        self.host, self.requested_port = health_address(listen, runtime.connection.worker)
        self.gate = StartupGate(MAX_PER_PEER, MAX_IN_ALL)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        sockets = self._server.sockets if self._server is not None else ()
        return int(sockets[0].getsockname()[1]) if sockets else self.requested_port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=IDLE_SECONDS
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        # the runner's handlers, behind the gate (a TCPSite would take every connection)
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gated(self.gate, server()), self.host, self.requested_port
        )
        self.runtime.serving = True
        log.info(
            "connection %s: /metrics, /healthz, /readyz on %s:%d",
            self.runtime.connection.name,
            self.host,
            self.port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.runtime.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        runtime = self.runtime
        why = runtime.not_ready()
        body: dict[str, object] = {
            "ready": not why,
            "connection": runtime.connection.name,
            "worker": runtime.connection.worker,
            "policy_revision": runtime.pdp.revision,
            "sessions_open": len(runtime.sessions),
        }
        if why:
            body["reason"] = why
        return web.json_response(body, status=503 if why else 200)


class _Gated(asyncio.Protocol):
    """A connection's protocol: reset at once past the gate, else every event goes to the
    HTTP server's own protocol."""

    def __init__(self, gate: StartupGate, handler: Any) -> None:
        self._gate = gate
        self._handler = handler
        self._place: Starting | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        place = self._gate.admit(peer_of(transport))
        if place is None:
            refused = self._gate.refused
            if refused in (1, 10, 100) or refused % 1000 == 0:
                log.warning(
                    "health port: a connection from %s refused (%d held; %d refused so far)",
                    peer_of(transport), self._gate.total, refused,
                )  # fmt: skip
            cast(asyncio.Transport, transport).abort()
            return
        self._place = place
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        place, self._place = self._place, None
        if place is None:
            return
        place.leave()
        self._handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._place is not None:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._place is None:
            return None
        return bool(self._handler.eof_received())

    def pause_writing(self) -> None:
        if self._place is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._place is not None:
            self._handler.resume_writing()
