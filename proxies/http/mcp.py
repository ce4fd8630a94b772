"""The MCP exchange: every JSON-RPC message of an `mcp: true` connection decided one by one.

Owns what the HTTP proxy does differently on an MCP connection (MCP Transports →
Streamable HTTP): it hands each client request to `McpExchange.request`, which either
answers it itself (`Reply`: a refusal, a denial, nothing forwarded) or says what to send
upstream (`Forward`: the body re-serialised from what was decided); the upstream answer
then goes through `Forward.response`, which binds session ids to their owner and, where a
verdict asks for it, masks tool results and filters `tools/list` answers — a JSON answer
as one document, an event stream one event at a time.

- Each message is the command `mcp.call` (the PDP builds `input.command.mcp` from its raw
  text, which names the endpoint — path and query — it was posted to, so no other path of
  the server is reachable; a GET opening the server's stream and a DELETE ending a session
  are decided too): deny → a JSON-RPC error with the request's id and the policy's reasons (code
  DENIED), which the agent's SDK raises as the tool call's error; require_approval → with
  `Prefer: wait=N` (RFC 7240) the request is held until a person decides or N runs out,
  else a JSON-RPC error carrying the approval id (code APPROVAL_REQUIRED); a batch goes
  upstream only when every message in it may.
- `tools/list` answers list only the tools the policy would let this client call (the PDP
  is asked per tool, `listing: true`), so an agent never sees a tool it may not call.
- `Mcp-Session-Id`s belong to the token they were handed to (mcp_sessions.py).
- The resource templates a server lists are remembered per connection (mcp_templates.py):
  a resources/read or subscribe is decided with the variables of those its URI fills
  (`customers://{email}` read filled in is a lookup by email); where none were listed
  yet, the server is asked for them before the first read (`ask_templates`).
- A client's answer to the server's own request (an elicitation, a sampling) is decided
  with the tools the session's calls in flight ran when the request reached the client
  (`during`): what a write tool asks its user is what it then acts on, as its arguments.
- Fail closed on the way back: an answer that must be read (masked, a tool list) and
  cannot be is replaced by a JSON-RPC error; an answer to no request of the session is
  dropped; while such an answer is owed, every stream of the session is read.

The wire format is mcp_codec.py's (no IO there); this module is the asyncio glue between
it, the runtime's session (decisions, recording) and the proxy's HTTP connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import csv
import json
import os
import re
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from portcullis.masking import Masker, MaskingError, scan_budget
from portcullis.mcp import FIELD_NAMING_WORDS, TEMPLATE_FILLED_METHODS
from portcullis.verdict import Verdict, VerdictKind
from proxies.http import mcp_codec as codec
from proxies.http.bodies import (
    BodyMask,
    Unmaskable,
    as_read,
    bare_value,
    coded_label,
    column_names,
    field_words,
    labelled_field,
    lone_value,
    masked_aliases,
    masked_headers,
    masked_tables,
    name_words,
    one_label,
    path_end,
    table_shaped,
    unescaped_view,
    unnamed_value,
    worded_field,
)
from proxies.http.mcp_columns import Ambiguous, masked_columns
from proxies.http.mcp_pieces import HeldPieces
from proxies.http.mcp_schema import Unconformable, conform_message, relaxed_output_schema
from proxies.http.mcp_sessions import McpSession, SessionBinding, owner_of, valid_session_id
from proxies.http.mcp_templates import ResourceTemplates
from proxies.http.messages import undescribed_headers
from proxies.http.packed import Unopenable, packed_kind, unpacked
from proxies.http.table_memory import MAX_WORDS, Asked, TableView, mcp_asked, schema_columns
from proxies.postgres.values import masked_lines, masked_split_values
from proxies.runtime.pdp_client import Ruling
from proxies.runtime.session import ProxySession

KIND = "mcp.call"
SESSION_HEADER = "mcp-session-id"
LAST_EVENT_ID = "last-event-id"
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_LISTED_TOOLS = 1024
JSON_HEADERS = [("Content-Type", "application/json")]
KEEP_ALIVE = b":\n\n"
# a request body past this is read (parsed strictly, its tree checked) in a thread, not on
# the event loop every session of the process shares: 4 MiB of JSON is ~0.4 s of CPU
PARSE_ON_LOOP = 64 * 1024
# the CPU time the masks may take over one answer (masking.scan_budget): one they cannot
# read in it is answered with an error, not passed on unread
SCAN_SECONDS = 60.0
_PREFER_WAIT = re.compile(r"(?:^|[,;])\s*wait\s*=\s*\"?(\d{1,6})\"?\s*(?=$|[,;])", re.I)


@dataclass(frozen=True)
class Handling:
    """How the answer to one forwarded request is handled."""

    method: str
    decision_id: str
    masker: Masker | None = None
    # tools/list, prompts/list, resources/list: its answer shows only what the caller may
    # use (codec.LISTINGS); "" for any other request
    lists: str = ""
    # completion/complete: the argument whose values it asks for (params.argument.name),
    # then the arguments its context gives (params.context.arguments' names)
    completes: tuple[str, ...] | None = None
    # the request as the session's memory of tables tells it (a tool and its arguments)
    asked: Asked | None = None
    # tools/call: the tool it runs (a server's request while it runs is asked `during` it)
    tool: str | None = None

    @property
    def reads(self) -> bool:
        return self.masker is not None or bool(self.lists)


@dataclass
class Reply:
    """An HTTP answer: status, headers, and the body whole or as it streams (the proxy
    then frames it itself: chunked, no Content-Length)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterator[bytes]


def _json_reply(status: int, document: Any, headers: Sequence[tuple[str, str]] = ()) -> Reply:
    return Reply(status, [*JSON_HEADERS, *headers], codec.encode(document))


def _refusal(refused: codec.Refused) -> Reply:
    return _json_reply(refused.status, codec.error_response(None, refused.code, str(refused)))


def prefer_wait(headers: Sequence[tuple[str, str]]) -> float | None:
    """The seconds of `Prefer: wait=N` (RFC 7240 §4.3), None when not asked."""
    for name, value in headers:
        if name.lower() == "prefer":
            match = _PREFER_WAIT.search(value)
            if match:
                return float(match.group(1))
    return None


