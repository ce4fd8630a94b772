"""The client matrix of issue 20 §7: what real drivers send must keep working through the
Postgres proxy, for a reader (group `readonly`) and for `dba`.

Nine clients — psql (the binary), psycopg 3, psycopg2, asyncpg, SQLAlchemy on psycopg and on
asyncpg, pandas, node-postgres and postgres.js (tests/clients/, from npm) — each run the same
scenarios, each its own test id (`client-group-scenario`), against one gateway and one scratch
database for the module:

- reads: rows of a plain table, and customers' e-mail addresses never raw (neither group is in
  `pii-readers`); asyncpg also reads an array and a composite column, which makes it introspect
  types (`SELECT current_setting('jit'), set_config('jit', 'off', false)`).
- refusal: a statement policy refuses inside a transaction block leaves the transaction failed
  as the server would: the next statement gets 25P02, and COMMIT commits nothing (`dba` inserts a
  row first; the admin side checks it is not there).
- cursor: the driver's server-side cursor (psycopg 3 named cursors send DECLARE through the
  extended protocol, then Describe/Execute of the portal; SQLAlchemy stream_results/yield_per;
  pandas chunksize; psql FETCH_COUNT; pg-cursor; postgres.js .cursor()) yields every row in
  batches.
- copy_out: COPY of a table with no sensitive column TO STDOUT gives the server's bytes;
  copy_masked: COPY of customers gives no raw e-mail, SSN or card number (masked or refused).
- prepared: the driver's prepared statements, run twice with different parameters.
- cancel: a long query cancelled with the driver's cancel API ends with query_canceled (57014),
  the server stops it, and the session stays usable.
- pool (asyncpg): Pool acquire/release; release sends `SELECT pg_advisory_unlock_all(); CLOSE
  ALL; UNLISTEN *; RESET ALL;`.

Start-up parameters: a setting the allow-list admits (statement_timeout) takes effect upstream;
one the proxy refuses gets a FATAL naming it; the lexing settings it pins stay pinned.

The gateway (PDP and proxy) runs in a process of its own for the module, so that blocking
drivers can be driven from plain test functions, asyncpg from an event loop per test.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_harness import running_gateway
from spawned import spawned

CLIENTS_DIR = Path(__file__).resolve().parent / "clients"
GROUPS = {"reader": ("readonly",), "dba": ("dba",)}

PLAIN_SCHEMA = """
CREATE TYPE dims AS (w int, h int);
CREATE TABLE plain_items (
  id int PRIMARY KEY, label text NOT NULL, qty int NOT NULL, tags int[]
);
INSERT INTO plain_items VALUES
  (1, 'widget', 3, '{1,2}'),
  (2, 'gadget', 5, '{3}'),
  (3, 'sprocket', 8, '{}'),
  (4, 'flange', 13, NULL),
  (5, 'gizmo', 21, '{5,8}');
