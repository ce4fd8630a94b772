"""The proxy's durable spool: session evidence the PDP could not take yet.

Owns one append-only file per proxy process (`<dir>/<connection>-<pid>.spool`, locked
while the process lives) holding, in the order they happened, the recording batches and
session closes that could not be delivered. Each line is one JSON entry, written and
fsynced together with the others of the same flush (one fsync per tick, not per event).
A task delivers the entries in order once the PDP answers again; the file is emptied
when the last one is delivered.

The spool is bounded (`spool_max_bytes`), and the bound is kept where it can be kept
without losing evidence: before anything runs. A session reserves room for its close when
it opens, and room for its undelivered events before each statement is forwarded
(`reserve`; the recorder gives back what the PDP acknowledged, `release`); a session that
cannot reserve is refused or halted. The evidence of what already ran is never refused for
room: an entry written against a reservation (`add(..., claim=n)`) is written even when
it weighs more than reserved — the bound is passed only by the estimates' error for the
statements in flight at the moment room ran out. An entry with no claim that would not
fit is refused.

At start a proxy adopts the spool files of processes of its connection that are gone
(their lock is free): their entries are delivered first — its own file's too, when a
process gone before it had the same pid (a restarted container). What is delivered from
here is the proxy's evidence, so only what the proxy's own user could have written is
read: the directory must be the user's, writable by it alone (else the proxy does not
start), and a file that is a link, another user's, or open to others is left unread.

Each entry is spooled with its seal: an HMAC of the very request it becomes (its
session_key aside) under a key made from its session's key (spool_key). The session's key
lives in the memory of the process that opened the session only, and is never spooled:
a process that adopts another's spool (a proxy that crashed, restarted) delivers the
entries with their seals instead (`spooled:` and the seal as the request's session_key),
which the PDP checks under the sealing key it keeps wrapped for the session. So the spool's
reader can deliver what was spooled and nothing else (pdp.api.session_keys).

Must not: decide anything, or drop an entry the PDP has not taken (an entry the PDP
refuses as malformed or for a session it does not know is logged and dropped: sending it
again would never succeed).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import stat
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portcullis.v1 import pdp_pb2

log = logging.getLogger("portcullis.spool")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_SPOOL_DIR = "var/spool"  # a connection's option spool_dir
RETRY_SECONDS = 0.5

# what delivering one entry came to
STORED, REFUSED, UNREACHABLE = "stored", "refused", "unreachable"
# a sealed delivery's session_key: this, then the entry's seal (pdp.api.session_keys.SEALED)
SEALED = "spooled:"


def spool_key(session_id: str, key: str) -> bytes:
    """The key a session's spooled entries are sealed with, made from the session's key
    (pdp.domain.sessions.spool_key makes the same); it does not give the session's key."""
    content = f"portcullis-spool\0{session_id}".encode()
    return hmac.new(key.encode(), content, hashlib.sha256).digest()


def seal(sealing_key: bytes, rpc: str, request: Any) -> str:
    """The seal of a spooled `rpc` request (RecordEvents, CloseSession): an HMAC of its
    deterministic serialization without its session_key (pdp.api.session_keys.seal)."""
    bare = type(request)()
    bare.CopyFrom(request)
    bare.session_key = ""
    content = f"{rpc}\0".encode() + bare.SerializeToString(deterministic=True)
    return hmac.new(sealing_key, content, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One spooled delivery: a batch of events (JSON array text) or a session's close."""

    session_id: str
    events: str = ""  # a JSON array of events, as the recorder sends them
    close: dict[str, Any] | None = None  # {"reason", "abnormal", "summary"}
    seq: int = 0  # the batch's number in its session (RecordEventsRequest.batch_seq)
    # its seal (seal(): what speaks for it when its session's key is gone; "" none made)
    seal: str = ""

    def line(self) -> bytes:
        doc: dict[str, Any] = {"s": self.session_id}
        if self.close is not None:
            doc["close"] = self.close
        else:
            doc["e"] = self.events
            if self.seq:
                doc["q"] = self.seq
        if self.seal:
            doc["t"] = self.seal
        return (json.dumps(doc, separators=(",", ":"), default=str) + "\n").encode()

    @classmethod
    def parse(cls, line: bytes) -> Entry | None:
        """The entry a line holds; None for a line cut short by a crash."""
        try:
            doc = json.loads(line)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("s"), str):
            return None
        sealed = doc.get("t", "")
        sealed = sealed if isinstance(sealed, str) else ""
        if isinstance(doc.get("close"), dict):
            return cls(doc["s"], close=doc["close"], seal=sealed)
        if isinstance(doc.get("e"), str):
            seq = doc.get("q", 0)
            seq = seq if type(seq) is int and seq > 0 else 0
            return cls(doc["s"], events=doc["e"], seq=seq, seal=sealed)
        return None

    def events_request(self) -> pdp_pb2.RecordEventsRequest:
        """A batch's RecordEvents, without its session_key (as it is sealed)."""
        return pdp_pb2.RecordEventsRequest(
            session_id=self.session_id, events_json=self.events, batch_seq=self.seq
        )

    def again(self) -> Entry:
        """The entry as it is read back from its line (what is delivered, and sealed)."""
        parsed = Entry.parse(self.line())
        assert parsed is not None
        return parsed


