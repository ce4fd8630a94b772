"""Probe P10's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column no value
detector recognises, Ada's note holds a card number only the value detectors find).

- A function may keep what it is given where no mask reads it: setval's value is the
  sequence's last_value, the name given to pg_replication_origin_create a row of the
  server-wide pg_replication_origin, an advisory lock's key a row of pg_locks. A dba
  outside pii-readers gave them text a query had changed (translate(note, '0123456789',
  'abcdefghij'), ascii(substr(note, 6, 1))) and read it back in clear, past the value
  detectors (only set_config's arguments were read as stored). Now a value that columns
  reach changed, or whole rows reach, goes only to the functions readers may call
  (postgres.reader_functions, no side effects) outside pii-readers
  (rego/portcullis/postgres_lineage.rego, the classifier's `arguments`).
- A DO block outside pii-readers may read no table column (p6), but its FETCH (or MOVE,
  whose error a handler's SQLERRM holds) reads a cursor by the name its refcursor
  holds: a cursor declared before (`DECLARE c CURSOR WITH HOLD FOR SELECT translate(note,
  ...)`, whose computed column SQL FETCH masks whole) went into a variable and on to a
  replication origin's name or an INSERT a later SELECT read in clear. A FETCH or MOVE
  is now a nested fetch statement (pdp/sql/plpgsql.py), denied outside pii-readers.
- A DO block's EXCEPTION handler read the error its UPDATE met (GET STACKED DIAGNOSTICS
  d = PG_EXCEPTION_DETAIL after SET name = NULL broke a NOT NULL the masked dba added:
  `Failing row contains (1, null, ..., hunter2-ada)`, which the proxy withholds) and
  stored it. SQLERRM and GET STACKED DIAGNOSTICS are now a nested read of an error's text,
  denied outside pii-readers.
- A DO block's assignment or condition calling the database's function (`x :=
  public.pw_of(1)`, `IF public.pw_of(1) LIKE 'hunter2-a%'`) was not judged as reading
  rows (it names no relation), so x went on to an INSERT read back in clear, and the
  RAISE under the IF answered the LIKE by coming or not. Such an expression is now a
  nested statement, and a nested statement whose value may carry any table's rows is
  denied outside pii-readers.
- EXPLAIN prints what the planner computed ahead: the database's IMMUTABLE function called
  with constants is run while planning and its value printed as a constant
  (`EXPLAIN VERBOSE SELECT public.pw_imm(1)`: `Output: 'hunter2-ada'::text`), where the
  SELECT itself is masked whole; so did a view's column calling it. EXPLAIN of a statement
  calling a function outside pg_catalog, or reading a view that runs one, is now denied
  outside pii-readers.
"""

from __future__ import annotations

import psycopg
import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, assert_refused, probe_client

from proxies.postgres import codec

pytestmark = pytest.mark.integration

TRANSLATED = b"card ebbb bbbb bbbb bbbb"


FUNCTIONS = """
CREATE FUNCTION public.pw_of(int) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT password FROM customers WHERE id = $1 $$;
-- marked IMMUTABLE whatever it reads, as lookup functions often are (for an index)
CREATE FUNCTION public.pw_imm(int) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT password FROM customers WHERE id = $1 $$;
CREATE VIEW public.pw_view AS SELECT id, public.pw_imm(1) AS s FROM orders;
"""


arena = arena_fixture(FUNCTIONS)


@pytest.fixture(autouse=True)
def no_origins(arena):
    yield
    with arena.admin() as admin:
        admin.execute(
            "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin"
            " WHERE roname LIKE 'card%' OR roname LIKE 'p10%'"
        )
        admin.execute("SELECT pg_advisory_unlock_all()")
    arena.reset_data()


client = probe_client("p10")


KEPT = [
    (
        "SELECT pg_replication_origin_create(translate(note, '0123456789', 'abcdefghij'))"
        " FROM customers WHERE id = 1",
        "SELECT roname FROM pg_replication_origin",
    ),
    (
        "SELECT setval('adv_seq', ascii(substr(note, 6, 1))) FROM customers WHERE id = 1",
        "SELECT last_value FROM adv_seq",
    ),
    (
        "SELECT pg_advisory_lock(x) FROM (SELECT ascii(substr(note, 6, 1)) AS x"
        " FROM customers WHERE id = 1) AS t",
        "SELECT objid::text FROM pg_locks WHERE locktype = 'advisory'",
    ),
    (
        "SELECT pg_replication_origin_create(c::text) FROM customers c WHERE id = 1",
        "SELECT roname FROM pg_replication_origin",
    ),
]


