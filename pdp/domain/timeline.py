"""Session replay: the timeline of one recorded session, built from its audit records.

No IO here: callers read the records (session.open, session.close, session.events and the
session's decision records) and this module turns them into a `Timeline` (a header, then
one `Entry` per event, each at its offset from the session start) that renders as text or
JSON, plus the one-line `SessionSummary` that `portcullis sessions list` prints.

Recorded event shape (what a proxy sends in RecordEvents, one `SessionEvent` each):

    time         unix seconds, from the proxy's clock
    direction    client (client → upstream) | upstream (upstream → client) | proxy | pdp
    type         command | response | io | masking | error
    decision_id  the decision that allowed or denied the command (with `cached`, the
                 decision the cached verdict came from)
    verdict      allow | deny | mask | require_approval, for commands
    cached       true when the verdict came from the proxy's decision cache
    command      the command text, for type command
    details      a mapping; `details.kind` says which protocol shape follows
    repeat_us    (a run, stored but never read back as such) the same event again, once
                 per item: a gap in µs after the one before, or [gap, command text]; the
                 store's readers (pdp/domain/recordings.py) expand it into one event per item

Postgres (the default when `details.kind` is absent on a postgres connection): one
`command` event per statement, after it completed: command = the SQL, details = {"tag":
"SELECT 3", "rows": 3, "protocol": "simple|extended", "part"?: n, "error"?: "SQLSTATE
message"}; statements that arrive without a fresh ruling (extended-protocol executions of
an already-decided portal) are `response` events with the same details plus `decision_id`.

HTTP (`details.kind == "http.request"`, built by `http_request_details()`): one `command`
event per request, recorded when the response to the client is complete: command =
"METHOD /path?query", details = {"kind": "http.request", "method", "path", "status" (what
the client got: the upstream status, or the proxy's 403/202), "bytes" (response body bytes
sent to the client, after masking), "request_bytes", "error"?}. A proxy that records the
response separately sends a `response` event with {"kind": "http.response", "status",
"bytes"} and the request's `decision_id`.

SSH (`details.kind` "ssh.exec" or "ssh.shell", built by `ssh_exec_details()`): one
`command` event per exec request or shell, recorded when the channel closed: command = the
command line ("" for a shell), details = {"kind", "exit_status", "stdout_bytes",
"stderr_bytes", "stdin_bytes", "error"?}. Interactive I/O is summarised as `io` events
(`ssh_io_details()`): direction client (stdin) or upstream (stdout/stderr), details =
{"kind": "ssh.io", "stream": "stdin|stdout|stderr", "bytes"}; never the bytes themselves.

Masking (every protocol): what masking did to a statement's result rides in that
statement's `command` or `response` event as details.masked = {"field:email": 3,
"derived:shout": 1, "detector:credit_card": 1}: per output column the rule that masked it
(a field rule, the derived rule over a sensitive column's lineage) or the detector, and
how many values — never the values themselves. Recordings made before that carry the same
counts as a separate `masking` event, direction proxy, with the command's decision_id and
details = {"counts": {...}}; both read back alike (Entry.masking), but only the old form
is an entry of its own.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, TypeGuard

import pglast.parser as pglast_parser

from pdp.domain.batch_numbers import RecordedNumbers, describe_ranges
from pdp.domain.casts import CastClock
from pdp.domain.recordings import (
    CLOCK_SKEW_SECONDS,
    EVENT_VERDICTS,
    LATE_SECONDS,
    batch_events,
    received_at,
)
from pdp.domain.sessions import LAST_HEARD, REAPED_REASONS, closed_reason_of
from pdp.plumbing.rendering import inert
from pdp.plumbing.timestamps import rfc3339
from pdp.store import AuditRecord
from portcullis import protocols
from portcullis.events import MASKED
from portcullis.password_prompts import events_without_secrets
from portcullis.shape import shaped

# -- event shapes for emitters (the HTTP and SSH proxies) ---------------------------------


def http_request_details(
    method: str,
    path: str,
    status: int,
    bytes: int,
    request_bytes: int = 0,
    error: str = "",
) -> dict[str, Any]:
    """`details` of the `command` event of one HTTP request (see the module docstring)."""
    details: dict[str, Any] = {
        "kind": "http.request",
        "method": method,
        "path": path,
        "status": status,
        "bytes": bytes,
        "request_bytes": request_bytes,
    }
    if error:
        details["error"] = error
    return details


def ssh_exec_details(
    exit_status: int | None,
    stdout_bytes: int,
    stderr_bytes: int,
    stdin_bytes: int = 0,
    shell: bool = False,
    error: str = "",
) -> dict[str, Any]:
    """`details` of the `command` event of one SSH exec request (or shell)."""
    details: dict[str, Any] = {
        "kind": "ssh.shell" if shell else "ssh.exec",
        "exit_status": exit_status,
        "stdout_bytes": stdout_bytes,
        "stderr_bytes": stderr_bytes,
        "stdin_bytes": stdin_bytes,
    }
    if error:
        details["error"] = error
    return details


def ssh_io_details(stream: str, nbytes: int) -> dict[str, Any]:
    """`details` of an `io` event: how many bytes crossed on stdin, stdout or stderr."""
    if stream not in ("stdin", "stdout", "stderr"):
        raise ValueError(f"unknown ssh stream {stream!r}")
    return {"kind": "ssh.io", "stream": stream, "bytes": nbytes}


# -- the timeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of a replay. `result` holds the protocol's result summary."""

    offset: float  # seconds since the session started
    time: str
    direction: str
    type: str
    kind: str = ""
    command: str = ""
    verdict: str = ""
    cached: bool = False
    decision_id: str = ""
    reasons: list[str] = field(default_factory=list)
    rows: int | None = None
    bytes: int | None = None
    result: dict[str, Any] = field(default_factory=dict)
    masking: dict[str, int] = field(default_factory=dict)
    error: str = ""
    approval_id: str = ""  # the approval request a person decided (or nobody did)
    # the PDP's recorded verdict where the proxy's event claims a weaker one (allow where
    # the PDP denied or masked): the proxy's say against the PDP's record; NO_DECISION
    # where it names a decision the PDP did not record in this session; OTHER_COMMAND
    # where the PDP's decision of that id was made on another command
    pdp_verdict: str = ""
    # the event's time is the proxy's word; when the PDP received it (its own clock; ""
    # for a recording made before the PDP kept it), and where the claimed time cannot be
    # (CLOCK_*: ahead of its arrival, before the session opened or its decision was made,
    # after the session closed); late_seconds: held by the proxy past LATE_SECONDS (spooled
    # while the PDP was away, a long command recorded at its end): genuine, and said so
    received: str = ""
    clock: str = ""
    late_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# a session the PDP ended because it heard no more from its proxy (a crash, a network cut):