# delivers one entry to the PDP: STORED, REFUSED or UNREACHABLE
Deliver = Callable[[Entry], Awaitable[str]]


_INSTANCES = itertools.count(1)
_OWN_NAME = re.compile(r"-[0-9]+-[0-9]+\.spool")  # what follows the connection's name


class SpoolFull(Exception):
    """Entries that would take the spool past its bound (or that could not be written)."""


class SpoolUnsafe(OSError):
    """The spool directory is not the proxy user's alone: its files could be forged."""


def _private_directory(directory: Path) -> None:
    """Create the directory (0700) or check that it is a directory of this user that no
    one else may write into (SpoolUnsafe); its files are 0600 each."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise SpoolUnsafe(
            f"spool directory {directory} must be a directory owned by uid {os.geteuid()} "
            f"that only it may write (0700; it is {oct(info.st_mode & 0o7777)}, uid "
            f"{info.st_uid}): "
            "another user could forge the evidence spooled there"
        )


def _own_file(fd: int) -> bool:
    """Whether an open spool file is a regular file of this user, closed to others."""
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


def _read_entries(fd: int) -> list[Entry]:
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", closefd=False) as f:
        return [e for e in map(Entry.parse, f) if e is not None]


class Spool:
    def __init__(self, directory: Path, name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.name = name
        self.max_bytes = max_bytes
        # one file per proxy (a process may run several proxies of one connection)
        self.path = directory / f"{name}-{os.getpid()}-{next(_INSTANCES)}.spool"
        self.entries: deque[Entry] = deque()
        self.size = 0  # bytes in the file
        self.reserved = 0  # bytes promised to sessions (their closes, their pending events)
        self.delivered = 0
        self.refused = 0
        self._held: Counter[str] = Counter()  # entries per session
        self._fd = -1
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one write (or emptying) of the file at a time
        self.on_refused: Callable[[str, str], None] | None = None  # (session_id, why)

    # -- the file ---------------------------------------------------------------------

    def open(self) -> None:
        """Create the file (0600), take its lock, and adopt what dead processes left."""
        _private_directory(self.directory)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
        self._fd = os.open(self.path, flags, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # a file already here was left by a process gone with our pid: its entries first
        orphans = _read_entries(self._fd) if _own_file(self._fd) else []
        os.fchmod(self._fd, 0o600)
        os.ftruncate(self._fd, 0)
        orphans += self._adopt()
        if orphans:
            self._write_sync([e.line() for e in orphans])
            for entry in orphans:
                self._hold(entry)
            log.warning(
                "spool %s: %d undelivered entries of a proxy that is gone, delivering them",
                self.path,
                len(orphans),
            )

    def _adopt(self) -> list[Entry]:
        """The entries of this connection's spool files whose process is gone (their lock
        is free); those files are removed once their entries are in ours."""
        found: list[Entry] = []
        for other in sorted(self.directory.glob(f"{self.name}-*.spool")):
            if other == self.path or not _OWN_NAME.fullmatch(other.name[len(self.name) :]):
                continue  # (another connection's: "orders-eu-7-1.spool" is not "orders"'s)
            try:
                fd = os.open(other, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                log.error("spool: %s cannot be opened (a link?); left unread", other)
                continue
            try:
                if not _own_file(fd):
                    log.error("spool: %s is not this user's alone; left unread", other)
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live proxy's spool
                found.extend(_read_entries(fd))
                other.unlink()
            finally:
                os.close(fd)
        return found

    def _write_sync(self, lines: list[bytes]) -> None:
        """All the lines, durably, or none: a short write (a disk filling up) is continued,
        and a failed one cut off again, so no half line is left for the next lines to be
        glued to (which would make both unreadable when a restart adopts the file)."""
        joined = b"".join(lines)
        data = memoryview(joined)
        try:
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(joined)

    def close(self) -> None:
        if self._fd >= 0:
            if not self.entries:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            os.close(self._fd)  # what is left stays for the next start to deliver
            self._fd = -1

    # -- entries ----------------------------------------------------------------------

    def holds(self, session_id: str) -> bool:
        """Whether the session has entries waiting (its later ones must queue behind)."""
        return self._held[session_id] > 0

    def _hold(self, entry: Entry) -> None:
        self.entries.append(entry)
        self._held[entry.session_id] += 1
        self._wake.set()

    def reserve(self, size: int) -> bool:
        """Promise `size` bytes to a session (False when the spool cannot): what it holds,
        plus what is promised, stays within max_bytes."""
        if self._fd < 0 or self.size + self.reserved + size > self.max_bytes:
            return False
        self.reserved += size
        return True

    def release(self, size: int) -> None:
        """Give back bytes promised by reserve()."""
        self.reserved = max(0, self.reserved - size)

    async def add(self, entries: list[Entry], claim: int | None = None) -> None:
        """Write entries durably (one fsync for all), in order; SpoolFull when they cannot
        be written — nothing of them is then kept.

        claim: the bytes reserved for them, given back as they are written; such entries
        are evidence of what already ran and are written whatever they weigh. Without a
        claim, entries that would take the spool past its bound are refused (SpoolFull)."""
        if not entries:
            return
        lines = [e.line() for e in entries]
        async with self._lock:
            if self._fd < 0:
                raise SpoolFull("the spool is not open")
            if claim is None and self.size + self.reserved + sum(map(len, lines)) > self.max_bytes:
                raise SpoolFull(f"the spool {self.path} is full ({self.max_bytes} bytes)")
            try:
                await asyncio.to_thread(self._write_sync, lines)
            except OSError as exc:
                raise SpoolFull(f"the spool {self.path} cannot be written: {exc}") from None
            if claim:
                self.release(claim)
            for entry in entries:
                self._hold(entry)

    # -- delivery ---------------------------------------------------------------------

    def start(self, deliver: Deliver) -> None:
        self._task = asyncio.create_task(self._run(deliver), name="spool-delivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, deliver: Deliver) -> None:
        while True:
            if not self.entries:
                self._wake.clear()
                await self._wake.wait()
            if not await self.deliver_some(deliver):
                await asyncio.sleep(RETRY_SECONDS)

    async def deliver_some(self, deliver: Deliver) -> bool:
        """Deliver entries in order until none is left (True) or the PDP does not answer
        (False)."""
        while self.entries:
            entry = self.entries[0]
            try:
                outcome = await deliver(entry)
            except Exception:
                log.exception("spool: delivering an entry failed")
                outcome = UNREACHABLE
            if outcome == UNREACHABLE:
                return False
            self.entries.popleft()
            self._held[entry.session_id] -= 1
            if self._held[entry.session_id] <= 0:
                del self._held[entry.session_id]
            if outcome == REFUSED:
                self.refused += 1
                what = "close" if entry.close is not None else "events"
                log.error("spool: the PDP refused session %s's %s", entry.session_id, what)
                if self.on_refused is not None:
                    self.on_refused(entry.session_id, f"the PDP refused its spooled {what}")
            else:
                self.delivered += 1
        async with self._lock:
            if not self.entries and self._fd >= 0:
                await asyncio.to_thread(os.ftruncate, self._fd, 0)
                self.size = 0
        return True
