"""The PDP's HTTP side: /healthz, /readyz and Prometheus /metrics (text format 0.0.4).

/readyz is 503 while the PDP starts or stops, and while its audit store refuses writes
(every decision is then a deny: a load balancer must send proxies elsewhere). Readiness
comes back once the store takes a record again — a decision's, or the `store.recovered`
record /readyz itself writes (at most every PROBE_SECONDS while the store refuses), which
also leaves evidence of the outage.

/v1/status (what `portcullis status` shows) and /metrics ask a proxy credential or an
auditor's bearer token. Owns these endpoints and the approvals API for chat integrations
(`GET /v1/approvals[?pending=1]`, `POST /v1/approvals/{id}/approve|deny` with the
approver's own bearer token and a JSON `reason`), which makes the same checks as the gRPC
API: the policy decides who may approve, and never the requester.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import TYPE_CHECKING

from aiohttp import web

from pdp.api.approval_rpc import public_view, visible_approvals
from pdp.api.proxy_auth import CREDENTIAL_PREFIX
from pdp.domain.approvals import REASON_REQUIRED, ApprovalRefused, reason_kept
from pdp.domain.decisions import EVALUATION_BUCKETS, DecisionStats
from pdp.domain.identity import TokenRejected, approver_refusal
from pdp.plumbing.timestamps import outward
from portcullis.wire import CREDENTIAL_METADATA

if TYPE_CHECKING:
    from pdp.app import PDPApp


def label(value: object) -> str:
    """A label value in Prometheus' text format, quoted and escaped (backslash, double
    quote, line feed): a policy revision is the bundle's own text, and a quote or a line
    feed in it would otherwise write metric lines of its own (a forged
    `portcullis_signing_key_unknown 0` after the real one)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def metrics_text(app: PDPApp) -> str:
    stats = app.decider.stats
    streams = app.service.streams
    checkpoints = app.checkpoints
    lines = [
        "# HELP portcullis_decisions_total Decisions answered, by verdict.",
        "# TYPE portcullis_decisions_total counter",
    ]
    for verdict, count in sorted((stats.by_verdict or {}).items()):
        lines.append(f"portcullis_decisions_total{{verdict={label(verdict)}}} {count}")
    lines += [
        "# HELP portcullis_engine_errors_total Evaluations that failed or overran (denied).",
        "# TYPE portcullis_engine_errors_total counter",
        f"portcullis_engine_errors_total {stats.engine_errors}",
        "# HELP portcullis_evaluations_reused_total Decisions answered from an earlier"
        " evaluation the policy declared reusable.",
        "# TYPE portcullis_evaluations_reused_total counter",
        f"portcullis_evaluations_reused_total {stats.evaluations_reused}",
        "# HELP portcullis_store_errors_total Decisions the audit store could not take (denied).",
        "# TYPE portcullis_store_errors_total counter",
        f"portcullis_store_errors_total {stats.store_errors}",
        *_evaluation_histogram(stats),
        "# HELP portcullis_decide_streams_open DecideStreams open at this PDP (a proxy keeps one).",
        "# TYPE portcullis_decide_streams_open gauge",
        f"portcullis_decide_streams_open {streams.open}",
        "# HELP portcullis_decide_stream_calls_total Decide calls taken over DecideStreams.",
        "# TYPE portcullis_decide_stream_calls_total counter",
        f"portcullis_decide_stream_calls_total {streams.calls}",
        "# HELP portcullis_decide_stream_messages_total Messages those calls came in"
        " (direction=in) and their answers left in (direction=out): fewer than calls when"
        " batched.",
        "# TYPE portcullis_decide_stream_messages_total counter",
        f'portcullis_decide_stream_messages_total{{direction="in"}} {streams.call_messages}',
        f'portcullis_decide_stream_messages_total{{direction="out"}} {streams.answer_messages}',
        "# HELP portcullis_open_sessions Sessions open at this PDP.",
        "# TYPE portcullis_open_sessions gauge",
        f"portcullis_open_sessions {len(app.sessions)}",
        "# HELP portcullis_policy_info The policy revision in force.",
        "# TYPE portcullis_policy_info gauge",
        f"portcullis_policy_info{{revision={label(app.engine.revision)},"
        f"engine={label(app.engine.name)}}} 1",
        "# HELP portcullis_checkpoints_refused_total Signed checkpoints not written: the"
        " records since the last one could not be checked (see the log).",
        "# TYPE portcullis_checkpoints_refused_total counter",
        f"portcullis_checkpoints_refused_total {app.checkpoints.refused if app.checkpoints else 0}",
        "# HELP portcullis_audit_foreign_records_total Records no PDP holding the key wrote"
        " (INSERTed into the store) that signed checkpoints named as not the PDP's (see the"
        " log; `audit verify` names them until acknowledged).",
        "# TYPE portcullis_audit_foreign_records_total counter",
        "portcullis_audit_foreign_records_total"
        f" {checkpoints.foreign_records if checkpoints else 0}",
        "# HELP portcullis_audit_tail_cuts_total Times the audit store's head was found"
        " below a record this PDP had committed: records deleted from the chain's end"
        " (each written into the chain as an audit.tail_cut record; see the log).",
        "# TYPE portcullis_audit_tail_cuts_total counter",
        f"portcullis_audit_tail_cuts_total {getattr(app.store, 'tail_cuts', 0)}",
        "# HELP portcullis_anchor_unreached 1 while the anchor file names a signed head (or"
        " the head file a head) the chain no longer reaches (records cut from its end; see"
        " the log), else 0.",
        "# TYPE portcullis_anchor_unreached gauge",
        "portcullis_anchor_unreached"
        f" {int(bool(checkpoints and (checkpoints.anchor_problem or checkpoints.head_problem)))}",
        "# HELP portcullis_signing_key_unknown 1 when the chain's newest checkpoint was"
        " signed by another key and no rotation hands over to this PDP's (a key replaced"
        " by hand, or lost and made anew; see the log), else 0.",
        "# TYPE portcullis_signing_key_unknown gauge",
        f"portcullis_signing_key_unknown {int(bool(checkpoints and checkpoints.key_problem))}",
    ]
    return "\n".join(lines + _webhook_lines(app)) + "\n"


