"""The approval webhook: a JSON notice of each new approval request, retried until delivered.

Owns delivery to `approvals.webhook` — a POST whose body carries a Slack-compatible
`text` (chat markup escaped, and every piece of text a client sent shown as inline code:
in Slack's mrkdwn and in the Markdown of what copies its webhooks — Mattermost, Discord,
Teams — a requester's text cannot mention anyone, make a link or format the notice;
every statement's kind before any text, and the text bounded so no chat service cuts it
without saying so) and
the request as approvers see it (pdp.domain.approver_view: values masked where the policy
masks them; never the session id) — retried with capped exponential backoff until the
receiver answers 2xx, then recorded as the request's `notified` step. A permanent refusal
(a 4xx other than 408 and 429: wrong URL, revoked hook, a body it will never take; a
redirect, never followed) ends
delivery at once, logged once and counted (`WebhookNotifier.refused`); 5xx, 408, 429 and
an unreachable receiver are retried while the request can still be decided, and never
past MAX_DELIVERY_SECONDS (counted in `WebhookNotifier.abandoned`).

Given the PDP's signer, each POST is signed so a receiver can tell the PDP's notice from
anyone's who learnt the hook's URL: `X-Portcullis-Signature` is the Ed25519 signature, in
base64, of pdp.evidence.signing.notice_message — a prefix no signed evidence document
starts with, the unix time sent in `X-Portcullis-Timestamp` (a receiver refuses old ones:
a replayed notice) and the exact body bytes — by the key `X-Portcullis-Key-Id` names (the
public key `audit export` bundles as public_key.pem).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from pdp.domain.approvals import ApprovalRequest
from pdp.domain.approver_view import mixed_script_words
from pdp.plumbing.rendering import inert
from pdp.plumbing.timestamps import outward

if TYPE_CHECKING:
    from pdp.evidence.signing import Signer

log = logging.getLogger("portcullis.webhooks")

SIGNATURE_HEADER = "X-Portcullis-Signature"
TIMESTAMP_HEADER = "X-Portcullis-Timestamp"
KEY_ID_HEADER = "X-Portcullis-Key-Id"

MAX_BACKOFF_SECONDS = 30.0
# however long an approval may wait, a notice is retried for at most this long
MAX_DELIVERY_SECONDS = 3600.0
# 4xx answers that say "later" rather than "never"
RETRIED_CLIENT_ERRORS = frozenset({408, 429})
# a notice's text stays within what chat services show whole (Slack cuts at 40,000
# characters; Mattermost's default post is 16,383): each line and all the text bounded
MAX_LINE = 1000
MAX_TEXT = 12000
MAX_KINDS = 2000


def notice(request: ApprovalRequest) -> dict[str, Any]:
    who = client_text(request.requester.get("subject", "?"))
    text = (
        f"Approval needed: {who} on {client_text(request.connection)} — "
        f"{client_text('; '.join(request.reasons))}. "
        f"Approvers: {', '.join(request.approvers)}. "
        f"Approve: portcullis approvals approve {request.id} --reason '...'"
    )
    if request.justification:
        text += f" Justification: {client_text(request.justification)}"
    command, statements = request.shown()
    if request.command_kind.startswith("postgres."):
        # what each statement is, before any text: a long one cannot push another's kind
        # out of a chat message
        kinds = "; ".join(
            f"{n}. {', '.join(item['classification'])}" for n, item in enumerate(statements, 1)
        )
        text += f"\n{len(statements)} statement{'s' if len(statements) != 1 else ''}: "
        text += _bounded(kinds, MAX_KINDS)
        shown = [f"  {n}. {client_text(s['text'])}" for n, s in enumerate(statements, 1)]
        shown += [f"${n} = {client_text(v)}" for n, v in enumerate(request.parameters, 1)]
        text += _within(shown, request.id)
    else:
        text += _within([f"Command: {client_text(command)}"], request.id)
    return {"text": chat_text(text), "approval": outward(request.public())}


def _within(lines: list[str], approval_id: str) -> str:
    """`lines`, each on its own, while the notice stays within MAX_TEXT (as sent, chat
    markup escaped): the rest is said to be left out, and where to read it. Chat services
    cut (Slack past 40,000 characters) or refuse a longer message without telling the
    approver what was lost."""
    out, size = "", 0
    for n, line in enumerate(lines):
        size += len(chat_text(line)) + 1
        if size > MAX_TEXT:
            return out + (
                f"\n… {len(lines) - n} more line(s) not shown here: "
                f"portcullis approvals show {approval_id}"
            )
        out += "\n" + line
    return out


def _bounded(text: str, limit: int = MAX_LINE) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … ({len(text) - limit} more characters not shown here)"


def client_text(value: Any) -> str:
    """Text a client sent, for the notice: inert, as inline code, its first MAX_LINE
    characters (how many more is said after the code). In a code span Slack's mrkdwn and
    Markdown (Mattermost, Discord and Teams read a Slack-style `text` as Markdown) make no
    mention (@channel, @all, @everyone), no link ([Approve](url), a bare URL) and no
    emphasis; a backtick, which would end the span, is the visible escape \\x60 (inert
    writes a backslash as \\\\, so the escape is not the client's text). Words mixing
    scripts are counted after the span (the CLI and console name and mark them)."""
    shown = inert(value).replace("`", "\\x60")
    more = len(shown) - MAX_LINE
    # words mixing scripts (a Cyrillic o in `orders`), said after the span
    mixed = len(mixed_script_words(shown[:MAX_LINE]))
    note = f" [mixed scripts in {mixed} word{'s' if mixed != 1 else ''}]" if mixed else ""
    if more <= 0:
        return f"`{shown}`{note}"
    return f"`{shown[:MAX_LINE]}`{note} … ({more} more characters not shown here)"


def chat_text(text: str) -> str:
    """`text` with chat markup made plain: Slack (and what copies its format) reads
    <!channel>, <@user> and <url|label> as mentions and links only when &, < and > are not
    escaped, and shows the escapes as the characters themselves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def permanent_refusal(status: int) -> bool:
    """A receiver's answer that retrying cannot change: a 4xx other than 408 (Request
    Timeout) and 429 (Too Many Requests), and a redirect, which is not followed (the
    notice goes to the configured URL only: a receiver, or whoever answers for it, cannot
    send the PDP's POST on to an address of its choosing, inside the PDP's network)."""
    return 300 <= status < 500 and status not in RETRIED_CLIENT_ERRORS


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        delivered: Callable[[ApprovalRequest], Awaitable[None]],
        signer: Signer | None = None,
    ) -> None:
        self.url = url
        self.delivered = delivered
        self.signer = signer
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0  # notices a receiver took (2xx)
        self.refused = 0  # notices a receiver refused for good (4xx but 408, 429)
        self.abandoned = 0  # notices still undelivered when retrying ended
        self.retries = 0  # deliveries tried again (5xx, 408, 429, unreachable)

    @property
    def pending(self) -> int:
        """Notices being delivered or waiting to be tried again."""
        return len(self._tasks)

    def __call__(self, request: ApprovalRequest) -> None:
        task = asyncio.create_task(self._deliver(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, request: ApprovalRequest) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        body = json.dumps(notice(request)).encode()
        give_up = min(request.expires_at, time.time() + MAX_DELIVERY_SECONDS)
        backoff = 0.5
        while True:
            try:
                async with self._session.post(
                    self.url, data=body, headers=self._headers(body), allow_redirects=False
                ) as response:
                    if 200 <= response.status < 300:
                        self.sent += 1
                        break
                    if permanent_refusal(response.status):
                        self.refused += 1
                        log.error(
                            "webhook refused the notice of %s (HTTP %d): not retried",
                            request.id,
                            response.status,
                        )
                        return
                    log.warning("webhook answered %d for %s; retrying", response.status, request.id)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning(
                    "webhook unreachable for %s (%s); retrying", request.id, type(exc).__name__
                )
            if time.time() + backoff > give_up:
                self.abandoned += 1
                log.error(
                    "webhook notice of %s not delivered before it was due; given up", request.id
                )
                return
            self.retries += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        with contextlib.suppress(Exception):
            await self.delivered(request)

    def _headers(self, body: bytes) -> dict[str, str]:
        """The POST's headers: its type, and its signature when the PDP's signer is given
        (made for each try: its timestamp is when it was sent)."""
        headers = {"Content-Type": "application/json"}
        if self.signer is not None:
            timestamp = str(int(time.time()))
            signature = self.signer.sign_notice(timestamp, body)
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = base64.b64encode(signature).decode()
            headers[KEY_ID_HEADER] = self.signer.key_id
        return headers

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
