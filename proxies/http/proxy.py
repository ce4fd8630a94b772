"""The HTTP proxy's asyncio side: a reverse proxy in front of one upstream, every request
decided.

Stands on the runtime (proxies.runtime): its Listener accepts, ProxySession is an agent's
session (one per bearer token per connection, kept open while requests come within
`session_idle_seconds`, so a replay groups an agent's calls; closed when idle or at
stop), ClientOutput is the one writer of bytes to a client. Requests are read by the
sans-IO codec (proxies/http/codec.py: strict, anything ambiguous is a 400 and nothing is
forwarded), their targets normalised once (proxies/http/target.py) — the form decided is
the form forwarded — and each is decided as `http.request` (`http.upgrade` for a
WebSocket). allow → forwarded with aiohttp (TLS verified unless `upstream_tls_verify:
false`), the upstream credential injected as a header or a query parameter; mask → JSON
masked per document, NDJSON per line, SSE per event (proxies/http/bodies.py), other
bodies streamed untouched; deny → 403 problem+json; require_approval → 202 with the
approval id, `Location` to poll (`/.well-known/portcullis/approvals/{id}` on this proxy)
and `Retry-After`, or held up to `Prefer: wait=N`; the PDP unable to decide → 503.

Forwarding and the answers back are forwarding.py's (UpstreamExchange, which
ClientConnection is); the upstream credential never reaches the client: every byte of a
response goes through guard.py's ResponseGuard, which checks it before it is written; a
response carrying it is cut (502 before its head, a closed connection after).

MCP seam (proxies/http/mcp.py): on a connection with `mcp: true` (or of type `mcp`),
`ClientConnection.mcp_exchange` takes each request once it is read and its session open,
instead of the http.request decision: the proxy's one `McpExchange` answers it (`Reply`)
or says what goes upstream (`Forward.body`); the upstream's status, headers (hop-by-hop
and Content-Length removed) and body chunks go through `Forward.response`, and the
`Reply` it makes is written back through the same credential guard (`write_reply`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from yarl import URL

from portcullis.config import Config, ConnectionSettings
from portcullis.http_target import Target, TargetRefused, normalise
from portcullis.masking import masking_key
from portcullis.protocols import workers_of
from portcullis.reuse import reuse_key
from portcullis.token_text import token_key
from portcullis.verdict import VerdictKind
from proxies.http import carried, messages, request_words
from proxies.http.client_io import ClientIO
from proxies.http.codec import END, BadRequest, Body, End, Event, Head, RequestReader
from proxies.http.codings import ContentDecoder, Undecodable, codings
from proxies.http.forwarding import UpstreamExchange, decoded
from proxies.http.guard import CredentialInResponse, secret_patterns
from proxies.http.table_memory import TableMemory
from proxies.http.upstream import UpstreamPool, request_head
from proxies.http.websocket import relay_websocket
from proxies.runtime.drain import SHUTDOWN_MESSAGE
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.listener import Listener
from proxies.runtime.pdp_client import Ruling, SessionRefused
from proxies.runtime.session import ProxyRuntime, ProxySession

if TYPE_CHECKING:
    from proxies.http.mcp import McpExchange

log = logging.getLogger("portcullis.http")

READ_SIZE = 256 * 1024
HEAD_TIMEOUT = 60.0  # a kept-alive connection with no new request for this long is closed
BODY_TIMEOUT = 300.0  # a request body still arriving after this long ends its connection
IDLE_SESSION = 300.0
POLL_PREFIX = "/.well-known/portcullis/approvals/"
# a request body past this is read for the policy (decoded, its words: up to about a
# second of CPU for 8 MiB) in a thread, not on the loop that serves every other session
READ_ON_LOOP = 64 * 1024
END_SECONDS = 10.0  # an evicted MCP session's DELETE upstream is waited for this long
# the proxy's own resources/templates/list before a first read (_ask_templates)
TEMPLATES_ID = "portcullis-resource-templates"
TEMPLATES_SECONDS = 10.0
TEMPLATES_BYTES = 1024 * 1024
STALE = "no longer open at the policy decision point"  # pdp_client's reason for it


def _no_shape(raw: str) -> str | None:
    return None


@dataclass
class AgentSession:
    """One bearer token's session on this connection, shared by its requests."""

    session: ProxySession
    key: str = ""  # its token's SHA-256, what HttpProxy.sessions files it under
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    # the connections answering one of its requests now (a WebSocket, a stream, a wait)
    answering: set[ClientConnection] = field(default_factory=set, repr=False)
    # the end of what the session was granted (its token's expiry, a grant's window)
    ends: asyncio.Future[str] | None = field(default=None, repr=False)
    _patterns: tuple[bytes, ...] | None = field(default=None, repr=False)
    # the columns of tables its answers named, by the request each answered: a later
    # page of rows without names is masked under them (table_memory, bodies.BodyMask)
    tables: TableMemory = field(default_factory=TableMemory, repr=False)

    def disarm(self) -> None:
        """The session closes for another reason: its end no longer has anything to do."""
        if self.ends is not None:
            self.ends.cancel()

    @property
    def patterns(self) -> tuple[bytes, ...]:
        """The forms of the session's credential a response is checked for (made once)."""
        if self._patterns is None:
            lease = self.session.lease
            self._patterns = secret_patterns(lease.secrets() if lease is not None else [])
        return self._patterns


