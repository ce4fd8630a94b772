"""The attacker's bench for tests/test_pg_adversarial.py (issue 20).

A real PDP and a real Postgres proxy whose upstream credential is the `postgres`
SUPERUSER, so that nothing but Portcullis stands between a client and damage; the
gateway runs on its own event loop in a background thread, so the tests may use blocking
clients (psycopg, psql, raw sockets) and the administrator's own connections freely.

Also: a raw-socket client that sends frames built byte by byte (a query in any client
encoding, several messages in one TCP write), and a snapshot of everything an attack could
change, taken from the administrator's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pdp_harness import REGO, free_port, pdp_config, running_pdp, token
from pg_harness import scratch_database

from portcullis.config import Config
from proxies.postgres import codec
from proxies.postgres.proxy import PostgresProxy

SUPERUSER = "postgres"

# What the reader must never see raw, in any format. "hunter2..." is in a sensitive column
# (`password`) that no value detector recognises: only policy and lineage protect it.
# inside Ada's note (DATA): what only the value detectors mask
CARD = b"4111 1111 1111 1111"
SECRETS = (b"ada@example.com", b"bob@example.org", b"123-45-6789", b"234-56-7890", b"hunter2")

SCHEMA = """
CREATE TABLE customers (
  id int PRIMARY KEY, name text, email text, ssn text, note text, password text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric);
CREATE TABLE audit_log (id serial PRIMARY KEY, what text);
CREATE SEQUENCE adv_seq;
-- a "read" that writes: the classifier sees a view, the server runs an INSERT
CREATE FUNCTION public.remember() RETURNS int LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN INSERT INTO audit_log(what) VALUES ('written by a read'); RETURN 1; END $$;
CREATE VIEW public.innocent AS SELECT id, public.remember() AS r FROM orders;
"""

DATA = """
TRUNCATE customers, orders, audit_log;
INSERT INTO customers VALUES
  (1, 'Ada', 'ada@example.com', '123-45-6789', 'card 4111 1111 1111 1111 on file', 'hunter2-ada'),
  (2, 'Bob', 'bob@example.org', '234-56-7890', 'nothing to see', 'hunter2-bob');
