"""Behind pgbouncer in transaction mode (connection option `upstream_pooler: transaction`).

The proxy's pins reach the server another way there: pgbouncer refuses every start-up
parameter it does not track, and runs each transaction on whichever server connection is
free. Against a real pgbouncer (pool_mode = transaction) in front of the real server,
through the real proxy, with psql (text), psycopg (text and binary) and asyncpg (binary):
masked reads come back masked, the reader's read-only pin holds from the role's
configuration on every server connection, a role without the pins is refused with each
setting named and the ALTER ROLE that fixes it, a pin right only because a SET leaked
onto the server connection is refused too, SET / RESET / set_config of pinned settings
are refused for everyone, column knowledge costs no pgbouncer login per masked result,
and without the option nothing changes. The start-up rules themselves are checked first,
without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psycopg
import pytest
from pdp_harness import free_port, pdp_config, token
from pg_harness import ADMIN_DSN, gateway_on, running_gateway, scratch_database

from portcullis.config import Config, ConfigError
from proxies.postgres.proxy import PostgresProxy
from proxies.postgres.startup import (
    LEXING_PINS,
    POOLER_TRACKED,
    WRITING_DEFAULTS,
    role_pins,
    unheld_pins,
    upstream_params,
)

READER_PINS = {"default_transaction_read_only": "on", "statement_timeout": "60000"}
SECRETS = ("ada@example.com", "bob@example.org", "123-45-6789", "234-56-7890")


# -- the start-up rules, without sockets -------------------------------------------------


def test_behind_a_pooler_only_tracked_pins_go_in_the_start_up_packet() -> None:
    params = upstream_params("app", "db", {"application_name": "psql"}, READER_PINS, "transaction")
    assert params == {
        "user": "app",
        "database": "db",
        "application_name": "psql",
        "client_encoding": "UTF8",
        "standard_conforming_strings": "on",
    }
    assert {name.lower() for name in params} - {"user", "database"} <= POOLER_TRACKED
    # what the packet cannot carry must hold through the role (the values written as the
    # value detectors read them too: test_pg_probe_p52)
    assert role_pins(READER_PINS, "transaction") == {
        **READER_PINS,
        "backslash_quote": "safe_encoding",
        **WRITING_DEFAULTS,
    }


def test_without_a_pooler_every_pin_goes_in_the_start_up_packet() -> None:
    params = upstream_params("app", "db", {"statement_timeout": "999999"}, READER_PINS)
    assert params == {
        "user": "app",
        "database": "db",
        **WRITING_DEFAULTS,
        **READER_PINS,
        **LEXING_PINS,
    }
    assert role_pins(READER_PINS, "") == {}


def test_a_pin_holds_only_from_the_role_or_server_configuration() -> None:
    pins = role_pins(READER_PINS, "transaction")
    held = [
        "backslash_quote\tsafe_encoding\tdefault",
        "default_transaction_read_only\ton\tdatabase user",
        "statement_timeout\t60000\tuser",
        "bytea_output\thex\tdefault",
        "extra_float_digits\t1\tdefault",
    ]
    assert unheld_pins(pins, held) == []
    assert unheld_pins({"statement_timeout": "60s"}, ["statement_timeout\t60000\tdatabase"]) == []
    leaked = [held[0], "default_transaction_read_only\ton\tsession", *held[2:]]
    assert unheld_pins(pins, leaked) == [
        "default_transaction_read_only (wants on, is on from session)"
    ]
    wrong = [*held[:2], "statement_timeout\t0\tdefault", *held[3:]]
    assert unheld_pins(pins, wrong) == ["statement_timeout (wants 60000, is 0 from default)"]
    assert unheld_pins(pins, [*held[:2], *held[3:]]) == [
        "statement_timeout (wants 60000, is unset from nowhere)"
    ]


def test_the_option_is_validated_with_the_configuration(tmp_path) -> None:
    connection = {
        "name": "orders-db", "type": "postgres", "listen": "127.0.0.1:15432",
        "upstream": "127.0.0.1:6432",
        "credentials": {"provider": "static", "username": "app", "password": "x"},
    }  # fmt: skip
    config = pdp_config(tmp_path, connections=[{**connection, "upstream_pooler": "transaction"}])
    assert config.connections[0].options["upstream_pooler"] == "transaction"
    for wrong in ("session", "statement", True):
        with pytest.raises(ConfigError) as err:
            pdp_config(tmp_path, connections=[{**connection, "upstream_pooler": wrong}])
        assert err.value.key == "connections[0].upstream_pooler"
        assert "is not one of" in err.value.problem


# -- against pgbouncer ---------------------------------------------------------------------


@dataclass
class Pooled:
    proxy: PostgresProxy
    config: Config
    database: str
    role: str
    bouncer_port: int
    bouncer_log: Path

    def token(self, groups: tuple[str, ...] = ("readonly",)) -> str:
        return token(self.config, "alice@example.com", groups)

    def dsn(self, tok: str) -> str:
        return (
            f"postgresql://agent:{tok}@127.0.0.1:{self.proxy.port}/{self.database}?sslmode=disable"
        )

    def logins(self) -> int:
        """Client logins pgbouncer has seen (its log's "login attempt" lines)."""
        return self.bouncer_log.read_text().count("login attempt")


@contextlib.contextmanager
def pgbouncer(
    database: str, role: str, password: str, pool_size: int, max_clients: int = 200
) -> Iterator[tuple[int, Path]]:
    """pgbouncer 1.18 (the Debian package, as the postgres user, under setpriv) in
    transaction mode in front of the database; yields its port and its log file."""
    home = Path(tempfile.mkdtemp(prefix="portcullis-pgbouncer-"))
    os.chmod(home, 0o755)
    port = free_port()
    (home / "users.txt").write_text(f'"{role}" "{password}"\n')
    (home / "pgbouncer.ini").write_text(
        f"[databases]\n{database} = host=127.0.0.1 port=5432 dbname={database}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"auth_type = trust\nauth_file = {home}/users.txt\npool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = {max_clients}\nunix_socket_dir =\n"
        f"logfile = {home}/pgbouncer.log\nadmin_users = postgres\n"
    )
    shutil.chown(home, "postgres")
    command = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
               "pgbouncer", str(home / "pgbouncer.ini")]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                psycopg.connect(
                    f"postgresql://{role}@127.0.0.1:{port}/{database}", connect_timeout=1
                ).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None:
                    raise RuntimeError("pgbouncer did not start") from None
                time.sleep(0.1)
        yield port, home / "pgbouncer.log"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def pin_role(database: str, role: str, settings: dict[str, str]) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        for name, value in settings.items():
            admin.execute(f"ALTER ROLE {role} IN DATABASE \"{database}\" SET {name} = '{value}'")


