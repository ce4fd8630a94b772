"""Probe P17 (helper pgattack3) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

Code made while a session is open. What the policy knows of the database's own code (the
built-in names it shadows, the functions its views run, its operators, types and casts:
proxies/postgres/user_code.py) was read once, when the session started. A superuser who
then made a view that calls a function, a function in pg_catalog under a built-in's name
(`pg_catalog.lower(integer)`), an operator of their own or a view replaced by one calling
code, left every open session judging with the old facts: the reader's `SELECT * FROM
late_view`, `SELECT lower(5)`, `SELECT 1 + 'x'::text` ran that code as the superuser (a
NOTICE 'ran' below; a write was stopped only by the read-only default, a COPY TO PROGRAM
or a read of customers.password in the function would not have been), and a prepared
statement or cached verdict allowed before kept running a view replaced since.

Now the proxy keeps one catalogue watch (proxies/postgres/catalog_watch.py): a fingerprint
of the catalogue rows made after initdb, asked alongside every decision the PDP makes and
every POLL_SECONDS, the facts read again when it moved. A session takes newer facts before
its next statement; prepared statements allowed with the old ones are asked again at their
next Bind, and cached verdicts are keyed by the facts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from adversary import Answer, Arena, RawClient, bind, execute, parse, ready_client, sync
from pg_probe_stack import arena_fixture

from proxies.postgres import codec

pytestmark = pytest.mark.integration

arena = arena_fixture(
    """
CREATE FUNCTION public.noisy() RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'noisy ran'; RETURN 1; END $$;
CREATE VIEW public.plain_v AS SELECT id FROM orders;
CREATE VIEW public.plain_w AS SELECT id FROM orders;
"""
)


@pytest.fixture
def reader(arena: Arena) -> Iterator[RawClient]:
    c = ready_client(arena, ("readonly",), "p17")
    yield c
    c.close()


def ran(answer: Answer) -> bool:
    """The superuser's code ran: its NOTICE (withheld or not) or its rows came back."""
    return any(isinstance(m, codec.NoticeResponse) for m in answer.messages) or bool(
        answer.rows and not answer.errors
    )


def admin_makes(arena: Arena, *sql: str) -> None:
    with arena.admin() as admin:
        for statement in sql:
            admin.execute(statement)


def watched(arena: Arena, columns: bool = False) -> None:
    """The proxy's catalogue watch has asked once more (what its poll does on its own
    within POLL_SECONDS, `columns` too): no waiting on a clock here."""
    watch = arena.proxy.knowledge(arena.database).catalog
    asked = watch.fresh(columns=True) if columns else watch.fresh()
    asyncio.run_coroutine_threadsafe(asked, arena.loop).result(30)


# each: what a superuser makes while the reader's session is open, and the reader's
# statement that would run it (never run before in the session)
MADE_LATER = [
    (
        [
            "CREATE FUNCTION public.late_f() RETURNS int LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE NOTICE 'late ran'; RETURN 1; END $$",
            "CREATE VIEW public.late_view AS SELECT id, public.late_f() AS r FROM orders",
        ],
        "SELECT * FROM late_view",
    ),
    (
        [
            "CREATE FUNCTION pg_catalog.lower(integer) RETURNS int LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE NOTICE 'lower ran'; RETURN 1; END $$"
        ],
        "SELECT lower(5)",
    ),
    (
        [
            "CREATE FUNCTION public.late_plus(int, text) RETURNS int LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE NOTICE 'plus ran'; RETURN 1; END $$",
            "CREATE OPERATOR public.+ (LEFTARG = int, RIGHTARG = text, FUNCTION = late_plus)",
        ],
        "SELECT 1 + 'x'::text",
    ),
    (
        ["CREATE OR REPLACE VIEW public.plain_v AS SELECT id, public.noisy() AS n FROM orders"],
        "SELECT id, n FROM plain_v",
    ),
]