@pytest.mark.parametrize(("keep", "read"), KEPT)
def test_a_masked_dba_gives_no_changed_text_to_a_function_that_keeps_it(
    arena, keep: str, read: str
) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(keep)
        assert answer.errors and "may keep what it is given" in answer.errors[0], answer.messages
        back = c.query(read)
        assert_no_secret(back, TRANSLATED, b"hunter2")
        assert not any(v == b"52" for row in back.rows for v in row), back.rows
    finally:
        c.close()
    with arena.admin() as admin:
        assert not admin.execute(
            "SELECT 1 FROM pg_replication_origin WHERE roname LIKE 'card%'"
        ).fetchall()
        assert admin.execute("SELECT last_value FROM adv_seq").fetchone()[0] == 1


def test_a_masked_dba_still_keeps_values_as_they_are(arena) -> None:
    """A column as it is, or max() of one, still goes to any function: setval(max(id)),
    pg_terminate_backend(pid) and a name the value detectors read where it is kept."""
    c = client(arena, ("dba",))
    try:
        assert not c.query("SELECT setval('adv_seq', max(id)) FROM customers").errors
        assert not c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE false"
        ).errors
        assert not c.query("SELECT pg_replication_origin_create('p10' || 'x')").errors
    finally:
        c.close()


def test_a_pii_reading_dba_gives_functions_what_it_likes(arena) -> None:
    with psycopg.connect(
        arena.dsn(arena.token("p10-pii@example.com", ("dba", "pii-readers"))),
        autocommit=True,
    ) as conn:
        conn.execute(
            "SELECT setval('adv_seq', ascii(substr(note, 6, 1))) FROM customers WHERE id = 1"
        )
        row = conn.execute("SELECT last_value FROM adv_seq").fetchone()
        assert row is not None
        assert row[0] == 52


# A cursor (or protocol portal) declared before, read by a DO block's FETCH into a variable
# and given where no mask reads it: a replication origin's name, a table read later.
DO_FETCHES = [
    "DO $$ DECLARE r record; k refcursor := 'c'; BEGIN FETCH k INTO r;"
    " PERFORM pg_replication_origin_create(r.t); END $$",
    "DO $$ DECLARE r record; k refcursor; BEGIN k := 'c'; FETCH NEXT FROM k INTO r;"
    " INSERT INTO audit_log(what) VALUES (r.t); END $$",
    "DO $$ DECLARE t text; k CURSOR FOR SELECT 1; BEGIN k := 'c'; FETCH k INTO t;"
    " INSERT INTO audit_log(what) VALUES (t); END $$",
    # MOVE runs the cursor's query; its error quotes the value a handler then stores
    "DO $$ DECLARE k refcursor := 'e'; BEGIN MOVE k;"
    " EXCEPTION WHEN others THEN INSERT INTO audit_log(what) VALUES (SQLERRM); END $$",
]
TRANSLATING_CURSOR = (
    "DECLARE c CURSOR WITH HOLD FOR"
    " SELECT translate(note, '0123456789', 'abcdefghij') AS t FROM customers WHERE id = 1"
)
FAILING_CURSOR = (
    "DECLARE e CURSOR FOR SELECT translate(note, '0123456789', 'abcdefghij')::int"
    " FROM customers WHERE id = 1"
)


@pytest.mark.parametrize("block", DO_FETCHES)
def test_a_masked_dbas_do_block_fetches_no_cursor_past_the_masks(arena, block: str) -> None:
    c = client(arena, ("dba",))
    try:
        # since p37 both cursors are refused to a masked dba (free text into translate and
        # a cast); the block is refused for its FETCH or MOVE whether they exist or not
        for cursor in (TRANSLATING_CURSOR, "BEGIN", FAILING_CURSOR):
            errors = c.query(cursor).errors
            assert not errors or "free-text column note" in errors[0], errors
        answer = c.query(block)
        assert answer.errors and "FETCHes (or MOVEs through)" in answer.errors[0], answer.messages
        c.query("COMMIT")  # the refusal failed the transaction: nothing it did is kept
        for read in ("SELECT roname FROM pg_replication_origin", "SELECT what FROM audit_log"):
            assert_no_secret(c.query(read), TRANSLATED)
    finally:
        c.close()
    with arena.admin() as admin:
        assert admin.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0


