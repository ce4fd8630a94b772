"""PDP replicas on one PostgreSQL audit store (issue 28 §4), against the real server.

- two stores (two connection pools, as two replicas hold them) appending at once extend
  ONE hash chain: every record gets a distinct seq, the seqs run 1..N without a gap, every
  caller is told the seq and hash the store holds, and the chain verifies;
- end to end: two `portcullis pdp` processes on ONE port (pdp.reuse_port: SO_REUSEPORT)
  and one store, the real Postgres proxy in front of a real database, writers inserting
  numbered rows through it and a reader whose INSERT waits for a person's approval. The
  replica serving the proxy — the one that made the approval request — is killed
  (SIGKILL) mid-traffic. The proxy's next calls reach the other replica; the waiting
  reader is approved there (`portcullis approvals approve` at the shared port) and its
  INSERT runs; every committed row has its allow decision and its recorded command in
  the store; `portcullis audit verify` passes on the chain both replicas wrote.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psycopg
import pytest
import yaml
from pdp_harness import REGO, free_port, pdp_raw
from pg_harness import scratch_database

from pdp.domain.identity import DevIssuer
from pdp.domain.recordings import session_events
from pdp.store import GENESIS_HASH, open_store
from pdp.store.chain import verify_rows
from portcullis.config import StoreSettings, load_config
from proxies.postgres.proxy import PostgresProxy

pytestmark = pytest.mark.integration

WRITERS = 3
RECORDS_PER_TASK = 60
TASKS_PER_STORE = 8


async def until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Wait for condition (a bound on a hung run, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)


def orders_db(tmp: Path, database: str, role: str, password: str, **options: Any) -> dict[str, Any]:
    """The proxied connection these tests write through: scratch `database` reached with its
    owner's static credentials, spooling under `tmp`."""
    return {
        "name": "orders-db",
        "type": "postgres",
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": "127.0.0.1:5432",
        "database": database,
        "zone": "eu-prod",
        "credentials": {"provider": "static", "username": role, "password": password},
        "spool_dir": str(tmp / "spool"),
        **options,
    }


# -- one chain from two writers ------------------------------------------------------------


async def test_two_stores_on_one_database_extend_one_chain(pg_database):
    """The advisory lock of pdp/store/postgres.py, tested: concurrent batches from two
    pools never fork the chain, skip a seq or hand two callers the same place."""
    settings = StoreSettings(type="postgres", dsn=pg_database)
    first, second = open_store(settings, timeout=10), open_store(settings, timeout=10)
    await first.start()
    await second.start()
    try:

        async def append_many(store, tag: str) -> list:
            return [
                await store.append("test.replica", {"tag": tag, "n": n}, subject=tag)
                for n in range(RECORDS_PER_TASK)
            ]

        tasks = [
            append_many(store, f"{name}-{t}")
            for name, store in (("a", first), ("b", second))
            for t in range(TASKS_PER_STORE)
        ]
        told = [r for batch in await asyncio.gather(*tasks) for r in batch]
        total = 2 * TASKS_PER_STORE * RECORDS_PER_TASK
        assert len(told) == total
        assert sorted(r.seq for r in told) == list(range(1, total + 1))
        stored = {r.seq: r for r in await first.query(limit=total + 10)}
        assert len(stored) == total
        for record in told:  # what each caller was told is what the chain holds
            assert stored[record.seq].id == record.id
            assert stored[record.seq].hash == record.hash
            assert stored[record.seq].prev_hash == record.prev_hash
        assert stored[1].prev_hash == GENESIS_HASH
        # both pools wrote, interleaved: neither ran alone
        writers = [stored[s].subject[0] for s in range(1, total + 1)]
        assert writers.count("a") == writers.count("b") == total // 2
        assert any(writers[i] != writers[i + 1] for i in range(total - 1))
        for store in (first, second):
            report = await store.verify()
            assert report.ok, report.problem
            assert report.records == total
        # and the chain as an auditor reads it, column by column
        with psycopg.connect(pg_database) as conn:
            rows = conn.execute(
                "SELECT seq, id, kind, time_us, session_id, subject, body, prev_hash, hash"
                " FROM audit_records ORDER BY seq"
            ).fetchall()
        assert verify_rows(rows).ok
    finally:
        await first.close()
        await second.close()


