"""Probe P7's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column, Ada's note
holds a card number only the value detectors find).

- Attribute notation: `c.f` (and `(c).f`, `schema.table.f`) names the column f of c, or,
  when c has no such column, calls f(c) on the whole row. The classifier read `c.concat`,
  `c.row_to_json`, `c.json_agg`, `(c).to_jsonb` as a plain column of that name, so a reader
  (or a dba outside pii-readers) read every column of the row in clear (the password
  among them), and `WHERE c.concat LIKE '%hunter2-a%'` asked questions of it; a user
  function taking a row was called by a reader without the function allow-list seeing
  it. Now the classifier reports every such name (attribute_names) and the policy denies
  one the server could call as a function: built-ins from pg_proc
  (data.portcullis.postgres.row_functions), and the database's own (the proxy reads them
  at start-up: row_functions).
- A function the database defines, called without its schema: lineage read `SELECT
  own_pw()` (or `SELECT x FROM own_pw() x`, `WHERE own_pw() LIKE 'hunter2%'`) as
  pg_catalog's function of that name, whose result derives from its arguments alone, so a
  dba outside pii-readers read the password it returns in clear (`public.own_pw()` was
  already masked whole). The proxy now reads the names of the database's functions at
  start-up (user_functions); such a call without its schema, or as pg_catalog's, is denied
  outside pii-readers.
- The same for an operator the database defines (`SELECT 1 ### 1`, whose function returns
  the password; `OPERATOR(public.###)`): lineage reads an operator's result as derived
  from its operands alone. Now denied outside pii-readers, as it was to readers.
- A table's (or a join's) alias column list renames its columns by position: `FROM
  customers AS t(i, n, e, s, no, pw) WHERE t.e LIKE 'a%'` (or `ORDER BY pw`,
  `coalesce(t.pw, '')`) was read as conditions on and outputs of columns named e and pw,
  none sensitive, so a reader and a masked dba asked questions of the e-mail address and
  read the password through a computed output. Lineage (pdp/sql/lineage.py) now reads each
  such name as possibly any column of the table, as it reads names over `*`: an output is
  resolved by the proxy, a condition or computation over it is one over the whole row.
- A cast the database made with a function (`CREATE CAST (integer AS text) WITH FUNCTION
  public.int_pw(integer)`) ran for a masked dba wherever its types met: `SELECT 1::text`
  gave the password. Every statement of a privileged identity outside pii-readers is now
  denied while such a cast is not in postgres.reviewed_casts, as a reader's already was.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, probe_client

pytestmark = pytest.mark.integration

MASKED = (("readonly",), ("dba",))


arena = arena_fixture()
client = probe_client("p7")


# --- attribute notation: c.f is f(c) when c has no column f ---------------------------

ROW_CALLS = [
    "SELECT c.concat FROM customers c",
    "SELECT c.row_to_json FROM customers c",
    "SELECT (c).to_jsonb FROM customers c",
    "SELECT customers.quote_literal FROM customers",
    "SELECT public.customers.record_out FROM customers",
    "SELECT c.json_agg FROM customers c",
    "SELECT x FROM (SELECT c.to_json AS x FROM customers c) s",
    "SELECT id FROM customers c WHERE c.concat LIKE '%hunter2-a%'",
    "SELECT (SELECT c FROM customers c WHERE id = 1).row_to_json",
]


@pytest.mark.parametrize("groups", MASKED)
@pytest.mark.parametrize("sql", ROW_CALLS)
def test_attribute_notation_calling_a_function_on_a_row_is_refused(
    arena, groups: tuple[str, ...], sql: str
) -> None:
    c = client(arena, groups)
    try:
        answer = c.query(sql)
        assert_no_secret(answer)
        assert answer.refused, (sql, answer.rows)
    finally:
        c.close()


def test_attribute_notation_through_drivers_is_refused(arena) -> None:
    """The same through psycopg (extended protocol, binary results, a bound parameter) and
    asyncpg (prepared, binary): the PDP classifies the Parse's text as it does a Query's."""
    import asyncio

    import asyncpg
    import psycopg

    tok = arena.token("p7-driver")
    with (
        psycopg.connect(arena.dsn(tok), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(
            "SELECT c.row_to_json FROM customers c WHERE id = %s", (1,), binary=True
        ).fetchall()

    async def with_asyncpg() -> None:
        conn = await asyncpg.connect(arena.dsn(tok))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                stmt = await conn.prepare("SELECT (c).to_jsonb FROM customers c WHERE id = $1")
                await stmt.fetch(1)
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())


def test_attribute_notation_of_real_columns_still_runs(arena) -> None:
    c = client(arena, ("readonly",))
    try:
        answer = c.query("SELECT c.id, c.name, (c).note FROM customers c ORDER BY c.id")
        assert not answer.refused, answer.errors
        assert [r[:2] for r in answer.rows] == [[b"1", b"Ada"], [b"2", b"Bob"]]
    finally:
        c.close()


@pytest.fixture
def leak(arena):
    """A function of the database's own on a customers row, read by attribute notation."""
    with arena.admin() as admin:
        admin.execute(
            "CREATE FUNCTION public.leak(c customers) RETURNS text LANGUAGE sql"
            " AS $$ SELECT c.password $$"
        )
    try:
        yield "leak"
    finally:
        with arena.admin() as admin:
            admin.execute("DROP FUNCTION public.leak(customers)")


