"""Transcript tests of the PostgreSQL wire codec: exact bytes ⇄ messages for every message
type, framing across arbitrary chunk boundaries, hostile input, and a live conversation
with the real PostgreSQL server on 127.0.0.1:5432."""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Iterator

import pytest

from proxies.postgres.codec import (
    PROTOCOL_VERSION,
    AuthenticationCleartextPassword,
    AuthenticationGSS,
    AuthenticationGSSContinue,
    AuthenticationKerberosV5,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    AuthenticationSSPI,
    BackendKeyData,
    BackendParser,
    Bind,
    BindComplete,
    CancelRequest,
    Close,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyData,
    CopyDone,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    Field,
    Flush,
    FrontendParser,
    FunctionCall,
    FunctionCallResponse,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    ParseComplete,
    PasswordMessage,
    PortalSuspended,
    ProtocolViolation,
    Query,
    ReadyForQuery,
    RowDescription,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    error_response,
    notice_response,
    ready_for_query,
)

# (message, its exact bytes on the wire), written out by hand from "Message Formats".
FRONTEND = [
    (Query("select 1"), b"Q\x00\x00\x00\x0dselect 1\x00"),
    (Query("select 'é'"), b"Q\x00\x00\x00\x10select '\xc3\xa9'\x00"),
    (
        Parse("s1", "select $1", [23]),
        b"P\x00\x00\x00\x17s1\x00select $1\x00\x00\x01\x00\x00\x00\x17",
    ),
    (Parse("", "select 1"), b"P\x00\x00\x00\x10\x00select 1\x00\x00\x00"),
    (
        Bind("p1", "s1", [1], [b"\x00\x00\x00\x2a", None], [0, 1]),
        b"B\x00\x00\x00\x22p1\x00s1\x00\x00\x01\x00\x01\x00\x02"
        b"\x00\x00\x00\x04\x00\x00\x00\x2a\xff\xff\xff\xff\x00\x02\x00\x00\x00\x01",
    ),
    (Bind("", ""), b"B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00"),
    (Describe("S", "s1"), b"D\x00\x00\x00\x08Ss1\x00"),
    (Describe("P", ""), b"D\x00\x00\x00\x06P\x00"),
    (Execute("p1", 100), b"E\x00\x00\x00\x0bp1\x00\x00\x00\x00\x64"),
    (Sync(), b"S\x00\x00\x00\x04"),
    (Flush(), b"H\x00\x00\x00\x04"),
    (Close("P", "p1"), b"C\x00\x00\x00\x08Pp1\x00"),
    (Close("S", ""), b"C\x00\x00\x00\x06S\x00"),
    (Terminate(), b"X\x00\x00\x00\x04"),
    (CopyData(b"1\t2\n"), b"d\x00\x00\x00\x081\t2\n"),
    (CopyDone(), b"c\x00\x00\x00\x04"),
    (CopyFail("boom"), b"f\x00\x00\x00\x09boom\x00"),
    (
        FunctionCall(1397, [1], [b"\x00\x00\x00\x05"], 1),
        b"F\x00\x00\x00\x18\x00\x00\x05\x75\x00\x01\x00\x01\x00\x01"
        b"\x00\x00\x00\x04\x00\x00\x00\x05\x00\x01",
    ),
    (PasswordMessage(b"hunter2\x00"), b"p\x00\x00\x00\x0chunter2\x00"),
]