def _body_words(head: Head, inspected: bytes, readable: bool) -> dict[str, Any]:
    """The policy's view of a body it is not shown as a value: body_words (its distinct
    runs of words: request_words.body_runs), or body_unread (kind and why: a content
    coding not undone within bounds, a binary body, too many words)."""
    if not readable:
        why = "a content coding the proxy cannot undo within its bounds"
        return {"body_unread": {"kind": "coding", "why": why}}
    charset = request_words.foreign_charset(head.get("content-type") or "", inspected)
    if charset is not None:
        # (read as UTF-8, `+AHA-hone` names nothing; its upstream may read it as UTF-7)
        why = f"a body in the {charset} charset, which its words are not read in"
        return {"body_unread": {"kind": "undecoded", "why": why}}
    try:
        return {"body_words": request_words.body_runs(messages.media_type(head), inspected)}
    except request_words.Unread as unread:
        return {"body_unread": {"kind": unread.kind, "why": unread.why}}


def _coded_words(target: Target, query: dict[str, Any], body: Any) -> dict[str, Any]:
    """The policy's view of what the request carries in base64 (coded_words: the runs of
    words of each query name or value, path segment, or string of a body shown as a value
    that is base64 as a whole and decodes to text; request_words.coded_runs), which
    http.rego reads for a masked field's name as it reads the plain ones. Empty when
    there is none; body_unread (size) when there are too many words to hand on."""
    texts = [segment for segment in target.path.split("/") if len(segment) >= 6]
    if query:
        texts.extend(_strings(query))
        if "+" in target.query:
            # (a `+` read as base64's own letter, not as a space)
            texts.extend(unquote(pair, errors="replace") for pair in re.split("[&=]", target.query))
    if body is not None:
        texts.extend(_strings(body))
    try:
        runs = request_words.coded_runs(texts)
    except request_words.Unread as unread:
        return {"body_unread": {"kind": unread.kind, "why": unread.why}}
    return {"coded_words": runs} if runs else {}


def _strings(value: Any) -> list[str]:
    """Every key and string of a JSON value (or a query's name → value), however deep."""
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)  # (JSON's own types: no subclass)
        if kind is str:
            if len(item) >= request_words.MIN_CODED:
                out.append(item)
        elif kind is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return out


def _read_aside(request: Request) -> bool:
    """Whether the request's body is read for the policy in a thread: past READ_ON_LOOP,
    or content-coded (a few KiB of gzip are up to INSPECTED_CODED bytes decoded)."""
    body = request.body
    return len(body) > READ_ON_LOOP or (bool(body) and "content-encoding" in request.head.fields)


def _told_nothing(text: str) -> None:
    """An HTTP session has no channel of its own to say why it ends: each connection
    answering one of its requests is closed (HttpProxy._session_ended), and a next
    request is refused by the PDP, saying so."""


@dataclass
class Request:
    """One request as read and normalised; what the MCP exchange is handed."""

    head: Head
    target: Target
    body: bytes
    token: str
    agent: AgentSession

    @property
    def session(self) -> ProxySession:
        return self.agent.session


