"""The frame layer under every PostgreSQL protocol 3.0 message.

Owns the protocol's constants and size limits, ProtocolViolation, the bounds-checked
reader of one frame, the encoders of its field types (String, Int16 arrays, values with
an Int32 length) and the Message base class every message derives from.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
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

INT16 = struct.Struct("!h")
UINT16 = struct.Struct("!H")
INT32 = struct.Struct("!i")
UINT32 = struct.Struct("!I")


class ProtocolViolation(ValueError):
    """Bytes that are not a valid PostgreSQL protocol 3.0 message stream."""


# --------------------------------------------------------------------------- reading


class FrameReader:
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
        return self._unpack(INT16)

    def uint16(self) -> int:
        return self._unpack(UINT16)

    def int32(self) -> int:
        return self._unpack(INT32)

    def uint32(self) -> int:
        return self._unpack(UINT32)

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


def string_field(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if b"\0" in data:
        raise ValueError(f"a protocol string cannot contain NUL: {text!r}")
    return data + b"\0"


def value_field(data: bytes | None) -> bytes:
    return INT32.pack(-1) if data is None else INT32.pack(len(data)) + bytes(data)


def int16_array(values: Sequence[int]) -> bytes:
    return UINT16.pack(len(values)) + b"".join(INT16.pack(v) for v in values)


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
        return self.TYPE + INT32.pack(len(body) + 4) + body

    @classmethod
    def _decode(cls, r: FrameReader) -> Message:
        return cls()