@pytest.mark.parametrize("groups", [*MASKED, ("readonly", "pii-readers")])
def test_the_databases_function_on_a_row_by_attribute_notation_is_refused(
    arena, leak: str, groups: tuple[str, ...]
) -> None:
    c = client(arena, groups)
    try:
        for sql in (f"SELECT c.{leak} FROM customers c", f"SELECT (c).{leak} FROM customers c"):
            answer = c.query(sql)
            assert answer.refused, (sql, answer.rows)
            assert b"hunter2" not in answer.raw
    finally:
        c.close()


def test_an_unmasked_dba_calls_the_databases_function_on_a_row(arena, leak: str) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query(f"SELECT c.{leak} FROM customers c WHERE id = 1")
        assert answer.rows == [[b"hunter2-ada"]], answer.errors
    finally:
        c.close()


def test_the_row_functions_listed_are_the_servers(arena) -> None:
    """rego/data.json's postgres.row_functions is what ROW_FUNCTIONS_QUERY reads from the
    server the tests run on: regenerated with reader_functions.row_functions_from_server."""
    import json
    from pathlib import Path

    from pdp.sql.reader_functions import ROW_FUNCTIONS_QUERY

    data = json.loads((Path(__file__).resolve().parent.parent / "rego/data.json").read_text())
    with arena.admin() as admin:
        names = [r[0] for r in admin.execute(ROW_FUNCTIONS_QUERY).fetchall()]
    assert data["portcullis"]["postgres"]["row_functions"] == dict.fromkeys(names, True)


# --- the database's own functions, called without their schema ------------------------


@pytest.fixture
def own_pw(arena):
    with arena.admin() as admin:
        admin.execute(
            "CREATE FUNCTION public.own_pw() RETURNS text LANGUAGE sql"
            " AS $$ SELECT password FROM customers WHERE id = 1 $$"
        )
    try:
        yield "own_pw"
    finally:
        with arena.admin() as admin:
            admin.execute("DROP FUNCTION public.own_pw()")


UNQUALIFIED_CALLS = [
    "SELECT {f}()",
    "SELECT x FROM {f}() x",
    "SELECT 1 WHERE {f}() LIKE 'hunter2%'",
    "SELECT upper({f}())",
]


@pytest.mark.parametrize("sql", UNQUALIFIED_CALLS)
def test_a_masked_dba_calling_the_databases_function_without_its_schema_is_refused(
    arena, own_pw: str, sql: str
) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql.format(f=own_pw))
        assert b"hunter2" not in answer.raw
        assert answer.refused, (sql, answer.rows)
    finally:
        c.close()


def test_the_databases_function_with_its_schema_is_masked_whole(arena, own_pw: str) -> None:
    c = client(arena, ("dba",))
    try:
        # held for approval since P14 (test_pg_probe_p14.py); masked whole once approved
        answer = c.query(f"SELECT public.{own_pw}()")
        assert any("approval" in e for e in answer.errors), answer.messages
        assert not answer.rows
    finally:
        c.close()
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query(f"SELECT {own_pw}()")
        assert answer.rows == [[b"hunter2-ada"]], answer.errors
    finally:
        c.close()


