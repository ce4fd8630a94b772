"""Approval requests: created by a require_approval verdict, decided by a person.

Owns the life of an ApprovalRequest — requested, notified, approved / denied / expired,
executed — each step an `approval` record in the audit store with the identities
involved; the rule that nobody approves their own request, under any name either token
gives the person (one_person: subject, email, preferred_username, upn, as read), checked
here AND by the policy's `data.portcullis.approvers`, which decides who may approve at
all; waiting for a decision (local waiters, woken by this replica's writes, by
PostgreSQL NOTIFY from other replicas, and by polling the store as a fallback); and
reuse of an approved request by the same identity, on the same connection, for the same
command text and parameter values, within its TTL — and, under a policy revision other
than the one that asked, only while the policy still asks for the same approval and still
lets its approver give it.

The book is bounded: pending requests by the per-identity cap of the caller
(pdp.api.approval_rpc.MAX_WAITING), settled ones (denied, expired, withdrawn, approved
past their usable window) to the MAX_SETTLED most recently settled, holding at most
MAX_SETTLED_BYTES of text between them; older ones are left to the audit store, which
keeps every event.

A request holds the exact command text and the policy's exact reasons (`asked_reasons`;
reuse compares both; `reasons` are masked, as they quote the command) but its parameter
values only as approvers see them — masked where the policy masks them
(pdp.domain.approver_view) — and as a keyed digest of the exact values, which is what an
approval binds to.

The book believes only the approval records it (or a replica with the same key) wrote:
each carries an HMAC (`mac`) of its body under a key derived from `binding_key`, which
the store does not hold. The chain's hash is unkeyed and the store's triggers refuse only
UPDATE and DELETE, so anyone who can INSERT into the store could otherwise append a
well-chained `approved` record that a signed checkpoint would then vouch for. Records
without a valid MAC (forged, or written before MACs were) are left out and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pdp.domain.approver_view import (
    approver_masker,
    approver_view,
    binding_digest,
    shown_reasons,
)
from pdp.domain.identity import identity_key, subject_as_read
from pdp.store import AuditRecord, AuditStore, StoreUnavailable
from pdp.store.chain import canonical_json
from portcullis.verdict import MaskRule

log = logging.getLogger("portcullis.approvals")

KIND = "approval"
CHANNEL = "portcullis_approvals"
POLL_SECONDS = 0.5
# what opens a justification comment, after its `/*` and any white space
_JUSTIFICATION = "justification:"
MAX_JUSTIFICATION = 1000  # characters of it kept

PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"
WITHDRAWN = "withdrawn"
# settled requests kept in memory (and listed); the oldest settled beyond it are dropped
MAX_SETTLED = 4096
# the text they hold between them (command, its view, statements, values: a request of a
# megabyte of SQL holds ~4 MB): 4096 of them held 16 GB, which one reader filled by asking
# and cancelling (a psql Ctrl-C withdraws), ~4 MB a request
MAX_SETTLED_BYTES = 64 * 1024 * 1024
# what the book keeps of a request that the "requested" record does not hold
_BOOK_ONLY = ("state", "approver", "decided_at", "decision_reason", "executions", "events")
_NOT_RECORDED = (*_BOOK_ONLY, "approver_groups", "recorded_seq", "settled_seq")
MAC = "mac"  # the field of an approval record's body that proves this PDP wrote it
# what the book's binding key is derived for from the PDP's proxy key (ProxyKey.derive)
APPROVAL_KEY_PURPOSE = "approval-parameters"


class ApprovalRefused(Exception):
    """An approver may not decide this request; the reason is safe to show them."""


# the characters of an approver's reason the record keeps
MAX_REASON = 1000
REASON_REQUIRED = "a reason is required (kept with the record): one that reads as something"
# letters that draw nothing (the Hangul fillers) and the braille blank: a reason of them
# reads as blank as one of spaces
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def readable(text: str) -> bool:
    """Whether text holds a character one can read: a letter, digit, punctuation mark or
    symbol, not one that draws nothing. Spaces, format characters (zero-width, soft
    hyphen, bidi marks), controls and combining marks alone read as no reason at all."""
    return any(unicodedata.category(c)[0] in "LNPS" and c not in _BLANK_GLYPHS for c in text)


def reason_kept(raw: str) -> str | None:
    """The reason an approver gave as the record keeps it (blanks around it left out, its
    first MAX_REASON characters), or None when that reads as nothing: every API (gRPC,
    HTTP, the console, the book itself) refuses such a reason alike."""
    reason = raw.strip()[:MAX_REASON]
    return reason if readable(reason) else None


def justification_of(raw: str) -> str:
    """A leading `/* justification: ... */` SQL comment, if the command has one: its
    text up to the first `*/`, white space around it left out.

    Read by scanning, once: the pattern it was read with (`\\s*(.*?)\\s*\\*/`) tried the
    run of white space after every character of the comment, so a reader's statement
    opening with a comment of 160,000 spaces (needing approval: a DELETE) held the PDP's
    loop for a minute, and one of a megabyte for half an hour."""
    text = raw.lstrip()
    if not text.startswith("/*"):
        return ""
    body = text[2:].lstrip()
    if body[: len(_JUSTIFICATION)].lower() != _JUSTIFICATION:
        return ""
    end = body.find("*/", len(_JUSTIFICATION))
    if end < 0:
        return ""
    return body[len(_JUSTIFICATION) : end].strip()[:MAX_JUSTIFICATION]


def same_person(a: str, b: str) -> bool:
    """Whether two subjects read the same (subject_as_read): an approver's and a
    requester's that do are one person, who never decides their own request."""
    return subject_as_read(a) == subject_as_read(b)