# the proxy sends its events every flush interval (proxies.runtime.recorder), and a command
# it answered from its decision cache leaves no record at the PDP but its event
PROXY_LOST = "proxy_lost"
LOST_NOTE = (
    "the PDP lost this session's proxy: events it had not sent yet (its last half second or"
    " so, more if it could not reach the PDP) are missing, and with them any command it"
    " answered from its decision cache then, which leaves no other record"
)

# Entry.clock: why an event's claimed time cannot be when it happened
CLOCK_AHEAD = "after the PDP received it"
CLOCK_BEFORE_OPEN = "before the session opened"
CLOCK_BEFORE_DECISION = "before the decision it names was made"
CLOCK_AFTER_CLOSE = "after the session closed"


@dataclass(frozen=True)
class SessionSummary:
    """What `sessions list` shows of a session: who, where, when, and how it ended."""

    session_id: str
    subject: str
    groups: list[str]
    connection: str
    connection_type: str
    zone: str
    client_addr: str
    client: str
    started_at: float
    verdict: str
    status: str  # open | closed | ended abnormally | denied
    ended_at: float | None = None
    duration_seconds: float | None = None
    close_reason: str = ""
    commands: int | None = None
    denied: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["started_at"] = rfc3339(self.started_at)
        out["ended_at"] = rfc3339(self.ended_at) if self.ended_at is not None else None
        return out


def summarize(opened: AuditRecord, closed: AuditRecord | None = None) -> SessionSummary:
    """The listing line of a session from its session.open (and session.close) record."""
    body = opened.body
    # (every field as the PDP writes it, or empty: a record INSERTed by someone else, its
    # session a text or its start no double holds, stopped every listing holding it)
    session = _mapping(body.get("session"))
    identity = _mapping(session.get("identity"))
    connection = _mapping(session.get("connection"))
    verdict = str(body.get("verdict", ""))
    begun = session.get("started_at")
    started = float(begun) if finite_number(begun) and begun else opened.time
    groups = identity.get("groups")
    summary: dict[str, Any] = {}
    if verdict not in ("allow", "mask"):
        status = "denied"
    elif closed is None:
        status = "open"
    else:
        status = "ended abnormally" if closed.body.get("abnormal") else "closed"
    if closed is not None:
        summary = _mapping(closed.body.get("summary"))
    duration = closed.body.get("duration_seconds") if closed is not None else None
    return SessionSummary(
        session_id=opened.session_id,
        subject=opened.subject or str(identity.get("subject", "")),
        groups=[str(g) for g in groups] if isinstance(groups, list) else [],
        connection=str(connection.get("name") or body.get("connection", "")),
        connection_type=str(connection.get("type", "")),
        zone=str(connection.get("zone", "")),
        client_addr=str(session.get("client_addr", "")),
        client=str(session.get("client", "")),
        started_at=started,
        verdict=verdict,
        status=status,
        ended_at=closed.time if closed is not None else None,
        duration_seconds=float(duration) if finite_number(duration) else None,
        # a reaped reason a proxy gave is named as its (closed_reason_of), not the reaper's
        close_reason=closed_reason_of(closed.body) if closed is not None else "",
        commands=_int_or_none(summary.get("commands")),
        denied=_int_or_none(summary.get("denied")),
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int_or_none(value: Any) -> int | None:
    if not finite_number(value):
        return None  # (a recording stored before NaN and the infinities were refused)
    return int(value)


@dataclass(frozen=True)
class Timeline:
    summary: SessionSummary
    header: dict[str, Any]
    entries: list[Entry]
    totals: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": {**self.summary.to_dict(), **self.header},
            "totals": self.totals,
            "events": [e.to_dict() for e in self.entries],
        }


