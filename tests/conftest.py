"""Fixtures shared by the test suite. Keep each one small and general."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from pg_drops import drop_later, wait_for_drops

PG_ADMIN_DSN = os.environ.get("PORTCULLIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty database on the real test server; yields its DSN, drops it after
    (in the background: tests/pg_drops.py)."""
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
        drop_later(name, admin_dsn=PG_ADMIN_DSN)  # in the background: tests/pg_drops.py


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Iterator[None]:
    """The scratch databases handed to tests/pg_drops.py are dropped before the run ends;
    one that could not be fails the run, as its test's teardown failed before (set before
    pytest-xdist's worker reads shouldfail to send it to the controller)."""
    failures = wait_for_drops()
    if failures:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for failure in failures:
            if reporter is not None:
                reporter.write_line(f"scratch database not dropped: {failure}", red=True)
        session.shouldfail = f"scratch database(s) not dropped: {'; '.join(failures)}"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    yield


# --- the order files run in ---------------------------------------------------------------
# `make test` runs pytest-xdist with --dist loadfile --no-loadscope-reorder: each worker
# takes the next whole file in collection order when it runs low. A heavy file taken last
# keeps one worker busy long after the other has finished (xdist's own reordering, by test
# count, put heavy files of few tests last), so files run heaviest first: measured seconds
# where known (HEAVY: one worker's wall time, 2-core VM), else an estimate from the number
# of tests and whether the module starts real stacks. Tests of a file keep their order.
HEAVY: dict[str, float] = {
    # seconds each took in a full `make test` (8ce2be5, 2026-12-06, 2-core VM shared with
    # other runs): the 30 heaviest
    "test_pg_adversarial.py": 140,
    "test_usability_corpus.py": 110,
    "test_pg_proxy.py": 74,
    "test_drain_http.py": 71,
    "test_evidence_rotation.py": 69,
    "test_ssh_probe_p9.py": 65,
    "test_console_probe_p3.py": 58,
    "test_drain_postgres.py": 55,
    "test_pdp_probe_p2.py": 55,
    "test_cli_usability.py": 51,
    "test_pg_probe_p9.py": 49,
    "test_metrics_proxy.py": 45,
    "test_approvals.py": 43,
    "test_masking_formats.py": 37,
    "test_pg_probe_p15.py": 37,
    "test_sessions_cli.py": 37,
    "test_pg_reach.py": 36,
    "test_policy_library.py": 35,
    "test_evidence.py": 35,
    "test_http_probe_p6.py": 35,
    "test_console_probe_p1.py": 34,
    "test_pdp_probe_p8.py": 33,
    "test_pdp_server.py": 32,
    "test_pdp_probe_p5.py": 32,
    "test_pgbouncer_pooler.py": 32,
    "test_pg_clients.py": 32,
    "test_console_probe_p2.py": 32,
    "test_ssh_sessions.py": 31,
    "test_evidence_bundle_stream.py": 28,
    "test_http_proxy.py": 28,
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
