"""The two incremental parsers: FrontendParser (what a client sends) and BackendParser
(what a server sends). Each frames a byte stream, enforces its length limits, decodes
each frame with the message's own decoder (or a fast one for the messages that dominate
a busy session, or a repeat remembered byte for byte), and stays failed once it raised.
BackendParser also reads a plain result chunk without a message per row (plain_answers).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import ClassVar

from proxies.postgres.codec.backend import (
    BackendKeyData,
    BindComplete,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    FunctionCallResponse,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    ParseComplete,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
    decode_authentication,
)
from proxies.postgres.codec.frontend import (
    Bind,
    CancelRequest,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    FunctionCall,
    GSSENCRequest,
    Parse,
    PasswordMessage,
    Query,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
)
from proxies.postgres.codec.wire import (
    CANCEL_REQUEST_CODE,
    DEFAULT_MAX_BACKEND_FRAME,
    DEFAULT_MAX_FRONTEND_FRAME,
    GSSENC_REQUEST_CODE,
    INT32,
    MAX_STARTUP_PACKET,
    SSL_REQUEST_CODE,
    UINT16,
    FrameReader,
    Message,
    ProtocolViolation,
)

_Decoder = Callable[[FrameReader], Message]


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
_BACKEND[ord("R")] = decode_authentication


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


# A frozen dataclass's __init__ sets each field through object.__setattr__: for the two
# messages a client sends per statement, the decoders fill the slots directly instead (the
# same fields, the same values; `raw` is set by _decode as for every message).
_new = object.__new__


def _slot(cls: type, name: str) -> Callable[[object, object], None]:
    """The setter of one slot of a message class (its frozen __setattr__ bypassed)."""
    setter: Callable[[object, object], None] = getattr(cls, name).__set__
    return setter


_QUERY_SQL = _slot(Query, "sql")
_MESSAGE_RAW = _slot(Query, "raw")
_QUERY = ord("Q")
_BIND = ord("B")
_BIND_PORTAL = _slot(Bind, "portal")
_BIND_STATEMENT = _slot(Bind, "statement")
_BIND_PARAM_FORMATS = _slot(Bind, "param_formats")
_BIND_PARAMS = _slot(Bind, "params")
_BIND_RESULT_FORMATS = _slot(Bind, "result_formats")


def _fast_query(raw: bytes) -> Message | None:
    sql = _fast_text(raw)
    if sql is None:
        return None
    message = _new(Query)
    _QUERY_SQL(message, sql)
    return message


def _int16s(raw: bytes, pos: int, n: int) -> list[int]:
    """n Int16 at pos (the caller has checked they are there)."""
    if n == 1:
        value = raw[pos] << 8 | raw[pos + 1]
        return [value - 0x10000 if value > 0x7FFF else value]
    return list(struct.unpack_from(f">{n}h", raw, pos)) if n else []


def _fast_bind(raw: bytes) -> Message | None:
    """Bind, read the way Bind._decode reads it (a new one arrives for every execution
    of a prepared statement: its parameter values differ)."""
    end = len(raw)
    first = raw.find(b"\0", 5)
    names_end = raw.find(b"\0", first + 1) if first >= 0 else -1
    if names_end < 0 or names_end + 3 > end:
        return None
    try:
        portal = raw[5:first].decode("utf-8") if first > 5 else ""
        statement = raw[first + 1 : names_end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    pos = names_end + 1
    n = raw[pos] << 8 | raw[pos + 1]
    pos += 2
    if pos + 2 * n + 2 > end:
        return None
    param_formats = _int16s(raw, pos, n)
    read = _bind_values(raw, pos + 2 * n, end)
    if read is None:
        return None
    params, pos = read
    n = raw[pos] << 8 | raw[pos + 1]
    pos += 2
    if pos + 2 * n != end:
        return None
    message = _new(Bind)
    _BIND_PORTAL(message, portal)
    _BIND_STATEMENT(message, statement)
    _BIND_PARAM_FORMATS(message, param_formats)
    _BIND_PARAMS(message, params)
    _BIND_RESULT_FORMATS(message, _int16s(raw, pos, n))
    return message


def _bind_values(raw: bytes, pos: int, end: int) -> tuple[list[bytes | None], int] | None:
    """A Bind's parameter values from their count at pos, and where its result formats'
    count starts (None: malformed, or no room left for that count)."""
    if pos + 2 > end:
        return None
    n = raw[pos] << 8 | raw[pos + 1]
    pos += 2
    params: list[bytes | None] = []
    unpack = INT32.unpack_from
    for _ in range(n):
        if pos + 4 > end:
            return None
        (size,) = unpack(raw, pos)
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
    return params, pos


class _BindFrame:
    """The parts of the last Bind frame FrontendParser.bound_run read that stay alike from
    one execution of a prepared statement to the next: the bytes from the portal's name
    through the parameter formats (`head`) and the result formats (`foot`), with what they
    read as. A Bind opening with the same head bytes names the same portal and statement
    with the same formats (the decoding is the same): only its values are read afresh. The
    lists are shared by those Binds' messages, which nothing changes in place."""

    __slots__ = ("foot", "head", "param_formats", "portal", "result_formats", "statement")

    def __init__(self, raw: bytes, message: Bind) -> None:
        names_end = raw.find(b"\0", raw.find(b"\0", 5) + 1)
        self.head = raw[5 : names_end + 3 + 2 * len(message.param_formats)]
        self.foot = raw[len(raw) - 2 - 2 * len(message.result_formats) :]
        self.portal, self.statement = message.portal, message.statement
        self.param_formats, self.result_formats = message.param_formats, message.result_formats

    def read(self, raw: bytes) -> Message | None:
        """_fast_bind(raw) for a frame that opens with this head (the caller has checked)."""
        end = len(raw)
        read = _bind_values(raw, 5 + len(self.head), end)
        if read is None:
            return None
        params, pos = read
        foot = self.foot
        if end - pos == len(foot) and raw.endswith(foot):
            result_formats = self.result_formats
        else:
            n = raw[pos] << 8 | raw[pos + 1]
            if pos + 2 + 2 * n != end:
                return None
            result_formats = _int16s(raw, pos + 2, n)
        message = _new(Bind)
        _BIND_PORTAL(message, self.portal)
        _BIND_STATEMENT(message, self.statement)
        _BIND_PARAM_FORMATS(message, self.param_formats)
        _BIND_PARAMS(message, params)
        _BIND_RESULT_FORMATS(message, result_formats)
        return message


