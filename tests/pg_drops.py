"""Scratch databases (and their roles) the tests are done with, dropped in the background.

DROP DATABASE makes the server take a checkpoint (every dirty buffer of the cluster
written and fsynced) and waits for it: 0.5 to 2.6 s a drop on the shared 2-core VM while
a suite runs, against 0.1 s for the CREATE DATABASE (measured 2026-12-06; one
checkpoints_req per drop). The suite makes hundreds, each in a test's teardown. A test
now hands its database here and goes on; threads of the test process drop them, several
at once (drops that wait together share one checkpoint), and the end of the session
waits for the last of them (tests/conftest.py, pytest_sessionfinish) and fails the run if
one could not be dropped, as that test's teardown failed before. A spawned child process
(tests/spawned.py) drops at once: nothing waits for its threads.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading

import psycopg

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# drops at once: each waits for a checkpoint, and those asked together share one
DROPPERS = 3

_pending: queue.Queue[tuple[str, str, str | None]] = queue.Queue()
_threads: list[threading.Thread] = []
_failures: list[str] = []
_lock = threading.Lock()


def drop_now(admin_dsn: str, database: str, role: str | None = None) -> None:
    """Drop `database` (its sessions ended) and then `role`, if they exist."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=30) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if role:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def _drop_forever() -> None:
    while True:
        admin_dsn, database, role = _pending.get()
        try:
            drop_now(admin_dsn, database, role)
        except Exception as exc:  # raised by the next drop_later, or at the end
            with _lock:
                _failures.append(f"{database} ({role}): {type(exc).__name__}: {exc}")
        finally:
            _pending.task_done()


def drop_later(database: str, role: str | None = None, admin_dsn: str = ADMIN_DSN) -> None:
    """Drop `database`, then `role`, soon, without waiting (in a spawned child: now).
    Raises if a database handed over before could not be dropped, as a drop in the
    teardown of the test that made it raised before."""
    if multiprocessing.parent_process() is not None:
        drop_now(admin_dsn, database, role)
        return
    with _lock:
        if not _threads:
            for n in range(DROPPERS):
                thread = threading.Thread(target=_drop_forever, name=f"pg-drop-{n}", daemon=True)
                thread.start()
                _threads.append(thread)
        failures = list(_failures)
        _failures.clear()
    _pending.put((admin_dsn, database, role))
    if failures:
        raise RuntimeError(f"a scratch database was not dropped: {'; '.join(failures)}")


def wait_for_drops(timeout: float = 300) -> list[str]:
    """Wait until every database handed over is dropped (at most `timeout` seconds);
    returns what could not be dropped, or was still waiting at the timeout."""
    done = threading.Event()

    def join() -> None:
        _pending.join()
        done.set()

    threading.Thread(target=join, name="pg-drop-wait", daemon=True).start()
    if not done.wait(timeout):
        with _lock:
            _failures.append(f"{_pending.qsize()} database(s) still waiting after {timeout} s")
    with _lock:
        failures = list(_failures)
        _failures.clear()
    return failures


def settle(timeout: float = 300) -> None:
    """Wait until the databases handed over so far are dropped: for a test that needs one
    gone before it goes on (a role that owns objects in it is dropped next, say). Raises
    if one could not be dropped."""
    failures = wait_for_drops(timeout)
    if failures:
        raise RuntimeError(f"a scratch database was not dropped: {'; '.join(failures)}")
