"""The PDP as a proxy sees it: a real gRPC server with the real OPA evaluator and store."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pdp_harness import (
    ISSUED,
    REGO,
    decide_sql,
    free_port,
    open_session,
    pdp_config,
    pdp_stub,
    running_pdp,
    token,
)

from pdp.domain.identity import DevIssuer
from pdp.store import StoreUnavailable
from portcullis.v1 import pdp_pb2

TEST_POLICY = """package portcullis

slow if {
  some i in numbers.range(1, 1000)
  some j in numbers.range(1, 1000)
  i * j == -1
}

bit_slow if {
  some i in numbers.range(1, 150)
  some j in numbers.range(1, 1000)
  i * j == -1
}

decision := {"verdict": "allow", "reasons": ["test"]} if input.command.kind == "session.open"

decision := {"verdict": "allow", "reasons": ["fast"]} if input.command.raw == "select 1"

decision := {"verdict": "allow"} if {
  input.command.raw == "slow"
  not slow
}

decision := {"verdict": "allow", "reasons": ["drained"]} if {
  input.command.raw == "a bit slow"
  not bit_slow
}

# two complete definitions that disagree: an evaluation error, not a verdict
decision := {"verdict": "allow"} if input.command.raw == "conflict"

decision := {"verdict": "deny"} if input.command.raw == "conflict"

decision := {"verdict": "allow", "mask": "not a list"} if input.command.raw == "malformed"

