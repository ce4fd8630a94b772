"""Probe P15's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column no value
detector recognises).

A dba outside pii-readers (a "masked dba") still ran the database's code unapproved where
no statement names it and the proxy's write_code (p14) did not look, and each time that
code INSERTed every password into audit_log, read back as it is:

- REFRESH MATERIALIZED VIEW runs the view's query again, and with it the functions it calls
  (a materialized view was no relation write_code or view_functions knew);
- ANALYZE, VACUUM FULL and REINDEX compute every index expression over the stored rows
  (`ANALYZE t`, `REINDEX INDEX i`, a bare `ANALYZE` for every table);
- the session's facts are read when it starts, and DDL a masked dba runs without approval
  gave a new table another's code: `CREATE TABLE x (LIKE t INCLUDING DEFAULTS)` (or
  INCLUDING INDEXES), `INHERITS (t)`, `PARTITION OF t` (row triggers are cloned), then
  `INSERT INTO x` in the same session;
- an operator class the database made runs its support functions on every write to a table
  indexed with it, and `CREATE INDEX ON t (x its_ops)` ran without approval;
- an event trigger runs on DDL (CREATE SEQUENCE), whatever the statement names;
- a column's domain's DEFAULT runs on an INSERT leaving the column out; a foreign key's
  check scans the referenced table's index, running its operator class; CREATE TABLE x AS
  SELECT d FROM t gives x the domain of t's column d, and its CHECK;
- a CHECK constraint calling a volatile built-in of masked_admin_functions with the row's
  values (`CHECK (set_config('application_name', password, false) IS NOT NULL)`) set the
  password where the server reported it (ParameterStatus) on an UPDATE of the table.

Now the proxy's write_code also names a materialized view's functions, an index's and an
operator class's (by the table and by the index), extended statistics' expressions, and
marks a volatile built-in given the rows' values as not callable under the masks; it reads
the enabled event triggers (event_triggers); the policy makes a masked dba ask for
approval before a maintenance statement running such code, a CREATE TABLE copying a
relation's code, an index with an operator class not written pg_catalog's, and DDL while
an event trigger is enabled (rego/portcullis/postgres_user_code.rego).
"""

from __future__ import annotations

import secrets

import psycopg
import pytest
from adversary import (
    RawClient,
    assert_no_secret,
    function_call,
    oid_of,
    ready_client,
    running_arena,
)
from pg_drops import settle

pytestmark = pytest.mark.integration

STASH = "INSERT INTO audit_log(what) SELECT password FROM customers"
EXTRA = f"""
CREATE FUNCTION public.p15_stash() RETURNS int LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN {STASH}; RETURN 1; END $$;
CREATE FUNCTION public.p15_imm(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN PERFORM public.p15_stash(); RETURN $1; END $$;
CREATE FUNCTION public.p15_copy() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN {STASH}; RETURN NEW; END $$;
CREATE MATERIALIZED VIEW p15_mv AS SELECT id, public.p15_stash() AS n FROM orders WITH NO DATA;
CREATE TABLE p15_ix (id int);
INSERT INTO p15_ix VALUES (1), (2);
CREATE INDEX p15_ix_f ON p15_ix ((public.p15_imm(id)));
CREATE TABLE p15_d (id int DEFAULT public.p15_stash(), x text);
CREATE TABLE p15_part (id int, x text) PARTITION BY RANGE (id);
CREATE TRIGGER p15_part_copy AFTER INSERT ON p15_part
  FOR EACH ROW EXECUTE FUNCTION public.p15_copy();
CREATE FUNCTION public.p15_cmp(int, int) RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.p15_stash(); RETURN btint4cmp($1, $2); END $$;
CREATE OPERATOR CLASS p15_ops FOR TYPE int USING btree AS
  OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
  FUNCTION 1 public.p15_cmp(int, int);
CREATE TABLE p15_opc (x int);
CREATE INDEX p15_opc_x ON p15_opc (x p15_ops);
CREATE TABLE p15_fkp (id int);
INSERT INTO p15_fkp SELECT generate_series(1, 20000);
CREATE UNIQUE INDEX p15_fkp_id ON p15_fkp (id p15_ops);
ANALYZE p15_fkp;
CREATE TABLE p15_fkc (pid int REFERENCES p15_fkp (id));
CREATE TABLE p15_acct (id int, password text
  CHECK (set_config('application_name', password, false) IS NOT NULL));
INSERT INTO p15_acct VALUES (1, 'hunter2-acct');
SELECT set_config('application_name', '', false);
CREATE TABLE p15_plainpart (id int, x text) PARTITION BY RANGE (id);
CREATE MATERIALIZED VIEW p15_plain_mv AS SELECT id, total FROM orders;
CREATE FUNCTION public.p15_tellcmp(int, int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN
  PERFORM set_config('application_name', (SELECT string_agg(password, ',') FROM customers),
                     false);
  RETURN btint4cmp($1, $2); END $$;
CREATE OPERATOR CLASS p15_tell_ops FOR TYPE int USING btree AS
  OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
  FUNCTION 1 public.p15_tellcmp(int, int);
CREATE TABLE p15_opr (x int);
INSERT INTO p15_opr SELECT generate_series(1, 20000);
CREATE INDEX p15_opr_x ON p15_opr (x p15_tell_ops);
ANALYZE p15_opr;
CREATE VIEW p15_opr_v AS SELECT x FROM p15_opr;
CREATE TABLE p15_tpt (x int) PARTITION BY RANGE (x p15_tell_ops);
CREATE TABLE p15_tpt1 PARTITION OF p15_tpt FOR VALUES FROM (0) TO (10);
CREATE TABLE p15_tpt2 PARTITION OF p15_tpt FOR VALUES FROM (10) TO (20);
CREATE FUNCTION public.p15_foldtell(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN
  PERFORM set_config('application_name', (SELECT string_agg(password, ',') FROM customers),
                     false);
  RETURN $1; END $$;
CREATE TABLE p15_fold (x int);
CREATE INDEX ON p15_fold (x) WHERE x > public.p15_foldtell(abs(1) + 1);
CREATE TABLE p15_byx (x int);
CREATE INDEX ON p15_byx ((public.p15_foldtell(x)));
SELECT set_config('application_name', '', false);
CREATE DOMAIN p15_dchk AS int CHECK (public.p15_imm(VALUE) > 0);
CREATE TABLE p15_dt (x p15_dchk);
CREATE DOMAIN p15_ddef AS int DEFAULT public.p15_stash();
CREATE TABLE p15_domd (id int, x p15_ddef);
CREATE FUNCTION public.p15_et() RETURNS event_trigger LANGUAGE plpgsql AS
  $$ BEGIN {STASH}; END $$;
"""


