"""Evidence: the chain's status, the latest signed checkpoint, the export, the controls.

The status is `verify_store` — what `portcullis audit verify` runs — against this PDP's
own public key and its anchor file; the latest checkpoint is that anchor (the newest
signed checkpoint, kept outside the store); the export is `export_bundle`, the bundle
`portcullis audit export` writes, signed by the same key; a control's page lists the
evidence streams `pdp.evidence.controls` maps to it and the latest records of their
kinds. Auditors only.

A verification reads the whole store on the PDP's own loop, so the page does not run one
per load: loads share the one running, and a report younger than REVERIFY_SECONDS (or ten
times as long as it took) is shown again with its age and the head it verified; one
export runs at a time.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pdp.console.literals import PII_GROUP, sees_values
from pdp.console.markup import Html, join, tag, text_block
from pdp.console.views.common import csrf_field, definitions, plausible, table, when
from pdp.console.websession import WebSession, signed_in
from pdp.evidence.bundle import StoreUnverified, export_bundle, parse_time
from pdp.evidence.checkpoints import EvidenceReport, anchor_path_for, head_path_for, verify_store
from pdp.evidence.controls import CONTROLS, ISO, NIST, STREAMS
from pdp.plumbing.timestamps import rfc3339
from pdp.store import StoreUnavailable

if TYPE_CHECKING:
    from pdp.console.app import Console

FRAMEWORKS = {"nist-800-53": NIST, "iso-27001": ISO}
RECORDS_SHOWN = 50
# a report is shown again for this long (or ten times as long as it took, if longer)
REVERIFY_SECONDS = 30.0
REVERIFY_FACTOR = 10.0
EXPORT_WITHHOLDS_VALUES = (
    f"Values are for auditors also in {PII_GROUP}: your bundle withholds the records that"
    f" quote them (decisions, recordings, approvals), and its verification says which it"
    f" could not check; everything else verifies as in the full bundle"
)


@dataclass(frozen=True)
class Verified:
    """One verification's report, when it finished (monotonic and wall) and its cost."""

    report: EvidenceReport
    finished: float
    at: float
    took: float

    def fresh(self, now: float) -> bool:
        return now - self.finished < max(REVERIFY_SECONDS, REVERIFY_FACTOR * self.took)


def routes(console: Console) -> list[web.RouteDef]:
    view = EvidenceView(console)
    return [
        web.get("/console/evidence/", view.status),
        web.post("/console/evidence/export", view.export),
        web.get("/console/evidence/controls/{framework}/{control}", view.control),
    ]


def _slug(framework: str) -> str:
    return next(k for k, v in FRAMEWORKS.items() if v == framework)