def _webhook_lines(app: PDPApp) -> list[str]:
    """What became of the approval notices sent to approvals.webhook (none configured:
    nothing): a receiver refusing or unreachable leaves approvers unaware of requests."""
    hook = app.webhook
    if hook is None:
        return []
    name = "portcullis_webhook_notices_total"
    return [
        f"# HELP {name} Approval notices for approvals.webhook, by outcome: taken"
        " (delivered), refused for good (a 4xx but 408/429: not retried), abandoned"
        " (undelivered when the request expired or after an hour).",
        f"# TYPE {name} counter",
        f'{name}{{outcome="delivered"}} {hook.sent}',
        f'{name}{{outcome="refused"}} {hook.refused}',
        f'{name}{{outcome="abandoned"}} {hook.abandoned}',
        "# HELP portcullis_webhook_retries_total Notice deliveries that failed for now"
        " (5xx, 408, 429, unreachable) and are tried again.",
        "# TYPE portcullis_webhook_retries_total counter",
        f"portcullis_webhook_retries_total {hook.retries}",
        "# HELP portcullis_webhook_notices_pending Approval notices being delivered or"
        " waiting to be tried again.",
        "# TYPE portcullis_webhook_notices_pending gauge",
        f"portcullis_webhook_notices_pending {hook.pending}",
    ]


def _evaluation_histogram(stats: DecisionStats) -> list[str]:
    """portcullis_evaluation_seconds: time spent deciding, as a Prometheus histogram."""
    name = "portcullis_evaluation_seconds"
    counts = stats.evaluation_buckets or [0] * (len(EVALUATION_BUCKETS) + 1)
    lines = [
        f"# HELP {name} Time the policy engine spent on each decision (0 when reused).",
        f"# TYPE {name} histogram",
    ]
    running = 0
    for bound, count in zip((*EVALUATION_BUCKETS, "+Inf"), counts, strict=True):
        running += count
        lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
    lines.append(f"{name}_sum {stats.evaluation_ms_sum / 1000:.6f}")
    lines.append(f"{name}_count {running}")
    return lines


# a URL in an error: what may carry a secret (user:password@, ?X-Amz-Signature=..., #token)
_URL_SECRETS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#@]*@)?"
    r"(?P<where>[^\s?#]*)(?P<rest>[?#]\S*)?"
)


def unauthenticated(text: str) -> str:
    """An operator's error as endpoints that ask for no token show it (/readyz,
    /v1/status): every URL keeps its scheme, host and path; its user information, query
    and fragment, where a policy bundle's (presigned) URL or a store's address carries
    its credential, read `…`. The PDP's log keeps the whole text."""

    def keep(m: re.Match[str]) -> str:
        return (
            m["scheme"] + ("…@" if m["userinfo"] else "") + m["where"] + ("?…" if m["rest"] else "")
        )

    return _URL_SECRETS.sub(keep, text)


PROBE_SECONDS = 2.0


class StoreReadiness:
    """Whether the audit store takes writes, as decisions found it; while it refuses, a
    probe (a `store.recovered` record) now and then finds out when it takes them again."""

    def __init__(self, pdp: PDPApp) -> None:
        self.pdp = pdp
        self._probed = 0.0

    async def refusing(self) -> str:
        stats = self.pdp.decider.stats
        why = stats.store_refusing
        if not why or time.monotonic() - self._probed < PROBE_SECONDS:
            return why
        self._probed = time.monotonic()
        try:
            await asyncio.wait_for(
                self.pdp.decider.store.append("store.recovered", {"refused_before": why}),
                PROBE_SECONDS,
            )
        except Exception:
            return stats.store_refusing or why
        if stats.store_refusing == why:
            stats.store_refusing = ""
        return stats.store_refusing


