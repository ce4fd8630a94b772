"""A reused row-filtered simple Query runs as the proxy's statement prepared on the server
(proxies/postgres/prepared_rewrites.py), through the real proxy, PDP and OPA to the
machine's PostgreSQL, with psycopg's simple protocol: what the client gets is what the
filled text run as a simple Query gives (the slow path, run here directly on the server),
row for row, type for type, tag for tag and error for error, for shapes that take the
prepared path and shapes that must not (a position under DISTINCT ON or ROLLUP, a number
of ten digits). The statements' own numbers never leave the filter: another tenant's rows
never show."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pg_harness import running_gateway
from test_rowfilter_pg import _policies, _prepare, _token

from pdp.sql.rowfilter import rewrite
from portcullis.verdict import RowCondition
from proxies.postgres import codec
from proxies.postgres.prepared_rewrites import parameters_of
from proxies.postgres.tracker import Expect, ResponseTracker

_FILTERS = {
    "public.accounts": [RowCondition("tenant_id", "=", "acme")],
    "tickets": [RowCondition("tenant_id", "=", "acme")],
}

# (template, prepared): whether a reused verdict of it runs prepared
TEMPLATES = [
    ("SELECT id, name FROM accounts WHERE id = {a}", True),
    ("SELECT id, tenant_id FROM accounts WHERE id >= {a} ORDER BY id LIMIT {b}", True),
    (
        "SELECT {a} AS n, -{b} AS m, {a} + {b} AS s, pg_typeof({a})::text AS t, "
        "round({a} / 3::numeric, {b}) AS r FROM accounts WHERE id <> {b} ORDER BY id",
        True,
    ),
    (
        "SELECT t.title FROM tickets t JOIN accounts a ON a.id = t.account_id "
        "WHERE t.id IN ({a}0, {b}0, 30) ORDER BY t.id",
        True,
    ),
    ("SELECT id FROM accounts WHERE id = {a} / ({b} - {b})", True),  # division by zero
    ("SELECT generate_series({a}, {b}) AS g, name FROM accounts WHERE id = {b}", True),
    ("SELECT array_agg(id ORDER BY id) FROM accounts WHERE id > {a} - {b}", True),
    ("SELECT DISTINCT ON (2) tenant_id, id FROM accounts WHERE id > {a} - 3", False),
    ("SELECT count(*) FROM tickets WHERE id > {a} GROUP BY ROLLUP (1)", False),
    ("SELECT id FROM accounts WHERE id < {a}000000000", False),  # ten digits
]
VALUES = [(1, 2), (2, 3), (3, 1), (1, 1)]


async def _client_result(conn: psycopg.AsyncConnection, sql: str) -> Any:
    try:
        cur = await conn.execute(sql)
    except psycopg.Error as exc:
        return ("error", exc.sqlstate, exc.diag.message_primary)
    description = [(d.name, d.type_code) for d in cur.description or ()]
    return (description, await cur.fetchall(), cur.statusmessage)


def _server_result(admin: psycopg.Connection, sql: str) -> Any:
    try:
        cur = admin.execute(sql)
    except psycopg.Error as exc:
        return ("error", exc.sqlstate, exc.diag.message_primary)
    description = [(d.name, d.type_code) for d in cur.description or ()]
    return (description, cur.fetchall(), cur.statusmessage)


def _last_statement(admin: psycopg.Connection, role: str) -> str:
    row = admin.execute(
        "SELECT query FROM pg_stat_activity WHERE usename = %s AND query <> '' "
        "AND query NOT LIKE %s ORDER BY backend_start DESC LIMIT 1",
        (role, "%pg_catalog%"),
    ).fetchone()
    return row[0] if row else ""


async def test_a_reused_filtered_query_gives_what_its_filled_text_gives(tmp_path):
    async with running_gateway(tmp_path, policies=_policies(tmp_path)) as gw:
        _prepare(gw)
        conn = await psycopg.AsyncConnection.connect(
            gw.dsn(_token(gw, "acme")), autocommit=True, prepare_threshold=None
        )
        try:
            with gw.admin() as admin:
                admin.execute(f"SET ROLE {gw.role}")
                for template, prepared in TEMPLATES:
                    for n, (a, b) in enumerate(VALUES):
                        sql = template.format(a=a, b=b)
                        got = await _client_result(conn, sql)
                        done = rewrite(sql, _FILTERS)
                        assert done.sql and not done.denied, (sql, done)
                        assert got == _server_result(admin, done.sql), sql
                        if got[0] != "error":
                            assert "globex" not in repr(got[1]), sql
                        if n == 0:
                            continue  # decided by the PDP: its text, as a simple Query
                        ran = _last_statement(admin, gw.role)
                        assert ("$1" in ran) is prepared, (sql, ran)
                        assert "'acme'" in ran, (sql, ran)
        finally:
            await conn.close()


async def test_a_session_that_drops_every_statement_prepares_again(tmp_path):
    """DEALLOCATE ALL and DISCARD ALL drop the proxy's statements too: the next reused
    statement is prepared anew; a client may not PREPARE or DEALLOCATE the proxy's names."""
    async with running_gateway(tmp_path, policies=_policies(tmp_path)) as gw:
        _prepare(gw)
        conn = await psycopg.AsyncConnection.connect(
            gw.dsn(_token(gw, "acme")), autocommit=True, prepare_threshold=None
        )
        try:
            for reset in ("DEALLOCATE ALL", "DISCARD ALL", "SELECT 1"):
                for n in (1, 2, 3):
                    cur = await conn.execute(f"SELECT id FROM accounts WHERE id <= {n} ORDER BY id")
                    assert [r[0] for r in await cur.fetchall()] == [i for i in (1, 3) if i <= n]
                await conn.execute(reset)
            for refused in (
                "PREPARE portcullis_rf_x AS SELECT id FROM accounts",
                "PREPARE Portcullis_RF_x AS SELECT id FROM accounts",
                "DEALLOCATE portcullis_rf_x",
            ):
                with pytest.raises(psycopg.Error) as caught:
                    await conn.execute(refused)
                assert "the proxy's own" in str(caught.value), refused
            await conn.execute("PREPARE mine AS SELECT id FROM accounts")  # any other name
            cur = await conn.execute("EXECUTE mine")
            assert sorted(r[0] for r in await cur.fetchall()) == [1, 3]
        finally:
            await conn.close()