async def test_a_replica_gone_with_the_chain_lock_holds_the_others_only_briefly(pg_database):
    """A replica whose host vanishes mid-batch leaves its transaction open with the chain
    lock held (no FIN reaches the server). The other replicas fail closed meanwhile, and
    only until the server ends the orphaned transaction (orphan_seconds), not for the
    hours a TCP keepalive would take; the chain stays whole."""
    from pdp.store import StoreUnavailable
    from pdp.store.postgres import CHAIN_LOCK, PostgresAuditStore

    gone = PostgresAuditStore(pg_database, timeout=1.0, orphan_seconds=2.0)
    live = PostgresAuditStore(pg_database, timeout=1.0)
    await gone.start()
    await live.start()
    try:
        await live.append("test.replica", {"n": 0})
        assert gone._pool is not None
        held = await gone._pool.acquire()
        batch = held.transaction()
        await batch.start()
        await held.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
        # ... and then nothing more from that replica
        with pytest.raises(StoreUnavailable):
            await live.append("test.replica", {"n": 1})
        deadline = time.monotonic() + 60
        while True:
            try:
                await live.append("test.replica", {"n": 2})
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the orphaned lock was never released"
        # the server ended the orphan: nobody holds the chain lock any more
        with psycopg.connect(pg_database) as conn:
            (holders,) = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
        assert holders == 0
        report = await live.verify()
        assert report.ok, report.problem
        # an append the client gave up on may still have been committed by the server
        # once the lock was free (the store names such late commits): it is in the
        # chain, never lost and never out of order
        ns = [r.body["n"] for r in await live.query(kind="test.replica")]
        assert ns[0] == 0 and ns[-1] == 2 and ns == sorted(ns) and set(ns) <= {0, 1, 2}, ns
    finally:
        await live.close()
        await gone.close()


# -- which replica holds what ---------------------------------------------------------------

LISTEN, ESTABLISHED = "0A", "01"


