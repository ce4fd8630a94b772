"""Usability probe 7 (helper pgusable5): a READER's names and labels joined from free-text
columns answer again (masked whole, as any computed text is), through the real PDP on the
shipped policy, the real Postgres proxy and PostgreSQL, with psycopg and asyncpg.

Since free text going into a computation that can fail is refused to readers (p37), a
column's value joined beside another value was refused too: `first_name || ' ' ||
last_name`, `concat_ws(', ', city, country)`, `id || ': ' || note` (lineage counted any
join of two values as one whose size the reader may choose: one of them could be
`repeat('x', 1073741819)`). pdp/sql/lineage.py now lets stored columns as they are and
short constants written in the statement be joined (`||`, concat, concat_ws with a constant
separator, COALESCE, `::text`), at most 16 column operands and 32 in all, 256 characters
of constants: the value is at most the stored values' sizes, so it can reach 1 GB only for
stored values over 64 MB and then answers their size, never a part, a position or a
character class the reader picks.

What stays refused (the attacker's variants, each asked as the p37 oracles are): a value
the reader sizes beside a column (repeat, a value made in FROM or VALUES, a parameter, a
sub-query's joined value joined again, recursion, string_agg over rows, too many copies,
any statement with a FROM function, whose columns' bare names the PDP reads as a table's),
a function's result beside a column (translate(substr(...))), a cast that cuts or pads,
a joined value parsed (`::int`, `::jsonb`), a column separator, and a long constant:
`words || '<1 MB of lexemes> 4111'::tsvector` failed ("string is too long for tsvector")
by whether 4111 was among the masked card's words, which merge, for any tsvector over
about 600 bytes, with one column beside one constant.
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
CREATE TABLE pgusable5_people (
  id int PRIMARY KEY, first_name text, last_name text, city varchar(40), country text,
  note text, words tsvector
);
INSERT INTO pgusable5_people VALUES
  (1, 'Ada', 'Lovelace', 'London', 'UK', 'card 4111 1111 1111 1111 on file',
   to_tsvector('simple', 'card 4111 1111 1111 1111')),
  (2, 'Alan', NULL, 'Wilmslow', 'UK', 'prefers phone', to_tsvector('simple', 'phone'));
"""
SECRET = b"4111 1111"
MASKED = "[REDACTED]"
DENIED = "denied by policy"

# (query, the rows a reader gets): ids as they are, what is joined from text masked whole
ANSWERED = [
    ("SELECT id, first_name || ' ' || last_name AS full_name FROM pgusable5_people ORDER BY id",
     [(1, MASKED), (2, MASKED)]),  # a NULL masked too
    ("SELECT id, concat(first_name, ' ', last_name) FROM pgusable5_people ORDER BY id",
     [(1, MASKED), (2, MASKED)]),
    ("SELECT id, concat_ws(', ', city, country) AS place FROM pgusable5_people ORDER BY id",
     [(1, MASKED), (2, MASKED)]),
    ("SELECT id, coalesce(first_name, '') || ' ' || coalesce(last_name, '')"
     " FROM pgusable5_people ORDER BY id", [(1, MASKED), (2, MASKED)]),
    ("SELECT id, id || ': ' || note FROM pgusable5_people ORDER BY id",
     [(1, MASKED), (2, MASKED)]),
    ("SELECT id, id::text || ' ' || first_name || ' <' || city || '>' FROM pgusable5_people"
     " ORDER BY id", [(1, MASKED), (2, MASKED)]),
    ("WITH p AS (SELECT id, first_name, last_name FROM pgusable5_people)"
     " SELECT id, last_name || ', ' || first_name FROM p ORDER BY id", [(1, MASKED), (2, MASKED)]),
    ("SELECT p.id, p.first_name || ' ' || q.first_name FROM pgusable5_people p"
     " JOIN pgusable5_people q ON q.id = p.id ORDER BY p.id", [(1, MASKED), (2, MASKED)]),
    # what never fails on any text, as before
    ("SELECT id, lower(note), coalesce(note, ''), left(note, 50) || '...'"
     " FROM pgusable5_people ORDER BY id",
     [(1, MASKED, "card **** **** **** 1111 on file", MASKED),
      (2, MASKED, "prefers phone", MASKED)]),
]  # fmt: skip

