"""The Postgres proxy's short cuts on its hot path (issue 27) read and decide as the long
way does: a lone Query frame read without the parser's loop, a prepared statement's run
(Bind and the repeats after it) read and enforced in one call, the tracker's counts of
owed answers that are not plain, and the statement attributes made once per session."""

from __future__ import annotations

import struct
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pg_harness import running_gateway

from portcullis.verdict import MaskRule, Verdict, VerdictKind
from proxies.postgres import codec
from proxies.postgres.codec.parsers import FrontendParser
from proxies.postgres.enforcer import Enforcer, Portal, PreparedStatement
from proxies.postgres.tracker import Completion, Expect, ResponseTracker, owed
from proxies.runtime.pdp_client import Ruling


def _state(parser: FrontendParser) -> tuple[object, ...]:
    return (bytes(parser._buf), parser._need, parser._tail, parser._tail_messages)


def _query_like() -> st.SearchStrategy[bytes]:
    """Chunks that are, or nearly are, one Query frame: its length field right or off,
    its text with or without a stray NUL or a byte that is no UTF-8, cut or run on."""
    text = st.one_of(st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
                     st.binary(max_size=40))  # fmt: skip
    return st.builds(
        lambda body, bump, kind, extra, cut: (
            kind + struct.pack(">i", len(body) + 5 + bump) + body + b"\0" + extra
        )[: None if cut is None else cut],
        text,
        st.sampled_from([0, 0, 0, -1, 1, -6]),
        st.sampled_from([b"Q", b"Q", b"Q", b"P", b"\0"]),
        st.sampled_from([b"", b"", b"S\0\0\0\4", b"\0"]),
        st.one_of(st.none(), st.integers(0, 60)),
    )


_BEFORE = [
    b"",
    codec.Sync().encode(),
    codec.Query("SELECT 1").encode()[:3],  # a frame still arriving
    codec.Describe("P", "").encode() + codec.Execute("", 0).encode() + codec.Sync().encode(),
]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(_BEFORE), _query_like())
def test_a_lone_query_is_read_as_feed_reads_it(before: bytes, chunk: bytes) -> None:
    fast, slow = FrontendParser(startup=False), FrontendParser(startup=False)
    for parser in (fast, slow):
        parser.feed(before)
    got = fast.lone_query(chunk)
    if got is None:
        return  # the relay then feeds it: nothing was read
    expected = slow.feed(chunk)
    assert [(type(m), m, m.raw) for m in got] == [(type(m), m, m.raw) for m in expected]
    assert _state(fast) == _state(slow)


def test_a_lone_query_is_taken_only_where_feed_would_take_it() -> None:
    query = codec.Query("SELECT 1").encode()
    assert FrontendParser(startup=True).lone_query(query) is None  # still starting up
    assert FrontendParser(startup=False, max_frame=len(query) - 2).lone_query(query) is None
    failed = FrontendParser(startup=False)
    try:
        failed.feed(b"\xff\0\0\0\4")
    except codec.ProtocolViolation:
        pass
    assert failed.lone_query(query) is None  # a failed parser stays failed
    assert FrontendParser(startup=False).lone_query(bytearray(query)) is None  # type: ignore[arg-type]
    (message,) = FrontendParser(startup=False).lone_query(query) or []
    assert message == codec.Query("SELECT 1") and message.raw == query


def _expect(kind: str, masked: bool = False, swallow: bool = False) -> Expect:
    return Expect(kind, masker=object() if masked else None, swallow=swallow)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["q", "Q", "qm", "qs", "syn", "rfq", "done"])),
                max_size=30))  # fmt: skip
def test_the_counts_are_never_fewer_than_what_is_owed(steps: list[tuple[str]]) -> None:
    """plain() and masked() trust the counts: never fewer than the owed answers that mask
    or are not plain, whatever was queued and answered in between."""
    tracker = ResponseTracker()
    for (step,) in steps:
        if step == "q":
            tracker.expect(_expect("Query"))
        elif step == "Q":
            tracker.expect(_expect("Execute"))
        elif step == "qm":
            tracker.expect(_expect("Query", masked=True))
        elif step == "qs":
            tracker.expect(_expect("Sync", swallow=True))
        elif step == "syn":
            tracker.synthetic(lambda status: b"")
        elif step == "rfq":
            tracker._ready("I", tracker.queue[0] if tracker.queue else None)
        elif tracker.queue:
            tracker.queue.popleft()
        owed = list(tracker.queue)
        masking = sum(1 for i in owed if isinstance(i, Expect) and i.masker is not None)
        special = sum(1 for i in owed if not isinstance(i, Expect) or i.swallow or i.replace_error)
        assert tracker._masking >= masking and tracker._special >= special
        assert tracker.masking == (tracker._masking > 0)


