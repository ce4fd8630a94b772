"""Waiting for the disk from the event loop: fdatasync through Linux native AIO.

Owns the syscalls (io_setup, io_submit of IOCB_CMD_FDSYNC, io_getevents, io_destroy) and
the completion signal: an eventfd the loop watches. The kernel's own worker does the
sync, so no thread of ours is woken and no GIL changes hands for it; on a VM a round trip
to a Python thread costs more CPU than the sync itself (measured here: ~85 µs against
~60 µs), and the loop's thread pays for most of it. Where native AIO is missing (not
Linux, an architecture not listed, big-endian, `fs.aio-max-nr` used up),
`open_disk_sync()` returns None and the store syncs on its writer thread as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import platform
import sys
import threading
from typing import Any

log = logging.getLogger("portcullis.store")

# io_setup, io_destroy, io_submit, io_getevents by architecture (asm/unistd.h)
_SYSCALLS = {
    "x86_64": (206, 207, 209, 208),
    "aarch64": (0, 1, 2, 4),
    "arm64": (0, 1, 2, 4),
}
IOCB_CMD_FDSYNC = 3
IOCB_FLAG_RESFD = 1  # signal aio_resfd (an eventfd) on completion
DEPTH = 64  # syncs in flight at once; the store has one, two while a late one lands


class _IOCB(ctypes.Structure):  # struct iocb, little-endian layout
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IOEvent(ctypes.Structure):  # struct io_event
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class AioSync:
    """fdatasync(fd) as a future of the running loop, completed by the kernel."""

    def __init__(self, loop: asyncio.AbstractEventLoop, syscalls: tuple[int, int, int, int]):
        self._loop = loop
        self._setup, self._destroy, self._submit, self._getevents = syscalls
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._ctx = ctypes.c_ulong(0)
        if self._syscall(self._setup, DEPTH, ctypes.byref(self._ctx)) != 0:
            raise _os_error("io_setup")
        try:
            self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            self._syscall(self._destroy, self._ctx)
            raise
        self._events = (_IOEvent * DEPTH)()
        self._no_wait = (ctypes.c_long * 2)(0, 0)
        # in flight: aio_data → its future
        self._flying: dict[int, asyncio.Future[None]] = {}
        self._next = 0
        # what every sync and completion passes, made once: the syscall as a function
        # that keeps the GIL (io_submit of a sync only queues it, io_getevents without a
        # timeout only reads the ring: neither waits, so dropping and retaking the GIL
        # around them would only cost, and let another thread take it meanwhile), its
        # integer arguments as C longs, and one iocb with its pointer array (the kernel
        # copies an iocb when it is submitted; the next sync fills the same one)
        self._fast = ctypes.PyDLL(None, use_errno=True).syscall
        self._fast.restype = ctypes.c_long
        self._submit_args = (
            ctypes.c_long(self._submit),
            ctypes.c_long(self._ctx.value),
            ctypes.c_long(1),
        )
        self._reap_args = (
            ctypes.c_long(self._getevents),
            ctypes.c_long(self._ctx.value),
            ctypes.c_long(0),
            ctypes.c_long(DEPTH),
            self._events,
            self._no_wait,
        )
        self._iocb = _IOCB(
            aio_lio_opcode=IOCB_CMD_FDSYNC, aio_flags=IOCB_FLAG_RESFD, aio_resfd=self._eventfd
        )
        self._request = (ctypes.POINTER(_IOCB) * 1)(ctypes.pointer(self._iocb))
        loop.add_reader(self._eventfd, self._completed)

    def _syscall(self, number: int, *args: Any) -> int:
        """syscall(2) with every integer passed as a C long, as the kernel reads it (an
        int passed through varargs may leave a register's upper half undefined)."""
        return int(
            self._libc.syscall(
                ctypes.c_long(number),
                *(ctypes.c_long(a) if isinstance(a, int) else a for a in args),
            )
        )

    def fdatasync(self, fd: int) -> asyncio.Future[None]:
        """A future that completes once fd's data is on disk, or fails with the OSError
        the sync met. Raises OSError at once if the kernel would not take the request
        (nothing was synced, nor failed to be): the caller syncs some other way."""
        future = self._loop.create_future()
        self._next += 1
        iocb = self._iocb
        iocb.aio_data = self._next
        iocb.aio_fildes = fd
        if self._fast(*self._submit_args, self._request) != 1:
            raise _os_error("io_submit")
        self._flying[self._next] = future
        return future

    def _completed(self) -> None:
        try:
            os.eventfd_read(self._eventfd)
        except BlockingIOError:
            return
        while self._flying:
            n = self._fast(*self._reap_args)
            if n <= 0:
                return
            for event in self._events[:n]:
                future = self._flying.pop(event.data, None)
                if future is None or future.done():  # a waiter cancelled: shield() keeps
                    continue  # the future it watches, this one is nobody's
                if event.res < 0:
                    code = -event.res
                    future.set_exception(OSError(code, os.strerror(code)))
                else:
                    future.set_result(None)

    def close(self) -> None:
        """Stop watching and release the context. io_destroy waits for syncs still in
        flight, so with any (a late one on a stalled disk) it waits on a thread of its
        own: closing never holds the loop up."""
        self._loop.remove_reader(self._eventfd)
        for future in self._flying.values():
            if not future.done():
                future.set_exception(OSError(errno.ECANCELED, "disk sync closed"))
        if self._flying:
            threading.Thread(target=self._release, name="aio-release", daemon=True).start()
        else:
            self._release()
        self._flying.clear()

    def _release(self) -> None:
        self._syscall(self._destroy, self._ctx)
        os.close(self._eventfd)


def _os_error(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


def open_disk_sync(loop: asyncio.AbstractEventLoop) -> AioSync | None:
    """An AioSync on this loop, or None where native AIO cannot be had (then the caller
    syncs on a thread)."""
    syscalls = _SYSCALLS.get(platform.machine())
    if not sys.platform.startswith("linux") or syscalls is None or sys.byteorder != "little":
        return None
    try:
        return AioSync(loop, syscalls)
    except (OSError, AttributeError) as exc:  # AttributeError: no os.eventfd (Python < 3.10)
        log.info("native AIO unavailable (%s): the decision log syncs on a thread", exc)
        return None
