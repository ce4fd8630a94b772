"""Signed checkpoints of the chain head, and signed credential statements.

Owns the two record kinds the PDP signs:

- `checkpoint`: body is a signed document whose payload names the chain head
  (`seq`, `hash`) at a moment. Written every interval while the head moves, and once at
  shutdown. A later rewrite of any record up to `seq` (even one that re-chains every hash
  after it) no longer matches the signed hash, and without the private key it cannot be
  re-signed. The newest checkpoint is also written to an *anchor file* outside the store,
  so deleting records from the end of the chain (which leaves a valid, shorter chain) is
  caught by `portcullis audit verify`. An anchor the chain no longer reaches is kept,
  never replaced by the head of the shorter chain the PDP then writes on.
- `credential.statement`: at session close, the proxy's finding on whether any form of
  the upstream secret reached the client, signed, so it verifies with the public key alone.

It only appends through `AuditStore.append()`; it never decides or alters anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdp.evidence.event_times import EventTimes
from pdp.evidence.rotation import (
    ROTATION_KIND,
    KeyHistory,
    as_history,
    key_history,
    read_rotation,
    trusted_retired_problem,
)
from pdp.evidence.signing import Signer, signature_problem
from pdp.plumbing.rendering import inert
from pdp.plumbing.timestamps import rfc3339
from pdp.store import (
    TAIL_CUT_KIND,
    AuditRecord,
    AuditStore,
    ChainReport,
    GroupCommitStore,
    StoreUnavailable,
)
from pdp.store.macs import describe_ranges, merged_spans, uncovered, valid_spans

log = logging.getLogger("portcullis.evidence")

CHECKPOINT_KIND = "checkpoint"
# an operator's acknowledgement of records no holder of the key wrote (audit acknowledge)
ACK_KIND = "audit.foreign_acknowledged"
STATEMENT_KIND = "credential.statement"
NEVER_EXPOSED = "credential never exposed"
EXPOSED = "credential EXPOSED to the client"
CHECKED = (
    "no byte sequence of the upstream secret in any byte the proxy sent to the client: "
    "its raw UTF-8 bytes, hex (lower and upper case), base64 (standard and URL-safe, at "
    "every alignment) and its JSON-escaped and percent-encoded forms"
)
NOT_CHECKED = (
    "other transformations of the secret (split, hashed, otherwise encoded or computed "
    "from it) and channels other than the proxy's connection to the client"
)


def anchor_path_for(signing_key: Path) -> Path:
    """Where the PDP keeps its newest signed checkpoint: next to its signing key."""
    return signing_key.with_name("checkpoint.json")


def head_path_for(anchor_path: Path) -> Path:
    """Where the PDP keeps the chain's head as it last saw it (unsigned, written every
    HEAD_SECONDS while it moves): beside the anchor."""
    return anchor_path.with_name("head.json")


# how often the head file is brought up to date while the head moves
HEAD_SECONDS = 1.0


class CheckpointWriter:
    """Background task: a signed `checkpoint` record whenever the head moved, every interval."""

    def __init__(
        self,
        store: AuditStore,
        signer: Signer,
        interval_seconds: float = 60.0,
        anchor_path: Path | None = None,
        record_key: bytes | None = None,
    ) -> None:
        """record_key: the store's record MAC key (pdp.store.macs); with one, a head is
        signed only when every record since the last checkpoint is one a holder of the
        key wrote. Without one (tools, tests) every head is signed, as before."""
        self.store = store
        self.signer = signer
        self.interval_seconds = interval_seconds
        self.anchor_path = anchor_path
        self.record_key = record_key
        self.refused = 0  # checkpoints not written: the records since could not be checked
        self.refusing = ""  # why the newest one was not, while that lasts
        # records no holder of the key wrote that checkpoints named (each once), and the
        # ranges the newest checkpoint named: signed over, never vouched for
        self.foreign_records = 0
        self.foreign_ranges: list[tuple[int, int]] = []
        self.anchor_problem = ""  # why the anchor file is kept, while the chain misses it
        # the head as last written to the head file (head_path_for), and why it is kept
        self.head_path = head_path_for(anchor_path) if anchor_path is not None else None
        self._head_written: tuple[int, str] = (0, "")
        self.head_problem = ""
        self._vouched: int | None = None  # every record up to it checked or signed for
        self._rotations_read = 0  # rotation records looked at up to this seq (_retired)
        self.retired = ""  # why this key signs no more (a rotation retired it), once seen
        # why this key is not the one the chain's signatures lead to (checked once a run)
        self.key_problem = ""
        self._key_checked = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="audit-checkpoints")

    async def stop(self) -> None:
        """Stop the timer and write a last checkpoint (shutdown leaves the head covered).
        A checkpoint the timer has begun is let finish, never cancelled between its
        record and its anchor: cut there, the anchor would keep an older checkpoint while
        the last one, finding the head already a checkpoint, writes nothing."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        await self._checkpoint_logged()
        await self._head_logged()

    async def _run(self) -> None:
        due = time.monotonic() + self.interval_seconds
        try:  # said at start, not at the first checkpoint a minute on
            await self._key_known((await self.store.head())[0])
            self._key_checked = True
        except Exception:
            log.exception("the signing key was not checked against the chain")
        while True:
            tick = min(HEAD_SECONDS, max(due - time.monotonic(), 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), tick)
                return
            if time.monotonic() >= due:
                due = time.monotonic() + self.interval_seconds
                await self._checkpoint_logged()
            await self._head_logged()

    async def _head_logged(self) -> None:
        try:
            await self.write_head()
        except Exception:  # the timer goes on: checkpoints matter more than this file
            log.exception("audit head file not written")

    async def write_head(self) -> None:
        """Bring the head file up to date: the seq and hash of the chain's head, unsigned,
        in the form of a forwarded record (pdp.evidence.checkpoints.forwarded_record), which
        `audit verify` checks besides the anchor. A cut of the records written since the
        last checkpoint, while the PDP is down after a crash (no shutdown checkpoint), is
        then seen: the chain no longer reaches the head the file names. Such a file is
        kept, never replaced by the shorter chain's head; it can only fail a verification.
        So is one this run wrote that the chain no longer reaches: records cut while the PDP
        runs are otherwise seen only at its next append (pdp.store's audit.tail_cut), and a
        crash before that would leave a head file rewritten on the shorter chain."""
        path = self.head_path
        if path is None:
            return
        if self.head_problem:
            if path.exists():
                return  # kept: it names what the chain lost
            self.head_problem, self._head_written = "", (0, "")  # moved aside by an operator
        head = await self.store.head()
        if head[0] == 0 or head == self._head_written:
            return
        if not self._head_written[0]:
            if await self._head_unreached(path):
                return
        elif not await self._reaches(*self._head_written):
            self._head_cut(path)
            return
        await asyncio.to_thread(write_head_file, path, head)  # fsynced: off the loop
        self._head_written = head

    def _head_cut(self, path: Path) -> None:
        """The head this run wrote into the head file is no longer in the chain: kept."""
        seq = self._head_written[0]
        self.head_problem = (
            f"the head file {path} names seq {seq}, which this PDP wrote and the chain no"
            " longer reaches unchanged: records were deleted from its end (or rewritten)"
            " while the PDP ran; the file is kept for `audit verify` (move it aside only once"
            " the store's loss is understood)"
        )
        log.error("audit head file NOT replaced: %s", self.head_problem)

    async def _checkpoint_logged(self) -> None:
        try:
            await self.checkpoint()
        except StoreUnavailable as exc:
            log.warning("audit checkpoint not written: %s", exc)
        except Exception:  # what a record someone else wrote holds must not end the timer
            self.refused += 1
            self.refusing = "the records since the last checkpoint could not be checked"
            log.exception(
                "audit checkpoint not written: the records since the last could not be checked"
            )

    async def checkpoint(self) -> AuditRecord | None:
        """Append a checkpoint of the current head, unless the head already is one."""
        seq, head_hash = await self.store.head()
        if seq == 0:
            return None
        if not self._key_checked:
            await self._key_known(seq)
            self._key_checked = True
        if await self._retired(seq):
            self.refused += 1
            self.refusing = self.retired
            log.error("audit checkpoint not written: %s", self.retired)
            return None
        try:
            newest = await self.store.query(after_seq=seq - 1, limit=1)
        except ValueError:  # a head whose body is not JSON: someone else's, not a checkpoint
            newest = []
        if (
            newest
            and self._signed_checkpoint(newest[0])
            and newest[0].body["payload"].get("seq") == seq - 1
        ):
            # nothing happened since the last checkpoint: it names the record just before
            # it (a copy of an older one, which anyone may INSERT, names an earlier seq)
            return None
        payload: dict[str, Any] = {
            "type": CHECKPOINT_KIND,
            "seq": seq,
            "hash": head_hash,
            "time": time.time(),
        }
        if self.record_key is not None:
            foreign = bounded_ranges(await self._foreign(seq))
            if foreign:
                # signed all the same, naming them: one INSERTed row must not stop the
                # signatures over every genuine record after it (denial of evidence)
                payload["foreign"] = [[first, last] for first, last in foreign]
                self._foreign_seen(seq, foreign)
            else:
                self.foreign_ranges = []
        doc = self.signer.sign(payload)
        record = await self.store.append(CHECKPOINT_KIND, doc)
        self._vouched = seq
        self.refusing = ""
        if self.anchor_path is not None and not await self._anchor_unreached():
            try:
                # fsynced: off the loop that answers decisions
                await asyncio.to_thread(write_anchor, self.anchor_path, doc, record)
            except OSError as exc:
                log.warning("checkpoint anchor %s not written: %s", self.anchor_path, exc)
        return record

    async def _retired(self, upto: int) -> bool:
        """Whether a rotation in the chain (pdp.evidence.rotation, made by `audit
        rotate-key`) retired this PDP's key: then it signs no more checkpoints, which
        would fail every verification (a PDP left running on the old key; restart it with
        the new one). Rotation records are read once each, a bounded page at a time."""
        while not self.retired and self._rotations_read < upto:
            page = await self.store.query(
                kind=ROTATION_KIND, after_seq=self._rotations_read, limit=ROTATIONS_READ
            )
            for r in page:
                rotation, _ = read_rotation(r.seq, r.body)
                # a key declared lost by another is not retired by it: that other key alone
                # signed it (a key of anyone's who may INSERT)
                if (
                    rotation is not None
                    and rotation.old_id == self.signer.key_id
                    and not rotation.lost
                ):
                    self.retired = (
                        f"this PDP's signing key {rotation.old_id} was retired at seq {r.seq}"
                        f" (rotated to {rotation.new_id}): restart it with the new key"
                    )
            if len(page) < ROTATIONS_READ:
                self._rotations_read = upto
            else:
                self._rotations_read = page[-1].seq
        return bool(self.retired)

    async def _key_known(self, upto: int) -> None:
        """Whether the newest checkpoint a PDP wrote (a valid record MAC, when the key
        is at hand) was signed by this key, or a rotation hands over to it: a signing key
        replaced by hand (or a key file lost, and a new one made at start) signs
        checkpoints that fail `audit verify` under the key before, and the key before's
        fail under it. Said at start, loudly, rather than found at the next audit; the
        checkpoints go on (signed, they still bind the chain under this key)."""
        newest_of_kind = getattr(self.store, "newest_of_kind", None)
        if newest_of_kind is None:
            return
        newest = await newest_of_kind(CHECKPOINT_KIND, upto + 1)
        if newest is None or not isinstance(newest.body, dict):
            return
        other = newest.body.get("key_id")
        if other == self.signer.key_id or (
            self.record_key is not None and await not_written_by_pdp(self.store, [newest])
        ):
            return
        for r in await self.store.query(kind=ROTATION_KIND):
            rotation, _ = read_rotation(r.seq, r.body)
            if rotation is not None and rotation.new_id == self.signer.key_id:
                return
        self.key_problem = (
            f"this PDP signs with key {self.signer.key_id}, but the chain's newest checkpoint"
            f" (seq {newest.seq}) was signed by key {inert(str(other))[:64]} and no rotation"
            " hands over to this key: `audit verify` fails the signatures of one key or the"
            " other. Restore the key before, or rotate from it (`portcullis audit"
            " rotate-key`, run with the key before in place)"
        )
        log.error("audit signing key unknown to the chain: %s", self.key_problem)

    async def _head_unreached(self, path: Path) -> bool:
        """Whether the head file left by an earlier run names a record the chain no longer
        holds unchanged (records cut from its end while the PDP was down): then it is kept,
        and this run writes none (checked once per run: the head only moves on since)."""
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if not forwarded_record(kept):
            return False
        named, named_hash = kept["seq"], kept["hash"]
        if await self._reaches(named, named_hash):
            return False
        problem = (
            f"the head file {path} names seq {named}, which the chain no longer reaches"
            " unchanged: records were deleted from its end (or rewritten) while the PDP was"
            " down; the file is kept for `audit verify` (move it aside only once the"
            " store's loss is understood)"
        )
        if problem != self.head_problem:
            log.error("audit head file NOT replaced: %s", problem)
        self.head_problem = problem
        return True

    def _foreign_seen(self, seq: int, foreign: list[tuple[int, int]]) -> None:
        """Loud, every time: an error logged and counted for each checkpoint naming records
        no holder of the key wrote, until an operator acknowledges them (audit acknowledge)."""
        # each checkpoint names what lies after the one before: no record twice
        self.foreign_records += sum(last - first + 1 for first, last in foreign)
        self.foreign_ranges = foreign
        log.error(
            "audit checkpoint of seq %d signed NAMING records %s as not written by a PDP"
            " holding the key (no valid record MAC: INSERTed into the store?): it vouches"
            " for the chain's other records only; `audit verify` names them until"
            " `portcullis audit acknowledge`",
            seq,
            describe_ranges(foreign),
        )

    async def _reaches(self, seq: int, digest: Any) -> bool:
        """Whether the chain still holds record `seq` with hash `digest` (a head kept
        outside the store: the anchor, the head file)."""
        found = await self.store.query(after_seq=seq - 1, limit=1) if seq > 0 else []
        return bool(found) and found[0].seq == seq and found[0].hash == digest

    async def _anchor_unreached(self) -> bool:
        """Whether the anchor file names a head this key signed that the chain no longer
        reaches unchanged: records were cut from the end (or rewritten) since. Such an
        anchor is kept, never replaced by the head of the shorter chain: replacing it
        would launder the cut, as `audit verify` checks the chain against the anchor
        alone. An anchor that cannot be read or that another key signed is replaced."""
        assert self.anchor_path is not None
        try:
            kept = json.loads(self.anchor_path.read_text())
        except (OSError, ValueError):
            return False
        if signature_problem(kept, self.signer.public_key):
            return False
        named, named_hash = kept["payload"].get("seq"), kept["payload"].get("hash")
        if kept["payload"].get("type") != CHECKPOINT_KIND or type(named) is not int:
            return False
        if await self._reaches(named, named_hash):
            self.anchor_problem = ""
            return False
        problem = (
            f"the anchor {self.anchor_path} names seq {named} (signed), which the chain no"
            " longer reaches unchanged: records were deleted from its end or rewritten;"
            " the anchor is kept for `audit verify` (move it aside only once the store's"
            " loss is understood)"
        )
        if problem != self.anchor_problem:
            log.error("audit anchor NOT replaced: %s", problem)
        self.anchor_problem = problem
        return True

    async def _foreign(self, upto: int) -> list[tuple[int, int]]:
        """The seq ranges after the last checkpoint, up to `upto`, holding records no
        holder of the record key wrote (pdp.store.macs). A checkpoint signed by this key
        needs no MAC: its signature says who wrote it (one written before record MACs, or
        under another proxy key, vouches for what it names)."""
        assert self.record_key is not None
        batch_macs = getattr(self.store, "batch_macs", None)
        if batch_macs is None:
            return [(1, upto)]  # a store that keeps no MACs vouches for nothing
        start = self._vouched
        if start is None:
            start = await self._last_signed(upto + 1)
        spans = valid_spans(self.record_key, await batch_macs(start, upto))
        gaps = uncovered(start, upto, spans)
        if gaps:  # an operator's acknowledgement may cover them (audit acknowledge)
            acks = await acknowledged(self.store, spans, start)
            gaps = await unacknowledged(self.store, gaps, acks)
        foreign: list[tuple[int, int]] = []
        for first, last in gaps:
            if last - first >= UNCOVERED_READ:  # too many to look at: none is vouched for
                foreign.append((first, last))
                continue
            try:
                found = await self.store.query(after_seq=first - 1, limit=last - first + 1)
            except ValueError:  # a body that is not JSON: none of them is looked at
                foreign.append((first, last))
                continue
            for r in found:
                if r.seq > last or self._signed_checkpoint(r):
                    continue
                if foreign and foreign[-1][1] == r.seq - 1:
                    foreign[-1] = (foreign[-1][0], r.seq)
                else:
                    foreign.append((r.seq, r.seq))
        return foreign

    def _signed_checkpoint(self, record: AuditRecord) -> bool:
        return (
            record.kind == CHECKPOINT_KIND
            and not signature_problem(record.body, self.signer.public_key)
            and record.body["payload"].get("type") == CHECKPOINT_KIND
        )

    async def _last_signed(self, before: int) -> int:
        """The seq the newest checkpoint this key signed names (0: none found): every
        record up to it was vouched for when it was signed; or, when newer, the seq the
        rotation that brought this key in names (`audit rotate-key` checked the store
        up to it with the key before)."""
        newest_of_kind = getattr(self.store, "newest_of_kind", None)
        if newest_of_kind is None:
            return 0
        signed = await self._last_checkpoint(newest_of_kind, before)
        into = await newest_of_kind(ROTATION_KIND, before)
        if into is not None:
            rotation, _ = read_rotation(into.seq, into.body)
            if rotation is not None and rotation.new_id == self.signer.key_id:
                return max(signed, rotation.named)
        return signed

    async def _last_checkpoint(self, newest_of_kind: Any, before: int) -> int:
        for _ in range(LAST_SIGNED_TRIES):  # a record of kind checkpoint anyone may write
            record = await newest_of_kind(CHECKPOINT_KIND, before)
            if record is None:
                return 0
            if self._signed_checkpoint(record):
                named = record.body["payload"].get("seq")
                if isinstance(named, int) and named < record.seq:
                    return named
            before = record.seq
        return 0


