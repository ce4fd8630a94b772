"""Sessions: search the recorded sessions, and replay one.

The search reads `session.open` / `session.close` records as `portcullis sessions list`
does and summarises them with the same `summarize`; a replay is the same
`build_timeline` as `portcullis replay` (statements with verdicts, reasons, masking
counts — never values — and result summaries; HTTP requests; SSH commands), and each
recorded terminal is played in the browser from its asciicast v2 recording
(`pdp.domain.casts`, the same file `replay --format asciicast` writes), its control
bytes shown as text, control characters as inert escapes (by default: nothing recorded
erases or overwrites what it printed), or interpreted by a tiny player that shows anything
it does not know as an inert escape, and lists apart what it does not draw (OSC strings:
titles, links).

Who sees what: auditors (ConsoleSettings.auditor_groups) every session; anyone else their
own sessions only (subject and issuer of the session's identity), whatever the query
says.

A session is as long as its client made it: a replay page shows ENTRIES_SHOWN timeline
entries (`?from=N` for the others, the totals always for the whole session), each one's
client text cut to ENTRY_CHARS (`?entry=N` draws that entry alone, whole), and builds
the timeline and its HTML in a worker thread, off the event loop that answers every
decision; one person has at most MAX_BUILDS such pages made at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pdp.cli.sessions import parse_time
from pdp.cli.terminal_replay import recorded
from pdp.console.literals import SQL_KINDS, detected_masked, sees_values, shown_sql
from pdp.console.markup import Html, esc, join, tag, text_block
from pdp.console.views.common import (
    badge,
    bullet_list,
    definitions,
    masking_badges,
    plausible,
    table,
    verdict_badge,
    when,
)
from pdp.console.websession import WebSession, signed_in
from pdp.domain.approvals import believed_approvals
from pdp.domain.timeline import (
    NO_DECISION,
    OTHER_COMMAND,
    REUSED,
    Entry,
    SessionSummary,
    build_timeline,
    summarize,
)
from pdp.evidence.checkpoints import not_written_by_pdp
from pdp.store import AuditRecord

# what a disputed verdict's badge says after "PDP recorded"
DISPUTES = {
    NO_DECISION: "no such decision",
    OTHER_COMMAND: "this decision of another command",
    REUSED: "no reuse of this decision then",
}

if TYPE_CHECKING:
    from pdp.console.app import Console

log = logging.getLogger("portcullis.console")

LISTED = 200
SCAN_PAGE = 500  # session.open records read at a time for a search, newest first
SCANNED = 20_000  # the most one search reads
ENTRIES_SHOWN = 500  # timeline entries on one replay page
ENTRY_CHARS = 2000  # client text of an entry on it (each part); ?entry=N shows one whole
CLIENT_FACTS = ("method", "path")  # an HTTP request's, shown in its command already
VERDICTS = ("", "allow", "mask", "deny", "require_approval")


# replay and terminal pages one person has the PDP build at once: each reads every record
# of its session (a long session: millions), so parallel loads (tabs, a script) multiply
# that; more wait for one to end (429)
MAX_BUILDS = 2


def routes(console: Console) -> list[web.RouteDef]:
    view = SessionsView(console)
    return [
        web.get("/console/sessions/", view.search),
        web.get("/console/sessions/{sid}", view.replay),
        web.get("/console/sessions/{sid}/terminal/{channel:\\d+}", view.terminal),
    ]


def _issuer(record: AuditRecord) -> str:
    identity = (record.body.get("session") or {}).get("identity") or {}
    return str(identity.get("issuer", ""))


class SessionsView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.store = console.pdp.store
        self._building: Counter[tuple[str, str]] = Counter()

    @contextlib.contextmanager
    def _build(self, request: web.Request) -> Iterator[None]:
        """One of the MAX_BUILDS session pages this person may have built at once."""
        session: WebSession = signed_in(request)
        person = (session.issuer, session.subject)
        if self._building[person] >= MAX_BUILDS:
            raise web.HTTPTooManyRequests(
                text=f"at most {MAX_BUILDS} session pages are made for you at once: wait"
                " for one to load"
            )
        self._building[person] += 1
        try:
            yield
        finally:
            self._building[person] -= 1
            if self._building[person] <= 0:
                del self._building[person]

    def _may_see(self, session: WebSession, opened: AuditRecord) -> bool:
        if self.console.is_auditor(session):
            return True
        summary = summarize(opened)
        return summary.subject == session.subject and _issuer(opened) == session.issuer

    async def search(self, request: web.Request) -> web.Response:
        session: WebSession = signed_in(request)
        q = request.query
        auditor = self.console.is_auditor(session)
        subject = q.get("subject", "").strip() if auditor else session.subject
        connection = q.get("connection", "").strip()
        verdict = q.get("verdict", "") if q.get("verdict", "") in VERDICTS else ""
        problems: list[str] = []
        times: dict[str, float | None] = {}
        for key in ("since", "until"):
            text = q.get(key, "").strip()
            try:
                times[key] = plausible(parse_time(text), text) if text else None
            except (argparse.ArgumentTypeError, ValueError) as exc:
                problems.append(f"{key}: {exc}")
                times[key] = None
        shown, scanned_all = await self._newest_opened(
            session, subject, connection, verdict, times["since"], times["until"]
        )
        narrowed = [] if scanned_all else [
            f"only the newest {SCANNED} sessions were searched: narrow the search"
            " (subject, since, until) to find older ones"
        ]  # fmt: skip
        closes: dict[str, AuditRecord] = {}
        for r in shown:  # the close of each listed session alone, by its index
            found = await self.store.query(kind="session.close", session_id=r.session_id,
                                           limit=1)  # fmt: skip
            if found:
                closes[r.session_id] = found[0]
        summaries = [summarize(r, closes.get(r.session_id)) for r in shown]  # newest first
        # a session.open record anyone who may INSERT into the store can append: marked
        forged = set(await not_written_by_pdp(self.store, shown))
        unvouched = {r.session_id for r in shown if r.seq in forged}
        form = self._form(q, auditor, subject, connection, verdict)
        rows = [self._row(s, s.session_id in unvouched) for s in summaries]
        result = table(f"{len(summaries)} session(s), newest first", (
            "Session", "Started", "Subject", "Connection", "Verdict", "Status", "Duration",
            "Commands", "Client"), rows, class_="sessions") if rows else tag(
            "p", "No session matches.", class_="empty")  # fmt: skip
        scope = "" if auditor else tag("p", "You see your own sessions.", class_="note")
        notes = [
            f"{len(unvouched)} sessions listed here have a session.open record with no"
            " valid record MAC (INSERTed into the store by someone else, or written"
            " before record MACs): marked NOT WRITTEN BY THE PDP"
        ] if unvouched else []  # fmt: skip
        flash = "; ".join(problems + narrowed + notes)
        return self.console.page(request, "Sessions", Html(scope + form + result),
                                 section="sessions", flash=flash,
                                 status=400 if problems else 200)  # fmt: skip

    async def _newest_opened(
        self,
        session: WebSession,
        subject: str,
        connection: str,
        verdict: str,
        since: float | None,
        until: float | None,
    ) -> tuple[list[AuditRecord], bool]:
        """The session.open records of the LISTED newest sessions this person may see
        that match the search, newest first, and whether every session in range was
        looked at. Read a page at a time from the newest, at most SCANNED of them: the
        search runs in the PDP that answers every decision, and reading every session
        of the store (and every close: each person could, for their own few) took its
        memory and its loop's time for as long as the store grows."""
        shown: list[AuditRecord] = []
        before: int | None = None
        scanned = 0
        while len(shown) < LISTED and scanned < SCANNED:
            page = await self.store.newest("session.open", subject=subject or None,
                                           since=since, until=until, before_seq=before,
                                           limit=SCAN_PAGE)  # fmt: skip
            if not page:
                return shown, True
            scanned += len(page)
            before = page[-1].seq
            for r in page:
                if not self._may_see(session, r):
                    continue
                s = summarize(r)
                if (connection and s.connection != connection) or (
                    verdict and s.verdict != verdict
                ):
                    continue
                shown.append(r)
                if len(shown) == LISTED:
                    return shown, True
        return shown, len(shown) == LISTED

    def _form(self, q: Any, auditor: bool, subject: str, connection: str, verdict: str) -> Html:
        def field(name: str, label: str, value: str, **attrs: Any) -> Html:
            return tag("p", Html(tag("label", label, for_=f"f-{name}")
                                 + tag("input", "", id=f"f-{name}", name=name, value=value,
                                       **attrs)))  # fmt: skip

        options = join(tag("option", v or "any", value=v, selected=v == verdict) for v in VERDICTS)
        fields = Html(
            (field("subject", "Subject", subject) if auditor else "")
            + field("connection", "Connection", connection)
            + field("since", "Opened since (RFC 3339, or 1h / 7d ago)", q.get("since", ""))
            + field("until", "Opened before", q.get("until", ""))
            + tag("p", Html(tag("label", "Verdict", for_="f-verdict")
                            + tag("select", options, id="f-verdict", name="verdict")))
            + tag("p", tag("button", "Search", type="submit"))
        )  # fmt: skip
        return tag("form", fields, method="get", action="/console/sessions/", class_="search",
                   role="search", aria_label="Search sessions")  # fmt: skip

    def _row(self, s: SessionSummary, unvouched: bool = False) -> list[Any]:
        link = tag("a", s.session_id, href=f"/console/sessions/{s.session_id}")
        duration = f"{s.duration_seconds:g}s" if s.duration_seconds is not None else "-"
        status: Any = s.status
        if unvouched:
            status = Html(esc(s.status) + " " + badge("NOT WRITTEN BY THE PDP", "deny"))
        return [link, when(s.started_at), s.subject, s.connection, verdict_badge(s.verdict),
                status, duration, "-" if s.commands is None else str(s.commands),
                f"{s.client or '-'}@{s.client_addr or '-'}"]  # fmt: skip

    async def _opened(self, request: web.Request) -> AuditRecord:
        sid = request.match_info["sid"]
        found = await self.store.query(kind="session.open", session_id=sid, limit=1)
        # someone else's session reads as no session at all
        if not found or not self._may_see(signed_in(request), found[0]):
            raise web.HTTPNotFound(text=f"no recorded session {sid[:64]!r} you may see")
        return found[0]

    async def replay(self, request: web.Request) -> web.Response:
        with self._build(request):
            return await self._replay(request)

    async def _replay(self, request: web.Request) -> web.Response:
        opened = await self._opened(request)
        sid = opened.session_id
        closed = await self.store.query(kind="session.close", session_id=sid, limit=1)
        events = await self.store.query(kind="session.events", session_id=sid)
        decisions = await self.store.query(kind="decision", session_id=sid)
        # only approval records the book believes (its MAC): "approved by sam" is shown as
        # fact, and anyone who may INSERT into the store can append such a record
        asked = await self.store.query(kind="approval", session_id=sid)
        approvals, left_out = believed_approvals(self.console.pdp.approvals.binding_key, asked)
        if left_out:
            log.warning("replay of %s: approval records %s have no valid MAC; left out", sid,
                        left_out[:10])  # fmt: skip
        forged = await not_written_by_pdp(self.store, [opened, *closed, *events, *decisions,
                                                       *asked])  # fmt: skip
        first = _index(request.query.get("from", ""))
        whole = _index(request.query.get("entry", "")) if "entry" in request.query else None
        content, casts = await asyncio.to_thread(
            self._replay_content, sid, first, opened, closed[0] if closed else None, events,
            decisions, approvals, whole, sees_values(signed_in(request).groups))  # fmt: skip
        flash = (
            f"Records seq {', '.join(str(n) for n in forged[:10])} of this session have no"
            " valid record MAC (INSERTed into the store by someone else, or written before"
            " record MACs): what they say is not vouched for by the PDP."
            + (" Approval records among them are left out." if left_out else "")
            if forged
            else ""
        )
        return self.console.page(request, f"Session {sid}", content, section="sessions",
                                 flash=flash, scripts=("player.js",) if casts else ())  # fmt: skip

    def _replay_content(self, sid: str, first: int, opened: AuditRecord,
                        closed: AuditRecord | None, events: list[AuditRecord],
                        decisions: list[AuditRecord], approvals: list[AuditRecord],
                        whole: int | None = None,
                        values: bool = False) -> tuple[Html, int]:  # fmt: skip
        """The replay page's content and how many terminal recordings it plays (run in a
        worker thread: a session of many commands takes seconds to build). Each entry's
        client text is cut to ENTRY_CHARS, with a link to the entry drawn whole alone
        (`whole`: its index): 500 entries of a reader's 64 KB statements, each word
        mixing scripts, made gigabytes of markup for one page (the PDP's memory)."""
        timeline = build_timeline(opened, closed, events, decisions, approvals)
        s = timeline.summary
        header = definitions([
            ("Subject", f"{s.subject} ({', '.join(s.groups) or 'no groups'})"),
            ("Issuer", timeline.header.get("issuer", "")),
            ("Connection", f"{s.connection} ({s.connection_type}, zone {s.zone or '-'})"),
            ("Client", f"{s.client or '-'} at {s.client_addr or '-'}"),
            ("Started", when(s.started_at)),
            ("Status", s.status + (f" — {s.close_reason}"
                                   if s.close_reason and s.close_reason != s.status else "")),
            ("Session verdict", verdict_badge(s.verdict)),
            ("Policy revision", timeline.header.get("policy_revision", "")),
            ("Credential", timeline.header.get("credential_ref", "") or "-"),
            *([("Event times", timeline.header["receipt"])]
              if "receipt" in timeline.header else []),
            *([("Recording", badge(timeline.header["lost"], "disputed"))]
              if "lost" in timeline.header else []),
        ])  # fmt: skip
        totals = tag("p", ", ".join(f"{k}: {v}" for k, v in timeline.totals.items()
                                    if v is not None and not isinstance(v, dict)),
                     class_="totals")  # fmt: skip
        count = len(timeline.entries)
        if whole is not None and whole < count:
            first, limit = whole, None
            shown = timeline.entries[whole : whole + 1]
            caption = f"Timeline: entry {whole + 1} of {count}, whole"
        else:
            first = min(first, max(count - 1, 0)) // ENTRIES_SHOWN * ENTRIES_SHOWN
            limit, shown = ENTRY_CHARS, timeline.entries[first : first + ENTRIES_SHOWN]
            caption = "Timeline" if count <= ENTRIES_SHOWN else (
                f"Timeline: entries {first + 1}\u2013{first + len(shown)} of {count}")  # fmt: skip
        rows = [self._entry_row(e, sid, first + n, limit, values) for n, e in enumerate(shown)]
        entries = table(caption, ("At", "Direction", "What", "Command", "Verdict", "Why",
                                  "Result", "Masking"), rows, class_="timeline")  # fmt: skip
        pages = _pages(sid, first, count)
        casts = recorded(events)
        players = join(self._player(sid, c.channel, c.decision_id) for c in casts)
        content = Html(header + totals + pages + entries + pages + (
            tag("h2", "Terminal recordings") + players if casts else ""))  # fmt: skip
        return content, len(casts)

    @staticmethod
    def _entry_row(
        e: Entry, sid: str, index: int, limit: int | None, values: bool = False
    ) -> list[Any]:
        """One timeline row, its client text cut to `limit` characters each (a cut one
        links to the entry alone, whole). values: the reader is in pii-readers; else a
        SQL statement's literals are masked as pdp.console.literals says."""
        cut = False
        said = e.command
        if said and not values and e.kind in SQL_KINDS:
            # masked whole where values of its result were masked (a `mask` verdict alone
            # is every reader's statement on a table with sensitive columns)
            said = shown_sql(said, any(n > 0 for n in e.masking.values()))

        def kept(text: str) -> str:
            nonlocal cut
            if limit is None or len(text) <= limit:
                return text
            cut = True
            return f"{text[:limit]} [\u2026 {len(text) - limit:,} more characters]"

        result = dict(e.result)
        facts = []
        if e.rows is not None:
            facts.append(f"{e.rows} row(s)")
        if e.bytes is not None:
            facts.append(f"{e.bytes} bytes")
        # the request line's method and path are the client's text, in the Command column:
        # among the facts, a path `/x; status 200` read as the answer's status
        facts += [
            kept(f"{k} {v}")
            for k, v in result.items()
            if not isinstance(v, dict | list) and not (e.command and k in CLIENT_FACTS)
        ]
        if e.error:
            error = e.error if values or e.kind not in SQL_KINDS else detected_masked(e.error)
            facts.append(kept(f"error: {error}"))
        command = tag("pre", tag("code", text_block(kept(said)))) if said else esc("")
        reasons = bullet_list((kept(r) for r in e.reasons), "")
        if cut:
            command = Html(
                command + tag("a", "the whole entry", href=f"/console/sessions/{sid}?entry={index}")
            )
        verdict = verdict_badge(e.verdict) if e.verdict else esc("")
        if e.cached:
            verdict = Html(verdict + " " + badge("cached", "cached"))
        if e.approval_id:
            verdict = Html(verdict + " " + badge(f"approval {e.approval_id}", "approval"))
        if e.pdp_verdict:  # the proxy's word against the PDP's record (pdp.domain.timeline)
            said = DISPUTES.get(e.pdp_verdict, e.pdp_verdict)
            verdict = Html(verdict + " " + badge(f"PDP recorded {said}", "disputed"))
        at: Any = f"{e.offset:+.3f}s"
        if e.clock:  # the proxy's claimed time against the PDP's clock (pdp.domain.timeline)
            at = Html(esc(at) + " " + badge(f"time ruled out: {e.clock}", "disputed"))
        elif e.late_seconds is not None:
            at = Html(esc(at) + " " + badge(f"late: received {e.late_seconds:g}s after", "late"))
        return [at, e.direction, e.kind or e.type, command, verdict, reasons,
                "; ".join(facts), masking_badges(e.masking)]  # fmt: skip

    def _player(self, sid: str, channel: int, decision_id: str) -> Html:
        src = f"/console/sessions/{sid}/terminal/{channel}"
        pid = f"term-{channel}"
        controls = Html(
            tag("button", "Play", type="button", class_="play")
            + tag("label", "Speed", for_=f"{pid}-speed")
            + tag("select", join(tag("option", f"{v}\u00d7", value=v, selected=v == "1")
                                 for v in ("0.5", "1", "2", "4", "16")),
                  id=f"{pid}-speed", class_="speed")
            + tag("label", "Position", for_=f"{pid}-pos")
            + tag("input", "", type="range", id=f"{pid}-pos", class_="position", min="0",
                  max="1000", value="0", step="1")
            + tag("span", "0.0s", class_="clock", aria_live="off")
            + tag("a", "Download asciicast", href=f"{src}?download=1")
            # off (the default): every byte as text, control sequences as inert escapes,
            # so nothing recorded erases or overwrites what it printed (static/player.js)
            + tag("input", "", type="checkbox", id=f"{pid}-draw", class_="draw")
            + tag("label", "Draw as a terminal (cursor moves, erasing)", for_=f"{pid}-draw")
        )  # fmt: skip
        screen = tag("pre", "", class_="screen", tabindex="0", role="log",
                     aria_label=f"Terminal output, channel {channel}")  # fmt: skip
        # what was typed, apart from the output: a shell with echo off (stty -echo) shows
        # none of it on the screen
        typed = tag("details", Html(
            tag("summary", "Typed input (as the keyboard sent it, echoed or not)")
            + tag("pre", "", class_="typed", tabindex="0",
                  aria_label=f"Typed input, channel {channel}")
        ), open=True)  # fmt: skip
        # OSC strings (window titles, links, one never ended): no terminal draws them on
        # its screen, and one never ended swallowed the rest of the output with it
        unseen = tag("details", Html(
            tag("summary", "Sent to the terminal, not drawn on its screen (OSC strings:"
                           " window titles, links)")
            + tag("pre", "", class_="unseen", tabindex="0",
                  aria_label=f"Output not drawn, channel {channel}")
        ), open=True)  # fmt: skip
        return tag("section", Html(
            tag("h3", f"Channel {channel} (decision {decision_id or '-'})", id=f"{pid}-h")
            + tag("div", controls, class_="controls") + screen + typed + unseen
        ), class_="player", data_cast=src, aria_labelledby=f"{pid}-h")  # fmt: skip

    async def terminal(self, request: web.Request) -> web.Response:
        with self._build(request):
            return await self._terminal(request)

    async def _terminal(self, request: web.Request) -> web.Response:
        opened = await self._opened(request)
        channel = int(request.match_info["channel"])
        events = await self.store.query(kind="session.events", session_id=opened.session_id)
        chosen = [c for c in recorded(events) if c.channel == channel]
        if not chosen:
            raise web.HTTPNotFound(text="no terminal recording on that channel")
        if not sees_values(signed_in(request).groups) and holds_values(chosen[0]):
            raise web.HTTPForbidden(
                text="this terminal recording holds values the detectors find (card numbers,"
                " e-mail addresses, tokens, ...): it is shown only to pii-readers"
            )
        headers = {}
        if request.query.get("download"):
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", opened.session_id[:40])
            name = f"{safe}-{channel}.cast"
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return web.Response(text=chosen[0].to_asciicast(), content_type="application/x-asciicast",
                            charset="utf-8", headers=headers)  # fmt: skip


