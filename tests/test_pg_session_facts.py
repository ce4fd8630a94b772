"""A session's start-up catalogue facts: read whole once, taken again while nothing changed.

Each session used to read the catalogue whole before its client was let in (the marks, the
built-in rows, the facts: thousands of rows, hundreds of ms of the server's questions).
CatalogWatch.session_facts asks the server's snapshot first and takes the facts last read
whole when the snapshot is still the one asked just before them (no transaction has
committed or taken an xid since, so no catalogue row changed); anything else reads whole,
built-in rows and all. Real PostgreSQL, the real proxy, psycopg.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from adversary import Arena
from pg_probe_stack import arena_fixture

from proxies.postgres import catalog_watch
from proxies.postgres.builtin_rows import BUILTIN_ROWS_SQL, CODE_ROWS_SQL
from proxies.postgres.upstream import Answer
from proxies.postgres.user_code import USER_CODE_SQL

arena = arena_fixture()


class Asked(Counter[str]):
    """What session start-ups asked the server, counted ('snapshot', 'builtins',
    'user_code', 'other');
    `snapshot`, when set, is the server's snapshot as they are told it (the machine's
    other tests commit all the time: a real one seldom stays the same between sessions)."""

    snapshot: str | None = None


@pytest.fixture
def asked(arena: Arena, monkeypatch: pytest.MonkeyPatch) -> Iterator[Asked]:
    counts = Asked()
    real = catalog_watch.session_query

    async def counting(upstream: object, sql: str, timeout: float = 5.0) -> list[str] | None:
        if sql == catalog_watch.SNAPSHOT_SQL:
            counts["snapshot"] += 1
            if counts.snapshot is not None:
                return [counts.snapshot]
        elif sql.endswith(BUILTIN_ROWS_SQL):
            counts["builtins"] += 1
        elif sql.endswith(USER_CODE_SQL):
            counts["user_code"] += 1
        else:
            counts["other"] += 1
        return await real(upstream, sql, timeout)  # type: ignore[arg-type]

    real_whole = catalog_watch.session_answer

    async def counting_whole(upstream: Any, sql: str, timeout: float = 5.0) -> Answer | None:
        if sql.endswith(CODE_ROWS_SQL):
            counts["builtins"] += 1
            counts["builtins_whole"] += 1
        return await real_whole(upstream, sql, timeout)

    monkeypatch.setattr(catalog_watch, "session_query", counting)
    monkeypatch.setattr(catalog_watch, "session_answer", counting_whole)
    yield counts


def _session(arena: Arena, sql: str = "SELECT 1") -> list[tuple[object, ...]]:
    with psycopg.connect(arena.dsn(arena.token("facts-reuse")), autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def test_an_unchanged_server_is_not_read_whole_again(arena: Arena, asked: Asked) -> None:
    asked.snapshot = "900001:900001:"
    assert _session(arena) == [(1,)]
    assert asked["builtins"] == 1  # not read at this snapshot before: read whole
    for _ in range(3):
        assert _session(arena) == [(1,)]
    assert asked["builtins"] == 1 and asked["snapshot"] == 4
    asked.snapshot = "900001:900002:"  # a transaction took an xid since: read whole
    assert _session(arena) == [(1,)]
    assert asked["builtins"] == 2
    asked.snapshot = "900002:900003:900002"  # one in progress: another snapshot
    assert _session(arena) == [(1,)]
    assert asked["builtins"] == 3
    # the catalogue's marks never moved: its facts' questions were not asked again
    assert asked["user_code"] <= 1
    # and the built-in rows were asked as one answer's bytes, never row by row
    assert asked["builtins_whole"] == asked["builtins"]


def test_a_table_made_between_sessions_reads_the_facts_again(arena: Arena, asked: Asked) -> None:
    assert _session(arena) == [(1,)]
    asked.clear()
    with arena.admin() as admin:
        admin.execute("CREATE VIEW facts_reuse_v AS SELECT 1 AS one")
    try:
        assert _session(arena) == [(1,)]
        # (the catalogue watch, still running from the last session, may read them too)
        assert asked["builtins"] >= 1 and asked["user_code"] >= 1
    finally:
        with arena.admin() as admin:
            admin.execute("DROP VIEW facts_reuse_v")


def test_a_snapshot_that_is_not_one_reads_whole(arena: Arena, asked: Asked) -> None:
    for odd in ("", "garbage", "900001:900001:;SELECT"):
        asked.snapshot = odd
        assert _session(arena) == [(1,)]
        assert _session(arena) == [(1,)]
    assert asked["builtins"] >= 6  # (the catalogue watch may read whole too)


def test_code_made_between_sessions_is_judged_by_the_next(
    arena: Arena, asked: Asked
) -> None:
    """A superuser's pg_catalog.lower(integer), made after a session read the catalogue: the
    next session knows the name as the database's (not pg_catalog's own), so a reader's
    lower(5) is refused, never run as the built-in."""
    assert _session(arena, "SELECT lower('A')") == [("a",)]
    with arena.admin() as admin:
        admin.execute(
            "CREATE FUNCTION pg_catalog.lower(integer) RETURNS text LANGUAGE sql"
            " AS $$ SELECT 'ran the database''s lower' $$"
        )
    try:
        with pytest.raises(psycopg.Error, match=r"(?i)denied|refused|not allowed"):
            _session(arena, "SELECT lower(5)")
    finally:
        with arena.admin() as admin:
            admin.execute("DROP FUNCTION pg_catalog.lower(integer)")


def test_an_answer_is_read_into_rows_only_when_whole_and_without_errors() -> None:
    """Answer.first_column: the rows session_query would give, or None for an answer
    holding an error, cut short, or not well-formed."""
    from proxies.postgres import codec

    def frames(*messages: codec.Message) -> bytes:
        return b"".join(m.encode() for m in messages)

    description = codec.RowDescription([codec.Field("x")])
    good = frames(
        description,
        codec.DataRow([b"a", b"1"]),
        codec.DataRow([None]),
        codec.DataRow([]),
        codec.CommandComplete("SELECT 3"),
        codec.ReadyForQuery("I"),
    )
    assert Answer(good).first_column() == ["a", ""]
    error = codec.ErrorResponse({"S": "ERROR", "C": "42501", "M": "no"})
    assert Answer(frames(description, error, codec.ReadyForQuery("I"))).first_column() is None
    assert Answer(good[:-6]).first_column() is None  # no ReadyForQuery
    assert Answer(good[:-3]).first_column() is None  # cut inside a frame
    assert Answer(b"\xff" + good).first_column() is None
    assert Answer(frames(codec.DataRow([b"\xff"]), codec.ReadyForQuery("I"))).first_column() is None


def test_a_database_made_elsewhere_does_not_read_the_code_rows_again(
    arena: Arena, asked: Asked, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Databases are made and dropped all the time on a shared server (pg_database's rows,
    read for the initdb boundary, change): the code rows' answer, the same bytes, is not
    read into rows again."""
    import secrets

    read = Counter[str]()
    first_column = Answer.first_column

    def counted(self: Answer) -> list[str] | None:
        read["code rows"] += 1
        return first_column(self)

    monkeypatch.setattr(Answer, "first_column", counted)
    assert _session(arena) == [(1,)]
    name = f"facts_elsewhere_{secrets.token_hex(4)}"
    with arena.admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        before = read["code rows"]
        assert _session(arena) == [(1,)]
        assert asked["builtins_whole"] >= 2
        assert read["code rows"] == before
    finally:
        with arena.admin() as admin:
            admin.execute(f"DROP DATABASE {name}")


# (last: the arena's database refuses sessions after it)
def test_a_built_in_row_written_in_place_between_sessions_refuses_the_next(
    arena: Arena, asked: Asked
) -> None:
    """A built-in's row written since initdb (the questions' `>` made `=`: the marks alone
    would not move) after a session read the catalogue: the next session reads it whole
    and is refused."""
    assert _session(arena) == [(1,)]
    with arena.admin() as admin:
        admin.execute(
            "UPDATE pg_catalog.pg_operator SET oprcode = 'pg_catalog.int8eq'::regproc"
            " WHERE oid = '>(int8,int8)'::regoperator"
        )
    try:
        with pytest.raises(psycopg.OperationalError, match="catalog could not be read"):
            _session(arena)
    finally:
        with arena.admin() as admin:
            admin.execute(
                "UPDATE pg_catalog.pg_operator SET oprcode = 'pg_catalog.int8gt'::regproc"
                " WHERE oid = '>(int8,int8)'::regoperator"
            )