async def not_written_by_pdp(store: AuditStore, records: list[AuditRecord]) -> list[int]:
    """The seqs of `records` that no record MAC vouches for (pdp.store.macs), under the
    store's own record key: records someone who may INSERT into the store appended, which
    nothing may present as the PDP's (a replay, a forwarded copy). Empty when the store
    keeps no MACs or holds no key: nothing to check with."""
    batch_macs = getattr(store, "batch_macs", None)
    key = getattr(store, "record_key", None)
    if not records or batch_macs is None or not key:
        return []
    seqs = sorted({r.seq for r in records})
    found: list[int] = []
    # a batch's MAC is on its last record, which may lie past the records asked about
    rows = await batch_macs(seqs[0] - 1, seqs[-1] + GroupCommitStore.max_batch)
    spans = merged_spans(valid_spans(key, rows))
    wanted = set(seqs)
    for first, last in uncovered(seqs[0] - 1, seqs[-1], spans):
        found.extend(seq for seq in range(first, last + 1) if seq in wanted)
    return found


async def acknowledged(
    store: AuditStore, spans: list[tuple[int, int]], after_seq: int = 0
) -> list[tuple[int, int, str]]:
    """The ranges (first, last, the chain's hash at last) of foreign records an operator
    acknowledged (`portcullis audit acknowledge`): ACK_KIND records after after_seq that
    valid record MACs span (`spans`), so a holder of the key wrote them."""
    out: list[tuple[int, int, str]] = []
    for r in await store.query(kind=ACK_KIND, after_seq=after_seq):
        if any(first <= r.seq <= last for first, last in spans):  # else someone else's
            out.extend(ack_entries(r.seq, r.body))
    return out


