"""The PDP's HTTP side: /healthz, /readyz and Prometheus /metrics (text format 0.0.4).

Owns only these read-only endpoints; it never decides anything. Later issues add the
approvals API here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from pdp.app import PDPApp


def metrics_text(app: PDPApp) -> str:
    stats = app.decider.stats
    lines = [
        "# HELP portcullis_decisions_total Decisions answered, by verdict.",
        "# TYPE portcullis_decisions_total counter",
    ]
    for verdict, count in sorted((stats.by_verdict or {}).items()):
        lines.append(f'portcullis_decisions_total{{verdict="{verdict}"}} {count}')
    lines += [
        "# HELP portcullis_engine_errors_total Evaluations that failed or overran (denied).",
        "# TYPE portcullis_engine_errors_total counter",
        f"portcullis_engine_errors_total {stats.engine_errors}",
        "# HELP portcullis_store_errors_total Decisions the audit store could not take (denied).",
        "# TYPE portcullis_store_errors_total counter",
        f"portcullis_store_errors_total {stats.store_errors}",
        "# HELP portcullis_evaluation_seconds_sum Time spent deciding.",
        "# TYPE portcullis_evaluation_seconds_sum counter",
        f"portcullis_evaluation_seconds_sum {stats.evaluation_ms_sum / 1000:.6f}",
        "# HELP portcullis_open_sessions Sessions open at this PDP.",
        "# TYPE portcullis_open_sessions gauge",
        f"portcullis_open_sessions {len(app.sessions)}",
        "# HELP portcullis_policy_info The policy revision in force.",
        "# TYPE portcullis_policy_info gauge",
        f'portcullis_policy_info{{revision="{app.engine.revision}",engine="{app.engine.name}"}} 1',
    ]
    return "\n".join(lines) + "\n"


def build_http_app(pdp: PDPApp) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready = pdp.ready
        body = {"ready": ready, "policy_revision": pdp.engine.revision}
        reload_error = getattr(pdp.engine, "last_reload_error", "")
        if reload_error:
            body["policy_reload_error"] = reload_error
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=metrics_text(pdp), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
