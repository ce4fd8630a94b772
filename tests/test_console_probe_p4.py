"""Attacks on the console's Evidence page (fourth console probe, helper evidence).

The Evidence page shows `verify_store` — the whole chain, every signature, the MACs —
and it ran one per load, on the PDP's own event loop that answers every decision. Anyone
in an auditor group (an approver in `security` is one) who reloads it, or opens it in
many tabs, had the PDP read and hash its whole store as often. Loads now share one
verification, and a report is shown again, with its age and the head it verified, until
it is REVERIFY_SECONDS old (or ten times as long as it took); one export at a time.
Each test drives a real PDP (tests/pdp_harness.py), signs in through the dev issuer as a
browser does, and counts the store's full verifications.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from test_console_probe_p1 import _http, pdp, sign_in  # noqa: F401  (pdp: a fixture)

import pdp.console.views.evidence as evidence_view


class Verifies:
    """Counts the store's whole-chain verifications (what verify_store begins with)."""

    def __init__(self, store) -> None:
        self.calls = 0
        self._verify = store.verify
        store.verify = self.verify

    async def verify(self, *args, **kwargs):
        self.calls += 1
        return await self._verify(*args, **kwargs)


@pytest.fixture
def long_fresh(monkeypatch):
    """A freshness no test run outlasts: what is counted is not a matter of time."""
    monkeypatch.setattr(evidence_view, "REVERIFY_SECONDS", 3600.0, raising=False)


async def _page(http, base: str) -> str:
    async with http.get(f"{base}/console/evidence/") as r:
        assert r.status == 200
        return await r.text()


async def test_reloading_the_evidence_page_verifies_once(pdp, long_fresh):  # noqa: F811
    """Attack (an auditor, or an approver in security): reload /console/evidence/ over and
    over, in parallel tabs too, while the chain grows. Each load read and verified the
    whole store (10 loads, 10 verifications; a production store of millions of records a
    load). Now: one verification for all of them, the page saying when and up to which
    seq it verified."""
    for n in range(200):
        await pdp.store.append("decision", {"verdict": "allow", "n": n}, subject="olga")
    verifies = Verifies(pdp.store)
    async with _http() as http:
        await sign_in(http, pdp.base, "sam@example.com", "security")
        pages = await asyncio.gather(*(_page(http, pdp.base) for _ in range(5)))
        await pdp.store.append("decision", {"verdict": "allow"}, subject="olga")
        pages += [await _page(http, pdp.base) for _ in range(5)]
    assert verifies.calls == 1, verifies.calls  # 10 before
    assert all("OK: the chain verifies" in p for p in pages)
    assert all("Verified at " in p and "up to seq" in p for p in pages)


async def test_a_stale_report_is_verified_again(pdp, monkeypatch):  # noqa: F811
    """The reuse ends: a report older than its freshness is made again (a tamper after a
    report shows at the next verification, not never)."""
    monkeypatch.setattr(evidence_view, "REVERIFY_SECONDS", 0.0, raising=False)
    monkeypatch.setattr(evidence_view, "REVERIFY_FACTOR", 0.0, raising=False)
    verifies = Verifies(pdp.store)
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor")
        for _ in range(3):
            await _page(http, pdp.base)
    assert verifies.calls == 3


async def test_a_second_export_while_one_runs_is_refused(pdp):  # noqa: F811
    """Exports verify the whole store and hold the bundle in memory: one at a time; a
    second while the first runs is told to wait (429), not queued."""
    release = asyncio.Event()
    started = asyncio.Event()
    verifies = Verifies(pdp.store)
    inner = verifies.verify

    async def held(*args, **kwargs):  # the first export's verification waits
        if not started.is_set():
            started.set()
            await release.wait()
        return await inner(*args, **kwargs)

    pdp.store.verify = held
    async with _http() as http:
        # the export is for auditors who may read values (tests/test_console_probe_p10.py)
        csrf = await sign_in(http, pdp.base, "ines@example.com", "auditor,pii-readers")
        form = {"csrf": csrf, "since": "", "until": ""}

        async def export() -> int:
            async with http.post(f"{pdp.base}/console/evidence/export", data=form) as r:
                await r.read()
                return r.status

        first = asyncio.ensure_future(export())
        await started.wait()
        second = await export()
        release.set()
        assert await first == 200
    assert second == 429


async def test_one_person_s_parallel_replay_loads_are_bounded(pdp):  # noqa: F811
    """Attack (a reader, on their own long session): load its replay page in many tabs
    or from a script at once. Each load read every record of the session (events,
    decisions, approvals: millions for a long one) and built its timeline, all at once.
    Now one person has at most MAX_BUILDS session pages made at once; another is a 429
    until one ends."""
    import pdp.console.views.sessions as sessions_view

    MAX_BUILDS = getattr(sessions_view, "MAX_BUILDS", 2)  # 2 on the tree before
    sid = str(uuid.uuid4())
    identity = {"subject": "rita@example.com", "issuer": "portcullis-dev", "groups": ["readonly"]}
    body = {"verdict": "allow", "session": {"identity": identity,
                                            "connection": {"name": "orders-db"}}}  # fmt: skip
    await pdp.store.append("session.open", body, session_id=sid, subject="rita@example.com")
    release = asyncio.Event()
    held = 0
    everyone_held = asyncio.Event()
    query = pdp.store.query

    async def holding(*args, **kwargs):  # the first MAX_BUILDS loads' event reads wait
        nonlocal held
        if kwargs.get("kind") == "session.events" and held < MAX_BUILDS:
            held += 1
            if held == MAX_BUILDS:
                everyone_held.set()
            await release.wait()
        return await query(*args, **kwargs)

    pdp.store.query = holding
    async with _http() as http:
        await sign_in(http, pdp.base, "rita@example.com", "readonly")

        async def load() -> int:
            async with http.get(f"{pdp.base}/console/sessions/{sid}") as r:
                await r.read()
                return r.status

        first = [asyncio.ensure_future(load()) for _ in range(MAX_BUILDS)]
        await everyone_held.wait()
        another = await load()
        release.set()
        assert await asyncio.gather(*first) == [200] * MAX_BUILDS
        assert await load() == 200  # once they are done
    assert another == 429