BACKEND = [
    (AuthenticationOk(), b"R\x00\x00\x00\x08\x00\x00\x00\x00"),
    (AuthenticationKerberosV5(), b"R\x00\x00\x00\x08\x00\x00\x00\x02"),
    (AuthenticationCleartextPassword(), b"R\x00\x00\x00\x08\x00\x00\x00\x03"),
    (AuthenticationMD5Password(b"abcd"), b"R\x00\x00\x00\x0c\x00\x00\x00\x05abcd"),
    (AuthenticationGSS(), b"R\x00\x00\x00\x08\x00\x00\x00\x07"),
    (AuthenticationGSSContinue(b"tok"), b"R\x00\x00\x00\x0b\x00\x00\x00\x08tok"),
    (AuthenticationSSPI(), b"R\x00\x00\x00\x08\x00\x00\x00\x09"),
    (
        AuthenticationSASL(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
        b"R\x00\x00\x00\x2a\x00\x00\x00\x0aSCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00",
    ),
    (AuthenticationSASLContinue(b"r=x"), b"R\x00\x00\x00\x0b\x00\x00\x00\x0br=x"),
    (AuthenticationSASLFinal(b"v=y"), b"R\x00\x00\x00\x0b\x00\x00\x00\x0cv=y"),
    (
        ParameterStatus("client_encoding", "UTF8"),
        b"S\x00\x00\x00\x19client_encoding\x00UTF8\x00",
    ),
    (BackendKeyData(1234, 0xDEADBEEF), b"K\x00\x00\x00\x0c\x00\x00\x04\xd2\xde\xad\xbe\xef"),
    (ReadyForQuery("I"), b"Z\x00\x00\x00\x05I"),
    (ReadyForQuery("T"), b"Z\x00\x00\x00\x05T"),
    (ReadyForQuery("E"), b"Z\x00\x00\x00\x05E"),
    (
        RowDescription([Field("one", 0, 0, 23, 4, -1, 0)]),
        b"T\x00\x00\x00\x1c\x00\x01one\x00\x00\x00\x00\x00\x00\x00"
        b"\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00",
    ),
    (RowDescription([]), b"T\x00\x00\x00\x06\x00\x00"),
    (
        DataRow([b"1", None, b""]),
        b"D\x00\x00\x00\x13\x00\x03\x00\x00\x00\x011\xff\xff\xff\xff\x00\x00\x00\x00",
    ),
    (CommandComplete("SELECT 1"), b"C\x00\x00\x00\x0dSELECT 1\x00"),
    (EmptyQueryResponse(), b"I\x00\x00\x00\x04"),
    (
        ErrorResponse({"S": "ERROR", "C": "42501", "M": "denied"}),
        b"E\x00\x00\x00\x1bSERROR\x00C42501\x00Mdenied\x00\x00",
    ),
    (NoticeResponse({"S": "NOTICE", "M": "hi"}), b"N\x00\x00\x00\x11SNOTICE\x00Mhi\x00\x00"),
    (ParseComplete(), b"1\x00\x00\x00\x04"),
    (BindComplete(), b"2\x00\x00\x00\x04"),
    (CloseComplete(), b"3\x00\x00\x00\x04"),
    (NoData(), b"n\x00\x00\x00\x04"),
    (PortalSuspended(), b"s\x00\x00\x00\x04"),
    (ParameterDescription([23, 25]), b"t\x00\x00\x00\x0e\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19"),
    (CopyInResponse(0, [0, 0]), b"G\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00"),
    (CopyOutResponse(1, [1]), b"H\x00\x00\x00\x09\x01\x00\x01\x00\x01"),
    (CopyBothResponse(0, []), b"W\x00\x00\x00\x07\x00\x00\x00"),
    (CopyData(b"x"), b"d\x00\x00\x00\x05x"),
    (CopyDone(), b"c\x00\x00\x00\x04"),
    (
        NotificationResponse(42, "ch", "payload"),
        b"A\x00\x00\x00\x13\x00\x00\x00\x2ach\x00payload\x00",
    ),
    (
        FunctionCallResponse(b"\x00\x00\x00\x06"),
        b"V\x00\x00\x00\x0c\x00\x00\x00\x04\x00\x00\x00\x06",
    ),
    (FunctionCallResponse(None), b"V\x00\x00\x00\x08\xff\xff\xff\xff"),
    (
        NegotiateProtocolVersion(0, ["_pq_.foo"]),
        b"v\x00\x00\x00\x15\x00\x00\x00\x00\x00\x00\x00\x01_pq_.foo\x00",
    ),
]

STARTUP = [
    (
        StartupMessage(PROTOCOL_VERSION, {"user": "bob", "database": "db"}),
        b"\x00\x00\x00\x1e\x00\x03\x00\x00user\x00bob\x00database\x00db\x00\x00",
    ),
    (SSLRequest(), b"\x00\x00\x00\x08\x04\xd2\x16\x2f"),
    (GSSENCRequest(), b"\x00\x00\x00\x08\x04\xd2\x16\x30"),
    (
        CancelRequest(1234, 5678),
        b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x04\xd2\x00\x00\x16\x2e",
    ),
]


def _ids(table: list[tuple[Message, bytes]]) -> list[str]:
    return [f"{i}-{type(m).__name__}" for i, (m, _) in enumerate(table)]


# --------------------------------------------------------------------------- transcripts


@pytest.mark.parametrize(("message", "wire"), FRONTEND, ids=_ids(FRONTEND))
def test_frontend_transcript(message: Message, wire: bytes) -> None:
    assert message.encode() == wire
    (parsed,) = FrontendParser(startup=False).feed(wire)
    assert parsed == message
    assert parsed.raw == wire


@pytest.mark.parametrize(("message", "wire"), BACKEND, ids=_ids(BACKEND))
def test_backend_transcript(message: Message, wire: bytes) -> None:
    assert message.encode() == wire
    (parsed,) = BackendParser().feed(wire)
    assert parsed == message
    assert parsed.raw == wire


@pytest.mark.parametrize(("message", "wire"), STARTUP, ids=_ids(STARTUP))
def test_startup_transcript(message: Message, wire: bytes) -> None:
    assert message.encode() == wire
    parser = FrontendParser()
    (parsed,) = parser.feed(wire)
    assert parsed == message
    assert parsed.raw == wire
    # Only a StartupMessage ends the startup phase by itself.
    assert parser.in_startup is not isinstance(message, StartupMessage)


def _startup_stream() -> tuple[bytes, list[Message]]:
    messages = [STARTUP[0][0]] + [m for m, _ in FRONTEND]
    return b"".join(w for _, w in [STARTUP[0], *FRONTEND]), messages


def test_frontend_stream_split_at_every_boundary() -> None:
    stream, expected = _startup_stream()
    for cut in range(len(stream) + 1):
        parser = FrontendParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert got == expected, f"split at byte {cut}"
        assert [m.raw for m in got] == [m.encode() for m in expected]
        assert parser.buffered == 0


def test_frontend_stream_byte_by_byte() -> None:
    stream, expected = _startup_stream()
    parser = FrontendParser()
    got = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1])]
    assert got == expected


