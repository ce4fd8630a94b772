"""Probe P20 (helper pgattack6) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

Operator families the database made. A type's default operator class (its family) is
what the server sorts, groups, hashes and compares its values with when the statement names
no operator: ORDER BY, DISTINCT, GROUP BY, UNION, a window's RANGE offset. A superuser may
give a built-in type that has none one of their own (json has no btree class, money no hash
class: CREATE OPERATOR CLASS ... DEFAULT FOR TYPE json USING btree ... FUNCTION 1
public.f), or add to a built-in family (ALTER OPERATOR FAMILY pg_catalog.text_ops USING
btree ADD FUNCTION 3 (text, int4) public.f: the in_range of `RANGE BETWEEN 1 PRECEDING`),
or write a built-in family's row again (UPDATE pg_amproc). The catalogue facts followed
operator classes only where an index or a partition key names them, so a reader's
`SELECT DISTINCT total::money FROM orders` ran the database's PL/pgSQL (a set_config of
application_name here; as the superuser, anything). Such a family's members made or written
since initdb, when their function is the database's (or volatile), are now listed among
user_casts ("json <-> json by public.f (btree operator family ...)"): which statements
apply them is not in their text, so every statement of a reader, and of a dba outside
pii-readers, is denied until the team lists the entry in postgres.reviewed_casts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from adversary import Answer, Arena, ready_client, running_arena
from pg_probe_stack import code_ran

pytestmark = pytest.mark.integration

# each function says it ran (a NOTICE) and changes the session (application_name, which the
# server then reports): the database's code running for a statement that names none of it
MADE = """
CREATE FUNCTION public.p20_ran(what text) RETURNS void LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'p20 ran %', what; PERFORM set_config('application_name', 'p20', false);
  END $$;
CREATE FUNCTION public.p20_jcmp(json, json) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN PERFORM public.p20_ran('jcmp'); RETURN bttextcmp($1::text, $2::text); END $$;
CREATE FUNCTION public.p20_jlt(json, json) RETURNS bool LANGUAGE sql IMMUTABLE
  AS $$ SELECT $1::text < $2::text $$;
CREATE FUNCTION public.p20_jle(json, json) RETURNS bool LANGUAGE sql IMMUTABLE
  AS $$ SELECT $1::text <= $2::text $$;
CREATE FUNCTION public.p20_jeq(json, json) RETURNS bool LANGUAGE sql IMMUTABLE
  AS $$ SELECT $1::text = $2::text $$;
CREATE FUNCTION public.p20_jge(json, json) RETURNS bool LANGUAGE sql IMMUTABLE
  AS $$ SELECT $1::text >= $2::text $$;
CREATE FUNCTION public.p20_jgt(json, json) RETURNS bool LANGUAGE sql IMMUTABLE
  AS $$ SELECT $1::text > $2::text $$;
CREATE OPERATOR public.< (leftarg = json, rightarg = json, function = public.p20_jlt);
CREATE OPERATOR public.<= (leftarg = json, rightarg = json, function = public.p20_jle);
CREATE OPERATOR public.= (leftarg = json, rightarg = json, function = public.p20_jeq);
CREATE OPERATOR public.>= (leftarg = json, rightarg = json, function = public.p20_jge);
CREATE OPERATOR public.> (leftarg = json, rightarg = json, function = public.p20_jgt);
CREATE OPERATOR CLASS public.p20_json_ops DEFAULT FOR TYPE json USING btree AS
  OPERATOR 1 public.<, OPERATOR 2 public.<=, OPERATOR 3 public.=, OPERATOR 4 public.>=,
  OPERATOR 5 public.>, FUNCTION 1 public.p20_jcmp(json, json);
CREATE FUNCTION public.p20_mhash(money) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN PERFORM public.p20_ran('mhash'); RETURN hashtext($1::text); END $$;
CREATE OPERATOR CLASS public.p20_money_hash DEFAULT FOR TYPE money USING hash AS
  OPERATOR 1 pg_catalog.= (money, money), FUNCTION 1 public.p20_mhash(money);
