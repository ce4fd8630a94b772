"""Sans-IO codec for the PostgreSQL frontend/backend protocol, version 3.0.

Owns the wire format of every protocol 3.0 message (PostgreSQL documentation, chapter
"Frontend/Backend Protocol", section "Message Formats") in both directions: a frozen
dataclass per message with ``encode() -> bytes``, and two incremental parsers,
:class:`FrontendParser` (what a client sends) and :class:`BackendParser` (what a server
sends), whose ``feed(data) -> list[Message]`` buffers partial frames.

Must not: do IO (no sockets, no asyncio, no clocks), decide what a message means for a
session (that is the proxy's state machine), or guess. Anything malformed — a length out of
range, an unknown type byte, a missing NUL terminator, a count running past its frame,
invalid UTF-8 where the protocol carries text, trailing bytes — raises
:class:`ProtocolViolation` (a ``ValueError``) and nothing else. A parser that raised stays
failed: every later ``feed`` raises the same error, so no byte is ever parsed on a guess.

Raw bytes: every message a parser returns carries ``raw``, the exact bytes it was framed
from (type byte + length + body, or the whole untyped startup packet). A proxy forwards
``msg.raw`` unchanged; messages built in code have ``raw == b""`` and are sent with
``msg.encode()``. ``raw`` is excluded from equality and is not copied by
``dataclasses.replace``, so a rewritten message (e.g. a masked DataRow) can never carry the
original bytes by accident.

Text: names, SQL and server messages are decoded as UTF-8 (strict). The proxy should pin
``client_encoding=UTF8`` upstream; a peer sending other encodings is a protocol violation.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

PROTOCOL_VERSION = 196608  # 3.0: major 3 in the high 16 bits, minor 0 in the low ones
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
MAX_STARTUP_PACKET = 10_000  # the server's own MAX_STARTUP_PACKET_LENGTH
DEFAULT_MAX_FRONTEND_FRAME = 64 * 1024 * 1024
DEFAULT_MAX_BACKEND_FRAME = 1024 * 1024 * 1024
SSL_ACCEPTED = b"S"  # the single-byte answers to SSLRequest / GSSENCRequest
SSL_REFUSED = b"N"

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")


class ProtocolViolation(ValueError):
    """Bytes that are not a valid PostgreSQL protocol 3.0 message stream."""


# --------------------------------------------------------------------------- reading


class _Reader:
    """Cursor over one frame; every read checks bounds and raises ProtocolViolation."""

    __slots__ = ("buf", "end", "pos", "what")

    def __init__(self, buf: bytes, pos: int, what: str) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)
        self.what = what

    def fail(self, problem: str) -> ProtocolViolation:
        return ProtocolViolation(f"{self.what}: {problem}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise self.fail(f"needs {n} more bytes, frame has {self.end - self.pos}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def _unpack(self, st: struct.Struct) -> int:
        if self.pos + st.size > self.end:
            raise self.fail("frame ends inside an integer field")
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def byte(self) -> int:
        return self.take(1)[0]

    def int16(self) -> int:
        return self._unpack(_I16)

    def uint16(self) -> int:
        return self._unpack(_U16)

    def int32(self) -> int:
        return self._unpack(_I32)

    def uint32(self) -> int:
        return self._unpack(_U32)

    def cstring(self) -> bytes:
        nul = self.buf.find(b"\0", self.pos, self.end)
        if nul < 0:
            raise self.fail("string is missing its NUL terminator")
        out = self.buf[self.pos : nul]
        self.pos = nul + 1
        return out

    def text(self) -> str:
        return self.decode(self.cstring())

    def decode(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"text is not valid UTF-8 ({exc.reason})") from None

    def value(self) -> bytes | None:
        """Int32 length (-1 = NULL) followed by that many bytes."""
        n = self.int32()
        if n == -1:
            return None
        if n < 0:
            raise self.fail(f"negative value length {n}")
        return self.take(n)

    def rest(self) -> bytes:
        out = self.buf[self.pos : self.end]
        self.pos = self.end
        return out

    def done(self) -> None:
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} unexpected bytes at the end of the message")


# --------------------------------------------------------------------------- writing


def _cstr(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if b"\0" in data:
        raise ValueError(f"a protocol string cannot contain NUL: {text!r}")
    return data + b"\0"


def _value(data: bytes | None) -> bytes:
    return _I32.pack(-1) if data is None else _I32.pack(len(data)) + bytes(data)


def _i16s(values: Sequence[int]) -> bytes:
    return _U16.pack(len(values)) + b"".join(_I16.pack(v) for v in values)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every protocol message; ``raw`` holds the bytes it was parsed from."""

    raw: bytes = field(default=b"", init=False, repr=False, compare=False)
    TYPE: ClassVar[bytes] = b""

    def _body(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        """The message on the wire: type byte, Int32 length (counting itself), body."""
        try:
            body = self._body()
        except struct.error as exc:
            raise ValueError(f"{type(self).__name__}: value out of range: {exc}") from None
        # Startup-phase packets have no type byte (TYPE == b"").
        return self.TYPE + _I32.pack(len(body) + 4) + body

    @classmethod
    def _decode(cls, r: _Reader) -> Message:
        return cls()


# Startup-phase packets (no type byte: Int32 length, Int32 code, body) ----------------


@dataclass(frozen=True, slots=True)
class StartupMessage(Message):
    """StartupMessage (F): protocol version, then name/value pairs ending in a NUL."""

    protocol: int
    params: dict[str, str]

    def _body(self) -> bytes:
        pairs = b"".join(_cstr(k) + _cstr(v) for k, v in self.params.items())
        return _U32.pack(self.protocol) + pairs + b"\0"


@dataclass(frozen=True, slots=True)
class SSLRequest(Message):
    """SSLRequest (F): asks the server to switch to TLS; answered by one byte S/N."""

    def _body(self) -> bytes:
        return _U32.pack(SSL_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class GSSENCRequest(Message):
    """GSSENCRequest (F): asks for GSSAPI encryption; answered by one byte G/N."""

    def _body(self) -> bytes:
        return _U32.pack(GSSENC_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class CancelRequest(Message):
    """CancelRequest (F): on a fresh connection, cancels the query of backend ``pid``."""

    pid: int
    secret: int

    def _body(self) -> bytes:
        return _U32.pack(CANCEL_REQUEST_CODE) + _U32.pack(self.pid) + _U32.pack(self.secret)


# Frontend messages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query(Message):
    """Query (F, 'Q'): a simple-protocol query string, possibly several statements."""

    TYPE = b"Q"
    sql: str

    def _body(self) -> bytes:
        return _cstr(self.sql)

    @classmethod
    def _decode(cls, r: _Reader) -> Query:
        return cls(r.text())


@dataclass(frozen=True, slots=True)
class Parse(Message):
    """Parse (F, 'P'): prepare ``sql`` as statement ``name`` ("" = unnamed)."""

    TYPE = b"P"
    name: str
    sql: str
    param_types: list[int] = field(default_factory=list)

    def _body(self) -> bytes:
        types = b"".join(_U32.pack(t) for t in self.param_types)
        return _cstr(self.name) + _cstr(self.sql) + _U16.pack(len(self.param_types)) + types

    @classmethod
    def _decode(cls, r: _Reader) -> Parse:
        name, sql = r.text(), r.text()
        return cls(name, sql, [r.uint32() for _ in range(r.uint16())])


@dataclass(frozen=True, slots=True)
class Bind(Message):
    """Bind (F, 'B'): bind parameter values to a prepared statement, making a portal."""

    TYPE = b"B"
    portal: str
    statement: str
    param_formats: list[int] = field(default_factory=list)
    params: list[bytes | None] = field(default_factory=list)
    result_formats: list[int] = field(default_factory=list)

    def _body(self) -> bytes:
        values = b"".join(_value(p) for p in self.params)
        return (
            _cstr(self.portal)
            + _cstr(self.statement)
            + _i16s(self.param_formats)
            + _U16.pack(len(self.params))
            + values
            + _i16s(self.result_formats)
        )

    @classmethod
    def _decode(cls, r: _Reader) -> Bind:
        portal, statement = r.text(), r.text()
        param_formats = [r.int16() for _ in range(r.uint16())]
        params = [r.value() for _ in range(r.uint16())]
        result_formats = [r.int16() for _ in range(r.uint16())]
        return cls(portal, statement, param_formats, params, result_formats)


def _kind(r: _Reader) -> str:
    kind = r.byte()
    if kind not in (0x53, 0x50):  # 'S' statement, 'P' portal
        raise r.fail(f"kind must be 'S' or 'P', not {chr(kind)!r}")
    return chr(kind)


def _kind_byte(kind: str) -> bytes:
    if kind not in ("S", "P"):
        raise ValueError(f"kind must be 'S' or 'P', not {kind!r}")
    return kind.encode()


@dataclass(frozen=True, slots=True)
class Describe(Message):
    """Describe (F, 'D'): describe statement ('S') or portal ('P') ``name``."""

    TYPE = b"D"
    kind: str
    name: str

    def _body(self) -> bytes:
        return _kind_byte(self.kind) + _cstr(self.name)

    @classmethod
    def _decode(cls, r: _Reader) -> Describe:
        return cls(_kind(r), r.text())


@dataclass(frozen=True, slots=True)
class Execute(Message):
    """Execute (F, 'E'): run ``portal``, returning at most ``max_rows`` rows (0 = all)."""

    TYPE = b"E"
    portal: str
    max_rows: int = 0

    def _body(self) -> bytes:
        return _cstr(self.portal) + _I32.pack(self.max_rows)

    @classmethod
    def _decode(cls, r: _Reader) -> Execute:
        return cls(r.text(), r.int32())


@dataclass(frozen=True, slots=True)
class Sync(Message):
    """Sync (F, 'S'): ends an extended-query batch; the server answers ReadyForQuery."""

    TYPE = b"S"


@dataclass(frozen=True, slots=True)
class Flush(Message):
    """Flush (F, 'H'): asks the server to send what it has buffered."""

    TYPE = b"H"


@dataclass(frozen=True, slots=True)
class Close(Message):
    """Close (F, 'C'): close statement ('S') or portal ('P') ``name``."""

    TYPE = b"C"
    kind: str
    name: str

    def _body(self) -> bytes:
        return _kind_byte(self.kind) + _cstr(self.name)

    @classmethod
    def _decode(cls, r: _Reader) -> Close:
        return cls(_kind(r), r.text())


@dataclass(frozen=True, slots=True)
class Terminate(Message):
    """Terminate (F, 'X'): the client is closing the connection."""

    TYPE = b"X"


@dataclass(frozen=True, slots=True)
class CopyData(Message):
    """CopyData (F & B, 'd'): a chunk of a COPY data stream."""

    TYPE = b"d"
    data: bytes

    def _body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: _Reader) -> CopyData:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class CopyDone(Message):
    """CopyDone (F & B, 'c'): the end of a COPY data stream."""

    TYPE = b"c"


@dataclass(frozen=True, slots=True)
class CopyFail(Message):
    """CopyFail (F, 'f'): the client aborts COPY FROM STDIN with ``message``."""

    TYPE = b"f"
    message: str

    def _body(self) -> bytes:
        return _cstr(self.message)

    @classmethod
    def _decode(cls, r: _Reader) -> CopyFail:
        return cls(r.text())


@dataclass(frozen=True, slots=True)
class FunctionCall(Message):
    """FunctionCall (F, 'F'): the legacy fast-path call of function ``oid``."""

    TYPE = b"F"
    oid: int
    arg_formats: list[int] = field(default_factory=list)
    args: list[bytes | None] = field(default_factory=list)
    result_format: int = 0

    def _body(self) -> bytes:
        args = b"".join(_value(a) for a in self.args)
        return (
            _U32.pack(self.oid)
            + _i16s(self.arg_formats)
            + _U16.pack(len(self.args))
            + args
            + _I16.pack(self.result_format)
        )

    @classmethod
    def _decode(cls, r: _Reader) -> FunctionCall:
        oid = r.uint32()
        arg_formats = [r.int16() for _ in range(r.uint16())]
        args = [r.value() for _ in range(r.uint16())]
        return cls(oid, arg_formats, args, r.int16())


@dataclass(frozen=True, slots=True)
class SASLInitialResponse(Message):
    """SASLInitialResponse (F, 'p'): chosen SASL mechanism and its first message.

    ``data`` None encodes the length -1 ("no initial response")."""

    TYPE = b"p"
    mechanism: str
    data: bytes | None

    def _body(self) -> bytes:
        return _cstr(self.mechanism) + _value(self.data)

    @classmethod
    def _decode(cls, r: _Reader) -> SASLInitialResponse:
        return cls(r.text(), r.value())


@dataclass(frozen=True, slots=True)
class SASLResponse(Message):
    """SASLResponse (F, 'p'): a further SASL message (the whole body)."""

    TYPE = b"p"
    data: bytes

    def _body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: _Reader) -> SASLResponse:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class PasswordMessage(Message):
    """PasswordMessage (F, 'p'), as parsed: the undecoded body of any 'p' message.

    The protocol reuses 'p' for PasswordMessage, GSSResponse, SASLInitialResponse and
    SASLResponse; only the authentication request the server sent tells them apart. The
    parser therefore returns this class with the raw body in ``data``; the caller, who knows
    what it asked for, interprets it with :meth:`password`, :meth:`as_sasl_initial_response`
    or :meth:`as_sasl_response` (GSSAPI/SSPI tokens are ``data`` itself).
    """

    TYPE = b"p"
    data: bytes

    @classmethod
    def from_password(cls, password: str | bytes) -> PasswordMessage:
        """A cleartext or MD5 ("md5" + hex) password response: the password and a NUL."""
        return cls(_cstr(password))

    def _body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: _Reader) -> PasswordMessage:
        return cls(r.rest())

    def _reader(self, what: str) -> _Reader:
        return _Reader(bytes(self.data), 0, what)

    def password(self) -> str:
        """The body read as PasswordMessage: one NUL-terminated UTF-8 string."""
        r = self._reader("PasswordMessage")
        text = r.text()
        r.done()
        return text

    def as_sasl_initial_response(self) -> SASLInitialResponse:
        """The body read as SASLInitialResponse (after AuthenticationSASL)."""
        r = self._reader("SASLInitialResponse")
        msg = SASLInitialResponse._decode(r)
        r.done()
        return msg

    def as_sasl_response(self) -> SASLResponse:
        """The body read as SASLResponse (after AuthenticationSASLContinue)."""
        return SASLResponse(bytes(self.data))


