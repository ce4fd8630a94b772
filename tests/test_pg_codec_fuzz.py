"""Property tests of the PostgreSQL wire codec (Hypothesis, no sockets):

- parse(encode(m)) == m, with raw == encode(m), for generated messages of every type;
- any stream of messages, cut into any chunks, parses back to the same messages;
- arbitrary or mutated bytes, in arbitrary chunks, never raise anything but
  ProtocolViolation, and whatever does parse re-encodes to exactly its raw bytes;
- the proxy's plain lane (BackendParser.plain_answers + ResponseTracker.plain) either
  declines a chunk, changing nothing, or does exactly what parsing it and on_backend do.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from proxies.postgres import codec as c
from proxies.postgres.codec import BackendParser, FrontendParser, Message, ProtocolViolation
from proxies.postgres.tracker import Expect, ResponseTracker

settings.register_profile(
    "pg_codec", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ = settings.get_profile("pg_codec")

i16 = st.integers(-(2**15), 2**15 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
text = st.text(st.characters(exclude_characters="\0", exclude_categories=("Cs",)), max_size=12)
name = st.text(
    st.characters(exclude_characters="\0", exclude_categories=("Cs",)), min_size=1, max_size=8
)
blob = st.binary(max_size=24)
value = st.none() | blob
formats = st.lists(i16, max_size=4)
kind = st.sampled_from(["S", "P"])
status = st.sampled_from(["I", "T", "E"])
field_codes = st.characters(min_codepoint=1, max_codepoint=255)

frontend_messages = st.one_of(
    st.builds(c.Query, text),
    st.builds(c.Parse, text, text, st.lists(u32, max_size=4)),
    st.builds(c.Bind, text, text, formats, st.lists(value, max_size=4), formats),
    st.builds(c.Describe, kind, text),
    st.builds(c.Execute, text, i32),
    st.builds(c.Sync),
    st.builds(c.Flush),
    st.builds(c.Close, kind, text),
    st.builds(c.Terminate),
    st.builds(c.CopyData, blob),
    st.builds(c.CopyDone),
    st.builds(c.CopyFail, text),
    st.builds(c.FunctionCall, u32, formats, st.lists(value, max_size=4), i16),
    st.builds(c.PasswordMessage, blob),
)

row_descriptions = st.builds(
    c.RowDescription, st.lists(st.builds(c.Field, text, u32, i16, u32, i16, i32, i16), max_size=3)
)
backend_messages = st.one_of(
    st.builds(c.AuthenticationOk),
    st.builds(c.AuthenticationKerberosV5),
    st.builds(c.AuthenticationCleartextPassword),
    st.builds(c.AuthenticationMD5Password, st.binary(min_size=4, max_size=4)),
    st.builds(c.AuthenticationGSS),
    st.builds(c.AuthenticationGSSContinue, blob),
    st.builds(c.AuthenticationSSPI),
    st.builds(c.AuthenticationSASL, st.lists(name, max_size=3)),
    st.builds(c.AuthenticationSASLContinue, blob),
    st.builds(c.AuthenticationSASLFinal, blob),
    st.builds(c.ParameterStatus, text, text),
    st.builds(c.BackendKeyData, u32, u32),
    st.builds(c.ReadyForQuery, status),
    row_descriptions,
    st.builds(c.DataRow, st.lists(value, max_size=5)),
    st.builds(c.CommandComplete, text),
    st.builds(c.EmptyQueryResponse),
    st.builds(c.ErrorResponse, st.dictionaries(field_codes, text, max_size=4)),
    st.builds(c.NoticeResponse, st.dictionaries(field_codes, text, max_size=4)),
    st.builds(c.ParseComplete),
    st.builds(c.BindComplete),
    st.builds(c.CloseComplete),
    st.builds(c.NoData),
    st.builds(c.PortalSuspended),
    st.builds(c.ParameterDescription, st.lists(u32, max_size=4)),
    st.builds(c.CopyInResponse, st.integers(-128, 127), formats),
    st.builds(c.CopyOutResponse, st.integers(-128, 127), formats),
    st.builds(c.CopyBothResponse, st.integers(-128, 127), formats),
    st.builds(c.CopyData, blob),
    st.builds(c.CopyDone),
    st.builds(c.NotificationResponse, u32, text, text),
    st.builds(c.FunctionCallResponse, value),
    st.builds(c.NegotiateProtocolVersion, i32, st.lists(text, max_size=3)),
)

startup_messages = st.one_of(
    st.builds(
        c.StartupMessage,
        st.integers(3 << 16, (3 << 16) | 0xFFFF),
        st.dictionaries(name, text, max_size=4),
    ),
    st.builds(c.SSLRequest),
    st.builds(c.GSSENCRequest),
    st.builds(c.CancelRequest, u32, u32),
)


def _assert_canonical(messages: list[Message]) -> None:
    for m in messages:
        assert m.encode() == m.raw, m


def _feed_chunks(parser: FrontendParser | BackendParser, data: bytes, cuts: list[int]) -> list:
    out: list[Message] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        out += parser.feed(data[start:cut])
        start = cut
    return out


@FUZZ
@given(frontend_messages)
def test_frontend_round_trip(message: Message) -> None:
    wire = message.encode()
    parsed = FrontendParser(startup=False).feed(wire)
    assert parsed == [message]
    assert parsed[0].raw == wire


@FUZZ
@given(backend_messages)
def test_backend_round_trip(message: Message) -> None:
    wire = message.encode()
    parsed = BackendParser().feed(wire)
    assert parsed == [message]
    assert parsed[0].raw == wire


@FUZZ
@given(startup_messages)
def test_startup_round_trip(message: Message) -> None:
    wire = message.encode()
    parsed = FrontendParser().feed(wire)
    assert parsed == [message]
    assert parsed[0].raw == wire


@FUZZ
@given(text, value, blob)
def test_sasl_round_trip_through_the_p_helpers(mechanism: str, first: bytes | None, more: bytes):
    initial = c.SASLInitialResponse(mechanism, first)
    (parsed,) = FrontendParser(startup=False).feed(initial.encode())
    assert parsed.as_sasl_initial_response() == initial
    response = c.SASLResponse(more)
    (parsed,) = FrontendParser(startup=False).feed(response.encode())
    assert parsed.as_sasl_response() == response


@FUZZ
@given(text)
def test_password_round_trip(password: str) -> None:
    (parsed,) = FrontendParser(startup=False).feed(
        c.PasswordMessage.from_password(password).encode()
    )
    assert parsed.password() == password


@FUZZ
@given(st.data(), st.lists(backend_messages, max_size=8))
def test_backend_stream_in_any_chunks(data: st.DataObject, messages: list[Message]) -> None:
    wire = b"".join(m.encode() for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    assert _feed_chunks(BackendParser(), wire, cuts) == messages


@FUZZ
@given(st.data(), startup_messages, st.lists(frontend_messages, max_size=8))
def test_frontend_stream_in_any_chunks(
    data: st.DataObject, first: Message, messages: list[Message]
) -> None:
    startup = c.StartupMessage(c.PROTOCOL_VERSION, {"user": "u"})
    wire = b"".join(m.encode() for m in [startup, *messages])
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    assert _feed_chunks(FrontendParser(), wire, cuts) == [startup, *messages]


def _survives(parser: FrontendParser | BackendParser, data: bytes, cuts: list[int]) -> None:
    """Feed ``data``; anything but ProtocolViolation escaping is the failure we look for."""
    try:
        messages = _feed_chunks(parser, data, cuts)
    except ProtocolViolation:
        return
    _assert_canonical(messages)


chunks = st.lists(st.integers(0, 4096), max_size=8)


@FUZZ
@given(st.binary(max_size=512), chunks, st.booleans())
def test_arbitrary_bytes_frontend(data: bytes, cuts: list[int], startup: bool) -> None:
    _survives(FrontendParser(startup=startup, max_frame=1 << 16), data, cuts)


@FUZZ
@given(st.binary(max_size=512), chunks)
def test_arbitrary_bytes_backend(data: bytes, cuts: list[int]) -> None:
    _survives(BackendParser(max_frame=1 << 16), data, cuts)


@st.composite
def mutated(draw: st.DrawFn, messages: st.SearchStrategy[list[Message]]) -> bytes:
    """A valid stream with a few bytes flipped, dropped, inserted or cut off: the inputs
    that get past the type byte and length checks into the message decoders."""
    wire = bytearray(b"".join(m.encode() for m in draw(messages)))
    for _ in range(draw(st.integers(1, 4))):
        if not wire:
            break
        at = draw(st.integers(0, len(wire) - 1))
        op = draw(st.sampled_from(["flip", "set", "drop", "insert", "cut"]))
        if op == "flip":
            wire[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            wire[at] = draw(st.sampled_from([0, 0xFF, 0x80, 0x7F, ord("S"), ord("P")]))
        elif op == "drop":
            del wire[at]
        elif op == "insert":
            wire[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del wire[at:]
    return bytes(wire)


@FUZZ
@given(mutated(st.lists(backend_messages, min_size=1, max_size=6)), chunks)
def test_mutated_backend_stream(data: bytes, cuts: list[int]) -> None:
    _survives(BackendParser(), data, cuts)


@FUZZ
@given(mutated(st.lists(frontend_messages, min_size=1, max_size=6)), chunks)
def test_mutated_frontend_stream(data: bytes, cuts: list[int]) -> None:
    _survives(FrontendParser(startup=False), data, cuts)


@FUZZ
@given(mutated(st.lists(startup_messages, min_size=1, max_size=1)), chunks)
def test_mutated_startup_packet(data: bytes, cuts: list[int]) -> None:
    _survives(FrontendParser(), data, cuts)


@FUZZ
@given(blob)
def test_p_helpers_only_raise_protocol_violation(body: bytes) -> None:
    message = c.PasswordMessage(body)
    for interpret in (message.password, message.as_sasl_initial_response):
        try:
            interpret()
        except ProtocolViolation:
            pass
    assert message.as_sasl_response().data == body


# -- the fast decoders and the repeat memory judge exactly as the general decoders ----


class _GeneralBackend(BackendParser):
    _FAST: dict = {}  # type: ignore[assignment]
    _REPEATS = frozenset()


class _GeneralFrontend(FrontendParser):
    _FAST: dict = {}  # type: ignore[assignment]
    _REPEATS = frozenset()


def _outcome(parser, frames: list[bytes]):
    try:
        return [(type(m).__name__, m, m.raw) for f in frames for m in parser.feed(f)]
    except ProtocolViolation as exc:
        return ("violation", str(exc))


def _nearly_valid(draw, messages, types: list[bytes]) -> bytes:
    """A frame of one of `messages`, up to two of its body bytes flipped; or a random body
    under one of `types`."""
    if draw(st.booleans()):
        frame = bytearray(draw(messages).encode())
        for _ in range(draw(st.integers(0, 2))):  # flip a byte of the body
            if len(frame) > 5:
                at = draw(st.integers(5, len(frame) - 1))
                frame[at] = draw(st.integers(0, 255))
        return bytes(frame)
    body = draw(st.binary(max_size=16))
    return draw(st.sampled_from(types)) + (len(body) + 4).to_bytes(4, "big") + body


@st.composite
def hot_backend_frames(draw) -> bytes:
    """Frames of the types with fast decoders or repeat memory: valid, or nearly so."""
    messages = st.one_of(
        st.builds(c.DataRow, st.lists(value, max_size=4)),
        st.builds(c.CommandComplete, text),
        st.builds(c.ReadyForQuery, status),
    )
    return _nearly_valid(draw, messages, [b"D", b"C", b"Z", b"T", b"1", b"n"])


@FUZZ
@given(st.lists(hot_backend_frames(), min_size=1, max_size=6), st.integers(1, 3))
def test_fast_backend_decoding_matches_the_general_decoders(frames, repeats):
    stream = b"".join(frames) * repeats  # repeats exercise the memory of seen messages
    assert _outcome(BackendParser(), [stream]) == _outcome(_GeneralBackend(), [stream])


@FUZZ
@given(st.binary(max_size=24), st.booleans())
def test_fast_query_decoding_matches_the_general_decoder(body, terminate):
    body = body + (b"\0" if terminate else b"")
    frame = b"Q" + (len(body) + 4).to_bytes(4, "big") + body
    fast, general = FrontendParser(startup=False), _GeneralFrontend(startup=False)
    assert _outcome(fast, [frame]) == _outcome(general, [frame])


@st.composite
def hot_frontend_frames(draw) -> bytes:
    """What a client running a prepared statement sends: valid, or nearly so."""
    int16 = st.integers(-(2**15), 2**15 - 1)
    messages = st.one_of(
        st.builds(c.Bind, text, text, st.lists(int16, max_size=3), st.lists(value, max_size=3),
                  st.lists(int16, max_size=3)),
        st.builds(c.Parse, text, text, st.lists(st.integers(0, 2**32 - 1), max_size=2)),
        st.builds(c.Describe, st.sampled_from(["S", "P"]), text),
        st.builds(c.Execute, text, st.integers(0, 2**31 - 1)),
        st.just(c.Sync()),
    )  # fmt: skip
    return _nearly_valid(draw, messages, [b"B", b"P", b"D", b"E", b"S"])


@FUZZ
@given(st.lists(hot_frontend_frames(), min_size=1, max_size=6), st.integers(1, 3))
def test_fast_frontend_decoding_matches_the_general_decoders(frames, repeats):
    stream = b"".join(frames) * repeats  # repeats exercise the memory of seen messages
    fast, general = FrontendParser(startup=False), _GeneralFrontend(startup=False)
    assert _outcome(fast, [stream]) == _outcome(general, [stream])


_PIPELINED = st.sampled_from(
    [
        c.Bind("", "s", [0], [b"1"], [0]),
        c.Bind("", "s", [0], [b"22"], [0]),
        c.Describe("P", ""),
        c.Execute("", 0),
        c.Sync(),
        c.Query("select 1"),
    ]
).map(lambda m: m.encode())
_ANSWERED = st.sampled_from(
    [
        c.DataRow([b"1"]),
        c.DataRow([b"22", None]),
        c.CommandComplete("SELECT 1"),
        c.ReadyForQuery("I"),
        c.BindComplete(),
    ]
).map(lambda m: m.encode())


@FUZZ
@given(
    st.lists(st.lists(_PIPELINED | hot_frontend_frames(), min_size=1, max_size=5), max_size=4),
    st.lists(st.lists(_ANSWERED | hot_backend_frames(), min_size=1, max_size=5), max_size=4),
    st.integers(1, 3),
    st.lists(st.integers(1, 40), max_size=4),
)
@example(  # pgbench -M prepared: a new Bind, then the same Describe, Execute and Sync
    [[c.Bind("", "s", [0], [v], [0]).encode() for v in (b"1", b"22")]
     + [c.Describe("P", "").encode(), c.Execute("", 0).encode(), c.Sync().encode()]],
    [[c.DataRow([b"7"]).encode(), c.CommandComplete("SELECT 1").encode(),
      c.ReadyForQuery("I").encode()]],
    2,
    [],
)  # fmt: skip
def test_chunks_ending_in_a_remembered_tail_read_as_the_general_decoders_read_them(
    frontend, backend, repeats, cuts
):
    """A chunk ending in the bytes the last one ended in (its tail of repeats) gets the
    tail's messages: the same as reading it frame by frame, however the chunks come."""
    for groups, fast, general in (
        (frontend, FrontendParser(startup=False), _GeneralFrontend(startup=False)),
        (backend, BackendParser(), _GeneralBackend()),
    ):
        chunks = [b"".join(g) for g in groups] * repeats
        if cuts and chunks:  # one chunk also cut into pieces anywhere
            whole, at, pieces = chunks[-1], 0, []
            for cut in cuts:
                pieces.append(whole[at : at + cut])
                at += cut
            chunks[-1:] = [*pieces, whole[at:]]
        assert _outcome(fast, chunks) == _outcome(general, chunks)


