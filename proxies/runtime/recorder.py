"""Session recording from the proxy's side: events batched and streamed to the PDP.

Owns the event shape a proxy hands over (commands, verdicts, responses after masking,
masking counts) and its delivery: events are sent to the PDP's store in batches at
least every FLUSH_SECONDS, so a proxy that dies loses at most the last interval; all
sessions of a proxy flush on one tick (RecordingTick), in one RecordBatches call that
the PDP stores in one commit (a session also sends on its own when its batch is full). An
event is serialized to JSON text the moment it happens and waits as text: thousands of
pending events as dicts would be traversed by every garbage collection (measured: a
quarter of a busy proxy's CPU), text is not. A batch goes out as one JSON array.
A command or response like the one just before (the same decision, verdict and kind of
result; a command's text may differ, as the literals of one statement shape do) extends
a run instead of making an event of its own: one event whose `repeat_us` lists, for each
one after it, the gap in microseconds since the one before, with its command text where
that differs. The PDP's readers expand a run back into one event per statement, each with
its own time and text.
A statement's masking counts ride in its own event, as `details.masked` (field, derived
column or detector → how many values; portcullis.events bounds the shape), not in an event
of their own: consecutive statements masked alike still make one run, and a batch of them
stays within what the PDP checks without decoding it. The counts come after the event
(ProxySession.record_masking, once the statement completed), so the last command or
response is held back until the next event, a flush or its counts arrive.
Values that were masked and secrets never enter an event; a command longer than
MAX_EVENT_COMMAND enters cut to its start, with its whole size and SHA-256.

Each batch of a session's events is numbered (1, 2, ... : RecordEventsRequest.batch_seq)
when it is first made, and keeps its number and events whatever happens to its sending: a
send that failed is sent again as it was, spooled with its number, so the PDP stores it
once however often it arrives, and a number that never reaches it is a batch lost (audit
verify names it). A heartbeat carries none.

A batch the PDP cannot take (unreachable, its store down) goes to the proxy's durable
spool (proxies.runtime.spool), and the session's later batches queue behind it there, so
the PDP gets them in order when it is back. No statement runs unless its events are sure
of a place: before one is forwarded, `admit()` holds room in the spool for everything the
session has not delivered yet plus that statement's events (an estimate from its text),
and what the PDP acknowledges is given back. A session that cannot hold room is halted
(ProxySession.halted) until the PDP has taken enough; what it already ran is spooled
against its room whatever the spool holds by then. A session whose events can be neither
delivered nor spooled (no spool, a spool that cannot be written, a batch the PDP refuses
as malformed) is `unavailable`: its commands are denied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from portcullis.events import (
    MASKED,
    MAX_REPEAT,
    TRUNCATED_PREFIX,
    masked_details,
    truncation_facts,
)
from proxies.runtime.pdp_client import Numbered, PDPClient, Ruling
from proxies.runtime.pdp_client import _batch as batch_request
from proxies.runtime.spool import REFUSED, STORED, UNREACHABLE, Entry, Spool, SpoolFull

SPOOLED = "spooled"  # a delivery outcome: not at the PDP yet, but durable

log = logging.getLogger("portcullis.recorder")

FLUSH_SECONDS = 0.5
HEARTBEAT_SECONDS = 5.0  # an idle session still tells the PDP its proxy is alive
MAX_BATCH = 500
MAX_PENDING = 20_000
MAX_RUN_TEXT = 64 * 1024  # a run takes no more command text than this (then a new one)
MAX_EVENT_COMMAND = 64 * 1024  # a longer command is recorded cut, with its size and hash
# room held for one statement's events beyond its text: its command event's decision, verdict,
# result and masking counts, its response event (characters of event JSON)
STATEMENT_EVENTS = 512


def spooled(chars: int) -> int:
    """Bytes a spool line takes for `chars` characters of event JSON: the events are a JSON
    string inside the line, so their quotes and backslashes are escaped once more (plain
    text; a line of mostly non-ASCII text weighs more, and is written all the same)."""
    return chars + chars // 2 + 64 if chars else 0


def statement_room(command_chars: int) -> int:
    """Spool bytes held for the events of one statement of `command_chars` characters (its
    text may be in its command event and in a part of a multi-statement query)."""
    return spooled(2 * min(command_chars, MAX_EVENT_COMMAND) + STATEMENT_EVENTS)


_quote = json.encoder.encode_basestring  # a str as a JSON string literal, quotes included
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
_make_c_encoder = getattr(json.encoder, "c_make_encoder", None)  # CPython's accelerator
_c_encoder = (
    _make_c_encoder(None, str, _quote, None, ":", ",", False, False, True)
    if _make_c_encoder is not None
    else None
)


def _encode(value: dict[str, Any]) -> str:
    """json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str), without
    building an encoder per call (half the cost for an event's small details)."""
    if _c_encoder is None:
        return _encoder.encode(value)
    return "".join(_c_encoder(value, 0))


def until_next_flush(now: float | None = None) -> float:
    """Seconds to the next multiple of FLUSH_SECONDS on the monotonic clock.

    Every recorder of a proxy flushes at the same instants, so their batches reach the
    PDP together and share its commits (one transaction and one fsync for all of them)
    instead of each session paying its own at its own moment."""
    now = time.monotonic() if now is None else now
    return FLUSH_SECONDS - now % FLUSH_SECONDS


_texts: dict[tuple[Any, ...], str] = {}
MAX_TEXTS = 4096


def _remembered(key: tuple[Any, ...], spell: Callable[[], str]) -> str:
    """The text spell() gives, spelt out once per key and looked up after that."""
    try:
        return _texts[key]
    except KeyError:
        pass
    except TypeError:  # a value that cannot be a key: spell it out every time
        return spell()
    if len(_texts) >= MAX_TEXTS:
        _texts.clear()
    text = _texts[key] = spell()
    return text


class MaskedCounts(dict[str, int]):
    """A statement's `details.masked`: a dict the JSON encoder writes as an object, and
    hashable, so the event text of statements masked alike is spelt out once and their
    events make a run. Never changed once made."""

    __slots__ = ("_hash",)

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            self._hash: int = hash(tuple(self.items()))
            return self._hash


def _with_masked(details: dict[str, Any]) -> dict[str, Any]:
    """details with its `masked` counts in their recorded shape (bounded, keys in order)."""
    counts = details.get(MASKED)
    if counts is None or type(counts) is MaskedCounts:
        return details
    shaped = masked_details(counts) if isinstance(counts, dict) else {}
    if not shaped:
        return {k: v for k, v in details.items() if k != MASKED}
    return {**details, MASKED: MaskedCounts(shaped)}


def _details_key(details: dict[str, Any]) -> tuple[Any, ...]:
    # the values' types are part of the key: 1, 1.0 and True are equal keys but not equal JSON
    return (*details.items(), *map(type, details.values()))


MAX_SESSION_TAILS = 16  # command tails a session remembers (its decisions' own texts)


def _tail_key(ruling: Ruling, details: dict[str, Any]) -> tuple[Any, ...]:
    """What a command event's tail is made of, as one key: its decision, verdict and
    whether reused, then its details. A statement's usual details (tag, rows, protocol;
    SessionRecorder.statement) are keyed by their three values, the six fields statement()
    builds without a dict; any other details by their items and their values' types (an
    odd-length key, never a six-field one)."""
    if (
        len(details) in (3, 4)
        and type(details.get("tag")) is str
        and type(details.get("rows")) is int
        and type(details.get("protocol")) is str
        and (
            tuple(details) == _STATEMENT_DETAILS
            or (tuple(details) == _PREPARED_DETAILS and type(details["prepared"]) is str)
        )
    ):
        return _statement_key(
            ruling, details["tag"], details["rows"], details["protocol"], details.get("prepared")
        )
    return (ruling.decision_id, ruling.kind, ruling.cached, *_details_key(details))


_STATEMENT_DETAILS = ("tag", "rows", "protocol")
_PREPARED_DETAILS = (*_STATEMENT_DETAILS, "prepared")


def _statement_key(
    ruling: Ruling, tag: str, rows: int, protocol: str, prepared: str | None
) -> tuple[Any, ...]:
    """_tail_key of a statement's usual details: six fields, eight with the prepared
    statement an Execute ran (even-length keys, never another details' odd-length one)."""
    if prepared is None:
        return (ruling.decision_id, ruling.kind, ruling.cached, tag, rows, protocol)
    return (ruling.decision_id, ruling.kind, ruling.cached, tag, rows, protocol, "", prepared)


def _command_tail(
    ruling: Ruling,
    details: dict[str, Any],
    tails: dict[tuple[Any, ...], str],
    key: tuple[Any, ...] | None = None,
) -> str:
    """A command event's text after its command: decision, verdict and result details.

    Every statement answered from one cached decision with the same kind of result has
    the same tail (the same str object: runs compare it by identity), remembered by
    _tail_key (`key`, when the caller has it). Remembered in the session's own `tails`, not
    the process's table: a decision id is one session's, and a text kept past its session
    would only pin memory the session freed (the allocator cannot give back a page one
    survivor holds)."""
    if key is None:
        key = _tail_key(ruling, details)
    try:
        return tails[key]
    except KeyError:
        pass
    except TypeError:  # a value that cannot be a key: spelt out every time
        key = ()
    text = (
        f'"decision_id":{_quote(ruling.decision_id)},"verdict":"{ruling.kind.wire}",'
        f'"cached":{"true" if ruling.cached else "false"},"details":{_encode(details)}}}'
    )
    if key:
        if len(tails) >= MAX_SESSION_TAILS:
            tails.clear()
        tails[key] = text
    return text


def _response_tail(details: dict[str, Any]) -> str:
    """A response event's text after its time: every execution of one prepared statement
    with the same kind of result has the same (the same str object, so runs compare it
    by identity)."""
    return _remembered(
        ("response", *_details_key(details)),
        lambda: f',"direction":"upstream","type":"response","details":{_encode(details)}}}',
    )


# the counts no statement of a session has had yet (shared: never changed)
_NO_MASKED: tuple[dict[str, int], MaskedCounts] = ({}, MaskedCounts())


class _Run:
    """Events in a row that differ at most in time and command text: the first one's
    time and the text after it, then for each one after it the gap (µs) since the one
    before, as a JSON item: `gap`, or `[gap,"command"]` when its command text differs."""

    __slots__ = ("command", "items", "last", "rest", "size", "tail", "time")

    def __init__(self, now: float, tail: str, command: str | None, rest: str) -> None:
        self.time = self.last = now
        self.tail = tail  # what another event's tail must be (the same object) to extend it
        self.command = command
        self.rest = rest
        self.items: list[str] = []
        self.size = 0  # the text of its items

    def takes(self, tail: str) -> bool:
        """Whether an event with this tail extends the run."""
        return tail is self.tail and len(self.items) < MAX_REPEAT and self.size < MAX_RUN_TEXT

    def again(self, now: float, command: str | None = None) -> None:
        gap = round((now - self.last) * 1_000_000)
        if gap < 0:  # the wall clock stepped back
            gap = 0
        self.last += gap / 1_000_000  # the time a reader will work out: no drift
        item = str(gap) if command == self.command else f"[{gap},{_quote(command or '')}]"
        self.items.append(item)
        self.size += len(item)

    def text(self) -> str:
        if not self.items:
            return f'{{"time":{self.time:.6f}{self.rest}'
        return f'{{"time":{self.time:.6f},"repeat_us":[{",".join(self.items)}]{self.rest}'


class SessionRecorder:
    def __init__(
        self,
        pdp: PDPClient,
        session_id: str,
        enabled: bool = True,
        tick: RecordingTick | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.pdp = pdp
        self.spool = spool  # where batches the PDP cannot take wait (None: the session halts)
        self.refused = False  # the PDP refused a batch: this session's record has a hole
        self.session_id = session_id
        self.tick = tick  # the proxy's shared flush; None: this recorder flushes on its own
        # disabled (benchmarks only): events are dropped, heartbeats still go out
        self.enabled = enabled
        self._pending: list[str] = []
        self._pending_chars = 0  # the text of _pending
        # the last batch number made, and how many of _pending's first events are that
        # batch (0: none made and not yet delivered, spooled or refused): sent again as is
        self.batch_seq = 0
        self._numbered = 0
        self.claim = 0  # spool bytes held for this session's undelivered events
        self._open_run: _Run | None = None  # the last events, alike, not yet in _pending
        # the last command or response, until its masking counts may come: (time, command
        # text or None for a response, ruling or None, details)
        self._held: tuple[float, str | None, Ruling | None, dict[str, Any]] | None = None
        # the last counts given and their recorded shape: statements masked alike share it
        self._last_masked: tuple[dict[str, int], MaskedCounts] = _NO_MASKED
        # this session's command tails (_command_tail), made at its first command
        self._tails: dict[tuple[Any, ...], str] | None = None
        # the last statement() as (decision id, verdict, cached, tag, rows, protocol,
        # prepared statement or None), tail
        self._last_statement: tuple[str, Any, bool, str, int, str, str | None, str] | None = None
        # without a tick, a task of its own flushes on time or when woken (a full batch);
        # with one, a full batch is sent by a short-lived task (_early): an idle session
        # holds no task, coroutine or event of its own
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._early: asyncio.Future[bool] | None = None
        self.failed_batches = 0
        self.dropped = 0
        self.unavailable = False  # the last delivery failed: the session must not go on
        self._last_sent = time.monotonic()
        self._sending = asyncio.Lock()  # one delivery at a time: the tick's or its own

    def start(self) -> None:
        if self.tick is not None:
            self.tick.join(self)
        else:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run())

    def _flush_soon(self) -> None:
        """A full batch goes now, not at the next flush."""
        if self._wake is not None:
            self._wake.set()
        elif self.tick is not None and (self._early is None or self._early.done()):
            self._early = asyncio.ensure_future(self.flush())

    def _add(self, event: dict[str, Any]) -> None:
        if self.enabled:
            self._append(_encode(event))

    def _append(self, text: str) -> None:
        self._seal_run()
        self._enqueue(text)

    def _seal_run(self) -> None:
        """The open run becomes an event in _pending; the next event starts a new one."""
        if self._held is not None:
            self._release()
        run, self._open_run = self._open_run, None
        if run is not None:
            self._enqueue(run.text())

    def _enqueue(self, text: str) -> None:
        if len(self._pending) >= MAX_PENDING:
            # evidence cannot keep up: the session halts (its commands are denied); the
            # first event not in the batch being sent is dropped (that batch keeps its events)
            self.unavailable = True
            self._pending_chars -= len(self._pending.pop(self._numbered))
            self.dropped += 1
        self._pending.append(text)
        self._pending_chars += len(text)
        if len(self._pending) >= MAX_BATCH:
            self._flush_soon()

    def command(self, raw: str, ruling: Ruling, **details: Any) -> None:
        """A statement's command event (held until its masking counts may come)."""
        if not self.enabled:
            return
        if self._held is not None:
            self._release()
        if len(raw) > MAX_EVENT_COMMAND:
            details = {**details, **truncation_facts(raw)}
            raw = raw[:TRUNCATED_PREFIX]
        self._held = (time.time(), raw, ruling, details)

    def statement(
        self,
        raw: str,
        ruling: Ruling,
        tag: str,
        rows: int,
        protocol: str,
        prepared: str | None = None,
    ) -> None:
        """A completed statement's command event with its result as details `tag`, `rows`
        and `protocol` (and `prepared`, the prepared statement an Execute ran, when given)
        and nothing masked in it: what command(raw, ruling, tag=tag, rows=rows,
        protocol=protocol[, prepared=prepared]) records, without holding it (its counts are
        known: none). The hot path: a statement answered like the one before it (the same
        decision object and result) reuses that one's tail and extends its run, with no
        details dict built or looked up (tests/test_recorder_runs holds the two equal)."""
        if not self.enabled:
            return
        if self._held is not None:
            self._release()
        if len(raw) > MAX_EVENT_COMMAND:
            extra = {} if prepared is None else {"prepared": prepared}
            self.command(raw, ruling, tag=tag, rows=rows, protocol=protocol, **extra)
            return
        now = time.time()
        last = self._last_statement
        if (  # what the tail is made of (_command_tail's key): a refilled verdict's too
            last is not None
            and last[0] == ruling.decision_id
            and last[1] is ruling.kind
            and last[2] == ruling.cached
            and last[3] == tag
            and last[4] == rows
            and last[5] == protocol
            and last[6] == prepared
        ):
            tail = last[7]
        else:
            tails = self._tails
            if tails is None:
                tails = self._tails = {}
            # statements whose results alternate (a row filter or a page finds a row or
            # none) look their tails up: one key, _tail_key's for these details
            key = _statement_key(ruling, tag, rows, protocol, prepared)
            known = tails.get(key)
            if known is None:
                details: dict[str, Any] = {"tag": tag, "rows": rows, "protocol": protocol}
                if prepared is not None:
                    details["prepared"] = prepared
                known = _command_tail(ruling, details, tails, key)
            tail = known
            self._last_statement = (
                ruling.decision_id, ruling.kind, ruling.cached, tag, rows, protocol, prepared, tail
            )  # fmt: skip
        run = self._open_run
        if run is not None and tail is run.tail:
            items = run.items
            if len(items) < MAX_REPEAT and run.size < MAX_RUN_TEXT:
                # run.again(now, raw), spelt out
                gap = round((now - run.last) * 1_000_000)
                if gap < 0:  # the wall clock stepped back
                    gap = 0
                run.last += gap / 1_000_000
                item = str(gap) if raw == run.command else f"[{gap},{_quote(raw)}]"
                items.append(item)
                run.size += len(item)
                return
        rest = f',"direction":"client","type":"command","command":{_quote(raw)},{tail}'
        self._start_run(_Run(now, tail, raw, rest))

    def response(self, **details: Any) -> None:
        """A response event (held until its masking counts may come)."""
        if not self.enabled:
            return
        if self._held is not None:
            self._release()
        self._held = (time.time(), None, None, details)

    def masking(self, counts: dict[str, int], decision_id: str) -> None:
        """What masking did to the statement just recorded (per field, derived column or
        detector, how many values): into that statement's event as `details.masked`.
        Counts that follow no held event of that decision are an event of their own, the
        shape recordings had before (the PDP's readers understand both)."""
        if not counts or not self.enabled:
            return
        held = self._held
        if held is not None and MASKED not in held[3]:
            when, raw, ruling, details = held
            of = ruling.decision_id if ruling is not None else details.get("decision_id")
            if of == decision_id:
                given, shaped = self._last_masked
                if counts != given:
                    shaped = MaskedCounts(masked_details(counts))
                    self._last_masked = (dict(counts), shaped)
                if shaped:
                    self._held = (when, raw, ruling, {**details, MASKED: shaped})
                return
        self._add(
            {
                "time": time.time(),
                "direction": "proxy",
                "type": "masking",
                "decision_id": decision_id,
                "details": {"counts": masked_details(counts)},
            }
        )

    def _release(self) -> None:
        """The held event into the open run (extending it) or a run of its own."""
        held, self._held = self._held, None
        assert held is not None
        now, raw, ruling, details = held
        details = _with_masked(details)
        run = self._open_run
        if ruling is None:
            tail = _response_tail(details)
            if run is not None and run.takes(tail):
                run.again(now)
                return
            self._start_run(_Run(now, tail, None, tail))
            return
        # the event every statement makes, spelt out: a third of what encoding its dict
        # costs (a test holds the text to the dict's JSON); time to the microsecond
        tails = self._tails
        if tails is None:
            tails = self._tails = {}
        tail = _command_tail(ruling, details, tails)
        if run is not None and run.takes(tail):
            run.again(now, raw)  # decided and answered like the last: only its text may differ
            return
        rest = f',"direction":"client","type":"command","command":{_quote(raw or "")},{tail}'
        self._start_run(_Run(now, tail, raw, rest))

    def _start_run(self, run: _Run) -> None:
        old, self._open_run = self._open_run, run
        if old is not None:
            self._enqueue(old.text())

    # -- room in the spool ---------------------------------------------------------------

    def owed(self) -> int:
        """Characters of event JSON not delivered yet (the open run's and the held
        event's, near enough)."""
        run, held = self._open_run, self._held
        owed = self._pending_chars
        if held is not None:
            owed += STATEMENT_EVENTS + len(held[1] or "")
        if run is None:
            return owed
        return owed + len(run.rest) + run.size + len(run.items) + 48

    def admit(self, command_chars: int) -> bool:
        """Whether a statement of command_chars characters may run: the spool holds room
        for every event of this session not delivered yet plus the statement's own (more
        is reserved, or what is no longer needed given back). False: no room, the session
        must not run it. Without a spool or recording, always True (nothing to hold)."""
        spool = self.spool
        if spool is None or not self.enabled:
            return True
        # spooled(self.owed()) + statement_room(command_chars), spelt out: asked before every
        # statement (tests/test_recorder holds the two equal)
        owed = self._pending_chars
        held, run = self._held, self._open_run
        if held is not None:
            owed += STATEMENT_EVENTS + len(held[1] or "")
        if run is not None:
            owed += len(run.rest) + run.size + len(run.items) + 48
        chars = command_chars if command_chars < MAX_EVENT_COMMAND else MAX_EVENT_COMMAND
        room = 2 * chars + STATEMENT_EVENTS
        need = (owed + owed // 2 + 64 if owed else 0) + room + room // 2 + 64
        if need > self.claim:
            if not spool.reserve(need - self.claim):
                return False
        elif need < self.claim:
            spool.release(self.claim - need)
        self.claim = need
        return True

    def _give_back(self) -> None:
        """Release the room no longer needed once events left memory (delivered or
        spooled): what is still pending keeps its room."""
        if self.spool is None:
            return
        pending = self._pending or self._open_run or self._held
        need = spooled(self.owed()) if pending else 0
        if need < self.claim:
            self.spool.release(self.claim - need)
            self.claim = need

    def _claim_for(self, batch: list[str]) -> int:
        """The part of this session's room a batch going into the spool uses."""
        return min(self.claim, spooled(sum(map(len, batch))))

    def unenforced(self, ruling: Ruling) -> None:
        """A decision that reached the proxy after it had denied the command at its
        deadline: recorded as not enforced, so the record says what happened."""
        self._add(
            {
                "time": time.time(),
                "direction": "proxy",
                "type": "unenforced",
                "decision_id": ruling.decision_id,
                "verdict": ruling.kind.wire,
                "details": {
                    "reason": "the decision arrived after the proxy's deadline; the command "
                    "was denied and never reached the upstream"
                },
            }
        )

    async def _run(self) -> None:
        # without a tick: on every flush instant, and early when a batch is full
        wake = self._wake
        assert wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), until_next_flush())
            wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Send what is pending now (events added meanwhile wait for the next flush, so
        a busy session sends one batch per interval, not a stream of tiny ones)."""
        async with self._sending:
            self._seal_run()
            if not self._pending and self._heartbeat_due():
                return await self._send([])
            remaining = len(self._pending)
            while remaining > 0:
                batch = self._numbered_batch(remaining)
                if not await self._send(batch):
                    return False
                remaining -= len(batch)
            return True

    def _heartbeat_due(self) -> bool:
        return time.monotonic() - self._last_sent >= HEARTBEAT_SECONDS

    def _due(self) -> list[str] | None:
        """What the tick sends for this session now (an empty batch: a heartbeat), or
        None when nothing is due."""
        self._seal_run()
        if self._pending:
            return self._numbered_batch(MAX_BATCH)
        return [] if self._heartbeat_due() else None

    def _numbered_batch(self, most: int) -> list[str]:
        """The batch to send now: the one numbered before and not settled (the same events
        under the same number), or the first `most` events pending (at most MAX_BATCH)
        under the next number."""
        if not self._numbered:
            self.batch_seq += 1
            self._numbered = min(most, MAX_BATCH, len(self._pending))
        return self._pending[: self._numbered]

    def seq_of(self, batch: list[str]) -> int:
        """The number a batch this recorder made goes under (0: a heartbeat)."""
        return self.batch_seq if batch else 0

    def _queued_behind(self) -> bool:
        """Whether earlier batches of this session wait in the spool (then so must this)."""
        return self.spool is not None and self.spool.holds(self.session_id)

    async def _send(self, batch: list[str]) -> bool:
        if self._queued_behind():
            outcome = UNREACHABLE
        elif self.spool is None:  # nowhere to keep it: stored, or the session halts
            stored = await self.pdp.record(self.session_id, batch, self.seq_of(batch))
            outcome = STORED if stored else UNREACHABLE
        else:
            request = batch_request(self.session_id, batch)
            request.batch_seq = self.seq_of(batch)
            outcome = await self.pdp.deliver(self.session_id, request, len(batch))
        if outcome == UNREACHABLE:
            outcome = (await keep([(self, batch)]))[0]
        return self._settle(batch, outcome)

    def _settle(self, batch: list[str], outcome: str) -> bool:
        """After a delivery: drop what was stored or spooled, or halt the session."""
        if outcome in (STORED, SPOOLED):
            self._drop(batch)
            self.unavailable = self.refused
            if outcome == STORED:
                self._last_sent = time.monotonic()
            return True
        self.failed_batches += 1
        if outcome == REFUSED:
            # the PDP will never take it: it is logged there, and the session stops
            self._drop(batch)
            self.refused = True
        self.unavailable = True
        return False

    def _drop(self, batch: list[str]) -> None:
        """The batch (the first of _pending) has left memory; its room goes back."""
        if batch:
            self._numbered = 0  # (the next batch is made under the next number)
        del self._pending[: len(batch)]
        self._pending_chars -= sum(map(len, batch))
        self._give_back()

    async def close(self) -> None:
        if self.tick is not None:
            self.tick.leave(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._early is not None:
            with contextlib.suppress(Exception):
                await self._early
        await self.flush()
        if self.spool is not None:  # what is left undelivered now is lost anyway
            self.spool.release(self.claim)
            self.claim = 0


def sealed(pdp: PDPClient, entry: Entry) -> Entry:
    """A batch's entry with its seal (proxies.runtime.spool): what delivers it should this
    process die with the session's key."""
    return replace(entry, seal=pdp.seal(entry.session_id, "RecordEvents", entry.events_request()))