# Backend messages -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authentication(Message):
    """Base of the Authentication* requests (B, 'R'), told apart by an Int32 code."""

    TYPE = b"R"
    CODE: ClassVar[int] = -1

    def _body(self) -> bytes:
        return _I32.pack(self.CODE) + self._auth_body()

    def _auth_body(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class AuthenticationOk(Authentication):
    """AuthenticationOk (B, 'R' code 0): authentication succeeded."""

    CODE = 0


@dataclass(frozen=True, slots=True)
class AuthenticationKerberosV5(Authentication):
    """AuthenticationKerberosV5 (B, 'R' code 2): obsolete; no server sends it today."""

    CODE = 2


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword(Authentication):
    """AuthenticationCleartextPassword (B, 'R' code 3): send the password in clear."""

    CODE = 3


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password(Authentication):
    """AuthenticationMD5Password (B, 'R' code 5): send md5(md5(password+user)+salt)."""

    CODE = 5
    salt: bytes

    def _auth_body(self) -> bytes:
        if len(self.salt) != 4:
            raise ValueError("the MD5 salt is exactly 4 bytes")
        return bytes(self.salt)

    @classmethod
    def _decode(cls, r: _Reader) -> AuthenticationMD5Password:
        return cls(r.take(4))


@dataclass(frozen=True, slots=True)
class AuthenticationGSS(Authentication):
    """AuthenticationGSS (B, 'R' code 7): GSSAPI authentication is required."""

    CODE = 7


@dataclass(frozen=True, slots=True)
class AuthenticationGSSContinue(Authentication):
    """AuthenticationGSSContinue (B, 'R' code 8): GSSAPI or SSPI token data."""

    CODE = 8
    data: bytes

    def _auth_body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: _Reader) -> AuthenticationGSSContinue:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class AuthenticationSSPI(Authentication):
    """AuthenticationSSPI (B, 'R' code 9): SSPI authentication is required."""

    CODE = 9