def test_backend_stream_split_at_every_boundary_and_byte_by_byte() -> None:
    stream = b"".join(w for _, w in BACKEND)
    expected = [m for m, _ in BACKEND]
    assert BackendParser().feed(stream) == expected  # all in one chunk
    for cut in range(len(stream) + 1):
        parser = BackendParser()
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == expected, cut
    parser = BackendParser()
    assert [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1])] == expected


def test_partial_frame_is_buffered_not_returned() -> None:
    parser = BackendParser()
    wire = CommandComplete("SELECT 1").encode()
    assert parser.feed(wire[:-1]) == []
    assert parser.buffered == len(wire) - 1
    assert parser.feed(b"") == []
    assert parser.feed(wire[-1:]) == [CommandComplete("SELECT 1")]
    assert parser.buffered == 0


def test_large_frame_in_many_chunks() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    wire = CopyData(payload).encode()
    parser = FrontendParser(startup=False)
    got: list[Message] = []
    for i in range(0, len(wire), 1000):
        got += parser.feed(wire[i : i + 1000])
    assert got == [CopyData(payload)]


def test_ssl_negotiation_then_startup() -> None:
    parser = FrontendParser()
    assert parser.feed(SSLRequest().encode()) == [SSLRequest()]
    assert parser.in_startup  # the proxy answers N (or does TLS), then the startup follows
    startup = StartupMessage(PROTOCOL_VERSION, {"user": "u"})
    assert parser.feed(startup.encode() + Query("select 1").encode()) == [
        startup,
        Query("select 1"),
    ]
    assert not parser.in_startup


def test_gssenc_then_ssl_then_startup() -> None:
    parser = FrontendParser()
    assert parser.feed(GSSENCRequest().encode()) == [GSSENCRequest()]
    assert parser.feed(SSLRequest().encode()) == [SSLRequest()]
    assert parser.feed(STARTUP[0][1]) == [STARTUP[0][0]]


def test_startup_done_switches_by_hand() -> None:
    parser = FrontendParser()
    parser.startup_done()
    assert parser.feed(Sync().encode()) == [Sync()]


def test_startup_with_newer_minor_version_and_pq_options() -> None:
    msg = StartupMessage(3 << 16 | 2, {"user": "u", "_pq_.x": "1", "options": "-c a=b"})
    assert FrontendParser().feed(msg.encode()) == [msg]


# --------------------------------------------------------------------------- 'p' helpers


