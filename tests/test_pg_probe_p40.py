"""Probe P40 (helper pgattack15) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader.

A domain's CHECK runs whenever a value is made of the domain's type, and a statement need not
name the type for that: `array_agg(d)` over a column `d` of the domain is an array of the
domain (polymorphic functions keep it), so a literal beside it is read as one:

    SELECT array_append(array_agg(d), '5') FROM dt      -- runs the CHECK on '5'
    SELECT array_agg(d) || '{11}' FROM dt               -- and on 11
    SELECT ARRAY(SELECT d FROM dt) || '{11}'

ran the database's own code (a CHECK calling a plpgsql function of the superuser's) for a
reader, though casts to the domain by name were refused. Reading a relation with a column
of such a domain (or an array of it, or a composite holding it) now counts the domain's
CHECK functions among what reading the relation runs (proxies/postgres/user_code.py's
view_functions), as a base type's own I/O functions already did.

Also here, as regression checks of the sweep that found it: reads that write, and settings
that change how the server reads SQL, refused to a reader.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, RawClient
from pg_probe_stack import arena_fixture, assert_read_refused_unrun, code_ran, probe_client

pytestmark = pytest.mark.integration

arena = arena_fixture()
client = probe_client("p40")
DENIED = "denied by policy"
MARKER = "p40-code-ran"

DOMAIN_SETUP = f"""
CREATE FUNCTION public.p40_check(int) RETURNS bool LANGUAGE plpgsql AS $$
  BEGIN RAISE NOTICE 'p40 check ran on %', $1;
  PERFORM set_config('application_name', '{MARKER}', false); RETURN true; END $$;
