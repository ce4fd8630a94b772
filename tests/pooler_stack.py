"""The set-up the PostgreSQL probes behind a transaction pooler share (tests/test_pg_probe_p52,
p53, p55, p56, p57 and up), on tests/test_pgbouncer_pooler.py's pooled_gateway: the
superuser's connection to the pooled database, objects it makes there for the upstream role
(as the application would have made them), a connection straight at pgbouncer (someone
leaving state on a server connection without the proxy), and what the probes that store
settings for later sessions (p51, p54) compare before and after. Set-up and shared checks
only: what each probe attacks stays in its file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from pg_harness import ADMIN_DSN
from test_pgbouncer_pooler import Pooled


@contextlib.contextmanager
def pooled_admin(gw: Pooled) -> Iterator[psycopg.Connection[Any]]:
    """The superuser's autocommit connection to the pooled database, straight at the
    server (not through pgbouncer or the proxy)."""
    with psycopg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{gw.database}", autocommit=True) as a:
        yield a


def made_for_the_role(gw: Pooled, *sql: str) -> None:
    """Run `sql` as the superuser in the pooled database, each statement formatted with
    {role} (the upstream role, which then owns what it makes where a statement says so)."""
    with pooled_admin(gw) as admin:
        for statement in sql:
            admin.execute(statement.format(role=gw.role))


def straight_at_pgbouncer(gw: Pooled) -> str:
    """A DSN straight at pgbouncer as the upstream role: a client the proxy never sees."""
    return f"postgresql://{gw.role}@127.0.0.1:{gw.bouncer_port}/{gw.database}"


def stored_settings(admin: psycopg.Connection[Any], database: str, role: str) -> list[Any]:
    """The settings stored for later sessions (pg_db_role_setting) of `database` and `role`,
    or of all of either: other tests running at once store their own roles' settings in the
    same cluster, so a comparison of the whole catalog would see theirs."""
    return admin.execute(
        "SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting"
        " WHERE setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = %s))"
        " AND setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = %s))"
        " ORDER BY 1, 2",
        (database, role),
    ).fetchall()
