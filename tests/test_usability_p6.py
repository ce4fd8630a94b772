"""Usability probe 6 (helper pgusable3): pgjdbc's getIndexInfo answers a READER as the
database does, through the real PDP on the shipped policy, the real Postgres proxy and
PostgreSQL, and an index whose text holds a card number or an SSN does not give it back.

getIndexInfo's COLUMN_NAME (`pg_get_indexdef(ci_oid, ordinal_position, false)`) and
ASC_OR_DESC (a CASE over `indoption[ordinal_position - 1] & 1`) came back [REDACTED]:
ordinal_position is `(information_schema._pg_expandarray(i.indkey)).n`, and lineage read a
field taken out of a row (`(row).n`) as a column of the database's own tables whatever the
row was, so what pg_get_indexdef and `&` made of it counted as changed text. A field of a
row made of the catalogs' values alone is now the catalogs' (pdp/sql/lineage.py); a row
holding any other column's value stays the database's.

What pg_get_indexdef prints stays what the catalogs hold: an expression index's or a
partial index's text may hold a constant the owner wrote (`(ssn = '123-45-6789')`), which
the value detectors read there as they read pg_indexes.indexdef.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from test_usability_p2 import PGJDBC, exec_params, pg  # noqa: F401  (fixture)
from usability_stacks import owner
from usability_stacks import reader_dsn as dsn

pytestmark = pytest.mark.integration

INDEX_INFO = next(sql for item, sql, _ in PGJDBC if item == "getIndexInfo")

# the owner's indexes over sensitive columns, each text holding a value the detectors know
HOSTILE_INDEXES = """
CREATE TABLE pgusable3_people (id int PRIMARY KEY, ssn text, card_number text, note text);
CREATE INDEX pgusable3_ssn_is ON pgusable3_people ((ssn = '123-45-6789'));
CREATE INDEX pgusable3_card_is ON pgusable3_people ((card_number = '4111111111111111'));
CREATE INDEX pgusable3_note_with ON pgusable3_people ((note || ' 5500 0000 0000 0004'));
CREATE INDEX pgusable3_partial ON pgusable3_people (id DESC) WHERE ssn <> '234-56-7890';
CREATE INDEX pgusable3_plain ON pgusable3_people (note, id DESC);
"""
SECRETS = ["123-45-6789", "4111111111111111", "5500 0000 0000 0004", "234-56-7890"]


@pytest.fixture(scope="module")
def sessions(pg: dict[str, Any]) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:  # noqa: F811
    reader = psycopg.connect(dsn(pg), autocommit=True)
    direct = owner(pg["role"], pg["database"])
    direct.execute(HOSTILE_INDEXES)
    yield reader, direct
    reader.close()
    direct.close()


@pytest.mark.parametrize("table", ["orders", "order_items", "customers"])
def test_pgjdbc_index_info_as_the_database_does(
    sessions: tuple[psycopg.Connection, psycopg.Connection], table: str
) -> None:
    reader, direct = sessions
    got = exec_params(reader, INDEX_INFO, ("public", table))
    assert got == exec_params(direct, INDEX_INFO, ("public", table))
    assert got[1] and all(b"REDACTED" not in (v or b"") for row in got[1] for v in row)


def test_an_index_text_holding_a_card_or_ssn_is_not_read_back(
    sessions: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    reader, direct = sessions
    names, got = exec_params(reader, INDEX_INFO, ("public", "pgusable3_people"))
    _, expected = exec_params(direct, INDEX_INFO, ("public", "pgusable3_people"))
    assert len(got) == len(expected) == 7
    # the direct answer has them (the test's premise), the reader's does not
    assert all(any(s.encode() in (v or b"") for row in expected for v in row) for s in SECRETS)
    assert not any(s.encode() in (v or b"") for s in SECRETS for row in got for v in row)
    # plain index columns come back as they are, with their order
    column, order = names.index(b"COLUMN_NAME"), names.index(b"ASC_OR_DESC")
    plain = [r for r in got if r[names.index(b"INDEX_NAME")] == b"pgusable3_plain"]
    assert [(r[column], r[order]) for r in plain] == [(b"note", b"A"), (b"id", b"D")]


# a field of a row holding a table's value is that table's: computed upon, masked whole
# (or the statement refused)
FIELD_OF_A_ROW = [
    "SELECT reverse((information_schema._pg_expandarray(ARRAY[c.card_number])).x) FROM customers c",
    "SELECT reverse((information_schema._pg_expandarray(ARRAY[c.card_number])).x) "
    "FROM pg_catalog.pg_index i, customers c",
    "SELECT reverse((ROW(c.card_number, 1)).f1) FROM customers c",
    "SELECT reverse((s.x).x) FROM (SELECT information_schema._pg_expandarray("
    "ARRAY[card_number]) x FROM customers) s",
    "SELECT translate((information_schema._pg_expandarray((SELECT array_agg(card_number) "
    "FROM customers))).x, '0123456789', 'abcdefghij')",
]


@pytest.mark.parametrize("sql", FIELD_OF_A_ROW)
def test_a_field_of_a_row_holding_a_column_stays_that_columns(
    sessions: tuple[psycopg.Connection, psycopg.Connection], sql: str
) -> None:
    reader, direct = sessions
    try:
        rows = reader.execute(sql).fetchall()
    except psycopg.errors.InsufficientPrivilege as refused:
        assert "denied by policy" in str(refused)
        return
    assert len(rows) == len(direct.execute(sql).fetchall()) > 0
    assert all(v in (None, "[REDACTED]") for row in rows for v in row), rows
