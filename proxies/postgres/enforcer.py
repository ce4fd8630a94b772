"""Enforcing verdicts on the frontend messages of one Postgres session.

Owns what happens to each client message: simple Query decided as a whole (the PDP
classifies every statement in it; one denied statement denies the message), extended
protocol decided at Parse with Bind/Describe/Execute of a never-allowed statement
refused, the server's discard-until-Sync behaviour after a refusal, COPY and function
calls. Forwarded messages leave an expectation with the ResponseTracker; refusals are
queued there as made-up answers, so the client sees them in the server's order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pdp.policy_input import classified, shaped
from pdp.verdict import MaskRule, Verdict, VerdictKind
from proxies.postgres import codec
from proxies.postgres.tracker import Expect, ResponseTracker
from proxies.runtime.masking import Masker, MaskingError
from proxies.runtime.pdp_client import Ruling
from proxies.runtime.session import ProxySession

# A statement the server rejects without side effects: sent in place of a denied Parse
# when part of the batch already went upstream, so the server aborts the batch exactly as
# if the denied statement had failed; its error is replaced by the policy's.
POISON_SQL = "portcullis policy refused this statement"

# what the policy sees of how a statement came (input.command.postgres.protocol)
_PROTOCOL = {"simple": {"protocol": "simple"}, "extended": {"protocol": "extended"}}


@dataclass
class PreparedStatement:
    sql: str
    ruling: Ruling


@dataclass
class Portal:
    statement: str
    formats: list[int]


def refusal(ruling: Ruling) -> codec.ErrorResponse:
    """The ErrorResponse a client gets for a deny or an approval it cannot wait for."""
    reasons = "; ".join(ruling.verdict.reasons) or "denied by policy"
    detail = f"decision {ruling.decision_id}" if ruling.decision_id else None
    if ruling.kind is VerdictKind.REQUIRE_APPROVAL:
        approvers = ", ".join(ruling.verdict.approval.approvers) if ruling.verdict.approval else ""
        return codec.error_response(
            f"portcullis: approval required: {reasons}",
            detail=detail,
            hint=f"approvers: {approvers}; no approval request could be made for it",
        )
    return codec.error_response(f"portcullis: denied by policy: {reasons}", detail=detail)


class Enforcer:
    def __init__(
        self,
        session: ProxySession,
        tracker: ResponseTracker,
        forward: Callable[[bytes], None],
        reply: Callable[[bytes], None],
        hash_key: bytes,
        resolve_function: Callable[[int], Awaitable[str | None]] | None = None,
    ) -> None:
        self.session = session
        self.resolve_function = resolve_function
        self.tracker = tracker
        self.forward = forward  # bytes to the upstream server
        self.reply = reply  # bytes to the client, in order
        self.hash_key = hash_key
        self.statements: dict[str, PreparedStatement] = {}
        self.portals: dict[str, Portal] = {}
        self.discarding = False  # after a refusal in a batch, until Sync
        self.batch_forwarded = False  # something of the current batch went upstream
        self.terminated = False
        self._maskers: dict[tuple[MaskRule, ...], Masker] = {}

    # -- helpers -------------------------------------------------------------------------

    def masker(self, ruling: Ruling) -> Masker | None:
        if ruling.kind is not VerdictKind.MASK:
            return None
        rules = ruling.verdict.mask
        found = self._maskers.get(rules)
        if found is None:
            found = self._maskers[rules] = Masker(rules, self.hash_key)
        return found

    async def decide(self, sql: str, protocol: str) -> Ruling:
        ruling = await self.session.decide_or_wait(
            "postgres.query", sql, _PROTOCOL[protocol], shaped, self.tell
        )
        return self._vetted(sql, ruling)

    def _known(self, sql: str, protocol: str) -> Ruling | None:
        """The statement's verdict when no PDP round trip is needed (reused), else None."""
        ruling = self.session.ruling_now("postgres.query", sql, shaped, _PROTOCOL[protocol])
        return None if ruling is None else self._vetted(sql, ruling)

    def _vetted(self, sql: str, ruling: Ruling) -> Ruling:
        """A mask verdict the proxy cannot carry out becomes a deny."""
        if ruling.kind is not VerdictKind.MASK:
            return ruling
        try:
            masker = self.masker(ruling)
        except MaskingError as exc:
            return Ruling(
                Verdict.deny(f"policy mask rules unusable ({exc}) — denied"),
                ruling.decision_id,
                ruling.policy_revision,
            )
        if (
            masker is not None
            and any(r.field for r in ruling.verdict.mask)
            and any(s.get("type") == "copy" and s.get("direction") == "to" for s in classified(sql))
        ):
            return Ruling(
                Verdict.deny("COPY output cannot be masked by column; use SELECT — denied"),
                ruling.decision_id,
                ruling.policy_revision,
            )
        return ruling

    def tell(self, text: str) -> None:
        """A NoticeResponse, in order with everything else the client is owed."""
        notice = codec.notice_response(text).encode()
        self.reply(self.tracker.synthetic(lambda status: notice))

    def _send(self, message: codec.Message, expect: Expect) -> None:
        self.tracker.expect(expect)
        self.forward(message.raw or message.encode())

    def _refuse_now(self, error: codec.ErrorResponse, ready: bool) -> None:
        """Answer the client without the server (for a simple Query: error + ReadyForQuery)."""
        encoded = error.encode()

        def build(status: str) -> bytes:
            return encoded + (codec.ready_for_query(status).encode() if ready else b"")

        self.reply(self.tracker.synthetic(build))

    def _refuse_in_batch(self, error: codec.ErrorResponse) -> None:
        """Refuse an extended-protocol message the way the server fails one."""
        self.discarding = True
        if not self.batch_forwarded:
            self._refuse_now(error, ready=False)
            return
        poison = codec.Parse("", POISON_SQL, [])
        self._send(poison, Expect("Parse", replace_error=error))

    # -- messages ------------------------------------------------------------------------
    # Each message is handled by now() when nothing needs the PDP (a reused verdict, the
    # messages of an allowed statement): no await, so a proxy's hot path runs straight
    # through. Otherwise on_message() asks the PDP first, then finishes the same way.

    def now(self, message: codec.Message) -> bool:
        """Handle a message if no PDP round trip is needed; False: await on_message()."""
        handler = _NOW.get(type(message))
        if handler is None:
            raise codec.ProtocolViolation(f"unexpected {type(message).__name__} from client")
        return handler(self, message)

    async def on_message(self, message: codec.Message) -> None:
        if not self.now(message):
            await self.ask(message)

    async def ask(self, message: codec.Message) -> None:
        """Finish a message now() turned down: ask the PDP, then handle it."""
        await _ASKING[type(message)](self, message)

    def _with_known(
        self, message: Any, sql: str, protocol: str, act: Callable[[Enforcer, Any, Ruling], None]
    ) -> bool:
        """act(message, verdict) when the statement's verdict needs no PDP round trip."""
        ruling = self._known(sql, protocol)
        if ruling is None:
            return False
        act(self, message, ruling)
        return True

    def _query_now(self, message: codec.Query) -> bool:
        return self._with_known(message, message.sql, "simple", Enforcer._query)

    async def _query_asking(self, message: codec.Query) -> None:
        self._query(message, await self.decide(message.sql, "simple"))

    def _query(self, message: codec.Query, ruling: Ruling) -> None:
        if not ruling.verdict.allowed:
            self.session.record_command(message.sql, ruling, protocol="simple")
            self._refuse_now(refusal(ruling), ready=True)
            return
        # an allowed command is recorded when it completes, with its result
        self._send(
            message,
            Expect(
                "Query",
                self.masker(ruling),
                ruling.decision_id,
                command=message.sql,
                ruling=ruling,
                protocol="simple",
            ),
        )

    def _parse_now(self, message: codec.Parse) -> bool:
        return self.discarding or self._with_known(
            message, message.sql, "extended", Enforcer._parse
        )

    async def _parse_asking(self, message: codec.Parse) -> None:
        self._parse(message, await self.decide(message.sql, "extended"))

    def _parse(self, message: codec.Parse, ruling: Ruling) -> None:
        if not ruling.verdict.allowed:
            self.session.record_command(message.sql, ruling, protocol="extended")
            self.statements.pop(message.name, None)
            self._refuse_in_batch(refusal(ruling))
            return
        self.statements[message.name] = PreparedStatement(message.sql, ruling)
        self.tracker.statement_shapes.pop(message.name, None)
        self.batch_forwarded = True
        self._send(message, Expect("Parse", statement=message.name))

    def _stale(self, statement: PreparedStatement) -> bool:
        """The policy changed since this statement was allowed, whether its verdict was
        decided for it or reused from the cache: its next Bind asks again."""
        revision = self.session.runtime.pdp.revision
        return bool(revision) and statement.ruling.policy_revision != revision

    def _bind_now(self, message: codec.Bind) -> bool:
        if self.discarding:
            return True
        statement = self.statements.get(message.statement)
        if statement is not None and self._stale(statement):
            return False
        self._bind(message, statement)
        return True

    async def _bind_asking(self, message: codec.Bind) -> None:
        """Bind of a statement allowed under an earlier policy: ask again first."""
        statement = self.statements[message.statement]
        ruling = await self.decide(statement.sql, "extended")
        if not ruling.verdict.allowed:
            del self.statements[message.statement]
            self.session.record_command(statement.sql, ruling, protocol="extended")
            self._refuse_in_batch(refusal(ruling))  # the policy's own reasons
            return
        statement.ruling = ruling
        self._bind(message, statement)

    def _bind(self, message: codec.Bind, statement: PreparedStatement | None) -> None:
        if statement is None:
            self._never_allowed(f"prepared statement {message.statement!r}")
            return
        self.portals[message.portal] = Portal(message.statement, list(message.result_formats))
        self.tracker.portal_shapes.pop(message.portal, None)
        self.batch_forwarded = True
        self._send(message, Expect("Bind"))

    def _never_allowed(self, what: str) -> None:
        self._refuse_in_batch(
            codec.error_response(f"portcullis: {what} was not allowed by policy in this session")
        )

    def _describe(self, message: codec.Describe) -> bool:
        if self.discarding:
            return True
        if message.kind == "S" and message.name not in self.statements:
            self._never_allowed(f"prepared statement {message.name!r}")
            return True
        if message.kind == "P" and message.name not in self.portals:
            self._never_allowed(f"portal {message.name!r}")
            return True
        self.batch_forwarded = True
        kind = "DescribeS" if message.kind == "S" else "DescribeP"
        self._send(message, Expect(kind, statement=message.name))
        return True

    def _execute(self, message: codec.Execute) -> bool:
        if self.discarding:
            return True
        portal = self.portals.get(message.portal)
        statement = self.statements.get(portal.statement) if portal else None
        if portal is None or statement is None:
            self._never_allowed(f"portal {message.portal!r}")
            return True
        ruling = statement.ruling
        halt = self.session.halted()
        if halt is not None:
            self._refuse_in_batch(refusal(halt))
            return True
        masker = self.masker(ruling)
        if (
            masker is not None
            and message.portal not in self.tracker.portal_shapes
            and (self.tracker.statement_shapes.get(portal.statement) is None)
        ):
            # masking needs column names: describe the portal first, for the proxy only
            self._send(
                codec.Describe("P", message.portal),
                Expect("DescribeP", statement=message.portal, swallow=True),
            )
        self.batch_forwarded = True
        self._send(
            message,
            Expect(
                "Execute",
                masker,
                ruling.decision_id,
                formats=portal.formats,
                statement=portal.statement,
                portal=message.portal,
                command=statement.sql,
                ruling=ruling,
                protocol="extended",
            ),
        )
        return True

    def _close(self, message: codec.Close) -> bool:
        if self.discarding:
            return True
        if message.kind == "S":
            self.statements.pop(message.name, None)
            self.tracker.statement_shapes.pop(message.name, None)
        else:
            self.portals.pop(message.name, None)
            self.tracker.portal_shapes.pop(message.name, None)
        self.batch_forwarded = True
        self._send(message, Expect("Close"))
        return True

    def _sync(self, message: codec.Sync) -> bool:
        forwarded, self.batch_forwarded = self.batch_forwarded, False
        if self.discarding and not forwarded:
            self.discarding = False
            self.reply(
                self.tracker.synthetic(lambda status: codec.ready_for_query(status).encode())
            )
            return True
        self.discarding = False
        self._send(message, Expect("Sync"))
        return True

    def _flush(self, message: codec.Flush) -> bool:
        if not self.discarding:
            self.forward(message.raw or message.encode())
        return True

    def _copy(self, message: codec.Message) -> bool:
        # CopyData/CopyDone/CopyFail belong to a COPY FROM STDIN that was already allowed
        self.forward(message.raw or message.encode())
        return True

    def _terminate(self, message: codec.Terminate) -> bool:
        self.terminated = True
        self.forward(message.raw or message.encode())
        return True

    async def _function_call_asking(self, message: codec.FunctionCall) -> None:
        """A fast-path call names its function by OID: decide on the function's name."""
        name = await self.resolve_function(message.oid) if self.resolve_function else None
        raw = f"<function call {name or f'oid {message.oid}'}>"
        if name is None:
            ruling = Ruling(
                Verdict.deny(
                    f"function OID {message.oid} could not be named, so it cannot be decided"
                )
            )
        else:
            ruling = await self.session.decide(
                "postgres.function_call", raw, {"function": name, "protocol": "function_call"}
            )
        if not ruling.verdict.allowed:
            self.session.record_command(raw, ruling, protocol="function_call")
            self._refuse_now(refusal(ruling), ready=True)
            return
        self._send(
            message,
            Expect(
                "Call",
                command=raw,
                ruling=ruling,
                decision_id=ruling.decision_id,
                protocol="function_call",
            ),
        )


def _never_now(enforcer: Enforcer, message: codec.Message) -> bool:
    return False  # always asks the PDP


# what each client message does without waiting (False: it must ask the PDP) ...
_NOW: dict[type, Callable[[Enforcer, Any], bool]] = {
    codec.Query: Enforcer._query_now,
    codec.Parse: Enforcer._parse_now,
    codec.Bind: Enforcer._bind_now,
    codec.Describe: Enforcer._describe,
    codec.Execute: Enforcer._execute,
    codec.Close: Enforcer._close,
    codec.Sync: Enforcer._sync,
    codec.Flush: Enforcer._flush,
    codec.CopyData: Enforcer._copy,
    codec.CopyDone: Enforcer._copy,
    codec.CopyFail: Enforcer._copy,
    codec.FunctionCall: _never_now,
    codec.Terminate: Enforcer._terminate,
}
# ... and what it does after asking
_ASKING: dict[type, Callable[[Enforcer, Any], Awaitable[None]]] = {
    codec.Query: Enforcer._query_asking,
    codec.Parse: Enforcer._parse_asking,
    codec.Bind: Enforcer._bind_asking,
    codec.FunctionCall: Enforcer._function_call_asking,
}