# -- the plain lane: BackendParser.plain_answers + ResponseTracker.plain -------------------
#
# The lane must be on_backend for every chunk it takes, and take nothing on_backend would
# read differently: for any expectations and any server bytes (valid, mutated or cut), it
# either declines, having changed nothing, or leaves the client's bytes, the tracker and
# the completions exactly as parsing every message and calling on_backend does.

plain_answer_messages = st.one_of(
    st.builds(c.ParseComplete),
    st.builds(c.BindComplete),
    st.builds(c.CloseComplete),
    st.builds(c.NoData),
    st.builds(c.ParameterDescription, st.lists(u32, max_size=4)),
    row_descriptions,
    st.builds(c.DataRow, st.lists(value, max_size=5)),
    st.builds(c.CommandComplete, text),
    st.builds(c.EmptyQueryResponse),
    st.builds(c.ReadyForQuery, status),
)
lane_messages = st.one_of(plain_answer_messages, plain_answer_messages, backend_messages)
expect_kinds = st.sampled_from(
    ["Query", "Parse", "Bind", "Execute", "Sync", "DescribeS", "DescribeP", "Close", "Call"]
)


@st.composite
def expectations(draw: st.DrawFn) -> list[tuple[str, bool, bool]]:
    """(kind, masked, swallowed) for each answer owed, mostly plain."""
    mostly_not = st.sampled_from([False, False, False, True])
    owed = draw(st.lists(st.tuples(expect_kinds, mostly_not, mostly_not), max_size=4))
    return [(kind, masked and kind == "Query", swallow) for kind, masked, swallow in owed]


