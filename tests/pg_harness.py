"""A gateway for Postgres tests: a real PDP and a real Postgres proxy in front of a fresh
database on the machine's PostgreSQL, with its own application role."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from pdp_harness import free_port, pdp_config, running_pdp, token
from pg_drops import drop_later

from pdp.app import PDPApp
from portcullis.config import Config
from proxies.launcher import handed_credential
from proxies.postgres.proxy import PostgresProxy


def name_of(config: Config) -> str:
    return config.connections[0].name


ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text, note text);
INSERT INTO customers VALUES
  (1, 'Ada', 'ada@example.com', '123-45-6789', 'card 4111 1111 1111 1111 on file'),
  (2, 'Bob', 'bob@example.org', '234-56-7890', 'nothing to see');
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric);
INSERT INTO orders VALUES (10, 1, 99.50), (11, 2, 12.00);
"""


@dataclass
class Gateway:
    pdp: PDPApp
    proxy: PostgresProxy
    config: Config
    database: str
    role: str
    password: str

    def token(self, sub: str = "alice@example.com", groups: tuple[str, ...] = ("readonly",)) -> str:
        return token(self.config, sub, groups)

    def dsn(self, tok: str, **params: Any) -> str:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return (
            f"postgresql://agent:{tok}@127.0.0.1:{self.proxy.port}/{self.database}"
            f"?sslmode=disable{extra}"
        )

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{self.database}", autocommit=True
        )


@contextlib.contextmanager
def scratch_database(schema: str = SCHEMA):
    """A fresh database and a password role owning its tables; dropped afterwards (in the
    background: tests/pg_drops.py)."""
    name = f"portcullis_pg_{secrets.token_hex(4)}"
    role = f"portcullis_app_{secrets.token_hex(4)}"
    password = "pw-" + secrets.token_urlsafe(18)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        admin.execute(f'CREATE DATABASE "{name}" OWNER {role}')
    try:
        with psycopg.connect(f"postgresql://{role}@127.0.0.1:5432/{name}", autocommit=True) as db:
            db.execute(schema)
        yield name, role, password
    finally:
        # dropped in the background: a DROP DATABASE waits for a checkpoint (pg_drops)
        drop_later(name, role, ADMIN_DSN)


@contextlib.asynccontextmanager
async def running_gateway(
    tmp: Path, options: dict[str, Any] | None = None, **pdp_kwargs: Any
) -> AsyncIterator[Gateway]:
    with scratch_database() as (name, role, password):
        async with gateway_on(tmp, name, role, password, options=options, **pdp_kwargs) as gw:
            yield gw


@contextlib.asynccontextmanager
async def gateway_on(
    tmp: Path,
    name: str,
    role: str,
    password: str,
    upstream: str = "127.0.0.1:5432",
    options: dict[str, Any] | None = None,
    **pdp_kwargs: Any,
) -> AsyncIterator[Gateway]:
    """A PDP and a Postgres proxy for database `name` (owned by `role`) at `upstream`."""
    connection = {
        "name": "orders-db",
        "type": "postgres",
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": upstream,
        "database": name,
        "zone": "eu-prod",
        "credentials": {"provider": "static", "username": role, "password": password},
        "spool_dir": str(tmp / "spool"),
        **(options or {}),
    }
    # a command waiting for approval holds its session this long (tests decide fast)
    pdp_kwargs.setdefault("approvals", {"timeout_seconds": 2})
    config = pdp_config(tmp, connections=[connection], **pdp_kwargs)
    async with running_pdp(config) as pdp:
        # authenticated as `portcullis up` does: a credential the PDP issued for it
        handed = handed_credential(config, name_of(config), pdp.issue_proxy_credential)
        proxy = PostgresProxy(config.connections[0], handed, pdp.address)
        await proxy.start()
        try:
            yield Gateway(pdp, proxy, config, name, role, password)
        finally:
            await proxy.stop()
