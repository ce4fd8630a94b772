"""Evidence bundles: `portcullis audit export` writes one, `audit verify --bundle` checks it.

A bundle is a tar.gz of flat files:

- `records.jsonl`: every record of a contiguous seq range (the time window widened so no
  seq inside it is skipped), one canonical-JSON object a line with seq, id, kind, time
  (RFC 3339 UTC, milliseconds; older bundles wrote microseconds), time_us (the hashed
  integer), session_id, subject, body (as stored and hashed: times inside it stay unix
  seconds), prev_hash, hash.
  The chain re-verifies from the first record's prev_hash with the recipe of
  `pdp/store/chain.py`.
- one file per evidence stream (`controls.STREAMS`): the same lines as records.jsonl for
  the stream's kinds; `masking.jsonl` is derived from the recordings (counts, never values).
- `public_key.pem`, `chain_head.json` (signed: last seq and hash of the bundle) and
  `manifest.json` (signed: controls mapping, the sha256 of every other file, and
  `record_macs`: whether the export checked the record MACs and which bundled seqs no
  PDP holding the key wrote, records an operator acknowledged rather than vouched for).

Offline verification needs nothing but the bundle (and, to pin the signer, the PDP's
public key): file hashes, the chain, every signature, the head, and that every stream
file is exactly what records.jsonl implies. It names the first bad record.

A bundle for an auditor outside `pii-readers` (`withhold_values`: the console's Export for
them, `audit export --withhold-values`) withholds the body of every record whose kind is
not in WHOLE_KINDS (an allow-list of the kinds that hold no value a client sent or a
server answered: decisions, recordings and approvals quote statements and their literals),
and of a record of such a kind that holds one all the same (withheld_whole: a session's
close naming the statements its proxy answered from its cache after its last decision).
A withheld record's line keeps its place, kind, time, ids and hashes, and its body is
null; the signed manifest says `values: withheld` and counts them by kind. The verifier
cannot re-hash a withheld record: it checks that the next record links to it, and says how
many it took on the export's signature (pinned by the chain wherever a later record or a
signed checkpoint names it). Signed kinds are never withheld. The design that withholds
only the values, with the rest of such a record still verified, is in README.md.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pdp.domain.recordings import EVENTS_KIND, batch_events
from pdp.evidence.checkpoints import Counted, Problem, SignedRecordChecker, verify_store
from pdp.evidence.controls import STREAMS, manifest_controls, manifest_streams
from pdp.evidence.event_times import EventTimes
from pdp.evidence.rotation import (
    ROTATION_KIND,
    KeyHistory,
    key_history,
    trusted_retired_problem,
)
from pdp.evidence.signing import Signer, key_id_of, load_public_pem, signature_problem
from pdp.plumbing.rendering import inert
from pdp.plumbing.timestamps import rfc3339
from pdp.store import AuditRecord, AuditStore
from pdp.store.chain import canonical_json, record_hash, to_micros
from pdp.store.macs import describe_ranges
from portcullis.events import MASKED

FORMAT = "portcullis-evidence/1"
RECORDS = "records.jsonl"
MASKING = "masking.jsonl"
FIXED_FILES = ("public_key.pem", "chain_head.json", "manifest.json")
# the store's key rotations (pdp.evidence.rotation), whatever the window: which key
# signed which seqs, from the key that signed this bundle back (absent in older bundles)
KEY_HISTORY = "key_history.jsonl"
PAGE = 5000
# the kinds a bundle withholding values keeps whole: none of them holds a value a client
# sent or a server answered (an allow-list: every other kind, and any new one, is withheld)
WHOLE_KINDS = frozenset(
    {
        "session.open",
        "session.close",
        "auth.rejected",
        "proxy.refused",
        "credential.statement",
        "checkpoint",
        "signing_key.rotated",
        "store.recovered",
        "audit.tail_cut",
        "audit.late_commit",
        "audit.foreign_acknowledged",
    }
)
# the kinds of WHOLE_KINDS a record of which may quote a client's statement all the same:
# a session.close's `reused` (pdp.api.service.reused_record) names the statements its
# proxy answered from its decision cache after the session's last Decide, literals and all
VALUED_WHOLE_KINDS = frozenset({"session.close"})


def withheld_whole(kind: str, body: Any) -> bool:
    """Whether a bundle withholding values withholds a record's body: every kind but
    WHOLE_KINDS, and a record of VALUED_WHOLE_KINDS that quotes a statement."""
    if kind not in WHOLE_KINDS:
        return True
    return kind in VALUED_WHOLE_KINDS and isinstance(body, dict) and bool(body.get("reused"))


# what the manifest of a bundle withholding values says under `values`
VALUES_WITHHELD = "withheld"
MAX_MEMBER_BYTES = 1 << 30
MAX_BUNDLE_BYTES = 4 << 30  # read from one bundle in all
# the files verification keeps whole (the signed ones and the key's): every other member
# is hashed and its records checked as they stream by, never held whole
KEPT_FILES = frozenset({"manifest.json", "public_key.pem", "chain_head.json", KEY_HISTORY})
MAX_KEPT_BYTES = 16 << 20
MAX_LINE_BYTES = 64 << 20  # one record of records.jsonl
CHUNK = 1 << 20
HASH_RECIPE = (
    'hash = sha256_hex(prev_hash + "\\n" + canonical_json({"seq","id","kind","time":'
    ' time_us,"session_id","subject","body"})); canonical_json = JSON with sorted keys,'
    ' separators (",",":"), UTF-8, no ASCII escaping'
)


def time_of(time_us: int) -> str:
    """A record's `time`: its hashed time_us in the one time form (pdp.plumbing.timestamps)."""
    return rfc3339(time_us // 1_000_000 + (time_us % 1_000_000) / 1_000_000)


def _legacy_time_of(time_us: int) -> str:
    # bundles written before the one time form carried microseconds; they still verify
    dt = datetime.fromtimestamp(time_us // 1_000_000, UTC).replace(microsecond=time_us % 1_000_000)
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """RFC 3339 (a date alone means midnight UTC; no offset means UTC) or unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is neither RFC 3339 nor unix seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def stream_of(kind: str) -> str | None:
    for s in STREAMS:
        if kind in s.kinds:
            return s.name
    return "approvals" if kind.startswith("approval") else None


def record_line(r: AuditRecord) -> dict[str, Any]:
    time_us = to_micros(r.time)
    return {
        "seq": r.seq,
        "id": r.id,
        "kind": r.kind,
        "time": time_of(time_us),
        "time_us": time_us,
        "session_id": r.session_id,
        "subject": r.subject,
        "body": r.body,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    }


class MaskingLog:
    """Masking counts out of recordings: who, which command, which output column and by
    which rule (a field rule, or the derived rule: the column's lineage) or detector, how
    many values. A statement's counts are in its own event (`details.masked`); recordings
    made before that have them in a `masking` event after it. Both give the same lines.

    Counts only: the events a proxy records never carry a masked value, and nothing else
    of the event is copied."""

    def __init__(self) -> None:
        self.commands: dict[tuple[str, str], str] = {}
        self.rules: dict[str, dict[str, str]] = {}

    def feed(self, line: dict[str, Any]) -> list[dict[str, Any]]:
        if line["kind"] == "decision":
            body = line["body"] if isinstance(line["body"], dict) else {}
            self.rules[line["id"]] = {
                _rule_key(m): str(m.get("strategy", ""))
                for m in body.get("mask", [])
                if isinstance(m, dict)
            }
            return []
        if line["kind"] != EVENTS_KIND or not isinstance(line["body"], dict):
            return []
        out = []
        for event in batch_events(line["body"]):
            if not isinstance(event, dict):
                continue
            decision_id = str(event.get("decision_id", ""))
            details = event.get("details")
            details = details if isinstance(details, dict) else {}
            if not decision_id and event.get("type") == "response":
                decision_id = str(details.get("decision_id", ""))
            key = (line["session_id"], decision_id)
            if event.get("type") == "command":
                self.commands[key] = str(event.get("command", ""))
            # a statement's counts in its own event; recordings made before that: a
            # masking event after it
            counts = details.get("counts" if event.get("type") == "masking" else MASKED)
            if not isinstance(counts, dict):
                continue
            command = str(event.get("command", "")) or self.commands.get(key, "")
            for name, count in sorted(counts.items()):
                what, _, target = str(name).partition(":")
                entry: dict[str, Any] = {
                    "seq": line["seq"],
                    "session_id": line["session_id"],
                    "subject": line["subject"],
                    "time": event.get("time"),
                    "decision_id": decision_id,
                    "command": command,
                }
                if what in ("field", "detector", "derived") and target:
                    entry[what] = target
                else:
                    entry["field"] = name
                rules = self.rules.get(decision_id, {})
                entry["rule"] = rules.get("derived" if what == "derived" else name) or rules.get(
                    target or name, ""
                )
                entry["count"] = int(count) if isinstance(count, int | float) else 0
                out.append(entry)
        return out


def _rule_key(rule: dict[str, Any]) -> str:
    """How a decision's mask rule is named in masking counts: `field:<name>`,
    `detector:<name>`, or `derived`; a field rule also by its bare name (older counts)."""
    if rule.get("derived"):
        return "derived"
    if rule.get("detector"):
        return f"detector:{rule['detector']}"
    return str(rule.get("field", ""))


# -- export ---------------------------------------------------------------------------


class StoreUnverified(Exception):
    """The store does not verify (chain, signed checkpoints, anchor): no bundle is signed.

    `problems` are verify_store's, the first bad record first."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].describe() if problems else "the store does not verify")
        self.problems = problems


@dataclass
class ExportSummary:
    records: int
    first_seq: int
    last_seq: int
    counts: dict[str, int]
    path: Path


async def _window(
    store: AuditStore, since: float | None, until: float | None, upto: int
) -> tuple[int, int] | None:
    """First and last seq of records timed inside [since, until), up to seq `upto`."""
    first = last = None
    after = 0
    while after < upto and (
        page := await store.query(since=since, until=until, after_seq=after, limit=PAGE)
    ):
        inside = [r.seq for r in page if r.seq <= upto]
        if not inside:
            break
        if first is None:
            first = inside[0]
        last = after = inside[-1]
        if len(inside) < len(page):
            break
    return None if first is None or last is None else (first, last)


async def _records(store: AuditStore, first: int, last: int) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    after = first - 1
    while after < last:
        page = await store.query(after_seq=after, limit=min(PAGE, last - after))
        if not page:
            break
        out.extend(page)
        after = page[-1].seq
    return out


async def export_bundle(
    store: AuditStore,
    signer: Signer,
    out: Path,
    since: float | None = None,
    until: float | None = None,
    anchor: Any = None,
    anchor_source: str = "anchor",
    also: Sequence[tuple[Any, str]] = (),
    withhold_values: bool = False,
) -> ExportSummary:
    """Write the bundle of the records timed in [since, until), signed by `signer`;
    withhold_values: with the bodies of records withheld_whole() names withheld (module
    docstring).

    The store is verified first, as `audit verify` does (the chain, every signed
    checkpoint against it, and `anchor`: the newest signed checkpoint kept outside the
    store): the bundle's signed head and manifest say "this is the PDP's chain", and an
    offline check can only re-verify what they vouch for. Signed without this, a store
    whose tail was deleted, or rewritten, re-chained and stripped of its checkpoints (by
    someone with write access to the store but not the key) came out as a bundle that
    verified. StoreUnverified when the store does not verify; nothing is written."""
    report = await verify_store(store, signer.public_key, anchor, anchor_source, also=also)
    if not report.ok:
        raise StoreUnverified(report.problems)
    # only what was verified: a record appended since (by the PDP, or INSERTed by someone
    # else while the chain was read) waits for the next export
    window = await _window(store, since, until, report.head[0])
    files: dict[str, bytearray] = {RECORDS: bytearray(), MASKING: bytearray()}
    for s in STREAMS:
        files.setdefault(s.file, bytearray())
    counts = {s.name: 0 for s in STREAMS}
    masking = MaskingLog()
    last_line: dict[str, Any] | None = None
    first_line: dict[str, Any] | None = None
    withheld: dict[str, int] = {}
    if window is not None:
        for record in await _records(store, *window):
            line = record_line(record)
            if withhold_values and withheld_whole(record.kind, record.body):
                line["body"] = None
                withheld[record.kind] = withheld.get(record.kind, 0) + 1
            text = (canonical_json(line) + "\n").encode()
            files[RECORDS] += text
            counts["records"] += 1
            name = stream_of(record.kind)
            if name is not None:
                files[next(s.file for s in STREAMS if s.name == name)] += text
                counts[name] += 1
            for entry in masking.feed(line):
                files[MASKING] += (canonical_json(entry) + "\n").encode()
                counts["masking"] += 1
            first_line = first_line or line
            last_line = line
    store_head = report.head  # the head verified, not one read since (nothing signs that)
    now = time.time()
    head = signer.sign(
        {
            "type": "chain_head",
            "seq": last_line["seq"] if last_line else 0,
            "hash": last_line["hash"] if last_line else "",
            "first_seq": first_line["seq"] if first_line else 0,
            "first_prev_hash": first_line["prev_hash"] if first_line else "",
            "records": counts["records"],
            "store_head": {"seq": store_head[0], "hash": store_head[1]},
            "time": now,
        }
    )
    blobs: dict[str, bytes] = {name: bytes(data) for name, data in files.items()}
    blobs[KEY_HISTORY] = b"".join(
        (canonical_json(record_line(r)) + "\n").encode()
        for r in await store.query(kind=ROTATION_KIND)
        if r.seq <= store_head[0]
    )
    blobs["public_key.pem"] = signer.public_pem()
    blobs["chain_head.json"] = (json.dumps(head, indent=2, sort_keys=True) + "\n").encode()
    manifest = signer.sign(
        {
            "type": "manifest",
            "format": FORMAT,
            "generated_at": rfc3339(now),
            "window": {"since": since, "until": until},
            "records": {
                "count": counts["records"],
                "first_seq": head["payload"]["first_seq"],
                "last_seq": head["payload"]["seq"],
                "first_prev_hash": head["payload"]["first_prev_hash"],
            },
            "record_macs": _record_macs(report, window),
            "key_id": signer.key_id,
            "hash_recipe": HASH_RECIPE,
            "streams": manifest_streams(counts),
            "controls": manifest_controls(),
            "files": {
                name: hashlib.sha256(data).hexdigest() for name, data in sorted(blobs.items())
            },
            **(
                {"values": VALUES_WITHHELD, "withheld": dict(sorted(withheld.items()))}
                if withhold_values
                else {}
            ),
        }
    )
    blobs["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    _write_tar(out, blobs, now)
    first_seq, last_seq = window or (0, 0)
    return ExportSummary(counts["records"], first_seq, last_seq, counts, out)


def _record_macs(report: Any, window: tuple[int, int] | None) -> dict[str, Any]:
    """What the export knew of who wrote the bundled records (pdp.store.macs): whether it
    checked, and the seq ranges no PDP holding the key wrote that an operator acknowledged
    (audit acknowledge). They verify as chain, and are still not the PDP's records: an
    auditor holding the bundle alone is told so by its signed manifest."""
    first, last = window or (1, 0)
    inside = [
        [max(a, first), min(b, last)] for a, b in report.acknowledged if b >= first and a <= last
    ]
    return {"checked": bool(report.macs_checked), "not_written_by_the_pdp": inside}


def _write_tar(out: Path, blobs: dict[str, bytes], mtime: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name in ("manifest.json", *sorted(n for n in blobs if n != "manifest.json")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(blobs[name]), int(mtime), 0o644
            tar.addfile(info, io.BytesIO(blobs[name]))
    tmp.replace(out)


# -- offline verification ---------------------------------------------------------------


@dataclass
class BundleReport:
    ok: bool = False
    records: int = 0
    checkpoints: int = 0
    statements: int = 0
    first_seq: int = 0
    head: tuple[int, str] = (0, "")
    key_id: str = ""
    problems: list[Problem] = field(default_factory=list)

    counted: Counted = field(default_factory=Counted)
    exported: str = ""  # when, for which window, and the store's head then (signed)

    def summary(self) -> str:
        lines = [*self.counted.lines(), f"  signed by key {self.key_id}"]
        if self.exported:
            lines.append(f"  exported: {self.exported}")
        return "\n".join(lines)


def _file_problem(text: str) -> Problem:
    return Problem(0, "", "", text)


@dataclass
class _Scanned:
    """What one pass over a bundle's archive gives: the kept files whole (KEPT_FILES), the
    sha256 of every member read, and what was wrong with the archive itself."""

    kept: dict[str, bytes] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # where each hashed one starts
    listed: set[str] | None = None  # what manifest.json's `files` names, when it is first


# one read of the archive's bytes past this is a header (a pax or GNU long-name member's
# data, which tarfile reads whole into memory): none of the export's is near it
MAX_HEADER_BYTES = 1 << 20


class ArchiveTooLarge(tarfile.ReadError):
    """A bundle's archive past _BoundedArchive's bounds: nothing past it is read."""


class _BoundedArchive(io.RawIOBase):
    """The decompressed bytes of a bundle, for tarfile: no more than MAX_BUNDLE_BYTES (and
    a few blocks of headers) are ever decompressed, skipped members included (tarfile
    skips one by seeking, which in a gzip stream decompresses everything on the way), and
    no single read is larger than MAX_HEADER_BYTES (tarfile reads a pax or long-name
    header's data whole, before any member reaches the checks). ArchiveTooLarge past
    either."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._limit = MAX_BUNDLE_BYTES + MAX_BUNDLE_BYTES // 16  # and the members' headers

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return int(self._raw.tell())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.tell() + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target > self._limit:
            raise ArchiveTooLarge(f"the archive reaches past {MAX_BUNDLE_BYTES} bytes")
        return int(self._raw.seek(target))

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > max(MAX_HEADER_BYTES, CHUNK):
            raise ArchiveTooLarge(f"an archive header or read past {MAX_HEADER_BYTES} bytes")
        if self.tell() + size > self._limit:
            raise ArchiveTooLarge(f"the archive reaches past {MAX_BUNDLE_BYTES} bytes")
        return bytes(self._raw.read(size))

    def close(self) -> None:
        self._raw.close()
        super().close()


@contextmanager
def _open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """The bundle at `path` for reading, within _BoundedArchive's bounds."""
    with _BoundedArchive(gzip.open(path, "rb")) as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
        yield tar


def _scan(path: Path) -> _Scanned:
    """One pass over the archive in constant memory: each regular member hashed as it
    streams by, only KEPT_FILES held (at most MAX_KEPT_BYTES each); anything else is a
    problem, not read.

    The export writes manifest.json first: a later member its `files` does not name is a
    problem and is not read, and what is read in all stays under MAX_BUNDLE_BYTES (a
    decompression bomb costs the auditor that much reading, never that much memory)."""
    scanned = _Scanned()
    problems = scanned.problems
    try:
        _scan_members(path, scanned)
    except ArchiveTooLarge as exc:
        problems.append(_file_problem(f"archive: {exc}: the rest is not read"))
    if "manifest.json" in scanned.kept and scanned.listed is None:
        problems.append(_file_problem("manifest.json: not the archive's first member"))
    return scanned


def _scan_members(path: Path, scanned: _Scanned) -> None:
    problems = scanned.problems
    read = 0
    with _open_archive(path) as tar:
        for n, member in enumerate(tar):
            name = member.name
            if not member.isfile() or "/" in name or name.startswith("."):
                problems.append(_file_problem(f"{name}: unexpected archive member"))
                continue
            if name in scanned.digests:
                problems.append(_file_problem(f"{name}: appears twice in the archive"))
                continue
            limit = MAX_KEPT_BYTES if name in KEPT_FILES else MAX_MEMBER_BYTES
            if member.size > limit:
                problems.append(_file_problem(f"{name}: larger than {limit}"))
                continue
            if scanned.listed is not None and name not in scanned.listed:
                problems.append(_file_problem(f"{name}: not a file the manifest lists"))
                continue
            if read + member.size > MAX_BUNDLE_BYTES:
                problems.append(_file_problem(f"{name}: past {MAX_BUNDLE_BYTES} read"))
                continue
            read += member.size
            digest, data = _read_member(tar, member, keep=name in KEPT_FILES)
            scanned.digests[name] = digest
            scanned.offsets[name] = member.offset_data
            if data is not None:
                scanned.kept[name] = data
            if n == 0 and name == "manifest.json":
                scanned.listed = _listed_files(scanned.kept[name])


def _read_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, keep: bool
) -> tuple[str, bytes | None]:
    """The member's sha256 (of at most its stated size), and its bytes when `keep`."""
    f = tar.extractfile(member)
    digest = hashlib.sha256()
    kept = bytearray() if keep else None
    left = member.size
    while f is not None and left > 0 and (chunk := f.read(min(CHUNK, left))):
        left -= len(chunk)
        digest.update(chunk)
        if kept is not None:
            kept += chunk
    return digest.hexdigest(), bytes(kept) if kept is not None else None


def read_bundle(path: Path) -> tuple[dict[str, bytes], list[Problem]]:
    """The bundle's kept files (KEPT_FILES) by name, and what was wrong with the archive;
    every other member is only hashed (_scan)."""
    scanned = _scan(path)
    return scanned.kept, scanned.problems


def _record_lines(path: Path, digest: str, offset: int, problems: list[Problem]) -> Iterator[bytes]:
    """records.jsonl's lines as they stream out of the archive again (the member _scan
    hashed, at `offset`: not another of that name), none held past its own check; a line past
    MAX_LINE_BYTES ends the reading as a problem, and bytes that differ from the scan's
    (the file replaced between the passes) are one too."""
    with _open_archive(path) as tar:
        member = next(
            (m for m in tar if m.name == RECORDS and m.isfile() and m.offset_data == offset), None
        )
        f = tar.extractfile(member) if member is not None else None
        if member is None or f is None:
            return
        seen = hashlib.sha256()
        left, n = member.size, 0
        while left > 0:
            raw = f.readline(min(MAX_LINE_BYTES + 1, left))
            if not raw:
                break
            left -= len(raw)
            seen.update(raw)
            n += 1
            if len(raw) > MAX_LINE_BYTES:
                problems.append(_file_problem(f"{RECORDS} line {n}: longer than {MAX_LINE_BYTES}"))
                return
            yield raw
        if seen.hexdigest() != digest:
            problems.append(_file_problem(f"{RECORDS}: changed while it was read"))


def _listed_files(manifest: bytes) -> set[str] | None:
    """The names a manifest's `files` lists (the manifest itself besides), or None when it
    lists none (its own check reports that)."""
    try:
        listed = strict_json(manifest).get("payload", {}).get("files")
    except (ValueError, AttributeError):
        return None
    if not isinstance(listed, dict):
        return None
    return {str(name) for name in listed} | {"manifest.json"}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a key named twice")
    return found


def strict_json(data: bytes | str) -> Any:
    """JSON whose objects name each key once. A signature covers the payload as parsed,
    not the file's bytes: a manifest.json or chain_head.json given a second "payload"
    (or "files", "record_macs") before the signed one still verified here, where the
    last one counts, and read as the first to a reader where the first counts (SQLite's
    json_extract, some streaming parsers): one signed file, two contents. ValueError."""
    return json.loads(data, object_pairs_hook=_unique_keys)


def _json_lines(name: str, data: bytes, problems: list[Problem]) -> list[Any]:
    out = []
    for n, raw in enumerate(data.rstrip(b"\n").split(b"\n") if data else [], start=1):
        try:
            out.append(strict_json(raw))
        except ValueError:
            problems.append(_file_problem(f"{name} line {n}: not JSON, or a key named twice"))
    return out


def verify_bundle(path: Path, pinned_key: Ed25519PublicKey | None = None) -> BundleReport:
    """Everything an auditor can check with the bundle alone (and optionally a pinned key).

    In memory bounded by the signed files and one record, whatever the bundle's size: a
    first pass hashes every member (the manifest's signature and digests are checked from
    it), a second streams records.jsonl through the chain, signature and stream checks
    (_RecordsCheck), each stream file checked by the digest of what records.jsonl implies.
    """
    report = BundleReport()
    scanned = _scan(path)
    files, problems = scanned.kept, scanned.problems
    report.problems = problems
    try:
        key = load_public_pem(files.get("public_key.pem", b""))
    except ValueError as exc:
        problems.append(_file_problem(f"public_key.pem: {exc or 'missing or unreadable'}"))
        return report
    report.key_id = key_id_of(key)
    keys = _key_history(files, pinned_key or key, problems)
    if key_id_of(keys.current) != report.key_id:
        pinned = key_id_of(pinned_key) if pinned_key is not None else report.key_id
        problems.append(
            _file_problem(
                f"public_key.pem is key {report.key_id}, not the pinned key {pinned}"
                f" nor a key it was rotated to ({KEY_HISTORY})"
            )
        )
        return report
    retired = trusted_retired_problem(keys)
    if retired is not None:
        problems.append(Problem(retired[0], ROTATION_KIND, "", retired[1]))
    manifest = _check_manifest(files, scanned.digests, key, problems)
    check = _RecordsCheck(SignedRecordChecker(keys), keys.rotation_hashes, problems)
    check.withholding = manifest.get("values") == VALUES_WITHHELD
    if RECORDS in scanned.digests:
        where = scanned.offsets[RECORDS]
        for raw in _record_lines(path, scanned.digests[RECORDS], where, problems):
            check.feed(raw)
    problems.extend(check.checker.problems)
    check.streams_problems(scanned.digests)
    if check.withholding and manifest.get("withheld") != check.counted.withheld:
        problems.append(
            _file_problem(f"manifest.json: its count of withheld records differs from {RECORDS}")
        )
    _check_head(files.get("chain_head.json", b""), key, check, manifest, problems)
    checker = check.checker
    report.records, report.checkpoints, report.statements = (
        check.count,
        checker.checkpoints,
        checker.statements,
    )
    report.first_seq = check.first["seq"] if check.first else 0
    report.head = (check.last["seq"], check.last["hash"]) if check.last else (0, "")
    counted = check.counted
    counted.records, counted.first_seq, counted.head = check.count, report.first_seq, report.head
    counted.checkpoints, counted.statements = checker.checkpoints, checker.statements
    counted.anchor = f"chain_head.json (signed) names seq {report.head[0]}: the last record"
    counted.macs = _macs_said(manifest.get("record_macs"))
    report.counted = counted
    report.exported = _exported(manifest, files.get("chain_head.json", b""))
    counted.keys = keys.describe() if keys.rotations else ""
    counted.times = check.times.line()
    counted.verdicts = check.times.verdicts_line()
    counted.lost = check.times.losses.line()
    counted.batches = check.times.numbers_line()
    counted.unclosed = len(check.times.losses.unclosed)
    problems.sort(key=lambda p: (p.seq == 0, p.seq))
    report.ok = not problems
    return report


class _RecordsCheck:
    """records.jsonl checked a line at a time, holding the first and last line only: the
    chain (the first break named once), each signed record (`checker`), the counts, the
    key history's rotations against the records of the same seqs, and the digest each
    stream file must have (exactly the lines of its kinds, in order; masking.jsonl what
    MaskingLog derives)."""

    def __init__(
        self, checker: SignedRecordChecker, rotation_hashes: dict[int, str], problems: list[Problem]
    ) -> None:
        self.checker = checker
        self.rotation_hashes = rotation_hashes
        self.problems = problems
        self.counted = Counted()
        self.times = EventTimes()
        self.count = self.n = 0
        self.broken = False
        self.first: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None
        self.masking = MaskingLog()
        # the manifest (signed) says the bundle withholds values: a record not of
        # WHOLE_KINDS may come with a null body, which is counted, not re-hashed
        self.withholding = False
        self.stream_file = {s.name: s.file for s in STREAMS}
        self.expected = {s.file: hashlib.sha256() for s in STREAMS if s.file != RECORDS}
        self.expected[MASKING] = hashlib.sha256()
        self.lines = {name: 0 for name in self.expected}

    def feed(self, raw: bytes) -> None:
        self.n += 1
        try:
            line = strict_json(raw.decode("utf-8", "replace"))
        except ValueError:
            line = None
        if not a_record(line):
            if not self.broken:
                self.problems.append(_file_problem(f"{RECORDS} line {self.n}: not a record"))
            self.broken = True
            return
        withheld = self._withheld(line)
        if not self.broken:
            problem = _link_problem(self.last, line, withheld)
            if problem:
                self.problems.append(problem)
                self.broken = True
        self.first = self.first or line
        self.last = line
        self.count += 1
        self._signed(line, withheld)
        self._stream(line)

    def _withheld(self, line: dict[str, Any]) -> bool:
        """Whether the line is a record whose body the export withheld (and may have)."""
        if line["body"] is not None or not self.withholding:
            return False  # (a null body elsewhere does not hash as its record: named)
        if line["kind"] in WHOLE_KINDS - VALUED_WHOLE_KINDS:
            where = f"a {line['kind']} record is never withheld"
            self.problems.append(Problem(line["seq"], line["kind"], line["id"], where))
            return False
        held = self.counted.withheld
        held[line["kind"]] = held.get(line["kind"], 0) + 1
        return True

    def _signed(self, line: dict[str, Any], withheld: bool = False) -> None:
        seq = line["seq"]
        self.checker.feed(
            seq,
            line["id"],
            line["kind"],
            line["session_id"],
            line["subject"],
            {} if withheld else line["body"],
            line["hash"],
        )
        if isinstance(line["time_us"], int):
            self.counted.see(seq, line["kind"], line["time_us"] / 1_000_000)
        if isinstance(line["time_us"], int) and not withheld:
            self.times.feed(
                seq,
                line["kind"],
                line["time_us"] / 1_000_000,
                line["session_id"],
                line["body"],
                line["id"],
            )
        # a rotation in both files is the same record
        if (
            line["kind"] == ROTATION_KIND
            and self.rotation_hashes.get(seq, line["hash"]) != line["hash"]
        ):
            where = f"{KEY_HISTORY} holds another record at seq {seq}"
            self.problems.append(Problem(seq, line["kind"], line["id"], where))

    def _stream(self, line: dict[str, Any]) -> None:
        name = stream_of(line["kind"])
        if name is not None and self.stream_file[name] in self.expected:
            self._add(self.stream_file[name], line)
        for entry in self.masking.feed(line):
            self._add(MASKING, entry)

    def _add(self, file: str, doc: dict[str, Any]) -> None:
        self.expected[file].update((canonical_json(doc) + "\n").encode())
        self.lines[file] += 1

    def streams_problems(self, digests: dict[str, str]) -> None:
        """Each stream file against the digest of what records.jsonl implies."""
        for name, want in self.expected.items():
            if digests.get(name, _EMPTY) != want.hexdigest():
                self.problems.append(
                    _file_problem(
                        f"{name}: differs from what {RECORDS} holds (expected"
                        f" {self.lines[name]} lines)"
                    )
                )


_EMPTY = hashlib.sha256(b"").hexdigest()


def _key_history(
    files: dict[str, bytes], trusted: Ed25519PublicKey, problems: list[Problem]
) -> KeyHistory:
    """The key history (pdp.evidence.rotation) the bundle's rotation records make from the
    trusted key: each a record line whose hash is its content's (the manifest binds the
    file; a rotation's two signatures bind the keys)."""
    rotations: list[tuple[int, Any]] = []
    hashes: dict[int, str] = {}
    for n, line in enumerate(_json_lines(KEY_HISTORY, files.get(KEY_HISTORY, b""), problems), 1):
        bad = None
        if not a_record(line):
            bad = _file_problem(f"{KEY_HISTORY} line {n}: not a record")
        elif line["kind"] != ROTATION_KIND:
            bad = _file_problem(f"{KEY_HISTORY} line {n}: not a key rotation")
        else:
            bad = _link_problem(None, line)
        if bad is not None:
            problems.append(bad)
            continue
        rotations.append((line["seq"], line["body"]))
        hashes[line["seq"]] = line["hash"]
    keys, _ = key_history(trusted, sorted(rotations, key=lambda r: r[0]))
    keys.rotation_hashes = hashes
    return keys


def _check_manifest(
    files: dict[str, bytes],
    digests: dict[str, str],
    key: Ed25519PublicKey,
    problems: list[Problem],
) -> dict[str, Any]:
    try:
        doc = strict_json(files.get("manifest.json", b""))
    except ValueError:
        problems.append(_file_problem("manifest.json: missing, not JSON, or a key named twice"))
        return {}
    bad = signature_problem(doc, key)
    if bad:
        problems.append(_file_problem(f"manifest.json: {bad}"))
        return {}
    manifest = doc["payload"]
    listed = manifest.get("files", {})
    required = {RECORDS, MASKING, *(s.file for s in STREAMS), *FIXED_FILES} - {"manifest.json"}
    for name in sorted(required - set(listed)):
        problems.append(_file_problem(f"{name}: not listed in manifest.json"))
    for name in sorted(set(digests) - set(listed) - {"manifest.json"}):
        problems.append(_file_problem(f"{name}: in the archive but not in manifest.json"))
    for name, digest in sorted(listed.items()):
        if name not in digests:
            problems.append(_file_problem(f"{name}: listed in manifest.json but missing"))
        elif digests[name] != digest:
            problems.append(
                _file_problem(f"{name}: sha256 does not match manifest.json (the file was changed)")
            )
    return dict(manifest)


_LINE_KEYS = {
    "seq",
    "id",
    "kind",
    "time",
    "time_us",
    "session_id",
    "subject",
    "body",
    "prev_hash",
    "hash",
}


_LINE_TEXTS = ("id", "kind", "time", "session_id", "subject", "prev_hash", "hash")
MAX_TIME_US = 2**63  # (the stores' integer column)


def a_record(line: Any) -> bool:
    """Whether a line of records.jsonl (or key_history.jsonl) is shaped as the export
    writes a record: its fields, a seq and time_us that are the stores' integers, the
    others text. An edited bundle's line otherwise reached the checks with a seq of text
    or a list, an id that is a list, a time_us no double holds, and the offline check
    stopped with a TypeError or OverflowError instead of naming the line."""
    if not isinstance(line, dict) or set(line) != _LINE_KEYS:
        return False
    seq, time_us = line["seq"], line["time_us"]
    if type(seq) is not int or not 0 < seq < MAX_TIME_US:
        return False
    if type(time_us) is not int or not 0 <= time_us < MAX_TIME_US:
        return False
    return all(type(line[name]) is str for name in _LINE_TEXTS)


def _exported(manifest: dict[str, Any], head: bytes) -> str:
    """What the signed manifest and head say of the export itself: when, the window asked
    for, and the store's head then — a bundle is a view of the chain as it was, and one
    handed over as the whole may be an older export, or one of a narrower window (the
    incident's day left out), every signature valid. "" for a bundle that says none."""
    if not manifest:
        return ""
    window = manifest.get("window")
    window = window if isinstance(window, dict) else {}
    since, until = window.get("since"), window.get("until")

    def bound(value: Any, open_end: str) -> str:
        return rfc3339(value) if isinstance(value, int | float) else open_end

    said = (
        f"at {inert(str(manifest.get('generated_at', '?')))}, records timed"
        f" {bound(since, 'from the first')} to {bound(until, 'the last')}"
    )
    try:
        payload = strict_json(head).get("payload", {})
        store = payload.get("store_head", {})
        if type(store.get("seq")) is int:
            later = store["seq"] - int(payload.get("seq") or 0)
            said += f"; the store's head then: seq {store['seq']}"
            if later > 0:
                said += f" ({later} records after the bundle's last are not in it)"
    except (ValueError, AttributeError, TypeError):
        pass
    return said


def _macs_said(said: Any) -> str:
    """What the signed manifest says of record MACs, for the report ("" when silent)."""
    if not isinstance(said, dict):
        return "not stated (a bundle written before record MACs were stated)"
    if said.get("checked") is not True:
        return "not checked at export (the PDP's proxy key was not at hand)"
    ranges = [
        (r[0], r[1])
        for r in said.get("not_written_by_the_pdp") or []
        if isinstance(r, list) and len(r) == 2 and all(type(n) is int for n in r)
    ]
    if not ranges:
        return "checked at export: every record written by a holder of the PDP's key"
    return (
        f"checked at export: records {describe_ranges(ranges)} were NOT written by the PDP"
        " (INSERTed into the store by someone else; acknowledged by an operator): they are"
        " in the chain, and what they say is not the PDP's evidence"
    )


def _check_records(data: bytes, problems: list[Problem]) -> int:
    """records.jsonl's chain re-verified from its bytes (the first break named once);
    how many records it holds. Lines end at LF only: canonical JSON leaves U+2028, U+0085
    and the like unescaped inside a record's text."""
    unsigned = SignedRecordChecker(Ed25519PrivateKey.generate().public_key())  # not asked
    check = _RecordsCheck(unsigned, {}, problems)
    for raw in data.split(b"\n"):
        if raw:
            check.feed(raw)
    return check.count


def _link_problem(
    prev: dict[str, Any] | None, line: dict[str, Any], withheld: bool = False
) -> Problem | None:
    """What breaks the chain at line: its place, its link to prev, its hash (not for a
    withheld record, whose body is not there to hash: the next record's link to it is
    what pins its hash), its time."""
    seq = line["seq"]

    def bad(text: str, at: int = seq) -> Problem:
        same = at == seq
        return Problem(at, line["kind"] if same else "", line["id"] if same else "", text)

    if prev is not None:
        if seq != prev["seq"] + 1:
            if isinstance(seq, int) and seq > prev["seq"] + 1:
                return bad(
                    f"record {prev['seq'] + 1} is missing (record {prev['seq']} is"
                    f" followed by record {seq})",
                    prev["seq"] + 1,
                )
            return bad(f"record {seq} is out of order (follows record {prev['seq']})")
        if line["prev_hash"] != prev["hash"]:
            return bad(f"record {seq} does not link to record {prev['seq']} (prev_hash differs)")
    try:
        actual = (
            line["hash"]
            if withheld
            else record_hash(
                line["prev_hash"],
                seq,
                line["id"],
                line["kind"],
                line["time_us"],
                line["session_id"],
                line["subject"],
                line["body"],
            )
        )
    except (TypeError, ValueError):
        return bad(f"record {seq} cannot be hashed")
    if actual != line["hash"]:
        return bad(f"record {seq} was changed (its content does not match its hash)")
    if not isinstance(line["time_us"], int) or line["time"] not in (
        time_of(line["time_us"]),
        _legacy_time_of(line["time_us"]),
    ):
        return bad(f"record {seq} has a time that differs from its hashed time_us")
    return None


def _check_head(
    data: bytes,
    key: Ed25519PublicKey,
    check: _RecordsCheck,
    manifest: dict[str, Any],
    problems: list[Problem],
) -> None:
    try:
        doc = strict_json(data)
    except ValueError:
        problems.append(_file_problem("chain_head.json: missing, not JSON, or a key named twice"))
        return
    bad = signature_problem(doc, key)
    if bad:
        problems.append(_file_problem(f"chain_head.json: {bad}"))
        return
    head = doc["payload"]
    empty: dict[str, Any] = {"seq": 0, "hash": "", "prev_hash": ""}
    last = check.last or empty
    first = check.first or empty
    if head.get("seq") != last["seq"] or head.get("hash") != last["hash"]:
        at = (
            last["seq"] + 1 if isinstance(head.get("seq"), int) and head["seq"] > last["seq"] else 0
        )
        problems.append(
            Problem(
                at,
                "",
                "",
                f"chain_head.json names seq {head.get('seq')} hash"
                f" {str(head.get('hash'))[:16]}… but records.jsonl ends at seq"
                f" {last['seq']}: records were removed or replaced",
            )
        )
    if head.get("first_seq") != first["seq"] or head.get("first_prev_hash") != first["prev_hash"]:
        problems.append(
            Problem(
                first["seq"],
                "",
                "",
                "records.jsonl does not start where"
                " chain_head.json says: records were removed from the start",
            )
        )
    if head.get("records") != check.count:
        problems.append(
            _file_problem(
                f"chain_head.json counts {head.get('records')} records;"
                f" records.jsonl has {check.count}"
            )
        )
    records = manifest.get("records", {})
    if manifest and (records.get("last_seq"), records.get("count")) != (
        head.get("seq"),
        head.get("records"),
    ):
        problems.append(_file_problem("manifest.json and chain_head.json disagree"))
