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

A card's text is the requester's — statements, values, a justification of megabytes, whose
markup (each word's script checked, right-to-left runs and words mixing scripts marked)
takes seconds — so what it shows everyone is drawn once per request and state, a large
one in a worker thread, and kept (KEPT_BYTES) for every viewer and every reload; only the
age and the buttons are drawn per viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from pdp.api.approval_rpc import visible_approvals
from pdp.console.markup import Html, client_text, esc, join, tag, text_block
from pdp.console.signin import redirect
from pdp.console.views.common import badge, bullet_list, csrf_field, definition_rows, when
from pdp.console.websession import WebSession, signed_in
from pdp.domain.approvals import (
    PENDING,
    REASON_REQUIRED,
    ApprovalRefused,
    ApprovalRequest,
    one_person,
    reason_kept,
    same_person,
)
from pdp.domain.identity import identity_key
from pdp.store import StoreUnavailable

if TYPE_CHECKING:
    from pdp.console.app import Console

TICK = 1.0  # how often a stream looks for changes
HEARTBEAT = 15.0
DECIDED_SHOWN = 25  # settled requests listed under the pending ones
MAX_STREAMS = 8  # open streams per person (issuer, subject): tabs, not a flood
DONE = {"approved": "Approved", "denied": "Denied", "withdrawn": "Withdrawn"}
DRAWN_AT_ONCE = 4096  # characters of client text a card is drawn from on the event loop
CARD_CHARS = 16_000  # client text on a card; a longer request is read whole on its own page
KEPT_BYTES = 64 * 1024 * 1024  # cards' markup kept, drawn once for every viewer
MAX_WHOLE = 2  # whole requests drawn at once for one person


def routes(console: Console) -> list[web.RouteDef]:
    inbox = Inbox(console)
    return [
        web.get("/console/approvals/", inbox.page),
        web.get("/console/approvals/list", inbox.fragment),
        web.get("/console/approvals/stream", inbox.stream),
        web.post("/console/approvals/{id}/decide", inbox.decide),
        web.post("/console/approvals/{id}/withdraw", inbox.withdraw),
        web.get("/console/approvals/{id}", inbox.whole),  # after list and stream
    ]


def _own(request: ApprovalRequest, session: WebSession) -> bool:
    """The person's own request, under this account or another of theirs (one_person: the
    buttons say so; the book refuses the decision either way)."""
    return same_person(str(request.requester.get("subject", "")), session.subject) or one_person(
        session.who, request.requester
    )


@dataclass(frozen=True)
class _Drawn:
    """A card's markup that is the same for every viewer: the rows before and after its
    age, and its command (statements and values); `cut`: characters of client text it
    leaves out (a card of a request too long to read on one)."""

    before: Html
    after: Html
    command: Html
    cut: int = 0

    @property
    def size(self) -> int:
        return len(self.before) + len(self.after) + len(self.command)


def _raw_size(r: ApprovalRequest) -> int:
    command, statements = r.shown()
    drawn = sum(len(s["text"]) for s in statements) if statements else len(command)
    return (drawn + len(r.justification) + sum(len(v) for v in r.parameters)
            + len(r.decision_reason))  # fmt: skip


class _Room:
    """The client text a card has room for (None: all of it), and what it left out."""

    def __init__(self, chars: int | None) -> None:
        self.left, self.cut = chars, 0

    def take(self, text: str) -> tuple[str, int]:
        """The part of `text` drawn, and how many characters after it are not."""
        if self.left is None:
            return text, 0
        kept = text[: self.left]
        self.left -= len(kept)
        self.cut += len(text) - len(kept)
        return kept, len(text) - len(kept)


def _more(n: int) -> Html | str:
    return tag("span", f" [\u2026 {n:,} more characters]", class_="cut") if n else ""


def _draw(r: ApprovalRequest, room: _Room) -> _Drawn:
    """The viewer-independent part of r's card, with the client text `room` has room for
    (no IO: it may run in a worker thread)."""
    command, statements = r.shown()
    requester = r.requester
    before = definition_rows([
        ("Requester", f"{requester.get('subject', '')}"
                      f" ({', '.join(requester.get('groups', [])) or 'no groups'})"),
        ("Connection", r.connection),
        ("Command kind", r.command_kind),
    ])  # fmt: skip

    def client(text: str) -> Html:
        kept, more = room.take(text)
        return Html(client_text(kept) + _more(more))

    rows = [
        ("Reasons", bullet_list(r.reasons)),
        ("Justification", client(r.justification) if r.justification else "none given"),
        ("Approvers", ", ".join(r.approvers) or "—"),
    ]
    if r.state != PENDING:
        decided = f"{r.state}" + (f" by {r.approver}" if r.approver else "")
        rows.append(("Outcome", client(f"{decided}: {r.decision_reason}")
                     if r.decision_reason else decided))  # fmt: skip

    def block(text: str) -> Html:
        kept, more = room.take(text)
        return Html(tag("pre", tag("code", text_block(kept))) + _more(more))

    if statements:
        items = []
        for s in statements:
            if room.left == 0:
                room.cut += len(s["text"])
                continue
            items.append(tag("li", Html(block(s["text"]) + join(
                (badge(c, "class") for c in s["classification"]), " "))))  # fmt: skip
        if len(items) < len(statements):
            items.append(tag("li", f"[\u2026 {len(statements) - len(items):,} more"
                                   " statements]", class_="cut"))  # fmt: skip
        shown = tag("ol", join(items), class_="statements",
                    aria_label=f"{len(statements)} statement(s)")  # fmt: skip
    else:
        shown = block(command)
    values: Html | str = ""
    if r.parameters:
        # in <code>: read in stored order (console.css), like the statements they run with
        listed = []
        for n, v in enumerate(r.parameters, 1):
            if room.left == 0:
                room.cut += len(v)
                continue
            listed.append(tag("li", Html(f"${n} = " + tag("code", client(v)))))
        if len(listed) < len(r.parameters):
            listed.append(tag("li", f"[\u2026 {len(r.parameters) - len(listed):,} more values]",
                              class_="cut"))  # fmt: skip
        values = tag("ol", join(listed), class_="parameters",
                     aria_label="Parameter values")  # fmt: skip
    heading = tag("h4", "Statements" if statements else "Command")
    if room.cut:
        total = _raw_size(r)
        heading = Html(heading + tag("p", Html(
            esc(f"This request holds {total:,} characters of client text; this card shows"
                f" {total - room.cut:,} of them. Read it whole, and decide, on its own page: ")
            + tag("a", "the whole request", href=f"/console/approvals/{r.id}")
        ), class_="cut-note"))  # fmt: skip
    return _Drawn(before, definition_rows(rows), Html(heading + shown + values), room.cut)


def _assembled(r: ApprovalRequest, drawn: _Drawn, actions: Html | str) -> Html:
    """The card: its heading, the drawn rows around its age, its command, `actions`."""
    heading_id = f"req-{r.id}"
    title = Html(esc(f"{r.id} ") + badge(r.state, f"state-{r.state}"))
    asked = definition_rows([("Asked", when(r.created_at, with_age=True))])
    body = Html(
        tag("h3", title, id=heading_id)
        + tag("dl", Html(drawn.before + asked + drawn.after))
        + drawn.command
        + actions
    )
    return tag("article", body, class_="request", aria_labelledby=heading_id,
               data_id=r.id, data_state=r.state)  # fmt: skip


class Inbox:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.book = console.pdp.approvals
        self._salt = secrets.token_hex(16)
        self._streams: Counter[tuple[str, str]] = Counter()
        # cards' shared markup by (request id, state), the least recently shown dropped
        # first beyond KEPT_BYTES; and the drawings under way
        self._kept: OrderedDict[tuple[str, str], _Drawn] = OrderedDict()
        self._kept_bytes = 0
        self._drawing: dict[tuple[str, str], asyncio.Future[_Drawn]] = {}
        self._whole: Counter[tuple[str, str]] = Counter()  # whole requests being drawn

    async def _cards(self, session: WebSession,
                     shown: list[ApprovalRequest] | None = None) -> Html:  # fmt: skip
        if shown is None:
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
        """r's card in the inbox: cut to CARD_CHARS of client text, and one cut has no
        decide buttons (read it whole first)."""
        drawn = await self._drawn(r)
        actions = await self._actions(r, session, not drawn.cut) if r.state == PENDING else ""
        return _assembled(r, drawn, actions)

    async def _drawn(self, r: ApprovalRequest) -> _Drawn:
        """What the card of `r` shows to everyone, made once per state and kept: a small
        request at once, a larger one in a worker thread (its text is the requester's,
        up to megabytes, and its markup costs seconds: on the PDP's event loop, at every
        load of every approver's inbox, it held every decision that long)."""
        key = (r.id, r.state)
        drawn = self._kept.get(key)
        if drawn is not None:
            self._kept.move_to_end(key)
            return drawn
        if _raw_size(r) <= DRAWN_AT_ONCE:
            drawn = _draw(r, _Room(CARD_CHARS))
        else:
            task = self._drawing.get(key)
            if task is None:  # one drawing of it at a time, whoever else waits for it
                task = self._drawing[key] = asyncio.ensure_future(
                    asyncio.to_thread(_draw, r, _Room(CARD_CHARS))
                )
                task.add_done_callback(lambda _: self._drawing.pop(key, None))
            drawn = await asyncio.shield(task)
        self._keep(key, drawn)
        return drawn

    def _keep(self, key: tuple[str, str], drawn: _Drawn) -> None:
        if key in self._kept:
            return
        self._kept[key] = drawn
        self._kept_bytes += drawn.size
        while self._kept_bytes > KEPT_BYTES and len(self._kept) > 1:
            _, old = self._kept.popitem(last=False)
            self._kept_bytes -= old.size

    async def _actions(self, r: ApprovalRequest, session: WebSession, whole: bool = True) -> Html:
        """The decide form (`whole`: the person is shown all of the request; else a link to
        where it is) and, for the requester, the withdraw form."""
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
        if not whole and allowed:  # nobody decides what they were shown a part of
            decide = tag("p", Html(esc("Too long to decide from this card: read ") + tag(
                "a", "the whole request", href=f"/console/approvals/{r.id}")
                + esc(" and decide there.")), class_="why")  # fmt: skip
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
        shown = await visible_approvals(self.book, session.who)
        done = request.query.get("done", "")
        # the outcome of a request this person may see: ?done=&id= names any id, and said
        # of another's request, its state was anyone's to learn
        settled = next((r for r in shown if r.id == request.query.get("id", "")), None)
        if not flash and done in DONE and settled is not None and settled.state == done:
            flash = f"{DONE[done]}: {settled.id}"
        inbox = tag("section", await self._cards(session, shown), id="inbox", aria_live="off",
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

    async def whole(self, request: web.Request) -> web.Response:
        """One request the person may see, all of it, with its decide form: drawn in a
        worker thread (megabytes of a requester's text), MAX_WHOLE at once per person."""
        session: WebSession = signed_in(request)
        wanted = request.match_info["id"]
        shown = await visible_approvals(self.book, session.who)
        r = next((x for x in shown if x.id == wanted), None)
        if r is None:  # someone else's request reads as none at all
            raise web.HTTPNotFound(text=f"no approval request {wanted[:40]!r} you may see")
        person = (session.issuer, identity_key(session.subject))
        if self._whole[person] >= MAX_WHOLE:
            raise web.HTTPTooManyRequests(
                text=f"at most {MAX_WHOLE} whole requests are drawn for you at once: wait"
            )
        self._whole[person] += 1
        try:
            actions = await self._actions(r, session) if r.state == PENDING else ""

            def drawn() -> web.Response:  # the page's bytes too: copying megabytes takes time
                card = _assembled(r, _draw(r, _Room(None)), actions)
                return self.console.page(request, f"Approval request {r.id}", card,
                                         section="approvals")  # fmt: skip

            return await asyncio.to_thread(drawn)
        finally:
            self._whole[person] -= 1
            if self._whole[person] <= 0:
                del self._whole[person]

    async def fragment(self, request: web.Request) -> web.Response:
        html = await self._cards(signed_in(request))
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        session: WebSession = signed_in(request)
        person = (session.issuer, identity_key(session.subject))
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
        if reason_kept(reason) is None:
            return await self.page(request, REASON_REQUIRED, 400)
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