def _tracker(owed: list[tuple[str, bool, bool]]) -> ResponseTracker:
    tracker = ResponseTracker()
    for n, (kind, masked, swallow) in enumerate(owed):
        tracker.expect(
            Expect(
                kind,
                masker=object() if masked else None,  # type: ignore[arg-type]
                decision_id=f"d{n}",
                statement=f"s{n % 2}",
                swallow=swallow,
                command=f"command {n}",
                protocol="simple" if kind == "Query" else "extended",
            )
        )
    return tracker


def _tracked(tracker: ResponseTracker) -> tuple:
    return (
        tracker.status,
        tracker.in_copy_out,
        {k: v and [f.name for f in v.fields] for k, v in tracker.statement_shapes.items()},
        {k: v and [f.name for f in v.fields] for k, v in tracker.portal_shapes.items()},
        [(type(e).__name__, getattr(e, "kind", ""), getattr(e, "rows", 0)) for e in tracker.queue],
        [(d.command, d.tag, d.rows, d.decision_id, d.error, d.protocol, d.part) for d in
         tracker.completions],
    )  # fmt: skip


def _lane_matches_on_backend(owed: list[tuple[str, bool, bool]], chunk: bytes) -> bool:
    lane_parser, lane_tracker = BackendParser(), _tracker(owed)
    before = _tracked(lane_tracker)
    answers = lane_parser.plain_answers(chunk)
    if answers is None or not lane_tracker.plain(answers):
        assert _tracked(lane_tracker) == before  # declined: nothing changed
        return False
    parser, tracker = BackendParser(), _tracker(owed)
    messages = parser.feed(chunk)  # the lane took it: the parser must read it whole
    assert parser.buffered == 0
    assert b"".join(tracker.on_backend(m) for m in messages) == chunk
    assert _tracked(lane_tracker) == _tracked(tracker)
    return True