# --- operators the database defines --------------------------------------------------


@pytest.fixture
def own_operator(arena):
    with arena.admin() as admin:
        admin.execute(
            "CREATE FUNCTION public.pw_op(int, int) RETURNS text LANGUAGE sql"
            " AS $$ SELECT password FROM customers WHERE id = $1 $$;"
            " CREATE OPERATOR public.### (leftarg = int, rightarg = int, function = public.pw_op)"
        )
    try:
        yield "###"
    finally:
        with arena.admin() as admin:
            admin.execute(
                "DROP OPERATOR public.### (int, int); DROP FUNCTION public.pw_op(int, int)"
            )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 ### 1",
        "SELECT 1 OPERATOR(public.###) 1",
        "SELECT id FROM orders WHERE (1 ### 1) LIKE 'hunter2%'",
    ],
)
def test_a_masked_dba_applying_the_databases_operator_is_refused(
    arena, own_operator: str, sql: str
) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql)
        assert b"hunter2" not in answer.raw
        assert answer.refused, (sql, answer.rows)
    finally:
        c.close()


def test_an_unmasked_dba_applies_the_databases_operator(arena, own_operator: str) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        assert c.query("SELECT 1 ### 1").rows == [[b"hunter2-ada"]]
    finally:
        c.close()


# --- a table's alias column list --------------------------------------------------------

RENAMED = "customers AS t(i, n, e, s, no, pw)"


@pytest.mark.parametrize("groups", MASKED)
@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT t.i FROM {RENAMED} WHERE t.e LIKE 'ada%'",
        f"SELECT i FROM {RENAMED} WHERE pw LIKE 'hunter2-a%'",
        f"SELECT i FROM {RENAMED} ORDER BY pw",
        f"SELECT coalesce(t.pw, '') FROM {RENAMED}",
        f"SELECT x FROM (SELECT t.pw AS x FROM {RENAMED}) q WHERE x > 'hunter2-a'",
        # a join's alias column list renames the join's columns by position
        "SELECT 1 FROM (customers c CROSS JOIN orders o) AS j(a, b, e) WHERE j.e LIKE 'ada%'",
        "SELECT coalesce(f, '') FROM (customers c JOIN orders o ON o.customer_id = c.id)"
        " AS j(a, b, e, s, n, f)",
    ],
)
def test_columns_renamed_by_an_alias_list_are_not_taken_for_other_columns(
    arena, groups: tuple[str, ...], sql: str
) -> None:
    c = client(arena, groups)
    try:
        answer = c.query(sql)
        assert_no_secret(answer)
        assert answer.refused, (sql, answer.rows)
    finally:
        c.close()


def test_a_renamed_column_selected_is_masked_by_what_it_is(arena) -> None:
    c = client(arena, ("readonly",))
    try:
        answer = c.query(f"SELECT t.i, t.pw FROM {RENAMED}")
        assert not answer.refused, answer.errors
        assert sorted(answer.rows) == [[b"1", b"[REDACTED]"], [b"2", b"[REDACTED]"]]
    finally:
        c.close()


# --- casts the database defines ----------------------------------------------------


@pytest.fixture
def own_cast(arena):
    with arena.admin() as admin:
        admin.execute(
            "CREATE FUNCTION public.int_pw(integer) RETURNS text LANGUAGE sql"
            " AS $$ SELECT password FROM customers WHERE id = $1 $$;"
            " CREATE CAST (integer AS text) WITH FUNCTION public.int_pw(integer)"
        )
    try:
        yield
    finally:
        with arena.admin() as admin:
            admin.execute("DROP CAST (integer AS text); DROP FUNCTION public.int_pw(integer)")


def test_a_masked_dba_runs_no_statement_while_an_unreviewed_cast_may_apply(
    arena, own_cast: None
) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query("SELECT 1::text")
        assert b"hunter2" not in answer.raw
        assert answer.refused, answer.rows
    finally:
        c.close()
    c = client(arena, ("dba", "pii-readers"))
    try:
        assert c.query("SELECT 1::text").rows == [[b"hunter2-ada"]]
    finally:
        c.close()