def person_keys(subject: str, names: Iterable[Any] = ()) -> set[str]:
    """Every name a person goes by in one token, as read (subject_as_read): the subject
    and the token's other names of them (pdp.domain.identity.person_names: email,
    preferred_username, upn), and an address's mailbox without its `+tag`
    (alice+admin@example.com is delivered to alice@example.com)."""
    keys = set()
    for name in (subject, *names):
        read = subject_as_read(str(name))
        if not read:
            continue
        keys.add(read)
        local, at, domain = read.rpartition("@")
        if at and "+" in local and local.split("+", 1)[0]:
            keys.add(f"{local.split('+', 1)[0]}@{domain}")
    return keys


def one_person(approver: dict[str, Any], requester: dict[str, Any]) -> bool:
    """Whether an approver and a requester are one person: any name one token gives its
    person reads as one the other's gives (person_keys). The second account of the same
    person (alice's agent token, alice-admin of security, both alice@example.com) is
    theirs: nobody approves their own request under another subject."""
    names = approver.get("names", ())
    asked = requester.get("names", ())
    return bool(
        person_keys(str(approver.get("subject", "")), names if isinstance(names, list) else ())
        & person_keys(str(requester.get("subject", "")), asked if isinstance(asked, list) else ())
    )


@dataclass
class ApprovalRequest:
    id: str
    requester: dict[str, Any]  # subject, groups, issuer
    session_id: str
    connection: str
    command_kind: str
    command: str
    reasons: list[str]  # as approvers see them: masked as the command is (asked_reasons)
    approvers: list[str]
    justification: str
    created_at: float
    expires_at: float  # the request must be decided by then
    ttl_seconds: int  # an approval lets the command be re-run this long
    state: str = PENDING
    approver: str = ""
    decided_at: float = 0.0
    decision_reason: str = ""
    executions: int = 0
    events: list[str] = field(default_factory=list)
    # the parameter values bound with the statement (extended protocol) as the approver
    # sees them (masked), and the keyed digest of the exact values the approval is for
    parameters: list[str] = field(default_factory=list)
    parameters_digest: str = ""
    # the command as approvers see it: its text and every statement, masked
    shown_command: str = ""
    shown_statements: list[dict[str, Any]] = field(default_factory=list)
    # the reasons exactly as the policy gave them (a re-run compares them): they quote
    # the command (an HTTP path, an SSH line), so every view shows `reasons`, masked
    asked_reasons: list[str] = field(default_factory=list)
    # the proxy that asked (its identity's key): for a session.open request, which has no
    # session yet, the only proxy that may wait on it — on whichever replica it asks
    proxy: str = ""
    # the policy revision of the decision that asked ("" for a request recorded before
    # revisions were), the approver's groups when they decided, and the seq of the
    # "requested" record (what happened in the session after it is read from there)
    policy_revision: str = ""
    approver_groups: list[str] = field(default_factory=list)
    recorded_seq: int = 0
    # the seq of the record that settled it (approved, denied, expired, withdrawn): the
    # first such record in the chain, on every replica; a later one settled nothing
    settled_seq: int = 0

    @property
    def usable_until(self) -> float:
        return self.decided_at + self.ttl_seconds if self.state == APPROVED else 0.0

    def shown(self) -> tuple[str, list[dict[str, Any]]]:
        """The command and its statements as approvers see them. A request recorded
        before views were stored is masked now, by the detectors alone."""
        if self.shown_command or not self.command:
            return self.shown_command, self.shown_statements
        view = approver_view(self.command_kind, self.command, [], "", approver_masker(()))
        return view.command, view.statements

    def public(self) -> dict[str, Any]:
        """The request as approvers see it (API, webhook): every statement with its own
        classification, values masked where the policy masks them, never the session id
        (a proxy's business alone), the exact text or the binding digest."""
        out = asdict(self)
        for private in (
            "session_id",
            "parameters_digest",
            "shown_command",
            "shown_statements",
            "asked_reasons",
            "proxy",
            "policy_revision",
            "approver_groups",
            "recorded_seq",
            "settled_seq",
        ):
            out.pop(private)
        # the requester's other names (email, ...) tell one person from two: not shown
        out["requester"] = {k: v for k, v in self.requester.items() if k != "names"}
        out["command"], statements = self.shown()
        if self.command_kind.startswith("postgres."):
            out["statements"] = statements
        return out


