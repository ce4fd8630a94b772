"""Fixtures shared by the test suite. Keep each one small and general."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import pytest
import uvloop



def pytest_configure(config: pytest.Config) -> None:
    """Every async test runs on uvloop, the loop the PDP and the proxies run on
    (portcullis.process.run_until_signal): its transports differ from asyncio's where the
    relay pauses reading and where a write meets a closed socket."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


PG_ADMIN_DSN = os.environ.get("PORTCULLIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty database on the real test server; yields its DSN, drops it after."""
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
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