def tcp_sockets(pid: int) -> list[tuple[int, str]]:
    """(local port, state) of every TCP socket process pid holds (from /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                found.append((int(fields[1].rsplit(":", 1)[1], 16), fields[3]))
    return found


def holds(pid: int, port: int, state: str) -> bool:
    return (port, state) in tcp_sockets(pid)


def start_replica(config_path: Path, port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "-c", str(config_path), "pdp"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 60
    while not holds(process.pid, port, LISTEN):
        assert process.poll() is None, f"a replica exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the replica never listened"
        time.sleep(0.1)
    return process


def write_config(tmp: Path, store_dsn: str, database: str, role: str, password: str) -> Path:
    port, http_port = free_port(), free_port()
    raw = pdp_raw(
        tmp,
        listen=f"127.0.0.1:{port}",
        # a deadline with room for a machine shared with other work: this test is about
        # failover, not evaluation time
        engine={"type": "embedded", "policies": str(REGO), "workers": 1, "timeout_ms": 5000},
        store={"type": "postgres", "dsn": store_dsn},
        connections=[orders_db(tmp, database, role, password)],
        approvals={"timeout_seconds": 120},
    )
    raw["pdp"]["reuse_port"] = True
    raw["pdp"]["http_listen"] = f"127.0.0.1:{http_port}"
    raw["pdp"]["proxy_key"] = str(tmp / "proxy.key")
    raw["pdp"]["proxy_credential_file"] = str(tmp / "proxy.credential")
    path = tmp / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class Writers:
    """Writers inserting numbered rows through the proxy, reconnecting when refused."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.acknowledged: set[int] = set()  # the client was told the INSERT committed
        self.next = 0
        self.stop = asyncio.Event()
        self.refusals: list[str] = []

    async def writer(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = await asyncpg.connect(self.dsn, timeout=5)
                n = self.next
                self.next += 1
                if await conn.execute(f"INSERT INTO load_rows VALUES ({n})") == "INSERT 0 1":
                    self.acknowledged.add(n)
                if n % 11 == 0:  # sessions end and begin all the time
                    await conn.close(timeout=5)
                    conn = None
            except asyncpg.PostgresError as exc:
                self.refusals.append(str(exc))
                await asyncio.sleep(0.05)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                if conn is not None:
                    conn.terminate()
                conn = None
                await asyncio.sleep(0.05)
        if conn is not None:
            await conn.close(timeout=5)


def cli(config_path: Path, *args: str, token: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PORTCULLIS_TOKEN": token} if token else None
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "-c", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


async def test_a_replica_killed_mid_traffic_loses_nothing(tmp_path, pg_database):
    schema = "CREATE TABLE load_rows (n int PRIMARY KEY);"
    with scratch_database(schema) as (database, role, password):
        path = write_config(tmp_path, pg_database, database, role, password)
        config = load_config(path)
        port = int(config.pdp.listen.rsplit(":", 1)[1])
        first = start_replica(path, port, tmp_path / "replica-1.log")
        second = start_replica(path, port, tmp_path / "replica-2.log")
        replicas = {first.pid: first, second.pid: second}
        # both replicas listen on the one port: the kernel spreads new connections
        assert all(holds(pid, port, LISTEN) for pid in replicas)
        proxy = PostgresProxy(config.connections[0], config, config.pdp.listen)
        await proxy.start()
        issuer = DevIssuer(config.identity)
        dba = issuer.issue("dba@example.com", ["dba"], 3600)
        reader = issuer.issue("alice@example.com", ["readonly"], 3600)
        dsn = f"postgresql://agent:{{}}@127.0.0.1:{proxy.port}/{database}"
        load = Writers(dsn.format(dba))
        writers = [asyncio.create_task(load.writer()) for _ in range(WRITERS)]
        store = open_store(StoreSettings(type="postgres", dsn=pg_database), timeout=10)
        await store.start()
        reader_conn = None
        try:
            await until(lambda: len(load.acknowledged) >= 20)
            # a reader's INSERT needs a person's approval: made by the replica serving the proxy
            reader_conn = await asyncpg.connect(dsn.format(reader), timeout=10)
            waiting = asyncio.ensure_future(
                reader_conn.execute("INSERT INTO load_rows VALUES (-1)")
            )
            approval_id = ""
            deadline = time.monotonic() + 30
            while not approval_id:
                assert time.monotonic() < deadline, "no approval request was made"
                assert not waiting.done(), waiting
                requested = await store.query(kind="approval")
                approval_id = next(
                    (r.body["approval_id"] for r in requested if r.body["event"] == "requested"),
                    "",
                )
                await asyncio.sleep(0.1)
            # the proxy's one channel is held by one replica: kill that one
            serving = [pid for pid in replicas if holds(pid, port, ESTABLISHED)]
            assert len(serving) == 1, serving
            victim = replicas.pop(serving[0])
            survivor = next(iter(replicas.values()))
            at_kill = len(load.acknowledged)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            # clients go on through the other replica (denied during the switch: fail closed)
            await until(lambda: len(load.acknowledged) >= at_kill + 30)
            assert holds(survivor.pid, port, ESTABLISHED)
            assert not waiting.done(), "the approval wait ended with the replica"
            # the request made on the dead replica is approved through the living one
            approved = await asyncio.to_thread(
                cli,
                path,
                "approvals",
                "approve",
                approval_id,
                "--reason",
                "approved after a replica died",
                token=issuer.issue("sam@example.com", ["security"], 3600),
            )
            assert approved.returncode == 0, approved.stderr
            assert await asyncio.wait_for(waiting, 60) == "INSERT 0 1"
            await until(lambda: len(load.acknowledged) >= at_kill + 40)
        finally:
            load.stop.set()
            await asyncio.gather(*writers, return_exceptions=True)
            if reader_conn is not None:
                await reader_conn.close(timeout=5)
        try:
            acknowledged = set(load.acknowledged) | {-1}
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}") as admin:
                committed = {n for (n,) in admin.execute("SELECT n FROM load_rows")}
            assert acknowledged <= committed
            # no lost record: every row that ran has its command in the session's recorded
            # events (spooled ones drain into the living replica) ...
            deadline = time.monotonic() + 60
            while True:
                ran_under = {
                    int(e["command"].split("(")[1].rstrip(")")): e.get("decision_id", "")
                    for e in await session_events(store)
                    if e.get("type") == "command"
                    and e.get("command", "").startswith("INSERT INTO load_rows")
                }
                if committed <= set(ran_under):
                    break
                assert time.monotonic() < deadline, (
                    f"unrecorded rows {sorted(committed - set(ran_under))[:20]}"
                )
                await asyncio.sleep(0.25)
            # ... naming the recorded decision that let it run (its own, or the one the
            # proxy's cache reused for its session)
            allowing = {
                r.id
                for r in await store.query(kind="decision")
                if r.body.get("verdict") in ("allow", "mask")
            }
            unfounded = sorted(n for n in committed if ran_under[n] not in allowing)
            assert not unfounded, f"rows without an allowing decision: {unfounded[:20]}"
            events = [r.body["event"] for r in await store.query(kind="approval")]
            assert "approved" in events and "executed" in events
        finally:
            await proxy.stop()
            await store.close()
            survivor.send_signal(signal.SIGTERM)  # its last checkpoint covers the chain
            survivor.wait(timeout=60)
        verified = await asyncio.to_thread(cli, path, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith("OK:")
        assert "unbroken hash chain" in verified.stdout


JIT_POLICY = """package portcullis

# contractors get sessions only through a just-in-time grant
decision := {"verdict": "require_approval", "reasons": ["contractors need a grant"],
             "approval": {"approvers": ["group:security"], "ttl_seconds": 600}} if {
  input.command.kind == "session.open"
  not input.approval
}

decision := {"verdict": "allow", "reasons": ["granted"]} if {
  input.command.kind == "session.open"
  input.approval.state == "approved"
}

approvers := {"allowed": true, "reasons": ["security"]} if {
  "security" in input.approver.groups
} else := {"allowed": false, "reasons": ["not an approver"]}
"""


async def test_a_session_grant_asked_at_one_replica_is_awaited_at_another(tmp_path, pg_database):
    """A session.open request has no session yet: only the proxy that asked may wait on it
    — at any replica, since the store says which proxy that was. Another proxy holding a
    valid credential is refused there; the asking proxy waits, is granted, and opens."""
    from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp

    from portcullis.v1 import pdp_pb2

    policies = tmp_path / "jit"
    policies.mkdir()
    (policies / "policy.rego").write_text(JIT_POLICY)
    store = {"type": "postgres", "dsn": pg_database}
    engine = {"type": "embedded", "policies": str(policies), "workers": 1}
    # one directory: the replicas share the proxy key, the signing key and the dev issuer
    first_config = pdp_config(tmp_path, store=store, engine=engine)
    second_config = pdp_config(tmp_path, store=store, engine=engine)
    token = DevIssuer(first_config.identity).issue("carl@example.com", ["contractors"], 3600)
    async with running_pdp(second_config) as second:
        asking = second.issue_proxy_credential("proxy-a", ["orders-db"])
        other = second.issue_proxy_credential("proxy-b", ["orders-db"])
        async with running_pdp(first_config) as first, pdp_stub(first.address, asking) as stub:
            asked = await open_session(stub, token)
            assert asked.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
            approval_id = asked.decision.approval_id
            assert approval_id and not asked.session_id
        # the replica that made the request is gone; its proxy asks the other
        wait = pdp_pb2.AwaitApprovalRequest(approval_id=approval_id, timeout_seconds=30)
        async with pdp_stub(second.address, other) as intruder:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in intruder.AwaitApproval(wait):
                    pass
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        async with pdp_stub(second.address, asking) as stub:
            states: list[str] = []

            async def await_it() -> None:
                async for update in stub.AwaitApproval(wait):
                    states.append(update.approval.state)

            waiting = asyncio.ensure_future(await_it())
            await until(lambda: bool(states))
            assert states == ["pending"]
            approver = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
            await second.approvals.decide(approval_id, approver, True, "granted at the other")
            await asyncio.wait_for(waiting, 30)
            assert states[-1] == "approved"
            granted = await open_session(stub, token)
            assert granted.decision.verdict == pdp_pb2.ALLOW
            assert granted.decision.approval_id == approval_id and granted.session_id


def test_without_reuse_port_a_second_replica_refuses_the_taken_port(tmp_path, pg_database):
    """reuse_port is opt-in: a second PDP started by mistake on a taken port stops,
    naming the key, instead of silently sharing the traffic."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        raw = pdp_raw(
            tmp_path,
            listen=f"127.0.0.1:{port}",
            store={"type": "postgres", "dsn": pg_database},
            engine={"type": "embedded", "policies": str(REGO), "workers": 1},
        )
        path = tmp_path / "portcullis.yaml"
        path.write_text(yaml.safe_dump(raw))
        result = cli(path, "pdp")
        assert result.returncode != 0
        assert "pdp.listen" in result.stderr
