"""Probe P18 (helper pgattack4) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

Built-in code changed in place. The catalogue facts (proxies/postgres/user_code.py) and the
watch's fingerprint (catalog_watch.py) counted only rows made after initdb (an OID from
16384 up). A superuser's CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp) ... LANGUAGE
plpgsql keeps the built-in's OID: the reader's `SELECT age(timestamp '2020-01-01')` ran
their code as the built-in it was judged to be, as did an UPDATE of pg_proc.prosrc of an SQL
built-in (obj_description), an UPDATE of a built-in cast's castfunc (`5::int8` ran
public.noisy_cast) and CREATE OR REPLACE VIEW pg_catalog.pg_roles calling a function (a
NOTICE, or the INSERT the read-only default stopped). A built-in row written after initdb
(its xmin newer than template0's pg_database row, the last thing initdb makes) now counts
as the database's own code: such a function's name is judged as a shadowed built-in, such
a cast as a user cast, such a view's functions as a view's; and the watch's poll
fingerprints those rows too, so a change made while the session is open is judged alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import psycopg
import pytest
from adversary import (
    SUPERUSER,
    Answer,
    Arena,
    RawClient,
    bind,
    execute,
    parse,
    ready_client,
    running_arena,
    sync,
)
from pg_harness import running_gateway
from pg_probe_stack import (
    SAM,
    arena_fixture,
    pending_approval,
    reader_fixture,
)

from proxies.postgres import codec

pytestmark = pytest.mark.integration

arena = arena_fixture(
    """
CREATE FUNCTION public.noisy() RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'noisy ran'; RETURN 1; END $$;
"""
)
reader = reader_fixture("p18")


def ran(answer: Answer) -> bool:
    """The superuser's code ran: its NOTICE (withheld or not) came back."""
    return any(isinstance(m, codec.NoticeResponse) for m in answer.messages)


def admin_makes(arena: Arena, *sql: str) -> None:
    with arena.admin() as admin:
        for statement in sql:
            admin.execute(statement)


def watched(arena: Arena) -> object:
    """The proxy's catalogue watch has polled once more (what it does on its own within
    POLL_SECONDS): no waiting on a clock here. Its facts, None when it could not read them."""
    watch = arena.proxy.knowledge(arena.database).catalog
    return asyncio.run_coroutine_threadsafe(watch.fresh(columns=True), arena.loop).result(30)


def denied(answer: Answer) -> bool:
    return bool(answer.errors) and "denied by policy" in answer.errors[0] and not ran(answer)


# a built-in changed in place and the reader's statement that runs it (its row stays
# written after initdb: each case changes a built-in no other case uses)
CHANGED_IN_PLACE = [
    (
        "CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp) RETURNS interval LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE NOTICE 'age ran'; RETURN interval '1 day'; END $$",
        "SELECT age(timestamp '2020-01-01')",
    ),
    (
        "UPDATE pg_catalog.pg_proc SET prosrc = 'SELECT public.noisy()::text'"
        " WHERE oid = 'pg_catalog.obj_description(oid)'::regprocedure",
        "SELECT obj_description(1259)",
    ),
    (
        "DO $$ BEGIN EXECUTE 'CREATE OR REPLACE VIEW pg_catalog.pg_roles AS SELECT * FROM ('"
        " || rtrim(pg_get_viewdef('pg_catalog.pg_roles'::regclass), '; ')"
        " || ') r WHERE public.noisy() = 1'; END $$",
        "SELECT rolname FROM pg_roles",
    ),
    (
        "DO $$ BEGIN EXECUTE 'CREATE OR REPLACE VIEW pg_catalog.pg_group AS SELECT * FROM ('"
        " || rtrim(pg_get_viewdef('pg_catalog.pg_group'::regclass), '; ')"
        " || ') r WHERE pg_catalog.set_config(''application_name'', ''p18'', false) <> '''''"
        "; END $$",
        "SELECT groname FROM pg_group",
    ),
]


