"""The gRPC DecisionService: request validation and translation to and from protobuf.

Owns the status codes of the API: a malformed request is INVALID_ARGUMENT naming the
field, a rejected token is UNAUTHENTICATED with the reason, an unknown or closed session
is FAILED_PRECONDITION. Everything that decides goes through pdp.domain.decisions.Decider;
the recording RPCs hand their batches to pdp.api.recording_rpc, the approval RPCs are
pdp.api.approval_rpc's. Its parts come in through the constructor (pdp/app.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import grpc

from pdp import __version__
from pdp.api.approval_rpc import ApprovalRPCs, settle
from pdp.api.decide_stream import DecideStreams
from pdp.api.proxy_auth import ProxyAuthenticator, ProxyIdentity
from pdp.api.recording_rpc import (
    MAX_ATTRIBUTES_BYTES,
    MAX_COMMAND_BYTES,
    OversizedStruct,
    SessionEventBatches,
    StructMemo,
    bound_refusal,
    peer_of,
    struct_to_dict,
)
from pdp.api.session_keys import SEALED, key_problem, standing
from pdp.api.shell_reading import ShellReader
from pdp.api.sql_reading import StatementReader, read_apart
from pdp.domain.approvals import ApprovalBook, subject_as_read
from pdp.domain.breaker import Trip
from pdp.domain.decisions import Decider, Decision, Guarded, Reusable
from pdp.domain.effects import command_effects
from pdp.domain.guard_sync import NEAR_SECONDS, OPEN_SECONDS, WAIT_SECONDS, GuardSync, new_instance
from pdp.domain.guards import Guards
from pdp.domain.identity import Identity, TokenRejected, TokenVerifier
from pdp.domain.open_rate import DEFAULT_PER_MINUTE, OpenRate
from pdp.domain.policy_input import build_input, command_input
from pdp.domain.sessions import (
    BY_PROXY,
    CLOSED_BY,
    FROM_SPOOL,
    SESSION_ID,
    Session,
    SessionTable,
    closed_reason_of,
    new_session_id,
)
from pdp.domain.shadow import announce, enforced, record_facts, shadowed
from pdp.domain.ssh_identity import KEY_ATTRIBUTE, KeyIdentities
from pdp.evidence.checkpoints import record_credential_statement
from pdp.evidence.signing import Signer
from pdp.store import StoreUnavailable
from portcullis import protocols
from portcullis.config import Config
from portcullis.reuse import reuse_key
from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
from portcullis.verdict import PerVerdict, Verdict, VerdictKind
from portcullis.wire import MAX_BATCHES_PER_CALL

log = logging.getLogger("portcullis.service")

MAX_TOKEN_BYTES = 16 * 1024
RECORDED_PREFIX = 4096  # what a decision record keeps of a command too large to evaluate
MAX_NAME = 256
MAX_REFUSAL_BUDGETS = 1024  # proxies whose refused calls are counted apart
MAX_REUSES = 2**32 - 1  # Decision.reuses_left, a uint32
MAX_ENFORCING = 1024  # connection names whose enforcement is remembered (_enforces)
# CloseSession.summary as sent (its wire size): a proxy's counters, a credential reference
# and its last batch number come to a few hundred bytes; the summary is recorded in the
# session.close record and signed into the credential statement
MAX_SUMMARY_BYTES = 8 * 1024
# a connection the PDP does not know is recorded as the proxy names it (session.open)
# and kept while the session lives: its labels at most this many
MAX_LABELS = 64
# OpenSessionRequest.attributes on the wire: what a proxy knows of its client at start-up
# (a Postgres start-up packet's user, database and settings: at most 10,000 bytes; an SSH
# user and the key it presented), evaluated at session.open
MAX_SESSION_ATTRIBUTES_BYTES = 64 * 1024

_WIRE_VERDICT = {
    VerdictKind.ALLOW: pdp_pb2.ALLOW,
    VerdictKind.DENY: pdp_pb2.DENY,
    VerdictKind.MASK: pdp_pb2.MASK,
    VerdictKind.REQUIRE_APPROVAL: pdp_pb2.REQUIRE_APPROVAL,
}


@PerVerdict
def _verdict_message(v: Verdict) -> bytes:
    """The wire form of a verdict's own fields, built once per verdict."""
    message = pdp_pb2.Decision(
        verdict=_WIRE_VERDICT[v.kind],
        reasons=list(v.reasons),
        mask=[
            pdp_pb2.MaskRule(
                field=m.field,
                detector=m.detector,
                strategy=m.strategy,
                derived=m.derived,
                positions=m.positions,
                outputs=m.outputs,
            )
            for m in v.mask
        ],
        credential_ref=v.credential_ref,
        cache_ttl_seconds=v.cache_ttl_seconds,
        cache_key=pdp_pb2.SHAPE if v.cache_key == "shape" else pdp_pb2.EXACT,
        session_settings=dict(v.session_settings),
    )
    if v.approval is not None:
        message.approval.CopyFrom(
            pdp_pb2.ApprovalSpec(
                approvers=list(v.approval.approvers), ttl_seconds=v.approval.ttl_seconds
            )
        )
    return message.SerializeToString()


