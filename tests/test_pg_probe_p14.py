"""Probe P14's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column no value
detector recognises).

A dba outside pii-readers (a "masked dba": any statement, sensitive columns masked) ran
code the database already had, made earlier by a pii-reading dba or the application, and
that code moved the passwords past the masks. Its result was masked whole; its side
effects were not, and a function's volatility is no boundary:

- `SELECT public.p14_leak()`, a STABLE function running set_config('application_name',
  (SELECT string_agg(password, ',') FROM customers), false): the passwords came back in the
  server's ParameterStatus and in SHOW application_name;
- `SELECT public.p14_stash()` (or `CALL public.p14_proc()`) INSERTing them into audit_log:
  `SELECT what FROM audit_log` returned them as they are;
- the same code run with nothing in the statement naming it: a trigger on a table the dba
  writes to (`INSERT INTO p14_t VALUES (1)`, through an updatable view over it, or an
  UPDATE of an inheritance parent whose child has the trigger), a rule (ON INSERT DO ALSO),
  a column default, a domain's CHECK (`SELECT 1::p14_dom`), a view calling the database's
  function.

Now, outside pii-readers, a privileged session calls without approval only the functions
known to have no side effects (postgres.reader_functions) and the volatile built-ins of
postgres.masked_admin_functions; every other call, cast to the database's type, read of a
view running the database's code, and write to a relation whose triggers, rules, defaults
or constraints run code (proxies/postgres/user_code.py's write_code) needs approval
(rego/portcullis/postgres_user_code.rego). The dba's ordinary work still runs.
"""

from __future__ import annotations

import psycopg
import pytest
from adversary import assert_no_secret, ready_client
from pg_probe_stack import arena_fixture

pytestmark = pytest.mark.integration

STASH = "INSERT INTO audit_log(what) SELECT password FROM customers"
EXTRA = f"""
CREATE FUNCTION public.p14_leak() RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN
  PERFORM set_config('application_name', (SELECT string_agg(password, ',') FROM customers),
                     false);
  RETURN 1;
END $$;
CREATE FUNCTION public.p14_stash() RETURNS int LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN {STASH}; RETURN 1; END $$;
CREATE PROCEDURE public.p14_proc() LANGUAGE plpgsql AS $$ BEGIN {STASH}; END $$;
CREATE FUNCTION public.p14_copy() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN {STASH}; RETURN NEW; END $$;
CREATE TABLE p14_t (id int);
CREATE TRIGGER p14_t_copy AFTER INSERT OR UPDATE OR DELETE ON p14_t
  FOR EACH ROW EXECUTE FUNCTION public.p14_copy();
CREATE VIEW p14_tv AS SELECT id FROM p14_t;
CREATE TABLE p14_r (id int);
CREATE RULE p14_r_copy AS ON INSERT TO p14_r DO ALSO {STASH};
CREATE FUNCTION public.p14_next() RETURNS int LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN {STASH}; RETURN 1; END $$;
CREATE TABLE p14_d (id int DEFAULT public.p14_next(), x text);
CREATE FUNCTION public.p14_ok(int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN {STASH}; RETURN true; END $$;
CREATE DOMAIN p14_dom AS int CHECK (public.p14_ok(VALUE));
CREATE VIEW p14_vstash AS SELECT id, public.p14_stash() AS s FROM orders;
CREATE TABLE p14_parent (id int);
CREATE TABLE p14_child () INHERITS (p14_parent);
CREATE TRIGGER p14_child_copy AFTER UPDATE ON p14_child
  FOR EACH ROW EXECUTE FUNCTION public.p14_copy();
INSERT INTO p14_child VALUES (1);
CREATE TABLE p14_plain (id serial PRIMARY KEY, x text DEFAULT 'x', at timestamptz DEFAULT now());
"""


arena = arena_fixture(EXTRA)


