"""What the Postgres proxy knows of a database is that database's alone.

A connection that names no `database` serves whichever database each client asks for.
The proxy's catalogue watch (the code a database holds: view functions, operators,
shadowed built-ins) and its column knowledge (what each table OID's columns are, for
masking) were one per proxy: a reader's session in database B, opened after one in A,
took the watch's newer reading of A's catalogue before its next statement, and B's view
running a superuser's function was judged as a plain view and ran it. Now each database
has its own (PostgresProxy.knowledge).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from adversary import SUPERUSER, Arena, RawClient, running_arena
from test_pg_probe_p17 import ran

OTHER_SETUP = [
    "CREATE TABLE public.things (id int)",
    "INSERT INTO public.things VALUES (1), (2)",
    "CREATE FUNCTION public.noisy_b() RETURNS int LANGUAGE plpgsql AS"
    " $$ BEGIN RAISE NOTICE 'noisy_b ran'; RETURN 1; END $$",
    "CREATE VIEW public.things_v AS SELECT id, public.noisy_b() AS n FROM public.things",
]


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with running_arena(tmp_path_factory.mktemp("arena"), database="") as gateway:
        yield gateway


@pytest.fixture(scope="module")
def other_database(arena: Arena) -> Iterator[str]:
    name = f"{arena.database}_other"
    with psycopg.connect(
        f"postgresql://{SUPERUSER}@127.0.0.1:5432/postgres", autocommit=True
    ) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(
            f"postgresql://{SUPERUSER}@127.0.0.1:5432/{name}", autocommit=True
        ) as admin:
            for sql in OTHER_SETUP:
                admin.execute(sql)
        yield name
    finally:
        with psycopg.connect(
            f"postgresql://{SUPERUSER}@127.0.0.1:5432/postgres", autocommit=True
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _asked_again(arena: Arena, database: str) -> None:
    """The database's catalogue watch asks once more (what its poll does on its own)."""
    watch = arena.proxy.knowledge(database).catalog
    asyncio.run_coroutine_threadsafe(watch.fresh(columns=True), arena.loop).result(30)


def test_a_database_is_judged_with_its_own_catalogue(
    arena: Arena, other_database: str, tmp_path: Path
) -> None:
    first = RawClient(arena.port, arena.token("db-a@example.com"), arena.database)
    assert first.ready, first.startup.messages
    assert not first.query("SELECT id FROM orders").errors
    second = RawClient(arena.port, arena.token("db-b@example.com"), other_database)
    assert second.ready, second.startup.messages
    try:
        assert not second.query("SELECT id FROM things").errors
        # a commit anywhere moves the server's snapshot: every watch reads its catalogue
        with arena.admin() as admin:
            admin.execute("CREATE TEMP TABLE moved (x int)")
        _asked_again(arena, arena.database)
        _asked_again(arena, other_database)
        answer = second.query("SELECT * FROM things_v")
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
        assert not ran(answer), answer.messages
        assert not first.query("SELECT id FROM orders").errors
    finally:
        first.close()
        second.close()


def test_each_database_has_its_own_knowledge(arena: Arena, other_database: str) -> None:
    a = arena.proxy.knowledge(arena.database)
    b = arena.proxy.knowledge(other_database)
    assert a is not b and a.catalog is not b.catalog
    assert a.column_origins is not b.column_origins
