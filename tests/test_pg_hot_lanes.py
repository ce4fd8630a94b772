"""The Postgres proxy's short cuts on its hot path (issue 27) read and decide as the long
way does: a lone Query frame read without the parser's loop, the tracker's counts of owed
answers that are not plain, and the statement attributes made once per session."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from proxies.postgres import codec
from proxies.postgres.codec.parsers import FrontendParser
from proxies.postgres.enforcer import Enforcer
from proxies.postgres.tracker import Expect, ResponseTracker


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
