"""What a server sends: every backend message of protocol 3.0 (the Authentication
requests, results, errors and notices, COPY responses, notifications), and the builders
of the ErrorResponse, NoticeResponse and ReadyForQuery a proxy answers with itself.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from proxies.postgres.codec.wire import (
    INT32,
    UINT16,
    UINT32,
    FrameReader,
    Message,
    int16_array,
    string_field,
    value_field,
)


@dataclass(frozen=True, slots=True)
class Authentication(Message):
    """Base of the Authentication* requests (B, 'R'), told apart by an Int32 code."""

    TYPE = b"R"
    CODE: ClassVar[int] = -1

    def _body(self) -> bytes:
        return INT32.pack(self.CODE) + self._auth_body()

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
    def _decode(cls, r: FrameReader) -> AuthenticationMD5Password:
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
    def _decode(cls, r: FrameReader) -> AuthenticationGSSContinue:
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
        return b"".join(string_field(m) for m in self.mechanisms) + b"\0"

    @classmethod
    def _decode(cls, r: FrameReader) -> AuthenticationSASL:
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
    def _decode(cls, r: FrameReader) -> AuthenticationSASLContinue:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal(Authentication):
    """AuthenticationSASLFinal (B, 'R' code 12): SASL outcome data (server-final)."""

    CODE = 12
    data: bytes

    def _auth_body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def _decode(cls, r: FrameReader) -> AuthenticationSASLFinal:
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


def decode_authentication(r: FrameReader) -> Message:
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
        return string_field(self.name) + string_field(self.value)

    @classmethod
    def _decode(cls, r: FrameReader) -> ParameterStatus:
        return cls(r.text(), r.text())


@dataclass(frozen=True, slots=True)
class BackendKeyData(Message):
    """BackendKeyData (B, 'K'): process id and secret key a CancelRequest must quote."""

    TYPE = b"K"
    pid: int
    secret: int

    def _body(self) -> bytes:
        return UINT32.pack(self.pid) + UINT32.pack(self.secret)

    @classmethod
    def _decode(cls, r: FrameReader) -> BackendKeyData:
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
    def _decode(cls, r: FrameReader) -> ReadyForQuery:
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
        return string_field(self.name) + self._TAIL.pack(
            self.table_oid, self.column, self.type_oid, self.type_size, self.type_mod, self.format
        )


@dataclass(frozen=True, slots=True)
class RowDescription(Message):
    """RowDescription (B, 'T'): the columns of the rows that follow."""

    TYPE = b"T"
    fields: list[Field]

    def _body(self) -> bytes:
        return UINT16.pack(len(self.fields)) + b"".join(f.encode() for f in self.fields)

    @classmethod
    def _decode(cls, r: FrameReader) -> RowDescription:
        fields = []
        for _ in range(r.uint16()):
            name = r.text()
            tail = r.take(Field._TAIL.size)
            fields.append(Field(name, *Field._TAIL.unpack(tail)))
        return cls(fields)


_NULL_VALUE = INT32.pack(-1)


@dataclass(frozen=True, slots=True)
class DataRow(Message):
    """DataRow (B, 'D'): one row; each value is bytes in its column's format, or None."""

    TYPE = b"D"
    values: list[bytes | None]

    def encode(self) -> bytes:
        return data_row(self.values)

    @classmethod
    def _decode(cls, r: FrameReader) -> DataRow:
        return cls([r.value() for _ in range(r.uint16())])


def data_row(values: Sequence[bytes | None]) -> bytes:
    """DataRow (B, 'D') on the wire for values, with no message object made: masked rows
    are encoded one by one, so this is a loop, not value_field() per value."""
    if len(values) > 0xFFFF:
        raise ValueError("DataRow: value out of range: more than 65535 columns")
    pack = INT32.pack
    parts = [b"", UINT16.pack(len(values))]
    append = parts.append
    size = 6  # the length word and the column count
    for value in values:
        if value is None:
            append(_NULL_VALUE)
            size += 4
        else:
            append(pack(len(value)))
            append(value)
            size += 4 + len(value)
    if size > 0x7FFFFFFF:
        raise ValueError("DataRow: value out of range: the row is too large")
    parts[0] = b"D" + pack(size)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class CommandComplete(Message):
    """CommandComplete (B, 'C'): a statement finished; ``tag`` e.g. "SELECT 1"."""

    TYPE = b"C"
    tag: str

    def _body(self) -> bytes:
        return string_field(self.tag)

    @classmethod
    def _decode(cls, r: FrameReader) -> CommandComplete:
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
            out.append(code.encode("latin-1") + string_field(text))
        return b"".join(out) + b"\0"

    @classmethod
    def _decode(cls, r: FrameReader) -> _FieldsMessage:
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
        return UINT16.pack(len(self.type_oids)) + b"".join(UINT32.pack(t) for t in self.type_oids)

    @classmethod
    def _decode(cls, r: FrameReader) -> ParameterDescription:
        return cls([r.uint32() for _ in range(r.uint16())])


@dataclass(frozen=True, slots=True)
class _CopyResponse(Message):
    """Shared shape of Copy{In,Out,Both}Response: Int8 format, Int16 column formats."""

    format: int
    column_formats: list[int] = field(default_factory=list)

    def _body(self) -> bytes:
        return struct.pack("!b", self.format) + int16_array(self.column_formats)

    @classmethod
    def _decode(cls, r: FrameReader) -> _CopyResponse:
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
        return UINT32.pack(self.pid) + string_field(self.channel) + string_field(self.payload)

    @classmethod
    def _decode(cls, r: FrameReader) -> NotificationResponse:
        return cls(r.uint32(), r.text(), r.text())


@dataclass(frozen=True, slots=True)
class FunctionCallResponse(Message):
    """FunctionCallResponse (B, 'V'): the result of a FunctionCall (None = NULL)."""

    TYPE = b"V"
    value: bytes | None

    def _body(self) -> bytes:
        return value_field(self.value)

    @classmethod
    def _decode(cls, r: FrameReader) -> FunctionCallResponse:
        return cls(r.value())


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion(Message):
    """NegotiateProtocolVersion (B, 'v'): newest minor version the server speaks, and
    the ``_pq_.`` startup options it did not recognise."""

    TYPE = b"v"
    newest_minor: int
    unrecognized: list[str] = field(default_factory=list)

    def _body(self) -> bytes:
        names = b"".join(string_field(n) for n in self.unrecognized)
        return INT32.pack(self.newest_minor) + INT32.pack(len(self.unrecognized)) + names

    @classmethod
    def _decode(cls, r: FrameReader) -> NegotiateProtocolVersion:
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
