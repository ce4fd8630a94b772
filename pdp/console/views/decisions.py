"""Decisions over time: by verdict, connection and zone; the most denied commands; the
policy revisions in force. Drawn from the audit store's `decision` and `session.open`
records (the decision log every verdict is written to), for a window of 24 hours, 7 or
30 days. Auditors only. Records no PDP holding the key wrote (no valid record MAC:
INSERTed into the store by someone else) are not counted, and the page says how many.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pdp.console.charts import bars, stacked_columns
from pdp.console.literals import sees_values, shown_sql
from pdp.console.markup import Html, join, tag, text_block
from pdp.console.views.common import table
from pdp.console.websession import signed_in
from pdp.evidence.checkpoints import not_written_by_pdp
from pdp.plumbing.timestamps import rfc3339
from pdp.store import AuditRecord

if TYPE_CHECKING:
    from pdp.console.app import Console

WINDOWS = {"24h": (86400, 3600), "7d": (7 * 86400, 6 * 3600), "30d": (30 * 86400, 86400)}
VERDICTS = ("allow", "mask", "require_approval", "deny")
TOP = 15
PAGE = 5000  # records read at a time
DENIED_KEPT = 10_000  # distinct denied commands counted apart; the rest as one
OTHER_DENIED = "(other denied commands, past the first 10,000 distinct ones)"


def routes(console: Console) -> list[web.RouteDef]:
    async def page(request: web.Request) -> web.Response:
        session = signed_in(request)
        if not console.is_auditor(session):
            raise web.HTTPForbidden(text="decisions are for auditors")
        window = request.query.get("window", "24h")
        if window not in WINDOWS:
            window = "24h"
        span, bucket = WINDOWS[window]
        now = time.time()
        since = now - span
        store = console.pdp.store
        zones = {c.name: c.zone for c in console.pdp.config.connections}
        tally = _Tally(zones, since, now, bucket)
        forged = 0
        # a page at a time, counted and let go: a window holds every decision of up to 30
        # days, which read at once took the memory of the PDP that makes them
        for kind in ("session.open", "decision"):
            after = 0
            while page := await store.query(kind=kind, since=since, after_seq=after,
                                             limit=PAGE):  # fmt: skip
                after = page[-1].seq
                # a decision anyone who may INSERT into the store can append: never drawn
                # as one the PDP made (a denied command, a revision never in force)
                unvouched = set(await not_written_by_pdp(store, page))
                forged += len(unvouched)
                for r in page:
                    if r.seq not in unvouched:
                        tally.add(r)
                await asyncio.sleep(0)  # the decisions waiting on this loop come first
        content = tally.content(window, sees_values(session.groups))
        flash = (
            f"{forged} records of this window have no valid record MAC (INSERTed into"
            " the store by someone else, or written before record MACs): not counted here;"
            " audit verify names them."
            if forged
            else ""
        )
        return console.page(request, "Decisions", content, section="decisions", flash=flash)

    return [web.get("/console/decisions/", page)]


def _zone(record: AuditRecord, zones: dict[str, str]) -> str:
    connection = (record.body.get("session") or {}).get("connection") or {}
    name = str(connection.get("name") or record.body.get("connection", ""))
    return str(connection.get("zone") or zones.get(name) or "(none)")


class _Tally:
    """The page's counts, fed one record at a time (so the records need not be kept)."""

    def __init__(self, zones: dict[str, str], since: float, now: float, bucket: int) -> None:
        self.zones, self.since, self.bucket = zones, since, bucket
        self.buckets = int((now - since) // bucket) + 1
        self.by_verdict: dict[str, list[int]] = {v: [0] * self.buckets for v in VERDICTS}
        self.by_connection: Counter[str] = Counter()
        self.by_zone: Counter[str] = Counter()
        self.denied: Counter[str] = Counter()
        self.revisions: dict[str, list[Any]] = defaultdict(lambda: [0, None, None])

    def add(self, r: AuditRecord) -> None:
        verdict = str(r.body.get("verdict", ""))
        i = min(int((r.time - self.since) // self.bucket), self.buckets - 1)
        self.by_verdict.setdefault(verdict or "(none)", [0] * self.buckets)[i] += 1
        connection = (r.body.get("session") or {}).get("connection") or {}
        name = str(connection.get("name") or r.body.get("connection", "(none)"))
        self.by_connection[name] += 1
        self.by_zone[_zone(r, self.zones)] += 1
        if verdict == "deny" and r.kind == "decision":
            command = str(r.body.get("raw", ""))[:500]
            if command not in self.denied and len(self.denied) >= DENIED_KEPT:
                command = OTHER_DENIED  # each one unique: the counter must not hold them all
            self.denied[command] += 1
        rev = self.revisions[str(r.body.get("policy_revision", "")) or "(unknown)"]
        rev[0] += 1
        rev[1] = r.time if rev[1] is None else min(rev[1], r.time)
        rev[2] = r.time if rev[2] is None else max(rev[2], r.time)

    def content(self, window: str, values: bool = False) -> Html:
        """values: the reader is in pii-readers (else a value in a denied command is
        masked: pdp.console.literals)."""
        return _content(self, window, values)


def _content(tally: _Tally, window: str, values: bool = False) -> Html:
    since, bucket, buckets = tally.since, tally.bucket, tally.buckets
    labels = [rfc3339(since + i * bucket)[:16].replace("T", " ") for i in range(buckets)]
    by_verdict, by_connection, by_zone = tally.by_verdict, tally.by_connection, tally.by_zone
    denied, revisions = tally.denied, tally.revisions
    series = {v: c for v, c in by_verdict.items() if any(c)} or {"allow": [0] * buckets}
    windows = tag("nav", tag("ul", join(
        tag("li", tag("a", w, href=f"/console/decisions/?window={w}",
                      aria_current="page" if w == window else None)) for w in WINDOWS
    )), aria_label="Window", class_="windows")  # fmt: skip
    top_denied = table("Top denied commands", ("Count", "Command"), [
        [str(n), tag("pre", tag("code", text_block(cmd if values else shown_sql(cmd, False))))]
        for cmd, n in denied.most_common(TOP)
    ], class_="denied") if denied else tag("p", "No denied command in this window.")  # fmt: skip
    history = table("Policy revisions (first and last decision under each)",
                    ("Revision", "Decisions", "First", "Last"), [
        [rev, str(n), rfc3339(first), rfc3339(last)]
        for rev, (n, first, last) in sorted(revisions.items(), key=lambda kv: kv[1][1])
    ], class_="revisions")  # fmt: skip
    return Html(
        windows
        + tag("h2", f"By verdict, last {window}")
        + stacked_columns(f"Decisions per period by verdict, last {window}", labels, series,
                          "by-verdict")
        + tag("h2", "By connection") + bars("Decisions by connection", dict(by_connection),
                                            "by-connection")
        + tag("h2", "By zone") + bars("Decisions by zone", dict(by_zone), "by-zone")
        + tag("h2", "Top denied commands") + top_denied
        + tag("h2", "Policy revision history") + history
    )  # fmt: skip
