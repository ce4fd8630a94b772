"""Replaying recorded decisions against another policy: what `policy diff` reports.

Owns rebuilding a decision's policy input from the audit store's records (the session
from its session.open record, the command from the decision record's kind, raw text and
attributes, `now` from the record's time), evaluating it with a candidate policy, and
comparing the candidate's verdict with the recorded one. Nothing here writes to the
store, and nothing is enforced: the candidate runs in this process's own evaluator.

What cannot be replayed exactly is counted apart, never guessed at: a command refused
before evaluation (too large), a decision whose session.open record is not in the
store. Two inputs are approximations, and the report says so: a session.open decision
sees `open_sessions` as 0 (the PDP's live count is not recorded), and a decision made
after an approval sees `approval.state: approved` without the approver.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pdp.domain.policy_input import build_input, command_input
from pdp.domain.sessions import Session
from pdp.engine.bundle import PolicyBundle
from pdp.engine.opa import evaluate as opa_evaluate
from pdp.engine.opa import new_engine
from pdp.store import AuditRecord
from portcullis.verdict import Verdict, verdict_from_result

EXAMPLES_PER_CHANGE = 3


@dataclass(frozen=True)
class Change:
    decision_id: str
    subject: str
    connection: str
    kind: str
    raw: str
    before: str  # recorded verdict (and masks)
    after: str
    rule: str  # the reason that names the rule that made the difference


@dataclass
class DiffReport:
    candidate_revision: str
    replayed: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    recorded_revisions: Counter[str] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)

    def by_rule(self) -> list[tuple[tuple[str, str, str], list[Change]]]:
        """Changes grouped by (before, after, rule), largest group first."""
        groups: dict[tuple[str, str, str], list[Change]] = {}
        for change in self.changes:
            groups.setdefault((change.before, change.after, change.rule), []).append(change)
        return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate_revision": self.candidate_revision,
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "changed": len(self.changes),
            "skipped": dict(self.skipped),
            "recorded_revisions": dict(self.recorded_revisions),
            "by_rule": [
                {
                    "before": before,
                    "after": after,
                    "change": label(before, after),
                    "rule": rule,
                    "count": len(changes),
                    "examples": [
                        {
                            "decision_id": c.decision_id,
                            "subject": c.subject,
                            "connection": c.connection,
                            "kind": c.kind,
                            "raw": c.raw[:500],
                        }
                        for c in changes[:EXAMPLES_PER_CHANGE]
                    ],
                }
                for (before, after, rule), changes in self.by_rule()
            ],
        }


def outcome(verdict: Verdict | dict[str, Any]) -> str:
    """A verdict as compared: its kind, and the mask rules when it masks."""
    fields = verdict.to_dict() if isinstance(verdict, Verdict) else verdict
    kind = str(fields.get("verdict", "deny"))
    masks = fields.get("mask") or []
    if kind != "mask" or not masks:
        return kind
    rules = sorted(json.dumps(m, sort_keys=True, separators=(",", ":")) for m in masks)
    return f"mask {', '.join(rules)}"


def label(before: str, after: str) -> str:
    """`before -> after` for people: mask rules named only where they differ."""
    kind_before, kind_after = before.split(" ")[0], after.split(" ")[0]
    if kind_before == kind_after == "mask":
        old = set(before[5:].split(", "))
        new = set(after[5:].split(", "))
        gone = ", ".join(sorted(old - new)) or "none"
        added = ", ".join(sorted(new - old)) or "none"
        return f"mask -> mask (no longer: {gone}; now also: {added})"
    return f"{kind_before} -> {kind_after}"


def _rule(before: dict[str, Any], after: Verdict) -> str:
    """The reason naming the rule behind a change: the candidate's first reason, else
    (it allows silently) the recorded one's."""
    reasons = list(after.reasons) or list(before.get("reasons") or [])
    return str(reasons[0]) if reasons else "(no reason given)"


class Replayer:
    """Evaluates recorded decisions with a candidate policy (in this process)."""

    def __init__(self, bundle: PolicyBundle) -> None:
        self.bundle = bundle
        self.engine = new_engine(bundle)

    def close(self) -> None:
        self.engine.close()

    def verdict(self, policy_input: dict[str, Any]) -> Verdict:
        try:
            return verdict_from_result(opa_evaluate(self.engine, policy_input))
        except Exception as exc:  # an evaluation error is what the PDP denies, likewise
            return Verdict.deny(f"policy engine error: {exc} — denied")

    def diff(
        self, decisions: Iterable[AuditRecord], sessions: dict[str, dict[str, Any]]
    ) -> DiffReport:
        """decisions: the decision and session.open records to replay; sessions: each
        session's session.open body by session id."""
        report = DiffReport(self.bundle.revision)
        for record in decisions:
            policy_input = self._input(record, sessions, report)
            if policy_input is None:
                continue
            body = record.body
            report.replayed += 1
            report.recorded_revisions[str(body.get("policy_revision", ""))] += 1
            after = self.verdict(policy_input)
            if outcome(after) == outcome(body):
                report.unchanged += 1
                continue
            report.changes.append(
                Change(
                    decision_id=record.id,
                    subject=record.subject,
                    connection=str(body.get("connection", "")),
                    kind=str(body.get("kind", "")),
                    raw=str(body.get("raw", "")),
                    before=outcome(body),
                    after=outcome(after),
                    rule=_rule(body, after),
                )
            )
        return report

    @staticmethod
    def _input(
        record: AuditRecord, sessions: dict[str, dict[str, Any]], report: DiffReport
    ) -> dict[str, Any] | None:
        body = record.body
        if body.get("raw_truncated"):
            # recorded in part: a command refused for its size, or one decided whole whose
            # protocol records only its start (Protocol.recorded_raw)
            why = "decided whole, recorded in part" if body.get("raw_decided_whole") else ""
            report.skipped[why or "refused before evaluation (too large)"] += 1
            return None
        opened = sessions.get(record.session_id)
        if opened is None or not isinstance(opened.get("session"), dict):
            report.skipped["session.open record not found"] += 1
            return None
        session = Session.from_record(record.session_id, opened["session"])
        kind = str(body.get("kind", ""))
        if kind == "session.open":
            policy_input = build_input(session, {"kind": kind, "raw": ""}, now=record.time)
            policy_input["session"]["open_sessions"] = 0
            return policy_input
        attributes = body.get("attributes") if isinstance(body.get("attributes"), dict) else {}
        approval = None
        if body.get("approval_id"):
            approval = {"id": body["approval_id"], "state": "approved"}
        command = command_input(kind, str(body.get("raw", "")), attributes or {})
        return build_input(session, command, approval, now=record.time)