class HttpProxy:
    """One listening HTTP proxy for one configured connection."""

    def __init__(
        self,
        connection: ConnectionSettings,
        config: Config,
        pdp_address: str,
        runtime: ProxyRuntime | None = None,
    ) -> None:
        self.connection = connection
        options = connection.options
        # the launcher's (over the process's PDP client), or one of its own when built alone
        self.runtime = runtime or ProxyRuntime.standalone(connection, config, pdp_address)
        self.listener = Listener(
            f"http proxy {connection.name}",
            connection.listen,
            None,
            self._server_tls(),
            # several worker processes share the port; each keeps its own sessions, so a
            # token's requests on other connections may open a session per worker
            reuse_port=workers_of(options) > 1,
            # the client's bytes are read by a ClientIO (proxies/http/client_io.py) put on
            # the accepted transport, not through a stream reader
            take_transport=self._serve,
        )
        self.upstream = URL(connection.upstream.rstrip("/"))
        self.base_path = self.upstream.raw_path.rstrip("/")  # what each target goes under
        if self.upstream.scheme not in ("http", "https") or not self.upstream.host:
            raise ValueError(f"connection {connection.name}: upstream must be an http(s) URL")
        self.hash_key = masking_key(config.masking_hash_key, connection.name)
        self.idle_seconds = float(options.get("session_idle_seconds", IDLE_SESSION))
        self.mcp: McpExchange | None = None
        if options.get("mcp") or connection.type == "mcp":
            from proxies.http.mcp import McpExchange  # loaded only where MCP is served

            self.mcp = McpExchange(self.hash_key, max_wait=config.approvals.timeout_seconds)
        self.verify_tls = bool(options.get("upstream_tls_verify", True))
        self.ca_file = options.get("upstream_ca_file")
        self.sessions: dict[str, AgentSession] = {}
        # where an approver's tool decides requests (the PDP's HTTP API): POST .../{id}/approve
        listen = config.pdp.http_listen
        self.approvals_api = f"http://{listen}/v1/approvals" if listen else ""
        self._opening: dict[str, asyncio.Future[AgentSession]] = {}
        self._closing: set[asyncio.Future[None]] = set()  # sessions ended by their token
        # what a poll URL's `for` is keyed with (this process's own: a session is too)
        self._poll_key = os.urandom(32)
        self.pool: UpstreamPool | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        return self.listener.port

    def _server_tls(self) -> ssl.SSLContext | None:
        options = self.connection.options
        cert, key = options.get("tls_cert_file"), options.get("tls_key_file")
        if not cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        return context

    def upstream_tls(self) -> ssl.SSLContext | bool:
        if self.upstream.scheme != "https":
            return False
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def start(self) -> None:
        await self.runtime.start()
        tls = self.upstream_tls()
        self.pool = UpstreamPool(
            self.upstream.host or "",
            self.upstream.port or (443 if tls else 80),
            tls if isinstance(tls, ssl.SSLContext) else None,
        )
        await self.listener.start()
        self._reaper = asyncio.ensure_future(self._reap())
        log.info(
            "http proxy %s on %s:%d → %s",
            self.connection.name,
            self.listener.host,
            self.port,
            self.upstream,
        )

    async def drain(self, grace: float) -> None:
        """SIGTERM: accept no more; idle keep-alive connections close, a request in flight
        is answered (its connection then closes), a request arriving meanwhile gets 503
        with Connection: close; after `grace` seconds the rest end (proxies.runtime.drain)."""
        self.listener.close()
        await self.runtime.drain_sessions(self.listener.clients, grace, self.listener.name)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.listener.stop()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for agent in self.sessions.values():
            agent.disarm()
        self.sessions.clear()
        await self.runtime.stop()  # closes every open session
        if self.pool is not None:
            await self.pool.close()

    async def _reap(self) -> None:
        """Close sessions nobody used for idle_seconds (none with a request in flight)."""
        while True:
            await asyncio.sleep(min(self.idle_seconds / 2, 5.0))
            now = time.monotonic()
            for key, agent in list(self.sessions.items()):
                if agent.in_flight == 0 and now - agent.last_used >= self.idle_seconds:
                    self.sessions.pop(key, None)
                    agent.disarm()
                    await asyncio.shield(agent.session.close("idle_timeout"))

    async def session_for(self, token: str, client_addr: str, client: str) -> AgentSession:
        """The token's open session, or a new one (raises SessionRefused)."""
        key = token_key(token)  # an ECDSA token's twin is the same token
        agent = self.sessions.get(key)
        if agent is not None and agent.session.grant is not None:
            return agent
        opening = self._opening.get(key)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[AgentSession] = asyncio.get_running_loop().create_future()
        self._opening[key] = future
        try:
            session = ProxySession(self.runtime, client_addr, client[:256])
            await session.open(token)
            agent = AgentSession(session, key)
            agent.ends = session.grant_expiry(_told_nothing)
            if agent.ends is not None:
                agent.ends.add_done_callback(functools.partial(self._session_ended, agent))
            self.sessions[key] = agent
            future.set_result(agent)
            return agent
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else need be waiting
            raise
        finally:
            self._opening.pop(key, None)

    async def reopen(self, agent: AgentSession, token: str, client_addr: str) -> AgentSession:
        """A new session for a token whose session the PDP ended."""
        self.forget(agent)
        agent.disarm()
        await asyncio.shield(agent.session.close("pdp_session_ended", abnormal=True))
        return await self.session_for(token, client_addr, agent.session.client)

    def holds(self, agent: AgentSession) -> bool:
        """Whether the agent's session is still this proxy's and open (what session_for
        would answer for its token)."""
        return (
            agent.session.grant is not None
            and agent.key in self.sessions
            and (self.sessions[agent.key] is agent)
        )

    def poll_tag(self, approval_id: str, agent: AgentSession) -> str:
        """What binds an approval's poll URL to the session, and so the token, it was made
        for: only that token's requests on this proxy can read the request's state."""
        bound = f"{approval_id}\0{agent.key}\0{agent.session.id}".encode("utf-8", "replace")
        return hmac.new(self._poll_key, bound, hashlib.sha256).hexdigest()[:32]

    def _session_ended(self, agent: AgentSession, ends: asyncio.Future[str]) -> None:
        """The session's token expired or its grant ran out: what its requests still hold
        open (a WebSocket, a stream, an approval wait) is cut, and the session closed; a
        next request with the token opens a session anew, which the PDP refuses."""
        if ends.cancelled():
            return
        reason = ends.result() if ends.exception() is None else "grant_expired"
        if self.sessions.get(agent.key) is agent:
            self.sessions.pop(agent.key, None)
        for connection in list(agent.answering):
            connection.transport.close()
        if agent.session.grant is not None:
            closing = asyncio.ensure_future(agent.session.close(reason))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    def forget(self, agent: AgentSession) -> None:
        for key, known in list(self.sessions.items()):
            if known is agent:
                self.sessions.pop(key, None)

    def _serve(self, transport: asyncio.Transport) -> tuple[ClientIO, Coroutine[Any, Any, None]]:
        """An accepted connection: the ClientIO that reads it and the coroutine serving it
        (the drain's own, not one awaiting it: a frame less each time its task resumes)."""
        connection = ClientConnection(self, transport)
        return connection.io, self.runtime.drain.serving(connection)


