"""pdp.sql.rowfilter without a server: every reference of a filtered table rewritten,
every path it cannot cover refused, values quoted by the deparser. (The same shapes run
against PostgreSQL in tests/test_rowfilter_pg.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pglast import parse_sql

from pdp.sql.rowfilter import INNER_ALIAS, rewrite
from portcullis.verdict import RowCondition, verdict_from_result

ACME = {"public.orders": (RowCondition("tenant_id", "=", "acme"),)}


def _filtered_refs(sql: str) -> tuple[int, int]:
    """(references of `orders` in sql, how many are filtered): a reference is filtered when
    it is the one FROM item of a SELECT whose WHERE starts with the tenant predicate on
    that reference's own name (the inner subselect, or the WHERE form), with no column
    aliases renaming the table's columns."""
    from pglast import ast

    from pdp.sql.rowfilter import _range_vars

    tree = parse_sql(sql)
    refs = [rv for rv in _range_vars(tree) if rv.relname == "orders"]
    filtered: set[int] = set()
    stack: list = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (tuple, list)):
            stack.extend(node)
            continue
        if not isinstance(node, ast.Node):
            continue
        if isinstance(node, ast.SelectStmt) and node.fromClause and len(node.fromClause) == 1:
            [item] = node.fromClause
            where = node.whereClause
            anded = isinstance(where, ast.BoolExpr) and where.boolop == 0
            first = where.args[0] if anded else where
            if isinstance(item, ast.RangeVar) and isinstance(first, ast.A_Expr):
                name = item.alias.aliasname if item.alias else item.relname
                fields = [f.sval for f in first.lexpr.fields]
                renamed = item.alias is not None and item.alias.colnames
                if fields == [name, "tenant_id"] and not renamed:
                    filtered.add(id(item))
        for slot in getattr(node, "__slots__", ()):
            value = getattr(node, slot)
            if isinstance(value, (ast.Node, tuple, list)):
                stack.append(value)
    return len(refs), sum(id(rv) in filtered for rv in refs)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM orders",
        "SELECT * FROM public.orders o",
        "SELECT * FROM ONLY orders",
        "SELECT * FROM orders AS portcullis_rf",  # the inner alias, spoofed: still filtered
        # column aliases that would move the predicate's name onto another column
        "SELECT * FROM orders AS o (id, secret, tenant_id)",
        "SELECT * FROM orders AS tenant_id WHERE tenant_id.tenant_id IS NOT NULL",
        "SELECT o.* FROM orders o WHERE true OR o.id = 1 GROUP BY 1 HAVING count(*) > 0 LIMIT 1",
        "SELECT * FROM a JOIN orders ON true LEFT JOIN (orders o2 CROSS JOIN b) ON true",
        "SELECT * FROM (SELECT * FROM (SELECT * FROM orders) x) y",
        "SELECT (SELECT max(id) FROM orders), EXISTS (SELECT 1 FROM orders)",
        "SELECT * FROM t WHERE id IN (SELECT id FROM orders) OR id = ANY (SELECT id FROM orders)",
        "WITH o AS (SELECT * FROM orders) SELECT * FROM o",
        "WITH a AS (SELECT * FROM orders), orders AS (SELECT 1) SELECT * FROM a",
        "WITH x AS (SELECT * FROM orders), y AS (SELECT * FROM x) SELECT * FROM y",
        "SELECT * FROM orders UNION SELECT * FROM orders INTERSECT SELECT * FROM orders",
        "SELECT * FROM t, LATERAL (SELECT * FROM orders WHERE orders.c = t.c) l",
        "SELECT * FROM t CROSS JOIN LATERAL (SELECT * FROM orders) l",
        "EXPLAIN SELECT * FROM orders",
        "PREPARE p(int) AS SELECT * FROM orders WHERE id = $1",
        "DECLARE c CURSOR FOR SELECT * FROM orders",
        "COPY (SELECT * FROM orders) TO STDOUT",
        "INSERT INTO t SELECT * FROM orders",
        "UPDATE t SET a = 1 FROM orders WHERE t.id = orders.id",
        "DELETE FROM t USING orders WHERE t.id = orders.id",
        "SELECT 1; SELECT * FROM orders",
        "TABLE orders",
        "SELECT * FROM t WHERE EXISTS (WITH q AS (SELECT * FROM orders) SELECT * FROM q)",
        "SELECT * FROM (VALUES (1)) v, orders",
        "SELECT * FROM ROWS FROM (generate_series(1, 2)) g, orders",
    ],
)
def test_every_reference_is_filtered(sql):
    done = rewrite(sql, ACME)
    assert not done.denied, done.denied
    refs, inner = _filtered_refs(done.sql)
    assert refs and refs == inner, done.sql
    assert ".tenant_id = 'acme'" in done.sql
    assert done.tables == ("public.orders",)