CREATE FUNCTION public.p20_inrange(text, text, int4, bool, bool) RETURNS bool
  LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM public.p20_ran('inrange'); RETURN true; END $$;
ALTER OPERATOR FAMILY pg_catalog.text_ops USING btree
  ADD FUNCTION 3 (text, int4) public.p20_inrange(text, text, int4, bool, bool);
"""
UNMADE = """
ALTER OPERATOR FAMILY pg_catalog.text_ops USING btree DROP FUNCTION 3 (text, int4);
DROP OPERATOR FAMILY public.p20_money_hash USING hash;
DROP OPERATOR FAMILY public.p20_json_ops USING btree;
DROP FUNCTION public.p20_inrange, public.p20_mhash, public.p20_jcmp CASCADE;
DROP FUNCTION public.p20_jlt, public.p20_jle, public.p20_jeq, public.p20_jge, public.p20_jgt
  CASCADE;
DROP FUNCTION public.p20_ran;
"""

# a reader's statements naming none of that code, each of which runs it on the server
READS = [
    "SELECT DISTINCT x FROM (VALUES ('1'::json), ('2'::json), ('1'::json)) v(x)",
    "SELECT x FROM (VALUES ('1'::json), ('2'::json)) v(x) ORDER BY 1",
    "SELECT '1'::json UNION SELECT '2'::json",
    "SELECT DISTINCT total::money FROM orders",
    "SELECT count(*) FROM orders GROUP BY total::money",
    "SELECT name, count(*) OVER (ORDER BY name RANGE BETWEEN 1 PRECEDING AND CURRENT ROW)"
    " FROM customers",
]
GROUPS = [("readonly",), ("dba",)]


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
        yield gateway


@pytest.fixture
def made(arena: Arena) -> Iterator[None]:
    """The database's operator families, for one test."""
    with arena.admin() as admin:
        admin.execute(MADE)
    yield
    with arena.admin() as admin:
        admin.execute(UNMADE)


def watched(arena: Arena) -> None:
    """The proxy's catalogue watch has polled once more, columns and built-in rows too."""
    watch = arena.proxy.knowledge(arena.database).catalog
    asyncio.run_coroutine_threadsafe(watch.fresh(columns=True), arena.loop).result(30)


def assert_denied_unrun(answer: Answer) -> None:
    assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
    assert "operator family" in answer.errors[0], answer.errors
    assert not code_ran(answer, "p20"), answer.messages
    assert not answer.rows


@pytest.mark.parametrize("sql", READS)
@pytest.mark.parametrize("groups", GROUPS, ids=["reader", "masked dba"])
def test_a_default_operator_family_the_database_made_runs_in_no_read(
    arena: Arena, made: None, groups: tuple[str, ...], sql: str
) -> None:
    c = ready_client(arena, groups, "p20")
    try:
        assert_denied_unrun(c.query(sql))
    finally:
        c.close()


@pytest.mark.parametrize("sql", READS[::3])
def test_a_family_made_while_the_session_is_open_runs_in_no_read(arena: Arena, sql: str) -> None:
    c = ready_client(arena, ("readonly",), "p20")
    try:
        assert not c.query("SELECT 1").errors
        with arena.admin() as admin:
            admin.execute(MADE)
        assert_denied_unrun(c.query(sql))
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute(UNMADE)


# a built-in family's own row written again: money's btree comparison made the database's
# (a new session reads it; an open one once the watch has polled)
MCMP = """
CREATE FUNCTION public.p20_mcmp(money, money) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN RAISE NOTICE 'p20 ran mcmp'; RETURN pg_catalog.cash_cmp($1, $2); END $$;
"""
REPLACE_CASH_CMP = """
UPDATE pg_catalog.pg_amproc SET amproc = 'public.p20_mcmp'::regproc
  WHERE amprocfamily = (SELECT f.oid FROM pg_opfamily f JOIN pg_am a ON a.oid = f.opfmethod
                        WHERE f.opfname = 'money_ops' AND a.amname = 'btree')
  AND amprocnum = 1;
"""
RESTORE_CASH_CMP = """
UPDATE pg_catalog.pg_amproc SET amproc = 'pg_catalog.cash_cmp'::regproc
  WHERE amproc = 'public.p20_mcmp'::regproc;
DROP FUNCTION public.p20_mcmp;
"""


