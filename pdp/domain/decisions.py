"""Deciding: evaluate the policy, map the result to a Verdict, log it, then answer.

Owns the decision path every answer takes, so no verdict leaves the PDP unrecorded: the
decision record is durably in the audit store before `decide` returns, and when the
store cannot take it the verdict becomes a deny. Engine trouble of any kind is a deny
with the reason; nothing here can produce an allow by accident.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pdp.engine import EngineError, PolicyEngine
from pdp.plumbing.frozen import quick_init
from pdp.store import AuditStore, Beside, StoreUnavailable
from pdp.store.chain import canonical_json
from portcullis import protocols
from portcullis.events import longer_than
from portcullis.literals import ShapeRewrite
from portcullis.reuse import ReuseTable
from portcullis.shape import shaped
from portcullis.verdict import Verdict, VerdictKind, verdict_from_result

log = logging.getLogger("portcullis.decisions")


EVALUATION_REUSE_ENTRIES = 65536

# rego/portcullis/standing.rego: what the policy concludes from the identity and the
# connection alone, evaluated once per session and policy revision and passed back with
# each of the session's commands as input.standing (issue 27: a third of a reader's
# evaluation was working it out again on every statement)
STANDING_PATH = "portcullis.standing"
STANDING_ENTRIES = 65536
# what a session's entry holds after its first evaluated command: no revision is this
_FIRST_COMMAND = "\0first command"
# the verdicts of the evaluator's answers, by the answer's bytes: a session's statements,
# and other sessions of the same groups, get the same few answers again and again
VERDICT_ENTRIES = 4096
# the canonical JSON of the statements of the texts decided last (their record's largest
# part after the attributes), kept with the lists they were made of
STATEMENT_TEXTS = 512
STATEMENT_TEXT_BYTES = 8192


# the random part of decision ids, drawn from os.urandom for RANDOM_IDS ids at once (one
# getrandom call per id was one system call per decision); a forked child draws afresh
RANDOM_IDS = 256
_random_hex: list[str] = []


def _forget_random_ids() -> None:
    _random_hex.clear()


os.register_at_fork(after_in_child=_forget_random_ids)


def new_decision_id() -> str:
    """ "d-" and 32 hex digits: the time in milliseconds (12), then 80 random bits.

    Ids that follow each other in time: the decision log's id index grows at its end
    instead of taking a random page for every record (a page read and written per commit
    once the index outgrows the cache). Each id's 80 bits are its own (os.urandom,
    drawn ahead for RANDOM_IDS ids), never shared with another id."""
    if not _random_hex:
        drawn = os.urandom(10 * RANDOM_IDS).hex()
        _random_hex.extend(drawn[i : i + 20] for i in range(0, len(drawn), 20))
    return f"d-{time.time_ns() // 1_000_000:012x}{_random_hex.pop()}"


@quick_init
@dataclass(frozen=True)
class Reusable:
    """Where a decision may reuse an earlier evaluation: its session, command and text;
    `key` is portcullis.reuse.reuse_key() of the command's kind and attributes."""

    session_id: str
    kind: str
    raw: str
    key: str


PolicyInput = dict[str, Any] | Callable[[], dict[str, Any]]


@quick_init
@dataclass(frozen=True)
class _Evaluated:
    """An evaluation filed for reuse, with its verdict's record fields made once: they
    live as long as the entry (dropped when its session closes), not in a cache of
    every verdict the PDP ever answered."""

    verdict: Verdict
    decision_id: str
    fields: dict[str, Any]  # verdict.to_dict(); callers copy, never change it
    texts: Mapping[str, str]  # _field_texts(fields): never changed either


@quick_init
@dataclass(frozen=True)
class Decision:
    id: str
    verdict: Verdict
    policy_revision: str
    evaluation_ms: float
    recorded: bool
    # what the guards (pdp.domain.guards) added to the answer: the text to run in place of
    # the client's (row filters), the egress the session may still take (budgets)
    rewritten: str = ""
    egress_left: tuple[int, int] | None = None
    shape: ShapeRewrite | None = None


@quick_init
@dataclass(frozen=True)
class Guarded:
    """A guard's answer: the verdict to give (the policy's, or a stricter one), the text
    to run instead of the client's, the egress left, and facts for the decision record."""

    verdict: Verdict
    rewritten: str = ""
    egress_left: tuple[int, int] | None = None
    facts: dict[str, Any] | None = None
    shape: ShapeRewrite | None = None  # the rewrite of the statement's shape


# applied to the policy's verdict (evaluated or reused) before it is recorded and answered
Guard = Callable[[Verdict], Guarded]


