"""Probe p29 (pgattack9): the proxy's own catalogue questions resolve only to built-in
exact matches, so a superuser's operator or cast between built-in types cannot blind the
facts.

The marks (catalog_watch.MARK_SQL, COLUMNS_MARK_SQL) and the facts (USER_CODE_SQL,
RELATION_SOURCES_SQL, ...) compared across types: `oid >= 16384` (oid, integer),
`d.refclassid = 'pg_catalog.pg_proc'::regclass` (oid, regclass), `f.oid = o.oprcode` (oid,
regproc), and converted through casts pg_cast has no row for (`xmin::text::bigint`: xid to
text, text to bigint; `m[1]::oid`). pg_catalog has no exact operator for those pairs and
no such cast, so the server resolved them by coercion, and a superuser's
`CREATE OPERATOR pg_catalog.>= (LEFTARG = oid, RIGHTARG = integer, ...)` or
`CREATE CAST (text AS bigint) WITH FUNCTION ...` became the exact match the questions
picked even with only pg_catalog on their path: the mark read 0.0 and view_functions {},
so `SELECT * FROM v` ran a plpgsql function of the database unjudged. Here a scratch
database is given such operators and casts (their functions answer false, '0', 0 or 'x')
and the proxy's own read_facts, on a real server connection, must read the same facts.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import psycopg
import pytest

from proxies.postgres import catalog_watch
from proxies.postgres.catalog_watch import Facts, read_facts
from proxies.postgres.user_code import QUESTION_FUNCTIONS

pytestmark = pytest.mark.integration

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
DATABASE = "pgattack9_p29"

SCHEMA = """
CREATE TABLE public.t (id int PRIMARY KEY, name text);
CREATE FUNCTION public.f(v int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN v; END $$;
CREATE VIEW public.v AS SELECT public.f(id) AS id, name FROM public.t;
CREATE VIEW public.w AS SELECT name FROM public.t;
CREATE FUNCTION public.trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER t_trg BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.trg();
"""

# operators between built-in types pg_catalog has none of, and casts it has no row for,
# each answering wrong: the exact matches a cross-type comparison or an I/O cast would pick
_OPERATOR_PAIRS = [
    (op, left, right)
    for op in ("=", "<>", "<", "<=", ">", ">=")
    for left, right in (
        ("oid", "integer"),
        ("oid", "regclass"),
        ("regclass", "oid"),
        ("oid", "regproc"),
        ("regproc", "oid"),
        ("regproc", "integer"),
        ("oid", "regnamespace"),
        ('"char"', "text"),
        ("name", "text"),
        ("text", "name"),
        ("bigint", "xid"),
        ("bigint", "numeric"),
    )
]
_CONCATS = [("name", "name"), ("name", "text"), ("text", "name")]
_CASTS = [
    ("xid", "text", "text", "'0'"),
    ("cid", "text", "text", "'0'"),
    ("text", "bigint", "bigint", "0"),
    ("text", "oid", "oid", "0"),
    ("bigint", "text", "text", "'0'"),
    ("numeric", "text", "text", "'0'"),
    ("pg_snapshot", "text", "text", "'1:1:'"),
]


def _hijacks() -> list[str]:
    out = []
    for n, (op, left, right) in enumerate(_OPERATOR_PAIRS):
        out.append(
            f"CREATE FUNCTION public.no{n}(a {left}, b {right}) RETURNS boolean"
            " LANGUAGE sql AS 'SELECT false';"
            f" CREATE OPERATOR pg_catalog.{op} (LEFTARG = {left}, RIGHTARG = {right},"
            f" FUNCTION = public.no{n});"
        )
    for n, (left, right) in enumerate(_CONCATS):
        out.append(
            f"CREATE FUNCTION public.cat{n}(a {left}, b {right}) RETURNS text"
            " LANGUAGE sql AS 'SELECT ''x''';"
            f" CREATE OPERATOR pg_catalog.|| (LEFTARG = {left}, RIGHTARG = {right},"
            f" FUNCTION = public.cat{n});"
        )
    for n, (source, target, returns, value) in enumerate(_CASTS):
        out.append(
            f"CREATE FUNCTION public.cast{n}(a {source}) RETURNS {returns}"
            f" LANGUAGE sql AS $$SELECT {value}::{returns}$$;"
            f" CREATE CAST ({source} AS {target}) WITH FUNCTION public.cast{n}({source});"
        )
    return out


def _scratch(database: str) -> Iterator[str]:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.execute(f"CREATE DATABASE {database}")
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={database}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    try:
        yield dsn
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@pytest.fixture
def scratch() -> Iterator[str]:
    yield from _scratch(DATABASE)


class _Writer:
    def __init__(self, database: str) -> None:
        self.database = database

    def get_extra_info(self, name: str) -> object:
        return (self.database, name)  # the server the boundary is kept of: this database's


class _Upstream:
    """What read_facts reads of its upstream besides the answers: the server's address
    (a scratch database's own, so each keeps its own boundary)."""

    def __init__(self, dsn: str) -> None:
        self.writer = _Writer(dsn.rsplit("dbname=", 1)[-1])


def _facts(dsn: str) -> Facts:
    facts = _read(dsn)
    assert facts is not None
    return facts


def _read(dsn: str) -> Facts | None:
    """catalog_watch.read_facts, its questions asked as the proxy asks them (simple
    protocol, each in its own transaction) on a superuser's connection."""

    async def ask(_upstream: object, sql: str) -> list[str] | None:
        with psycopg.connect(dsn) as conn:
            cur = conn.execute(sql)
            while cur.nextset():  # the SET LOCALs' results first, then the question's
                pass
            rows = cur.fetchall()
            return [str(row[0]) if row and row[0] is not None else "" for row in rows]

    return asyncio.run(read_facts(_Upstream(dsn), ask))  # type: ignore[arg-type]


def _snapshot(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(catalog_watch.PINNED_PATH + catalog_watch.SNAPSHOT_SQL)
        while cur.nextset():
            pass
        row = cur.fetchone()
        assert row is not None
        return str(row[0])


def _mark(mark: str) -> tuple[int, int]:
    found = re.fullmatch(r"([0-9]+)\.([0-9]+)(?:\.[0-9]+)?", mark)
    assert found, mark
    return int(found[1]), int(found[2])


def test_operators_and_casts_between_built_in_types_do_not_blind_the_facts(
    scratch: str,
) -> None:
    before = _facts(scratch)
    snapshot = _snapshot(scratch)
    assert before.user_code["view_functions"] == {"public.v": ["public.f"]}
    assert "public.t" in before.user_code["write_code"]
    assert before.relation_sources["public.w"] == ["public.t"]
    with psycopg.connect(scratch, autocommit=True) as conn:
        for hijack in _hijacks():
            try:
                with conn.transaction():
                    conn.execute(hijack)
            except psycopg.errors.DuplicateFunction:
                pass  # pg_catalog has this pair's operator (name = text): no hijack by it
    after = _facts(scratch)
    # the watch's snapshot moves with every commit (here the hijacks'), read as the server
    # prints it
    assert _snapshot(scratch) != snapshot
    assert _snapshot(scratch) != "1:1:"
    # every hijack is a row made after initdb: the marks count more, never 0
    count_before, sum_before = _mark(before.mark)
    count_after, sum_after = _mark(after.mark)
    assert count_after > count_before and sum_after > sum_before
    columns_before, columns_sum_before = _mark(before.columns_mark)
    columns_after, columns_sum_after = _mark(after.columns_mark)
    assert columns_after >= columns_before and columns_sum_after >= columns_sum_before
    assert after.columns_mark.rsplit(".", 1)[1] == before.columns_mark.rsplit(".", 1)[1]
    for fact in ("view_functions", "write_code"):
        assert after.user_code[fact] == before.user_code[fact], fact
    assert after.relation_sources == before.relation_sources
    assert after.view_columns == before.view_columns
    # the hijacks are the database's own code, and say so
    assert {"=", ">=", "||"} <= set(after.user_code["user_operators"])
    assert any("text -> bigint" in cast for cast in after.user_code["user_casts"])


# an aggregate of the exact argument type the questions pass json_agg (text), which the
# server picks over the built-in json_agg(anyelement): every view's functions read []
JSON_AGG = """
CREATE FUNCTION public.keep(s json, v text) RETURNS json LANGUAGE sql AS 'SELECT s';
CREATE AGGREGATE pg_catalog.json_agg(text) (SFUNC = public.keep, STYPE = json,
  INITCOND = '[]');
"""


def test_a_function_the_questions_call_made_again_in_pg_catalog_refuses_the_facts(
    scratch: str,
) -> None:
    assert _facts(scratch).user_code["view_functions"] == {"public.v": ["public.f"]}
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute(JSON_AGG)
    assert _read(scratch) is None  # not judged by: sessions refused


def test_the_guard_names_every_function_the_questions_call(scratch: str) -> None:
    """Every pg_catalog function a catalogue question calls is in QUESTION_FUNCTIONS."""
    sqls = [
        *catalog_watch.FACT_QUERIES,
        catalog_watch.MARK_SQL,
        catalog_watch.COLUMNS_MARK_SQL,
        catalog_watch.SNAPSHOT_SQL,
    ]
    words: set[str] = set()
    for sql in sqls:
        bare = re.sub(r"'(?:[^']|'')*'", "''", sql)
        words |= {w.lower() for w in re.findall(r"\b([a-z_][a-z_0-9]*)\s*\(", bare, re.I)}
    with psycopg.connect(scratch) as conn:
        called = {
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT proname::text FROM pg_catalog.pg_proc"
                " WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY(%s)",
                (sorted(words),),
            )
        }
    assert called
    assert called <= set(QUESTION_FUNCTIONS), sorted(called - set(QUESTION_FUNCTIONS))