def ack_entries(seq: int, body: Any) -> list[tuple[int, int, str]]:
    """The ranges (first, last, hash at last) an acknowledgement at seq names."""
    ranges = body.get("ranges") if isinstance(body, dict) else None
    return [
        (entry[0], entry[1], entry[2])
        for entry in (ranges if isinstance(ranges, list) else [])
        if isinstance(entry, list)
        and len(entry) == 3
        and all(type(n) is int for n in entry[:2])
        and isinstance(entry[2], str)
        and entry[0] <= entry[1] < seq
    ]


async def unacknowledged(
    store: AuditStore, foreign: list[tuple[int, int]], acks: list[tuple[int, int, str]]
) -> list[tuple[int, int]]:
    """What of the foreign ranges no acknowledgement covers: one counts when the chain
    still holds, at its last seq, the hash it names (it acknowledged these very records)."""
    if not acks:
        return foreign
    chain: dict[int, str] = {}  # the chain's hash at each acknowledged range's end
    for _, end, _ in acks:
        if end not in chain:
            found = await store.query(after_seq=end - 1, limit=1)
            chain[end] = found[0].hash if found and found[0].seq == end else ""
    good = merged_spans([(start, end) for start, end, hash in acks if chain[end] == hash])
    return [gap for a, b in foreign for gap in uncovered(a - 1, b, good)]