@contextlib.asynccontextmanager
async def pooled_gateway(
    tmp: Path,
    pins: dict[str, str] | None = READER_PINS,
    pool_size: int = 2,
    pooler: bool = True,
    max_clients: int = 200,
) -> AsyncIterator[Pooled]:
    """A PDP and a proxy whose upstream is pgbouncer (transaction mode) in front of a
    fresh database; the role pinned with `pins` (ALTER ROLE ... IN DATABASE ... SET)."""
    with scratch_database() as (name, role, password):
        if pins:
            pin_role(name, role, pins)
        with pgbouncer(name, role, password, pool_size, max_clients) as (port, log):
            options = {"upstream_pooler": "transaction"} if pooler else {}
            upstream = f"127.0.0.1:{port}"
            async with gateway_on(tmp, name, role, password, upstream, options) as gw:
                yield Pooled(gw.proxy, gw.config, name, role, port, log)


async def psql(dsn: str, sql: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "psql", dsn, "-XAt", "-v", "ON_ERROR_STOP=1", "-c", sql,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def leaks(values: object) -> list[str]:
    text = repr(values).lower()
    return [s for s in SECRETS if s in text]


MASKED_QUERIES = [
    "SELECT id, name, email, ssn FROM customers ORDER BY id",
    "SELECT email AS e, ssn AS x, name FROM customers ORDER BY id",
    "SELECT * FROM customers ORDER BY id",
    "SELECT upper(email) AS shout, name FROM customers ORDER BY id",
]


@pytest.mark.integration
async def test_masked_reads_through_pgbouncer_come_back_masked(tmp_path) -> None:
    async with pooled_gateway(tmp_path) as gw:
        dsn = gw.dsn(gw.token())
        for sql in MASKED_QUERIES:
            code, out, err = await psql(dsn, sql)
            assert code == 0, err
            assert "Ada" in out and not leaks(out), (sql, out)
        async with await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None) as conn:
            for sql in MASKED_QUERIES:
                for binary in (False, True):
                    rows = await (await conn.execute(sql, binary=binary)).fetchall()
                    assert rows and not leaks(rows), (sql, binary, rows)
                    assert "Ada" in repr(rows)
        # asyncpg: binary results, unnamed statements (pgbouncer keeps no named ones)
        conn2 = await asyncpg.connect(dsn, statement_cache_size=0)
        try:
            for sql in MASKED_QUERIES:
                rows = [tuple(r) for r in await conn2.fetch(sql)]
                assert rows and not leaks(rows), (sql, rows)
        finally:
            await conn2.close()
        # pii-readers see the data as it is, through the same pooler
        pii = gw.dsn(gw.token(("readonly", "pii-readers")))
        code, out, err = await psql(pii, MASKED_QUERIES[1])
        assert code == 0 and "ada@example.com" in out, err


