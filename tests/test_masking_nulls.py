"""A masked derived output cannot be used as a NULL-ness oracle (issue 21, items 2-5).

An expression whose NULL-ness depends on a sensitive value (`'{"ada@example.com": 1}'::jsonb
->> email`, a computed view column `nullif(left(email, 1), 'a')`) would answer a question
about the value if its NULLs passed while its values were masked. Through the real proxy,
as a reader, in text (psql, psycopg) and binary (psycopg, asyncpg): every row of such an
output looks the same, NULL or not, while pii-readers see the real NULLs. A stored
sensitive column output as itself keeps its NULLs (that the stored value is missing is a
fact of the row, not of any value: proxies/postgres/row_mask.py says why).
"""

from __future__ import annotations

import asyncio
import os

import asyncpg
import psycopg
import pytest
from pg_harness import Gateway, running_gateway

pytestmark = pytest.mark.integration

EXTRA = """
INSERT INTO customers VALUES (3, 'Cy', NULL, NULL, 'no contact details');
CREATE VIEW initials AS SELECT id, nullif(left(email, 1), 'a') AS initial FROM customers;
"""

# each: a derived output whose NULL-ness depends on a sensitive value, and what pii-readers
# see in it (NULL where the expression is NULL)
GUESS = """SELECT '{"ada@example.com": "hit"}'::jsonb ->> email AS x FROM customers ORDER BY id"""
EMAILS = ["ada@example.com", "bob@example.org", None]
DERIVED = {
    # the value itself as a key: NULL exactly where the email is not the one guessed
    GUESS: ["hit", None, None],
    # a computed view column: NULL where the initial is 'a'
    "SELECT initial AS x FROM initials ORDER BY id": [None, "b", None],
    "SELECT upper(ssn) AS x FROM customers ORDER BY id": ["123-45-6789", "234-56-7890", None],
    "SELECT max(email) AS x FROM customers GROUP BY id ORDER BY id": EMAILS,
    "SELECT string_agg(email, ',') AS x FROM customers GROUP BY id ORDER BY id": EMAILS,
    # the policy refuses these as conditions over the value today; masked they would be alike
    "SELECT nullif(left(email, 1), 'a') AS x FROM customers ORDER BY id": [None, "b", None],
    "SELECT (regexp_match(email, '^a'))[1] AS x FROM customers ORDER BY id": ["a", None, None],
    # not text: the mask of any value is NULL, so every row is NULL
    "SELECT nullif(position('a' in email), 1) AS x FROM customers ORDER BY id": [None, 7, None],
}
# the shipped policy masks these for a reader (the others it may refuse)
MASKED = {
    GUESS,
    "SELECT initial AS x FROM initials ORDER BY id",
    "SELECT upper(ssn) AS x FROM customers ORDER BY id",
    "SELECT max(email) AS x FROM customers GROUP BY id ORDER BY id",
}
STORED = "SELECT email AS x FROM customers ORDER BY id"


async def _psycopg(gw: Gateway, token: str, sql: str, binary: bool) -> list[object]:
    async with await psycopg.AsyncConnection.connect(gw.dsn(token), autocommit=True) as conn:
        cursor = await conn.execute(sql, binary=binary)
        return [row[0] for row in await cursor.fetchall()]


async def _asyncpg(gw: Gateway, token: str, sql: str) -> list[object]:
    conn = await asyncpg.connect(gw.dsn(token))
    try:
        return [row[0] for row in await conn.fetch(sql)]
    finally:
        await conn.close()


async def _psql(gw: Gateway, token: str, sql: str) -> list[object]:
    out = await psql_text(gw, token, sql)
    return [None if line == "<NULL>" else line for line in out.splitlines()]


async def psql_text(gw: Gateway, token: str, sql: str) -> str:
    """psql's unaligned output of sql (one simple Query): '|' between columns, <NULL>."""
    psql = await asyncio.create_subprocess_exec(
        "psql", f"host=127.0.0.1 port={gw.proxy.port} user=agent dbname={gw.database} "
        "sslmode=disable", "-AtX", "-P", "null=<NULL>", "-v", "ON_ERROR_STOP=1", "-c", sql,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PGPASSWORD": token},
    )  # fmt: skip
    out, err = await psql.communicate()
    assert psql.returncode == 0, err.decode()
    return out.decode()


async def _every_client(gw: Gateway, token: str, sql: str) -> dict[str, list[object]]:
    return {
        "psycopg text": await _psycopg(gw, token, sql, False),
        "psycopg binary": await _psycopg(gw, token, sql, True),
        "asyncpg binary": await _asyncpg(gw, token, sql),
        "psql": await _psql(gw, token, sql),
    }


def _text(values: list[object]) -> list[object]:
    """psql reads every value as text: so are the others, for comparing."""
    return [None if v is None else str(v) for v in values]


async def test_a_masked_derived_output_tells_no_null_from_a_value(tmp_path):
    async with running_gateway(tmp_path) as gw:
        with gw.admin() as admin:
            admin.execute(EXTRA)
            admin.execute(f"GRANT SELECT ON initials TO {gw.role}")
        reader = gw.token("alice@example.com", ("readonly",))
        pii = gw.token("pat@example.com", ("readonly", "pii-readers"))
        answered: list[str] = []
        for sql, real in DERIVED.items():
            for client, seen in (await _every_client(gw, pii, sql)).items():
                assert _text(seen) == _text(real), (sql, client, seen)
            try:
                answers = await _every_client(gw, reader, sql)
            except psycopg.errors.InsufficientPrivilege as refused:
                # the policy may refuse the question outright: no oracle either
                assert "denied by policy" in str(refused) and sql not in MASKED, sql
                continue
            answered.append(sql)
            for client, seen in answers.items():
                # three rows, NULL and not in the real data, indistinguishable masked
                assert len(seen) == 3 and len(set(seen)) == 1, (sql, client, seen)
                if any(isinstance(v, str) for v in real):  # text: the mask string, NULL's too
                    assert seen[0] == "[REDACTED]", (sql, client, seen)
                else:  # another type: the mask is NULL, for a value as for NULL
                    assert seen[0] is None, (sql, client, seen)
        assert set(answered) >= MASKED, answered
        # a stored sensitive column output as itself keeps its NULL (a fact of the row)
        for client, seen in (await _every_client(gw, reader, STORED)).items():
            assert seen == ["[REDACTED]", "[REDACTED]", None], (client, seen)
        for client, seen in (await _every_client(gw, pii, STORED)).items():
            assert seen == ["ada@example.com", "bob@example.org", None], (client, seen)
