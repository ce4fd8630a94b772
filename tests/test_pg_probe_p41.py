"""Probe P41 (helper pgattack16) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a tenant-scoped reader.

An `=` row filter (`tenant_id = 'acme'`) costs the planner one comparison, and a reader's
condition of one function call costs the same. Tied, the reader's ran first (the filter's
equality goes to an equivalence class and comes back last), on every row of the scan:

    SELECT id FROM p41_tenants WHERE jsonb_path_match(j, '$.a')
    -- ERROR: single boolean result is expected   (globex's row: {"a": "x"})

failed on the other tenant's row the filter hides, and whether it failed answered what
that row held; the same with the condition in an outer query pushed down into the
filtered subselect, in a CTE, or joined. Only `in` filters were read fenced (P38). Now a
statement with any condition other than comparisons of columns with columns, constants
and parameters (or with a subquery in FROM, or a WITH query) reads every filtered table
in a subselect kept apart by `OFFSET 0` (pdp/sql/rowfilter.py `_conditions_can_fail`);
plain comparisons keep the WHERE form and its plans.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from adversary import Arena, running_arena
from pdp_harness import REGO

from pdp.domain.identity import DevIssuer
from pdp.sql.rowfilter import INNER_ALIAS, rewrite
from portcullis.verdict import RowCondition

pytestmark = pytest.mark.integration

SETUP = """
CREATE TABLE public.p41_tenants (id int PRIMARY KEY, tenant_id text, j jsonb, n int);
INSERT INTO public.p41_tenants VALUES
  (1, 'acme', '{"a": true}', 1), (2, 'globex', '{"a": "x"}', 0);
"""


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    tmp = tmp_path_factory.mktemp("p41")
    policies = tmp / "rego"
    shutil.copytree(REGO, policies)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["row_filters"] = {
        "orders-db": {"p41_tenants": {"column": "tenant_id", "claim": "tenant"}}
    }
    data["portcullis"]["postgres"]["plain_text_columns"]["tenant_id"] = True
    (policies / "data.json").write_text(json.dumps(data))
    with running_arena(Path(tmp), policies=policies) as gateway:
        with gateway.admin() as admin:
            admin.execute(SETUP)
        yield gateway


@pytest.fixture
def acme(arena: Arena) -> Iterator[psycopg.Connection]:
    token = DevIssuer(arena.config.identity).issue(
        "p41@example.com", ["readonly"], 3600, extra_claims={"tenant": "acme"}
    )
    with psycopg.connect(arena.dsn(token), autocommit=True) as conn:
        yield conn


ORACLES = {
    "alone": "SELECT id FROM p41_tenants WHERE jsonb_path_match(j, '$.a')",
    "qualified": "SELECT t.id FROM public.p41_tenants t WHERE jsonb_path_match(t.j, '$.a')",
    "joined": "SELECT t.id FROM p41_tenants t, orders o"
    " WHERE o.id = 10 AND jsonb_path_match(t.j, '$.a')",
    "join_on": "SELECT t.id FROM p41_tenants t JOIN orders o"
    " ON o.id = 10 AND jsonb_path_match(t.j, '$.a')",
    "outer_query": "SELECT 1 FROM (SELECT id, jsonb_path_match(j, '$.a') AS x FROM p41_tenants) s"
    " WHERE x",
    "cte": "WITH s AS (SELECT j FROM p41_tenants) SELECT 1 FROM s WHERE jsonb_path_match(j, '$.a')",
    "exists": "SELECT 1 FROM orders o WHERE o.id = 10"
    " AND EXISTS (SELECT 1 FROM p41_tenants t WHERE jsonb_path_match(t.j, '$.a'))",
}


def test_unfiltered_the_condition_fails_on_the_hidden_row(arena: Arena) -> None:
    """The control: globex's row makes the condition fail."""
    with arena.admin() as admin, pytest.raises(psycopg.errors.SingletonSqlJsonItemRequired):
        admin.execute(ORACLES["alone"]).fetchall()


@pytest.mark.parametrize("sql", list(ORACLES.values()), ids=list(ORACLES))
def test_a_tied_condition_never_meets_the_rows_an_equality_filter_hides(
    acme: psycopg.Connection, sql: str
) -> None:
    assert acme.execute(sql).fetchall() == [(1,)]


def test_a_parameter_of_the_extended_protocol_changes_nothing(acme: psycopg.Connection) -> None:
    sql = "SELECT id FROM p41_tenants WHERE jsonb_path_match(j, '$.a') AND n = %s"
    rows = acme.execute(sql, [1])
    assert rows.fetchall() == [(1,)]


def test_plain_comparisons_still_read_only_the_tenants_rows(acme: psycopg.Connection) -> None:
    assert acme.execute("SELECT id FROM p41_tenants WHERE id = 2").fetchall() == []
    assert acme.execute("SELECT id FROM p41_tenants WHERE id IN (1, 2)").fetchall() == [(1,)]
    assert acme.execute("SELECT id FROM p41_tenants WHERE id = %s", [1]).fetchall() == [(1,)]
    joined = "SELECT t.id FROM p41_tenants t JOIN orders o ON o.customer_id = t.id ORDER BY 1"
    assert acme.execute(joined).fetchall() == [(1,)]


ACME = {"p41_tenants": (RowCondition("tenant_id", "=", "acme"),)}
FENCE = f"{INNER_ALIAS}.tenant_id = 'acme' OFFSET 0"

PLAIN = [
    "SELECT id FROM p41_tenants WHERE id = 5",
    "SELECT id FROM p41_tenants WHERE id = $1 AND n IN (1, 2) OR n IS NULL",
    "SELECT id FROM p41_tenants WHERE n BETWEEN -3 AND $2::int AND NOT (id <> n)",
    "SELECT t.id FROM p41_tenants t JOIN orders o ON o.customer_id = t.id WHERE o.id = 10",
    "SELECT id, jsonb_path_match(j, '$.a') FROM p41_tenants",  # an output: after the filter
]

CAN_FAIL = [
    *ORACLES.values(),
    "SELECT id FROM p41_tenants WHERE n::text = '1'",
    "SELECT id FROM p41_tenants WHERE 10 / n = 10",
    "SELECT id FROM p41_tenants WHERE id = ANY (SELECT id FROM orders)",
    "SELECT id FROM p41_tenants WHERE CASE WHEN n = 0 THEN true END",
    "SELECT n FROM p41_tenants GROUP BY n HAVING 10 / n > 1",
    "SELECT id FROM p41_tenants WHERE id OPERATOR(pg_catalog.=) 1",
]


@pytest.mark.parametrize("sql", PLAIN)
def test_plain_comparisons_keep_the_unfenced_plans(sql: str) -> None:
    done = rewrite(sql, ACME)
    assert done.sql and not done.denied and "OFFSET 0" not in done.sql, done


@pytest.mark.parametrize("sql", CAN_FAIL)
def test_a_condition_that_can_fail_reads_the_filtered_table_fenced(sql: str) -> None:
    done = rewrite(sql, ACME)
    assert not done.denied and FENCE in done.sql, done
