"""Scratch databases (and their roles) the tests are done with, dropped together.

DROP DATABASE makes the server take a checkpoint (every dirty buffer of the cluster
written and fsynced) and waits for it: one checkpoints_req per drop, 0.5 to 2.6 s a drop
on the shared 2-core VM while a suite runs, against 0.1 s for the CREATE DATABASE
(measured 2026-12-06), in the teardown of every test that made one (hundreds a run).
Drops asked together share a checkpoint (4 at once: 0.9 s, one: 0.8 s), so a test hands
its database here and goes on; once BATCH are waiting they are dropped at once, from
threads of the test process, and the rest when the session ends (tests/conftest.py,
pytest_sessionfinish, which fails the run if one could not be dropped, as that test's
teardown failed before). A drop taken alone beside the tests (one thread, as each came:
fee5fbe) fought the running tests for the disk: at low load test_pg_proxy took 61.6 ->
69.1 s. A spawned child process (tests/spawned.py) drops at once: nothing waits for it.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

import psycopg

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# databases dropped together: each drop waits for a checkpoint, and those asked while one
# is being taken share the next
BATCH = 8

_lock = threading.Lock()
_waiting: list[tuple[str, str, str | None]] = []
_dropping: list[Future[None]] = []
_failures: list[str] = []
_pool: ThreadPoolExecutor | None = None


def drop_now(admin_dsn: str, database: str, role: str | None = None) -> None:
    """Drop `database` (its sessions ended) and then `role`, if they exist."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=30) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if role:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def _drop(admin_dsn: str, database: str, role: str | None) -> None:
    try:
        drop_now(admin_dsn, database, role)
    except Exception as exc:  # raised by the next drop_later, or at the end
        with _lock:
            _failures.append(f"{database} ({role}): {type(exc).__name__}: {exc}")


def _start_waiting() -> None:
    """Drop every database waiting, at once (called with _lock held)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=BATCH, thread_name_prefix="pg-drop")
    _dropping[:] = [f for f in _dropping if not f.done()]
    _dropping.extend(_pool.submit(_drop, *w) for w in _waiting)
    _waiting.clear()


def drop_later(database: str, role: str | None = None, admin_dsn: str = ADMIN_DSN) -> None:
    """Drop `database`, then `role`, with the next BATCH (in a spawned child: now).
    Raises if a database handed over before could not be dropped, as a drop in the
    teardown of the test that made it raised before."""
    if multiprocessing.parent_process() is not None:
        drop_now(admin_dsn, database, role)
        return
    with _lock:
        _waiting.append((admin_dsn, database, role))
        if len(_waiting) >= BATCH:
            _start_waiting()
        failures = list(_failures)
        _failures.clear()
    if failures:
        raise RuntimeError(f"a scratch database was not dropped: {'; '.join(failures)}")


def wait_for_drops(timeout: float = 300) -> list[str]:
    """Drop every database handed over and wait for them (at most `timeout` seconds);
    returns what could not be dropped, or was still being dropped at the timeout."""
    with _lock:
        _start_waiting()
        dropping = list(_dropping)
    _, late = wait(dropping, timeout)
    with _lock:
        if late:
            _failures.append(f"{len(late)} database(s) still being dropped after {timeout} s")
        failures = list(_failures)
        _failures.clear()
    return failures


def settle(timeout: float = 300) -> None:
    """Drop the databases handed over so far and wait for them: for a test that needs one
    gone before it goes on (a role that owns objects in it is dropped next, say). Raises
    if one could not be dropped."""
    failures = wait_for_drops(timeout)
    if failures:
        raise RuntimeError(f"a scratch database was not dropped: {'; '.join(failures)}")