def footprint(request: ApprovalRequest) -> int:
    """About how many characters of text a request holds (what bounds the book's memory):
    its command, its view, its statements, values and reasons (both spellings)."""
    texts = (
        request.command,
        request.shown_command,
        request.justification,
        *(str(s.get("text", "")) for s in request.shown_statements),
        *request.parameters,
        *request.reasons,
        *request.asked_reasons,
    )
    return sum(len(t) for t in texts) + 1024  # and the rest of it, a little


def approval_mac(binding_key: bytes, body: dict[str, Any]) -> str:
    """The MAC an approval record's body carries (MAC), under a key derived from the
    book's `binding_key` (APPROVAL_KEY_PURPOSE of the PDP's proxy key)."""
    key = hmac.new(binding_key, b"approval-records", hashlib.sha256).digest()
    content = canonical_json({k: v for k, v in body.items() if k != MAC})
    return hmac.new(key, content.encode(), hashlib.sha256).hexdigest()


def authentic_approval(binding_key: bytes, body: Any) -> bool:
    """Whether an approval record's body carries the MAC of a book holding the key."""
    if not isinstance(body, dict) or not isinstance(body.get(MAC), str):
        return False
    try:
        return hmac.compare_digest(body[MAC], approval_mac(binding_key, body))
    except (ValueError, TypeError, RecursionError):
        return False


def believed_approvals(
    binding_key: bytes, records: Iterable[AuditRecord]
) -> tuple[list[AuditRecord], list[int]]:
    """The approval records a book holding the key wrote, and the seqs of the others.
    What presents a record as fact (a replay: "approved by sam") shows only those the
    book itself believes: anyone who may INSERT into the store can append a well-chained
    `approved` record naming any approver."""
    kept, left_out = [], []
    for record in records:
        if authentic_approval(binding_key, record.body):
            kept.append(record)
        else:
            left_out.append(record.seq)
    return kept, left_out


