"""The Postgres proxy with real clients against the machine's real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time

import asyncpg
import psycopg
import pytest
from asyncpg.exceptions import InternalClientError
from pdp_harness import REGO, token
from pg_harness import running_gateway
from upstream_logins import check_logins

from pdp.domain.recordings import EVENTS_KIND, session_events
from portcullis.v1 import pdp_pb2
from proxies.postgres import codec, tracker

DBA = ("dba", "pii-readers")


class Tap:
    """A TCP relay in front of the proxy that keeps every byte sent to the client."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.to_client = bytearray()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Tap:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(src, dst, keep) -> None:
            while data := await src.read(65536):
                if keep:
                    self.to_client.extend(data)
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, False), pipe(up_reader, writer, True), return_exceptions=True
        )


async def test_asyncpg_reads_masked_and_denied_writes_leave_data_alone(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()))
        rows = await conn.fetch("SELECT id, name, email, note FROM customers ORDER BY id")
        assert [r["name"] for r in rows] == ["Ada", "Bob"]
        # binary format: a text column's binary form is its text, so the mask string
        assert rows[0]["email"] == "[REDACTED]"
        assert "4111 1111 1111 1111" not in rows[0]["note"]
        # prepared statement, extended protocol, parameters
        stmt = await conn.prepare("SELECT total FROM orders WHERE customer_id = $1")
        assert [r["total"] for r in await stmt.fetch(1)] == [pytest.approx(99.5)]
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as err:
            await conn.execute("DROP TABLE customers")
        assert "denied by policy" in str(err.value)
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as err:
            await conn.fetch("DELETE FROM customers WHERE id = $1", 1)
        assert "approval required" in str(err.value)
        # transaction: a refusal inside fails the transaction as the server would (until
        # ROLLBACK); the session stays usable
        tx = conn.transaction()
        await tx.start()
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE customers SET name = 'x'")
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await conn.fetchval("SELECT count(*) FROM orders")
        await tx.rollback()
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        with gw.admin() as admin:
            assert admin.execute("SELECT count(*) FROM customers").fetchone()[0] == 2
            assert admin.execute("SELECT name FROM customers WHERE id = 1").fetchone()[0] == "Ada"


async def test_statements_hidden_in_multi_statement_text_are_refused_whole(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()))
        for sql in (
            "SELECT 1; DROP TABLE customers",
            "/* just a read */ SELECT 1; -- and\n DELETE FROM orders",
            "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
            "EXPLAIN ANALYZE DELETE FROM orders",
            "SELECT pg_read_file('/etc/passwd')",
            "COPY orders TO PROGRAM 'cat > /tmp/x'",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        await conn.close()
        with gw.admin() as admin:
            assert admin.execute("SELECT count(*) FROM orders").fetchone()[0] == 2
            assert admin.execute("SELECT to_regclass('customers')").fetchone()[0] is not None


async def test_psycopg_text_format_masks_values_and_dba_sees_them(tmp_path):
    async with running_gateway(tmp_path) as gw:
        async with await psycopg.AsyncConnection.connect(gw.dsn(gw.token())) as conn:
            cur = await conn.execute("SELECT email, ssn, note FROM customers ORDER BY id")
            email, ssn, note = (await cur.fetchall())[0]
            assert email == "[REDACTED]" and ssn == "[REDACTED]"
            assert "1111" in note and "4111 1111" not in note
            cur = await conn.execute("SELECT id FROM customers WHERE name = %s", ("Bob",))
            assert (await cur.fetchall()) == [(2,)]
        async with await psycopg.AsyncConnection.connect(gw.dsn(gw.token("dana", DBA))) as conn:
            cur = await conn.execute("SELECT email FROM customers ORDER BY id")
            assert (await cur.fetchall())[0] == ("ada@example.com",)
            await conn.execute("UPDATE orders SET total = 1 WHERE id = 10")
            await conn.commit()
        with gw.admin() as admin:
            assert admin.execute("SELECT total FROM orders WHERE id = 10").fetchone()[0] == 1


async def test_sqlalchemy_through_the_proxy(tmp_path):
    import sqlalchemy

    async with running_gateway(tmp_path) as gw:
        url = gw.dsn(gw.token("dana", DBA)).replace("postgresql://", "postgresql+psycopg://")

        def work():
            engine = sqlalchemy.create_engine(url)
            with engine.connect() as conn:
                names = conn.execute(sqlalchemy.text("SELECT name FROM customers ORDER BY id"))
                result = [r[0] for r in names]
            engine.dispose()
            return result

        assert await asyncio.to_thread(work) == ["Ada", "Bob"]


def _psql(gw, token: str, *args: str, stdin: str | None = None):
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable"}
    return subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(gw.proxy.port),
            "-U",
            "agent",
            "-d",
            gw.database,
            "-X",
            "-v",
            "ON_ERROR_STOP=0",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
    )


