"""The proxies' client of the Policy Decision Point: deadlines, reconnects, fail closed.

Owns every gRPC call a proxy makes (Decide's go over one stream, through
proxies.runtime.decide_calls). Each call has its own deadline; the channel reconnects
by itself. When the PDP cannot answer, `decide` returns a deny verdict whose
reason says so — it never raises into the protocol code and never guesses an allow. A
watcher polls `ServerInfo` so the decision cache learns of policy changes and of a PDP
that went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import struct_pb2

from portcullis.literals import ShapeRewrite
from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
from portcullis.verdict import ApprovalSpec, MaskRule, Verdict, VerdictKind
from portcullis.wire import MAX_BATCHES_PER_CALL
from proxies.runtime.decide_calls import CallFailed, DecideCalls
from proxies.runtime.spool import SEALED, seal, spool_key

log = logging.getLogger("portcullis.pdp_client")

_KINDS = {
    pdp_pb2.ALLOW: VerdictKind.ALLOW,
    pdp_pb2.DENY: VerdictKind.DENY,
    pdp_pb2.MASK: VerdictKind.MASK,
    pdp_pb2.REQUIRE_APPROVAL: VerdictKind.REQUIRE_APPROVAL,
}


class ReuseTally:
    """The commands answered with one verdict from a session's decision cache since its
    last Decide (reported with the next, DecideRequest.reused): the command the verdict
    was decided for, how many, and when (time.monotonic()) the first and the last were."""

    __slots__ = ("count", "first", "last", "raw")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.count = 0
        self.first = self.last = 0.0


@dataclass(frozen=True)
class Ruling:
    """A verdict as a proxy enforces it, with the decision that produced it."""

    verdict: Verdict
    decision_id: str = ""
    policy_revision: str = ""
    cached: bool = False
    approval_id: str = ""  # require_approval: the request to wait for
    # what the command does to state the proxy tracks (Decision.effects): the PDP's
    # classification of the text, the same for every command of the same shape
    effects: tuple[str, ...] = ()
    # the client cancelled while the command waited (a person's approval): protocols say
    # so as the server would (Postgres: SQLSTATE 57014)
    canceled: bool = False
    # row filters: the text to send upstream in place of the client's ("" : as sent),
    # and the rewrite of its shape, for another statement of that shape (reused verdicts)
    rewritten: str = ""
    rewrite: ShapeRewrite | None = None
    # a reused row-filtered simple Query run prepared (proxies.postgres.prepared_rewrites):
    # its literals as the values of the rewrite's parameters; None: send `rewritten`
    bound: list[bytes] | None = field(default=None, compare=False)
    # egress budget: (rows, bytes) the session may still take on this verdict; None: no budget
    egress_left: tuple[int, int] | None = None
    # runaway-loop breaker: how many verdicts the session may answer from its cache before
    # it asks again (Decision.reuses_left); None: no bound
    reuses_left: int | None = None
    # a verdict kept in the decision cache: the count of its reuses not yet reported
    tally: ReuseTally | None = field(default=None, compare=False, repr=False)
    # the verdict's kind, read several times per statement: a field, not a property
    kind: VerdictKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", self.verdict.kind)

    def with_rewritten(self, text: str) -> Ruling:
        """replace(self, rewritten=text), without dataclasses.replace's walk over every
        field and __init__ (a reused row-filtered verdict is refilled per statement): its
        fields copied as one dict, given to a bare instance (0.55 -> 0.32 us here)."""
        fields = self.__dict__.copy()
        fields["rewritten"] = text
        ruling = object.__new__(Ruling)
        object.__setattr__(ruling, "__dict__", fields)
        return ruling

    def with_bound(self, values: list[bytes]) -> Ruling:
        """This reused row-filtered verdict for a statement run as its rewrite prepared,
        bound to the statement's literals (`rewritten`: the rewrite's text, which runs)."""
        assert self.rewrite is not None
        fields = self.__dict__.copy()
        fields["rewritten"] = self.rewrite.text
        fields["bound"] = values
        ruling = object.__new__(Ruling)
        object.__setattr__(ruling, "__dict__", fields)
        return ruling


def withdrawn_ruling(ruling: Ruling, approval_id: str, said: str, withdrawn: bool) -> Ruling:
    """The denial of a command whose client gave up waiting for a person's approval:
    `said` as the protocol words the cancel, the request named, and whether it was
    withdrawn (no approver asked about it any more)."""
    return Ruling(
        Verdict.deny(
            f"{said}: approval request {approval_id}"
            + (" withdrawn" if withdrawn else " could not be withdrawn")
        ),
        ruling.decision_id,
        ruling.policy_revision,
        approval_id=approval_id,
        canceled=True,
    )


@dataclass(frozen=True)
class SessionGrant:
    session_id: str
    ruling: Ruling
    subject: str
    groups: tuple[str, ...]
    credential_ref: str
    expires_at: float = 0.0  # a just-in-time grant ends the session then (0: no limit)
    token_expires_at: float = 0.0  # the PDP refuses every command after (0: no expiry)


# the reason a proxy closes a session whose open it never heard answered (the PDP died,
# or the call timed out or was cancelled, after the open may have been recorded)
OPEN_UNANSWERED = "open_unanswered"
MAX_UNANSWERED = 4096  # such closes kept to send (in memory: past it, the PDP's reaper)
UNANSWERED_RETRY_SECONDS = 0.5
# what gRPC says of a call no transport ever carried (no connection to the PDP at all):
# its open cannot have been recorded, so there is nothing to close
_NEVER_SENT = "failed to connect to all addresses"


class SessionRefused(Exception):
    """The PDP did not open the session; `reason` is safe to show the client."""

    def __init__(self, reason: str, decision_id: str = "", approval_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.decision_id = decision_id
        self.approval_id = approval_id  # set when a person may still grant the session


_MASKS: dict[
    tuple[tuple[str, str, str, bool, tuple[int, ...], int], ...], tuple[MaskRule, ...]
] = {}
_MASKS_KEPT = 256


def _mask_rules(mask: Any) -> tuple[MaskRule, ...]:
    """A verdict's mask rules, one tuple per distinct list for the whole process: every
    session of a group gets the same rules, and holds them once instead of per session."""
    key = tuple(
        (
            m.field,
            m.detector,
            m.strategy or "redact",
            m.derived,
            # positions only of a derived rule with outputs (see MaskRule): any other
            # rule's are dropped, and it masks as a rule without them does
            tuple(m.positions) if m.derived and m.outputs else (),
            m.outputs if m.derived else 0,
        )
        for m in mask
    )
    rules = _MASKS.get(key)
    if rules is None:
        if len(_MASKS) >= _MASKS_KEPT:
            _MASKS.clear()
        rules = _MASKS[key] = tuple(MaskRule(*fields) for fields in key)
    return rules


# Verdicts and effects as the process already holds them (both immutable): every session's
# `SELECT 1` allowed alike shares one Verdict, its reasons and settings, not one per session
_VERDICTS: dict[Verdict, Verdict] = {}
_EFFECTS: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHARED_KEPT = 1024
CLOSES_AT_ONCE = 64  # CloseSession calls a proxy process has in flight at most


def _shared(table: dict[Any, Any], value: Any) -> Any:
    try:
        found = table.get(value)
    except TypeError:  # a field that cannot be hashed: kept as it is
        return value
    if found is None:
        if len(table) >= _SHARED_KEPT:
            table.clear()
        found = table[value] = value
    return found


def _verdict_of(message: pdp_pb2.Decision, kind: VerdictKind) -> Verdict:
    approval = None
    if message.HasField("approval"):
        approval = ApprovalSpec(tuple(message.approval.approvers), message.approval.ttl_seconds)
    verdict = Verdict(
        kind,
        tuple(message.reasons),
        _mask_rules(message.mask),
        approval,
        message.credential_ref,
        message.cache_ttl_seconds,
        "shape" if message.cache_key == pdp_pb2.SHAPE else "exact",
        tuple(sorted(message.session_settings.items())),
    )
    return _shared(_VERDICTS, verdict)  # type: ignore[no-any-return]


# the Verdicts of decisions with no mask rules, approval or settings (most of them), by
# what else they say: found again without making a Verdict (a frozen dataclass of eleven
# fields: its __init__ was a third of reading an answer)
_PLAIN: dict[tuple[int, tuple[str, ...], str, int, int], Verdict] = {}
# a Ruling's fields as Ruling(...) sets them, for one made without its __init__
_RULING_FIELDS = Ruling(Verdict(VerdictKind.DENY)).__dict__


def ruling_from_message(message: pdp_pb2.Decision) -> Ruling:
    """The Ruling a Decision says: the same as Ruling(Verdict(...), ...) with every field
    read from the message, made without the dataclasses' __init__ (every uncached command
    of every session reads one)."""
    code = message.verdict
    kind = _KINDS.get(code)
    if kind is None:
        return Ruling(Verdict.deny("the PDP sent no verdict — denied"), message.decision_id)
    if message.mask or message.session_settings or message.HasField("approval"):
        verdict = _verdict_of(message, kind)
    else:
        key = (
            code,
            tuple(message.reasons),
            message.credential_ref,
            message.cache_ttl_seconds,
            message.cache_key,
        )
        verdict = _PLAIN.get(key)  # type: ignore[assignment]
        if verdict is None:
            if len(_PLAIN) >= _SHARED_KEPT:
                _PLAIN.clear()
            verdict = _PLAIN[key] = _verdict_of(message, kind)
    fields = _RULING_FIELDS.copy()
    fields["verdict"] = verdict
    fields["kind"] = kind
    fields["decision_id"] = message.decision_id
    fields["policy_revision"] = sys.intern(message.policy_revision)
    fields["approval_id"] = message.approval_id
    effects = message.effects
    if effects:
        fields["effects"] = _shared(_EFFECTS, tuple(effects))
    fields["rewritten"] = message.rewritten
    if message.rewrite_template:
        fields["rewrite"] = ShapeRewrite(
            message.rewrite_shape, message.rewrite_template, message.rewrite_fingerprint
        )
    if message.egress_budget:
        fields["egress_left"] = (message.egress_rows_left, message.egress_bytes_left)
    if message.reuse_bounded:
        fields["reuses_left"] = message.reuses_left
    ruling = object.__new__(Ruling)
    object.__setattr__(ruling, "__dict__", fields)
    return ruling


def to_struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


@dataclass
class PDPClient:
    address: str
    timeout: float = 2.0
    credentials: grpc.ChannelCredentials | None = None
    # sent with every call: the proxy credential the PDP issued (proxies/runtime/pdp_auth.py)
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    watch_interval: float = 1.0
    # after a PDP without DecideStream answered: a call per command for this long, then
    # the stream is tried again (the PDP may have been upgraded in place)
    stream_retry_seconds: float = 60.0
    revision: str = ""
    reachable: bool = True
    # the PDP has answered the watch at least once (with reachable: what /readyz asks)
    answered: bool = False
    # why the last delivery of recorded events failed ("" once one succeeds): what a
    # session whose recording is halted tells its client
    recording_failure: str = ""
    _channel: grpc.aio.Channel | None = field(default=None, repr=False)
    _stub: pdp_pb2_grpc.DecisionServiceStub | None = field(default=None, repr=False)
    # Decide over one stream (cheaper per command than a call each) ...
    _calls: DecideCalls | None = field(default=None, repr=False)
    # ... except until this time (monotonic): unary calls, for a PDP without the stream
    _unary_until: float = field(default=0.0, repr=False)
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)
    # CloseSession calls in flight at once (the rest wait their turn, a future each): when
    # thousands of sessions end together, thousands of calls at once made the proxy's
    # memory peak, and what it took for them it kept once they were done
    _closing: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CLOSES_AT_ONCE), repr=False
    )
    _listeners: list[Any] = field(default_factory=list, repr=False)
    # told (session id, ruling) of a decision that arrived after the proxy denied at its
    # deadline, so the session's record says the decision was not enforced
    on_late: Callable[[str, Ruling], None] | None = field(default=None, repr=False)
    # sessions to close once the PDP answers (id -> reason), and the task closing them
    _unanswered: dict[str, str] = field(default_factory=dict, repr=False)
    _unanswered_task: asyncio.Task[None] | None = field(default=None, repr=False)
    # each session's key (OpenSessionRequest.session_key), made at its open and carried by
    # every later call about it: the PDP takes no call about a session without it, so a
    # stolen proxy credential alone speaks for none. Held here only (never logged, never
    # spooled), until the PDP has taken or refused the session's close.
    _session_keys: dict[str, str] = field(default_factory=dict, repr=False)

    def _key(self, session_id: str) -> str:
        return self._session_keys.get(session_id, "")

    def _speaking(self, session_id: str, sealed: str) -> str:
        """The session_key a call about session_id carries: its key while this process
        holds it, else a spooled entry's seal (proxies.runtime.spool), else none."""
        return self._key(session_id) or (SEALED + sealed if sealed else "")

    def seal(self, session_id: str, rpc: str, request: Any) -> str:
        """The seal a spooled `rpc` request goes into the spool with ("" when this process
        does not hold the session's key): what delivers it should the key be lost."""
        key = self._key(session_id)
        return seal(spool_key(session_id, key), rpc, request) if key else ""

    async def start(self) -> None:
        options = [
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.enable_retries", 1),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if self.credentials is not None:
            self._channel = grpc.aio.secure_channel(self.address, self.credentials, options)
        else:
            self._channel = grpc.aio.insecure_channel(self.address, options)
        self._stub = pdp_pb2_grpc.DecisionServiceStub(self._channel)
        self._calls = DecideCalls(self._stub, self.metadata)
        self._calls.on_late = self._late
        self._watcher = asyncio.create_task(self._watch())

    async def close(self) -> None:
        for task in (self._watcher, self._unanswered_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._calls is not None:
            await self._calls.close()
        if self._channel is not None:
            await self._channel.close()

    def _late(self, session_id: str, response: pdp_pb2.DecideResponse) -> None:
        """An answer that came after its call's deadline: the command was denied then."""
        if self.on_late is not None:
            self.on_late(session_id, ruling_from_message(response.decision))

    def on_change(self, listener: Any) -> None:
        """Call listener() when the policy revision changes or the PDP becomes unreachable."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    async def _watch(self) -> None:
        while True:
            try:
                assert self._stub is not None
                # with the proxy's credential: ServerInfo answers proxies only
                info = await self._stub.ServerInfo(
                    pdp_pb2.ServerInfoRequest(), timeout=self.timeout, metadata=self.metadata
                )
            except grpc.aio.AioRpcError:
                if self.reachable:
                    log.warning("PDP at %s unreachable; commands are denied", self.address)
                    self.reachable = False
                    self._changed()
            else:
                if not self.reachable:
                    log.info("PDP at %s reachable again", self.address)
                self.reachable = self.answered = True
                if info.policy_revision != self.revision:
                    self.revision = info.policy_revision
                    self._changed()
            await asyncio.sleep(self.watch_interval)

    # -- calls ---------------------------------------------------------------------

    async def open_session(
        self,
        token: str,
        connection: pdp_pb2.Connection,
        client_addr: str,
        client: str,
        attributes: dict[str, Any] | None = None,
    ) -> SessionGrant:
        """OpenSession with an id of the proxy's choosing: when no answer comes (the PDP
        died, the call timed out or its caller went) the open may still have been
        recorded, and the session is closed as open_unanswered once the PDP answers
        again, so the evidence never holds a session that opened and never ended."""
        assert self._stub is not None
        session_id = "s-" + uuid.uuid4().hex
        key = self._session_keys[session_id] = secrets.token_urlsafe(32)
        request = pdp_pb2.OpenSessionRequest(
            token=token,
            connection=connection,
            client_addr=client_addr,
            client=client,
            session_id=session_id,
            session_key=key,
        )
        if attributes:
            request.attributes.CopyFrom(to_struct(attributes))
        try:
            response = await self._stub.OpenSession(
                request, timeout=self.timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _REFUSALS and _NEVER_SENT not in (exc.details() or ""):
                self.close_when_answered(session_id, OPEN_UNANSWERED)
            else:
                self._session_keys.pop(session_id, None)
            raise SessionRefused(_rpc_reason(exc)) from None
        except asyncio.CancelledError:
            self.close_when_answered(session_id, OPEN_UNANSWERED)
            raise
        ruling = ruling_from_message(response.decision)
        if not response.session_id or not ruling.verdict.allowed:
            self._session_keys.pop(session_id, None)
            reasons = "; ".join(ruling.verdict.reasons) or "session not allowed"
            approval_id = ruling.approval_id if ruling.kind is VerdictKind.REQUIRE_APPROVAL else ""
            raise SessionRefused(reasons, ruling.decision_id, approval_id)
        return SessionGrant(
            response.session_id,
            ruling,
            response.identity.subject,
            tuple(response.identity.groups),
            ruling.verdict.credential_ref,
            response.session_expires_at,
            float(response.identity.expires_at),
        )

    async def decide(
        self,
        session_id: str,
        kind: str,
        raw: str,
        attributes: dict[str, Any] | None = None,
        whole: tuple[int, str] | None = None,
        timeout: float | None = None,
        egress: tuple[int, int] = (0, 0),
        reused: Sequence[tuple[str, int, float, float]] = (),
    ) -> Ruling:
        """Never raises: any failure to get an answer is a deny with the reason. `whole`:
        raw is only the start of a command this large, with this SHA-256. timeout: how
        long this connection waits for a decision (default: the client's). egress: rows
        and bytes the session took since its last decision (egress budgets). reused: the
        commands it answered from its cache since then, per verdict (raw, count, seconds
        since the first and the last: DecideRequest.reused)."""
        timeout = self.timeout if timeout is None else timeout
        if self._stub is None:
            return Ruling(Verdict.deny("policy decision point not connected — denied"))
        command = pdp_pb2.Command(kind=kind, raw=raw)
        if whole is not None:
            command.full_bytes, command.full_sha256 = whole
        if attributes:
            command.attributes.CopyFrom(to_struct(attributes))
        request = pdp_pb2.DecideRequest(
            session_id=session_id,
            session_key=self._key(session_id),
            command=command,
            timeout_ms=int(timeout * 1000),
            egress_rows=egress[0],
            egress_bytes=egress[1],
        )
        for raw_reused, count, first, last in reused:
            request.reused.add(
                raw=raw_reused, count=count, first_seconds_ago=first, last_seconds_ago=last
            )
        try:
            response = await self._decide(request, timeout)
        except CallFailed as failed:
            return Ruling(Verdict.deny(f"{_status_reason(failed.code, failed.details)} — denied"))
        ruling = ruling_from_message(response.decision)
        if ruling.policy_revision and ruling.policy_revision != self.revision:
            self.revision = ruling.policy_revision
            self._changed()
        return ruling

    async def _decide(
        self, request: pdp_pb2.DecideRequest, timeout: float
    ) -> pdp_pb2.DecideResponse:
        """The answer over the stream, or from a unary call to a PDP without one; a call
        that fails either way raises CallFailed."""
        if self._calls is not None and time.monotonic() >= self._unary_until:
            try:
                return await self._calls.decide(request, timeout)
            except CallFailed as failed:
                if failed.code is not grpc.StatusCode.UNIMPLEMENTED:
                    raise
                log.info(
                    "PDP at %s offers no DecideStream: a call per command (for %gs)",
                    self.address,
                    self.stream_retry_seconds,
                )
                self._unary_until = time.monotonic() + self.stream_retry_seconds
        assert self._stub is not None
        try:
            return await self._stub.Decide(request, timeout=timeout, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            raise CallFailed.of(exc) from None

    async def await_approval(
        self, session_id: str, approval_id: str, timeout: float
    ) -> pdp_pb2.Approval | None:
        """The request's state once decided, or at the end of the wait; None if unreachable.

        The request lives in the PDP's store, not in the replica that made it: when the
        wait's stream breaks (that replica went away) it is asked again, of whichever
        replica answers, until the wait ends."""
        assert self._stub is not None
        last: pdp_pb2.Approval | None = None
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                stream = self._stub.AwaitApproval(
                    pdp_pb2.AwaitApprovalRequest(
                        session_id=session_id,
                        session_key=self._key(session_id),
                        approval_id=approval_id,
                        timeout_seconds=math.ceil(left),
                    ),
                    timeout=left + self.timeout,
                    metadata=self.metadata,
                )
                async for update in stream:
                    last = update.approval
                if last is None or last.state != "pending":
                    return last
            except grpc.aio.AioRpcError as exc:
                log.warning("waiting for approval %s failed: %s", approval_id, _rpc_reason(exc))
                if exc.code() != grpc.StatusCode.UNAVAILABLE or (
                    last is not None and last.state != "pending"
                ):
                    return last
            await asyncio.sleep(min(0.2, max(0.0, end - time.monotonic())))
        return last

    async def withdraw_approval(self, session_id: str, approval_id: str, reason: str) -> bool:
        """Withdraw a pending request of this session (its client gave up waiting)."""
        if self._stub is None:
            return False
        try:
            await self._stub.WithdrawApproval(
                pdp_pb2.WithdrawApprovalRequest(
                    session_id=session_id,
                    session_key=self._key(session_id),
                    approval_id=approval_id,
                    reason=reason,
                ),
                timeout=self.timeout,
                metadata=self.metadata,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("withdrawing approval %s failed: %s", approval_id, _rpc_reason(exc))
            return False
        return True

    async def close_session(
        self,
        session_id: str,
        reason: str,
        abnormal: bool = False,
        summary: dict[str, Any] | None = None,
        reused: Sequence[tuple[str, int, float, float]] = (),
        sealed: str = "",
    ) -> str:
        """Close the session at the PDP: "stored", "refused" (it will never take this
        close) or "unreachable" (try again later). reused: the verdicts answered from the
        cache since the session's last Decide, as decide() takes them. sealed: a spooled
        close's seal, sent when this process does not hold the session's key."""
        async with self._closing:  # (the request is made once its turn has come)
            request = close_request(session_id, reason, abnormal, summary, reused)
            request.session_key = self._speaking(session_id, sealed)
            outcome = await self._close_session(request)
        if outcome != "unreachable":  # taken or never will be: nothing speaks for it again
            self._session_keys.pop(session_id, None)
        return outcome

    async def _close_session(self, request: pdp_pb2.CloseSessionRequest) -> str:
        if self._stub is None:
            return "unreachable"
        session_id = request.session_id
        try:
            await self._stub.CloseSession(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            if (
                request.reason == OPEN_UNANSWERED
                and exc.code() == grpc.StatusCode.FAILED_PRECONDITION
            ):
                # the open was never recorded: nothing to close, as expected
                log.debug("session %s never opened at the PDP", session_id)
            else:
                log.warning(
                    "could not close session %s at the PDP: %s", session_id, _rpc_reason(exc)
                )
            return _outcome(exc.code())
        return "stored"

    def close_when_answered(self, session_id: str, reason: str) -> None:
        """Close session_id at the PDP as soon as it answers: a session the PDP may have
        opened that no client will use. Kept in memory (a proxy that dies leaves them
        to the PDP's reaper, which closes them as proxy_lost), at most MAX_UNANSWERED."""
        if len(self._unanswered) >= MAX_UNANSWERED:
            dropped = next(iter(self._unanswered))
            del self._unanswered[dropped]
            log.warning("session %s: its close is left to the PDP's reaper", dropped)
        self._unanswered[session_id] = reason
        if self._unanswered_task is None or self._unanswered_task.done():
            self._unanswered_task = asyncio.create_task(self._close_unanswered())

    async def _close_unanswered(self) -> None:
        while self._unanswered:
            session_id, reason = next(iter(self._unanswered.items()))
            if await self.close_session(session_id, reason, True) == "unreachable":
                await asyncio.sleep(UNANSWERED_RETRY_SECONDS)
                continue
            self._unanswered.pop(session_id, None)

    async def record(self, session_id: str, events: list[str], seq: int = 0) -> bool:
        """Send a batch of session events, each one JSON object as text (an empty batch
        is a heartbeat), under its number in the session (seq; 0: none)."""
        request = _batch(session_id, events, seq)
        return await self.deliver(session_id, request, len(events)) == "stored"

    async def deliver(
        self,
        session_id: str,
        request: pdp_pb2.RecordEventsRequest,
        count: int = 0,
        sealed: str = "",
    ) -> str:
        """RecordEvents: "stored", "refused" (never will be) or "unreachable". sealed: a
        spooled batch's seal, sent when this process does not hold the session's key."""
        if self._stub is None:
            return "unreachable"
        request.session_key = self._speaking(session_id, sealed)
        try:
            await self._stub.RecordEvents(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            self.recording_failure = _rpc_reason(exc)
            log.warning(
                "session %s: %d events not recorded: %s",
                session_id,
                count,
                self.recording_failure,
            )
            return _outcome(exc.code())
        self.recording_failure = ""
        return "stored"

    async def record_batches(self, batches: list[Numbered]) -> list[bool]:
        """Several sessions' batches in one call (see record); whether each was stored."""
        return [o == "stored" for o in await self.record_batches_outcomes(batches)]

    async def record_batches_outcomes(self, batches: list[Numbered]) -> list[str]:
        """record_batches, each answered "stored", "refused" or "unreachable": in calls of
        MAX_BATCHES_PER_CALL sessions at most, made together (the PDP refuses a longer
        call whole, and every session of it halted: a tick of 1,083 sessions' heartbeats)."""
        if self._stub is None:
            return ["unreachable"] * len(batches)
        if len(batches) > MAX_BATCHES_PER_CALL:
            parts = await asyncio.gather(
                *(
                    self._record_batches_call(batches[start : start + MAX_BATCHES_PER_CALL])
                    for start in range(0, len(batches), MAX_BATCHES_PER_CALL)
                )
            )
            return [outcome for part in parts for outcome in part]
        return await self._record_batches_call(batches)

    async def _record_batches_call(self, batches: list[Numbered]) -> list[str]:
        """One RecordBatches call of these sessions' batches, each answered."""
        assert self._stub is not None
        request = pdp_pb2.RecordBatchesRequest(batches=[_batch(*batch) for batch in batches])
        for batch in request.batches:
            batch.session_key = self._key(batch.session_id)
        try:
            response = await self._stub.RecordBatches(
                request, timeout=self.timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            self.recording_failure = _rpc_reason(exc)
            log.warning(
                "%d sessions' events not recorded: %s", len(batches), self.recording_failure
            )
            return [_outcome(exc.code())] * len(batches)
        self.recording_failure = ""
        stored = []
        for (session_id, events, *_), result in zip(batches, response.results, strict=False):
            if result.error:
                log.warning(
                    "session %s: %d events not recorded: %s", session_id, len(events), result.error
                )
            stored.append(batch_outcome(result.error) if result.error else "stored")
        # a short answer stores nothing more
        return stored + ["unreachable"] * (len(batches) - len(stored))


# a session's batch to record: (session id, its events, and its number in the session
# when it has one: RecordEventsRequest.batch_seq)
Numbered = tuple[str, list[str]] | tuple[str, list[str], int]


def close_request(
    session_id: str,
    reason: str,
    abnormal: bool,
    summary: dict[str, Any] | None,
    reused: Sequence[tuple[str, int, float, float]] = (),
) -> pdp_pb2.CloseSessionRequest:
    """A session's CloseSession, without its session_key (as a spooled close is sealed)."""
    request = pdp_pb2.CloseSessionRequest(session_id=session_id, reason=reason, abnormal=abnormal)
    if summary:
        request.summary.CopyFrom(to_struct(summary))
    for raw, count, first, last in reused:
        request.reused.add(raw=raw, count=count, first_seconds_ago=first, last_seconds_ago=last)
    return request


def _batch(session_id: str, events: list[str], seq: int = 0) -> pdp_pb2.RecordEventsRequest:
    """One session's events as one JSON array (none: a heartbeat), under its number."""
    request = pdp_pb2.RecordEventsRequest(session_id=session_id)
    if events:
        request.events_json = "[" + ",".join(events) + "]"
        request.batch_seq = seq
    return request


_REFUSALS = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    # the PDP's bound on how often one identity opens sessions (pdp/domain/open_rate.py):
    # refused before anything was recorded
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)


def _outcome(code: grpc.StatusCode) -> str:
    """A failed delivery: refused (sending it again cannot succeed) or unreachable."""
    return "refused" if code in _REFUSALS else "unreachable"


def batch_outcome(error: str) -> str:
    """What a RecordBatches result's error means: the store was unavailable (the PDP's
    "... unavailable" answers) or the batch itself was refused."""
    return "unreachable" if "unavailable" in error else "refused"


def _rpc_reason(exc: grpc.aio.AioRpcError) -> str:
    return _status_reason(exc.code(), exc.details() or "")


def _status_reason(code: grpc.StatusCode, details: str) -> str:
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return "policy decision point unreachable"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return details or "token rejected"
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return "session is no longer open at the policy decision point"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and details:
        return details[:200]
    return f"policy decision point error ({code.name.lower()})"