INSERT INTO orders VALUES (10, 1, 99.50), (11, 2, 12.00);
SELECT setval('adv_seq', 1, false);
"""


@dataclass
class Arena:
    """A running superuser-backed gateway on a scratch database."""

    config: Config
    proxy: PostgresProxy
    database: str
    role: str  # owns the scratch database's tables; the proxy never logs in as it
    loop: asyncio.AbstractEventLoop
    policies: Path
    tmp: Path

    @property
    def port(self) -> int:
        return self.proxy.port

    def token(self, sub: str, groups: tuple[str, ...] = ("readonly",)) -> str:
        return token(self.config, sub, groups)

    def dsn(self, tok: str, **params: Any) -> str:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return (
            f"postgresql://agent:{tok}@127.0.0.1:{self.port}/{self.database}?sslmode=disable{extra}"
        )

    def admin(self, **kw: Any) -> psycopg.Connection:
        return psycopg.connect(
            f"postgresql://{SUPERUSER}@127.0.0.1:5432/{self.database}", autocommit=True, **kw
        )

    def reset_data(self) -> None:
        with self.admin() as admin:
            admin.execute(DATA)
            admin.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
            drop_adversary_slots(admin)


def drop_adversary_slots(admin: psycopg.Connection) -> None:
    admin.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        " WHERE slot_name LIKE 'adv%' AND NOT active"
    )
    admin.execute(
        "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin"
        " WHERE roname LIKE 'adv%'"
    )


@contextlib.contextmanager
def running_arena(
    tmp: Path, policies: Path = REGO, approval_timeout: int = 1, **options: Any
) -> Iterator[Arena]:
    """The gateway, with the superuser as its static upstream credential, in a thread."""
    with scratch_database(SCHEMA) as (name, role, _password):
        connection = {
            "name": "orders-db",
            "type": "postgres",
            "listen": f"127.0.0.1:{free_port()}",
            "upstream": "127.0.0.1:5432",
            "database": name,
            "zone": "eu-prod",
            # trust auth: the password is never checked, the role is what matters
            "credentials": {"provider": "static", "username": SUPERUSER, "password": "unused"},
            "spool_dir": str(tmp / "spool"),
            **options,
        }
        engine = {"type": "embedded", "policies": str(policies), "workers": 2, "timeout_ms": 3000}
        config = pdp_config(
            tmp,
            connections=[connection],
            engine=engine,
            approvals={"timeout_seconds": approval_timeout},
        )
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="arena", daemon=True)
        thread.start()

        def on_loop(coro: Any, timeout: float = 60) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

        pdp_cm = running_pdp(config)
        pdp = on_loop(pdp_cm.__aenter__())
        proxy = None
        try:
            proxy = PostgresProxy(config.connections[0], config, pdp.address)
            on_loop(proxy.start())
            arena = Arena(config, proxy, name, role, loop, policies, tmp)
            arena.reset_data()
            yield arena
        finally:
            try:
                if proxy is not None:
                    on_loop(proxy.stop())
                on_loop(pdp_cm.__aexit__(None, None, None))
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(10)
                with psycopg.connect(
                    f"postgresql://{SUPERUSER}@127.0.0.1:5432/postgres", autocommit=True
                ) as admin:
                    drop_adversary_slots(admin)


# --- frames built byte by byte ----------------------------------------------


def frame(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def query(sql: bytes | str) -> bytes:
    """Query ('Q') whose text is exactly these bytes (any client encoding)."""
    raw = sql.encode() if isinstance(sql, str) else sql
    return frame(b"Q", raw + b"\0")


def parse(name: str, sql: bytes | str) -> bytes:
    raw = sql.encode() if isinstance(sql, str) else sql
    return frame(b"P", name.encode() + b"\0" + raw + b"\0" + struct.pack("!h", 0))


def bind(portal: str, statement: str, result_format: int = 0) -> bytes:
    return codec.Bind(portal, statement, [], [], [result_format]).encode()


def describe(kind: str, name: str) -> bytes:
    return codec.Describe(kind, name).encode()


def execute(portal: str = "") -> bytes:
    return codec.Execute(portal, 0).encode()


def sync() -> bytes:
    return codec.Sync().encode()


def function_call(oid: int, *args: bytes | int | None, result_format: int = 0) -> bytes:
    """FunctionCall ('F'): the fast path, a function named only by its OID."""
    values: list[bytes | None] = []
    formats: list[int] = []
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool):
            values.append(struct.pack("!i", a))
            formats.append(1)
        else:
            values.append(a)
            formats.append(1 if a is None else 0)
    return codec.FunctionCall(oid, formats, values, result_format).encode()


@dataclass
class Answer:
    """Everything the proxy sent back for one exchange."""

    messages: list[codec.Message] = field(default_factory=list)
    raw: bytes = b""
    closed: bool = False

    @property
    def errors(self) -> list[str]:
        return [m.message for m in self.messages if isinstance(m, codec.ErrorResponse)]

    @property
    def rows(self) -> list[list[bytes | None]]:
        return [m.values for m in self.messages if isinstance(m, codec.DataRow)]

    @property
    def tags(self) -> list[str]:
        return [m.tag for m in self.messages if isinstance(m, codec.CommandComplete)]

    @property
    def refused(self) -> bool:
        return self.closed or bool(self.errors)


class RawClient:
    """A blocking socket to the proxy that speaks in frames the test builds itself."""

    def __init__(self, port: int, tok: str, database: str, **params: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.parser = codec.BackendParser()
        self.pending: list[codec.Message] = []
        self.closed = False
        self.startup = Answer()
        start = {"user": "agent", "database": database, **params}
        self.sock.sendall(codec.StartupMessage(codec.PROTOCOL_VERSION, start).encode())
        first = self._until((codec.Authentication, codec.ErrorResponse))
        if isinstance(first.messages[-1], codec.AuthenticationCleartextPassword):
            self.sock.sendall(codec.PasswordMessage.from_password(tok).encode())
            self.startup = self._until((codec.ReadyForQuery, codec.ErrorResponse))
        else:
            self.startup = first
        self.params = {
            m.name: m.value for m in self.startup.messages if isinstance(m, codec.ParameterStatus)
        }

    @property
    def ready(self) -> bool:
        return not self.closed and any(
            isinstance(m, codec.ReadyForQuery) for m in self.startup.messages
        )

    def _until(self, kinds: tuple[type, ...], count: int = 1) -> Answer:
        answer = Answer()
        seen = 0
        while True:
            while self.pending:
                message = self.pending.pop(0)
                answer.messages.append(message)
                if isinstance(message, kinds):
                    seen += 1
                    if seen >= count:
                        return answer
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError, OSError):
                data = b""
            if not data:
                self.closed = answer.closed = True
                return answer
            answer.raw += data
            try:
                self.pending.extend(self.parser.feed(data))
            except codec.ProtocolViolation:
                self.closed = answer.closed = True
                return answer

    def send(self, *frames: bytes, ready: int = 1) -> Answer:
        """All frames in ONE write; read until `ready` ReadyForQuery (or the end)."""
        if self.closed:
            return Answer(closed=True)
        try:
            self.sock.sendall(b"".join(frames))
        except OSError:
            self.closed = True
            return Answer(closed=True)
        return self._until((codec.ReadyForQuery,), ready)

    def query(self, sql: bytes | str) -> Answer:
        return self.send(query(sql))

    def show(self, name: str) -> str | None:
        """SHOW through the proxy; None when the session is gone or refuses."""
        answer = self.query(f"SHOW {name}")
        if answer.refused or not answer.rows:
            return None
        value = answer.rows[0][0]
        return value.decode() if value is not None else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if not self.closed:
                self.sock.sendall(codec.Terminate().encode())
        self.sock.close()


# --- the administrator's view -----------------------------------------------

WATCHED_SETTINGS = (
    "default_transaction_read_only",
    "standard_conforming_strings",
    "client_encoding",
    "session_replication_role",
    "log_statement",
    "allow_system_table_mods",
    "statement_timeout",
    "backslash_quote",
)


def snapshot(admin: psycopg.Connection, database: str, role: str) -> dict[str, Any]:
    """Everything an attack could change, as the administrator sees it."""

    def rows(sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return admin.execute(sql, args or None).fetchall()

    return {
        "customers": rows("SELECT * FROM customers ORDER BY id"),
        "orders": rows("SELECT * FROM orders ORDER BY id"),
        "audit_log": rows("SELECT count(*) FROM audit_log"),
        "sequence": rows("SELECT last_value, is_called FROM adv_seq"),
        "large_objects": rows("SELECT count(*) FROM pg_largeobject_metadata"),
        "slots": rows("SELECT slot_name FROM pg_replication_slots ORDER BY 1"),
        "origins": rows("SELECT roname FROM pg_replication_origin ORDER BY 1"),
        # the arena's database and role, the superuser and cluster-wide settings: other
        # test files running beside this one pin their own roles in their own databases
        # (test_pgbouncer_pooler's ALTER ROLE ... IN DATABASE), which read as this file's
        # changes and failed its teardowns
        "role_settings": rows(
            "SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting"
            " WHERE setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = %s))"
            " AND (setrole = 0 OR setrole IN"
            " (SELECT oid FROM pg_roles WHERE rolname IN (%s, 'postgres')))"
            " ORDER BY 1, 2",
            database,
            role,
        ),
        "collations": rows("SELECT count(*) FROM pg_collation"),
        "server_settings": rows(
            "SELECT name, setting, source FROM pg_settings WHERE name = ANY(%s) ORDER BY 1",
            list(WATCHED_SETTINGS),
        ),
        "auto_conf": rows("SELECT count(*) FROM pg_file_settings"),
        "conf_loaded": rows("SELECT pg_conf_load_time()"),
        "stats_reset": rows(
            "SELECT stats_reset FROM pg_stat_database WHERE datname = %s", database
        ),
        # the server is shared with other test runs: only the roles an attack here could touch
        "roles": rows(
            "SELECT rolname, rolsuper, rolpassword, rolvaliduntil FROM pg_authid"
            " WHERE rolname = 'postgres' OR rolname LIKE 'adv%%' OR rolname = %s ORDER BY 1",
            role,
        ),
        "tables": rows(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
        ),
    }


def oid_of(admin: psycopg.Connection, signature: str) -> int:
    return int(admin.execute("SELECT %s::regprocedure::oid", (signature,)).fetchone()[0])


def marker_path() -> Path:
    """A file name the server's OS user could create, and nothing else will."""
    return Path(f"/tmp/portcullis_adv_{secrets.token_hex(6)}")


