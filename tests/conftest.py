"""Fixtures shared by the test suite. Keep each one small and general."""

from __future__ import annotations

import os
import secrets
import sys
import types
from collections.abc import Iterator

import pytest
import warm_workers
from pg_drops import drop_later, wait_for_drops

PG_ADMIN_DSN = os.environ.get("PORTCULLIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# Bytecode is written (next to the sources, in the __pycache__ directories .gitignore
# names) even where the environment says PYTHONDONTWRITEBYTECODE: without it each pytest
# worker compiled the project and rewrote and compiled every test module again (~20 s of
# CPU a worker on the 2-core VM, 8 s with the cache), and every Python process a test
# starts (the `portcullis` CLI, spawned stacks) compiled the project modules it imports
# (0.65 -> 0.48 s of CPU a `portcullis --help`). Set here, before collection and before
# pytest-xdist starts its workers, which inherit the environment.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False
# `portcullis` (and `python`) as a test runs them are the scripts of the interpreter running
# the tests, found first on PATH: where PATH names pyenv's shims first, each was a bash
# script running `pyenv exec` to find the same file (+0.08 s of CPU, ~1 s of wall a call
# on the loaded VM)
_BIN = os.path.dirname(sys.executable)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = os.pathsep.join([_BIN, os.environ.get("PATH", "")])


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


@pytest.fixture
async def idp():  # type: ignore[no-untyped-def]
    """A real OIDC issuer (tests/oidc_issuer.py) on a free port: discovery, JWKS, tokens."""
    from tests.oidc_issuer import OIDCIssuer

    issuer = OIDCIssuer()
    await issuer.start()
    yield issuer
    await issuer.stop()


@pytest.fixture
async def verifier(idp):  # type: ignore[no-untyped-def]
    """The PDP's token verifier on `idp`, RS256 and ES256."""
    from pdp.domain.identity import TokenVerifier

    made = TokenVerifier(idp.settings(algorithms=["RS256", "ES256"]))
    yield made
    await made.close()


@pytest.fixture
def bao():  # type: ignore[no-untyped-def]
    """A real OpenBao server (tests/openbao.py) on a free port, in dev mode, for one test."""
    from openbao import running_openbao

    with running_openbao() as server:
        yield server


@pytest.fixture
def vault_admin() -> Iterator[tuple[str, str]]:
    """A Postgres superuser with a password, for OpenBao's database secrets engine."""
    from openbao import vault_admin_role

    with vault_admin_role() as admin:
        yield admin


@pytest.fixture
def dyn_role() -> Iterator[str]:
    """A fresh dynamic-role name; any login OpenBao could not revoke is dropped afterwards."""
    from openbao import drop_dynamic_roles

    role = "dr" + secrets.token_hex(3)  # OpenBao keeps 8 characters of it in a login name
    yield role
    drop_dynamic_roles(role)


_WARM: list[warm_workers.WarmWorkers] = []


def pytest_configure(config: pytest.Config) -> None:
    """Test PDPs take the evaluation workers closed PDPs of their policy handed back (warm_workers;
    PORTCULLIS_TEST_COLD_WORKERS=1: every PDP starts its own, for comparison)."""
    if os.environ.get("PORTCULLIS_TEST_COLD_WORKERS") != "1":
        _WARM.append(warm_workers.install())

    config.addinivalue_line(
        "markers", "cold_workers: no evaluation worker handed over (the test counts them)"
    )


@pytest.fixture(autouse=True)
def _cold_workers(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("cold_workers") is None or not _WARM:
        yield
        return
    _WARM[0].pause()
    try:
        yield
    finally:
        _WARM[0].resume()


def pytest_unconfigure(config: pytest.Config) -> None:
    while _WARM:
        _WARM.pop().close()


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
# of tests, their Hypothesis examples and whether the module starts real stacks. Tests of
# a file keep their order.
HEAVY: dict[str, float] = {
    # seconds each file's tests took, one file (or six) per pytest process on the 2-core VM
    # while other work loaded it (load 9-19; 2026-12-06, d4b9235, and the files changed
    # since for the suite's wall time at their new cost), divided by 1.6: the median ratio
    # of those runs to the full `make test` of 8ce2be5 for the files both timed. Every file
    # of 6 s or more that was timed; the rest are estimated (_estimate)
    "test_pg_adversarial.py": 130,
    "test_pg_clients.py": 130,
    "test_ssh_input.py": 116,
    "test_usability_corpus.py": 104,
    "test_pg_proxy.py": 94,
    "test_evidence.py": 81,
    "test_pdp_probe_p7.py": 79,
    "test_evidence_rotation.py": 79,
    "test_cli_usability.py": 78,
    "test_pdp_probe_p2.py": 74,
    "test_evidence_macs.py": 74,
    "test_pdp_probe_p5.py": 69,
    "test_metrics_proxy.py": 57,
    "test_pdp_server.py": 50,
    "test_pdp_probe_p8.py": 48,
    "test_http_probe_p3.py": 46,
    "test_drain_postgres.py": 45,
    "test_sessions_cli.py": 43,
    "test_masking_lineage.py": 43,
    "test_health_proxy.py": 42,
    "test_pg_probe_p15.py": 41,
    "test_ssh_probe_p9.py": 38,
    "test_approvals.py": 37,
    "test_console_probe_p1.py": 36,
    "test_policy_library.py": 36,
    "test_pgbouncer_pooler.py": 35,
    "test_console_probe_p2.py": 33,
    "test_ssh_sessions.py": 31,
    "test_http_probe_p6.py": 30,
    "test_pg_probe_p9.py": 30,
    "test_mcp_codec.py": 28,
    "test_http_proxy.py": 28,
    "test_evidence_bundle_stream.py": 28,
    "test_pdp_struct_memo.py": 26,
    "test_pg_reach.py": 26,
    "test_engine_wire.py": 23,
    "test_pg_probe_p4.py": 23,
    "test_metrics_workers.py": 22,
    "test_vault.py": 21,
    "test_masking_formats.py": 21,
    "test_console_browser.py": 20,
    "test_pg_probe_p13.py": 19,
    "test_pg_codec_fuzz.py": 19,
    "test_pg_hot_lanes.py": 19,
    "test_ssh_probe_p2.py": 18,
    "test_ssh_sftp.py": 16,
    "test_pdp_probe_p13.py": 16,
    "test_canonical_json.py": 15,
    "test_pdp_probe_p4.py": 15,
    "test_ssh_probe_p7.py": 14,
    "test_pg_probe_p6.py": 14,
    "test_guards_shared.py": 14,
    "test_pg_probe_p14.py": 13,
    "test_ssh_probe_p8.py": 12,
    "test_masking_lane.py": 12,
    "test_deploy.py": 11,
    "test_json_logs.py": 11,
    "test_pg_probe_p12.py": 11,
    "test_pg_prepared_rewrites.py": 10,
    "test_http_codings.py": 10,
    "test_recorder.py": 10,
    "test_policy_flags.py": 10,
    "test_drain_ssh.py": 9,
    "test_pdp_probe_p9.py": 9,
    "test_statements.py": 9,
    "test_ssh_probe_p4.py": 8,
    "test_shadow_mode.py": 8,
    "test_store.py": 7,
    "test_console_probe_p3.py": 7,
    "test_pg_hot_path.py": 7,
    "test_pg_simple_lane.py": 7,
    "test_drain_http.py": 7,
    "test_decide_stream.py": 6,
    "test_rowfilter_pg.py": 6,
    # files of shared stacks (tests/pg_probe_stack.py, usability_stacks, ...) estimated as
    # unit tests before _HARNESSES: one pytest process each on the 2-core VM, load 10-16
    # (2026-12-07, 30bc02c and this session's work), divided by 1.6 as above
    "test_bundle.py": 72,
    "test_usability_p1.py": 19,
    "test_pg_pinning.py": 17,
    "test_pg_probe_p46.py": 15,
    "test_pg_probe_p30.py": 14,
    "test_pdp_probe_p20.py": 11,
    "test_masking_probe_p2.py": 9,
    "test_console_probe_p4.py": 8,
    "test_http_probe_p18.py": 8,
    "test_pg_probe_p43.py": 8,
    "test_masking_probe_p6.py": 7,
    "test_http_probe_p29.py": 6,
    # the last 70 files in the order before (estimated from 0.02 to 2 s), one pytest
    # process for all 70, load ~10: 533 s of tests, the four first here 51-61 s each
    "test_classifier_differential.py": 38,
    "test_evidence_probe_p8.py": 38,
    "test_console_probe_p7.py": 33,
    "test_http_probe_p15.py": 32,
    "test_engine_go_runtime.py": 11,
    "test_pg_probe_p29.py": 10,
    "test_pg_probe_p52.py": 9,
    "test_evidence_probe_p9.py": 9,
    "test_ssh_probe_p44.py": 8,
    "test_mcp_probe_p9.py": 8,
    "test_policy_masks.py": 7,
    "test_mcp_probe_p30.py": 7,
    "test_mcp_probe_p6.py": 7,
    "test_ssh_probe_p43.py": 7,
    "test_runtime_probe_p5.py": 7,
    "test_mcp_probe_p26.py": 6,
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
# the shared set-up modules that start real components: a module whose names come from
# one (arena = arena_fixture(), reader_fixture, a stack's helpers) starts a stack once for
# the module at least. Without them, 194 such files were estimated as unit tests (0.02 s a
# test) and went out after the pure unit files, at the run's end: measured 4-115 s each
# (load ~12; test_bundle 115 s, estimated 20 s)
_HARNESSES = frozenset(
    {
        "adversary",
        "pg_probe_stack",
        "pg_harness",
        "pg_cluster",
        "ssh_harness",
        "ssh_probe_stack",
        "usability_stacks",
        "http_upstream",
        "openbao",
        "spawned",
        "mcp_held_masking",
    }
)
# what such a module's stack costs once, and then each test (measured: an arena module of
# one test 8 s, of 87 tests 9 s; usability_p1, 132 tests, 19 s)
_HARNESS_SECONDS = 6.0
_HARNESS_TEST_SECONDS = 0.1


def _home(value: object) -> object:
    return getattr(value, "__module__", None)


def _uses_harness(names: dict[str, object]) -> bool:
    """The module takes a name from a stack's set-up module, or from another test module
    (its fixtures: test_mcp_proxy's mcp_stack, test_console_probe_p6's pdp, ...)."""
    for value in names.values():
        home = value.__name__ if isinstance(value, types.ModuleType) else None
        home = home or getattr(value, "__module__", None)
        if isinstance(home, str) and (home in _HARNESSES or home.startswith("test_")):
            return True
    return False


def _estimate(items: list[pytest.Item]) -> float:
    module = getattr(items[0], "module", None)
    names = vars(module) if module is not None else {}
    stacks = any(name in names for name in _STACKS)
    own = getattr(module, "__name__", None)
    harness = _uses_harness({k: v for k, v in names.items() if _home(v) != own})
    seconds = _HARNESS_SECONDS if harness else 0.0
    for item in items:
        # a Hypothesis test runs its body max_examples times (drawing one: ~4 ms)
        examples = _examples(item)
        if examples:
            seconds += examples * 0.01
        elif stacks:
            seconds += 0.6
        else:
            seconds += _HARNESS_TEST_SECONDS if harness else 0.02
    return seconds


def _examples(item: pytest.Item) -> int:
    test = getattr(item, "obj", None)
    if not getattr(test, "is_hypothesis_test", False):
        return 0
    settings = getattr(test, "_hypothesis_internal_use_settings", None)
    return int(getattr(settings, "max_examples", 100) or 100)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    weight = {
        path: HEAVY.get(path.rsplit("/", 1)[-1], 0.0) or _estimate(its)
        for path, its in files.items()
    }
    items[:] = [item for path in sorted(files, key=lambda p: -weight[p]) for item in files[path]]