def build_http_app(pdp: PDPApp) -> web.Application:
    store = StoreReadiness(pdp)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        refusing = await store.refusing() if pdp.ready else ""
        ready = pdp.ready and not refusing
        body: dict[str, object] = {"ready": ready, "policy_revision": pdp.engine.revision}
        if refusing:
            body["reason"] = (
                f"the audit store refuses writes ({unauthenticated(refusing)}): all decisions deny"
            )
        reload_error = getattr(pdp.engine, "last_reload_error", "")
        if reload_error:
            body["policy_reload_error"] = unauthenticated(reload_error)
        return web.json_response(body, status=200 if ready else 503)

    async def status(request: web.Request) -> web.Response:
        """What `portcullis status` shows: readiness, policy, open sessions by connection
        and the policy's reload error. Not for anyone who reaches the port: which
        connections are in use and how much, the policy server's address (status_reader)."""
        await status_reader(request)
        by_connection: dict[str, int] = {c.name: 0 for c in pdp.config.connections}
        for session in pdp.sessions.silent_since(-1.0):  # every open session
            name = str(session.connection.get("name", ""))
            by_connection[name] = by_connection.get(name, 0) + 1
        body: dict[str, object] = {
            "ready": pdp.ready,
            "policy_revision": pdp.engine.revision,
            "open_sessions": len(pdp.sessions),
            "sessions_by_connection": by_connection,
        }
        reload_error = getattr(pdp.engine, "last_reload_error", "")
        if reload_error:
            body["policy_reload_error"] = unauthenticated(reload_error)
        return web.json_response(body)

    async def metrics(request: web.Request) -> web.Response:
        """Not for anyone who reaches the port, where the console is served to every
        person: decisions by verdict and open sessions tell who is at work and when, and
        the audit figures (foreign records, tail cuts, an unreached anchor) tell whoever
        wrote into the store whether the PDP noticed. A scraper sends a proxy credential
        (Prometheus: `authorization: {credentials_file: ...}`) as /v1/status takes one."""
        await status_reader(request)
        return web.Response(text=metrics_text(pdp), content_type="text/plain", charset="utf-8")

    async def approver(request: web.Request) -> dict[str, object]:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise web.HTTPUnauthorized(
                text=json.dumps({"title": "bearer token required"}),
                content_type="application/problem+json",
            )
        try:
            identity = await pdp.verifier.verify(
                header[len("Bearer ") :].strip(), pdp.config.approvals.audience
            )
        except TokenRejected as exc:
            raise web.HTTPUnauthorized(
                text=json.dumps(
                    {
                        "title": "token rejected",
                        "detail": approver_refusal(exc.reason, pdp.config.approvals.audience),
                    }
                ),
                content_type="application/problem+json",
            ) from None
        return {
            "subject": identity.subject,
            "groups": list(identity.groups),
            "issuer": identity.issuer,
            "names": list(identity.names),
        }

    async def status_reader(request: web.Request) -> None:
        """Who may read /v1/status and /metrics: a proxy (its credential, in the header its
        gRPC calls carry it in: `portcullis status` sends the local one,
        pdp.proxy_credential_file; or as a bearer token, which is what Prometheus sends: a
        credential naming no connection serves a scraper and no session) or a person of
        the console's auditor groups (a bearer token, as /v1/approvals)."""
        credential = request.headers.get(CREDENTIAL_METADATA, "").strip()
        bearer = request.headers.get("Authorization", "")
        if not credential and bearer.startswith(f"Bearer {CREDENTIAL_PREFIX}."):
            credential = bearer[len("Bearer ") :].strip()
        if credential:
            if pdp.proxy_key.verify(credential) is None:
                raise web.HTTPUnauthorized(
                    text=json.dumps({"title": "proxy credential rejected"}),
                    content_type="application/problem+json",
                )
            return
        who = await approver(request)
        groups = who["groups"] if isinstance(who["groups"], list) else []
        if not set(map(str, groups)) & set(pdp.console_settings.auditor_groups):
            raise web.HTTPForbidden(
                text=json.dumps(
                    {"title": "refused", "detail": "status is shown to the auditor groups"}
                ),
                content_type="application/problem+json",
            )

    async def list_approvals(request: web.Request) -> web.Response:
        who = await approver(request)
        pending_only = request.query.get("pending") in ("1", "true")
        shown = await visible_approvals(pdp.approvals, who, pending_only)
        listed = [outward(public_view(r)) for r in shown]
        return web.json_response({"approvals": listed})

    async def resolve(request: web.Request) -> web.Response:
        who = await approver(request)
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            body = {}
        reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
        if reason_kept(reason) is None:
            raise web.HTTPBadRequest(
                text=json.dumps({"title": REASON_REQUIRED}),
                content_type="application/problem+json",
            )
        approve = request.match_info["action"] == "approve"
        try:
            decided = await pdp.approvals.decide(request.match_info["id"], who, approve, reason)
        except ApprovalRefused as exc:
            raise web.HTTPForbidden(
                text=json.dumps({"title": "refused", "detail": str(exc)}),
                content_type="application/problem+json",
            ) from None
        return web.json_response({"approval": outward(public_view(decided))})

    app = web.Application()
    app.router.add_get("/v1/approvals", list_approvals)
    app.router.add_post(r"/v1/approvals/{id}/{action:approve|deny}", resolve)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/metrics", metrics)
    return app
