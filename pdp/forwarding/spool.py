"""The forwarding spool: the audit store itself, plus one small delivery-state file per sink.

Owns the answer to "what has this sink already received?". Records are never copied into
a second queue: the hash-chained store is durable already, so a sink that is down for a
day costs nothing but a growing gap between the store's head and the sink's state. The
state file holds the seq (and hash) of the last record the sink accepted; it is replaced
by write-to-temp, fsync, rename, fsync-the-directory, so a crash leaves either the old
state or the new one, never a torn file.

Delivery is at-least-once: state is saved only after the sink accepted a batch, so a
crash between the two resends that batch. Every message carries its seq so a receiver
can drop the duplicate. No sockets here; the sinks live in syslog.py and http.py.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from pdp.evidence.checkpoints import not_written_by_pdp
from pdp.store import AuditRecord, AuditStore

log = logging.getLogger("portcullis.forwarding")

STATE_VERSION = 1
DELIVERED_KEPT = 1024  # batch ends remembered to resume from after a cut tail


class SpoolStateError(Exception):
    """The state file exists but cannot be read; forwarding must not guess where to resume."""


@dataclass(frozen=True)
class DeliveryState:
    seq: int = 0  # last audit seq the sink accepted; 0 means nothing yet
    hash: str = ""  # that record's chain hash, to notice a store that was replaced


def load_state(path: Path) -> DeliveryState:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return DeliveryState()
    except OSError as exc:
        raise SpoolStateError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = json.loads(text)
        return DeliveryState(seq=int(raw["delivered_seq"]), hash=str(raw.get("delivered_hash", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise SpoolStateError(f"{path}: not a forwarding state file ({exc})") from None


def save_state(path: Path, sink: str, state: DeliveryState) -> None:
    """Durably replace the state file (temp file, fsync, rename, fsync the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(
        {
            "version": STATE_VERSION,
            "sink": sink,
            "delivered_seq": state.seq,
            "delivered_hash": state.hash,
            "updated_at": time.time(),
        }
    ).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Spool:
    """Undelivered records of one sink, read from the store in seq order.

    `pending()` returns only a gapless run after the delivered seq. A missing seq is
    normally a transaction another PDP replica has not committed yet, so the spool waits;
    if the gap outlives `gap_grace_seconds` the record is gone (`audit verify` will name
    it) and forwarding moves past it rather than stall for ever.
    """

    def __init__(
        self,
        store: AuditStore,
        state_file: Path,
        sink: str,
        *,
        gap_grace_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.state_file = state_file
        self.sink = sink
        self.gap_grace_seconds = gap_grace_seconds
        self.state = load_state(state_file)
        self._gap_since: float | None = None
        # the states before the last (batch ends): where to resume after a cut tail
        self._delivered: deque[DeliveryState] = deque(maxlen=DELIVERED_KEPT)

    @property
    def delivered_seq(self) -> int:
        return self.state.seq

    async def check_origin(self) -> None:
        """Start over if the store no longer holds the record the state file names.

        That happens when the store was replaced by a new, shorter or different chain:
        resuming at the old seq would silently skip the new chain's first records.
        """
        if self.state.seq == 0:
            return
        found = await self.store.query(after_seq=self.state.seq - 1, limit=1)
        if found and found[0].seq == self.state.seq and found[0].hash == self.state.hash:
            return
        log.error(
            "forwarding %s: the audit store no longer holds record %d that was delivered last"
            " (a different store?); delivering this store's chain from its start",
            self.sink,
            self.state.seq,
        )
        self.state = DeliveryState()

    async def pending(self, limit: int) -> list[AuditRecord]:
        """The next undelivered records, consecutive from `delivered_seq + 1`.

        Read with the record delivered last, which must still be there, unchanged: when
        someone cut records from the store's end (DELETE, or the SQLite file), the PDP
        writes its next records at seqs delivered before, and reading on after the
        delivered seq would never send them (nor anything until the chain grew past it)."""
        if self.state.seq:
            records = await self.store.query(after_seq=self.state.seq - 1, limit=limit + 1)
            if (
                not records
                or records[0].seq != self.state.seq
                or (self.state.hash and records[0].hash != self.state.hash)
            ):
                await self._rewind()
                return []
            records = records[1:]
        else:
            records = await self.store.query(after_seq=0, limit=limit)
        expected = self.state.seq + 1
        if records and records[0].seq != expected:
            if self._gap_since is None:
                self._gap_since = time.monotonic()
            if time.monotonic() - self._gap_since < self.gap_grace_seconds:
                return []
            log.error(
                "forwarding %s: audit records %d..%d are missing from the store; skipping them",
                self.sink,
                expected,
                records[0].seq - 1,
            )
            expected = records[0].seq
        self._gap_since = None
        run = []
        for record in records:
            if record.seq != expected:
                break  # deliver up to the gap; the next call waits for it
            run.append(record)
            expected += 1
        return run

    async def unverified(self, records: list[AuditRecord]) -> frozenset[int]:
        """The seqs of `records` that no record MAC vouches for: records someone who may
        INSERT into the store appended, which a SIEM must not take for the PDP's."""
        return frozenset(await not_written_by_pdp(self.store, records))

    def commit(self, last: AuditRecord) -> None:
        """Remember that the sink accepted everything up to and including `last`."""
        self._delivered.append(self.state)
        self.state = DeliveryState(seq=last.seq, hash=last.hash)
        save_state(self.state_file, self.sink, self.state)

    async def _rewind(self) -> None:
        """The store no longer holds the record delivered last: resume after the newest
        record delivered before (a batch's last) that it still holds unchanged, else from
        the chain's start (as check_origin). What follows is sent again: the records the
        PDP wrote at seqs the sink had (their hash and prev_hash differ from the first)."""
        gone, self.state = self.state, DeliveryState()
        while self._delivered:
            earlier = self._delivered.pop()
            if earlier.seq == 0:
                break
            found = await self.store.query(after_seq=earlier.seq - 1, limit=1)
            if found and (found[0].seq, found[0].hash) == (earlier.seq, earlier.hash):
                self.state = earlier
                break
        if self.state.seq == 0:
            self._delivered.clear()
        log.error(
            "forwarding %s: the audit store no longer holds record %d as delivered: records"
            " were cut from its end (or rewritten); delivering again from seq %d, where the"
            " PDP may have written new records at seqs delivered before",
            self.sink,
            gone.seq,
            self.state.seq + 1,
        )
        save_state(self.state_file, self.sink, self.state)