TEARDOWN = [
    "DROP VIEW IF EXISTS public.late_view",
    "DROP FUNCTION IF EXISTS public.late_f()",
    "DROP FUNCTION IF EXISTS pg_catalog.lower(integer)",
    "DROP OPERATOR IF EXISTS public.+ (int, text)",
    "DROP FUNCTION IF EXISTS public.late_plus(int, text)",
    # a view's columns go only when it is made again
    "DROP VIEW public.plain_v",
    "CREATE VIEW public.plain_v AS SELECT id FROM orders",
    "DROP VIEW public.plain_w",
    "CREATE VIEW public.plain_w AS SELECT id FROM orders",
]


@pytest.fixture
def undone(arena: Arena) -> Iterator[None]:
    yield
    with arena.admin() as admin:
        for sql in TEARDOWN:
            admin.execute(sql)


@pytest.mark.parametrize(("made", "sql"), MADE_LATER)
def test_code_made_after_the_session_started_is_judged_as_code(
    arena: Arena, reader: RawClient, undone: None, made: list[str], sql: str
) -> None:
    assert not reader.query("SELECT id FROM orders").errors  # the session is open and used
    admin_makes(arena, *made)
    answer = reader.query(sql)
    assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
    assert not ran(answer), answer.messages


def test_a_prepared_statement_is_asked_again_once_its_view_runs_code(
    arena: Arena, reader: RawClient, undone: None
) -> None:
    first = reader.send(parse("s17", "SELECT * FROM plain_v"), bind("", "s17"), execute(), sync())
    assert not first.errors and len(first.rows) == 2, first.messages
    admin_makes(
        arena, "CREATE OR REPLACE VIEW public.plain_v AS SELECT id, public.noisy() AS n FROM orders"
    )
    watched(arena)
    again = reader.send(bind("", "s17"), execute(), sync())
    assert again.errors and "denied by policy" in again.errors[0], again.messages
    assert not ran(again), again.messages


def test_a_cached_verdict_is_not_reused_once_its_view_runs_code(
    arena: Arena, reader: RawClient, undone: None
) -> None:
    for _ in range(2):  # decided, then reused
        allowed = reader.query("SELECT * FROM plain_w")
        assert not allowed.errors and len(allowed.rows) == 2, allowed.messages
    admin_makes(
        arena, "CREATE OR REPLACE VIEW public.plain_w AS SELECT id, public.noisy() AS n FROM orders"
    )
    watched(arena)
    again = reader.query("SELECT * FROM plain_w")
    assert again.errors and "denied by policy" in again.errors[0], again.messages
    assert not ran(again), again.messages


def test_a_session_started_after_the_code_keeps_its_own_newer_facts(
    arena: Arena, undone: None
) -> None:
    """The watch's facts, read before the code was made, never replace a newer session's."""
    watched(arena)
    admin_makes(arena, *MADE_LATER[0][0])
    c = ready_client(arena, ("readonly",), "p17")
    try:
        answer = c.query("SELECT * FROM late_view")
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
        assert not ran(answer)
    finally:
        c.close()


def test_an_sql_prepared_statement_made_before_the_code_changed_is_not_executed(
    arena: Arena, reader: RawClient, undone: None
) -> None:
    """EXECUTE runs a PREPAREd body as the server plans it now: a view it reads replaced
    by one that calls a function (its columns alike, so the server plans it again) ran that
    function, the body judged only when it was prepared."""
    for sql in ("PREPARE p17 AS SELECT * FROM plain_w", "EXECUTE p17", "PREPARE q17 AS SELECT 1"):
        assert not reader.query(sql).errors
    admin_makes(
        arena,
        "CREATE OR REPLACE VIEW public.plain_w AS SELECT id * public.noisy() AS id FROM orders",
    )
    for sql in ("EXECUTE q17", "EXECUTE p17"):  # the first not seen before, then reused
        answer = reader.query(sql)
        assert answer.errors and "prepared before the database's code changed" in answer.errors[0]
        assert not ran(answer), answer.messages
    # prepared again, it is judged with the new facts
    answer = reader.query("PREPARE p17b AS SELECT * FROM plain_w")
    assert answer.errors and "runs function public.noisy" in answer.errors[0], answer.messages


