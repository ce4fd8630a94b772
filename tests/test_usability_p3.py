"""Usability probe 3 (helper pgusable2): pgjdbc's key and index lists (getPrimaryKeys,
getIndexInfo, getBestRowIdentifier: what Metabase, DBeaver and DataGrip show of a table's
keys), which call information_schema._pg_expandarray, answer a READER through the real PDP
on the shipped policy, the real Postgres proxy and PostgreSQL as the database does; and
the helper stays refused where it could carry what a mask hides, and in a database that
changed it since initdb or defines a function of its name.

The texts and their protocol are pgjdbc 42.7.13's, as tests/test_usability_p2.py sends
them (extended protocol, varchar parameters bound as text)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from test_usability_p2 import PGJDBC, dsn, exec_params, pg  # noqa: F401  (pg: the fixture)
from usability_stacks import owner

pytestmark = pytest.mark.integration

KEYS = [q for q in PGJDBC if q[0] in ("getPrimaryKeys", "getIndexInfo", "getBestRowIdentifier")]

# the columns of getIndexInfo the gateway masks whole (computed from catalogue columns by
# CASE and pg_get_indexdef: read as possibly sensitive text): compared by shape
MASKED_WHOLE = {"getIndexInfo": {"ASC_OR_DESC", "COLUMN_NAME"}}


@pytest.fixture(scope="module")
def sessions(pg: dict[str, Any]) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:  # noqa: F811
    reader = psycopg.connect(dsn(pg), autocommit=True)
    direct = owner(pg["role"], pg["database"])
    yield reader, direct
    reader.close()
    direct.close()


@pytest.mark.parametrize(("item", "sql", "params"), KEYS, ids=[q[0] for q in KEYS])
def test_pgjdbc_key_and_index_lists_answer_as_the_database_does(
    sessions: tuple[psycopg.Connection, psycopg.Connection],
    item: str,
    sql: str,
    params: tuple[str, ...],
) -> None:
    reader, direct = sessions
    (names, got), (expected_names, expected) = (
        exec_params(reader, sql, params),
        exec_params(direct, sql, params),
    )
    assert names == expected_names and len(got) == len(expected) > 0
    kept = [i for i, n in enumerate(names) if n.decode() not in MASKED_WHOLE.get(item, ())]
    assert [[r[i] for i in kept] for r in got] == [[r[i] for i in kept] for r in expected]


# what a mask hides, carried through the helper: refused
CARRYING = [
    "SELECT (information_schema._pg_expandarray(ARRAY[email])).x FROM customers",
    "SELECT x FROM customers, information_schema._pg_expandarray(ARRAY[email]) t",
    "SELECT id FROM customers WHERE (information_schema._pg_expandarray(ARRAY[ssn])).x LIKE '1%'",
    "SELECT count(*) FROM customers, "
    "information_schema._pg_expandarray(string_to_array(email, '@')) t",
    # unqualified or in pg_catalog: the server looks it up over the search path
    "SELECT _pg_expandarray(ARRAY[1])",
    "SELECT pg_catalog._pg_expandarray(ARRAY[1])",
    # information_schema's other functions are not reviewed
    "SELECT information_schema._pg_char_max_length(25, 5)",
]


@pytest.mark.parametrize("sql", CARRYING)
def test_the_helper_carrying_a_masked_value_or_called_otherwise_is_refused(
    sessions: tuple[psycopg.Connection, psycopg.Connection], sql: str
) -> None:
    reader, _ = sessions
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
        reader.execute(sql)


# Last in the module: these change the database's information_schema.
def test_refused_in_a_database_that_defines_a_function_of_its_name(
    pg: dict[str, Any],  # noqa: F811
) -> None:
    sql, params = KEYS[0][1], KEYS[0][2]
    with owner(pg["role"], pg["database"]) as direct:
        direct.execute(
            "CREATE FUNCTION public._pg_expandarray(int2[]) RETURNS int LANGUAGE sql AS 'SELECT 1'"
        )
    try:
        with (
            psycopg.connect(dsn(pg), autocommit=True) as reader,
            pytest.raises(AssertionError, match="denied by policy"),
        ):
            exec_params(reader, sql, params)
    finally:
        with owner(pg["role"], pg["database"]) as direct:
            direct.execute("DROP FUNCTION public._pg_expandarray(int2[])")


def test_refused_in_a_database_that_changed_it_since_initdb(pg: dict[str, Any]) -> None:  # noqa: F811
    sql, params = KEYS[0][1], KEYS[0][2]
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{pg['database']}") as su:
        su.execute(
            "CREATE OR REPLACE FUNCTION information_schema._pg_expandarray(anyarray, OUT x "
            "anyelement, OUT n integer) RETURNS SETOF record LANGUAGE sql IMMUTABLE STRICT "
            "AS 'SELECT $1[s], s FROM pg_catalog.generate_series(1, 1) g(s)'"
        )
        su.commit()
    with (
        psycopg.connect(dsn(pg), autocommit=True) as reader,
        pytest.raises(AssertionError, match="denied by policy"),
    ):
        exec_params(reader, sql, params)