@pytest.mark.parametrize(("change", "sql"), CHANGED_IN_PLACE)
def test_a_built_in_changed_in_place_is_not_judged_as_the_built_in(
    arena: Arena, change: str, sql: str
) -> None:
    """Changed before the session started: its start-up facts know."""
    admin_makes(arena, change)
    c = ready_client(arena, ("readonly",), "p18")
    try:
        answer = c.query(sql)
        assert denied(answer), answer.messages
        assert c.show("application_name") != "p18"
    finally:
        c.close()


# code a view runs with nothing in its query naming it: a domain's CHECK (a cast to the
# domain in the view; a CHECK a superuser added to information_schema's cardinal_number),
# and a built-in function information_schema's views call, replaced in place
VIEWS_RUNNING_CHANGED_CODE = [
    (
        [
            "CREATE DOMAIN public.p18_checked AS int CHECK (public.noisy() = 1)",
            "CREATE VIEW public.p18_dv AS SELECT id::public.p18_checked AS id FROM orders",
        ],
        ["DROP VIEW public.p18_dv", "DROP DOMAIN public.p18_checked"],
        "SELECT * FROM p18_dv",
    ),
    (
        [
            "CREATE DOMAIN public.p18_held AS int CHECK (public.noisy() = 1)",
            "CREATE TYPE public.p18_holder AS (a public.p18_held)",
            "CREATE VIEW public.p18_hv AS SELECT CAST(json_populate_record("
            "NULL::public.p18_holder, '{\"a\": 1}') AS text) AS c FROM orders",
        ],
        [
            "DROP VIEW public.p18_hv",
            "DROP TYPE public.p18_holder",
            "DROP DOMAIN public.p18_held",
        ],
        "SELECT * FROM p18_hv",
    ),
    (
        [
            "CREATE OR REPLACE FUNCTION pg_catalog.bit_length(text) RETURNS int LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE NOTICE 'bit_length ran'; RETURN 1; END $$",
            "CREATE VIEW public.p18_bv AS SELECT id, bit_length('x') AS b FROM orders",
        ],
        ["DROP VIEW public.p18_bv"],
        "SELECT id FROM p18_bv",
    ),
    (
        # a view whose own name holds a dot, named without its schema: the facts key it
        # "public.x.dotted", which the statement's `x.dotted` never matched
        ['CREATE VIEW public."p18.dotted" AS SELECT id, public.noisy() AS n FROM orders'],
        ['DROP VIEW public."p18.dotted"'],
        'SELECT * FROM "p18.dotted"',
    ),
    (
        [
            "ALTER DOMAIN information_schema.cardinal_number"
            " ADD CONSTRAINT p18 CHECK (public.noisy() = 1)"
        ],
        ["ALTER DOMAIN information_schema.cardinal_number DROP CONSTRAINT p18"],
        "SELECT ordinal_position FROM information_schema.columns WHERE table_name = 'orders'",
    ),
    (
        [
            "CREATE OR REPLACE FUNCTION information_schema._pg_char_max_length(typid oid,"
            " typmod int4) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS"
            " $$ BEGIN RAISE NOTICE 'charmax ran'; RETURN NULL; END $$"
        ],
        [],
        "SELECT character_maximum_length FROM information_schema.columns"
        " WHERE table_name = 'orders'",
    ),
]


@pytest.mark.parametrize(("made", "undone", "sql"), VIEWS_RUNNING_CHANGED_CODE)
def test_a_view_running_a_domains_check_or_a_changed_built_in_is_judged_so(
    arena: Arena, made: list[str], undone: list[str], sql: str
) -> None:
    """view_functions followed a view's calls, operators, row security and index code,
    not the CHECKs of the domains it casts to, nor what a built-in view calls: the reader's
    statement ran public.noisy (a NOTICE) though nothing in it or the view's query names
    it."""
    admin_makes(arena, *made)
    c = ready_client(arena, ("readonly",), "p18")
    try:
        answer = c.query(sql)
        assert denied(answer), answer.messages
        assert "runs function" in answer.errors[0]
    finally:
        c.close()
        admin_makes(arena, *undone)