def test_a_masked_dbas_do_block_still_loops_over_its_own_query(arena) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(
            "DO $$ DECLARE n int := 0; r record; BEGIN"
            " FOR r IN SELECT 1 AS one LOOP n := n + r.one; END LOOP; END $$"
        )
        assert not answer.errors, answer.messages
    finally:
        c.close()


def test_a_pii_reading_dbas_do_block_fetches_its_cursor(arena) -> None:
    with psycopg.connect(
        arena.dsn(arena.token("p10-pii-do@example.com", ("dba", "pii-readers"))),
        autocommit=True,
    ) as conn:
        conn.execute(TRANSLATING_CURSOR)
        conn.execute(
            "DO $$ DECLARE t text; k refcursor := 'c'; BEGIN FETCH k INTO t;"
            " INSERT INTO audit_log(what) VALUES (t); END $$"
        )
        row = conn.execute("SELECT what FROM audit_log").fetchone()
        assert row is not None
        assert row[0].startswith("card e")


DATABASE_FUNCTION_BLOCKS = [
    "DO $$ DECLARE x text; BEGIN x := public.pw_of(1);"
    " INSERT INTO audit_log(what) VALUES (x); END $$",
    "DO $$ BEGIN IF public.pw_of(1) LIKE 'hunter2-a%' THEN RAISE NOTICE 'yes'; END IF; END $$",
    "DO $$ DECLARE x text; BEGIN SELECT public.pw_of(1) INTO x;"
    " INSERT INTO audit_log(what) VALUES (x); END $$",
]