@pytest.mark.parametrize(
    "sql",
    [
        "WITH orders AS (SELECT 1) SELECT * FROM orders",
        "WITH RECURSIVE orders(n) AS (SELECT 1 UNION SELECT n + 1 FROM orders) TABLE orders",
        "SELECT * FROM archive.orders",
        'SELECT * FROM "Orders"',
        "SELECT 1",
        "SET statement_timeout = 5",
    ],
)
def test_what_is_not_the_filtered_table_is_left_alone(sql):
    assert rewrite(sql, ACME).sql == "" and not rewrite(sql, ACME).denied


@pytest.mark.parametrize(
    "sql, why",
    [
        ("UPDATE orders SET a = 1", "cannot be applied"),
        ("DELETE FROM orders", "cannot be applied"),
        ("INSERT INTO orders VALUES (1)", "cannot be applied"),
        ("MERGE INTO orders USING t ON true WHEN MATCHED THEN DELETE", "cannot be applied"),
        ("COPY orders TO STDOUT", "cannot be applied"),
        ("SELECT * FROM orders TABLESAMPLE BERNOULLI (50)", "cannot be applied"),
        ("LOCK TABLE orders", "cannot be applied"),
        ("CREATE TABLE x AS SELECT 1 FROM t; DROP TABLE orders", "CreateTableAsStmt is not"),
        ("DROP TABLE orders", "DropStmt is not"),
        ("ALTER TABLE orders DISABLE ROW LEVEL SECURITY", "AlterTableStmt is not"),
        ("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "cannot be applied"),
        ("SELECT * FROM orders_v", "shows rows of public.orders"),
        ("SELECT * FROM public.orders_2024", "shows rows of public.orders"),
        ("DO $$ BEGIN PERFORM 1; END $$", "DO block"),
        ("CALL p()", "CALL"),
        ("SELECT query_to_xml('select * from orders', true, true, '')", "query_to_xml"),
        ("SELECT * FROM dblink('x', 'select 1') AS t(a int)", "dblink"),
        ("SELECT ts_stat('select v from orders')", "ts_stat"),
        ("SELECT * FROM pg_stats", "sampled column values"),
        ("SELECT * FROM pg_catalog.pg_statistic", "sampled column values"),
        ("SELECT * FROM", "cannot be parsed"),
    ],
)
def test_what_cannot_be_proved_covered_is_denied(sql, why):
    sources = {"public.orders_v": ["public.orders"], "public.orders_2024": ["public.orders"]}
    done = rewrite(sql, ACME, sources)
    assert why in done.denied, (sql, done)
    assert done.sql == ""


def test_a_select_of_one_table_alone_is_filtered_in_its_own_where_first():
    """The WHERE form: the predicate first, the client's condition whole after it (an OR
    cannot escape it), qualified by the reference's own name."""
    done = rewrite("SELECT a FROM public.orders o WHERE a = 1 OR true", ACME)
    assert done.sql == (
        "SELECT a FROM public.orders AS o WHERE o.tenant_id = 'acme' AND (a = 1 OR true)"
    )
    # renamed columns keep the subselect: its inner alias reads the table's own columns
    renamed = rewrite("SELECT * FROM orders AS o (id, x, tenant_id)", ACME).sql
    assert f"FROM orders AS {INNER_ALIAS} WHERE {INNER_ALIAS}.tenant_id = 'acme'" in renamed


def test_values_are_constants_the_deparser_quotes_never_pasted_text():
    evil = {"orders": (RowCondition("tenant_id", "=", "x' OR '1'='1"),)}
    done = rewrite("SELECT * FROM orders", evil)
    assert "'x'' OR ''1''=''1'" in done.sql
    [raw] = parse_sql(done.sql)
    # one predicate, one constant: the value did not become SQL
    assert done.sql.count(" OR ") == 1
    assert raw.stmt is not None
    listed = {"orders": (RowCondition("tenant_id", "in", ("a", "b")), RowCondition("n", "<", 3))}
    # (an `in` list reads its table in a subselect kept apart: test_pg_probe_p38)
    assert f"{INNER_ALIAS}.tenant_id IN ('a', 'b') AND {INNER_ALIAS}.n < 3 OFFSET 0" in (
        rewrite("SELECT * FROM orders", listed).sql
    )
    for bad in ("caf\u00e9", "back\\slash", "nul\x00"):
        done = rewrite("SELECT * FROM orders", {"orders": (RowCondition("t", "=", bad),)})
        assert "plain ASCII" in done.denied


def test_a_filter_value_the_policy_left_undefined_is_a_deny_not_no_filter():
    for value in (None, {"a": 1}, [None]):
        condition = {"column": "tenant_id", "op": "in" if isinstance(value, list) else "="}
        condition["value"] = value
        verdict = verdict_from_result(
            {"verdict": "allow", "reasons": [], "row_filter": {"orders": [condition]}}
        )
        assert verdict.kind.wire == "deny", value
    assert verdict_from_result({"verdict": "allow", "row_filter": {"orders": []}}).kind.wire == (
        "deny"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM orders WHERE id = 5 AND n = -3.5 AND s = 'it''s' AND x = $1 LIMIT 10",
        "SELECT * FROM orders WHERE a = true AND b IS NULL AND c = x - -3 AND d = 1::int",
        "SELECT timestamp '2024-01-01', date '2020-01-01', interval '1 day' FROM orders",
        "SELECT $$dollar ' quoted$$, B'101', X'1F', U&'d\\0061t' FROM orders",
        "SELECT 'acme' FROM orders WHERE tenant_id = 'globex'",
    ],
)
def test_a_shape_rewritten_once_gets_each_statements_own_literals(sql):
    from pdp.sql.rowfilter import _rewrite_tree

    first = rewrite(sql, ACME)
    again = rewrite(sql, ACME)  # from the remembered shape
    assert first == again and not first.denied
    alone = _rewrite_tree(sql, ACME, {})
    from pglast.parser import fingerprint

    assert fingerprint(first.sql) == fingerprint(alone.sql)
    # (`x - -3` can fail on a row: that shape reads orders fenced, test_pg_probe_p41)
    assert ".tenant_id = 'acme'" in first.sql
    # the client's literals are its own, in place, and none became the filter's
    refs, inner = _filtered_refs(first.sql)
    assert refs == inner == 1


