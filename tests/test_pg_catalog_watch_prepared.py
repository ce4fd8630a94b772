"""The catalogue watch's questions are planned once per connection (issue 27).

proxies/postgres/catalog_watch.py asks the server's snapshot alongside every decision the
PDP makes, and MARK_SQL (a UNION ALL over 28 catalogues) whenever any transaction
committed since: as simple Queries the server planned MARK_SQL every time, about ten times
what running it costs (pgbench -f of MARK_SQL: 3.6 ms a question simple, 0.37 ms prepared).
On a straight connection they are now statements prepared on the watch's own connection
(the server keeps one generic plan), with the same answers; behind a transaction pooler,
where the next question may reach another server connection, simple Queries as before.

Against the real server at 127.0.0.1:5432 (trust, user postgres), in a database of its own.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from proxies.postgres.catalog_watch import CatalogWatch, Facts
from proxies.postgres.upstream import session_rows
from proxies.runtime.credentials import CredentialLease

pytestmark = pytest.mark.integration

ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qAtX", "-c"]
NAMES = (
    "portcullis_catalog_snapshot",
    "portcullis_catalog_mark",
    "portcullis_catalog_columns_mark",
)


def _admin(sql: str, database: str = "postgres") -> str:
    return subprocess.run(
        [*ADMIN, sql, "-d", database], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    name = f"pgperf4_watch_{secrets.token_hex(3)}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _credentials(database: str):  # type: ignore[no-untyped-def]
    lease = CredentialLease("static", username="postgres")
    return lambda: ({"user": "postgres", "database": database}, lease)


async def _asked(watch: CatalogWatch, database: str, rounds: int) -> list[Facts | None]:
    """`rounds` questions of the watch (columns too), a transaction committed between each
    (the server's snapshot moves, so the marks are asked every time), then the rows of
    pg_prepared_statements read on the watch's own connection."""
    answers = []
    for _ in range(rounds):
        answers.append(await watch.fresh(_credentials(database), columns=True))
        await asyncio.to_thread(_admin, "SELECT pg_catalog.txid_current()", database)
    return answers


async def _prepared_on(watch: CatalogWatch) -> dict[str, int]:
    upstream = watch._upstream
    assert upstream is not None
    rows = await session_rows(
        upstream, "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements"
    )
    assert rows is not None
    return {str(name): int(generic or 0) + int(custom or 0) for name, generic, custom in rows}


def test_the_watchs_questions_are_prepared_once_and_run_again(database: str) -> None:
    async def go() -> tuple[list[Facts | None], dict[str, int], int]:
        watch = CatalogWatch("127.0.0.1", 5432, None)
        try:
            answers = await _asked(watch, database, 4)
            upstream = watch._upstream
            plans = await _prepared_on(watch)
            # the same connection all along: no question failed (a failure closes it)
            return answers, plans, id(upstream)
        finally:
            await watch.stop()

    answers, plans, _ = asyncio.run(go())
    assert all(isinstance(a, Facts) for a in answers), answers
    assert {a.mark for a in answers if a} == {answers[0].mark}  # type: ignore[union-attr]
    # each prepared once on the connection, and run by every question that asked it
    assert set(NAMES) <= set(plans), plans
    assert plans["portcullis_catalog_snapshot"] >= 4, plans
    assert plans["portcullis_catalog_mark"] >= 3, plans


def test_a_catalogue_change_is_seen_through_the_prepared_questions(database: str) -> None:
    async def go() -> tuple[Facts | None, Facts | None]:
        watch = CatalogWatch("127.0.0.1", 5432, None)
        try:
            before = (await _asked(watch, database, 2))[-1]
            await asyncio.to_thread(
                _admin,
                "CREATE FUNCTION pg_catalog.lower(integer) RETURNS int LANGUAGE sql AS 'SELECT 1'",
                database,
            )
            after = await watch.fresh(_credentials(database))
            return before, after
        finally:
            await watch.stop()
            _admin("DROP FUNCTION IF EXISTS pg_catalog.lower(integer)", database)

    before, after = asyncio.run(go())
    assert before is not None and after is not None
    assert after.mark != before.mark
    assert "lower" in after.shadowed and "lower" not in before.shadowed


def test_behind_a_transaction_pooler_the_questions_are_not_prepared(database: str) -> None:
    async def go() -> tuple[list[Facts | None], dict[str, int]]:
        watch = CatalogWatch("127.0.0.1", 5432, None, prepared=False)
        try:
            answers = await _asked(watch, database, 2)
            return answers, await _prepared_on(watch)
        finally:
            await watch.stop()

    answers, plans = asyncio.run(go())
    assert all(isinstance(a, Facts) for a in answers), answers
    assert not set(NAMES) & set(plans), plans


def test_a_server_that_keeps_no_prepared_statement_is_asked_plainly(database: str) -> None:
    """Where a prepared question is refused (a transaction pooler nobody declared, whose
    next server connection never saw the Parse: here the statement dropped under the
    watch), the same question goes as a simple Query, answered as before."""

    async def go() -> tuple[Facts | None, Facts | None, bool, dict[str, int]]:
        watch = CatalogWatch("127.0.0.1", 5432, None)
        try:
            first = (await _asked(watch, database, 1))[0]
            upstream = watch._upstream
            assert upstream is not None
            assert await session_rows(upstream, "DEALLOCATE ALL") is not None
            second = (await _asked(watch, database, 1))[0]
            same = watch._upstream is upstream
            return first, second, same, await _prepared_on(watch)
        finally:
            await watch.stop()

    first, second, same, plans = asyncio.run(go())
    assert isinstance(first, Facts) and isinstance(second, Facts)
    assert second.mark == first.mark
    assert same  # answered on the same connection: no question failed
    assert not set(NAMES) & set(plans), plans