def build_timeline(
    opened: AuditRecord,
    closed: AuditRecord | None,
    event_records: Iterable[AuditRecord],
    decisions: Iterable[AuditRecord] | None = None,
    approvals: Iterable[AuditRecord] = (),
) -> Timeline:
    """Replay a session: session.open, every recorded event in time order, session.close.

    `decisions` (the session's `decision` records) supply the policy's reasons for each
    verdict, looked up by decision id; a decision that is missing only loses its reasons.
    `approvals` (the session's `approval` records) say who decided a request and why, so
    a command a person denied reads "denied by <approver>: <reason>". Given `decisions`,
    an event letting a command through (allow, mask) under a decision id the PDP recorded
    no decision of in this session is marked (pdp_verdict NO_DECISION): a proxy's claim
    that no record of the PDP backs."""
    summary = summarize(opened, closed)
    known = protocols.protocol(summary.connection_type)
    default_kind = known.command_kinds[0] if known is not None else ""
    rulings = {r.id: r.body for r in decisions or ()}
    checked = decisions is not None
    start = summary.started_at
    open_body = opened.body
    identity = _mapping(_mapping(open_body.get("session")).get("identity"))
    reasons = open_body.get("reasons")
    header = {
        "issuer": identity.get("issuer", ""),
        "token_id": identity.get("token_id", ""),
        "policy_revision": open_body.get("policy_revision", ""),
        "reasons": _unique(reasons if isinstance(reasons, list) else []),
        "credential_ref": _mapping(open_body.get("credential")).get("ref", ""),
    }
    entries = [
        Entry(
            offset=round(opened.time - start, 3),
            time=rfc3339(opened.time),
            direction="pdp",
            type="session.open",
            kind="session.open",
            verdict=summary.verdict,
            decision_id=str(open_body.get("decision_id", opened.id)),
            reasons=header["reasons"],
        )
    ]
    numbers = RecordedNumbers()  # a batch stored twice is shown once; one missing, said
    batches = [
        r
        for r in sorted(event_records, key=lambda r: r.seq)
        if numbers.feed(opened.session_id, r.body)
    ]
    if closed is not None:
        numbers.closed(opened.session_id, closed.body)
    numbered = _numbers_note(numbers, opened.session_id)
    if numbered:
        header["batches"] = numbered
    events = [
        (e, received_at(r)) for r in batches for e in batch_events(r.body) if isinstance(e, dict)
    ]
    # stable: ties keep order; a time that is no number (no proxy's) sorts first
    events.sort(
        key=lambda pair: float(pair[0]["time"]) if finite_number(pair[0].get("time")) else 0.0
    )
    # what was typed at a password prompt of a recorded terminal is not shown (a recording
    # made before the SSH proxy left it out holds it: portcullis/password_prompts.py)
    kept = events_without_secrets([e for e, _ in events])
    events = [(e, got) for e, (_, got) in zip(kept, events, strict=True)]
    unreceived = sum(1 for r in batches if received_at(r) is None)
    if unreceived:
        header["receipt"] = (
            f"{unreceived} of {len(batches)} event batches were recorded before the PDP kept"
            " its time of receipt: their times are the proxy's word alone"
        )
    if closed is not None and summary.close_reason == PROXY_LOST:
        header["lost"] = LOST_NOTE + _unrecorded(closed, events, decisions)
    window = _Window(
        opened=min(start, opened.time),
        closed=closed.time
        if closed is not None and summary.close_reason not in REAPED_REASONS
        else None,
        decided={r.id: r.time for r in decisions or ()},
        casts=CastClock(min(start, opened.time)),
    )
    entries += _explained(
        [window.weighed(_entry(e, start, default_kind), e, got) for e, got in events],
        rulings,
        _requests(approvals),
        checked,
        window.decided,
    )
    if closed is not None:
        entries.append(
            Entry(
                offset=round(closed.time - start, 3),
                time=rfc3339(closed.time),
                direction="pdp",
                type="session.close",
                kind="session.close",
                result={
                    "reason": summary.close_reason,
                    "abnormal": bool(closed.body.get("abnormal")),
                },
                error="ended abnormally" if closed.body.get("abnormal") else "",
            )
        )
    sent = (closed.body.get("summary") or {}).get("bytes_to_client") if closed else None
    return Timeline(summary, header, entries, _totals(entries, _int_or_none(sent)))


def _numbers_note(numbers: RecordedNumbers, session_id: str) -> str:
    """What the session's batch numbers show a reader ("" nothing: all there, once)."""
    notes = []
    missing = numbers.missing().get(session_id)
    if missing:
        notes.append(
            f"batches {describe_ranges(missing[:8])}{', ...' if len(missing) > 8 else ''} of"
            " this recording are not in the store (never stored): what they held is not shown"
        )
    if numbers.again.get(session_id):
        notes.append(f"{numbers.again[session_id]} batches stored twice are shown once")
    if numbers.forked.get(session_id):
        notes.append(
            f"{numbers.forked[session_id]} batch numbers are held by two different batches"
            " (not what a proxy sends): both shown"
        )
    return "; ".join(notes)


def _unrecorded(
    closed: AuditRecord,
    events: list[tuple[dict[str, Any], float | None]],
    decisions: Iterable[AuditRecord] | None,
) -> str:
    """What a session whose proxy was lost leaves unknown beyond LOST_NOTE: when the PDP
    last heard from the proxy, and each decision letting a command through that no
    recorded event names (its command may or may not have run)."""
    heard = closed.body.get(LAST_HEARD)
    said = (
        f"; the PDP last heard from it at {rfc3339(float(heard or 0))}"
        if finite_number(heard)
        else ""
    )
    after = sum(
        1
        for event, _ in events
        if event.get("type") == "command"
        and finite_number(event.get("time"))
        and event["time"] > closed.time + CLOCK_SKEW_SECONDS
    )
    if after:
        said += (
            f"; {after} commands the proxy recorded as run after the PDP ended the session,"
            " which it decided nothing of then (answered from the proxy's cache)"
        )
    if decisions is None:
        return said
    named = set()
    for event, _ in events:
        details = event.get("details")
        named.add(str(event.get("decision_id") or ""))
        if isinstance(details, dict):
            named.add(str(details.get("decision_id") or ""))
    unrun = [
        r
        for r in decisions
        if r.id not in named
        and (r.body.get("verdict") in LETS_THROUGH or r.body.get("enforced") is False)
    ]
    if not unrun:
        return said + "; every decision letting a command through is named by a recorded event"
    listed = ", ".join(
        f"{r.id} {r.body.get('verdict')} {str(r.body.get('raw', ''))[:60]!r}" for r in unrun[:8]
    )
    return (
        said + f"; {len(unrun)} decisions letting a command through are named by no recorded"
        f" event, so whether those commands ran is unknown: {listed}"
        + (", ..." if len(unrun) > 8 else "")
    )


