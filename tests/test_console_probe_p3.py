"""Attacks on the console's reading of the audit store (third console probe).

The console is served by the PDP itself (pdp.http_listen), in the process and on the
event loop that answer every decision. A page that reads records without bound makes
whoever may load it — a reader, for their own sessions page — spend the PDP's memory and
loop time on the whole store, as often as they reload it. Each test drives a real PDP
(tests/pdp_harness.py) with its real SQLite store, signs in through the dev issuer as a
browser does, and counts the records the page read from the store.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest
from test_console_probe_p1 import _http, pdp, sign_in  # noqa: F401  (pdp: a fixture)

from pdp.console.views.sessions import LISTED

OTHERS = 1500


class Counted:
    """Counts the records the store's reads return (query and newest)."""

    def __init__(self, store) -> None:
        self.records = 0
        self._query, self._newest = store.query, getattr(store, "newest", None)
        store.query, store.newest = self.query, self.newest

    async def query(self, *args, **kwargs):
        found = await self._query(*args, **kwargs)
        self.records += len(found)
        return found

    async def newest(self, *args, **kwargs):
        found = await self._newest(*args, **kwargs)
        self.records += len(found)
        return found


# records handed to the store together: its writer commits what waits together in one
# transaction (GroupCommitStore), in the order appended. One append awaited at a time was
# a commit (an fsync) per record: 3,000 of them made most of this file's minute.
TOGETHER = 400


