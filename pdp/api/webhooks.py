"""The approval webhook: a JSON notice of each new approval request, retried until delivered.

Owns delivery to `approvals.webhook` — a POST whose body carries a Slack-compatible
`text` (chat markup escaped: a requester's text cannot mention anyone or make a link) and
the request as approvers see it (pdp.domain.approver_view: values masked where the policy
masks them; never the session id) — retried with capped exponential backoff until the
receiver answers 2xx, then recorded as the request's `notified` step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from pdp.domain.approvals import ApprovalRequest
from pdp.plumbing.rendering import inert, statement_lines
from pdp.plumbing.timestamps import outward

log = logging.getLogger("portcullis.webhooks")

MAX_BACKOFF_SECONDS = 30.0


def notice(request: ApprovalRequest) -> dict[str, Any]:
    who = inert(request.requester.get("subject", "?"))
    text = (
        f"Approval needed: {who} on {inert(request.connection)} — "
        f"{inert('; '.join(request.reasons))}. Approvers: {', '.join(request.approvers)}. "
        f"Approve: portcullis approvals approve {request.id} --reason '...'"
    )
    if request.justification:
        text += f" Justification: {inert(request.justification)}"
    command, statements = request.shown()
    if request.command_kind.startswith("postgres."):
        text += "\n" + "\n".join(statement_lines(statements, indent=""))
        for n, value in enumerate(request.parameters, 1):
            text += f"\n${n} = {inert(value)}"
    else:
        text += f"\nCommand: {inert(command)}"
    return {"text": chat_text(text), "approval": outward(request.public())}


def chat_text(text: str) -> str:
    """`text` with chat markup made plain: Slack (and what copies its format) reads
    <!channel>, <@user> and <url|label> as mentions and links only when &, < and > are not
    escaped, and shows the escapes as the characters themselves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class WebhookNotifier:
    def __init__(self, url: str, delivered: Callable[[ApprovalRequest], Awaitable[None]]) -> None:
        self.url = url
        self.delivered = delivered
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def __call__(self, request: ApprovalRequest) -> None:
        task = asyncio.create_task(self._deliver(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, request: ApprovalRequest) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        body = notice(request)
        backoff = 0.5
        while True:
            try:
                async with self._session.post(self.url, json=body) as response:
                    if 200 <= response.status < 300:
                        break
                    log.warning("webhook answered %d for %s; retrying", response.status, request.id)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning(
                    "webhook unreachable for %s (%s); retrying", request.id, type(exc).__name__
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        with contextlib.suppress(Exception):
            await self.delivered(request)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