def test_a_built_in_changed_while_the_session_is_open_is_judged_so(
    arena: Arena, reader: RawClient
) -> None:
    sql = "SELECT array_to_json(ARRAY[1])"
    for _ in range(2):  # decided, then reused
        assert not reader.query(sql).errors
    admin_makes(
        arena,
        "CREATE OR REPLACE FUNCTION pg_catalog.array_to_json(anyarray) RETURNS json"
        " LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'json ran'; RETURN '1'; END $$",
    )
    watched(arena)
    answer = reader.query(sql)
    assert denied(answer), answer.messages


def test_a_built_in_cast_changed_in_place_is_a_cast_of_the_database(tmp_path: Path) -> None:
    """pg_cast's int4 -> int8 row given a function of the superuser's: `5::int8` ran it."""
    with running_arena(tmp_path) as arena:
        admin_makes(
            arena,
            "CREATE FUNCTION public.noisy_cast(int4) RETURNS int8 LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE NOTICE 'cast ran'; RETURN 1; END $$",
        )
        c = ready_client(arena, ("readonly",), "p18")
        try:
            assert not c.query("SELECT 5::int8").errors
            admin_makes(
                arena,
                "UPDATE pg_catalog.pg_cast SET castfunc = 'public.noisy_cast(int4)'::regprocedure"
                " WHERE castsource = 'int4'::regtype AND casttarget = 'int8'::regtype",
            )
            watched(arena)
            answer = c.query("SELECT 5::int8")
            assert denied(answer), answer.messages
            # a built-in row written in place refuses the facts (p31): denied, unjudged
            assert "catalogue could not be read" in answer.errors[0], answer.errors
        finally:
            c.close()


def test_a_database_whose_built_ins_are_untouched_has_none_changed(arena: Arena) -> None:
    """No built-in row of a database made from template1 counts as written since initdb."""
    from proxies.postgres.user_code import AFTER_INITDB

    with arena.admin() as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_catalog.pg_proc WHERE oid < 16384"
            f" AND xmin::text::bigint > {AFTER_INITDB}"
            " AND oid NOT IN ('pg_catalog.age(timestamp)'::regprocedure,"
            " 'pg_catalog.obj_description(oid)'::regprocedure,"
            " 'pg_catalog.array_to_json(anyarray)'::regprocedure,"
            " 'information_schema._pg_char_max_length(oid, int4)'::regprocedure,"
            " 'pg_catalog.bit_length(text)'::regprocedure)"
        ).fetchone()
    assert row == (0,)


def elsewhere(sql: str) -> None:
    """sql run by the superuser from another database (postgres)."""
    with psycopg.connect(
        f"postgresql://{SUPERUSER}@127.0.0.1:5432/postgres", autocommit=True
    ) as admin:
        admin.execute(sql)


def watch_pid(arena: Arena) -> int:
    """The backend of the proxy's catalogue watch (its connection's BackendKeyData)."""
    upstream = arena.proxy.knowledge(arena.database).catalog._upstream
    assert upstream is not None and upstream.key is not None
    return upstream.key.pid


