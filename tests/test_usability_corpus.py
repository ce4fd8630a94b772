"""The usability corpus: ordinary work of an agent that DESIGN.md's default policy allows,
through the real gateways with real clients, as a regression guard against over-blocking.

Each protocol's stack (a real PDP on the shipped rego/, the real proxy, the real upstream:
the machine's PostgreSQL, an sshd of its own, an aiohttp JSON API) is served once for the
module from a child process (tests/usability_stacks.py), and each item is a test of its own:

- Postgres, as a reader (`readonly`) and as `dba` (neither in `pii-readers`): analytic
  statements (joins, CTEs incl. recursive, windows, GROUPING SETS, LATERAL, json/jsonb,
  arrays, generate_series, dates, strings, CASE, subqueries, set operations, paging, casts,
  catalog introspection, EXPLAIN, SHOW, SET of allow-listed settings), each run through the
  proxy (psycopg, extended protocol) and compared with what the database owner reads
  directly: equal, or equal but for the sensitive columns, which read [REDACTED]. Then
  transactions, cursors, PREPARE/EXECUTE and multi-statement text through psql; psql's
  describe commands compared with psql run directly; \\copy; asyncpg and psycopg prepared
  statements, binary results, server-side cursors and COPY; pgbench -S in its three modes.
- SSH (OpenSSH's ssh with the token as password): the allowed commands (uptime, df, free,
  systemctl status, journalctl, cat /var/log/*) as agents write them, with pipes between
  allowed commands, `2>&1`, `&&`, `;`, timeout/nice, sh -c; the exit status is the one the
  same line has run locally (the sshd is on this machine), and a deterministic output equal.
- HTTP (curl with a bearer token): GET with query strings and pagination, Accept, HEAD,
  If-Modified-Since, gzip, Proxy-Authorization; dba's JSON POST; JSON fields named like
  sensitive columns masked.

Nothing here is expected to fail: what the gateway over-blocks or breaks today is left out
and reported (see the commit that added this file), never marked xfail.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from ssh_harness import askpass, client_options
from usability_stacks import CUSTOMERS, GROUPS, owner, serving

pytestmark = pytest.mark.integration

GROUP_NAMES = list(GROUPS)
MASKED = "[REDACTED]"
TIMEOUT = 60  # seconds a client step may take before the test fails instead of hanging
RAW_SENSITIVE = ("ada@example.com", "123-45-6789", "4111 1111 1111 1111", "+44 20 7946 0001")


# ------------------------------------------------------------------------------- Postgres

# (id, statement): run through the proxy with psycopg and compared with the owner's direct
# answer. Every output here derives from no sensitive column.
READS = [
    (
        "join_inner",
        "SELECT o.id, c.name, o.total FROM orders o JOIN customers c ON c.id = o.customer_id "
        "ORDER BY o.id",
    ),
    (
        "join_left",
        "SELECT c.name, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id "
        "ORDER BY c.id, o.id",
    ),
    (
        "join_using",
        "SELECT order_id, title, qty FROM order_items JOIN products ON products.id = "
        "order_items.product_id ORDER BY 1, 2",
    ),
    (
        "join_three",
        "SELECT c.name, p.title, oi.qty FROM customers c JOIN orders o ON o.customer_id = "
        "c.id JOIN order_items oi ON oi.order_id = o.id JOIN products p ON p.id = "
        "oi.product_id ORDER BY 1, 2",
    ),
    (
        "join_full",
        "SELECT c.id, o.id FROM customers c FULL OUTER JOIN orders o ON o.customer_id = c.id "
        "ORDER BY 1, 2",
    ),
    ("join_cross", "SELECT count(*) FROM customers CROSS JOIN products"),
    (
        "join_self",
        "SELECT e.name, m.name AS manager FROM employees e LEFT JOIN employees m ON m.id = "
        "e.manager_id ORDER BY e.id",
    ),
    (
        "join_natural",
        "SELECT * FROM (SELECT 1 AS k, 'a' AS v) a NATURAL JOIN (SELECT 1 AS k, 'b' AS w) b",
    ),
    (
        "join_using_clause",
        "SELECT id, status FROM orders JOIN (SELECT id FROM orders WHERE total > 10) big "
        "USING (id) ORDER BY id",
    ),
    (
        "agg_having",
        "SELECT customer_id, count(*) FROM orders GROUP BY customer_id HAVING count(*) > 1 "
        "ORDER BY 1",
    ),
    (
        "agg_filter",
        "SELECT count(*) FILTER (WHERE status = 'paid') AS paid, count(*) AS all_orders FROM "
        "orders",
    ),
    (
        "agg_array_agg",
        "SELECT customer_id, array_agg(id ORDER BY id) FROM orders GROUP BY customer_id ORDER BY 1",
    ),
    ("agg_distinct", "SELECT count(DISTINCT customer_id) FROM orders"),
    ("agg_minmax", "SELECT min(placed_at), max(placed_at) FROM orders"),
    (
        "grouping_sets",
        "SELECT status, customer_id, count(*) FROM orders GROUP BY GROUPING SETS ((status), "
        "(customer_id), ()) ORDER BY 1, 2",
    ),
    (
        "cube",
        "SELECT status, customer_id, count(*) FROM orders GROUP BY CUBE (status, customer_id) "
        "ORDER BY 1, 2",
    ),
    (
        "cte_simple",
        "WITH paid AS (SELECT * FROM orders WHERE status = 'paid') SELECT count(*), "
        "sum(total) FROM paid",
    ),
    (
        "cte_two",
        "WITH a AS (SELECT customer_id, sum(total) s FROM orders GROUP BY 1), b AS (SELECT "
        "avg(s) m FROM a) SELECT a.customer_id FROM a, b WHERE a.s > b.m ORDER BY 1",
    ),
    (
        "cte_recursive_org",
        "WITH RECURSIVE chain AS (SELECT id, name, manager_id, 1 AS depth FROM employees "
        "WHERE manager_id IS NULL UNION ALL SELECT e.id, e.name, e.manager_id, c.depth + 1 "
        "FROM employees e JOIN chain c ON e.manager_id = c.id) SELECT name, depth FROM chain "
        "ORDER BY depth, name",
    ),
    (
        "cte_recursive_count",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT "
        "sum(i) FROM n",
    ),
    (
        "cte_materialized",
        "WITH t AS MATERIALIZED (SELECT id, total FROM orders) SELECT max(total) FROM t",
    ),
    (
        "cte_search",
        "WITH RECURSIVE t(id, manager_id) AS (SELECT id, manager_id FROM employees WHERE id = "
        "1 UNION ALL SELECT e.id, e.manager_id FROM employees e JOIN t ON e.manager_id = "
        "t.id) SEARCH DEPTH FIRST BY id SET ord SELECT id FROM t ORDER BY ord",
    ),
    (
        "win_row_number",
        "SELECT id, customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY "
        "placed_at) FROM orders ORDER BY id",
    ),
    (
        "win_rank",
        "SELECT id, total, rank() OVER (ORDER BY total DESC), dense_rank() OVER (ORDER BY "
        "total DESC) FROM orders ORDER BY id",
    ),
    (
        "win_running_sum",
        "SELECT id, sum(total) OVER (ORDER BY placed_at ROWS BETWEEN UNBOUNDED PRECEDING AND "
        "CURRENT ROW) FROM orders ORDER BY id",
    ),
    (
        "win_lag_lead",
        "SELECT id, lag(total) OVER w, lead(total) OVER w FROM orders WINDOW w AS (ORDER BY "
        "id) ORDER BY id",
    ),
    ("win_ntile", "SELECT id, ntile(3) OVER (ORDER BY total) FROM orders ORDER BY id"),
    (
        "win_first_value",
        "SELECT id, first_value(id) OVER (PARTITION BY customer_id ORDER BY placed_at) FROM "
        "orders ORDER BY id",
    ),
    (
        "win_pct",
        "SELECT id, round(percent_rank() OVER (ORDER BY total)::numeric, 2), "
        "round(cume_dist() OVER (ORDER BY total)::numeric, 2) FROM orders ORDER BY id",
    ),
    (
        "win_range",
        "SELECT id, count(*) OVER (ORDER BY placed_at RANGE BETWEEN interval '3 days' "
        "PRECEDING AND CURRENT ROW) FROM orders ORDER BY id",
    ),
    (
        "lateral_top",
        "SELECT c.name, last.id FROM customers c CROSS JOIN LATERAL (SELECT id FROM orders o "
        "WHERE o.customer_id = c.id ORDER BY placed_at DESC LIMIT 1) last ORDER BY c.id",
    ),
    (
        "lateral_left",
        "SELECT c.id, x.n FROM customers c LEFT JOIN LATERAL (SELECT count(*) n FROM orders o "
        "WHERE o.customer_id = c.id) x ON true ORDER BY c.id",
    ),
    ("json_arrow", "SELECT payload->>'user' AS u, payload->'tags' FROM events ORDER BY id"),
    ("json_path_op", "SELECT attrs #>> '{dims,w}' FROM products ORDER BY id"),
    ("json_contains", "SELECT id FROM events WHERE payload @> '{\"user\": 1}' ORDER BY id"),
    ("json_exists_key", "SELECT id FROM events WHERE payload ? 'ip' ORDER BY id"),
    (
        "json_path_exists",
        "SELECT count(*) FROM events WHERE jsonb_path_exists(payload, '$.tags[*] ? (@ == \"ci\")')",
    ),
    ("json_strip_nulls", 'SELECT jsonb_strip_nulls(\'{"a": null, "b": 1}\'::jsonb)'),
    (
        "json_to_record",
        'SELECT * FROM jsonb_to_record(\'{"a": 1, "b": "x"}\'::jsonb) AS r(a int, b text)',
    ),
    ("json_subscript", "SELECT attrs['color'] FROM products ORDER BY id"),
    ("json_build_array", "SELECT json_build_array(1, 'two', 3.0), json_typeof('[1]'::json)"),
    ("array_any", "SELECT sku FROM products WHERE 'small' = ANY (tags) ORDER BY 1"),
    ("array_contains", "SELECT sku FROM products WHERE tags @> ARRAY['tools'] ORDER BY 1"),
    ("array_overlap", "SELECT sku FROM products WHERE tags && ARRAY['parts', 'x'] ORDER BY 1"),
    (
        "array_position",
        "SELECT array_position(ARRAY['a','b','c'], 'b'), array_remove(ARRAY[1,2,1], 1), "
        "array_append(ARRAY[1], 2)",
    ),
    ("array_slice", "SELECT (ARRAY[1,2,3,4])[2:3], (ARRAY[1,2,3])[1]"),
    ("unnest_ordinality", "SELECT * FROM unnest(ARRAY['x','y']) WITH ORDINALITY AS t(v, n)"),
    ("string_to_array", "SELECT string_to_array('a,b,c', ',')"),
    ("gs_int", "SELECT g FROM generate_series(1, 5) g"),
    (
        "gs_dates",
        "SELECT d::date FROM generate_series(date '2026-05-01', date '2026-05-07', interval "
        "'1 day') d",
    ),
    (
        "gs_calendar_join",
        "SELECT d::date, count(o.id) FROM generate_series(timestamptz '2026-05-01', "
        "timestamptz '2026-05-10', interval '1 day') d LEFT JOIN orders o ON "
        "date_trunc('day', o.placed_at) = d GROUP BY d ORDER BY d",
    ),
    (
        "date_interval",
        "SELECT now() - interval '7 days' < now(), current_date - 30, current_date + interval "
        "'1 month'",
    ),
    ("date_age", "SELECT age(timestamptz '2026-05-10', timestamptz '2026-01-01')"),
    (
        "date_between",
        "SELECT count(*) FROM orders WHERE placed_at BETWEEN '2026-04-01' AND '2026-04-30'",
    ),
    ("date_make", "SELECT make_date(2026, 5, 1), make_interval(days => 3), to_timestamp(0)"),
    (
        "date_overlaps",
        "SELECT (date '2026-01-01', date '2026-02-01') OVERLAPS (date '2026-01-15', date "
        "'2026-03-01')",
    ),
    ("date_justify", "SELECT justify_interval(interval '40 days 30 hours')"),
    (
        "now_functions",
        "SELECT now(), current_timestamp, clock_timestamp() >= now(), localtimestamp, "
        "statement_timestamp()",
    ),
    ("str_like", "SELECT name FROM customers WHERE name LIKE 'A%' ORDER BY 1"),
    ("str_ilike", "SELECT title FROM products WHERE title ILIKE '%g%' ORDER BY 1"),
    ("str_regex", "SELECT name FROM customers WHERE name ~ '^[AG]' ORDER BY 1"),
    ("str_regexp_matches", "SELECT regexp_matches('a1b22c333', '[0-9]+', 'g')"),
    (
        "str_replace_trim",
        "SELECT trim('  x  '), btrim('xxhixx', 'x'), replace('a-b-c', '-', '+'), lpad('7', 3, "
        "'0'), rpad('a', 3, '.')",
    ),
    (
        "str_reverse_repeat",
        "SELECT reverse('abc'), repeat('ab', 3), translate('hello', 'el', 'ip'), ascii('A'), "
        "chr(66)",
    ),
    ("str_quote", "SELECT quote_ident('Order'), quote_literal('it''s'), quote_nullable(NULL)"),
    ("str_similar", "SELECT sku FROM products WHERE sku SIMILAR TO '[WG]-%' ORDER BY 1"),
    (
        "str_to_tsvector",
        "SELECT to_tsvector('english', 'The quick brown foxes') @@ to_tsquery('english', 'fox')",
    ),
    ("greatest_least", "SELECT greatest(1, 5, 3), least('b', 'a')"),
    (
        "cast_styles",
        "SELECT '42'::int, CAST('3.5' AS numeric), '2026-05-01'::date, 'true'::boolean, "
        "12::text, '1 day'::interval",
    ),
    (
        "math",
        "SELECT abs(-3), mod(10, 3), power(2, 10), sqrt(16), ln(exp(1)), 10 / 3, 10 % 3, "
        "round(random() * 0) ",
    ),
    ("to_number", "SELECT to_number('1,234.50', '9G999D99'), to_char(1234.5, 'FM9,999.00')"),
    (
        "uuid_cast",
        "SELECT '00000000-0000-0000-0000-000000000001'::uuid, gen_random_uuid() IS NOT NULL",
    ),
    ("inet", "SELECT '10.0.0.1'::inet << '10.0.0.0/8'::cidr, host('10.0.0.1/24'::inet)"),
    ("is_distinct", "SELECT count(*) FROM customers WHERE note IS DISTINCT FROM 'VIP'"),
    (
        "subq_in",
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE status "
        "= 'paid') ORDER BY 1",
    ),
    (
        "subq_exists",
        "SELECT name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE "
        "o.customer_id = c.id AND o.total > 30) ORDER BY 1",
    ),
    (
        "subq_not_exists",
        "SELECT name FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE "
        "o.customer_id = c.id AND o.status = 'refunded') ORDER BY 1",
    ),
    (
        "subq_scalar",
        "SELECT name, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) FROM "
        "customers c ORDER BY c.id",
    ),
    ("subq_from", "SELECT avg(n) FROM (SELECT customer_id, count(*) n FROM orders GROUP BY 1) t"),
    (
        "subq_any_all",
        "SELECT id FROM orders WHERE total > ALL (SELECT price FROM products WHERE price < "
        "20) ORDER BY id",
    ),
    ("union", "SELECT name FROM customers UNION SELECT name FROM employees ORDER BY 1"),
    (
        "union_all",
        "SELECT 'order' AS kind, id FROM orders UNION ALL SELECT 'product', id FROM products "
        "ORDER BY 1, 2",
    ),
    (
        "intersect",
        "SELECT customer_id FROM orders WHERE status = 'paid' INTERSECT SELECT customer_id "
        "FROM orders WHERE status = 'shipped'",
    ),
    ("except", "SELECT id FROM customers EXCEPT SELECT customer_id FROM orders ORDER BY 1"),
    ("values_list", "SELECT * FROM (VALUES (1, 'one'), (2, 'two')) AS v(n, word) ORDER BY n"),
    ("order_limit", "SELECT id, total FROM orders ORDER BY total DESC LIMIT 3"),
    ("order_offset", "SELECT id FROM orders ORDER BY id LIMIT 2 OFFSET 2"),
    ("fetch_first", "SELECT id FROM orders ORDER BY id OFFSET 1 ROWS FETCH FIRST 2 ROWS ONLY"),
    ("fetch_ties", "SELECT id, status FROM orders ORDER BY status FETCH FIRST 1 ROWS WITH TIES"),
    ("order_nulls", "SELECT country FROM customers ORDER BY country NULLS FIRST, id"),
    ("order_position", "SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC, 1"),
    (
        "distinct_on",
        "SELECT DISTINCT ON (customer_id) customer_id, id FROM orders ORDER BY customer_id, "
        "placed_at DESC",
    ),
    ("table_stmt", "TABLE products"),
    ("select_star_orders", "SELECT * FROM orders ORDER BY id"),
    ("tablesample", "SELECT count(*) >= 0 FROM orders TABLESAMPLE SYSTEM (100)"),
    (
        "info_routines",
        "SELECT routine_name FROM information_schema.routines WHERE routine_schema = 'public'",
    ),
    # the server's own views: what they carry of names, types and definitions
    # (proxies/postgres/columns.py SYSTEM_VIEW_COLUMNS), not masked as computed columns
    (
        "info_columns",
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    ),
    (
        "info_constraints",
        "SELECT table_name, constraint_name, constraint_type FROM "
        "information_schema.table_constraints WHERE table_schema = 'public' ORDER BY 1, 2",
    ),
    (
        "pg_indexes_def",
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
        "ORDER BY 1, 2",
    ),
    (
        "pg_class_sizes",
        "SELECT relname, relkind, reltuples FROM pg_class WHERE relnamespace = "
        "'public'::regnamespace ORDER BY relname",
    ),
    (
        "pg_relation_size",
        "SELECT relname, pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c WHERE "
        "relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1",
    ),
    (
        "pg_stat_user_tables",
        "SELECT relname, n_live_tup, seq_scan FROM pg_stat_user_tables ORDER BY relname",
    ),
    (
        "pg_attribute",
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
        "'orders'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    ),
    (
        "pg_constraint_def",
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
        "'orders'::regclass ORDER BY 1",
    ),
    ("pg_viewdef", "SELECT pg_get_viewdef('order_totals'::regclass, true)"),
    (
        "pg_indexdef",
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'orders'::regclass",
    ),
    (
        "pg_namespace",
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_toast%' ORDER BY 1",
    ),
    ("pg_database", "SELECT datname FROM pg_database WHERE datname = current_database()"),
    ("pg_roles", "SELECT rolname, rolsuper FROM pg_roles WHERE rolname = current_user"),
    ("pg_description", "SELECT obj_description('customers'::regclass, 'pg_class')"),
    ("pg_col_description", "SELECT col_description('customers'::regclass, 1)"),
    ("pg_type", "SELECT typname FROM pg_type WHERE typname IN ('int4', 'jsonb') ORDER BY 1"),
    ("pg_locks_count", "SELECT count(*) >= 0 FROM pg_locks"),
    (
        "pg_settings_readable",
        "SELECT current_setting('TimeZone'), current_setting('server_version_num')::int >= 150000",
    ),
    ("version", "SELECT version()"),
    (
        "current_info",
        "SELECT current_database(), current_user, current_schema(), session_user, "
        "inet_server_port() IS NOT NULL",
    ),
    ("pg_typeof", "SELECT pg_typeof(1.5), pg_typeof(now())"),
    (
        "has_privilege",
        "SELECT has_table_privilege('orders', 'SELECT'), has_schema_privilege('public', 'USAGE')",
    ),
    ("to_regclass", "SELECT to_regclass('public.orders'), 'orders'::regclass::oid > 0"),
    ("pg_size_db", "SELECT pg_size_pretty(pg_database_size(current_database()))"),
    ("pg_postmaster_start", "SELECT pg_postmaster_start_time() < now()"),
    ("pg_is_in_recovery", "SELECT pg_is_in_recovery()"),
    ("txid_current", "SELECT pg_current_xact_id_if_assigned() IS NULL"),
    ("explain_select", "EXPLAIN SELECT * FROM orders WHERE customer_id = 1"),
    (
        "explain_costs_off",
        "EXPLAIN (COSTS OFF) SELECT c.name, count(*) FROM customers c JOIN orders o ON "
        "o.customer_id = c.id GROUP BY c.name",
    ),
    ("explain_json", "EXPLAIN (FORMAT JSON) SELECT * FROM products"),
    ("explain_verbose", "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM orders"),
    ("current_setting_app_name", "SELECT current_setting('application_name')"),
    ("values_only", "VALUES (1), (2)"),
    ("select_no_from", "SELECT 1 + 1 AS two, 'x' AS s, NULL::int AS n, true AS b"),
    ("comment_leading", "/* report for ticket 42 */ SELECT count(*) FROM orders -- trailing"),
    ("txid_snapshot", "SELECT pg_current_snapshot() IS NOT NULL"),
    ("row_constructor", "SELECT ROW(1, 'a') = ROW(1, 'a'), (1, 2) < (1, 3)"),
    ("bit_ops", "SELECT 5 & 3, 5 | 3, 5 # 3, 1 << 4, ~1"),
    (
        "range_types",
        "SELECT int4range(1, 10) @> 5, tstzrange(now() - interval '1 day', now()) @> now() - "
        "interval '1 hour'",
    ),
    ("generate_subscripts", "SELECT generate_subscripts(ARRAY['a','b'], 1)"),
    ("regexp_split", "SELECT regexp_split_to_table('a b  c', '\\s+')"),
    ("xmlless_xpath_free", "SELECT 'abc' ~~ 'a%', 'abc' !~ 'z'"),
]

# (id, statement, the outputs that are sensitive columns): equal to the direct answer but
# for those, which read [REDACTED] (NULL stays NULL)
MASKED_READS = [
    ("mask_email", "SELECT name, email FROM customers ORDER BY id", {"email"}),
    ("mask_star", "SELECT * FROM customers ORDER BY id", {"email", "phone", "ssn", "card_number"}),
    ("mask_phone_card", "SELECT id, phone, card_number, ssn FROM customers ORDER BY id",
     {"phone", "card_number", "ssn"}),
    ("mask_join", "SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id"
     " ORDER BY o.id", {"email"}),
    ("mask_email_equality", "SELECT name FROM customers WHERE email = 'ada@example.com'", set()),
    ("mask_email_not_null", "SELECT count(*) FROM customers WHERE email IS NOT NULL", set()),
    ("mask_cte", "WITH c AS (SELECT id, name, email FROM customers) SELECT * FROM c ORDER BY id",
     {"email"}),
    ("mask_lateral", "SELECT c.email, o.n FROM customers c CROSS JOIN LATERAL (SELECT count(*) AS n"
     " FROM orders WHERE customer_id = c.id) o ORDER BY c.id", {"email"}),
    # the derived mask covers the computed output it was judged for (upper changes text
    # the value detectors would read), not the count and sum beside it
    ("mask_one_computed_output", "SELECT status, count(*), sum(total), upper(status) FROM orders"
     " GROUP BY status ORDER BY status", {"upper"}),
    ("mask_one_computed_output_first", "SELECT lower(c.name) AS who, count(o.id), max(o.total)"
     " FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.name ORDER BY 2, 1",
     {"who"}),
]  # fmt: skip

# Settings: each on a connection of its own, SHOW compared with the direct answer
SETTINGS = [
    ("show_timezone", "SHOW TimeZone"),
    ("show_search_path", "SHOW search_path"),
    ("show_server_version", "SHOW server_version"),
    ("show_work_mem", "SHOW work_mem"),
    ("show_datestyle", "SHOW DateStyle"),
    ("show_transaction_isolation", "SHOW transaction_isolation"),
    ("current_setting_work_mem", "SELECT current_setting('work_mem')"),
    ("set_timezone", "SET TimeZone = 'UTC'"),
    ("set_statement_timeout", "SET statement_timeout = '5s'"),
    ("set_application_name", "SET application_name = 'agent-report'"),
    ("set_datestyle", "SET DateStyle = 'ISO, MDY'"),
    ("set_search_path_public", "SET search_path = public"),
    ("set_extra_float_digits", "SET extra_float_digits = 3"),
    ("set_intervalstyle", "SET IntervalStyle = 'iso_8601'"),
    ("set_jit_off", "SET jit = off"),
    ("reset_timezone", "RESET TimeZone"),
    ("reset_all", "RESET ALL"),
    ("set_config", "SELECT set_config('application_name', 'agent-report', false)"),
]

# Answers that change from one call to the next (or differ by session): run, same row count
VOLATILE = {
    "now_functions",
    "pg_stat_user_tables",
    "explain_select",
    "explain_costs_off",
    "explain_json",
    "explain_verbose",
    "pg_size_db",
    "current_setting_app_name",
    "date_interval",
    "uuid_cast",
}


def pg_dsn(info: dict[str, Any], group: str) -> str:
    return (
        f"postgresql://agent:{info['tokens'][group]}@127.0.0.1:{info['port']}/"
        f"{info['database']}?sslmode=disable"
    )


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serving("postgres", tmp_path_factory.mktemp("pg")) as info:
        yield info


@pytest.fixture(scope="module")
def pg_sessions(pg: dict[str, Any]) -> Iterator[dict[str, psycopg.Connection]]:
    """One session through the proxy per group, and the owner's direct one ("owner")."""
    sessions = {g: psycopg.connect(pg_dsn(pg, g), autocommit=True) for g in GROUPS}
    sessions["owner"] = owner(pg["role"], pg["database"])
    yield sessions
    for session in sessions.values():
        session.close()