async def _append_all(store, records: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    """Append (kind, body, keywords) records in this order, TOGETHER at a time."""
    for start in range(0, len(records), TOGETHER):
        # gather starts its tasks in order, and each queues its record before it first waits
        await asyncio.gather(
            *(
                store.append(kind, body, **kw)
                for kind, body, kw in records[start : start + TOGETHER]
            )
        )


async def _sessions(store, subject: str, n: int, closed: bool = True) -> list[str]:
    """n sessions of `subject` as the PDP records them (session.open, session.close)."""
    ids = []
    records: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for _ in range(n):
        sid = str(uuid.uuid4())
        identity = {"subject": subject, "issuer": "portcullis-dev", "groups": ["readonly"]}
        body = {
            "verdict": "allow",
            "session": {"identity": identity, "connection": {"name": "orders-db"}},
        }
        records.append(("session.open", body, {"session_id": sid, "subject": subject}))
        if closed:
            summary = {"commands": 3, "bytes_to_client": 100, "note": "x" * 400}
            records.append((
                "session.close", {"summary": summary, "duration_seconds": 1.0},
                {"session_id": sid, "subject": subject},
            ))  # fmt: skip
        ids.append(sid)
    await _append_all(store, records)
    return ids


async def test_a_reader_s_sessions_page_reads_no_one_else_s_sessions(pdp):  # noqa: F811
    """Attack (anyone who can sign in, a reader): load /console/sessions/, which shows a
    reader their own sessions. It read every session.close record of the store (every
    person's) to find the closes of the reader's few, on every load: the PDP's memory and
    loop for the whole store's sessions, as often as one reloads (3,000+ records for 2
    sessions here; a production store holds millions). Now the listing reads its
    session.open records newest first, a page at a time, and the close of each session
    listed alone."""
    await _sessions(pdp.store, "olga@example.com", OTHERS)
    mine = await _sessions(pdp.store, "rita@example.com", 2)
    counted = Counted(pdp.store)
    async with _http() as http:
        await sign_in(http, pdp.base, "rita@example.com", "readonly")
        counted.records = 0
        async with http.get(f"{pdp.base}/console/sessions/") as r:
            assert r.status == 200
            page = await r.text()
    assert all(sid in page for sid in mine)
    assert "olga@example.com" not in page
    assert counted.records <= 20, counted.records  # 3,004 before


async def test_an_auditor_s_sessions_page_reads_what_it_lists(pdp):  # noqa: F811
    """The same for an auditor, who sees everyone's: the newest LISTED sessions and
    their closes are read, not the store's every session and close."""
    older = await _sessions(pdp.store, "olga@example.com", OTHERS)
    counted = Counted(pdp.store)
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor")
        counted.records = 0
        async with http.get(f"{pdp.base}/console/sessions/") as r:
            assert r.status == 200
            page = await r.text()
    listed = re.findall(r'href="/console/sessions/([0-9a-f-]{36})"', page)
    assert listed == older[::-1][:LISTED]  # the newest, newest first
    assert "closed" in page
    assert counted.records <= 1000, counted.records  # 3,000 before


async def test_an_evidence_control_page_reads_the_records_it_shows(pdp):  # noqa: F811
    """An auditor's click on a control (NIST AU-2, say) read every record of the kinds
    its streams hold — every decision of the store — to show the newest 50."""
    from pdp.console.views.evidence import FRAMEWORKS, RECORDS_SHOWN
    from pdp.evidence.controls import CONTROLS, STREAMS

    await _append_all(
        pdp.store,
        [("decision", {"verdict": "allow", "n": n}, {"subject": "olga"}) for n in range(OTHERS)],
    )
    slug, framework = next(iter(FRAMEWORKS.items()))
    control = next(
        c
        for c in CONTROLS[framework]
        if any(
            fw == framework and cid == c and "decision" in s.kinds
            for s in STREAMS
            for fw, cid, _ in s.controls
        )
    )
    kinds = {k for s in STREAMS for fw, cid, _ in s.controls if fw == framework and cid == control
             for k in s.kinds}  # fmt: skip
    counted = Counted(pdp.store)
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor")
        counted.records = 0
        async with http.get(f"{pdp.base}/console/evidence/controls/{slug}/{control}") as r:
            assert r.status == 200, await r.text()
    assert counted.records <= RECORDS_SHOWN * len(kinds), counted.records  # 1,504 before


async def test_the_decisions_page_holds_a_page_of_records_at_a_time(pdp, monkeypatch):  # noqa: F811
    """An auditor's decisions page (24 hours, 7 or 30 days) read every decision and
    session.open of its window at once into the PDP's memory (30 days of a busy PDP: many
    millions); now it counts them a page at a time and lets them go, so what it holds is
    one page (PAGE, made small here) whatever the window holds."""
    from pdp.console.views import decisions

    monkeypatch.setattr(decisions, "PAGE", 100, raising=False)
    await _append_all(
        pdp.store,
        [("decision", {"verdict": "allow", "n": n}, {"subject": "olga"}) for n in range(OTHERS)],
    )
    for _ in range(3):
        await pdp.store.append("decision", {"verdict": "deny", "raw": "DROP TABLE x"})
    largest = 0
    query = pdp.store.query

    async def counted(*args, **kwargs):
        nonlocal largest
        found = await query(*args, **kwargs)
        largest = max(largest, len(found))
        return found

    pdp.store.query = counted
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor")
        largest = 0
        async with http.get(f"{pdp.base}/console/decisions/?window=24h") as r:
            assert r.status == 200
            page = await r.text()
    assert "DROP TABLE x" in page
    assert largest <= 100, largest  # 1,503 before


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_newest_reads_a_page_from_the_newest(backend, tmp_path, request):
    """AuditStore.newest, which the pages above read by: newest first, below before_seq,
    with query's filters, on both stores."""
    from test_pdp_probe_p7 import _store

    from pdp.store import open_store
    from portcullis.config import StoreSettings

    settings = StoreSettings(**_store(backend, request, tmp_path))
    async with open_store(settings) as store:
        for n in range(10):
            kind = "a" if n % 2 else "b"
            await store.append(kind, {"n": n}, session_id=f"s{n % 3}", subject=f"u{n % 2}")
        first = await store.newest("a", limit=3)
        assert [r.seq for r in first] == [10, 8, 6]
        assert [r.seq for r in await store.newest("a", before_seq=6, limit=3)] == [4, 2]
        assert [r.seq for r in await store.newest("b", session_id="s0", limit=5)] == [7, 1]
        assert await store.newest("b", subject="u1", limit=5) == []