def test_an_expectation_made_by_owed_is_the_one_expect_makes() -> None:
    # the lanes make their expectations with owed(), not Expect(): every slot alike
    ruling = Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")
    portal = object()
    execute = {"statement": "S_1", "portal": "", "command": "SELECT $1", "ruling": ruling}
    cases: list[tuple[tuple[object, ...], dict[str, object]]] = [
        (("Sync",), {}),
        (("Bind",), {"owner": portal}),
        (("DescribeP",), {"statement": "", "owner": portal}),
        (("Query", None, "d-1"), {"command": "SELECT 1", "ruling": ruling, "protocol": "simple"}),
        (("Execute", None, "d-1"), {**execute, "protocol": "extended", "formats": [1]}),
    ]
    for args, named in cases:
        made, expected = owed(*args, **named), Expect(*args, **named)  # type: ignore[arg-type]
        for slot in Expect.__slots__:
            assert getattr(made, slot) == getattr(expected, slot), (args, slot)
        assert made.masked is expected.masked  # the shared empty counts, never a new one


def test_a_completion_holds_what_its_expectation_counted() -> None:
    # _complete makes a Completion slot by slot: each one set, from the right field
    ruling = Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")
    tracker = ResponseTracker()
    head = Expect("Query", None, "d-1", command="SELECT 1", ruling=ruling, protocol="simple")
    head.rows, head.parts = 3, 2
    tracker._complete(head, "SELECT 3", "22012")
    assert tracker.completions == [
        Completion("SELECT 1", "SELECT 3", 3, head.masked, "d-1", "22012", ruling, "simple", 2)
    ]


def test_statement_attributes_follow_what_the_session_learnt() -> None:
    """The attributes made once per protocol are made again when the start-up facts they
    carry are replaced (a test, or a later start-up read, may set them after the first
    statement)."""
    enforcer = Enforcer(ResponseTracker(), b"k" * 32, lambda *a: None)
    plain, key = enforcer._command("simple")
    assert plain == {"protocol": "simple"} and enforcer._command("simple")[1] == key
    enforcer.view_columns = {"contact": ["phone"]}
    enforcer.relation_sources = {"public.v": ["public.t"]}
    attributes, other = enforcer._command("simple")
    assert attributes == enforcer._attributes("simple")
    assert attributes["view_columns"] == {"contact": ["phone"]} and other != key
    enforcer.shadowed = ("lower",)
    assert enforcer._command("simple")[0]["shadowed_functions"] == ["lower"]
    enforcer.pooler = "transaction"
    assert enforcer._command("parse")[0] == enforcer._attributes("parse")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_a_row_filters_query_frame_is_the_query_messages_encoding(text: str) -> None:
    """Query.frame (a refilled row filter's text, per statement) is Query(text).encode(),
    and refuses a NUL as the message does."""
    try:
        expected = codec.Query(text).encode()
    except ValueError:
        try:
            codec.Query.frame(text)
        except ValueError:
            return
        raise AssertionError("frame took a text the message refuses") from None
    assert codec.Query.frame(text) == expected
    assert FrontendParser(startup=False).feed(expected) == [codec.Query(text)]


def _data_row_like() -> st.SearchStrategy[bytes]:
    """DataRow bodies that are, or nearly are, well formed: each value's size right, off,
    -1 (NULL) or another negative, the count right or off, bytes cut or run on."""
    value = st.tuples(
        st.binary(max_size=6), st.sampled_from([0, 0, 0, 1, -1, -3]), st.booleans()
    ).map(
        lambda v: struct.pack(">i", -1 if v[2] else len(v[0]) + v[1])
        + (b"" if v[2] else v[0])
    )  # fmt: skip
    return st.builds(
        lambda values, bump, extra, cut: (
            struct.pack(">H", max(0, len(values) + bump)) + b"".join(values) + extra
        )[: None if cut is None else cut],
        st.lists(value, max_size=5),
        st.sampled_from([0, 0, 0, 1, -1]),
        st.sampled_from([b"", b"", b"\0", b"\xff\xff\xff\xff"]),
        st.one_of(st.none(), st.integers(0, 40)),
    )


