"""Positional masking: the derived mask covers the computed outputs the policy judged, not
every computed column of the row (rego/portcullis/postgres_lineage.rego pg_derived_rule,
MaskRule.positions, proxies/postgres/tracker.py _columns_to_mask).

Through the real PDP (shipped rego/) and proxy, as a reader and as a dba (neither in
pii-readers), with psql (simple protocol), psycopg (extended, text and binary) and asyncpg
(extended, binary): `count(*)` and `sum(total)` beside `upper(name)` come back as the
database answers them, while `upper(name)` is masked. Then the ways an attacker would try
to slide a changed text column into a position the policy left unmasked, each answered
with every computed column masked (or refused): a `*` or `(x).*` the server expands into
another number of columns than lineage counts (`(ROW()).*` expands into none), several
statements in one Query, a cursor's FETCH and a prepared statement's EXECUTE, names
swapped between outputs, a column the server computes that lineage reads as plain.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import psycopg
import pytest
from pg_harness import Gateway, running_gateway
from test_masking_nulls import psql_text

pytestmark = pytest.mark.integration

MASKED = "[REDACTED]"
# what a card number in a note looks like changed on the way (translate, reverse)
CHANGED = ("ebbb", "1111 1111 1114", "4111")

PRECISE = (
    "SELECT c.name, count(*), sum(o.total), upper(c.name) FROM customers c "
    "JOIN orders o ON o.customer_id = c.id GROUP BY c.name ORDER BY c.name"
)
PRECISE_ROWS = [("Ada", 1, Decimal("99.50"), MASKED), ("Bob", 1, Decimal("12.00"), MASKED)]

# an output swapped by name with count(*): positions are by place, not by name (grouped
# by the key and ordered by the count: grouping by or ordering by the note's text is a
# question about it, refused)
SWAPPED = (
    "SELECT reverse(note) AS count, count(*) AS reverse FROM customers GROUP BY id ORDER BY 2"
)

# statements whose changed text column must come back masked (or be refused), each with
# the column index of it in the result
ATTACKS = {
    # (ROW()).* expands into no column: lineage counts two outputs, the server sends two
    # columns, the changed note the first of them
    "SELECT (ROW()).*, (ROW(translate(note, '0123456789', 'abcdefghij'), 1)).* "
    "FROM customers ORDER BY 2": 0,
    # `*` over a sub-query: lineage's outputs are not one column each
    "SELECT * FROM (SELECT count(*) AS n, reverse(note) AS r FROM customers GROUP BY note) s "
    "ORDER BY 2": 1,
    "SELECT s.*, 1 FROM (SELECT count(*) AS n, reverse(note) AS r FROM customers "
    "GROUP BY note) s ORDER BY 2": 1,
    # a column the server computes that lineage reads through the function in FROM
    "SELECT count(*), x FROM customers, json_to_record(json_build_object('x', reverse(note))) "
    "AS t(x text) GROUP BY x ORDER BY 2": 1,
    SWAPPED: 0,
}


async def _psycopg(gw: Gateway, token: str, sql: str, binary: bool) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(gw.dsn(token), autocommit=True) as conn:
        cursor = await conn.execute(sql, binary=binary)
        return [tuple(row) for row in await cursor.fetchall()]


async def _asyncpg(gw: Gateway, token: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(gw.dsn(token))
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


def _rows(out: str) -> list[str]:
    """psql's rows of two columns or more (not the tags it prints for other statements)."""
    return [line for line in out.splitlines() if "|" in line]


def _readers(gw: Gateway) -> dict[str, str]:
    return {
        "readonly": gw.token("alice@example.com", ("readonly",)),
        "dba": gw.token("dora@example.com", ("dba",)),
    }


async def test_only_the_computed_outputs_the_policy_judged_are_masked(tmp_path):
    async with running_gateway(tmp_path) as gw:
        for group, token in _readers(gw).items():
            for binary in (False, True):
                rows = await _psycopg(gw, token, PRECISE, binary)
                assert rows == PRECISE_ROWS, (group, binary, rows)
            assert await _asyncpg(gw, token, PRECISE) == PRECISE_ROWS, group
            out = await psql_text(gw, token, PRECISE)
            assert out.splitlines() == [f"Ada|1|99.50|{MASKED}", f"Bob|1|12.00|{MASKED}"], out
            # by place, not by name: the count named reverse comes back, the reverse
            # named count is masked
            rows = await _psycopg(gw, token, SWAPPED, False)
            assert rows == [(MASKED, 1), (MASKED, 1)], (group, rows)
        # pii-readers see every output
        pii = gw.token("pat@example.com", ("readonly", "pii-readers"))
        rows = await _psycopg(gw, pii, PRECISE, False)
        assert rows == [("Ada", 1, Decimal("99.50"), "ADA"), ("Bob", 1, Decimal("12.00"), "BOB")]


async def test_a_changed_text_column_cannot_be_slid_into_an_unmasked_position(tmp_path):
    async with running_gateway(tmp_path) as gw:
        for group, token in _readers(gw).items():
            for sql, place in ATTACKS.items():
                answers: dict[str, list[tuple[object, ...]]] = {}
                try:
                    answers["psycopg text"] = await _psycopg(gw, token, sql, False)
                    answers["psycopg binary"] = await _psycopg(gw, token, sql, True)
                    answers["asyncpg"] = await _asyncpg(gw, token, sql)
                except psycopg.errors.InsufficientPrivilege as refused:
                    assert "denied by policy" in str(refused), sql
                    continue
                for client, rows in answers.items():
                    assert rows and all(row[place] == MASKED for row in rows), (
                        group,
                        client,
                        sql,
                        rows,
                    )
                    assert not any(c in repr(rows) for c in CHANGED), (group, client, rows)


async def test_several_statements_fetch_and_execute_mask_every_computed_column(tmp_path):
    """Where the rule cannot say which result a position is of, every computed column is
    masked: the count beside the changed note too."""
    async with running_gateway(tmp_path) as gw:
        # (grouped by the key, in no order: grouping by or ordering by the note's text is a
        # question about it, refused; the two rows come back alike)
        changed = "SELECT count(*), reverse(note) FROM customers GROUP BY id"
        masked_rows = [f"<NULL>|{MASKED}", f"<NULL>|{MASKED}"]
        for group, token in _readers(gw).items():
            # both results' computed columns: SELECT 1 masked too
            out = await psql_text(gw, token, f"SELECT 1; {changed}")
            assert out.splitlines() == ["<NULL>", *masked_rows], (group, out)
            out = await psql_text(gw, token, f"PREPARE p AS {changed}; EXECUTE p")
            assert _rows(out) == masked_rows, (group, out)
            script = f"BEGIN; DECLARE c CURSOR FOR {changed}; FETCH ALL FROM c; COMMIT"
            out = await psql_text(gw, token, script)
            assert _rows(out) == masked_rows, (group, out)
            # psycopg's named cursor: DECLARE, then FETCH
            async with (
                await psycopg.AsyncConnection.connect(gw.dsn(token)) as conn,
                conn.cursor(name="named") as cursor,
            ):
                await cursor.execute(changed)
                rows = await cursor.fetchall()
            assert rows == [(None, MASKED), (None, MASKED)], (group, rows)
