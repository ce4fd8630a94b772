"""Deciding: evaluate the policy, map the result to a Verdict, log it, then answer.

Owns the decision path every answer takes, so no verdict leaves the PDP unrecorded: the
decision record is durably in the audit store before `decide` returns, and when the
store cannot take it the verdict becomes a deny. Engine trouble of any kind is a deny
with the reason; nothing here can produce an allow by accident.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pdp.engine import EngineError, PolicyEngine
from pdp.store import AuditStore, StoreUnavailable
from pdp.verdict import Verdict, verdict_from_result

log = logging.getLogger("portcullis.decisions")


@dataclass(frozen=True)
class Decision:
    id: str
    verdict: Verdict
    policy_revision: str
    evaluation_ms: float
    recorded: bool


@dataclass
class DecisionStats:
    """Counters for /metrics."""

    total: int = 0
    by_verdict: dict[str, int] | None = None
    engine_errors: int = 0
    store_errors: int = 0
    evaluation_ms_sum: float = 0.0

    def count(self, decision: Decision) -> None:
        if self.by_verdict is None:
            self.by_verdict = {}
        self.total += 1
        name = decision.verdict.kind.wire
        self.by_verdict[name] = self.by_verdict.get(name, 0) + 1
        self.evaluation_ms_sum += decision.evaluation_ms


class Decider:
    def __init__(self, engine: PolicyEngine, store: AuditStore) -> None:
        self.engine = engine
        self.store = store
        self.stats = DecisionStats()

    async def decide(self, policy_input: dict[str, Any], record: dict[str, Any]) -> Decision:
        """Evaluate policy_input and log a decision record (`record` adds who/what/where)."""
        decision_id = "d-" + uuid.uuid4().hex
        started = time.perf_counter()
        revision = self.engine.revision
        try:
            result = await self.engine.evaluate(policy_input)
            revision = result.revision or revision
            verdict = verdict_from_result(result.result)
        except EngineError as exc:
            self.stats.engine_errors += 1
            verdict = Verdict.deny(f"policy engine error: {exc} — denied")
        elapsed = (time.perf_counter() - started) * 1000
        command = policy_input.get("command", {})
        body = {
            **record,
            "decision_id": decision_id,
            "kind": command.get("kind", ""),
            "raw": command.get("raw", ""),
            **verdict.to_dict(),
            "policy_revision": revision,
            "evaluation_ms": round(elapsed, 3),
        }
        if "postgres" in command:
            body["statements"] = command["postgres"].get("statements", [])
        recorded = await self._record(decision_id, record, body)
        if not recorded:
            verdict = Verdict.deny("decision log unavailable, so nothing can be allowed — denied")
        decision = Decision(decision_id, verdict, revision, elapsed, recorded)
        self.stats.count(decision)
        return decision

    async def _record(self, decision_id: str, record: dict[str, Any], body: dict[str, Any]) -> bool:
        kind = "session.open" if body["kind"] == "session.open" else "decision"
        try:
            await self.store.append(
                kind,
                body,
                id=decision_id,
                session_id=record.get("session_id", ""),
                subject=record.get("subject", ""),
            )
        except StoreUnavailable as exc:
            self.stats.store_errors += 1
            log.error("decision %s not recorded (%s); answering deny", decision_id, exc)
            return False
        return True
