"""A reader's search_path: pg_catalog first, and only the schemas postgres.reader_search_path
lists (`$user`, public, pg_catalog, or none), by SET, SET SCHEMA and the start-up packet.

Another schema in the path resolves an unqualified name to that schema's table of the same
name: the policy, the masks and an approver read `UPDATE orders ...` as the usual table
while the server writes or reads `archive.orders`. Through the real gateway, with the
superuser as its upstream credential (tests/adversary.py).
"""

from __future__ import annotations

import psycopg
import pytest
from adversary import RawClient, running_arena

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname=gateway.database, autocommit=True
        ) as direct:
            direct.execute("CREATE SCHEMA archive")
            direct.execute("CREATE TABLE archive.orders (id int, secret text)")
            direct.execute("INSERT INTO archive.orders VALUES (1, 'archived-secret')")
        yield gateway


_who = iter(range(1_000_000))


def reader(arena, **params: str) -> RawClient:
    tok = arena.token(f"sp-{next(_who)}@example.com", ("readonly",))
    return RawClient(arena.port, tok, arena.database, **params)


@pytest.mark.parametrize(
    "sql",
    [
        "SET search_path = archive",
        "SET search_path TO public, archive",
        "SET search_path = pg_catalog, archive, public",
        "SET search_path = 'public, archive'",  # one schema of that name: not listed
        'SET search_path = "Public"',
        "SET search_path = pg_temp",
        "SET LOCAL search_path = archive",
        "SET SESSION search_path = archive",
        "SET SCHEMA 'archive'",
    ],
)
def test_a_reader_may_not_put_another_schema_in_the_path(arena, sql: str) -> None:
    c = reader(arena)
    assert c.ready, c.startup.messages
    answer = c.query(sql)
    assert any("denied by policy" in e for e in answer.errors), (sql, answer.messages)
    shown = c.query("SELECT * FROM orders")
    assert b"archived-secret" not in shown.raw, shown.messages


@pytest.mark.parametrize(
    "sql",
    [
        "SET search_path = public",
        'SET search_path = "$user", public',
        "SET search_path TO pg_catalog, public",
        "SET search_path = ''",
        "RESET search_path",
        "SET search_path TO DEFAULT",
    ],
)
def test_the_usual_paths_are_still_a_readers_to_set(arena, sql: str) -> None:
    c = reader(arena)
    assert c.ready, c.startup.messages
    answer = c.query(sql)
    assert not answer.refused and not answer.errors, (sql, answer.messages)


@pytest.mark.parametrize("value", ["archive", "public,archive", '"public, archive"'])
def test_a_start_up_search_path_with_another_schema_is_refused(arena, value: str) -> None:
    c = reader(arena, options=f"-c search_path={value}")
    assert not c.ready, c.startup.messages
    with_option = reader(arena, search_path=value)
    assert not with_option.ready, with_option.startup.messages