@pytest.mark.parametrize("opened", ["after", "before"])
def test_a_built_in_familys_row_written_again_runs_in_no_read(arena: Arena, opened: str) -> None:
    """Opened before: the function was made before the session, the row written while it
    is open (nothing made since initdb changes: the poll's read of built-in rows tells)."""
    with arena.admin() as admin:
        admin.execute(MCMP)
    c = ready_client(arena, ("readonly",), "p20") if opened == "before" else None
    try:
        with arena.admin() as admin:
            admin.execute(REPLACE_CASH_CMP)
        if c is None:
            c = ready_client(arena, ("readonly",), "p20")
        else:
            watched(arena)
        answer = c.query("SELECT total::money FROM orders ORDER BY 1")
        assert_denied_unrun(answer)
        assert "money <-> money by public.p20_mcmp" in answer.errors[0]
    finally:
        if c is not None:
            c.close()
        with arena.admin() as admin:
            admin.execute(RESTORE_CASH_CMP)


def test_the_code_runs_for_a_pii_reading_dba_and_is_read_at_start_up(
    arena: Arena, made: None
) -> None:
    """The control: the families are live on the server, and the start-up read names them."""
    from proxies.postgres.user_code import USER_CODE_SQL, user_code

    tok = arena.token("p20-dba@example.com", ("dba", "pii-readers"))
    with psycopg.connect(arena.dsn(tok), autocommit=True) as conn:
        marks: list[str] = []
        conn.add_notice_handler(lambda d: marks.append(str(d.message_primary)))
        for sql in READS[::3] + READS[-1:]:
            conn.execute(sql).fetchall()
        assert {"p20 ran jcmp", "p20 ran mhash", "p20 ran inrange"} == set(marks)
    with arena.admin() as admin:
        found = admin.execute(USER_CODE_SQL).fetchone()
    assert found is not None
    casts = user_code([found[0]])["user_casts"]
    for listed in (
        "json <-> json by public.p20_jcmp (btree operator family public.p20_json_ops",
        "money <-> money by public.p20_mhash (hash operator family public.p20_money_hash",
        "text <-> integer by public.p20_inrange (btree operator family pg_catalog.text_ops",
    ):
        assert any(c.startswith(listed) for c in casts), casts
    # the comparison operators run SQL functions the database made: listed too (only a
    # family's members, never pg_catalog's own operators the class reuses)
    assert not any("pg_catalog.cash" in c or "by pg_catalog." in c for c in casts), casts


def test_without_them_a_reader_sorts_groups_and_hashes_as_before(arena: Arena) -> None:
    """No family of the database's: the same statements run (json has no ordering, text no
    RANGE offset: the server's own errors), extensions' families (citext, btree_gist) are
    not counted."""
    from proxies.postgres.user_code import USER_CODE_SQL, user_code

    with arena.admin() as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS citext")
        admin.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        found = admin.execute(USER_CODE_SQL).fetchone()
    assert found is not None and "user_casts" not in user_code([found[0]])
    c = ready_client(arena, ("readonly",), "p20")
    try:
        for sql in READS[3:5]:
            answer = c.query(sql)
            assert not answer.errors and answer.rows, (sql, answer.messages)
        for sql, error in (
            (READS[1], "could not identify an ordering operator"),
            (READS[5], "RANGE with offset PRECEDING/FOLLOWING is not supported"),
        ):
            answer = c.query(sql)
            assert answer.errors and error in answer.errors[0], answer.messages
    finally:
        c.close()