# a role that does not bypass row-level security, owning views over tables with policies
APP = f"p15_app_{secrets.token_hex(4)}"
RLS = f"""
CREATE ROLE {APP} NOLOGIN;
CREATE FUNCTION public.p15_ok(int) RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER
  AS $$ BEGIN {STASH}; RETURN true; END $$;
CREATE FUNCTION public.p15_tell(int) RETURNS boolean LANGUAGE plpgsql STABLE SECURITY DEFINER
  AS $$ BEGIN PERFORM set_config('application_name',
    (SELECT string_agg(password, ',') FROM customers), false); RETURN true; END $$;
CREATE TABLE p15_rls (id int);
INSERT INTO p15_rls VALUES (1);
ALTER TABLE p15_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY p15_rls_pol ON p15_rls USING (public.p15_ok(id));
CREATE TABLE p15_rls_tell (id int);
INSERT INTO p15_rls_tell VALUES (1);
ALTER TABLE p15_rls_tell ENABLE ROW LEVEL SECURITY;
CREATE POLICY p15_rls_tell_pol ON p15_rls_tell USING (public.p15_tell(id));
GRANT SELECT, INSERT ON p15_rls, p15_rls_tell TO {APP};
CREATE VIEW p15_rls_v AS SELECT id FROM p15_rls;
CREATE VIEW p15_rls_tell_v AS SELECT id FROM p15_rls_tell;
ALTER VIEW p15_rls_v OWNER TO {APP};
ALTER VIEW p15_rls_tell_v OWNER TO {APP};
"""


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    try:
        with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
            with gateway.admin() as admin:
                admin.execute(EXTRA)
                admin.execute(RLS)
            yield gateway
    finally:
        settle()  # the arena's database, which holds what APP owns, is dropped first
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as admin:
            admin.execute(f"DROP ROLE IF EXISTS {APP}")


def _stashed(arena) -> int:
    with arena.admin() as admin:
        row = admin.execute("SELECT count(*) FROM audit_log WHERE what LIKE 'hunter2%'").fetchone()
    assert row is not None
    return int(row[0])


def _needs_approval(answer) -> bool:
    return any("approval" in e for e in answer.errors)


