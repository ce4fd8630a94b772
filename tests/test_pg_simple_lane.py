"""The Postgres proxy's simple-query lane (issue 27): Enforcer.simple_query, which the relay
calls for a chunk holding one Query, does what now() does for that Query in every state
and for every verdict (Hypothesis: the same bytes upstream, owed expectations, flags,
actions, verdict lookups and answer), and through the real proxy a reader's masked simple
queries come back masked while a dba's allowed ones take the lane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pg_harness import running_gateway

from portcullis.literals import ShapeRewrite
from portcullis.verdict import MaskRule, Verdict, VerdictKind
from proxies.postgres import codec
from proxies.postgres.enforcer import Enforcer, Portal, PreparedStatement
from proxies.postgres.tracker import Expect, ResponseTracker
from proxies.runtime.pdp_client import Ruling

_MASK = (MaskRule(field="email", strategy="redact"),)
_ALLOW = Verdict(VerdictKind.ALLOW)


def _ruling(kind: str) -> Ruling | None:
    """The verdict known() gives: none (ask the PDP), or one of the kinds a cache holds."""
    if kind == "miss":
        return None
    if kind == "mask":
        return Ruling(Verdict(VerdictKind.MASK, mask=_MASK), "d-m", "rev-1", cached=True)
    if kind == "copy_mask":
        return Ruling(
            Verdict(VerdictKind.MASK, mask=_MASK), "d-c", "rev-1", cached=True,
            effects=("copy_out", "copy_source:public.customers"),
        )  # fmt: skip
    if kind == "deny":
        return Ruling(Verdict.deny("no"), "d-d", "rev-1")
    if kind == "approval":
        return Ruling(Verdict(VerdictKind.REQUIRE_APPROVAL), "d-a", "rev-1")
    if kind == "approved":  # a person approved this write: a reader's read-only is lifted
        return Ruling(_ALLOW, "d-p", "rev-1", approval_id="a-1")
    if kind == "effects":
        return Ruling(_ALLOW, "d-e", "rev-1", cached=True, effects=("close:*", "prepared:S_1"))
    if kind == "cursor":
        return Ruling(_ALLOW, "d-k", "rev-1", cached=True, effects=("cursor:c1",))
    if kind == "reserved":
        return Ruling(_ALLOW, "d-r", "rev-1", effects=("prepared:_pc_1",))
    if kind == "rewritten":  # a row filter decided for this very text
        return Ruling(_ALLOW, "d-f", "rev-1", rewritten="SELECT 1 WHERE false")
    if kind == "refill":  # a reused row filter: its shape's rewrite, refilled
        shape = "SELECT a FROM t WHERE id = ?"
        text = "SELECT a FROM t WHERE t.b = 1 AND id = $1"
        return Ruling(
            _ALLOW, "d-g", "rev-1", cached=True, rewritten="x",
            rewrite=ShapeRewrite(shape, text, text),
        )  # fmt: skip
    if kind == "budget":
        return Ruling(_ALLOW, "d-b", "rev-1", cached=True, egress_left=(10, 1000))
    return Ruling(_ALLOW, "d-1", "rev-1", cached=True)


def _never_halted(raw: str = "") -> Ruling | None:
    return None


class _Session:
    """An enforcer, what it was given and what it did."""

    def __init__(self, kind: str, state: str, owed: bool, read_only: bool, pooler: str) -> None:
        self.ruling = _ruling(kind)
        self.asked: list[tuple[Any, ...]] = []
        settings = {"default_transaction_read_only": "on"} if read_only else {}
        self.enforcer = Enforcer(
            ResponseTracker(), b"k" * 32, self._known, settings, _never_halted,
            lambda: "rev-1",
        )  # fmt: skip
        e = self.enforcer
        e.pooler = pooler
        e.statements["S_1"] = PreparedStatement("SELECT 1", Ruling(_ALLOW, "d-0", "rev-1"))
        e.portals["c0"] = Portal(None, [], "DECLARE c0 CURSOR FOR SELECT 1", _ruling("allow"))  # type: ignore[arg-type]
        if state == "forwarded":
            e.batch_forwarded = True
        elif state == "executed":
            e.batch_forwarded = e.batch_executed = True
        elif state == "discarding":
            e.discarding = e.batch_forwarded = True
        elif state == "restore":
            e.restore_at_sync = e.batch_forwarded = True
        elif state == "broken":
            e.tracker.broken = "TimeZone moved"
        if owed:
            e.tracker.expect(Expect("Query", command="SELECT 2"))

    def _known(self, *args: Any) -> Ruling | None:
        self.asked.append(args)
        return self.ruling

    def state(self) -> tuple[object, ...]:
        e, tracker = self.enforcer, self.enforcer.tracker
        owed = [
            (type(item).__name__,)
            if not isinstance(item, Expect)
            else (
                *(getattr(item, name) for name in Expect.__slots__ if name != "replace_error"),
                item.replace_error and item.replace_error.encode(),
            )
            for item in tracker.queue
        ]
        portals = {k: (p.statement, p.formats, p.sql, p.ruling, p.described)
                   for k, p in e.portals.items()}  # fmt: skip
        return (
            b"".join(e.to_server), owed, portals, sorted(e.statements), e.discarding,
            e.batch_forwarded, e.batch_executed, e.restore_at_sync, repr(e.actions),
            tracker._special, tracker._masking, tracker.quiet_owed, tracker.lifted,
            dict(tracker.portal_shapes), dict(tracker.statement_shapes), self.asked,
        )  # fmt: skip


_TEXTS = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
    "SELECT email FROM customers WHERE id = 1",
    "SELECT 'é' AS accent",  # not plain ASCII: waits for what is owed before it
    "SELECT E'\\\\x'",  # a backslash
    "",
]


@settings(max_examples=800, deadline=None)
@given(
    st.sampled_from(["allow"] * 6 + ["miss", "mask", "mask", "copy_mask", "deny", "approval",
                     "approved", "effects", "cursor", "reserved", "rewritten", "refill",
                     "budget"]),
    st.sampled_from(["", "", "", "forwarded", "executed", "discarding", "restore", "broken"]),
    st.booleans(),  # something is owed before it
    st.booleans(),  # the session's default is read-only (a reader)
    st.sampled_from(["", "", "transaction"]),
    st.sampled_from(_TEXTS),
)  # fmt: skip
def test_the_simple_lane_does_what_now_does(
    kind: str, state: str, owed: bool, read_only: bool, pooler: str, sql: str
) -> None:
    message = codec.Query(sql)
    object.__setattr__(message, "raw", message.encode())
    fast = _Session(kind, state, owed, read_only, pooler)
    slow = _Session(kind, state, owed, read_only, pooler)
    taken = fast.enforcer.simple_query(message)
    assert taken == slow.enforcer.now(message)
    assert fast.state() == slow.state()
    if not taken:  # the PDP is asked: the same steps follow either way
        steps_fast, steps_slow = fast.enforcer.ask(message), slow.enforcer.ask(message)
        assert type(next(steps_fast, None)) is type(next(steps_slow, None))
        assert fast.state() == slow.state()


def test_a_standing_verdict_s_query_goes_upstream_as_sent() -> None:
    """The lane's case: its frame as the client sent it, one plain expectation."""
    session = _Session("allow", "", False, False, "")
    message = codec.Query(_TEXTS[0])
    object.__setattr__(message, "raw", message.encode())
    assert session.enforcer.simple_query(message)
    assert session.enforcer.to_server == [message.raw]
    (owed,) = session.enforcer.tracker.queue
    assert isinstance(owed, Expect)
    assert (owed.kind, owed.masker, owed.command, owed.protocol) == ("Query", None, _TEXTS[0],
                                                                     "simple")  # fmt: skip
    assert session.enforcer.tracker._special == session.enforcer.tracker._masking == 0