decision := {"verdict": "permit"} if input.command.raw == "unknown verdict"
"""


def write_policy(directory: Path, source: str = TEST_POLICY) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policy.rego").write_text(source)
    return directory


async def test_round_trip_over_tcp_with_the_shipped_library(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, "alice@example.com", ("readonly",)))
        assert opened.session_id
        assert opened.decision.verdict == pdp_pb2.ALLOW
        assert opened.decision.decision_id
        assert opened.identity.subject == "alice@example.com"
        assert list(opened.identity.groups) == ["readonly"]

        select = await decide_sql(stub, opened.session_id, "SELECT id, email FROM customers")
        assert select.verdict == pdp_pb2.MASK
        assert {m.field for m in select.mask} >= {"email", "ssn"}
        assert select.cache_key == pdp_pb2.SHAPE and select.cache_ttl_seconds > 0
        drop = await decide_sql(stub, opened.session_id, "DROP TABLE customers")
        assert drop.verdict == pdp_pb2.DENY and drop.reasons
        update = await decide_sql(stub, opened.session_id, "UPDATE t SET a = 1 WHERE id = 2")
        assert update.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert update.approval.approvers
        hidden = await decide_sql(
            stub, opened.session_id, "select 1; /* harmless */ delete from orders"
        )
        assert hidden.verdict in (pdp_pb2.DENY, pdp_pb2.REQUIRE_APPROVAL)
        assert hidden.verdict != pdp_pb2.ALLOW

        ids = {select.decision_id, drop.decision_id, update.decision_id, hidden.decision_id}
        assert len(ids) == 4
        assert select.policy_revision == app.engine.revision

        info = await stub.ServerInfo(pdp_pb2.ServerInfoRequest())
        assert info.engine == "embedded" and info.policy_revision == app.engine.revision
        assert info.decision_id

        closed = await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason="client_disconnect")
        )
        assert closed.decision_id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await decide_sql(stub, opened.session_id, "select 1")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # every answer was logged, in order, on a valid chain
        records = await app.store.query(session_id=opened.session_id)
        kinds = [r.kind for r in records if r.kind != "approval"]
        assert kinds == ["session.open"] + ["decision"] * 4 + ["session.close"]
        # the UPDATE and the hidden DELETE each became an approval request
        assert len({r.body["approval_id"] for r in records if r.kind == "approval"}) == 2
        drop_record = next(r for r in records if r.id == drop.decision_id)
        assert drop_record.body["verdict"] == "deny"
        assert drop_record.body["raw"] == "DROP TABLE customers"
        assert drop_record.body["subject"] == "alice@example.com"
        assert drop_record.body["policy_revision"] == app.engine.revision
        assert drop_record.body["evaluation_ms"] > 0
        assert (await app.store.verify()).ok


async def test_round_trip_over_unix_socket_and_health(tmp_path):
    sock = tmp_path / "pdp.sock"
    config = pdp_config(tmp_path, listen=f"unix:{sock}")
    async with running_pdp(config) as app, grpc.aio.insecure_channel(app.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(
            health_pb2.HealthCheckRequest(service="portcullis.v1.DecisionService")
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        async with pdp_stub(app.address) as stub:
            opened = await open_session(stub, token(config, "dana@example.com", ("dba",)))
            decision = await decide_sql(stub, opened.session_id, "DROP DATABASE orders")
            assert decision.verdict == pdp_pb2.REQUIRE_APPROVAL


async def test_session_denied_for_a_group_without_access(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, "mallory@example.com", ("interns",)))
        assert opened.session_id == ""
        assert opened.decision.verdict == pdp_pb2.DENY
        assert opened.decision.reasons
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await decide_sql(stub, "s-forged", "select 1")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_bad_requests_name_the_field(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        tok = token(config)
        cases = [
            (stub.OpenSession(pdp_pb2.OpenSessionRequest(token=tok)), "connection.name"),
            (
                stub.Decide(
                    pdp_pb2.DecideRequest(
                        command=pdp_pb2.Command(kind="postgres.query", raw="select 1")
                    )
                ),
                "session_id",
            ),
            (stub.Decide(pdp_pb2.DecideRequest(session_id="s-1")), "command.kind"),
            (
                stub.Decide(
                    pdp_pb2.DecideRequest(
                        session_id="s-1", command=pdp_pb2.Command(kind="rm -rf", raw="x")
                    )
                ),
                "command.kind",
            ),
            # an oversized command of an open session is denied and recorded, not refused
            # as a bad request (tests/test_evidence_faults.py)
            (stub.CloseSession(pdp_pb2.CloseSessionRequest()), "session_id"),
        ]
        for call, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert field in err.value.details()


@pytest.mark.parametrize("bad_token", ["", "not-a-jwt", "a.b.c", "x" * 20000])
async def test_bad_token_is_unauthenticated_and_logged(tmp_path, bad_token):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await open_session(stub, bad_token)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "token" in err.value.details()
        if bad_token and len(bad_token) < 16384:
            rejected = await app.store.query(kind="auth.rejected")
            assert len(rejected) == 1 and bad_token not in json.dumps(rejected[0].body)


async def test_expired_token_is_rejected(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            now = int(time.time())
            issuer = DevIssuer(config.identity)  # the trusted key signs an expired token
            expired = jwt.encode(
                {
                    "iss": issuer.issuer,
                    "sub": "alice",
                    "aud": "portcullis",
                    "iat": now - 7200,
                    "nbf": now - 7200,
                    "exp": now - 120,
                    "groups": [],
                },
                issuer._key,
                algorithm="EdDSA",
                headers={"kid": issuer.kid},
            )
            await open_session(stub, expired)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in err.value.details()


async def test_fail_closed_on_engine_error_overrun_undefined_and_malformed(tmp_path):
    policies = write_policy(tmp_path / "policy")
    # a pool of two (the test PDP's default is one worker): one is replaced, both answer
    engine = {"type": "embedded", "policies": str(policies), "workers": 2, "timeout_ms": 500}
    config = pdp_config(tmp_path, policies=policies, engine=engine)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        sid = opened.session_id

        conflict = await decide_sql(stub, sid, "conflict")
        assert conflict.verdict == pdp_pb2.DENY
        assert "policy engine error" in conflict.reasons[0]
        assert "conflict" in conflict.reasons[0]

        overrun = await decide_sql(stub, sid, "slow")
        assert overrun.verdict == pdp_pb2.DENY
        assert "deadline" in overrun.reasons[0]

        undefined = await decide_sql(stub, sid, "select 2")
        assert undefined.verdict == pdp_pb2.DENY
        assert "undefined" in undefined.reasons[0]

        malformed = await decide_sql(stub, sid, "malformed")
        assert malformed.verdict == pdp_pb2.DENY and "malformed" in malformed.reasons[0]
        unknown = await decide_sql(stub, sid, "unknown verdict")
        assert unknown.verdict == pdp_pb2.DENY and "permit" in unknown.reasons[0]

        # the overrunning worker was replaced; the PDP still answers, with both workers
        for _ in range(8):
            fast = await decide_sql(stub, sid, "select 1")
            assert fast.verdict == pdp_pb2.ALLOW
        deadline = time.monotonic() + 20
        while len(app.engine._all) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(app.engine._all) == 2
        records = {r.id: r for r in await app.store.query(kind="decision")}
        assert records[overrun.decision_id].body["verdict"] == "deny"


class BrokenStore:
    """The real SQLite store until `broken` is set; then every write fails."""

    def __init__(self, inner):
        self.inner = inner
        self.broken = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def append(self, *args, **kwargs):
        if self.broken:
            raise StoreUnavailable("disk gone")
        return await self.inner.append(*args, **kwargs)


async def test_store_unwritable_means_deny(tmp_path):
    from pdp.app import Parts
    from pdp.store import open_store

    config = pdp_config(tmp_path)
    store = BrokenStore(open_store(config.pdp.store))
    async with running_pdp(config, Parts(store=store)) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
        allowed = await decide_sql(stub, opened.session_id, "select 1")
        assert allowed.verdict == pdp_pb2.ALLOW
        store.broken = True
        denied = await decide_sql(stub, opened.session_id, "select 1")
        assert denied.verdict == pdp_pb2.DENY
        assert "decision log unavailable" in denied.reasons[0]
        store.broken = False
        again = await decide_sql(stub, opened.session_id, "select 1")
        assert again.verdict == pdp_pb2.ALLOW


async def test_store_unwritable_on_real_postgres_means_deny(tmp_path, pg_database):
    from test_store import refusing_connections

    config = pdp_config(tmp_path, store={"type": "postgres", "dsn": pg_database})
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
        assert (await decide_sql(stub, opened.session_id, "select 1")).verdict == pdp_pb2.ALLOW
        async with refusing_connections(pg_database):
            denied = await decide_sql(stub, opened.session_id, "select 1")
            assert denied.verdict == pdp_pb2.DENY
            assert "decision log unavailable" in denied.reasons[0]
        deadline = time.monotonic() + 10
        while True:
            again = await decide_sql(stub, opened.session_id, "select 1")
            if again.verdict == pdp_pb2.ALLOW or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert again.verdict == pdp_pb2.ALLOW
        assert (await app.store.verify()).ok


async def test_hot_reload_and_a_broken_change_keeps_the_running_policy(tmp_path):
    policies = tmp_path / "policy"
    shutil.copytree(REGO, policies)
    http_port = free_port()
    config = pdp_config(tmp_path, policies=policies)
    config = pdp_config(
        tmp_path,
        policies=policies,
        pdp={**_pdp_raw(config), "http_listen": f"127.0.0.1:{http_port}"},
    )
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        first = app.engine.revision
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
        assert (await decide_sql(stub, opened.session_id, "select 1")).verdict == pdp_pb2.ALLOW

        # a broken change: unsafe variable (only caught by evaluating once)
        (policies / "zz_broken.rego").write_text("package portcullis\nbroken if { x == y }\n")
        await _wait(lambda: bool(app.engine.last_reload_error))
        assert "unsafe" in app.engine.last_reload_error
        assert app.engine.revision == first
        again = await decide_sql(stub, opened.session_id, "select 1")
        assert again.verdict == pdp_pb2.ALLOW and again.policy_revision == first
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{http_port}/readyz") as response:
                ready = await response.json()
            assert "unsafe" in ready["policy_reload_error"]
            scraper = {"Authorization": f"Bearer {app.issue_proxy_credential('prometheus', [])}"}
            async with http.get(
                f"http://127.0.0.1:{http_port}/metrics", headers=scraper
            ) as response:
                assert "portcullis_decisions_total" in await response.text()

        # a good change takes over without a restart
        (policies / "zz_broken.rego").write_text(
            "package portcullis\n\n"
            'deny contains "reload test" if input.command.raw == "select 42"\n'
        )
        await _wait(lambda: app.engine.revision != first)
        assert app.engine.last_reload_error == ""
        changed = await decide_sql(stub, opened.session_id, "select 42")
        assert changed.verdict == pdp_pb2.DENY
        assert changed.policy_revision == app.engine.revision != first


def _pdp_raw(config):
    return {
        "listen": config.pdp.listen,
        "engine": {
            "type": "embedded",
            "policies": str(config.pdp.engine.policies),
            "workers": 2,
            "timeout_ms": 500,
        },
        "store": {"type": "sqlite", "path": str(config.pdp.store.path)},
        "signing_key": str(config.pdp.signing_key),
    }


async def _wait(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.1)


async def started_with_a_bit_slow_policy(tmp_path):
    """A running PDP whose "a bit slow" command is still being decided 0.1 s after it
    was asked (for draining)."""
    from pdp.app import PDPApp

    policies = write_policy(tmp_path / "policy")
    config = pdp_config(
        tmp_path,
        policies=policies,
        engine={"type": "embedded", "policies": str(policies), "workers": 1, "timeout_ms": 10000},
    )
    app = PDPApp(config)
    await app.start()
    ISSUED[app.address] = app.issue_proxy_credential("pytest", ["*"])  # tests play a proxy
    return app, config


async def test_graceful_shutdown_drains_in_flight_calls(tmp_path):
    app, config = await started_with_a_bit_slow_policy(tmp_path)
    async with pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        in_flight = asyncio.ensure_future(decide_sql(stub, opened.session_id, "a bit slow"))
        await asyncio.sleep(0.1)
        await app.stop(grace=10)
        decision = await in_flight
        assert decision.verdict == pdp_pb2.ALLOW and list(decision.reasons) == ["drained"]
        assert (await _reopen_store(config)).ok


async def _reopen_store(config):
    from pdp.store import open_store

    store = open_store(config.pdp.store)
    await store.start()
    try:
        return await store.verify()
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def opa_data_api(*extra: str):
    """tests/opa_server.py as its own process: OPA's REST Data API over the real evaluator."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).parent / "opa_server.py"),
        "--policies", str(REGO), "--port", str(port), *extra,
    )  # fmt: skip
    try:
        await _wait_port(port)
        yield server, f"http://127.0.0.1:{port}"
    finally:
        if server.returncode is None:
            server.terminate()
            await server.wait()