@dataclass(frozen=True, slots=True)
class AuthenticationSASL(Authentication):
    """AuthenticationSASL (B, 'R' code 10): the SASL mechanisms the server accepts."""

    CODE = 10
    mechanisms: list[str]

    def _auth_body(self) -> bytes:
        for m in self.mechanisms:
            if not m:
                raise ValueError("a SASL mechanism name cannot be empty")
        return b"".join(_cstr(m) for m in self.mechanisms) + b"\0"

    @classmethod
    def _decode(cls, r: _Reader) -> AuthenticationSASL:
        mechanisms = []
        while (name := r.text()) != "":
            mechanisms.append(name)
        return cls(mechanisms)


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue(Authentication):
    """AuthenticationSASLContinue (B, 'R' code 11): a SASL challenge (server-first)."""

    CODE = 11
    data: bytes

    def _auth_body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: _Reader) -> AuthenticationSASLContinue:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal(Authentication):
    """AuthenticationSASLFinal (B, 'R' code 12): SASL outcome data (server-final)."""

    CODE = 12
    data: bytes

    def _auth_body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: _Reader) -> AuthenticationSASLFinal:
        return cls(r.rest())


_AUTH_BY_CODE: dict[int, type[Authentication]] = {
    c.CODE: c
    for c in (
        AuthenticationOk,
        AuthenticationKerberosV5,
        AuthenticationCleartextPassword,
        AuthenticationMD5Password,
        AuthenticationGSS,
        AuthenticationGSSContinue,
        AuthenticationSSPI,
        AuthenticationSASL,
        AuthenticationSASLContinue,
        AuthenticationSASLFinal,
    )
}


