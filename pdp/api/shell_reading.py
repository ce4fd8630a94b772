"""Reading long SSH exec lines in a process of its own, off the PDP's event loop.

Owns the one step of a decision's input that can take the PDP's CPU for long: bashlex
reads a line at 20-30 µs a byte, so a 16 KiB line (MAX_SHELL_READ) held the event loop
0.3-0.5 s, and every other session's decision with it; a reader sending distinct such
lines over a few connections stalled the PDP for everyone. A line pdp.domain.ssh_input
says is one to read apart (longer than READ_APART, not read by its fast readings) is read
here by a spawned worker process (the evaluator's Go runtime must never be forked) within
READ_SECONDS; its reading is kept for exec_input. A line not read in time, or a worker
that died, gives a malformed reading: the policy denies it (fail closed).

Lines take their turn at the one worker, one at a time: READ_SECONDS is a line's own
reading time, never its wait behind others' (a flood of long lines made every line queued
behind it time out, and each timeout's new worker cancelled the lines still queued, a
victim's among them, whose decisions then failed with the cancellation). A line waits its
turn at most WAIT_SECONDS, and a sender (the session the PDP names) has at most
PENDING_PER_SENDER lines waiting or being read: past either its line is not read for now
(denied as malformed, and read again if sent again: such readings are not kept for good),
so a session flooding the worker holds its own lines back, not much of anyone else's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
from collections import Counter

from pdp.domain import ssh_input

log = logging.getLogger("portcullis.pdp")

READ_SECONDS = 2.0
WAIT_SECONDS = 10.0
PENDING_PER_SENDER = 2


class ShellReader:
    """The PDP's reader of long exec lines (one worker process, started on first use)."""

    def __init__(self, timeout: float = READ_SECONDS, wait: float = WAIT_SECONDS) -> None:
        self.timeout = timeout
        self.wait = wait
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._turn: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._pending: Counter[str] = Counter()

    async def read_ahead(self, raw: str, sender: str = "") -> None:
        """Read `raw` apart when it is such a line, so its decision's input finds it.
        `sender`: whose line it is (a session id), for PENDING_PER_SENDER."""
        if not ssh_input.read_apart(raw):
            return
        if sender and self._pending[sender] >= PENDING_PER_SENDER:
            why = f"more than {PENDING_PER_SENDER} long lines of this session are being read"
            ssh_input.keep_reading(raw, ssh_input.unread(raw, why), for_now=True)
            return
        self._pending[sender] += 1
        try:
            reading, for_now = await self._read(raw)
        finally:
            self._pending[sender] -= 1
            if self._pending[sender] <= 0:
                del self._pending[sender]
        ssh_input.keep_reading(raw, reading, for_now)

    async def _read(self, raw: str) -> tuple[ssh_input.Reading, bool]:
        """The line's reading once its turn came, and whether it is one for now."""
        loop = asyncio.get_running_loop()
        if self._turn is None or self._turn[0] is not loop:
            self._turn = (loop, asyncio.Lock())
        turn = self._turn[1]
        try:
            await asyncio.wait_for(turn.acquire(), self.wait)
        except TimeoutError:
            why = f"the PDP's reader of long lines was busy for {self.wait:g} s"
            return ssh_input.unread(raw, why), True
        try:
            pool = self._worker()
            future = loop.run_in_executor(pool, ssh_input.read_line, raw)
            done, _ = await asyncio.wait({future}, timeout=self.timeout)
            if not done:
                self._stop(pool)  # the worker is still on it: a new one for the next line
                why = f"the line was not read within {self.timeout:g} s"
                return ssh_input.unread(raw, why), True
            try:
                return future.result(), False
            except Exception as exc:  # a worker that died (BrokenProcessPool), or the pool shut
                log.warning("reading an exec line apart failed: %s", type(exc).__name__)
                self._stop(pool)
                return ssh_input.unread(raw, "the line could not be read"), True
        finally:
            turn.release()

    def _worker(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _stop(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        # (None once the pool is shut down)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()  # a worker still reading would hold shutdown
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._stop(self._pool)
