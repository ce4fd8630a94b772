"""The approval side of the gRPC API, and what a require_approval verdict turns into.

Owns: turning a require_approval decision into an approval request (or into the allow
of an approved request the same identity may re-use), `AwaitApproval` (streams the
request's state until a person decides, or the wait ends), and `ListApprovals` /
`ResolveApproval` for approvers, who authenticate with their own token. Who may approve is
the policy's `data.portcullis.approvers`; nobody approves their own request.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import grpc

from pdp.domain.approvals import (
    APPROVED,
    PENDING,
    REASON_REQUIRED,
    ApprovalBook,
    ApprovalRefused,
    ApprovalRequest,
    reason_kept,
)
from pdp.domain.decisions import Decider, Decision, Guard
from pdp.domain.identity import TokenRejected, approver_refusal
from pdp.domain.policy_input import build_input
from pdp.domain.search_paths import names_resolve_as_approved
from pdp.domain.sessions import Session
from pdp.engine import EngineError
from pdp.store import StoreUnavailable
from portcullis.v1 import pdp_pb2
from portcullis.verdict import Verdict, VerdictKind

if TYPE_CHECKING:
    from pdp.api.service import DecisionService

APPROVERS_PATH = "portcullis.approvers"


def approval_message(request: ApprovalRequest) -> pdp_pb2.Approval:
    """A request as every gRPC caller sees it: text and values as approvers see them."""
    command, statements = request.shown()
    return pdp_pb2.Approval(
        id=request.id,
        state=request.state,
        requester=str(request.requester.get("subject", "")),
        connection=request.connection,
        command=command,
        statements=[
            pdp_pb2.ApprovalStatement(text=s["text"], classification=s["classification"])
            for s in statements
        ],
        reasons=request.reasons,
        approvers=request.approvers,
        justification=request.justification,
        created_at=request.created_at,
        expires_at=request.expires_at,
        approver=request.approver,
        decision_reason=request.decision_reason,
        ttl_seconds=request.ttl_seconds,
        parameters=request.parameters,
        events=request.events,
    )


AUTHORIZED_ENTRIES = 65536
AUTHORIZED_SECONDS = 60.0


class PolicyAuthorizer:
    """Asks `data.portcullis.approvers` whether an approver may decide a request.

    Calling it asks the policy every time (a person deciding). `kept` answers a listing:
    the answer kept per approver (subject, issuer, groups), request and policy revision
    (what the policy reads of a request never changes after it is made) for up to
    AUTHORIZED_SECONDS (a policy may read the clock). A listing asks for every request the
    book holds, and any token holder may list as often as they like: asked afresh, each
    listing cost the engine workers, which every Decide shares, one evaluation per request
    ever made. An engine error is not kept."""

    def __init__(self, decider: Decider) -> None:
        self.decider = decider
        self._answers: OrderedDict[tuple[Any, ...], tuple[float, bool, tuple[str, ...]]] = (
            OrderedDict()
        )

    async def __call__(
        self, approver: dict[str, Any], request: ApprovalRequest
    ) -> tuple[bool, list[str]]:
        try:
            return await self._ask(approver, request)
        except EngineError as exc:
            return False, [f"policy engine error: {exc}"]

    async def kept(
        self, approver: dict[str, Any], request: ApprovalRequest
    ) -> tuple[bool, list[str]]:
        key = (
            self.decider.engine.revision,
            str(approver.get("subject", "")),
            str(approver.get("issuer", "")),
            tuple(str(g) for g in approver.get("groups", [])),
            request.id,
        )
        now = time.monotonic()
        held = self._answers.get(key)
        if held is not None and held[0] > now:
            self._answers.move_to_end(key)
            return held[1], list(held[2])
        try:
            allowed, reasons = await self._ask(approver, request)
        except EngineError as exc:
            return False, [f"policy engine error: {exc}"]
        self._answers[key] = (now + AUTHORIZED_SECONDS, allowed, tuple(reasons))
        self._answers.move_to_end(key)
        if len(self._answers) > AUTHORIZED_ENTRIES:
            self._answers.popitem(last=False)
        return allowed, reasons

    async def _ask(
        self, approver: dict[str, Any], request: ApprovalRequest
    ) -> tuple[bool, list[str]]:
        policy_input = {
            "approver": {
                "subject": approver.get("subject", ""),
                "groups": list(approver.get("groups", [])),
            },
            "request": {
                "requester": request.requester,
                "approvers": request.approvers,
                "connection": request.connection,
                "command": request.command,
            },
        }
        result = await self.decider.engine.evaluate(policy_input, APPROVERS_PATH)
        answer = result.result
        if not isinstance(answer, dict) or answer.get("allowed") is not True:
            reasons = answer.get("reasons", []) if isinstance(answer, dict) else []
            return False, [str(r) for r in reasons] or ["the policy does not allow this approver"]
        return True, [str(r) for r in answer.get("reasons", [])]


def policy_authorizer(decider: Decider) -> PolicyAuthorizer:
    """Ask `data.portcullis.approvers` whether an approver may decide a request."""
    return PolicyAuthorizer(decider)


def bound_parameters(command: dict[str, Any]) -> list[str]:
    """The parameter values a proxy bound to the statement (extended protocol), as text:
    every one of them (an approval binds to all the values it runs with, and its approver
    is shown all of them; the request's 4 MiB message bounds them). The first 256 alone
    were kept once, and a value past them could be changed under an approval."""
    postgres = command.get("postgres")
    values = postgres.get("parameters") if isinstance(postgres, dict) else None
    if not isinstance(values, list):
        return []
    return [v if isinstance(v, str) else json.dumps(v) for v in values]


# requests of one identity waiting for a person at once; past it a require_approval is a deny
MAX_WAITING = 16


async def still_holds(
    service: DecisionService, approved: ApprovalRequest, decision: Decision
) -> bool:
    """Whether an approved request still lets this require_approval `decision` run.

    Under the policy revision that asked, it does. Under another (a reload since), the
    new policy must ask for the very approval that was given — the same reasons, the same
    approvers and TTL — and must still let its approver give it (data.portcullis.approvers,
    with the groups they held when deciding): a security team that changed who approves
    what, or why, expects the command to be asked about again, not run on an approval given
    under rules no longer in force. A new deny never reaches here (the decision is a deny).
    An engine that cannot tell a reload gets the approvers' part of this check every time.
    Then (pdp.domain.search_paths) nothing the session ran since the request may have
    changed how its unqualified names resolve."""
    revised = approved.policy_revision != decision.policy_revision
    if sorted(decision.verdict.reasons) != sorted(approved.asked_reasons):
        # asked now for other reasons than the approver read, under the same policy: what
        # the command runs changed (a trigger a superuser made on the table while it waited
        # is in a Postgres statement's reasons, from the proxy's catalogue facts)
        return False
    # an engine that cannot tell a reload (OPA answering without a bundle revision: every
    # answer "opa:unknown") is asked every time whether the approval is still the one due
    if revised or not getattr(service.decider.engine, "knows_revision", False):
        spec = decision.verdict.approval
        if spec is None or (
            sorted(spec.approvers) != sorted(approved.approvers)
            or (spec.ttl_seconds or 900) != approved.ttl_seconds
        ):
            return False
        approver = {"subject": approved.approver, "groups": list(approved.approver_groups)}
        if (
            service.approvals is None
            or not (await service.approvals.authorize(approver, approved))[0]
        ):
            return False
    return await names_resolve_as_approved(service.decider.store, approved)


async def settle(
    service: DecisionService,
    session: Session,
    command: dict[str, Any],
    decision: Decision,
    record: dict[str, Any],
    guard: Guard | None = None,
) -> tuple[Decision, str]:
    """What a require_approval decision becomes: an approved request's re-run, or a request.
    guard: what the re-run's verdict passes (pdp.domain.guards: its row filter applies)."""
    book: ApprovalBook | None = service.approvals
    if decision.verdict.kind is not VerdictKind.REQUIRE_APPROVAL or book is None:
        return decision, ""
    subject, issuer = session.identity.subject, session.identity.issuer
    connection = session.connection["name"]
    parameters = bound_parameters(command)
    # an approval is for the session it was asked in; a session.open grant makes a new one
    bound_session = None if command.get("kind") == "session.open" else session.id
    approved = None
    raw, kind = command.get("raw", ""), command.get("kind", "")
    asked = (subject, issuer, connection, raw, kind, bound_session, parameters)
    for candidate in book.live_for(APPROVED, *asked):
        if await still_holds(service, candidate, decision):
            approved = candidate
            break
    if approved is not None:
        if bound_session is None:
            # a just-in-time grant: the session lives as long as the approval may be used,
            # and its open record says so (a PDP finding the session in the store ends it)
            session.grant_expires_at = approved.usable_until
            if "session" in record:
                record = {**record, "session": service.sessions.sealed(session)}
        policy_input = build_input(
            session,
            command,
            approval={"id": approved.id, "state": APPROVED, "approver": approved.approver},
        )
        rerun = await service.decider.decide(
            policy_input, {**record, "approval_id": approved.id}, guard=guard
        )
        if rerun.verdict.allowed:
            await book.executed(approved, rerun.id)
        return rerun, approved.id
    spec = decision.verdict.approval
    pending = next(iter(book.live_for(PENDING, *asked)), None)
    if pending is None and book.waiting_of(subject, issuer) >= MAX_WAITING:
        # every request is held in memory by every PDP and shown to approvers: one
        # identity's flood of them (each up to a megabyte of SQL) must not grow without end
        why = (
            f"{MAX_WAITING} approval requests of {subject} are waiting for a person:"
            " denied until one is decided or expires"
        )
        denied = Verdict.deny(why)
        # the record says require_approval; what was answered instead is recorded too
        await service._unenforced(decision, record, why)
        return Decision(
            decision.id, denied, decision.policy_revision, decision.evaluation_ms, decision.recorded
        ), ""
    try:
        request = await book.request(
            {
                "subject": subject,
                "groups": list(session.identity.groups),
                "issuer": session.identity.issuer,
                "names": list(session.identity.names),
            },
            session.id,
            connection,
            command.get("kind", ""),
            command.get("raw", ""),
            list(decision.verdict.reasons),
            list(spec.approvers) if spec else [],
            spec.ttl_seconds if spec else 0,
            parameters,
            decision.verdict.mask,
            proxy=session.proxy,
            policy_revision=decision.policy_revision,
        )
    except StoreUnavailable:
        denied = Verdict.deny("approval requests cannot be recorded now — denied")
        return Decision(
            decision.id, denied, decision.policy_revision, decision.evaluation_ms, decision.recorded
        ), ""
    if session.closed and bound_session is not None:
        # the session ended while its request was being made (its view is made off the
        # loop): withdrawn as its end withdrew the others
        with contextlib.suppress(StoreUnavailable):
            await book.withdraw_of_session(session.id, session.closed_reason or "closed")
    return decision, request.id


async def visible_approvals(
    book: ApprovalBook, who: dict[str, Any], pending_only: bool = False
) -> list[ApprovalRequest]:
    """The requests `who` may see: their own, and those the policy lets them decide.
    Nobody else's requests, command texts or connections (issue 22)."""
    await book.refresh()
    # a listing's answers may be kept a while (PolicyAuthorizer.kept); a decision's never
    authorize = getattr(book.authorize, "kept", book.authorize)
    shown = []
    for r in book.requests.values():
        if pending_only and r.state != PENDING:
            continue
        own = r.requester.get("subject") == who.get("subject") and r.requester.get(
            "issuer", ""
        ) == who.get("issuer", "")
        if own or (await authorize(who, r))[0]:
            shown.append(r)
    shown.sort(key=lambda r: r.created_at)
    return shown


# what one ListApprovals answer may hold: under gRPC's 4 MiB message limit (pdp.api.server),
# with room for the framing of each entry
LIST_BYTES = 4 * 1024 * 1024 - 64 * 1024


def within_message_limit(listed: list[ApprovalRequest]) -> list[pdp_pb2.Approval]:
    """The listing as gRPC carries it, in its order, holding what fits in one message:
    pending requests first, then the newest decided, each left out only when it does not
    fit (an approver sees every statement in full, so a request of a megabyte of SQL is
    a megabyte twice: command and statements). Without it, a few such requests of one
    reader made every approver's listing fail for good (RESOURCE_EXHAUSTED)."""
    messages = [approval_message(r) for r in listed]
    order = sorted(
        range(len(listed)), key=lambda i: (listed[i].state != PENDING, -listed[i].created_at)
    )
    kept: set[int] = set()
    total = 0
    for i in order:
        size = messages[i].ByteSize() + 16  # its tag and length in the answer
        if total + size <= LIST_BYTES:
            kept.add(i)
            total += size
    return [m for i, m in enumerate(messages) if i in kept]


def public_view(request: ApprovalRequest) -> dict[str, Any]:
    """What the approvals API shows (ApprovalRequest.public): never the session id, the
    exact text or values."""
    return request.public()


async def _settled_by(
    context: grpc.aio.ServicerContext, change: Awaitable[ApprovalRequest]
) -> ApprovalRequest:
    """A person's change to a request (decide, withdraw), its refusals as gRPC statuses."""
    try:
        return await change
    except ApprovalRefused as exc:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        raise
    except StoreUnavailable as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"audit store unavailable: {exc}")
        raise


