"""Session recordings through the gRPC API: RecordEvents and RecordBatches.

Owns what the DecisionService does with a proxy's batches of session events: each is
checked (the session exists, belongs to the calling proxy and is open; events well
formed, a command too long cut and said so, never the batch refused for it), then
appended as one hash-chained `session.events` record. RecordBatches answers each batch
on its own, and appends the kept ones together so the store commits them in one go.

A numbered batch (batch_seq, pdp.domain.batch_numbers) is stored once: the same number
with the same events sent again (a retry after a timeout whose first send was stored,
while it is still being stored too, or a spool delivered again, to this PDP or another
replica of its store: the record's id is the batch's own, batch_record_id, which the store
takes once) is answered as taken (`replayed`) and not recorded a second time, so a retry
neither doubles the evidence nor looks like tampering. The same number with other
events is stored (audit verify names a number two batches hold): a holder of the proxy's
credential sending a number first must not have the proxy's own batch of that number
dropped as a retry. The events of the last REMEMBERED numbers of a session are remembered
(a digest) to tell the two apart; a number older than those is looked up by its id. The
numbers a session's records hold are read from the store the first time a session found
again (a PDP restarted) sends one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import struct_pb2

from pdp.api.proxy_auth import ProxyIdentity
from pdp.api.session_keys import standing
from pdp.domain.batch_numbers import (
    BATCH_SEQ,
    MAX_BATCH_SEQ,
    BatchNumbers,
    batch_seq_of,
    digest,
)
from pdp.domain.recordings import (
    EVENTS_KIND,
    RECEIVED,
    MalformedEvents,
    bounded_batch_times,
    kind_refusal,
    terminal_refusal,
    time_refusal,
    unheld,
)
from pdp.domain.sessions import FROM_SPOOL, REAPED_REASONS, Session, SessionTable
from pdp.store import AuditStore, DuplicateRecordId, StoreUnavailable
from pdp.store.chain import canonical_json
from portcullis.events import truncation_facts
from portcullis.v1 import pdp_pb2

MAX_COMMAND_BYTES = 1024 * 1024
# A Decide's command.attributes on the wire: what the proxy knows of a command besides its
# text (a statement's protocol and parameters, the database's catalogue facts: kilobytes
# for a database of many views; an HTTP request's head, inspected body and its runs of
# words and of base64 words, each list bounded by proxies.http.request_words: under 1 MiB
# in all) are written into its decision's record, so they are bounded as the text is
# (else a caller could make every record of a session 4 MiB, the gRPC message limit)
MAX_ATTRIBUTES_BYTES = 2 * 1024 * 1024
MAX_EVENTS_PER_CALL = 1000
REMEMBERED = 256  # a session's last batch numbers whose events' digest is kept

# DecisionService.refuse: record a refused session call, then abort it
Refuse = Callable[..., Awaitable[None]]


def event_details(event: pdp_pb2.SessionEvent) -> dict[str, Any]:
    """An event's details: details_json when the proxy sent it, else the Struct."""
    if event.details_json:
        try:
            details = json.loads(event.details_json)
        except (ValueError, RecursionError):
            return {"malformed_details": True}
        return details if isinstance(details, dict) else {"malformed_details": True}
    return struct_to_dict(event.details) if event.HasField("details") else {}


def _event_dict(event: pdp_pb2.SessionEvent) -> dict[str, Any]:
    details = event_details(event)
    if len(event.command) > MAX_COMMAND_BYTES:  # kept, cut, and said so: never refused
        details.update(truncation_facts(event.command))
    return {
        "time": event.time,
        "direction": event.direction[:32],
        "type": event.type[:32],
        "decision_id": event.decision_id[:64],
        "verdict": event.verdict[:32],
        "cached": event.cached,
        "command": event.command[:MAX_COMMAND_BYTES],
        "details": details,
    }


def struct_to_dict(message: struct_pb2.Struct | None) -> dict[str, Any]:
    """A Struct as plain Python values (what json_format.MessageToDict gives, faster)."""
    if message is None:
        return {}
    return {key: _plain(value) for key, value in message.fields.items()}


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    return None  # null_value, or a Value with nothing set


class OversizedStruct(ValueError):
    """A Struct larger on the wire than StructMemo's bound: neither decoded nor kept."""

    def __init__(self, size: int, sha256: str) -> None:
        super().__init__(f"{size} bytes")
        self.size, self.sha256 = size, sha256