@settings(max_examples=500, deadline=None)
@given(_data_row_like(), st.binary(max_size=3))
def test_a_plain_row_is_checked_as_a_decoded_one(body, before):
    """_data_row_fits without `values` (a plain row: sizes only, nothing copied) accepts
    exactly the bodies it accepts while collecting their values."""
    from proxies.postgres.codec.parsers import _data_row_fits

    raw = before + body
    values: list[bytes | None] = []
    assert _data_row_fits(raw, len(before), len(raw)) == _data_row_fits(
        raw, len(before), len(raw), values
    )


# -- a prepared statement's run: Bind, [Describe P,] Execute, Sync ----------------------

_RUN_TAILS = [
    codec.Describe("P", "").encode() + codec.Execute("", 0).encode() + codec.Sync().encode(),
    codec.Execute("", 0).encode() + codec.Sync().encode(),
    codec.Describe("P", "").encode() + codec.Execute("", 0).encode(),  # no Sync yet
]


def _bind_like(
    portals: tuple[str, ...] = ("", "", "p1"),
    statements: tuple[str, ...] = ("S_1", "", "S_2"),
    formats: tuple[list[int], ...] = ([], [0], [1], [0, 1]),
) -> st.SearchStrategy[bytes]:
    """Bind frames, well-formed or not: any portal and statement names, values (NULL,
    text, binary), formats, with the length field right or off, cut or run on."""
    value = st.one_of(st.none(), st.binary(max_size=12))
    bind = st.builds(
        lambda portal, statement, values, formats, results: codec.Bind(
            portal, statement, formats, values, results
        ).encode(),
        st.sampled_from(portals),
        st.sampled_from(statements),
        st.lists(value, max_size=3),
        st.sampled_from(formats),
        st.sampled_from([[], [0], [1], [0, 0], [1, 0]]),
    )
    return st.builds(
        lambda frame, bump, cut, extra: (
            frame[:1] + struct.pack(">i", len(frame) - 1 + bump) + frame[5:] + extra
        )[: None if cut is None else cut],
        bind,
        st.sampled_from([0, 0, 0, -1, 1, -5]),
        st.sampled_from([None, None, None, None, 0, 3, 9, 20]),
        st.sampled_from([b"", b"", b"\0"]),
    )


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(_RUN_TAILS),
    st.sampled_from([b"", codec.Query("SELECT 1").encode()[:3]]),
    _bind_like(),
    st.sampled_from([0, 0, 0, 1, 3]),  # the tail sent whole, or cut short, or another's
)
def test_a_bound_run_is_read_as_feed_reads_it(
    tail: bytes, held: bytes, bind: bytes, change: int
) -> None:
    fast, slow = FrontendParser(startup=False), FrontendParser(startup=False)
    first = codec.Bind("", "S_1", [], [b"1"], []).encode() + tail
    for parser in (fast, slow):
        parser.feed(first)  # the tail remembered
        parser.feed(held)
    sent = (
        tail[: len(tail) - change] if change < 3 else _RUN_TAILS[(_RUN_TAILS.index(tail) + 1) % 3]
    )
    chunk = bind + sent
    got = fast.bound_run(chunk)
    if got is None:
        assert _state(fast) == _state(slow)  # nothing was read
        return
    expected = slow.feed(chunk)
    assert [(type(m), m, m.raw) for m in got] == [(type(m), m, m.raw) for m in expected]
    assert b"".join(m.raw for m in got) == chunk
    assert _state(fast) == _state(slow)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(_RUN_TAILS),
    # (few names and formats: most open as the one before did)
    st.lists(_bind_like(("",), ("S_1", "S_2"), ([], [1])), min_size=2, max_size=5),
)
def test_binds_one_after_another_are_read_as_feed_reads_them(
    tail: bytes, binds: list[bytes]
) -> None:
    # bound_run reads a Bind opening as the last one it read did (names, parameter formats)
    # from what it read then: whatever follows those bytes, as feed() reads it
    fast, slow = FrontendParser(startup=False), FrontendParser(startup=False)
    first = codec.Bind("", "S_1", [], [b"1"], []).encode() + tail
    for parser in (fast, slow):
        parser.feed(first)
    for bind in binds:
        chunk = bind + tail
        got = fast.bound_run(chunk)
        try:
            expected = slow.feed(chunk)
        except codec.ProtocolViolation:
            assert got is None
            return
        if got is None:
            got = fast.feed(chunk)
        assert [(type(m), m, m.raw) for m in got] == [(type(m), m, m.raw) for m in expected]
        assert _state(fast) == _state(slow)