class ApprovalRPCs:
    """Mixed into DecisionService."""

    async def _approver(self: Any, token: str, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        if not token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token: missing")
        try:
            identity = await self.verifier.verify(token, self.config.approvals.audience)
        except TokenRejected as exc:
            why = approver_refusal(exc.reason, self.config.approvals.audience)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"token rejected: {why}")
            raise
        return {
            "subject": identity.subject,
            "groups": list(identity.groups),
            "issuer": identity.issuer,
            "names": list(identity.names),
        }

    async def AwaitApproval(
        self: Any, request: pdp_pb2.AwaitApprovalRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        proxy = await self._proxy(context, "AwaitApproval", request.session_id)
        book: ApprovalBook = self.approvals
        pending = book.requests.get(request.approval_id)
        if pending is None:  # made on another replica a moment ago: read the store
            with contextlib.suppress(StoreUnavailable):
                await book.refresh()
            pending = book.requests.get(request.approval_id)
        # a session.open request has no session yet: the proxy that asked may wait on it
        # (recorded with the request, so any replica knows it; a request recorded without
        # one is no proxy's)
        if pending is not None and pending.command_kind == "session.open":
            if pending.proxy != proxy.key or not proxy.serves(pending.connection):
                await self.refuse(
                    context,
                    "AwaitApproval",
                    grpc.StatusCode.PERMISSION_DENIED,
                    "the request belongs to another proxy",
                    proxy,
                )
        elif pending is not None and pending.session_id == request.session_id:
            session = await self.sessions.find(pending.session_id, include_closed=True)
            if session is None:
                pending = None
            else:
                await self._bound(session, proxy, context, "AwaitApproval", request)
                self.sessions.heard_from(session)
        if pending is None or (
            pending.session_id != request.session_id and pending.command_kind != "session.open"
        ):
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"approval_id: no request {request.approval_id[:64]!r} for this session",
            )
            return
        limit = request.timeout_seconds or self.config.approvals.timeout_seconds
        deadline = time.monotonic() + min(limit, self.config.approvals.timeout_seconds)
        yield pdp_pb2.ApprovalUpdate(approval=approval_message(pending))
        while pending.state == PENDING and time.monotonic() < deadline:
            pending = await book.wait(pending.id, deadline - time.monotonic()) or pending
        yield pdp_pb2.ApprovalUpdate(approval=approval_message(pending))

    async def ListApprovals(
        self: Any, request: pdp_pb2.ListApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.ListApprovalsResponse:
        who = await self._approver(request.token, context)
        listed = await visible_approvals(self.approvals, who, request.pending_only)
        return pdp_pb2.ListApprovalsResponse(approvals=within_message_limit(listed))

    async def WithdrawApproval(
        self: Any, request: pdp_pb2.WithdrawApprovalRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.WithdrawApprovalResponse:
        if not request.approval_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "approval_id: required")
        book: ApprovalBook = self.approvals
        requester: str | None = None
        issuer: str | None = None
        session_id: str | None = None
        if request.token:
            who = await self._approver(request.token, context)
            requester = str(who.get("subject", ""))
            issuer = str(who.get("issuer", ""))
        else:
            # a proxy speaks for the session whose client gave up waiting
            proxy = await self._proxy(context, "WithdrawApproval", request.session_id)
            session = await self.sessions.find(request.session_id, include_closed=True)
            if session is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, "no such session")
                raise AssertionError("unreachable")
            await self._bound(session, proxy, context, "WithdrawApproval", request)
            self.sessions.heard_from(session)
            session_id = request.session_id
        reason = request.reason or "withdrawn"
        withdrawn = await _settled_by(
            context, book.withdraw(request.approval_id, requester, session_id, reason, issuer)
        )
        return pdp_pb2.WithdrawApprovalResponse(approval=approval_message(withdrawn))

    async def ResolveApproval(
        self: Any, request: pdp_pb2.ResolveApprovalRequest, context: grpc.aio.ServicerContext
    ) -> pdp_pb2.ResolveApprovalResponse:
        approver = await self._approver(request.token, context)
        if not request.approval_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "approval_id: required")
        if reason_kept(request.reason) is None:
            # as the HTTP API, the console and `portcullis approvals` ask: an approval's
            # evidence says why a person let the command run (or kept it from running)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"reason: {REASON_REQUIRED}")
        book: ApprovalBook = self.approvals
        decided = await _settled_by(
            context, book.decide(request.approval_id, approver, request.approve, request.reason)
        )
        return pdp_pb2.ResolveApprovalResponse(approval=approval_message(decided))