async def test_remote_engine_against_an_opa_data_api_server(tmp_path):
    async with opa_data_api() as (server, url):
        config = pdp_config(tmp_path, engine={"type": "remote", "url": url, "timeout_ms": 2000})
        async with running_pdp(config) as app, pdp_stub(app.address) as stub:
            opened = await open_session(stub, token(config))
            assert opened.decision.verdict == pdp_pb2.ALLOW
            drop = await decide_sql(stub, opened.session_id, "DROP TABLE t")
            assert drop.verdict == pdp_pb2.DENY
            select = await decide_sql(stub, opened.session_id, "SELECT * FROM t")
            assert select.verdict == pdp_pb2.MASK
            assert select.policy_revision.startswith("opa:rego@")
            info = await stub.ServerInfo(pdp_pb2.ServerInfoRequest())
            assert info.engine == "remote"

            server.terminate()
            await server.wait()
            down = await decide_sql(stub, opened.session_id, "SELECT * FROM t")
            assert down.verdict == pdp_pb2.DENY
            assert "cannot reach OPA" in down.reasons[0]


async def test_remote_engine_deadline(tmp_path):
    async with opa_data_api("--delay-ms", "1000") as (_, url):
        config = pdp_config(tmp_path, engine={"type": "remote", "url": url, "timeout_ms": 200})
        async with running_pdp(config) as app, pdp_stub(app.address) as stub:
            opened = await open_session(stub, token(config))
            assert opened.decision.verdict == pdp_pb2.DENY
            assert "did not answer within 200 ms" in opened.decision.reasons[0]


