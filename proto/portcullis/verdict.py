"""The one place that turns a raw policy result into a Verdict.

Owns the verdict vocabulary, its order of strictness (deny > require_approval > mask >
allow) and the fail-closed rule: an undefined, malformed or unknown result is a deny
whose reason says why. Nothing else in Portcullis interprets policy output.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

MASK_STRATEGIES = ("redact", "hash", "partial")
MAX_REASONS = 32
MAX_REASON_LENGTH = 1024
MAX_SETTING_VALUE = 256
# a server setting's name as the proxy may put it in a start-up packet (`ext.name` allowed)
_SETTING_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")


class VerdictKind(enum.IntEnum):
    """Ordered by strictness: a higher value wins when verdicts combine."""

    ALLOW = 1
    MASK = 2
    REQUIRE_APPROVAL = 3
    DENY = 4

    @property
    def wire(self) -> str:
        return _WIRE[self]  # spelt once: every recorded command asks


_WIRE: tuple[str, ...] = ("", *(k.name.lower() for k in VerdictKind))


@dataclass(frozen=True)
class MaskRule:
    """One redaction: of a named field, of what a value detector finds, or (`derived`) of
    every result column that is not a table's column as it is stored — the expressions,
    aggregates and function outputs of a statement whose lineage reaches a protected
    column (the classifier says which; the result cannot tell them apart by name).

    A derived rule with `outputs` (> 0) masks only the computed columns at `positions`
    (0-based) of a result of exactly that many columns: the policy names the outputs it
    judged masked, in the statement's order. A result of another width (a `*` expanded,
    a statement the rule was not decided for), or a rule without them, has every computed
    column masked."""

    field: str = ""
    detector: str = ""
    strategy: str = "redact"
    derived: bool = False
    positions: tuple[int, ...] = ()
    outputs: int = 0

    def to_dict(self) -> dict[str, Any]:
        if self.derived:
            if self.outputs:
                return {
                    "derived": True,
                    "strategy": self.strategy,
                    "positions": list(self.positions),
                    "outputs": self.outputs,
                }
            return {"derived": True, "strategy": self.strategy}
        key = "field" if self.field else "detector"
        return {key: self.field or self.detector, "strategy": self.strategy}


@dataclass(frozen=True)
class ApprovalSpec:
    approvers: tuple[str, ...] = ()
    ttl_seconds: int = 0


@dataclass(frozen=True)
class RowCondition:
    """One condition of a row filter: `column op value` over the filtered table's own
    column; op one of = <> != < <= > >= in (value a list for in)."""

    column: str
    op: str = "="
    value: Any = None  # str | int | float | bool, or a tuple of them for `in`

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"column": self.column, "op": self.op, "value": value}


@dataclass(frozen=True)
class EgressBudget:
    """What one identity may take out of one connection: rows and bytes returned per
    session and per hour (0: no limit), and what happens past them."""

    rows_per_session: int = 0
    bytes_per_session: int = 0
    rows_per_hour: int = 0
    bytes_per_hour: int = 0
    over: str = "require_approval"  # or deny

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_per_session": self.rows_per_session,
            "bytes_per_session": self.bytes_per_session,
            "rows_per_hour": self.rows_per_hour,
            "bytes_per_hour": self.bytes_per_hour,
            "over": self.over,
        }


@dataclass(frozen=True)
class BreakerLimits:
    """The runaway-loop breaker's thresholds for one identity (0: not checked), and how
    long its statements need approval once one is crossed."""

    statements_per_second: int = 0
    identical_per_minute: int = 0
    denials_per_minute: int = 0
    pause_seconds: int = 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "statements_per_second": self.statements_per_second,
            "identical_per_minute": self.identical_per_minute,
            "denials_per_minute": self.denials_per_minute,
            "pause_seconds": self.pause_seconds,
        }


RowFilter = tuple[tuple[str, tuple[RowCondition, ...]], ...]
_ROW_OPS = frozenset({"=", "<>", "!=", "<", "<=", ">", ">=", "in"})
MAX_ROW_FILTER_TABLES = 64


_RULE_LISTS: dict[tuple[MaskRule, ...], tuple[MaskRule, ...]] = {}


MAX_OUTPUTS = 1664  # a result's most columns (MaxTupleAttributeNumber)


def _positions(item: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """A derived rule's positions and output count (both or neither; positions below
    outputs, ascending, no repeats); ((), 0) when it names none."""
    if "positions" not in item and "outputs" not in item:
        return (), 0
    positions, outputs = item.get("positions"), item.get("outputs")
    if item.get("derived") is not True:
        raise MalformedResult("only a derived mask rule names positions")
    if (
        not isinstance(outputs, int)
        or isinstance(outputs, bool)
        or not 0 < outputs <= MAX_OUTPUTS
        or not isinstance(positions, list)
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in positions)
        or positions != sorted(set(positions))
        or (positions and not 0 <= positions[0] <= positions[-1] < outputs)
    ):
        raise MalformedResult(
            "a derived mask rule's positions are ascending distinct indexes below its outputs"
        )
    return tuple(positions), outputs


def _interned(rules: tuple[MaskRule, ...]) -> tuple[MaskRule, ...]:
    """One tuple per distinct list of mask rules for the process: the verdicts of every
    session of a group hold the same one, not a copy each (a bounded table)."""
    if not rules:
        return ()
    known = _RULE_LISTS.get(rules)
    if known is None:
        if len(_RULE_LISTS) >= 256:
            _RULE_LISTS.clear()
        known = _RULE_LISTS[rules] = rules
    return known


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reasons: tuple[str, ...] = ()
    mask: tuple[MaskRule, ...] = ()
    approval: ApprovalSpec | None = None
    credential_ref: str = ""
    cache_ttl_seconds: int = 0
    cache_key: str = "exact"  # exact | shape
    # session.open only: server settings the proxy pins upstream for the session
    session_settings: tuple[tuple[str, str], ...] = ()
    # postgres: per table, conditions every row read must meet (pdp/sql/rowfilter.py)
    row_filter: RowFilter = ()
    budget: EgressBudget | None = None
    breaker: BreakerLimits | None = None

    @classmethod
    def deny(cls, *reasons: str) -> Verdict:
        return cls(VerdictKind.DENY, tuple(reasons))

    @property
    def allowed(self) -> bool:
        return self.kind in (VerdictKind.ALLOW, VerdictKind.MASK)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verdict": self.kind.wire, "reasons": list(self.reasons)}
        if self.mask:
            out["mask"] = [m.to_dict() for m in self.mask]
        if self.approval:
            out["approval"] = {
                "approvers": list(self.approval.approvers),
                "ttl_seconds": self.approval.ttl_seconds,
            }
        if self.credential_ref:
            out["credential"] = {"ref": self.credential_ref}
        out["cache_ttl_seconds"] = self.cache_ttl_seconds
        out["cache_key"] = self.cache_key
        if self.session_settings:
            out["session_settings"] = dict(self.session_settings)
        if self.row_filter:
            out["row_filter"] = {t: [c.to_dict() for c in cs] for t, cs in self.row_filter}
        if self.budget is not None:
            out["budget"] = self.budget.to_dict()
        if self.breaker is not None:
            out["breaker"] = self.breaker.to_dict()
        return out


class MalformedResult(ValueError):
    """The policy answered something that is not a decision object."""


@dataclass
class _Parser:
    result: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def reasons(self) -> tuple[str, ...]:
        raw = self.result.get("reasons", [])
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
            raise MalformedResult("reasons must be a list of strings")
        return tuple(r[:MAX_REASON_LENGTH] for r in raw[:MAX_REASONS])

    def mask(self) -> tuple[MaskRule, ...]:
        raw = self.result.get("mask", [])
        if not isinstance(raw, list):
            raise MalformedResult("mask must be a list")
        rules = []
        for item in raw:
            if not isinstance(item, dict):
                raise MalformedResult("each mask rule must be an object")
            target_field, detector = item.get("field", ""), item.get("detector", "")
            derived = item.get("derived", False)
            strategy = item.get("strategy", "redact")
            if not isinstance(target_field, str) or not isinstance(detector, str):
                raise MalformedResult("mask field/detector must be strings")
            if not isinstance(derived, bool):
                raise MalformedResult("mask derived must be a boolean")
            if [bool(target_field), bool(detector), derived].count(True) != 1:
                raise MalformedResult("a mask rule names exactly one of field, detector or derived")
            if strategy not in MASK_STRATEGIES:
                raise MalformedResult(f"unknown mask strategy {strategy!r}")
            positions, outputs = _positions(item)
            rules.append(MaskRule(target_field, detector, strategy, derived, positions, outputs))
        return _interned(tuple(rules))

    def approval(self) -> ApprovalSpec | None:
        raw = self.result.get("approval")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise MalformedResult("approval must be an object")
        approvers = raw.get("approvers", [])
        ttl = raw.get("ttl_seconds", 0)
        if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
            raise MalformedResult("approval.approvers must be a list of strings")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise MalformedResult("approval.ttl_seconds must be a non-negative integer")
        return ApprovalSpec(tuple(approvers), ttl)

    def credential_ref(self) -> str:
        raw = self.result.get("credential")
        if raw is None:
            return ""
        if not isinstance(raw, dict) or not isinstance(raw.get("ref", ""), str):
            raise MalformedResult("credential must be an object with a string ref")
        return str(raw.get("ref", ""))

    def cache(self) -> tuple[int, str]:
        ttl = self.result.get("cache_ttl_seconds", 0)
        key = self.result.get("cache_key", "exact")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise MalformedResult("cache_ttl_seconds must be a non-negative integer")
        if key not in ("exact", "shape"):
            raise MalformedResult(f"unknown cache_key {key!r}")
        return ttl, key

    def session_settings(self) -> tuple[tuple[str, str], ...]:
        raw = self.result.get("session_settings", {})
        if not isinstance(raw, dict):
            raise MalformedResult("session_settings must be an object")
        settings = []
        for name, value in sorted(raw.items()):
            if isinstance(value, bool):
                value = "on" if value else "off"
            elif isinstance(value, int):
                value = str(value)
            if not isinstance(value, str) or not _SETTING_NAME.fullmatch(name):
                raise MalformedResult(
                    f"session_settings.{str(name)[:64]} must be a setting name with a string value"
                )
            if "\x00" in value or len(value) > MAX_SETTING_VALUE:
                raise MalformedResult(f"session_settings.{name} has an unusable value")
            settings.append((name, value))
        return tuple(settings)

    def row_filter(self) -> RowFilter:
        raw = self.result.get("row_filter", {})
        if not isinstance(raw, dict) or len(raw) > MAX_ROW_FILTER_TABLES:
            raise MalformedResult("row_filter must be an object of tables")
        tables = []
        for table, conditions in sorted(raw.items()):
            if not isinstance(table, str) or not table or not isinstance(conditions, list):
                raise MalformedResult("row_filter maps a table name to a list of conditions")
            if not conditions:
                raise MalformedResult(f"row_filter.{table[:64]} has no conditions")
            tables.append((table, tuple(_row_condition(table, c) for c in conditions)))
        return tuple(tables)

    def budget(self) -> EgressBudget | None:
        raw = self.result.get("budget")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise MalformedResult("budget must be an object")
        limits = {}
        for name in ("rows_per_session", "bytes_per_session", "rows_per_hour", "bytes_per_hour"):
            limits[name] = _count(raw, name, "budget")
        over = raw.get("over", "require_approval")
        if over not in ("require_approval", "deny"):
            raise MalformedResult("budget.over must be require_approval or deny")
        return EgressBudget(over=over, **limits)

    def breaker(self) -> BreakerLimits | None:
        raw = self.result.get("breaker")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise MalformedResult("breaker must be an object")
        return BreakerLimits(
            _count(raw, "statements_per_second", "breaker"),
            _count(raw, "identical_per_minute", "breaker"),
            _count(raw, "denials_per_minute", "breaker"),
            _count(raw, "pause_seconds", "breaker", 300),
        )


def _count(raw: dict[str, Any], name: str, where: str, default: int = 0) -> int:
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedResult(f"{where}.{name} must be a non-negative integer")
    return value


def _row_value(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _row_condition(table: str, raw: Any) -> RowCondition:
    if not isinstance(raw, dict):
        raise MalformedResult(f"row_filter.{table[:64]}: each condition must be an object")
    column, op, value = raw.get("column"), raw.get("op", "="), raw.get("value")
    if not isinstance(column, str) or not column or op not in _ROW_OPS:
        raise MalformedResult(f"row_filter.{table[:64]}: a condition needs a column and a known op")
    if op == "in":
        if not isinstance(value, list) or not all(_row_value(v) for v in value):
            raise MalformedResult(f"row_filter.{table[:64]}: op in takes a list of values")
        return RowCondition(column, op, tuple(value))
    if not _row_value(value):
        # an undefined or null value (a missing claim) never becomes "no filter"
        raise MalformedResult(f"row_filter.{table[:64]}.{column[:64]} has no usable value")
    return RowCondition(column, op, value)


def verdict_from_result(result: Any) -> Verdict:
    """Map `data.portcullis.decision` to a Verdict; anything doubtful becomes a deny."""
    if result is None:
        return Verdict.deny("policy result is undefined (no decision) — denied")
    if not isinstance(result, dict):
        return Verdict.deny(f"policy result is a {type(result).__name__}, not an object — denied")
    name = result.get("verdict")
    try:
        kind = VerdictKind[name.upper()] if isinstance(name, str) else None
    except KeyError:
        kind = None
    if kind is None:
        return Verdict.deny(f"policy returned unknown verdict {name!r} — denied")
    parser = _Parser(result)
    try:
        reasons = parser.reasons()
        mask = parser.mask()
        approval = parser.approval()
        credential_ref = parser.credential_ref()
        cache_ttl, cache_key = parser.cache()
        session_settings = parser.session_settings()
        row_filter = parser.row_filter()
        budget = parser.budget()
        breaker = parser.breaker()
    except MalformedResult as exc:
        return Verdict.deny(f"policy result is malformed: {exc} — denied")
    if kind is VerdictKind.MASK and not mask:
        return Verdict.deny("policy answered mask without mask rules — denied")
    if kind is VerdictKind.REQUIRE_APPROVAL and (approval is None or not approval.approvers):
        return Verdict.deny("policy answered require_approval without approvers — denied")
    if kind is VerdictKind.DENY:
        # a deny is never cached and carries nothing but its reasons
        return Verdict(kind, reasons or ("denied by policy",))
    return Verdict(
        kind,
        reasons,
        mask,
        approval,
        credential_ref,
        cache_ttl,
        cache_key,
        session_settings,
        row_filter,
        budget,
        breaker,
    )


def strictest(verdicts: list[Verdict]) -> Verdict:
    """Combine verdicts (e.g. of several statements): deny > require_approval > mask > allow.

    Reasons of every verdict of the winning kind are kept; mask rules of all masks join.
    An empty list is a deny: there is nothing that allowed anything.
    """
    if not verdicts:
        return Verdict.deny("nothing to decide — denied")
    top = max(v.kind for v in verdicts)
    winners = [v for v in verdicts if v.kind == top]
    reasons = tuple(dict.fromkeys(r for v in winners for r in v.reasons))
    mask = tuple(dict.fromkeys(m for v in verdicts for m in v.mask))
    first = winners[0]
    return Verdict(
        top,
        reasons,
        mask if top is VerdictKind.MASK else (),
        first.approval,
        first.credential_ref,
        min(v.cache_ttl_seconds for v in verdicts),
        "shape" if all(v.cache_key == "shape" for v in verdicts) else "exact",
    )


class PerVerdict(Generic[T]):
    """build(verdict), made once per Verdict object (decorates build).

    The verdicts that answer most decisions are a few objects that evaluation reuse hands
    out again and again; hashing one to look it up (its reasons and every mask rule) costs
    more than what is built from it, so this remembers by identity, holding the verdict so
    its id cannot be taken by another object while remembered."""

    LIMIT = 4096

    def __init__(self, build: Callable[[Verdict], T]) -> None:
        self._build = build
        self._made: dict[int, tuple[Verdict, T]] = {}

    def __call__(self, verdict: Verdict) -> T:
        made = self._made.get(id(verdict))
        if made is not None and made[0] is verdict:
            return made[1]
        value = self._build(verdict)
        if len(self._made) >= self.LIMIT:
            self._made.clear()
        self._made[id(verdict)] = (verdict, value)
        return value