async def keep(taken: list[tuple[SessionRecorder, list[str]]]) -> list[str]:
    """Batches the PDP could not take, into their sessions' spools (one fsync per spool):
    SPOOLED for each kept (a heartbeat keeps nothing and needs no spool), UNREACHABLE for
    each that could not be."""
    outcomes = [SPOOLED if not batch else UNREACHABLE for _, batch in taken]
    by_spool: dict[Spool, list[int]] = {}
    for i, (recorder, batch) in enumerate(taken):
        if batch and recorder.spool is not None:
            by_spool.setdefault(recorder.spool, []).append(i)
    for spool, indexes in by_spool.items():
        entries = [
            sealed(
                taken[i][0].pdp,
                Entry(
                    taken[i][0].session_id,
                    events="[" + ",".join(taken[i][1]) + "]",
                    seq=taken[i][0].seq_of(taken[i][1]),
                ),
            )
            for i in indexes
        ]
        # each batch is written against its session's room (what it holds moves into the
        # file); taken out now, so an admission meanwhile does not count it twice
        claims = [taken[i][0]._claim_for(taken[i][1]) for i in indexes]
        for i, claim in zip(indexes, claims, strict=True):
            taken[i][0].claim -= claim
        try:
            await spool.add(entries, claim=sum(claims))
        except SpoolFull as exc:
            for i, claim in zip(indexes, claims, strict=True):
                taken[i][0].claim += claim
            log.error("%d sessions halted: %s", len(indexes), exc)
            continue
        for i in indexes:
            outcomes[i] = SPOOLED
    return outcomes


