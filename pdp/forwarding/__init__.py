"""Forwarding audit records to a SIEM: every record, once per sink, in seq order, never lost.

Owns the `Sink` interface, the registry of sink types and the `Forwarder` that drives one
sink. A forwarder reads undelivered records from the audit store (the store is the
durable spool; see spool.py), hands them to its sink in batches in seq order, and records
the last delivered seq only after the sink accepted the batch. While a sink is down it
retries with exponential backoff; the records wait in the store, so nothing is dropped
however long the outage lasts.

Guarantee: at-least-once, in order, no gaps. A batch is sent again only when its delivery
was not confirmed (the PDP stopped or crashed mid-batch, or a TCP syslog connection turned
out closed after the write); every message carries its `seq` and `hash` so receivers can
drop such a repeat (by both: after records were cut from the store's end, the PDP's next
records come again at seqs sent before, with other hashes; spool.py). With several PDP
replicas on one Postgres store, configure forwarding on one.

Sink types register here (`SINK_TYPES`); adding one is a module with a class that takes
its `ForwarderSettings` and implements `send`, `reset` and `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pdp.store import AuditRecord, AuditStore, StoreUnavailable
from pdp.store.chain import canonical_json

if TYPE_CHECKING:
    from portcullis.config import ForwarderSettings

__all__ = ["Forwarder", "Sink", "SinkUnavailable", "build_forwarders", "record_json"]

log = logging.getLogger("portcullis.forwarding")


class SinkUnavailable(Exception):
    """The sink did not (provably) accept a batch; it will be sent again."""


class Sink(Protocol):
    @property
    def description(self) -> str: ...

    async def send(
        self, records: list[AuditRecord], unverified: frozenset[int] = frozenset()
    ) -> None:
        """Deliver a batch in order; return only once it is accepted, else raise
        SinkUnavailable. Records whose seq is in `unverified` say so (record_json)."""
        ...

    async def reset(self) -> None:
        """Drop a connection that failed, so the next send starts afresh."""
        ...

    async def close(self) -> None: ...


# what a forwarded record not written by a PDP holding the record key carries (`unverified`)
UNVERIFIED = "no valid record MAC: not written by a PDP holding the key (INSERTed into the store?)"


def record_json(record: AuditRecord, unverified: bool = False) -> str:
    """The record as forwarded: every field of the chain, canonical JSON, `time` in seconds;
    with `unverified` (UNVERIFIED) when no record MAC vouches for it (pdp.store.macs)."""
    fields = {
        "seq": record.seq,
        "id": record.id,
        "kind": record.kind,
        "time": record.time,
        "session_id": record.session_id,
        "subject": record.subject,
        "body": record.body,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }
    if unverified:
        fields["unverified"] = UNVERIFIED
    return canonical_json(fields)


def _syslog(settings: ForwarderSettings) -> Sink:
    from pdp.forwarding.syslog import SyslogSink

    return SyslogSink(settings)


def _http(settings: ForwarderSettings) -> Sink:
    from pdp.forwarding.http import HTTPSink

    return HTTPSink(settings)


SINK_TYPES: dict[str, Callable[[ForwarderSettings], Sink]] = {"syslog": _syslog, "http": _http}


class Forwarder:
    """Drives one sink: spool → batch → send → commit, retrying with backoff."""

    def __init__(
        self,
        settings: ForwarderSettings,
        store: AuditStore,
        *,
        sink: Sink | None = None,
        poll_seconds: float = 0.5,
        retry_initial_seconds: float = 0.5,
        gap_grace_seconds: float = 10.0,
    ) -> None:
        from pdp.forwarding.spool import Spool

        self.settings = settings
        self.store = store
        self.sink = sink or SINK_TYPES[settings.type](settings)
        self.poll_seconds = poll_seconds
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = float(settings.retry_max_seconds)
        self.spool = Spool(
            store, settings.state_file, settings.name, gap_grace_seconds=gap_grace_seconds
        )
        self.failures = 0  # failed delivery attempts since start (for tests and metrics)
        self.last_error = ""
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def delivered_seq(self) -> int:
        return self.spool.delivered_seq

    async def start(self) -> None:
        """Begin forwarding in the background; a sink that is down does not stop this."""
        if self._task is not None:
            return
        await self.spool.check_origin()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"forwarder-{self.settings.name}")
        log.info(
            "forwarding audit records to %s from seq %d",
            self.sink.description,
            self.delivered_seq + 1,
        )

    def notify(self) -> None:
        """New records were appended: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self, grace: float = 2.0) -> None:
        """Deliver what is pending for up to `grace` seconds, then stop; the rest waits in
        the store for the next start."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(task, grace)
            except TimeoutError:
                pass  # wait_for cancelled it; the unconfirmed batch is resent next start
            except Exception:
                log.exception("forwarder %s failed", self.settings.name)
        await self.sink.close()

    async def _run(self) -> None:
        delay = self.retry_initial_seconds
        while True:
            try:
                moved = await self.deliver_once()
            except (SinkUnavailable, StoreUnavailable) as exc:
                self.failures += 1
                self.last_error = str(exc)
                log.warning(
                    "forwarding to %s failed (%s); retrying in %.1fs",
                    self.sink.description,
                    exc,
                    delay,
                )
                await self.sink.reset()
                if self._stopping:
                    return
                await self._sleep(delay)
                delay = min(delay * 2, self.retry_max_seconds)
                continue
            delay = self.retry_initial_seconds
            if not moved:
                if self._stopping:
                    return
                await self._sleep(self.poll_seconds)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def deliver_once(self) -> int:
        """Send the next batch; returns how many records the delivered seq moved by."""
        records = await self.spool.pending(self.settings.batch_size)
        if not records:
            return 0
        kinds = self.settings.kinds
        wanted = [r for r in records if r.kind in kinds] if kinds else records
        if wanted:
            await self.sink.send(wanted, await self.spool.unverified(wanted))
        self.spool.commit(records[-1])
        return len(records)


def build_forwarders(settings: tuple[ForwarderSettings, ...], store: AuditStore) -> list[Forwarder]:
    """One forwarder per configured sink (the composition root calls this)."""
    return [Forwarder(s, store) for s in settings]