def _decode_authentication(r: _Reader) -> Message:
    code = r.int32()
    cls = _AUTH_BY_CODE.get(code)
    if cls is None:
        raise r.fail(f"unsupported authentication request code {code}")
    return cls._decode(r)


@dataclass(frozen=True, slots=True)
class ParameterStatus(Message):
    """ParameterStatus (B, 'S'): the current value of a reported run-time parameter."""

    TYPE = b"S"
    name: str
    value: str

    def _body(self) -> bytes:
        return _cstr(self.name) + _cstr(self.value)

    @classmethod
    def _decode(cls, r: _Reader) -> ParameterStatus:
        return cls(r.text(), r.text())


@dataclass(frozen=True, slots=True)
class BackendKeyData(Message):
    """BackendKeyData (B, 'K'): process id and secret key a CancelRequest must quote."""

    TYPE = b"K"
    pid: int
    secret: int

    def _body(self) -> bytes:
        return _U32.pack(self.pid) + _U32.pack(self.secret)

    @classmethod
    def _decode(cls, r: _Reader) -> BackendKeyData:
        return cls(r.uint32(), r.uint32())


@dataclass(frozen=True, slots=True)
class ReadyForQuery(Message):
    """ReadyForQuery (B, 'Z'): transaction status 'I' idle, 'T' in block, 'E' failed."""

    TYPE = b"Z"
    status: str

    def _body(self) -> bytes:
        if self.status not in ("I", "T", "E"):
            raise ValueError(f"ReadyForQuery status must be I, T or E, not {self.status!r}")
        return self.status.encode()

    @classmethod
    def _decode(cls, r: _Reader) -> ReadyForQuery:
        status = chr(r.byte())
        if status not in ("I", "T", "E"):
            raise r.fail(f"transaction status must be I, T or E, not {status!r}")
        return cls(status)


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a RowDescription."""

    name: str
    table_oid: int = 0
    column: int = 0
    type_oid: int = 25  # text
    type_size: int = -1
    type_mod: int = -1
    format: int = 0

    _TAIL: ClassVar[struct.Struct] = struct.Struct("!IhIhih")

    def encode(self) -> bytes:
        return _cstr(self.name) + self._TAIL.pack(
            self.table_oid, self.column, self.type_oid, self.type_size, self.type_mod, self.format
        )


@dataclass(frozen=True, slots=True)
class RowDescription(Message):
    """RowDescription (B, 'T'): the columns of the rows that follow."""

    TYPE = b"T"
    fields: list[Field]

    def _body(self) -> bytes:
        return _U16.pack(len(self.fields)) + b"".join(f.encode() for f in self.fields)

    @classmethod
    def _decode(cls, r: _Reader) -> RowDescription:
        fields = []
        for _ in range(r.uint16()):
            name = r.text()
            tail = r.take(Field._TAIL.size)
            fields.append(Field(name, *Field._TAIL.unpack(tail)))
        return cls(fields)


@dataclass(frozen=True, slots=True)
class DataRow(Message):
    """DataRow (B, 'D'): one row; each value is bytes in its column's format, or None."""

    TYPE = b"D"
    values: list[bytes | None]

    def _body(self) -> bytes:
        return _U16.pack(len(self.values)) + b"".join(_value(v) for v in self.values)

    @classmethod
    def _decode(cls, r: _Reader) -> DataRow:
        return cls([r.value() for _ in range(r.uint16())])


@dataclass(frozen=True, slots=True)
class CommandComplete(Message):
    """CommandComplete (B, 'C'): a statement finished; ``tag`` e.g. "SELECT 1"."""

    TYPE = b"C"
    tag: str

    def _body(self) -> bytes:
        return _cstr(self.tag)

    @classmethod
    def _decode(cls, r: _Reader) -> CommandComplete:
        return cls(r.text())


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(Message):
    """EmptyQueryResponse (B, 'I'): the query string was empty."""

    TYPE = b"I"