@pytest.mark.integration
async def test_column_knowledge_costs_no_pgbouncer_login_per_masked_result(tmp_path) -> None:
    async with (
        pooled_gateway(tmp_path) as gw,
        await psycopg.AsyncConnection.connect(gw.dsn(gw.token()), prepare_threshold=None) as conn,
    ):
        # the columns were learnt on the session's own connection as it started:
        # not even the first masked result opens one of the proxy's own
        before = gw.logins()
        for _ in range(20):
            for sql in MASKED_QUERIES:
                rows = await (await conn.execute(sql)).fetchall()
                assert rows and not leaks(rows)
        assert gw.logins() == before  # no side connection per lookup


@pytest.mark.integration
async def test_a_catalogue_pgbouncer_will_not_let_the_proxy_read_is_refused_not_passed(
    tmp_path,
) -> None:
    """pgbouncer full (max_client_conn 1: the session's own client connection): the
    proxy's catalogue watch cannot connect, so what the statement would run and the columns
    it names cannot be judged, and it is refused (de7b605) — never answered in clear (a
    table made after the session started, not among the columns it learnt, went masked
    by the strictest rule before)."""
    async with (
        pooled_gateway(tmp_path, max_clients=1) as gw,
        await psycopg.AsyncConnection.connect(
            gw.dsn(gw.token()), autocommit=True, prepare_threshold=None
        ) as conn,
    ):
        # made once the session is open: not among the columns it learnt
        with psycopg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{gw.database}") as admin:
            admin.execute("CREATE TABLE late AS SELECT id, name, email FROM customers")
            admin.execute(f"ALTER TABLE late OWNER TO {gw.role}")
        for binary in (False, True):
            sql = "SELECT id, email AS e, name FROM late ORDER BY id"
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                await conn.execute(sql, binary=binary)
            assert "catalogue could not be read" in str(refused.value)
            assert not leaks(str(refused.value))


@pytest.mark.integration
async def test_the_read_only_pin_holds_from_the_role_on_every_server_connection(
    tmp_path,
) -> None:
    # four: three sessions' open transactions hold three server connections, and the
    # proxy's catalogue watch asks on the fourth (a pool the clients' transactions fill
    # leaves the watch's questions waiting, and statements are refused: README)
    async with pooled_gateway(tmp_path, pool_size=4) as gw:
        dsn = gw.dsn(gw.token())
        # three sessions, each holding its transaction open: three server connections
        conns = [
            await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None) for _ in range(3)
        ]
        pids = set()
        try:
            for conn in conns:
                row = await (
                    await conn.execute(
                        "SELECT current_setting('transaction_read_only'), "
                        "current_setting('statement_timeout'), pg_backend_pid()"
                    )
                ).fetchone()
                assert row is not None and row[:2] == ("on", "1min"), row
                pids.add(row[2])
        finally:
            for conn in conns:
                await conn.close()
        assert len(pids) == 3
        # a reader's write is refused by policy; past policy (a dba, whom policy lets
        # write), the role's pin refuses it at the server, on whichever connection
        code, _, err = await psql(dsn, "INSERT INTO orders VALUES (12, 1, 1)")
        assert code != 0
        dba = gw.dsn(gw.token(("dba", "pii-readers")))
        for _ in range(3):
            code, _, err = await psql(dba, "INSERT INTO orders VALUES (12, 1, 1)")
            assert code != 0 and "read-only transaction" in err, err
        with psycopg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{gw.database}") as admin:
            assert admin.execute("SELECT count(*) FROM orders").fetchone() == (2,)


@pytest.mark.integration
async def test_a_role_without_the_pinned_settings_is_refused_by_name(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pins=None) as gw:
        code, out, err = await psql(gw.dsn(gw.token()), "SELECT 1")
        assert code != 0
        assert "transaction pooler" in err
        assert "default_transaction_read_only (wants on, is off from default)" in err
        assert "statement_timeout (wants 60000, is 0 from default)" in err
        assert (
            f'ALTER ROLE "{gw.role}" IN DATABASE "{gw.database}" '
            "SET default_transaction_read_only = 'on'"
        ) in err
        assert "SET statement_timeout = '60000'" in err
        # dba sessions pin nothing the role must hold (backslash_quote's default holds)
        code, out, err = await psql(gw.dsn(gw.token(("dba",))), "SELECT 1")
        assert code == 0 and out.strip() == "1", err