@pytest.mark.parametrize("block", DATABASE_FUNCTION_BLOCKS)
def test_a_masked_dbas_do_block_keeps_no_value_of_the_databases_function(arena, block: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(block)
        assert answer.errors and "a DO block reads rows of any table" in answer.errors[0], (
            answer.messages
        )
        assert not any(isinstance(m, codec.NoticeResponse) for m in answer.messages)
        assert_no_secret(c.query("SELECT what FROM audit_log"))
    finally:
        c.close()


def test_a_pii_reading_dbas_do_block_calls_the_databases_function(arena) -> None:
    with psycopg.connect(
        arena.dsn(arena.token("p10-pii-fn@example.com", ("dba", "pii-readers"))),
        autocommit=True,
    ) as conn:
        conn.execute(DATABASE_FUNCTION_BLOCKS[0])
        row = conn.execute("SELECT what FROM audit_log").fetchone()
        assert row is not None
        assert row[0] == "hunter2-ada"


EXPLAINED = [
    "EXPLAIN VERBOSE SELECT public.pw_imm(1)",
    "EXPLAIN (VERBOSE, COSTS OFF) SELECT x FROM (SELECT public.pw_imm(1) AS x) AS s",
    "EXPLAIN (VERBOSE, FORMAT JSON) SELECT o.id FROM orders o"
    " WHERE EXISTS (SELECT public.pw_imm(1))",
    "EXPLAIN (ANALYZE, VERBOSE) SELECT public.pw_imm(1)",
    "EXPLAIN VERBOSE SELECT s FROM pw_view",
]


@pytest.mark.parametrize("sql", EXPLAINED)
def test_a_masked_dbas_plan_shows_no_value_of_the_databases_function(arena, sql: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = assert_refused(c, sql, "EXPLAIN of a statement")
        assert "public.pw_imm" in answer.errors[0], answer.messages
        # the statement itself: the database's function needs approval under the masks
        # (test_pg_probe_p14.py); once approved its value is masked whole
        selected = c.query("SELECT public.pw_imm(1)")
        assert_no_secret(selected)
        assert any("approval" in e for e in selected.errors), selected.messages
    finally:
        c.close()


def test_a_masked_dba_still_explains_built_ins_and_pii_readers_anything(arena) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query("EXPLAIN VERBOSE SELECT upper('x'), id FROM orders")
        assert not answer.errors and answer.rows, answer.messages
    finally:
        c.close()
    with psycopg.connect(
        arena.dsn(arena.token("p10-pii-explain@example.com", ("dba", "pii-readers"))),
        autocommit=True,
    ) as conn:
        plan = conn.execute(EXPLAINED[0]).fetchall()
        assert "hunter2-ada" in str(plan)


ERROR_TEXT_BLOCKS = [
    "DO $$ DECLARE d text; BEGIN UPDATE customers SET name = NULL WHERE id = 1;"
    " EXCEPTION WHEN others THEN GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;"
    " INSERT INTO audit_log(what) VALUES (d); END $$",
    "DO $$ BEGIN UPDATE customers SET name = NULL WHERE id = 1;"
    " EXCEPTION WHEN others THEN INSERT INTO audit_log(what) VALUES (SQLERRM); END $$",
]


@pytest.mark.parametrize("block", ERROR_TEXT_BLOCKS)
def test_a_masked_dbas_do_block_keeps_no_errors_text(arena, block: str) -> None:
    with arena.admin() as admin:
        admin.execute("ALTER TABLE customers ALTER COLUMN name SET NOT NULL")
    c = client(arena, ("dba",))
    try:
        answer = c.query(block)
        assert answer.errors and "reads an error's text" in answer.errors[0], answer.messages
        assert_no_secret(c.query("SELECT what FROM audit_log"))
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute("ALTER TABLE customers ALTER COLUMN name DROP NOT NULL")


def test_a_masked_dbas_do_block_still_catches_errors_it_does_not_read(arena) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(
            "DO $$ BEGIN CREATE TABLE p10_once (id int);"
            " EXCEPTION WHEN duplicate_table THEN NULL; END $$"
        )
        assert not answer.errors, answer.messages
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute("DROP TABLE IF EXISTS p10_once")


def test_a_masked_dba_makes_no_index_on_a_sensitive_column_unapproved(arena) -> None:
    """Attack (a dba outside pii-readers; found by the Postgres helper): CREATE INDEX ON
    customers (password) ran as listed DDL; with SET enable_seqscan = off and
    enable_bitmapscan = off, SELECT id FROM customers WHERE password IS NOT NULL came back
    in password order (1, 3, 2), and a marker row of a guessed password binary-searches
    each masked value. An index whose key holds a sensitive column needs approval under
    the masks (as CLUSTER); one on other columns still runs."""
    c = client(arena, ("dba",))
    try:
        for sql in (
            "CREATE INDEX p10_pw ON customers (password)",
            'CREATE INDEX p10_pw ON public.customers USING btree (id, "password" DESC)',
        ):
            answer = c.query(sql)
            assert answer.errors, answer.messages
            assert any("approval" in e for e in answer.errors), answer.errors
        assert not c.query("CREATE INDEX p10_id ON customers (id)").errors
    finally:
        c.close()
    with arena.admin() as admin:
        made = [r[0] for r in admin.execute(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'p10_%'"
        ).fetchall()]  # fmt: skip
        admin.execute("DROP INDEX IF EXISTS p10_id")
    assert made == ["p10_id"], made


def test_a_masked_dba_steers_no_read_to_an_index_unapproved(arena) -> None:
    """Attack (a dba outside pii-readers): an index on a sensitive column may already be
    there (a unique e-mail); SET enable_seqscan = off (or set_config of it, or cheap
    random_page_cost) steered SELECT id ... WHERE email IS NOT NULL to it, in e-mail
    order. Under the masks changing the planner's method and cost settings needs approval;
    RESET and other settings still go."""
    c = client(arena, ("dba",))
    try:
        for sql in (
            "SET enable_seqscan = off",
            "SET LOCAL enable_bitmapscan TO off",
            "SELECT set_config('random_page_cost', '0.001', false)",
        ):
            answer = c.query(sql)
            assert any("approval" in e for e in answer.errors), (sql, answer.messages)
        assert c.query("SHOW enable_seqscan").rows == [[b"on"]]
        for sql in ("RESET enable_seqscan", "SET statement_timeout = '5s'"):
            assert not c.query(sql).errors, sql
    finally:
        c.close()


def test_a_masked_dba_chooses_no_planner_setting_at_start_up(arena) -> None:
    """The same steering asked for in the start-up packet (libpq's options=-c
    enable_seqscan=off) is refused at session open under the masks."""
    import psycopg

    tok = arena.token("p10-startup@example.com", ("dba",))
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(
            host="127.0.0.1",
            port=arena.port,
            user="agent",
            password=tok,
            dbname=arena.database,
            sslmode="disable",
            options="-c enable_seqscan=off",
        )
    assert "enable_seqscan" in str(refused.value)
