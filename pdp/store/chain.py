"""The audit hash chain: canonical JSON, record hashes, sealing and verification.

Owns the exact bytes an auditor must reproduce. Every record's hash is

    sha256_hex(prev_hash + "\\n" + canonical_json({
        "seq", "id", "kind", "time", "session_id", "subject", "body"
    }))

where canonical JSON is `json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)` encoded as UTF-8, and "time" is the record time in
integer microseconds since the Unix epoch (an integer round-trips exactly through every
backend; a float would not). The first record links to GENESIS_HASH (64 zeros).

No IO and no asyncio here: the backends call `seal()` inside their write transaction and
feed rows to `ChainVerifier` in seq order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pdp.plumbing.frozen import quick_init

GENESIS_HASH = "0" * 64


@quick_init
@dataclass(frozen=True)
class AuditRecord:
    """One link of the chain. `time` is unix seconds (microsecond resolution)."""

    seq: int
    id: str
    kind: str
    time: float
    session_id: str
    subject: str
    body: dict[str, Any]
    prev_hash: str
    hash: str


@quick_init
@dataclass(frozen=True)
class Draft:
    """A record waiting for its place in the chain (no seq, no hashes yet)."""

    id: str
    kind: str
    time_us: int
    session_id: str
    subject: str
    body: dict[str, Any]
    body_json: str  # canonical_json(body), computed once by the caller
    # the id of the record this one is written with (AuditStore.append's `before`): left
    # out with it when that id is a duplicate, so neither stands in the chain alone
    with_id: str = ""


@dataclass(frozen=True)
class ChainReport:
    """Result of verifying a chain; `first_bad_seq` names where it first breaks."""

    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str = ""


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_quote = json.encoder.encode_basestring  # what _CANONICAL makes of a str
_make_c_encoder = getattr(json.encoder, "c_make_encoder", None)  # CPython's accelerator


def _unserializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# the same encoder without a Python encoder object built for every call (json.dumps with
# arguments builds one): records are encoded once each on the PDP's busiest path. No
# circular-reference check (a cycle raises RecursionError, ValueError's peer here): bodies
# are trees built by this program
_c_canonical = (
    _make_c_encoder(None, _unserializable, _quote, None, ":", ",", True, False, False)
    if _make_c_encoder is not None
    else None
)


def canonical_json(value: Any) -> str:
    """The one JSON serialization that is hashed; raises ValueError/TypeError if impossible."""
    if isinstance(value, str):
        return _quote(value)
    if _c_canonical is None or not isinstance(value, dict | list):
        return _CANONICAL.encode(value)
    return "".join(_c_canonical(value, 0))


# the quoted form of the top-level keys canonical_json_with() has met (a few dozen names
# the PDP writes; bounded all the same, a body's keys being whatever its caller gives)
_QUOTED_KEYS: dict[str, str] = {}
_QUOTED_KEYS_MAX = 1024


def canonical_json_with(body: dict[str, Any], encoded: Mapping[str, str]) -> str:
    """canonical_json(body), with the canonical JSON of some of its top-level values
    given: encoded[key] must be canonical_json(body[key]), made once and kept (a session's
    catalogue facts come with every statement; a verdict's fields with every decision
    answered alike). Written member by member, in the order canonical_json() sorts the
    keys, each value's text taken from `encoded` or encoded here, so the result is
    canonical_json(body) exactly; a body with a key that is not a string is encoded
    whole. Keys of `encoded` the body lacks are not used."""
    if not encoded:
        return canonical_json(body)
    members = []
    try:
        keys = sorted(body)
    except TypeError:  # keys that do not compare: the encoder says what it makes of them
        return canonical_json(body)
    for key in keys:
        quoted = _QUOTED_KEYS.get(key)
        if quoted is None:
            if type(key) is not str:
                return canonical_json(body)
            quoted = _quote(key)
            if len(_QUOTED_KEYS) < _QUOTED_KEYS_MAX:
                _QUOTED_KEYS[key] = quoted
        text = encoded.get(key)
        if text is None:
            value = body[key]
            kind = type(value)
            if kind is str:
                text = _quote(value)
            elif kind is int:
                text = int.__repr__(value)
            elif kind is float and value - value == 0.0:  # finite: NaN and ±inf refused
                text = float.__repr__(value)
            elif kind is bool:
                text = "true" if value else "false"
            elif value is None:
                text = "null"
            else:
                text = canonical_json(value)
        members.append(f"{quoted}:{text}")
    return "{" + ",".join(members) + "}"


def to_micros(unix_seconds: float) -> int:
    return round(unix_seconds * 1_000_000)


def from_micros(micros: int) -> float:
    return micros / 1_000_000


def record_hash(
    prev_hash: str,
    seq: int,
    id: str,
    kind: str,
    time_us: int,
    session_id: str,
    subject: str,
    body: dict[str, Any],
) -> str:
    return sealed_hash(prev_hash, seq, id, kind, time_us, session_id, subject, canonical_json(body))


def sealed_hash(
    prev_hash: str,
    seq: int,
    id: str,
    kind: str,
    time_us: int,
    session_id: str,
    subject: str,
    body_json: str,
) -> str:
    """record_hash() from the body's canonical JSON, which the writer already holds.

    Spells out canonical_json() of the record object: its keys in sorted order, the body
    spliced in verbatim (it is canonical JSON itself), every other value through
    canonical_json(). A test holds the two equal."""
    c = canonical_json
    return hashlib.sha256(
        f'{prev_hash}\n{{"body":{body_json},"id":{c(id)},"kind":{c(kind)},"seq":{seq},'
        f'"session_id":{c(session_id)},"subject":{c(subject)},"time":{time_us}}}'.encode()
    ).hexdigest()


def seal(drafts: Iterable[Draft], head_seq: int, head_hash: str) -> list[AuditRecord]:
    """Give drafts consecutive seqs after the head and link each to its predecessor."""
    records = []
    seq, prev = head_seq, head_hash
    for d in drafts:
        seq += 1
        digest = sealed_hash(
            prev, seq, d.id, d.kind, d.time_us, d.session_id, d.subject, d.body_json
        )
        records.append(
            AuditRecord(
                seq=seq,
                id=d.id,
                kind=d.kind,
                time=from_micros(d.time_us),
                session_id=d.session_id,
                subject=d.subject,
                body=d.body,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    return records


def stored_body(body_json: str) -> dict[str, Any]:
    """A stored body as readers take it: a body that is not a JSON object (INSERTed by
    someone else: the PDP writes only objects) reads as {}, which anyone who can INSERT
    could write anyway. Raising instead failed every query whose range held it (the
    approvals book's, sessions, replays) for as long as the store held it; the chain's
    check (ChainVerifier, raw rows) still names it."""
    try:
        body = json.loads(body_json)
    except (ValueError, TypeError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def row_to_record(row: Sequence[Any]) -> AuditRecord:
    """Build a record from its stored columns (pdp.store.reads.COLUMNS, in that order)."""
    seq, id, kind, time_us, session_id, subject, body_json, prev_hash, hash = row
    return AuditRecord(
        seq=seq,
        id=id,
        kind=kind,
        time=from_micros(time_us),
        session_id=session_id,
        subject=subject,
        body=stored_body(body_json),
        prev_hash=prev_hash,
        hash=hash,
    )


def record_rows(
    records: list[AuditRecord], drafts: list[Draft], mac: str | None
) -> list[tuple[Any, ...]]:
    """The rows a sealed batch is stored as: its columns (pdp.store.reads.COLUMNS) and
    `mac`, which only the batch's last record carries."""
    last = records[-1].seq if records else 0
    return [
        (
            r.seq,
            r.id,
            r.kind,
            d.time_us,
            r.session_id,
            r.subject,
            d.body_json,
            r.prev_hash,
            r.hash,
            mac if r.seq == last else None,
        )
        for r, d in zip(records, drafts, strict=True)
    ]


class ChainVerifier:
    """Checks rows fed in seq order; remembers the first break and keeps counting.

    A deleted record shows up as a gap: `first_bad_seq` is then the missing seq. A record
    whose content changed fails its own hash. Reordered or swapped rows break a link.
    Deleting the newest records leaves a valid shorter chain; signed checkpoints cover that.
    """

    def __init__(self) -> None:
        self.records = 0
        self._seq = 0
        self._hash = GENESIS_HASH
        self._bad: tuple[int, str] | None = None

    def feed(self, row: tuple[Any, ...]) -> None:
        """row: (seq, id, kind, time_us, session_id, subject, body_json, prev_hash, hash)."""
        self.records += 1
        if self._bad is None:
            problem = self._check(row)
            if problem:
                self._bad = problem

    def _check(self, row: tuple[Any, ...]) -> tuple[int, str] | None:
        seq, id, kind, time_us, session_id, subject, body_json, prev_hash, hash = row
        expected = self._seq + 1
        if seq != expected:
            if seq > expected:
                return (
                    expected,
                    f"record {expected} is missing (record {self._seq} is followed"
                    f" by record {seq})",
                )
            return seq, f"record {seq} is out of order (follows record {self._seq})"
        if prev_hash != self._hash:
            return seq, f"record {seq} does not link to record {self._seq} (prev_hash differs)"
        try:
            body = json.loads(body_json)
        except ValueError:
            return seq, f"record {seq} has a body that is not JSON"
        try:
            canonical = canonical_json(body)
            actual = sealed_hash(prev_hash, seq, id, kind, time_us, session_id, subject, canonical)
        except (ValueError, TypeError, RecursionError):  # NaN, lone surrogates, depth
            return seq, f"record {seq} was changed (its content cannot be hashed)"
        if actual != hash:
            return seq, f"record {seq} was changed (its content does not match its hash)"
        if canonical != body_json:
            # the bytes stored are not the bytes hashed: a duplicated key, other spacing or
            # number spelling that Python's parser reads as the hashed body while another
            # reader (SQLite's json_extract takes a duplicated key's first value) does not
            return seq, (
                f"record {seq} was changed (its stored body is not the canonical JSON"
                " that was hashed)"
            )
        self._seq, self._hash = seq, hash
        return None

    def report(self) -> ChainReport:
        if self._bad is None:
            return ChainReport(ok=True, records=self.records)
        seq, problem = self._bad
        return ChainReport(ok=False, records=self.records, first_bad_seq=seq, problem=problem)


def verify_rows(rows: Iterable[tuple[Any, ...]]) -> ChainReport:
    verifier = ChainVerifier()
    for row in rows:
        verifier.feed(row)
    return verifier.report()