def test_password_message_interpretations() -> None:
    parser = FrontendParser(startup=False)
    initial = SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc")
    wire = initial.encode()
    assert wire == b"p\x00\x00\x00\x21SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc"
    (parsed,) = parser.feed(wire)
    assert isinstance(parsed, PasswordMessage)
    assert parsed.as_sasl_initial_response() == initial
    none = SASLInitialResponse("SCRAM-SHA-256", None)
    assert none.encode().endswith(b"\xff\xff\xff\xff")
    assert PasswordMessage(none.encode()[5:]).as_sasl_initial_response() == none

    response = SASLResponse(b"c=biws,r=abc,p=xyz")
    (parsed,) = parser.feed(response.encode())
    assert parsed.as_sasl_response() == response

    (parsed,) = parser.feed(PasswordMessage.from_password("eyJ.token").encode())
    assert parsed.password() == "eyJ.token"


@pytest.mark.parametrize(
    ("body", "method"),
    [
        (b"no terminator", "password"),
        (b"two\x00strings\x00", "password"),
        (b"\xff\xfe\x00", "password"),
        (b"SCRAM-SHA-256", "as_sasl_initial_response"),
        (b"SCRAM-SHA-256\x00\x00\x00", "as_sasl_initial_response"),
        (b"SCRAM-SHA-256\x00\x00\x00\x00\x09short", "as_sasl_initial_response"),
        (b"SCRAM-SHA-256\x00\xff\xff\xff\xfe", "as_sasl_initial_response"),
        (b"SCRAM-SHA-256\x00\x00\x00\x00\x01ab", "as_sasl_initial_response"),
    ],
)
def test_password_message_bad_interpretations(body: bytes, method: str) -> None:
    with pytest.raises(ProtocolViolation):
        getattr(PasswordMessage(body), method)()


# --------------------------------------------------------------------------- helpers


def test_error_response_helper() -> None:
    err = error_response("denied by policy: no DROP", detail="rule x", hint="ask")
    assert err.fields == {
        "S": "ERROR",
        "V": "ERROR",
        "C": "42501",
        "M": "denied by policy: no DROP",
        "D": "rule x",
        "H": "ask",
    }
    assert (err.severity, err.sqlstate, err.message) == (
        "ERROR",
        "42501",
        "denied by policy: no DROP",
    )
    wire = err.encode()
    assert wire.startswith(b"E") and wire.endswith(b"Hask\x00\x00")
    assert BackendParser().feed(wire) == [err]
    # A NUL in a policy reason must not truncate or break the frame.
    assert BackendParser().feed(error_response("a\0b").encode())[0].message == "a\ufffdb"


def test_notice_and_ready_helpers() -> None:
    notice = notice_response("approval 7 pending")
    assert notice.fields["S"] == "NOTICE" and notice.fields["C"] == "00000"
    assert BackendParser().feed(notice.encode()) == [notice]
    assert ready_for_query("T").encode() == b"Z\x00\x00\x00\x05T"
    assert ready_for_query().status == "I"
    with pytest.raises(ValueError):
        ready_for_query("X")


@pytest.mark.parametrize(
    "message",
    [
        Query("nul\0inside"),
        Describe("X", "n"),
        Close("", "n"),
        ReadyForQuery("Q"),
        AuthenticationMD5Password(b"toolong"),
        AuthenticationSASL([""]),
        ErrorResponse({"": "x"}),
        ErrorResponse({"\0": "x"}),
        Execute("p", 2**31),
        StartupMessage(PROTOCOL_VERSION, {"us\0er": "x"}),
    ],
)
def test_encode_refuses_what_cannot_be_framed(message: Message) -> None:
    with pytest.raises(ValueError):
        message.encode()


def test_raw_is_not_copied_by_replace() -> None:
    (row,) = BackendParser().feed(DataRow([b"secret@example.com"]).encode())
    masked = dataclasses.replace(row, values=[b"****"])
    assert row.raw and masked.raw == b""
    assert masked.encode() == DataRow([b"****"]).encode()


# --------------------------------------------------------------------------- bad input


def _frame(kind: bytes, body: bytes, length: int | None = None) -> bytes:
    return kind + struct.pack("!i", len(body) + 4 if length is None else length) + body


