"""PDP probe 32 (helper auditsec6): a Decide's reuse report is counted in bounded time.

Attack (a holder of a proxy's credential and of one of its sessions' keys): a Decide's
`reused` entries (one per verdict the proxy answered from its cache) were each counted by
the runaway-loop breaker command by command, up to 4096 per entry and with no bound on
entries: one Decide of a megabyte (20,000 entries of 4096) held the PDP's event loop for
about a minute (every proxy's every decision waited, the session reaper woke a minute
late). The breaker now counts a report in time bounded by its window (MAX_KEPT events, at
most MAX_REPORTED_VERDICTS shapes), leaving what counting each entry in turn would leave:
such a report still trips the breaker.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store), called as a proxy calls it;
the breaker's own state compared with counting entry by entry.
"""

from __future__ import annotations

from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain.breaker import MAX_KEPT, MAX_REPORTED_VERDICTS, Breaker
from portcullis.v1 import pdp_pb2


def _report(entries: int, count: int) -> list[pdp_pb2.ReusedVerdict]:
    return [
        pdp_pb2.ReusedVerdict(
            raw=f"SELECT * FROM t{i} WHERE a = {i}",
            count=count,
            first_seconds_ago=30.0 - i % 30,
            last_seconds_ago=float(i % 7),
        )
        for i in range(entries)
    ]


async def test_a_megabyte_reuse_report_is_counted_in_bounded_work(tmp_path, monkeypatch):
    counted: list[int] = []
    entry_by_entry = Breaker.reused

    def reused(self, subject, connection, raw, count, first, last):  # type: ignore[no-untyped-def]
        counted.append(min(count, MAX_KEPT))
        # (fails at once on a PDP that counts every entry, not a minute later)
        assert len(counted) <= MAX_REPORTED_VERDICTS and sum(counted) <= MAX_KEPT
        entry_by_entry(self, subject, connection, raw, count, first, last)

    monkeypatch.setattr(Breaker, "reused", reused)
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid = (await open_session(stub, token(config))).session_id
        request = pdp_pb2.DecideRequest(
            session_id=sid, command=pdp_pb2.Command(kind="postgres.query", raw="SELECT 1")
        )
        request.reused.extend(_report(25_000, 4096))
        for one in request.reused:
            one.last_seconds_ago = 0.0  # each verdict reused up to now: a flood
        assert request.ByteSize() > 1024 * 1024
        answer = await stub.Decide(request)
        # what counting every entry found: far past the rate, the identity is paused
        assert answer.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert "runaway-loop breaker" in " ".join(answer.decision.reasons)
        assert 0 < len(counted) <= MAX_REPORTED_VERDICTS and sum(counted) == MAX_KEPT


def _state(breaker: Breaker) -> list[tuple[object, ...]]:
    return [
        (key, list(t.times), list(t.shapes), dict(t.shape_counts), list(t.reported))
        for key, t in sorted(breaker._tracks.items())
    ]


def test_a_report_within_bounds_counts_as_its_entries_one_by_one():
    now = 1_000_000.0
    for entries, count in ((1, 5), (40, 3), (MAX_REPORTED_VERDICTS, 16)):
        report = _report(entries, count)
        whole, one_by_one = Breaker(clock=lambda: now), Breaker(clock=lambda: now)
        whole.reported("ann", "db", report)
        for r in report:
            one_by_one.reused("ann", "db", r.raw, r.count, r.first_seconds_ago, r.last_seconds_ago)
        assert _state(whole) == _state(one_by_one)


def test_a_report_past_the_window_keeps_what_one_by_one_would():
    """Past MAX_KEPT events the window holds the latest: the same times and counts."""
    now = 1_000_000.0
    report = _report(100, 200)  # 20,000 events: the window keeps the last 4096
    whole, one_by_one = Breaker(clock=lambda: now), Breaker(clock=lambda: now)
    whole.reported("ann", "db", report)
    for r in report:
        one_by_one.reused("ann", "db", r.raw, r.count, r.first_seconds_ago, r.last_seconds_ago)
    (_, times, shapes, counts, _), (_, times_1, shapes_1, counts_1, _) = (
        _state(whole)[0],
        _state(one_by_one)[0],
    )
    assert len(times) == len(times_1) == MAX_KEPT
    assert counts == counts_1
    assert shapes == shapes_1
    assert times == times_1