def _data_row_fits(
    raw: bytes, pos: int, end: int, values: list[bytes | None] | None = None
) -> bool:
    """Whether raw[pos:end] is a well-formed DataRow body; its values go to `values` if
    given (a plain result is only checked: nothing reads its values)."""
    if pos + 2 > end:
        return False
    (count,) = UINT16.unpack_from(raw, pos)
    pos += 2
    unpack = INT32.unpack_from
    if values is None:  # only checked (every plain row): each value's size, none copied
        for _ in range(count):
            if pos + 4 > end:
                return False
            (n,) = unpack(raw, pos)
            if n >= 0:
                pos += 4 + n  # past the end: the next size, or the last check, says so
            elif n == -1:
                pos += 4
            else:
                return False
        return pos == end
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
# a DataRow plain_answers read: its frame's start and end in the chunk (a well-formed frame)
RowSpan = tuple[int, int]

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
# A server's repeats are the same for every session of the process (the catalog reads at
# start-up, `SELECT 1`, each status and tag): one table for all backend parsers, not one
# each (thousands of idle sessions held their start-up answers in tables of their own)
_BACKEND_SEEN: dict[bytes, Message] = {}
_BACKEND_SEEN_KEPT = 1024
# ParameterStatus frames as decoded, shared by every session of the process (messages are
# immutable): a session holds the server's dozen settings as the same objects as the next
_SHARED_MESSAGES: dict[bytes, Message] = {}
_SHARED_KEPT = 512


def _shared(raw: bytes) -> Message | None:
    return _SHARED_MESSAGES.get(raw)