CREATE DOMAIN public.p40_dom AS int CHECK (public.p40_check(VALUE));
CREATE TYPE public.p40_pair AS (d p40_dom);
CREATE TABLE public.p40_dt (id int, d p40_dom);
CREATE TABLE public.p40_arr (id int, ds p40_dom[]);
CREATE TABLE public.p40_comp (id int, p p40_pair);
INSERT INTO public.p40_dt VALUES (1, 1);
INSERT INTO public.p40_arr VALUES (1, '{{1}}');
INSERT INTO public.p40_comp VALUES (1, ROW(1));
CREATE VIEW public.p40_view AS SELECT id, d FROM public.p40_dt;
CREATE DOMAIN public.p40_plain AS int CHECK (VALUE > 0);
CREATE TABLE public.p40_plain_t (id int, d p40_plain);
INSERT INTO public.p40_plain_t VALUES (1, 1);
"""


@pytest.fixture(scope="module")
def domains(arena: Arena) -> Iterator[None]:
    with arena.admin() as admin:
        admin.execute(DOMAIN_SETUP)
    yield
    with arena.admin() as admin:
        admin.execute(
            "DROP VIEW public.p40_view;"
            " DROP TABLE public.p40_dt, public.p40_arr, public.p40_comp, public.p40_plain_t;"
            " DROP TYPE public.p40_pair; DROP DOMAIN public.p40_dom, public.p40_plain;"
            " DROP FUNCTION public.p40_check(int)"
        )


UNNAMED_COERCIONS = {
    "array_append": "SELECT array_append(array_agg(d), '5') FROM p40_dt",
    "array_position": "SELECT array_position(array_agg(d), '9') FROM p40_dt",
    "array_concat": "SELECT array_agg(d) || '{11}' FROM p40_dt",
    "array_equality": "SELECT array_agg(d) = '{13}' FROM public.p40_dt",
    "array_sublink": "SELECT ARRAY(SELECT d FROM p40_dt) || '{11}'",
    "array_column": "SELECT ds || '{7}' FROM p40_arr",
    "composite_column": "SELECT array_agg((p).d) || '{7}' FROM p40_comp",
    "through_a_view": "SELECT array_agg(d) || '{3}' FROM p40_view",
}


@pytest.mark.parametrize("groups", [("readonly",), ("readonly", "pii-readers")])
@pytest.mark.parametrize("sql", list(UNNAMED_COERCIONS.values()), ids=list(UNNAMED_COERCIONS))
def test_a_domain_check_does_not_run_for_a_reader_unnamed(
    arena: Arena, domains: None, groups: tuple[str, ...], sql: str
) -> None:
    assert_read_refused_unrun(arena, groups, MARKER, sql)


def test_a_domain_without_the_databases_code_stays_readable(arena: Arena, domains: None) -> None:
    c: RawClient = client(arena, ("readonly",))
    try:
        answer = c.query("SELECT array_agg(d) || '{5}' FROM p40_plain_t")
        assert not answer.errors, answer.errors
        assert not code_ran(answer, MARKER), answer.messages
    finally:
        c.close()


READS_THAT_WRITE = {
    "nextval": "SELECT nextval('adv_seq')",
    "select_into": "SELECT * INTO p40_new FROM orders",
    "explain_analyze": "EXPLAIN ANALYZE DELETE FROM orders",
    "advisory_lock": "SELECT pg_advisory_lock(1)",
    "notify": "SELECT pg_notify('c', 'x')",
    "query_to_xml": "SELECT query_to_xml('DELETE FROM orders RETURNING 1', true, false, '')",
    "terminate": "SELECT pg_terminate_backend(1)",
    "stat_reset": "SELECT pg_stat_reset()",
    "lo_import": "SELECT lo_import('/etc/hostname')",
    "lock": "LOCK TABLE orders IN ACCESS SHARE MODE",
    "vacuum": "VACUUM orders",
    "begin_read_write": "BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE",
    "read_write_default": "SET default_transaction_read_only = 'of'",
    "client_encoding": "SET client_encoding = 'SJIS'",
    "string_escapes": "SELECT set_config(U&'standard\\005fconforming_strings', 'off', false)",
    "search_path": "SET search_path = pg_catalog, pg_temp",
    "replication_role": 'SET U&"session\\005freplication\\005frole" = replica',
}


def test_reads_that_write_and_lexing_settings_are_refused(arena: Arena) -> None:
    c = client(arena, ("readonly",))
    try:
        for name, sql in READS_THAT_WRITE.items():
            answer = c.query(sql)
            assert answer.errors and DENIED in answer.errors[0], (name, answer.messages)
            c.query("ROLLBACK")
        assert c.show("default_transaction_read_only") == "on"
        assert c.show("client_encoding") == "UTF8"
    finally:
        c.close()
    with arena.admin() as admin:
        assert admin.execute("SELECT last_value, is_called FROM adv_seq").fetchone() == (1, False)
        assert admin.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        assert admin.execute("SELECT to_regclass('p40_new')").fetchone() == (None,)


@pytest.fixture(scope="module")
def built_in_domain(arena: Arena, domains: None) -> Iterator[None]:
    """information_schema.yes_or_no, a domain initdb made, given the database's CHECK: the
    built-in table information_schema.sql_features has a column of it."""
    with arena.admin() as admin:
        admin.execute(
            "CREATE FUNCTION public.p40_yes(text) RETURNS bool LANGUAGE plpgsql AS $$"
            f" BEGIN RAISE NOTICE 'p40 yes ran on %', $1;"
            f" PERFORM set_config('application_name', '{MARKER}', false); RETURN true; END $$;"
            " ALTER DOMAIN information_schema.yes_or_no"
            " ADD CONSTRAINT p40_yes CHECK (public.p40_yes(VALUE))"
        )
    yield
    with arena.admin() as admin:
        admin.execute(
            "ALTER DOMAIN information_schema.yes_or_no DROP CONSTRAINT p40_yes;"
            " DROP FUNCTION public.p40_yes(text)"
        )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT array_agg(is_supported) || '{YES}' FROM information_schema.sql_features",
        "SELECT array_append(array_agg(is_supported), 'NO') FROM information_schema.sql_parts",
    ],
)
def test_a_built_in_tables_domain_given_a_check_does_not_run_it_for_a_reader(
    arena: Arena, built_in_domain: None, sql: str
) -> None:
    assert_read_refused_unrun(arena, ("readonly",), MARKER, sql)