@dataclass(frozen=True, slots=True)
class _FieldsMessage(Message):
    """Shared shape of ErrorResponse and NoticeResponse: (code byte, string)* then NUL."""

    fields: dict[str, str]

    def _body(self) -> bytes:
        out = []
        for code, text in self.fields.items():
            if len(code) != 1 or not 0 < ord(code) < 256:
                raise ValueError(f"a field code is one non-NUL byte, not {code!r}")
            out.append(code.encode("latin-1") + _cstr(text))
        return b"".join(out) + b"\0"

    @classmethod
    def _decode(cls, r: _Reader) -> _FieldsMessage:
        fields: dict[str, str] = {}
        while (code := r.byte()) != 0:
            key = chr(code)
            if key in fields:
                raise r.fail(f"field {key!r} appears twice")
            fields[key] = r.text()
        return cls(fields)

    @property
    def severity(self) -> str:
        """Non-localized severity (V) when present, else the localized one (S)."""
        return self.fields.get("V") or self.fields.get("S", "")

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")


@dataclass(frozen=True, slots=True)
class ErrorResponse(_FieldsMessage):
    """ErrorResponse (B, 'E'): fields by code letter (S, V, C, M, D, H, P, ...)."""

    TYPE = b"E"


@dataclass(frozen=True, slots=True)
class NoticeResponse(_FieldsMessage):
    """NoticeResponse (B, 'N'): a notice; same fields as ErrorResponse."""

    TYPE = b"N"


@dataclass(frozen=True, slots=True)
class ParseComplete(Message):
    """ParseComplete (B, '1')."""

    TYPE = b"1"


@dataclass(frozen=True, slots=True)
class BindComplete(Message):
    """BindComplete (B, '2')."""

    TYPE = b"2"


@dataclass(frozen=True, slots=True)
class CloseComplete(Message):
    """CloseComplete (B, '3')."""

    TYPE = b"3"


@dataclass(frozen=True, slots=True)
class NoData(Message):
    """NoData (B, 'n'): the described statement or portal returns no rows."""

    TYPE = b"n"


@dataclass(frozen=True, slots=True)
class PortalSuspended(Message):
    """PortalSuspended (B, 's'): Execute stopped at its row limit."""

    TYPE = b"s"


@dataclass(frozen=True, slots=True)
class ParameterDescription(Message):
    """ParameterDescription (B, 't'): the parameter type OIDs of a statement."""

    TYPE = b"t"
    type_oids: list[int]

    def _body(self) -> bytes:
        return _U16.pack(len(self.type_oids)) + b"".join(_U32.pack(t) for t in self.type_oids)

    @classmethod
    def _decode(cls, r: _Reader) -> ParameterDescription:
        return cls([r.uint32() for _ in range(r.uint16())])


@dataclass(frozen=True, slots=True)
class _CopyResponse(Message):
    """Shared shape of Copy{In,Out,Both}Response: Int8 format, Int16 column formats."""

    format: int
    column_formats: list[int] = field(default_factory=list)

    def _body(self) -> bytes:
        return struct.pack("!b", self.format) + _i16s(self.column_formats)

    @classmethod
    def _decode(cls, r: _Reader) -> _CopyResponse:
        fmt = struct.unpack("!b", r.take(1))[0]
        return cls(fmt, [r.int16() for _ in range(r.uint16())])


@dataclass(frozen=True, slots=True)
class CopyInResponse(_CopyResponse):
    """CopyInResponse (B, 'G'): the server is ready for COPY FROM STDIN data."""

    TYPE = b"G"


@dataclass(frozen=True, slots=True)
class CopyOutResponse(_CopyResponse):
    """CopyOutResponse (B, 'H'): COPY TO STDOUT data follows."""

    TYPE = b"H"


@dataclass(frozen=True, slots=True)
class CopyBothResponse(_CopyResponse):
    """CopyBothResponse (B, 'W'): bidirectional copy (streaming replication)."""

    TYPE = b"W"


@dataclass(frozen=True, slots=True)
class NotificationResponse(Message):
    """NotificationResponse (B, 'A'): a NOTIFY on ``channel`` from backend ``pid``."""

    TYPE = b"A"
    pid: int
    channel: str
    payload: str

    def _body(self) -> bytes:
        return _U32.pack(self.pid) + _cstr(self.channel) + _cstr(self.payload)

    @classmethod
    def _decode(cls, r: _Reader) -> NotificationResponse:
        return cls(r.uint32(), r.text(), r.text())


@dataclass(frozen=True, slots=True)
class FunctionCallResponse(Message):
    """FunctionCallResponse (B, 'V'): the result of a FunctionCall (None = NULL)."""

    TYPE = b"V"
    value: bytes | None

    def _body(self) -> bytes:
        return _value(self.value)

    @classmethod
    def _decode(cls, r: _Reader) -> FunctionCallResponse:
        return cls(r.value())


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion(Message):
    """NegotiateProtocolVersion (B, 'v'): newest minor version the server speaks, and
    the ``_pq_.`` startup options it did not recognise."""

    TYPE = b"v"
    newest_minor: int
    unrecognized: list[str] = field(default_factory=list)

    def _body(self) -> bytes:
        names = b"".join(_cstr(n) for n in self.unrecognized)
        return _I32.pack(self.newest_minor) + _I32.pack(len(self.unrecognized)) + names

    @classmethod
    def _decode(cls, r: _Reader) -> NegotiateProtocolVersion:
        minor, count = r.int32(), r.int32()
        if count < 0:
            raise r.fail(f"negative option count {count}")
        names = []
        for _ in range(count):  # each name takes >= 1 byte, so a huge count fails fast
            names.append(r.text())
        return cls(minor, names)


# --------------------------------------------------------------------------- helpers


def _clean(text: str) -> str:
    # Policy reasons end up here; a NUL would end the string early on the client side.
    return text.replace("\0", "\ufffd")