class StructMemo:
    """struct_to_dict() for Structs that come again and again, remembered by their bytes,
    with what `key_of(kind, value)` makes of them (the Decide's reuse key) and their
    canonical JSON (pdp.store.chain: what the decision record holds of them).

    A proxy sends a Postgres statement's attributes with the database's catalogue facts
    (view columns, relation sources, shadowed built-ins: a kilobyte or more for a database
    with views), the same for every statement of a session: turning them into Python
    values node by node cost 70 us per decision for 20 views, their reuse key 18 us, and
    their canonical JSON in the record 12-15 us. A Struct of at least `min_bytes` is
    looked up by its serialized bytes (serialized once: ByteSize() costs a serialization
    of its own), and a hit is made afresh from the JSON text kept of it (json.loads: new
    objects every time, so no caller can change what another gets; floats, strings, bools
    and nulls come back equal); its key for a kind and its canonical JSON are kept beside
    it (functions of the value alone, so equal bytes give the same ones). Smaller or
    larger ones (beyond `max_bytes`) are converted as before, with no canonical JSON
    ("": the record encodes them). At most `entries` kept, the least recently used
    dropped first. One past `bound` bytes is not decoded at all (OversizedStruct: its size
    and the SHA-256 of its deterministic serialization)."""

    def __init__(
        self,
        key_of: Callable[[str, dict[str, Any]], str],
        entries: int = 128,
        min_bytes: int = 128,
        max_bytes: int = 65536,
        bound: int = MAX_ATTRIBUTES_BYTES,
    ) -> None:
        self.key_of = key_of
        self.entries = entries
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.bound = bound
        # bytes -> (the value's JSON text, {kind: key}, its canonical JSON or "")
        self._texts: OrderedDict[bytes, tuple[str, dict[str, str], str]] = OrderedDict()

    def decode(self, message: struct_pb2.Struct, kind: str) -> tuple[dict[str, Any], str, str]:
        """The Struct as plain values (struct_to_dict), key_of(kind, them) and their
        canonical JSON ("" when not remembered, or when they have none: NaN, infinity).
        Raises OversizedStruct past the bound."""
        wire = message.SerializeToString()
        if len(wire) > self.bound:
            digest = hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()
            raise OversizedStruct(len(wire), digest)
        if len(wire) < self.min_bytes or len(wire) > self.max_bytes:
            value = struct_to_dict(message)
            return value, self.key_of(kind, value), ""
        texts = self._texts
        held = texts.get(wire)
        if held is not None:
            texts.move_to_end(wire)
            loaded: dict[str, Any] = json.loads(held[0])
            key = held[1].get(kind)
            if key is None:
                key = held[1][kind] = self.key_of(kind, loaded)
            return loaded, key, held[2]
        value = struct_to_dict(message)
        key = self.key_of(kind, value)
        try:
            canonical = canonical_json(value)
        except ValueError:  # NaN or infinity: the record refuses them as it always did
            canonical = ""
        texts[wire] = (json.dumps(value, separators=(",", ":")), {kind: key}, canonical)
        if len(texts) > self.entries:
            texts.popitem(last=False)
        return value, key, canonical