@settings(FUZZ, max_examples=600)
@given(expectations(), st.lists(lane_messages, max_size=8))
def test_plain_lane_is_on_backend(owed: list[tuple[str, bool, bool]], messages: list) -> None:
    taken = _lane_matches_on_backend(owed, b"".join(m.encode() for m in messages))
    event(f"lane took the chunk: {taken}")


@FUZZ
@given(expectations(), mutated(st.lists(plain_answer_messages, min_size=1, max_size=6)))
def test_plain_lane_on_mutated_answers(owed: list[tuple[str, bool, bool]], data: bytes) -> None:
    try:
        BackendParser().feed(data)
    except ProtocolViolation:
        # what the parser refuses, the lane must not take
        assert BackendParser().plain_answers(data) is None
        return
    _lane_matches_on_backend(owed, data)


_RESULT_PARTS = [
    c.RowDescription([c.Field("aid", 16400, 1, 23, 4, -1, 0)]).encode(),
    c.BindComplete().encode(),
    c.DataRow([b"1"]).encode(),
    c.DataRow([b"22", None]).encode(),
    c.CommandComplete("SELECT 1").encode(),
    c.ReadyForQuery("I").encode(),
    c.ReadyForQuery("T").encode(),
    c.NoticeResponse({"S": "NOTICE", "M": "hi"}).encode(),
]