def header(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


# headers of a message the exchange checks itself: its type (JSON) and coding (none)
_CHECKED = frozenset({"content-type", "content-encoding"})


def _mcp_header(name: str) -> bool:
    """A header the exchange reads and checks (the session, resumption, routing ones)."""
    lowered = name.lower()
    return lowered.startswith("mcp-") or lowered == LAST_EVENT_ID


class McpExchange:
    """One MCP connection's state across its HTTP requests: the session ids and what is in
    flight in each. `hash_key` is the connection's key for the `hash` mask strategy."""

    def __init__(
        self,
        hash_key: bytes = b"",
        max_body: int = codec.MAX_BODY_BYTES,
        max_wait: float = 120.0,
    ) -> None:
        self.bindings = SessionBinding()
        self.hash_key = hash_key
        self.max_body = max_body
        self.max_wait = max_wait
        self._owner_key = os.urandom(32)
        # the resource templates the server listed on this connection (mcp_templates.py)
        self.templates = ResourceTemplates()
        # the proxy's own ask for them, before a first read where none were listed
        self._asking: asyncio.Future[None] | None = None

    def owner(self, token: str) -> str:
        return owner_of(token, self._owner_key)

    async def request(
        self,
        session: ProxySession,
        token: str,
        method: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        target: str,
        bound: Sequence[tuple[str, str]] = (),
        ask_templates: Callable[[dict[str, Any]], Awaitable[list[str] | None]] | None = None,
    ) -> Reply | Forward:
        """A client's HTTP request on an MCP connection (`target`: its normalised path and
        query, as forwarded): answered here, or forwarded. `bound`: the headers going
        upstream with it that a server may act on (messages.bound_headers): decided with
        each message, but for MCP's own, which are checked here. `ask_templates`: the
        server's resource templates, asked under this request's session (None: not had),
        before a first read on a connection where none were listed yet."""
        owner = self.owner(token)
        if any("_" in name and _mcp_header(name.replace("_", "-")) for name, _ in headers):
            # CGI, WSGI and PHP read Mcp_Session_Id as Mcp-Session-Id (HTTP_MCP_SESSION_ID):
            # a header checked here under its name must not reach such a server under
            # another (another token's session id, an unchecked Last-Event-ID or Mcp-Name)
            why = "an MCP header spelled with _ for -"
            session.record_response(kind="mcp.refused", reason=why)
            return _refusal(codec.Refused(why))
        given = header(headers, SESSION_HEADER)
        if len(given) > 1 or (given and not valid_session_id(given[0])):
            return _refusal(codec.Refused("one Mcp-Session-Id of visible ASCII"))
        session_id = given[0] if given else None
        mcp = self.bindings.session(session_id, owner)
        if mcp is None:
            # unknown here, or another token's: the same answer either way
            refused = codec.error_response(None, codec.SESSION_REFUSED, "session not found")
            return _json_reply(404, refused)
        resumed = header(headers, LAST_EVENT_ID)
        if len(resumed) > 1 or (resumed and not mcp.resumes(resumed[0])):
            # a server's event store may replay any session's stream from an event id it is
            # given: only an event this session's streams handed this client is resumed
            why = "a Last-Event-ID this session was not handed"
            session.record_response(kind="mcp.refused", reason=why)
            return _refusal(codec.Refused(why))
        if method in ("GET", "DELETE"):
            # the server's own stream, or the end of a session: decided as well
            if method == "DELETE" and session_id is None:
                return _refusal(codec.Refused("DELETE ends a session: Mcp-Session-Id"))
            raw = codec.canonical({"endpoint": target, "http": method})
            ruling = await session.decide(KIND, raw, None, _exact)
            if method == "GET":
                enforced, masker = self._enforced(ruling)
                if enforced is ruling:
                    # a mask that cannot be applied leaves the stream's verdict unset
                    mcp.server = (ruling.verdict.allowed, masker)
                ruling = enforced
            session.record_command(raw, ruling, kind=KIND, message=method)
            if not ruling.verdict.allowed:
                return _json_reply(403, refusal_error(None, ruling))
            forward = Forward(self, session, owner, session_id, mcp, target, None, method == "GET")
            forward.server = mcp.server
            # a DELETE's answer is read as any other of the session (a server may put in it
            # its own messages, or an answer owed to a masked call): never passed unread
            forward.reads = method == "DELETE"
            return forward
        if method != "POST":
            return _json_reply(
                405,
                codec.error_response(None, codec.INVALID_REQUEST, f"{method} is not MCP"),
                [("Allow", "GET, POST, DELETE")],
            )
        try:
            content_type = header(headers, "content-type")
            if len(content_type) != 1:
                raise codec.Refused("one Content-Type: application/json", status=415)
            if any(v.strip().lower() != "identity" for v in header(headers, "content-encoding")):
                # what is decided is what is read: no body in another coding
                raise codec.Refused("an MCP message is sent without Content-Encoding", status=415)
            if len(body) > PARSE_ON_LOOP:
                parsed = await asyncio.to_thread(
                    codec.parse_request, body, content_type[0], self.max_body
                )
            else:
                parsed = codec.parse_request(body, content_type[0], self.max_body)
            named = parsed.messages[0].target if len(parsed.messages) == 1 else None
            schema = mcp.header_schemas.get(named) if named is not None else None
            codec.check_routing_headers(headers, parsed, schema)
        except codec.Refused as refused:
            session.record_response(kind="mcp.refused", reason=str(refused))
            return _refusal(refused)
        carried = [(n, v) for n, v in bound if not _mcp_header(n) and n not in _CHECKED]
        if ask_templates is not None:
            await self._templates_first(session, parsed, ask_templates)
        return await self._decide(session, owner, session_id, mcp, headers, parsed, target, carried)

    async def _decide(
        self,
        session: ProxySession,
        owner: str,
        session_id: str | None,
        mcp: McpSession,
        headers: Sequence[tuple[str, str]],
        parsed: codec.RequestBody,
        target: str,
        carried: Sequence[tuple[str, str]] = (),
    ) -> Reply | Forward:
        if any(getattr(mcp.owed(m.id), "reads", False) for m in parsed.requests):
            # an answer is owed to a request of that id that must be read (masked,
            # filtered): a second request of the id would take its handling, and the
            # first one's answer would come back as the second's
            why = "a request id still in flight in this session"
            session.record_response(kind="mcp.refused", reason=why)
            return _refusal(codec.Refused(why))
        if len({str(m.id) for m in parsed.requests}) != len(parsed.requests):
            # 5 and "5" (two ids to JSON-RPC, one to the session: mcp_sessions._id_key)
            why = "a batch names one request id twice, as a number and as a string"
            session.record_response(kind="mcp.refused", reason=why)
            return _refusal(codec.Refused(why))
        if any(mcp.asking(m.id) is None for m in parsed.messages if m.kind == "response"):
            # an answer is forwarded only to a request of the server's that reached this
            # client, and decided as the answer to that method (a request the proxy
            # dropped, or none at all, is not answered blind)
            why = "an answer to no request the server sent this client"
            session.record_response(kind="mcp.refused", reason=why)
            return _refusal(codec.Refused(why))
        if session_id is None and any(m.method == "initialize" for m in parsed.requests):
            identity = _identity(session, owner)
            if not self.bindings.room(identity):
                # each session the upstream begins it keeps: an identity holds a bounded
                # number, and begins another when one is ended (DELETE) or left idle
                why = "too many MCP sessions for this identity: end one (DELETE) first"
                session.record_response(kind="mcp.refused", reason=why)
                error = codec.error_response(None, codec.TOO_MANY_SESSIONS, why)
                retry = [("Retry-After", str(int(self.bindings.idle)))]
                return _json_reply(429, error, retry)
        wait = prefer_wait(headers)
        for message in parsed.messages:
            if message.kind == "notification" and message.method == "notifications/cancelled":
                # a request this session holds for an approval stops waiting (withdrawn)
                mcp.cancel_held(message.params.get("requestId"))
        commands = [
            m.command(target, mcp.asking(m.id) or "", carried, mcp.during(m.id), self._filled(m))
            for m in parsed.messages
        ]
        rulings = [
            await self._ruling(session, mcp, m, raw, wait)
            for m, raw in zip(parsed.messages, commands, strict=True)
        ]
        enforced = [self._enforced(ruling) for ruling in rulings]
        rulings = [ruling for ruling, _ in enforced]
        maskers = [masker for _, masker in enforced]
        for message, raw, ruling in zip(parsed.messages, commands, rulings, strict=True):
            details: dict[str, Any] = {"kind": KIND, "message": message.kind}
            if message.method:
                details["method"] = message.method
            if message.target is not None:
                details["target"] = message.target
            session.record_command(raw, ruling, **details)
        refused = [r for r in rulings if not r.verdict.allowed]
        if refused:
            return self._refused(parsed, rulings)
        forward = Forward(self, session, owner, session_id, mcp, target, parsed)
        for message, ruling, masker in zip(parsed.messages, rulings, maskers, strict=True):
            if message.kind == "response":
                mcp.answered_server(message.id)
            if masker is not None:
                mcp.stream_mask = masker
                forward.masks.append(masker)
            if message.kind == "request":
                assert message.id is not None
                handling = Handling(
                    message.method,
                    ruling.decision_id,
                    masker,
                    message.method if message.method in codec.LISTINGS else "",
                    _completed_argument(message),
                    _asked(message),
                    message.target if message.method == "tools/call" else None,
                )
                mcp.expect(message.id, handling)
        # an answer owed to an earlier request that must be read may come on any stream of
        # the session (a server delivering it late, on another POST's stream): while one is
        # owed, every answer in the session is read; and every one when the server's own
        # messages, which any stream may carry, are masked or refused
        forward.server = await self.server_messages(session, mcp, target)
        forward.reads = any(h.reads for h in mcp.pending.values()) or forward.server != (
            True,
            None,
        )
        return forward

    async def _templates_first(
        self,
        session: ProxySession,
        parsed: codec.RequestBody,
        ask_templates: Callable[[dict[str, Any]], Awaitable[list[str] | None]],
    ) -> None:
        """Before a first read (subscribe) on a connection where no templates were
        listed: the server asked for them, once a connection (failing, decided as is)."""
        reads = [m for m in parsed.requests if m.method in TEMPLATE_FILLED_METHODS]
        if self.templates.heard or not reads:
            return
        if self._asking is None:
            # (a read beside it, or after it, waits for the same answer: none is decided
            # without the templates while they are being asked); asked with the read's
            # protocol envelope (2026-07-28: its reserved _meta keys, the version first)
            meta = reads[0].params.get("_meta")
            envelope = {
                k: v
                for k, v in (meta.items() if isinstance(meta, dict) else ())
                if k.startswith("io.modelcontextprotocol/") and not k.endswith("/subscriptionId")
            }
            self._asking = asyncio.ensure_future(self._ask(session, ask_templates, envelope))
        await asyncio.shield(self._asking)

    async def _ask(
        self,
        session: ProxySession,
        ask_templates: Callable[[dict[str, Any]], Awaitable[list[str] | None]],
        envelope: dict[str, Any],
    ) -> None:
        try:
            listed = await ask_templates(envelope)
        except Exception as exc:  # (the ask is the proxy's own: any failure leaves it unasked)
            session.record_response(kind="mcp.templates", error=type(exc).__name__)
            return
        session.record_response(kind="mcp.templates", listed=-1 if listed is None else len(listed))
        if listed is not None:
            self.templates.heard_listing(listed)

    def _filled(self, message: codec.Message) -> list[str]:
        """The variable names of the listed templates a read's (subscribe's) URI fills."""
        uri = message.target
        if message.method not in TEMPLATE_FILLED_METHODS or uri is None:
            return []
        return self.templates.variables(uri)

    async def server_messages(
        self, session: ProxySession, mcp: McpSession, target: str
    ) -> tuple[bool, Masker | None]:
        """What the server's own messages in this session get: the verdict on its stream
        (the GET's question), asked once per session, before its first answer is read.
        (False, None): they are dropped; (True, mask): masked from the first."""
        if mcp.server is None:
            raw = codec.canonical({"endpoint": target, "http": "GET"})
            ruling, masker = self._enforced(await session.decide(KIND, raw, None, _exact))
            mcp.server = (ruling.verdict.allowed, masker)
        allowed, masker = mcp.server
        return allowed, masker

    async def _ruling(
        self,
        session: ProxySession,
        mcp: McpSession,
        message: codec.Message,
        raw: str,
        wait: float | None,
    ) -> Ruling:
        attributes = message.attributes or None
        if wait is None or message.kind == "notification" or message.id is None:
            return await session.decide(KIND, raw, attributes, _exact)
        # a request is held until decided, or cancelled by the client; a client's answer
        # (one to a write tool's question needs an approval too) until decided
        held = mcp.hold(message.id, session) if message.kind == "request" else None
        try:
            return await asyncio.wait_for(
                session.decide_or_wait(KIND, raw, attributes, _exact, lambda _: None),
                min(wait, self.max_wait),
            )
        except TimeoutError:
            # the request stays pending; once approved, the same call goes through
            return await session.decide(KIND, raw, attributes, _exact)
        finally:
            if held is not None:
                mcp.release(held)

    def _enforced(self, ruling: Ruling) -> tuple[Ruling, Masker | None]:
        """The ruling as enforced, with the masker of a mask verdict: a mask that cannot be
        applied is no mask, so its ruling becomes a deny (the message does not go)."""
        if ruling.kind is not VerdictKind.MASK or not ruling.verdict.mask:
            return ruling, None
        try:
            return ruling, Masker(ruling.verdict.mask, self.hash_key)
        except MaskingError as exc:
            why = f"mask rules cannot be enforced: {exc}"
            return Ruling(Verdict.deny(why), ruling.decision_id, ruling.policy_revision), None

    def _refused(self, parsed: codec.RequestBody, rulings: list[Ruling]) -> Reply:
        """Nothing forwarded: each request answered with its own error."""
        errors = []
        first = next(r for r in rulings if not r.verdict.allowed)
        for message, ruling in zip(parsed.messages, rulings, strict=True):
            if message.kind != "request":
                continue
            if ruling.verdict.allowed:
                errors.append(
                    codec.error_response(
                        message.id,
                        codec.DENIED,
                        "portcullis: not forwarded: another message of its batch was refused",
                        {"decision_id": ruling.decision_id},
                    )
                )
            else:
                errors.append(refusal_error(message.id, ruling))
        if not errors:
            # notifications and responses have no id to answer: the POST is refused
            return _json_reply(403, refusal_error(None, first))
        return _json_reply(200, errors if parsed.batch else errors[0])


async def _ticking(
    chunks: AsyncIterator[bytes], due: Callable[[], float | None]
) -> AsyncIterator[bytes | None]:
    """The chunks as they come, and None each time `due` (seconds from now, or None:
    nothing to wait for) passes before the next comes. The read is never cancelled by a
    tick: the same read goes on."""
    iterator = aiter(chunks)
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            wait = due()
            if wait is not None:
                done, _ = await asyncio.wait({pending}, timeout=wait)
                if not done:
                    yield None
                    continue
            try:
                chunk = await pending
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


def _identity(session: ProxySession, owner: str) -> str:
    """Whom a session is begun for: the subject its token names (the token's owner digest
    when the session has no grant)."""
    grant = session.grant
    return "subject:" + grant.subject if grant is not None else owner


def refusal_error(id_: str | int | None, ruling: Ruling) -> dict[str, Any]:
    """The JSON-RPC error a refused message gets: reasons, decision, approval request."""
    reasons = list(ruling.verdict.reasons)
    data: dict[str, Any] = {"decision_id": ruling.decision_id, "reasons": reasons}
    said = "; ".join(reasons) or "no reason given"
    if ruling.kind is VerdictKind.REQUIRE_APPROVAL:
        data["approval_id"] = ruling.approval_id
        message = (
            f"portcullis: approval required ({said}): request {ruling.approval_id} — an "
            f"approver runs: portcullis approvals approve {ruling.approval_id}; then call again"
        )
        return codec.error_response(id_, codec.APPROVAL_REQUIRED, message, data)
    if ruling.approval_id:
        data["approval_id"] = ruling.approval_id
    return codec.error_response(id_, codec.DENIED, f"portcullis: denied: {said}", data)


def _exact(raw: str) -> str | None:
    """MCP verdicts are reused for the exact message only (no shape of a JSON text)."""
    return None


@dataclass
class Forward:
    """A request going upstream (`body`: what to send, None for GET/DELETE, which carry
    none) and what then happens to its answer (`response`)."""

    exchange: McpExchange
    session: ProxySession
    owner: str
    session_id: str | None
    mcp: McpSession
    target: str
    parsed: codec.RequestBody | None
    stream: bool = False  # a GET: the server's own stream, which may resume any answer
    reads: bool = False  # some answer is masked or filtered
    masks: list[Masker] = field(default_factory=list)
    # the server's own messages: (passed at all, their mask) — McpExchange.server_messages
    server: tuple[bool, Any] | None = (False, None)
    # (session id, endpoint) of sessions the binding forgot to make room for the one this
    # answer handed out: still open upstream, where the proxy ends them (a DELETE each)
    evicted: list[tuple[str, str]] = field(default_factory=list)
    # the answer (or event) being read is long: its masks run in a thread (_masked_aside)
    long: bool = False

    @property
    def body(self) -> bytes | None:
        if self.parsed is None:
            return None
        messages = [m.body for m in self.parsed.messages]
        return codec.encode(messages if self.parsed.batch else messages[0])

    def abandon(self) -> None:
        """No answer came (the upstream unreachable, or its answer refused unread): none is
        owed to this request's messages any more."""
        for request in self.parsed.requests if self.parsed else ():
            self.mcp.answered(request.id)

    async def response(
        self, status: int, headers: list[tuple[str, str]], chunks: AsyncIterator[bytes]
    ) -> Reply:
        """The upstream answer as the client gets it."""
        self.session.record_response(kind="mcp.response", status=status, endpoint=self.target)
        bindings = self.exchange.bindings
        handed = header(headers, SESSION_HEADER)
        if handed:
            bound = (
                bindings.bind(
                    handed[0], self.owner, _identity(self.session, self.owner), self.target
                )
                if len(handed) == 1 and (self.session_id in (None, handed[0]))
                else None
            )
            # sessions forgotten to make room for this one: the proxy ends them upstream
            self.evicted = bindings.take_evicted()
            if bound is None:
                self.session.record_response(kind="mcp.refused", reason="session id clash")
                return _json_reply(
                    502,
                    codec.error_response(
                        None, codec.SESSION_REFUSED, "upstream handed out an unusable session"
                    ),
                )
            if self.session_id is None and self.parsed is not None:
                # what was asked before the session had its id is answered in it
                bound.pending.update(self.mcp.pending)
                if bound.server is None:
                    bound.server = self.mcp.server
                self.mcp = bound
        ended = status == 404 or (self.parsed is None and not self.stream and status < 300)
        if self.session_id is not None and ended:
            bindings.forget(self.session_id)
        kind = codec.media_type(next(iter(header(headers, "content-type")), ""))
        masker = self.server[1] if self.server else None
        masker = masker or (self.masks[-1] if self.masks else None)
        if masker is not None:
            # the answer's head carries what its messages would (a header naming the
            # customer): masked as they are, but for the session id and the media type
            kept = {SESSION_HEADER, "content-type"}
            shown = [(k, v) for k, v in headers if k.lower() not in kept]
            masked, counts = masked_headers(masker, shown)
            # (and what describes the server's bytes, an ETag, a Content-MD5, an object
            # store's checksum, does not go: a digest of the unmasked answer tells which
            # guess of what the mask hides is right)
            headers = [(k, v) for k, v in headers if k.lower() in kept] + undescribed_headers(
                masked
            )
            if counts:
                self.session.record_masking(counts, "")
        if not (self.reads or self.stream):
            if kind == "text/event-stream":
                # passed as it comes, its event ids noted: what this client may resume from
                return Reply(status, headers, self._watched(chunks))
            return Reply(status, headers, self._passed(chunks))
        if kind not in ("application/json", "text/event-stream"):
            if self.reads or status < 400:
                async for chunk in chunks:
                    if chunk:
                        break
                else:  # no body (202 to a notification or a response): nothing to read
                    return Reply(status, headers, b"")
                # what must be read (masked, filtered, or a stream that may resume any
                # answer) and comes in another type is not passed unread
                return self._unreadable("an answer neither JSON nor an event stream")
            return Reply(status, headers, chunks)  # an error page of the server's own
        # (the answer read is written anew: what described the server's bytes, their
        # length, an ETag, a digest, describes them no more)
        rest = undescribed_headers(headers)
        if kind == "text/event-stream":
            return Reply(status, rest, self._events(chunks))
        return await self._document(status, rest, chunks)

    # -- answers -----------------------------------------------------------------------

    async def _document(
        self, status: int, headers: list[tuple[str, str]], chunks: AsyncIterator[bytes]
    ) -> Reply:
        data = bytearray()
        async for chunk in chunks:
            data += chunk
            if len(data) > MAX_RESPONSE_BYTES:
                return self._unreadable("an answer too large to inspect")
        if not data.strip():  # (202 to a notification or a response: no message in it)
            return Reply(status, headers, b"")
        try:
            document = codec.loads(bytes(data), MAX_RESPONSE_BYTES)
        except codec.Refused:
            return self._unreadable("an answer that is not JSON-RPC")
        self.long = len(data) > PARSE_ON_LOOP
        messages = codec.response_messages(document)
        if messages is None:
            return self._unreadable("an answer that is not JSON-RPC")
        out = [m for m in [await self._message(m) for m in messages] if m is not None]
        if not out:
            return Reply(202 if status == 200 else status, headers, b"")
        return Reply(status, headers, codec.encode(out if isinstance(document, list) else out[0]))

    def _unreadable(self, why: str) -> Reply:
        self.session.record_response(kind="mcp.refused", reason=why)
        ids = [m.id for m in (self.parsed.requests if self.parsed else ())]
        errors = [codec.error_response(i, codec.NOT_INSPECTABLE, f"portcullis: {why}") for i in ids]
        for i in ids:
            self.mcp.answered(i)
        if not errors:
            return _json_reply(502, codec.error_response(None, codec.NOT_INSPECTABLE, why))
        return _json_reply(200, errors if len(errors) > 1 else errors[0])

    async def _events(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        reader = codec.SseReader()
        # (log and progress lines held while a value may go on in the next: mcp_pieces)
        pieces = HeldPieces()
        try:
            async for chunk in _ticking(chunks, pieces.due):
                if chunk is None:  # (what is held waited enough: it goes)
                    for out in self._handed_all(pieces.rest()):
                        yield out
                    continue
                comments = reader.comments
                sent = False
                for event in reader.feed(chunk):
                    for out in await self._event(event, pieces):
                        sent = True
                        yield out
                if not sent and reader.comments != comments:
                    yield KEEP_ALIVE  # the server's keep-alive, without its text
            for event in reader.finish():
                for out in await self._event(event, pieces):
                    yield out
            for out in self._handed_all(pieces.rest()):
                yield out
        except codec.SseTooLarge:
            for out in self._handed_all(pieces.rest()):
                yield out
            self.session.record_response(kind="mcp.refused", reason="an event too large")
            for request in self.parsed.requests if self.parsed else ():
                if self.mcp.abandoned(request.id) is not None:
                    error = codec.error_response(
                        request.id, codec.NOT_INSPECTABLE, "portcullis: an event too large"
                    )
                    yield codec.SseEvent("").encode(json.dumps(error))

    async def _watched(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """An event stream passed byte for byte, the ids of its events noted as handed
        (an event too large to read is passed all the same, its id not noted)."""
        reader: codec.SseReader | None = codec.SseReader()
        async for chunk in chunks:
            if reader is not None:
                try:
                    events = reader.feed(chunk)
                except codec.SseTooLarge:
                    reader, events = None, []
                for event in events:
                    self._handed(event)
                    self._asked_in(event.data)
            yield chunk

    async def _passed(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """An answer that is no event stream passed as it comes: once it has, nothing of
        its request is in flight any more (what the server asks later is not asked during
        it)."""
        async for chunk in chunks:
            yield chunk
        for request in self.parsed.requests if self.parsed else ():
            if not getattr(self.mcp.owed(request.id), "reads", True):
                self.mcp.answered(request.id)

    def _asked_in(self, data: str) -> None:
        """The server's requests in an event passed unread (what the client may answer),
        and its answers (their requests no longer in flight)."""
        if '"method"' not in data and '"id"' not in data:
            return
        try:
            document = json.loads(data)
        except (ValueError, RecursionError):
            return
        for message in codec.response_messages(document) or ():
            if "method" in message:
                self._asked(message)
            elif not getattr(self.mcp.owed(message.get("id")), "reads", True):
                self.mcp.answered(message.get("id"))

    def _asked(self, message: dict[str, Any]) -> None:
        """A server's message reaches the client: if a request, the client may answer it,
        and its answer is decided with the tools the session's calls in flight run (on
        whichever stream it came: a tool's question to its user, `ctx.elicit`, is what
        the tool then acts on, as its arguments are)."""
        if "id" in message and isinstance(message.get("method"), str):
            self.mcp.ask(message["id"], message["method"], self.mcp.running())

    def _handed(self, event: codec.SseEvent) -> None:
        for name, value in event.fields:
            if name == "id" and "\x00" not in value:
                self.mcp.handed(value)

    async def _event(self, event: codec.SseEvent, pieces: HeldPieces) -> list[bytes]:
        """What goes to the client once `event` is read: it, masked, and the events held
        before it (or nothing yet, while its text may go on in the next: mcp_pieces)."""
        event = self._event_fields(event)
        shown = await self._event_read(event)
        if isinstance(shown, bytes):
            return self._handed_all([*pieces.rest(), (event, shown)] if shown else [])
        out = pieces.released(event, shown, self._session_mask())
        if pieces.counts:
            self.session.record_masking(dict(pieces.counts), "")
            pieces.counts.clear()
        return self._handed_all(out)

    def _handed_all(self, events: list[tuple[codec.SseEvent, bytes]]) -> list[bytes]:
        for event, _ in events:
            self._handed(event)
        return [out for _, out in events]

    async def _event_read(self, event: codec.SseEvent) -> bytes | Any:
        """The event's message (or batch) masked; bytes for an event passed as it is
        (a priming event) or not at all (b"")."""
        if not event.data.strip():
            return event.encode()  # a priming event (an id to resume from), or a retry
        try:
            document = codec.loads(event.data.encode("utf-8"), MAX_RESPONSE_BYTES)
        except codec.Refused:
            document = None
        self.long = len(event.data) > PARSE_ON_LOOP
        messages = codec.response_messages(document) if document is not None else None
        if messages is None:
            return b""  # unread, so not passed
        out = [m for m in [await self._message(m) for m in messages] if m is not None]
        if not out:
            return b""
        return out if isinstance(document, list) else out[0]

    def _session_mask(self) -> Masker | None:
        """The mask every message of this session is under at least: its server stream's
        (what the client's identity gets of data), else the latest masked call's."""
        masker = self.server[1] if self.server else None
        return masker or (self.masks[-1] if self.masks else self.mcp.stream_mask)

    def _detectors_of(self, masker: Masker) -> Masker | None:
        """The detectors alone of a mask: for what names and describes rather than holds
        data (a tool's schema would lose its `email` property to a field rule)."""
        rules = [r for r in masker.rules if r.detector]
        return Masker(rules, self.exchange.hash_key) if rules else None

    def _event_fields(self, event: codec.SseEvent) -> codec.SseEvent:
        """An event's id, event and retry fields, which the server writes and the client
        keeps (Last-Event-ID), under the session's mask: a field a detector or a field
        rule finds anything in is left out (a masked id resumes nothing), as is one a word
        of which names a masked field (the label of a later event's id: `id: phone`, then
        `id: 5550100`) and a retry that is not a delay (digits, six at most)."""
        masker = self._session_mask()
        if masker is None or not event.fields:
            return event
        fields = [
            (name, value)
            for name, value in event.fields
            if not masker.mask_text(value)[1]
            and _masked_prose(value, masker, Counter()) == value  # (`id: phone=5550100`)
            and not _names_field(value, masker)  # (`id: phone`, then `id: 5550100`)
            and (name != "retry" or (value.isdigit() and len(value) <= _RETRY_DIGITS))
        ]
        if len(fields) != len(event.fields):
            self.session.record_response(kind="mcp.dropped", reason="an event field with data")
        return codec.SseEvent(event.data, fields, event.has_data)

    async def _message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """One server message as the client gets it; None: dropped (an answer to nothing
        this proxy forwarded in this session). In a masked session only JSON-RPC's keys
        pass (MCP Base Protocol → Messages), each under a mask: what a server may put
        anywhere else, or in a request's id or a method name, the client never gets."""
        session_mask = self._session_mask()
        if "method" in message:  # the server's request or notification
            allowed, masker = self.server or (False, None)
            if not allowed:
                self.session.record_response(
                    kind="mcp.dropped", reason="the server's own message, its stream refused"
                )
                return None
            masker = masker or session_mask  # (its stream unmasked: the latest call's mask)
            if masker is None:
                self._asked(message)
                return message
            shaped = _jsonrpc_keys(message, _SERVER_REQUEST_KEYS)
            named = [shaped["method"]]
            if isinstance(shaped.get("id"), str):
                named.append(shaped["id"])
            if not (
                isinstance(shaped["method"], str)
                and codec.METHOD_TEXT.fullmatch(shaped["method"])
                and not any(masker.mask_text(text)[1] for text in named)
            ):
                self.session.record_response(
                    kind="mcp.dropped", reason="the server's own message names data"
                )
                return None
            params = shaped.get("params")
            if shaped["method"] == "elicitation/create" and isinstance(params, dict):
                shown = self._elicitation(shaped, params, masker)
            else:
                shown = self._masked(shaped, masker, "")
            if shown is not None and "method" in shown:
                try:
                    shown = conform_message(shown, shaped, shaped["method"])
                except Unconformable:
                    self.session.record_response(
                        kind="mcp.dropped", reason="a message its masks would make invalid"
                    )
                    return None
            if shown is not None and "method" in shown:
                self._asked(shown)
            return shown
        handling: Handling | None = self.mcp.answered(message.get("id"))
        if handling is None:
            self.session.record_response(kind="mcp.dropped", reason="an answer to no request")
            return None
        if session_mask is not None or handling.masker is not None:
            if ("result" in message) == ("error" in message):
                return codec.error_response(
                    message.get("id"), codec.NOT_INSPECTABLE, "portcullis: an answer it cannot read"
                )
            message = _jsonrpc_keys(message, _RESPONSE_KEYS)
        result = message.get("result")
        if handling.lists and "result" in message:
            result = await self._listed(result, handling)
            if result is None:
                return codec.error_response(
                    message.get("id"), codec.NOT_INSPECTABLE, "portcullis: an unreadable list"
                )
            message = {**message, "result": result}
        came = message
        if handling.masker is not None:
            message = await self._masked_aside(
                message, handling.masker, handling.decision_id, handling.asked
            )
            if handling.completes is not None:
                message = self._completions(message, handling.masker, handling)
        elif session_mask is not None:
            # the answer to a request that returns no data by the policy (initialize, ping,
            # a list of tools or prompts) is masked all the same in a masked session; a
            # tool list's result — names, descriptions, schemas — by the detectors alone
            # (a field rule would take a schema's `email` property)
            if "error" in message or handling.method != "tools/list":
                message = await self._masked_aside(
                    message, session_mask, handling.decision_id, handling.asked
                )
            else:
                message = await self._tools_masked(message, session_mask, handling)
        if message is came:
            return message
        try:
            # (a mask writes strings: where MCP's schema types a member otherwise, a hint,
            # a size, a role, the member or its item goes, or the answer cannot be shown)
            return conform_message(message, came, handling.method)
        except Unconformable:
            return codec.error_response(
                message.get("id"), codec.NOT_INSPECTABLE, "portcullis: an answer it cannot mask"
            )

    async def _tools_masked(
        self, message: dict[str, Any], masker: Masker, handling: Handling
    ) -> dict[str, Any]:
        """A masked session's tool list (_tool_list_tree), in a thread when the answer it
        came in is long (self.long), as _masked_aside does for results: thousands of tools
        and their schemas take the masks seconds, which on the event loop every other
        request of every session would wait through."""
        detectors = self._detectors_of(masker)
        if self.long:
            out, counted = await asyncio.to_thread(self._tool_list_tree, message, masker, detectors)
        else:
            out, counted = self._tool_list_tree(message, masker, detectors)
        for counts in counted:
            if counts:
                self.session.record_masking(dict(counts), handling.decision_id)
        return out

    def _tool_list_tree(
        self, message: dict[str, Any], masker: Masker, detectors: Masker | None
    ) -> tuple[dict[str, Any], list[Counter[str]]]:
        """A tool list's answer with what its schemas say of values under the field rules
        (_schema_values), then all of it under the detectors alone (a field rule would
        take a schema's `email` property), each output schema one the masked results
        meet; and what each step masked. No IO."""
        message, schema_counts = _schema_values_tree(message, "result", masker)
        counted = [schema_counts]
        if detectors is not None:
            message, counts = self._masked_tree(message, detectors, None)
            counted.append(counts)
        return _outputs_relaxed(message), counted

    def _schemas_masked(
        self, message: dict[str, Any], key: str, masker: Masker, handling: Handling | None
    ) -> dict[str, Any]:
        """message[key] (an elicitation's params) under _schema_values_tree, what it
        masked recorded."""
        out, counts = _schema_values_tree(message, key, masker)
        if counts:
            self.session.record_masking(dict(counts), handling.decision_id if handling else "")
        return out

    def _elicitation(
        self, message: dict[str, Any], params: dict[str, Any], masker: Masker
    ) -> dict[str, Any] | None:
        """A server's elicitation/create under the session's mask, but for the form it asks
        the user to fill (`requestedSchema`): a schema, its `email` property a property, so
        the detectors alone read it (as a tool list's schemas), or none when none apply."""
        schema = params.get("requestedSchema")
        rest = {k: v for k, v in params.items() if k != "requestedSchema"}
        out = self._masked({**message, "params": rest}, masker, "")
        if schema is None or not isinstance(out.get("params"), dict):
            return out
        masked = self._schemas_masked({"schema": schema}, "schema", masker, None)
        if "schema" not in masked:
            self.session.record_response(kind="mcp.dropped", reason="an unreadable form")
            return None
        schema = masked["schema"]
        detectors = self._detectors_of(masker)
        if detectors is not None:
            counts: Counter[str] = Counter()
            try:
                schema = _mask_tree(schema, detectors, counts)
            except (MaskingError, TypeError):
                self.session.record_response(kind="mcp.dropped", reason="an unreadable form")
                return None
            if counts:
                self.session.record_masking(dict(counts), "")
        return {**out, "params": {**out["params"], "requestedSchema": schema}}

    def _completions(
        self, message: dict[str, Any], masker: Masker, handling: Handling
    ) -> dict[str, Any]:
        """A completion's values are values of the argument it was asked for (MCP Server →
        Utilities → Completion), chosen by what was typed of it and of the arguments in its
        context. If a field rule names any of those, the completion comes back empty: its
        values masked, their number, `total` and `hasMore` would still answer whether a
        value starting with what was typed exists (a prefix guessed digit by digit)."""
        assert handling.completes is not None
        rule = masker.rule_for_any(list(handling.completes))
        if rule is None or "result" not in message:
            return message
        result = message["result"]
        completion = result.get("completion") if isinstance(result, dict) else None
        values = completion.get("values") if isinstance(completion, dict) else None
        if not isinstance(values, list):
            return codec.error_response(
                message.get("id"), codec.NOT_INSPECTABLE, "portcullis: an answer it cannot mask"
            )
        self.session.record_masking({"field:" + rule.field: len(values)}, handling.decision_id)
        return {**message, "result": {**result, "completion": {"values": []}}}

    def _masked(
        self,
        message: dict[str, Any],
        masker: Masker,
        decision_id: str,
        asked: Asked | None = None,
    ) -> dict[str, Any]:
        out, counts = self._masked_tree(message, masker, asked)
        if counts:
            self.session.record_masking(dict(counts), decision_id)
        return out

    async def _masked_aside(
        self,
        message: dict[str, Any],
        masker: Masker,
        decision_id: str,
        asked: Asked | None = None,
    ) -> dict[str, Any]:
        """_masked, in a thread when the answer it came in is long (self.long): a tool's
        result of megabytes takes the masks seconds, which on the event loop every other
        request of every session would wait through."""
        if not self.long:
            return self._masked(message, masker, decision_id, asked)
        out, counts = await asyncio.to_thread(self._masked_tree, message, masker, asked)
        if counts:
            self.session.record_masking(dict(counts), decision_id)
        return out

    def _masked_tree(
        self, message: dict[str, Any], masker: Masker, asked: Asked | None
    ) -> tuple[dict[str, Any], Counter[str]]:
        """message masked (its result, params or error), and what was masked; no IO."""
        counts: Counter[str] = Counter()
        try:
            out = {k: v for k, v in message.items() if k not in ("result", "params", "error")}
            # (the session's tables as the call follows them, for rows of a later page or
            # under a tool's output schema: JSON in a text item too)
            held = _SESSION_TABLES.set(self.mcp.tables.view(asked))
            try:
                # (an answer the detectors cannot read in the time allowed: withheld)
                with scan_budget(SCAN_SECONDS):
                    for key in ("result", "params", "error"):
                        if key in message:
                            out[key] = _mask_tree(message[key], masker, counts)
            finally:
                _SESSION_TABLES.reset(held)
        except (MaskingError, TypeError):
            out = codec.error_response(
                message.get("id"), codec.NOT_INSPECTABLE, "portcullis: an answer it cannot mask"
            )
            return out, Counter()
        return out, counts

    async def _listed(self, result: Any, handling: Handling) -> Any:
        """A tools, prompts or resources list showing only what the caller may use: the
        policy is asked per item (`listing`), as it would decide calling the tool, getting
        the prompt, reading the resource."""
        names = codec.listed(result, handling.lists)
        if names is None or len(names) > MAX_LISTED_TOOLS:
            return None
        if handling.lists == "resources/templates/list":
            # each the server serves, shown or not: a read filling one is a lookup by
            # its variables (a client may know a hidden one's URIs without a listing)
            self.exchange.templates.heard_listing(names)
        rulings = await asyncio.gather(*(self._may_use(handling.lists, n) for n in names))
        shown = {n for n, r in zip(names, rulings, strict=True) if r.verdict.allowed}
        if handling.lists == "tools/list":
            # which argument each Mcp-Param header names, as the server declared it
            self.mcp.header_schemas = {
                t["name"]: codec.header_schema(t) for t in result["tools"] if t["name"] in shown
            }
            # the columns each tool's outputSchema names: its results' rows with no names
            # of their own are read under them (a call of that tool follows its listing)
            for tool in result["tools"]:
                for names in schema_columns(tool.get("outputSchema")):
                    self.mcp.tables.learn(mcp_asked(tool["name"], ""), names)
        hidden = sorted(set(names) - shown)
        self.session.record_response(
            kind="mcp." + handling.lists.replace("/", "_"), decision_id=handling.decision_id,
            listed=len(names), hidden=hidden[:64],
        )  # fmt: skip
        return codec.filtered(result, shown, handling.lists)

    async def _may_use(self, listing: str, name: str) -> Ruling:
        # a question of its own (`listing`), in the audit record as in the policy input
        _, _, method, key = codec.LISTINGS[listing]
        if listing == "resources/templates/list":
            name = name.split("{", 1)[0]  # (RFC 6570: an expression opens with "{")
        asked = {"method": method, "params": {key: name}}
        raw = codec.canonical({"endpoint": self.target, "listing": True, **asked})
        return await self.session.decide(KIND, raw, None, _exact)


def _outputs_relaxed(message: dict[str, Any]) -> dict[str, Any]:
    """A masked session's tool list, each tool's outputSchema one its masked results meet
    (mcp_schema.relaxed_output_schema): the client validates them against it."""
    result = message.get("result")
    if not isinstance(result, dict) or not isinstance(tools := result.get("tools"), list):
        return message
    shown = [
        {**tool, "outputSchema": relaxed_output_schema(tool["outputSchema"])}
        if isinstance(tool, dict) and isinstance(tool.get("outputSchema"), dict)
        else tool
        for tool in tools
    ]
    return {**message, "result": {**result, "tools": shown}}


def _completed_argument(message: codec.Message) -> tuple[str, ...] | None:
    """The argument a completion/complete asks values for, if it names one, then the
    names of the arguments its context gives (what the server may narrow the values by)."""
    if message.method != "completion/complete":
        return None
    argument = message.params.get("argument")
    name = argument.get("name") if isinstance(argument, dict) else None
    if not isinstance(name, str):
        return None
    context = message.params.get("context")
    given = context.get("arguments") if isinstance(context, dict) else None
    if not isinstance(given, dict):
        return (name,)
    # (and the fields a context's argument names as its value: `{"field": "phone",
    # "value": "555"}` narrows the values by the phone as `{"phone": "555"}` does)
    named = [
        v
        for k, v in given.items()
        if isinstance(k, str)
        and isinstance(v, str)
        and not FIELD_NAMING_WORDS.isdisjoint(name_words(k))
    ]
    return (name, *(k for k in given if isinstance(k, str)), *named)


_RETRY_DIGITS = 6  # an SSE retry is a delay in ms: more digits would be data, not a delay
_SERVER_REQUEST_KEYS = ("jsonrpc", "id", "method", "params")
_RESPONSE_KEYS = ("jsonrpc", "id", "result", "error")


def _jsonrpc_keys(message: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A server's message with JSON-RPC's keys only (an allow-list: no other key of it
    reaches the client)."""
    return {k: message[k] for k in keys if k in message}


# the columns the session being masked named in its earlier results (McpSession.tables),
# for the masks of one message (Forward._masked): rows of a later page masked under them
_SESSION_TABLES: contextvars.ContextVar[TableView | None] = contextvars.ContextVar(
    "session_tables", default=None
)


# the columns an object holding a JSON string names beside it (_json_texts), for the rows
# in that string (_masked_json)
_ENCLOSING: contextvars.ContextVar[list[list[str]] | None] = contextvars.ContextVar(
    "enclosing_columns", default=None
)


def _asked(message: codec.Message) -> Asked:
    """A request as the session's memory of tables tells it: a tools/call by its tool and
    arguments; a resource read by its URI (a next page by its query); any other by its
    method and params."""
    if message.method == "tools/call" and message.target is not None:
        return mcp_asked(message.target, codec.canonical(message.params.get("arguments")))
    words = codec.canonical(message.params)[:MAX_WORDS]
    if message.method == "resources/read" and message.target is not None:
        return Asked("resource:" + message.target.split("?", 1)[0], (), words)
    return Asked("method:" + message.method, (), words)


def _mask_tree(
    value: Any, masker: Masker, counts: Counter[str], tables: TableView | None = None
) -> Any:
    """A tool result (or any JSON value) masked: text content that is itself JSON (what
    FastMCP makes of a dict) masked as JSON, then fields and detectors over everything;
    `tables`: the columns the session's earlier results named (bodies.masked_tables)."""
    source = value
    value = _bare_results(_content_row(value, masker, counts), masker, counts)
    value = _json_texts(masked_aliases(masker, value, counts), masker, counts)
    value, found = masked_split_values(masker, _split_items(value, masker, counts))
    counts.update(found)
    masked, found = masker.mask_json(value)
    counts.update(found)
    # (and its tables: rows beside or away from the columns naming them, by place or by
    # the positions the value as it came gives them, pairs)
    tables = tables if tables is not None else _SESSION_TABLES.get()
    return masked_tables(masker, masked, counts, source, tables)


def _split_items(value: Any, masker: Masker, counts: Counter[str]) -> Any:
    """A result whose content items (a resource's contents, a prompt's messages) are
    texts beside each other: the SDK makes one text item of each element of a list a
    tool returns, so `["4111", "1111", "1111", "1111"]` is one card to whoever reads the
    items in order, as `card 4111 1111` then `1111 1111` are in a prompt's messages.
    Their texts are read together as lines (values.masked_lines)."""
    if not isinstance(value, dict):
        return value
    out = value
    for key in ("content", "contents", "messages"):
        items = value.get(key)
        if not isinstance(items, list) or len(items) < 2:
            continue
        texts = [(i, text) for i, item in enumerate(items) if (text := _item_text(item))]
        masked, found = masked_lines(masker, [text for _, text in texts])
        if not found:
            continue
        counts.update(found)
        shown = list(items)
        for (i, text), now in zip(texts, masked, strict=True):
            if now != text:
                shown[i] = _with_text(items[i], now)
        out = {**out, key: shown}
    return out


def _item_text(item: Any) -> str | None:
    """An item's text: its own (a content item, a resource's), its content's (a prompt's
    message) or its embedded resource's; a blob's when it is UTF-8 text (`card on file
    4111 1111` in one resource's bytes, `1111 1111` in the next: read as texts are)."""
    item = _text_holder(item)
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("text"), str):
        return str(item["text"])
    return _blob_text(item["blob"]) if isinstance(item.get("blob"), str) else None


def _text_holder(item: Any) -> Any:
    """The dict holding an item's text or blob: a prompt message's content, an embedded
    resource (in a tool's content or a prompt's message), or the item itself."""
    if isinstance(item, dict) and isinstance(item.get("content"), dict):
        item = item["content"]
    if isinstance(item, dict) and isinstance(item.get("resource"), dict):
        item = item["resource"]
    return item


def _blob_text(blob: str) -> str | None:
    """A blob's bytes as text when they are UTF-8 without NULs (_masked_blob reads the
    rest), else None."""
    try:
        text = base64.b64decode(_BASE64_SPACE.sub("", blob), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return None if "\x00" in text else text


def _with_text(item: dict[str, Any], text: str) -> dict[str, Any]:
    """`item` with its text (_item_text) made `text`, a blob's encoded again."""
    holder = _text_holder(item)
    if isinstance(holder.get("text"), str):
        put = {**holder, "text": text}
    else:
        put = {**holder, "blob": base64.b64encode(text.encode("utf-8")).decode("ascii")}
    if holder is item:
        return put
    if isinstance(item.get("content"), dict):
        content = item["content"]
        if content is holder:
            return {**item, "content": put}
        return {**item, "content": {**content, "resource": put}}
    return {**item, "resource": put}


def _content_row(value: Any, masker: Masker, counts: Counter[str]) -> Any:
    """A result whose content is two text items or more: the SDK makes one text item of
    each element of a list a tool returns (`["Ann", "5550100"]`, a row's cells, rows
    flattened), so the items are a row nothing names. An item that is a bare value (one
    line holding a value a mask hides: seven digits or more, an address; beside numbers,
    one word holding a digit other than a short number or a date) is masked by the
    strictest field rule, as a top-level list is (bodies.BodyMask._nameless)."""
    if not isinstance(value, dict) or not isinstance(value.get("content"), list):
        return value
    content = value["content"]
    texts = [i for i, c in enumerate(content) if _text_item(c)]
    rule = masker.strictest_field_rule()
    if len(texts) < 2 or rule is None:
        return value
    # (numbers beside strings: a row, whose cells are read as rows nothing names are;
    # strings alone: a row or a list of names, whose values alone are)
    mixed = any(_NUMBER_ITEM.fullmatch(content[i]["text"].strip()) for i in texts)
    out = list(content)
    for i in texts:
        text = content[i]["text"]
        if _bare_item(text, mixed):
            masked, found = masker.mask_json({rule.field: text})
            counts.update(found)
            out[i] = {**content[i], "text": str(masked[rule.field])}
    return {**value, "content": out}


def _bare_results(value: Any, masker: Masker, counts: Counter[str]) -> Any:
    """A result that is one bare value (a tool returning `"5550100"`: one text item, the
    SDK's `structuredContent` `{"result": "5550100"}`; a resource whose text is
    `078051120`, embedded in a tool's result or read): no name, no row, and the detectors
    read no value in it. Masked by the strictest field rule when it reads as a masked
    field's value (bare_value: seven digits or more, an address; a number of seven digits
    or more), as the HTTP proxy masks an answer that is a bare value."""
    rule = masker.strictest_field_rule()
    if not isinstance(value, dict) or rule is None:
        return value

    def bare(text: Any) -> bool:
        if isinstance(text, str):
            return lone_value(text)
        return type(text) in (int, float) and unnamed_value(text)

    def masked(text: Any) -> Any:
        out, found = masker.mask_json({rule.field: text})
        counts.update(found)
        return out[rule.field]

    out = dict(value)
    content = value.get("content")
    if isinstance(content, list):
        texts = [i for i, c in enumerate(content) if _text_item(c)]
        items = list(content)
        if len(texts) == 1 and bare(content[texts[0]]["text"]):
            items[texts[0]] = {**content[texts[0]], "text": masked(content[texts[0]]["text"])}
        for i, item in enumerate(content):
            # (an embedded resource: the whole of what it holds)
            inner = item.get("resource") if isinstance(item, dict) else None
            if item is not None and isinstance(inner, dict) and bare(inner.get("text")):
                items[i] = {**item, "resource": {**inner, "text": masked(inner["text"])}}
        out["content"] = items
    contents = value.get("contents")  # (resources/read)
    if isinstance(contents, list):
        out["contents"] = [
            {**c, "text": masked(c["text"])} if isinstance(c, dict) and bare(c.get("text")) else c
            for c in contents
        ]
    structured = value.get("structuredContent")
    if (
        isinstance(structured, dict)
        and list(structured) == ["result"]
        and bare(structured["result"])
    ):
        out["structuredContent"] = {"result": masked(structured["result"])}
    return out


def _text_item(item: Any) -> bool:
    return (
        isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str)
    )


def _bare_item(text: str, mixed: bool) -> bool:
    """A text item that is one value alone: one line, and a value as bare_value reads a
    string of a list or, beside numbers (`mixed`), one word that may be a masked field's
    (unnamed_value), as in a row of a list."""
    line = text.strip()
    if not line or "\n" in line or len(line) > MAX_BARE_ITEM:
        return False
    return bare_value(line) or (mixed and len(line.split()) == 1 and unnamed_value(line))


MAX_BARE_ITEM = 128
_NUMBER_ITEM = re.compile(r"[-+]?[0-9]{1,6}(?:\.[0-9]+)?")  # (a count, an id: not a value)


# what a JSON Schema says of a property's values (JSON Schema Validation §6.1.2-6.1.3,
# §9.2, §9.5; `example`: OpenAPI's): the values of the field its property names
_SCHEMA_VALUES = ("default", "const", "enum", "examples", "example")
# what a schema (a tool's, a form's) says in words: prose to the masks
_SCHEMA_WORDS = ("description", "title")
_FREE_MEMBERS = ("_meta", "annotations")


def _schema_values_tree(
    message: dict[str, Any], key: str, masker: Masker
) -> tuple[dict[str, Any], Counter[str]]:
    """message[key] (a tool list, an elicitation's params) with what its schemas say of
    values under the session's field rules (_schema_values): a property's default,
    examples, enum and const, and its descriptions and titles read as prose; the rest
    (the properties' names) is for the detectors alone. An error answer in its place if
    it cannot be masked; what was masked. No IO."""
    counts: Counter[str] = Counter()
    if masker.strictest_field_rule() is None or key not in message:
        return message, counts
    try:
        shown = _schema_values(message[key], masker, counts)
    except (MaskingError, TypeError):
        return codec.error_response(
            message.get("id"), codec.NOT_INSPECTABLE, "portcullis: an answer it cannot mask"
        ), Counter()
    return {**message, key: shown}, counts


def _schema_values(value: Any, masker: Masker, counts: Counter[str]) -> Any:
    """A tool list or a form's schema, what it says of values masked: under a property
    a field rule names (by its name or in other words: `phoneNumber`), the property's
    values (_SCHEMA_VALUES) as that field's; every description and title read as prose
    (`Finds a customer. Owner's phone: ...`: _masked_string); `_meta`, `annotations` and
    `x-` keywords as a tool's result (_FREE_MEMBERS). Property names stay (a schema's
    `email` property is a name, not an e-mail)."""
    if isinstance(value, list):
        return [_schema_values(v, masker, counts) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, child in value.items():
        if key == "annotations" and isinstance(child, dict):
            # (a tool's annotations: its hints as they came, the rest as below)
            out[key] = _annotations_masked(child, lambda v: _mask_tree(v, masker, counts))
        elif key in _FREE_MEMBERS or key.startswith("x-") or key == "icons":
            # what a server says beside the schemas, in no shape a schema gives (a
            # tool's `_meta`, its `annotations` past the hints, an extension keyword
            # `x-...`, its icons' URIs: `tel:...`, a data: URI): its data, masked as a
            # tool's result is (an owner's `phone`)
            out[key] = _mask_tree(child, masker, counts)
        elif key in _SCHEMA_WORDS and isinstance(child, str):
            out[key] = _masked_string(child, masker, counts)
        elif key == "properties" and isinstance(child, dict):
            out[key] = {
                name: _property_values(name, sub, masker, counts) for name, sub in child.items()
            }
        else:
            out[key] = _schema_values(child, masker, counts)
    return out


def _property_values(name: str, schema: Any, masker: Masker, counts: Counter[str]) -> Any:
    schema = _schema_values(schema, masker, counts)
    rule = masker.rule_for_any([name]) if isinstance(schema, dict) else None
    if rule is None:
        return schema
    shown = dict(schema)
    for key in _SCHEMA_VALUES:
        if key in shown:
            # (enum and examples each value by value: what a client validates stays a list)
            values = shown[key] if key in ("enum", "examples") else None
            items = values if isinstance(values, list) else [shown[key]]
            masked, found = masker.mask_json([{rule.field: item} for item in items])
            counts.update(found)
            out = [m[rule.field] for m in masked]
            shown[key] = out if isinstance(values, list) else out[0]
    return shown


def _json_texts(value: Any, masker: Masker, counts: Counter[str]) -> Any:
    if isinstance(value, list):
        return [_json_texts(v, masker, counts) for v in value]
    if isinstance(value, str):
        return _read_masked(_masked_string(value, masker, counts), masker, counts)
    if not isinstance(value, dict):
        return value
    # image and audio content (MCP Server → Tools → Tool result) carry their bytes as
    # base64 `data`, beside a `mimeType`: read like a resource's `blob`
    binary = value.get("type") in ("image", "audio") or "mimeType" in value
    naming, named = _pair_name(value, masker)
    out: dict[str, Any] = {}
    # (rows written as a JSON string beside the columns naming them: `{"columns": ["id",
    # "phone"], "data": "[[7, \"5550100\"]]"}`, read under them)
    beside = [names for child in value.values() if (names := column_names(child))]
    held = _ENCLOSING.set(beside) if beside else None
    try:
        return _json_texts_of(value, masker, counts, binary, naming, named, out)
    finally:
        if held is not None:
            _ENCLOSING.reset(held)


def _json_texts_of(
    value: dict[str, Any],
    masker: Masker,
    counts: Counter[str],
    binary: bool,
    naming: str,
    named: str | None,
    out: dict[str, Any],
) -> dict[str, Any]:
    for key, child in value.items():
        # (an item whose annotations or _meta name its field: what it says in words, its
        # name, title, description, says of the value it holds, and is masked as it)
        kept = _ITEM_OWN if naming in _FREE_MEMBERS else _DESCRIBING
        if named is not None and key not in kept and key != naming and child is not None:
            # the value of a field named in a key of its own: masked as {named: child}
            masked, found = masker.mask_json({named: child})
            counts.update(found)
            out[key] = next(iter(masked.values()))  # (the name's key masked too, at times)
        elif isinstance(child, str) and (key == "blob" or (key == "data" and binary)):
            out[key] = _masked_blob(child, masker, counts)
        elif isinstance(child, str) and key in _OPAQUE_TOKENS:
            out[key] = _masked_token(child, masker, counts)
        elif key == "annotations" and isinstance(child, dict):
            out[key] = _annotations_masked(child, lambda v: _json_texts(v, masker, counts))
        else:
            out[key] = _json_texts(child, masker, counts)
    return out


# MCP's own annotations of an item or a tool whose values are not text (MCP Server →
# Tools → Tool annotations; Resources → Annotations): a hint, an audience of roles, a
# priority between 0 and 1 say how to treat what they annotate and carry no one's data;
# a strict client (the SDK's models) rejects an answer where a mask made one a string
_OWN_NOTES = {
    **dict.fromkeys(
        ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"),
        lambda v: isinstance(v, bool),
    ),
    "audience": lambda v: isinstance(v, list) and all(r in ("user", "assistant") for r in v),
    "priority": lambda v: type(v) in (int, float) and 0 <= v <= 1,
}


def _annotations_masked(notes: dict[str, Any], masked: Any) -> dict[str, Any]:
    """An item's or a tool's `annotations`: MCP's own typed members (_OWN_NOTES) as they
    came when of their type, the rest (a title, a date, any label or value a server adds)
    through `masked`, which a label among them may name (`{"field": "phone"}`)."""
    own = {k: v for k, v in notes.items() if k in _OWN_NOTES and _OWN_NOTES[k](v)}
    rest = masked({k: v for k, v in notes.items() if k not in own})
    if not isinstance(rest, dict):
        return rest
    return {k: own[k] if k in own else rest[k] for k in notes if k in own or k in rest}


def _read_masked(text: str, masker: Masker, counts: Counter[str]) -> str:
    """`text` as its reader reads it (bodies.as_read: a card parted by soft hyphens or in
    Arabic-Indic digits, an e-mail with a fullwidth at sign) masked by the detectors when
    they find anything there they do not find in it as written; else as it came. Its
    escapes undone too (bodies.unescaped_view: `mailto:ann&#64;example.com`, `\\u0040`,
    `%40`), as the page, the script or the link a client puts it in reads it."""
    for seen in dict.fromkeys((as_read(text), as_read(unescaped_view(text)))):
        if seen == text:
            continue
        masked, found = masker.mask_text(seen)
        if found:
            counts.update({f"detector:{k}": v for k, v in found.items()})
            return masked
    return text


# an object naming a field under a key of its own, its value beside it: the name/value
# pairs of settings, custom fields, form answers, environment variables ({"name":
# "password", "value": "hunter2"}), which a field rule matching keys never meets
_NAMING_KEYS = ("name", "key", "field", "property", "attribute", "column", "label")
# what such an object keeps beside the name (words about the field); any other key of it
# is taken for its value (an allow-list: `value`, `val`, `current`, `secret` alike)
_DESCRIBING = frozenset(
    {*_NAMING_KEYS, "id", "type", "format", "description", "title", "unit", "required"}
    | {"uri", "mimeType", "annotations", "icons"}  # (what MCP's own items describe)
)


# what an MCP content item keeps when its annotations or _meta name its field: what
# MCP's items describe themselves by (a resource link's `name` and `description` are
# masked as the value)
_ITEM_OWN = frozenset({"type", "uri", "mimeType", "annotations", "_meta", "icons", "size"})


def _pair_name(value: dict[str, Any], masker: Masker) -> tuple[str, str | None]:
    """(the key, the field) of an object naming a field a field rule masks: under one of
    _NAMING_KEYS first, else under any other key whose string is a label of up to three
    words (`{"type": "phone", "value": ...}`, `{"kind": "Phone number", "v": ...}`:
    what a key names a field under is the server's choice, so no list of such keys is
    whole); ("", None) for none."""
    for key in _NAMING_KEYS:
        name = value.get(key)
        if isinstance(name, str) and (read := _read_rule(name, masker)):
            return key, read
        # (a name in base64, however short: HBase REST's `"column": "Y2Y6cGhvbmU="`,
        # cf:phone; etcd's keys, customers/7/phone)
        if (
            isinstance(name, str)
            and (label := coded_label(name))
            and (read := _read_rule(label, masker) or _label_rule(label, masker))
        ):
            return key, read
    for key, name in value.items():
        if isinstance(name, str) and (read := _label_rule(name, masker)):
            return key, read
        # (a path of segments ending in the field: `{"loc": ["body", "phone"], "input":
        # ...}`, GraphQL's `{"path": ["user", "phone"], "extensions": ...}`)
        if (last := path_end(key, name)) and (read := _label_rule(last, masker)):
            return key, read
    for key in _FREE_MEMBERS:
        # an item's `annotations` or `_meta` naming its field among what else they say
        # (`{"audience": ["user"], "priority": 0.5, "field": "phone"}`): no descriptor of
        # labels alone, but a label in them names what the item holds
        if isinstance(member := value.get(key), dict) and (read := _noted_rule(member, masker)):
            return key, read
    for key, member in value.items():
        if key in _MCP_ANSWERS:
            continue  # (a result's own members: `structuredContent` is the tool's answer)
        # an object of labels alone naming it (`{"field": {"name": "phone"}, "value":
        # ...}`, `{"meta": {"type": "phone"}}`): a descriptor of the field, not a value
        described = labelled_field(
            {key: member} if one_label(member) else member,
            lambda label: _label_rule(label, masker),
        )
        if described:
            return key, described
    # a resource whose URI ends in a field (`{"uri": "customer://7/phone", "text": ...}`:
    # an embedded resource, a resources/read content), as an HTTP answer to a path
    # ending in one is that field's value (bodies.BodyMask.path_field)
    uri = value.get("uri")
    if isinstance(uri, str) and (read := _uri_rule(uri, masker)):
        return "uri", read
    return "", None


_NOTES_DEPTH = 8  # objects inside an item's annotations or _meta read for a label


def _noted_rule(notes: dict[str, Any], masker: Masker, depth: int = 0) -> str:
    """The field a rule masks that a label among an item's notes names (a string, a
    list's string or an object's, _NOTES_DEPTH levels deep: `{"field": "phone"}`, `{"fields":
    ["phone"]}`, `{"field": {"name": "phone"}}`), else ""."""
    for member in notes.values():
        labels = member if isinstance(member, list) else [member]
        for label in labels:
            if isinstance(label, str) and (read := _label_rule(label, masker)):
                return read
            if (
                isinstance(label, dict)
                and depth < _NOTES_DEPTH
                and (read := _noted_rule(label, masker, depth + 1))
            ):
                return read
    return ""


# what holds a result's answer, which names no field of its own; its `_meta` and an
# item's `annotations` may (`{"type": "text", "text": ..., "_meta": {"field": "phone"}}`)
_MCP_ANSWERS = frozenset({"content", "structuredContent", "contents"})


def _uri_rule(uri: str, masker: Masker) -> str:
    """The field a rule masks that a URI's last segment names (`customer://7/phone`,
    `file:///phone.txt`), else ""."""
    path = re.split(r"[?#]", uri, maxsplit=1)[0]
    segments = [urllib.parse.unquote(s).strip() for s in path.split("/")]
    named = [s for s in segments if s.strip(".")]
    last = named[-1].split(".", 1)[0] if named else ""
    if not last or len(last) > _LABEL_CHARS or last.endswith(":"):
        return ""
    return _read_rule(last, masker) or _label_rule(last, masker)


def _label_rule(label: str, masker: Masker) -> str:
    """`label` (as its reader reads it: `ph\u0307one` is `phone`, bodies.as_read) when it
    is a label of up to three words naming a field a rule masks, else ""."""
    if len(label) > _LABEL_CHARS:
        return ""
    for read in dict.fromkeys((label, as_read(label))):
        if _LABEL.fullmatch(read) and masker.rule_for_any([read]) is not None:
            return read
    return ""


def _read_rule(name: str, masker: Masker) -> str:
    """`name`, or `name` as its reader reads it, when a rule masks that field; else ""."""
    for read in dict.fromkeys((name, as_read(name))):
        if masker.rule_for_any([read]) is not None:
            return read
    return ""


# a label names a field in at most three words (`Mobile phone number`, `customer_phone`)
_LABEL = re.compile(r"[^\W\d][\w\-.]*(?: [^\W\d][\w\-.]*){0,2}")
_LABEL_CHARS = 64


def _masked_string(text: str, masker: Masker, counts: Counter[str], escapes: bool = True) -> str:
    """A string of a masked answer (a text content's `text`, a resource's, any other): JSON
    documents in it masked as JSON (MCPServer answers a tool returning JSON text as a str
    with structuredContent {"result": "<that text>"}: its `password` field is a field
    there too), the text around them as prose (_masked_prose); base64 as a blob
    (_masked_encoded). As it came when nothing is found in it."""
    try:
        parts = _json_parts(text)
    except _TooDeep:
        counts["text:withheld"] += 1  # JSON it cannot read: not passed unread
        return ""
    if parts is None:
        encoded = _masked_encoded(text, masker, counts)
        if encoded != text:
            return encoded
        if '\\"' in text:
            unescaped = _masked_json_escaped(text, masker, counts)
            if unescaped is not None:
                return unescaped
        if escapes:
            text = _masked_escapes(text, masker, counts)
        return _masked_prose(_masked_runs(text, masker, counts), masker, counts)
    found: Counter[str] = Counter()
    out = "".join(
        _masked_json(part, masker, found)
        if is_json
        else _masked_prose(
            _masked_runs(_masked_escapes(part, masker, found) if escapes else part, masker, found),
            masker,
            found,
        )
        for is_json, part in parts
    )
    if not found:
        return text
    counts.update(found)
    return out


def _masked_json_escaped(text: str, masker: Masker, counts: Counter[str]) -> str | None:
    """A text that is a JSON string's inside (`{\\"password\\": \\"hunter2\\"}`: JSON
    serialised into a string once more, its outer quotes gone), read as its reader reads
    it, unescaped: masked there and escaped again when anything is found in it; None when
    it is no such text or nothing is found (each layer is shorter: the reading ends)."""
    try:
        inner = json.loads('"' + text + '"')
    except (ValueError, RecursionError):
        return None
    if not isinstance(inner, str) or inner == text:
        return None
    found: Counter[str] = Counter()
    masked = _masked_string(inner, masker, found)
    if not found:
        return None
    counts.update(found)
    return json.dumps(masked, ensure_ascii=False)[1:-1]


def _masked_prose(text: str, masker: Masker, counts: Counter[str]) -> str:
    """Text that is not JSON, under a mask with field rules, read as the HTTP proxy reads a
    text body (bodies.BodyMask): `name: value` lines, `name=value` pairs, XML elements —
    the values a field rule names masked, the detectors over the rest; a table whose
    first line names such a column as CSV masked by column, columns aligned with spaces
    and `name   value` lines by mcp_columns. Text naming such a field
    where its value cannot be told (a Markdown table, `a, phone, b`) is withheld, as the
    HTTP proxy refuses it. As it came when nothing is found in it (the detectors alone
    are _mask_tree's)."""
    if masker.strictest_field_rule() is None:
        return text
    found: Counter[str] = Counter()
    try:
        # columns aligned with spaces under a header, `name   value` lines
        text = masked_columns(text, masker, found)
    except Ambiguous:
        counts["text:withheld"] += 1
        return ""
    counts.update(found)
    seen = as_read(text)  # (a fullwidth colon is a colon to its reader)
    if not _PROSE_SEPARATORS.search(seen) and not _PROSE_SPACE.search(seen.strip()):
        # (one word, no separator: no name the text could tie a value to — a bare value
        # such as "email" is a value, not a column, and the detectors read it later; a
        # sentence is read: `The password is hunter2.`)
        return text
    # (a table: its header names a masked column, or no line names its columns; TSV
    # when its first line is parted by tabs, else CSV)
    if "\t" in text.partition("\n")[0] and (
        _names_a_column(text, masker, "\t") or table_shaped(text, "\t")
    ):
        body = BodyMask(masker, "csv", media="text/tab-separated-values")
    elif _names_a_column(text, masker) or table_shaped(text):
        # (a table whose first line names no masked column: maybe a row of letters,
        # `Ann,Smith`, read as names; the rows under it are read as rows nothing names)
        body = BodyMask(masker, "csv")
    else:
        body = BodyMask(masker, "lines")
    try:
        out = body.feed(text.encode("utf-8")) + body.finish()
    except Unmaskable:
        counts["text:withheld"] += 1
        return ""
    if not body.counts:
        return text
    counts.update(body.counts)
    return out.decode("utf-8")


_PROSE_SEPARATORS = re.compile(r"[\n:=<,|\t;&]")
_PROSE_SPACE = re.compile(r"\s")


def _names_a_column(text: str, masker: Masker, delimiter: str = ",") -> bool:
    """Whether a text opens with a CSV header (RFC 4180; TSV's when `delimiter` is a
    tab) naming a column a field rule names, over at least one more line."""
    first, newline, _ = text.partition("\n")
    if not newline or delimiter not in first:
        return False
    try:
        names = first.rstrip("\r").split("\t") if delimiter == "\t" else next(csv.reader([first]))
    except (csv.Error, StopIteration):
        return False
    return len(names) > 1 and bool(masker.columns_to_mask([n.strip() for n in names]))


_BASE64_SPACE = re.compile(r"[\t\n\r ]+")
# strings a server hands the client to echo back unread (MCP 2026-07-28's multi-round-trip
# `requestState`, a list's `nextCursor`): opaque to the client, not necessarily sealed
_OPAQUE_TOKENS = frozenset({"requestState", "nextCursor"})
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9+/_\-]{8,}={0,2}")
_ENCODED = re.compile(r"[A-Za-z0-9+/_\-]+={0,2}")
_ENCODED_MIN = 16
_HEX = re.compile(r"(?:[0-9a-f]{2}){16,}|(?:[0-9A-F]{2}){16,}")  # 16 bytes or more
# runs of bytes written as text in a longer text: a base64 data: URI, lines of base64, a
# word of the base64 or base64url alphabet (hex among them) long enough to carry a value
_EMBEDDED = re.compile(
    r"data:[\w.+/-]*(?:;[\w.+-]+=[\w.+-]+)*;base64,[A-Za-z0-9+/]+={0,2}"
    r"|(?:[A-Za-z0-9+/]{16,}={0,2}\r?\n)+[A-Za-z0-9+/]+={0,2}"
    r"|[A-Za-z0-9+/_\-]{16,}={0,2}",  # (as short as a whole string's: _ENCODED_MIN)
    re.I,
)
# a word holding a percent-escape, and what stays unescaped when one is written again
# (RFC 3986's reserved and unreserved characters)
_WORD = re.compile(r"[^\s\"'<>`]+")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_ESCAPE_LAYERS = 3
_URI_SAFE = ":/?#[]@!$&'()*+,;=-._~"
# RFC 2397 §3: data:[<mediatype>][;base64],<data> (the scheme and `base64` in any case)
_DATA_URI = re.compile(r"(?P<head>data:[^,]*?(?P<base64>;base64)?,)(?P<payload>.*)", re.S | re.I)
# a Markdown code block holding the whole text (```json ... ```), as servers write JSON
# for a model to read
_FENCED = re.compile(r"(\s*```[^\n`]*\n)(.*)(\n[ \t]*```\s*)", re.S)


class _TooDeep(ValueError):
    """JSON nested deeper than the reader goes: it cannot be masked as JSON."""


_DECODER = json.JSONDecoder()
_JSON_SPACE = "\ufeff \t\r\n"


def _json_parts(text: str) -> list[tuple[bool, Any]] | None:
    """A text that opens with JSON (after white space or a byte order mark), as its JSON
    documents (True, document) and the text around them (False, text) — one document,
    several (JSON lines), or one followed by prose — or a Markdown code block holding
    such a text; None when it does not open with JSON. _TooDeep when a document opens
    that the reader cannot read: its field names must be read as fields wherever a
    reader (a model) would read them as JSON."""
    parts: list[tuple[bool, Any]] = []
    pos = 0
    while True:
        start = pos
        while start < len(text) and text[start] in _JSON_SPACE:
            start += 1
        # (a JSON string too: JSON text encoded twice, as a str serialised once more)
        if text[start : start + 1] not in ("{", "[", '"'):
            break
        try:
            doc, end = _DECODER.raw_decode(text, start)
        except RecursionError:
            raise _TooDeep("JSON nested too deep") from None
        except ValueError:
            break
        if isinstance(doc, str) and text[end:].lstrip(_JSON_SPACE).startswith(":"):
            break  # (a quoted name and its value, `"\u0070assword": ...`: lines of text)
        parts += [(False, text[pos:start]), (True, doc)]
        pos = end
    if parts:
        return [*parts, (False, text[pos:])]
    fenced = _FENCED.fullmatch(text)
    inner = _json_parts(fenced.group(2)) if fenced is not None else None
    if fenced is None or inner is None:
        return None
    return [(False, fenced.group(1)), *inner, (False, fenced.group(3))]


def _masked_json(doc: Any, masker: Masker, counts: Counter[str]) -> str:
    # (what the document holds is read as a result is: base64 in it, JSON in its texts)
    source = doc
    doc = masked_aliases(masker, doc, counts)
    doc, found = masked_split_values(masker, _json_texts(doc, masker, counts))
    counts.update(found)
    masked, found = masker.mask_json(doc)
    counts.update(found)
    shown = masked_tables(masker, masked, counts, source, _SESSION_TABLES.get(), _ENCLOSING.get())
    return json.dumps(shown, ensure_ascii=False)


def _masked_encoded(text: str, masker: Masker, counts: Counter[str]) -> str:
    """Any string of a masked answer that is bytes written as text as a whole — base64 or
    base64url (at least _ENCODED_MIN characters: a file a tool returns in its
    structuredContent, an attachment under a key of the server's choosing), base64 in
    lines (MIME, RFC 2045 §6.8: Python's encodebytes), hex (16 bytes or more), a
    `data:` URI (RFC 2397) — is read as a blob is (_masked_blob): its text masked and
    written again as it came, bytes with something a detector finds withheld. A string
    nothing is found in goes as it came."""
    data_uri = _DATA_URI.fullmatch(text)
    if data_uri is not None:
        return _masked_data_uri(data_uri, masker, counts)
    lines = text.splitlines()
    if len(lines) > 1 and all(_ENCODED.fullmatch(line) for line in lines):
        return _masked_lines(text, lines, masker, counts)
    if _HEX.fullmatch(text):
        masked = _masked_bytes(bytes.fromhex(text), masker, counts)
        if masked is None:
            return ""
        shown = masked.hex()
        if shown != text.lower():
            return shown.upper() if text.isupper() else shown
    return _masked_base64(text, masker, counts)


def _masked_runs(text: str, masker: Masker, counts: Counter[str]) -> str:
    """Bytes written as text inside a longer text (an export after a sentence, a Markdown
    image's `data:` URI, a block of MIME lines in a message): each run read as a whole
    string is (_masked_encoded), withheld from the text when its bytes are."""
    if len(text) < _ENCODED_MIN:
        return text
    return _EMBEDDED.sub(lambda run: _masked_encoded(run.group(0), masker, counts), text)


def _masked_escapes(text: str, masker: Masker, counts: Counter[str]) -> str:
    """Words with percent-escapes (RFC 3986 §2.1: a URL's query, form data, a JSON
    document percent-encoded whole) read decoded (up to _ESCAPE_LAYERS times, escapes
    escaped again among them), as their reader reads them: a word the mask finds anything
    in decoded (ann%40example.com, %22password%22%3A...) is masked there and written
    again percent-encoded; any other goes as it came."""
    if "%" not in text:
        return text

    def word(found: re.Match[str]) -> str:
        written = found.group(0)
        if "%" not in written or not _ESCAPE.search(written):
            return written
        decoded = written
        for _ in range(_ESCAPE_LAYERS):
            decoded, before = urllib.parse.unquote(decoded), decoded
            if decoded == before or not _ESCAPE.search(decoded):
                break
        seen: Counter[str] = Counter()
        masked, hits = masker.mask_text(_masked_string(decoded, masker, seen, escapes=False))
        seen.update(hits)
        if not seen:
            return written
        counts.update(seen)
        return urllib.parse.quote(masked, safe=_URI_SAFE)

    return _WORD.sub(word, text)


def _masked_bytes(data: bytes, masker: Masker, counts: Counter[str]) -> bytes | None:
    """Bytes a string carried, read as a blob's: as they came, masked, or None (withheld)."""
    blob = base64.b64encode(data).decode("ascii")
    masked = _masked_blob(blob, masker, counts)
    if masked == blob:
        return data
    return base64.b64decode(masked) if masked else None


def _masked_lines(text: str, lines: list[str], masker: Masker, counts: Counter[str]) -> str:
    """Base64 in lines: read joined, written again in lines as wide as its first."""
    joined = "".join(lines)
    masked = _masked_base64(joined, masker, counts)
    if masked == joined:
        return text
    if not masked:
        return ""
    width = len(lines[0])
    newline = "\r\n" if "\r\n" in text else "\n"
    out = newline.join(masked[i : i + width] for i in range(0, len(masked), width))
    return out + newline if text.endswith("\n") else out


def _masked_data_uri(found: re.Match[str], masker: Masker, counts: Counter[str]) -> str:
    """A `data:` URI (RFC 2397 §3): its payload, base64 or percent-encoded, read as the
    bytes it carries; one that cannot be read is withheld, as a blob is."""
    head, payload = found.group("head"), found.group("payload")
    if found.group("base64"):
        masked = _masked_blob(payload, masker, counts)
        if masked == payload:
            return found.string
        return head + masked if masked else ""
    data = urllib.parse.unquote_to_bytes(payload)
    shown = _masked_bytes(data, masker, counts)
    if shown is None:
        return ""
    return found.string if shown == data else head + urllib.parse.quote_from_bytes(shown)


def _masked_base64(text: str, masker: Masker, counts: Counter[str]) -> str:
    if len(text) < _ENCODED_MIN or not _ENCODED.fullmatch(text):
        return text
    bare = text.rstrip("=")
    padded = bare + "=" * (-len(bare) % 4)
    for altchars in (b"+/", b"-_"):
        try:
            data = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        blob = base64.b64encode(data).decode("ascii")
        masked = _masked_blob(blob, masker, counts)
        if masked == blob:
            continue
        if not masked:
            return ""
        out = base64.b64encode(base64.b64decode(masked), altchars=altchars).decode("ascii")
        # (unpadded as it came, when it came so)
        return out if "=" in text or len(text) % 4 == 0 else out.rstrip("=")
    return text


def _masked_token(token: str, masker: Masker, counts: Counter[str]) -> str:
    """An opaque token of the server's (`requestState`, `nextCursor`): the server checks it
    when it comes back (a signature, an envelope), so it cannot be masked in place; a
    sign-only codec (the SDK's RequestStateCodec allows one) or a plain base64 cursor leaves
    its payload readable. Withheld (replaced by an empty one: the server then refuses the
    round, or starts the list again) when the mask finds anything in it as written or in
    any of its base64 or base64url runs decoded, read as _masked_blob reads bytes."""
    views = [token.encode("utf-8")]
    for run in _TOKEN_SEGMENT.findall(token):
        padded = run.rstrip("=") + "=" * (-len(run.rstrip("=")) % 4)
        for altchars in (b"+/", b"-_"):
            try:
                views.append(base64.b64decode(padded, altchars=altchars, validate=True))
            except (binascii.Error, ValueError):
                pass
    views.extend(bytes.fromhex(run) for run in _HEX.findall(token))
    for data in views:
        found: Counter[str] = Counter()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            readings = [data.decode("latin-1"), data.replace(b"\x00", b"").decode("latin-1")]
        else:
            readings = [text]
        for reading in readings:
            try:
                parts = _json_parts(reading)
            except _TooDeep:
                found["token:unreadable"] += 1
                continue
            for is_json, part in parts or [(False, reading)]:
                if is_json:
                    _masked_json(part, masker, found)
                else:
                    found.update(masker.mask_text(part)[1])
        if found:
            counts["token:withheld"] += 1
            return ""
    return token


def _holds_data(data: bytes, masker: Masker) -> bool:
    """Whether a file taken out of an archive holds what the masks would change, read as a
    blob is (_masked_blob), or text naming a masked field (as a WebSocket message is read
    for names: a spreadsheet's `Phone` column, its cells in another file)."""
    encoded = base64.b64encode(data).decode("ascii")
    found: Counter[str] = Counter()
    if _masked_blob(encoded, masker, found) != encoded or found:
        return True
    words = field_words(masker)
    text = data.replace(b"\x00", b"").decode("utf-8", "replace")
    return bool(words) and bool(worded_field(words, name_words(text)))


def _names_field(text: str, masker: Masker) -> bool:
    """Whether a word of `text`, as its reader reads it, names a field a rule masks
    (`phone`, `phone/5550100`, `5550100-P-H-O-N-E`)."""
    words = field_words(masker)
    return bool(words) and any(
        worded_field(words, name_words(read)) for read in dict.fromkeys((text, as_read(text)))
    )


def _names_masked(view: str, masker: Masker) -> bool:
    """Whether bytes read as Latin-1 (`view`) hold a value the field rules mask, read as
    prose is between their control characters (or cannot be read so)."""
    found: Counter[str] = Counter()
    text = _CONTROLS.sub("\n", view)
    return _masked_prose(text, masker, found) != text or bool(found)


_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+")


def _masked_blob(blob: str, masker: Masker, counts: Counter[str]) -> str:
    """A resource's `blob` or an image's `data` (base64): text inside it is masked like
    any text (JSON as JSON) and encoded again. Bytes that are not UTF-8 text (an image,
    an archive) go as they came unless a detector finds something in them read byte for
    byte as Latin-1, with or without their NUL bytes (text in UTF-16 or UTF-32), or as
    EBCDIC — they cannot be masked in place without breaking the file, so such a blob is
    withheld (replaced by an empty one), as is one that is not base64 (RFC 4648 §4, line
    breaks aside) at all."""
    try:
        data = base64.b64decode(_BASE64_SPACE.sub("", blob), validate=True)
    except (binascii.Error, ValueError):
        counts["blob:unreadable"] += 1
        return ""
    if packed_kind(data):
        # an archive or a compressed file (a .zip, an Office document, a .csv.gz): what
        # it holds cannot be masked in place either, and its bytes as they are read as
        # nothing: withheld when a file in it holds what the masks would change, or
        # names a masked field (a spreadsheet's column), or it cannot be opened
        try:
            held = any(_holds_data(content, masker) for content in unpacked(data))
        except Unopenable:
            held = True
        if held:
            counts["blob:withheld"] += 1
            return ""
        return blob
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        views = (
            data.decode("latin-1"),
            data.replace(b"\x00", b"").decode("latin-1"),
            data.decode("cp037"),  # (EBCDIC: a mainframe's text, which no ASCII reading shows)
        )
        # (and by the field rules, as text in a legacy charset reads: `phone: 5550100`
        # in Latin-1 is the text between its control characters)
        if not any(masker.mask_text(view)[1] or _names_masked(view, masker) for view in views):
            return blob
        counts["blob:withheld"] += 1
        return ""
    try:
        parts = _json_parts(text)
    except _TooDeep:
        counts["blob:withheld"] += 1
        return ""
    found: Counter[str] = Counter()
    pieces = []
    for is_json, part in parts or [(False, text)]:
        if is_json:
            pieces.append(_masked_json(part, masker, found))
        else:
            # (the blob's text is not seen by the detectors after: they run here too)
            prose = _masked_prose(part, masker, found)
            masked, hits = masker.mask_text(prose)
            found.update(hits)
            pieces.append(masked)
    rule = masker.strictest_field_rule()
    if not found and rule is not None and lone_value(text):
        # (a blob that is one bare value, `NTU1MDEwMA==`: a resource's whole content,
        # masked as a result that is one is, _bare_results)
        masked_value, found = masker.mask_json({rule.field: text.strip()})
        pieces = [str(masked_value[rule.field])]
    if not found:
        return blob
    counts.update(found)
    return base64.b64encode("".join(pieces).encode("utf-8")).decode("ascii")