def _fields(
    message: str, sqlstate: str, severity: str, detail: str | None, hint: str | None
) -> dict[str, str]:
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if detail is not None:
        fields["D"] = detail
    if hint is not None:
        fields["H"] = hint
    return {k: _clean(v) for k, v in fields.items()}


def error_response(
    message: str,
    sqlstate: str = "42501",
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
) -> ErrorResponse:
    """An ErrorResponse as the server would build it (default: 42501 insufficient_privilege)."""
    return ErrorResponse(_fields(message, sqlstate, severity, detail, hint))


def notice_response(
    message: str,
    sqlstate: str = "00000",
    severity: str = "NOTICE",
    detail: str | None = None,
    hint: str | None = None,
) -> NoticeResponse:
    """A NoticeResponse (default SQLSTATE 00000 successful_completion, severity NOTICE)."""
    return NoticeResponse(_fields(message, sqlstate, severity, detail, hint))


def ready_for_query(status: str = "I") -> ReadyForQuery:
    """ReadyForQuery with transaction status 'I', 'T' or 'E' (checked)."""
    if status not in ("I", "T", "E"):
        raise ValueError(f"ReadyForQuery status must be I, T or E, not {status!r}")
    return ReadyForQuery(status)


# --------------------------------------------------------------------------- parsers

_Decoder = Callable[[_Reader], Message]


def _table(*classes: type[Message]) -> dict[int, _Decoder]:
    return {c.TYPE[0]: c._decode for c in classes}


_FRONTEND: dict[int, _Decoder] = _table(
    Query, Parse, Bind, Describe, Execute, Sync, Flush, Close, Terminate,
    CopyData, CopyDone, CopyFail, FunctionCall, PasswordMessage,
)  # fmt: skip

_BACKEND: dict[int, _Decoder] = _table(
    ParameterStatus, BackendKeyData, ReadyForQuery, RowDescription, DataRow,
    CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse, ParseComplete,
    BindComplete, CloseComplete, NoData, PortalSuspended, ParameterDescription,
    CopyInResponse, CopyOutResponse, CopyBothResponse, CopyData, CopyDone,
    NotificationResponse, FunctionCallResponse, NegotiateProtocolVersion,
)  # fmt: skip
_BACKEND[ord("R")] = _decode_authentication


# Fast decoders for the messages that dominate a busy session (every row, every statement
# end). Each returns None at the first irregularity, and the general decoder then parses
# the frame again and raises its precise error, so the fast path never decides what is
# valid on its own.


def _fast_data_row(raw: bytes) -> Message | None:
    values: list[bytes | None] = []
    return DataRow(values) if _data_row_fits(raw, 5, len(raw), values) else None


def _fast_text(raw: bytes) -> str | None:
    """The body of a frame that is exactly one UTF-8 C string, else None."""
    if raw.find(b"\0", 5) != len(raw) - 1:
        return None
    try:
        return raw[5:-1].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _fast_command_complete(raw: bytes) -> Message | None:
    tag = _fast_text(raw)
    return None if tag is None else CommandComplete(tag)


_STATUSES = {ord("I"): "I", ord("T"): "T", ord("E"): "E"}


def _fast_ready_for_query(raw: bytes) -> Message | None:
    status = _STATUSES.get(raw[5]) if len(raw) == 6 else None
    return None if status is None else ReadyForQuery(status)


def _fast_query(raw: bytes) -> Message | None:
    sql = _fast_text(raw)
    return None if sql is None else Query(sql)