BAD_FRONTEND = {
    "unknown type byte": b"Z\x00\x00\x00\x04",
    "NUL as type byte": b"\x00\x00\x00\x00\x04",
    "length below 4": b"S\x00\x00\x00\x03",
    "length zero": b"S\x00\x00\x00\x00",
    "negative length": b"Q\xff\xff\xff\xfe",
    "oversized length": b"Q\x7f\xff\xff\xff",
    "query without NUL": _frame(b"Q", b"select 1"),
    "query invalid utf-8": _frame(b"Q", b"select '\xff'\x00"),
    "query trailing bytes": _frame(b"Q", b"select 1\x00junk"),
    "sync with body": _frame(b"S", b"\x00"),
    "parse count past frame": _frame(b"P", b"\x00select 1\x00\x00\x05\x00\x00\x00\x17"),
    "parse truncated count": _frame(b"P", b"\x00select 1\x00\x00"),
    "bind value past frame": _frame(b"B", b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x10ab"),
    "bind negative value length": _frame(b"B", b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"),
    "bind missing result formats": _frame(b"B", b"\x00\x00\x00\x00\x00\x00"),
    "describe bad kind": _frame(b"D", b"Xname\x00"),
    "describe empty": _frame(b"D", b""),
    "execute short": _frame(b"E", b"\x00\x00\x00"),
    "close without name": _frame(b"C", b"S"),
    "copyfail without NUL": _frame(b"f", b"boom"),
    "function call truncated": _frame(b"F", b"\x00\x00\x05\x75\x00\x01\x00"),
    "backend message sent by a client": ReadyForQuery("I").encode(),
}

BAD_BACKEND = {
    "unknown type byte": b"Q\x00\x00\x00\x04",
    "length below 4": b"Z\x00\x00\x00\x02",
    "negative length": b"D\x80\x00\x00\x00",
    "unknown auth code": _frame(b"R", b"\x00\x00\x00\x06"),
    "auth without code": _frame(b"R", b""),
    "md5 short salt": _frame(b"R", b"\x00\x00\x00\x05abc"),
    "auth ok with body": _frame(b"R", b"\x00\x00\x00\x00x"),
    "sasl list without terminator": _frame(b"R", b"\x00\x00\x00\x0aSCRAM-SHA-256\x00"),
    "ready bad status": _frame(b"Z", b"X"),
    "ready empty": _frame(b"Z", b""),
    "row description past frame": _frame(b"T", b"\x00\x02one\x00" + b"\x00" * 18),
    "row description name without NUL": _frame(b"T", b"\x00\x01one"),
    "row description invalid utf-8": _frame(b"T", b"\x00\x01\xc3\x28\x00" + b"\x00" * 18),
    "data row count past frame": _frame(b"D", b"\x00\x05\x00\x00\x00\x011"),
    "data row value past frame": _frame(b"D", b"\x00\x01\x00\x00\x00\x09abc"),
    "data row bad null": _frame(b"D", b"\x00\x01\xff\xff\xff\xfe"),
    "error without final NUL": _frame(b"E", b"SERROR\x00"),
    "error field without NUL": _frame(b"E", b"SERROR"),
    "error duplicate field": _frame(b"E", b"Ma\x00Mb\x00\x00"),
    "notice invalid utf-8": _frame(b"N", b"M\xff\x00\x00"),
    "command complete no NUL": _frame(b"C", b"SELECT 1"),
    "parameter status one string": _frame(b"S", b"name\x00"),
    "backend key short": _frame(b"K", b"\x00\x00\x00\x01"),
    "copy response truncated": _frame(b"G", b"\x00\x00\x03\x00\x00"),
    "negotiate negative count": _frame(b"v", b"\x00\x00\x00\x00\xff\xff\xff\xff"),
    "negotiate huge count": _frame(b"v", b"\x00\x00\x00\x00\x7f\xff\xff\xff_pq_.a\x00"),
    "function result past frame": _frame(b"V", b"\x00\x00\x00\x08ab"),
    "parse complete with body": _frame(b"1", b"x"),
}


@pytest.mark.parametrize("wire", BAD_FRONTEND.values(), ids=BAD_FRONTEND.keys())
def test_bad_frontend_input(wire: bytes) -> None:
    parser = FrontendParser(startup=False, max_frame=1 << 20)
    with pytest.raises(ProtocolViolation):
        parser.feed(wire)


@pytest.mark.parametrize("wire", BAD_BACKEND.values(), ids=BAD_BACKEND.keys())
def test_bad_backend_input(wire: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        BackendParser().feed(wire)


def test_oversized_frame_fails_on_the_header_alone() -> None:
    parser = BackendParser(max_frame=1000)
    with pytest.raises(ProtocolViolation, match="exceeds the limit of 1000"):
        parser.feed(b"D\x00\x00\x03\xe9")  # 1001, before any of the body arrives
    assert CopyData(b"x" * 996).encode() == b"d\x00\x00\x03\xe8" + b"x" * 996
    assert len(BackendParser(max_frame=1000).feed(CopyData(b"x" * 996).encode())) == 1


def test_default_limits() -> None:
    with pytest.raises(ProtocolViolation, match="67108864"):
        FrontendParser(startup=False).feed(b"d" + struct.pack("!i", 64 * 1024 * 1024 + 1))
    with pytest.raises(ProtocolViolation, match="1073741824"):
        BackendParser().feed(b"d" + struct.pack("!i", 1024 * 1024 * 1024 + 1))


def test_unknown_type_fails_before_its_length_arrives() -> None:
    with pytest.raises(ProtocolViolation, match="unknown frontend message type b'Z'"):
        FrontendParser(startup=False).feed(b"Z")


def _startup(params: bytes) -> bytes:
    """A protocol 3.0 startup packet with a correct length around ``params``."""
    return struct.pack("!ii", len(params) + 8, PROTOCOL_VERSION) + params


BAD_STARTUP = {
    "length below 8": b"\x00\x00\x00\x07\x00\x03\x00\x00",
    "negative length": b"\xff\xff\xff\xff",
    "oversized startup packet": struct.pack("!ii", 10_001, PROTOCOL_VERSION),
    "protocol 2.0": struct.pack("!ii", 8, 2 << 16),
    "protocol 4.0": struct.pack("!ii", 8, 4 << 16),
    "unknown request code": struct.pack("!ii", 8, 80877199),
    "params without terminator": _startup(b"user\x00bob\x00"),
    "param without value": _startup(b"user\x00"),
    "trailing after terminator": _startup(b"user\x00bob\x00\x00x"),
    "duplicate parameter": _startup(b"user\x00a\x00user\x00b\x00\x00"),
    "invalid utf-8 value": _startup(b"user\x00\xff\xfe\x00\x00"),
    "invalid utf-8 name": _startup(b"\xc3\x28\x00x\x00\x00"),
    "ssl request with body": struct.pack("!ii", 12, 80877103) + b"\x00\x00\x00\x00",
    "cancel request short": struct.pack("!iii", 12, 80877102, 1),
    "typed message before startup": Query("select 1").encode(),
    "data right behind SSLRequest": SSLRequest().encode() + STARTUP[0][1],
    "data right behind GSSENCRequest": GSSENCRequest().encode() + b"\x00",
    "data right behind CancelRequest": CancelRequest(1, 2).encode() + b"\x00",
    "garbage after startup": STARTUP[0][1] + b"\xde\xad\xbe\xef\x00\x00",
}


@pytest.mark.parametrize("wire", BAD_STARTUP.values(), ids=BAD_STARTUP.keys())
def test_bad_startup_input(wire: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        FrontendParser().feed(wire)


def test_data_after_cancel_in_a_later_chunk() -> None:
    parser = FrontendParser()
    assert parser.feed(CancelRequest(1, 2).encode()) == [CancelRequest(1, 2)]
    with pytest.raises(ProtocolViolation, match="CancelRequest"):
        parser.feed(b"x")


def test_a_failed_parser_stays_failed() -> None:
    parser = BackendParser()
    with pytest.raises(ProtocolViolation) as first:
        parser.feed(b"?\x00\x00\x00\x04")
    with pytest.raises(ProtocolViolation) as again:
        parser.feed(ReadyForQuery("I").encode())
    assert again.value is first.value
    assert parser.buffered == 0


def test_messages_before_a_violation_in_the_same_chunk_are_not_returned() -> None:
    # Fail closed: a chunk with a violation yields nothing, not a prefix of it.
    with pytest.raises(ProtocolViolation):
        FrontendParser(startup=False).feed(Query("select 1").encode() + b"Z\x00\x00\x00\x04")


# --------------------------------------------------------------------------- real server

from pg_wire import Wire as _Wire  # noqa: E402


@pytest.fixture
def server() -> Iterator[_Wire]:
    wire = _Wire()
    wire.send(StartupMessage(PROTOCOL_VERSION, {"user": "postgres", "database": "postgres",
                                                "client_encoding": "UTF8"}))  # fmt: skip
    hello = wire.until(ReadyForQuery)
    assert isinstance(hello[0], AuthenticationOk)
    params = {m.name: m.value for m in hello if isinstance(m, ParameterStatus)}
    assert params["client_encoding"] == "UTF8"
    assert "server_version" in params
    assert sum(isinstance(m, BackendKeyData) for m in hello) == 1
    assert hello[-1] == ReadyForQuery("I")
    yield wire
    wire.send(Terminate())
    wire.sock.close()
    # Everything the server said came back as messages whose raw bytes, in order, are the
    # stream itself, and each re-encodes to exactly those bytes.
    assert wire.parser.buffered == 0
    assert b"".join(m.raw for m in wire.parsed) == bytes(wire.received)
    assert all(m.encode() == m.raw for m in wire.parsed)


def _types(messages: list[Message]) -> list[str]:
    return [type(m).__name__ for m in messages]


def test_real_server_simple_query(server: _Wire) -> None:
    server.send(Query("select 1 as one, 'x'::text as two"))
    reply = server.until(ReadyForQuery)
    assert _types(reply) == ["RowDescription", "DataRow", "CommandComplete", "ReadyForQuery"]
    desc, row, done, ready = reply
    assert [f.name for f in desc.fields] == ["one", "two"]
    assert [f.type_oid for f in desc.fields] == [23, 25]  # int4, text
    assert desc.fields[0].type_size == 4 and desc.fields[1].type_size == -1
    assert row == DataRow([b"1", b"x"])
    assert done == CommandComplete("SELECT 1")
    assert ready == ReadyForQuery("I")
    for m in reply:
        assert m.encode() == m.raw


def test_real_server_extended_query(server: _Wire) -> None:
    server.send(
        Parse("", "select $1::int + 1 as n, 'x'::text as two, null::text as z", [23]),
        Describe("S", ""),
        Bind("", "", [0], [b"41"], [0]),
        Describe("P", ""),
        Execute("", 0),
        Sync(),
    )
    reply = server.until(ReadyForQuery)
    assert _types(reply) == [
        "ParseComplete", "ParameterDescription", "RowDescription", "BindComplete",
        "RowDescription", "DataRow", "CommandComplete", "ReadyForQuery",
    ]  # fmt: skip
    assert reply[1] == ParameterDescription([23])
    assert [f.name for f in reply[4].fields] == ["n", "two", "z"]
    assert reply[5] == DataRow([b"42", b"x", None])
    assert reply[6] == CommandComplete("SELECT 1")
    assert all(m.encode() == m.raw for m in reply)


def test_real_server_binary_results_named_statement_and_suspension(server: _Wire) -> None:
    server.send(
        Parse("st", "select g from generate_series(1, 3) g"),
        Bind("pt", "st", [], [], [1]),
        Execute("pt", 2),
        Execute("pt", 0),
        Close("P", "pt"),
        Close("S", "st"),
        Describe("S", "st"),
        Sync(),
    )
    reply = server.until(ReadyForQuery)
    assert _types(reply) == [
        "ParseComplete", "BindComplete", "DataRow", "DataRow", "PortalSuspended",
        "DataRow", "CommandComplete", "CloseComplete", "CloseComplete", "ErrorResponse",
        "ReadyForQuery",
    ]  # fmt: skip
    assert reply[2] == DataRow([b"\x00\x00\x00\x01"])  # binary int4
    assert reply[5] == DataRow([b"\x00\x00\x00\x03"])
    assert reply[9].sqlstate == "26000"  # invalid_sql_statement_name: it was closed
    assert reply[-1] == ReadyForQuery("I")


def test_real_server_errors_notices_and_empty_query(server: _Wire) -> None:
    server.send(Query("select * from portcullis_no_such_table"))
    err, ready = server.until(ReadyForQuery)
    assert isinstance(err, ErrorResponse)
    assert err.sqlstate == "42P01" and err.severity == "ERROR"
    assert "portcullis_no_such_table" in err.message
    assert ready == ReadyForQuery("I")

    server.send(Query(""))
    assert server.until(ReadyForQuery) == [EmptyQueryResponse(), ReadyForQuery("I")]

    server.send(Query("do $$ begin raise notice 'héllo'; end $$"))
    notice, done, ready = server.until(ReadyForQuery)
    assert isinstance(notice, NoticeResponse) and notice.message == "héllo"
    assert done == CommandComplete("DO")

    server.send(Query("begin; select 1/0"))
    reply = server.until(ReadyForQuery)
    assert reply[-1] == ReadyForQuery("E")
    server.send(Query("rollback"))
    assert server.until(ReadyForQuery)[-1] == ReadyForQuery("I")


def test_real_server_copy_out_and_in(server: _Wire) -> None:
    server.send(Query("copy (select g, 'v' || g from generate_series(1, 2) g) to stdout"))
    reply = server.until(ReadyForQuery)
    assert reply == [
        CopyOutResponse(0, [0, 0]),
        CopyData(b"1\tv1\n"),
        CopyData(b"2\tv2\n"),
        CopyDone(),
        CommandComplete("COPY 2"),
        ReadyForQuery("I"),
    ]
    server.send(Query("create temp table portcullis_copy(a int, b text)"))
    server.until(ReadyForQuery)
    server.send(Query("copy portcullis_copy from stdin"))
    assert server.until(CopyInResponse) == [CopyInResponse(0, [0, 0])]
    server.send(CopyData(b"7\tseven\n"), CopyDone())
    assert server.until(ReadyForQuery) == [CommandComplete("COPY 1"), ReadyForQuery("I")]
    server.send(Query("copy portcullis_copy from stdin"))
    server.until(CopyInResponse)
    server.send(CopyFail("client gave up"))
    err, _ = server.until(ReadyForQuery)
    assert isinstance(err, ErrorResponse) and "client gave up" in err.message
    server.send(Query("select b from portcullis_copy"))
    assert server.until(ReadyForQuery)[1] == DataRow([b"seven"])


def test_real_server_notification_and_function_call(server: _Wire) -> None:
    server.send(Query("listen portcullis_ch; notify portcullis_ch, 'payload'"))
    reply = server.until(ReadyForQuery)
    note = next(m for m in reply if isinstance(m, NotificationResponse))
    assert (note.channel, note.payload) == ("portcullis_ch", "payload")
    pid = next(m.pid for m in [*reply] if isinstance(m, NotificationResponse))
    assert pid > 0

    server.send(Query("select 'int4pl'::regproc::oid"))
    oid = int(server.until(ReadyForQuery)[1].values[0])
    server.send(FunctionCall(oid, [1], [struct.pack("!i", 40), struct.pack("!i", 2)], 1))
    result, _ = server.until(ReadyForQuery)
    assert result == FunctionCallResponse(struct.pack("!i", 42))
    assert result.raw == result.encode()


def _wait_until_active(pid: int) -> None:
    watcher = _Wire()
    watcher.send(StartupMessage(PROTOCOL_VERSION, {"user": "postgres", "database": "postgres"}))
    watcher.until(ReadyForQuery)
    sql = f"select 1 from pg_stat_activity where pid = {pid} and query like '%pg_sleep%'"
    sql += " and state = 'active'"
    for _ in range(500):
        watcher.send(Query(sql))
        if any(isinstance(m, DataRow) for m in watcher.until(ReadyForQuery)):
            break
        time.sleep(0.01)
    watcher.send(Terminate())
    watcher.sock.close()


def test_real_server_cancel_request_is_accepted() -> None:
    # A CancelRequest opens its own connection; the server closes it without a reply.
    target = _Wire()
    target.send(StartupMessage(PROTOCOL_VERSION, {"user": "postgres", "database": "postgres"}))
    key = next(m for m in target.until(ReadyForQuery) if isinstance(m, BackendKeyData))
    target.send(Query("select pg_sleep(10)"))
    _wait_until_active(key.pid)  # a cancel that arrives before the query starts is lost
    canceller = _Wire()
    canceller.sock.sendall(CancelRequest(key.pid, key.secret).encode())
    assert canceller.sock.recv(1) == b""
    canceller.sock.close()
    reply = target.until(ReadyForQuery)
    errors = [m for m in reply if isinstance(m, ErrorResponse)]
    assert [e.sqlstate for e in errors] == ["57014"]  # query_canceled
    assert reply[-1] == ReadyForQuery("I")
    target.sock.close()


def test_real_server_refuses_ssl_or_answers_one_byte() -> None:
    wire = _Wire()
    wire.sock.sendall(SSLRequest().encode())
    answer = wire.sock.recv(1)
    assert answer in (b"S", b"N")
    wire.sock.close()