def bounded_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """At most MAX_FOREIGN_RANGES ranges for a checkpoint's payload: past it the rest are
    one range from the first left out to the last (vouching for fewer records, never more:
    rows INSERTed between every genuine one cannot swell each signed checkpoint)."""
    if len(ranges) <= MAX_FOREIGN_RANGES:
        return ranges
    kept = ranges[: MAX_FOREIGN_RANGES - 1]
    return [*kept, (ranges[MAX_FOREIGN_RANGES - 1][0], ranges[-1][1])]


def declared_foreign(payload: dict[str, Any]) -> list[tuple[int, int]]:
    """The ranges a checkpoint's signed payload names as not the PDP's (CheckpointWriter):
    each within the records it signs over."""
    named, listed = payload.get("seq"), payload.get("foreign")
    if type(named) is not int or not isinstance(listed, list):
        return []
    return [
        (entry[0], entry[1])
        for entry in listed
        if isinstance(entry, list)
        and len(entry) == 2
        and all(type(n) is int for n in entry)
        and 0 < entry[0] <= entry[1] <= named
    ]


# the most ranges of foreign records one checkpoint names (bounded_ranges)
MAX_FOREIGN_RANGES = 256
# the longest run of records without a MAC looked at one by one (for checkpoints signed
# before record MACs); a longer one is refused whole
UNCOVERED_READ = 10_000
# checkpoint records looked at, newest first, for one this key signed
LAST_SIGNED_TRIES = 100
# rotation records read at a time (CheckpointWriter._retired)
ROTATIONS_READ = 1000


def write_anchor(path: Path, doc: dict[str, Any], record: AuditRecord) -> None:
    """Atomically replace the anchor file with the newest signed checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of this process's own: replicas on one host share the anchor's path
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    content = {**doc, "record": {"seq": record.seq, "id": record.id, "hash": record.hash}}
    _durably_replace(path, tmp, json.dumps(content, indent=2, sort_keys=True) + "\n")


def write_head_file(path: Path, head: tuple[int, str]) -> None:
    """Atomically replace the head file (CheckpointWriter.write_head)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    content = {"seq": head[0], "hash": head[1], "prev_hash": "", "kind": "chain_head"}
    _durably_replace(path, tmp, json.dumps(content, sort_keys=True) + "\n")


def _durably_replace(path: Path, tmp: Path, text: str) -> None:
    """Replace `path` with `text` so that a crash of the host leaves the old file or the
    new one: the temporary file's bytes reach the disk before the rename, the rename
    before this returns. Without it a power loss could leave the name pointing at an
    empty file (the rename persisted, the data not): no anchor, and a cut tail unseen."""
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # a filesystem that cannot open a folder
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _exposure(summary: dict[str, Any]) -> bool | None:
    value = summary.get("credential_exposed")
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return None


async def record_credential_statement(
    store: AuditStore,
    signer: Signer,
    *,
    session_id: str,
    subject: str,
    connection: str,
    summary: dict[str, Any],
    configured_ref: str = "",
    close_record_id: str = "",
    attested_by: dict[str, Any] | None = None,
) -> AuditRecord | None:
    """Append the signed statement for a closed session; None if the proxy did not check.

    A statement is a claim the PDP signs, so it is made only from the proxy's finding
    (`summary.credential_exposed`); a summary without one yields no statement rather than
    an unfounded "never exposed".
    """
    exposed = _exposure(summary)
    if exposed is None:
        return None
    checked = summary.get("bytes_to_client", 0)
    payload = {
        "type": STATEMENT_KIND,
        "session_id": session_id,
        "subject": subject,
        "connection": connection,
        "credential_ref": await granted_credential_ref(store, session_id, summary)
        or configured_ref,
        "exposed": exposed,
        "statement": EXPOSED if exposed else NEVER_EXPOSED,
        "checked_bytes": int(checked) if isinstance(checked, int | float) else 0,
        # exactly what the proxy's scanner checked (proxies/runtime/secrets_scan.py), and
        # which authenticated proxy said so: no client can make or alter this claim
        "checked": CHECKED,
        "not_checked": NOT_CHECKED,
        "attested_by": attested_by or {},
        "session_close_id": close_record_id,
        "time": time.time(),
    }
    return await store.append(
        STATEMENT_KIND, signer.sign(payload), session_id=session_id, subject=subject
    )