Authorize = Callable[[dict[str, Any], ApprovalRequest], Awaitable[tuple[bool, list[str]]]]


class ApprovalBook:
    """Every approval request this PDP knows, kept in step with the audit store."""

    def __init__(
        self,
        store: AuditStore,
        authorize: Authorize,
        notify: Callable[[ApprovalRequest], None] | None = None,
        decision_timeout: float = 120.0,
    ) -> None:
        self.store = store
        # keys the digest an approval binds its values with; the composition root sets the
        # PDP's own, stable across restarts and shared by replicas
        self.binding_key = secrets.token_bytes(32)
        self.authorize = authorize  # asks the policy whether an approver may decide
        self.notify = notify
        self.decision_timeout = decision_timeout
        self.requests: dict[str, ApprovalRequest] = {}
        # settled requests' ids, oldest settled first (what _prune drops first)
        self._settled: dict[str, None] = {}
        self._settled_bytes = 0  # what the settled requests hold (footprint), summed
        self._footprints: dict[str, int] = {}
        # moves on whenever a request is added, changes state or executions, or is dropped:
        # what a watcher compares instead of reading every request
        self.version = 0
        self._seen_seq = 0
        self._loaded = False  # the store read once (refresh): before, no request is known
        self._changed = asyncio.Condition()
        self._settling = asyncio.Lock()  # one approver's answer or withdrawal at a time
        # session id -> its pending requests' ids (withdraw_of_session: a session's end)
        self._pending_of: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._refreshes: set[asyncio.Future[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        await self._withdraw_of_ended()
        self._task = asyncio.create_task(self._follow())
        await self._listen()

    async def _withdraw_of_ended(self) -> None:
        """Requests left pending of sessions whose close is recorded (a PDP that stopped
        between recording a close and withdrawing its requests): withdrawn as that close
        would have."""
        for session_id in sorted(self._pending_of):
            closed = await self.store.query(kind="session.close", session_id=session_id, limit=1)
            if closed:
                reason = str(closed[0].body.get("reason", ""))
                await self.withdraw_of_session(session_id, reason or "closed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    async def _listen(self) -> None:
        """With the PostgreSQL store, another replica's NOTIFY wakes us at once."""
        dsn = getattr(self.store, "dsn", None)
        if not dsn:
            return
        import asyncpg

        try:
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("approvals: LISTEN unavailable (%s); polling the store", exc)
            self._listener = None

    def _on_notify(self, *args: Any) -> None:
        task = asyncio.ensure_future(self.refresh())
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _announce(self, approval_id: str) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.execute("SELECT pg_notify($1, $2)", CHANNEL, approval_id)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            with contextlib.suppress(StoreUnavailable):
                await self.refresh()
            await self._expire_overdue()

    # -- the store is the truth ------------------------------------------------------------

    async def refresh(self) -> None:
        records = await self.store.query(kind=KIND, after_seq=self._seen_seq)
        self._loaded = True
        if not records:
            return
        for record in records:
            if record.seq <= self._seen_seq:
                continue  # applied meanwhile by another refresh (a NOTIFY's, a poll's)
            if self._authentic(record.body):
                self._apply(record.body, record.seq)
            else:
                log.warning(
                    "approval record seq %d (%s) has no valid MAC: not written by this PDP's"
                    " key; ignored",
                    record.seq,
                    record.id,
                )
            self._seen_seq = max(self._seen_seq, record.seq)
        self._prune()
        async with self._changed:
            self._changed.notify_all()

    def _apply(self, body: dict[str, Any], seq: int = 0) -> None:
        event = body.get("event")
        approval_id = body.get("approval_id", "")
        if event == "requested":
            if approval_id in self.requests:
                return  # a copy of a request's record must not make it pending again
            made = self.requests[approval_id] = ApprovalRequest(**body["request"], recorded_seq=seq)
            if made.reasons and not made.asked_reasons:
                # recorded before reasons were masked: its reasons are the policy's own
                made.asked_reasons = made.reasons
                made.reasons = shown_reasons(made.reasons, approver_masker(()))
            if made.state == PENDING and made.session_id and made.command_kind != "session.open":
                self._pending_of.setdefault(made.session_id, set()).add(approval_id)
            self.version += 1
        request = self.requests.get(approval_id)
        if request is None:
            return
        request.events.append(event or "")
        if event in (APPROVED, DENIED, EXPIRED, WITHDRAWN) and request.state == PENDING:
            request.state = event
            request.approver = body.get("approver", "")
            request.decided_at = body.get("time", time.time())
            request.decision_reason = body.get("reason", "")
            groups = body.get("approver_groups")
            request.approver_groups = [str(g) for g in groups] if isinstance(groups, list) else []
            request.settled_seq = seq
            self._settled[approval_id] = None
            self._footprints[approval_id] = footprint(request)
            self._settled_bytes += self._footprints[approval_id]
            self._unpend(request)
            self.version += 1
        elif event == "executed":
            request.executions += 1
            self.version += 1

    def _prune(self) -> None:
        """Drop the oldest settled requests beyond MAX_SETTLED, or while they hold more
        than MAX_SETTLED_BYTES of text between them. An approval still usable
        stays (it goes to the back of the line): it is what a re-run is allowed by. A
        requester may withdraw their own requests at will, so without this bound a loop
        of ask-and-withdraw grew every PDP's memory (and every listing) without end."""
        settled = self._settled
        now = time.time()
        kept_usable = 0
        while (
            len(settled) > MAX_SETTLED or self._settled_bytes > MAX_SETTLED_BYTES
        ) and kept_usable < len(settled):
            oldest = next(iter(settled))
            del settled[oldest]
            request = self.requests.get(oldest)
            if request is not None and request.usable_until > now:
                settled[oldest] = None
                kept_usable += 1
                continue
            self.requests.pop(oldest, None)
            self._settled_bytes -= self._footprints.pop(oldest, 0)
            self.version += 1

    def _unpend(self, request: ApprovalRequest) -> None:
        waiting = self._pending_of.get(request.session_id)
        if waiting is not None:
            waiting.discard(request.id)
            if not waiting:
                del self._pending_of[request.session_id]

    def _mac(self, body: dict[str, Any]) -> str:
        return approval_mac(self.binding_key, body)

    def _authentic(self, body: Any) -> bool:
        """Whether an approval record's body carries this book's MAC of itself."""
        return authentic_approval(self.binding_key, body)

    async def _write(self, approval_id: str, event: str, subject: str, **extra: Any) -> int:
        """Append one approval record (the book then reads it back); its seq."""
        body = {"approval_id": approval_id, "event": event, "time": time.time(), **extra}
        body[MAC] = self._mac(body)
        record = await self.store.append(
            KIND, body, subject=subject, session_id=extra.get("session_id", "")
        )
        await self.refresh()
        await self._announce(approval_id)
        return record.seq

    async def _settle(
        self, request: ApprovalRequest, event: str, subject: str, **extra: Any
    ) -> None:
        """Write the record settling a pending request, and make sure it is the one that
        settled it: another answer recorded first (another approver's, an expiry, a
        withdrawal, this PDP's or a replica's) wins on every reader, and this one is
        refused, never answered as if it had counted."""
        seq = await self._write(request.id, event, subject, **extra)
        settled = self.requests.get(request.id, request)
        if settled.settled_seq != seq:
            by = f" by {settled.approver}" if settled.approver else ""
            raise ApprovalRefused(f"approval request {request.id} is already {settled.state}{by}")

    # -- requests --------------------------------------------------------------------------

    def live_for(
        self,
        state: str,
        subject: str,
        issuer: str,
        connection: str,
        command: str,
        kind: str = "",
        session_id: str | None = None,
        parameters: list[str] | None = None,
    ) -> list[ApprovalRequest]:
        """The live requests in `state` of this identity (its subject AND issuer: the same
        `sub` from another issuer is someone else) for exactly this command (and, when
        given, session and parameter values with which the approver saw it), the newest
        first: an approved one until its usable window ends (the caller checks each still
        holds: pdp.api.approval_rpc.settle), a pending one until it expires. A session.open
        grant binds to no session, so the issuer is all that tells its requester from a
        namesake of another provider."""
        now = time.time()
        digest = binding_digest(self.binding_key, parameters) if parameters is not None else ""
        found = []
        for request in self.requests.values():
            alive_until = request.usable_until if state == APPROVED else request.expires_at
            if (
                request.state == state
                and request.requester.get("subject") == subject
                and request.requester.get("issuer", "") == issuer
                and request.connection == connection
                and request.command == command
                and (not kind or request.command_kind == kind)
                and (session_id is None or request.session_id == session_id)
                and (parameters is None or self._binds(request, parameters, digest))
                and alive_until > now
            ):
                found.append(request)
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def waiting_of(self, subject: str, issuer: str = "") -> int:
        """How many of this identity's requests wait for a person now: under its key
        (pdp.domain.identity.identity_key), whatever the spelling of the subject, and of
        any issuer (a cap, which namesakes only ever share). `issuer` is not used."""
        now = time.time()
        key = identity_key(subject)
        return sum(
            1
            for r in self.requests.values()
            if r.state == PENDING
            and r.expires_at > now
            and identity_key(str(r.requester.get("subject", ""))) == key
        )

    @staticmethod
    def _binds(request: ApprovalRequest, parameters: list[str], digest: str) -> bool:
        if request.parameters_digest:
            return hmac.compare_digest(request.parameters_digest, digest)
        return request.parameters == parameters  # recorded before digests were

    async def request(
        self,
        requester: dict[str, Any],
        session_id: str,
        connection: str,
        command_kind: str,
        command: str,
        reasons: list[str],
        approvers: list[str],
        ttl_seconds: int,
        parameters: list[str] | None = None,
        mask: tuple[MaskRule, ...] | list[MaskRule] = (),
        proxy: str = "",
        policy_revision: str = "",
    ) -> ApprovalRequest:
        """The pending request for this command, created (and announced) if there is none.
        `mask` is the verdict's mask rules: what approvers see is masked by them; `proxy`
        the key of the proxy that asked, recorded with the request; `policy_revision` the
        revision of the decision that asked."""
        asked = (
            requester["subject"],
            str(requester.get("issuer", "")),
            connection,
            command,
            command_kind,
            session_id,
            parameters or [],
        )
        waiting = self.live_for(PENDING, *asked)
        if waiting:
            return waiting[0]
        exact = list(parameters or [])
        # off the event loop every other decision shares: a long statement's view (every
        # literal and every name read by the mask rules) takes seconds of CPU — an INSERT
        # naming 120,000 columns (850 KB) held every decision of the PDP for 17 s
        view = await asyncio.to_thread(
            approver_view,
            command_kind,
            command,
            exact,
            justification_of(command),
            approver_masker(mask),
            reasons,
        )
        waiting = self.live_for(PENDING, *asked)
        if waiting:  # made by another call of the same command meanwhile
            return waiting[0]
        now = time.time()
        request = ApprovalRequest(
            id="a-" + uuid.uuid4().hex[:16],
            requester=requester,
            session_id=session_id,
            connection=connection,
            command_kind=command_kind,
            command=command,
            reasons=view.reasons,
            approvers=list(approvers),
            justification=view.justification,
            created_at=now,
            expires_at=now + self.decision_timeout,
            ttl_seconds=ttl_seconds or 900,
            parameters=view.parameters,
            parameters_digest=binding_digest(self.binding_key, exact),
            shown_command=view.command,
            shown_statements=view.statements,
            asked_reasons=list(reasons),
            proxy=proxy,
            policy_revision=policy_revision,
        )
        record = {k: v for k, v in asdict(request).items() if k not in _NOT_RECORDED}
        await self._write(
            request.id, "requested", requester["subject"], request=record, session_id=session_id
        )
        if self.notify is not None:
            self.notify(self.requests[request.id])
        return self.requests[request.id]

    async def decide(
        self, approval_id: str, approver: dict[str, Any], approve: bool, reason: str
    ) -> ApprovalRequest:
        """Record an approver's decision; raises ApprovalRefused when they may not make it.
        One answer at a time on this PDP (two approvers' at once, or one's twice, each
        found the request pending and both were recorded and answered as given)."""
        kept = reason_kept(reason)
        if kept is None:
            raise ApprovalRefused(REASON_REQUIRED)
        async with self._settling:
            return await self._decide(approval_id, approver, approve, kept)

    async def _decide(
        self, approval_id: str, approver: dict[str, Any], approve: bool, reason: str
    ) -> ApprovalRequest:
        await self.refresh()
        request = self.requests.get(approval_id)
        # one answer for a request that does not exist and one this person may neither
        # decide nor owns, whatever its state: no id, approvers or outcome learnt by trying
        # (ListApprovals shows nobody else's requests: issue 22)
        unknown = ApprovalRefused(f"no approval request {approval_id!r} you may decide")
        if request is None:
            raise unknown
        subject = str(approver.get("subject", ""))
        # never self-approval, whatever the policy says and whatever groups are held, and
        # under none of the names either token gives the person
        if not subject or one_person(approver, request.requester):
            raise ApprovalRefused("nobody may approve or deny their own request")
        allowed, _reasons = await self.authorize(approver, request)
        if not allowed:
            raise unknown
        if request.state != PENDING:
            raise ApprovalRefused(f"approval request {approval_id} is already {request.state}")
        if request.expires_at <= time.time():
            await self._expire(request)
            raise ApprovalRefused(f"approval request {approval_id} has expired")
        ended = await self._session_ended(request) if approve else None
        if ended is not None:
            raise ApprovalRefused(
                f"approval request {approval_id} is of a session that has ended ({ended}):"
                " nothing would run the command"
            )
        await self._settle(
            request,
            APPROVED if approve else DENIED,
            subject,
            approver=subject,
            reason=reason,
            approver_groups=list(approver.get("groups", [])),
            session_id=request.session_id,
        )
        return self.requests[approval_id]

    async def _session_ended(self, request: ApprovalRequest) -> str | None:
        """How the session that asked ended, when it has (None while it is open): an
        approval is bound to its session (a session.open grant to none), so one given after
        any close runs nothing and stands in the evidence as a yes to what no one could
        run. Whoever closed it: its proxy (the client went, its grant or token ran out,
        the proxy shut down or drained) or the PDP's reaper (its proxy lost, its grant
        expired). A reaped session's proxy may still hear the answer it waits for, but
        the command it would then send is decided on a closed session: denied."""
        if request.command_kind == "session.open" or not request.session_id:
            return None
        closed = await self.store.query(
            kind="session.close", session_id=request.session_id, limit=1
        )
        if not closed:
            return None
        reason = str(closed[0].body.get("reason", ""))[:200]
        return f"closed: {reason}" if reason else "closed"

    async def withdraw(
        self,
        approval_id: str,
        requester: str | None,
        session_id: str | None,
        reason: str,
        issuer: str | None = None,
    ) -> ApprovalRequest:
        """Withdraw a pending request: by its requester (`requester` and `issuer`, the
        subject and issuer of their own token: exactly the request's, as ListApprovals
        shows a person their own), or for the session that asked (`session_id`: its proxy,
        when the client cancelled the wait). Raises ApprovalRefused for anyone else (as for
        an id that does not exist) or a settled request."""
        async with self._settling:
            return await self._withdraw(approval_id, requester, session_id, reason, issuer)

    async def _withdraw(
        self,
        approval_id: str,
        requester: str | None,
        session_id: str | None,
        reason: str,
        issuer: str | None,
    ) -> ApprovalRequest:
        await self.refresh()
        request = self.requests.get(approval_id)
        unknown = ApprovalRefused(f"no approval request {approval_id!r} of yours")
        if request is None:
            raise unknown
        owner = str(request.requester.get("subject", ""))
        if requester is not None and (
            requester != owner
            or (issuer is not None and issuer != str(request.requester.get("issuer", "")))
        ):
            raise unknown
        if session_id is not None and session_id != request.session_id:
            raise ApprovalRefused("the request belongs to another session")
        if request.state != PENDING:
            raise ApprovalRefused(f"approval request {approval_id} is already {request.state}")
        await self._settle(
            request,
            WITHDRAWN,
            owner,
            reason=reason[:1000],
            by="requester" if requester is not None else "client cancel",
            session_id=request.session_id,
        )
        return self.requests[approval_id]

    async def withdraw_of_session(self, session_id: str, ended: str) -> int:
        """Withdraw every request still pending of a session that has ended (`ended`: how,
        as its close record says), at once: nothing would run its command, so approvers
        no longer list it and nobody can approve it, and the evidence says why (`by`:
        "session end"). A session.open grant binds to no session: never one of these.
        How many were withdrawn. Requests this PDP does not hold yet (a replica's, not
        read) are refused at approval by _session_ended, and expire. A session ending
        before the book first read the store (a PDP serving before its book started) has
        the store read first: its requests are not known otherwise."""
        if not self._loaded:
            await self.refresh()
        if session_id not in self._pending_of:
            return 0  # the usual close: no request, no store read
        withdrawn = 0
        async with self._settling:
            for approval_id in sorted(self._pending_of.get(session_id, ())):
                request = self.requests.get(approval_id)
                if (
                    request is None
                    or request.state != PENDING
                    or request.command_kind == "session.open"
                ):
                    continue
                try:
                    await self._settle(
                        request,
                        WITHDRAWN,
                        str(request.requester.get("subject", "")),
                        reason=f"its session ended ({ended[:200]})",
                        by="session end",
                        session_id=session_id,
                    )
                except ApprovalRefused:
                    continue  # settled meanwhile (an approver's answer recorded first)
                withdrawn += 1
        return withdrawn

    async def executed(self, request: ApprovalRequest, decision_id: str) -> None:
        await self._write(
            request.id,
            "executed",
            request.requester.get("subject", ""),
            decision_id=decision_id,
            session_id=request.session_id,
        )

    async def notified(self, request: ApprovalRequest, channel: str) -> None:
        await self._write(
            request.id,
            "notified",
            request.requester.get("subject", ""),
            channel=channel,
            session_id=request.session_id,
        )

    async def _expire(self, request: ApprovalRequest) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._write(
                request.id,
                EXPIRED,
                request.requester.get("subject", ""),
                reason="nobody decided in time",
                session_id=request.session_id,
            )

    async def _expire_overdue(self) -> None:
        now = time.time()
        for request in list(self.requests.values()):
            if request.state == PENDING and request.expires_at <= now:
                await self._expire(request)

    async def wait(self, approval_id: str, timeout: float) -> ApprovalRequest | None:
        """Until the request is decided (or timeout); the request as it then stands. A
        request whose decision time has passed by then is expired first, so the waiter
        reads `expired`, never a `pending` that can no longer be approved."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                request = self.requests.get(approval_id)
                if request is None or request.state != PENDING:
                    return request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        if request.expires_at <= time.time() + POLL_SECONDS:
            await self._expire(request)
        return self.requests.get(approval_id, request)