class EvidenceView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.pdp = console.pdp
        self._verified: Verified | None = None
        self._verifying: asyncio.Task[Verified] | None = None
        self._exporting = asyncio.Lock()

    def _auditor(self, request: web.Request) -> WebSession:
        session: WebSession = signed_in(request)
        if not self.console.is_auditor(session):
            groups = ", ".join(self.console.settings.auditor_groups)
            raise web.HTTPForbidden(text=f"evidence is for auditors ({groups})")
        return session

    def _anchor(self) -> tuple[Path, Any]:
        path = anchor_path_for(self.pdp.config.pdp.signing_key)
        return path, _read_json(path)

    def _heads(self, anchor_path: Path) -> list[tuple[Any, str]]:
        """The head the PDP keeps beside the anchor (head.json), as `audit verify` and
        `audit export` check it: a tail cut after a crash fails there too."""
        path = head_path_for(anchor_path)
        return [(_read_json(path), str(path))]

    async def _verify(self) -> Verified:
        path, anchor = self._anchor()
        started = time.monotonic()
        report = await verify_store(self.pdp.store, self.pdp.signer.public_key, anchor,
                                    str(path), also=self._heads(path))  # fmt: skip
        now = time.monotonic()
        return Verified(report, now, time.time(), now - started)

    async def verified(self) -> Verified:
        """The newest report still fresh, the one being made, or a new one: however many
        auditors reload, one verification at a time, and at most one per freshness."""
        if self._verified is not None and self._verified.fresh(time.monotonic()):
            return self._verified
        if self._verifying is None:
            self._verifying = asyncio.ensure_future(self._verify())
        task = self._verifying
        try:
            done = await asyncio.shield(task)
        finally:
            if task.done() and self._verifying is task:
                self._verifying = None
        self._verified = done
        return done

    async def status(self, request: web.Request) -> web.Response:
        session = self._auditor(request)
        _path, anchor = self._anchor()
        try:
            verified = await self.verified()
        except StoreUnavailable as exc:
            return self.console.page(request, "Evidence", Html(""), section="evidence",
                                     status=503, flash=str(exc))  # fmt: skip
        report = verified.report
        age = max(0.0, time.time() - verified.at)
        as_of = tag("p", f"Verified at {rfc3339(verified.at)} ({age:.0f} s ago, in"
                         f" {verified.took:.1f} s) up to seq {report.head[0]}; the page"
                         " verifies again once that is"
                         f" {max(REVERIFY_SECONDS, REVERIFY_FACTOR * verified.took):.0f} s"
                         " old.", class_="as-of")  # fmt: skip
        if report.ok:
            verdict = tag("p", "OK: the chain verifies", class_="chain ok", id="chain-status")
            detail = Html(as_of + tag("pre", text_block("\n".join(report.counted.lines()))))
        else:
            verdict = tag("p", f"FAIL: {report.problems[0].describe()}", class_="chain bad",
                          id="chain-status", role="alert")  # fmt: skip
            detail = Html(as_of + tag("ul", join(tag("li", p.describe())
                                                 for p in report.problems[:20])))  # fmt: skip
        checkpoint: Html
        payload = anchor.get("payload") if isinstance(anchor, dict) else None
        if isinstance(payload, dict):
            checkpoint = definitions([
                ("Sequence", str(payload.get("seq", ""))),
                ("Chain hash", str(payload.get("hash", ""))),
                ("Signed at", when(float(payload.get("time") or 0))),
                ("Signing key", str(anchor.get("key_id", self.pdp.signer.key_id))),
                ("Signature", str(anchor.get("signature", ""))[:32] + "…"),
            ])  # fmt: skip
        else:
            checkpoint = tag("p", "No signed checkpoint yet (one is written every minute).")
        export = tag("form", Html(
            csrf_field(session.csrf)
            + tag("p", Html(tag("label", "Since (RFC 3339, optional)", for_="x-since")
                            + tag("input", "", id="x-since", name="since")))
            + tag("p", Html(tag("label", "Until (optional)", for_="x-until")
                            + tag("input", "", id="x-until", name="until")))
            + tag("button", "Export evidence bundle", type="submit")
        ), method="post", action="/console/evidence/export", class_="export")  # fmt: skip
        if not sees_values(session.groups):
            export = Html(tag("p", EXPORT_WITHHOLDS_VALUES + ".", class_="export") + export)
        controls = join(
            Html(tag("h3", framework) + tag("ul", join(
                tag("li", tag("a", f"{cid} {title}",
                              href=f"/console/evidence/controls/{_slug(framework)}/{cid}"))
                for cid, title in catalogue.items()
            )))
            for framework, catalogue in CONTROLS.items()
        )  # fmt: skip
        content = Html(
            tag("h2", "Chain status") + verdict + detail
            + tag("h2", "Latest signed checkpoint") + checkpoint
            + tag("h2", "Export") + tag("p", "The same signed bundle as "
                                              "`portcullis audit export`.") + export
            + tag("h2", "Controls") + controls
        )  # fmt: skip
        return self.console.page(request, "Evidence", content, section="evidence")

    async def export(self, request: web.Request) -> web.StreamResponse:
        session = self._auditor(request)
        if self._exporting.locked():  # each verifies the whole store and holds a bundle
            return self.console.page(request, "Evidence", Html(""), section="evidence",
                                     status=429, flash="an export is being made: try again"
                                     " when it is done")  # fmt: skip
        async with self._exporting:
            # the bundle holds every record as it was hashed: a statement's literals, bound
            # values, a server error quoting a value. Pages show a reader outside
            # pii-readers those values masked (pdp/console/literals.py); a copy with them
            # masked would no longer verify by the chain's recipe, so such a reader's
            # bundle withholds those records' bodies (pdp.evidence.bundle)
            return await self._export(request, withhold_values=not sees_values(session.groups))

    async def _export(self, request: web.Request, withhold_values: bool) -> web.StreamResponse:
        form = await request.post()
        try:
            since, until = (plausible(parse_time(str(form[k])), str(form[k]))
                            if form.get(k) else None for k in ("since", "until"))  # fmt: skip
        except ValueError as exc:
            return self.console.page(request, "Evidence", Html(""), section="evidence",
                                     status=400, flash=str(exc))  # fmt: skip
        path, anchor = self._anchor()
        with tempfile.TemporaryDirectory(prefix="portcullis-export-") as tmp:
            out = Path(tmp) / "evidence.tar.gz"
            try:
                heads = self._heads(path)
                summary = await export_bundle(self.pdp.store, self.pdp.signer, out, since, until,
                                              anchor, str(path), also=heads,
                                              withhold_values=withhold_values)  # fmt: skip
            except StoreUnavailable as exc:
                return self.console.page(request, "Evidence", Html(""), section="evidence",
                                         status=503, flash=str(exc))  # fmt: skip
            except StoreUnverified as bad:
                return self.console.page(request, "Evidence", Html(""), section="evidence",
                                         status=409, flash="no bundle: the chain does not"
                                         f" verify: {bad.problems[0].describe()}")  # fmt: skip
            data = out.read_bytes()
        withheld = "-withheld" if withhold_values else ""
        name = f"evidence-{summary.first_seq}-{summary.last_seq}{withheld}.tar.gz"
        return web.Response(body=data, content_type="application/gzip", headers={
            "Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    async def control(self, request: web.Request) -> web.Response:
        self._auditor(request)
        framework = FRAMEWORKS.get(request.match_info["framework"])
        cid = request.match_info["control"]
        if framework is None or cid not in CONTROLS[framework]:
            raise web.HTTPNotFound(text="no such control")
        supporting = [(s, why) for s in STREAMS for fw, c, why in s.controls
                      if fw == framework and c == cid]  # fmt: skip
        parts = [tag("p", f"{framework} — {CONTROLS[framework][cid]}")]
        for stream, why in supporting:
            parts.append(tag("h2", f"{stream.name}: {stream.description}"))
            parts.append(tag("p", f"Why it supports {cid}: {why}"))
            if not stream.kinds:
                parts.append(tag("p", "Derived in the export from the records above."))
                continue
            # the newest of each kind only: every decision of the store, read for a page,
            # took the memory and the loop of the PDP that answers them
            records = []
            for kind in stream.kinds:
                records += await self.pdp.store.newest(kind, limit=RECORDS_SHOWN)
            records.sort(key=lambda r: r.seq, reverse=True)
            rows = [[str(r.seq), rfc3339(r.time), r.kind, r.subject or "-",
                     tag("a", r.session_id, href=f"/console/sessions/{r.session_id}")
                     if r.session_id else "-", r.id] for r in records[:RECORDS_SHOWN]]  # fmt: skip
            parts.append(table(f"records of {', '.join(stream.kinds)}"
                               f" (latest {min(len(records), RECORDS_SHOWN)} shown; the export"
                               " holds them all)",
                               ("Seq", "Time", "Kind", "Subject", "Session", "Record id"),
                               rows, class_="records"))  # fmt: skip
        if not supporting:
            parts.append(tag("p", "No evidence stream supports this control yet."))
        return self.console.page(request, f"{cid} {CONTROLS[framework][cid]}", join(parts),
                                 section="evidence")  # fmt: skip


def _read_json(path: Path) -> Any:
    """A kept JSON file's document, or None when there is none or it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
