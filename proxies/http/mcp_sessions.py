"""MCP sessions kept apart: which client may present which `Mcp-Session-Id`. No IO here.

Owns the rule that an MCP session (the id an upstream server hands out in its answer to
`initialize`, MCP Transports → Streamable HTTP → Session Management) belongs to the client
it was handed to — the owner is a keyed digest of that client's bearer token, never the
token itself — and is usable by no other: an id another token began, or one no answer
through this proxy ever carried, is refused as unknown (404, which makes a conforming
client start a new session), so a leaked or guessed session id opens nothing.

Also what the proxy must remember of each session between HTTP requests: the requests it
forwarded and how their answers must be handled (masked, tools filtered), because an
answer may come back on another stream than its request's (a resumed GET with
Last-Event-ID), and the event ids its streams handed this client: a `Last-Event-ID` is
accepted only as one of them, since a server's event store may replay any session's
stream from an event id it is given (and is not sent upstream at all: proxy.py's
mcp_exchange, as a store keying streams by request ids replays other sessions' events
of the same id). Everything is bounded: the oldest sessions, requests
and event ids are forgotten first (and ids are bounded in length), and a forgotten
request's answer is dropped, never passed unread. An identity (the subject, whatever
tokens it holds) keeps at most MAX_SESSIONS_PER_IDENTITY sessions: its next `initialize`
is refused (429) while all of them are in use, and forgets the least recently used once
one has been idle. A session forgotten so is still open upstream (a server keeps it until
DELETE or its own idle timeout, and may bound how many it holds): the binding hands its
id and endpoint back (`take_evicted`) for the proxy to end it there.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from proxies.http.mcp_codec import MAX_ID
from proxies.http.table_memory import TableMemory

MAX_SESSIONS = 10_000
MAX_SESSIONS_PER_IDENTITY = 64  # of one subject, whatever tokens it holds
IDLE_SECONDS = 600.0  # a session unused this long gives way to its identity's next one
MAX_PENDING = 256
# tools named by forgotten calls, kept for the session (each a tool the policy let it
# call: a handful)
MAX_FORGOTTEN_TOOLS = 1024
MAX_SESSION_ID = 256
MAX_EVENT_IDS = 256  # per session, the latest (as MAX_PENDING requests)
MAX_EVENT_ID = 256  # characters: a longer id is not noted, so not resumed from


def owner_of(token: str, key: bytes) -> str:
    """The owner a token stands for: HMAC-SHA-256 under the proxy's key (the token itself
    is never kept)."""
    return hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def valid_session_id(value: str) -> bool:
    """An `Mcp-Session-Id` as the transport allows it: visible ASCII (0x21-0x7E)."""
    return 0 < len(value) <= MAX_SESSION_ID and all(0x21 <= ord(c) <= 0x7E for c in value)


@dataclass
class McpSession:
    """What one MCP session (or, without a session id, one owner) has in flight."""

    owner: str
    # the endpoint (path and query) its id was handed out on: where it is ended
    endpoint: str = ""
    # the subject it was begun for (its sessions are bounded, whatever tokens it holds),
    # and when it was last used (clock seconds)
    identity: str = ""
    used: float = 0.0
    # request id → how its answer is handled (the exchange's own object)
    pending: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict)
    # the mask of the latest masked message (server messages get it when the server's
    # stream is decided unmasked)
    stream_mask: Any = None
    # the server's own messages (requests, notifications), on whichever stream: the verdict
    # on its stream (a GET), asked once for the session before its first answer is read —
    # None until asked, then (allowed, its mask or None)
    server: tuple[bool, Any] | None = None
    # tool name → its x-mcp-header names → property paths, from the session's latest
    # tools/list answer (mcp_codec.header_schema; None: a schema not read that way)
    header_schemas: dict[str, Any] = field(default_factory=dict)
    # the columns of tables its results (and its tools' output schemas) named, by the
    # call each answered: a later result's rows without names (a next page, a cursor's
    # fetch) are masked under them (table_memory, bodies.BodyMask's tables)
    tables: TableMemory = field(default_factory=TableMemory)
    # request id → the session holding it for an approval (Prefer: wait), while it waits
    held: dict[Hashable, Any] = field(default_factory=dict)
    # the SSE event ids passed to this client, latest last (what it may resume from)
    event_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # the server's requests passed to this client (sampling, elicitation, roots): request
    # id → method, what a client's answer answers; an answer to none is not forwarded
    asked: OrderedDict[Hashable, str] = field(default_factory=OrderedDict)
    # request id → the tools of the session's calls in flight when it reached the client
    # (what the client's answer to it may act on: a tool's question to its user)
    asked_during: dict[Hashable, tuple[str, ...]] = field(default_factory=dict)
    # the tools of calls forgotten from `pending` (past MAX_PENDING) before their answer
    # came: they may still run, for the rest of the session (running)
    forgotten_tools: set[str] = field(default_factory=set)

    def ask(self, request_id: Any, method: str, during: tuple[str, ...] = ()) -> None:
        """A server's request of this id reached the client, while the tools `during` ran:
        it may answer it once."""
        if isinstance(request_id, str) and len(request_id) > MAX_ID:
            return  # (not noted, so not answered: a client's answer with it is refused)
        if isinstance(request_id, str | int) and not isinstance(request_id, bool):
            key = _id_key(request_id)
            self.asked.pop(key, None)
            self.asked[key] = method
            self.asked_during[key] = during
            while len(self.asked) > MAX_PENDING:
                gone, _ = self.asked.popitem(last=False)
                self.asked_during.pop(gone, None)

    def during(self, request_id: Any) -> tuple[str, ...]:
        """The tools that were running when the server's request of this id reached the
        client (the calls of the session in flight then)."""
        if not (isinstance(request_id, str | int) and not isinstance(request_id, bool)):
            return ()
        return self.asked_during.get(_id_key(request_id), ())

    def asking(self, request_id: Any) -> str | None:
        """The method of the server's request a client's answer of this id answers, or
        None when no such request reached this client (kept until answered())."""
        if not (isinstance(request_id, str | int) and not isinstance(request_id, bool)):
            return None
        return self.asked.get(_id_key(request_id))

    def answered_server(self, request_id: Any) -> None:
        """The client's answer to the server's request went upstream: it is answered."""
        if isinstance(request_id, str | int) and not isinstance(request_id, bool):
            self.asked.pop(_id_key(request_id), None)
            self.asked_during.pop(_id_key(request_id), None)

    def handed(self, event_id: str) -> None:
        """An event of this id reached the client: it may resume from it."""
        if len(event_id) > MAX_EVENT_ID:
            return
        self.event_ids.pop(event_id, None)
        self.event_ids[event_id] = None
        while len(self.event_ids) > MAX_EVENT_IDS:
            self.event_ids.popitem(last=False)

    def resumes(self, event_id: str) -> bool:
        """Whether a Last-Event-ID names an event this session handed its client."""
        return event_id in self.event_ids

    def expect(self, request_id: str | int, handling: Any) -> None:
        key = _id_key(request_id)
        # (a request of an id still in flight, which a session read by nothing may send:
        # the call it takes the place of may still run upstream)
        self._forgot(self.pending.pop(key, None))
        self.pending[key] = handling
        while len(self.pending) > MAX_PENDING:
            self._forgot(self.pending.popitem(last=False)[1])

    def abandoned(self, request_id: Any) -> Any:
        """A request whose answer the proxy gave up reading (its stream cut short): as
        answered(), but its call may still run upstream (running)."""
        handling = self.answered(request_id)
        self._forgot(handling)
        return handling

    def _forgot(self, handling: Any) -> None:
        tool = getattr(handling, "tool", None)
        if isinstance(tool, str) and len(self.forgotten_tools) < MAX_FORGOTTEN_TOOLS:
            # (its call may still run upstream: what the server asks from now on may be
            # asked during it)
            self.forgotten_tools.add(tool)

    def running(self) -> tuple[str, ...]:
        """The tools the session's calls in flight run: those whose answer is still owed,
        and those of calls forgotten before their answer came (past MAX_PENDING, or their
        id taken by a later request: a client leaving requests unanswered, dropping their
        streams or sending an id again cannot make a write tool's call look ended while
        it runs)."""
        tools = {getattr(h, "tool", None) for h in self.pending.values()}
        return tuple(sorted({t for t in tools if isinstance(t, str)} | self.forgotten_tools))

    def hold(self, request_id: str | int, waiter: Any) -> Hashable:
        """A request held for an approval (Prefer: wait) by its session (`waiter`, with
        cancel_wait()), until release()."""
        key = _id_key(request_id)
        self.held[key] = waiter
        return key

    def release(self, key: Hashable) -> None:
        self.held.pop(key, None)

    def cancel_held(self, request_id: Any) -> bool:
        """notifications/cancelled for a held request: its wait ends (the session withdraws
        the approval request). A session waits for one approval at a time, so only its
        latest hold is the wait under way; False when nothing was cancelled."""
        if not (isinstance(request_id, str | int) and not isinstance(request_id, bool)):
            return False
        key = _id_key(request_id)
        waiter = self.held.get(key)
        if waiter is None:
            return False
        latest = [k for k, w in self.held.items() if w is waiter][-1]
        return latest == key and bool(waiter.cancel_wait())

    def owed(self, request_id: Any) -> Any:
        """The handling of the answer still owed to this request id, if any (kept)."""
        if not (isinstance(request_id, str | int) and not isinstance(request_id, bool)):
            return None
        return self.pending.get(_id_key(request_id))

    def answered(self, request_id: Any) -> Any:
        """The handling of the request this answers (forgotten then), or None if the proxy
        forwarded no such request in this session."""
        if not (isinstance(request_id, str | int) and not isinstance(request_id, bool)):
            return None
        return self.pending.pop(_id_key(request_id), None)


def _id_key(request_id: str | int) -> Hashable:
    # 1 and "1" are different JSON-RPC ids, but a server keying its requests by text (a
    # JavaScript object, a map of strings) takes them for one and may answer either with
    # the other's id: one id in flight here, so no answer meets the other's handling
    return str(request_id)


class SessionBinding:
    """Mcp-Session-Id → its McpSession (and owner); plus one McpSession per owner for the
    exchanges that carry no session id (MCP 2026-07-28, or a server without sessions)."""

    def __init__(
        self,
        max_sessions: int = MAX_SESSIONS,
        per_identity: int = MAX_SESSIONS_PER_IDENTITY,
        idle: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions: OrderedDict[str, McpSession] = OrderedDict()
        self._unnamed: OrderedDict[str, McpSession] = OrderedDict()
        self._max = max_sessions
        self._per_identity = per_identity
        self.idle = idle
        self._clock = clock
        # (session id, endpoint) of sessions forgotten to make room, not yet ended upstream
        self._evicted: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self._sessions)

    def session(self, session_id: str | None, owner: str) -> McpSession | None:
        """The session this owner may use under this id (None: refused — unknown, or
        another owner's); without an id, the owner's own unnamed one."""
        if session_id is None:
            found = self._unnamed.pop(owner, None) or McpSession(owner)
            self._unnamed[owner] = found
            while len(self._unnamed) > self._max:
                self._unnamed.popitem(last=False)
            return found
        named = self._sessions.get(session_id)
        if named is None or not hmac.compare_digest(named.owner, owner):
            return None
        self._sessions.move_to_end(session_id)
        named.used = self._clock()
        return named

    def room(self, identity: str) -> bool:
        """Whether this identity may begin another session: it holds fewer than its bound,
        or one of them has been idle `idle` seconds (bind() then forgets its idlest)."""
        mine = [s for s in self._sessions.values() if s.identity == identity]
        if len(mine) < self._per_identity:
            return True
        now = self._clock()
        return any(now - s.used >= self.idle for s in mine)

    def bind(
        self, session_id: str, owner: str, identity: str = "", endpoint: str = ""
    ) -> McpSession | None:
        """An upstream answer handed this owner `session_id` (on `endpoint`): the owner's
        from now on (its identity's least recently used sessions past the bound, and the
        oldest past MAX_SESSIONS, forgotten: take_evicted). None when it is another
        owner's (the answer must not reach this client) or not a valid id."""
        if not valid_session_id(session_id):
            return None
        found = self._sessions.get(session_id)
        if found is not None:
            return found if hmac.compare_digest(found.owner, owner) else None
        identity = identity or owner
        mine = [sid for sid, s in self._sessions.items() if s.identity == identity]
        for sid in mine[: max(0, len(mine) - self._per_identity + 1)]:
            self._evict(sid, self._sessions.pop(sid))
        made = McpSession(owner, endpoint=endpoint, identity=identity, used=self._clock())
        self._sessions[session_id] = made
        while len(self._sessions) > self._max:
            self._evict(*self._sessions.popitem(last=False))
        return made

    def _evict(self, session_id: str, session: McpSession) -> None:
        self._evicted.append((session_id, session.endpoint))

    def take_evicted(self) -> list[tuple[str, str]]:
        """The (session id, endpoint) of the sessions forgotten to make room since the
        last call: still open upstream until ended there."""
        taken, self._evicted = self._evicted, []
        return taken

    def forget(self, session_id: str) -> None:
        """The session ended (its DELETE answered, or the server no longer knows it)."""
        self._sessions.pop(session_id, None)