@pytest.mark.integration
async def test_a_pin_right_only_because_a_set_leaked_onto_the_server_connection_is_refused(
    tmp_path,
) -> None:
    async with pooled_gateway(tmp_path, pins={"statement_timeout": "60000"}, pool_size=1) as gw:
        # someone straight at pgbouncer (one server connection) leaves a session SET behind
        with psycopg.connect(
            f"postgresql://{gw.role}@127.0.0.1:{gw.bouncer_port}/{gw.database}", autocommit=True
        ) as direct:
            direct.execute("SET default_transaction_read_only = on")
        code, _, err = await psql(gw.dsn(gw.token()), "SELECT 1")
        assert code != 0
        assert "default_transaction_read_only (wants on, is on from session)" in err


@pytest.mark.integration
async def test_set_of_pinned_settings_is_refused_behind_the_pooler(tmp_path) -> None:
    async with pooled_gateway(tmp_path) as gw:
        reader, dba = gw.dsn(gw.token()), gw.dsn(gw.token(("dba", "pii-readers")))
        refused = [
            (reader, "SET statement_timeout = 1000"),
            (reader, "SET LOCAL statement_timeout = 1000"),
            (reader, "RESET ALL"),
            (reader, "SELECT set_config('statement_timeout', '1000', false)"),
            (dba, "SET default_transaction_read_only = off"),
            (dba, "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
            (dba, "SET statement_timeout = 0"),
            (dba, "RESET statement_timeout"),
            (dba, "SELECT set_config('default_transaction_read_only', 'off', false)"),
            (dba, f"SET ROLE {gw.role}"),
            (dba, "SET backslash_quote = on"),
        ]
        for dsn, sql in refused:
            code, out, err = await psql(dsn, sql)
            assert code != 0 and ("denied" in err.lower() or "pooler" in err), (sql, err)
        # settings pgbouncer tracks stay the client's own
        code, out, err = await psql(reader, "SET DateStyle = 'German'; SHOW DateStyle")
        assert code == 0 and "German" in out, err
        # and nothing leaked: every server connection still has the role's values
        code, out, err = await psql(reader, "SHOW statement_timeout")
        assert code == 0 and out.strip() == "1min", err


@pytest.mark.integration
async def test_named_statements_and_held_cursors_are_refused_behind_the_pooler(
    tmp_path,
) -> None:
    """A name that outlives a transaction lives on one server connection: a later Bind or
    EXECUTE could run another session's statement there under this session's verdict."""
    async with pooled_gateway(tmp_path) as gw:
        dsn = gw.dsn(gw.token(("dba", "pii-readers")))
        conn = await asyncpg.connect(dsn)  # its statement cache prepares named statements
        try:
            with pytest.raises(asyncpg.PostgresError, match="named prepared statements"):
                await conn.fetch("SELECT name FROM customers")
        finally:
            await conn.close()
        for sql in (
            "PREPARE s AS SELECT name FROM customers",
            "EXECUTE s",
            "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT name FROM customers; COMMIT",
        ):
            code, _, err = await psql(dsn, sql)
            assert code != 0 and "behind a transaction pooler" in err, (sql, err)
        # unnamed statements work (psycopg's extended protocol, asyncpg without a cache)
        conn = await asyncpg.connect(dsn, statement_cache_size=0)
        try:
            rows = await conn.fetch("SELECT name FROM customers ORDER BY id")
            assert [r["name"] for r in rows] == ["Ada", "Bob"]
        finally:
            await conn.close()


@pytest.mark.integration
async def test_without_the_option_pgbouncer_refuses_the_pins_and_the_session_fails_closed(
    tmp_path,
) -> None:
    async with pooled_gateway(tmp_path, pooler=False) as gw:
        code, out, err = await psql(gw.dsn(gw.token()), "SELECT email FROM customers")
        assert code != 0 and "unsupported startup parameter" in err
        assert not leaks(out)


@pytest.mark.integration
async def test_without_a_pooler_settings_are_judged_as_before(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        dsn = gw.dsn(gw.token("alice@example.com", ("readonly", "pii-readers")))
        code, out, err = await psql(dsn, "SET statement_timeout = 1000; SHOW statement_timeout")
        assert code == 0 and out.split() == ["SET", "1s"], err
        code, out, err = await psql(dsn, "SELECT email FROM customers ORDER BY id")
        assert code == 0 and "ada@example.com" in out