async def test_psql_describe_multi_statement_and_copy(tmp_path):
    async with running_gateway(tmp_path) as gw:
        dba = gw.token("dana", DBA)
        described = await asyncio.to_thread(_psql, gw, dba, "-c", r"\d customers")
        assert described.returncode == 0, described.stderr
        assert "email" in described.stdout
        out = await asyncio.to_thread(
            _psql, gw, gw.token(), "-c", "select 1 as one; drop table customers"
        )
        assert "denied by policy" in out.stderr
        source = tmp_path / "orders.csv"
        source.write_text("20,1,5.00\n21,2,6.00\n")
        loaded = await asyncio.to_thread(
            _psql, gw, dba, "-c", rf"\copy orders from '{source}' with (format csv)"
        )
        assert loaded.returncode == 0, loaded.stderr
        target = tmp_path / "out.csv"
        dumped = await asyncio.to_thread(
            _psql, gw, dba, "-c", rf"\copy (select id from orders order by id) to '{target}'"
        )
        assert dumped.returncode == 0, dumped.stderr
        assert target.read_text().split() == ["10", "11", "20", "21"]
        script = "select count(*) from orders;\nselect name from customers where id = 2;\n"
        piped = await asyncio.to_thread(_psql, gw, gw.token(), "-At", stdin=script)
        assert piped.stdout.split() == ["4", "Bob"], piped.stderr


