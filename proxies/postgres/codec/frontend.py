"""What a client sends: the startup-phase packets (StartupMessage, SSLRequest,
GSSENCRequest, CancelRequest) and every typed frontend message of protocol 3.0, each a
frozen dataclass that encodes itself and decodes from one frame (proxies.postgres.codec.wire).
CopyData and CopyDone travel both ways and live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxies.postgres.codec.wire import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    INT16,
    INT32,
    SSL_REQUEST_CODE,
    UINT16,
    UINT32,
    FrameReader,
    Message,
    int16_array,
    string_field,
    value_field,
)

# Startup-phase packets (no type byte: Int32 length, Int32 code, body) ----------------


@dataclass(frozen=True, slots=True)
class StartupMessage(Message):
    """StartupMessage (F): protocol version, then name/value pairs ending in a NUL."""

    protocol: int
    params: dict[str, str]

    def _body(self) -> bytes:
        pairs = b"".join(string_field(k) + string_field(v) for k, v in self.params.items())
        return UINT32.pack(self.protocol) + pairs + b"\0"


@dataclass(frozen=True, slots=True)
class SSLRequest(Message):
    """SSLRequest (F): asks the server to switch to TLS; answered by one byte S/N."""

    def _body(self) -> bytes:
        return UINT32.pack(SSL_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class GSSENCRequest(Message):
    """GSSENCRequest (F): asks for GSSAPI encryption; answered by one byte G/N."""

    def _body(self) -> bytes:
        return UINT32.pack(GSSENC_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class CancelRequest(Message):
    """CancelRequest (F): on a fresh connection, cancels the query of backend ``pid``."""

    pid: int
    secret: int

    def _body(self) -> bytes:
        return UINT32.pack(CANCEL_REQUEST_CODE) + UINT32.pack(self.pid) + UINT32.pack(self.secret)


# Frontend messages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query(Message):
    """Query (F, 'Q'): a simple-protocol query string, possibly several statements."""

    TYPE = b"Q"
    sql: str

    def _body(self) -> bytes:
        return string_field(self.sql)

    @staticmethod
    def frame(sql: str) -> bytes:
        """Query(sql).encode() without the message (a row filter's text, per statement)."""
        body = string_field(sql)
        return b"Q" + INT32.pack(len(body) + 4) + body

    @classmethod
    def _decode(cls, r: FrameReader) -> Query:
        return cls(r.text())


@dataclass(frozen=True, slots=True)
class Parse(Message):
    """Parse (F, 'P'): prepare ``sql`` as statement ``name`` ("" = unnamed)."""

    TYPE = b"P"
    name: str
    sql: str
    param_types: list[int] = field(default_factory=list)

    def _body(self) -> bytes:
        types = b"".join(UINT32.pack(t) for t in self.param_types)
        return (
            string_field(self.name)
            + string_field(self.sql)
            + UINT16.pack(len(self.param_types))
            + types
        )

    @classmethod
    def _decode(cls, r: FrameReader) -> Parse:
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
        values = b"".join(value_field(p) for p in self.params)
        return (
            string_field(self.portal)
            + string_field(self.statement)
            + int16_array(self.param_formats)
            + UINT16.pack(len(self.params))
            + values
            + int16_array(self.result_formats)
        )

    @classmethod
    def _decode(cls, r: FrameReader) -> Bind:
        portal, statement = r.text(), r.text()
        param_formats = [r.int16() for _ in range(r.uint16())]
        params = [r.value() for _ in range(r.uint16())]
        result_formats = [r.int16() for _ in range(r.uint16())]
        return cls(portal, statement, param_formats, params, result_formats)


def _kind(r: FrameReader) -> str:
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
        return _kind_byte(self.kind) + string_field(self.name)

    @classmethod
    def _decode(cls, r: FrameReader) -> Describe:
        return cls(_kind(r), r.text())


@dataclass(frozen=True, slots=True)
class Execute(Message):
    """Execute (F, 'E'): run ``portal``, returning at most ``max_rows`` rows (0 = all)."""

    TYPE = b"E"
    portal: str
    max_rows: int = 0

    def _body(self) -> bytes:
        return string_field(self.portal) + INT32.pack(self.max_rows)

    @classmethod
    def _decode(cls, r: FrameReader) -> Execute:
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
        return _kind_byte(self.kind) + string_field(self.name)

    @classmethod
    def _decode(cls, r: FrameReader) -> Close:
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
    def _decode(cls, r: FrameReader) -> CopyData:
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
        return string_field(self.message)

    @classmethod
    def _decode(cls, r: FrameReader) -> CopyFail:
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
        args = b"".join(value_field(a) for a in self.args)
        return (
            UINT32.pack(self.oid)
            + int16_array(self.arg_formats)
            + UINT16.pack(len(self.args))
            + args
            + INT16.pack(self.result_format)
        )

    @classmethod
    def _decode(cls, r: FrameReader) -> FunctionCall:
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
        return string_field(self.mechanism) + value_field(self.data)

    @classmethod
    def _decode(cls, r: FrameReader) -> SASLInitialResponse:
        return cls(r.text(), r.value())


@dataclass(frozen=True, slots=True)
class SASLResponse(Message):
    """SASLResponse (F, 'p'): a further SASL message (the whole body)."""

    TYPE = b"p"
    data: bytes

    def _body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: FrameReader) -> SASLResponse:
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
        return cls(string_field(password))

    def _body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: FrameReader) -> PasswordMessage:
        return cls(r.rest())

    def _reader(self, what: str) -> FrameReader:
        return FrameReader(bytes(self.data), 0, what)

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