async def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_sqlite_decision_log_is_append_only(tmp_path):
    async def fill():
        config = pdp_config(tmp_path)
        async with running_pdp(config) as app, pdp_stub(app.address) as stub:
            opened = await open_session(stub, token(config))
            await decide_sql(stub, opened.session_id, "select 1")
        return config

    config = asyncio.run(fill())
    db = sqlite3.connect(config.pdp.store.path)
    with pytest.raises(sqlite3.DatabaseError):
        db.execute("UPDATE audit_records SET body = '{}'")
    with pytest.raises(sqlite3.DatabaseError):
        db.execute("DELETE FROM audit_records")


def _worker_environ(app) -> dict[str, str]:
    (worker, *_) = app.engine._all
    raw = Path(f"/proc/{worker.proc.pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


async def test_evaluation_workers_run_go_with_one_thread_and_a_lazier_collector(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    monkeypatch.delenv("GOGC", raising=False)
    async with running_pdp(pdp_config(tmp_path)) as app:
        environ = _worker_environ(app)
        assert environ["GOMAXPROCS"] == "1" and environ["GOGC"] == "800"

    monkeypatch.setenv("GOGC", "150")  # an operator's own setting wins
    async with running_pdp(pdp_config(tmp_path / "again")) as app:
        assert _worker_environ(app)["GOGC"] == "150"


async def test_a_running_pdp_exempts_its_start_up_heap_from_later_collections(tmp_path):
    from pdp.app import PDPApp

    gc.unfreeze()
    stop = asyncio.Event()
    running = asyncio.create_task(PDPApp(pdp_config(tmp_path)).run_until(stop, grace=1))
    try:
        deadline = time.monotonic() + 30
        while not gc.get_freeze_count() and time.monotonic() < deadline and not running.done():
            await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 10_000  # modules, policies, the evaluator's client
    finally:
        stop.set()
        await running
        gc.unfreeze()
