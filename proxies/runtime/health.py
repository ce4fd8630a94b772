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

On a loopback address the port of the other IP version is served too (127.0.0.1:P and
[::1]:P, listener.on_twin): a scraper or a probe dialling `localhost:P` (::1 first) would
otherwise read the metrics and the readiness another local user listening there chose to
say (a proxy "ready" that is down, counters of its making); one already held refuses the
start, as the proxy's own listener does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from portcullis.connection_gate import ConnectionGate, gated, serve_gated
from proxies.runtime.listener import on_twin, split_address

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
        self.gate = ConnectionGate(MAX_PER_PEER, MAX_IN_ALL)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._twin: asyncio.Server | None = None

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
        label = f"connection {self.runtime.connection.name}: health port"
        self._server = await serve_gated(
            self._runner, self.gate, log, label, (self.host, self.requested_port)
        )
        try:
            self._twin = await on_twin(self.host, self.port, self._serve_twin)
        except OSError:
            await self.stop()
            raise
        self.runtime.serving = True
        log.info(
            "connection %s: /metrics, /healthz, /readyz on %s:%d",
            self.runtime.connection.name,
            self.host,
            self.port,
        )

    async def _serve_twin(self, twin: str) -> asyncio.Server:
        """The same handlers behind the same gate on the twin loopback's port."""
        assert self._runner is not None and self._runner.server is not None
        label = f"connection {self.runtime.connection.name}: health port"
        factory = gated(self.gate, self._runner.server, log, label)
        return await asyncio.get_running_loop().create_server(factory, twin, self.port)

    async def stop(self) -> None:
        for server in (self._server, self._twin):
            if server is not None:
                server.close()
        self._server = self._twin = None
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