CREATE TABLE sized_items (id int PRIMARY KEY, size dims);
INSERT INTO sized_items VALUES (1, '(2,3)'), (2, '(4,5)'), (3, '(1,1)'), (4, NULL), (5, '(6,7)');
"""
ITEMS = [
    (1, "widget", 3),
    (2, "gadget", 5),
    (3, "sprocket", 8),
    (4, "flange", 13),
    (5, "gizmo", 21),
]
# a column of a composite type is masked whole (NULL) outside pii-readers, whatever its
# fields (its record's field names are its type's, which no field rule reads: 8a1df47);
# asyncpg still introspects the type from the RowDescription
TAGS_AND_SIZES_SQL = (
    "SELECT p.tags, s.size FROM plain_items p JOIN sized_items s USING (id) ORDER BY id"
)
TAGS_AND_SIZES = [([1, 2], None), ([3], None), ([], None), (None, None), ([5, 8], None)]
RAW_EMAILS = {"ada@example.com", "bob@example.org"}
DENIED = "SELECT pg_read_file('/etc/passwd')"
# long enough that only a cancel ends it (minutes of counting); only immutable functions,
# so that a reader may run it
LONG_QUERY = "SELECT count(*) FROM generate_series(1, 10000000000)"
TIMEOUT = 30  # seconds any one client step may take before the test fails instead of hanging


# ---------------------------------------------------------------------------- the gateway


def _serve_gateway(tmp: str, pipe: Connection) -> None:
    """The child process: a gateway until the test module says stop."""

    async def serve() -> None:
        async with running_gateway(Path(tmp)) as gw:
            with psycopg.connect(
                f"postgresql://{gw.role}@127.0.0.1:5432/{gw.database}", autocommit=True
            ) as owner:
                owner.execute(PLAIN_SCHEMA)
            pipe.send(
                {
                    "port": gw.proxy.port,
                    "database": gw.database,
                    "role": gw.role,
                    "tokens": {
                        group: gw.token(f"{group}@example.com", groups)
                        for group, groups in GROUPS.items()
                    },
                }
            )
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)

    asyncio.run(serve())


@dataclass
class Gateway:
    """The running gateway as a client sees it, and the admin side of its database."""

    port: int
    database: str
    role: str
    tokens: dict[str, str]

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{self.database}", autocommit=True
        )


@dataclass
class Target:
    """Where a client connects, and as whom."""

    gw: Gateway
    token: str
    group: str

    @property
    def port(self) -> int:
        return self.gw.port

    @property
    def database(self) -> str:
        return self.gw.database

    def dsn(self, scheme: str = "postgresql") -> str:
        return (
            f"{scheme}://agent:{self.token}@127.0.0.1:{self.port}/{self.database}?sslmode=disable"
        )

    def env(self, **extra: str) -> dict[str, str]:
        """libpq's (and the Node.js drivers') environment for this target."""
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": "agent",
            "PGPASSWORD": self.token,
            "PGDATABASE": self.database,
            "PGSSLMODE": "disable",
            "PGCONNECT_TIMEOUT": "10",
            **extra,
        }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """running_gateway() (a real PDP and proxy, a scratch database) in a process of its own,
    as deployed: a client that holds the GIL while it waits for the proxy (psycopg2's
    cancel() does) must not stop the proxy."""
    with spawned(_serve_gateway, str(tmp_path_factory.mktemp("clients")), what="the gateway") as up:
        yield Gateway(**up)


@pytest.fixture(scope="module")
def plain_copy(gateway: Gateway) -> str:
    """COPY plain_items TO STDOUT as the server gives it directly."""
    with gateway.admin() as admin, admin.cursor().copy("COPY plain_items TO STDOUT") as copy:
        return b"".join(bytes(chunk) for chunk in copy).decode()


def target_for(gateway: Gateway, group: str) -> Target:
    return Target(gateway, gateway.tokens[group], group)


def marker_for(nodeid: str) -> int:
    """A primary key of plain_items that only this test inserts."""
    return 1000 + zlib.crc32(nodeid.encode()) % 1_000_000


def forget_marker(gw: Gateway, marker: int) -> None:
    """A row a failed test left behind must not fail the tests after it."""
    with gw.admin() as admin:
        admin.execute("DELETE FROM plain_items WHERE id = %s", (marker,))


def long_query_running(gw: Gateway) -> bool:
    with gw.admin() as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
            " AND query LIKE '%%generate_series(1, 10000000000)%%' AND pid <> pg_backend_pid()",
            (gw.database,),
        ).fetchone()
    return bool(row and row[0])


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_long_queries(gw: Gateway) -> None:
    """After a test: whatever the proxy left running upstream is cancelled from the admin side."""
    with gw.admin() as admin:
        admin.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = %s"
            " AND query LIKE '%%generate_series(1, 10000000000)%%' AND pid <> pg_backend_pid()",
            (gw.database,),
        )


def cancel_when_running(gw: Gateway, cancel: Callable[[], object]) -> threading.Thread:
    """Calls the client's cancel API once the server runs the long query (never before)."""

    def watch() -> None:
        if wait_for(lambda: long_query_running(gw), TIMEOUT):
            cancel()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def bounded(fn: Callable[[], Any], seconds: float = TIMEOUT) -> Any:
    """Runs a blocking client step on a daemon thread: a hang fails the test, not the run."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the client did not finish within {seconds} s (hung through the proxy?)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class ClientError(Exception):
    """An error a client reported outside Python (psql's stderr, a Node.js script)."""

    def __init__(self, sqlstate: str | None, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def sqlstate_of(exc: BaseException | None) -> str | None:
    """The SQLSTATE a driver's exception carries, through SQLAlchemy's and pandas' wrappers."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for attr in ("sqlstate", "pgcode"):
            code = getattr(exc, attr, None)
            if isinstance(code, str) and code:
                return code
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return None


def error_of(fn: Callable[[], object]) -> str | None:
    """The SQLSTATE a statement ends with, or None when it succeeds."""
    try:
        fn()
    except Exception as exc:
        return sqlstate_of(exc) or f"no SQLSTATE: {exc!r}"
    return None


async def async_error_of(awaitable: Any) -> str | None:
    try:
        await awaitable
    except Exception as exc:
        return sqlstate_of(exc) or f"no SQLSTATE: {exc!r}"
    return None


# ---------------------------------------------------------------------------- what a scenario saw


@dataclass
class Reads:
    rows: list[tuple]  # (id, label, qty) of plain_items, in order
    emails: list[Any]  # customers.email as the client got them
    tags_and_sizes: list[tuple] | None = None  # asyncpg: the array and composite columns


@dataclass
class Refusal:
    denied: str | None  # SQLSTATE of the refused statement
    after: str | None  # SQLSTATE of the statement after it, in the same transaction
    usable: Any  # SELECT 1 once the transaction ended
    commit_tag: str | None = None  # the command tag COMMIT answered with, where the client shows it


@dataclass
class Batches:
    batches: list[list[tuple]]  # rows as the cursor gave them out, in batches of two
    observed: bool = True  # False where the client does not show its fetches (psql)


@dataclass
class Cancelled:
    error: str | None  # SQLSTATE the cancelled query ended with ("timeout": asyncpg's API)
    usable: Any  # SELECT 1 on the same session afterwards
    elapsed: float = 0.0


@dataclass
class Startup:
    shown: str | None = None  # SHOW of the setting, when the session opened
    refused: str | None = None  # the error text, when it did not
    severity: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- psql


def _psql(
    t: Target, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=verbose", *args],
        capture_output=True,
        text=True,
        env=env or t.env(),
        input=stdin,
        timeout=TIMEOUT,
    )


def _psql_sqlstates(stderr: str) -> list[str]:
    # VERBOSITY=verbose: "ERROR:  42501: portcullis: denied ..."
    return re.findall(r"ERROR:\s+([0-9A-Z]{5}):", stderr)


def _psql_rows(stdout: str) -> list[tuple]:
    return [
        tuple(int(v) if v.isdigit() else v for v in line.split("\t"))
        for line in stdout.splitlines()
        if line
    ]


class Psql:
    def reads(self, t: Target) -> Reads:
        out = _psql(
            t,
            "-At",
            "-F",
            "\t",
            "-c",
            "SELECT id, label, qty FROM plain_items ORDER BY id",
            "-c",
            "SELECT email FROM customers ORDER BY id",
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        return Reads(_psql_rows("\n".join(lines[:5])), lines[5:])

    def refusal(self, t: Target, marker: int, write: bool) -> Refusal:
        first = (
            f"INSERT INTO plain_items (id, label, qty) VALUES ({marker}, 'from psql', 0);"
            if write
            else "SELECT count(*) FROM plain_items;"
        )
        script = f"BEGIN;\n{first}\n{DENIED};\nSELECT 1;\nCOMMIT;\nSELECT 'usable' AS after;\n"
        out = _psql(t, "-At", stdin=script)
        states = _psql_sqlstates(out.stderr)
        lines = out.stdout.splitlines()
        return Refusal(
            denied=states[0] if states else None,
            after=states[1] if len(states) > 1 else None,
            usable="usable" in lines and 1,
            commit_tag=next((x for x in lines if x in ("COMMIT", "ROLLBACK")), None),
        )

    def cursor(self, t: Target) -> Batches:
        # FETCH_COUNT: psql wraps the query in BEGIN; DECLARE _psql_cursor ...; FETCH FORWARD 2
        script = "\\set FETCH_COUNT 2\nSELECT id, label, qty FROM plain_items ORDER BY id;\n"
        out = _psql(t, "-At", "-F", "\t", stdin=script)
        assert out.returncode == 0 and not out.stderr, out.stderr
        return Batches([_psql_rows(out.stdout)], observed=False)

    def copy_out(self, t: Target, table: str = "plain_items") -> str:
        out = _psql(t, "-c", f"COPY {table} TO STDOUT")
        if states := _psql_sqlstates(out.stderr):
            raise ClientError(states[0], out.stderr)
        assert out.returncode == 0 and not out.stderr, out.stderr
        return out.stdout

    def prepared(self, t: Target) -> list[str]:
        script = (
            "PREPARE item_label(int) AS SELECT label FROM plain_items WHERE id = $1;\n"
            "EXECUTE item_label(1);\nEXECUTE item_label(2);\nDEALLOCATE item_label;\n"
        )
        out = _psql(t, "-Atq", stdin=script)
        assert not out.stderr, out.stderr
        return out.stdout.split()

    def cancel(self, t: Target) -> Cancelled:
        """Interactive psql on a terminal: SIGINT sends a CancelRequest, the session goes on."""
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            ["psql", "-X", "-n", "-P", "pager=off", "-v", "VERBOSITY=verbose"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=t.env(TERM="dumb"),
            start_new_session=True,
        )
        os.close(slave)
        screen = bytearray()

        def read_until(needle: bytes, seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while needle not in screen and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.05)
                if ready:
                    try:
                        screen.extend(os.read(master, 65536))
                    except OSError:
                        return False
            return needle in screen

        try:
            read_until(b"=>", 10) or read_until(b"=#", 1)
            started = time.monotonic()
            os.write(master, LONG_QUERY.encode() + b";\n")
            if wait_for(lambda: long_query_running(t.gw), TIMEOUT):
                proc.send_signal(signal.SIGINT)
            read_until(b"ERROR:", TIMEOUT)
            elapsed = time.monotonic() - started
            os.write(master, b"SELECT 40 + 2 AS answer;\n")
            usable = read_until(b"42\r\n", 10) and 1
            text = screen.decode(errors="replace")
            states = _psql_sqlstates(text)
            return Cancelled(states[0] if states else None, usable, elapsed)
        finally:
            proc.kill()
            proc.wait(5)
            os.close(master)

    def startup(self, t: Target, name: str, value: str) -> Startup:
        out = _psql(t, "-At", "-c", f"SHOW {name}", env=t.env(PGOPTIONS=f"-c {name}={value}"))
        if out.returncode != 0 and "FATAL" in out.stderr:
            return Startup(refused=out.stderr, severity="FATAL")
        assert out.returncode == 0, out.stderr
        return Startup(shown=out.stdout.strip())


# ---------------------------------------------------------------------------- psycopg 3


class Psycopg:
    def connect(self, t: Target, **kwargs: Any) -> psycopg.Connection:
        return psycopg.connect(t.dsn(), connect_timeout=10, **kwargs)

    def reads(self, t: Target) -> Reads:
        with self.connect(t) as conn:
            rows = conn.execute("SELECT id, label, qty FROM plain_items ORDER BY id").fetchall()
            emails = conn.execute("SELECT email FROM customers ORDER BY id").fetchall()
        return Reads(rows, [e for (e,) in emails])

    def refusal(self, t: Target, marker: int, write: bool) -> Refusal:
        with self.connect(t) as conn:
            if write:
                conn.execute(
                    "INSERT INTO plain_items (id, label, qty) VALUES (%s, %s, 0)",
                    (marker, "from psycopg"),
                )
            else:
                conn.execute("SELECT count(*) FROM plain_items")
            denied = error_of(lambda: conn.execute(DENIED))
            after = error_of(lambda: conn.execute("SELECT 1"))
            conn.commit()
            return Refusal(denied, after, conn.execute("SELECT 1").fetchone()[0])

    def cursor(self, t: Target) -> Batches:
        with self.connect(t) as conn, conn.transaction():
            # DECLARE "items" CURSOR ... through the extended protocol, then the portal
            cur = conn.cursor("items")
            cur.execute("SELECT id, label, qty FROM plain_items WHERE qty > %s ORDER BY id", (0,))
            batches = list(iter(lambda: cur.fetchmany(2), []))
            cur.close()
        return Batches(batches)

    def copy_out(self, t: Target, table: str = "plain_items") -> str:
        with self.connect(t) as conn, conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
            return b"".join(bytes(chunk) for chunk in copy).decode()

    def prepared(self, t: Target) -> list[str]:
        with self.connect(t) as conn:
            query = "SELECT label FROM plain_items WHERE id = %s"
            return [conn.execute(query, (i,), prepare=True).fetchone()[0] for i in (1, 2)]

    def cancel(self, t: Target) -> Cancelled:
        with self.connect(t, autocommit=True) as conn:
            cancel_when_running(t.gw, conn.cancel_safe)
            started = time.monotonic()
            error = error_of(lambda: conn.execute(LONG_QUERY))
            elapsed = time.monotonic() - started
            return Cancelled(error, conn.execute("SELECT 1").fetchone()[0], elapsed)

    def startup(self, t: Target, name: str, value: str) -> Startup:
        try:
            conn = self.connect(t, options=f"-c {name}={value}")
        except psycopg.OperationalError as exc:
            return Startup(refused=str(exc), severity="FATAL" if "FATAL" in str(exc) else None)
        with conn:
            return Startup(shown=conn.execute(f"SHOW {name}").fetchone()[0])


# ---------------------------------------------------------------------------- psycopg2


class Psycopg2:
    def connect(self, t: Target, **kwargs: Any) -> Any:
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=t.port,
            user="agent",
            password=t.token,
            dbname=t.database,
            sslmode="disable",
            connect_timeout=10,
            **kwargs,
        )

    def reads(self, t: Target) -> Reads:
        conn = self.connect(t)
        try:
            cur = conn.cursor()
            cur.execute("SELECT id, label, qty FROM plain_items ORDER BY id")
            rows = cur.fetchall()
            cur.execute("SELECT email FROM customers ORDER BY id")
            return Reads(rows, [e for (e,) in cur.fetchall()])
        finally:
            conn.close()

    def refusal(self, t: Target, marker: int, write: bool) -> Refusal:
        conn = self.connect(t)
        try:
            cur = conn.cursor()
            if write:
                cur.execute(
                    "INSERT INTO plain_items (id, label, qty) VALUES (%s, %s, 0)",
                    (marker, "from psycopg2"),
                )
            else:
                cur.execute("SELECT count(*) FROM plain_items")
            denied = error_of(lambda: cur.execute(DENIED))
            after = error_of(lambda: cur.execute("SELECT 1"))
            conn.commit()
            cur.execute("SELECT 1")
            return Refusal(denied, after, cur.fetchone()[0])
        finally:
            conn.close()

    def cursor(self, t: Target) -> Batches:
        conn = self.connect(t)
        try:
            cur = conn.cursor(name="items")  # DECLARE "items" CURSOR WITHOUT HOLD FOR ...
            cur.execute("SELECT id, label, qty FROM plain_items WHERE qty > %s ORDER BY id", (0,))
            batches = list(iter(lambda: cur.fetchmany(2), []))
            cur.close()
            conn.commit()
            return Batches(batches)
        finally:
            conn.close()

    def copy_out(self, t: Target, table: str = "plain_items") -> str:
        conn = self.connect(t)
        try:
            buffer = io.StringIO()
            conn.cursor().copy_expert(f"COPY {table} TO STDOUT", buffer)
            return buffer.getvalue()
        finally:
            conn.close()

    def prepared(self, t: Target) -> list[str]:
        conn = self.connect(t)  # psycopg2 prepares with SQL only
        try:
            cur = conn.cursor()
            cur.execute("PREPARE item_label(int) AS SELECT label FROM plain_items WHERE id = $1")
            labels = []
            for i in (1, 2):
                cur.execute("EXECUTE item_label(%s)", (i,))
                labels.append(cur.fetchone()[0])
            cur.execute("DEALLOCATE item_label")
            return labels
        finally:
            conn.close()

    def cancel(self, t: Target) -> Cancelled:
        conn = self.connect(t)
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cancel_when_running(t.gw, conn.cancel)
            started = time.monotonic()
            error = error_of(lambda: cur.execute(LONG_QUERY))
            elapsed = time.monotonic() - started
            cur.execute("SELECT 1")
            return Cancelled(error, cur.fetchone()[0], elapsed)
        finally:
            conn.close()

    def startup(self, t: Target, name: str, value: str) -> Startup:
        import psycopg2

        try:
            conn = self.connect(t, options=f"-c {name}={value}")
        except psycopg2.OperationalError as exc:
            return Startup(refused=str(exc), severity="FATAL" if "FATAL" in str(exc) else None)
        try:
            cur = conn.cursor()
            cur.execute(f"SHOW {name}")
            return Startup(shown=cur.fetchone()[0])
        finally:
            conn.close()


# ---------------------------------------------------------------------------- asyncpg


def _run_async(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class Asyncpg:
    async def connect(self, t: Target, **kwargs: Any) -> asyncpg.Connection:
        return await asyncpg.connect(t.dsn(), timeout=10, **kwargs)

    def reads(self, t: Target) -> Reads:
        async def go() -> Reads:
            conn = await self.connect(t)
            try:
                rows = await conn.fetch("SELECT id, label, qty FROM plain_items ORDER BY id")
                emails = await conn.fetch("SELECT email FROM customers ORDER BY id")
                # an array and a composite: asyncpg introspects their types first
                extra = await conn.fetch(TAGS_AND_SIZES_SQL)
            finally:
                await conn.close()
            return Reads(
                [tuple(r) for r in rows],
                [r[0] for r in emails],
                [(r["tags"], tuple(r["size"]) if r["size"] else None) for r in extra],
            )

        return _run_async(go())

    def refusal(self, t: Target, marker: int, write: bool) -> Refusal:
        async def go() -> Refusal:
            conn = await self.connect(t)
            try:
                tx = conn.transaction()
                await tx.start()
                if write:
                    await conn.execute(
                        "INSERT INTO plain_items (id, label, qty) VALUES ($1, $2, 0)",
                        marker,
                        "from asyncpg",
                    )
                else:
                    await conn.fetchval("SELECT count(*) FROM plain_items")
                denied = await async_error_of(conn.fetchval(DENIED))
                after = await async_error_of(conn.fetchval("SELECT 1"))
                await tx.commit()
                return Refusal(denied, after, await conn.fetchval("SELECT 1"))
            finally:
                await conn.close()

        return _run_async(go())

    def cursor(self, t: Target) -> Batches:
        async def go() -> Batches:
            conn = await self.connect(t)
            try:
                async with conn.transaction():
                    cur = await conn.cursor(
                        "SELECT id, label, qty FROM plain_items WHERE qty > $1 ORDER BY id", 0
                    )
                    batches = []
                    while rows := await cur.fetch(2):
                        batches.append([tuple(r) for r in rows])
                return Batches(batches)
            finally:
                await conn.close()

        return _run_async(go())

    def copy_out(self, t: Target, table: str = "plain_items") -> str:
        async def go() -> str:
            conn = await self.connect(t)
            try:
                buffer = io.BytesIO()
                await conn.copy_from_table(table, output=buffer)
                return buffer.getvalue().decode()
            finally:
                await conn.close()

        return _run_async(go())

    def prepared(self, t: Target) -> list[str]:
        async def go() -> list[str]:
            conn = await self.connect(t)
            try:
                stmt = await conn.prepare("SELECT label FROM plain_items WHERE id = $1")
                return [await stmt.fetchval(1), await stmt.fetchval(2)]
            finally:
                await conn.close()

        return _run_async(go())

    def cancel(self, t: Target) -> Cancelled:
        """asyncpg's cancel API is the timeout: it sends a CancelRequest and raises TimeoutError."""

        async def go() -> Cancelled:
            conn = await self.connect(t)
            try:
                started = time.monotonic()
                try:
                    await conn.execute(LONG_QUERY, timeout=1.0)
                    error = None
                except TimeoutError:
                    error = "timeout"
                except asyncpg.PostgresError as exc:
                    error = exc.sqlstate
                elapsed = time.monotonic() - started
                return Cancelled(error, await conn.fetchval("SELECT 1"), elapsed)
            finally:
                await conn.close()

        return _run_async(go())

    def pool(self, t: Target) -> list[Any]:
        """Acquire, read, release (which resets the session), and again on the same connection."""

        async def go() -> list[Any]:
            seen = []
            async with asyncpg.create_pool(t.dsn(), min_size=1, max_size=1, timeout=10) as pool:
                for _ in range(3):
                    async with pool.acquire() as conn:
                        seen.append(await conn.fetchval("SELECT count(*) FROM plain_items"))
                seen.append(await pool.fetchval("SELECT label FROM plain_items WHERE id = $1", 1))
            return seen

        return _run_async(go())

    def startup(self, t: Target, name: str, value: str) -> Startup:
        async def go() -> Startup:
            try:
                conn = await self.connect(t, server_settings={name: value})
            except asyncpg.PostgresError as exc:
                return Startup(refused=str(exc), severity=getattr(exc, "severity", None))
            try:
                return Startup(shown=await conn.fetchval(f"SHOW {name}"))
            finally:
                await conn.close()

        return _run_async(go())


# ---------------------------------------------------------------------------- SQLAlchemy


class SqlalchemyPsycopg:
    def engine(self, t: Target, **connect_args: Any) -> Any:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        return sqlalchemy.create_engine(
            t.dsn("postgresql+psycopg"),
            poolclass=NullPool,
            connect_args={"connect_timeout": 10, **connect_args},
        )

    def reads(self, t: Target) -> Reads:
        from sqlalchemy import text

        engine = self.engine(t)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, label, qty FROM plain_items ORDER BY id")).all()
            emails = conn.execute(text("SELECT email FROM customers ORDER BY id")).scalars().all()
        engine.dispose()
        return Reads([tuple(r) for r in rows], list(emails))

    def refusal(self, t: Target, marker: int, write: bool) -> Refusal:
        from sqlalchemy import text

        engine = self.engine(t)
        with engine.connect() as conn:  # autobegin: BEGIN with the first statement
            if write:
                conn.execute(
                    text("INSERT INTO plain_items (id, label, qty) VALUES (:id, :label, 0)"),
                    {"id": marker, "label": "from SQLAlchemy"},
                )
            else:
                conn.execute(text("SELECT count(*) FROM plain_items"))
            denied = error_of(lambda: conn.execute(text(DENIED)))
            after = error_of(lambda: conn.execute(text("SELECT 1")))
            conn.commit()
            usable = conn.execute(text("SELECT 1")).scalar()
        engine.dispose()
        return Refusal(denied, after, usable)

    def cursor(self, t: Target) -> Batches:
        from sqlalchemy import text

        engine = self.engine(t)
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(
                text("SELECT id, label, qty FROM plain_items WHERE qty > :q ORDER BY id"),
                {"q": 0},
            )
            assert isinstance(result.cursor, psycopg.ServerCursor)  # a named cursor: DECLARE
            batches = [[tuple(r) for r in part] for part in result.yield_per(2).partitions()]
        engine.dispose()
        return Batches(batches)

    def copy_out(self, t: Target, table: str = "plain_items") -> str:
        engine = self.engine(t)
        raw = engine.raw_connection()
        try:
            with raw.driver_connection.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                return b"".join(bytes(chunk) for chunk in copy).decode()
        finally:
            raw.close()
            engine.dispose()

    def prepared(self, t: Target) -> list[str]:
        from sqlalchemy import text

        engine = self.engine(t, prepare_threshold=0)  # psycopg prepares every statement
        with engine.connect() as conn:
            query = text("SELECT label FROM plain_items WHERE id = :id")
            labels = [conn.execute(query, {"id": i}).scalar() for i in (1, 2)]
        engine.dispose()
        return labels

    def cancel(self, t: Target) -> Cancelled:
        from sqlalchemy import text

        engine = self.engine(t)
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            cancel_when_running(t.gw, driver.cancel_safe)
            started = time.monotonic()
            error = error_of(lambda: conn.execute(text(LONG_QUERY)))
            elapsed = time.monotonic() - started
            conn.rollback()
            usable = conn.execute(text("SELECT 1")).scalar()
        engine.dispose()
        return Cancelled(error, usable, elapsed)


class SqlalchemyAsyncpg:
    def engine(self, t: Target) -> Any:
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        return create_async_engine(
            t.dsn("postgresql+asyncpg").replace("sslmode=disable", "ssl=disable"),
            poolclass=NullPool,
            connect_args={"timeout": 10},
        )

    def reads(self, t: Target) -> Reads:
        from sqlalchemy import text

        async def go() -> Reads:
            engine = self.engine(t)
            try:
                async with engine.connect() as conn:
                    rows = (
                        await conn.execute(
                            text("SELECT id, label, qty FROM plain_items ORDER BY id")
                        )
                    ).all()
                    emails = (
                        await conn.execute(text("SELECT email FROM customers ORDER BY id"))
                    ).scalars()
                    extra = (await conn.execute(text(TAGS_AND_SIZES_SQL))).all()
            finally:
                await engine.dispose()
            return Reads(
                [tuple(r) for r in rows],
                list(emails),
                [(tags, tuple(size) if size else None) for tags, size in extra],
            )

        return _run_async(go())

    def refusal(self, t: Target, marker: int, write: bool) -> Refusal:
        from sqlalchemy import text

        async def go() -> Refusal:
            engine = self.engine(t)
            try:
                async with engine.connect() as conn:
                    if write:
                        await conn.execute(
                            text("INSERT INTO plain_items (id, label, qty) VALUES (:id, :l, 0)"),
                            {"id": marker, "l": "from SQLAlchemy asyncpg"},
                        )
                    else:
                        await conn.execute(text("SELECT count(*) FROM plain_items"))
                    denied = await async_error_of(conn.execute(text(DENIED)))
                    after = await async_error_of(conn.execute(text("SELECT 1")))
                    await conn.commit()
                    usable = (await conn.execute(text("SELECT 1"))).scalar()
            finally:
                await engine.dispose()
            return Refusal(denied, after, usable)

        return _run_async(go())

    def cursor(self, t: Target) -> Batches:
        from sqlalchemy import text

        async def go() -> Batches:
            engine = self.engine(t)
            try:
                async with engine.connect() as conn:
                    # stream(): an asyncpg cursor (a portal fetched from in steps) in a transaction
                    result = await conn.stream(
                        text("SELECT id, label, qty FROM plain_items WHERE qty > :q ORDER BY id"),
                        {"q": 0},
                    )
                    parts = result.yield_per(2).partitions()
                    batches = [[tuple(r) for r in part] async for part in parts]
            finally:
                await engine.dispose()
            return Batches(batches)

        return _run_async(go())

    def copy_out(self, t: Target, table: str = "plain_items") -> str:
        async def go() -> str:
            engine = self.engine(t)
            try:
                async with engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    buffer = io.BytesIO()
                    await raw.driver_connection.copy_from_table(table, output=buffer)
                    return buffer.getvalue().decode()
            finally:
                await engine.dispose()

        return _run_async(go())

    def prepared(self, t: Target) -> list[str]:
        from sqlalchemy import text

        async def go() -> list[str]:
            engine = self.engine(t)  # the asyncpg dialect prepares (and caches) every statement
            try:
                async with engine.connect() as conn:
                    query = text("SELECT label FROM plain_items WHERE id = :id")
                    return [(await conn.execute(query, {"id": i})).scalar() for i in (1, 2)]
            finally:
                await engine.dispose()

        return _run_async(go())

    def cancel(self, t: Target) -> Cancelled:
        """Cancelling the task: asyncpg sends a CancelRequest for the statement it runs."""
        from sqlalchemy import text

        async def go() -> Cancelled:
            engine = self.engine(t)
            try:
                async with engine.connect() as conn:
                    started = time.monotonic()
                    try:
                        await asyncio.wait_for(conn.execute(text(LONG_QUERY)), 1.0)
                        error = None
                    except TimeoutError:
                        error = "timeout"
                    except Exception as exc:
                        error = sqlstate_of(exc) or repr(exc)
                    elapsed = time.monotonic() - started
                    await conn.rollback()
                    usable = (await conn.execute(text("SELECT 1"))).scalar()
            finally:
                await engine.dispose()
            return Cancelled(error, usable, elapsed)

        return _run_async(go())


# ---------------------------------------------------------------------------- pandas


class Pandas:
    """pandas.read_sql over SQLAlchemy on psycopg 3."""

    def engine(self, t: Target, **connect_args: Any) -> Any:
        return SqlalchemyPsycopg().engine(t, **connect_args)

    def reads(self, t: Target) -> Reads:
        import pandas as pd

        engine = self.engine(t)
        with engine.connect() as conn:
            items = pd.read_sql("SELECT id, label, qty FROM plain_items ORDER BY id", conn)
            emails = pd.read_sql("SELECT email FROM customers ORDER BY id", conn)
        engine.dispose()
        return Reads(_frame_rows(items), list(emails["email"]))

    def refusal(self, t: Target, marker: int, write: bool) -> Refusal:
        import pandas as pd

        engine = self.engine(t)
        with engine.connect() as conn:
            # the read begins the transaction (SQLAlchemy's autobegin): to_sql then writes in it
            # instead of in a transaction of its own that it commits at once
            pd.read_sql("SELECT count(*) FROM plain_items", conn)
            if write:
                frame = pd.DataFrame({"id": [marker], "label": ["from pandas"], "qty": [0]})
                frame.to_sql("plain_items", conn, if_exists="append", index=False)
            denied = error_of(lambda: pd.read_sql(DENIED, conn))
            after = error_of(lambda: pd.read_sql("SELECT 1 AS one", conn))
            conn.commit()
            usable = int(pd.read_sql("SELECT 1 AS one", conn)["one"][0])
        engine.dispose()
        return Refusal(denied, after, usable)

    def cursor(self, t: Target) -> Batches:
        import pandas as pd

        engine = self.engine(t)
        with engine.connect().execution_options(stream_results=True) as conn:
            chunks = pd.read_sql(
                "SELECT id, label, qty FROM plain_items WHERE qty > %(q)s ORDER BY id",
                conn,
                params={"q": 0},
                chunksize=2,
            )
            batches = [_frame_rows(chunk) for chunk in chunks]
        engine.dispose()
        return Batches(batches)

    def copy_out(self, t: Target, table: str = "plain_items") -> str:
        """COPY TO STDOUT into a DataFrame, the way bulk exports are read with pandas."""
        import pandas as pd

        text = SqlalchemyPsycopg().copy_out(t, table)
        frame = pd.read_csv(io.StringIO(text), sep="\t", header=None)
        assert len(frame) == text.count("\n")
        return text

    def prepared(self, t: Target) -> list[str]:
        import pandas as pd

        engine = self.engine(t, prepare_threshold=0)
        with engine.connect() as conn:
            query = "SELECT label FROM plain_items WHERE id = %(id)s"
            labels = [pd.read_sql(query, conn, params={"id": i})["label"][0] for i in (1, 2)]
        engine.dispose()
        return labels

    def cancel(self, t: Target) -> Cancelled:
        import pandas as pd

        engine = self.engine(t)
        with engine.connect() as conn:
            cancel_when_running(t.gw, conn.connection.driver_connection.cancel_safe)
            started = time.monotonic()
            error = error_of(lambda: pd.read_sql(LONG_QUERY, conn))
            elapsed = time.monotonic() - started
            conn.rollback()
            usable = int(pd.read_sql("SELECT 1 AS one", conn)["one"][0])
        engine.dispose()
        return Cancelled(error, usable, elapsed)


def _frame_rows(frame: Any) -> list[tuple]:
    return [
        tuple(v.item() if hasattr(v, "item") else v for v in row)
        for row in frame.itertuples(index=False)
    ]


# ---------------------------------------------------------------------------- Node.js drivers


class NodeScript:
    """A script of tests/clients run with node; it prints what it saw as one JSON object."""

    def __init__(self, script: str) -> None:
        self.script = CLIENTS_DIR / script

    def run(self, t: Target, scenario: str, **args: Any) -> dict[str, Any]:
        if not (CLIENTS_DIR / "node_modules").is_dir():
            pytest.fail("tests/clients/node_modules is missing: run `make setup`")
        out = subprocess.run(
            ["node", str(self.script), scenario, json.dumps(args)],
            capture_output=True,
            text=True,
            env=t.env(),
            timeout=TIMEOUT,
        )
        lines = out.stdout.strip().splitlines()
        assert lines, f"{self.script.name} printed nothing: {out.stderr}"
        seen = json.loads(lines[-1])
        assert "unexpected" not in seen, seen["unexpected"]
        return seen

    @staticmethod
    def code(error: dict[str, Any] | None) -> str | None:
        return None if error is None else (error.get("code") or f"no SQLSTATE: {error}")

    def reads(self, t: Target) -> Reads:
        seen = self.run(t, "reads")
        return Reads([tuple(r) for r in seen["rows"]], [c[1] for c in seen["customers"]])

    def refusal(self, t: Target, marker: int, write: bool) -> Refusal:
        seen = self.run(t, "refusal", marker=marker, write=write)
        assert "commit_error" not in seen, seen["commit_error"]
        return Refusal(
            self.code(seen["denied"]),
            self.code(seen["after"]),
            seen["usable"],
            commit_tag=seen.get("commit"),
        )

    def cursor(self, t: Target) -> Batches:
        return Batches([[tuple(r) for r in b] for b in self.run(t, "cursor")["batches"]])

    def copy_out(self, t: Target, table: str = "plain_items") -> str:
        seen = self.run(t, "copy_out", table=table)
        if "error" in seen:
            raise ClientError(self.code(seen["error"]), seen["error"]["message"])
        return seen["text"]

    def prepared(self, t: Target) -> list[str]:
        return self.run(t, "prepared")["labels"]

    def cancel(self, t: Target) -> Cancelled:
        started = time.monotonic()
        seen = self.run(t, "cancel", delay_ms=1000)
        return Cancelled(self.code(seen["error"]), seen["usable"], time.monotonic() - started)

    def startup(self, t: Target, name: str, value: str) -> Startup:
        seen = self.run(t, "startup", name=name, value=value)
        if "refused" in seen:
            return Startup(refused=seen["refused"]["message"], severity=seen["refused"]["severity"])
        return Startup(shown=seen["shown"])


# ---------------------------------------------------------------------------- the matrix

CLIENTS: dict[str, Any] = {
    "psql": Psql(),
    "psycopg": Psycopg(),
    "psycopg2": Psycopg2(),
    "asyncpg": Asyncpg(),
    "sqlalchemy_psycopg": SqlalchemyPsycopg(),
    "sqlalchemy_asyncpg": SqlalchemyAsyncpg(),
    "pandas": Pandas(),
    "node_pg": NodeScript("node_pg.js"),
    "postgresjs": NodeScript("postgresjs.js"),
}
SCENARIOS = ("reads", "refusal", "cursor", "copy_out", "copy_masked", "prepared", "cancel")
MATRIX = [
    pytest.param(client, group, scenario, id=f"{client}-{group}-{scenario}")
    for client, driver in CLIENTS.items()
    for group in GROUPS
    for scenario in (*SCENARIOS, *(("pool",) if hasattr(driver, "pool") else ()))
]


@pytest.fixture
def no_runaway(gateway: Gateway) -> Iterator[None]:
    yield
    stop_long_queries(gateway)


@pytest.mark.integration
@pytest.mark.parametrize(("client", "group", "scenario"), MATRIX)
def test_client_matrix(
    gateway: Gateway,
    plain_copy: str,
    no_runaway: None,
    request: pytest.FixtureRequest,
    client: str,
    group: str,
    scenario: str,
) -> None:
    driver = CLIENTS[client]
    t = target_for(gateway, group)
    if scenario == "reads":
        reads = bounded(lambda: driver.reads(t))
        assert reads.rows == ITEMS
        assert len(reads.emails) == 2 and not RAW_EMAILS & {str(e) for e in reads.emails}
        if reads.tags_and_sizes is not None:
            assert reads.tags_and_sizes == TAGS_AND_SIZES
    elif scenario == "refusal":
        # a reader's INSERT waits for approval: its failed transaction shows in the 25P02 alone
        write = group == "dba"
        marker = marker_for(request.node.nodeid)
        request.addfinalizer(lambda: forget_marker(gateway, marker))
        refusal = bounded(lambda: driver.refusal(t, marker, write))
        assert refusal.denied == "42501", refusal
        # the transaction is failed, as the server would have it after an error ...
        assert refusal.after == "25P02", refusal
        assert refusal.commit_tag in (None, "ROLLBACK"), refusal
        # ... so COMMIT committed nothing, and the session goes on
        assert refusal.usable == 1, refusal
        with gateway.admin() as admin:
            kept = admin.execute("SELECT count(*) FROM plain_items WHERE id = %s", (marker,))
            assert kept.fetchone()[0] == 0, "COMMIT after a refused statement kept the insert"
    elif scenario == "cursor":
        batches = bounded(lambda: driver.cursor(t))
        assert [row for batch in batches.batches for row in batch] == ITEMS
        if batches.observed:
            assert [len(b) for b in batches.batches] == [2, 2, 1], batches
    elif scenario == "copy_out":
        assert bounded(lambda: driver.copy_out(t)) == plain_copy
    elif scenario == "copy_masked":
        # COPY of a table with sensitive columns: masked as the SELECT would be, or refused
        try:
            text = bounded(lambda: driver.copy_out(t, "customers"))
        except Exception as exc:
            assert sqlstate_of(exc) == "42501", exc
        else:
            assert text.count("\n") == 2, text
            for secret in (*RAW_EMAILS, "123-45-6789", "4111 1111 1111 1111"):
                assert secret not in text, f"COPY gave {secret!r} raw"
    elif scenario == "prepared":
        assert bounded(lambda: driver.prepared(t)) == ["widget", "gadget"]
    elif scenario == "cancel":
        cancelled = bounded(lambda: driver.cancel(t))
        expected = "timeout" if client in ("asyncpg", "sqlalchemy_asyncpg") else "57014"
        assert cancelled.error == expected, cancelled
        assert cancelled.usable == 1, cancelled
        assert wait_for(lambda: not long_query_running(gateway), 5), "the query runs on upstream"
    elif scenario == "pool":
        assert bounded(lambda: driver.pool(t)) == [5, 5, 5, "widget"]
    else:  # pragma: no cover
        raise AssertionError(scenario)


# ---------------------------------------------------------------------------- start-up parameters

STARTUP_CLIENTS = [name for name, driver in CLIENTS.items() if hasattr(driver, "startup")]
STARTUP = [
    # (case, groups, parameter, value)
    ("statement_timeout", tuple(GROUPS), "statement_timeout", "1500"),
    # a setting readers may not change (issue 20 §4) is refused at start-up, not dropped
    ("refused", ("reader",), "session_replication_role", "replica"),
    # a lexing setting the proxy pins (issue 20 §1): refused, or the session keeps the pin
    ("pinned", tuple(GROUPS), "standard_conforming_strings", "off"),
]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("client", "group", "case", "name", "value"),
    [
        pytest.param(client, group, case, name, value, id=f"{client}-{group}-{case}")
        for case, groups, name, value in STARTUP
        for client in STARTUP_CLIENTS
        for group in groups
    ],
)
def test_startup_parameter(
    gateway: Gateway, client: str, group: str, case: str, name: str, value: str
) -> None:
    t = target_for(gateway, group)
    seen = bounded(lambda: CLIENTS[client].startup(t, name, value))
    if case == "statement_timeout":
        assert seen.refused is None, seen
        assert seen.shown == "1500ms", f"the client's {name} did not reach the server: {seen}"
    elif case == "refused":
        assert seen.refused is not None, f"{name}={value} was accepted: {seen}"
        assert seen.severity == "FATAL", seen
        assert name in seen.refused, seen
    else:
        if seen.refused is not None:
            assert seen.severity == "FATAL" and name in seen.refused, seen
        else:
            assert seen.shown == "on", seen