def decision_message(decision: Decision, into: pdp_pb2.Decision | None = None) -> pdp_pb2.Decision:
    """A decision's wire form; written into `into` (an empty Decision inside the message
    that carries it) when given: upb copies a message set as another's field (a
    serialization and a parse), which one made in place spares."""
    if into is None:
        message = pdp_pb2.Decision.FromString(_verdict_message(decision.verdict))
    else:
        message = into
        message.MergeFromString(_verdict_message(decision.verdict))
    message.decision_id = decision.id
    message.policy_revision = decision.policy_revision
    message.evaluation_ms = decision.evaluation_ms
    return message


def _configured_ref(known: Any) -> str:
    """The connection's credential reference; a static provider is named, never its secret."""
    creds = known.credentials
    return str(creds.get("ref") or f"{creds.get('provider', 'static')}:{known.name}")


class DecisionService(ApprovalRPCs, pdp_pb2_grpc.DecisionServiceServicer):
    def __init__(
        self,
        config: Config,
        verifier: TokenVerifier,
        decider: Decider,
        sessions: SessionTable,
        *,
        proxies: ProxyAuthenticator,
        approvals: ApprovalBook | None = None,
        signer: Signer | None = None,
        guards: Guards | None = None,
    ) -> None:
        """proxies: who may speak for sessions (pdp/api/proxy_auth.py); approvals: the
        book approval requests go to (None: every require_approval is denied); signer:
        signs the credential statement of each close (None: none is made)."""
        self.config = config
        self.verifier = verifier
        self.decider = decider
        self.sessions = sessions
        self.approvals = approvals
        if approvals is not None:
            # a session's pending requests are withdrawn as it ends (its proxy's close, the
            # reaper's): nothing would run their commands
            sessions.on_end.append(approvals.withdraw_of_session)
        self.signer = signer
        self.proxies = proxies
        self.streams = DecideStreams(self.Decide)
        # how often one identity may open sessions (pdp.session_opens_per_minute)
        self.open_rate = OpenRate(
            getattr(config.pdp, "session_opens_per_minute", DEFAULT_PER_MINUTE)
        )
        # the refused calls recorded per second: each authenticated proxy's own, and one for
        # callers that are none (a flood of anonymous calls must not leave a proxy's
        # forgery attempt unrecorded)
        self._refusals: dict[str, _RefusalBudget] = {}
        # rejected logons recorded per second, per connection
        self._rejections: dict[str, _RefusalBudget] = {}
        self.recordings = SessionEventBatches(decider.store, sessions, self.refuse)
        self.shadow_connections = announce(config)  # enforce: false (pdp/domain/shadow.py)
        # row filters, egress budgets, the runaway-loop breaker (issue 30); what other
        # PDPs (replicas, or this one before a restart) counted comes from the store
        self.guards = guards or Guards()
        self.instance = new_instance()  # names this process's egress reports and pauses
        self.guard_sync = GuardSync(decider.store, self.guards, self.instance)
        # a Decide's attributes: a session's catalogue facts come with every statement
        self._command_attributes = StructMemo(reuse_key)
        # connection name -> whether its verdicts are enforced (pdp/domain/shadow.py): the
        # configuration is this service's for its life, and a Decide asked it twice, each
        # a scan of the configured connections
        self._enforcing: dict[str, bool] = {}
        # long SSH exec lines read in a process of their own (pdp/api/shell_reading.py)
        self.shell_reader = ShellReader()
        self.sql_reader = StatementReader()  # long SQL texts, classified off the loop

    # -- helpers --------------------------------------------------------------

    def _enforces(self, connection: str) -> bool:
        """enforced(self.config, connection), worked out once per connection name (at
        most MAX_ENFORCING names kept: a proxy may name connections the PDP does not know)."""
        known = self._enforcing.get(connection)
        if known is None:
            known = enforced(self.config, connection)
            if len(self._enforcing) >= MAX_ENFORCING:
                self._enforcing.clear()
            self._enforcing[connection] = known
        return known

    @staticmethod
    async def _invalid(context: grpc.aio.ServicerContext, field: str, problem: str) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {problem}")

    def _connection(self, wire: pdp_pb2.Connection) -> dict[str, Any]:
        """The connection as policy sees it; the PDP's own configuration wins when it knows it."""
        known = self.config.connection(wire.name)
        if known is not None:
            return {
                "name": known.name,
                "type": known.type,
                "zone": known.zone,
                "labels": dict(known.labels),
            }
        return {
            "name": wire.name,
            "type": wire.type,
            "zone": wire.zone,
            "labels": dict(wire.labels),
        }

    async def _open_session(
        self,
        session_id: str,
        context: grpc.aio.ServicerContext,
        proxy: ProxyIdentity,
        rpc: str,
        request: Any,
    ) -> Session:
        """The open session a request names, if `proxy` opened it and `request` carries its
        key; FAILED_PRECONDITION when there is none, PERMISSION_DENIED (recorded) when
        another proxy opened it or the key is not the session's,
        UNAVAILABLE when the store that would say cannot be read now (the proxy keeps what
        it was sending, a close above all, and sends it again: "not open" would have it
        dropped for good)."""
        try:
            session = await self.sessions.find(session_id)
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc)[:200])
            raise AssertionError("unreachable") from None
        if session is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"session {session_id[:64]!r} is not open"
            )
            raise AssertionError("unreachable")
        if await self._bound(session, proxy, context, rpc, request):
            self.sessions.heard_from(session)
        return session

    async def _bound(
        self, session: Session, proxy: ProxyIdentity, context: Any, rpc: str, request: Any
    ) -> bool:
        """Refuse (and record) a call about a session from a proxy that did not open it, or
        one that does not carry the session's key (pdp.api.session_keys); else whether it
        carries the key (True) or is a spooled delivery under its seal (False: no word
        from a live proxy)."""
        why = bound_refusal(session, proxy)
        keyed = False
        if not why:
            why, keyed = standing(self.sessions, session, rpc, request)
        if why:
            await self.refuse(
                context, rpc, grpc.StatusCode.PERMISSION_DENIED, why, proxy, session.id
            )
        return keyed

    async def _proxy(self, context: Any, rpc: str, session_id: str = "") -> ProxyIdentity:
        """The calling proxy; a caller that is not one is refused (UNAUTHENTICATED), and
        the attempt recorded: only proxies speak for sessions."""
        proxy = getattr(context, "proxy_identity", None) or self.proxies.identify(context)
        if proxy is None:
            await self.refuse(
                context,
                rpc,
                grpc.StatusCode.UNAUTHENTICATED,
                "only an authenticated proxy may call this (mTLS or a proxy credential)",
                None,
                session_id,
            )
            raise AssertionError("unreachable")
        return proxy  # type: ignore[no-any-return]

    async def refuse(
        self,
        context: Any,
        rpc: str,
        code: grpc.StatusCode,
        reason: str,
        proxy: ProxyIdentity | None,
        session_id: str = "",
    ) -> None:
        """Record a refused session call (the evidence of a forgery attempt), then end it."""
        body: dict[str, Any] = {
            "rpc": rpc,
            "reason": reason,
            "session_id": session_id[:64],
            "proxy": proxy.to_record() if proxy is not None else None,
            "peer": peer_of(context)[:MAX_NAME],
        }
        suppressed = self._refusal_budget(proxy).take()
        if suppressed is not None:
            body["suppressed_before"] = suppressed
            try:
                await self.decider.store.append("proxy.refused", body)
            except StoreUnavailable:
                log.error("could not record a refused %s call from %s", rpc, body["peer"])
        await context.abort(code, reason)

    def _refusal_budget(self, proxy: ProxyIdentity | None) -> _RefusalBudget:
        """The budget a refusal of this caller's is recorded under: its proxy's own, or
        the one all callers that are no proxy share."""
        key = proxy.key if proxy is not None else ""
        budget = self._refusals.get(key)
        if budget is None:
            if len(self._refusals) >= MAX_REFUSAL_BUDGETS:  # proxies come and go
                self._refusals.pop(next(k for k in self._refusals if k), None)
            budget = self._refusals[key] = _RefusalBudget()
        return budget

    async def _identify(self, request: pdp_pb2.OpenSessionRequest) -> Identity:
        """The client's identity: its token, or (no token; SSH) the public key it logged in
        with, mapped by this PDP's own configuration (pdp/domain/ssh_identity.py)."""
        if request.token:
            return await self.verifier.verify(request.token)
        known = self.config.connection(request.connection.name)
        if known is None:
            raise TokenRejected("public-key login is not configured for this connection")
        mapping = str(known.options.get("authorized_keys_file") or "")
        return _KEY_IDENTITIES.identify(known.type, mapping, _presented_key(request))

    # -- RPCs -----------------------------------------------------------------

    async def OpenSession(
        self, request: pdp_pb2.OpenSessionRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.OpenSessionResponse:
        if not request.token and not _presented_key(request):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token: missing")
        if len(request.token) > MAX_TOKEN_BYTES:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token: malformed (too long)")
        if not request.HasField("connection") or not request.connection.name:
            await self._invalid(context, "connection.name", "required")
        if len(request.connection.name) > MAX_NAME:
            await self._invalid(context, "connection.name", f"longer than {MAX_NAME}")
        if len(request.client_addr) > MAX_NAME:
            # an address (host:port) is kept with the session, in its session.open record
            # and in memory while it lives: megabytes of one were the chain's every open
            await self._invalid(context, "client_addr", f"longer than {MAX_NAME}")
        known = protocols.registered()
        if request.connection.type and request.connection.type not in known:
            await self._invalid(context, "connection.type", f"must be one of {', '.join(known)}")
        if len(request.connection.zone) > MAX_NAME:
            await self._invalid(context, "connection.zone", f"longer than {MAX_NAME}")
        labels = request.connection.labels
        if len(labels) > MAX_LABELS or any(
            len(k) > MAX_NAME or len(v) > MAX_NAME for k, v in labels.items()
        ):
            why = f"more than {MAX_LABELS}, or one longer than {MAX_NAME}"
            await self._invalid(context, "connection.labels", why)
        if request.HasField("attributes"):
            size = request.attributes.ByteSize()
            if size > MAX_SESSION_ATTRIBUTES_BYTES:
                why = f"{size} bytes, more than the {MAX_SESSION_ATTRIBUTES_BYTES} they may be"
                await self._invalid(context, "attributes", why)
        proxy = await self._proxy(context, "OpenSession")
        problem = key_problem(request)
        if problem:
            await self._invalid(context, "session_key", problem)
        if not proxy.serves(request.connection.name):
            await self.refuse(
                context,
                "OpenSession",
                grpc.StatusCode.PERMISSION_DENIED,
                f"proxy {proxy.name!r} may not serve connection {request.connection.name!r}",
                proxy,
            )
        connection = self._connection(request.connection)
        try:
            identity = await self._identify(request)
        except TokenRejected as exc:
            await self._record_rejected_token(request, connection, exc.reason)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"token rejected: {exc.reason}")
            raise  # unreachable: abort raises
        wait = self.open_rate.take(identity.key)
        if wait:
            # refused before any evaluation or record of a session (pdp/domain/open_rate.py);
            # recorded as a failed logon is, under the same per-connection budget
            why = (
                f"{identity.subject} opened more than {self.open_rate.per_minute} sessions"
                f" in a minute: try again in {max(1, math.ceil(wait))} s"
            )
            await self._record_rejected_token(request, connection, why, identity.subject)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, why)
        session_id = await self._new_session_id(request, context)
        # The open goes on if its caller goes (a deadline, the PDP's answer lost): decided,
        # recorded and held, so that the close the proxy sends for an open it never heard
        # answered finds it (SessionTable.find waits for an open under way).
        work = asyncio.ensure_future(
            self._open(session_id, request, connection, identity, proxy.key)
        )
        self.sessions.opening(session_id, work)
        return await asyncio.shield(work)

    async def _new_session_id(
        self, request: pdp_pb2.OpenSessionRequest, context: grpc.aio.ServicerContext
    ) -> str:
        """The id the proxy proposed (checked: its form, and never used before), or a new one."""
        proposed = request.session_id
        if not proposed:
            return new_session_id()
        if not SESSION_ID.fullmatch(proposed):
            await self._invalid(context, "session_id", "must be s- and 32 lowercase hex digits")
        try:
            taken = await self.sessions.id_taken(proposed)
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"audit store unavailable: {exc}")
            raise AssertionError("unreachable") from None
        if taken:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, f"session id {proposed!r} is already used"
            )
        return proposed

    async def _open(
        self,
        session_id: str,
        request: pdp_pb2.OpenSessionRequest,
        connection: dict[str, Any],
        identity: Identity,
        proxy_key: str,
    ) -> pdp_pb2.OpenSessionResponse:
        # what other PDPs counted for budgets and pauses, read before the first command
        await self.guard_sync.ensure(OPEN_SECONDS)
        session = Session(
            session_id, identity, connection, request.client_addr, request.client[:MAX_NAME]
        )
        session.proxy = proxy_key
        session.key_digest = self.sessions.key_digest(session_id, request.session_key)
        session.spool_wrap = self.sessions.spool_wrap_of(session_id, request.session_key)
        command = {"kind": "session.open", "raw": ""}
        attributes = struct_to_dict(request.attributes) if request.HasField("attributes") else {}
        policy_input = build_input(session, command)
        if attributes:
            policy_input["session"]["attributes"] = attributes
        # what the policy's cap per identity counts (rego/portcullis/session.rego)
        policy_input["session"]["open_sessions"] = self.sessions.open_count(
            identity.subject, connection["name"]
        )
        record = {
            "session_id": session.id,
            "subject": identity.subject,
            "connection": connection["name"],
            "session": self.sessions.sealed(session),
            **record_facts(self.config, connection["name"]),
        }
        # the values of the claims its open record commits (pdp.domain.claims), written
        # in the open record's transaction: refused with it (a deny), never left out
        claims = self.sessions.claims_record(session)
        decision = await self.decider.decide(policy_input, record, before=claims)
        if not enforced(self.config, connection["name"]):
            decision = shadowed(decision)  # pdp/domain/shadow.py: recorded, not enforced
        response = pdp_pb2.OpenSessionResponse(
            decision=decision_message(decision),
            identity=pdp_pb2.Identity(
                subject=identity.subject,
                groups=list(identity.groups),
                issuer=identity.issuer,
                token_id=identity.token_id,
                expires_at=identity.expires_at,
            ),
        )
        decision, approval_id = await settle(self, session, command, decision, record)
        response.decision.CopyFrom(decision_message(decision))
        response.decision.approval_id = approval_id
        # (the proxy that asked, the only one that may wait on the request, is recorded
        # with it: ApprovalRequest.proxy, kept by the book for as long as it keeps the request)
        if decision.verdict.allowed:
            if approval_id:  # a just-in-time grant: the session lives as long as the approval
                granted = self.approvals.requests[approval_id] if self.approvals else None
                session.grant_expires_at = granted.usable_until if granted else time.time()
                response.session_expires_at = session.grant_expires_at
            self.sessions.add(session)
            response.session_id = session.id
        return response

    async def _record_rejected_token(
        self,
        request: pdp_pb2.OpenSessionRequest,
        connection: dict[str, Any],
        reason: str,
        subject: str = "",
    ) -> None:
        """Failed logons are evidence too (AC-7); the token itself is never stored. At
        most _RefusalBudget.RATE a second per connection are recorded, each saying how
        many before it were only counted: anyone who can reach a proxy's port can make a
        rejected logon per connection attempt, and one record each filled the store (and
        its backlog, past which every decision is a deny)."""
        budget = self._rejections.get(connection["name"])
        if budget is None:
            if len(self._rejections) >= MAX_REFUSAL_BUDGETS:
                self._rejections.pop(next(iter(self._rejections)))
            budget = self._rejections[connection["name"]] = _RefusalBudget()
        suppressed = budget.take()
        if suppressed is None:
            return
        body: dict[str, Any] = {
            "connection": connection["name"],
            "client_addr": request.client_addr[:MAX_NAME],
            "client": request.client[:MAX_NAME],
            "reason": reason[:MAX_NAME],
        }
        if suppressed:
            body["suppressed_before"] = suppressed
        try:
            # subject: a verified token refused for another reason (its open rate)
            await self.decider.store.append("auth.rejected", body, subject=subject)
        except StoreUnavailable:
            log.error("could not record a rejected token from %s", request.client_addr)

    async def Decide(
        self, request: pdp_pb2.DecideRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.DecideResponse:
        if not request.session_id:
            await self._invalid(context, "session_id", "required")
        if not request.HasField("command") or not request.command.kind:
            await self._invalid(context, "command.kind", "required")
        kind = request.command.kind
        if protocols.protocol_of(kind) is None:  # unknown, or session.open (no protocol's)
            await self._invalid(context, "command.kind", f"unknown command kind {kind[:64]!r}")
        deadline = _deadline_of(request, context)
        proxy = await self._proxy(context, "Decide", request.session_id)
        session = await self._open_session(request.session_id, context, proxy, "Decide", request)
        if session.grant_expired:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the just-in-time grant of this session has expired",
            )
        # the same clock-skew leeway as at open (identity.leeway_seconds), no more
        leeway = self.config.identity.leeway_seconds
        if session.identity.expires_at and session.identity.expires_at + leeway < time.time():
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "token expired during the session; reconnect with a fresh token",
            )
        oversized: OversizedStruct | None = None
        try:
            attributes, key, attributes_json = (
                self._command_attributes.decode(request.command.attributes, kind)
                if request.command.HasField("attributes")
                else ({}, reuse_key(kind, {}), "")
            )
        except OversizedStruct as exc:  # denied below, recorded by their size and digest
            oversized = exc
            attributes, key, attributes_json = {}, "", ""
        raw = request.command.raw
        subject, connection_name = session.identity.subject, session.connection["name"]
        enforcing = self._enforces(connection_name)
        record = {"session_id": session.id, "subject": subject, "connection": connection_name}
        if not enforcing:
            record.update(record_facts(self.config, connection_name))
        if attributes:
            # what the policy saw besides the text: `policy diff` replays it
            record["attributes"] = attributes
        if oversized is not None or request.command.full_bytes or len(raw) > MAX_COMMAND_BYTES:
            # refused in shadow mode too (the proxy will not forward it either): enforced
            enforced_record = {k: v for k, v in record.items() if k != "enforced"}
            decision = await self._refuse_oversized(request.command, enforced_record, oversized)
            return pdp_pb2.DecideResponse(decision=decision_message(decision))
        if kind == "ssh.exec":
            # a long line: read off the loop, at most a few of this session's at once
            await self.shell_reader.read_ahead(raw, session.id)
        built: dict[str, Any] = {}
        # a long SQL text: classified in a thread of its own, not on the loop every other
        # decision waits on (pdp.api.sql_reading)
        read = await self.sql_reader.read(kind, raw, attributes) if read_apart(kind, raw) else None

        def policy_input() -> dict[str, Any]:
            """Built only if the engine is asked (an evaluation reused needs none)."""
            if not built:
                command = read[0] if read is not None else command_input(kind, raw, attributes)
                built.update(build_input(session, command))
            return built

        reusable = Reusable(session.id, kind, raw, key)
        if deadline is not None and time.monotonic() >= deadline:
            # the proxy has denied it already: deciding now would record what never ran
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before deciding"
            )
        guards = self.guards
        near = (session.identity.key, connection_name) in guards.egress.near
        await self.guard_sync.ensure(NEAR_SECONDS if near else WAIT_SECONDS)
        reported = self._egress_report(session, request.egress_rows, request.egress_bytes, record)
        if request.reused:
            self._reuse_report(session, request.reused)

        trips: list[asyncio.Future[None]] = []

        def guard(verdict: Verdict) -> Guarded:
            guarded = guards.check(session, kind, raw, attributes, verdict)
            # a pause begun now is queued for the store before the decision's own record
            # is: the group commit writes them together (one transaction, as a rule)
            trips.extend(self._record_trips(session))
            return guarded

        def approved_guard(verdict: Verdict) -> Guarded:
            return guards.check(session, kind, raw, attributes, verdict, approved=True)

        decision = await self.decider.decide(
            policy_input,
            record,
            reusable,
            guard,
            standing_of=session.id,
            # the attributes' canonical JSON, made once per distinct attributes (StructMemo)
            encoded={"attributes": (attributes, attributes_json)} if attributes_json else None,
        )
        if reported:
            # in this decision's record only (the records of an approval's re-run and of
            # a late answer must not count it again)
            del record["egress"]
            if not decision.recorded:  # the next record carries it
                guards.egress.unrecorded(session.id, *reported)
        if trips:  # recorded before the held command is answered
            await asyncio.gather(*trips)
        if not enforcing:
            decision = shadowed(decision)  # pdp/domain/shadow.py: recorded, not enforced
        if deadline is not None and time.monotonic() >= deadline:
            await self._unenforced(decision, record, "the PDP answered after the proxy's deadline")
        # A statement the proxy is only parsing (extended protocol) runs only once bound to
        # its values: the approval, which binds to them, is asked for then, not now.
        if (
            decision.verdict.kind is VerdictKind.REQUIRE_APPROVAL
            and attributes.get("phase") != "parse"
        ):
            command = policy_input()["command"]
            decision, approval_id = await settle(
                self, session, command, decision, record, approved_guard
            )
        else:
            approval_id = ""
        # a DecideStream call's answer is made before its call is decided, and this one is
        # written into it (pdp.api.decide_stream): no copy of the decision per answer
        response = getattr(context, "response_into", None)
        if response is None:
            response = pdp_pb2.DecideResponse()
        message = decision_message(decision, response.decision)
        message.approval_id = approval_id
        if decision.rewritten:
            message.rewritten = decision.rewritten
            shape = decision.shape
            if shape is None:  # the text run is this text's alone: not for its shape
                message.cache_key = pdp_pb2.EXACT
            else:  # a proxy reusing the verdict fills the shape with its own literals
                message.rewrite_shape = shape.shape
                message.rewrite_template = shape.text
                message.rewrite_fingerprint = shape.printed
        if decision.egress_left is not None:
            message.egress_budget = True
            message.egress_rows_left, message.egress_bytes_left = decision.egress_left
        limits = decision.verdict.breaker
        if limits is not None and decision.verdict.allowed:
            left = guards.breaker.reuses_left(session.identity.key, connection_name, limits)
            if left is not None:
                # a threshold past what the field holds bounds nothing it can say
                message.reuse_bounded, message.reuses_left = True, min(left, MAX_REUSES)
        effects = read[1] if read is not None else command_effects(kind, raw)
        if effects:
            message.effects.extend(effects)
        return response

    def _reuse_report(self, session: Session, reused: Sequence[pdp_pb2.ReusedVerdict]) -> None:
        """Count the commands the proxy answered from its decision cache since its last
        Decide for the session in the runaway-loop breaker, before deciding: a loop the
        proxy answered is judged as one the PDP was asked about."""
        subject, connection = session.identity.key, session.connection["name"]
        # (counted in bounded time: a report of a megabyte held the PDP's loop a minute)
        self.guards.breaker.reported(subject, connection, reused)

    def _egress_report(
        self, session: Session, rows: int, size: int, record: dict[str, Any]
    ) -> tuple[int, int] | None:
        """Count what the proxy reports the session took, now (before deciding), and put
        it in the record (`egress`, tagged with this PDP): the store is where other PDPs,
        and this one after a restart, find it (pdp.domain.guard_sync)."""
        egress = self.guards.egress
        if rows or size:
            egress.add(session.identity.key, session.connection["name"], session.id, rows, size)
        carried = egress.take_unrecorded(session.id)
        rows, size = max(rows, 0) + carried[0], max(size, 0) + carried[1]
        if not rows and not size:
            return None
        record["egress"] = {"rows": rows, "bytes": size, "pdp": self.instance}
        return rows, size

    def _record_trips(self, session: Session) -> list[asyncio.Future[None]]:
        """The pauses the breaker began (for the session's command just guarded), being
        recorded (evidence, and read back by every replica and after a restart): appends
        started now, awaited by the caller. The breaker counts under the identity's key;
        the record names the subject as the session's token wrote it."""
        subject = session.identity.subject
        return [
            asyncio.ensure_future(self._record_trip(trip, session.id, subject))
            for trip in self.guards.breaker.take_trips()
        ]

    async def _record_trip(self, trip: Trip, session_id: str, subject: str) -> None:
        try:
            await self.decider.store.append(
                "breaker.tripped",
                {
                    "connection": trip.connection,
                    "why": trip.why,
                    "paused_until": trip.until,
                    "pause_seconds": trip.pause_seconds,
                    "pdp": self.instance,
                },
                session_id=session_id,
                subject=subject,
            )
        except StoreUnavailable as exc:
            log.error("breaker pause of %s not recorded: %s", subject, exc)

    async def _refuse_oversized(
        self,
        command: pdp_pb2.Command,
        record: dict[str, Any],
        attributes: OversizedStruct | None = None,
    ) -> Decision:
        """A command too large to evaluate: denied and recorded with its first bytes and
        the whole text's size and SHA-256 (from the proxy when it bounded the text); or
        one whose attributes are (`attributes`): recorded with its text (the first bytes
        when that is too large as well) and the attributes' size and SHA-256 alone."""
        raw = command.raw
        facts: dict[str, Any] = {}
        reason = ""
        if attributes is not None:
            facts.update(attributes_bytes=attributes.size, attributes_sha256=attributes.sha256)
            reason = (
                f"command attributes of {attributes.size} bytes are larger than the "
                f"{MAX_ATTRIBUTES_BYTES} they may be — denied"
            )
        if command.full_bytes or len(raw) > MAX_COMMAND_BYTES:
            size = command.full_bytes or len(raw.encode("utf-8", "surrogatepass"))
            digest = (
                command.full_sha256
                or hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
            )
            reason = reason or (
                f"command of {size} bytes is larger than the {MAX_COMMAND_BYTES} a command "
                "may be — denied"
            )
            facts.update(raw_truncated=True, raw_bytes=size, raw_sha256=digest[:64])
            raw = raw[:RECORDED_PREFIX]
        return await self.decider.refuse(record, command.kind, raw, reason, **facts)

    async def _unenforced(self, decision: Decision, record: dict[str, Any], why: str) -> None:
        """The record of a decision the proxy never enforced (it denied at its deadline)."""
        try:
            await self.decider.store.append(
                "decision.unenforced",
                {
                    **record,
                    "decision_id": decision.id,
                    "verdict": decision.verdict.kind.wire,
                    "enforced": "deny",
                    "reason": why,
                    "policy_revision": decision.policy_revision,
                },
                session_id=record.get("session_id", ""),
                subject=record.get("subject", ""),
            )
        except StoreUnavailable as exc:
            log.error("decision %s: its late answer is not recorded: %s", decision.id, exc)

    async def DecideStream(
        self,
        calls: AsyncIterator[pdp_pb2.DecideCall],
        context: grpc.aio.ServicerContext,
    ) -> None:
        proxy = await self._proxy(context, "DecideStream")
        await self.streams.serve(calls, context, proxy)

    async def CloseSession(
        self, request: pdp_pb2.CloseSessionRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.CloseSessionResponse:
        if not request.session_id:
            await self._invalid(context, "session_id", "required")
        if request.HasField("summary") and request.summary.ByteSize() > MAX_SUMMARY_BYTES:
            # refused before anything is recorded: the proxy's close is not taken, and the
            # reaper ends the session as for a proxy that went silent
            await self._invalid(context, "summary", f"larger than {MAX_SUMMARY_BYTES} bytes")
        proxy = await self._proxy(context, "CloseSession", request.session_id)
        session = await self._open_session(
            request.session_id, context, proxy, "CloseSession", request
        )
        summary = struct_to_dict(request.summary) if request.HasField("summary") else {}
        reason = proxy_close_reason(request.reason[:MAX_NAME] or "closed")
        body: dict[str, Any] = {
            "connection": session.connection["name"],
            "reason": reason,
            CLOSED_BY: BY_PROXY,
            "abnormal": request.abnormal,
            "duration_seconds": round(time.time() - session.started_at, 3),
            # a Struct's double may be NaN or infinite, which no JSON (and no record) holds
            "summary": json_numbers(summary),
            # the policy in force when the session ended (each decision names its own)
            "policy_revision": self.decider.engine.revision,
        }
        if request.reused:
            body["reused"] = reused_record(request.reused)
        if request.session_key.startswith(SEALED):  # (passed _open_session: its seal held)
            body[FROM_SPOOL] = True
        try:
            record = await self.decider.store.append(
                "session.close",
                _with_last_egress(self.guards, session, body, self.instance),
                session_id=session.id,
                subject=session.identity.subject,
            )
            # closed once its record is written: a close the store did not take is sent
            # again by the proxy, and must find the session still open
            # (a close of its proxy's, never one of the reaper's: no event is taken after it)
            self.sessions.close(session.id, closed_reason_of(body))
            await self.sessions.ended(session.id, closed_reason_of(body))
            # answered from the cache after its last Decide: counted once the close is
            # recorded (a close the store refused comes again)
            if request.reused:
                self._reuse_report(session, request.reused)
            self.guards.egress.forget_session(session.id)
            if self.signer is not None:
                known = self.config.connection(body["connection"])
                await record_credential_statement(
                    self.decider.store,
                    self.signer,
                    session_id=session.id,
                    subject=session.identity.subject,
                    connection=body["connection"],
                    summary=body["summary"],
                    configured_ref=_configured_ref(known) if known else "",
                    close_record_id=record.id,
                    attested_by=proxy.to_record(),
                )
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"audit store unavailable: {exc}")
            raise AssertionError("unreachable") from None
        return pdp_pb2.CloseSessionResponse(decision_id=record.id)

    async def RecordEvents(
        self, request: pdp_pb2.RecordEventsRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.RecordEventsResponse:
        proxy = await self._proxy(context, "RecordEvents", request.session_id)
        return await self.recordings.record_events(request, proxy, context)

    async def RecordBatches(
        self, request: pdp_pb2.RecordBatchesRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.RecordBatchesResponse:
        if len(request.batches) > MAX_BATCHES_PER_CALL:
            await self._invalid(context, "batches", f"more than {MAX_BATCHES_PER_CALL} in one call")
        proxy = await self._proxy(context, "RecordBatches")
        return await self.recordings.record_batches(request, proxy, context)

    async def ServerInfo(
        self, request: pdp_pb2.ServerInfoRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.ServerInfoResponse:
        # the versions and the policy revision are a proxy's (its decision cache) and an
        # operator's (`portcullis status`, with the local credential), as /v1/status is:
        # not for whoever reaches the port, to match a PDP to its known weaknesses
        await self._proxy(context, "ServerInfo")
        engine = self.decider.engine
        return pdp_pb2.ServerInfoResponse(
            policy_revision=engine.revision,
            engine=engine.name,
            version=__version__,
            engine_version=engine.version,
            decision_id="info-" + uuid.uuid4().hex,
        )


def proxy_close_reason(said: str) -> str:
    """The reason a proxy's close is recorded with: its own, except the one only the PDP's
    reaper gives (proxy_lost), which would read as the PDP having lost the proxy, under
    any spelling that reads as it (case, spaces, an invisible character: `Proxy_Lost `
    read as the reaper's in a listing)."""
    return f"{said} (said by the proxy)" if subject_as_read(said) == "proxy_lost" else said


def reused_record(reused: Iterable[pdp_pb2.ReusedVerdict]) -> list[dict[str, Any]]:
    """The commands a proxy answered from its decision cache after a session's last Decide,
    as its session.close record names them: at most MAX_REUSED_RECORDED verdicts (the
    rest counted in one entry of no text), each text cut at MAX_COMMAND_BYTES."""
    out: list[dict[str, Any]] = []
    rest = 0
    for n, one in enumerate(reused):
        if n >= MAX_REUSED_RECORDED:
            rest += one.count
            continue
        raw = one.raw.encode("utf-8", "replace")
        entry: dict[str, Any] = {
            "raw": raw[:MAX_COMMAND_BYTES].decode("utf-8", "ignore"),
            "count": one.count,
            "first_seconds_ago": json_numbers(round(one.first_seconds_ago, 3)),
            "last_seconds_ago": json_numbers(round(one.last_seconds_ago, 3)),
        }
        if len(raw) > MAX_COMMAND_BYTES:
            entry["raw_bytes"] = len(raw)
        out.append(entry)
    if rest:
        out.append({"raw": "", "count": rest, "more_verdicts": True})
    return out


# verdicts reused after a session's last Decide that its close record names one by one
MAX_REUSED_RECORDED = 256


def json_numbers(value: Any) -> Any:
    """`value` with every float JSON cannot hold (NaN, infinities) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    return value


def _with_last_egress(
    guards: Guards, session: Session, body: dict[str, Any], instance: str
) -> dict[str, Any]:
    """What the client took after the session's last decision counts for the hour too;
    the close record carries it (`egress`, as a decision record does) for other PDPs."""
    summary = body["summary"]
    rows, size = summary.get("egress_rows", 0), summary.get("egress_bytes", 0)
    if isinstance(rows, (int, float)) and isinstance(size, (int, float)):
        rows, size = max(int(rows), 0), max(int(size), 0)
        guards.egress.add(session.identity.key, session.connection["name"], session.id, rows, size)
    else:
        rows = size = 0
    carried = guards.egress.take_unrecorded(session.id)
    rows, size = rows + carried[0], size + carried[1]
    if rows or size:
        body["egress"] = {"rows": rows, "bytes": size, "pdp": instance}
    return body


def _deadline_of(request: pdp_pb2.DecideRequest, context: Any) -> float | None:
    """When (monotonic) the proxy stops waiting for this answer: the call's own deadline
    (unary), or the timeout the proxy named in the request (a call over the stream)."""
    remaining = getattr(context, "time_remaining", lambda: None)()
    if request.timeout_ms:
        mine = request.timeout_ms / 1000
        remaining = mine if remaining is None else min(remaining, mine)
    return None if remaining is None else time.monotonic() + remaining


class _RefusalBudget:
    """At most RATE refused calls recorded per second: a flood of forgeries is evidence,
    but must not fill the store; the next record says how many went unrecorded."""

    RATE = 50

    def __init__(self) -> None:
        self._second = 0
        self._taken = 0
        self._suppressed = 0

    def take(self) -> int | None:
        """None: do not record this one; else how many were left out before it."""
        now = int(time.monotonic())
        if now != self._second:
            self._second, self._taken = now, 0
        if self._taken >= self.RATE:
            self._suppressed += 1
            return None
        self._taken += 1
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


_KEY_IDENTITIES = KeyIdentities()


def _presented_key(request: pdp_pb2.OpenSessionRequest) -> str:
    """The public key an SSH proxy presents for a public-key login ("" : none)."""
    if not request.HasField("attributes"):
        return ""
    value = request.attributes.fields.get(KEY_ATTRIBUTE)
    return value.string_value if value is not None else ""