async def granted_credential_ref(
    store: AuditStore, session_id: str, summary: dict[str, Any]
) -> str:
    """The credential reference the session used: the proxy's word, else the open decision."""
    ref = summary.get("credential_ref")
    if isinstance(ref, str) and ref:
        return ref
    opened = await store.query(kind="session.open", session_id=session_id, limit=1)
    if opened:
        credential = opened[0].body.get("credential")
        if isinstance(credential, dict) and isinstance(credential.get("ref"), str):
            return str(credential["ref"])
    return ""


# -- checking -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the evidence; `seq` orders problems (0 = not a record)."""

    seq: int
    kind: str
    id: str
    text: str

    def describe(self) -> str:
        """The problem for a person's terminal: what a tampered store or bundle holds (a
        record's kind or id, an archive member's name) is made inert, so it cannot move
        the auditor's cursor, rewrite the FAIL line or forge an OK one."""
        if self.seq == 0:
            return inert(self.text)
        return inert(
            f"record seq={self.seq} kind={self.kind or '?'} id={self.id or '?'}: {self.text}"
        )


class SignedRecordChecker:
    """Checks signed records fed in seq order: signatures, and checkpoints against the chain.

    `wanted` limits which record hashes are remembered (the seqs that checkpoints name);
    None remembers all. Hashes of records before the first one fed are unknown, so a
    checkpoint naming one is counted in `unanchored`, not failed.
    """

    def __init__(
        self, public_key: Ed25519PublicKey | KeyHistory, wanted: set[int] | None = None
    ) -> None:
        """public_key: the key every signature is checked with, or the key history
        (pdp.evidence.rotation) saying which key signs for which seqs."""
        self.keys = as_history(public_key)
        self.public_key = self.keys.current
        self.wanted = wanted
        self.hashes: dict[int, str] = {}
        self.first_seq: int | None = None
        self.records = self.checkpoints = self.statements = self.unanchored = 0
        self.rotations = 0
        self.head: tuple[int, str] = (0, "")
        self.problems: list[Problem] = []
        # ranges matching signed checkpoints named as no PDP's (CheckpointWriter), merged
        self.declared: list[tuple[int, int]] = []
        self._proven = 0  # highest seq a matching signed checkpoint vouches for

    def feed(
        self, seq: int, id: str, kind: str, session_id: str, subject: str, body: Any, hash: str
    ) -> None:
        self.records += 1
        if self.first_seq is None:
            self.first_seq = seq
        if self.wanted is None or seq in self.wanted:
            self.hashes[seq] = hash
        self.head = (seq, hash)
        problem = ""
        if kind == CHECKPOINT_KIND:
            self.checkpoints += 1
            problem = self._checkpoint(seq, body)
        elif kind == STATEMENT_KIND:
            self.statements += 1
            problem = self._statement(seq, session_id, subject, body)
        elif kind == ROTATION_KIND:
            problem = self._rotation(seq, body)
        if problem:
            self.problems.append(Problem(seq, kind, id, problem))

    def _signer_problem(self, seq: int, body: Any) -> str:
        """Why `body` is not signed by the key in force at `seq` ("" when it is)."""
        key = self.keys.key_at(seq)
        bad = signature_problem(body, key)
        if bad and isinstance(body, dict):
            held, first, end = self.keys.key_named(body.get("key_id"))
            if held is not None and end is not None and seq > end:
                return f"signed by key {body.get('key_id')}, retired at seq {end} (key rotation)"
            if held is not None and seq < first:
                return f"signed by key {body.get('key_id')}, which signs only from seq {first}"
        return bad

    def _checkpoint(self, seq: int, body: Any) -> str:
        bad = self._signer_problem(seq, body)
        if bad:
            return f"checkpoint {bad}"
        payload = body["payload"]
        named, named_hash = payload.get("seq"), payload.get("hash")
        if payload.get("type") != CHECKPOINT_KIND or not isinstance(named, int):
            return "checkpoint payload is not a checkpoint"
        problem = self._names(seq, named, named_hash, "checkpoint")
        if problem or named < (self.first_seq or 0):
            return problem
        declared = declared_foreign(payload)
        if declared:
            self.declared = merged_spans(self.declared + declared)
        return ""

    def _names(self, seq: int, named: int, named_hash: Any, what: str) -> str:
        """Whether the head a signed record at `seq` names is the chain's."""
        if named >= seq:
            return f"{what} names record {named}, which is not before it"
        if self.first_seq is not None and named < self.first_seq:
            self.unanchored += 1
            return ""
        if named not in self.hashes:
            return f"{what} names record {named}, which is not in the chain"
        if self.hashes[named] != named_hash:
            low = self._proven + 1 if self._proven < named else 1
            return (
                f"signed {what} names record {named} with hash {str(named_hash)[:16]}…"
                f" but the chain has {self.hashes[named][:16]}…: a record in seq"
                f" {low}..{named} was rewritten and the chain re-hashed"
            )
        self._proven = max(self._proven, named)
        return ""

    def _rotation(self, seq: int, body: Any) -> str:
        """A key rotation: one of the key history's (its signatures and the head it
        names checked), else why not (pdp.evidence.rotation)."""
        rotation, why = read_rotation(seq, body)
        if rotation is None:
            return why
        known = self.keys.rotation_seqs.get(seq)
        if known is None and rotation.lost:
            return (
                f"key rotation declaring key {rotation.old_id} lost, signed by key"
                f" {rotation.new_id} alone, is not in the key history of the key trusted"
                f" (only whoever trusts {rotation.new_id} follows it)"
            )
        if known is None or (known.old_id, known.new_id) != (rotation.old_id, rotation.new_id):
            return (
                f"key rotation from key {rotation.old_id} to {rotation.new_id} is not in the"
                " PDP's key history (made with another key, or by a key already retired)"
            )
        self.rotations += 1
        return self._names(seq, rotation.named, rotation.named_hash, "key rotation")

    def _statement(self, seq: int, session_id: str, subject: str, body: Any) -> str:
        bad = self._signer_problem(seq, body)
        if bad:
            return f"credential statement {bad}"
        p = body["payload"]
        if p.get("type") != STATEMENT_KIND:
            return "credential statement payload is not a credential statement"
        if p.get("session_id") != session_id or p.get("subject") != subject:
            return "signed statement names another session or subject than its record"
        if p.get("statement") != (EXPOSED if p.get("exposed") else NEVER_EXPOSED):
            return "statement text contradicts its exposed flag"
        return ""