class SessionEventBatches:
    """The recording RPCs' work, for the DecisionService to delegate to."""

    def __init__(self, store: AuditStore, sessions: SessionTable, refuse: Refuse) -> None:
        self.store = store
        self.sessions = sessions
        self.refuse = refuse

    async def record_events(
        self, request: pdp_pb2.RecordEventsRequest, proxy: ProxyIdentity, context: Any
    ) -> pdp_pb2.RecordEventsResponse:
        try:
            kept = await self._checked(request, proxy, context)
            record_id, replayed = await kept.stored()
        except _BatchRefused as refused:
            await context.abort(refused.code, refused.message)
            raise AssertionError("unreachable") from None
        return pdp_pb2.RecordEventsResponse(
            recorded=kept.count, decision_id=record_id, replayed=replayed
        )

    async def record_batches(
        self, request: pdp_pb2.RecordBatchesRequest, proxy: ProxyIdentity, context: Any
    ) -> pdp_pb2.RecordBatchesResponse:
        """Each batch checked and answered on its own; the stored ones are appended
        together, so the store's group commit writes them in one transaction."""
        checked: list[_KeptBatch | _BatchRefused] = []
        for batch in request.batches:
            try:
                checked.append(await self._checked(batch, proxy, context))
            except _BatchRefused as refused:
                checked.append(refused)

        async def outcome(item: _KeptBatch | _BatchRefused) -> pdp_pb2.RecordBatchResult:
            if isinstance(item, _BatchRefused):
                return pdp_pb2.RecordBatchResult(error=item.message)
            try:
                record_id, replayed = await item.stored()
            except _BatchRefused as refused:
                return pdp_pb2.RecordBatchResult(error=refused.message)
            return pdp_pb2.RecordBatchResult(
                recorded=item.count, decision_id=record_id, replayed=replayed
            )

        results = await asyncio.gather(*(outcome(item) for item in checked))
        return pdp_pb2.RecordBatchesResponse(results=results)

    async def _checked(
        self, request: pdp_pb2.RecordEventsRequest, proxy: ProxyIdentity, context: Any
    ) -> _KeptBatch:
        """A session's batch checked and ready to store; _BatchRefused says why not: from
        a proxy that did not open the session (recorded), or for a session its proxy
        closed (events after the PDP itself ended it, a proxy lost, are still taken), or
        with a time no clock gives (pdp.domain.recordings.time_refusal). The PDP's own
        time of receipt is kept in the record (RECEIVED, hashed with the events), for
        readers to weigh the proxy's times against."""
        received = time.time()
        if not request.session_id:
            raise _BatchRefused(grpc.StatusCode.INVALID_ARGUMENT, "session_id: required")
        if len(request.events) > MAX_EVENTS_PER_CALL:
            raise _BatchRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"events: more than {MAX_EVENTS_PER_CALL} in one call",
            )
        try:
            session = await self.sessions.find(request.session_id, include_closed=True)
        except StoreUnavailable:
            raise _BatchRefused(grpc.StatusCode.UNAVAILABLE, "audit store unavailable") from None
        if session is None:
            raise _BatchRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {request.session_id[:64]!r} is unknown",
            )
        why, keyed = bound_refusal(session, proxy), False
        if not why:
            why, keyed = standing(self.sessions, session, "RecordEvents", request)
        if why:
            await self.refuse(
                _Refusing(context),
                "RecordEvents",
                grpc.StatusCode.PERMISSION_DENIED,
                why,
                proxy,
                session.id,
            )
        if keyed:  # (a spooled delivery under its seal is no word from a live proxy)
            self.sessions.heard_from(session)
        if session.closed and session.closed_reason not in REAPED_REASONS:
            raise _BatchRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {request.session_id[:64]!r} is closed",
            )
        if request.events_json:
            try:
                count, text, times = bounded_batch_times(
                    request.events_json, MAX_EVENTS_PER_CALL, MAX_COMMAND_BYTES
                )
            except MalformedEvents as exc:
                raise _BatchRefused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            body: dict[str, Any] = {"events_json": text, "count": count}
        else:
            count = len(request.events)
            for i, event in enumerate(request.events):
                why = kind_refusal(event.direction, event.type, event.verdict)
                if why:
                    raise _BatchRefused(grpc.StatusCode.INVALID_ARGUMENT, f"events[{i}].{why}")
            times = [event.time for event in request.events]
            body = {"events": [_event_dict(event) for event in request.events]}
            for i, event in enumerate(body["events"]):
                why = unheld(event) or terminal_refusal(event["details"])
                if why:
                    raise _BatchRefused(grpc.StatusCode.INVALID_ARGUMENT, f"events[{i}]: {why}")
            try:  # (the store keeps JSON: NaN or an infinity in a time or a detail is none)
                json.dumps(body, allow_nan=False)
            except ValueError:
                why = "events: a time or detail is not a finite number"
                raise _BatchRefused(grpc.StatusCode.INVALID_ARGUMENT, why) from None
        why = time_refusal(times, received)
        if why:
            raise _BatchRefused(grpc.StatusCode.INVALID_ARGUMENT, why)
        body[RECEIVED] = round(received * 1_000_000)
        if not keyed:
            body[FROM_SPOOL] = True
        number = request.batch_seq
        if number > MAX_BATCH_SEQ:
            raise _BatchRefused(grpc.StatusCode.INVALID_ARGUMENT, "batch_seq: out of range")
        kept = _KeptBatch(self.store, session, body, count, request.events_json != "")
        if number and count:
            body[BATCH_SEQ] = number
            kept.number = number
            kept.numbers = await self._numbers(session)
        return kept

    async def _numbers(self, session: Session) -> _Numbers:
        """The session's batch numbers stored so far (read from the store the first time
        for a session this PDP did not open)."""
        numbers = session.batch_numbers
        if isinstance(numbers, _Numbers):
            return numbers
        if numbers is None:
            try:
                records = await self.store.query(kind=EVENTS_KIND, session_id=session.id)
            except StoreUnavailable:
                raise _BatchRefused(
                    grpc.StatusCode.UNAVAILABLE, "audit store unavailable"
                ) from None
            taken = [n for n in (batch_seq_of(r.body) for r in records) if n]
            if isinstance(session.batch_numbers, _Numbers):  # (read meanwhile by another)
                return session.batch_numbers
            made = _Numbers(taken)
            for record in records[-REMEMBERED:]:
                if batch_seq_of(record.body):
                    made.remember(batch_seq_of(record.body), digest(record.body))
        else:
            made = _Numbers()  # opened here: none stored yet
        session.batch_numbers = made
        return made