# each runs public.p15_stash() (every password INSERTed into audit_log) with nothing in the
# statement naming it; a list is one session's statements, the last the one that ran it
RUNS_CODE = [
    ["REFRESH MATERIALIZED VIEW p15_mv"],
    ["REFRESH MATERIALIZED VIEW public.p15_mv"],
    ["ANALYZE p15_ix"],
    ["ANALYZE"],
    ["VACUUM (ANALYZE) p15_ix"],
    ["VACUUM FULL p15_ix"],
    ["VACUUM FULL"],
    ["REINDEX TABLE p15_ix"],
    ["REINDEX INDEX p15_ix_f"],
    ["REINDEX SCHEMA public"],
    [
        "CREATE TABLE p15_like (LIKE p15_d INCLUDING DEFAULTS)",
        "INSERT INTO p15_like(x) VALUES ('a')",
    ],
    ["CREATE TABLE p15_likei (LIKE p15_ix INCLUDING INDEXES)", "INSERT INTO p15_likei VALUES (1)"],
    ["CREATE TABLE p15_inh () INHERITS (p15_d)", "INSERT INTO p15_inh(x) VALUES ('a')"],
    [
        "CREATE TABLE p15_p1 PARTITION OF p15_part FOR VALUES FROM (0) TO (100)",
        "INSERT INTO p15_p1 VALUES (1, 'a')",
    ],
    [
        "CREATE TABLE p15_own (x int); INSERT INTO p15_own VALUES (1)",
        "CREATE INDEX ON p15_own (x p15_ops)",
        "INSERT INTO p15_own VALUES (2)",
    ],
    ["INSERT INTO p15_opc VALUES (1)", "INSERT INTO p15_opc VALUES (2)"],
    ["INSERT INTO p15_domd(id) VALUES (1)"],
    # the foreign key's check scans p15_fkp's index, whose operator class runs the code
    ["INSERT INTO p15_fkc VALUES (5)"],
    # a table made from a column takes its domain, and the domain's CHECK
    ["CREATE TABLE p15_ctas AS SELECT x FROM p15_dt", "INSERT INTO p15_ctas VALUES (5)"],
    ["SELECT x INTO p15_sinto FROM p15_dt", "INSERT INTO p15_sinto VALUES (5)"],
]


@pytest.mark.parametrize("statements", RUNS_CODE, ids=lambda s: s[-1][:40])
def test_the_databases_code_run_by_no_name_needs_approval_under_the_masks(
    arena, statements: list[str]
) -> None:
    arena.reset_data()
    c = ready_client(arena, ("dba",), "p15")
    try:
        answers = [c.query(sql) for sql in statements]
        assert any(_needs_approval(a) for a in answers), [a.messages for a in answers]
        assert_no_secret(c.query("SELECT what FROM audit_log"))
    finally:
        c.close()
    assert _stashed(arena) == 0


def test_a_check_giving_a_volatile_built_in_the_rows_values_needs_approval(arena) -> None:
    c = ready_client(arena, ("dba",), "p15")
    try:
        answer = c.query("UPDATE p15_acct SET id = id WHERE id = 1")
        assert _needs_approval(answer), answer.messages
        assert b"hunter2-acct" not in answer.raw
        shown = c.query("SHOW application_name")
        assert b"hunter2-acct" not in shown.raw, shown.messages
    finally:
        c.close()


def test_ddl_under_an_event_trigger_needs_approval_under_the_masks(arena) -> None:
    arena.reset_data()
    with arena.admin() as admin:
        admin.execute(
            "CREATE EVENT TRIGGER p15_et ON ddl_command_end WHEN TAG IN ('CREATE SEQUENCE')"
            " EXECUTE FUNCTION public.p15_et()"
        )
    try:
        c = ready_client(arena, ("dba",), "p15")
        try:
            answer = c.query("CREATE SEQUENCE p15_seq")
            assert _needs_approval(answer), answer.messages
            assert b"event trigger p15_et" in answer.raw  # the notice names it
            assert not c.query("SELECT 1").errors  # no DDL: no event trigger
            assert_no_secret(c.query("SELECT what FROM audit_log"))
        finally:
            c.close()
        assert _stashed(arena) == 0
    finally:
        with arena.admin() as admin:
            admin.execute("DROP EVENT TRIGGER p15_et")
            admin.execute("DROP SEQUENCE IF EXISTS p15_seq")


def test_a_pii_reading_dba_runs_the_code(arena) -> None:
    arena.reset_data()
    c = ready_client(arena, ("dba", "pii-readers"), "p15")
    try:
        for sql in ("REFRESH MATERIALIZED VIEW p15_mv", "ANALYZE p15_ix"):
            answer = c.query(sql)
            assert not answer.errors, (sql, answer.messages)
    finally:
        c.close()
    assert _stashed(arena) > 0
    arena.reset_data()