def forwarded_record(anchor: Any) -> bool:
    """Whether an anchor is a record as forwarded to a SIEM (pdp.forwarding.record_json),
    not a signed head: a copy kept where whoever may cut the store's tail cannot reach."""
    return (
        isinstance(anchor, dict)
        and "payload" not in anchor
        and type(anchor.get("seq")) is int
        and isinstance(anchor.get("hash"), str)
        and "prev_hash" in anchor
    )


def anchored_seq(anchor: Any) -> int | None:
    """The seq an anchor names (a signed head's payload, or a forwarded record's own)."""
    if forwarded_record(anchor):
        return int(anchor["seq"])
    if isinstance(anchor, dict) and isinstance(anchor.get("payload"), dict):
        seq = anchor["payload"].get("seq")
        return seq if type(seq) is int else None
    return None


def check_anchor(
    anchor: Any,
    public_key: Ed25519PublicKey | KeyHistory,
    head: tuple[int, str],
    hash_at: dict[int, str],
    source: str,
) -> Problem | None:
    """A head kept outside the store: the chain must still reach it, unchanged. A signed
    head (checkpoint.json, a bundle's chain_head.json) or a record as a SIEM received it
    (forwarding): that one needs no signature, as it can only fail a verification that
    would pass without it, never pass one (the chain must hold its very hash). A signed
    one by a key of the key history names a seq that key signed for."""
    if forwarded_record(anchor):
        named, named_hash = anchor["seq"], anchor["hash"]
    else:
        keys = as_history(public_key)
        held, first, end = keys.key_named(
            anchor.get("key_id") if isinstance(anchor, dict) else None
        )
        bad = signature_problem(anchor, held or keys.current)
        if bad:
            return Problem(0, "", "", f"{source}: {bad}")
        named, named_hash = anchor["payload"].get("seq"), anchor["payload"].get("hash")
        if isinstance(named, int) and (named + 1 < first or (end is not None and named >= end)):
            return Problem(
                0,
                "",
                "",
                f"{source}: signed by key {anchor.get('key_id')}, which did not sign for"
                f" seq {named} (key rotation)",
            )
    if not isinstance(named, int):
        return Problem(0, "", "", f"{source}: payload names no seq")
    if named > head[0]:
        return Problem(
            head[0] + 1,
            "",
            "",
            f"records {head[0] + 1}..{named} were deleted from"
            f" the end of the chain ({source} names seq {named}; head is"
            f" {head[0]})",
        )
    if named in hash_at and hash_at[named] != named_hash:
        return Problem(
            named,
            "",
            "",
            f"{source} names record {named} with another hash: records up to it were rewritten",
        )
    return None


@dataclass
class Counted:
    """What a verification read and checked, for its report."""

    records: int = 0
    first_seq: int = 0
    head: tuple[int, str] = (0, "")
    first_time: float | None = None
    last_time: float | None = None
    checkpoints: int = 0
    statements: int = 0
    sessions: int = 0
    anchor: str = ""  # what the signed head kept outside the store named, when one was checked
    macs: str = ""  # what the record MACs showed, when the key was at hand
    keys: str = ""  # the signing keys in turn, when the key was rotated (KeyHistory)
    times: str = ""  # what the session events' claimed times came to (EventTimes)
    verdicts: str = ""  # what the verdicts proxies recorded came to (EventTimes)
    lost: str = ""  # what sessions whose proxy was lost leave unknown (ProxyLosses)
    batches: str = ""  # what the sessions' batch numbers show (EventTimes.numbers_line)
    unclosed: int = 0  # sessions opened (allowed) in the range with no close record in it
    # a bundle withholding values (pdp.evidence.bundle): the records whose bodies it
    # withheld, by kind, which the verifier could not re-hash
    withheld: dict[str, int] = field(default_factory=dict)

    def see(self, seq: int, kind: str, time: float) -> None:
        if self.first_time is None:
            self.first_seq, self.first_time = seq, time
        self.last_time = time
        if kind == "session.open":
            self.sessions += 1

    def lines(self) -> list[str]:
        """The report: the range read, then each thing counted and what was checked of it.
        Each line inert (pdp.plumbing.rendering), as Problem.describe() is: a record's kind,
        a key id or an anchor's text come from the store or bundle verified, and one
        holding an escape (`\x1b[8m`) printed raw hid the rest of an OK report on the
        auditor's terminal, the `key: NOT PINNED` warning after it included."""
        return [inert(line) for line in self._lines()]

    def _lines(self) -> list[str]:
        span = ""
        if self.first_time is not None and self.last_time is not None:
            span = f", {rfc3339(self.first_time)} to {rfc3339(self.last_time)}"
        read = (
            f"{self.records} audit records in an unbroken hash chain"
            f" (seq {self.first_seq}..{self.head[0]}{span})"
            if self.records
            else "0 audit records (the store is empty)"
        )
        return [
            read,
            *self._withheld_lines(),
            f"  signatures: {self.checkpoints + self.statements} Ed25519 signatures verified:"
            f" {self.checkpoints} signed checkpoints, each matching the chain, and"
            f" {self.statements} signed credential-never-exposed statements",
            f"  sessions: {self.sessions} opened in this range (session.open records)"
            + (
                f"; {self.unclosed} have no close record in it (open now, or ended with no"
                " record: their proxy and the PDP both stopped before closing it)"
                if self.unclosed
                else ""
            ),
            f"  anchor: {self.anchor or 'none checked'}",
            *([f"  record MACs: {self.macs}"] if self.macs else []),
            *([f"  signing keys: {self.keys}"] if self.keys else []),
            *([f"  event times: {self.times}"] if self.times else []),
            *([f"  proxy verdicts: {self.verdicts}"] if self.verdicts else []),
            *([f"  lost proxies: {self.lost}"] if self.lost else []),
            *([f"  batch numbers: {self.batches}"] if self.batches else []),
            f"  head: seq {self.head[0]} hash {self.head[1]}",
        ]

    def _withheld_lines(self) -> list[str]:
        """What a bundle withholding values left out, said before anything it verified."""
        if not self.withheld:
            return []
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.withheld.items()))
        return [
            f"  WITHHELD: {sum(self.withheld.values())} records' bodies ({kinds}) are not in"
            " this bundle (values withheld for an auditor outside pii-readers): NOT verified;"
            " their place, kind and time are the export's signed word, each pinned by the"
            " hash chain where a later record or a signed checkpoint names it"
        ]