# -- the tracker's lane for it, held to on_backend (no sockets) ----------------------------

_DESCRIPTION = codec.RowDescription([codec.Field("n", 0, 0, 23, 4, -1, 0)])


def _answers(quiet: bool, parsed: bool, rows: int, in_block: bool) -> list[bytes]:
    head = [codec.ParseComplete(), codec.BindComplete()] if parsed else [codec.BindComplete()]
    messages = [
        *(head if quiet else ()),
        _DESCRIPTION,
        *[codec.DataRow([str(i).encode()]) for i in range(rows)],
        codec.CommandComplete(f"SELECT {rows}"),
        codec.ReadyForQuery("T" if in_block else "I"),
    ]
    return [m.encode() for m in messages]


def _tracker_state(tracker: ResponseTracker) -> tuple[object, ...]:
    return (
        [(c.command, c.tag, c.rows, c.protocol, c.part) for c in tracker.completions],
        [(e.kind, e.quiet, e.rows) for e in tracker.queue if isinstance(e, Expect)],
        tracker.status,
        tracker.unprepared,
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.integers(0, 3), st.booleans()),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(1, 40), max_size=4),
)
def test_the_quiet_lane_gives_the_client_what_on_backend_gives(statements, cuts):
    """Simple Queries, some run prepared (quiet: ParseComplete and BindComplete first),
    pipelined, their answers cut into chunks anywhere between frames: plain_quiet() sends
    the client exactly what on_backend() sends, message for message, and leaves the same
    completions, queue and status."""
    fast, slow = ResponseTracker(), ResponseTracker()
    frames: list[bytes] = []
    for n, (quiet, parsed, rows, in_block) in enumerate(statements):
        for tracker in (fast, slow):
            expect = Expect("Query", command=f"q{n}", protocol="simple")
            expect.statement, expect.quiet = ("portcullis_rf_x_1", True) if quiet else (None, False)
            tracker.expect(expect)
        frames += _answers(quiet, parsed, rows, in_block)
    places = sorted({min(c, len(frames)) for c in cuts} | {len(frames)})
    chunks, start = [], 0
    for place in places:
        if place > start:
            chunks.append(b"".join(frames[start:place]))
            start = place
    parser_fast, parser_slow = codec.BackendParser(), codec.BackendParser()
    sent_fast, sent_slow = b"", b""
    for chunk in chunks:
        answers = parser_fast.plain_answers(chunk)
        assert answers is not None
        out = fast.plain_quiet(answers, chunk) if fast.quiet_owed else None
        if out is None:
            assert fast.plain(answers)
            out = chunk
        sent_fast += out
        sent_slow += b"".join(map(slow.on_backend, parser_slow.feed(chunk)))
    assert sent_fast == sent_slow
    assert _tracker_state(fast) == _tracker_state(slow)
    assert b"2\0\0\0\x04" not in sent_fast  # no BindComplete reaches the client


