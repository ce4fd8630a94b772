"""The SQL classifier's two paths must say the same of every statement.

pdp.sql classifies from the parser's JSON (classify_fast, about three times faster) and
keeps the pglast.ast walk (classify_reference) as the reference. Whatever the fast path
says is what the policy judges, so any difference between them is a statement the policy
would judge by a wrong description. Both run here over every statement of PostgreSQL's
regression suite (tests/data/sql_corpus.txt.gz, rebuilt by tests/data/build_sql_corpus.py)
and over statements generated where the suite is thin: the options and constants the JSON
leaves out when false, zero or empty, repeated options, DO blocks, deep nesting.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

from pdp.sql import classify_fast, classify_reference

CORPUS = Path(__file__).parent / "data" / "sql_corpus.txt.gz"
RECORD_SEPARATOR = "\n\x1e\n"


def regression_suite() -> list[str]:
    header, *statements = gzip.decompress(CORPUS.read_bytes()).decode().split(RECORD_SEPARATOR)
    assert "PostgreSQL" in header
    return statements


def canonical(entries: list[dict[str, Any]]) -> str:
    # JSON, as the policy receives it: True and 1 are different values there.
    return json.dumps(entries, sort_keys=True)


def differences(statements: list[str]) -> tuple[list[str], int]:
    """The statements the two paths describe differently, and how many the fast path
    handed to the reference itself (those cannot differ)."""
    found: list[str] = []
    handed_over = 0
    for sql in statements:
        fast = classify_fast(sql)
        if fast is None:
            handed_over += 1
            continue
        reference = classify_reference(sql)
        if canonical(fast) != canonical(reference):
            found.append(
                f"{sql!r}\n  fast:      {canonical(fast)}\n  reference: {canonical(reference)}"
            )
    return found, handed_over


def test_regression_suite_is_classified_alike():
    statements = regression_suite()
    assert len(statements) > 30_000
    # Several statements to one text, as clients send them.
    texts = [";\n".join(statements[i : i + 3]) for i in range(0, len(statements), 97)]
    found, handed_over = differences(statements + texts)
    assert not found, f"{len(found)} differences:\n" + "\n".join(found[:20])
    # The reference must not be what the fast path mostly runs, or nothing is compared.
    assert handed_over < len(statements) // 100


def test_generated_statements_are_classified_alike():
    found, _ = differences(generated())
    assert not found, f"{len(found)} differences:\n" + "\n".join(found[:20])


def test_the_fast_path_hands_over_only_what_json_cannot_say():
    assert classify_fast("COPY t FROM STDIN") is None  # no file name, or ''?
    assert classify_fast("SELECT " + "(SELECT " * 300 + "1" + ")" * 300) is None  # too deep
    assert classify_fast("SELECT 1") is not None


# --- statements generated where the regression suite is thin ---------------------------

# Constants as the parser writes them, including the zero, empty and false values the
# JSON leaves out.
CONSTANTS = [
    "0",
    "1",
    "-1",
    "0.0",
    "1.5",
    "1e3",
    "''",
    "'x'",
    "'on'",
    "true",
    "false",
    "NULL",
    "B''",
    "B'1'",
    "X''",
    "X'0F'",
    "E'\\\\x'",
    "$$s$$",
    "U&'d\\0061t'",
    "'0'::int",
    "CAST('off' AS bool)",
    "current_user",
    "(SELECT 'x')",
]

TARGETS = [
    "SELECT * FROM t",
    "DELETE FROM t",
    "UPDATE t SET a = 0 WHERE b = 1",
    "INSERT INTO t VALUES (0)",
    "EXECUTE p(0)",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "CREATE TABLE n AS SELECT 1",
]

EXPLAIN_OPTIONS = [
    "ANALYZE",
    "ANALYZE true",
    "ANALYZE false",
    "ANALYZE 0",
    "ANALYZE 1",
    "ANALYZE on",
    "ANALYZE off",
    "ANALYZE 'on'",
    "ANALYZE 'off'",
    "ANALYZE 'TRUE'",
    "VERBOSE",
    "VERBOSE false",
    "COSTS off",
    '"analyze"',
    "analyze 1.0",
]

SETTINGS = [
    "transaction_read_only",
    "default_transaction_read_only",
    "search_path",
    "role",
    "session_authorization",
    "statement_timeout",
    "x.y",
    '"Search_Path"',
]

TRANSACTION_MODES = [
    "READ ONLY",
    "READ WRITE",
    "ISOLATION LEVEL SERIALIZABLE",
    "DEFERRABLE",
    "NOT DEFERRABLE",
    "ISOLATION LEVEL READ COMMITTED",
]

DO_BODIES = [
    "BEGIN DELETE FROM t; END",
    "BEGIN PERFORM set_config('role', 'x', false); END",
    "BEGIN EXECUTE 'DELETE FROM t'; END",
    "DECLARE v int; BEGIN v := (SELECT count(*) FROM t FOR UPDATE); END",
    "DECLARE r record; BEGIN FOR r IN SELECT * FROM t LOOP UPDATE u SET a = r.a; END LOOP; END",
    "DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 1'; END",
    "DECLARE c refcursor; BEGIN OPEN c FOR SELECT * FROM secret; END",
    "BEGIN IF (SELECT pg_catalog.pg_reload_conf()) THEN RAISE NOTICE 'x'; END IF; END",
    "BEGIN RETURN; END",
    "BEGIN $portcullis_do$ END",
    "BEGIN not plpgsql at all END",
    "BEGIN DO $i$ BEGIN DELETE FROM t; END $i$; END",
    "BEGIN COPY t TO PROGRAM 'id'; END",
    'BEGIN "Evil".f(); END',
]


def generated() -> list[str]:
    out: list[str] = []
    for a, b in itertools.product(EXPLAIN_OPTIONS, repeat=2):
        for target in TARGETS[:4]:
            out.append(f"EXPLAIN ({a}, {b}) {target}")
    out += [f"EXPLAIN ANALYZE {t}" for t in TARGETS] + [f"EXPLAIN {t}" for t in TARGETS]
    for value in CONSTANTS:
        out += [
            f"SELECT set_config({value}, 'x', false)",
            f"SELECT pg_catalog.set_config({value}, {value}, {value})",
            f"SELECT \"Set_Config\"({value}, 'x', false)",
            f"SELECT f({value}), lower({value}) FROM t WHERE a = {value}",
            f"EXPLAIN (ANALYZE {value}) DELETE FROM t",
        ]
    for name, value in itertools.product(SETTINGS, CONSTANTS[:14]):
        out += [f"SET {name} = {value}", f"SET LOCAL {name} TO {value}"]
    for name in SETTINGS:
        out += [f"SET {name} TO DEFAULT", f"RESET {name}", f"SHOW {name}", f"SET {name} = a, b"]
    out += ["SET search_path = pg_catalog, a", "SET search_path = a, pg_catalog", "RESET ALL"]
    for a, b in itertools.permutations(TRANSACTION_MODES, 2):
        out += [
            f"BEGIN {a}, {b}",
            f"START TRANSACTION {a} {b}",
            f"SET TRANSACTION {a}, {b}",
            f"SET SESSION CHARACTERISTICS AS TRANSACTION {a}, {b}",
        ]
    for verb in (
        "COMMIT",
        "ROLLBACK",
        "COMMIT AND CHAIN",
        "SAVEPOINT s",
        "RELEASE s",
        "ROLLBACK TO s",
        "PREPARE TRANSACTION 'x'",
        "COMMIT PREPARED 'x'",
    ):
        out.append(verb)
    out += [
        "COPY t TO STDOUT",
        "COPY t FROM STDIN",
        "COPY t TO ''",
        "COPY t FROM ''",
        "COPY t TO '/tmp/x'",
        "COPY t FROM '/tmp/x'",
        "COPY t TO PROGRAM ''",
        "COPY t FROM PROGRAM 'id'",
        "COPY (DELETE FROM t RETURNING *) TO STDOUT",
        "COPY (SELECT * FROM t) TO '/tmp/x' (FORMAT csv)",
        "COPY t (a, b) FROM STDIN WITH (FREEZE)",
    ]
    for kind in (
        "TABLE",
        "VIEW",
        "MATERIALIZED VIEW",
        "FOREIGN TABLE",
        "SEQUENCE",
        "INDEX",
        "SCHEMA",
        "FUNCTION",
        "TYPE",
        "DOMAIN",
        "EXTENSION",
        "ROLE",
        "DATABASE",
        "TRIGGER tr ON",
        "POLICY p ON",
        "RULE r ON",
        "OWNED BY",
        "SERVER",
        "PUBLICATION",
        "SUBSCRIPTION",
        "TABLESPACE",
        "EVENT TRIGGER",
        "CAST (a AS",
    ):
        suffix = ")" if kind.endswith(" AS") else ""
        out.append(f'DROP {kind} a.b, "C"{suffix}')
        out.append(f"DROP {kind} IF EXISTS x{suffix} CASCADE")
    out += [
        "DEALLOCATE ALL",
        "DEALLOCATE p",
        'DEALLOCATE PREPARE "P"',
        "CLOSE ALL",
        "CLOSE c",
        "DECLARE c CURSOR FOR SELECT 1",
        'DECLARE "C" NO SCROLL CURSOR FOR SELECT 1 FOR SHARE',
        "FETCH 0 FROM c",
        "MOVE ALL IN c",
        "DISCARD ALL",
        "DISCARD PLANS",
        "DISCARD SEQUENCES",
        "DISCARD TEMP",
        "LISTEN x",
        "UNLISTEN *",
        "NOTIFY x, ''",
        "LOCK t IN ACCESS EXCLUSIVE MODE",
        "PREPARE p (int) AS DELETE FROM t WHERE a = $1",
        "PREPARE p AS SELECT 0",
        "CREATE RULE r AS ON SELECT TO t DO INSTEAD DELETE FROM u",
        "CREATE TABLE t AS WITH d AS (DELETE FROM u RETURNING *) SELECT * FROM d",
        "SELECT * INTO n FROM t",
        "SELECT * FROM t FOR UPDATE OF t NOWAIT",
        "VALUES (0), ('')",
        "TABLE t",
        "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE",
        "SELECT * FROM a.b.c",
        'SELECT * FROM "A"."B"',
        "SELECT * FROM ONLY t*",
        "CALL p(0)",
        "LOAD 'x'",
        "CHECKPOINT",
        "VACUUM (ANALYZE 0) t",
        "ALTER SYSTEM SET x = 0",
        "ALTER ROLE r SET search_path = ''",
        "CREATE FUNCTION f() RETURNS int SET role = 'x' AS 'SELECT 1' LANGUAGE sql",
        "CREATE EXTENSION x",
        "GRANT ALL ON t TO PUBLIC",
    ]
    for body in DO_BODIES:
        out += [
            f"DO $$ {body} $$",
            f"DO LANGUAGE plpgsql $$ {body} $$",
            f"DO $$ {body} $$ LANGUAGE sql",
        ]
    out += ["DO 'BEGIN NULL; END'", "DO LANGUAGE plperl $$ 1 $$", "DO $$$$"]
    for depth in (10, 100, 300, 600, 900, 1000, 1500):
        out.append("SELECT " + "(" * depth + "1" + ")" * depth)
        out.append("SELECT " + "(SELECT " * depth + "1" + ")" * depth)
        out.append("SELECT " + "f(" * depth + "0" + ")" * depth)
        out.append("SELECT 1" + " + 1" * depth * 3)
    return out
