"""Requests towards the upstream and their answers back: the HTTP proxy's forwarding half.

Owns what happens once a request may go: the upstream URL of the decided target (the
credential as a query parameter when so configured), the headers it goes with (the
client's token and hop-by-hop headers removed, the credential injected), the request
over the upstream pool (proxies/http/upstream.py), and the answer relayed to the client
through the credential guard — masked per the verdict (JSON whole with Content-Length
fixed, NDJSON and SSE per record, records the mask holds for the next sent once due:
_held_timed), streamed untouched otherwise, each request recorded
with its status and sizes. `UpstreamExchange` is the part of ClientConnection
(proxies/http/proxy.py) that does this; the MCP exchange uses its `forward` and
`write_reply`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from yarl import URL

from portcullis.http_target import Target
from portcullis.masking import MaskingError
from portcullis.verdict import VerdictKind
from proxies.http import messages
from proxies.http.bodies import (
    MAX_MASKED_DOCUMENT,
    BodyMask,
    Unmaskable,
    answer_kind,
    csv_header,
    masked_headers,
    masker_for,
)
from proxies.http.client_io import ClientIO
from proxies.http.codings import ContentDecoder, Undecodable, codings, decode_whole
from proxies.http.guard import CredentialInResponse, ResponseGuard, check_unpacked
from proxies.http.packed import PACKED_LIMIT, SNIFFED, TAR_SNIFFED, Unopenable, packed_kind
from proxies.http.table_memory import header_columns, http_asked
from proxies.http.upstream import UpstreamCut, UpstreamResponse, request_head
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.pdp_client import Ruling

if TYPE_CHECKING:
    from proxies.http.mcp import Reply
    from proxies.http.proxy import HttpProxy, Request

# request headers that do not go upstream when the answer is to be masked: a coding or a
# range of the body (not masked as the document is), and the validators an upstream
# compares with the unmasked body's (If-None-Match, If-Match: an ETag is its hash, so a
# 304 or 412 for a guessed body's ETag says the guess was the masked value)
# (Request-Range: the range Apache httpd's byterange filter reads when there is no Range,
# for Netscape 2-3)
_RANGES = frozenset({"range", "if-range", "request-range"})
_MASKED_DROPPED = frozenset({"accept-encoding", "if-none-match", "if-match"}) | _RANGES
# request headers that do not go upstream when the answer is checked for the credential:
# the guard reads each answer alone, and two ranges of one file holding the key (its
# first half, then its second) would each pass it; the answer is the whole
_GUARDED_DROPPED = _RANGES
# methods whose request body every server reads (RFC 9110 §9.3): a body on any other goes
# on an upstream connection that is not reused (forward)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# a body that could begin a request line (a method token and a space, after empty lines):
# a server ignoring this body (CL.0) reads it as a request — not reused after either
_REQUEST_LINE_START = re.compile(rb"[\r\n\t ]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]")
RECORDED_BODY = 1024  # characters of a request's and a response's body in its recording
WHOLE = 256 * 1024  # a response body of known length up to this is checked before its head
# bytes of an answer masked at once (a piece of a stream, or a document's whole) from
# which the masking runs in a thread: a document of megabytes takes the masks seconds,
# which on the event loop every other request of every session would wait through
MASKED_IN_THREAD = 16 * 1024


class UpstreamExchange:
    """Forwarding and answering, for a client connection (ClientConnection)."""

    proxy: HttpProxy
    output: ClientOutput
    writer: asyncio.StreamWriter
    io: ClientIO
    client_ip: str
    scheme: str
    must_close: str
    _headers_memo: tuple[tuple[Any, ...], tuple[tuple[str, str], ...]] | None = None
    _answer_memo: tuple[tuple[Any, ...], bytes] | None = None
    # the last short answer's body and its preview in the recording (this connection only)
    _preview_memo: tuple[bytes, str] | None = None
    # the last request head sent upstream without a body: (client head, lease, masking, bytes)
    _wire_memo: tuple[Any, Any, bool, bytes] | None = None

    def secrets(self, request: Request) -> tuple[bytes, ...]:
        """What the response to this request is checked for (ResponseGuard)."""
        return request.agent.patterns

    def write(self, data: bytes) -> None:
        self.output.write(data)

    def send_problem(
        self, request: Request, status: int, title: str, detail: str = "", **fields: Any
    ) -> None:
        self.write(
            messages.problem(status, title, detail, close=not request.head.keep_alive, **fields)
        )

    async def write_reply(self, request: Request, reply: Reply) -> None:
        """A whole or streamed answer to the client, framed here, through the guard."""
        guard = ResponseGuard(self.output, self.secrets(request))
        headers = [
            (n, v)
            for n, v in reply.headers
            if n.lower() not in messages.HOP_BY_HOP and n.lower() != "content-length"
        ]
        if not request.head.keep_alive:
            headers.append(("connection", "close"))
        if isinstance(reply.body, bytes):
            headers.append(("content-length", str(len(reply.body))))
            guard.answer(messages.response_head(reply.status, "", headers), reply.body)
            return
        chunked = request.head.version == "HTTP/1.1"
        if chunked:
            headers.append(("transfer-encoding", "chunked"))
        else:  # an HTTP/1.0 client reads to the end of the connection
            self.must_close = "close_delimited"
            if request.head.keep_alive:
                headers.append(("connection", "close"))
        guard.write_head(messages.response_head(reply.status, "", headers), chunked)
        async for data in reply.body:
            if data:
                guard.write(data)
                await self.io.drain()
        guard.flush()

    def upstream_url(self, request: Request, target: Target | None = None) -> URL:
        """The upstream URL for the decided target, the credential as a query parameter
        when so configured (a client's parameter of that name is dropped)."""
        base = self.proxy.upstream
        return URL(
            f"{base.scheme}://{base.raw_authority}{self.upstream_target(request, target)}",
            encoded=True,
        )

    def upstream_target(self, request: Request, target: Target | None = None) -> str:
        """The request target sent upstream (upstream_url's path and query): the decided
        target under the upstream's base path, the credential as a query parameter when so
        configured (a client's parameter of that name is dropped)."""
        target = target or request.target
        query = target.query
        lease = request.session.lease
        param = str(lease.extra.get("query", "")) if lease is not None else ""
        if param and lease is not None:
            # a client's parameter of that name, however encoded, is dropped (the upstream
            # must not choose between two credentials)
            kept = [p for p in query.split("&") if p and messages.pair_name(p) != param]
            kept.append(f"{quote(param, safe='')}={quote(lease.value, safe='')}")
            query = "&".join(kept)
        path = self.proxy.base_path + target.path
        return f"{path}?{query}" if query else path

    def credential_header(self, request: Request) -> str:
        """The header the upstream credential goes in, a client's of that name dropped."""
        lease = request.session.lease
        return lease.header if lease is not None and lease.value else ""

    def upstream_headers(
        self, request: Request, keep_upgrade: bool = False
    ) -> list[tuple[str, str]]:
        lease = request.session.lease
        # a client repeats its headers request after request: the last answer is kept
        # for the same headers and credential (on this connection only)
        key = (request.head.headers, keep_upgrade, lease, lease.value if lease else "")
        memo = self._headers_memo
        if memo is not None and memo[0] == key:
            return list(memo[1])
        headers = self._upstream_headers(request, keep_upgrade)
        self._headers_memo = (key, tuple(headers))
        return headers

    def _upstream_headers(self, request: Request, keep_upgrade: bool) -> list[tuple[str, str]]:
        lease = request.session.lease
        header = self.credential_header(request)
        headers = messages.upstream_request_headers(
            request.head, self.client_ip, self.scheme, header, keep_upgrade
        )
        headers.append(("host", self.proxy.upstream.raw_authority))
        if header and lease is not None and not lease.extra.get("query"):
            # `prefix` (say "Bearer ") goes before a secret that comes without it (Vault)
            prefix = str(self.proxy.connection.credentials.get("prefix", ""))
            headers.append((header, prefix + lease.value))
        return headers

    def forward(
        self,
        request: Request,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
        masking: bool = False,
    ) -> Coroutine[Any, Any, UpstreamResponse]:
        """The request sent upstream and its answer's head read (awaited by the caller:
        a coroutine of the pool's, not one of its own that awaits it)."""
        pool = self.proxy.pool
        assert pool is not None
        head, lease = request.head, request.session.lease
        payload = request.body if body is None else body
        method = head.method
        sent_body = payload if payload or method in ("POST", "PUT", "PATCH") else None
        memo = self._wire_memo
        if (
            memo is not None
            and memo[0] is head
            and memo[1] is lease
            and memo[2] == masking
            and headers is None
            and sent_body is None
        ):
            # the same head (the codec's same object for the same bytes) and the same
            # credential lease as the last request: the same bytes go upstream
            return pool.send(method, memo[3])
        sent = headers if headers is not None else self.upstream_headers(request)
        if self.secrets(request):
            sent = [(n, v) for n, v in sent if _dashed(n.lower()) not in _GUARDED_DROPPED]
        if masking:
            # a compressed body cannot be masked: ask for it plain; and whole — a range of
            # it (a bare value cut out of its field, multipart/byteranges) is not masked
            # as the document is: Range and If-Range do not go, the answer is the whole;
            # nor does a validator of the unmasked body (If-None-Match, If-Match)
            sent = [(n, v) for n, v in sent if _dashed(n.lower()) not in _MASKED_DROPPED]
            sent.append(("accept-encoding", "identity"))
        reuse = not sent_body or (
            method in _BODY_METHODS and not _REQUEST_LINE_START.match(sent_body)
        )
        if not reuse:
            # a body on a method that defines none (GET, HEAD, DELETE, OPTIONS, ...), or
            # one that could begin a request line: a server that reads no body there
            # (CL.0: a static file handler, a redirect) reads it as the start of the next
            # request on the connection, which the proxy's next request (any client's,
            # with the credential) would complete. Its connection carries nothing after
            # it: closed once answered, never kept.
            sent = [(n, v) for n, v in sent if n.lower() != "connection"]
            sent.append(("connection", "close"))
        wire = request_head(method, self.upstream_target(request), sent, sent_body)
        if headers is None and sent_body is None:
            self._wire_memo = (head, lease, masking, wire)
        return pool.send(method, wire + (sent_body or b""), reuse)

    async def forward_and_answer(self, request: Request, raw: str, ruling: Ruling) -> bool:
        session = request.session
        details: dict[str, Any] = {
            "kind": "http.request",
            "method": request.head.method,
            "path": request.target.path,
            "request_bytes": len(request.body),
        }
        if request.body:
            details["request_body"] = _preview(request.body)
        masker = None
        if ruling.kind is VerdictKind.MASK:
            try:
                masker = masker_for(ruling.verdict.mask, self.proxy.hash_key)
            except MaskingError as exc:
                session.record_command(raw, ruling, status=500, error="mask_rules", **details)
                self.send_problem(request, 500, "mask rules cannot be enforced", str(exc))
                return request.head.keep_alive
        try:
            response = await self.forward(request, masking=masker is not None)
        except (OSError, ssl.SSLError) as exc:
            session.record_command(raw, ruling, status=502, error="upstream_unavailable", **details)
            self.send_problem(request, 502, "upstream unavailable", type(exc).__name__)
            return request.head.keep_alive
        before = self.output.sent
        try:
            status, sent, counts, preview = await self.relay_response(request, response, masker)
        except CredentialInResponse:
            session.record_command(
                raw, ruling, status=502, error="credential_in_response", **details
            )
            if self.output.sent != before:
                raise  # part of the answer went: the connection ends
            self.send_problem(request, 502, "the upstream's answer cannot be passed on")
            return request.head.keep_alive
        finally:
            response.release()
        details.update(status=status, bytes=sent)
        if preview:
            details["response_body"] = preview
        if self.must_close and self.must_close != "close_delimited":
            details["error"] = self.must_close
        session.record_command(raw, ruling, **details)
        if counts:
            session.record_masking(dict(counts), ruling.decision_id)
        return request.head.keep_alive and not self.must_close

    async def relay_response(
        self,
        request: Request,
        response: UpstreamResponse,
        masker: Any = None,
    ) -> tuple[int, int, dict[str, int], str]:
        """The upstream's response to the client: (status, body bytes sent, masking
        counts, a bounded preview of what the client got)."""
        head = request.head
        guard = ResponseGuard(self.output, self.secrets(request))
        fields = response.head
        bodyless = head.method == "HEAD" or response.status in (204, 304) or response.status < 200
        length = fields.get("content-length")
        decoder = None
        if not bodyless and (guard.patterns or masker is not None):
            # a compressed body would hide the credential from the guard and the fields
            # from a mask: it goes on decoded, or not at all
            applied = codings(fields.getall("content-encoding"))
            if applied:
                try:
                    decoder = ContentDecoder(applied)
                except Undecodable as exc:
                    return _refused(guard, "the upstream's answer cannot be checked", str(exc))
        if (
            decoder is None
            and masker is None
            and not bodyless
            and length is not None
            and length.isdigit()
            and int(length) <= WHOLE
        ):
            # a short body is checked whole before its head goes: a secret in it is a 502
            # (usually here with the head already: taken without a wait)
            data = response.content.ready()
            if data is None:
                data = await response.content.read()
            unread = _unpacked_unread(guard, data)
            if unread:
                return _refused(guard, "the upstream's answer cannot be checked", unread)
            # an upstream repeats its answer's head: the last one made is kept for the
            # same status, fields (the same lines) and length (this connection only)
            key = (response.status, response.reason, fields.fields, head.keep_alive, len(data))
            memo = self._answer_memo
            if memo is not None and memo[0] == key:
                wire = memo[1]
            else:
                headers = messages.relayed_headers(fields.fields)
                if not head.keep_alive:
                    headers.append(("connection", "close"))
                headers.append(("content-length", str(len(data))))
                wire = messages.response_head(response.status, response.reason or "", headers)
                self._answer_memo = (key, wire)
            guard.answer(wire, data)
            preview = self._preview_memo
            if preview is None or preview[0] != data:  # (an upstream repeats its answers)
                preview = self._preview_memo = (data, _preview(data))
            return response.status, len(data), {}, preview[1]
        headers = messages.relayed_headers(fields.fields)
        reason = response.reason or ""
        head_counts: dict[str, int] = {}
        if masker is not None:
            # the head says what the body would (a Location with the customer's e-mail, a
            # header named after a field): masked as the body is; the reason phrase, the
            # server's own text, is the standard one
            headers, head_counts = masked_headers(masker, headers)
            reason = ""
        mask = None
        if masker is not None and not bodyless:
            # an allow-list: only what the masker reads goes; anything else with a body
            # (no type, two, binary, multipart, unknown) is withheld (BodyMask refuses it)
            kind, shown = answer_kind(fields.getall("content-type"))
            ranges = fields.getall("content-range")
            if any(r.strip().lower().startswith("bytes") for r in ranges) or (
                response.status == 206 and kind != "json"
            ):
                # a part of a representation (a range of its bytes the upstream chose to
                # send, though the proxy asked for none: a bare value cut out of its
                # field) is masked as nothing: only whole answers are read (a page of
                # rows, PostgREST's `Content-Range: 0-24/100`, is a whole JSON document)
                return _refused(
                    guard, "response cannot be masked", "a part of a representation (206)"
                )
            if kind == "unreadable":
                return _refused(
                    guard, "response cannot be masked", "text in a charset the masks cannot read"
                )
            # (the columns an answer this request follows named: a next page, a statement's
            # chunks, rows beside their schema call; and those its head names)
            asked = http_asked(request.target.path, request.target.query, request.body)
            mask = BodyMask(
                masker,
                kind,
                media=shown,
                path=request.target.path,
                tables=request.agent.tables.view(asked),
                columns=header_columns([(f[2], f[3]) for f in fields.fields]),
                csv_header=csv_header(fields.getall("content-type")),
            )
            mask.counts.update(head_counts)
        if not head.keep_alive:
            headers.append(("connection", "close"))
        if masker is not None or decoder is not None:
            # what described the upstream's bytes does not describe the masked ones
            headers = messages.undescribed_headers(headers)
        if decoder is not None:
            headers = messages.decoded_headers(headers)
        body = response.content.iter_any()
        if decoder is not None:
            body = decoded(body, decoder)
        if bodyless:
            if length is not None and masker is None:  # a masked body's length is not known
                headers.append(("content-length", length))
            guard.write_head(messages.response_head(response.status, reason, headers), final=True)
            return response.status, 0, head_counts, ""
        short = length is not None and length.isdigit() and int(length) <= WHOLE
        if mask is not None and (not mask.streams or short):
            # a document, or a short stream: masked whole and checked before its head goes
            try:
                parts: list[bytes] = []
                size = fed = 0
                async for data in body:
                    fed += len(data)
                    piece = await _masked(mask, data)
                    size += len(piece)
                    if size > MAX_MASKED_DOCUMENT:
                        raise Unmaskable("the response is larger than this proxy masks whole")
                    parts.append(piece)
                if fed >= MASKED_IN_THREAD:
                    parts.append(await asyncio.to_thread(mask.finish))
                else:
                    parts.append(mask.finish())
                out = b"".join(parts)
            except (Unmaskable, Undecodable) as exc:
                return _refused(guard, "response cannot be masked", str(exc))
            headers.append(("content-length", str(len(out))))
            guard.answer(messages.response_head(response.status, reason, headers), out)
            return response.status, len(out), dict(mask.counts), _preview(out)
        if (
            mask is None
            and decoder is not None
            and length is not None
            and length.isdigit()
            and int(length) <= WHOLE
        ):
            # short and coded: decoded whole (within the same bound) and checked
            # before its head goes, as a short plain body is
            coded = await response.content.read()
            try:
                data = decode_whole(decoder.applied, coded, WHOLE)
            except Undecodable as exc:
                return _refused(guard, "the upstream's answer cannot be checked", str(exc))
            unread = _unpacked_unread(guard, data) if len(data) <= WHOLE else ""
            if unread:
                return _refused(guard, "the upstream's answer cannot be checked", unread)
            if len(data) <= WHOLE:
                headers.append(("content-length", str(len(data))))
                guard.answer(messages.response_head(response.status, reason, headers), data)
                return response.status, len(data), {}, _preview(data)
            body = decoded(_replay(coded), ContentDecoder(decoder.applied))
        if (
            mask is None
            and decoder is None
            and length is not None
            and length.isdigit()
            and int(length) <= WHOLE
        ):
            # (under a mask verdict, a body that is not masked: its digests dropped above)
            data = await response.content.read()
            unread = _unpacked_unread(guard, data)
            if unread:
                return _refused(guard, "the upstream's answer cannot be checked", unread)
            headers.append(("content-length", str(len(data))))
            guard.answer(messages.response_head(response.status, reason, headers), data)
            return response.status, len(data), {}, _preview(data)
        if mask is None and guard.patterns:
            # a compressed file is held whole and opened before its head goes; a body of
            # known length (a download) is sniffed as far as a tar archive's mark, a
            # stream for its first bytes only (a longer wait would hold its pauses up)
            known = length is not None and length.isdigit()
            opening, body = await _peeked(body, TAR_SNIFFED if known else SNIFFED)
            if packed_kind(opening):
                try:
                    data = await _held(body, PACKED_LIMIT)
                except Unopenable as exc:
                    return _refused(guard, "the upstream's answer cannot be checked", str(exc))
                unread = _unpacked_unread(guard, data)
                if unread:
                    return _refused(guard, "the upstream's answer cannot be checked", unread)
                headers.append(("content-length", str(len(data))))
                guard.answer(messages.response_head(response.status, reason, headers), data)
                return response.status, len(data), {}, _preview(data)
        chunked = mask is not None or decoder is not None or length is None
        if chunked:
            if head.version == "HTTP/1.0":
                if head.keep_alive:
                    headers.append(("connection", "close"))
                chunked = False
            else:
                headers.append(("transfer-encoding", "chunked"))
        else:
            headers.append(("content-length", str(length)))
        guard.write_head(messages.response_head(response.status, reason, headers), chunked)
        sent = 0
        first = bytearray()
        try:
            async for chunk in _held_timed(body, mask):
                data = chunk or b""
                if mask is not None:
                    data = await _masked(mask, data) if chunk is not None else mask.flush_held()
                if not data:
                    continue
                sent += len(data)
                if len(first) < RECORDED_BODY:
                    first += data[: RECORDED_BODY - len(first)]
                guard.write(data)
                await self.io.drain()
            if mask is not None:
                tail = mask.finish()
                sent += len(tail)
                guard.write(tail)
        except Unmaskable:
            # the client sees the body end early; what the guard still holds is dropped
            self.must_close = "unmaskable_stream"
            return response.status, sent, dict(mask.counts) if mask else {}, ""
        except Undecodable:
            self.must_close = "undecodable_body"
            return response.status, sent, dict(mask.counts) if mask else {}, ""
        except UpstreamCut:
            self.must_close = "upstream_cut"
            return response.status, sent, {}, ""
        guard.flush()
        if not chunked and length is None:
            self.must_close = "close_delimited"  # the end of the body is the connection's
        counts = dict(mask.counts) if mask is not None else {}
        return response.status, sent, counts, _preview(bytes(first))


async def _held_timed(
    body: AsyncIterator[bytes], mask: BodyMask | None
) -> AsyncIterator[bytes | None]:
    """body's chunks, and None whenever the events the mask holds are due to go before the
    next chunk comes (BodyMask.due: a live stream's pause). The read of the next chunk
    is waited on, never cancelled (a cancelled read would end the body)."""
    if mask is None:
        async for data in body:
            yield data
        return
    chunks = aiter(body)
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(chunks))
            done, _ = await asyncio.wait({pending}, timeout=mask.due())
            if not done:
                yield None
                continue
            try:
                data = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield data
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