def finite_number(value: Any) -> TypeGuard[int | float]:
    """Whether a stored field is a number a double holds, finite (a record's time, a
    count): not a bool, not an integer past a float's range, not NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer no double holds
        return False


@dataclass(frozen=True)
class _Window:
    """When a session's events can have happened, by the PDP's own clock: after the
    session opened, after the decision an event names, before the batch arrived and (a
    session its proxy closed, not one the PDP reaped) before the session closed, each
    give or take CLOCK_SKEW_SECONDS; a terminal recording's frames within the same
    (pdp.domain.casts.CastClock), in order."""

    opened: float
    closed: float | None
    decided: dict[str, float]
    casts: CastClock  # a terminal recording's frames (fed in time order: stateful)

    def weighed(self, e: Entry, event: dict[str, Any], received: float | None) -> Entry:
        when = event.get("time")
        if not isinstance(when, int | float) or isinstance(when, bool):
            return e
        when = float(when)
        decided = self.decided.get(e.decision_id)
        clock = ""
        if received is not None and when > received + CLOCK_SKEW_SECONDS:
            clock = CLOCK_AHEAD
        elif when < self.opened - CLOCK_SKEW_SECONDS:
            clock = CLOCK_BEFORE_OPEN
        elif decided is not None and e.verdict and when < decided - CLOCK_SKEW_SECONDS:
            clock = CLOCK_BEFORE_DECISION
        elif self.closed is not None and when > self.closed + CLOCK_SKEW_SECONDS:
            clock = CLOCK_AFTER_CLOSE
        frames = weigh_frames(self.casts, event)  # (every recording's event: their order)
        clock = clock or frames
        late = None
        if received is not None and not clock and received - when > LATE_SECONDS:
            late = round(received - when, 3)
        return replace(
            e,
            received=rfc3339(received) if received is not None else "",
            clock=clock,
            late_seconds=late,
        )


UNREADABLE_FRAMES = "for a terminal recording whose frames are not a recording's"


def weigh_frames(casts: CastClock, event: dict[str, Any]) -> str:
    """casts.weigh(event), or UNREADABLE_FRAMES for a terminal recording no proxy makes
    (its frames not a list, a time no double holds: a record stored before RecordEvents
    refused them, or INSERTed by someone else). Raising stopped replay and `audit verify`
    of the whole store at that one event."""
    details = event.get("details")
    frames = details.get("events") if isinstance(details, dict) else None
    if frames is not None and not isinstance(frames, list):
        return UNREADABLE_FRAMES  # (casts read past it, for the replay's sake)
    try:
        return casts.weigh(event)
    except (TypeError, ValueError, OverflowError, IndexError, KeyError):
        return UNREADABLE_FRAMES


def _entry(event: dict[str, Any], start: float, default_kind: str) -> Entry:
    found = event.get("details")
    details = dict(found) if isinstance(found, dict) else {}
    etype = str(event.get("type", ""))
    kind = str(
        details.pop("kind", "") or (default_kind if etype in ("command", "response") else "")
    )
    when = float(event["time"]) if finite_number(event.get("time")) else start
    decision_id = str(event.get("decision_id") or details.pop("decision_id", "") or "")
    details.pop("decision_id", None)
    masking = _counts_of(details.pop("counts", None) if etype == "masking" else None)
    if MASKED in details:
        masking = _counts_of(details.pop(MASKED))
    error = str(details.pop("error", "") or "")
    rows = details.pop("rows", None)
    nbytes = details.pop("bytes", None)
    return Entry(
        offset=round(when - start, 3),
        time=rfc3339(when),
        direction=str(event.get("direction", "")),
        type=etype,
        kind=kind,
        command=str(event.get("command", "")),
        verdict=str(event.get("verdict", "")),
        cached=bool(event.get("cached", False)),
        decision_id=decision_id,
        rows=_int_or_none(rows),
        bytes=_int_or_none(nbytes),
        result={k: _plain(v) for k, v in details.items()},
        masking=masking,
        error=error,
    )


def _counts_of(counts: Any) -> dict[str, int]:
    """Masking counts as recorded (a protobuf Struct's are doubles); anything else, none."""
    if not isinstance(counts, dict):
        return {}
    return {
        str(k): int(v)
        for k, v in counts.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _plain(value: Any) -> Any:
    # protobuf Structs carry every number as a double: show whole numbers as integers
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unique(reasons: Iterable[Any]) -> list[str]:
    """Reasons in order, each once (several statements may give the same one)."""
    return list(dict.fromkeys(str(r) for r in reasons))


# -- why each verdict: the policy's reasons, what was masked, who decided an approval ------


@dataclass
class _Request:
    """An approval request of the session, as its approval records tell it."""

    id: str
    command: str
    created: float
    state: str = "pending"
    approver: str = ""
    reason: str = ""


def _requests(records: Iterable[AuditRecord]) -> list[_Request]:
    found: dict[str, _Request] = {}
    for r in sorted(records, key=lambda r: r.seq):
        body = r.body
        event, approval_id = body.get("event"), str(body.get("approval_id", ""))
        if event == "requested":
            asked = body.get("request") or {}
            created = asked.get("created_at") or body.get("time") or r.time
            found[approval_id] = _Request(approval_id, str(asked.get("command", "")), created)
        elif event in ("approved", "denied", "expired", "withdrawn") and approval_id in found:
            request = found[approval_id]
            if request.state == "pending":
                request.state = str(event)
                request.approver = str(body.get("approver", ""))
                request.reason = str(body.get("reason", ""))
    return sorted(found.values(), key=lambda q: q.created)


def _explained(
    entries: list[Entry],
    rulings: dict[str, dict[str, Any]],
    requests: list[_Request],
    checked: bool = False,
    decided: dict[str, float] | None = None,
) -> list[Entry]:
    """Each ruled entry with reasons that match its verdict: a mask says what it masked
    (rule and column or detector, counts, never values), a deny after an approval request
    says who denied it and why, or that nobody decided. `decided`: when the PDP made each
    decision (to weigh a reuse from the proxy's cache against its TTL)."""
    decided = decided or {}
    runs = DecisionRuns()
    masked: dict[int, Counter[str]] = {}
    last_ruled: dict[str, int] = {}
    for n, e in enumerate(entries):
        if e.verdict and e.decision_id:
            last_ruled[e.decision_id] = n
        # a command's own counts; a later execution's (a response, or an older recording's
        # masking event) go to the command its decision was last given to
        if e.masking and e.decision_id in last_ruled:
            masked.setdefault(last_ruled[e.decision_id], Counter()).update(e.masking)
    out = []
    for n, e in enumerate(entries):
        if not e.verdict:
            # a command with no verdict: sent on nobody's decision, by the proxy's account
            out.append(replace(e, pdp_verdict=NO_VERDICT) if e.type == "command" else e)
            continue
        ruling = rulings.get(e.decision_id, {})
        disputed = weaker_than_ruled(e.verdict, ruling)
        if e.verdict not in EVENT_VERDICTS:
            disputed = UNKNOWN_VERDICT  # (refused since: recorded before)
        elif checked and e.decision_id not in rulings and e.verdict in LETS_THROUGH:
            disputed = NO_DECISION
        elif not disputed and e.verdict in LETS_THROUGH and _of_another_command(e, ruling):
            disputed = OTHER_COMMAND
        elif (
            not disputed
            and e.verdict in LETS_THROUGH
            and e.decision_id in rulings
            and reused_past(e.cached, _seconds(e.time), decided.get(e.decision_id), ruling)
        ):
            disputed = REUSED
        elif (
            not disputed
            and e.verdict in LETS_THROUGH
            and e.decision_id in rulings
            and runs.again(e.decision_id, e.type, e.cached, e.result, ruling)
        ):
            disputed = RAN_AGAIN
        if disputed:
            e = replace(e, pdp_verdict=disputed)
        reasons, approval_id = _unique(ruling.get("reasons") or []), ""
        if e.verdict == "mask":
            reasons = [_mask_reason(masked.get(n, Counter()), ruling.get("mask") or [])]
        elif e.verdict == "deny" and ruling.get("verdict") == "require_approval":
            request = _request_of(e, requests)
            approval_id = request.id if request else ""
            reasons = [_approval_outcome(request)] + [f"approval required: {r}" for r in reasons]
        out.append(replace(e, reasons=reasons, approval_id=approval_id))
    return out


# what a proxy's verdict may not be where the PDP recorded the key's (a proxy may deny on
# its own, never let through more than the PDP did)
# (nor where it asked for a person's approval: the proxy runs an approved command under
# the decision it asks for once approved, never under the one that asked)
_WEAKER = {
    "deny": ("allow", "mask"),
    "require_approval": ("allow", "mask"),
    "mask": ("allow",),
}
LETS_THROUGH = ("allow", "mask")
# Entry.pdp_verdict of an event letting a command through under a decision (or none)
# that the PDP did not record in the session
NO_DECISION = "no decision"
# ... or under a decision the PDP recorded of another command of the session
OTHER_COMMAND = "another command"
# ... or answered from the proxy's cache where the decision let it be reused no longer
REUSED = "no reuse then"
# ... or run again under a decision made for one run (DecisionRuns)
RAN_AGAIN = "run again"
# ... or under a verdict the PDP never gives (`Allow`, `approved`), or under none
UNKNOWN_VERDICT = "no such verdict"
NO_VERDICT = "no verdict"


def reused_past(
    cached: bool, when: float | None, made: float | None, ruling: dict[str, Any]
) -> bool:
    """Whether an event the proxy says it answered from its decision cache (`cached`)
    claims a reuse the PDP's decision did not give: the decision let nothing reuse it
    (no cache_ttl_seconds), or the event's time is past the decision's time and that TTL
    (give or take CLOCK_SKEW_SECONDS): a proxy keeps a verdict at most that long after
    it came (portcullis.reuse), so its command then was decided by nobody."""
    if not cached:
        return False
    ttl = ruling.get("cache_ttl_seconds")
    if not finite_number(ttl) or float(ttl or 0) <= 0:
        return True
    return (
        when is not None and made is not None and when > made + float(ttl or 0) + CLOCK_SKEW_SECONDS
    )


POSTGRES_QUERY = "postgres.query"
PARSE = "parse"  # a decision's attributes.phase when it was made at a Parse
# a run naming no prepared statement (no name holds a NUL; "" is the unnamed statement's)
_UNNAMED = "\0"


class DecisionRuns:
    """The runs of one session's Postgres decisions, to tell another run of a decision
    made for one. A decision is made for one run of its command; a statement parsed once
    and executed again and again (extended protocol: Parse, then Bind/Execute each time)
    runs under its Parse's decision (the record's `attributes.phase: parse`), each
    execution's event naming the prepared statement (`details.prepared`). Not another
    run: an event from the proxy's cache (reused_past weighs those), a later statement of
    one multi-statement text (`details.part`), a portal suspended to be executed on or an
    Execute that failed (no tag). A batch delivered twice is read once before this (the
    same events again, numbered or not: pdp.domain.batch_numbers.RecordedNumbers), so a
    run at the first one's very time is another run: a proxy's own word that it ran the
    command twice. Nor is an Execute again of the portal
    a Bind's decision ran (a decision made at a Bind, for its values: an approval's) that
    answered no row: the server runs a portal once (a write's again fails, 55000; a
    query's is at its end and answers no row), so it ran nothing (counted in
    `portal_again`); one answering rows under that decision is another run, disputed.
    Runs of a Parse's decision naming no statement (proxies before they named it) are
    counted in `unnamed`, not disputed. Replay and `audit verify` both ask this, fed a
    session's events in order."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}  # decision id -> the statement name its first run named
        self.unnamed = 0
        self.portal_again = 0

    def again(
        self,
        decision_id: str,
        etype: str,
        cached: bool,
        details: Mapping[str, Any],
        ruling: dict[str, Any],
    ) -> str:
        """What is wrong with this run of the decision ("" nothing)."""
        if etype != "command" or cached or not decision_id:
            return ""
        if ruling.get("kind", POSTGRES_QUERY) != POSTGRES_QUERY:
            return ""
        part = details.get("part")
        if (type(part) is int and part > 0) or details.get("tag") == "":
            return ""
        prepared = details.get("prepared")
        name = prepared if isinstance(prepared, str) else _UNNAMED
        first = self.first.get(decision_id)
        if first is None:
            self.first[decision_id] = name
            return ""
        if not _made_at_parse(ruling):
            if details.get("protocol") == "extended" and name == first and _no_row(details):
                self.portal_again += 1  # its portal executed again: nothing ran
                return ""
            return "again under a decision the PDP made for one run (not at a Parse)"
        if details.get("protocol") != "extended":
            return "again, outside the extended protocol, under the decision of a Parse"
        if name == _UNNAMED or first == _UNNAMED:
            self.unnamed += 1
            return ""
        if name != first:
            return (
                f"as prepared statement {inert(name[:64])!r} under the decision of the Parse"
                f" of {inert(first[:64])!r}"
            )
        return ""


def _no_row(details: Mapping[str, Any]) -> bool:
    """Whether a completed statement's result says no row was read or written: rows 0 and
    a tag counting none ('SELECT 0', 'INSERT 0 0', 'UPDATE 0')."""
    tag = details.get("tag")
    return details.get("rows") == 0 and isinstance(tag, str) and tag.rsplit(" ", 1)[-1] == "0"


def _made_at_parse(ruling: dict[str, Any]) -> bool:
    if ruling.get("phase") == PARSE:  # (what pdp.evidence.event_times keeps of a record)
        return True
    attributes = ruling.get("attributes")
    return isinstance(attributes, dict) and attributes.get("phase") == PARSE


def _of_another_command(e: Entry, ruling: dict[str, Any]) -> bool:
    return of_another_command(e.type, e.command, e.result, ruling)


# what of a decision record of_another_command reads (pdp.evidence.event_times keeps these)
DECIDED_TEXT_FIELDS = (
    "raw", "raw_truncated", "raw_sha256", "kind", "cache_key", "cache_ttl_seconds",
)  # fmt: skip


def of_another_command(
    etype: str, text: str, details: Mapping[str, Any], ruling: dict[str, Any]
) -> bool:
    """Whether the PDP's decision `ruling` was made on a command other than the event's
    (a proxy letting a denied statement through under the id of an allowed one beside
    it). The same: the text itself, a text cut by either record, a statement of a
    Postgres multi-statement text; and a statement of the same shape where the policy let
    the decision be reused for its shape (cache_key shape: portcullis.shape's, by which
    proxies reuse a verdict). A text merely inside the decided one is not (`SELECT 1 --
    DROP TABLE orders` decides no DROP). A text cut by either record is the same when the
    whole text's SHA-256 the record of the cut keeps (the event's `command_sha256`, the
    decision's `raw_sha256`) is the other's: a cut text's start alone (`SELECT` of
    `SELECT 1`, or the 8 KiB an SSH decision keeps followed by `; rm -rf /`) says nothing
    of the rest; records made before those digests were kept are compared by their
    start. Replay and `audit verify` both ask this."""
    raw, command = ruling.get("raw"), text.strip()
    if not isinstance(raw, str) or not command or etype != "command":
        return False
    if command == raw.strip() and not ruling.get("raw_truncated"):
        return False
    if details.get("command_truncated"):
        said, whole = details.get("command_sha256"), _whole_digest(raw, ruling)
        if isinstance(said, str) and whole:
            return said != whole
        return not raw.lstrip().startswith(command)
    if ruling.get("raw_truncated"):
        whole = _whole_digest(raw, ruling)
        if whole:
            return _sha256(text) != whole
        return not command.startswith(raw.strip())
    postgres = ruling.get("kind", "postgres.query") == "postgres.query"
    if postgres and command in _texts_of(raw):
        return False
    if ruling.get("cache_key") != "shape" or not (ruling.get("cache_ttl_seconds") or 0) > 0:
        return True
    if not postgres:
        return False  # a shape only Postgres statements have: nothing to compare
    # the shape a proxy and the PDP reuse a verdict by (portcullis.shape), not pglast's
    # fingerprint, which ignores schema names: `secret.orders` is not `public.orders`
    mine = shaped(command)
    return mine is None or mine not in _shapes_of(raw)


# what a decided text's statements and shapes are, kept for texts decided again and again
# (a session's statements answered from the cache name one decision: `audit verify` reads
# every one of them); bounded in entries and in the size of the texts kept
_KEPT_TEXT = 4096


@functools.lru_cache(maxsize=4096)
def _kept_texts(raw: str) -> frozenset[str]:
    return frozenset(s.strip() for s in _statements(raw))


@functools.lru_cache(maxsize=4096)
def _kept_shapes(raw: str) -> frozenset[str | None]:
    return _statement_shapes(raw)


def _statement_shapes(raw: str) -> frozenset[str | None]:
    return frozenset(shaped(s) for s in _statements(raw)) - {None}


def _texts_of(raw: str) -> frozenset[str]:
    if len(raw) <= _KEPT_TEXT:
        return _kept_texts(raw)
    return frozenset(s.strip() for s in _statements(raw))


def _shapes_of(raw: str) -> frozenset[str | None]:
    if len(raw) <= _KEPT_TEXT:
        return _kept_shapes(raw)
    return _statement_shapes(raw)


def _whole_digest(raw: str, ruling: dict[str, Any]) -> str:
    """The SHA-256 (hex) of the whole text the PDP decided: its record's `raw_sha256` when
    it kept only the start, else its text's own; "" when a cut record keeps none."""
    if ruling.get("raw_truncated"):
        said = ruling.get("raw_sha256")
        return said.lower() if isinstance(said, str) and len(said) == 64 else ""
    return _sha256(raw)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _statements(sql: str) -> list[str]:
    try:
        return [sql, *pglast_parser.split(sql)]
    except Exception:
        return [sql]


def weaker_than_ruled(verdict: str, ruling: dict[str, Any]) -> str:
    """The PDP's recorded verdict when the proxy's event claims one that lets more through
    (`allow` for a decision the PDP recorded as deny or mask; `allow` or `mask` for one
    that asked for approval: its approved run is another decision, which the proxy asks
    for once approved and records it under), else "". A decision not enforced (shadow
    mode: `enforced: false`, the proxy answered allow) is not disputed."""
    ruled = ruling.get("verdict")
    if ruling.get("enforced") is False or not isinstance(ruled, str):
        return ""
    return ruled if verdict in _WEAKER.get(ruled, ()) else ""


def _mask_reason(counts: Counter[str], rules: list[Any]) -> str:
    strategy = {
        f"{kind}:{rule[kind]}": str(rule.get("strategy", ""))
        for rule in rules
        if isinstance(rule, dict)
        for kind in ("field", "detector", "derived")
        if rule.get(kind)
    }
    if not counts:
        return f"masked: {len(strategy)} mask rules applied, no value in the result matched"
    parts = []
    derived = next((how for key, how in strategy.items() if key.startswith("derived:")), "")
    for key, count in sorted(counts.items()):
        kind, _, name = key.partition(":")
        what = {
            "field": f"field {name}",
            "derived": f"column {name} (derived from a sensitive column)",
            "detector": f"{name} detector",
        }.get(kind, key)
        rule = derived if kind == "derived" else strategy.get(key)
        how = f" ({rule})" if rule else ""
        parts.append(f"{what}{how}: {count} value" + ("" if count == 1 else "s"))
    return "masked " + ", ".join(parts)


def _request_of(e: Entry, requests: list[_Request]) -> _Request | None:
    """The latest request for this command made before the command was recorded."""
    moment = _seconds(e.time)
    asked = [q for q in requests if q.command == e.command and q.created <= moment]
    return asked[-1] if asked else None


def _seconds(time: str) -> float:
    # an entry's time has milliseconds truncated: allow the rest of that millisecond
    return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp() + 0.001


def _approval_outcome(request: _Request | None) -> str:
    if request is None:
        return "approval required, and no approval request was made"
    if request.state == "denied":
        return f"denied by {request.approver or 'an approver'}: {request.reason or 'no reason'}"
    if request.state == "expired":
        return f"approval request {request.id} expired: nobody decided in time"
    if request.state == "withdrawn":
        why = f": {request.reason}" if request.reason else ""
        return f"approval request {request.id} withdrawn{why}"
    if request.state == "approved":
        return f"approved by {request.approver}, then denied by the policy"
    return f"approval request {request.id} was still pending when the wait ended"


def _totals(entries: list[Entry], bytes_to_client: int | None = None) -> dict[str, Any]:
    """Counts over the session; a count the recording does not carry is null, not 0."""
    commands = [e for e in entries if e.type == "command"]
    results = [e for e in entries if e.type in ("command", "response")]
    sized = [e for e in entries if e.type in ("command", "response", "io") and e.bytes is not None]
    masked: Counter[str] = Counter()
    for e in entries:
        masked.update(e.masking)
    counted_rows = [e.rows for e in results if e.rows is not None]
    return {
        "commands": len(commands),
        "verdicts": dict(Counter(e.verdict or "none" for e in commands)),
        "cached": sum(1 for e in commands if e.cached),
        "rows": sum(counted_rows) if counted_rows else None,
        "bytes": sum(e.bytes or 0 for e in sized) if sized else None,
        "bytes_to_client": bytes_to_client,
        "errors": sum(1 for e in entries if e.error and e.type != "session.close"),
        "disputed": sum(1 for e in entries if e.pdp_verdict),
        "clock_marked": sum(1 for e in entries if e.clock),
        "late": sum(1 for e in entries if e.late_seconds is not None),
        "masked": dict(masked),
    }


# -- text rendering -------------------------------------------------------------------------

_ARROWS = {"client": "client →", "upstream": "← upstream", "proxy": "proxy", "pdp": "pdp"}


def render_text(timeline: Timeline) -> str:
    """The timeline for a person; every text a client or its upstream could shape (names,
    commands, reasons, errors) is made inert (pdp.plumbing.rendering), so it cannot forge a line
    or move the reader's cursor."""
    return "".join(inert(line) + "\n" for line in _render_lines(timeline))


def _render_lines(timeline: Timeline) -> list[str]:
    s = timeline.summary
    lines = [
        f"session {s.session_id}",
        f"  subject     {s.subject}" + (f"  groups: {', '.join(s.groups)}" if s.groups else ""),
        f"  connection  {s.connection} ({s.connection_type or '?'}"
        + (f", zone {s.zone})" if s.zone else ")"),
        f"  client      {s.client or '-'} from {s.client_addr or '-'}",
        f"  token       {timeline.header['token_id'] or '-'}"
        f"  issuer {timeline.header['issuer'] or '-'}",
        f"  opened      {rfc3339(s.started_at)}  {s.verdict}"
        f"  policy {timeline.header['policy_revision'] or '-'}",
        f"  status      {s.status}"
        + (f" ({s.close_reason}) after {s.duration_seconds:g}s" if s.ended_at is not None else ""),
        *([f"  receipt     {timeline.header['receipt']}"] if "receipt" in timeline.header else []),
        *([f"  !! lost     {timeline.header['lost']}"] if "lost" in timeline.header else []),
        *([f"  !! batches  {timeline.header['batches']}"] if "batches" in timeline.header else []),
        "",
    ]
    for e in timeline.entries:
        lines.append(_entry_line(e))
    t = timeline.totals
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(t["verdicts"].items())) or "none"
    counted = [f"{t['commands']} commands ({verdicts}; {t['cached']} from cache)"]
    if t["rows"] is not None:
        counted.append(f"{t['rows']} row" + ("" if t["rows"] == 1 else "s"))
    if t["bytes"] is not None:
        counted.append(f"{t['bytes']} bytes")
    if t["bytes_to_client"] is not None:
        counted.append(f"{t['bytes_to_client']} bytes to the client")
    counted.append(f"{t['errors']} error" + ("" if t["errors"] == 1 else "s"))
    if t["masked"]:
        counted.append(f"masked: {_counts(t['masked'])}")
    lines += ["", ", ".join(counted)]
    if t["disputed"]:
        lines.append(
            f"!! {t['disputed']} command(s) the proxy recorded as let through where the PDP's"
            " record says otherwise: the proxy's events contradict the decisions"
        )
    if t["clock_marked"]:
        lines.append(
            f"!! {t['clock_marked']} event(s) at a time the proxy claims and the PDP's clock"
            " rules out: the proxy's clock or its word is wrong"
        )
    if t["late"]:
        lines.append(
            f"{t['late']} event(s) reached the PDP more than {LATE_SECONDS:g}s after their"
            " time (spooled by the proxy, or a long command recorded when it ended)"
        )
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _entry_line(e: Entry) -> str:
    prefix = f"{e.offset:+10.3f}s  {_ARROWS.get(e.direction, e.direction):<10}  "
    if e.type == "session.open":
        return prefix + f"session opened: {e.verdict}" + _why(e)
    if e.type == "session.close":
        return (
            prefix
            + f"session closed: {e.result.get('reason', '')}"
            + (" (abnormal)" if e.result.get("abnormal") else "")
        )
    if e.type == "masking":
        return (
            prefix
            + f"masked {_counts(e.masking)}"
            + (f"  (decision {e.decision_id})" if e.decision_id else "")
            + "".join("  " + note for note in _clock_notes(e))
        )
    text = _command_text(e)
    parts = [text] if text else [e.type]
    if e.verdict:
        parts.append(f"[{e.verdict}{_decision(e)}]")
    if e.pdp_verdict == NO_DECISION:
        parts.append("!! the PDP recorded no such decision in this session")
    elif e.pdp_verdict == OTHER_COMMAND:
        parts.append("!! the PDP recorded this decision of another command")
    elif e.pdp_verdict == REUSED:
        parts.append("!! answered from the proxy's cache where the PDP's decision allowed no reuse")
    elif e.pdp_verdict == UNKNOWN_VERDICT:
        parts.append("!! a verdict the PDP never gives")
    elif e.pdp_verdict == NO_VERDICT:
        parts.append("!! recorded with no verdict: no decision of the PDP named")
    elif e.pdp_verdict == RAN_AGAIN:
        parts.append(
            "!! run again under a decision the PDP made for one run (or not as the prepared"
            " statement of its Parse)"
        )
    elif e.pdp_verdict:
        parts.append(f"!! the PDP recorded {e.pdp_verdict} for this decision")
    outcome = _outcome(e)
    if outcome:
        parts.append("→ " + outcome)
    if e.error:
        parts.append(f"error: {e.error}")
    parts += _clock_notes(e)
    return prefix + "  ".join(parts) + (_why(e) if e.verdict not in ("", "allow") else "")