def _fast_bind(raw: bytes) -> Message | None:
    """Bind, read the way Bind._decode reads it (a new one arrives for every execution
    of a prepared statement: its parameter values differ)."""
    end = len(raw)
    first = raw.find(b"\0", 5)
    names_end = raw.find(b"\0", first + 1) if first >= 0 else -1
    if names_end < 0:
        return None
    try:
        portal = raw[5:first].decode("utf-8")
        statement = raw[first + 1 : names_end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    pos = names_end + 1
    if pos + 2 > end:
        return None
    (n,) = _U16.unpack_from(raw, pos)
    pos += 2
    if pos + 2 * n > end:
        return None
    param_formats = list(struct.unpack_from(f">{n}h", raw, pos))
    pos += 2 * n
    if pos + 2 > end:
        return None
    (n,) = _U16.unpack_from(raw, pos)
    pos += 2
    params: list[bytes | None] = []
    for _ in range(n):
        if pos + 4 > end:
            return None
        (size,) = _I32.unpack_from(raw, pos)
        pos += 4
        if size == -1:
            params.append(None)
        elif size < 0 or pos + size > end:
            return None
        else:
            params.append(raw[pos : pos + size])
            pos += size
    if pos + 2 > end:
        return None
    (n,) = _U16.unpack_from(raw, pos)
    pos += 2
    if pos + 2 * n != end:
        return None
    result_formats = list(struct.unpack_from(f">{n}h", raw, pos))
    return Bind(portal, statement, param_formats, params, result_formats)


def _data_row_fits(
    raw: bytes, pos: int, end: int, values: list[bytes | None] | None = None
) -> bool:
    """Whether raw[pos:end] is a well-formed DataRow body; its values go to `values` if
    given (a plain result is only checked: nothing reads its values)."""
    if pos + 2 > end:
        return False
    (count,) = _U16.unpack_from(raw, pos)
    pos += 2
    unpack = _I32.unpack_from
    for _ in range(count):
        if pos + 4 > end:
            return False
        (n,) = unpack(raw, pos)
        pos += 4
        if n == -1:
            if values is not None:
                values.append(None)
        elif n < 0 or pos + n > end:
            return False
        else:
            if values is not None:
                values.append(raw[pos : pos + n])
            pos += n
    return pos == end


# what a result streams when nothing in it went wrong: the answers plain_answers() reads
_PLAIN_ANSWERS = frozenset(b"123tTnDCIZ")
_DATA_ROW = ord("D")
PlainAnswer = tuple[int, str, "RowDescription | None"]
_ROW: PlainAnswer = (_DATA_ROW, "", None)

_FastDecoder = Callable[[bytes], "Message | None"]
_BACKEND_FAST: dict[int, _FastDecoder] = {
    ord("D"): _fast_data_row,
    ord("C"): _fast_command_complete,
    ord("Z"): _fast_ready_for_query,
}
_FRONTEND_FAST: dict[int, _FastDecoder] = {ord("Q"): _fast_query, ord("B"): _fast_bind}

# Backend messages a session receives again and again byte for byte (the same result
# columns, the same command tag, the same status): a parser remembers the few it saw
# last and answers a repeat with the message already decoded. Messages are immutable.
_BACKEND_REPEATS = frozenset(b"TCZ123ns")
# ... and a client sends the same Parse, Describe, Execute, Sync, Flush and Close again and
# again when it runs one statement many times.
_FRONTEND_REPEATS = frozenset(b"PDESHC")
_REPEATS_KEPT = 64
_REPEAT_MAX_BYTES = 4096  # larger frames are decoded each time, never kept


class _StreamParser:
    """Frames a byte stream into typed messages (Byte1 type, Int32 length, body)."""

    _SIDE = ""
    _TABLE: ClassVar[dict[int, _Decoder]] = {}
    _FAST: ClassVar[dict[int, _FastDecoder]] = {}
    _REPEATS: ClassVar[frozenset[int]] = frozenset()

    def __init__(self, max_frame: int) -> None:
        if max_frame < 4:
            raise ValueError("max_frame must be at least 4")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need = 1  # bytes the buffer must hold before parsing can progress
        self._error: ProtocolViolation | None = None
        self._seen: dict[bytes, Message] = {}

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        """Add ``data``; return every message completed by it, in order.

        Raises ProtocolViolation on malformed input; the messages that preceded the bad one
        in the same chunk are not returned (fail closed), and the parser stays failed."""
        if self._error is not None:
            raise self._error
        if not self._buf and len(data) >= self._need:
            view = bytes(data)  # nothing held back: parse the chunk itself
        else:
            self._buf += data
            if len(self._buf) < self._need:
                return []  # a large frame still arriving: don't copy the buffer again
            view = bytes(self._buf)
            self._buf.clear()
        out: list[Message] = []
        pos = 0
        try:
            while not self._typed():  # start-up packets: one at a time, by their own rules
                msg, pos = self._next(view, pos)
                if msg is None:
                    break
                out.append(msg)
            else:
                pos = self._typed_frames(view, pos, out)
        except ProtocolViolation as exc:
            self._fail(exc)
            raise
        if pos < len(view):
            self._buf += view[pos:]  # the start of a frame still arriving
        return out

    def _fail(self, exc: ProtocolViolation) -> None:
        self._error = exc
        self._buf.clear()

    def _typed(self) -> bool:
        """True once the stream carries typed frames (always, on this side)."""
        return True

    def _next(self, view: bytes, pos: int) -> tuple[Message | None, int]:
        raise NotImplementedError  # only sides with untyped start-up packets have one

    def _typed_frames(self, view: bytes, pos: int, out: list[Message]) -> int:
        """Append every complete typed frame from pos on; return where parsing stopped.

        One loop for the whole chunk (this runs for every message a session carries)."""
        table, repeats, seen = self._TABLE, self._REPEATS, self._seen
        size, max_frame, side = len(view), self.max_frame, self._SIDE
        while True:
            avail = size - pos
            if avail < 1:
                self._need = 1  # counted from the start of the next frame, as is every _need
                return pos
            kind = view[pos]
            if kind not in table:
                raise ProtocolViolation(
                    f"unknown {side} message type {bytes([kind])!r} at stream offset {pos}"
                )
            if avail < 5:
                self._need = 5
                return pos
            (length,) = _I32.unpack_from(view, pos + 1)
            if length < 4 or length > max_frame:
                name = bytes([kind])
                if length < 4:
                    raise ProtocolViolation(f"{side} message {name!r}: length {length} is below 4")
                raise ProtocolViolation(
                    f"{side} message {name!r}: length {length} exceeds the limit of "
                    f"{max_frame} bytes"
                )
            end = pos + 1 + length
            if end > size:
                self._need = 1 + length
                return pos
            raw = view[pos:end]
            pos = end
            repeat = kind in repeats and length < _REPEAT_MAX_BYTES
            if repeat:
                known = seen.get(raw)
                if known is not None:
                    out.append(known)
                    continue
            out.append(self._decode(kind, raw, repeat))

    def _decode(self, kind: int, raw: bytes, remember: bool) -> Message:
        """One whole frame not met before: its type's fast decoder, else the general one
        (ProtocolViolation if malformed); remembered as a repeat if asked."""
        fast = self._FAST.get(kind)
        msg = fast(raw) if fast is not None else None
        if msg is None:
            r = _Reader(raw, 5, f"{self._SIDE} message {bytes([kind])!r}")
            msg = self._TABLE[kind](r)
            r.done()
        object.__setattr__(msg, "raw", raw)
        if remember:
            seen = self._seen
            if len(seen) >= _REPEATS_KEPT:
                seen.clear()
            seen[raw] = msg
        return msg


class FrontendParser(_StreamParser):
    """Parses what a client sends to a server.

    With ``startup=True`` (a fresh connection) the first packets are untyped: SSLRequest,
    GSSENCRequest, CancelRequest or StartupMessage (Int32 length <= 10 000, Int32 code). A
    StartupMessage switches to typed messages by itself; :meth:`startup_done` does it by
    hand. Typed frames longer than ``max_frame`` (counting the length field) are rejected.
    """

    _SIDE = "frontend"
    _TABLE = _FRONTEND
    _FAST = _FRONTEND_FAST
    _REPEATS = _FRONTEND_REPEATS

    def __init__(self, startup: bool = True, max_frame: int = DEFAULT_MAX_FRONTEND_FRAME):
        super().__init__(max_frame)
        self._startup = startup
        self._cancelled = False

    @property
    def in_startup(self) -> bool:
        """True while the next packet is expected to be an untyped startup packet."""
        return self._startup

    def startup_done(self) -> None:
        """From now on, expect typed messages."""
        self._startup = False

    def _typed(self) -> bool:
        return not self._startup and not self._cancelled

    def _next(self, view: bytes, pos: int) -> tuple[Message | None, int]:
        """One start-up packet (typed frames are not read one at a time)."""
        if self._cancelled:
            if pos < len(view):
                raise ProtocolViolation("data after CancelRequest")
            self._need = 1
            return None, pos
        return self._next_startup(view, pos)

    def _next_startup(self, view: bytes, pos: int) -> tuple[Message | None, int]:
        avail = len(view) - pos
        if avail < 4:
            self._need = 1 if self._cancelled else 4
            return None, pos
        (length,) = _I32.unpack_from(view, pos)
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise ProtocolViolation(
                f"startup packet length {length} is outside 8..{MAX_STARTUP_PACKET}"
            )
        if avail < length:
            self._need = length
            return None, pos
        raw = view[pos : pos + length]
        end = pos + length
        r = _Reader(raw, 4, "startup packet")
        code = r.uint32()
        msg: Message
        if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
            msg = SSLRequest() if code == SSL_REQUEST_CODE else GSSENCRequest()
            r.done()
            if end != len(view):
                # Bytes sent before the TLS/GSS handshake must never be read as if they had
                # come through it (CVE-2021-23214 / CVE-2021-23222).
                raise ProtocolViolation(f"unencrypted data after {type(msg).__name__}")
        elif code == CANCEL_REQUEST_CODE:
            msg = CancelRequest(r.uint32(), r.uint32())
            r.done()
            self._cancelled = True
            if end != len(view):
                raise ProtocolViolation("data after CancelRequest")
        elif code >> 16 == 3:
            msg = StartupMessage(code, _startup_params(r))
            self._startup = False
        else:
            raise ProtocolViolation(
                f"unsupported protocol version {code >> 16}.{code & 0xFFFF} in startup packet"
            )
        object.__setattr__(msg, "raw", raw)
        return msg, end


def _startup_params(r: _Reader) -> dict[str, str]:
    params: dict[str, str] = {}
    while (name := r.text()) != "":
        if name in params:
            # Two values for one name could be read differently by us and by the server.
            raise r.fail(f"parameter {name!r} appears twice")
        params[name] = r.text()
    r.done()
    return params


class BackendParser(_StreamParser):
    """Parses what a server sends to a client. Frames longer than ``max_frame`` are
    rejected. (The one-byte answer to SSLRequest is not a frame: read it before feeding.)"""

    _SIDE = "backend"
    _TABLE = _BACKEND
    _FAST = _BACKEND_FAST
    _REPEATS = _BACKEND_REPEATS

    def __init__(self, max_frame: int = DEFAULT_MAX_BACKEND_FRAME):
        super().__init__(max_frame)

    def plain_answers(self, chunk: bytes) -> list[PlainAnswer] | None:
        """The answers in chunk, read without building a message for each row, when chunk
        holds only whole, well-formed frames of the answers a result streams when nothing
        in it went wrong: ParseComplete, BindComplete, CloseComplete, ParameterDescription,
        RowDescription, NoData, DataRow, CommandComplete, EmptyQueryResponse,
        ReadyForQuery. Each as (type, text, description): the text is a CommandComplete's
        tag or a ReadyForQuery's status, the description a RowDescription's message.

        None, with nothing consumed, for any other chunk, and while part of a frame is
        held from an earlier one: feed() then reads it (and says what is wrong with it)."""
        if self._buf or self._error is not None:
            return None
        repeats, seen, max_frame = self._REPEATS, self._seen, self.max_frame
        size = len(chunk)
        pos = 0
        answers: list[PlainAnswer] = []
        append = answers.append
        while pos < size:
            kind = chunk[pos]
            if kind not in _PLAIN_ANSWERS or size - pos < 5:
                return None
            (length,) = _I32.unpack_from(chunk, pos + 1)
            end = pos + 1 + length
            if length < 4 or length > max_frame or end > size:
                return None
            if kind == _DATA_ROW:
                if not _data_row_fits(chunk, pos + 5, end):
                    return None
                append(_ROW)
                pos = end
                continue
            raw = chunk[pos:end]
            pos = end
            msg = seen.get(raw)
            if msg is None:
                try:
                    msg = self._decode(kind, raw, kind in repeats and len(raw) < _REPEAT_MAX_BYTES)
                except ProtocolViolation:
                    return None
            if type(msg) is CommandComplete:
                append((kind, msg.tag, None))
            elif type(msg) is ReadyForQuery:
                append((kind, msg.status, None))
            elif type(msg) is RowDescription:
                append((kind, "", msg))
            else:
                append((kind, "", None))
        return answers