def test_a_bound_run_is_taken_only_after_a_tail_was_read() -> None:
    run = codec.Bind("", "S_1", [], [b"1"], []).encode() + _RUN_TAILS[0]
    parser = FrontendParser(startup=False)
    assert parser.bound_run(run) is None  # no tail yet: feed() reads it
    parser.feed(run)
    got = parser.bound_run(run)
    assert got is not None and [type(m) for m in got] == [
        codec.Bind,
        codec.Describe,
        codec.Execute,
        codec.Sync,
    ]
    assert FrontendParser(startup=True).bound_run(run) is None


_MASK = (MaskRule(field="email", strategy="redact"),)


def _ruling(kind: str) -> Ruling:
    if kind == "mask":
        return Ruling(Verdict(VerdictKind.MASK, mask=_MASK), "d-m", "rev-1")
    if kind == "approval":
        return Ruling(Verdict(VerdictKind.REQUIRE_APPROVAL), "d-a", "rev-1")
    if kind == "effects":
        return Ruling(Verdict(VerdictKind.ALLOW), "d-e", "rev-1", effects=("close:*",))
    if kind == "stale":
        return Ruling(Verdict(VerdictKind.ALLOW), "d-s", "rev-0")
    return Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")


_NO_ROOM = Ruling(Verdict.deny("no room in the evidence spool"))


class _Session:
    """An enforcer and what it was given, and what it did."""

    def __init__(self, kind: str, halt: bool, state: str, owed: bool) -> None:
        self.halts = 0
        self.halt = halt
        self.enforcer = Enforcer(
            ResponseTracker(), b"k" * 32, lambda *a: None, None, self._halted,
            lambda: "rev-1",
        )  # fmt: skip
        enforcer = self.enforcer
        enforcer.statements["S_1"] = PreparedStatement("SELECT $1::int", _ruling(kind))
        enforcer.tracker.portal_shapes[""] = None
        if state == "discarding":
            enforcer.discarding = True
        elif state == "restore":
            enforcer.restore_at_sync = True
        elif state == "broken":
            enforcer.tracker.broken = "TimeZone moved"
        elif state == "forwarded":
            enforcer.batch_forwarded = True
        if owed:
            enforcer.tracker.expect(Expect("Query", command="SELECT 2"))

    def _halted(self, raw: str = "") -> Ruling | None:
        self.halts += 1
        return _NO_ROOM if self.halt else None

    def state(self) -> tuple[object, ...]:
        e, tracker = self.enforcer, self.enforcer.tracker
        owed = [
            (
                *(getattr(item, name) for name in Expect.__slots__ if name != "masker"),
                item.masker is None,
            )
            for item in tracker.queue
        ]
        # every slot (PreparedStatement and ResultShape compare as dataclasses)
        portals = {k: tuple(getattr(p, name) for name in Portal.__slots__)
                   for k, p in e.portals.items()}  # fmt: skip
        return (
            b"".join(e.to_server), owed, portals, dict(tracker.portal_shapes),
            sorted(e.statements), e.discarding, e.batch_forwarded, e.batch_executed,
            e.restore_at_sync, list(e.actions), tracker._special, tracker._masking,
            tracker.quiet_owed, self.halts,
        )  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(["allow", "allow", "mask", "mask", "approval", "effects", "stale"]),
    st.booleans(),  # the spool has no room
    st.sampled_from(["", "", "", "", "discarding", "restore", "broken", "forwarded"]),
    st.booleans(),  # something is owed before the run
    st.sampled_from(["S_1", "S_1", "S_1", "S_2"]),  # bound: the statement allowed, or another
    st.sampled_from(["", "", "", "p1"]),  # the Describe's portal
    st.sampled_from(["", "", "", "p1"]),  # the Execute's portal
    st.sampled_from(["P", "P", "P", "S", None]),  # the Describe's kind (None: none sent)
    st.sampled_from(["Sync", "Sync", "Sync", "Flush"]),
)
def test_a_bound_run_is_enforced_as_now_enforces_each_message(
    kind: str, halt: bool, state: str, owed: bool, statement: str, described: str,
    executed: str, describe_kind: str | None, end: str,
) -> None:  # fmt: skip
    messages: list[codec.Message] = [codec.Bind("", statement, [0], [b"7"], [0])]
    if describe_kind is not None:
        messages.append(codec.Describe(describe_kind, described))
    messages.append(codec.Execute(executed, 0))
    messages.append(codec.Sync() if end == "Sync" else codec.Flush())
    for message in messages:
        object.__setattr__(message, "raw", message.encode())
    chunk = b"".join(m.raw for m in messages)  # type: ignore[misc]
    fast, slow = _Session(kind, halt, state, owed), _Session(kind, halt, state, owed)
    before = fast.state()
    if not fast.enforcer.bound_run(messages, chunk):
        assert fast.state() == before  # nothing done: now() takes each message
        return
    assert state in ("", "forwarded") and statement == "S_1" and end == "Sync"
    assert (kind, describe_kind) in (("allow", "P"), ("allow", None), ("mask", "P"))
    for message in messages:
        assert slow.enforcer.now(message)  # the long way needs no PDP either
    assert fast.state() == slow.state()
    assert slow.halts == fast.halts == 1