@dataclass
class DecisionStats:
    """Counters for /metrics."""

    total: int = 0
    by_verdict: dict[str, int] | None = None
    engine_errors: int = 0
    store_errors: int = 0
    evaluation_ms_sum: float = 0.0
    evaluations_reused: int = 0
    # evaluation latency as a Prometheus histogram: counts per upper bound (seconds),
    # not cumulative here; /metrics adds them up
    evaluation_buckets: list[int] | None = None
    # why the audit store refused the last decision record ("" once one is stored again):
    # while set, every decision is a deny, and /readyz says not ready
    store_refusing: str = ""

    def count(self, decision: Decision) -> None:
        if self.by_verdict is None:
            self.by_verdict = {}
        if self.evaluation_buckets is None:
            self.evaluation_buckets = [0] * (len(EVALUATION_BUCKETS) + 1)
        self.total += 1
        name = decision.verdict.kind.wire
        self.by_verdict[name] = self.by_verdict.get(name, 0) + 1
        self.evaluation_ms_sum += decision.evaluation_ms
        self.evaluation_buckets[
            bisect.bisect_left(EVALUATION_BUCKETS, decision.evaluation_ms / 1000)
        ] += 1


# upper bounds of the evaluation latency histogram, in seconds (then +Inf)
EVALUATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Decider:
    def __init__(
        self, engine: PolicyEngine, store: AuditStore, reuse_evaluations: bool = True
    ) -> None:
        self.engine = engine
        self.store = store
        self.stats = DecisionStats()
        self.evaluations: ReuseTable[_Evaluated] | None = (
            ReuseTable(EVALUATION_REUSE_ENTRIES)
            if reuse_evaluations and getattr(engine, "knows_revision", False)
            else None
        )
        # session id -> (policy revision, its standing or None when the policy has none);
        # only for an engine that knows its revision, so a reload is noticed
        self.standings: dict[str, tuple[str, dict[str, Any] | None]] | None = (
            {} if getattr(engine, "knows_revision", False) else None
        )
        self._verdicts: dict[bytes, tuple[Verdict, dict[str, Any], Mapping[str, str]]] = {}
        # id(statements) -> (those statements, their canonical JSON): _statements_json
        self._statement_texts: dict[int, tuple[list[Any], str]] = {}

    async def decide(
        self,
        policy_input: PolicyInput,
        record: dict[str, Any],
        reusable: Reusable | None = None,
        guard: Guard | None = None,
        standing_of: str = "",
        encoded: Mapping[str, tuple[Any, str]] | None = None,
        before: Sequence[Beside] = (),
    ) -> Decision:
        """Evaluate policy_input and log a decision record (`record` adds who/what/where).

        With `reusable`, an earlier evaluation the policy declared reusable (its
        cache_ttl_seconds and cache_key) answers instead of the engine; the decision still
        gets its own id and record, which names the decision it reused. policy_input may
        be a function that builds it, called only when the engine is asked. With
        `standing_of` (a session id), the session's standing goes into the input evaluated
        (standing.rego), worked out on the session's first evaluation under a revision.
        `encoded` names values of `record` whose canonical JSON the caller made once:
        {key: (the value, its canonical JSON)}, spliced into the record's bytes while the
        record holds that very value under the key (pdp.store.chain.canonical_json_with).
        `before`: records committed with the decision's, in its transaction, or not at all
        (a session's claims: the store refusing them is the decision unrecorded, a deny)."""
        decision_id = new_decision_id()
        started = time.perf_counter()
        revision = self.engine.revision
        reused = self._reused(reusable, revision)
        command: dict[str, Any]
        fields: dict[str, Any] | None = None
        field_texts: Mapping[str, str] = _NO_TEXTS
        if reused is not None:
            assert reusable is not None
            verdict, fields, field_texts = reused.verdict, reused.fields, reused.texts
            command = {"kind": reusable.kind, "raw": reusable.raw}
            self.stats.evaluations_reused += 1
        else:
            built = policy_input() if callable(policy_input) else policy_input
            command = built.get("command", {})
            try:
                result = await self._evaluate(built, standing_of)
                revision = result.revision or revision
                verdict, fields, field_texts = self._verdict_of(result)
                self._remember(
                    reusable, _Evaluated(verdict, decision_id, fields, field_texts), revision
                )
            except EngineError as exc:
                self.stats.engine_errors += 1
                if self.evaluations is not None:  # trouble: evaluate afresh from here on
                    self.evaluations.clear()
                verdict = Verdict.deny(f"policy engine error: {exc} — denied")
        guarded = None
        if guard is not None:
            guarded = guard(verdict)
            if guarded.verdict is not verdict:
                verdict, fields = guarded.verdict, guarded.verdict.to_dict()
                field_texts = _NO_TEXTS
        elapsed = (time.perf_counter() - started) * 1000
        body = {
            **record,
            "decision_id": decision_id,
            "kind": command.get("kind", ""),
            "raw": command.get("raw", ""),
            **(fields if fields is not None else verdict.to_dict()),
            "policy_revision": revision,
            "evaluation_ms": round(elapsed, 3),
        }
        if reused is not None:
            body["evaluation_reused_from"] = reused.decision_id
        body.update(raw_in_part(body["kind"], body["raw"]))
        statements = _statements_of(command)
        if statements is not None:
            body["statements"] = statements
        if guarded is not None and guarded.facts:
            body.update(guarded.facts)
        texts = {k: text for k, (value, text) in (encoded or {}).items() if body.get(k) is value}
        if field_texts:
            assert fields is not None
            for key, text in field_texts.items():
                if body.get(key) is fields[key]:  # not replaced by a guard's fact
                    texts[key] = text
        if statements is not None and body["statements"] is statements:
            with contextlib.suppress(TypeError, ValueError):  # the store says why
                texts["statements"] = self._statements_json(statements)
        recorded = await self._record(decision_id, record, body, texts, before)
        if not recorded:
            verdict = Verdict.deny("decision log unavailable, so nothing can be allowed — denied")
            guarded = None
        if guarded is not None and verdict.kind is not VerdictKind.DENY:
            decision = Decision(
                decision_id,
                verdict,
                revision,
                elapsed,
                recorded,
                guarded.rewritten,
                guarded.egress_left,
                guarded.shape,
            )
        else:
            decision = Decision(decision_id, verdict, revision, elapsed, recorded)
        self.stats.count(decision)
        return decision

    async def refuse(
        self, record: dict[str, Any], kind: str, raw: str, reason: str, **facts: Any
    ) -> Decision:
        """A deny decided without asking the policy (a command too large to evaluate),
        recorded like any decision, with `facts` (what is known of the command)."""
        decision_id = new_decision_id()
        verdict = Verdict.deny(reason)
        revision = self.engine.revision
        body = {
            **record,
            "decision_id": decision_id,
            "kind": kind,
            "raw": raw,
            **verdict.to_dict(),
            "policy_revision": revision,
            "evaluation_ms": 0.0,
            **facts,
        }
        recorded = await self._record(decision_id, record, body)
        decision = Decision(decision_id, verdict, revision, 0.0, recorded)
        self.stats.count(decision)
        return decision

    def forget_session(self, session_id: str) -> int:
        """Drop the evaluations filed for reuse under a session that closed, and its
        standing: no decision can ask for them again, and they would otherwise stay until
        the table is full (returns how many evaluations were dropped)."""
        if self.standings is not None:
            self.standings.pop(session_id, None)
        if self.evaluations is None:
            return 0
        return self.evaluations.forget(session_id)

    def _verdict_of(self, result: Any) -> tuple[Verdict, dict[str, Any], Mapping[str, str]]:
        """The verdict of an evaluator's answer, its record fields and the canonical JSON
        of the largest of them, made once per distinct answer (by its bytes, when the
        engine gives them; the verdict is frozen and the fields are only ever copied, so
        one triple serves every decision)."""
        raw = getattr(result, "raw", b"")
        known = self._verdicts.get(raw) if raw else None
        if known is not None:
            return known
        verdict = verdict_from_result(result.result)
        fields = verdict.to_dict()
        made = (verdict, fields, _field_texts(fields))
        if raw:
            if len(self._verdicts) >= VERDICT_ENTRIES:
                self._verdicts.clear()
            self._verdicts[raw] = made
        return made

    async def _evaluate(self, built: dict[str, Any], standing_of: str) -> Any:
        """The decision for `built`, with the session's standing when there is one for the
        policy revision that answers; the input `built` itself is never changed."""
        held = await self._standing(standing_of, built) if standing_of else None
        if held is None:
            return await self.engine.evaluate(built)
        revision, standing = held
        result = await self.engine.evaluate({**built, "standing": standing})
        if result.revision and result.revision != revision:
            # the policy was reloaded between the standing and this evaluation: the new
            # policy works it out itself (and the next command gets the new one)
            result = await self.engine.evaluate(built)
        return result

    async def _standing(
        self, session_id: str, built: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """(revision, standing) of a session under the engine's policy: evaluated on the
        session's second evaluated command (and the first after a reload) and kept. None
        for the session's first (a session of one command, `psql -c` or a lone HTTP
        request, would pay for an evaluation it never uses), when the engine cannot tell a
        reload, the policy has no standing document, the input already holds one (the
        engine decides on what it was given), or the evaluation failed: the policy then
        works it out in the decision itself."""
        if self.standings is None or "standing" in built:
            return None
        revision = self.engine.revision
        held = self.standings.get(session_id)
        if held is None:
            self._keep_standing(session_id, (_FIRST_COMMAND, None))
            return None
        if held[0] != revision:
            about: dict[str, Any] = {
                k: built[k] for k in ("identity", "connection", "session") if k in built
            }
            try:
                result = await self.engine.evaluate(about, STANDING_PATH)
            except EngineError:
                return None
            standing = result.result if isinstance(result.result, dict) else None
            held = (result.revision or revision, standing)
            self._keep_standing(session_id, held)
        if held[1] is None:
            return None
        return held[0], held[1]

    def _keep_standing(self, session_id: str, held: tuple[str, dict[str, Any] | None]) -> None:
        assert self.standings is not None
        if len(self.standings) >= STANDING_ENTRIES and session_id not in self.standings:
            self.standings.clear()  # sessions that never closed: start again
        self.standings[session_id] = held

    def _reused(self, reusable: Reusable | None, revision: str) -> _Evaluated | None:
        if reusable is None or self.evaluations is None:
            return None
        return self.evaluations.lookup(
            reusable.session_id, reusable.key, reusable.raw, revision, shaped
        )

    def _remember(self, reusable: Reusable | None, evaluated: _Evaluated, revision: str) -> None:
        if reusable is None or self.evaluations is None:
            return
        self.evaluations.store(
            reusable.session_id,
            reusable.key,
            reusable.raw,
            evaluated.verdict,
            revision,
            evaluated,
            shaped,
        )

    def _statements_json(self, statements: list[Any]) -> str:
        """The canonical JSON of a command's statements, made once per list: the PDP
        remembers a text's classification (pdp.domain.policy_input), so a statement that
        comes again brings the very list it had (kept here with its text, so its id
        names it while the entry lives; the lists are never changed once made)."""
        held = self._statement_texts.get(id(statements))
        if held is not None and held[0] is statements:
            return held[1]
        text = canonical_json(statements)  # what cannot be encoded, the store refuses
        if len(text) <= STATEMENT_TEXT_BYTES:  # a long text's lists are made afresh anyway
            if len(self._statement_texts) >= STATEMENT_TEXTS:
                self._statement_texts.clear()
            self._statement_texts[id(statements)] = (statements, text)
        return text

    async def _record(
        self,
        decision_id: str,
        record: dict[str, Any],
        body: dict[str, Any],
        encoded: Mapping[str, str] | None = None,
        before: Sequence[Beside] = (),
    ) -> bool:
        kind = "session.open" if body["kind"] == "session.open" else "decision"
        try:
            await self.store.append(
                kind,
                body,
                id=decision_id,
                session_id=record.get("session_id", ""),
                subject=record.get("subject", ""),
                plain=True,  # the returned record is not read: skip decoding a copy of body
                encoded=encoded or None,
                before=before,
            )
        except StoreUnavailable as exc:
            self.stats.store_errors += 1
            self.stats.store_refusing = str(exc) or "the audit store is unavailable"
            log.error("decision %s not recorded (%s); answering deny", decision_id, exc)
            return False
        if self.stats.store_refusing:
            self.stats.store_refusing = ""
        return True


_NO_TEXTS: Mapping[str, str] = {}


def _field_texts(fields: dict[str, Any]) -> Mapping[str, str]:
    """{key: canonical JSON} of a verdict's record fields, made once per verdict and
    written into each of its records as they are (pdp.store.chain.canonical_json_with
    writes a record member by member: a field given as text costs it a lookup). A value
    that cannot be encoded is left to the store, which refuses it as it would without."""
    texts: dict[str, str] = {}
    for key, value in fields.items():
        with contextlib.suppress(TypeError, ValueError, RecursionError):
            texts[key] = canonical_json(value)
    return texts or _NO_TEXTS


def _statements_of(command: dict[str, Any]) -> list[Any] | None:
    """The statements the PDP found in a command (its protocol's details say, as a
    Postgres statement's do), recorded beside the decision; None for a command without."""
    details = command.get(str(command.get("kind", "")).partition(".")[0])
    statements = details.get("statements") if isinstance(details, dict) else None
    return statements if isinstance(statements, list) else None


def raw_in_part(kind: str, raw: Any) -> dict[str, Any]:
    """What a decision record keeps of a command text longer than its protocol records
    (Protocol.recorded_raw), decided whole: its first bytes, that it is cut, its size and
    the SHA-256 of the whole (as a command refused for its size is recorded), and that the
    decision read it whole; {} for a text kept whole."""
    limit = protocols.recorded_raw_of(kind)
    whole = longer_than(raw, limit) if limit is not None and isinstance(raw, str) else None
    if whole is None:
        return {}
    return {
        "raw": whole[:limit].decode("utf-8", "ignore"),
        "raw_truncated": True,
        "raw_bytes": len(whole),
        "raw_sha256": hashlib.sha256(whole).hexdigest(),
        "raw_decided_whole": True,
    }