def _clock_notes(e: Entry) -> list[str]:
    """What the PDP's clock says of an event's claimed time (an entry of any type)."""
    if e.clock:
        received = f" (received {e.received})" if e.received else ""
        return [f"!! time claimed by the proxy is {e.clock}{received}"]
    if e.late_seconds is not None:
        return [f"(late: received {e.late_seconds:g}s after its time, at {e.received})"]
    return []


def _command_text(e: Entry) -> str:
    one_line = " ".join(e.command.split(" "))
    if e.kind in ("http.request", "http.upgrade") and "\n" in one_line:
        # the request line; the body's size and digest follow it in the recorded text
        size = e.result.get("request_bytes")
        one_line = one_line.split("\n", 1)[0] + (f"  (+{size} B body)" if size else "")
    if e.kind == "http.frame":
        text = str(e.result.get("text") or "")
        frame = f"{e.result.get('direction', '?')} {e.result.get('frame', '')} frame"
        return frame + (f": {text[:80]}" if text else "")
    if len(one_line) > 120:
        one_line = one_line[:117] + "..."
    if e.kind in ("ssh.exec", "ssh.shell"):
        return "$ " + (one_line or "(interactive shell)")
    if e.kind == "ssh.io":
        return f"{e.result.get('stream', 'io')}"
    if e.kind == "ssh.asciicast":  # a terminal's recording (pdp.domain.casts plays it)
        events = e.result.get("events")
        count = len(events) if isinstance(events, list) else 0
        return f"terminal, channel {e.result.get('channel', '?')}: {count} events recorded"
    if e.kind == "http.request" and not one_line:
        return f"{e.result.get('method', '')} {e.result.get('path', '')}".strip()
    return one_line


def _outcome(e: Entry) -> str:
    r = e.result
    bits = []
    if e.kind.startswith("http.") and "status" in r:
        bits.append(f"HTTP {r['status']}")
    if e.kind in ("ssh.exec", "ssh.shell"):
        if r.get("exit_status") is not None:
            bits.append(f"exit {r['exit_status']}")
        bits.append(f"stdout {r.get('stdout_bytes', 0)} B, stderr {r.get('stderr_bytes', 0)} B")
    if r.get("tag"):
        bits.append(str(r["tag"]))
    if e.rows is not None and not str(r.get("tag", "")).endswith(f" {e.rows}"):
        bits.append(f"{e.rows} row" + ("" if e.rows == 1 else "s"))
    if e.bytes is not None:
        bits.append(f"{e.bytes} bytes")
    if e.masking and e.verdict != "mask":  # a mask verdict's reason says what it masked
        bits.append(f"masked {_counts(e.masking)}")
    return ", ".join(bits)


def _decision(e: Entry) -> str:
    if not e.decision_id:
        return ""
    return f" cached from {e.decision_id}" if e.cached else f" {e.decision_id}"


def _why(e: Entry) -> str:
    return f"  — {'; '.join(e.reasons)}" if e.reasons else ""