def test_a_session_whose_catalogue_cannot_be_read_is_refused_until_it_can(
    arena: Arena, reader: RawClient
) -> None:
    """The watch's connection killed and the server refusing a new one: a session judged
    with the facts it had (a verdict reused, a new statement decided, a prepared statement
    bound), which code made meanwhile could have outdated. Now it is refused, saying why,
    until the catalogue is read again."""
    for _ in range(2):  # decided, then reused
        assert not reader.query("SELECT id FROM orders").errors
    assert not reader.send(parse("s18", "SELECT id FROM orders"), sync()).errors
    try:
        elsewhere(f'ALTER DATABASE "{arena.database}" ALLOW_CONNECTIONS false')
        elsewhere(f"SELECT pg_terminate_backend({watch_pid(arena)})")
        assert watched(arena) is None
        for answer in (
            reader.query("SELECT id FROM orders"),
            reader.query("SELECT customer_id FROM orders"),
            reader.send(bind("", "s18"), execute(), sync()),
        ):
            assert answer.errors and "catalogue could not be read" in answer.errors[0], (
                answer.messages
            )
            assert not answer.rows
    finally:
        elsewhere(f'ALTER DATABASE "{arena.database}" ALLOW_CONNECTIONS true')
    watched(arena)
    assert reader.query("SELECT id FROM orders").rows


async def test_an_approval_given_while_the_code_changed_is_asked_again(tmp_path: Path) -> None:
    """Attack (a dba outside pii-readers, for whom a write running the database's code
    needs approval): TRUNCATE orders waits for a person, and while it waits (minutes, in
    practice) a superuser makes a trigger on orders. The catalogue was asked only when the
    statement came, so the approval given for the table as it was ran the TRUNCATE and the
    trigger the approver never saw. Now an approved statement's catalogue is asked again
    after the wait: decided again with the newer facts, for other reasons than the approver
    read, it is a new request (pdp.api.approval_rpc.still_holds); nobody decides it, so it
    is refused and the decoy order stays."""
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 3}) as gw:
        with gw.admin() as admin:
            admin.execute("INSERT INTO orders VALUES (-1, 1, 9.5)")
        conn = await asyncpg.connect(gw.dsn(gw.token("dave@example.com", ("dba",))))
        try:
            first = asyncio.ensure_future(conn.execute("TRUNCATE orders"))
            asked = await pending_approval(gw, set())
            with gw.admin() as admin:
                admin.execute(
                    "CREATE FUNCTION public.p18_tr() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE NOTICE 'trigger ran'; RETURN NULL; END $$"
                )
                admin.execute(
                    "CREATE TRIGGER p18 BEFORE TRUNCATE ON orders"
                    " FOR EACH STATEMENT EXECUTE FUNCTION public.p18_tr()"
                )
            await gw.pdp.approvals.decide(asked, SAM, True, "the table as it is now")
            await pending_approval(gw, {asked})
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await asyncio.wait_for(first, 15)
        finally:
            await conn.close()
        with gw.admin() as admin:
            kept = admin.execute("SELECT count(*) FROM public.orders WHERE id = -1").fetchone()
        assert kept == (1,)


def test_the_watch_connects_without_the_settings_a_client_chose(arena: Arena) -> None:
    """The watch, which every session of the database shares, connected with the start-up
    parameters of the last session to open, the settings its client chose included: a
    reader's statement_timeout (shorter than the policy's), lock_timeout, or
    default_transaction_isolation=serializable with default_transaction_deferrable=on (a
    read-only serializable deferrable transaction waits for a safe snapshot while any
    serializable writer runs) made its questions fail or wait past their 5 s, and every
    failure refuses every session's statements (the watch lost). It now connects with the
    session's credentials and the policy's pins alone. DateStyle (reported by the server
    to the watch's connection) shows which settings it got."""
    tok = arena.token("p18-settings@example.com", ("readonly",))
    chose = "-c DateStyle=German -c default_transaction_isolation=serializable"
    c = RawClient(arena.port, tok, arena.database, options=chose)
    try:
        assert c.ready, c.startup.messages
        assert c.show("DateStyle") == "German, DMY"
        elsewhere(f"SELECT pg_terminate_backend({watch_pid(arena)})")
        watched(arena)  # the killed connection's question fails
        assert watched(arena) is not None  # connected again, with the last session's lease
        watch = arena.proxy.knowledge(arena.database).catalog._upstream
        assert watch is not None
        styles = [p.value for p in watch.parameters if p.name == "DateStyle"]
        assert styles and "German" not in styles[0], styles
    finally:
        c.close()