@dataclass
class EvidenceReport:
    ok: bool
    records: int
    checkpoints: int
    statements: int
    head: tuple[int, str]
    problems: list[Problem]
    counted: Counted = field(default_factory=Counted)
    foreign: list[tuple[int, int]] = field(default_factory=list)  # no valid MAC, not acked
    # no valid MAC either, but acknowledged by an operator (audit acknowledge): in the
    # chain, verified, and still not the PDP's records
    acknowledged: list[tuple[int, int]] = field(default_factory=list)
    macs_checked: bool = False  # whether the record MACs were read (the key was at hand)

    def summary(self) -> str:
        return "\n".join(self.counted.lines())


PAGE = 5000


class ForeignRecords:
    """Records fed in seq order that no holder of the record key wrote (pdp.store.macs):
    no valid MAC spans them and they are not checkpoints this public key signed. Those up
    to a seq that a checkpoint without a valid MAC of its own names (one signed before
    record MACs, or under another proxy key) were vouched for by that signature, as the
    checkpoint writer takes them; the others are reported."""

    def __init__(self, public_key: Ed25519PublicKey | KeyHistory) -> None:
        self.keys = as_history(public_key)
        self.spans: list[tuple[int, int]] = []  # valid MACs' spans, of the records fed next
        self.floor = 0  # records up to it were vouched for by a checkpoint of old
        self.acks: list[tuple[int, int, str]] = []  # acknowledgements a valid MAC spans
        self.checkpoints: list[tuple[int, int]] = []  # signed ones no valid MAC spans
        self._at = 0
        self._found: list[tuple[int, int]] = []  # seq ranges

    def next_spans(self, spans: list[tuple[int, int]]) -> None:
        """The spans (valid_spans) covering the records fed next (a page of them)."""
        self.spans, self._at = spans, 0

    def feed(self, seq: int, id: str, kind: str, body: Any) -> None:
        spans = self.spans
        while self._at < len(spans) and spans[self._at][1] < seq:
            self._at += 1
        if self._at < len(spans) and spans[self._at][0] <= seq:
            if kind == ACK_KIND:
                self.acks.extend(ack_entries(seq, body))
            return
        if kind == CHECKPOINT_KIND and not signature_problem(body, self.keys.key_at(seq)):
            named = body["payload"].get("seq")
            if isinstance(named, int) and named < seq:
                self.floor = max(self.floor, named)
            self.checkpoints.append((seq, seq))
            return
        found = self._found
        if found and found[-1][1] == seq - 1:
            found[-1] = (found[-1][0], seq)
        else:
            found.append((seq, seq))

    def ranges(self) -> list[tuple[int, int]]:
        """The foreign records' seq ranges after the floor."""
        return [(max(a, self.floor + 1), b) for a, b in self._found if b > self.floor]

    @staticmethod
    def problems(ranges: list[tuple[int, int]]) -> list[Problem]:
        """A problem for each foreign range (kind and id filled in later, verify_store)."""
        out = []
        for first, last in ranges:
            what = f"record {first}" if first == last else f"records {first}..{last}"
            out.append(
                Problem(
                    first,
                    "",
                    "",
                    f"{what} not written by a PDP holding the record key (no valid record"
                    " MAC): INSERTed into the store by someone else; no checkpoint may"
                    " vouch for it",
                )
            )
        return out


async def verify_store(
    store: AuditStore,
    public_key: Ed25519PublicKey,
    anchor: Any = None,
    anchor_source: str = "anchor",
    record_key: bytes | None = None,
    also: Sequence[tuple[Any, str]] = (),
) -> EvidenceReport:
    """The whole chain, every signature, every checkpoint against the chain, and the anchor
    (and each of `also`: more heads kept elsewhere, with where they come from); with the
    record MAC key (`record_key`, default: the store's own, which the PDP sets), also that
    every record was written by a holder of it (ForeignRecords).

    A live store keeps growing while this reads it (records, checkpoints landing): every
    read stops at the head taken first, so the checks see one prefix of the chain, which
    an append-only store never changes, and never a checkpoint whose record they did not
    read."""
    top = (await store.head())[0]
    if record_key is None:
        record_key = getattr(store, "record_key", None)
    chain = await store.verify()
    try:
        anchors = [(anchor, anchor_source)] if anchor is not None else []
        anchors += [(a, source) for a, source in also if a is not None]
        return await _verify_read(store, public_key, anchors, record_key, top, chain)
    except ValueError:  # a record whose body is not JSON (someone else's): no record can
        if chain.ok:  # be read past it; the chain's own check names it
            raise
        bad = Problem(chain.first_bad_seq or 0, "", "", chain.problem)
        return EvidenceReport(False, chain.records, 0, 0, (0, ""), [bad])


