"""Usability probe 8 (helper pgattack13): a READER's names joined after a case change or
trim answer again (masked whole, as any computed text is), through the real PDP on the
shipped policy, the real Postgres proxy and PostgreSQL, with psycopg and asyncpg.

Since p7, stored columns as they are and short constants may be joined (`first_name ||
' ' || last_name`), but `lower(first_name) || ' ' || lower(last_name)`, `concat(upper(city),
', ', country)` or `trim(a) || ' ' || trim(b)` were refused as a value of the reader's
sizing beside a column (a function's result). pdp/sql/lineage.py now lets a joined operand
be a column (or a joined value) changed by lower, upper, initcap or a one-argument trim:
functions of it alone that never fail, with no argument a reader could size, cut or pick a
character class with; the joined value stays within a few times the stored values' sizes.

What stays refused: such a function over anything else than a column or a joined value
(`lower(repeat('x', ...))`, `lower(substr(note, 6, 1))`, a value made in FROM), a trim
naming its characters (`btrim(note, '0123456789')`: a character class of the reader's),
another schema's `lower`, and a long constant inside one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest
from test_usability_p2 import pg  # noqa: F401  (fixture)
from usability_stacks import reader_dsn as dsn
from usability_stacks import table_fixtures

pytestmark = pytest.mark.integration

PEOPLE = """
CREATE TABLE pgattack13_people (
  id int PRIMARY KEY, first_name text, last_name text, city varchar(40), country text,
  note text
);
INSERT INTO pgattack13_people VALUES
  (1, 'Ada', 'Lovelace', 'London', 'UK', 'card 4111 1111 1111 1111 on file'),
  (2, ' Alan ', NULL, 'Wilmslow', 'UK', 'prefers phone');
"""
SECRET = b"4111 1111"
MASKED = "[REDACTED]"
DENIED = "denied by policy"

ANSWERED = [
    "SELECT id, lower(first_name) || ' ' || lower(last_name) FROM pgattack13_people ORDER BY id",
    "SELECT id, concat(upper(city), ', ', initcap(country)) FROM pgattack13_people ORDER BY id",
    "SELECT id, trim(first_name) || ' ' || trim(last_name) FROM pgattack13_people ORDER BY id",
    "SELECT id, concat_ws(' ', lower(first_name), lower(note)) FROM pgattack13_people ORDER BY id",
    "SELECT id, lower(first_name || last_name) || note FROM pgattack13_people ORDER BY id",
    "SELECT id, pg_catalog.upper(coalesce(first_name, '')) || ':' || rtrim(city)"
    " FROM pgattack13_people ORDER BY id",
]

LONG = "z" * 300
REFUSED = {
    "a_grown_value_lowered": "SELECT length(lower(repeat('x', 1073741800)) || note)"
    " FROM pgattack13_people",
    "a_part_lowered": "SELECT lower(substr(note, 6, 1)) || note FROM pgattack13_people",
    "a_value_made_in_from": "SELECT lower(x) || note FROM pgattack13_people, repeat('x', 10) x",
    "a_trim_naming_characters": "SELECT length(btrim(note, '0123456789') || note)"
    " FROM pgattack13_people",
    "a_translated_value": "SELECT lower(translate(note, '0123', '')) || note"
    " FROM pgattack13_people",
    "a_long_constant_lowered": f"SELECT length(lower('{LONG}') || note) FROM pgattack13_people",
    "joined_then_parsed": "SELECT (lower(first_name) || lower(last_name))::int"
    " FROM pgattack13_people",
}


people, reader = table_fixtures(PEOPLE, "pgattack13_people")


@pytest.mark.parametrize("sql", ANSWERED, ids=[str(i) for i in range(len(ANSWERED))])
def test_names_changed_then_joined_answer_masked_whole(
    reader: psycopg.Connection, sql: str
) -> None:
    for prepare in (False, True):  # simple and extended protocol
        rows = reader.execute(sql, prepare=prepare).fetchall()
        assert rows == [(1, MASKED), (2, MASKED)], (sql, rows)


def test_names_changed_then_joined_answer_asyncpg(people: dict[str, Any]) -> None:
    async def run() -> list[list[tuple[Any, ...]]]:
        conn = await asyncpg.connect(dsn(people))
        try:
            return [[tuple(r) for r in await conn.fetch(sql)] for sql in ANSWERED]
        finally:
            await conn.close()

    for sql, rows in zip(ANSWERED, asyncio.run(run()), strict=True):
        assert not any(SECRET in str(v).encode() for row in rows for v in row), rows
        assert rows == [(1, MASKED), (2, MASKED)], (sql, rows)


@pytest.mark.parametrize("sql", list(REFUSED.values()), ids=list(REFUSED))
def test_what_a_reader_sizes_cuts_or_picks_stays_refused(
    reader: psycopg.Connection, sql: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=DENIED) as refused:
        reader.execute(sql)
    assert "can fail for some of its values" in str(refused.value)


def test_another_schemas_lower_stays_refused(reader: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=DENIED):
        reader.execute("SELECT public.lower(first_name) || note FROM pgattack13_people")
