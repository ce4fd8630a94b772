"""Reading long SSH exec lines in a process of its own, off the PDP's event loop.

Owns the one step of a decision's input that can take the PDP's CPU for long: bashlex
reads a line at 20-30 µs a byte, so a 16 KiB line (MAX_SHELL_READ) held the event loop
0.3-0.5 s, and every other session's decision with it; a reader sending distinct such
lines over a few connections stalled the PDP for everyone. A line pdp.domain.ssh_input
says is one to read apart (longer than READ_APART, not read by its fast readings) is read
here by a spawned worker process (the evaluator's Go runtime must never be forked) within
READ_SECONDS; its reading is kept for exec_input. A line not read in time, or a worker
that died, gives a malformed reading: the policy denies it (fail closed). Lines wait their
turn for the one worker, so only those who send them wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing

from pdp.domain import ssh_input

log = logging.getLogger("portcullis.pdp")

READ_SECONDS = 2.0


class ShellReader:
    """The PDP's reader of long exec lines (one worker process, started on first use)."""

    def __init__(self, timeout: float = READ_SECONDS) -> None:
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def read_ahead(self, raw: str) -> None:
        """Read `raw` apart when it is such a line, so its decision's input finds it."""
        if not ssh_input.read_apart(raw):
            return
        pool = self._worker()
        future = asyncio.get_running_loop().run_in_executor(pool, ssh_input.read_line, raw)
        try:
            reading = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            # the worker is still on it: a new one for the next line
            self._stop(pool)
            reading = ssh_input.unread(raw, f"the line was not read within {self.timeout:g} s")
        except Exception as exc:  # a worker that died (BrokenProcessPool), or the pool shut
            log.warning("reading an exec line apart failed: %s", type(exc).__name__)
            self._stop(pool)
            reading = ssh_input.unread(raw, "the line could not be read")
        ssh_input.keep_reading(raw, reading)

    def _worker(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _stop(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()  # a worker still reading would hold shutdown
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._stop(self._pool)