@FUZZ
@given(
    st.lists(
        st.lists(st.sampled_from(_RESULT_PARTS), min_size=1, max_size=6).map(b"".join)
        | st.binary(min_size=1, max_size=12),
        min_size=1,
        max_size=8,
    ),
    st.integers(1, 3),
)
@example(  # pgbench: a description, one row, its tag and status, chunk after chunk
    [b"".join(_RESULT_PARTS[i] for i in picked) for picked in ((0, 2, 4, 5), (0, 3, 4, 5))],
    3,
)  # fmt: skip
def test_a_chunk_starting_or_ending_as_the_last_one_has_the_answers_a_fresh_parser_gives(
    chunks, repeats
):
    """plain_answers remembers the frames before the first row and after the last row of
    the chunk before: whatever chunks come, each is answered as a fresh parser answers it."""
    parser = BackendParser()
    for chunk in chunks * repeats:
        rows: list = []
        fresh_rows: list = []
        assert parser.plain_answers(chunk, rows) == BackendParser().plain_answers(chunk, fresh_rows)
        assert rows == fresh_rows


def test_plain_lane_takes_a_result_and_declines_what_it_does_not_know() -> None:
    result = b"".join(
        m.encode()
        for m in (
            c.RowDescription([c.Field("aid", 16400, 1, 23, 4, -1, 0)]),
            c.DataRow([b"1"]),
            c.DataRow([None]),
            c.CommandComplete("SELECT 2"),
            c.ReadyForQuery("T"),
        )
    )
    assert _lane_matches_on_backend([("Query", False, False)], result)
    assert not _lane_matches_on_backend([("Query", True, False)], result)  # masked rows
    assert not _lane_matches_on_backend([("Query", False, True)], result)  # swallowed
    notice = c.NoticeResponse({"S": "NOTICE", "M": "hi"}).encode()
    assert not _lane_matches_on_backend([("Query", False, False)], notice + result)
    parser = BackendParser()
    parser.feed(result[:3])  # part of a frame held back: the parser reads the rest
    assert parser.plain_answers(result[3:]) is None
    assert BackendParser().plain_answers(result[:-1]) is None  # a frame still arriving
