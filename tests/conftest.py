"""Fixtures shared by the test suite. Keep each one small and general."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

PG_ADMIN_DSN = os.environ.get("PORTCULLIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty database on the real test server; yields its DSN, drops it after."""
    import psycopg

    name = f"portcullis_t_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL test server not reachable at {PG_ADMIN_DSN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the order files run in ---------------------------------------------------------------
# `make test` runs pytest-xdist with --dist loadfile --no-loadscope-reorder: each worker
# takes the next whole file in collection order when it runs low. A heavy file taken last
# keeps one worker busy long after the other has finished (xdist's own reordering, by test
# count, put heavy files of few tests last), so files run heaviest first: measured seconds
# where known (HEAVY: one worker's wall time, 2-core VM), else an estimate from the number
# of tests and whether the module starts real stacks. Tests of a file keep their order.
HEAVY: dict[str, float] = {
    # measured 2026-12-06 (one file alone on a worker, the machine loaded by other runs)
    "test_pdp_probe_p2.py": 175,
    "test_pg_proxy.py": 150,
    "test_approvals.py": 110,
    "test_console_browser.py": 90,
    "test_pdp_server.py": 85,
    "test_pdp_kill_under_load.py": 60,
}
# names a module that starts real components imports (a PDP, a gateway, sshd, OpenBao...)
_STACKS = (
    "running_pdp",
    "running_gateway",
    "gateway_on",
    "Sshd",
    "spawned",
    "serving",
    "running_openbao",
    "OpenBao",
    "throwaway_cluster",
    "running_arena",
    "PDPApp",
)


def _estimate(items: list[pytest.Item]) -> float:
    module = getattr(items[0], "module", None)
    names = vars(module) if module is not None else {}
    per_test = 0.6 if any(name in names for name in _STACKS) else 0.02
    return per_test * len(items)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    weight = {
        path: HEAVY.get(path.rsplit("/", 1)[-1], 0.0) or _estimate(its)
        for path, its in files.items()
    }
    items[:] = [item for path in sorted(files, key=lambda p: -weight[p]) for item in files[path]]