def test_only_a_select_without_positions_or_writes_may_run_prepared():
    assert parameters_of("SELECT a FROM t WHERE t.c = 'x' AND id = $1 LIMIT $2") == 2
    for text in (
        "SELECT DISTINCT ON ($1) a FROM t",
        "SELECT a FROM t GROUP BY ROLLUP ($1)",
        "SELECT a FROM t ORDER BY a + $1",
        "SELECT row_number() OVER (ORDER BY $1) FROM t",
        "SELECT string_agg(a, ',' ORDER BY $1) FROM t",
        "SELECT a INTO x FROM t WHERE id = $1",
        "WITH w AS (DELETE FROM t WHERE id = $1 RETURNING a) SELECT a FROM w",
        "SELECT a FROM t WHERE id = $2",  # $1 missing
        "SELECT 1; SELECT $1",
        "EXPLAIN SELECT a FROM t WHERE id = $1",
        "SELECT a FROM t WHERE id = $1 +",
    ):
        assert parameters_of(text) == 0, text


async def test_a_masked_column_stays_masked_when_the_statement_runs_prepared(tmp_path):
    """A reader's reused, row-filtered statement that reads a sensitive column: run
    prepared (the rows come through the tracker's slow lane, as a masked Query's do), the
    column is masked in every row, and other tenants' rows never show."""
    async with running_gateway(tmp_path, policies=_policies(tmp_path)) as gw:
        _prepare(gw)
        with gw.admin() as admin:
            admin.execute(f"SET ROLE {gw.role}")
            admin.execute("ALTER TABLE accounts ADD COLUMN email text")
            admin.execute("UPDATE accounts SET email = 'owner' || id || '@example.com'")
        conn = await psycopg.AsyncConnection.connect(
            gw.dsn(_token(gw, "acme")), autocommit=True, prepare_threshold=None
        )
        try:
            with gw.admin() as admin:
                for n in (1, 2, 3, 4, 3):
                    cur = await conn.execute(
                        f"SELECT id, email, tenant_id FROM accounts WHERE id >= {n} ORDER BY id"
                    )
                    rows = await cur.fetchall()
                    assert [r[0] for r in rows] == [i for i in (1, 3) if i >= n]
                    assert {r[2] for r in rows} <= {"acme"}
                    for _id, email, _tenant in rows:
                        assert "@example.com" not in (email or ""), rows
                    if n != 1:
                        assert "$1" in _last_statement(admin, gw.role)
        finally:
            await conn.close()
