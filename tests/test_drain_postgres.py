"""SIGTERM drains a Postgres proxy: it stops accepting, a running statement finishes
within the grace period, and every session then ends with FATAL 57P01 admin_shutdown —
what a client of a PostgreSQL server under a fast shutdown reads — never a bare close.

Real processes (`portcullis pdp`, `portcullis proxy postgres`), the machine's
PostgreSQL, asyncpg and libpq (psycopg, psql) as the clients."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import asyncpg
import psycopg
import pytest
from pg_harness import ADMIN_DSN, scratch_database
from test_metrics_proxy import ProxyStack, eventually, proxy_stack, until, value

pytestmark = pytest.mark.integration

SHUTDOWN = "terminating connection due to administrator command"


def sessions(role: str, text: str, state: str, wait_event: str | None = None) -> bool:
    """Some session of this role is in state (and wait_event, when named) with a statement
    containing text, as pg_stat_activity shows it now."""
    sql = "select count(*) from pg_stat_activity where usename = %s and state = %s"
    params: list[str] = [role, state]
    if wait_event is not None:
        sql += " and wait_event = %s"
        params.append(wait_event)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        rows = admin.execute(sql + " and query like %s", (*params, f"%{text}%")).fetchone()
    return bool(rows and rows[0])


def running(role: str, text: str) -> bool:
    """The server runs a statement containing text for this role now."""
    return sessions(role, text, "active")


def in_sleep(role: str, text: str) -> bool:
    """The server is inside pg_sleep for this role's statement containing text: executing,
    not merely parsing it (a Parse shows as 'active' with the text too, and a client between
    its prepare and its execute is idle to a draining proxy, which then ends it)."""
    return sessions(role, text, "active", "PgSleep")


def idle_after(role: str, text: str) -> bool:
    """A session of this role sits idle, its last statement this one."""
    return sessions(role, text, "idle")


async def test_sigterm_lets_a_running_statement_finish_then_ends_sessions_with_57P01(tmp_path):
    with proxy_stack(tmp_path, drain_seconds=120) as stack:
        dba = stack.token("dba")
        busy = await stack.asyncpg(dba)
        idle = psycopg.connect(stack.dsn(dba), autocommit=True)
        try:
            assert idle.execute("select 1").fetchone() == (1,)
            sleeping = asyncio.ensure_future(busy.fetchval("select 'slept ' || pg_sleep(3)::text"))
            await until(lambda: in_sleep(stack.role, "pg_sleep(3)"), "the sleep runs upstream")
            stack.sigterm_proxy()
            # the client that sat idle is sent the server's shutdown error, 57P01, at once
            # (read off its socket: libpq may report the closed socket before the FATAL)
            told = await asyncio.to_thread(_until_closed, idle.fileno())
            assert b"FATAL" in told and b"57P01" in told and SHUTDOWN.encode() in told, told
            # the statement in flight finishes and its answer arrives whole
            assert await asyncio.wait_for(sleeping, 110) == "slept "
            # and so does the one whose statement finished, at its next statement. When the
            # FATAL arrives before that statement is sent, asyncpg is still consuming it as
            # the statement starts and says so (InternalClientError: "another operation is
            # in progress"), as against PostgreSQL's own shutdown of an idle session
            with pytest.raises(
                (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
            ) as after:
                await busy.fetchval("select 1")
            # asyncpg names a FATAL that ends the connection 08003 ("connection does not
            # exist"), with the server's message, as it does against PostgreSQL itself
            code = getattr(after.value, "sqlstate", "57P01")
            assert code == "57P01" or (code == "08003" and SHUTDOWN in str(after.value))
        finally:
            idle.close()
            await busy.close()
        assert stack.proxy is not None
        assert stack.proxy.wait(timeout=120) == 0
        log = "\n".join(stack.log_lines())
        assert "drained" in log and "Traceback" not in log
        assert not running(stack.role, "pg_sleep")


async def test_new_clients_are_turned_away_while_draining(tmp_path):
    with proxy_stack(tmp_path, drain_seconds=120) as stack:
        dba = stack.token("dba")
        busy = await stack.asyncpg(dba)
        try:
            sleeping = asyncio.ensure_future(busy.fetchval("select pg_sleep(4)::text"))
            await until(lambda: in_sleep(stack.role, "pg_sleep(4)"), "the sleep runs upstream")
            stack.sigterm_proxy()
            status, body = await until(
                lambda: (r := stack.ready()) and r[0] != 200 and r, "readiness turns off"
            )
            assert status in (503, 0)  # 0: the proxy already finished and left
            if status == 503:
                assert body["ready"] is False and "draining" in body["reason"]
                page = stack.scrape()
                assert value(page, "portcullis_proxy_draining", connection="orders-db") == 1
            late = await asyncio.to_thread(stack.psql, dba, "select 1")
            assert late.returncode != 0
            assert "refused" in late.stderr or "shutting down" in late.stderr, late.stderr
            await asyncio.wait_for(sleeping, 110)
        finally:
            await busy.close()


async def test_a_statement_past_the_grace_period_is_cancelled_and_told_57P01(tmp_path):
    with proxy_stack(tmp_path, drain_seconds=1) as stack:
        dba = stack.token("dba")
        busy = await stack.asyncpg(dba)
        libpq = psycopg.connect(stack.dsn(dba), autocommit=True)
        try:
            sleeping = asyncio.ensure_future(busy.fetchval("select pg_sleep(600)::text"))
            waiting = asyncio.ensure_future(
                asyncio.to_thread(libpq.execute, "select pg_sleep(601)")
            )
            for text in ("pg_sleep(600)", "pg_sleep(601)"):
                await until(lambda t=text: in_sleep(stack.role, t), "the sleeps run upstream")
            stack.sigterm_proxy()
            # libpq reads the error and its SQLSTATE before the connection ends
            with pytest.raises(psycopg.OperationalError) as told:
                await asyncio.wait_for(waiting, 120)
            assert told.value.sqlstate == "57P01"
            assert SHUTDOWN in str(told.value)
            # asyncpg, as against a server under a fast shutdown: "closed in the middle of
            # operation", naming the server's (here the proxy's) FATAL message
            with pytest.raises(asyncpg.PostgresError) as ended:
                await asyncio.wait_for(sleeping, 120)
            assert SHUTDOWN in str(ended.value)
        finally:
            libpq.close()
            await busy.close()
        # what ran upstream was cancelled with the sessions, not left running
        await until(lambda: not running(stack.role, "pg_sleep(60"), "the sleeps are cancelled")
        assert stack.proxy is not None and stack.proxy.wait(timeout=120) == 0


def test_psql_sitting_idle_reads_the_shutdown_error(tmp_path):
    with proxy_stack(tmp_path, drain_seconds=30) as stack:
        host, _, port = stack.listen.rpartition(":")
        psql = subprocess.Popen(
            ["psql", f"host={host} port={port} user=agent dbname={stack.database} "
             "sslmode=disable", "-AtX", "-v", "ON_ERROR_STOP=0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**stack.env, "PGPASSWORD": stack.token("readonly")},
        )  # fmt: skip
        assert psql.stdin is not None and psql.stdout is not None
        psql.stdin.write("select 'first';\n")
        psql.stdin.flush()
        # (psql buffers what it prints into a pipe: the server says when it ran)
        eventually(lambda: idle_after(stack.role, "select 'first'"), "psql's first statement ran")
        stack.sigterm_proxy()
        assert stack.proxy is not None and stack.proxy.wait(timeout=120) == 0
        out, err = psql.communicate("select 'second';\n", timeout=60)
        assert "first" in out and "second" not in out
        assert SHUTDOWN in err


def test_portcullis_up_drains_its_proxies_before_its_pdp(tmp_path):
    """`portcullis up`: SIGTERM drains the proxies (the PDP, stopped last, still records
    the sessions' ends), an idle client reads 57P01, and /readyz said draining."""
    with scratch_database() as database:
        stack = ProxyStack(tmp_path, database, drain_seconds=30)
        up = subprocess.Popen(
            [sys.executable, "-m", "pdp.cli", "-c", str(stack.path), "up"],
            stdout=subprocess.DEVNULL, stderr=stack.proxy_log.open("a"), text=True,
            env=stack.env, cwd=tmp_path,
        )  # fmt: skip
        try:
            eventually(lambda: stack.ready()[0] == 200, "up's proxy is ready")
            idle = psycopg.connect(stack.dsn(stack.token("readonly")), autocommit=True)
            assert idle.execute("select 1").fetchone() == (1,)
            up.send_signal(signal.SIGTERM)
            # what the proxy sends the idle client, read off its socket until it closes
            # (libpq may report a closed socket before reading the FATAL it holds)
            received = _until_closed(idle.fileno())
            assert b"FATAL" in received and b"57P01" in received, received
            idle.close()
            assert up.wait(timeout=120) == 0
        finally:
            if up.poll() is None:
                os.kill(up.pid, signal.SIGKILL)
                up.wait()
        log = "\n".join(stack.log_lines())
        assert "session closed: proxy_shutdown" in log and "Traceback" not in log


def _until_closed(fd: int, timeout: float = 60) -> bytes:
    """The bytes a peer sends on the socket `fd` (a duplicate is read) until it closes."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        sock.settimeout(timeout)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received
