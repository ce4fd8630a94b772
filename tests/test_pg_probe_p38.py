"""Probe P38 (helper pgattack14): a row filter with an `in` list against the planner's
order of conditions, on the machine's PostgreSQL.

The row filter (pdp/sql/rowfilter.py) put its predicate first in the WHERE of a SELECT
reading the filtered table alone, or in a subselect the planner pulls up. But the planner
runs a scan's conditions cheapest first, and `tenant IN (eight tenants)` costs four
comparisons (n/2) where a reader's `secret::int = 7` costs three: the cast ran on the rows
the filter hides, and its error quoted their value (`invalid input syntax for type
integer: "globex-secret"`), whether or not the row would ever have been returned. The
same for pg_settings filtered by name (a list of eight: `setting::int > 0` failed on
'off'); the readable list is hashed (nine or more values cost a hash and a comparison),
which a one-function condition would tie, the planner's tie-break alone keeping it
second. A filter with an `in` list now reads its table in
a subselect kept apart (`OFFSET 0`: never pulled up, no condition pushed into it), so the
statement's conditions, outputs and functions meet only the rows it admits. An `=` filter
keeps its plans (one comparison, first among equals; a tenant's index).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pdp.sql.rowfilter import rewrite
from portcullis.verdict import RowCondition

pytestmark = pytest.mark.integration

TENANTS = ("acme", "initech", "umbrella", "hooli", "wonka", "stark", "tyrell", "cyberdyne")
IN_FILTER = {"p38_accounts": [RowCondition("tenant", "in", TENANTS)]}


@pytest.fixture(scope="module")
def db() -> Iterator[psycopg.Connection]:
    from tests.conftest import PG_ADMIN_DSN

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS p38_accounts, p38_other;"
            " CREATE TABLE p38_accounts (id int, tenant text, secret text);"
            " INSERT INTO p38_accounts VALUES (1, 'acme', '7'), (2, 'globex', 'globex-secret');"
            " CREATE TABLE p38_other (id int); INSERT INTO p38_other VALUES (1)"
        )
        yield conn
        conn.execute("DROP TABLE p38_accounts, p38_other")


ORACLES = {
    "alone": "SELECT id FROM p38_accounts WHERE secret::int = 7",
    "aliased": "SELECT a.id FROM p38_accounts a WHERE a.secret::int = 7",
    "joined": "SELECT a.id FROM p38_accounts a, p38_other o WHERE a.secret::int = o.id + 6",
    "in_a_cte": "WITH c AS (SELECT * FROM p38_accounts) SELECT id FROM c WHERE secret::int = 7",
    "in_a_subquery": "SELECT id FROM (SELECT * FROM p38_accounts) s WHERE secret::int = 7",
}


def test_unfiltered_the_cast_fails_on_the_hidden_row(db: psycopg.Connection) -> None:
    """The control: the hidden row's value is what the cast's error would quote."""
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="globex-secret"):
        db.execute(ORACLES["alone"]).fetchall()


@pytest.mark.parametrize("sql", list(ORACLES.values()), ids=list(ORACLES))
def test_a_cheaper_condition_never_meets_the_rows_an_in_filter_hides(
    db: psycopg.Connection, sql: str
) -> None:
    done = rewrite(sql, IN_FILTER)
    assert done.sql and not done.denied, done
    assert db.execute(done.sql).fetchall() == [(1,)]


def test_an_equality_filter_keeps_its_place_in_the_where(db: psycopg.Connection) -> None:
    """Beside plain comparisons only; a condition that can fail, as the cast does, reads
    the table fenced for an `=` filter too (test_pg_probe_p41)."""
    acme = {"p38_accounts": [RowCondition("tenant", "=", "acme")]}
    done = rewrite("SELECT id FROM p38_accounts WHERE id IN (1, 2)", acme)
    assert done.sql.startswith("SELECT id FROM p38_accounts WHERE p38_accounts.tenant = 'acme'")
    assert db.execute(done.sql).fetchall() == [(1,)]
    fenced = rewrite(ORACLES["alone"], acme)
    assert "OFFSET 0" in fenced.sql
    assert db.execute(fenced.sql).fetchall() == [(1,)]


def test_settings_outside_the_list_are_never_read_by_a_reader_s_condition(
    db: psycopg.Connection,
) -> None:
    """pg_settings filtered by name (settings whose values are numbers): a cast of every
    other setting's value (data_directory's, '/var/lib/...') never runs."""
    numbers = ("max_index_keys", "max_function_args", "max_identifier_length", "block_size",
               "server_version_num", "wal_block_size", "max_connections", "port")  # fmt: skip
    readable = RowCondition("name", "in", numbers)
    sql = "SELECT count(*) FROM pg_catalog.pg_settings s WHERE s.setting::int > 0"
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.execute(sql).fetchall()
    done = rewrite(sql, {"pg_settings": [readable]})
    assert db.execute(done.sql).fetchone() == (len(numbers),)