ORDINARY = [
    "CREATE TABLE p15_copy_orders (LIKE orders INCLUDING ALL)",
    "INSERT INTO p15_copy_orders VALUES (1, 1, 1.00)",
    "CREATE TABLE p15_pp1 PARTITION OF p15_plainpart FOR VALUES FROM (0) TO (100)",
    "INSERT INTO p15_pp1 VALUES (1, 'a')",
    "CREATE TABLE p15_child () INHERITS (orders)",
    "INSERT INTO p15_child VALUES (2, 1, 2.00)",
    "CREATE INDEX ON p15_copy_orders (customer_id)",
    "CREATE INDEX ON p15_pp1 (x pg_catalog.text_pattern_ops)",
    "INSERT INTO p15_pp1 VALUES (2, 'b')",
    "ANALYZE orders",
    "VACUUM orders",
    "VACUUM (ANALYZE) p15_copy_orders",
    "REINDEX TABLE orders",
    "ANALYZE p15_d",  # its DEFAULT calls the database's function: no VACUUM runs it
    "VACUUM p15_d",
    "REFRESH MATERIALIZED VIEW p15_plain_mv",
    "DROP TABLE p15_child, p15_copy_orders, p15_pp1",
]


def test_a_masked_dbas_ordinary_maintenance_and_ddl_run(arena) -> None:
    arena.reset_data()
    c = ready_client(arena, ("dba",), "p15")
    try:
        for sql in ORDINARY:
            answer = c.query(sql)
            assert not answer.errors, (sql, answer.messages)
    finally:
        c.close()
    assert _stashed(arena) == 0


def test_write_code_is_sent_for_the_statements_relations_and_whole_for_a_bare_maintenance() -> None:
    """trim_to_names keeps of write_code what the statement's relations need (by name, with
    or without the schema), and all of it for VACUUM/ANALYZE/REINDEX naming no relation."""
    from pdp.domain.policy_input import postgres_command

    code = {
        "public.d": {"functions": ["public.f"]},
        "d": {"functions": ["public.f"]},
        "other": {"rules": ["r on other"]},
    }

    def sent(sql: str) -> dict:
        return postgres_command("postgres.query", sql, {"write_code": code})["write_code"]

    assert sent("INSERT INTO d VALUES (1)") == {k: code[k] for k in ("public.d", "d")}
    assert sent("INSERT INTO orders.public.d VALUES (1)") == {"public.d": code["public.d"]}
    assert sent("SELECT 1") == {}
    for bare in ("ANALYZE", "VACUUM", "REINDEX SCHEMA public", "SELECT 1; VACUUM FULL"):
        assert sent(bare) == code, bare
    assert sent("ANALYZE other") == {"other": code["other"]}


# row-level security: the superuser upstream bypasses it, a role it acts as does not
ROLE_CHANGES = [
    [f"SET ROLE {APP}", "SELECT count(*) FROM p15_rls"],
    [f"SET SESSION AUTHORIZATION {APP}", "SELECT count(*) FROM p15_rls"],
    [f"SELECT set_config('role', '{APP}', false)", "SELECT count(*) FROM p15_rls"],
    [f"DO $$ BEGIN SET ROLE {APP}; END $$", "SELECT count(*) FROM p15_rls"],
    ["BEGIN", f"SET LOCAL ROLE {APP}", "SELECT count(*) FROM p15_rls", "ROLLBACK"],
    # a view owned by such a role applies the policies as its owner
    ["SELECT count(*) FROM p15_rls_v"],
    ["INSERT INTO p15_rls VALUES (2)"],
]


@pytest.mark.parametrize("statements", ROLE_CHANGES, ids=lambda s: s[0].replace(APP, "app")[:40])
def test_row_level_security_policies_run_no_code_unapproved_under_the_masks(
    arena, statements: list[str]
) -> None:
    arena.reset_data()
    c = ready_client(arena, ("dba",), "p15")
    try:
        answers = [c.query(sql) for sql in statements]
        assert any(_needs_approval(a) for a in answers), [a.messages for a in answers]
        c.query("RESET ROLE")
        assert_no_secret(c.query("SELECT what FROM audit_log"))
    finally:
        c.close()
    assert _stashed(arena) == 0


def test_a_reader_reads_no_view_whose_tables_policies_run_the_databases_code(arena) -> None:
    c = ready_client(arena, ("readonly",), "p15")
    try:
        answer = c.query("SELECT count(*) FROM p15_rls_tell_v")
        assert answer.errors, answer.messages
        assert "p15_tell" in " ".join(answer.errors)
        assert_no_secret(answer)
        assert_no_secret(c.query("SHOW application_name"))
    finally:
        c.close()