def _dashed(name: str) -> str:
    return name.replace("_", "-") if "_" in name else name


async def decoded(body: AsyncIterator[bytes], decoder: ContentDecoder) -> AsyncIterator[bytes]:
    """A compressed body's chunks as decoded pieces (Undecodable when its bytes are not
    what its coding says, or it ends early)."""
    async for data in body:
        for piece in decoder.feed(data):
            yield piece
    for piece in decoder.finish():
        yield piece


def _refused(guard: ResponseGuard, title: str, detail: str) -> tuple[int, int, dict[str, int], str]:
    """A 502 problem in place of an answer of which nothing has gone yet; relay_response's
    result for it."""
    refusal = messages.problem(502, title, detail)
    guard.write(refusal, final=True)
    # (the recording shows the problem the client got: what was withheld, and why)
    return 502, 0, {}, _preview(refusal.partition(b"\r\n\r\n")[2])


async def _replay(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _unpacked_unread(guard: ResponseGuard, data: bytes) -> str:
    """Why a body that is a compressed file cannot be passed on unread ("" when it is
    none, or what it holds has no credential): CredentialInResponse when it holds it."""
    if not guard.patterns or not packed_kind(data):
        return ""
    try:
        check_unpacked(guard.patterns, data)
    except Unopenable as exc:
        return str(exc)
    return ""


async def _peeked(body: AsyncIterator[bytes], size: int) -> tuple[bytes, AsyncIterator[bytes]]:
    """(the first `size` bytes of body or all of a shorter one, body from its start)."""
    first = bytearray()
    async for data in body:
        first += data
        if len(first) >= size:
            break
    return bytes(first[:size]), _chained(bytes(first), body)


async def _chained(data: bytes, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if data:
        yield data
    async for more in body:
        yield more


async def _held(body: AsyncIterator[bytes], limit: int) -> bytes:
    """All of body, or Unopenable past `limit` bytes."""
    out = bytearray()
    async for data in body:
        out += data
        if len(out) > limit:
            raise Unopenable("a compressed file larger than the proxy opens")
    return bytes(out)


def _preview(data: bytes) -> str:
    text = data[:RECORDED_BODY].decode("utf-8", "replace")
    return text + ("…" if len(data) > RECORDED_BODY else "")


async def _masked(mask: BodyMask, data: bytes) -> bytes:
    """mask.feed(data), in a thread when data is long (MASKED_IN_THREAD)."""
    if len(data) >= MASKED_IN_THREAD:
        return await asyncio.to_thread(mask.feed, data)
    return mask.feed(data)