async def _verify_read(
    store: AuditStore,
    public_key: Ed25519PublicKey,
    anchors: list[tuple[Any, str]],
    record_key: bytes | None,
    top: int,
    chain: ChainReport,
) -> EvidenceReport:
    """verify_store's reading of the records, after the chain's check."""
    batch_macs = getattr(store, "batch_macs", None)
    rotations = [r for r in await store.query(kind=ROTATION_KIND) if r.seq <= top]
    keys, _ = key_history(public_key, [(r.seq, r.body) for r in rotations])
    retired = trusted_retired_problem(keys)
    foreign = None
    batches = 0
    if record_key is not None and batch_macs is not None:
        foreign = ForeignRecords(keys)
    named = _named_seqs(rotations, top)
    after = 0  # the seqs checkpoints name, a page at a time (one a minute, for years)
    while after < top and (
        page := await store.query(kind=CHECKPOINT_KIND, after_seq=after, limit=PAGE)
    ):
        named |= _named_seqs(page, top)
        after = page[-1].seq
    for anchor, _ in anchors:
        anchored = anchored_seq(anchor)
        if anchored is not None:
            named.add(anchored)
    checker = SignedRecordChecker(keys, wanted=named)
    checker.first_seq = 1  # a live store starts at genesis: every seq is checkable
    after = 0
    counted = Counted()
    times = EventTimes()
    while after < top and (page := await store.query(after_seq=after, limit=PAGE)):
        if foreign is not None and record_key is not None and batch_macs is not None:
            # the MACs of this page's batches, a page at a time (a batch holds at most
            # max_batch records, so one ending past the page is read with it)
            upto = min(page[-1].seq, top)
            rows = await batch_macs(after, upto + GroupCommitStore.max_batch)
            batches += sum(1 for row in rows if row[0] <= upto)
            foreign.next_spans(valid_spans(record_key, rows))
        for r in page:
            if r.seq > top:
                break
            checker.feed(r.seq, r.id, r.kind, r.session_id, r.subject, r.body, r.hash)
            counted.see(r.seq, r.kind, r.time)
            times.feed(r.seq, r.kind, r.time, r.session_id, r.body, r.id)
            if r.kind == TAIL_CUT_KIND:
                checker.problems.append(Problem(r.seq, r.kind, r.id, tail_cut_problem(r.body)))
            if foreign is not None:
                foreign.feed(r.seq, r.id, r.kind, r.body)
        after = page[-1].seq
    problems = list(checker.problems)
    if retired is not None:  # (_named fills in its kind and id)
        problems.append(Problem(retired[0], "", "", retired[1]))
    if not chain.ok and chain.first_bad_seq is not None:
        # first of the problems at its seq: what the chain says of a record (its body is
        # not JSON, it was changed) says more than that no MAC spans it
        problems.insert(0, Problem(chain.first_bad_seq, "", "", chain.problem))
    found: list[tuple[int, int]] = []
    known: list[tuple[int, int]] = []
    if foreign is not None:
        # what a signed checkpoint named as no PDP's stays named, whatever a copy of it
        # appended later lets the MACs' floor pass over
        # (less the signed checkpoints: one a run too long to read held vouches for itself)
        declared = merged_spans(foreign.ranges() + checker.declared)
        found = left = [g for a, b in declared for g in uncovered(a - 1, b, foreign.checkpoints)]
        if found:
            left = await unacknowledged(store, found, foreign.acks)
        known = [k for a, b in found for k in uncovered(a - 1, b, merged_spans(left))]
        problems.extend(foreign.problems(left))
        found = left
        counted.macs = (
            f"{batches} batch MACs read; every record after seq {foreign.floor}"
            " written by a holder of the PDP's key"
        )
        if known:
            counted.macs += (
                f", except records {describe_ranges(known)}: INSERTed by someone else,"
                " acknowledged by an operator (audit.foreign_acknowledged)"
            )
    elif checker.declared:  # no key at hand: the signed checkpoints still say which
        found = checker.declared
        problems.extend(ForeignRecords.problems(found))
    reached = []
    for anchor, source in anchors:
        bad = check_anchor(anchor, keys, checker.head, checker.hashes, source)
        if bad is not None:
            problems.append(bad)
        else:
            what = " (a forwarded record: unsigned)" if forwarded_record(anchor) else ""
            if forwarded_record(anchor) and anchor.get("kind") == "chain_head":
                what = " (the head as the PDP last saw it: unsigned)"
            reached.append(f"{source}{what} names seq {anchored_seq(anchor)}: reached, unchanged")
    counted.anchor = "; ".join(reached)
    if not anchors and checker.checkpoints:
        counted.anchor = (
            f"NONE: no anchor or head file was given or found, though the store holds"
            f" {checker.checkpoints} signed checkpoints (the PDP keeps the newest beside"
            " its key, and the head each second): records cut from the end would not show"
            " here; were those files deleted?"
        )
    problems = [await _named(store, p) for p in problems]
    problems.sort(key=lambda p: (p.seq == 0, p.seq))
    counted.records, counted.head = chain.records, checker.head
    counted.checkpoints, counted.statements = checker.checkpoints, checker.statements
    counted.keys = keys.describe() if keys.rotations else ""
    counted.times = times.line()
    counted.verdicts = times.verdicts_line()
    counted.lost = times.losses.line()
    counted.batches = times.numbers_line()
    counted.unclosed = len(times.losses.unclosed)
    return EvidenceReport(
        not problems,
        chain.records,
        checker.checkpoints,
        checker.statements,
        checker.head,
        problems,
        counted,
        found,
        merged_spans(known),
        foreign is not None,
    )


def _named_seqs(records: list[AuditRecord], top: int) -> set[int]:
    """The seqs signed records up to `top` name (payload seq)."""
    return {
        r.body["payload"]["seq"]
        for r in records
        if r.seq <= top
        and isinstance(r.body.get("payload"), dict)
        and isinstance(r.body["payload"].get("seq"), int)
    }


def tail_cut_problem(body: Any) -> str:
    """What a TAIL_CUT_KIND record says happened (pdp.store: the PDP found the chain's head
    below a record it had committed)."""
    body = body if isinstance(body, dict) else {}
    first, last = body.get("lost_first_seq"), body.get("lost_last_seq")
    return (
        f"records {first}..{last} the PDP had committed (the last with hash"
        f" {str(body.get('lost_last_hash', ''))[:16]}…) were deleted from the end of the"
        " chain while it ran; the records at those seqs now were written after the cut"
    )


async def _named(store: AuditStore, problem: Problem) -> Problem:
    """Fill in kind and id of the record a problem points at, when the record exists."""
    if problem.seq == 0 or problem.kind:
        return problem
    found = await store.query(after_seq=problem.seq - 1, limit=1)
    if not found or found[0].seq != problem.seq:
        return problem
    return Problem(problem.seq, found[0].kind, found[0].id, problem.text)