_identities = itertools.count()


def ready_client(arena: Arena, groups: tuple[str, ...], who: str = "agent") -> RawClient:
    """A session through the arena of a new identity in `groups`, past its start-up."""
    tok = arena.token(f"{who}-{next(_identities)}@example.com", groups)
    c = RawClient(arena.port, tok, arena.database)
    assert c.ready, c.startup.messages
    return c


# The gateway's own random identifiers (decision d-…, approval a-…, session s-…): hex
# that may hold a short spelling such as b"4111" by chance and derives from no value.
_GATEWAY_IDS = re.compile(rb"(?<![0-9A-Za-z])[das]-[0-9a-f]{16,32}(?![0-9a-f])")


def assert_none_of(answer: Answer, secrets: Iterable[bytes]) -> None:
    """No byte run of `secrets` in the raw answer, the gateway's random ids left out."""
    raw = _GATEWAY_IDS.sub(b"<id>", answer.raw)
    for secret in secrets:
        assert secret not in raw, (secret, answer.messages)


def assert_no_secret(answer: Answer, *also: bytes) -> None:
    """None of the arena's secrets (SECRETS, the note's CARD), nor any of `also` (the
    forms a probe's expressions make of them), in the raw answer."""
    assert_none_of(answer, (*SECRETS, CARD, *also))


def copied(answer: Answer) -> list[bytes]:
    """The CopyData payloads of an answer, in order."""
    return [m.data for m in answer.messages if isinstance(m, codec.CopyData)]