def test_a_view_column_renamed_after_the_session_started_still_carries_its_column(
    arena: Arena, reader: RawClient
) -> None:
    """A view's column renamed while the session is open changes only pg_attribute: the
    policy's view_columns (which view column carries which table column) must follow it,
    or `nickname < 'i'` is a question about a password it no longer knows of."""
    admin_makes(arena, "CREATE VIEW public.shown AS SELECT id, password AS secret FROM customers")
    try:
        question = "SELECT count(*) FROM shown WHERE {} < 'i'"
        assert reader.query(question.format("secret")).errors  # a question about password
        admin_makes(arena, "ALTER VIEW public.shown RENAME COLUMN secret TO nickname")
        watched(arena, columns=True)
        answer = reader.query(question.format("nickname"))
        assert answer.errors and "denied by policy" in answer.errors[0], answer.rows
    finally:
        admin_makes(arena, "DROP VIEW public.shown")


def test_a_session_opening_leaves_the_others_facts_alone() -> None:
    """Facts read by a newer session of the same catalogue are not newer facts: the
    sessions open already keep theirs (and their prepared statements' verdicts)."""
    from proxies.postgres.catalog_watch import CatalogWatch, Facts

    def read(mark: str, at: float) -> Facts:
        return Facts(mark, at, "c", ("lower",), {}, {}, {})

    watch = CatalogWatch("127.0.0.1", 5432, None)
    first = read("m1", 1.0)
    watch.adopt(first)
    watch.adopt(read("m1", 2.0))
    assert watch.facts is first
    changed = read("m2", 3.0)
    watch.adopt(changed)
    assert watch.facts is changed
    watch.adopt(read("m1", 0.5))  # older: never taken back
    assert watch.facts is changed


# made in pg_catalog by a superuser; each reader statement names it by its pg_catalog name
IN_PG_CATALOG = """
CREATE FUNCTION public.p17_noisy_op(int, text) RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'op ran'; RETURN 1; END $$;
CREATE OPERATOR pg_catalog.- (LEFTARG = int, RIGHTARG = text, FUNCTION = public.p17_noisy_op);
CREATE FUNCTION public.p17_noisy_check(int) RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'check ran'; RETURN 1; END $$;
CREATE DOMAIN pg_catalog.p17_checked AS int CHECK (public.p17_noisy_check(VALUE) = 1);
"""

OUT_OF_PG_CATALOG = """
DROP OPERATOR pg_catalog.- (int, text);
DROP FUNCTION public.p17_noisy_op(int, text);
DROP DOMAIN pg_catalog.p17_checked;
DROP FUNCTION public.p17_noisy_check(int);
"""


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 OPERATOR(pg_catalog.-) 'x'::text",
        "SELECT id FROM orders WHERE id OPERATOR(pg_catalog.-) 'x'::text = 1",
        "SELECT 5::pg_catalog.p17_checked",
        "SELECT CAST(5 AS pg_catalog.p17_checked)",
        "SELECT pg_catalog.p17_checked '5'",
    ],
)
def test_code_a_superuser_made_in_pg_catalog_is_not_pg_catalogs_by_its_name(
    arena: Arena, sql: str
) -> None:
    """pg_catalog.name was trusted as built-in for operators and types: an operator or a
    domain a superuser made in pg_catalog ran its function through the qualified name
    (the unqualified name was refused as the database's own code)."""
    admin_makes(arena, IN_PG_CATALOG)
    c = ready_client(arena, ("readonly",), "p17")
    try:
        answer = c.query(sql)
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
        assert not ran(answer), answer.messages
        assert not c.query("SELECT 1 OPERATOR(pg_catalog.+) 2, 5::pg_catalog.int4").errors
    finally:
        c.close()
        admin_makes(arena, OUT_OF_PG_CATALOG)