class RecordingTick:
    """The flush of every recording of one proxy: on each tick, the pending events of all
    its sessions go to the PDP in one RecordBatches call, which the PDP stores in one
    commit. A session whose batch was not stored is marked unavailable, as with its own
    flush; a recorder that is already sending (a full batch, its close) waits a tick."""

    def __init__(self, pdp: PDPClient) -> None:
        self.pdp = pdp
        self._members: dict[SessionRecorder, None] = {}  # in the order sessions opened
        self._task: asyncio.Task[None] | None = None

    def join(self, recorder: SessionRecorder) -> None:
        self._members[recorder] = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def leave(self, recorder: SessionRecorder) -> None:
        self._members.pop(recorder, None)

    async def _run(self) -> None:
        while self._members:
            await asyncio.sleep(until_next_flush())
            await self.flush()

    async def flush(self) -> None:
        taken: list[tuple[SessionRecorder, list[str]]] = []
        for recorder in list(self._members):
            if recorder._sending.locked():
                continue
            batch = recorder._due()
            if batch is not None:
                await recorder._sending.acquire()  # free, so this does not wait
                taken.append((recorder, batch))
        if not taken:
            return
        outcomes = [UNREACHABLE] * len(taken)  # what counts if the call itself fails
        try:
            direct = [i for i, (r, _) in enumerate(taken) if not r._queued_behind()]
            if direct:
                batches: list[Numbered] = [
                    (taken[i][0].session_id, taken[i][1], taken[i][0].seq_of(taken[i][1]))
                    for i in direct
                ]
                if any(taken[i][0].spool is not None for i in direct):
                    answers = await self.pdp.record_batches_outcomes(batches)
                else:  # nowhere to keep a batch: stored, or its session halts
                    stored = await self.pdp.record_batches(batches)
                    answers = [STORED if ok else UNREACHABLE for ok in stored]
                for i, outcome in zip(direct, answers, strict=True):
                    outcomes[i] = outcome
            failed = [i for i, outcome in enumerate(outcomes) if outcome == UNREACHABLE]
            for i, outcome in zip(failed, await keep([taken[i] for i in failed]), strict=True):
                outcomes[i] = outcome
        finally:
            for (recorder, batch), outcome in zip(taken, outcomes, strict=True):
                recorder._settle(batch, outcome)
                recorder._sending.release()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
