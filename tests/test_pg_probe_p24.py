"""Probe P24 (helper pgattack7) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER).

Catalogue writes under a read's tag. A transaction that may have written the catalogue
(DDL, DO, a write naming a pg_ table: its command tags) tells the catalogue watch as it
ends, so no session reuses a verdict before the facts are read again (86a5b77). A SELECT
calling a function of the database whose body writes the catalogue (UPDATE pg_proc making
pg_catalog.age set application_name, or CREATE OR REPLACE FUNCTION pg_catalog...) has a
SELECT's tag, and so had a read of a view calling it and an INSERT into a table whose
trigger runs it: left to the watch's next poll, while a reader's cached `SELECT age(...)`
ran the superuser's code. A statement whose text may name the database's code (its
functions, views, relations with triggers or rules, operators, types:
proxies/postgres/code_names.py) now counts as one that may have written the catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from adversary import Arena, ready_client, running_arena

from proxies.postgres import codec
from proxies.postgres.catalog_watch import POLL_SECONDS
from proxies.postgres.code_names import code_names
from proxies.postgres.tracker import Expect, ResponseTracker

pytestmark = pytest.mark.integration

# each rewrites the SQL built-in p24_target names so that a reader's call of it sets
# application_name (each case its own built-in: one changed stays the database's code)
MADE = """
CREATE TABLE public.p24_target (f regprocedure, cast_to text);
CREATE FUNCTION public.p24_mk() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
  UPDATE pg_catalog.pg_proc SET prosrc = 'SELECT pg_catalog.length(pg_catalog.set_config('
    '''application_name'', ''p24ran'', false))::' || (SELECT cast_to FROM public.p24_target)
    WHERE oid = (SELECT f FROM public.p24_target);
  RETURN 1; END $$;
CREATE VIEW public.p24_v AS SELECT public.p24_mk() AS made;
CREATE TABLE public.p24_t (id int);
CREATE FUNCTION public.p24_trig() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.p24_mk(); RETURN NEW; END $$;
CREATE TRIGGER p24_trig AFTER INSERT ON public.p24_t FOR EACH ROW
  EXECUTE FUNCTION public.p24_trig();
"""


@pytest.fixture(scope="module")
def still(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    """The adversary's arena with the database's code, its catalogue watch's poll stopped
    (its only questions after start-up are the ones statements make the proxy ask)."""
    with running_arena(tmp_path_factory.mktemp("still")) as arena:
        with arena.admin() as admin:
            admin.execute(MADE)
        watch = arena.proxy.knowledge(arena.database).catalog
        watch.poll = 3600.0
        c = ready_client(arena, ("readonly",), "p24")  # the watch runs while a session is
        try:
            time.sleep(3 * POLL_SECONDS)  # the poll's sleep under way ends: the long one next
            yield arena
        finally:
            c.close()


DBA = ("dba", "pii-readers")
# (the built-in changed, its result type, a reader's call of it, the statement changing it)
WRITES_UNDER_A_READ = [
    ("obj_description(oid)", "text", "SELECT obj_description(1259)", "SELECT public.p24_mk()"),
    ("col_description(oid, integer)", "text", "SELECT col_description(1259, 1)",
     "SELECT made FROM p24_v"),
    ("age(timestamp)", "text::interval", "SELECT age(timestamp '2020-01-01')",
     'BEGIN; SELECT * FROM ROWS FROM ("p24_mk"()); COMMIT'),
    ("shobj_description(oid, name)", "text", "SELECT shobj_description(1, 'pg_database')",
     "INSERT INTO p24_t VALUES (1)"),
]  # fmt: skip


@pytest.mark.parametrize(("target", "cast_to", "read", "change"), WRITES_UNDER_A_READ)
def test_a_catalogue_write_under_a_reads_tag_is_judged_at_once(
    still: Arena, target: str, cast_to: str, read: str, change: str
) -> None:
    with still.admin() as admin:
        admin.execute("TRUNCATE p24_target")
        admin.execute("INSERT INTO p24_target VALUES (%s::regprocedure, %s)", (target, cast_to))
    reader = ready_client(still, ("readonly",), "p24")
    writer = ready_client(still, DBA, "p24")
    try:
        assert not reader.query(read).errors  # the verdict cached, before the change
        assert not reader.query(read).errors
        made = writer.query(change)
        assert not made.errors, made.messages
        answer = reader.query(read)
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
        assert reader.show("application_name") != "p24ran"
    finally:
        reader.close()
        writer.close()


FACTS = {
    "user_functions": ["public.p24_mk", "public.p24_trig"],
    "view_functions": {"public.p24_v": ["public.p24_mk"], "p24_v": ["public.p24_mk"]},
    "write_code": {"public.p24_t": {"triggers": ["p24_trig"]}, "p24_t": {"triggers": ["x"]}},
    "user_operators": ["===>"],
}
# (statement, its tag, whether its transaction tells the watch)
TOLD = [
    ("SELECT public.p24_mk()", "SELECT 1", True),
    ("select P24_MK()", "SELECT 1", True),
    ('SELECT "p24_mk"()', "SELECT 1", True),
    ('SELECT U&"\\0070\\0032\\0034_mk"()', "SELECT 1", True),
    ("SELECT made FROM p24_v", "SELECT 1", True),
    ("INSERT INTO p24_t VALUES (1)", "INSERT 0 1", True),
    ("SELECT 1 ===> 2", "SELECT 1", True),
    ("SELECT query_to_xml(convert_from('\\x...', 'UTF8'), true, true, '')", "SELECT 1", True),
    ("FETCH ALL FROM c", "FETCH 1", False),
    ("SELECT id FROM orders", "SELECT 2", False),
    ("INSERT INTO orders VALUES (1, 1, 1)", "INSERT 0 1", False),
]


@pytest.mark.parametrize(("sql", "tag", "told"), TOLD)
def test_a_statement_naming_the_databases_code_tells_the_watch(
    sql: str, tag: str, told: bool
) -> None:
    tracker = ResponseTracker()
    heard: list[bool] = []
    tracker.on_catalog_written = lambda: heard.append(True)
    names = code_names((), FACTS)
    tracker.code_names = lambda: names
    tracker.expect(Expect("Query", command=sql))
    tracker.on_backend(codec.CommandComplete(tag))
    tracker.on_backend(codec.ReadyForQuery("I"))
    assert heard == ([True] if told else [])


def test_a_cast_the_database_made_makes_every_statement_count() -> None:
    names = code_names((), {"user_casts": ["int4 -> text by public.f (i)"]})
    assert names is not None and names.named("SELECT 1")
    assert code_names((), {}) is None