class _Refusing:
    """A context whose abort refuses one batch (RecordBatches answers the others)."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def peer(self) -> str:
        return peer_of(self._context)

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise _BatchRefused(code, details)


def batch_record_id(session_id: str, number: int, events: bytes) -> str:
    """The id of the record of a session's numbered batch of these events (digest): the
    same batch sent again, to whichever PDP of a shared store, has the same id, which the
    store takes once; another batch under that number (other events) has another."""
    named = hashlib.sha256(f"{session_id}\n{number}\n".encode() + events).hexdigest()
    return f"batch-{named[:40]}"


def bound_refusal(session: Session, proxy: ProxyIdentity) -> str:
    """Why `proxy` may not speak for `session` ("" when it may): it must be the proxy that
    opened it AND still serve its connection. The identity key is the proxy's method and
    name alone: two proxies of different zones under one name (one certificate CN for all,
    zones told apart by their connections; two credentials named alike) share it."""
    if session.proxy != proxy.key:
        return "the session belongs to another proxy"
    if not proxy.serves(str(session.connection.get("name", ""))):
        return f"proxy {proxy.name!r} does not serve the session's connection"
    return ""


def peer_of(context: Any) -> str:
    """The caller's address as gRPC names it ('' when the context cannot say)."""
    try:
        return str(context.peer() or "")
    except (AttributeError, NotImplementedError):
        return ""


class _BatchRefused(Exception):
    """A batch of events that is not stored: the status RecordEvents answers, and why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Numbers(BatchNumbers):
    """A session's batch numbers at the PDP, with those being stored now (a number sent
    again meanwhile waits for its outcome)."""

    __slots__ = ("digests", "storing")

    def __init__(self, taken: list[int] | None = None) -> None:
        super().__init__(taken)
        self.storing: dict[int, asyncio.Future[None]] = {}
        # the last REMEMBERED numbers' events stored (a number two batches hold: both)
        self.digests: OrderedDict[int, tuple[bytes, ...]] = OrderedDict()

    def remember(self, number: int, events: bytes) -> None:
        self.digests[number] = (*self.digests.get(number, ()), events)[-4:]
        self.digests.move_to_end(number)
        if len(self.digests) > REMEMBERED:
            self.digests.popitem(last=False)


class _KeptBatch:
    """A checked batch of one session's events, waiting to be appended."""

    def __init__(
        self, store: AuditStore, session: Session, body: dict[str, Any], count: int, plain: bool
    ) -> None:
        self.store, self.session, self.body = store, session, body
        self.count, self.plain = count, plain
        self.number = 0  # its batch_seq (0: not numbered)
        self.numbers: _Numbers | None = None

    async def stored(self) -> tuple[str, bool]:
        """Append it: the record's id once committed ("" for a heartbeat: nothing to keep),
        and whether its number was stored before (then nothing is appended)."""
        if not self.count:
            return "", False
        numbers, number = self.numbers, self.number
        if numbers is None:
            return await self._appended(), False
        while (held := numbers.storing.get(number)) is not None:
            await asyncio.shield(held)  # the same number being stored: its outcome first
        events = digest(self.body)
        if numbers.has(number):
            if events in numbers.digests.get(number, ()):
                return "", True
            try:  # other events (or unknown: older than those remembered): stored
                record_id = await self._appended(batch_record_id(self.session.id, number, events))
            except DuplicateRecordId:
                return "", True
            numbers.remember(number, events)
            return record_id, False
        numbers.take(number)
        done = numbers.storing[number] = asyncio.get_running_loop().create_future()
        try:
            # its record's id is its own (session, number, events): a replica that took it
            # first (the proxy's send moved there, its answer lost) has the store refuse it
            # here as a record already in the chain, which this PDP's numbers could not tell
            record_id = await self._appended(batch_record_id(self.session.id, number, events))
        except DuplicateRecordId:
            numbers.remember(number, events)
            return "", True
        except BaseException:
            numbers.give_back(number)
            raise
        else:
            numbers.remember(number, events)
            return record_id, False
        finally:
            del numbers.storing[number]
            done.set_result(None)

    async def _appended(self, record_id: str | None = None) -> str:
        try:
            record = await self.store.append(
                EVENTS_KIND,
                self.body,
                id=record_id,
                session_id=self.session.id,
                subject=self.session.identity.subject,
                plain=self.plain,
            )
        except StoreUnavailable as exc:
            raise _BatchRefused(
                grpc.StatusCode.UNAVAILABLE, f"recording unavailable: {exc}"
            ) from None
        return record.id
