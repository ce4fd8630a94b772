"""Guards made for agents (issue 30): what the PDP adds to the policy's verdict for a
command before it is recorded and answered.

Owns Guards.check(), the one place that turns a verdict's `row_filter`, `budget` and
`breaker` into what the proxy enforces:

  row_filter  the statement rewritten so every read of a filtered table is filtered
              (pdp.sql.rowfilter); a statement that cannot be proved covered is denied.
  budget      rows and bytes this identity (its key: pdp.domain.identity.identity_key)
              took from this connection, this session and this hour (pdp.domain.egress,
              fed by the proxies' reports): past a limit the command needs approval (or
              is denied), the reason naming budget and usage.
  breaker     per identity rates (pdp.domain.breaker): past a threshold every command of the
              identity needs approval for a while, and approvers are told.

Every path here can only make a verdict stricter, never looser: a guard that cannot do
its job denies. The budgets and pauses other PDPs recorded (replicas on one store, or
this PDP before a restart) reach the ledgers through pdp.domain.guard_sync; while it
cannot read them (`unsynced` names why), a budget or breaker the verdict carries holds
the command for approval (a budget whose `over` is deny: denies it) instead of judging
on this PDP's counts alone. No policy here (the thresholds come from the verdict) and no
IO (the ledgers are in memory; the breaker's notice goes through the callable it was
given).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pdp.domain.breaker import Breaker
from pdp.domain.decisions import Guarded
from pdp.domain.egress import EgressLedger
from pdp.domain.identity import identity_key
from pdp.sql.rowfilter import rewrite
from portcullis.verdict import ApprovalSpec, Verdict, VerdictKind

_ROW_FILTER_KINDS = frozenset({"postgres.query"})


class Guards:
    def __init__(
        self,
        egress: EgressLedger | None = None,
        breaker: Breaker | None = None,
        approvers: Sequence[str] = ("group:security",),
        approval_ttl: int = 900,
    ) -> None:
        self.egress = egress or EgressLedger()
        self.breaker = breaker or Breaker()
        # who approves a command a guard (not the policy) holds for approval
        self.approval = ApprovalSpec(tuple(approvers), approval_ttl)
        # why what other PDPs recorded is not known now ("": it is, or this PDP is alone)
        self.unsynced: Callable[[], str] = lambda: ""

    def check(
        self,
        session: Any,
        kind: str,
        raw: str,
        attributes: Mapping[str, Any],
        verdict: Verdict,
        approved: bool = False,
    ) -> Guarded:
        """The verdict as the guards leave it, for one command of `session`; `approved`:
        the re-run of a command a person approved (budgets and the breaker held it for
        that person, so they hold it no more; its row filter still applies)."""
        # every count under the identity's key: one person's subject spelt otherwise
        # ('RITA@example.com') is the same identity to budgets and the breaker
        subject = identity_key(str(session.identity.subject))
        connection = str(session.connection.get("name", ""))
        facts: dict[str, Any] = {}
        tripped = "" if approved else self.breaker.observe(subject, connection, raw, verdict)
        if verdict.kind is VerdictKind.DENY:
            return Guarded(verdict)
        rewritten, shape = "", None
        if verdict.row_filter:
            if kind not in _ROW_FILTER_KINDS:
                return self._denied(
                    verdict, f"a row filter applies, and a {kind} cannot be filtered — denied"
                )
            sources = attributes.get("relation_sources")
            done = rewrite(
                raw, dict(verdict.row_filter), sources if isinstance(sources, dict) else None
            )
            if done.denied:
                return self._denied(verdict, f"row filter: {done.denied}")
            if done.sql:
                rewritten, shape = done.sql, done.shape
                facts["rewritten"] = done.sql
                facts["row_filtered_tables"] = list(done.tables)
        egress_left = None
        stricter = verdict
        unknown = ""
        if not approved and (verdict.budget is not None or verdict.breaker is not None):
            unknown = self.unsynced()
        if verdict.budget is not None:
            usage = self.egress.usage(subject, connection, session.id)
            facts["egress_used"] = usage.to_dict()
            key = (subject, connection)
            if usage.near(verdict.budget):
                self.egress.near.add(key)
            elif self.egress.near:
                self.egress.near.discard(key)
            over = "" if approved else usage.over(verdict.budget)
            why = f"egress budget exceeded: {over}" if over else ""
            if unknown and not over:
                why = (
                    "egress budget cannot be checked: the usage other PDPs recorded is "
                    f"unknown ({unknown})"
                )
            if why:
                stricter = self._held(stricter, why, verdict.budget.over == "deny")
                if stricter.kind is VerdictKind.DENY:
                    return Guarded(stricter, facts=facts)
            egress_left = usage.left(verdict.budget)
        if not tripped and unknown and verdict.breaker is not None:
            tripped = f"the pauses other PDPs recorded are unknown ({unknown})"
        if tripped:
            facts["breaker"] = tripped
            stricter = self._held(stricter, f"runaway-loop breaker: {tripped}", False)
        return Guarded(stricter, rewritten, egress_left, facts or None, shape)

    def _denied(self, verdict: Verdict, reason: str) -> Guarded:
        return Guarded(Verdict.deny(reason), facts={"guard_denied": reason})

    def _held(self, verdict: Verdict, reason: str, deny: bool) -> Verdict:
        """The verdict needing approval (or denied) for reason; a stricter one stays."""
        if deny:
            return Verdict.deny(reason)
        if verdict.kind is VerdictKind.REQUIRE_APPROVAL:
            return Verdict(
                verdict.kind,
                (*verdict.reasons, reason),
                verdict.mask,
                verdict.approval,
                row_filter=verdict.row_filter,
                budget=verdict.budget,
                breaker=verdict.breaker,
            )
        return Verdict(
            VerdictKind.REQUIRE_APPROVAL,
            (reason,),
            verdict.mask,
            self.approval,
            row_filter=verdict.row_filter,
            budget=verdict.budget,
            breaker=verdict.breaker,
        )
