"""pdp.sql: what the policy sees of a SQL string, and that nothing hides from it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.sql import classify, classify_fast, classify_reference, split
from portcullis.shape import shape, shaped, skeleton


def types(sql: str) -> list[str]:
    return [e["type"] for e in classify(sql)]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("", []),
        ("   ", []),
        ("-- only a comment", []),
        ("/* block */", []),
        ("SELECT 1", ["select"]),
        ("/* harmless */ DROP TABLE t", ["drop"]),
        ("-- select 1\nDELETE FROM t", ["delete"]),
        ("select 1; drop table x", ["select", "drop"]),
        ("SELECT 1; SELECT 2; UPDATE t SET a = 1", ["select", "select", "update"]),
        ("INSERT INTO t VALUES (1)", ["insert"]),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", ["merge"]),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", ["select", "delete"]),
        ("WITH u AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING id) SELECT 1", ["select", "update"]),
        ("WITH i AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT 1", ["select", "insert"]),
        ("EXPLAIN ANALYZE DELETE FROM t", ["explain", "delete"]),
        ("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", ["explain", "update"]),
        ("EXPLAIN DELETE FROM t", ["explain"]),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", ["explain"]),
        ("PREPARE p AS DELETE FROM t WHERE id = $1", ["prepare", "delete"]),
        ("PREPARE q AS SELECT 1", ["prepare"]),
        ("EXECUTE p(1)", ["execute"]),
        ("DEALLOCATE p", ["deallocate"]),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", ["copy", "delete"]),
        ("CREATE TABLE t AS SELECT 1", ["ddl"]),
        ("SELECT * INTO t FROM u", ["ddl"]),
        ("CREATE INDEX i ON t (a)", ["ddl"]),
        ("CREATE VIEW v AS SELECT 1", ["ddl"]),
        ("ALTER TABLE t ADD COLUMN b int", ["ddl"]),
        ("CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u", ["ddl", "delete"]),
        ("DROP DATABASE d", ["drop"]),
        ("TRUNCATE a, b", ["truncate"]),
        ("GRANT SELECT ON t TO bob", ["grant"]),
        ("REVOKE SELECT ON t FROM bob", ["grant"]),
        ("CREATE ROLE eve SUPERUSER", ["grant"]),
        ("ALTER ROLE eve SUPERUSER", ["grant"]),
        ("ALTER SYSTEM SET log_statement = 'none'", ["alter_system"]),
        ("CREATE EXTENSION dblink", ["create_extension"]),
        ("SET search_path = public", ["set"]),
        ("RESET ALL", ["set"]),
        ("SHOW search_path", ["show"]),
        ("BEGIN", ["transaction"]),
        ("COMMIT", ["transaction"]),
        ("ROLLBACK", ["transaction"]),
        ("SAVEPOINT s", ["transaction"]),
        ("CALL p(1)", ["call"]),
        ("LISTEN c", ["listen"]),
        ("NOTIFY c", ["notify"]),
        ("VACUUM t", ["maintenance"]),
        ("DO $$ BEGIN NULL; END $$", ["do"]),
        ("DO $$ BEGIN TRUNCATE t; DELETE FROM u WHERE a = 1; END $$", ["do", "truncate", "delete"]),
        ("SELEC 1", ["unparseable"]),
        ("select 1; selec 2", ["unparseable"]),
    ],
)
def test_statement_types(sql, expected):
    assert types(sql) == expected


def one(sql: str) -> dict:
    entries = classify(sql)
    assert len(entries) >= 1
    return entries[0]


def test_entry_fields():
    entry = one("SELECT a FROM Public.Customers c JOIN orders o ON o.c = c.id")
    assert entry["tag"] == "SelectStmt"
    assert sorted(entry["tables"]) == ["orders", "public.customers"]
    assert entry["functions"] == []


def test_nested_entries_are_marked_and_parents_list_inner_tables():
    entries = classify("WITH d AS (DELETE FROM audit.log WHERE id = 1 RETURNING *) SELECT * FROM d")
    assert entries[1] == {
        "type": "delete",
        "tag": "DeleteStmt",
        "has_where": True,
        "nested": True,
        "tables": ["audit.log"],
        "functions": [],
        "qualified_functions": [],
        "operators": ["="],
    }
    assert "audit.log" in entries[0]["tables"]
    assert "nested" not in entries[0]


@pytest.mark.parametrize(
    ("sql", "operators"),
    [
        ("select 1 from t where a = 1", ["="]),
        ("select 1 from t where a operator(public.+) 1", ["public.+"]),
        # pg_catalog's by its bare name: a superuser may make one there (user_operators)
        ("select 1 from t where a operator(pg_catalog.=) 1", ["="]),
        ("select 1 from t where a between 1 and 2", ["<", "<=", ">=", ">"]),
        ("select 1 from t where a not between symmetric 1 and 2", ["<", "<=", ">=", ">"]),
        ("select 1 from t where a in (select b from u)", ["="]),
        ("select 1 from t where a in (1, 2)", ["="]),
        ("select 1 from t where a not in (1, 2)", ["<>"]),
        ("select 1 from t where a < all (select b from u)", ["<"]),
        ("select 1 from t where a ~>~ any (array['x'])", ["~>~"]),
        ("select 1 from t where a is distinct from b", ["="]),
        ("select nullif(a, b) from t", ["="]),
        (
            "select 1 from t where a like 'x%' or a ilike 'y' or a similar to 'z'",
            ["~~", "~~*", "~"],
        ),
        ("select case a when 1 then 2 end from t", ["="]),
        ("select case when a then 2 end from t", []),
        ("select 1 from t join u using (id)", ["="]),
        ("select 1 from t natural join u", ["="]),
        ("select 1 from t join u on true", []),
        ("select a from t order by a using ~<~", ["~<~"]),
        ("select exists (select 1 from t)", []),
        ("select - a from t", ["-"]),
        ("do $$begin perform 1 + 2; end$$", ["+"]),
    ],
)
def test_operators_are_listed_as_written_and_as_the_server_implies_them(sql, operators):
    assert one(sql).get("operators", []) == operators
    assert classify_reference(sql) == classify(sql)


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("select 'x'::dd", ["dd"]),
        ("select cast('x' as public.dd)", ["public.dd"]),
        ("select '{x}'::dd[]", ["dd"]),
        ("select 'x'::\"Dd\"", ["Dd"]),
        # pg_catalog's, qualified: by their bare names (a superuser may make a domain there)
        ("select 1::int, 'x'::varchar(3), true::boolean", ["int4", "varchar", "bool"]),
        ("select 'x'::pg_catalog.text", ["text"]),
        ("select 'x'::text", ["text"]),  # unqualified: the policy looks it up
        ("select * from f() as (a dd)", ["dd"]),
    ],
)
def test_type_names_are_listed_pg_catalogs_by_their_bare_names(sql, names):
    assert one(sql).get("type_names", []) == names
    assert classify_reference(sql) == classify(sql)


def test_explain_flags():
    plain = classify("EXPLAIN DELETE FROM orders")
    assert plain == [
        {
            "type": "explain",
            "tag": "ExplainStmt",
            "analyze": False,
            "tables": ["orders"],
            "functions": [],
            "qualified_functions": [],
            "outputs": [],
            "predicates": [],
            "explains": "delete",
        }
    ]
    assert one("EXPLAIN ANALYZE SELECT 1")["analyze"] is True
    assert one("EXPLAIN (ANALYZE on) SELECT 1")["analyze"] is True


EXPLAIN_OPTION_LISTS = [
    "ANALYZE",
    "ANALYZE false",
    "ANALYZE false, ANALYZE true",  # the server takes the last: this one deletes
    "ANALYZE true, ANALYZE false",
    "ANALYZE 0, COSTS off, ANALYZE 1",
    "ANALYZE off, ANALYZE",
    "ANALYZE 'off', ANALYZE 'ON'",
    "ANALYZE on, ANALYZE 'off'",
    "VERBOSE, ANALYZE TRUE, ANALYZE FALSE, ANALYZE TRUE",
]


def test_an_explain_that_runs_its_statement_says_so(pg_database):
    """EXPLAIN hides the statement it explains only when the server will not run it: each
    option list goes to the real server, and a DELETE that deleted rows must have surfaced
    as an entry of its own."""
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE victims (id int)")
        for options in EXPLAIN_OPTION_LISTS:
            conn.execute("INSERT INTO victims SELECT generate_series(1, 3)")
            sql = f"EXPLAIN ({options}) DELETE FROM victims"
            conn.execute(sql)
            row = conn.execute("SELECT count(*) FROM victims").fetchone()
            ran = row is not None and row[0] == 0
            conn.execute("TRUNCATE victims")
            assert ("delete" in types(sql)) is ran, sql
            assert one(sql)["analyze"] is ran, sql


def test_where_flags():
    assert one("DELETE FROM t")["has_where"] is False
    assert one("DELETE FROM t WHERE a = 1")["has_where"] is True
    assert one("UPDATE t SET a = 1")["has_where"] is False
    assert one("UPDATE t SET a = 1 WHERE true")["has_where"] is True


def test_copy_flags():
    assert one("COPY t TO PROGRAM 'nc evil 1'") == {
        "type": "copy",
        "tag": "CopyStmt",
        "direction": "to",
        "program": True,
        "stdio": False,
        "tables": ["t"],
        "functions": [],
        "qualified_functions": [],
        "outputs": [{"name": "", "kind": "star", "columns": [], "tables": ["t"]}],
        "predicates": [],
    }
    from_program = one("COPY t FROM PROGRAM 'cat /etc/passwd'")
    assert (from_program["direction"], from_program["program"]) == ("from", True)
    stdin = one("COPY t FROM STDIN")
    assert (stdin["direction"], stdin["program"], stdin["stdio"]) == ("from", False, True)
    assert one("COPY t FROM '/etc/passwd'")["stdio"] is False


def test_drop_objects():
    assert one("DROP DATABASE orders")["object"] == "database"
    assert one("DROP SCHEMA s CASCADE")["object"] == "schema"
    table = one("DROP TABLE public.a, b")
    assert (table["object"], table["tables"]) == ("table", ["public.a", "b"])
    assert one("DROP FUNCTION f(int)")["object"] == "function"
    assert one("DROP TABLESPACE ts")["type"] == "drop"


def test_settings():
    assert one("SET ROLE postgres")["setting"] == "role"
    assert one("SET SESSION AUTHORIZATION bob")["setting"] == "session_authorization"
    assert one("RESET ROLE")["reset"] is True
    assert one("SET LOCAL statement_timeout = 5")["setting"] == "statement_timeout"
    assert one("SHOW ALL")["setting"] == "all"


@pytest.mark.parametrize(
    ("sql", "function"),
    [
        ("SeLeCt PG_READ_FILE('/etc/passwd')", "pg_read_file"),
        ("select pg_catalog.pg_read_file('x')", "pg_read_file"),
        ("select * from t where id in (select pg_ls_dir('.'))", "pg_ls_dir"),
        ("select * from pg_ls_dir('.')", "pg_ls_dir"),
        ("select 1 where exists (select lo_export(1, '/tmp/x'))", "lo_export"),
        ("insert into t values (lo_import('/etc/shadow'))", "lo_import"),
        ("create table t (a text default pg_read_file('x'))", "pg_read_file"),
        ("with x as (select dblink('h', 'q')) select * from x", "dblink"),
        ("select (select (select pg_read_binary_file('x')))", "pg_read_binary_file"),
        ("update t set a = pg_read_file('x') where b = lower('y')", "pg_read_file"),
        ("select count(*) from t group by 1 having max(pg_read_file('x')) > ''", "pg_read_file"),
        ("select U&\"pg_read_fil\\0065\"('x')", "pg_read_file"),
        ("call pg_read_file('x')", "pg_read_file"),
        ("explain select pg_read_file('x')", "pg_read_file"),
        ("DO $$ BEGIN PERFORM pg_read_file('x'); END $$", "pg_read_file"),
        ("DO $$ DECLARE v text; BEGIN v := pg_read_file('x'); END $$", "pg_read_file"),
        ("DO $$ BEGIN IF pg_ls_dir('.') IS NULL THEN NULL; END IF; END $$", "pg_ls_dir"),
    ],
)
def test_functions_found_anywhere(sql, function):
    assert function in one(sql)["functions"]


def test_do_blocks_that_cannot_be_seen_are_opaque():
    assert one("DO $$ BEGIN NULL; END $$")["opaque"] is False
    assert one("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$")["opaque"] is True
    assert one("DO LANGUAGE plpythonu $$ import os $$")["opaque"] is True
    assert one("DO $$ BEGIN this is not plpgsql; END $$")["opaque"] is True


def test_unparseable_is_one_entry():
    entries = classify("SELECT 1; SELEC 2; DROP TABLE x")
    assert len(entries) == 1
    assert entries[0]["type"] == "unparseable"
    assert entries[0]["tag"] == "ParseError"
    assert "syntax error" in entries[0]["error"]
    assert classify("select '\x00'")[0]["type"] == "unparseable"


def test_shape_ignores_literals_and_nothing_else():
    assert shape("SELECT * FROM t WHERE id = 1") == shape("SELECT * FROM t WHERE id = 99")
    assert shape("SELECT * FROM t WHERE n = 'a' LIMIT 5") == shape(
        "SELECT * FROM t WHERE n = 'it''s' LIMIT 50"
    )
    assert shape("SELECT * FROM t WHERE id = 1") != shape("SELECT * FROM u WHERE id = 1")
    assert shape("SELEC 1") is None
    # what pglast's fingerprint would merge, though none of it is a literal value
    different = [
        ("SELECT * FROM hr.pay", "SELECT * FROM public.pay"),
        ("INSERT INTO hr.pay VALUES (1)", "INSERT INTO pay VALUES (1)"),
        ("LISTEN a", "LISTEN b"),
        ("EXECUTE p", "EXECUTE q"),
        ("COPY t FROM '/a'", "COPY t FROM '/b'"),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", "EXPLAIN (ANALYZE true) DELETE FROM t"),
    ]
    for a, b in different:
        assert shape(a) != shape(b), (a, b)


# Texts whose numbers are not all literal values: the number is a count, a type modifier,
# a column number, part of a comment or of a name. Each keeps a shape of its own.
NUMBERS_THAT_ARE_NOT_LITERALS = [
    ("FETCH 5 FROM c", "FETCH 6 FROM c"),
    ("SELECT a::varchar(10) FROM t", "SELECT a::varchar(20) FROM t"),
    (
        "ALTER INDEX i ALTER COLUMN 1 SET STATISTICS 9",
        "ALTER INDEX i ALTER COLUMN 2 SET STATISTICS 9",
    ),
    ("SELECT 1 -- 5\nFROM t", "SELECT 1 -- 6\nFROM t"),
    ("SELECT 1 /* 5 */", "SELECT 1 /* 6 */"),
    ("SELECT * FROM t1", "SELECT * FROM t2"),
    ("SELECT * FROM té1", "SELECT * FROM té2"),
    ('SELECT * FROM "1"', 'SELECT * FROM "2"'),
    ("SELECT $1", "SELECT $2"),
    ("COPY t FROM '/a1'", "COPY t FROM '/a2'"),
]


def test_shaped_remembers_by_skeleton_only_what_the_shape_ignores():
    """shaped() answers texts that differ only in numbers from one proven skeleton, and
    is shape() for every text all the same: where a number is no literal it must not merge."""
    zeros = "SELECT a FROM t WHERE id = 0 LIMIT 0"
    assert skeleton("SELECT a FROM t WHERE id = 42 LIMIT 7") == zeros
    assert skeleton("SELECT a FROM t WHERE n = 'x' AND id = 4") is None  # a quote: no skeleton
    assert skeleton("SELECT a FROM t") is None  # no number
    for a, b in NUMBERS_THAT_ARE_NOT_LITERALS:
        assert shaped(a) == shape(a) and shaped(b) == shape(b), (a, b)
        assert shaped(a) != shaped(b) or shape(a) is None, (a, b)
    same = [f"SELECT abalance FROM pgbench_accounts WHERE aid = {n}" for n in (1, 7, 123456789)]
    assert len({shaped(t) for t in same}) == 1 and shaped(same[0]) == shape(same[0])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "SELECT a FROM t WHERE id = {} LIMIT {}",
            "SELECT a, {} FROM t{} WHERE x > -{}.5",
            "FETCH {} FROM c{}",
            "SELECT a::numeric({},{}) FROM t",
            "UPDATE t SET n = n + {} WHERE id IN ({}, 3)",
            "SELECT {} -- {}",
            "SELECT {}; DELETE FROM t WHERE id = {}",
            "SELECT * FROM t ORDER BY {} OFFSET {}",
            "ALTER TABLE t ALTER c SET STATISTICS {}; SELECT {}",
            "SELECT x{} FROM y WHERE z = {}e{}",
            "SELEC {} FROM {}",
        ]
    ),
    st.lists(st.integers(min_value=0, max_value=10**12), min_size=3, max_size=3),
)
def test_shaped_is_shape(template, numbers):
    text = template.format(*numbers)
    assert shaped(text) == shape(text)


def test_no_shape_for_do_blocks_whose_code_is_a_literal():
    """A shape ignores a DO block's code (a string literal), which classify()
    reads: such text has no shape, so a verdict is reused for it only by exact text."""
    harmless = "DO 'begin perform 1; end'"
    destructive = "DO $$begin truncate accounts; end$$"
    assert classify(harmless)[0]["type"] == classify(destructive)[0]["type"] == "do"
    assert classify(destructive)[1]["type"] == "truncate"
    assert shape(harmless) is None and shape(destructive) is None
    assert shape("SELECT 1; DO 'begin perform 1; end'") is None
    assert shape("/* a */ DO 'begin perform 1; end'") is None
    assert shape("-- a\n  do 'begin perform 1; end'") is None
    assert shape("SELECT 1;\n/* ; */ -- x\nDo 'begin perform 1; end'") is None
    # the word alone changes nothing
    assert shape("SELECT 'do' AS do_") == shape("SELECT 'x' AS do_")
    assert shape("SELECT ';do' AS x") == shape("SELECT ';no' AS x")


def test_a_do_that_starts_no_statement_costs_no_parse(monkeypatch):
    """Upserts say DO too: where the word cannot start a statement, shape() does not
    parse the text again to find out (each new text of an upsert would pay for it)."""
    import portcullis.shape as shapes

    calls: list[str] = []
    monkeypatch.setattr(shapes.pglast, "parse_sql", lambda sql: calls.append(sql) or [])
    upserts = [
        "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
        "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
        "CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING",
    ]
    assert all(shape(sql) is not None for sql in upserts)
    assert calls == []


def test_a_do_block_has_no_shape():
    assert shape("DO $$ BEGIN PERFORM 1; END $$") is None
    assert shape("select 1; /* x */ do $$begin drop table t; end$$") is None
    assert shape("select 1 -- do\n") is not None


def test_split():
    assert split("select 1; /* c */ select 2") == ["select 1", "select 2"]
    assert split("selec 1; x") == ["selec 1; x"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_classify_never_raises(sql):
    entries = classify(sql)
    assert isinstance(entries, list)
    for entry in entries:
        assert {"type", "tag", "tables", "functions"} <= entry.keys()
        assert isinstance(entry["tables"], list)
        assert isinstance(entry["functions"], list)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["SELECT 1", "DELETE FROM t", "/* x */", "-- y\n", "DROP TABLE t", "BEGIN", ";", "'"]
        ),
        max_size=8,
    )
)
def test_classify_never_raises_on_sql_fragments(parts):
    sql = " ".join(parts)
    entries = classify(sql)
    if "DROP TABLE t" in sql and all(e["type"] != "unparseable" for e in entries):
        assert "drop" in [e["type"] for e in entries]


_NAMES = st.sampled_from(["orders", "pay", "accounts"])
_SCHEMAS = st.sampled_from(["", "public.", "hr."])
_VALUES = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.text("abc' $\\;-", max_size=8).map(lambda t: "'" + t.replace("'", "''") + "'"),
)
_TEMPLATES = st.sampled_from(
    [
        "SELECT id FROM {s}{t} WHERE id = {v}",
        "DELETE FROM {s}{t} WHERE id = {v}",
        "UPDATE {s}{t} SET note = {v}",
        "SELECT lower({v}) FROM {s}{t}; DROP TABLE {s}{t}",
        "DO $$begin delete from {s}{t} where id = {v}; end$$",
        "DO 'begin perform {v}; end'",
        "WITH x AS (DELETE FROM {s}{t} RETURNING id) SELECT {v} FROM x",
        "EXPLAIN (ANALYZE {b}) DELETE FROM {s}{t} WHERE id = {v}",
        "COPY {s}{t} TO PROGRAM {v}",
        "SELECT set_config('role', {v}, false)",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_equal_shapes_mean_equal_classifications(data):
    """What a verdict reused by shape relies on: two texts with one shape are classified
    alike, so a policy that reads the classification (never literal values) answers both
    alike."""
    template = data.draw(_TEMPLATES)
    texts = [
        template.format(
            s=data.draw(_SCHEMAS),
            t=data.draw(_NAMES),
            v=data.draw(_VALUES),
            b=data.draw(st.sampled_from(["true", "false"])),
        )
        for _ in range(2)
    ]
    first, second = (shape(t) for t in texts)
    if first is not None and first == second:
        assert classify(texts[0]) == classify(texts[1]), texts


# --- what issue 20's policy reads: names as the server resolves them, settings, locks ----


def test_qualified_and_cased_function_names():
    entry = one("select pg_catalog.lower('a'), \"PUBLIC\".evil(), \"LOWER\"('x'), upper('y')")
    assert entry["functions"] == ["lower", "evil", "upper"]
    assert entry["qualified_functions"] == ["pg_catalog.lower", "public.evil"]
    assert entry["cased_functions"] == ["PUBLIC.evil", "LOWER"]
    assert "cased_functions" not in one("select \"lower\"('x')")
    assert one("select u&\"pg_catalog\".lower('x')")["qualified_functions"] == ["pg_catalog.lower"]


@pytest.mark.parametrize(
    ("sql", "read", "dynamic"),
    [
        ("SHOW data_directory", None, False),
        ("SELECT current_setting('Data_Directory')", ["data_directory"], False),
        ("select PG_CATALOG.CURRENT_SETTING('jit', true)", ["jit"], False),
        ("select current_setting(E'hba\\x5ffile')", ["hba_file"], False),
        ("select current_setting(U&'hba\\005ffile')", ["hba_file"], False),
        ("select * from current_setting('config_file')", ["config_file"], False),
        ("select \"current_setting\"('search_path')", ["search_path"], False),
        ("select current_setting(name) from pg_settings", None, True),
        ("select current_setting($1 || '')", None, True),
        ("select current_setting($1::varchar(3))", None, True),
        ("select current_setting($1::name)", None, True),
        ("select current_setting(setting_name => $1)", None, True),
        ("select current_setting('jit'::text)", None, True),
        ("select current_setting(setting_name => 'jit')", None, True),
        ("select 1 where current_setting('a') = current_setting('b')", ["a", "b"], False),
        ("with s as (select current_setting('ident_file')) select * from s", ["ident_file"], False),
        ("DO $$ BEGIN PERFORM current_setting('hba_file'); END $$", ["hba_file"], False),
        ("select lower('current_setting')", None, False),
    ],
)
def test_current_setting_reads(sql, read, dynamic):
    """The settings a statement reads by current_setting: its first argument when a string
    literal (escapes decoded, as the server reads it), otherwise unknown."""
    entry = one(sql)
    assert entry.get("read_settings") == read
    assert entry.get("dynamic_read_settings", False) is dynamic


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        ("select current_setting($1)", [1]),
        ("SELECT current_setting($2::VARCHAR, true)", [2]),
        ("select current_setting(CAST($1 AS pg_catalog.text))", [1]),
        ("select current_setting($1::character varying)", [1]),
        ("select current_setting($1), current_setting($3::text)", [1, 3]),
    ],
)
def test_current_setting_of_a_parameter(sql, parameters):
    """current_setting($n), $n as it is or cast to text or varchar without a length: the
    setting is the value bound to parameter n (read_setting_parameters), judged at Bind."""
    entry = one(sql)
    assert entry.get("read_setting_parameters") == parameters
    assert "dynamic_read_settings" not in entry and "read_settings" not in entry


@pytest.mark.parametrize(
    ("sql", "settings", "dynamic"),
    [
        ("SELECT current_setting('jit'), set_config('jit', 'off', false)", ["jit"], False),
        ("select PG_CATALOG.SET_CONFIG('Role', 'x', false)", ["role"], False),
        ("select set_config(E'ro\\x6ce', 'x', false)", ["role"], False),
        ("select \"set_config\"('search_path', 'x', false)", ["search_path"], False),
        ("select set_config(lower('ROLE'), 'x', false)", None, True),
        ("select set_config('a'::text, 'x', false)", None, True),
        ("select set_config(NULL, 'x', false)", None, True),
        (
            "select set_config(setting_name => 'jit', new_value => 'x', is_local => false)",
            None,
            True,
        ),
        (
            "select set_config(new_value => 'x', setting_name => 'role', is_local => false)",
            None,
            True,
        ),
        ("select 1 from t where set_config('jit', 'on', true) = 'on'", ["jit"], False),
        ("DO $$ BEGIN PERFORM set_config('role', 'x', false); END $$", ["role"], False),
        ("select lower('set_config')", None, False),
    ],
)
def test_set_config_settings(sql, settings, dynamic):
    entry = one(sql)
    assert entry.get("settings") == settings
    assert entry.get("dynamic_settings", False) is dynamic


@pytest.mark.parametrize(
    ("sql", "read_write"),
    [
        ("SET TRANSACTION READ WRITE", True),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", True),
        ("SET TRANSACTION READ ONLY", False),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", False),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", True),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", False),
        ("SET default_transaction_read_only = off", True),
        ("SET default_transaction_read_only = 'of'", True),
        ("SET default_transaction_read_only TO 0", True),
        ("SET default_transaction_read_only = false", True),
        ("SET default_transaction_read_only = on", False),
        ("SET default_transaction_read_only = 'TRUE'", False),
        ("SET LOCAL transaction_read_only = 1", False),
        ("SET transaction_read_only = n", True),
        ("RESET transaction_read_only", True),
        ("SET transaction_read_only TO DEFAULT", True),
        ("RESET default_transaction_read_only", True),
        ("BEGIN READ WRITE", True),
        ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE", True),
        ("BEGIN TRANSACTION READ ONLY, READ WRITE", True),
        ("BEGIN READ ONLY", False),
        ("BEGIN", False),
        ("SET statement_timeout = 0", False),
    ],
)
def test_read_write(sql, read_write):
    assert one(sql).get("read_write", False) is read_write


@pytest.mark.parametrize(
    ("sql", "first"),
    [
        ("SET search_path = public", True),
        ("SET search_path = pg_catalog, public", True),
        ('SET search_path = "pg_catalog", "$user"', True),
        ("SET search_path = public, pg_catalog", False),
        ('SET LOCAL search_path TO "$user", public, pg_catalog', False),
        ("SET search_path = 'public, pg_catalog'", True),  # one schema with that name
        ('SET search_path = "PG_CATALOG", public', True),  # another schema; pg_catalog first
        ("SET SCHEMA 'app'", True),
        ("SET search_path TO DEFAULT", True),
        ("RESET search_path", True),
    ],
)
def test_pg_catalog_first(sql, first):
    entry = one(sql)
    assert entry["setting"] == "search_path"
    assert entry["pg_catalog_first"] is first


@pytest.mark.parametrize(
    ("sql", "schemas"),
    [
        ("SET search_path = archive, Public", ["archive", "public"]),
        ('SET search_path = "Archive", "$user"', ["Archive", "$user"]),
        ("SET search_path = 'public, archive'", ["public, archive"]),
        ("SET SCHEMA 'app'", ["app"]),
        ("RESET search_path", []),
    ],
)
def test_search_path_schemas_as_the_server_takes_them(sql, schemas):
    assert one(sql)["schemas"] == schemas


def test_setting_names_values_and_resets():
    assert one("SET NAMES 'SJIS'")["setting"] == "client_encoding"
    assert one("SET TIME ZONE 'UTC'")["setting"] == "timezone"
    assert one("SET statement_timeout = '5s'")["value"] == "5s"
    assert one("SET statement_timeout = 5000")["value"] == "5000"
    assert one("SET statement_timeout = 0")["value"] == "0"
    assert "value" not in one("SET datestyle = iso, mdy")
    assert one("SET client_encoding TO DEFAULT")["reset"] is True
    assert one("RESET ALL") | {"reset": True} == one("RESET ALL")
    assert one("RESET ALL")["setting"] == "all"


@pytest.mark.parametrize(
    ("sql", "locking"),
    [
        ("SELECT * FROM t FOR UPDATE", True),
        ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", True),
        ("SELECT * FROM t FOR SHARE", True),
        ("SELECT * FROM t FOR KEY SHARE NOWAIT", True),
        ("SELECT * FROM (SELECT * FROM t FOR UPDATE) x", True),
        ("WITH x AS (SELECT * FROM t FOR UPDATE) SELECT 1", True),
        ("SELECT 1 WHERE EXISTS (SELECT 1 FROM t FOR SHARE)", True),
        ("DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", True),
        ("PREPARE p AS SELECT * FROM t FOR UPDATE", True),
        ("COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", True),
        ("DO $$ BEGIN PERFORM * FROM t FOR UPDATE; END $$", True),
        ("SELECT * FROM t", False),
        ("SELECT 'for update' FROM t", False),
    ],
)
def test_locking(sql, locking):
    assert one(sql).get("locking", False) is locking


@pytest.mark.parametrize(
    ("sql", "field", "value"),
    [
        ("DECLARE c CURSOR FOR SELECT 1", "cursor", "c"),
        ('DECLARE "Big C" BINARY CURSOR WITH HOLD FOR SELECT 1', "cursor", "Big C"),
        ("CLOSE c", "cursor", "c"),
        ("CLOSE ALL", "cursor", "*"),
        ("PREPARE p (int) AS SELECT $1", "name", "p"),
        ("EXECUTE p(1)", "name", "p"),
        ("DEALLOCATE p", "name", "p"),
        ("DEALLOCATE PREPARE p", "name", "p"),
        ("DEALLOCATE ALL", "name", "*"),
        ("DEALLOCATE PREPARE ALL", "name", "*"),
        ("DISCARD ALL", "target", "all"),
        ("DISCARD PLANS", "target", "plans"),
        ("DISCARD SEQUENCES", "target", "sequences"),
        ("DISCARD TEMP", "target", "temp"),
        ("DISCARD TEMPORARY", "target", "temp"),
    ],
)
def test_portal_and_prepared_statement_names(sql, field, value):
    assert one(sql)[field] == value


@pytest.mark.parametrize(
    ("sql", "function"),
    [
        ("select * from pg_ls_waldir()", "pg_ls_waldir"),
        ("select * from rows from (pg_ls_tmpdir(), generate_series(1, 2))", "pg_ls_tmpdir"),
        ("explain select pg_terminate_backend(1)", "pg_terminate_backend"),
        ("copy (select pg_reload_conf()) to stdout", "pg_reload_conf"),
        ("with x as (select pg_notify('a', 'b')) select * from x", "pg_notify"),
        ("select count(*) filter (where setval('s', 1) > 0) from t", "setval"),
        ("select row_number() over (order by nextval('s')) from t", "nextval"),
        ("DO $$ BEGIN PERFORM lo_from_bytea(0, 'x'); END $$", "lo_from_bytea"),
        ("select \"PG_CATALOG\".\"QUERY_TO_XML\"('select 1', true, false, '')", "query_to_xml"),
    ],
)
def test_functions_surface_anywhere(sql, function):
    assert function in one(sql)["functions"]


def test_fast_path_call_entry():
    from pdp.domain.policy_input import function_call_entry

    assert function_call_entry("lo_creat") == {
        "type": "select",
        "tag": "FunctionCall",
        "tables": [],
        "functions": ["lo_creat"],
        "qualified_functions": [],
        "unqualified_functions": ["lo_creat"],
    }
    evil = function_call_entry('public."Evil"')
    assert evil["qualified_functions"] == ["public.evil"]
    assert evil["cased_functions"] == ["public.Evil"]
    assert function_call_entry('"a.b".c')["qualified_functions"] == ["a.b.c"]
    assert function_call_entry('a."b')["qualified_functions"] != []  # malformed: never pg_catalog


# Statements whose every field the two classifier paths must give alike.
PARITY_CORPUS = [
    "SELECT current_setting('jit'), set_config('jit', 'off', false)",
    "select pg_catalog.set_config('jit','off',false), \"PUBLIC\".evil(), set_config(x, 'y', false)",
    "select set_config(setting_name => 'a', new_value => 'b', is_local => false)",
    "select set_config('', 'x', false), set_config(NULL, 'x', false), set_config(1, 'x', false)",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SET default_transaction_read_only = off",
    "SET transaction_read_only TO 0",
    "SET transaction_read_only = true",
    "RESET transaction_read_only",
    "SET NAMES 'SJIS'",
    "SET search_path = a, pg_catalog",
    'SET search_path = 1, "$user"',
    "SET search_path TO DEFAULT",
    "SET statement_timeout = 1.5",
    "SET statement_timeout = 0",
    "SET x.y = on",
    "SET datestyle = iso, mdy",
    "SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE",
    "SET TIME ZONE LOCAL",
    "RESET ALL",
    "BEGIN READ WRITE",
    "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
    "BEGIN TRANSACTION READ ONLY, READ WRITE",
    "COMMIT AND CHAIN",
    "select * from t for update",
    "with x as (select 1 from t for key share) select * from x",
    "DECLARE c CURSOR FOR SELECT 1 FOR UPDATE",
    'DECLARE "C" SCROLL CURSOR WITH HOLD FOR SELECT 1',
    "CLOSE ALL",
    "CLOSE c",
    "PREPARE p AS SELECT 1",
    "PREPARE q AS DELETE FROM t WHERE id = $1",
    "DEALLOCATE ALL",
    "DEALLOCATE PREPARE p",
    "EXECUTE p(1)",
    "DISCARD ALL",
    "DISCARD TEMP",
    "DISCARD PLANS",
    "DISCARD SEQUENCES",
    "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
    "DO $$ BEGIN PERFORM set_config('role', 'x', false); PERFORM public.f(); END $$",
    "DO $$ DECLARE v int; BEGIN v := (SELECT 1 FROM t FOR UPDATE); END $$",
    "EXPLAIN SELECT pg_catalog.pg_reload_conf() FROM t FOR SHARE",
    'COPY (SELECT "Weird".f()) TO STDOUT',
    "select * from rows from (pg_ls_tmpdir(), generate_series(1, 2))",
    "WITH d AS (DELETE FROM audit.log WHERE id = 1 RETURNING *) SELECT * FROM d",
    "UPDATE t SET a = db.s.f() WHERE b = pg_catalog.lower('y')",
    # lineage (pdp/sql/lineage.py): outputs and predicates
    "select upper(email), count(*) from customers where email like 'a%' group by name",
    "select c, row_to_json(c), to_jsonb(customers.*) from customers c, customers",
    "with recursive r(n, e) as (select 1, email from c union all select n + 1, e from r) "
    "select * from r order by 2",
    "select * from a union select * from b intersect select x, y from (values (1, 2)) v(x, y)",
    "select u.*, (select max(ssn) from p where p.id = c.id) from c, lateral unnest(c.tags) u",
    "select first_value(phone) over (partition by email order by ssn) from c "
    "where md5(iban) = $1 and token between 'a' and 'b' and email in (select e from x)",
    "COPY (SELECT upper(email) FROM customers WHERE phone ~ '^5') TO STDOUT",
    "COPY customers (email, phone) TO STDOUT",
    "DECLARE k BINARY CURSOR FOR SELECT c FROM customers c",
    "EXPLAIN SELECT s.e FROM (SELECT email AS e FROM c) s WHERE s.e ILIKE 'a%'",
    "DELETE FROM c USING d WHERE c.email = d.email AND c.ssn LIKE '1%' "
    "RETURNING c.*, upper(d.phone)",
    "DO $$ DECLARE v text; BEGIN SELECT upper(email) INTO v FROM customers; END $$",
]


@pytest.mark.parametrize("sql", PARITY_CORPUS)
def test_json_walk_and_ast_reference_agree(sql):
    # (classify() adds what both walks leave to it: an EXPLAIN's `explains`, `literal_keys`)
    fast = classify_fast(sql)
    assert fast is None or fast == classify_reference(sql)