@pytest.mark.parametrize("mode", ["simple", "prepared"])
async def test_pgbench_through_the_proxy(tmp_path, mode):
    async with running_gateway(tmp_path) as gw:
        init = subprocess.run(
            [
                "pgbench",
                "-i",
                "-s",
                "1",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                gw.role,
                gw.database,
            ],
            capture_output=True,
            text=True,
        )
        assert init.returncode == 0, init.stderr
        env = {**os.environ, "PGPASSWORD": gw.token("bench", DBA), "PGSSLMODE": "disable"}
        run = await asyncio.to_thread(
            subprocess.run,
            [
                "pgbench",
                "-n",
                "-S",
                "-M",
                mode,
                "-c",
                "4",
                "-t",
                "50",
                "-h",
                "127.0.0.1",
                "-p",
                str(gw.proxy.port),
                "-U",
                "agent",
                gw.database,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert "number of transactions actually processed: 200/200" in run.stdout


async def test_masked_values_and_the_upstream_password_never_reach_the_client(tmp_path):
    async with running_gateway(tmp_path) as gw:
        async with Tap(gw.proxy.port) as tap:
            dsn = gw.dsn(gw.token()).replace(f":{gw.proxy.port}/", f":{tap.port}/")
            for binary in (True, False):
                if binary:
                    conn = await asyncpg.connect(dsn)
                    await conn.fetch("SELECT * FROM customers")
                    await conn.fetch("SELECT email AS e, ssn FROM customers WHERE id = $1", 1)
                    await conn.close()
                else:
                    async with await psycopg.AsyncConnection.connect(dsn) as conn:
                        await (await conn.execute("SELECT * FROM customers")).fetchall()
            sent = bytes(tap.to_client)
        assert sent, "the tap saw nothing"
        for secret in (
            b"ada@example.com",
            b"123-45-6789",
            b"4111 1111 1111 1111",
            gw.password.encode(),
        ):
            assert secret not in sent
        events = await session_events(gw.pdp.store)
        # each statement's masking counts are in its own event (details.masked)
        masking = [e for e in events if (e.get("details") or {}).get("masked")]
        assert masking and all("ada@example.com" not in str(e) for e in events)
        assert not [e for e in events if e["type"] == "masking"]
        assert not tracker._NOTHING_MASKED  # counts went to each statement's own counter


async def test_pdp_down_denies_and_the_session_survives_until_it_returns(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        assert await conn.fetchval("SELECT count(*) FROM orders") == 2
        await gw.pdp.stop(grace=1)
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as err:
            await conn.fetchval("SELECT count(*) FROM customers")
        # denied for the decision, or, when the recording's tick met the stopped PDP
        # first, for the recording: either way the client is told the PDP is unreachable
        assert "unreachable" in str(err.value)
        # another client is refused cleanly, the proxy keeps serving
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        # the PDP comes back on the same address and finds the session in its store
        from pdp.app import PDPApp

        revived = PDPApp(gw.config)
        await revived.start()
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    assert await conn.fetchval("SELECT count(*) FROM customers") == 2
                    break
                except asyncpg.InsufficientPrivilegeError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.3)
            await conn.close()
        finally:
            gw.pdp = revived
            await revived.stop(grace=1)


async def test_client_gone_mid_query_leaves_no_upstream_backend(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        query = asyncio.ensure_future(conn.execute("SELECT pg_sleep(60)"))
        await asyncio.sleep(0.5)
        conn.terminate()  # the client vanishes without Terminate
        query.cancel()
        deadline = time.monotonic() + 20
        with gw.admin() as admin:
            while True:  # the proxy runs on this loop: poll without blocking it
                busy = await asyncio.to_thread(
                    lambda: admin.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s",
                        (gw.database, gw.role),
                    ).fetchone()[0]
                )
                if busy == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        assert busy == 0


async def test_cancel_request_goes_through_the_proxy(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        with pytest.raises(TimeoutError):  # asyncpg sends a CancelRequest, then raises
            await conn.execute("SELECT pg_sleep(30)", timeout=0.5)
        deadline = time.monotonic() + 10
        with gw.admin() as admin:
            while True:
                running = await asyncio.to_thread(
                    lambda: admin.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE query LIKE 'SELECT pg_sleep(30)%%'"
                        " AND state = 'active' AND datname = %s",
                        (gw.database,),
                    ).fetchone()[0]
                )
                if running == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        assert running == 0
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()


async def test_malformed_frames_close_only_that_connection(tmp_path):
    async with running_gateway(tmp_path) as gw:
        good = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        for garbage in (
            b"\x00\x00\x00\x02",
            b"\x00\x10\x00\x00" + b"x" * 16,
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f" + b"GET / HTTP/1.1\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
            writer.write(garbage)
            reply = await asyncio.wait_for(reader.read(4096), 10)
            writer.close()
            assert reply[:1] in (b"E", b"")
        # typed garbage after a valid start-up: an oversized frame
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
        writer.write(
            codec.StartupMessage(
                codec.PROTOCOL_VERSION, {"user": "agent", "database": gw.database}
            ).encode()
        )
        await reader.read(1024)  # AuthenticationCleartextPassword
        writer.write(codec.PasswordMessage.from_password(gw.token("dana", DBA)).encode())
        await asyncio.sleep(0.5)
        await reader.read(65536)
        writer.write(b"Q\x7f\xff\xff\xff")
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(65536), 5)
        assert b"protocol violation" in reply
        writer.close()
        assert await good.fetchval("SELECT count(*) FROM orders") == 2
        await good.close()


async def test_bad_tokens_are_refused_at_startup(tmp_path):
    async with running_gateway(tmp_path) as gw:
        for bad in ("not-a-token", gw.token("mallory", ("interns",))):
            with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError) as err:
                await asyncpg.connect(gw.dsn(bad))
            assert "portcullis" in str(err.value)


async def test_decision_cache_reuses_shape_verdicts_and_still_records_them(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        before = gw.pdp.decider.stats.total
        for i in range(20):
            await conn.execute(f"SELECT * FROM orders WHERE id = {i}")
        decided = gw.pdp.decider.stats.total - before
        assert decided == 1  # same shape: one decision, nineteen cache hits
        await conn.close()
        await asyncio.sleep(1.0)
        commands = [
            e
            for e in await session_events(gw.pdp.store)
            if e["type"] == "command" and "FROM orders" in e["command"]
        ]
        assert len(commands) == 20
        assert sum(e["cached"] for e in commands) == 19
        assert len({e["decision_id"] for e in commands}) == 1


async def test_a_harmless_do_block_does_not_let_a_destructive_one_through(tmp_path):
    """A DO block's code is a literal, which a statement's shape ignores: an allowed
    harmless block must not answer, from the cache or a reused evaluation, for a block
    that truncates a table (which needs approval), in either order of use."""
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        for _ in range(2):
            await conn.execute("DO 'begin perform 1; end'")
        before = gw.pdp.decider.stats.total
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as err:
            await conn.execute("DO 'begin truncate orders; end'")
        assert "approval required" in str(err.value)
        assert gw.pdp.decider.stats.total == before + 1  # decided afresh
        assert await conn.fetchval("SELECT count(*) FROM orders") == 2
        await conn.close()


async def test_every_execution_of_a_prepared_statement_is_replayed_with_its_own_time(tmp_path):
    sql = "SELECT id FROM orders WHERE id = $1"
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        some = await conn.fetchval("SELECT min(id) FROM orders")
        statement = await conn.prepare(sql)
        for _ in range(30):
            await statement.fetch(some)  # one row each time: the same kind of result
        await statement.fetch(-1)  # no row: another kind, so the run ends
        await conn.close()
        await asyncio.sleep(1.0)
        records = await gw.pdp.store.query(kind=EVENTS_KIND)
        stored = [e for r in records for e in json.loads(r.body.get("events_json", "[]"))]
        # one event for all 30, or a few when a flush (every 0.5 s) fell between them
        one_row = [e for e in stored if e.get("command") == sql and e["details"]["rows"] == 1]
        assert len(one_row) <= 3
        assert sum(1 + len(e.get("repeat_us", [])) for e in one_row) == 30
        executions = [e for e in await session_events(gw.pdp.store) if e.get("command") == sql]
        assert [e["details"]["rows"] for e in executions] == [1] * 30 + [0]
        times = [e["time"] for e in executions]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert all("repeat_us" not in e for e in executions)
        assert len({e["decision_id"] for e in executions}) == 1
        assert (await gw.pdp.store.verify()).ok


async def test_decision_cache_off_decides_every_statement(tmp_path):
    async with running_gateway(tmp_path, options={"decision_cache": False}) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        before = gw.pdp.decider.stats.total
        for i in range(5):
            await conn.execute(f"SELECT * FROM orders WHERE id = {i}")
        assert gw.pdp.decider.stats.total - before == 5
        await conn.close()


async def test_session_close_is_recorded_with_summary(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()))
        await conn.fetch("SELECT * FROM customers")
        await conn.close()
        await asyncio.sleep(0.5)
        closes = await gw.pdp.store.query(kind="session.close")
        assert closes and closes[-1].body["reason"] in ("client_terminate", "client_disconnect")
        summary = closes[-1].body["summary"]
        assert summary["credential_exposed"] == 0
        assert summary["commands"] >= 1
        assert pdp_pb2  # the API module is importable alongside


async def test_upstream_scram_md5_and_cleartext_authentication(tmp_path):
    from pdp_harness import free_port
    from pg_cluster import throwaway_cluster

    hba = (
        "host all md5user 127.0.0.1/32 md5\n"
        "host all clearuser 127.0.0.1/32 password\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    setup = [
        "SET password_encryption = 'scram-sha-256'",
        "CREATE ROLE scramuser LOGIN PASSWORD 's3cret-scram-pw'",
        "CREATE ROLE clearuser LOGIN PASSWORD 's3cret-clear-pw'",
        "SET password_encryption = 'md5'",
        "CREATE ROLE md5user LOGIN PASSWORD 's3cret-md5-pw'",
    ]
    with throwaway_cluster(hba, setup=setup) as (port, _):
        cases = [
            ("scramuser", "s3cret-scram-pw", ""),
            ("md5user", "s3cret-md5-pw", ""),
            # in clear only over TLS to a verified server (tests/test_creds_probe_p3.py)
            ("clearuser", "s3cret-clear-pw", "password in clear"),
            ("scramuser", "wrong-pw", "upstream refused"),
        ]
        connections = [
            {
                "name": f"db{i}",
                "type": "postgres",
                "listen": f"127.0.0.1:{free_port()}",
                "upstream": f"127.0.0.1:{port}",
                "database": "postgres",
                "credentials": {
                    "provider": "static",
                    "username": user,
                    "password": password,
                    # md5 only where listed (tests/test_creds_probe_p10.py)
                    "upstream_auth": ["scram-sha-256", "md5", "password"],
                },
            }
            for i, (user, password, _) in enumerate(cases)
        ]
        await check_logins(tmp_path, connections, cases)


async def test_tls_to_clients_with_a_configured_certificate(tmp_path):
    import ssl

    from certs import make_pki

    pki = make_pki(tmp_path)
    options = {"tls_cert_file": str(pki["server.pem"]), "tls_key_file": str(pki["server.key"])}
    async with running_gateway(tmp_path, options=options) as gw:
        context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        conn = await asyncpg.connect(
            gw.dsn(gw.token()).replace("?sslmode=disable", ""), ssl=context
        )
        assert await conn.fetchval("SELECT count(*) FROM orders") == 2
        await conn.close()
        env = {
            **os.environ,
            "PGPASSWORD": gw.token(),
            "PGSSLMODE": "verify-full",
            "PGSSLROOTCERT": str(pki["ca.pem"]),
        }
        out = await asyncio.to_thread(
            subprocess.run,
            [
                "psql",
                "-h",
                "localhost",
                "-p",
                str(gw.proxy.port),
                "-U",
                "agent",
                "-d",
                gw.database,
                "-XAtc",
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        # TLS is between client and proxy; the proxy-to-server leg is the server's business
        assert out.returncode == 0, out.stderr


async def test_without_a_certificate_ssl_is_refused_and_plaintext_works(tmp_path):
    async with running_gateway(tmp_path) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
        writer.write(codec.SSLRequest().encode())
        assert await reader.readexactly(1) == codec.SSL_REFUSED
        writer.write(codec.GSSENCRequest().encode())
        assert await reader.readexactly(1) == codec.SSL_REFUSED
        writer.close()
        conn = await asyncpg.connect(
            gw.dsn(gw.token()).replace("?sslmode=disable", ""), ssl="prefer"
        )
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()


async def test_fast_path_function_calls_are_decided_by_name(tmp_path):
    """psql's \\lo_import/\\lo_export use libpq's fast-path (FunctionCall) protocol."""
    async with running_gateway(tmp_path) as gw:
        source = tmp_path / "blob.txt"
        source.write_text("large object payload\n")
        target = tmp_path / "copy.txt"
        dba = gw.token("dana", DBA)
        imported = await asyncio.to_thread(_psql, gw, dba, "-c", rf"\lo_import {source}")
        assert imported.returncode == 0 and "lo_import" in imported.stdout, imported.stderr
        oid = imported.stdout.split()[-1]
        exported = await asyncio.to_thread(_psql, gw, dba, "-c", rf"\lo_export {oid} {target}")
        assert exported.returncode == 0, exported.stderr
        assert target.read_text() == "large object payload\n"
        await asyncio.sleep(1.0)
        calls = [
            e
            for e in await session_events(gw.pdp.store)
            if e["command"].startswith("<function call")
        ]
        assert any("lo_open" in e["command"] or "lowrite" in e["command"] for e in calls)
        decided = [
            r
            for r in await gw.pdp.store.query(kind="decision")
            if r.body["kind"] == "postgres.function_call"
        ]
        assert decided and all(r.body["verdict"] == "allow" for r in decided)


def _refusing_recordings(store):
    from pdp.store import StoreUnavailable

    real_append = store.append

    async def refuse_recordings(kind, body, **kw):
        if kind == "session.events":
            raise StoreUnavailable("disk full")
        return await real_append(kind, body, **kw)

    return real_append, refuse_recordings


async def test_recording_the_store_refuses_waits_in_the_spool_and_arrives_later(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        store = gw.pdp.store
        real_append, refusing = _refusing_recordings(store)
        store.append = refusing
        try:
            for n in range(3):  # their events wait, durably, in the proxy's spool
                assert await conn.fetchval(f"SELECT {n} AS spooled") == n
                await asyncio.sleep(0.3)
        finally:
            store.append = real_append
        await conn.close()
        deadline = time.monotonic() + 15
        while True:  # the PDP takes the spool's entries in order once it can store them
            commands = [
                e["command"] for e in await session_events(gw.pdp.store) if e["type"] == "command"
            ]
            if all(f"SELECT {n} AS spooled" in commands for n in range(3)):
                break
            assert time.monotonic() < deadline, commands
            await asyncio.sleep(0.3)


async def test_recording_that_can_be_neither_stored_nor_spooled_halts_the_session(tmp_path):
    # room for the session's close and a few statements' events (a spool that holds
    # nothing refuses every session: tests/test_pdp_kill_under_load.py)
    async with running_gateway(tmp_path, options={"spool_max_bytes": 4096}) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        assert await conn.fetchval("SELECT count(*) FROM orders") == 2
        store = gw.pdp.store
        real_append, refusing = _refusing_recordings(store)
        store.append = refusing
        try:
            await conn.fetchval("SELECT 1")  # its events cannot be stored
            deadline = time.monotonic() + 10
            while True:
                try:
                    await conn.fetchval("SELECT 2")
                except asyncpg.InsufficientPrivilegeError as exc:
                    assert "evidence spool full" in str(exc)
                    break
                assert time.monotonic() < deadline, "commands kept running unrecorded"
                await asyncio.sleep(0.2)
        finally:
            store.append = real_append
        await conn.close()


async def test_a_crashed_proxy_leaves_its_sessions_marked_abnormal(tmp_path):
    import signal
    import sys

    import yaml
    from pdp_harness import free_port, pdp_config, running_pdp, token
    from pg_harness import scratch_database

    with scratch_database() as (name, role, password):
        port = free_port()
        connection = {
            "name": "orders-db",
            "type": "postgres",
            "listen": f"127.0.0.1:{port}",
            "upstream": "127.0.0.1:5432",
            "database": name,
            "credentials": {"provider": "static", "username": role, "password": password},
        }
        config = pdp_config(tmp_path, connections=[connection], session_timeout=2)
        async with running_pdp(config) as pdp:
            path = tmp_path / "proxy.yaml"
            path.write_text(
                yaml.safe_dump(
                    {
                        "pdp": {"engine": {"policies": str(REGO)}},
                        "identity": {"dev": True, "dev_key": str(tmp_path / "dev.key")},
                        "connections": [connection],
                    }
                )
            )
            proxy = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pdp.cli",
                    "-c",
                    str(path),
                    "proxy",
                    "postgres",
                    "--pdp",
                    pdp.address,
                ],
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        conn = await asyncpg.connect(
                            f"postgresql://a:{token(config, 'dana', DBA)}@127.0.0.1:{port}/{name}",
                            ssl=False,
                        )
                        break
                    except OSError:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.2)
                assert await conn.fetchval("SELECT count(*) FROM orders") == 2
                proxy.send_signal(signal.SIGKILL)
                proxy.wait()
                conn.terminate()
                deadline = time.monotonic() + 20
                while True:
                    closes = await pdp.store.query(kind="session.close")
                    if closes or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.3)
                assert closes and closes[0].body["abnormal"] is True
                assert closes[0].body["reason"] == "proxy_lost"
            finally:
                if proxy.poll() is None:
                    proxy.kill()


async def test_the_upstream_password_is_in_no_log_record_or_error(tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        await conn.fetch("SELECT * FROM customers")
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("SELECT * FROM no_such_table")
        await conn.close()
        with pytest.raises(asyncpg.PostgresError):
            await asyncpg.connect(gw.dsn("forged.token.here"))
        await asyncio.sleep(1.0)
        records = await gw.pdp.store.query()
        assert records
        stored = "\n".join(str(r.body) for r in records)
        assert gw.password not in stored
        assert gw.password not in caplog.text
        assert gw.password not in repr(gw.proxy.runtime.provider)


async def test_an_alias_does_not_walk_a_sensitive_column_past_its_rule(tmp_path):
    async with running_gateway(tmp_path) as gw:
        with gw.admin() as admin:
            admin.execute("ALTER TABLE customers ADD COLUMN phone text")
            admin.execute("UPDATE customers SET phone = '+44 20 7946 0000'")
        async with await psycopg.AsyncConnection.connect(gw.dsn(gw.token())) as conn:
            cur = await conn.execute(
                "SELECT phone AS contact, c.email AS e, name FROM customers c ORDER BY id"
            )
            rows = await cur.fetchall()
        assert rows[0] == ("[REDACTED]", "[REDACTED]", "Ada")
        conn2 = await asyncpg.connect(gw.dsn(gw.token()))
        row = await conn2.fetchrow("SELECT phone AS x FROM customers WHERE id = $1", 1)
        assert row["x"] == "[REDACTED]"  # binary format: the same mask as in text
        await conn2.close()


async def test_a_client_that_stops_reading_holds_the_server_back(tmp_path):
    """Flow control: while the client reads nothing, the proxy stops reading the server
    (whose backend then waits in ClientWrite) instead of buffering the result in memory;
    once the client reads again every row arrives."""
    rows, width = 40_000, 1000  # a 40 MB result, far beyond every socket and write buffer
    async with running_gateway(tmp_path) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
        parser = codec.BackendParser()
        pending: list[codec.Message] = []

        async def until(kind: type[codec.Message]) -> list[codec.Message]:
            seen: list[codec.Message] = []
            while True:
                while pending:
                    seen.append(pending.pop(0))
                    if isinstance(seen[-1], kind):
                        return seen
                data = await reader.read(1 << 20)
                assert data, "the proxy closed the connection"
                pending.extend(parser.feed(data))

        startup = {"user": "agent", "database": gw.database}
        writer.write(codec.StartupMessage(codec.PROTOCOL_VERSION, startup).encode())
        await until(codec.AuthenticationCleartextPassword)
        writer.write(codec.PasswordMessage.from_password(gw.token("dana", DBA)).encode())
        await until(codec.ReadyForQuery)
        writer.write(
            codec.Query(f"SELECT repeat('x', {width}) FROM generate_series(1, {rows})").encode()
        )
        await writer.drain()

        def backend_waits() -> str:
            with gw.admin() as admin:
                found = admin.execute(
                    "SELECT state, wait_event FROM pg_stat_activity WHERE usename = %s "
                    "AND query LIKE 'SELECT repeat%%'",
                    (gw.role,),
                ).fetchone()
            return f"{found[0]}/{found[1]}" if found else "none"

        waits = []
        for _ in range(4):  # the proxy runs on this loop: wait without blocking it
            await asyncio.sleep(0.5)
            waits.append(await asyncio.to_thread(backend_waits))
        assert waits[-2:] == ["active/ClientWrite"] * 2, waits

        answer = await until(codec.ReadyForQuery)
        data_rows = [m for m in answer if isinstance(m, codec.DataRow)]
        assert len(data_rows) == rows
        assert {len(m.values[0] or b"") for m in data_rows} == {width}
        assert any(
            isinstance(m, codec.CommandComplete) and m.tag == f"SELECT {rows}" for m in answer
        )
        writer.write(codec.Terminate().encode())
        writer.close()


async def test_a_client_gone_while_its_session_opens_leaves_nothing_behind(tmp_path):
    """A client that resets the connection right after its password, while the proxy is
    still opening the session (PDP, upstream login), ends that session: no upstream
    backend stays, and the session is closed at the PDP."""
    async with running_gateway(tmp_path) as gw:
        token = gw.token("dana", DBA)

        def vanish() -> None:  # a blocking client, off the loop the proxy runs on
            sock = socket.create_connection(("127.0.0.1", gw.proxy.port), timeout=10)
            startup = {"user": "agent", "database": gw.database}
            sock.sendall(codec.StartupMessage(codec.PROTOCOL_VERSION, startup).encode())
            sock.recv(64)  # AuthenticationCleartextPassword
            sock.sendall(codec.PasswordMessage.from_password(token).encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST, not FIN: no EOF for the proxy to read

        for _ in range(3):
            await asyncio.to_thread(vanish)
        deadline = time.monotonic() + 20

        def backends() -> int:
            with gw.admin() as admin:
                return admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (gw.role,)
                ).fetchone()[0]

        while True:  # the proxy runs on this loop: poll without blocking it
            await asyncio.sleep(0.2)
            left = await asyncio.to_thread(backends)
            if (left == 0 and not gw.proxy.runtime.sessions) or time.monotonic() > deadline:
                break
        assert left == 0
        assert not gw.proxy.runtime.sessions


async def test_the_decision_cache_keeps_apart_what_the_policy_sees_besides_the_text(tmp_path):
    """A verdict reused by shape is reused only for a statement that came the same way:
    a policy that refuses the simple protocol is not bypassed by the cached answer to the
    same text sent by the extended protocol."""
    policies = tmp_path / "policy"
    shutil.copytree(REGO, policies)
    (policies / "zz_simple_closed.rego").write_text(
        "package portcullis\n\n"
        'deny contains "simple protocol closed" if input.command.postgres.protocol == "simple"\n'
    )
    engine = {"type": "embedded", "policies": str(policies), "workers": 2, "timeout_ms": 3000}
    async with running_gateway(tmp_path, engine=engine) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        query = "SELECT count(*) FROM orders"
        assert (await conn.fetch(query))[0][0] == 2  # extended: allowed, reusable by shape
        assert (await conn.fetch(query))[0][0] == 2
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="simple protocol closed"):
            await conn.execute(query)  # no arguments: the simple protocol
        await conn.close()


async def test_nothing_is_answered_from_the_cache_once_the_token_has_expired(tmp_path):
    """The PDP refuses every command of a session whose token has expired; a verdict in
    the proxy's decision cache must not outlive the token either (the proxy ends such a
    session: tests/test_token_expiry.py)."""
    async with running_gateway(tmp_path) as gw:
        tok = token(gw.config, "dana", DBA, ttl=2)
        expires_at = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))["exp"]
        conn = await asyncpg.connect(gw.dsn(tok))
        for i in range(3):
            await conn.fetch(f"SELECT * FROM orders WHERE id = {i}")  # decided once, reused
        leeway = gw.config.identity.leeway_seconds  # the same at open and in the session
        await asyncio.sleep(max(expires_at + leeway - time.time(), 0) + 0.2)
        # refused by the PDP, or, as the proxy ends the session at that moment, ended; a
        # FATAL that arrives while the query is being sent leaves asyncpg's protocol busy
        # ("another operation is in progress", InternalClientError): no rows either way
        with pytest.raises(
            (asyncpg.PostgresError, asyncpg.InterfaceError, InternalClientError)
        ) as refused:
            await conn.fetch("SELECT * FROM orders WHERE id = 7")
        if isinstance(refused.value, InternalClientError):
            deadline = time.monotonic() + 10
            while not conn.is_closed() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the far end closes the ended session
        assert conn.is_closed() or "token expired" in str(refused.value)
        await conn.close()


