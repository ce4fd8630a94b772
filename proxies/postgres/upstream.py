"""Connecting to the upstream PostgreSQL server with the session's credential.

Owns the upstream side of start-up: TCP (and TLS when configured), the StartupMessage
(its parameters come from proxies.postgres.startup), and authentication — SCRAM-SHA-256, md5 or
cleartext, whichever the server asks among those the connection's credentials.upstream_auth
allows (default: SCRAM, or nothing asked). The credential lives only in this process's
memory; nothing here logs it, and errors name the server and the step, never the secret.
Also what the proxy asks the server on the session's own connection before the client is
let in (session_query: the catalog; pooler_refusal: behind a transaction pooler, whether
the pins the start-up packet cannot carry hold), and on connections of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from proxies.postgres import codec
from proxies.postgres.codec.wire import INT32
from proxies.postgres.scram import LoginRefused, UpstreamLogin
from proxies.postgres.startup import pooler_refusal_message, pooler_settings_sql, unheld_pins
from proxies.runtime.credentials import CredentialLease
from proxies.runtime.relay import open_stream


class UpstreamError(Exception):
    """Connecting or authenticating upstream failed; the message is safe for the client."""

    def __init__(self, message: str, error: codec.ErrorResponse | None = None) -> None:
        super().__init__(message)
        self.error = error


@dataclass
class Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: codec.BackendParser
    parameters: list[codec.ParameterStatus] = field(default_factory=list)
    key: codec.BackendKeyData | None = None
    status: str = "I"
    pending: list[codec.Message] = field(default_factory=list)  # read past ReadyForQuery


async def connect(
    host: str,
    port: int,
    params: dict[str, str],
    lease: CredentialLease,
    tls: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> Upstream:
    try:
        async with asyncio.timeout(timeout):
            # a RelayWriter: a session's relay may drop the streams once it owns the socket
            reader, writer = await open_stream(host, port)
            if tls is not None:
                writer.write(codec.SSLRequest().encode())
                await writer.drain()
                answer = await reader.readexactly(1)
                if answer != codec.SSL_ACCEPTED:
                    writer.close()
                    raise UpstreamError(f"upstream {host}:{port} refused TLS")
                await writer.start_tls(tls, server_hostname=host)
            upstream = Upstream(reader, writer, codec.BackendParser())
            writer.write(codec.StartupMessage(codec.PROTOCOL_VERSION, params).encode())
            await _authenticate(
                upstream, lease, tls is not None and tls.verify_mode == ssl.CERT_REQUIRED
            )
            return upstream
    except TimeoutError:
        raise UpstreamError(f"upstream {host}:{port} did not answer in {timeout:g}s") from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise UpstreamError(f"cannot reach upstream {host}:{port}: {type(exc).__name__}") from None
    except codec.ProtocolViolation as exc:
        raise UpstreamError(f"upstream {host}:{port} broke the protocol: {exc}") from None


async def _messages(upstream: Upstream) -> list[codec.Message]:
    data = await upstream.reader.read(65536)
    if not data:
        raise UpstreamError("upstream closed the connection during start-up")
    return upstream.parser.feed(data)


async def _authenticate(upstream: Upstream, lease: CredentialLease, verified: bool) -> None:
    """verified: the connection is TLS to a server whose certificate was checked (only
    then does the password go in clear when the server asks so). What each request is
    answered with, and which are refused — an impostor's AuthenticationOk before a
    verified SCRAM signature, a second method after the first (a downgrade), anything
    out of order — is proxies.postgres.scram.UpstreamLogin's; over TLS it binds SCRAM to
    the server's certificate."""
    ssl_object = upstream.writer.get_extra_info("ssl_object")
    certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    login = UpstreamLogin(
        lease.username,
        lease.password,
        tls_certificate=certificate if ssl_object is not None else None,
        tls_verified=verified,
        allowed=lease.upstream_auth,
    )
    try:
        while True:
            messages = await _messages(upstream)
            for i, message in enumerate(messages):
                if isinstance(message, codec.ErrorResponse):
                    text = message.fields.get("M", "error")
                    raise UpstreamError(f"upstream refused the session: {text}", message)
                if isinstance(message, codec.Authentication):
                    answer = login.answer(message)
                    if answer is not None:
                        upstream.writer.write(answer.encode())
                elif isinstance(message, codec.NoticeResponse | codec.NegotiateProtocolVersion):
                    continue  # dropped during start-up
                elif not login.authenticated:
                    raise UpstreamError(
                        f"upstream sent {type(message).__name__} before authentication "
                        "succeeded: refused"
                    )
                elif isinstance(message, codec.ParameterStatus):
                    upstream.parameters.append(message)
                elif isinstance(message, codec.BackendKeyData):
                    upstream.key = message
                elif isinstance(message, codec.ReadyForQuery):
                    upstream.status = message.status
                    upstream.pending = messages[i + 1 :]
                    return
    except LoginRefused as exc:
        upstream.writer.close()
        raise UpstreamError(str(exc)) from None
    except UpstreamError:
        upstream.writer.close()
        raise