def _stashed(arena) -> int:
    with arena.admin() as admin:
        row = admin.execute("SELECT count(*) FROM audit_log WHERE what LIKE 'hunter2%'").fetchone()
    assert row is not None
    return int(row[0])


def test_a_function_setting_what_it_reads_needs_approval_under_the_masks(arena) -> None:
    c = ready_client(arena, ("dba",), "p14")
    try:
        answer = c.query("SELECT public.p14_leak()")
        assert any("approval" in e for e in answer.errors), answer.messages
        assert_no_secret(answer)
        assert_no_secret(c.query("SHOW application_name"))
    finally:
        c.close()


# each runs code that INSERTs every password into audit_log, whose `what` is no sensitive
# column: read back by the masked dba as it is
STASHING = [
    "SELECT public.p14_stash()",
    "SELECT count(*) FROM (SELECT public.p14_stash() AS s) q",
    "CALL public.p14_proc()",
    "INSERT INTO p14_t VALUES (1)",
    "INSERT INTO public.p14_tv VALUES (1)",
    "INSERT INTO p14_r VALUES (1)",
    "INSERT INTO p14_d (x) VALUES ('a')",
    "SELECT 1::p14_dom",
    "SELECT count(*) FROM p14_vstash",
    "UPDATE p14_parent SET id = id WHERE id > 0",
]


@pytest.mark.parametrize("sql", STASHING)
def test_code_storing_what_it_reads_needs_approval_under_the_masks(arena, sql: str) -> None:
    arena.reset_data()
    c = ready_client(arena, ("dba",), "p14")
    try:
        answer = c.query(sql)
        assert any("approval" in e for e in answer.errors), answer.messages
        assert_no_secret(c.query("SELECT what FROM audit_log"))
    finally:
        c.close()
    assert _stashed(arena) == 0


def test_a_pii_reading_dba_runs_the_code(arena) -> None:
    arena.reset_data()
    c = ready_client(arena, ("dba", "pii-readers"), "p14")
    try:
        for sql in ("SELECT public.p14_stash()", "INSERT INTO p14_t VALUES (1)"):
            answer = c.query(sql)
            assert not answer.errors, (sql, answer.messages)
    finally:
        c.close()
    assert _stashed(arena) == 4
    arena.reset_data()


ORDINARY = [
    "INSERT INTO orders VALUES (12, 1, 5.00)",
    "UPDATE orders SET total = 6 WHERE id = 12",
    "DELETE FROM orders WHERE id = 12",
    "INSERT INTO audit_log(what) VALUES ('dba was here')",
    "INSERT INTO p14_plain(x) VALUES ('y')",
    "CREATE TABLE p14_new (id serial PRIMARY KEY, note text DEFAULT 'n')",
    "INSERT INTO p14_new(note) VALUES ('z')",
    "DROP TABLE p14_new",
    "SELECT nextval('adv_seq')",
    "SELECT pg_advisory_lock(14), pg_advisory_unlock(14)",
    "SELECT pg_size_pretty(pg_database_size(current_database()))",
    "SELECT set_config('application_name', 'p14-dba', false)",
    "SELECT count(*) FROM p14_t",
]


def test_a_masked_dbas_ordinary_work_runs(arena) -> None:
    arena.reset_data()
    victim = psycopg.connect(
        f"postgresql://postgres@127.0.0.1:5432/{arena.database}",
        application_name="p14-victim",
        autocommit=True,
    )
    try:
        c = ready_client(arena, ("dba",), "p14")
        try:
            for sql in ORDINARY:
                answer = c.query(sql)
                assert not answer.errors, (sql, answer.messages)
            answer = c.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'p14-victim'"
            )
            assert not answer.errors, answer.messages  # its value masked: computed from pid
            with pytest.raises(psycopg.OperationalError):
                victim.execute("SELECT 1")
        finally:
            c.close()
    finally:
        victim.close()
    assert _stashed(arena) == 0