LONG = "z" * 300
# each sizes, cuts, parses or repeats what is joined as the reader likes: refused
REFUSED = {
    "beside_repeat": "SELECT length(first_name || ' ' || last_name || repeat('x', 1073741819))"
    " FROM pgusable5_people WHERE id = 1",
    "beside_a_value_made_in_from": "SELECT length(note || x) FROM pgusable5_people,"
    " repeat('x', 1073741800) AS x WHERE id = 1",
    # a bare name of a FROM function's column reads as a table's to the PDP: any statement
    # holding one joins nothing
    "beside_a_record_column": "SELECT length(note || a) FROM pgusable5_people,"
    " json_to_record(json_build_object('a', repeat('x', 1073741800))) AS x(a text)"
    " WHERE id = 1",
    "beside_a_function_output": "SELECT length(note || value) FROM pgusable5_people,"
    " jsonb_each_text(jsonb_build_object('k', repeat('x', 1073741800))) WHERE id = 1",
    "beside_a_sub_query_of_a_function": "SELECT length(note || a) FROM pgusable5_people,"
    " (SELECT a FROM json_to_record(json_build_object('a', repeat('x', 1073741800)))"
    " AS x(a text)) s WHERE id = 1",
    "beside_values_of_values": "SELECT length(concat(note, ' ', x)) FROM pgusable5_people,"
    " (VALUES (repeat('x', 1073741800))) v(x) WHERE id = 1",
    "joined_again_from_a_sub_query": "SELECT length(x || x || x) FROM (SELECT note || ' ' ||"
    " note AS x FROM pgusable5_people WHERE id = 1) s",
    "recursion": "WITH RECURSIVE t(x, n) AS (SELECT note, 1 FROM pgusable5_people WHERE id = 1"
    " UNION ALL SELECT x || x, n + 1 FROM t WHERE n < 30) SELECT max(length(x)) FROM t",
    "too_many_copies": "SELECT length(" + " || ".join(["note"] * 17) + ") FROM pgusable5_people",
    "string_agg_over_rows": "SELECT length(string_agg(note, ',')) FROM pgusable5_people,"
    " generate_series(1, 3)",
    "a_part_beside_a_column": "SELECT length(translate(substr(note, 6, 1), '0123', '') || note)"
    " FROM pgusable5_people WHERE id = 1",
    "padded_beside_a_column": "SELECT length(note::char(100) || note) FROM pgusable5_people",
    "joined_then_parsed": "SELECT (first_name || last_name)::int FROM pgusable5_people",
    "joined_then_parsed_as_json": "SELECT ('[' || note || ',' || first_name || ']')::jsonb"
    " FROM pgusable5_people",
    "joined_then_divided": "SELECT 1/(length(first_name || last_name) - 11) FROM pgusable5_people",
    "a_column_separator": "SELECT concat_ws(note, first_name, last_name) FROM pgusable5_people",
    "a_long_constant": f"SELECT length(first_name || '{LONG}' || last_name) FROM pgusable5_people",
    # one column beside one constant too: the lexemes merge, so the size tells a word
    "a_long_tsvector_constant": f"SELECT length(words || '{LONG} 4111'::tsvector)"
    " FROM pgusable5_people",
    "a_long_constant_beside_one_column": f"SELECT length(concat(note, '{LONG}'))"
    " FROM pgusable5_people",
}


people, reader = table_fixtures(PEOPLE, "pgusable5_people")


def no_secret(rows: list[tuple[Any, ...]]) -> None:
    assert not any(SECRET in str(v).encode() for row in rows for v in row), rows


@pytest.mark.parametrize("sql,expected", ANSWERED, ids=[str(i) for i in range(len(ANSWERED))])
def test_joined_names_answer_psycopg_masked_whole(
    reader: psycopg.Connection, sql: str, expected: list[tuple[Any, ...]]
) -> None:
    for prepare in (False, True):  # simple and extended protocol
        rows = reader.execute(sql, prepare=prepare).fetchall()
        no_secret(rows)
        assert rows == expected, (sql, rows)


def test_joined_names_answer_asyncpg_masked_whole(people: dict[str, Any]) -> None:
    async def run() -> list[list[tuple[Any, ...]]]:
        conn = await asyncpg.connect(dsn(people))
        try:
            return [[tuple(r) for r in await conn.fetch(sql)] for sql, _ in ANSWERED]
        finally:
            await conn.close()

    got = asyncio.run(run())
    for (sql, expected), rows in zip(ANSWERED, got, strict=True):
        no_secret(rows)
        assert rows == expected, (sql, rows)


@pytest.mark.parametrize("sql", list(REFUSED.values()), ids=list(REFUSED))
def test_what_a_reader_sizes_cuts_or_parses_stays_refused(
    reader: psycopg.Connection, sql: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=DENIED) as refused:
        reader.execute(sql)
    assert "can fail for some of its values" in str(refused.value)


def test_a_parameter_beside_a_column_stays_refused(
    reader: psycopg.Connection, people: dict[str, Any]
) -> None:
    sql = "SELECT length(note || $1) FROM pgusable5_people WHERE id = 1"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=DENIED):
        reader.execute(sql.replace("$1", "%s"), ("x",), prepare=True)

    async def run() -> None:
        conn = await asyncpg.connect(dsn(people))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=DENIED):
                await conn.fetch(sql, "x")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=DENIED):
                await conn.fetch(REFUSED["beside_repeat"])
        finally:
            await conn.close()

    asyncio.run(run())