def test_a_shapes_rewrite_takes_only_statements_of_that_exact_shape():
    from portcullis.literals import fill

    done = rewrite("SELECT * FROM orders WHERE id IN (1, 2) AND s = 'a'", ACME)
    assert done.shape is not None
    other = fill(done.shape, "SELECT * FROM orders WHERE id IN (7, 8) AND s = 'b''c'")
    assert other is not None and "IN (7, 8)" in other and "'b''c'" in other
    assert "orders.tenant_id = 'acme'" in other
    assert fill(done.shape, "SELECT * FROM orders WHERE id IN (7, 8, 9) AND s = 'b'") is None
    assert fill(done.shape, "SELECT * FROM orders_archive WHERE id IN (7, 8) AND s = 'b'") is None
    assert fill(done.shape, "SELECT * FROM orders WHERE id IN (7, 8) OR s = 'b'") is None


NUMBER_SHAPES = [
    "SELECT id, name FROM orders WHERE id = {0}",
    "SELECT id FROM orders WHERE id = -{0} AND total - {1} > {2} LIMIT {3}",
    "SELECT id FROM orders WHERE id IN ({0}, -{1}, {2}) ORDER BY 1",
    "SELECT id FROM orders /* note {0} */ WHERE id = {1} -- {2}",
    "SELECT id FROM orders WHERE total = {0}.{1} OR id = {2}",
    "SELECT t1.id FROM orders t1 WHERE t1.id = {0} OFFSET {1}",
    "SELECT id FROM orders o JOIN t ON t.id = o.id WHERE o.id = {0} AND t.n ^ -{1} > 0",
]


@pytest.mark.parametrize("template", NUMBER_SHAPES)
@given(numbers=st.lists(st.integers(0, 999_999_999), min_size=4, max_size=4))
@settings(max_examples=40, deadline=None)
def test_a_statement_of_numbers_is_filled_as_the_scanner_would_fill_it(template, numbers):
    """The number road (a plan proved per skeleton, then string slicing) gives exactly
    what the token-for-token road gives, for any digits in any place."""
    from portcullis.literals import _fill_scanned, fill

    first = template.format(*[5, 6, 7, 8])
    done = rewrite(first, ACME)
    assert not done.denied and done.shape is not None, done
    sql = template.format(*numbers)
    assert fill(done.shape, sql) == _fill_scanned(done.shape, sql)
    filled = fill(done.shape, sql)
    if filled is not None:
        assert ".tenant_id = 'acme'" in filled
        assert filled == rewrite(sql, ACME).sql
