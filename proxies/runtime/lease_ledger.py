"""Which Vault leases a proxy process holds, on disk, so the next start revokes what a
crash left behind.

Owns one append-only file per provider (`<spool_dir>/<connection>-<pid>-<n>.leases`,
0600, locked while the process lives, in the spool's directory and under its rules: the
user's own, writable by it alone): a line `+<lease id>` when a lease is issued, `-<lease
id>` when it is let go. A proxy killed before it could revoke (OOM, SIGKILL, a node lost)
leaves its sessions' credentials live for up to their TTL (credentials.lease_ttl); the
next provider of the connection reads the files whose lock is free (their process is
gone), and its caller revokes each lease still held in them (`orphans`), then they are
removed. Lease ids and token accessors name a lease, they do not grant it: what is here is
no secret, and nothing here reads or writes one.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import stat
from pathlib import Path

from proxies.runtime.spool import _private_directory

log = logging.getLogger("portcullis.vault")

_INSTANCES = itertools.count(1)
_OWN_NAME = re.compile(r"-[0-9]+-[0-9]+\.leases")  # what follows the connection's name


class LeaseLedger:
    """The leases one provider holds, as lines in its own locked file."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.path = directory / f"{name}-{os.getpid()}-{next(_INSTANCES)}.leases"
        self._fd = -1

    def open(self) -> list[str]:
        """Create this process's file and take its lock; the leases the files of gone
        processes of the connection still hold (their files are removed: the caller
        revokes them, and a revocation that fails leaves them to their TTL)."""
        _private_directory(self.directory)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
        self._fd = os.open(self.path, flags, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        left = _held(self._fd) if _own_file(self._fd) else []  # a gone process had our pid
        os.fchmod(self._fd, 0o600)
        os.ftruncate(self._fd, 0)
        for other in sorted(self.directory.glob(f"{self.name}-*.leases")):
            if other == self.path or not _OWN_NAME.fullmatch(other.name[len(self.name) :]):
                continue
            try:
                fd = os.open(other, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                log.error("lease ledger %s cannot be opened (a link?); left unread", other)
                continue
            try:
                if not _own_file(fd):
                    log.error("lease ledger %s is not this user's alone; left unread", other)
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live proxy's
                left.extend(_held(fd))
                other.unlink()
            finally:
                os.close(fd)
        return list(dict.fromkeys(left))

    def issued(self, lease_id: str) -> None:
        self._line(f"+{lease_id}\n")

    def released(self, lease_id: str) -> None:
        self._line(f"-{lease_id}\n")

    def _line(self, line: str) -> None:
        if self._fd < 0 or "\n" in line[:-1]:
            return
        try:
            os.write(self._fd, line.encode())
        except OSError as exc:  # a full disk: the lease still ends at its TTL
            log.warning("lease ledger %s: %s", self.path, exc.strerror)

    def abandon(self) -> None:
        """Let the file go with leases still in it (their revocation failed): the next
        start revokes them."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        """Every lease let go: the file goes too."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = -1


def _own_file(fd: int) -> bool:
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


def _held(fd: int) -> list[str]:
    """The leases a ledger file says were issued and not let go, in order."""
    os.lseek(fd, 0, os.SEEK_SET)
    held: dict[str, None] = {}
    with open(fd, "rb", closefd=False) as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not raw.endswith(b"\n") or len(line) < 2:
                continue  # cut short by the crash
            if line[0] == "+":
                held[line[1:]] = None
            elif line[0] == "-":
                held.pop(line[1:], None)
    return list(held)
