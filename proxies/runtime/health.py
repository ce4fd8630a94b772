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
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxies.runtime.listener import split_address

if TYPE_CHECKING:
    from proxies.runtime.session import ProxyRuntime

log = logging.getLogger("portcullis.health")


def health_address(listen: str, worker: int) -> tuple[str, int]:
    """Where one worker of a connection serves: the configured port + its worker number."""
    host, port = split_address(listen)
    return host, port + worker if port else 0


class HealthServer:
    """/metrics, /healthz and /readyz of one connection's runtime."""

    def __init__(self, runtime: ProxyRuntime, listen: str) -> None:
        self.runtime = runtime
        self.host, self.requested_port = health_address(listen, runtime.connection.worker)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        assert self._site is not None and self._site._server is not None
        sockets = getattr(self._site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self.requested_port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.requested_port)
        await self._site.start()
        self.runtime.serving = True
        log.info(
            "connection %s: /metrics, /healthz, /readyz on %s:%d",
            self.runtime.connection.name,
            self.host,
            self.port,
        )

    async def stop(self) -> None:
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