# Functions the database defines (made after initdb: OID 16384 and up) named like one in
# pg_catalog, or in pg_catalog itself. The server resolves an unqualified call to the best
# match over every schema on the search path, so a `public.upper(varchar)` beats
# `pg_catalog.upper(text)` for a varchar argument, and a superuser may add a
# `pg_catalog.lower(int)` of their own: the policy, which reads names, must know which
# names are not the built-in's alone.
SHADOWED_SQL = """SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p
WHERE p.oid >= '16384'::pg_catalog.oid
AND (p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc q
                WHERE q.pronamespace = 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
                AND q.proname = p.proname))
ORDER BY 1"""


async def session_query(upstream: Upstream, sql: str, timeout: float = 5.0) -> list[str] | None:
    """The first column of a query the proxy asks on the session's own connection before
    the client is let in (nothing else is in flight on it yet), or None when it failed."""
    rows = await session_rows(upstream, sql, timeout)
    return None if rows is None else [row[0] or "" for row in rows if row]


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's whole answer to one simple Query: the bytes it sent, up to and including
    its ReadyForQuery (the same bytes, the same answer: a caller may keep what it made of
    them by the bytes themselves), read into rows only when asked."""

    raw: bytes

    def first_column(self) -> list[str] | None:
        """session_query's rows of it: the first column of each (NULL as ""), None when
        it holds an error or is not well-formed."""
        try:
            messages = codec.BackendParser().feed(self.raw)
            rows = []
            for message in messages:
                if isinstance(message, codec.ErrorResponse):
                    return None
                if isinstance(message, codec.DataRow) and message.values:
                    rows.append((message.values[0] or b"").decode())
        except (codec.ProtocolViolation, UnicodeDecodeError):
            return None
        if not messages or not isinstance(messages[-1], codec.ReadyForQuery):
            return None
        return rows


_READY_FOR_QUERY = ord("Z")


async def session_answer(upstream: Upstream, sql: str, timeout: float = 5.0) -> Answer | None:
    """A query's whole answer on the session's own connection before the client is let in
    (as session_query asks it), its frames told apart by their lengths alone: no message is
    built for its rows (a start-up's built-in rows are thousands, the same every time, and
    reading each into a message took most of a start-up's CPU). None when it failed to
    arrive whole, or when the connection holds messages or part of one already read
    (nothing sent then). Once the query was sent, a failure closes the connection: the
    rest of the answer (or all of it, late) would otherwise be read as the answer to
    whatever is asked next on it."""
    if upstream.pending or upstream.parser.buffered:
        return None
    answer = await _whole_answer(upstream, sql, timeout)
    if answer is None:
        upstream.writer.close()
    return answer


async def _whole_answer(upstream: Upstream, sql: str, timeout: float) -> Answer | None:
    unpack, max_frame = INT32.unpack_from, upstream.parser.max_frame
    held = bytearray()
    pos = 0
    try:
        async with asyncio.timeout(timeout):
            upstream.writer.write(codec.Query(sql).encode())
            while True:
                data = await upstream.reader.read(65536)
                if not data:
                    return None
                held += data
                size = len(held)
                while size - pos >= 5:
                    kind = held[pos]
                    (length,) = unpack(held, pos + 1)
                    if length < 4 or length > max_frame:
                        return None  # feed() would refuse it
                    if pos + 1 + length > size:
                        break
                    pos += 1 + length
                    if kind == _READY_FOR_QUERY:
                        upstream.status = chr(held[pos - 1])
                        if pos < size:  # what the server sent after it (a notice)
                            upstream.pending = upstream.parser.feed(bytes(held[pos:]))
                        return Answer(bytes(held[:pos]))
    except (TimeoutError, OSError, codec.ProtocolViolation):
        return None


async def session_rows(
    upstream: Upstream, sql: str, timeout: float = 5.0
) -> list[list[str | None]] | None:
    """Rows (as text) of a query the proxy asks on the session's own connection before
    the client is let in, or None when it failed."""
    return await _rows_of(upstream, codec.Query(sql).encode(), timeout)


async def prepared_rows(
    upstream: Upstream,
    name: str,
    sql: str,
    parse: bool,
    refused: list[codec.ErrorResponse] | None = None,
    timeout: float = 5.0,
) -> list[list[str | None]] | None:
    """session_rows of a query the connection runs again and again, as the named prepared
    statement `name` (Parse sent when `parse`: not yet made on this connection), so the
    server plans it once, not every time; None when it failed (the server's error, after
    which the connection is ready again, appended to `refused`). Only on a connection of
    the proxy's own, straight to the server (behind a transaction pooler the next run may
    land on a server connection where the statement was never made)."""
    request: list[codec.Message] = [codec.Parse(name, sql)] if parse else []
    request += [codec.Bind("", name), codec.Execute(""), codec.Sync()]
    return await _rows_of(upstream, b"".join(m.encode() for m in request), timeout, refused)


async def _rows_of(
    upstream: Upstream,
    request: bytes,
    timeout: float,
    refused: list[codec.ErrorResponse] | None = None,
) -> list[list[str | None]] | None:
    """The rows the server answers `request` with, up to its ReadyForQuery (nothing else
    in flight on the connection), or None when it failed (an error the server answered
    with appended to `refused`)."""
    rows: list[list[str | None]] = []
    try:
        async with asyncio.timeout(timeout):
            upstream.writer.write(request)
            pending, upstream.pending = list(upstream.pending), []
            failed = False
            while True:
                for i, message in enumerate(pending):
                    if isinstance(message, codec.DataRow):
                        rows.append([v.decode() if v is not None else None for v in message.values])
                    elif isinstance(message, codec.ErrorResponse):
                        failed = True
                        if refused is not None:
                            refused.append(message)
                    elif isinstance(message, codec.ReadyForQuery):
                        upstream.status = message.status
                        upstream.pending = pending[i + 1 :]
                        return None if failed else rows
                data = await upstream.reader.read(65536)
                if not data:
                    return None
                pending = upstream.parser.feed(data)
    except (TimeoutError, OSError, codec.ProtocolViolation):
        return None


async def _side_exchange(
    host: str,
    port: int,
    params: dict[str, str],
    lease: CredentialLease,
    request: list[codec.Message],
    tls: ssl.SSLContext | None,
    timeout: float,
) -> list[codec.Message] | None:
    """The server's answers, up to ReadyForQuery, to messages sent on a connection of the
    proxy's own (the session's connection is busy with the client); None when the
    connection, the exchange or any of the messages failed."""
    try:
        upstream = await connect(host, port, params, lease, tls, timeout)
    except UpstreamError:
        return None
    answers: list[codec.Message] = []
    try:
        async with asyncio.timeout(timeout):
            # Terminate only once answered: pgbouncer drops a client at its Terminate,
            # with the answer to what came before it unsent
            upstream.writer.write(b"".join(m.encode() for m in request))
            pending = list(upstream.pending)
            while True:
                for message in pending:
                    if isinstance(message, codec.ErrorResponse):
                        return None
                    if isinstance(message, codec.ReadyForQuery):
                        return answers
                    answers.append(message)
                data = await upstream.reader.read(65536)
                if not data:
                    return None
                pending = upstream.parser.feed(data)
    except (TimeoutError, OSError, codec.ProtocolViolation):
        return None
    finally:
        with contextlib.suppress(OSError):
            upstream.writer.write(codec.Terminate().encode())
        upstream.writer.close()


async def side_query(
    host: str,
    port: int,
    params: dict[str, str],
    lease: CredentialLease,
    sql: str,
    tls: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> list[list[str | None]] | None:
    """Rows (as text) of one catalog query asked on a connection of its own, or None
    when it could not be asked."""
    answers = await _side_exchange(host, port, params, lease, [codec.Query(sql)], tls, timeout)
    if answers is None:
        return None
    return [
        [v.decode() if v is not None else None for v in m.values]
        for m in answers
        if isinstance(m, codec.DataRow)
    ]


async def described_fields(
    host: str,
    port: int,
    params: dict[str, str],
    lease: CredentialLease,
    sql: str,
    tls: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> list[codec.Field] | None:
    """The columns a query would return (Parse and Describe on a connection of its own,
    nothing executed), or None when it could not be described."""
    request = [codec.Parse("", sql, []), codec.Describe("S", ""), codec.Sync()]
    answers = await _side_exchange(host, port, params, lease, request, tls, timeout)
    if answers is None:
        return None
    for message in answers:
        if isinstance(message, codec.RowDescription):
            return list(message.fields)
        if isinstance(message, codec.NoData):
            return []
    return None


# the catalog, name column and schema column of each kind of object catalog_name names
_CATALOG_NAMES = {
    "function": ("pg_proc", "proname", "pronamespace"),
    "type": ("pg_type", "typname", "typnamespace"),
}


async def catalog_name(
    host: str,
    port: int,
    params: dict[str, str],
    lease: CredentialLease,
    kind: str,
    oid: int,
    tls: ssl.SSLContext | None = None,
) -> str | None:
    """The function or type (`kind`) with this OID as `schema.name` (each part quoted
    where the server would quote it), so the policy sees which schema's object it is;
    None if unknown."""
    table, name, schema = _CATALOG_NAMES[kind]
    rows = await side_query(
        host,
        port,
        params,
        lease,
        f"SELECT format('%I.%I', n.nspname, c.{name}) FROM pg_catalog.{table} c "
        f"JOIN pg_catalog.pg_namespace n ON n.oid = c.{schema} "
        f"WHERE c.oid = {int(oid)}",
        tls,
    )
    return rows[0][0] if rows else None


async def column_names(
    host: str,
    port: int,
    params: dict[str, str],
    lease: CredentialLease,
    table_oids: set[int],
    tls: ssl.SSLContext | None = None,
) -> dict[tuple[int, int], str] | None:
    """The real names of the columns of these tables, by (table OID, attribute number)."""
    oids = ",".join(str(int(o)) for o in sorted(table_oids))
    rows = await side_query(
        host,
        port,
        params,
        lease,
        "SELECT attrelid, attnum, attname FROM pg_catalog.pg_attribute "
        f"WHERE attrelid IN ({oids}) AND attnum > 0",
        tls,
    )
    if rows is None:
        return None
    return {(int(r[0] or 0), int(r[1] or 0)): r[2] or "" for r in rows}


async def pooler_refusal(
    upstream: Upstream, pins: dict[str, str], role: str, database: str
) -> str | None:
    """Behind a transaction pooler: None when every pin the start-up packet could not
    carry holds through the upstream role's configuration (asked on the session's own
    connection, before the client is let in), else the error naming each one that does
    not and the ALTER ROLE that fixes it (the catalog unreadable: refused as well)."""
    if not pins:
        return None
    rows = await session_query(upstream, pooler_settings_sql(pins))
    if rows is None:
        return "the upstream's settings could not be read to check the pinned ones"
    unheld = unheld_pins(pins, rows)
    return pooler_refusal_message(unheld, pins, role, database) if unheld else None


# The relations whose columns masking may meet (tables, views, materialized views,
# partitioned and foreign tables outside the system schemas), at most PREFETCH_MAX + 1.
PREFETCH_MAX = 2000
RELATIONS_SQL = f"""SELECT c.oid FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
AND n.nspname NOT IN ('pg_catalog', 'information_schema')
AND n.nspname::pg_catalog.text NOT LIKE 'pg\\_toast%'
LIMIT {PREFETCH_MAX + 1}"""


async def relation_oids(upstream: Upstream) -> set[int] | None:
    """The database's relations (RELATIONS_SQL) on the session's own connection, or None
    when they could not be read or are more than PREFETCH_MAX."""
    rows = await session_query(upstream, RELATIONS_SQL)
    if rows is None or len(rows) > PREFETCH_MAX:
        return None
    return {int(oid) for oid in rows if oid.isdigit()}