class ClientConnection(UpstreamExchange):
    """One client TCP connection: its requests, one after another."""

    def __init__(self, proxy: HttpProxy, transport: asyncio.Transport) -> None:
        self.proxy = proxy
        over_ssl = transport.get_extra_info("sslcontext") is not None
        self.io = ClientIO(transport, over_ssl)  # what the client sends, read
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.client_ip = str(peer[0])
        self.client_addr = f"{peer[0]}:{peer[1]}"
        self.scheme = "https" if over_ssl else "http"
        self.output = ClientOutput(transport.write)
        self.codec = RequestReader()
        self._events: collections.deque[Event] = collections.deque()
        self._guarded: list[str] = []
        self.must_close = ""  # why the connection ends after this response ("": it need not)
        self._eof = False
        self._answering: int | None = None  # output.sent when the request in hand was read
        # the read in progress must end by this loop time (0: no read is timed); one timer
        # per connection, re-armed only when it fires early, instead of a timeout per read
        self._loop = asyncio.get_running_loop()
        self._deadline = 0.0
        self._watch: asyncio.TimerHandle | None = None
        # the token of the last request and its session: a client repeats its token, and
        # its session is then found without hashing it again
        self._token = ""
        self._agent: AgentSession | None = None
        self._guarded_lease: object = None  # the lease whose secrets output.guard watches
        # what the last head (the codec hands the same object for the same bytes) reads as:
        # (head, target, token, why no token) and (head, raw, attributes, reuse key)
        self._read_memo: tuple[Head, Target, str, str] | None = None
        self._command_memo: tuple[Head, str, dict[str, Any], str] | None = None

    # -- reading -------------------------------------------------------------------------

    async def _next(self) -> Event | None:
        while not self._events:
            if self._eof:
                return None
            data = await self.io.read(READ_SIZE)
            if not data:
                self._eof = True
                return None
            self._events.extend(self.codec.feed(data))
        return self._events.popleft()

    async def _body(self, head: Head) -> bytes | None:
        """The whole body (bounded by the codec); None when the client went away."""
        events = self._events
        if events and events[0] is END and "expect" not in head.fields:
            # no body: its end came with the head, nothing to wait for
            events.popleft()
            events.extend(self.codec.next_request())
            return b""
        expect = head.get("expect")
        if expect is not None:
            if expect.strip().lower() != "100-continue":
                raise BadRequest("an Expect the proxy does not meet", 417)
            if head.chunked or head.content_length:
                self.output.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        parts: list[bytes] = []
        while True:
            event = await self._next()
            if event is None:
                return None
            if isinstance(event, End):
                self._events.extend(self.codec.next_request())
                return b"".join(parts)
            if isinstance(event, Body):
                parts.append(event.data)

    # -- the connection ----------------------------------------------------------------------

    def _read_within(self, seconds: float) -> None:
        """The read that follows must end within `seconds`, else the connection ends."""
        self._deadline = self._loop.time() + seconds
        if self._watch is None:
            self._watch = self._loop.call_at(self._deadline, self._watchdog)

    def _watchdog(self) -> None:
        """A timed read ran out: the connection is closed under it (its reader sees the
        end, and nothing more is read or answered); a deadline moved later re-arms."""
        self._watch = None
        if not self._deadline:
            return
        if self._loop.time() < self._deadline:
            self._watch = self._loop.call_at(self._deadline, self._watchdog)
            return
        self._eof = True
        self.transport.close()

    async def run(self) -> None:
        try:
            while True:
                try:
                    self._read_within(HEAD_TIMEOUT)
                    event = await self._next()
                    if event is None:
                        return
                    assert isinstance(event, Head)
                    events = self._events
                    if events and events[0] is END and "expect" not in event.fields:
                        # no body: its end came with the head, nothing to wait for
                        events.popleft()
                        events.extend(self.codec.next_request())
                        body: bytes | None = b""
                    else:
                        self._read_within(BODY_TIMEOUT)
                        body = await self._body(event)
                    if body is None:
                        return
                except BadRequest as exc:
                    self.output.write(
                        messages.problem(exc.status, "bad request", exc.reason, close=True)
                    )
                    return
                finally:
                    self._deadline = 0.0
                if self.proxy.runtime.drain.started:
                    self._shutting_down()
                    return
                sent = self._answering = self.output.sent
                try:
                    if not await self.handle(event, body):
                        return
                except CredentialInResponse:
                    # an answer the guard cut (the proxy's own reply too: it may echo what
                    # an upstream said): when nothing of it went, the client is told so,
                    # not left with a closed connection and no answer
                    if self.output.sent == sent:
                        self.output.write(messages.problem(
                            502, "the answer cannot be passed on",
                            "it holds a piece of the upstream credential", close=True))  # fmt: skip
                    return
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    # named by type only: an upstream error can carry the URL, and with it
                    # a credential sent as a query parameter
                    log.warning("%s: request failed: %s", self.proxy.connection.name,
                                type(exc).__name__)  # fmt: skip
                    if self.output.sent == sent:
                        self.output.write(messages.problem(
                            502, "the request could not be completed", type(exc).__name__,
                            close=True))  # fmt: skip
                    return
                finally:
                    self._answering = None
                if self.transport.get_write_buffer_size():
                    await self.io.drain()  # a slow client: wait until it takes more
                if self.proxy.runtime.drain.started:
                    return  # answered; the connection ends with the drain
        except (ConnectionError, CredentialInResponse):
            return
        finally:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            self._agent = None

    def drain(self, force: bool) -> None:
        """The proxy drains (proxies.runtime.drain): a connection between requests (nothing
        of a next one read) closes now; one answering a request closes after it, or now
        when forced — with a 503 when nothing of its answer went yet."""
        if self._answering is None:
            if not self._events and not self.codec._buffer and self.codec._state == "head":
                self.transport.close()  # an idle keep-alive connection: HTTP lets it close
            elif force:
                self._shutting_down()
                self.transport.close()
            return
        if force:
            if self.output.sent == self._answering:
                self._shutting_down()
            self.transport.close()

    def _shutting_down(self) -> None:
        self.output.write(
            messages.problem(
                503,
                "service unavailable",
                f"portcullis: {SHUTDOWN_MESSAGE}",
                close=True,
                extra_headers=[("retry-after", "1")],
            )
        )

    async def handle(self, head: Head, body: bytes) -> bool:
        """Answer one request; False when the connection must end after it."""
        memo = self._read_memo
        if memo is not None and memo[0] is head:
            target, token, why = memo[1], memo[2], memo[3]
        else:
            try:
                target = normalise(head.target)
            except TargetRefused as exc:
                self.output.write(messages.problem(400, "bad request", str(exc), close=True))
                return False
            token, why = messages.bearer(head)
            self._read_memo = (head, target, token, why)
        if not token:
            self.output.write(
                messages.problem(
                    401,
                    "unauthorized",
                    why,
                    extra_headers=[("www-authenticate", "Bearer")],
                    close=not head.keep_alive,
                )
            )
            return head.keep_alive
        agent = self._agent
        if agent is None or token != self._token or not self.proxy.holds(agent):
            try:
                agent = await self.proxy.session_for(
                    token, self.client_addr, head.get("user-agent") or ""
                )
            except SessionRefused as refused:
                self.output.write(self._refusal(refused, head))
                return head.keep_alive
            self._token, self._agent = token, agent
        lease = agent.session.lease
        if lease is not None and lease is not self._guarded_lease:
            self._guarded_lease = lease  # (a lease is frozen: its secrets are its own)
            if lease.secrets() != self._guarded:
                # every byte to this client is scanned for the credential of the session it uses
                self._guarded = lease.secrets()
                self.output.guard(self._guarded)
        agent.in_flight += 1
        agent.answering.add(self)
        before = self.output.sent
        try:
            request = Request(head, target, body, token, agent)
            return await self.exchange(request)
        except BadRequest as exc:
            # a body read more than one way (messages.json_body): nothing decided or sent
            if self.output.sent != before:
                raise
            self.output.write(messages.problem(exc.status, "bad request", exc.reason, close=True))
            return False
        finally:
            agent.in_flight -= 1
            agent.answering.discard(self)
            agent.last_used = time.monotonic()
            counters = agent.session.counters
            counters["bytes_to_client"] += self.output.sent - before
            counters["credential_exposed"] = max(counters["credential_exposed"],
                                                 int(self.output.exposed))  # fmt: skip

    def _refusal(self, refused: SessionRefused, head: Head) -> bytes:
        close = not head.keep_alive
        if not refused.decision_id:
            if "unreachable" in refused.reason or "not connected" in refused.reason:
                return messages.problem(
                    503,
                    "policy decision point unavailable",
                    refused.reason,
                    close=close,
                    extra_headers=[("retry-after", "5")],
                )
            return messages.problem(
                401,
                "unauthorized",
                refused.reason,
                close=close,
                extra_headers=[("www-authenticate", "Bearer")],
            )
        return messages.problem(
            403,
            "session refused",
            refused.reason,
            close=close,
            decision_id=refused.decision_id,
            approval_id=refused.approval_id,
        )

    def exchange(self, request: Request) -> Coroutine[Any, Any, bool]:
        """What answers the request, as a coroutine for handle() to await: a reused allow or
        mask goes straight to forward_and_answer's (one frame less each time the connection's
        task resumes); anything else to _exchange's, which decides first."""
        head = request.head
        if (
            self.proxy.mcp is None
            and not head.upgrade
            and not (head.method == "GET" and request.target.path.startswith(POLL_PREFIX))
        ):
            if _read_aside(request):
                return self._exchange_read_aside(request)
            raw, attributes, key = self._command(request)
            return self._exchange_command(request, raw, attributes, key)
        return self._exchange(request)

    async def _exchange_read_aside(self, request: Request) -> bool:
        """exchange() for a body read aside (_read_aside): its reading (decoding, words, up to
        a second of CPU for 8 MiB) is done in a thread, so every other session this
        process serves is answered meanwhile."""
        raw, attributes, key = await asyncio.to_thread(self._command, request)
        return await self._exchange_command(request, raw, attributes, key)

    def _exchange_command(
        self, request: Request, raw: str, attributes: dict[str, Any], key: str
    ) -> Coroutine[Any, Any, bool]:
        """exchange() once the request's command is made."""
        session = request.session
        if not session.runtime.cache_enabled:
            # nothing is reused: decide() asks the session once (not ruling_now twice)
            return self._exchange(request, (raw, attributes, key, None))
        # a reused allow or mask needs no round trip, nor the coroutine decide() is
        known = session.ruling_now("http.request", raw, _no_shape, attributes, key)
        if known is not None and known.decision_id and known.kind <= VerdictKind.MASK:
            return self.forward_and_answer(request, raw, known)
        return self._exchange(request, (raw, attributes, key, known))

    async def _exchange(
        self,
        request: Request,
        command: tuple[str, dict[str, Any], str, Ruling | None] | None = None,
    ) -> bool:
        """exchange() for everything but a reused allow or mask (`command`: what exchange()
        made of an http.request already, and what ruling_now() said of it)."""
        head, target = request.head, request.target
        if head.method == "GET" and target.path.startswith(POLL_PREFIX):
            await self._poll(request, unquote(target.path[len(POLL_PREFIX) :]))
            return head.keep_alive
        if self.proxy.mcp is not None:
            return await self.mcp_exchange(request)
        upgrade = head.upgrade
        kind = "http.upgrade" if upgrade else "http.request"
        if upgrade:
            raw = messages.command_text(head, request.body, self.credential_header(request))
            if _read_aside(request):
                attributes = await asyncio.to_thread(self.attributes, request)
            else:
                attributes = self.attributes(request)
            attributes["upgrade"] = upgrade
            ruling = await self.decide(kind, raw, attributes, request)
        else:
            assert command is not None
            raw, attributes, key, known = command
            ruling = await self.decide(kind, raw, attributes, request, key, known)
        if ruling is None:
            return head.keep_alive
        if upgrade:
            if upgrade != "websocket":
                self.send_problem(request, 400, "bad request", "only WebSocket upgrades are served")
                return False
            await relay_websocket(self, request, raw, ruling)
            return False
        return await self.forward_and_answer(request, raw, ruling)

    async def mcp_exchange(self, request: Request) -> bool:
        """One request of an MCP connection, through the McpExchange (proxies/http/mcp.py)."""
        assert self.proxy.mcp is not None
        head = request.head
        outcome = await self.proxy.mcp.request(
            request.session,
            request.token,
            head.method,
            list(head.headers),
            request.body,
            target=request.target.forward,
            bound=messages.bound_headers(head, self.credential_header(request)),
            ask_templates=functools.partial(self._ask_templates, request),
        )
        from proxies.http.mcp import LAST_EVENT_ID, Forward

        if isinstance(outcome, Forward):
            sent = None
            if any(name.lower() == LAST_EVENT_ID for name, _ in head.headers):
                # a resumption is not asked upstream: a server's event store keys a stream
                # by the request id it answers (or `_GET_stream`), which every session's
                # client numbers alike, so a replay after an event this client was handed
                # holds another session's later events of that stream too — its server
                # messages, its answer taken for this client's request of the same id.
                # The GET opens a stream as at a server keeping no events (MCP: a server
                # MAY replay); a client resends what went unanswered
                sent = [
                    (n, v) for n, v in self.upstream_headers(request) if n.lower() != LAST_EVENT_ID
                ]
            try:
                response = await self.forward(
                    request, body=outcome.body or b"", headers=sent, masking=True
                )
            except (OSError, ssl.SSLError) as exc:
                outcome.abandon()
                request.session.record_response(kind="mcp.upstream", error=type(exc).__name__)
                self.send_problem(request, 502, "upstream unavailable", type(exc).__name__)
                return head.keep_alive
            try:
                headers = messages.response_headers(response.raw_headers)
                body = response.content.iter_any()
                applied = codings([v for n, v in headers if n.lower() == "content-encoding"])
                if applied:
                    # asked for plain, sent coded: read (masked, filtered, checked for the
                    # credential) decoded, and passed on decoded, or not at all
                    try:
                        body = decoded(body, ContentDecoder(applied))
                    except Undecodable as exc:
                        outcome.abandon()
                        request.session.record_response(kind="mcp.refused", reason=str(exc))
                        self.send_problem(
                            request, 502, "the upstream's answer cannot be checked", str(exc)
                        )
                        return head.keep_alive
                    headers = messages.decoded_headers(headers)
                reply = await outcome.response(response.status, headers, body)
                if outcome.evicted:
                    # (before the answer: its client's next request finds them ended)
                    await self._end_mcp_sessions(request, outcome.evicted)
                await self.write_reply(request, reply)
            finally:
                response.release()
        else:
            await self.write_reply(request, outcome)
        return head.keep_alive and not self.must_close

    async def _ask_templates(self, request: Request, meta: dict[str, Any]) -> list[str] | None:
        """The server's resource templates (`resources/templates/list`, its first page),
        asked by the proxy itself with the request's session id and the connection's
        credential, before a first read on a connection where none were listed: what a
        read's URI fills is decided with them (mcp_templates.py). Not shown to the client;
        None when the server does not answer one (a routing header of another method is
        not sent, nor a resumption; `meta`: the read's protocol envelope, 2026-07-28's
        reserved _meta keys); its answer must be one JSON document or an event
        stream holding it, within TEMPLATES_BYTES and TEMPLATES_SECONDS."""
        from proxies.http import mcp_codec

        dropped = ("mcp-method", "mcp-name", "last-event-id", "content-length")
        sent = [
            (n, v)
            for n, v in self.upstream_headers(request)
            if n.lower() not in dropped and not n.lower().startswith("mcp-param-")
        ]
        method = "resources/templates/list"
        if any(n.lower() == "mcp-method" for n, _ in request.head.headers):
            sent.append(("mcp-method", method))  # (2026-07-28: its routing header)
        ask: dict[str, Any] = {"jsonrpc": "2.0", "id": TEMPLATES_ID, "method": method}
        if meta:
            ask["params"] = {"_meta": meta}
        try:
            async with asyncio.timeout(TEMPLATES_SECONDS):
                response = await self.forward(
                    request, body=mcp_codec.encode(ask), headers=sent, masking=True
                )
                try:
                    if response.status != 200:
                        return None
                    headers = messages.response_headers(response.raw_headers)
                    kind = mcp_codec.media_type(
                        next((v for n, v in headers if n.lower() == "content-type"), None)
                    )
                    if any(n.lower() == "content-encoding" for n, _ in headers):
                        return None
                    return await _templates_answer(kind, response.content.iter_any())
                finally:
                    response.release()
        except (TimeoutError, OSError, ssl.SSLError, ValueError, RecursionError):
            return None

    async def _end_mcp_sessions(self, request: Request, evicted: list[tuple[str, str]]) -> None:
        """MCP sessions the exchange forgot to make room for another (mcp_sessions: an
        identity's least recently used past its bound, the oldest past the proxy's) ended
        upstream as a client ends one (DELETE with its Mcp-Session-Id, on the endpoint it
        was handed out on): a server would otherwise keep them open, past the bound the
        proxy keeps, until its own idle timeout, and one that bounds its sessions (the
        SDK's max_sessions) refuses everyone's next. Not decided: the proxy's own
        housekeeping, recorded; an upstream that does not answer is left to its timeout."""
        pool = self.proxy.pool
        assert pool is not None
        lease = request.session.lease
        credential = lease.header if lease is not None and lease.value else ""
        for session_id, endpoint in evicted:
            path, _, query = endpoint.partition("?")
            sent = [("host", self.proxy.upstream.raw_authority), ("mcp-session-id", session_id)]
            if credential and lease is not None and not lease.extra.get("query"):
                prefix = str(self.proxy.connection.credentials.get("prefix", ""))
                sent.append((credential, prefix + lease.value))
            target = self.upstream_target(request, Target(path, query))
            wire = request_head("DELETE", target, sent, None)
            try:
                response = await asyncio.wait_for(pool.send("DELETE", wire, False), END_SECONDS)
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                request.session.record_response(kind="mcp.evicted", error=type(exc).__name__)
                continue
            response.release()
            request.session.record_response(kind="mcp.evicted", status=response.status)

    def _command(self, request: Request) -> tuple[str, dict[str, Any], str]:
        """An http.request's command text, attributes and reuse key: made once for a head
        a client repeats without a body (all three are functions of the head alone then);
        the attributes are never changed once made."""
        head = request.head
        memo = self._command_memo
        if memo is not None and memo[0] is head and not request.body:
            return memo[1], memo[2], memo[3]
        raw = messages.command_text(head, request.body, self.credential_header(request))
        attributes = self.attributes(request)
        key = reuse_key("http.request", attributes)
        if not request.body:
            self._command_memo = (head, raw, attributes, key)
        return raw, attributes, key

    def attributes(self, request: Request) -> dict[str, Any]:
        head = request.head
        # what the upstream's framework reads: a compressed body decoded
        inspected, readable = messages.inspected_body(head, request.body)
        body, truncated = messages.policy_body(head, inspected)
        attributes: dict[str, Any] = {
            "method": head.method,
            "path": request.target.path,
            "query": request.target.query_params(),
            "headers": messages.policy_headers(head),
        }
        if body is not None:
            attributes["body"] = body
        if truncated:
            attributes["truncated"] = True
        elif body is None and request.body and readable:
            # a body the policy is not shown as a value (multipart, text, XML): its text,
            # which may name a masked field (http.rego)
            text = messages.body_text(inspected)
            if text is not None:
                attributes["body_text"] = text
        if request.body and body is None:
            # a body not shown as a value (past INSPECTED_BODY, multipart, XML, text): its
            # distinct runs of words, or why it could not be read (http.rego)
            attributes.update(_body_words(head, inspected, readable))
        if "body_unread" not in attributes:
            # (a query's or a form's `_charset_` naming UTF-7: its words are not read so)
            for part, params in (("query", attributes["query"]), ("body", body)):
                charset = request_words.charset_field(params)
                if charset is not None:
                    why = f"a {part} naming the {charset} charset, which its words are not read in"
                    attributes["body_unread"] = {"kind": "undecoded", "why": why}
                    break
        if "body_unread" not in attributes and request.target.query:
            # (a query beside a Content-Type naming UTF-7, no body read: Tomcat's
            # useBodyEncodingForURI reads the query in the body's charset)
            content_type = head.get("content-type") or ""
            if (charset := request_words.foreign_charset(content_type, b"")) is not None:
                why = f"a query sent beside {charset} content, which its words are not read in"
                attributes["body_unread"] = {"kind": "undecoded", "why": why}
        coded = _coded_words(request.target, attributes["query"], body)
        if "body_unread" in coded and "body_unread" in attributes:
            del coded["body_unread"]
        attributes.update(coded)
        if request.body and (
            not readable or messages.names_method(inspected, body, messages.is_form(head))
        ):
            # (a body the proxy cannot read may name one: judged as naming one)
            attributes["body_names_method"] = True
        if request.target.query and messages.hides_method(request.target.query):
            attributes["query_names_method"] = True
        media = messages.media_type(head)
        embedded: set[str] = set()
        if request.body and readable:
            # (requests a batch carries, a bulk's actions, a body's operations)
            embedded.update(messages.embedded_methods(inspected, body, media))
        # (a GraphQL mutation in the target's query or the body: carried.py)
        readable_body = inspected if request.body and readable else b""
        embedded |= carried.graphql_methods(attributes["query"], body, readable_body, media)
        if embedded:
            # (judged as methods of this one, http.rego)
            attributes["embedded_methods"] = sorted(embedded)
        return attributes

    # -- deciding ----------------------------------------------------------------------

    async def decide(
        self,
        kind: str,
        raw: str,
        attributes: dict[str, Any],
        request: Request,
        key: str | None = None,
        known: Ruling | None = None,
    ) -> Ruling | None:
        """The ruling to enforce, or None when the client has been answered already
        (deny, approval pending, the PDP unable to decide): recorded either way. `key`:
        reuse_key(kind, attributes), when the caller has it; `known`: what the session's
        ruling_now() answered for it just now, if anything."""
        session = request.session
        ruling = known
        if ruling is None:
            ruling = await session.decide(kind, raw, attributes, _no_shape, key)
        if not ruling.decision_id and any(STALE in r for r in ruling.verdict.reasons):
            # the PDP no longer knows this session (restarted, reaped): a new one, once
            try:
                request.agent = await self.proxy.reopen(request.agent, request.token,
                                                        self.client_addr)  # fmt: skip
            except SessionRefused as refused:
                self.write(self._refusal(refused, request.head))
                return None
            session = request.session
            ruling = await session.decide(kind, raw, attributes, _no_shape, key)
        if ruling.kind is VerdictKind.REQUIRE_APPROVAL and ruling.approval_id:
            wait = messages.prefer_wait(request.head)
            if wait:
                ruling = await self._wait_for_approval(kind, raw, attributes, ruling, wait, request)
        if ruling.kind <= VerdictKind.MASK:
            return ruling
        details = {"kind": kind, "method": request.head.method, "path": request.target.path,
                   "request_bytes": len(request.body)}  # fmt: skip
        if ruling.kind is VerdictKind.REQUIRE_APPROVAL:
            session.record_command(
                raw, ruling, status=202, approval_id=ruling.approval_id, **details
            )
            self._approval_pending(request, ruling)
            return None
        if ruling.kind is VerdictKind.DENY:
            status = 403 if ruling.decision_id else 503
            session.record_command(raw, ruling, status=status, **details)
            if status == 503:
                self.send_problem(
                    request,
                    503,
                    "policy decision point unavailable",
                    "; ".join(ruling.verdict.reasons),
                    extra_headers=[("retry-after", "5")],
                )
            else:
                self.send_problem(
                    request,
                    403,
                    "forbidden by policy",
                    "; ".join(ruling.verdict.reasons),
                    reasons=list(ruling.verdict.reasons),
                    decision_id=ruling.decision_id,
                    approval_id=ruling.approval_id,
                )
            return None
        return ruling

    async def _wait_for_approval(
        self,
        kind: str,
        raw: str,
        attributes: dict[str, Any],
        ruling: Ruling,
        wait: int,
        request: Request,
    ) -> Ruling:
        """Prefer: wait=N — hold the request until the approval is decided or N runs out
        (still pending: the 202 follows)."""
        session = request.session
        assert session.grant is not None
        limit = min(float(wait), session.runtime.approval_timeout)
        approval = await session.runtime.pdp.await_approval(
            session.grant.session_id, ruling.approval_id, max(limit, 1.0)
        )
        state = approval.state if approval is not None else "pending"
        if state == "approved":
            return await session.decide(kind, raw, attributes, None)
        if state == "pending":
            return ruling
        who = f" by {approval.approver}" if approval is not None and approval.approver else ""
        why = approval.decision_reason if approval is not None else ""
        from portcullis.verdict import Verdict

        return Ruling(
            Verdict.deny(
                f"approval request {ruling.approval_id} {state}{who}" + (f": {why}" if why else "")
            ),
            ruling.decision_id,
            ruling.policy_revision,
            approval_id=ruling.approval_id,
        )

    def _approval_pending(self, request: Request, ruling: Ruling) -> None:
        approval_id = ruling.approval_id
        tag = self.proxy.poll_tag(approval_id, request.agent)
        location = f"{POLL_PREFIX}{quote(approval_id, safe='')}?for={tag}"
        headers = [("location", location), ("retry-after", "5")]
        if messages.prefer_wait(request.head):
            headers.append(("preference-applied", f"wait={messages.prefer_wait(request.head)}"))
        self.send_problem(
            request,
            202,
            "approval required",
            "; ".join(ruling.verdict.reasons),
            extra_headers=headers,
            approval_id=approval_id,
            decision_id=ruling.decision_id,
            approve=f"portcullis approvals approve {approval_id} --reason '...'",
            approve_api=self.proxy.approvals_api and f"{self.proxy.approvals_api}/{approval_id}",
            retry="send the same request again once the approval is granted",
        )

    async def _poll(self, request: Request, approval_id: str) -> None:
        """GET /.well-known/portcullis/approvals/{id}?for=...: the request's state, for the
        session (and token) it was made for — `for` is that binding (poll_tag); any other
        token, or none, learns nothing of it (404, the PDP not asked)."""
        session = request.session
        assert session.grant is not None
        given = request.target.query_params().get("for")
        expected = self.proxy.poll_tag(approval_id, request.agent)
        approval = None
        if isinstance(given, str) and hmac.compare_digest(given, expected):
            approval = await session.runtime.pdp.await_approval(
                session.grant.session_id, approval_id, 1.0
            )
        if approval is None:
            self.send_problem(request, 404, "no such approval request for this session")
            return
        data = json.dumps(
            {
                "approval": {
                    "id": approval.id,
                    "state": approval.state,
                    "approver": approval.approver,
                    "reason": approval.decision_reason,
                }
            }
        ).encode()
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("cache-control", "no-store"),
        ]
        if approval.state == "pending":
            headers.append(("retry-after", "5"))
        self.write(messages.response_head(200, "", headers) + data)


async def _templates_answer(kind: str, chunks: Any) -> list[str] | None:
    """The templates of the answer to the proxy's own resources/templates/list: a JSON
    document, or the event of an event stream holding it (TEMPLATES_BYTES at most)."""
    from proxies.http import mcp_codec

    reader = mcp_codec.SseReader() if kind == "text/event-stream" else None
    if reader is None and kind != "application/json":
        return None
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) > TEMPLATES_BYTES:
            return None
        for event in reader.feed(chunk) if reader is not None else ():
            found = _templates_of(event.data.encode())
            if found is not None:
                return found
    return _templates_of(body) if reader is None else None


def _templates_of(data: bytes) -> list[str] | None:
    from proxies.http import mcp_codec

    if not data.strip():
        return None
    messages_ = mcp_codec.response_messages(mcp_codec.loads(data, TEMPLATES_BYTES))
    for message in messages_ or ():
        if message.get("id") == TEMPLATES_ID and "result" in message:
            return mcp_codec.listed(message["result"], "resources/templates/list")
    return None