def _remember_shared(raw: bytes, message: Message) -> Message:
    if len(_SHARED_MESSAGES) >= _SHARED_KEPT:
        _SHARED_MESSAGES.clear()
    _SHARED_MESSAGES[raw] = message
    return message


_REPEAT_MAX_BYTES = 4096  # larger frames are decoded each time, never kept


class _StreamParser:
    """Frames a byte stream into typed messages (Byte1 type, Int32 length, body)."""

    _SIDE = ""
    _TABLE: ClassVar[dict[int, _Decoder]] = {}
    _FAST: ClassVar[dict[int, _FastDecoder]] = {}
    _REPEATS: ClassVar[frozenset[int]] = frozenset()
    # types whose messages every session receives alike (a server's ParameterStatus):
    # one message object per distinct frame for the whole process (_shared), not per parser
    _SHARED: ClassVar[frozenset[int]] = frozenset()
    _KEPT: ClassVar[int] = _REPEATS_KEPT  # repeats remembered (then forgotten at once)

    def __init__(self, max_frame: int) -> None:
        if max_frame < 4:
            raise ValueError("max_frame must be at least 4")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need = 1  # bytes the buffer must hold before parsing can progress
        self._error: ProtocolViolation | None = None
        self._seen: dict[bytes, Message] = {}
        # the repeats that ended the last chunk after a frame read afresh, and their messages
        self._tail = b""
        self._tail_messages: list[Message] = []

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf)

    @property
    def pending_frame(self) -> int:
        """The length of the frame still arriving (its declared size, counting its type
        byte), 0 when none is."""
        return self._need if self._buf else 0

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

        One loop for the whole chunk (this runs for every message a session carries).
        The repeats that ended the last chunk (a prepared statement's Describe, Execute
        and Sync after its Bind) are its tail: a chunk ending in the same bytes gets the
        same messages for them, without reading them frame by frame again."""
        table, repeats, seen, shared = self._TABLE, self._REPEATS, self._seen, self._SHARED
        size, max_frame, side = len(view), self.max_frame, self._SIDE
        tail = self._tail
        fresh_end, fresh_count = -1, 0  # where the last frame decoded afresh ended
        while True:
            avail = size - pos
            if avail == len(tail) and avail and view.endswith(tail):
                out.extend(self._tail_messages)
                self._need = 1
                return size
            if avail < 1:
                self._need = 1  # counted from the start of the next frame, as is every _need
                if 0 <= fresh_end < size and repeats:
                    self._tail = view[fresh_end:]
                    self._tail_messages = out[fresh_count:]
                return pos
            kind = view[pos]
            if kind not in table:
                raise ProtocolViolation(
                    f"unknown {side} message type {bytes([kind])!r} at stream offset {pos}"
                )
            if avail < 5:
                self._need = 5
                return pos
            (length,) = INT32.unpack_from(view, pos + 1)
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
            if kind in shared:
                out.append(_shared(raw) or _remember_shared(raw, self._decode(kind, raw, False)))
                continue
            repeat = kind in repeats and length < _REPEAT_MAX_BYTES
            if repeat:
                known = seen.get(raw)
                if known is not None:
                    out.append(known)
                    continue
            out.append(self._decode(kind, raw, repeat))
            if not repeat:  # a frame a tail may follow (one remembered is a tail's own)
                fresh_end, fresh_count = pos, len(out)

    def _decode(self, kind: int, raw: bytes, remember: bool) -> Message:
        """One whole frame not met before: its type's fast decoder, else the general one
        (ProtocolViolation if malformed); remembered as a repeat if asked."""
        fast = self._FAST.get(kind)
        msg = fast(raw) if fast is not None else None
        if msg is None:
            r = FrameReader(raw, 5, f"{self._SIDE} message {bytes([kind])!r}")
            msg = self._TABLE[kind](r)
            r.done()
        object.__setattr__(msg, "raw", raw)
        if remember:
            seen = self._seen
            if len(seen) >= self._KEPT:
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
        self._last_bind: _BindFrame | None = None  # (bound_run)

    @property
    def in_startup(self) -> bool:
        """True while the next packet is expected to be an untyped startup packet."""
        return self._startup

    def startup_done(self) -> None:
        """From now on, expect typed messages."""
        self._startup = False

    def _typed(self) -> bool:
        return not self._startup and not self._cancelled

    def lone_query(self, data: bytes) -> list[Message] | None:
        """What feed(data) returns when data is exactly one whole Query frame whose text is
        one UTF-8 C string (what a simple-protocol client sends for each statement), read
        without the general loop and leaving the parser as feed() would; None, having read
        nothing, for any other chunk or state: feed() then reads it (and says what is
        wrong with it)."""
        size = len(data)
        if (
            size < 6
            or data[0] != _QUERY
            or self._buf
            or self._error is not None
            or self._startup
            or self._cancelled
            or self._need > size
            or size - 1 > self.max_frame
            or type(data) is not bytes
        ):
            return None
        (length,) = INT32.unpack_from(data, 1)
        # _fast_text(data), spelt out: the body is one UTF-8 C string
        if length != size - 1 or data.find(b"\0", 5) != size - 1:
            return None
        try:
            sql = data[5:-1].decode("utf-8")
        except UnicodeDecodeError:
            return None
        message = _new(Query)
        _QUERY_SQL(message, sql)
        _MESSAGE_RAW(message, data)
        return [message]

    def bound_run(self, data: bytes) -> list[Message] | None:
        """What feed(data) returns when data is exactly one whole Bind frame followed by
        the repeats that ended the last chunk after its own fresh frame (the tail: a
        prepared statement's Describe, Execute and Sync, sent again with every Bind),
        read without the general loop and leaving the parser as feed() would; None,
        having read nothing, for any other chunk or state (feed() then reads it)."""
        tail = self._tail
        size = len(data)
        if (
            not tail
            or size < 6
            or data[0] != _BIND
            or self._buf
            or self._error is not None
            or self._startup
            or self._cancelled
            or self._need > size
            or type(data) is not bytes
        ):
            return None
        (length,) = INT32.unpack_from(data, 1)
        end = 1 + length
        if (
            length < 4
            or length > self.max_frame
            or end + len(tail) != size
            or not data.endswith(tail)
        ):
            return None
        raw = data[:end]
        last = self._last_bind
        if last is not None and raw.startswith(last.head, 5):
            message = last.read(raw)
        else:
            message = _fast_bind(raw)
            if message is not None:
                self._last_bind = _BindFrame(raw, message)  # type: ignore[arg-type]
        if message is None:
            return None
        _MESSAGE_RAW(message, raw)
        self._need = 1
        return [message, *self._tail_messages]

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
        (length,) = INT32.unpack_from(view, pos)
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise ProtocolViolation(
                f"startup packet length {length} is outside 8..{MAX_STARTUP_PACKET}"
            )
        if avail < length:
            self._need = length
            return None, pos
        raw = view[pos : pos + length]
        end = pos + length
        r = FrameReader(raw, 4, "startup packet")
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


def _startup_params(r: FrameReader) -> dict[str, str]:
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
    _SHARED = frozenset(b"S")
    _KEPT = _BACKEND_SEEN_KEPT

    def __init__(self, max_frame: int = DEFAULT_MAX_BACKEND_FRAME):
        super().__init__(max_frame)
        self._seen = _BACKEND_SEEN
        # plain_answers: the frames before the first row and after the last row of the
        # last chunk with rows, and their answers
        self._plain_head = b""
        self._plain_head_answers: list[PlainAnswer] = []
        self._plain_tail = b""  # (never met: the loop runs only while bytes remain)
        self._plain_tail_answers: list[PlainAnswer] = []

    def plain_answers(
        self, chunk: bytes, rows: list[RowSpan] | None = None
    ) -> list[PlainAnswer] | None:
        """The answers in chunk, read without building a message for each row, when chunk
        holds only whole, well-formed frames of the answers a result streams when nothing
        in it went wrong: ParseComplete, BindComplete, CloseComplete, ParameterDescription,
        RowDescription, NoData, DataRow, CommandComplete, EmptyQueryResponse,
        ReadyForQuery. Each as (type, text, description): the text is a CommandComplete's
        tag or a ReadyForQuery's status, the description a RowDescription's message.
        Given a `rows` list, each DataRow's frame start and end are appended to it, in
        order (the masked lane rewrites rows where they lie, RowMask.rewrite).

        None, with nothing consumed, for any other chunk, and while part of a frame is
        held from an earlier one: feed() then reads it (and says what is wrong with it)."""
        if self._buf or self._error is not None:
            return None
        repeats, seen, max_frame = self._REPEATS, self._seen, self.max_frame
        size = len(chunk)
        # the frames before the last chunk's first row and after its last one (a result's
        # description and its tag and status, the same for every run of one statement):
        # a chunk starting or ending with the same bytes has the same answers for them
        head, tail = self._plain_head, self._plain_tail
        if tail and head and chunk.startswith(head) and chunk.endswith(tail):
            # the last chunk's description and its tag and status around one row (a
            # statement run again, fetching one row by its key): what the loop below
            # reads, without it (tests/test_pg_codec_fuzz.py: test_a_chunk_starting_or_...)
            start, stop = len(head), size - len(tail)
            if stop - start > 5 and chunk[start] == _DATA_ROW:
                (length,) = INT32.unpack_from(chunk, start + 1)
                if (
                    start + 1 + length == stop
                    and length <= max_frame
                    and _data_row_fits(chunk, start + 5, stop)
                ):
                    if rows is not None:
                        rows.append((start, stop))
                    return [*self._plain_head_answers, _ROW, *self._plain_tail_answers]
        if head and chunk.startswith(head):
            pos = len(head)
            answers = list(self._plain_head_answers)
        else:
            head, pos = b"", 0
            answers = []
        append = answers.append
        first_row = last_row = -1  # where the first row starts, where the last one ends
        first_count = last_count = 0  # how many answers came before each
        while pos < size:
            if size - pos == len(tail) and chunk.endswith(tail):
                answers.extend(self._plain_tail_answers)
                pos, last_row = size, -1  # (the tail is already the remembered one)
                break
            kind = chunk[pos]
            if kind not in _PLAIN_ANSWERS or size - pos < 5:
                return None
            (length,) = INT32.unpack_from(chunk, pos + 1)
            end = pos + 1 + length
            if length < 4 or length > max_frame or end > size:
                return None
            if kind == _DATA_ROW:
                if not _data_row_fits(chunk, pos + 5, end):
                    return None
                if rows is not None:
                    rows.append((pos, end))
                if first_row < 0:
                    first_row, first_count = pos, len(answers)
                append(_ROW)
                pos = last_row = end
                last_count = len(answers)
                continue
            raw = chunk[pos:end]
            pos = end
            answer = _PLAIN_SEEN.get(raw)
            if answer is None:
                msg = seen.get(raw)
                if msg is None:
                    remember = kind in repeats and len(raw) < _REPEAT_MAX_BYTES
                    try:
                        msg = self._decode(kind, raw, remember)
                    except ProtocolViolation:
                        return None
                answer = _plain_answer(kind, msg)
                if msg is seen.get(raw):  # a repeat: its answer is remembered with it
                    if len(_PLAIN_SEEN) >= _BACKEND_SEEN_KEPT:
                        _PLAIN_SEEN.clear()
                    _PLAIN_SEEN[raw] = answer
            append(answer)
        if first_row > len(head) and first_row < _REPEAT_MAX_BYTES:
            self._plain_head = chunk[:first_row]
            self._plain_head_answers = answers[:first_count]
        if 0 <= last_row < size and size - last_row < _REPEAT_MAX_BYTES:
            self._plain_tail = chunk[last_row:]
            self._plain_tail_answers = answers[last_count:]
        return answers


# the answers of repeated frames (their messages in _BACKEND_SEEN), by their bytes
_PLAIN_SEEN: dict[bytes, PlainAnswer] = {}


def _plain_answer(kind: int, msg: Message) -> PlainAnswer:
    if type(msg) is CommandComplete:
        return (kind, msg.tag, None)
    if type(msg) is ReadyForQuery:
        return (kind, msg.status, None)
    if type(msg) is RowDescription:
        return (kind, "", msg)
    return (kind, "", None)