async def test_a_prepared_statement_is_decided_again_once_the_policy_changes(tmp_path):
    """A statement prepared while the policy allowed it, with its verdict reused from the
    decision cache (as most are), is refused at its next execution once a new policy
    revision denies it; so is the client's own cached statement, decided afresh."""
    policies = tmp_path / "policy"
    shutil.copytree(REGO, policies)
    engine = {"type": "embedded", "policies": str(policies), "workers": 2, "timeout_ms": 3000}
    query = "SELECT * FROM orders WHERE id = $1"
    async with running_gateway(tmp_path, engine=engine) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("dana", DBA)))
        assert len(await conn.fetch(query, 10)) == 1  # decided; the verdict is reusable
        prepared = await conn.prepare(query)  # a second Parse: its verdict from the cache
        assert len(await prepared.fetch(11)) == 1
        before = gw.proxy.runtime.pdp.revision
        (policies / "zz_orders_closed.rego").write_text(
            "package portcullis\n\n"
            f'deny contains "orders closed" if input.command.raw == "{query}"\n'
        )
        deadline = time.monotonic() + 20
        while gw.proxy.runtime.pdp.revision == before and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # the proxy learns the new revision from the PDP
        assert gw.proxy.runtime.pdp.revision != before
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="orders closed"):
            await prepared.fetch(10)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="orders closed"):
            await conn.fetch(query, 10)
        assert await conn.fetchval("SELECT count(*) FROM customers") == 2  # session goes on
        await conn.close()