def test_a_masked_dba_chooses_no_role_at_start_up(arena) -> None:
    tok = arena.token("p15-role@example.com", ("dba",))
    c = RawClient(arena.port, tok, arena.database, options=f"-c role={APP}")
    try:
        assert not c.ready
        assert any("another role" in e for e in c.startup.errors), c.startup.messages
    finally:
        c.close()


def test_a_pii_reading_dba_acts_as_another_role(arena) -> None:
    c = ready_client(arena, ("dba", "pii-readers"), "p15")
    try:
        for sql in (f"SET ROLE {APP}", "SELECT current_user", "RESET ROLE"):
            answer = c.query(sql)
            assert not answer.errors, (sql, answer.messages)
    finally:
        c.close()
    arena.reset_data()


# a superuser may make a function in pg_catalog itself: named like a built-in, it is not one
PG_CATALOG_LOWER = """
CREATE FUNCTION pg_catalog.lower(int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN
  PERFORM set_config('application_name', (SELECT string_agg(password, ',') FROM customers),
                     false);
  RETURN 1; END $$
"""


def test_a_fast_path_call_of_a_function_made_in_pg_catalog_needs_approval_under_the_masks(
    arena,
) -> None:
    with arena.admin() as admin:
        admin.execute(PG_CATALOG_LOWER)
        oid = oid_of(admin, "pg_catalog.lower(int)")
    try:
        c = ready_client(arena, ("dba",), "p15")
        try:
            answer = c.send(function_call(oid, 5))
            assert _needs_approval(answer), answer.messages
            assert b"lower (created after initdb)" in answer.raw
            assert_no_secret(answer)
            assert_no_secret(c.query("SHOW application_name"))
        finally:
            c.close()
        reader = ready_client(arena, ("readonly",), "p15")
        try:
            answer = reader.send(function_call(oid, 5))
            assert answer.errors, answer.messages
            assert_no_secret(answer)
        finally:
            reader.close()
    finally:
        with arena.admin() as admin:
            admin.execute("DROP FUNCTION pg_catalog.lower(int)")


# an index scan runs the index's operator class functions (partition pruning the partition
# key's): here one set_config-ing every
# password, which the server then reports (ParameterStatus) and SHOW reads
OPCLASS_READS = [
    "SELECT count(*) FROM p15_opr WHERE x = 5",
    "SELECT x FROM p15_opr_v WHERE x = 5",
    "SELECT count(*) FROM p15_tpt WHERE x = 5",  # partition pruning
    # the planner folds an index predicate's call of constants, running it
    "SELECT count(*) FROM p15_fold",
]


@pytest.mark.parametrize("sql", OPCLASS_READS)
@pytest.mark.parametrize("groups", [("readonly",), ("dba",)], ids=["reader", "masked dba"])
def test_a_read_through_the_databases_operator_class_runs_no_code(
    arena, sql: str, groups: tuple[str, ...]
) -> None:
    c = ready_client(arena, groups, "p15")
    try:
        answer = c.query(sql)
        assert answer.errors, answer.messages
        assert b"p15_tellcmp" in answer.raw or b"p15_foldtell" in answer.raw
        assert_no_secret(answer)
        assert_no_secret(c.query("SHOW application_name"))
    finally:
        c.close()


def test_a_table_indexed_by_the_databases_function_of_a_column_is_read(arena) -> None:
    """An index expression over a column is computed on writes, not when the table is
    read: readers still read such a table."""
    c = ready_client(arena, ("readonly",), "p15")
    try:
        answer = c.query("SELECT count(*) FROM p15_byx WHERE x = 1")
        assert not answer.errors, answer.messages
        assert_no_secret(c.query("SHOW application_name"))
    finally:
        c.close()


def test_a_new_session_reads_the_code_made_since_the_last(arena) -> None:
    """The facts are read when a session starts: a trigger made after the proxy started
    (and after an earlier session read them) is known to the next session."""
    arena.reset_data()
    before = ready_client(arena, ("dba",), "p15")
    try:
        assert not before.query("SELECT 1").errors
        with arena.admin() as admin:
            admin.execute(
                "CREATE TABLE p15_late (id int); CREATE TRIGGER p15_late_copy AFTER INSERT ON"
                " p15_late FOR EACH ROW EXECUTE FUNCTION public.p15_copy()"
            )
        after = ready_client(arena, ("dba",), "p15")
        try:
            answer = after.query("INSERT INTO p15_late VALUES (1)")
            assert _needs_approval(answer), answer.messages
            assert b"p15_late_copy" in answer.raw
        finally:
            after.close()
    finally:
        before.close()
        with arena.admin() as admin:
            admin.execute("DROP TABLE p15_late")
    assert _stashed(arena) == 0
