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

Layout: `wire` (frames, field encoders, the Message base, limits), `frontend` and
`backend` (the messages of each direction), `parsers` (FrontendParser, BackendParser).
Import the codec from here: `from proxies.postgres import codec`.
"""

from __future__ import annotations

from proxies.postgres.codec.backend import (
    Authentication,
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
    BindComplete,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    Field,
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
    data_row,
    error_response,
    notice_response,
    ready_for_query,
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
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
)
from proxies.postgres.codec.parsers import (
    BackendParser,
    FrontendParser,
    PlainAnswer,
    RowSpan,
)
from proxies.postgres.codec.wire import (
    CANCEL_REQUEST_CODE,
    DEFAULT_MAX_BACKEND_FRAME,
    DEFAULT_MAX_FRONTEND_FRAME,
    GSSENC_REQUEST_CODE,
    MAX_STARTUP_PACKET,
    PROTOCOL_VERSION,
    SSL_ACCEPTED,
    SSL_REFUSED,
    SSL_REQUEST_CODE,
    Message,
    ProtocolViolation,
)

__all__ = [
    "CANCEL_REQUEST_CODE",
    "DEFAULT_MAX_BACKEND_FRAME",
    "DEFAULT_MAX_FRONTEND_FRAME",
    "GSSENC_REQUEST_CODE",
    "MAX_STARTUP_PACKET",
    "PROTOCOL_VERSION",
    "SSL_ACCEPTED",
    "SSL_REFUSED",
    "SSL_REQUEST_CODE",
    "Authentication",
    "AuthenticationCleartextPassword",
    "AuthenticationGSS",
    "AuthenticationGSSContinue",
    "AuthenticationKerberosV5",
    "AuthenticationMD5Password",
    "AuthenticationOk",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "AuthenticationSSPI",
    "BackendKeyData",
    "BackendParser",
    "Bind",
    "BindComplete",
    "CancelRequest",
    "Close",
    "CloseComplete",
    "CommandComplete",
    "CopyBothResponse",
    "CopyData",
    "CopyDone",
    "CopyFail",
    "CopyInResponse",
    "CopyOutResponse",
    "DataRow",
    "Describe",
    "EmptyQueryResponse",
    "ErrorResponse",
    "Execute",
    "Field",
    "Flush",
    "FrontendParser",
    "FunctionCall",
    "FunctionCallResponse",
    "GSSENCRequest",
    "Message",
    "NegotiateProtocolVersion",
    "NoData",
    "NoticeResponse",
    "NotificationResponse",
    "ParameterDescription",
    "ParameterStatus",
    "Parse",
    "ParseComplete",
    "PasswordMessage",
    "PlainAnswer",
    "PortalSuspended",
    "ProtocolViolation",
    "Query",
    "ReadyForQuery",
    "RowDescription",
    "RowSpan",
    "SASLInitialResponse",
    "SASLResponse",
    "SSLRequest",
    "StartupMessage",
    "Sync",
    "Terminate",
    "data_row",
    "error_response",
    "notice_response",
    "ready_for_query",
]