def test_the_bench_run_is_taken_by_the_lane() -> None:
    """pgbench -M prepared's run of an allowed statement is the one the lane takes, and
    its chunk goes upstream as it came."""
    session = _Session("allow", False, "", False)
    parser = FrontendParser(startup=False)
    run = codec.Bind("", "S_1", [0], [b"7"], [0]).encode() + _RUN_TAILS[0]
    parser.feed(run)
    messages = parser.bound_run(run)
    assert messages is not None and session.enforcer.bound_run(messages, run)
    assert session.enforcer.to_server == [run]
    assert [i.kind for i in session.enforcer.tracker.queue] == [
        "Bind", "DescribeP", "Execute", "Sync"
    ]  # fmt: skip


async def test_a_driver_s_prepared_runs_take_the_lane_and_masks_still_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the proxy, libpq's prepared runs (psycopg, prepare=True: Bind, Describe,
    Execute, Sync) take the lane, a dba's allowed statements and a reader's masked ones
    (the policy masks every read of theirs), and answer as the server does, but for the
    reader's e-mails, which stay masked."""
    taken: list[tuple[str, str]] = []
    lane = Enforcer.bound_run

    def counted(self: Enforcer, messages: list[codec.Message], chunk: bytes) -> bool:
        done = lane(self, messages, chunk)
        if done:
            bind = messages[0]
            assert isinstance(bind, codec.Bind)
            statement = self.statements[bind.statement]
            taken.append((statement.ruling.kind.name, statement.sql))
        return done

    monkeypatch.setattr(Enforcer, "bound_run", counted)
    totals = "SELECT total FROM orders WHERE customer_id = %s"
    emails = "SELECT email FROM customers WHERE id = %s"
    runs = [(1, Decimal("99.50"), "ada@example.com"), (2, Decimal("12.00"), "bob@example.org")]
    async with running_gateway(tmp_path) as gw:
        for groups, masked in ((("readonly",), True), (("dba", "pii-readers"), False)):
            dsn = gw.dsn(gw.token("dana", groups))
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                for _ in range(3):
                    for customer, total, email in runs:
                        cur = await conn.execute(totals, (customer,), prepare=True)
                        assert await cur.fetchall() == [(total,)]
                        cur = await conn.execute(emails, (customer,), prepare=True)
                        assert await cur.fetchall() == [("[REDACTED]" if masked else email,)]
    kinds = {(kind, "orders" in sql) for kind, sql in taken}
    assert kinds == {("MASK", True), ("MASK", False), ("ALLOW", True), ("ALLOW", False)}


async def test_a_reader_s_binary_prepared_runs_on_the_lane_stay_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack on the lane: a reader asks for binary results (psycopg binary=True, so
    Bind's result formats are 1) of prepared runs the lane takes again and again. The
    columns masked by name come back redacted and the card number in a note partial, as
    on the message-by-message path; nothing of the server's values gets through."""
    formats: list[list[int]] = []
    lane = Enforcer.bound_run

    def counted(self: Enforcer, messages: list[codec.Message], chunk: bytes) -> bool:
        done = lane(self, messages, chunk)
        bind = messages[0]
        if done and isinstance(bind, codec.Bind):
            formats.append(list(bind.result_formats))
        return done

    monkeypatch.setattr(Enforcer, "bound_run", counted)
    sql = "SELECT email, ssn, note FROM customers WHERE id = %s"
    async with running_gateway(tmp_path) as gw:
        dsn = gw.dsn(gw.token("rita", ("readonly",)))
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for _ in range(4):
                for customer in (1, 2):
                    cur = conn.cursor(binary=True)
                    await cur.execute(sql, (customer,), prepare=True)
                    (email, ssn, note), *rest = await cur.fetchall()
                    assert rest == [] and email == ssn == "[REDACTED]"
                    assert "4111" not in note and "1111 1111 1111" not in note
                    assert note in ("card **** **** **** 1111 on file", "nothing to see")
    assert formats and all(f and set(f) == {1} for f in formats)
