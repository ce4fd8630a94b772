"""The approvals inbox: requests a person may see, decided or withdrawn from the browser.

Who sees and decides what is exactly what the CLI and the HTTP API enforce, through the
same calls: `visible_approvals` (their own requests and those the policy lets them
decide), `ApprovalBook.decide` (the policy's `data.portcullis.approvers`, and never the
requester, whatever a form says) and `ApprovalBook.withdraw` (the requester only). The
buttons a person may not use are disabled with the reason next to them; a forged POST
gets the same refusal from the book. Statements, values and justifications are shown as
approvers see them (`ApprovalRequest.shown`: masked by the policy's rules and every
detector), in full, made inert.

Live updates: `/console/approvals/stream` is a server-sent event stream that says "the
requests changed" (nothing more, so it needs no per-viewer filtering); the page then
fetches `/console/approvals/list`, which is filtered for the viewer like the page. A
stream reads the book, which follows the store on its own (never a store query per
stream), and one person holds at most MAX_STREAMS open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections import Counter
from typing import TYPE_CHECKING

from aiohttp import web

from pdp.api.approval_rpc import visible_approvals
from pdp.console.markup import Html, client_text, esc, join, tag, text_block
from pdp.console.signin import redirect
from pdp.console.views.common import badge, bullet_list, csrf_field, definitions, when
from pdp.console.websession import WebSession, signed_in
from pdp.domain.approvals import PENDING, ApprovalRefused, ApprovalRequest, same_person
from pdp.store import StoreUnavailable

if TYPE_CHECKING:
    from pdp.console.app import Console

TICK = 1.0  # how often a stream looks for changes
HEARTBEAT = 15.0
DECIDED_SHOWN = 25  # settled requests listed under the pending ones
MAX_STREAMS = 8  # open streams per person (issuer, subject): tabs, not a flood
DONE = {"approved": "Approved", "denied": "Denied", "withdrawn": "Withdrawn"}


def routes(console: Console) -> list[web.RouteDef]:
    inbox = Inbox(console)
    return [
        web.get("/console/approvals/", inbox.page),
        web.get("/console/approvals/list", inbox.fragment),
        web.get("/console/approvals/stream", inbox.stream),
        web.post("/console/approvals/{id}/decide", inbox.decide),
        web.post("/console/approvals/{id}/withdraw", inbox.withdraw),
    ]


def _own(request: ApprovalRequest, session: WebSession) -> bool:
    return same_person(str(request.requester.get("subject", "")), session.subject)


class Inbox:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.book = console.pdp.approvals
        self._salt = secrets.token_hex(16)
        self._streams: Counter[tuple[str, str]] = Counter()

    async def _cards(self, session: WebSession) -> Html:
        shown = await visible_approvals(self.book, session.who)
        pending = [r for r in shown if r.state == PENDING]
        settled = sorted((r for r in shown if r.state != PENDING),
                         key=lambda r: r.decided_at or r.created_at, reverse=True)  # fmt: skip
        cards = [await self._card(r, session) for r in pending]
        parts = [tag("h2", f"Pending ({len(pending)})", id="pending-heading")]
        parts.append(join(cards) if cards else tag("p", "Nothing waits for a decision.",
                                                   class_="empty"))  # fmt: skip
        if settled:
            parts.append(tag("h2", "Recently settled", id="settled-heading"))
            parts.extend([await self._card(r, session) for r in settled[:DECIDED_SHOWN]])
        return join(parts)

    async def _card(self, r: ApprovalRequest, session: WebSession) -> Html:
        command, statements = r.shown()
        heading_id = f"req-{r.id}"
        requester = r.requester
        rows = [
            ("Requester", f"{requester.get('subject', '')}"
                          f" ({', '.join(requester.get('groups', [])) or 'no groups'})"),
            ("Connection", r.connection),
            ("Command kind", r.command_kind),
            ("Asked", Html(when(r.created_at, with_age=True))),
            ("Reasons", bullet_list(r.reasons)),
            ("Justification", r.justification or "none given"),
            ("Approvers", ", ".join(r.approvers) or "—"),
        ]  # fmt: skip
        if r.state != PENDING:
            decided = f"{r.state}" + (f" by {r.approver}" if r.approver else "")
            rows.append(("Outcome", f"{decided}: {r.decision_reason}" if r.decision_reason
                         else decided))  # fmt: skip
        if statements:
            shown = tag("ol", join(
                tag("li", Html(tag("pre", tag("code", text_block(s["text"])))
                               + join((badge(c, "class") for c in s["classification"]), " ")))
                for s in statements
            ), class_="statements", aria_label=f"{len(statements)} statement(s)")  # fmt: skip
        else:
            shown = tag("pre", tag("code", text_block(command)))
        values = ""
        if r.parameters:
            # in <code>: read in stored order (console.css), like the statements they run with
            values = tag("ol", join(tag("li", Html(f"${n} = " + tag("code", client_text(v))))
                                    for n, v in enumerate(r.parameters, 1)),
                         class_="parameters", aria_label="Parameter values")  # fmt: skip
        title = Html(esc(f"{r.id} ") + badge(r.state, f"state-{r.state}"))
        body = Html(
            tag("h3", title, id=heading_id)
            + definitions(rows)
            + tag("h4", "Statements" if statements else "Command")
            + shown
            + values
            + (await self._actions(r, session) if r.state == PENDING else "")
        )
        return tag("article", body, class_="request", aria_labelledby=heading_id,
                   data_id=r.id, data_state=r.state)  # fmt: skip

    async def _actions(self, r: ApprovalRequest, session: WebSession) -> Html:
        csrf = csrf_field(session.csrf)
        reason_id = f"reason-{r.id}"
        why_id = f"why-{r.id}"
        if _own(r, session):
            why = "You asked for this: nobody may approve or deny their own request."
            allowed = False
        else:
            # the buttons shown: a listing's answer (kept a while); deciding asks afresh
            authorize = getattr(self.book.authorize, "kept", self.book.authorize)
            allowed, reasons = await authorize(session.who, r)
            why = (
                ""
                if allowed
                else "You may not decide this request: "
                + ("; ".join(reasons) or "the policy does not name you as an approver")
            )
        buttons = Html(
            tag("button", "Approve", type="submit", name="action", value="approve",
                class_="approve", disabled=not allowed, aria_describedby=why_id if why else None)
            + tag("button", "Deny", type="submit", name="action", value="deny",
                  class_="deny", disabled=not allowed, aria_describedby=why_id if why else None)
        )  # fmt: skip
        reason = Html(
            tag("label", "Reason (kept with the record)", for_=reason_id)
            + tag("textarea", "", id=reason_id, name="reason", rows="2", required=True,
                  maxlength="1000", disabled=not allowed)
        )  # fmt: skip
        decide = tag("form", Html(csrf + reason + tag("div", buttons, class_="buttons")
                                  + (tag("p", why, id=why_id, class_="why") if why else "")),
                     method="post", action=f"/console/approvals/{r.id}/decide",
                     class_="decide")  # fmt: skip
        withdraw: Html | str = ""
        if _own(r, session):
            wid = f"withdraw-reason-{r.id}"
            withdraw = tag("form", Html(
                csrf + tag("label", "Why withdraw (optional)", for_=wid)
                + tag("input", "", id=wid, name="reason", maxlength="1000")
                + tag("button", "Withdraw my request", type="submit", class_="withdraw")
            ), method="post", action=f"/console/approvals/{r.id}/withdraw",
                class_="withdraw")  # fmt: skip
        return Html(decide + withdraw)

    async def page(self, request: web.Request, flash: str = "", status: int = 200) -> web.Response:
        session: WebSession = signed_in(request)
        done = request.query.get("done", "")
        settled = self.book.requests.get(request.query.get("id", ""))
        if not flash and done in DONE and settled is not None and settled.state == done:
            flash = f"{DONE[done]}: {settled.id}"
        inbox = tag("section", await self._cards(session), id="inbox", aria_live="off",
                    aria_labelledby="pending-heading", data_fragment="/console/approvals/list",
                    data_stream="/console/approvals/stream")  # fmt: skip
        live = tag("p", "", id="live", class_="live", role="status", aria_live="polite")
        flash_html: Html | str = ""
        if flash:
            flash_html = tag("p", flash, class_="flash error" if status >= 400 else "flash",
                             role="alert" if status >= 400 else "status")  # fmt: skip
        return self.console.page(request, "Approvals", Html(live + inbox),
                                 section="approvals", status=status, flash=flash_html,
                                 scripts=("inbox.js",))  # fmt: skip

    async def fragment(self, request: web.Request) -> web.Response:
        html = await self._cards(signed_in(request))
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        session: WebSession = signed_in(request)
        person = (session.issuer, session.subject)
        if self._streams[person] >= MAX_STREAMS:
            raise web.HTTPTooManyRequests(
                text=f"at most {MAX_STREAMS} open approval streams each: close a tab"
            )
        self._streams[person] += 1
        try:
            return await self._stream(request, session)
        finally:
            self._streams[person] -= 1
            if self._streams[person] <= 0:
                del self._streams[person]

    async def _stream(self, request: web.Request, session: WebSession) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "X-Accel-Buffering": "no"})  # fmt: skip
        await response.prepare(request)
        seen = self._signature()
        last_write = time.monotonic()
        await response.write(b"retry: 2000\n\n")
        while not self.console.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.console.stopping.wait(), TICK)
            if request.transport is None or request.transport.is_closing():
                break  # the browser went away: its place among MAX_STREAMS is free
            if self.console.sessions.find(session.id, touch=False) is None:
                await response.write(b"event: signedout\ndata: -\n\n")
                break
            # the book follows the store itself (ApprovalBook._follow, LISTEN): a stream
            # that read the store each TICK let anyone multiply its queries by streams
            now = self._signature()
            try:
                if now != seen:
                    seen = now
                    await response.write(f"event: changed\ndata: {now[:16]}\n\n".encode())
                    last_write = time.monotonic()
                elif time.monotonic() - last_write > HEARTBEAT:
                    await response.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
            except (ConnectionResetError, RuntimeError):
                break
        return response

    def _signature(self) -> str:
        """Changes when any request is added or changes state (says nothing else): the
        book's version, read in constant time. Every open stream asks each TICK, and any
        signed-in person may open many; sorting every request the book ever held for each
        of them kept the PDP's event loop, which answers every decision, busy."""
        # salted: the count of changes it stands for is nobody's business
        return hashlib.sha256(f"{self._salt}:{self.book.version}".encode()).hexdigest()

    async def decide(self, request: web.Request) -> web.Response:
        session: WebSession = signed_in(request)
        form = await request.post()
        action = str(form.get("action", ""))
        reason = str(form.get("reason", "")).strip()
        if action not in ("approve", "deny"):
            return await self.page(request, "choose approve or deny", 400)
        if not reason:
            return await self.page(request, "a reason is required", 400)
        approval_id = request.match_info["id"]
        try:
            await self.book.decide(approval_id, session.who, action == "approve", reason)
        except ApprovalRefused as exc:
            return await self.page(request, f"Refused: {exc}", 403)
        except StoreUnavailable:
            return await self.page(request, "the audit store is unavailable; nothing was decided",
                                   503)  # fmt: skip
        done = "approved" if action == "approve" else "denied"
        return redirect(f"/console/approvals/?done={done}&id={approval_id[:40]}")

    async def withdraw(self, request: web.Request) -> web.Response:
        session: WebSession = signed_in(request)
        form = await request.post()
        reason = str(form.get("reason", "")).strip() or "withdrawn"
        approval_id = request.match_info["id"]
        try:
            await self.book.withdraw(
                approval_id, session.subject, None, reason, str(session.who.get("issuer", ""))
            )
        except ApprovalRefused as exc:
            return await self.page(request, f"Refused: {exc}", 403)
        except StoreUnavailable:
            return await self.page(request, "the audit store is unavailable; nothing changed", 503)
        return redirect(f"/console/approvals/?done=withdrawn&id={approval_id[:40]}")