# what a screen shows of a recording, near enough for the detectors: escape sequences
# (CSI, OSC and string sequences, two-character ESC ones) and other controls taken out,
# so a value drawn in pieces (`4111\x1b[0m 1111 ...`) reads whole
_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def holds_values(cast: Any) -> bool:
    """Whether a value detector finds a value in a recording's output or typed input, as
    sent or as a screen shows it: a terminal of a pii-reader (whose output the proxy does
    not mask) shows the values it printed, which a viewer outside pii-readers is not shown
    (as SQL literals are masked for them: pdp.console.literals)."""
    for code in ("o", "i"):
        text = "".join(str(e[2]) for e in cast.events if e[1] == code)
        for shown in (text, _SEQUENCES.sub("", text)):
            if detected_masked(shown) != shown:
                return True
    return False


def _index(text: str) -> int:
    """An entry index from the query (?from=N); anything else is the first."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0


def _pages(sid: str, first: int, count: int) -> Html:
    """Earlier / later entries of a long timeline (nothing for a short one)."""
    if count <= ENTRIES_SHOWN:
        return Html("")
    links = []
    if first > 0:
        links.append(
            tag(
                "a",
                "Earlier entries",
                rel="prev",
                href=f"/console/sessions/{sid}?from={max(first - ENTRIES_SHOWN, 0)}",
            )
        )
    if first + ENTRIES_SHOWN < count:
        links.append(
            tag(
                "a",
                "Later entries",
                rel="next",
                href=f"/console/sessions/{sid}?from={first + ENTRIES_SHOWN}",
            )
        )
    return tag("nav", join(links, " \u00b7 "), class_="pages", aria_label="Timeline pages")