async def test_a_reader_s_simple_queries_stay_masked_and_a_dba_s_take_the_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the proxy, simple-protocol queries (psycopg's ClientCursor: one Query each)
    go through simple_query. A reader's are masked (the policy masks every read of
    theirs): each leaves an expectation with a masker, and the e-mails come back
    redacted, again and again as the verdict is reused. A dba's leave plain ones (the
    lane's own case)."""
    owed: list[tuple[bool, str]] = []
    lane = Enforcer.simple_query

    def counted(self: Enforcer, message: codec.Query) -> bool:
        done = lane(self, message)
        if done and self.tracker.queue:
            last = self.tracker.queue[-1]
            if isinstance(last, Expect) and last.kind == "Query":
                owed.append((last.masker is not None, message.sql))
        return done

    monkeypatch.setattr(Enforcer, "simple_query", counted)
    emails = "SELECT email FROM customers WHERE id = {}"
    async with running_gateway(tmp_path) as gw:
        for groups, masked in ((("readonly",), True), (("dba", "pii-readers"), False)):
            dsn = gw.dsn(gw.token("dana", groups))
            async with await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, cursor_factory=psycopg.AsyncClientCursor
            ) as conn:
                for _ in range(3):
                    for customer, email in ((1, "ada@example.com"), (2, "bob@example.org")):
                        cur = await conn.execute(emails.format(customer))
                        assert await cur.fetchall() == [("[REDACTED]" if masked else email,)]
            # the first of each text's shape asks the PDP; the rest reuse its verdict
            runs = [m for m, sql in owed if sql.startswith("SELECT email")]
            assert len(runs) >= 5 and set(runs) == {masked}
            owed.clear()
