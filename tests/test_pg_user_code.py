"""Operators, casts and views are code: a reader runs only pg_catalog's (rego/portcullis/
postgres_user_code.rego, proxies/postgres/user_code.py).

The database here defines, as an administrator might or an extension does, an operator
`public.+(int, text)` that the server picks over pg_catalog's for `1 + 'x'::text`, and a
domain `dd` whose CHECK calls a plpgsql function, and a view (and a view over it) whose
column calls one; another database, casts made with functions between built-in types. The
functions leave a mark when they run: a notice to the client, and a custom setting of the
session, which a read-only transaction still lets them set (only a dba may read it: custom
settings are not among those readers read). Through the real proxy, on a superuser upstream
credential, with psycopg (simple protocol) and asyncpg (extended, binary), a reader's
statement that would run any is denied before it reaches the server, so no mark is left; a
dba runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest
from adversary import Arena, running_arena
from pg_probe_stack import arena_fixture

pytestmark = pytest.mark.integration

USER_CODE = """
CREATE FUNCTION public.plus_txt(a int, b text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM set_config('portcullis.ran', 'plus_txt', false); RAISE NOTICE 'ran plus_txt';
RETURN a::text || b; END $$;
CREATE OPERATOR public.+ (LEFTARG = int, RIGHTARG = text, FUNCTION = public.plus_txt);
CREATE FUNCTION public.chk(v text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM set_config('portcullis.ran', 'chk', false); RAISE NOTICE 'ran chk'; RETURN true;
END $$;
CREATE DOMAIN public.dd AS text CHECK (public.chk(VALUE));
CREATE FUNCTION public.marked(v int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN PERFORM set_config('portcullis.ran', 'marked', false); RAISE NOTICE 'ran marked';
RETURN v; END $$;
CREATE VIEW public.v_marked AS SELECT public.marked(id) AS id, name FROM customers;
CREATE VIEW public.v_over AS SELECT name FROM public.v_marked;
CREATE VIEW public.v_plain AS SELECT id, lower(name) AS name FROM customers;
CREATE EXTENSION citext;
CREATE VIEW public.v_citext AS SELECT id, name::citext AS name FROM customers;
"""


arena = arena_fixture(USER_CODE)


def ran(conn: psycopg.Connection) -> str | None:
    """What of the database's own code ran last in this session ('' or None: nothing), as a
    dba may read it."""
    row = conn.execute("SELECT current_setting('portcullis.ran', true)").fetchone()
    assert row is not None
    return row[0]


def noticed(conn: psycopg.Connection) -> list[str]:
    """The notices the server sends this connection from now on (the marks of its code)."""
    seen: list[str] = []
    conn.add_notice_handler(lambda diag: seen.append(diag.message_primary or ""))
    return seen


def refused_unrun(
    arena: Arena, who: str, groups: tuple[str, ...], sql: str, reasons: tuple[str, ...]
) -> psycopg.Connection:
    """A reader's statement is refused by the policy naming reasons, and none of the
    database's code ran (no mark); the reader's connection, still open, is returned."""
    conn = psycopg.connect(arena.dsn(arena.token(who, groups)), autocommit=True)
    marks = noticed(conn)
    with pytest.raises(psycopg.errors.Error) as refused:
        conn.execute(sql)
    assert "denied by policy" in str(refused.value)
    for reason in reasons:
        assert reason in str(refused.value)
    assert not marks  # the proxy refused it: the server never ran a line of it
    return conn


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT 1 + 'x'::text", "operator + is also defined outside pg_catalog"),
        ("SELECT id + note FROM customers", "operator + is also defined outside pg_catalog"),
        ("SELECT 1 OPERATOR(public.+) 'x'::text", "operator public.+ is not in pg_catalog"),
        ("SELECT 'x'::dd", "type dd is defined outside pg_catalog"),
        ("SELECT CAST('x' AS dd)", "type dd is defined outside pg_catalog"),
        ("SELECT '{x}'::dd[]", "type dd is defined outside pg_catalog"),
        ("SELECT '{x}'::_dd", "type _dd is defined outside pg_catalog"),
        ("SELECT 'x'::public.dd", "type public.dd is not in pg_catalog"),
        ("SELECT name FROM customers WHERE id IN (SELECT 1 + 'x'::text)", "operator +"),
        ("SELECT name FROM v_marked", "view public.v_marked runs function public.marked"),
        ("SELECT * FROM public.v_over", "view public.v_over runs function public.marked"),
        ("SELECT c.id FROM customers c JOIN v_over v ON v.name = c.name", "view public.v_over"),
    ],
)
def test_a_reader_never_runs_the_databases_operators_or_casts(
    arena: Arena, sql: str, reason: str
) -> None:
    with refused_unrun(arena, "user-code-reader", ("readonly",), sql, (reason,)) as conn:
        # the same session goes on with what pg_catalog alone runs
        assert conn.execute("SELECT name FROM customers WHERE id = 1 - 0").fetchall() is not None
        assert conn.execute("SELECT 'x'::text, 2::int8, 'y'::pg_catalog.varchar").fetchone()
        assert conn.execute("SELECT id FROM v_plain").fetchall()  # a view of pg_catalog's code
        # an installed extension's operators, types and views over them are its own
        assert conn.execute("SELECT 'a'::citext = 'A'::citext").fetchone() == (True,)
        assert conn.execute("SELECT id FROM v_citext WHERE name = 'x'").fetchall() == []


def test_the_extended_protocol_is_judged_alike(arena: Arena) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(arena.dsn(arena.token("user-code-asyncpg")))
        marks: list[str] = []
        conn.add_log_listener(lambda _conn, message: marks.append(str(message)))
        try:
            for sql, args in (("SELECT $1::dd", ("x",)), ("SELECT $1::int + $2::text", (1, "x"))):
                with pytest.raises(asyncpg.PostgresError, match="denied by policy"):
                    await conn.fetch(sql, *args)
            assert await conn.fetchval("SELECT 1") == 1
            assert not marks
        finally:
            await conn.close()

    asyncio.run(go())


def test_a_dba_runs_them(arena: Arena) -> None:
    tok = arena.token("user-code-dba", ("dba", "pii-readers"))
    with psycopg.connect(arena.dsn(tok), autocommit=True) as conn:
        marks = noticed(conn)
        assert conn.execute("SELECT 1 + 'x'::text").fetchone() == ("1x",)
        assert ran(conn) == "plus_txt"
        assert marks == ["ran plus_txt"]  # the mark readers are checked by
        assert conn.execute("SELECT 'y'::dd::text").fetchone() == ("y",)
        assert ran(conn) == "chk"
        assert conn.execute("SELECT count(*) FROM v_over").fetchone() is not None
        assert ran(conn) == "marked"


def test_the_proxy_reads_the_names_at_start_up(arena: Arena) -> None:
    """What proxies/postgres/user_code.py reads off this database: `+` (not the pg_catalog
    operators), `dd` and its array type, and nothing pg_catalog also names."""
    from proxies.postgres.user_code import USER_CODE_SQL, user_code

    with arena.admin() as admin:
        found = admin.execute(USER_CODE_SQL).fetchone()
    assert found is not None
    assert user_code([found[0]]) == {
        "user_operators": ["+"],
        "user_types": ["_dd", "dd"],
        "view_functions": {
            "public.innocent": ["public.remember"],  # the arena's own view that writes
            "public.v_marked": ["public.marked"],
            "public.v_over": ["public.marked"],  # through the view it reads
        },
        "user_functions": ["chk", "marked", "plus_txt", "remember"],
        # a write to audit_log runs its serial column's default; by name alone too
        "write_code": {
            "audit_log": {"functions": ["pg_catalog.nextval"]},
            "public.audit_log": {"functions": ["pg_catalog.nextval"]},
        },
    }
    assert user_code(['{"user_operators": [], "user_types": [], "view_functions": {}}']) == {}
    for odd in ('{"user_operators": "+"}', '{"view_functions": {"v": "f"}}', "[]",
                '{"user_casts": "text -> integer"}', '{"write_code": {"t": []}}',
                '{"write_code": {"t": {"triggers": "x"}}}'):  # fmt: skip
        with pytest.raises(ValueError):
            user_code([odd])


def test_a_catalog_that_cannot_be_read_refuses_the_session(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the facts the policy would judge the database's own code as pg_catalog's:
    when one of the start-up catalogue reads fails, the session is refused (fail closed).
    (A table made first: with the catalogue's marks those of the facts read before, a
    session takes those facts and asks no facts' question.)"""
    from proxies.postgres import catalog_watch
    from proxies.postgres.user_code import USER_CODE_SQL

    real = catalog_watch.session_query

    async def failing(upstream: object, sql: str, timeout: float = 5.0) -> list[str] | None:
        return None if sql.endswith(USER_CODE_SQL) else await real(upstream, sql, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(catalog_watch, "session_query", failing)
    with arena.admin() as admin:
        admin.execute("CREATE TABLE user_code_unread_marker (id int)")
    try:
        with pytest.raises(psycopg.OperationalError, match="upstream catalog could not be read"):
            psycopg.connect(arena.dsn(arena.token("user-code-unread")), autocommit=True)
        monkeypatch.setattr(catalog_watch, "session_query", real)
        with psycopg.connect(arena.dsn(arena.token("user-code-unread")), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        with arena.admin() as admin:
            admin.execute("DROP TABLE user_code_unread_marker")


CASTS = """
CREATE FUNCTION public.text_to_int(v text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'ran text_to_int'; RETURN 4242; END $$;
CREATE CAST (text AS int4) WITH FUNCTION public.text_to_int(text);
CREATE FUNCTION public.date_to_int(v date) RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'ran date_to_int'; RETURN 777; END $$;
CREATE CAST (date AS int4) WITH FUNCTION public.date_to_int(date) AS IMPLICIT;
"""
TEXT_TO_INT = "text -> integer by public.text_to_int (explicit)"
DATE_TO_INT = "date -> integer by public.date_to_int (implicit)"


@pytest.fixture(scope="module")
def cast_arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    """A database where a superuser added casts between built-in types: text to integer
    (which has no pg_cast row of its own) and an implicit one from date to integer."""
    with running_arena(tmp_path_factory.mktemp("casts")) as gateway:
        with gateway.admin() as admin:
            admin.execute(CASTS)
        yield gateway


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT '5'::text::int4",  # names only pg_catalog's types
        "SELECT CAST('5'::text AS integer)",
        "SELECT abs(current_date)",  # the implicit cast, named nowhere
        "SELECT id FROM customers",
        "SELECT 1",
    ],
)
def test_a_database_with_its_own_casts_denies_readers_every_statement(
    cast_arena: Arena, sql: str
) -> None:
    reasons = (f"defines the cast {DATE_TO_INT}", f"defines the cast {TEXT_TO_INT}")
    refused_unrun(cast_arena, "cast-reader", ("pii-readers",), sql, reasons).close()


def test_the_casts_run_for_a_dba_and_are_read_at_start_up(cast_arena: Arena) -> None:
    """The control: the casts are live on the server (a dba's statements run them), and
    the proxy's start-up read names them."""
    from proxies.postgres.user_code import USER_CODE_SQL, user_code

    tok = cast_arena.token("cast-dba", ("dba", "pii-readers"))
    with psycopg.connect(cast_arena.dsn(tok), autocommit=True) as conn:
        marks = noticed(conn)
        assert conn.execute("SELECT '5'::text::int4").fetchone() == (4242,)
        assert conn.execute("SELECT abs(current_date)").fetchone() == (777,)
        assert marks == ["ran text_to_int", "ran date_to_int"]
    with cast_arena.admin() as admin:
        found = admin.execute(USER_CODE_SQL).fetchone()
    assert found is not None
    assert user_code([found[0]])["user_casts"] == [DATE_TO_INT, TEXT_TO_INT]


def test_an_extensions_own_casts_are_not_counted(arena: Arena) -> None:
    """citext (installed in the first arena) brings casts made with functions: CREATE
    EXTENSION is a superuser's reviewed act, and its casts are not volatile."""
    from proxies.postgres.user_code import USER_CODE_SQL, user_code

    with arena.admin() as admin:
        made = admin.execute(
            "SELECT count(*) FROM pg_cast c JOIN pg_depend d ON d.objid = c.oid"
            " AND d.classid = 'pg_cast'::regclass AND d.deptype = 'e'"
        ).fetchone()
        found = admin.execute(USER_CODE_SQL).fetchone()
    assert made is not None and made[0] > 0
    assert found is not None and "user_casts" not in user_code([found[0]])


PLANTED = """
CREATE FUNCTION pg_catalog.lower(v int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'ran planted lower'; RETURN 'planted'; END $$;
CREATE FUNCTION public.plus_planted(a int, b text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'ran planted +'; RETURN 'planted'; END $$;
CREATE OPERATOR pg_catalog.+ (LEFTARG = int, RIGHTARG = text, FUNCTION = public.plus_planted);
CREATE FUNCTION pg_catalog.planted_check(v text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'ran planted check'; RETURN true; END $$;
CREATE DOMAIN pg_catalog.planted_dd AS text CHECK (pg_catalog.planted_check(VALUE));
CREATE VIEW public.v_planted AS SELECT pg_catalog.lower(id) AS l FROM orders;
"""


@pytest.fixture(scope="module")
def planted_arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    """A database where a superuser put code into pg_catalog itself: an overload of
    `lower`, an operator `+`, a domain, and a view calling the overload."""
    with running_arena(tmp_path_factory.mktemp("planted")) as gateway:
        with gateway.admin() as admin:
            admin.execute(PLANTED)
        yield gateway


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT lower(5)", "function lower is also defined"),
        ("SELECT pg_catalog.lower(5)", "function lower is also defined"),
        ("SELECT 1 + 'x'::text", "operator + is also defined"),
        ("SELECT 'x'::planted_dd", "type planted_dd is defined outside pg_catalog"),
        ("SELECT l FROM v_planted", "runs function pg_catalog.lower (created after initdb)"),
    ],
)
def test_code_planted_in_pg_catalog_is_not_pg_catalogs_own(
    planted_arena: Arena, sql: str, reason: str
) -> None:
    """Built-in means made by initdb, not found in the pg_catalog schema."""
    with refused_unrun(planted_arena, "planted-reader", ("pii-readers",), sql, (reason,)) as c:
        assert c.execute("SELECT id FROM orders").fetchall() is not None


def test_the_planted_code_runs_for_a_dba(planted_arena: Arena) -> None:
    tok = planted_arena.token("planted-dba", ("dba", "pii-readers"))
    with psycopg.connect(planted_arena.dsn(tok), autocommit=True) as conn:
        marks = noticed(conn)
        assert conn.execute("SELECT lower(5), 1 + 'x'::text").fetchone() == ("planted", "planted")
        assert conn.execute("SELECT 'x'::planted_dd::text").fetchone() == ("x",)
        assert sorted(set(marks)) == ["ran planted +", "ran planted check", "ran planted lower"]