def answer(session: psycopg.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = session.execute(sql)
    if cur.description is None:
        return [], []
    return [d.name for d in cur.description], cur.fetchall()


@pytest.mark.parametrize("group", GROUP_NAMES)
@pytest.mark.parametrize(("item", "sql"), READS, ids=[i for i, _ in READS])
def test_a_read_answers_as_the_database_does(
    pg_sessions: dict[str, psycopg.Connection], group: str, item: str, sql: str
) -> None:
    names, rows = answer(pg_sessions[group], sql)
    direct_names, direct = answer(pg_sessions["owner"], sql)
    assert names == direct_names
    if item in VOLATILE:
        assert len(rows) == len(direct)
    else:
        assert rows == direct


@pytest.mark.parametrize("group", GROUP_NAMES)
@pytest.mark.parametrize(
    ("item", "sql", "sensitive"), MASKED_READS, ids=[i for i, _, _ in MASKED_READS]
)
def test_a_read_of_sensitive_columns_runs_masked(
    pg_sessions: dict[str, psycopg.Connection],
    group: str,
    item: str,
    sql: str,
    sensitive: set[str],
) -> None:
    names, rows = answer(pg_sessions[group], sql)
    direct_names, direct = answer(pg_sessions["owner"], sql)
    assert names == direct_names
    masked = [
        tuple(
            MASKED if name in sensitive and value is not None else value
            for name, value in zip(names, row, strict=True)
        )
        for row in direct
    ]
    assert rows == masked
    assert not any(raw in repr(rows) for raw in RAW_SENSITIVE)


@pytest.mark.parametrize("group", GROUP_NAMES)
@pytest.mark.parametrize(("item", "sql"), SETTINGS, ids=[i for i, _ in SETTINGS])
def test_a_setting_is_read_and_set(pg: dict[str, Any], group: str, item: str, sql: str) -> None:
    with (
        psycopg.connect(pg_dsn(pg, group), autocommit=True) as session,
        owner(pg["role"], pg["database"]) as direct,
    ):
        assert answer(session, sql) == answer(direct, sql)


def psql(
    info: dict[str, Any], token: str | None, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """psql through the proxy (with a token), or straight to PostgreSQL as the database
    owner (token None)."""
    if token is None:
        where = ["-h", "127.0.0.1", "-p", "5432", "-U", info["role"]]
        env = {**os.environ, "PGSSLMODE": "disable"}
    else:
        where = ["-h", "127.0.0.1", "-p", str(info["port"]), "-U", "agent"]
        env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable"}
    return subprocess.run(
        ["psql", *where, "-d", info["database"], "-X", "-v", "ON_ERROR_STOP=1", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=TIMEOUT,
    )


def same_as_direct(info: dict[str, Any], group: str, *args: str, stdin: str | None = None) -> str:
    """psql's output through the proxy, asserted equal to the direct one (raw sensitive
    values of the direct output read [REDACTED]); returned."""
    through = psql(info, info["tokens"][group], *args, stdin=stdin)
    assert through.returncode == 0, through.stderr
    assert "ERROR" not in through.stderr, through.stderr
    direct = psql(info, None, *args, stdin=stdin)
    assert direct.returncode == 0, direct.stderr
    expected = direct.stdout
    for raw in ("ada@example.com", "alan@example.org"):
        expected = expected.replace(raw, MASKED)
    assert through.stdout == expected
    return through.stdout


# (id, script): statements psql sends one by one (simple protocol), unaligned output
SCRIPTS = [
    ("tx_read_only", "BEGIN READ ONLY; SELECT count(*) FROM orders; COMMIT;"),
    ("tx_isolation", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
     " SELECT count(*) FROM orders; SELECT sum(total) FROM orders; COMMIT;"),
    ("tx_start_rollback", "START TRANSACTION; SELECT 1; ROLLBACK;"),
    ("tx_serializable_deferrable",
     "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE; SELECT 1; COMMIT;"),
    ("tx_savepoint", "BEGIN; SAVEPOINT a; SELECT 1; ROLLBACK TO SAVEPOINT a;"
     " RELEASE SAVEPOINT a; COMMIT;"),
    ("tx_cursor", "BEGIN; DECLARE c CURSOR FOR SELECT id FROM orders ORDER BY id;"
     " FETCH 2 FROM c; FETCH NEXT FROM c; MOVE 1 IN c; FETCH ALL FROM c; CLOSE c; COMMIT;"),
    ("tx_cursor_scroll", "BEGIN; DECLARE c SCROLL CURSOR FOR SELECT id FROM products ORDER BY id;"
     " FETCH LAST FROM c; FETCH PRIOR FROM c; FETCH ABSOLUTE 1 FROM c; COMMIT;"),
    ("tx_cursor_masked", "BEGIN; DECLARE c CURSOR FOR SELECT name, email FROM customers"
     " ORDER BY id; FETCH 2 FROM c; CLOSE c; COMMIT;"),
    ("cursor_with_hold", "DECLARE h CURSOR WITH HOLD FOR SELECT id FROM orders ORDER BY id;"
     " FETCH 2 FROM h; CLOSE h;"),
    ("prepare_execute", "PREPARE q(int) AS SELECT id, total FROM orders WHERE customer_id = $1;"
     " EXECUTE q(1); EXECUTE q(3); DEALLOCATE q;"),
    ("two_selects", "SELECT count(*) FROM orders; SELECT count(*) FROM products;"),
    ("set_then_read", "SET TimeZone = 'UTC'; SELECT placed_at FROM orders WHERE id = 10;"),
    ("set_local", "BEGIN; SET LOCAL TimeZone = 'Europe/Berlin';"
     " SELECT placed_at FROM orders WHERE id = 10; COMMIT;"),
    ("copy_select_csv", "COPY (SELECT id, status, total FROM orders ORDER BY id)"
     " TO STDOUT WITH (FORMAT csv, HEADER);"),
    ("copy_columns", "COPY products (id, sku, price) TO STDOUT;"),
    ("discard_all", "DISCARD ALL; SELECT 1;"),
]  # fmt: skip


@pytest.mark.parametrize("group", GROUP_NAMES)
@pytest.mark.parametrize(("item", "script"), SCRIPTS, ids=[i for i, _ in SCRIPTS])
def test_a_psql_script_runs_as_directly(
    pg: dict[str, Any], group: str, item: str, script: str
) -> None:
    same_as_direct(pg, group, "-A", stdin=script.replace("; ", ";\n") + "\n")


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_one_simple_query_holding_two_selects(pg: dict[str, Any], group: str) -> None:
    out = same_as_direct(pg, group, "-A", "-t", "-c", "SELECT 1; SELECT 2")
    assert out.split() == ["1", "2"]


# psql's describe commands (each a few catalog queries), compared with psql run directly
DESCRIBE = [
    r"\d customers",
    r"\d+ orders",
    r"\d order_totals",
    r"\dt",
    r"\dv",
    r"\di",
    r"\df",
    r"\dn",
    r"\dx",
    r"\dT",
    r"\dd",
    r"\dS pg_class",
    r"\l template1",  # pg_database's columns (pdp/sql/lineage.py _CATALOG_TABLES)
]


@pytest.mark.parametrize("group", GROUP_NAMES)
@pytest.mark.parametrize("command", DESCRIBE)
def test_a_psql_describe_command_shows_what_it_shows_directly(
    pg: dict[str, Any], group: str, command: str
) -> None:
    same_as_direct(pg, group, "-c", command)


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_psql_copy_to_a_file_and_to_stdout(pg: dict[str, Any], group: str, tmp_path: Path) -> None:
    query = "(SELECT id, status, total FROM orders ORDER BY id)"
    through, direct = tmp_path / "through.csv", tmp_path / "direct.csv"
    done = psql(pg, pg["tokens"][group], "-c", rf"\copy {query} TO '{through}' WITH (FORMAT csv)")
    assert done.returncode == 0, done.stderr
    psql(pg, None, "-c", rf"\copy {query} TO '{direct}' WITH (FORMAT csv)")
    assert through.read_text() == direct.read_text() != ""
    same_as_direct(pg, group, "-c", r"\copy products (id, sku) TO STDOUT")


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_psql_fetch_count_reads_through_a_cursor(pg: dict[str, Any], group: str) -> None:
    out = same_as_direct(
        pg, group, "-A", "-t", "-v", "FETCH_COUNT=2", "-c", "SELECT id FROM orders ORDER BY id"
    )
    assert out.split() == ["10", "11", "12", "13", "14", "15"]


@pytest.mark.parametrize("group", GROUP_NAMES)
@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only(pg: dict[str, Any], group: str, mode: str) -> None:
    env = {**os.environ, "PGPASSWORD": pg["tokens"][group], "PGSSLMODE": "disable"}
    run = subprocess.run(
        ["pgbench", "-S", "-n", "-M", mode, "-c", "2", "-t", "25",
         "-h", "127.0.0.1", "-p", str(pg["port"]), "-U", "agent", pg["database"]],
        capture_output=True, text=True, env=env, timeout=TIMEOUT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "number of transactions actually processed: 50/50" in run.stdout
    assert "number of failed transactions: 0 " in run.stdout


async def _asyncpg_work(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        found: dict[str, Any] = {}
        found["orders"] = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT id, total, placed_at FROM orders WHERE customer_id = $1 ORDER BY id", 1
            )
        ]
        found["email"] = await conn.fetchval("SELECT email FROM customers WHERE id = $1", 1)
        found["payload"] = await conn.fetchval("SELECT payload FROM events WHERE id = $1", 1)
        found["tags"] = await conn.fetchval("SELECT tags FROM products WHERE id = $1", 1)
        found["colors"] = [
            r[0]
            for r in await conn.fetch(
                "SELECT attrs->>'color' FROM products WHERE sku = ANY($1::text[]) ORDER BY id",
                ["W-1", "G-2"],
            )
        ]
        since = datetime.datetime(2026, 4, 2, tzinfo=datetime.UTC)
        found["since"] = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE placed_at > $1", since
        )
        statement = await conn.prepare("SELECT id FROM orders WHERE status = $1 ORDER BY id")
        found["paid"] = [r[0] for r in await statement.fetch("paid")]
        found["shipped"] = [r[0] for r in await statement.fetch("shipped")]
        async with conn.transaction(readonly=True):
            cursor = await conn.cursor("SELECT id FROM orders ORDER BY id")
            found["cursor"] = [r[0] for r in await cursor.fetch(3)]
            found["iterated"] = [
                r[0] async for r in conn.cursor("SELECT id FROM products ORDER BY id", prefetch=2)
            ]
        chunks: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            chunks.append(bytes(chunk))

        await conn.copy_from_query(
            "SELECT id, status FROM orders ORDER BY id", output=keep, format="csv"
        )
        found["copy"] = b"".join(chunks).decode()
        return found
    finally:
        await conn.close()


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_asyncpg_prepared_binary_cursor_and_copy(pg: dict[str, Any], group: str) -> None:
    found = asyncio.run(asyncio.wait_for(_asyncpg_work(pg_dsn(pg, group)), TIMEOUT))
    utc = datetime.UTC
    assert found["orders"] == [
        (10, Decimal("34.49"), datetime.datetime(2026, 4, 1, 10, 0, tzinfo=utc)),
        (11, Decimal("9.99"), datetime.datetime(2026, 4, 3, 15, 20, tzinfo=utc)),
    ]
    assert found["email"] == MASKED
    assert json.loads(found["payload"]) == {"user": 1, "ip": "10.0.0.1", "tags": ["web"]}
    assert found["tags"] == ["tools", "small"]
    assert found["colors"] == ["red", "blue"]
    assert found["since"] == 5
    assert (found["paid"], found["shipped"]) == ([10, 12, 14], [11])
    assert found["cursor"] == [10, 11, 12]
    assert found["iterated"] == [1, 2, 3, 4]
    assert found["copy"].splitlines()[:2] == ["10,paid", "11,shipped"]


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_psycopg_prepared_binary_named_cursor_and_copy(pg: dict[str, Any], group: str) -> None:
    sql = "SELECT id, total, placed_at FROM orders WHERE customer_id = %s ORDER BY id"
    with psycopg.connect(pg_dsn(pg, group)) as conn, owner(pg["role"], pg["database"]) as direct:
        expected = direct.execute(sql, (1,)).fetchall()
        assert conn.execute(sql, (1,), prepare=True).fetchall() == expected
        assert conn.execute(sql, (1,), prepare=True).fetchall() == expected
        assert conn.cursor(binary=True).execute(sql, (1,)).fetchall() == expected
        masked = conn.cursor(binary=True).execute(
            "SELECT name, email FROM customers WHERE id = %s", (2,), prepare=True
        )
        assert masked.fetchall() == [("Alan Turing", MASKED)]
        events = conn.cursor(binary=True).execute("SELECT payload FROM events ORDER BY id")
        assert (
            events.fetchall() == direct.execute("SELECT payload FROM events ORDER BY id").fetchall()
        )
        for n in range(7):  # psycopg prepares on its own from the fifth run
            count = conn.execute("SELECT count(*) FROM orders WHERE total > %s", (n,)).fetchone()
        assert count == (5,)
        conn.rollback()
        with conn.cursor(name="pages") as named:
            named.itersize = 2
            named.execute("SELECT id, status FROM orders ORDER BY id")
            assert (
                list(named)
                == direct.execute("SELECT id, status FROM orders ORDER BY id").fetchall()
            )
        conn.rollback()
        with conn.cursor().copy("COPY (SELECT id, sku FROM products ORDER BY id) TO STDOUT") as cp:
            assert list(cp.rows()) == [("1", "W-1"), ("2", "G-2"), ("3", "S-3"), ("4", "F-4")]


# ------------------------------------------------------------------------------------ SSH

# (id, command line, compare stdout with the local run): allowed by DESIGN.md's list
# (uptime, df, free, systemctl status, journalctl, cat /var/log/*) as agents write them
SSH_LINES = [
    ("uptime", "uptime", False),
    ("uptime_p", "uptime -p", False),
    ("df_h", "df -h", False),
    ("df", "df", False),
    ("df_inodes", "df -i /", False),
    ("df_output", "df --output=source,target /", True),
    ("df_quoted_path", "df -h '/var/log'", False),
    ("df_exclude_type", "df -h -x tmpfs", False),
    ("df_types", "df -hT", False),
    ("free_m", "free -m", False),
    ("free_h", "free -h", False),
    ("journalctl_unit_since", "journalctl -u ssh --since '1 hour ago' -n 20", True),
    ("journalctl_no_pager", "journalctl --no-pager -n 20", True),
    ("journalctl_priority_boot", "journalctl -p err -b --no-pager", True),
    ("journalctl_long_options", "journalctl --unit=ssh --since=today --no-pager", True),
    ("journalctl_short_iso", "journalctl -o short-iso -n 5 --no-pager", True),
    ("journalctl_output_cat", "journalctl -n 5 --no-pager --output=cat", True),
    ("journalctl_disk_usage", "journalctl --disk-usage", True),
    ("journalctl_list_boots", "journalctl --list-boots --no-pager", True),
    ("systemctl_status", "systemctl status ssh", True),
    ("systemctl_status_options", "systemctl status ssh -n 5 --no-pager", True),
    ("systemctl_status_two_units", "systemctl status ssh nginx --no-pager", True),
    ("cat_log", "cat /var/log/dpkg.log", True),
    ("cat_two_logs", "cat /var/log/dpkg.log /var/log/alternatives.log", True),
    ("cat_log_glob", "cat /var/log/dpkg*.log", True),
    ("cat_missing_log", "cat /var/log/no-such-file.log", True),
    ("stderr_to_stdout", "df -h / 2>&1", False),
    ("stderr_to_null", "free -m 2>/dev/null", False),
    ("and_then", "df -h && uptime", False),
    ("sequence", "uptime; free -m; df -h /", False),
    ("timeout", "timeout 5 df /", False),
    ("nice", "nice df /", False),
    ("subshell", "(uptime)", False),
    ("sh_c", "sh -c 'free -m'", False),
    ("bash_c", "bash -c 'df -h / && uptime'", False),
    ("pipe_between_allowed", "journalctl -n 5 --no-pager | cat /var/log/alternatives.log", True),
]


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ssh")
    with serving("ssh", root) as info:
        info["env"] = {}
        for group in GROUPS:
            (root / group).mkdir()
            info["env"][group] = askpass(root / group, info["tokens"][group])
        yield info


@pytest.mark.parametrize("group", GROUP_NAMES)
@pytest.mark.parametrize(("item", "line", "same_output"), SSH_LINES, ids=[i for i, *_ in SSH_LINES])
def test_an_allowed_ssh_line_runs_as_it_does_locally(
    ssh: dict[str, Any], group: str, item: str, line: str, same_output: bool
) -> None:
    port = str(ssh["port"])
    through = subprocess.run(
        ["ssh", *client_options(ssh["port"]), "-p", port, "agent@127.0.0.1", line],
        env=ssh["env"][group], capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    local = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "portcullis" not in through.stderr
    assert through.returncode == local.returncode, through.stderr
    if same_output:
        assert through.stdout == local.stdout
    elif local.stdout:
        # the first line's first two words, digits aside (uptime's clock moves a second
        # between the two runs)
        def head(out: str) -> list[str]:
            return re.sub(r"[0-9]", "0", out.splitlines()[0]).split()[:2]

        assert head(through.stdout) == head(local.stdout)


# --------------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serving("http", tmp_path_factory.mktemp("http")) as info:
        yield info


def curl(info: dict[str, Any], *args: str, auth: str | None = None) -> tuple[str, str]:
    """curl -i of args (paths made URLs of the proxy, or of the upstream with its key when
    auth is "upstream"); (head, body)."""
    if auth == "upstream":
        base = f"http://127.0.0.1:{info['upstream_port']}"
        headers = ["-H", f"X-Api-Key: {info['upstream_key']}"]
    else:
        base = f"http://127.0.0.1:{info['port']}"
        headers = ["-H", auth or ""]
    urls = [base + a if a.startswith("/") else a for a in args]
    done = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "30", *headers, *urls],
        capture_output=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    return head, body


def masked_customers(doc: Any) -> Any:
    """The upstream's JSON with every field named email masked."""
    if isinstance(doc, dict):
        return {k: MASKED if k == "email" else masked_customers(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [masked_customers(v) for v in doc]
    return doc


# (id, curl arguments, status, body as the upstream's (masked) or None)
HTTP_READS = [
    ("list", ["/v1/customers"], 200, True),
    ("query_page", ["/v1/customers?country=UK&page=2&per_page=5"], 200, True),
    ("query_urlencode", ["-G", "--data-urlencode", "country=UK", "--data-urlencode",
                         "per_page=3", "/v1/customers"], 200, True),
    ("query_plus_and_sort", ["/v1/customers?q=a+b&sort=-name"], 200, True),
    ("query_percent_encoded", ["/v1/customers?country=U%4B"], 200, True),
    ("one", ["/v1/customers/3"], 200, True),
    ("not_found", ["/v1/customers/99"], 404, True),
    ("accept_json", ["-H", "Accept: application/json", "/v1/reports/monthly"], 200, True),
    ("accept_csv", ["-H", "Accept: text/csv", "/v1/reports/monthly"], 200, True),
    ("if_modified_since", ["-H", "If-Modified-Since: Tue, 01 Dec 2026 10:00:00 GMT",
                           "/v1/reports/monthly"], 304, True),
    ("gzip_compressed", ["--compressed", "/v1/big"], 200, True),
    ("gzip_asked_plain_given", ["-H", "Accept-Encoding: gzip", "/v1/big"], 200, False),
    ("head", ["-I", "/v1/customers"], 200, False),
    ("user_agent", ["-A", "my-agent/1.0", "/healthz"], 200, True),
    ("no_cache", ["-H", "Cache-Control: no-cache", "/healthz"], 200, True),
    ("http_1_0", ["--http1.0", "/healthz"], 200, True),
]  # fmt: skip


@pytest.mark.parametrize("group", GROUP_NAMES)
@pytest.mark.parametrize(
    ("item", "args", "status", "as_upstream"), HTTP_READS, ids=[i for i, *_ in HTTP_READS]
)
def test_a_read_over_http_answers_as_the_upstream_masked(
    http: dict[str, Any], group: str, item: str, args: list[str], status: int, as_upstream: bool
) -> None:
    head, body = curl(http, *args, auth=f"Authorization: Bearer {http['tokens'][group]}")
    assert head.startswith(f"HTTP/1.1 {status}") or head.startswith(f"HTTP/1.0 {status}"), head
    if as_upstream:
        _, direct = curl(http, *args, auth="upstream")
        if body.startswith("{"):
            assert json.loads(body) == masked_customers(json.loads(direct))
        else:
            assert body == direct
    if item == "gzip_asked_plain_given":  # decoded by the proxy to be checked (README)
        assert json.loads(body)["items"][0]["n"] == 0
    assert "@example.com" not in body


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_proxy_authorization_and_two_requests_on_one_connection(
    http: dict[str, Any], group: str
) -> None:
    token = http["tokens"][group]
    head, body = curl(
        http, "/healthz", "/v1/customers/1", auth=f"Proxy-Authorization: Bearer {token}"
    )
    assert head.startswith("HTTP/1.1 200") and body.count("HTTP/1.1 200") == 1
    assert json.loads(body.rpartition("\r\n\r\n")[2]) == masked_customers(CUSTOMERS[0])


def test_a_dba_posts_json(http: dict[str, Any]) -> None:
    bearer = f"Authorization: Bearer {http['tokens']['dba']}"
    for args in (
        ["-X", "POST", "-H", "Content-Type: application/json", "-d", '{"q": "Customer 2"}'],
        ["--json", '{"q": "Customer 2"}'],
    ):
        head, body = curl(http, *args, "/v1/search", auth=bearer)
        assert head.startswith("HTTP/1.1 200"), head
        assert json.loads(body) == {"query": {"q": "Customer 2"}, "hits": [2, *range(20, 26)]}


def test_a_readers_post_asks_for_approval(http: dict[str, Any]) -> None:
    """DESIGN.md: POST needs approval for non-dba: 202 with the approval's id, not 403."""
    bearer = f"Authorization: Bearer {http['tokens']['reader']}"
    head, body = curl(http, "--json", '{"q": "Customer 2"}', "/v1/search", auth=bearer)
    assert head.startswith("HTTP/1.1 202"), head
    assert re.match(r"a-[0-9a-f]+$", json.loads(body)["approval_id"])
